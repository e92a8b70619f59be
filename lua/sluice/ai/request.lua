-- request.lua -- builds the upstream request for an AI provider (the target of
-- pdk.upstream.set): URL, method, headers, body, timeouts. Pure: no pdk, no I/O.
--
-- URL: override.endpoint when set (scheme, host, port, and its own path and query when it has
-- them) else the provider's host; path from the endpoint, else the client's path for
-- passthrough, else the provider's path for the target protocol.
-- Query: auth.query, then the endpoint's query (wins on a clash), then for passthrough the
-- client's query (wins over the endpoint's, never over auth.query).
-- Headers: the client's are forwarded by the core except Authorization, Cookie, x-api-key,
-- api-key and friends (set false here) and Accept-Encoding (the response must reach the body
-- filter uncompressed); auth.header overlays; Content-Type is JSON; a converter also drops
-- the other SDK's headers and moves the key between Bearer and x-api-key.
-- Body, in this order (reference §2.3.6, with quirk #10 fixed: include_usage also follows
-- options.stream): conversion, options (flat overwrite), stream_options.include_usage for
-- OpenAI chat streams, override.llm_options.max_tokens (provider's field, force),
-- override.request_body[target] (deep merge; fills gaps unless request_body_force_override),
-- `model` removed for providers that say so.
-- Untouched bodies are not sent at all (the core forwards the client's bytes). Touched ones
-- are spliced: the client's raw JSON is kept byte for byte except the top-level keys that
-- changed, so big integers, key order and empty arrays (which lua-cjson 2.1 would turn into {})
-- survive, and a long conversation is not re-encoded for one added key. Converted bodies are
-- encoded whole (convert.encode).
local convert = require("sluice.ai.convert")
local schema = require("sluice.ai.schema")
local cjson = require("cjson.safe")

local type = type
local pairs = pairs
local ipairs = ipairs
local next = next
local tostring = tostring
local find = string.find
local sub = string.sub
local gsub = string.gsub
local byte = string.byte
local format = string.format
local lower = string.lower
local char = string.char
local tonumber = tonumber
local concat = table.concat
local sort = table.sort
local encode = convert.encode
local deep_copy = convert.deep_copy

local has_clone, clone = pcall(require, "table.clone")
local has_new, new_tab = pcall(require, "table.new")
if not has_new then
    new_tab = function() return {} end
end

local QUOTE, COLON, COMMA, BACKSLASH = 34, 58, 44, 92
local LBRACE, RBRACE, LBRACKET = 123, 125, 91

-- Client headers never sent to a provider: the gateway's credentials replace them.
local DROP_HEADERS = {
    "authorization", "proxy-authorization", "cookie", "x-api-key", "api-key",
    "x-goog-api-key", "accept-encoding",
}

local EMPTY = {}                -- read-only stand-in for an absent table


local _M = { DROP_HEADERS = DROP_HEADERS }

-- The lazy request body. The conversation (messages, input, contents) is most of a request's
-- bytes, and ai-proxy itself only needs to know it is there; decoding it into Lua strings and
-- tables is most of the cost of reading a request. decode_lazy() checks the whole body as the
-- decoder would decode it, but leaves such a member, when it is an array or object of more
-- than LAZY_INLINE bytes, undecoded: its value is the LAZY table (type "table", empty), and
-- lazy[key] is the offset of its value in the raw body. materialize() decodes them in place
-- when something needs their content (a converter, payload logging, an options or
-- request_body override of that key, a usage estimate).
local LAZY = setmetatable({}, { __newindex = function()
    error("the lazy request body member cannot be written: materialize the body first", 2)
end })
local LAZY_KEYS = { messages = true, input = true, contents = true }
local LAZY_INLINE = 256
_M.LAZY = LAZY
_M.LAZY_KEYS = LAZY_KEYS

local c_decode
do
    local ok, core = pcall(require, "sluice.core")
    c_decode = ok and type(core) == "table" and core.json_decode or nil
end


-- decode_lazy(raw) -> body, lazy | nil (lazy: key -> offset; nil when every member is
-- decoded, or outside a worker, or for what the host's decoder leaves to lua-cjson)
function _M.decode_lazy(raw)
    if not c_decode then
        return nil
    end

    local ok, body, lazy = c_decode(raw, nil, LAZY_KEYS, LAZY_INLINE, LAZY)
    if not ok then
        return nil
    end

    return body, lazy
end


-- materialize(body, lazy, raw) -> true | nil, err: the lazy members decoded in place.
function _M.materialize(body, lazy, raw)
    for k, at in pairs(lazy) do
        local ok, v = c_decode(raw, at)
        if not ok then
            return nil, "cannot decode member " .. tostring(k)
        end

        rawset(body, k, v)
    end

    return true
end


local function has_lazy(t)
    for _, v in pairs(t) do
        if v == LAZY then
            return true
        end
    end

    return false
end


------------------------------------------------------------------------------------------------
-- top-level JSON object scanning (for splicing)
------------------------------------------------------------------------------------------------

local function skip_ws(s, p)
    local c = byte(s, p)
    if c ~= 32 and c ~= 10 and c ~= 13 and c ~= 9 then
        return p                        -- compact JSON (what SDKs send): no pattern match
    end

    local _, e = find(s, "^[ \t\r\n]*", p)
    return e + 1
end


-- p at an opening quote: position after the closing quote, or nil. A plain find of '"' (memchr)
-- then a look back for escaping backslashes: a character-class pattern walks every byte of a
-- long message in the pattern matcher, several times slower.
local function skip_string(s, p)
    local q = p + 1
    while true do
        local e = find(s, '"', q, true)
        if not e then
            return nil
        end

        local b = e - 1
        while b > p and byte(s, b) == BACKSLASH do
            b = b - 1
        end

        if (e - 1 - b) % 2 == 0 then
            return e + 1                -- preceded by an even number of backslashes
        end

        q = e + 1
    end
end


-- Position after the JSON value starting at p, or nil when malformed.
local function skip_value(s, p)
    local c = byte(s, p)
    if c == QUOTE then
        return skip_string(s, p)
    end

    if c == LBRACE or c == LBRACKET then
        local depth = 0
        local q = p
        while true do
            local e = find(s, '[%[%]{}"]', q)
            if not e then
                return nil
            end

            local b = byte(s, e)
            if b == QUOTE then
                q = skip_string(s, e)
                if not q then
                    return nil
                end

            elseif b == LBRACE or b == LBRACKET then
                depth = depth + 1
                q = e + 1

            else
                depth = depth - 1
                q = e + 1
                if depth == 0 then
                    return q
                end
            end
        end
    end

    local e = find(s, "[,}%]%s]", p)
    if not e or e == p then
        return nil
    end

    return e
end


-- top_level_spans(raw) -> array of {key, first, last} (the bytes of `"key": value`), or nil
-- when raw is not a well-formed JSON object at the top level.
local function top_level_spans(s)
    local p = skip_ws(s, 1)
    if byte(s, p) ~= LBRACE then
        return nil
    end

    local spans = {}
    p = skip_ws(s, p + 1)
    if byte(s, p) == RBRACE then
        return spans
    end

    while true do
        if byte(s, p) ~= QUOTE then
            return nil
        end

        local kend = skip_string(s, p)
        if not kend then
            return nil
        end

        local key
        local bs = find(s, "\\", p + 1, true)
        if bs and bs < kend then
            key = cjson.decode(sub(s, p, kend - 1))
            if type(key) ~= "string" then
                return nil
            end

        else
            key = sub(s, p + 1, kend - 2)
        end

        local q = skip_ws(s, kend)
        if byte(s, q) ~= COLON then
            return nil
        end

        q = skip_ws(s, q + 1)
        local vend = skip_value(s, q)
        if not vend then
            return nil
        end

        spans[#spans + 1] = { key, p, vend - 1 }
        q = skip_ws(s, vend)
        local c = byte(s, q)
        if c == COMMA then
            p = skip_ws(s, q + 1)

        elseif c == RBRACE then
            if skip_ws(s, q + 1) <= #s then
                return nil          -- bytes after the object
            end

            return spans

        else
            return nil
        end
    end
end
_M.top_level_spans = top_level_spans

-- In a worker the host finds the spans in C (core/json_scan.c, the same rules); a key with an
-- escape (false from C) and plain LuaJIT (unit tests) take the Lua above.
local spans_of = top_level_spans
do
    local ok, core = pcall(require, "sluice.core")
    local c_spans = ok and type(core) == "table" and core.json_top_spans
    if c_spans then
        spans_of = function(s)
            local spans = c_spans(s)
            if spans == false then
                return top_level_spans(s)
            end

            return spans
        end
    end
end


-- `"key":value` for a top-level key; memoised for string values (options.model and the like
-- repeat on every request; two cjson calls and a concatenation each time otherwise). Bounded.
local pair_memo, pair_memo_n = {}, 0


local INCLUDE_USAGE = { include_usage = true }
local INCLUDE_USAGE_PAIR = '"stream_options":{"include_usage":true}'


local function encode_pair(k, v)
    if v == INCLUDE_USAGE and k == "stream_options" then
        return INCLUDE_USAGE_PAIR
    end

    local by_v = type(v) == "string" and pair_memo[k]
    local pair = by_v and by_v[v]
    if pair then
        return pair
    end

    local ev = encode(v)
    if not ev then
        return nil
    end

    pair = encode(k) .. ":" .. ev
    if type(v) == "string" and #v <= 256 then
        if pair_memo_n >= 1024 then
            pair_memo, pair_memo_n = {}, 0
        end

        by_v = pair_memo[k]
        if not by_v then
            by_v = {}
            pair_memo[k] = by_v
        end

        by_v[v] = pair
        pair_memo_n = pair_memo_n + 1
    end

    return pair
end


-- splice(raw, out, changed) -> JSON text: raw with the `changed` top-level keys replaced by
-- their values in `out` (removed when nil; new ones appended, sorted), or nil when raw cannot
-- be scanned. In a worker the host splices in C (core.json_splice) from the `"key":value`
-- texts; a key with an escape and plain LuaJIT take the Lua below.
local c_splice, c_splice_plan
do
    local ok, core = pcall(require, "sluice.core")
    c_splice = ok and type(core) == "table" and core.json_splice or nil
    c_splice_plan = c_splice and core.json_splice_plan or nil
end

-- sluice.upstream.header_plan in a worker: an instance's static provider headers made once
-- into the list the host's proxy() takes instead of the table
local header_plan
do
    local ok, up = pcall(require, "sluice.upstream")
    header_plan = ok and type(up) == "table" and up.header_plan or nil
end


-- splice_texts(raw, texts [, c_texts]) -> JSON text | nil: raw with its top-level members
-- replaced by texts (key -> `"key":value` text, or false: removed; keys raw lacks appended in
-- byte order), in C when the host has it (c_texts: the same texts as its compiled plan), else
-- (or for a key with an escape) in Lua.
local function splice_texts(raw, texts, c_texts)
    if type(raw) ~= "string" then
        return nil
    end

    if c_splice then
        local body = c_splice(raw, c_texts or texts)
        if body ~= false then
            return body
        end
    end

    local spans = spans_of(raw)
    if not spans then
        return nil
    end

    local parts, done = {}, {}
    for _, sp in ipairs(spans) do
        local k = sp[1]
        local text = texts[k]
        if text == nil then
            parts[#parts + 1] = sub(raw, sp[2], sp[3])

        elseif not done[k] then
            done[k] = true
            if text then
                parts[#parts + 1] = text
            end
        end
    end

    local extra = {}
    for k, text in pairs(texts) do
        if text and not done[k] then
            extra[#extra + 1] = k
        end
    end

    sort(extra)
    for _, k in ipairs(extra) do
        parts[#parts + 1] = texts[k]
    end

    return "{" .. concat(parts, ",") .. "}"
end


local function splice(raw, out, changed)
    local texts = {}
    for k in pairs(changed) do
        local v = out[k]
        if v == nil then
            texts[k] = false

        else
            local pair = encode_pair(k, v)
            if not pair then
                return nil
            end

            texts[k] = pair
        end
    end

    return splice_texts(raw, texts)
end
_M.splice = splice


------------------------------------------------------------------------------------------------
-- body shaping
------------------------------------------------------------------------------------------------

local function shallow_copy(t)
    if has_clone then
        return clone(t)             -- one allocation at the final size, no rehashing
    end

    local out = {}
    for k, v in pairs(t) do
        out[k] = v
    end

    return out
end


local function is_object(t)
    if type(t) ~= "table" or convert.is_array(t) then
        return false
    end

    local k = next(t)
    return k == nil or type(k) == "string"
end


-- merge(target, patch, force) -> a new table: objects merge recursively, anything else in the
-- patch replaces wholesale, and only fills gaps unless `force`. Neither input is modified.
local function merge(target, patch, force)
    if not is_object(patch) or not is_object(target) then
        return deep_copy(patch)
    end

    local out = shallow_copy(target)
    for k, v in pairs(patch) do
        if is_object(v) and is_object(out[k]) then
            out[k] = merge(out[k], v, force)

        elseif out[k] == nil or force then
            out[k] = deep_copy(v)
        end
    end

    return out
end
_M.merge = merge


-- shape(p) -> out, changed | nil, err. Applies everything after conversion to a copy.
local function shape(out, changed, p)
    local inst, provider, target = p.instance, p.provider, p.target_protocol
    local override = type(inst.override) == "table" and inst.override or EMPTY

    -- every change is out[k] = v plus changed[k] = true, written out: a local closure here
    -- (FNEW) is not compiled by LuaJIT and sends the whole request build to the interpreter
    if type(inst.options) == "table" then
        for k, v in pairs(inst.options) do
            out[k] = deep_copy(v)
            changed[k] = true
        end
    end

    if target == "openai-chat" and out.stream == true then
        local so = out.stream_options
        if type(so) ~= "table" or so.include_usage ~= true then
            if type(so) == "table" then
                so = shallow_copy(so)
                so.include_usage = true

            else
                so = INCLUDE_USAGE      -- shared, read-only: its JSON text is memoised
            end

            out.stream_options = so
            changed.stream_options = true
        end
    end

    local cap = provider.capabilities and provider.capabilities[target]
    local lo = override.llm_options
    if type(lo) == "table" and type(lo.max_tokens) == "number" and cap and cap.max_tokens then
        out[cap.max_tokens] = lo.max_tokens
        changed[cap.max_tokens] = true
        for _, f in ipairs(cap.max_tokens_clear or {}) do
            if out[f] ~= nil then
                out[f] = nil
                changed[f] = true
            end
        end
    end

    local rb = override.request_body
    local patch = type(rb) == "table" and rb[target]
    if type(patch) == "table" then
        local force = override.request_body_force_override == true
        local merged = merge(out, patch, force)
        for k, v in pairs(patch) do
            -- a client value kept as it is stays the client's bytes (splice)
            local old = out[k]
            if old == nil or force or (is_object(v) and is_object(old)) then
                changed[k] = true
            end
        end

        for k in pairs(out) do
            out[k] = nil
        end

        for k, v in pairs(merged) do
            out[k] = v
        end
    end

    if provider.remove_model and out.model ~= nil then
        out.model = nil
        changed.model = true
    end

    return out, changed
end


------------------------------------------------------------------------------------------------
-- URL
------------------------------------------------------------------------------------------------

local function escape(s)
    return (gsub(tostring(s), "[^%w%-%._~]", function(c)
        return format("%%%02X", byte(c))
    end))
end
_M.escape = escape


local function unescape(s)
    s = gsub(s, "+", " ")
    return (gsub(s, "%%(%x%x)", function(h)
        return char(tonumber(h, 16))
    end))
end


-- Query parameters from several sources, in order; a later source replaces an earlier one's
-- values for the same key unless the key is protected.
local function query_builder()
    local entries = {}

    local function put(key, raw_pair, source, protected)
        if protected and protected[key] ~= nil then
            return
        end

        for _, e in ipairs(entries) do
            if e.key == key and e.source ~= source then
                e.dead = true
            end
        end

        entries[#entries + 1] = { key = key, pair = raw_pair, source = source }
    end

    local function put_raw(query, source, protected)
        if type(query) ~= "string" or query == "" then
            return
        end

        for pair in query:gmatch("[^&]+") do
            local k = pair:match("^([^=]*)")
            put(unescape(k), pair, source, protected)
        end
    end

    local function build()
        local out = {}
        for _, e in ipairs(entries) do
            if not e.dead then
                out[#out + 1] = e.pair
            end
        end

        return concat(out, "&")
    end

    return put, put_raw, build
end


-- The upstream query: auth.query (sorted keys), then the endpoint's query (wins on a clash),
-- then for passthrough the client's (wins over the endpoint's, never over auth.query).
local function build_query_string(auth_query, endpoint_query, client_query)
    local put, put_raw, build = query_builder()
    if auth_query then
        local keys = {}
        for k in pairs(auth_query) do
            keys[#keys + 1] = k
        end

        sort(keys)
        for _, k in ipairs(keys) do
            put(k, escape(k) .. "=" .. escape(auth_query[k]), "auth")
        end
    end

    put_raw(endpoint_query, "endpoint")
    put_raw(client_query, "client", auth_query)
    return build()
end


------------------------------------------------------------------------------------------------
-- build
------------------------------------------------------------------------------------------------

-- model(instance, body): the effective model: options.model, else the client's.
function _M.model(inst, body)
    local opts = inst.options
    if type(opts) == "table" and opts.model ~= nil then
        return opts.model
    end

    if type(body) == "table" then
        return body.model
    end

    return nil
end


-- What does not change from one request to the next, built once: per instance and target
-- protocol the URL (not for passthrough, whose query is the client's) and the headers (not
-- when a converter or the provider's default headers look at the client's); per conf the
-- timeouts. The core copies what it needs from a target before it yields, and nobody writes
-- to a target's tables, so requests share them.
local statics = setmetatable({}, { __mode = "k" })
local timeouts = setmetatable({}, { __mode = "k" })
local DEFAULT_CONF = {}


local function static_of(inst, target, provider, ep)
    local by_target = statics[inst]
    if not by_target then
        by_target = {}
        statics[inst] = by_target
    end

    local s = by_target[target]
    if not s or s.provider ~= provider or s.ep ~= ep then
        s = { provider = provider, ep = ep }
        by_target[target] = s
    end

    return s
end


-- touches_lazy(inst, target, provider, ep): whether the instance's options or request_body
-- override (for the target protocol) name a member that may be left lazy; once per instance
-- and target (kept in its static entry), so the caller's request path has no loop.
function _M.touches_lazy(inst, target, provider, ep)
    local s = static_of(inst, target, provider, ep)
    local t = s.touch
    if t == nil then
        t = false
        local opts = inst.options
        local o = inst.override
        local rb = type(o) == "table" and type(o.request_body) == "table"
                   and o.request_body[target]
        for k in pairs(LAZY_KEYS) do
            if (type(opts) == "table" and opts[k] ~= nil)
               or (type(rb) == "table" and rb[k] ~= nil) then
                t = true
            end
        end

        s.touch = t
    end

    return t
end


local function timeout_of(conf)
    local t = timeouts[conf]
    if not t then
        local v = (conf.timeout or 30000) / 1000
        t = { connect = v, send = v, read = v }
        timeouts[conf] = t
    end

    return t
end


-- The body changes of an instance whose options are plain values, as splice texts made once
-- (per instance and target protocol, kept in its static entry): options, the max_tokens
-- mapping and its clears, remove_model, and stream_options added to a streaming OpenAI chat
-- request. Only when they touch nothing the request path reads back from the final body
-- (tools, user, metadata, the stream flags, the conversation) and there is no request_body
-- patch; otherwise false, and shape() works on a copy of the body as before.
local PLAN_DENY = {
    tools = true, user = true, safety_identifier = true, metadata = true, stream = true,
    stream_options = true, messages = true, input = true, contents = true,
}


local function make_plan(inst, provider, target, override)
    local rb = override.request_body
    if type(rb) == "table" and rb[target] ~= nil then
        return false
    end

    local texts, n = {}, 0
    local opts = inst.options
    if type(opts) == "table" then
        for k, v in pairs(opts) do
            local tv = type(v)
            if type(k) ~= "string" or PLAN_DENY[k] or (tv ~= "string" and tv ~= "number"
                                                       and tv ~= "boolean") then
                return false
            end

            local pair = encode_pair(k, v)
            if not pair then
                return false
            end

            texts[k] = pair
            n = n + 1
        end
    end

    local cap = provider.capabilities and provider.capabilities[target]
    local lo = override.llm_options
    if type(lo) == "table" and type(lo.max_tokens) == "number" and cap and cap.max_tokens then
        local pair = encode_pair(cap.max_tokens, lo.max_tokens)
        if not pair or PLAN_DENY[cap.max_tokens] then
            return false
        end

        texts[cap.max_tokens] = pair
        n = n + 1
        for _, f in ipairs(cap.max_tokens_clear or {}) do
            texts[f] = false
            n = n + 1
        end
    end

    if provider.remove_model then
        texts.model = false
        n = n + 1
    end

    local plan = { texts = texts, n = n, texts_so = false }
    if target == "openai-chat" then
        local so = {}
        for k, v in pairs(texts) do
            so[k] = v
        end

        so.stream_options = INCLUDE_USAGE_PAIR
        plan.texts_so = so
    end

    -- in a worker the texts also as the host's compiled splice plan (no table read per call)
    plan.c_texts = c_splice_plan and c_splice_plan(texts) or false
    plan.c_texts_so = plan.texts_so and c_splice_plan and c_splice_plan(plan.texts_so) or false
    return plan
end


-- The provider body by the plan: true, body (nil body: the client's bytes go as they are), or
-- nil when the request needs the general path (a client stream_options without
-- include_usage, a body the splice cannot scan).
local function plan_body(plan, body, raw)
    local texts = plan.texts
    if plan.texts_so and body.stream == true then
        local so = body.stream_options
        if type(so) ~= "table" then
            texts = plan.texts_so

        elseif so.include_usage ~= true then
            return nil
        end
    end

    if plan.n == 0 and texts == plan.texts then
        return true, nil
    end

    local out = splice_texts(raw, texts, texts == plan.texts and plan.c_texts or plan.c_texts_so)
    if not out then
        return nil
    end

    return true, out
end


local function build_headers(auth, provider, conv, client_headers)
    local h = new_tab(0, 16)
    for _, name in ipairs(DROP_HEADERS) do
        h[name] = false
    end

    if conv and conv.drop_prefixes and type(client_headers) == "table" then
        for name in pairs(client_headers) do
            local lname = lower(name)
            for _, prefix in ipairs(conv.drop_prefixes) do
                if sub(lname, 1, #prefix) == prefix then
                    h[lname] = false
                end
            end
        end
    end

    if type(auth.header) == "table" then
        for k, v in pairs(auth.header) do
            h[lower(k)] = v
        end
    end

    h["content-type"] = "application/json"
    if type(provider.default_headers) == "table" then
        for name, v in pairs(provider.default_headers) do
            local client_has = type(client_headers) == "table" and client_headers[name] ~= nil
                               and h[name] == nil
            if type(h[name]) ~= "string" and not client_has then
                h[name] = v
            end
        end
    end

    if conv and conv.headers then
        conv.headers(h)
    end

    return h
end


-- build(p) -> target, info | nil, status, body
--   p.instance        {provider, auth, options, override} (an ai-proxy conf or one instance)
--   p.conf            the plugin conf (timeout, ssl_verify, keepalive, keepalive_timeout,
--                     keepalive_pool)
--   p.provider        provider table (ai/providers)
--   p.endpoint        override.endpoint already parsed (schema.parse_endpoint), optional
--   p.client_protocol, p.target_protocol, p.converting (from protocols.route)
--   p.body            the client's decoded body (not modified)
--   p.raw             the client's raw body bytes (for splicing), may be nil
--   p.uri, p.query, p.method   client path, raw query string and method (passthrough)
--   p.client_headers  lowercased client headers (for prefix drops and defaults), may be nil
--   p.state           per-request converter state (filled here)
--   p.fast            the caller reads info.body only for tools / user / metadata: when the
--                     instance's changes are plain (make_plan), the body is spliced from
--                     texts made once and info.body is the client's table itself
-- info = {body = final body table, converter = converter or nil, changed = bool}
function _M.build(p)
    local inst, provider = p.instance, p.provider
    local target = p.target_protocol
    local override = type(inst.override) == "table" and inst.override or EMPTY
    local state = p.state

    local ep = p.endpoint
    if not ep and override.endpoint ~= nil then
        local err
        ep, err = schema.parse_endpoint(override.endpoint)
        if not ep then
            return nil, 500, { error_msg = err }
        end
    end

    local scheme = ep and ep.scheme or "https"
    local host = ep and ep.host or provider.host
    if not host then
        return nil, 500, { error_msg = "provider " .. tostring(provider.name)
                                       .. " has no default endpoint: set override.endpoint" }
    end

    local auth = type(inst.auth) == "table" and inst.auth or EMPTY
    local static = static_of(inst, target, provider, ep)
    local url = static.url
    if not url then
        local port = ep and ep.port or provider.port or 443
        local cap = provider.capabilities and provider.capabilities[target]
        local path = ep and ep.path
        if not path then
            if target == "passthrough" then
                path = p.uri

            else
                path = cap and cap.path
            end
        end

        if not path then
            return nil, 400, { error_msg = "could not resolve upstream path: ensure the route "
                .. "or request body specifies a model, or that override.endpoint includes a "
                .. "path" }
        end

        -- query
        local auth_query = type(auth.query) == "table" and auth.query or nil
        local query = ""
        if auth_query or (ep and ep.query) or (target == "passthrough" and p.query) then
            query = build_query_string(auth_query, ep and ep.query,
                                       target == "passthrough" and p.query or nil)
        end

        local default_port = (scheme == "https" and port == 443)
                             or (scheme == "http" and port == 80)
        url = scheme .. "://" .. host .. (default_port and "" or ":" .. port)
              .. path .. (query ~= "" and "?" .. query or "")
        if target ~= "passthrough" then
            static.url = url
        end
    end

    -- body: by the instance's plan when the caller allows it (p.fast: nothing reads the final
    -- body table but tool_count / end_user_id, which the plan leaves as the client's)
    local conv, out, body
    local changed = EMPTY
    local full = false
    local planned = false
    if p.fast and not p.converting and type(p.body) == "table" then
        local plan = static.plan
        if plan == nil then
            plan = make_plan(inst, provider, target, override)
            static.plan = plan
        end

        if plan then
            planned, body = plan_body(plan, p.body, p.raw)
            out = planned and p.body or nil
        end
    end

    if not planned and p.converting then
        conv = convert.get(p.client_protocol, target)
        if not conv then
            return nil, 400, { error_msg = "no converter from " .. tostring(p.client_protocol)
                                           .. " to " .. tostring(target) }
        end

        local err
        state = state or {}
        out, err = conv.request(p.body, state)
        if not out then
            return nil, 400, { error_msg = err or "invalid protocol" }
        end

        full = true

    elseif not planned then
        out = type(p.body) == "table" and shallow_copy(p.body) or {}
    end

    if not planned then
        changed = {}
        shape(out, changed, p)
    end

    if full then
        body = encode(out)

    elseif not planned and next(changed) ~= nil then
        -- a lazy member must not be encoded (it would go out as {}): the splice keeps its bytes
        body = splice(p.raw, out, changed) or (not has_lazy(out) and encode(out)) or nil
    end

    if (full or next(changed) ~= nil) and not body then
        return nil, 500, { error_msg = "failed to encode the request body" }
    end

    -- headers
    local h
    if conv or type(provider.default_headers) == "table" then
        h = build_headers(auth, provider, conv, p.client_headers)

    else
        h = static.headers
        if not h then
            h = build_headers(auth, provider)
            static.headers = h
            -- the same headers as a list for the host's proxy() (no table read per request)
            static.header_plan = header_plan and header_plan(h) or false
        end
    end

    local conf = p.conf or DEFAULT_CONF
    local target_req = {
        url = url,
        method = target == "passthrough" and (p.method or "POST") or "POST",
        headers = h,
        header_plan = h == static.headers and static.header_plan or nil,
        body = body,
        timeout = timeout_of(conf),
        ssl_verify = conf.ssl_verify ~= false,
        keepalive = conf.keepalive ~= false,
        keepalive_timeout = (conf.keepalive_timeout or 60000) / 1000,
        keepalive_pool = conf.keepalive_pool or 30,
    }

    return target_req, { body = out, converter = conv, changed = body ~= nil }
end


return _M
