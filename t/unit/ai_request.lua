-- ai_request: ai/request.lua (URL, query, headers, body shaping and splicing for each
-- provider) and, with a stub pdk, the ai-proxy plugin's phases end to end: errors with their
-- documented status and body, streaming usage, conversions, limits, cut streams.
local t = require("t.unit.tap")
local cjson = require("cjson.safe")
local request = require("sluice.ai.request")
local providers = require("sluice.ai.providers")
local convert = require("sluice.ai.convert")

local ok, is, is_deeply, like = t.ok, t.is, t.is_deeply, t.like
local decode = cjson.decode


local function build(p)
    p.provider = p.provider or assert(providers.get(p.instance.provider))
    p.client_protocol = p.client_protocol or "openai-chat"
    p.target_protocol = p.target_protocol or p.client_protocol
    if p.raw == nil and p.body == nil then
        p.raw = '{"model":"gpt-4","messages":[{"role":"user","content":"hi"}]}'
    end

    if p.body == nil then
        p.body = decode(p.raw)
    end

    return request.build(p)
end


------------------------------------------------------------------------------------------------
-- URLs
------------------------------------------------------------------------------------------------
do
    local function url(inst, extra)
        local p = extra or {}
        p.instance = inst
        local r, s, b = build(p)
        return r and r.url or (s .. " " .. cjson.encode(b))
    end

    is(url({ provider = "openai" }), "https://api.openai.com/v1/chat/completions", "openai chat")
    is(url({ provider = "openai" }, { client_protocol = "openai-responses",
        raw = '{"input":"x"}' }), "https://api.openai.com/v1/responses", "openai responses")
    is(url({ provider = "openai" }, { client_protocol = "openai-embeddings",
        raw = '{"input":"x"}' }), "https://api.openai.com/v1/embeddings", "openai embeddings")
    is(url({ provider = "deepseek" }), "https://api.deepseek.com/chat/completions", "deepseek")
    is(url({ provider = "aimlapi" }), "https://api.aimlapi.com/chat/completions", "aimlapi")
    is(url({ provider = "openrouter" }), "https://openrouter.ai/api/v1/chat/completions",
       "openrouter")
    is(url({ provider = "gemini" }),
       "https://generativelanguage.googleapis.com/v1beta/openai/chat/completions", "gemini")
    is(url({ provider = "anthropic" }, { target_protocol = "anthropic-messages",
        converting = true }), "https://api.anthropic.com/v1/messages", "anthropic messages")
    is(url({ provider = "openai-compatible", override = { endpoint = "http://localhost:1980" } }),
       "http://localhost:1980/v1/chat/completions", "endpoint host only: provider path")
    is(url({ provider = "openai-compatible", override = { endpoint = "http://h:80/" } }),
       "http://h/v1/chat/completions", "default port omitted, lone slash is no path")
    is(url({ provider = "openai", override = { endpoint = "https://proxy:8443/custom/path" } }),
       "https://proxy:8443/custom/path", "endpoint with its own path")
    is(url({ provider = "azure-openai", override = { endpoint =
        "https://r.openai.azure.com/openai/deployments/gpt/chat/completions"
        .. "?api-version=2024-02-01" }
        }), "https://r.openai.azure.com/openai/deployments/gpt/chat/completions"
        .. "?api-version=2024-02-01", "azure endpoint path and query kept")
    is(url({ provider = "azure-openai", override = { endpoint = "https://r.example.com" } }),
       "https://r.example.com/completions", "azure without a path: /completions")
    is(url({ provider = "openai-compatible" }),
       '500 {"error_msg":"provider openai-compatible has no default endpoint: set '
       .. 'override.endpoint"}', "no host: 500")
    is(url({ provider = "openai", override = { endpoint = "ftp://x" } }),
       '500 {"error_msg":"invalid endpoint: unsupported scheme ftp"}', "bad endpoint: 500")
    is(url({ provider = "openai" }, { client_protocol = "passthrough",
        raw = '{"prompt":"cat"}', uri = "/v1/images/generations" }),
       "https://api.openai.com/v1/images/generations", "passthrough: client path")
    is(url({ provider = "openai", override = { endpoint = "http://h:1/fixed" } },
        { client_protocol = "passthrough", raw = '{"prompt":"cat"}', uri = "/v1/images" }),
       "http://h:1/fixed", "passthrough: endpoint path wins")
    is(url({ provider = "openai" }, { client_protocol = "passthrough", raw = '{"a":1}' }),
       '400 {"error_msg":"could not resolve upstream path: ensure the route or request body '
       .. 'specifies a model, or that override.endpoint includes a path"}', "no path: 400")
end


------------------------------------------------------------------------------------------------
-- query
------------------------------------------------------------------------------------------------
do
    local function url(inst, extra)
        local p = extra or {}
        p.instance = inst
        return build(p).url
    end

    is(url({ provider = "openai", auth = { query = { key = "s e/c" } } }),
       "https://api.openai.com/v1/chat/completions?key=s%20e%2Fc", "auth.query escaped")
    is(url({ provider = "openai", auth = { query = { b = "2", a = "1" } } }),
       "https://api.openai.com/v1/chat/completions?a=1&b=2", "auth.query sorted")
    is(url({ provider = "openai", auth = { query = { key = "k", v = "0" } },
             override = { endpoint = "http://h/p?v=1&x=y" } }),
       "http://h/p?key=k&v=1&x=y", "endpoint query overrides auth.query on a clash")
    local pt = { client_protocol = "passthrough", raw = '{"a":1}', uri = "/u",
                 query = "x=client&key=steal&new=1" }
    is(url({ provider = "openai", auth = { query = { key = "k" } },
             override = { endpoint = "http://h?x=ep" } }, pt),
       "http://h/u?key=k&x=client&new=1", "passthrough: client beats endpoint, not auth.query")
    is(url({ provider = "openai" }, { query = "x=1" }),
       "https://api.openai.com/v1/chat/completions",
       "client query not forwarded for non-passthrough protocols")
    is(request.escape("a b&c=d~"), "a%20b%26c%3Dd~", "escape")
end


------------------------------------------------------------------------------------------------
-- headers
------------------------------------------------------------------------------------------------
do
    local r = build({ instance = { provider = "openai", auth = { header = {
        Authorization = "Bearer gw", ["X-Org"] = "o" } } } })
    local h = r.headers
    is(h.authorization, "Bearer gw", "auth.header sets authorization (lowercased)")
    is(h["x-org"], "o", "other auth headers")
    is(h["content-type"], "application/json", "JSON content type")
    for _, name in ipairs({ "cookie", "x-api-key", "api-key", "proxy-authorization",
                            "accept-encoding", "x-goog-api-key" }) do
        is(h[name], false, "client " .. name .. " not sent")
    end

    r = build({ instance = { provider = "openai", auth = {} } })
    is(r.headers.authorization, false, "client Authorization removed even without auth.header")

    r = build({ instance = { provider = "anthropic", auth = { header = { ["x-api-key"] = "k" } } },
                client_protocol = "anthropic-messages",
                raw = '{"model":"c","max_tokens":1,"messages":[{"role":"user","content":"x"}]}',
                client_headers = { ["anthropic-version"] = "2023-01-01",
                                   ["anthropic-beta"] = "b" } })
    is(r.headers["x-api-key"], "k", "anthropic native: x-api-key")
    is(r.headers["anthropic-version"], nil, "client's anthropic-version forwarded by the core")
    is(r.headers["anthropic-beta"], nil, "client's anthropic-beta forwarded")
    is(r.body, nil, "untouched body: client bytes forwarded")

    r = build({ instance = { provider = "anthropic", auth = { header = { ["x-api-key"] = "k" } } },
                client_protocol = "anthropic-messages",
                raw = '{"model":"c","max_tokens":1,"messages":[{"role":"user","content":"x"}]}',
                client_headers = {} })
    is(r.headers["anthropic-version"], "2023-06-01", "default anthropic-version")

    r = build({ instance = { provider = "openai-compatible", auth = { header = {
        ["x-api-key"] = "gw" } }, override = { endpoint = "http://h" } },
        client_protocol = "anthropic-messages", target_protocol = "openai-chat", converting = true,
        raw = '{"model":"c","messages":[{"role":"user","content":"x"}]}',
        client_headers = { ["anthropic-version"] = "v", ["anthropic-beta"] = "b",
                           ["x-stainless-os"] = "linux", ["user-agent"] = "sdk" } })
    is(r.headers.authorization, "Bearer gw", "A2O: x-api-key -> Bearer")
    is(r.headers["x-api-key"], false, "A2O: x-api-key not sent")
    is(r.headers["anthropic-version"], false, "A2O: anthropic-* dropped")
    is(r.headers["anthropic-beta"], false, "A2O: anthropic-beta dropped")
    is(r.headers["x-stainless-os"], false, "A2O: x-stainless-* dropped")
    is(r.headers["user-agent"], nil, "other client headers forwarded")

    r = build({ instance = { provider = "anthropic", auth = { header = {
        Authorization = "Bearer sk-ant" } } }, target_protocol = "anthropic-messages",
        converting = true, client_headers = { ["openai-organization"] = "org" } })
    is(r.headers["x-api-key"], "sk-ant", "O2A: Bearer -> x-api-key")
    is(r.headers.authorization, false, "O2A: authorization not sent")
    is(r.headers["anthropic-version"], "2023-06-01", "O2A: anthropic-version")
    is(r.headers["openai-organization"], false, "O2A: openai-* dropped")
end


------------------------------------------------------------------------------------------------
-- body shaping
------------------------------------------------------------------------------------------------
do
    local raw = '{ "model": "gpt-4", "seed": 12345678901234567890, "tools": [],'
                .. ' "messages": [{"role":"user","content":"a \\"}{[ b"}], "stream": true }'
    local body = decode(raw)
    local before = t.dump(body)
    local r, info = build({ instance = { provider = "openai", options = { model = "gpt-4o",
        temperature = 0.2 } }, raw = raw, body = body })
    is(t.dump(body), before, "client body table not modified")
    is(r.body, '{"model":"gpt-4o","seed": 12345678901234567890,"tools": [],"messages": '
               .. '[{"role":"user","content":"a \\"}{[ b"}],"stream": true,'
               .. '"stream_options":{"include_usage":true},"temperature":0.2}',
       "spliced: changed keys replaced in place, new ones appended, the rest byte for byte")
    is(info.body.model, "gpt-4o", "info.body is the final table")
    ok(info.changed, "changed")

    r = build({ instance = { provider = "openai" } })
    is(r.body, nil, "nothing changed: no body (client bytes go as they are)")

    r = build({ instance = { provider = "openai" }, raw =
        '{"stream":true,"stream_options":{"include_usage":true},"messages":[]}' })
    is(r.body, nil, "include_usage already requested: untouched")

    r = build({ instance = { provider = "openai" }, raw =
        '{"stream":true,"stream_options":{"include_obfuscation":false},"messages":[]}' })
    is_deeply(decode(r.body).stream_options, { include_obfuscation = false, include_usage = true },
              "client stream_options kept, include_usage added")

    r = build({ instance = { provider = "openai", options = { stream = true } } })
    is(decode(r.body).stream_options.include_usage, true,
       "options.stream also gets include_usage (APISIX quirk fixed)")

    r = build({ instance = { provider = "openai" }, client_protocol = "openai-responses",
                raw = '{"input":"x","stream":true}' })
    is(r.body, nil, "responses: no stream_options")

    -- max_tokens mapping per provider
    local function mt(provider, proto, raw)
        local r2 = build({ instance = { provider = provider, override = {
            llm_options = { max_tokens = 77 } }, override_x = true,
            options = nil }, client_protocol = proto or "openai-chat",
            raw = raw or '{"max_tokens":5,"messages":[]}' })
        return decode(r2.body)
    end

    local b = mt("openai")
    ok(b.max_completion_tokens == 77 and b.max_tokens == nil,
       "openai chat: max_completion_tokens, client max_tokens removed")
    b = mt("openai", "openai-responses", '{"input":"x","max_output_tokens":1}')
    is(b.max_output_tokens, 77, "openai responses: max_output_tokens (forced)")
    is(mt("deepseek").max_tokens, 77, "deepseek: max_tokens")
    is(mt("openrouter").max_tokens, 77, "openrouter: max_tokens")
    is(mt("aimlapi").max_tokens, 77, "aimlapi: max_tokens")
    b = mt("gemini")
    ok(b.max_completion_tokens == 77 and b.max_tokens == 5, "gemini: max_completion_tokens")
    b = mt("openai", "openai-embeddings", '{"input":"x"}')
    is(b, nil, "embeddings: no max_tokens field, body untouched")

    -- azure removes the model
    r = build({ instance = { provider = "azure-openai", override = { endpoint = "https://a/x" },
                options = { model = "gpt" } } })
    is(decode(r.body).model, nil, "azure: model removed even when set by options")
    r = build({ instance = { provider = "azure-openai", override = { endpoint = "https://a/x" } },
                raw = '{"messages":[]}' })
    is(r.body, nil, "azure without a model: untouched")

    -- request_body override
    local inst = { provider = "openai", override = { request_body = { ["openai-chat"] = {
        temperature = 0.9, metadata = { a = "patch", b = "patch" }, stop = { "x" } } } } }
    r = build({ instance = inst, raw =
        '{"temperature":0.1,"metadata":{"a":"client","c":"client"},"messages":[]}' })
    is_deeply(decode(r.body), { temperature = 0.1, metadata = { a = "client", b = "patch",
        c = "client" }, stop = { "x" }, messages = {} }, "deep merge fills gaps only")
    inst.override.request_body_force_override = true
    r = build({ instance = inst, raw =
        '{"temperature":0.1,"metadata":{"a":"client","c":"client"},"messages":[]}' })
    is_deeply(decode(r.body), { temperature = 0.9, metadata = { a = "patch", b = "patch",
        c = "client" }, stop = { "x" }, messages = {} }, "force override")
    r = build({ instance = { provider = "openai", override = { request_body = {
        ["anthropic-messages"] = { x = 1 } } } } })
    is(r.body, nil, "override for another protocol ignored")
    r = build({ instance = { provider = "openai", override = { llm_options = { max_tokens = 9 },
        request_body = { ["openai-chat"] = { max_completion_tokens = 3 } },
        request_body_force_override = true } } })
    is(decode(r.body).max_completion_tokens, 3, "request_body runs after llm_options")

    -- conversion: whole body encoded
    r = build({ instance = { provider = "openai-compatible", override = {
        endpoint = "http://h" }, options = { model = "gpt-4o" } },
        client_protocol = "anthropic-messages", target_protocol = "openai-chat", converting = true,
        raw = '{"model":"claude","max_tokens":10,"stream":true,"messages":[{"role":"user",'
              .. '"content":"hi"}]}' })
    is_deeply(decode(r.body), { model = "gpt-4o", max_completion_tokens = 10, stream = true,
        stream_options = { include_usage = true }, messages = { { role = "user",
        content = "hi" } } }, "converted body with options applied")
    local _, s2, b2 = build({ instance = { provider = "openai" },
        client_protocol = "anthropic-messages", target_protocol = "openai-chat", converting = true,
        raw = '{"model":"claude"}' })
    is(s2, 400, "conversion failure: 400")
    is_deeply(b2, { error_msg = "missing messages" }, "conversion failure body")

    local st = {}
    r = build({ instance = { provider = "anthropic", override = { llm_options = {
        max_tokens = 321 } } }, target_protocol = "anthropic-messages", converting = true,
        state = st, raw = '{"model":"claude","stream":true,"stream_options":{"include_usage":'
        .. 'true},"messages":[{"role":"user","content":"hi"}]}' })
    b = decode(r.body)
    is(b.max_tokens, 321, "O2A: llm_options.max_tokens -> max_tokens")
    is(b.stream_options, nil, "O2A: no stream_options sent to Anthropic")
    is(st.include_usage, true, "converter state filled")

    -- transport settings
    r = build({ instance = { provider = "openai" }, conf = { timeout = 1500, ssl_verify = false,
        keepalive = false, keepalive_timeout = 5000, keepalive_pool = 7 } })
    is_deeply({ r.timeout, r.ssl_verify, r.keepalive, r.keepalive_timeout, r.keepalive_pool,
                r.method }, { { connect = 1.5, send = 1.5, read = 1.5 }, false, false, 5, 7,
                "POST" }, "timeouts (s), TLS, keepalive, POST")
    r = build({ instance = { provider = "openai" }, conf = {} })
    is_deeply({ r.timeout.read, r.ssl_verify, r.keepalive, r.keepalive_timeout,
                r.keepalive_pool }, { 30, true, true, 60, 30 }, "defaults")
    r = build({ instance = { provider = "openai" }, client_protocol = "passthrough",
                raw = '{"a":1}', uri = "/x", method = "PUT" })
    is(r.method, "PUT", "passthrough keeps the client's method")

    is(request.model({ options = { model = "o" } }, { model = "c" }), "o", "options.model wins")
    is(request.model({}, { model = "c" }), "c", "client model")
end


------------------------------------------------------------------------------------------------
-- splicing
------------------------------------------------------------------------------------------------
do
    local spans = request.top_level_spans(' { "a" : 1 , "b\\"q":{"x":[1,"}"]}, "c":"s" } ')
    is_deeply(spans and { spans[1][1], spans[2][1], spans[3][1] }, { "a", 'b"q', "c" },
              "keys, escaped key decoded")
    is(request.top_level_spans("{}") and #request.top_level_spans("{}"), 0, "empty object")
    is(request.top_level_spans("[1]"), nil, "array: nil")
    is(request.top_level_spans('{"a":1'), nil, "truncated: nil")
    is(request.top_level_spans('{"a":1} x'), nil, "trailing bytes: nil")
    is(request.top_level_spans('{"a" 1}'), nil, "no colon: nil")
    is(request.top_level_spans('{"a":"x}'), nil, "unterminated string: nil")
    is(request.splice('{"a":1,"a":2,"b":3}', { a = 9 }, { a = true }), '{"a":9,"b":3}',
       "duplicate keys collapse to one")
    is(request.splice('{"a":1,"b":2}', { b = nil }, { b = true }), '{"a":1}', "removed key")
    is(request.splice("nope", {}, { a = true }), nil, "unparseable: nil (caller encodes)")
    local r = build({ instance = { provider = "openai", options = { model = "m" } },
                      raw = "[1]", body = { messages = {} } })
    is_deeply(decode(r.body), { model = "m", messages = {} }, "fallback to a full encode")
    is_deeply(request.merge({ a = { b = 1 } }, { a = { c = 2 } }), { a = { b = 1, c = 2 } },
              "merge objects")
    is_deeply(request.merge({ a = { 1, 2 } }, { a = { 3 } }, true), { a = { 3 } },
              "arrays replaced")
    ok(convert.is_array(convert.array()), "array marker")
end


------------------------------------------------------------------------------------------------
-- the body plan (p.fast): the same bytes as shaping a copy, for every instance and body
------------------------------------------------------------------------------------------------
do
    local M = '"messages":[{"role":"user","content":"hi"}]'
    local bodies = {
        '{"model":"gpt-4",' .. M .. '}',
        '{"model":"gpt-4","stream":true,' .. M .. '}',
        '{"model":"gpt-4","stream":true,"stream_options":{"include_usage":false},' .. M .. '}',
        '{"model":"gpt-4","stream":true,"stream_options":{"include_usage":true},' .. M .. '}',
        '{"model":"gpt-4","stream":true,"stream_options":{"x":1},' .. M .. '}',
        '{"stream":false,' .. M .. ',"max_tokens":5,"max_completion_tokens":6,"top_p":1}',
        '{"model":"a","model":"b",' .. M .. ',"temperature":0.1}',
        '{"mo\\u0064el":"esc",' .. M .. ',"z":null}',
        '{' .. M .. '}',
    }
    local instances = {
        -- plain options: planned
        { planned = true, inst = { provider = "openai", options = { model = "gpt-4o-mini" } } },
        { planned = true, inst = { provider = "openai",
            options = { model = "m", temperature = 0.25, top_p = 1, seed = 7, logprobs = true },
            override = { llm_options = { max_tokens = 100 } } } },
        { planned = true, inst = { provider = "gemini", override = { llm_options = {
            max_tokens = 64 } } } },
        { planned = true, inst = { provider = "azure-openai", options = { model = "x" },
            override = { endpoint = "https://a.openai.azure.com/openai/deployments/d/chat"
                                    .. "/completions?api-version=2024-02-01" } } },
        { planned = true, inst = { provider = "deepseek" } },
        -- not planned: shaped on a copy as before
        { inst = { provider = "openai", options = { response_format = { type = "json_object" } } } },
        { inst = { provider = "openai", options = { stream = true } } },
        { inst = { provider = "openai", options = { user = "u1" } } },
        { inst = { provider = "openai", options = { model = "m" },
            override = { request_body = { ["openai-chat"] = { temperature = 0 } } } } },
    }
    for i, c in ipairs(instances) do
        for j, raw in ipairs(bodies) do
            local slow_r, slow_i = build({ instance = c.inst, raw = raw })
            local fast_body = decode(raw)
            local fast_r, fast_i = build({ instance = c.inst, raw = raw, body = fast_body,
                                           fast = true })
            local name = "instance " .. i .. ", body " .. j
            is(fast_r and fast_r.body, slow_r and slow_r.body, name .. ": same bytes")
            is(fast_r and fast_r.url, slow_r and slow_r.url, name .. ": same url")
            ok(fast_i and slow_i and fast_i.changed == slow_i.changed, name .. ": same changed")
            local so = fast_body.stream_options
            local plannable = c.planned and (so == nil or so.include_usage == true)
            if plannable then
                ok(fast_i and fast_i.body == fast_body, name .. ": planned (client table kept)")
            else
                ok(fast_i and fast_i.body ~= fast_body, name .. ": shaped on a copy")
            end
        end
    end
end


------------------------------------------------------------------------------------------------
-- the plugin with a stub pdk
------------------------------------------------------------------------------------------------
local R = {}
local stub = {
    request = {
        header = function(_, name) return R.headers[name:lower()] end,
        headers = function() return R.headers end,
        get_body = function(max)
            if R.body == nil or R.body == "" then
                return nil
            end

            if #R.body > max then
                return nil, "request size " .. #R.body .. " is greater than the maximum size "
                            .. max .. " allowed"
            end

            return R.body
        end,
        get_json = function()
            local v = decode(R.body)
            if type(v) ~= "table" then
                return nil, "invalid JSON"
            end

            return v
        end,
        get_uri = function() return R.uri end,
        get_path = function() return (R.uri:match("^[^?]*")) end,
        get_method = function() return R.method or "POST" end,
    },
    response = {
        get_header = function(name) return R.resp_headers[name:lower()] end,
        set_header = function(name, v) R.resp_headers[name:lower()] = v end,
        header_set = function(names, prefixes)
            return { set = true, names = names, prefixes = prefixes }
        end,
        clear_headers = function(names, prefixes)     -- as core/lua_http.c's
            if names.set then
                names, prefixes = names.names, names.prefixes
            end

            for name in pairs(R.resp_headers) do
                local lname = name:lower()
                local drop = names[lname]
                for _, p in ipairs(prefixes or {}) do
                    drop = drop or lname:sub(1, #p) == p
                end

                if drop then
                    R.resp_headers[name] = nil
                end
            end
        end,
        set_status = function(code) R.status = code end,
        get_upstream_status = function() return R.upstream_status end,
    },
    upstream = {
        set = function(_, target) R.target = target end,
        abort = function(_, reason) R.aborted = reason end,
    },
    time = { now = function() return R.now end, update = function() return R.now end },
    log = {},
}
for _, level in ipairs({ "debug", "info", "notice", "warn", "error" }) do
    stub.log[level] = function(...)
        local parts = { level, ": " }
        for i = 1, select("#", ...) do
            parts[#parts + 1] = tostring((select(i, ...)))
        end

        R.logs[#R.logs + 1] = table.concat(parts)
    end
end

package.loaded["sluice.pdk"] = stub
local plugin = dofile("plugins/ai-proxy.lua")


-- one exchange; returns ctx, access status, access body, what the client received
local function run(conf, o)
    for k in pairs(R) do
        R[k] = nil
    end

    R.headers = o.headers or { ["content-type"] = "application/json" }
    R.body, R.uri, R.method = o.body, o.uri or "/v1/chat/completions", o.method
    R.now, R.logs, R.resp_headers = 1000, {}, {}
    if o.get_headers then
        stub.response.get_headers = function() return R.resp_headers end

    else
        stub.response.get_headers = nil
    end

    local ctx = { var = { uri = R.uri:match("^[^?]*"), route_id = "1" } }
    local st, body = plugin.access(conf, ctx)
    if st then
        return ctx, st, body
    end

    if o.connect_fail then
        plugin.log(conf, ctx)
        return ctx
    end

    R.now = R.now + 0.2
    R.upstream_status = o.status or 200
    for k, v in pairs(o.resp_headers or { ["content-type"] = o.sse and "text/event-stream"
                                                            or "application/json" }) do
        R.resp_headers[k] = v
    end

    plugin.header_filter(conf, ctx)
    local out = {}
    local chunks = o.chunks or {}
    for i, c in ipairs(chunks) do
        R.now = R.now + (o.step or 0.05)
        ctx.chunk, ctx.eof = c, i == #chunks and not o.no_eof
        if ctx.eof and o.upstream_error then
            ctx.upstream_error = o.upstream_error
        end

        plugin.body_filter(conf, ctx)
        out[#out + 1] = ctx.chunk
        if R.aborted then
            break
        end
    end

    R.now = R.now + 0.01
    if o.client_gone then
        ctx.log_info = { client_gone = true }
    end

    plugin.log(conf, ctx)
    return ctx, nil, nil, table.concat(out)
end


local OPENAI_CONF = { provider = "openai", auth = { header = { Authorization = "Bearer sk" } } }
local CHAT = '{"model":"gpt-4","messages":[{"role":"user","content":"hi"}]}'
local CHAT_STREAM = '{"model":"gpt-4","stream":true,"messages":[{"role":"user",'
                    .. '"content":"tell me a story"}]}'

do
    is(plugin.name, "ai-proxy", "name")
    is(plugin.priority, 1040, "priority")
    ok(plugin.schema.properties.provider ~= nil, "schema")
    is(plugin.encrypt_fields[1], "auth.header", "encrypt_fields")
    is(select(2, plugin.check_schema({ provider = "vertex-ai", auth = {} })),
       "ai provider: vertex-ai is not supported.", "check_schema: unsupported provider")
    local conf = { provider = "openai", auth = { header = { Authorization = "Bearer x" } } }
    ok(plugin.check_schema(conf), "check_schema: valid conf")
    is(conf.timeout, 30000, "check_schema fills defaults")
    for _, c in ipairs({
        { { provider = "nope", auth = {} }, "provider" },
        { { provider = "openai" }, "auth" },
        { { provider = "openai", auth = {}, max_stream_duration_ms = 0 },
          "max_stream_duration_ms" },
        { { provider = "openai", auth = {}, timeout = 600001 }, "timeout" },
        { { provider = "openai", auth = { foo = {} } }, "foo" },
        { { provider = "openai", auth = {}, override = { llm_options = { x = 1 } } }, "x" },
        { { provider = "openai", auth = {}, override = { request_body = { foo = {} } } },
          "foo" },
    }) do
        local good, err = plugin.check_schema(c[1])
        ok(not good and type(err) == "string" and err:find(c[2], 1, true) ~= nil,
           "check_schema rejects: " .. tostring(err))
    end
end


-- bad input: documented statuses and bodies (reference §2.7)
do
    local function err(o, conf)
        local _, s, b = run(conf or OPENAI_CONF, o)
        return s, type(b) == "table" and cjson.encode(b) or b
    end

    is_deeply({ err({ body = "" }) }, { 400,
        '{"message":"could not get body: request body is empty"}' }, "empty body")
    is_deeply({ err({ body = '{}"messages": [ { "role": "system", "cont' }) }, { 400,
        '{"message":"could not parse JSON request body: Expected the end but found T_STRING '
        .. 'at character 3"}' }, "invalid JSON, APISIX's text")
    is_deeply({ err({ body = "{}" }) }, { 400, "no matching AI protocol for the request" },
              "{}")
    is_deeply({ err({ body = "[]" }) }, { 400, "no matching AI protocol for the request" }, "[]")
    is_deeply({ err({ body = "null" }) }, { 400, "no matching AI protocol for the request" },
              "null")
    is_deeply({ err({ body = '"text"' }) }, { 400, "no matching AI protocol for the request" },
              "a JSON string")
    is_deeply({ err({ body = CHAT, headers = { ["content-type"] = "text/plain" } }) },
              { 400, "unsupported content-type: text/plain, only application/json is supported" },
              "content type")
    is_deeply({ err({ body = CHAT, headers = {} }) }, { nil, nil },
              "missing content type is JSON")
    is_deeply({ err({ body = string.rep(" ", 100) .. "{}" },
                    { provider = "openai", auth = {}, max_req_body_size = 50 }) },
              { 413, '{"message":"could not get body: request size 102 is greater than the '
                     .. 'maximum size 50 allowed"}' }, "too large: 413")
    is_deeply({ err({ body = '{"input":"x"}', uri = "/v1/responses" },
                    { provider = "deepseek", auth = {} }) },
              { 400, "provider deepseek does not support openai-responses protocol "
                     .. "(supported: openai-chat)" }, "provider lacks the protocol")
    is_deeply({ err({ body = '{"model":"c"}', uri = "/v1/messages" }) },
              { 400, '{"error_msg":"missing messages"}' }, "anthropic body without messages")
    is_deeply({ err({ body = '{"model":"c","messages":[]}', uri = "/v1/messages" }) },
              { 400, '{"error_msg":"missing messages"}' }, "anthropic empty messages")
end


-- non-streaming chat
do
    local conf = { provider = "openai", auth = { header = { Authorization = "Bearer sk" } },
                   options = { model = "gpt-3.5-turbo" }, logging = { summaries = true,
                   payloads = true } }
    local resp = '{"id":"c","choices":[{"message":{"role":"assistant","content":"1 + 1 = 2."},'
                 .. '"finish_reason":"stop"}],"usage":{"prompt_tokens":23,"completion_tokens":8,'
                 .. '"total_tokens":31}}'
    local ctx, _, _, out = run(conf, { body = '{"model":"gpt-4","user":"u1","messages":[{"role":'
        .. '"user","content":"1+1?"}],"tools":[{"type":"function","function":{"name":"f"}}]}',
        chunks = { resp:sub(1, 40), resp:sub(41) } })
    local v = ctx.var
    is(out, resp, "body relayed unchanged")
    is(R.target.url, "https://api.openai.com/v1/chat/completions", "target url")
    is(decode(R.target.body).model, "gpt-3.5-turbo", "options.model sent")
    is_deeply({ v.request_type, v.request_llm_model, v.llm_model, v.llm_stream },
              { "ai_chat", "gpt-4", "gpt-3.5-turbo", "false" }, "request vars")
    is_deeply({ v.llm_prompt_tokens, v.llm_completion_tokens, v.llm_total_tokens },
              { 23, 8, 31 }, "usage vars")
    is(v.llm_time_to_first_token, 300, "non-stream TTFT = whole body (ms)")
    is(v.llm_tool_count, 1, "tool count")
    is(v.llm_end_user_id, "u1", "end user")
    is(v.llm_has_tool_calls, "false", "no tool calls")
    is(v.llm_usage_estimated, nil, "exact")
    is(v.llm_response_text, "1 + 1 = 2.", "response text (payloads on)")
    is(ctx.llm_summary and ctx.llm_summary.total_tokens, 31, "llm_summary")
    is(v.llm_summary, ctx.llm_summary, "llm_summary also in ctx.var")
    is(ctx.llm_request.messages[1].content, "1+1?", "payload request")
    is(ctx.llm_response_text.content, "1 + 1 = 2.", "payload response")
    is(ctx.picked_ai_instance_name, "ai-proxy-openai", "instance name")
    is(ctx.ai_client_protocol, "openai-chat", "client protocol")
    is(v.llm_provider_instance, "ai-proxy-openai", "llm_provider_instance")
    is(ctx.ai_token_usage.total_tokens, 31, "ctx.ai_token_usage")
    is(v.apisix_upstream_response_time, 300, "upstream response time (ms)")
end


-- streaming chat: relayed untouched, exact usage
do
    local chunks = {
        ': OPENROUTER PROCESSING\n\n',
        'data: {"choices":[{"delta":{"role":"assistant","content":""}}],"usage":null}\n\n'
        .. 'data: {"choices":[{"delta":{"content":"Once"}}],"usage":null}\n\n',
        'data: {"choices":[{"delta":{"content":" upon"},"finish_reason":"stop"}],"usage":null}'
        .. '\n\ndata: {"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,',
        '"total_tokens":11,"prompt_tokens_details":{"cached_tokens":4}}}\n\ndata: [DONE]\n\n',
    }
    local ctx, _, _, out = run(OPENAI_CONF, { body = CHAT_STREAM, sse = true, chunks = chunks })
    local v = ctx.var
    is(out, table.concat(chunks), "stream relayed byte for byte")
    is(decode(R.target.body).stream_options.include_usage, true, "include_usage requested")
    is_deeply({ v.request_type, v.llm_stream }, { "ai_stream", "true" }, "stream vars")
    is_deeply({ v.llm_prompt_tokens, v.llm_completion_tokens, v.llm_total_tokens,
                v.llm_cache_read_input_tokens }, { 9, 2, 11, 4 }, "usage from the final chunk")
    is(v.llm_time_to_first_token, 300, "TTFT: first chunk with data (comment skipped)")

    local split = {}
    local first = chunks[2]
    for i = 1, #first do
        split[i] = first:sub(i, i)
    end

    split[#split + 1] = chunks[3] .. chunks[4]
    local k = first:find("\n\n", 1, true) + 1
    ctx = run(OPENAI_CONF, { body = CHAT_STREAM, sse = true, chunks = split, step = 0.001 })
    is(ctx.var.llm_time_to_first_token, 200 + k, "TTFT of a byte-split event: when its blank "
       .. "line arrives")
    is(ctx.var.llm_total_tokens, 11, "usage of a byte-split stream")
    is(v.llm_usage_estimated, nil, "exact")
    ok(v.llm_request_done, "done")
end


-- cut streams are accounted, estimated
do
    local chunks = {
        'data: {"choices":[{"delta":{"content":"Once upon a time"}}],"usage":null}\n\n',
        'data: {"choices":[{"delta":{"content":" there was"}}],"usage":null}\n\n',
    }
    local ctx = run(OPENAI_CONF, { body = CHAT_STREAM, sse = true, chunks = chunks,
                                   no_eof = true })
    local v = ctx.var
    is(v.llm_usage_estimated, true, "stream cut: estimated")
    is(v.llm_completion_tokens, 7, "completion from 26 bytes of text")
    is(v.llm_prompt_tokens, 4 + 3, "prompt from the request")
    is(v.llm_total_tokens, 14, "total")
    is(ctx.ai_stream_aborted, "read_error", "cut reason without a client signal")

    ctx = run(OPENAI_CONF, { body = CHAT_STREAM, sse = true, chunks = chunks, no_eof = true,
                             client_gone = true })
    is(ctx.ai_stream_aborted, "client_disconnect", "client left (ctx.log_info.client_gone)")
    is(ctx.var.llm_completion_tokens, 7, "tokens received so far still counted")

    ctx = run(OPENAI_CONF, { body = CHAT_STREAM, sse = true, chunks = chunks,
                             upstream_error = "connection reset" })
    is(ctx.ai_stream_aborted, "read_error", "provider died (ctx.upstream_error at eof)")
    is(ctx.var.llm_usage_estimated, true, "estimated")

    local conf = { provider = "openai", auth = {}, max_response_bytes = 100 }
    ctx = run(conf, { body = CHAT_STREAM, sse = true, chunks = { chunks[1], chunks[2],
        'data: {"choices":[{"delta":{"content":"never"}}]}\n\n' } })
    is(R.aborted, "max_response_bytes", "byte limit aborts the upstream")
    is(ctx.ai_stream_aborted, "max_response_bytes", "abort reason")
    is(ctx.var.llm_usage_estimated, true, "estimated after the limit")
    like(table.concat(R.logs, "\n"), "aborting AI stream: max_response_bytes exceeded",
         "logged")

    conf = { provider = "openai", auth = {}, max_stream_duration_ms = 250 }
    ctx = run(conf, { body = CHAT_STREAM, sse = true, step = 0.1, chunks = { chunks[1],
        chunks[2], chunks[1], chunks[2] } })
    is(R.aborted, "max_stream_duration_ms", "duration limit aborts")
    like(table.concat(R.logs, "\n"), "aborting AI stream: max_stream_duration_ms exceeded",
         "logged")

    ctx = run(OPENAI_CONF, { body = CHAT_STREAM, sse = true, chunks = { 'event: message_start\n'
        .. 'data: {"type":"message_start","message":{"usage":{"input_tokens":10}}}\n\n' },
        no_eof = true })
    is(ctx.var.llm_usage_estimated, true, "openai provider with an odd stream still estimated")
end


-- anthropic native stream: split usage merged
do
    local conf = { provider = "anthropic", auth = { header = { ["x-api-key"] = "k" } } }
    local stream = 'event: message_start\ndata: {"type":"message_start","message":{"usage":'
        .. '{"input_tokens":10,"output_tokens":0}}}\n\nevent: content_block_delta\ndata: '
        .. '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}'
        .. '\n\nevent: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":'
        .. '"end_turn"},"usage":{"output_tokens":8}}\n\nevent: message_stop\ndata: {}\n\n'
    local ctx, _, _, out = run(conf, { uri = "/v1/messages", sse = true, chunks = { stream },
        body = '{"model":"claude-3-5","max_tokens":1024,"stream":true,"messages":[{"role":'
               .. '"user","content":"Hello"}]}' })
    is(out, stream, "native stream relayed")
    is(R.target.body, nil, "native anthropic request forwarded untouched")
    is_deeply({ ctx.var.llm_prompt_tokens, ctx.var.llm_completion_tokens,
                ctx.var.llm_total_tokens }, { 10, 8, 18 }, "10 8 18")
end


-- anthropic clients on an OpenAI provider (converted stream)
do
    local conf = { provider = "openai-compatible", auth = { header = {
        Authorization = "Bearer t" } }, options = { model = "gpt-4o" },
        override = { endpoint = "http://localhost:1980" } }
    local chunks = {
        'data: {"id":"c1","model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant"},'
        .. '"finish_reason":null}]}\n\ndata: {"id":"c1","choices":[{"index":0,"delta":'
        .. '{"content":"Hel',
        'lo"},"finish_reason":null}]}\n\n',
        'data: {"id":"c1","choices":[{"index":0,"delta":{"content":" world"},"finish_reason":'
        .. '"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":5,"total_tokens":10}}\n\n'
        .. 'data: [DONE]\n\n',
    }
    local ctx, _, _, out = run(conf, { uri = "/v1/messages", sse = true, chunks = chunks,
        body = '{"model":"claude","max_tokens":100,"stream":true,"messages":[{"role":"user",'
               .. '"content":"hi"}]}' })
    like(out, "^event: message_start\ndata: ", "converted: starts with message_start")
    like(out, '"text":"Hello"', "text delta reassembled across chunks")
    like(out, "event: message_stop\ndata: ", "ends with message_stop")
    is(R.resp_headers["content-length"], nil, "content-length removed")
    is_deeply({ ctx.var.llm_prompt_tokens, ctx.var.llm_completion_tokens }, { 5, 5 }, "usage")
    is(ctx.var.llm_model, "gpt-4o", "effective model")
    is(ctx.var.request_llm_model, "claude", "client model")

    -- upstream answers in another format: nothing converted -> 502
    ctx, _, _, out = run(conf, { uri = "/v1/messages", sse = true, chunks = {
        'event: foo\ndata: not json\n\n' },
        body = '{"model":"c","stream":true,"messages":[{"role":"user","content":"hi"}]}' })
    is(R.status, 502, "no output: 502")
    like(out, "^streaming response completed without producing any output", "no output: message")

    -- a limit hit before the converter produced anything: the limit's status and text
    local limited = { provider = "openai-compatible", auth = {}, max_response_bytes = 30,
                      override = { endpoint = "http://localhost:1980" } }
    ctx, _, _, out = run(limited, { uri = "/v1/messages", sse = true, chunks = {
        ': keepalive padding padding padding\n\n', 'data: {"id":"x","choices":[]}\n\n' },
        body = '{"model":"c","stream":true,"messages":[{"role":"user","content":"hi"}]}' })
    is(R.status, 502, "byte limit before any output: 502")
    is(out, "max_response_bytes exceeded", "its body")
    is(R.aborted, "max_response_bytes", "upstream aborted")

    -- non-stream conversion
    local resp = '{"id":"c","choices":[{"message":{"content":"1 + 1 = 2."},"finish_reason":'
                 .. '"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":4}}'
    ctx, _, _, out = run(conf, { uri = "/v1/messages", chunks = { resp:sub(1, 10),
        resp:sub(11) }, body = '{"model":"c","messages":[{"role":"user","content":"hi"}]}' })
    local o = decode(out)
    is(o.type, "message", "converted response")
    is(o.content[1].text, "1 + 1 = 2.", "converted text")
    is(o.model, "gpt-4o", "model reported as the effective one")
    is(ctx.var.llm_total_tokens, 7, "usage")

    -- upstream 400 error body converted to Anthropic's error shape
    ctx, _, _, out = run(conf, { uri = "/v1/messages", status = 400, chunks = {
        '{"error":{"message":"bad model","type":"invalid_request_error"}}' },
        body = '{"model":"c","messages":[{"role":"user","content":"hi"}]}' })
    is_deeply(decode(out), { type = "error", error = { type = "invalid_request_error",
        message = "bad model" } }, "4xx error converted")
end


-- OpenAI clients on the anthropic provider (reverse converter)
do
    local conf = { provider = "anthropic", auth = { header = { Authorization = "Bearer sk-ant" } },
                   logging = { payloads = true } }
    local ctx, _, _, out = run(conf, { sse = true,
        body = '{"model":"claude-3","stream":true,"messages":[{"role":"user","content":"hi"}]}',
        chunks = {
            'event: message_start\ndata: {"type":"message_start","message":{"id":"m","model":'
            .. '"claude-3","usage":{"input_tokens":10,"output_tokens":1}}}\n\n',
            'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":'
            .. '{"type":"text_delta","text":"Hi!"}}\n\nevent: message_delta\ndata: {"type":'
            .. '"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":4}}'
            .. '\n\nevent: message_stop\ndata: {"type":"message_stop"}\n\n' } })
    is(R.target.url, "https://api.anthropic.com/v1/messages", "sent to the Messages API")
    is(R.target.headers["x-api-key"], "sk-ant", "key moved to x-api-key")
    like(out, '"content":"Hi!"', "OpenAI chunk with the text")
    like(out, "data: %[DONE%]\n\n$", "ends with [DONE]")
    is_deeply({ ctx.var.llm_prompt_tokens, ctx.var.llm_completion_tokens }, { 10, 4 }, "usage")
    is(ctx.var.llm_response_text, "Hi!", "response text collected")
end


-- provider errors pass through; connect failures
do
    local ctx, _, _, out = run(OPENAI_CONF, { body = CHAT, status = 429, resp_headers = {
        ["content-type"] = "application/json", ["retry-after"] = "2",
        ["x-ratelimit-remaining-requests"] = "0", ["set-cookie"] = "cf=1",
        ["openai-organization"] = "org-gw" },
        chunks = { '{"error":{"message":"Rate limit"}}' } })
    is(out, '{"error":{"message":"Rate limit"}}', "429 body passed through")
    is(R.resp_headers["retry-after"], "2", "retry-after kept")
    is(R.resp_headers["x-ratelimit-remaining-requests"], "0", "rate limit headers kept")
    is(R.resp_headers["set-cookie"], nil, "provider cookies stripped")
    is(R.resp_headers["openai-organization"], nil, "gateway's org id stripped")
    is(ctx.var.llm_time_to_first_token, 200, "TTFT = time to the error")
    is(ctx.var.llm_total_tokens, 0, "no usage")
    is(ctx.var.llm_usage_estimated, nil, "not estimated")

    run(OPENAI_CONF, { body = CHAT, get_headers = true, resp_headers = {
        ["content-type"] = "application/json", ["x-request-id"] = "r1", ["server"] = "cf",
        ["openai-processing-ms"] = "12", ["cf-ray"] = "x", ["cf-foo"] = "y",
        ["anthropic-ratelimit-tokens-limit"] = "5", ["access-control-allow-origin"] = "*",
        ["alt-svc"] = "h3" }, chunks = { '{"usage":{"prompt_tokens":1}}' } })
    is_deeply(R.resp_headers, { ["content-type"] = "application/json", ["x-request-id"] = "r1",
        ["openai-processing-ms"] = "12", ["anthropic-ratelimit-tokens-limit"] = "5",
        ["access-control-allow-origin"] = "*" },
        "provider junk stripped by name and prefix, the rest (and other plugins') kept")

    ctx, _, _, out = run(OPENAI_CONF, { body = CHAT, status = 503, sse = true, chunks = {
        "upstream overloaded" } })
    is(out, "upstream overloaded", "5xx body passed through even with an SSE type")

    ctx = run(OPENAI_CONF, { body = CHAT, connect_fail = true })
    is_deeply({ ctx.var.llm_time_to_first_token, ctx.var.llm_total_tokens },
              { 0, 0 }, "connect failure: TTFT 0, no usage")
end


-- non-streaming limits
do
    local conf = { provider = "openai", auth = {}, max_response_bytes = 20 }
    local _, _, _, out = run(conf, { body = CHAT, resp_headers = {
        ["content-type"] = "application/json", ["content-length"] = "100000" },
        chunks = { string.rep("x", 30), string.rep("y", 30) } })
    is(R.status, 502, "Content-Length over the limit: 502")
    is(out, "max_response_bytes exceeded", "its body")
    like(R.logs[1], "Content%-Length 100000 exceeds max_response_bytes 20", "logged")

    _, _, _, out = run(conf, { body = CHAT, chunks = { string.rep("x", 15),
        string.rep("y", 15), "z" } })
    is(R.status, 502, "chunked body over the limit: 502")
    is(out, "max_response_bytes exceeded", "its body")
    like(R.logs[1], "body size exceeds max_response_bytes 20", "logged")

    local resp = '{"usage":{"prompt_tokens":1,"completion_tokens":1}}'
    conf.max_response_bytes = 1000
    local ctx
    ctx, _, _, out = run(conf, { body = CHAT, chunks = { resp:sub(1, 5), resp:sub(6) } })
    is(out, resp, "held body released at the end")
    is(ctx.var.llm_total_tokens, 2, "usage")
end


-- passthrough and embeddings
do
    local ctx, _, _, out = run({ provider = "openai", auth = {}, options = { model = "dall-e-3" } },
        { uri = "/v1/images/generations?size=big", method = "POST", body =
        '{"prompt":"a cat","model":"dall-e-2"}', chunks = { '{"data":[{"url":"u"}]}' } })
    is(R.target.url, "https://api.openai.com/v1/images/generations?size=big",
       "passthrough path and query")
    is(decode(R.target.body).model, "dall-e-3", "passthrough model rewrite")
    is(out, '{"data":[{"url":"u"}]}', "passthrough body")
    is(ctx.var.llm_total_tokens, 0, "no usage for passthrough")

    ctx = run(OPENAI_CONF, { uri = "/v1/embeddings", body = '{"input":"x","model":"e"}',
        chunks = { '{"data":[{"embedding":[0.1,0.2]}],"usage":{"prompt_tokens":8,'
                   .. '"total_tokens":8}}' } })
    is_deeply({ ctx.var.llm_prompt_tokens, ctx.var.llm_total_tokens }, { 8, 8 },
              "embeddings usage")
end


t.done_testing()
