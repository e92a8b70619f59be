-- usage.lua -- token usage: normalised extraction per protocol, stream accounting, estimates.
--
-- Normalised usage is {prompt_tokens, completion_tokens, total_tokens, cache_read_input_tokens,
-- cache_creation_input_tokens, reasoning_tokens}, read per protocol as the reference (§2.5)
-- says. Streams report it in one place (the last OpenAI chunk, Responses'
-- response.completed) or two (Anthropic message_start + message_delta, merged, total
-- recomputed as prompt + completion).
--
-- A relayed stream is watched without decoding its events (scan_stream): sse.scan finds the
-- events that carry a usage object and only those are decoded; the text deltas are measured in
-- place (byte length of the JSON string, no copy) so that a stream cut short (client gone,
-- limit hit, provider died) or one that never reports usage is still accounted: prompt from the
-- request (or message_start), completion from the deltas seen, flagged `estimated`.
-- Estimates use ~4 bytes per token and at least one token per delta.
-- Cost: a few plain string.find calls per chunk (~0.2 us per OpenAI chunk with LuaJIT 2.1,
-- against ~2 us to decode it); once a stream is seen to be compact JSON the needles include
-- the colon ('"usage":{'), so the `"usage":null` of every OpenAI chunk costs nothing extra.
--
-- Non-streaming bodies (from_body_string) are not decoded whole either: the last `"usage": {`
-- object is decoded alone, in place by the host's decoder (or cut out with a balanced-brace
-- match), so an embeddings response of megabytes of floats costs one plain find; a full decode
-- is the fallback.
local cjson = require("cjson.safe")
local sse = require("sluice.ai.sse")

local type = type
local tonumber = tonumber
local pairs = pairs
local ipairs = ipairs
local find = string.find
local sub = string.sub
local byte = string.byte
local match = string.match
local ceil = math.ceil
local decode = cjson.decode

-- In a worker: core.json_decode(s, init) decodes the value at init in C (core/json_decode.c)
-- with no copy of it cut out first, and decodes events' data faster than lua-cjson;
-- core.sse_hits(s, key, first) finds a relayed stream's usage events at its ends;
-- sluice.find searches whole bodies in C (core/find.c) through the FFI. Plain LuaJIT (unit
-- tests) does all of it in Lua.
local json_at, c_hits, c_find, c_rfind
do
    local ok, core = pcall(require, "sluice.core")
    if ok and type(core) == "table" then
        json_at, c_hits = core.json_decode, core.sse_hits
    end

    local sfind = require("sluice.find")
    if sfind.native then
        c_find, c_rfind = sfind.find, sfind.rfind
    end
end


local function decode_data(s)
    if json_at then
        local ok, v = json_at(s)
        if ok then
            return v
        end
    end

    return decode(s)
end
local find_key_object = sse.find_key_object
local find_quoted = sse.find_quoted
local value_start = sse.value_start

local QUOTE, BACKSLASH, LBRACKET, RBRACKET = 34, 92, 91, 93
local BYTES_PER_TOKEN = 4
local MESSAGE_OVERHEAD_TOKENS = 3

local FIELDS = {
    "prompt_tokens", "completion_tokens", "total_tokens", "cache_read_input_tokens",
    "cache_creation_input_tokens", "reasoning_tokens",
}

-- Per protocol: keys whose string values are streamed output (the first one is the answer
-- text, collected when asked; the others only count), the marker of a tool call (nil: a
-- non-empty "tool_calls" array) and the markers of the terminal event.
local STREAM_MARKERS = {
    ["openai-chat"] = {
        text = { '"content"', '"arguments"', '"reasoning_content"', '"reasoning"' },
        tool_pre = "_calls",
        done = { "[DONE]" },
    },
    ["anthropic-messages"] = {
        text = { '"text"', '"partial_json"', '"thinking"' },
        tool = '"tool_use"',
        tool_pre = "_use",
        done = { "message_stop" },
    },
    ["openai-responses"] = {
        text = { '"delta"' },
        tool = '"function_call"',
        tool_pre = "_call",
        done = { '"response.completed"', '"response.incomplete"', '"response.failed"' },
    },
}
-- tool_pre: a part of the tool marker starting with a byte rare in these streams ("_"), found
-- first: string.find walks the first byte's occurrences, and "t" or "f" are everywhere.

-- The same keys followed by ':"', searched for directly once a stream is known to be compact
-- JSON (no space after colons), so a null or object value costs no extra search.
for _, m in pairs(STREAM_MARKERS) do
    m.ctext = {}
    for i, key in ipairs(m.text) do
        m.ctext[i] = key .. ':"'
    end
end

local USAGE_KEY, USAGE_COMPACT = '"usage"', '"usage":{'
-- Stream bytes scan_stream keeps back (by reference) before observing them: an OpenAI answer
-- of ~250 words fits, so most streams are never text-measured; longer ones are measured in
-- batches of this size, as they would be chunk by chunk.
local DEFER_MAX = 64 * 1024


local _M = { FIELDS = FIELDS }


local function num(v)
    if type(v) == "number" then
        return v
    end

    return 0
end


local function tab(v)
    if type(v) == "table" then
        return v
    end

    return nil
end


function _M.zero()
    return { prompt_tokens = 0, completion_tokens = 0, total_tokens = 0,
             cache_read_input_tokens = 0, cache_creation_input_tokens = 0,
             reasoning_tokens = 0 }
end


-- normalise(protocol, raw) -> usage, for a provider's usage object of that protocol.
local function normalise(protocol, raw)
    if protocol == "openai-chat" then
        local pd = tab(raw.prompt_tokens_details)
        local cd = tab(raw.completion_tokens_details)
        local p, c = num(raw.prompt_tokens), num(raw.completion_tokens)
        local cache_read = pd and num(pd.cached_tokens) or 0
        if cache_read == 0 then
            cache_read = num(raw.prompt_cache_hit_tokens)           -- DeepSeek
        end

        return {
            prompt_tokens = p,
            completion_tokens = c,
            total_tokens = type(raw.total_tokens) == "number" and raw.total_tokens or p + c,
            cache_read_input_tokens = cache_read,
            cache_creation_input_tokens = pd and num(pd.cache_creation_input_tokens) or 0,
            reasoning_tokens = cd and num(cd.reasoning_tokens) or 0,
        }
    end

    if protocol == "openai-responses" then
        local id = tab(raw.input_tokens_details)
        local od = tab(raw.output_tokens_details)
        local p, c = num(raw.input_tokens), num(raw.output_tokens)
        return {
            prompt_tokens = p,
            completion_tokens = c,
            total_tokens = type(raw.total_tokens) == "number" and raw.total_tokens or p + c,
            cache_read_input_tokens = id and num(id.cached_tokens) or 0,
            cache_creation_input_tokens = 0,
            reasoning_tokens = od and num(od.reasoning_tokens) or 0,
        }
    end

    if protocol == "openai-embeddings" then
        local p = num(raw.prompt_tokens)
        return {
            prompt_tokens = p,
            completion_tokens = 0,
            total_tokens = type(raw.total_tokens) == "number" and raw.total_tokens or p,
            cache_read_input_tokens = 0,
            cache_creation_input_tokens = 0,
            reasoning_tokens = 0,
        }
    end

    if protocol == "anthropic-messages" then
        local p, c = num(raw.input_tokens), num(raw.output_tokens)
        return {
            prompt_tokens = p,
            completion_tokens = c,
            total_tokens = p + c,
            cache_read_input_tokens = num(raw.cache_read_input_tokens),
            cache_creation_input_tokens = num(raw.cache_creation_input_tokens),
            reasoning_tokens = 0,
        }
    end

    if protocol == "bedrock-converse" then
        local p, c = num(raw.inputTokens), num(raw.outputTokens)
        return {
            prompt_tokens = p,
            completion_tokens = c,
            total_tokens = type(raw.totalTokens) == "number" and raw.totalTokens or p + c,
            cache_read_input_tokens = 0,
            cache_creation_input_tokens = 0,
            reasoning_tokens = 0,
        }
    end

    return nil
end
_M.normalise = normalise


-- extract(protocol, body) -> usage, raw | nil. `body` is a decoded non-streaming response.
function _M.extract(protocol, body)
    if type(body) ~= "table" then
        return nil
    end

    local raw = tab(body.usage)
    if not raw then
        return nil
    end

    local u = normalise(protocol, raw)
    if not u then
        return nil
    end

    return u, raw
end


local LBRACE, RBRACE, COLON, COMMA = 123, 125, 58, 44


-- The object at p (a "{") of the shape providers' usage has: compact, keys without escapes,
-- values non-negative integers (at most 15 digits, no leading zero) or such objects. Returns
-- the table cjson would build (same keys, values and insertion order) and the position after
-- the "}", or nil for anything else (the caller decodes with cjson). cjson.decode costs
-- ~6,000 instructions even for a 60-byte object, mostly its set-up and strtod.
local function parse_counts(s, p, depth)
    if depth > 2 then
        return nil
    end

    local t = {}
    p = p + 1
    if byte(s, p) == RBRACE then
        return t, p + 1
    end

    while true do
        if byte(s, p) ~= QUOTE then
            return nil
        end

        local e = find(s, '"', p + 1, true)
        if not e or byte(s, e + 1) ~= COLON then
            return nil
        end

        local key = sub(s, p + 1, e - 1)
        if find(key, "\\", 1, true) then
            return nil
        end

        local v = e + 2
        local c = byte(s, v)
        local val
        if c == LBRACE then
            val, p = parse_counts(s, v, depth + 1)
            if not val then
                return nil
            end

        elseif c and c >= 48 and c <= 57 then
            p = v + 1
            c = byte(s, p)
            while c and c >= 48 and c <= 57 do
                p = p + 1
                c = byte(s, p)
            end

            if p - v > 15 or (byte(s, v) == 48 and p - v > 1) then
                return nil
            end

            val = tonumber(sub(s, v, p - 1))

        else
            return nil
        end

        t[key] = val
        c = byte(s, p)
        if c == RBRACE then
            return t, p + 1
        end

        if c ~= COMMA then
            return nil
        end

        p = p + 1
    end
end


local function decode_counts(obj)
    local t, e = parse_counts(obj, 1, 0)
    if t and e == #obj + 1 then
        return t
    end

    return decode(obj)
end
_M.decode_counts = decode_counts


-- Whether a decoded usage object looks like `protocol`'s (guards the cut-out object in
-- from_body_string against a nested key that happens to be named "usage").
local function plausible(protocol, raw)
    if protocol == "openai-chat" or protocol == "openai-embeddings" then
        return raw.prompt_tokens ~= nil or raw.total_tokens ~= nil
    end

    if protocol == "openai-responses" or protocol == "anthropic-messages" then
        return raw.input_tokens ~= nil or raw.output_tokens ~= nil
    end

    if protocol == "bedrock-converse" then
        return raw.inputTokens ~= nil
    end

    return false
end


local function last_usage_object(s)
    local last_brace
    local p, brace = find_key_object(s, USAGE_KEY, 1)
    while p do
        last_brace = brace
        p, brace = find_key_object(s, USAGE_KEY, brace)
    end

    return last_brace
end


-- from_body_string(protocol, s) -> usage, raw, decoded_body_or_nil | nil[, nil, nil, err]
-- (err only when the body is not a JSON object, so the caller can say so; a JSON body without
-- usage gives a plain nil).
-- Providers put usage last in the body, so the last `"usage": {` is the top-level one.
function _M.from_body_string(protocol, s)
    if type(s) ~= "string" or s == "" then
        return nil
    end

    -- the last `"usage"` in the body, found from the end (sluice.find's rfind); when that one
    -- is not a key with an object value, the last one that is, from the start
    local last_brace
    local p = c_rfind and c_rfind(s, USAGE_KEY)
    if p then
        local q, b = find_key_object(s, USAGE_KEY, p)
        if q == p then
            last_brace = b
        end
    end

    if not last_brace then
        last_brace = last_usage_object(s)
    end

    if last_brace then
        local raw
        if json_at then
            local ok, v = json_at(s, last_brace)
            raw = ok and v or nil
        end

        if raw == nil then
            local obj = match(s, "^%b{}", last_brace)
            raw = obj and decode_counts(obj)
        end

        if type(raw) == "table" and plausible(protocol, raw) then
            local u = normalise(protocol, raw)
            if u then
                return u, raw
            end
        end
    end

    local body = decode(s)
    if type(body) ~= "table" then
        return nil, nil, nil, "not a JSON object"
    end

    local u, raw = _M.extract(protocol, body)
    if not u then
        return nil
    end

    return u, raw, body
end


-- merge(into, u): later non-zero values win; total is at least prompt + completion (Anthropic
-- splits usage over two events; fixes APISIX #13662). Returns `into`.
local function merge(into, u)
    for _, k in ipairs(FIELDS) do
        local v = u[k]
        if type(v) == "number" and v > 0 then
            into[k] = v

        elseif into[k] == nil then
            into[k] = 0
        end
    end

    local sum = into.prompt_tokens + into.completion_tokens
    if sum > into.total_tokens then
        into.total_tokens = sum
    end

    return into
end
_M.merge = merge


local function merge_raw(into, raw)
    for k, v in pairs(raw) do
        if type(v) ~= "number" or v > 0 or into[k] == nil then
            into[k] = v
        end
    end

    return into
end


-- from_event(protocol, event_name, obj) -> usage, raw, final | nil, for one decoded stream
-- event of the provider's protocol. `final` says the stream's usage is now complete.
function _M.from_event(protocol, event_name, obj)
    if type(obj) ~= "table" then
        return nil
    end

    if protocol == "openai-chat" then
        local raw = tab(obj.usage)
        if not raw then
            return nil
        end

        return normalise(protocol, raw), raw, true
    end

    if protocol == "anthropic-messages" then
        local t = type(obj.type) == "string" and obj.type or event_name
        if t == "message_start" then
            local msg = tab(obj.message)
            local raw = msg and tab(msg.usage)
            if not raw then
                return nil
            end

            return normalise(protocol, raw), raw, false
        end

        if t == "message_delta" then
            local raw = tab(obj.usage)
            if not raw then
                return nil
            end

            return normalise(protocol, raw), raw, true
        end

        return nil
    end

    if protocol == "openai-responses" then
        local t = type(obj.type) == "string" and obj.type or event_name
        if t == "response.completed" or t == "response.incomplete" or t == "response.failed" then
            local resp = tab(obj.response)
            local raw = resp and tab(resp.usage)
            if not raw then
                return nil
            end

            return normalise(protocol, raw), raw, true
        end

        return nil
    end

    return nil
end


-- A stream accumulator. `protocol` is the provider's (the one on the wire).
function _M.new_stream(protocol, collect_text)
    return {
        protocol = protocol,
        markers = STREAM_MARKERS[protocol],
        usage = nil,            -- merged normalised usage so far
        raw = nil,              -- merged raw usage so far
        final = false,          -- usage complete (last usage event seen)
        text_bytes = 0,         -- bytes of streamed output text (JSON-escaped)
        deltas = 0,             -- non-empty text deltas seen
        tool_call = false,
        done = false,           -- terminal event seen
        texts = collect_text and {} or nil,
        pending = {},           -- complete regions not observed yet (scan_stream, settle)
        pending_bytes = 0,
    }
end


function _M.add(acc, u, raw, final)
    if not acc.usage then
        acc.usage = merge(_M.zero(), u)
        acc.raw = merge_raw({}, raw or {})

    else
        merge(acc.usage, u)
        merge_raw(acc.raw, raw or {})
    end

    if final then
        acc.final = true
    end
end


-- The closing quote at or after p of a string whose first quote found was escaped.
local function string_end_escaped(s, p)
    while true do
        local e = find(s, '"', p, true)
        if not e then
            return nil
        end

        local b = e - 1
        while byte(s, b) == BACKSLASH do
            b = b - 1
        end

        if (e - 1 - b) % 2 == 0 then
            return e
        end

        p = e + 1
    end
end


-- End of the JSON string whose opening quote is at q - 1: the position of the closing quote,
-- or nil when the string is not closed in s. Loop-free unless the string has an escaped quote
-- (loops in these per-chunk helpers make LuaJIT abort the caller's trace).
local function string_end(s, q)
    local e = find(s, '"', q, true)
    if e and byte(s, e - 1) == BACKSLASH then
        return string_end_escaped(s, q)
    end

    return e
end


-- Measure the string values of `key` at or after init in region: adds their lengths and counts
-- the non-empty ones; keeps the decoded text too when `collect`. Returns `hits` plus the
-- number of non-empty values. Tail-recursive: one call per value, no loop.
local function measure(acc, region, key, collect, compact, init, hits)
    local p = find_quoted(region, key, init)
    if not p then
        return hits
    end

    local klen = #key
    local v, c
    if compact then
        v, c = p + klen - 1, QUOTE             -- key is '"name":"', v at the opening quote

    else
        v, c = value_start(region, p, klen)
    end

    if not v or c ~= QUOTE then
        return measure(acc, region, key, collect, compact, p + klen, hits)
    end

    local e = string_end(region, v + 1)
    if not e then
        return hits
    end

    local len = e - v - 1
    if len > 0 then
        hits = hits + 1
        acc.text_bytes = acc.text_bytes + len
        acc.deltas = acc.deltas + 1
        local texts = collect and acc.texts
        if texts then
            local text = decode(sub(region, v, e))
            if type(text) == "string" then
                texts[#texts + 1] = text
            end
        end
    end

    return measure(acc, region, key, collect, compact, e + 1, hits)
end


-- Whether region holds `"tool_calls": [ {` (a non-empty tool_calls array) at or after init.
local function has_tool_calls_array(region, init)
    local p = find_quoted(region, '"tool_calls"', init)
    if not p then
        return false
    end

    local v, c = value_start(region, p, 12)
    if v and c == LBRACKET then
        local q = v + 1
        local b = byte(region, q)
        while b == 32 or b == 9 or b == 10 or b == 13 do
            q = q + 1
            b = byte(region, q)
        end

        if b and b ~= RBRACKET then
            return true
        end
    end

    return has_tool_calls_array(region, p + 12)
end


-- Tool-call markers of a region, until the first one is seen.
local function observe_tools(acc, region)
    local m = acc.markers
    if acc.tool_call or not m or not find(region, m.tool_pre, 1, true) then
        return
    end

    if m.tool then
        if find_quoted(region, m.tool, 1) then
            acc.tool_call = true
        end

    elseif has_tool_calls_array(region, 1) then
        acc.tool_call = true
    end
end


-- observe_region(acc, region): text and tool-call markers of complete events, by plain search
-- (no decoding). Each string.find is a C call the JIT does not compile, so the calls per chunk
-- are kept few: the answer-text key first, the other keys (tool arguments, reasoning) only for
-- regions without answer text; tool calls until the first one is seen. Terminal events are
-- looked for once, in the last region (check_done).
local function observe_region(acc, region, compact)
    local m = acc.markers
    if not m or region == "" then
        return
    end

    acc.last = region
    local keys = compact and m.ctext or m.text
    if measure(acc, region, keys[1], true, compact, 1, 0) == 0 then
        for i = 2, #keys do
            measure(acc, region, keys[i], false, compact, 1, 0)
        end
    end

    observe_tools(acc, region)
end
_M.observe_region = observe_region


-- settle(acc): observes the regions scan_stream kept back. The text is measured only when it
-- can matter: the provider's final usage has not arrived (an estimate may be needed), text is
-- being collected, or the stream is still running (called at the DEFER_MAX cap); otherwise
-- only tool calls are looked for, one find per region.
local function settle(acc, running)
    local pend = acc.pending
    local n = pend and #pend or 0
    if n == 0 then
        return
    end

    local full = running or not acc.final or acc.texts
    local compact = acc.compact
    for i = 1, n do
        if full then
            observe_region(acc, pend[i], compact)

        else
            observe_tools(acc, pend[i])
        end

        pend[i] = nil
    end

    acc.pending_bytes = 0
end
_M.settle = settle


-- scan_stream(acc, sse_state, chunk) -> region. The relay path: finds and decodes only the
-- usage-carrying events, measures the rest in place.
function _M.scan_stream(acc, st, chunk)
    local compact = acc.compact
    local region, hits = sse.scan(st, chunk, USAGE_KEY, compact and USAGE_COMPACT)
    if hits then
        for _, ev in ipairs(hits) do
            local obj = decode_data(ev.data)
            local u, raw, final = _M.from_event(acc.protocol, ev.event, obj)
            if u then
                _M.add(acc, u, raw, final)
            end
        end
    end

    if region == "" or not acc.markers then
        return region
    end

    if compact == nil and find(region, '":', 1, true) then
        -- decided on the first region with a key (its usage was searched the slow way), from
        -- its first event or so: a stream's JSON is formatted one way throughout, and a miss
        -- of '": ' is a walk over every '"' of what is searched
        -- (find_quoted: ':' and ' ' are far rarer than '"' to walk over)
        local head = #region > 1024 and sub(region, 1, 1024) or region
        acc.compact = not (find_quoted(head, '": ', 1) or find_quoted(head, '" :', 1))
    end

    -- kept back by reference (no copy) and observed at the end, where a stream that reported
    -- its usage needs no text measurement at all; past DEFER_MAX bytes, observed now
    acc.last = region
    local pend = acc.pending
    pend[#pend + 1] = region
    acc.pending_bytes = acc.pending_bytes + #region
    if acc.pending_bytes > DEFER_MAX then
        settle(acc, true)
    end

    return region
end


-- scan_relayed(acc, s) -> true when the whole relayed stream s (complete events) is accounted
-- from its ends: the usage events among its first two events (Anthropic's message_start) and
-- the last one (the final usage of every protocol), and a tool call looked for by one search
-- for its marker. Nothing in between is read, which is most of a long answer. false, with acc
-- untouched, when that is not enough (no final usage there, text to collect, no C scanner):
-- the caller scans s whole (scan_stream, finish_stream).
function _M.scan_relayed(acc, s)
    local m = acc.markers
    if not c_hits or not c_find or acc.texts or not m or acc.usage then
        return false
    end

    local hits = c_hits(s, USAGE_KEY, 2)
    if not hits then
        return false
    end

    local found, final = {}, false
    for _, ev in ipairs(hits) do
        local u, raw, fin = _M.from_event(acc.protocol, ev.event, decode_data(ev.data))
        if u then
            found[#found + 1] = { u, raw, fin }
            final = final or fin
        end
    end

    if not final then
        return false
    end

    for _, f in ipairs(found) do
        _M.add(acc, f[1], f[2], f[3])
    end

    if c_find(s, m.tool_pre) then
        observe_tools(acc, s)       -- the marker's rare part is there: the exact check
    end

    acc.last = s
    return true
end


-- Whether s holds needle. "[DONE]" is looked for from its "D": string.find stops at every
-- occurrence of a needle's first byte, and an OpenAI stream has a "[" in every event.
local function find_done(s, needle)
    if needle ~= "[DONE]" then
        return find(s, needle, 1, true)
    end

    local q = find(s, "DONE]", 2, true)
    while q do
        if byte(s, q - 1) == LBRACKET then
            return q - 1
        end

        q = find(s, "DONE]", q + 1, true)
    end

    return nil
end


-- check_done(acc, region): whether region holds the protocol's terminal event.
local function check_done(acc, region)
    local m = acc.markers
    if acc.done or not m or not region then
        return
    end

    for _, d in ipairs(m.done) do
        if find_done(region, d) then
            acc.done = true
            return
        end
    end
end


-- finish_stream(acc) at end of stream: the flushed tail counts too.
function _M.finish_stream(acc, st)
    check_done(acc, acc.last)
    settle(acc)
    local events = sse.flush(st)
    for _, ev in ipairs(events) do
        if find(ev.data, '"usage"', 1, true) then
            local u, raw, final = _M.from_event(acc.protocol, ev.event, decode(ev.data))
            if u then
                _M.add(acc, u, raw, final)
            end
        end

        local region = "data: " .. ev.data .. "\n\n"
        observe_region(acc, region)
        check_done(acc, region)
    end
end


-- observe_event(acc, event_name, obj, data): the conversion path, where each event is decoded
-- anyway. Usage from the object; text and tool calls from the raw data.
function _M.observe_event(acc, event_name, obj, data)
    local u, raw, final = _M.from_event(acc.protocol, event_name, obj)
    if u then
        _M.add(acc, u, raw, final)
    end

    if data then
        observe_region(acc, data)
        check_done(acc, data)
    end
end


local function estimate_bytes(n)
    if n <= 0 then
        return 0
    end

    return ceil(n / BYTES_PER_TOKEN)
end
_M.estimate_bytes = estimate_bytes


-- Keys whose string values are not prompt text (ids, media, URLs).
local SKIP_KEYS = {
    data = true, url = true, image_url = true, id = true, tool_call_id = true,
    tool_use_id = true, type = true, role = true, media_type = true, file_data = true,
}


local function count_strings(v, depth)
    if depth > 32 then
        return 0
    end

    local t = type(v)
    if t == "string" then
        return #v
    end

    if t ~= "table" then
        return 0
    end

    local n = 0
    for k, item in pairs(v) do
        if not SKIP_KEYS[k] then
            n = n + count_strings(item, depth + 1)
        end
    end

    return n
end


-- estimate_prompt(body) -> tokens: the text the client sent (messages, system, input,
-- instructions, tools), ~4 bytes a token plus a few per message.
function _M.estimate_prompt(body)
    if type(body) ~= "table" then
        return 0
    end

    local bytes = 0
    local messages = 0
    for _, key in ipairs({ "messages", "system", "input", "instructions", "tools", "prompt" }) do
        local v = body[key]
        if v ~= nil then
            bytes = bytes + count_strings(v, 0)
            if type(v) == "table" then
                messages = messages + #v
            end
        end
    end

    return estimate_bytes(bytes) + messages * MESSAGE_OVERHEAD_TOKENS
end


-- finish(acc, prompt_estimate) -> usage, raw, estimated. Exact when the provider's final usage
-- arrived; otherwise what it did report, completed by estimates.
function _M.finish(acc, prompt_estimate)
    settle(acc)
    if acc.final and acc.usage then
        return acc.usage, acc.raw, false
    end

    local u = acc.usage or _M.zero()
    local est = estimate_bytes(acc.text_bytes)
    if acc.deltas > est then
        est = acc.deltas
    end

    if u.completion_tokens < est then
        u.completion_tokens = est
    end

    if u.prompt_tokens == 0 then
        u.prompt_tokens = prompt_estimate or 0
    end

    u.total_tokens = u.prompt_tokens + u.completion_tokens
    return u, acc.raw, true
end


-- Response text of a stream, when collected.
function _M.text(acc)
    if not acc.texts then
        return nil
    end

    settle(acc)
    return table.concat(acc.texts)
end


return _M
