-- accesslog.lua: the hand-built access-log line: field order, numbers (integers, ms
-- fractions, large values), strings that need escaping, optional fields.
local t = require("t.unit.tap")

local line
package.preload["sluice.core"] = function()
    return { access_log = function(s) line = s end }
end

local accesslog = require("sluice.accesslog")
local cjson = require("cjson")

local is, ok = t.is, t.ok


local function write(ctx, info)
    ctx.var = ctx.var or {}
    accesslog.write(ctx, info)
    return line
end


local BASE = { start = 1700000000.1234, status = 200, request_time = 0.0123, bytes_sent = 1024 }


local function info(over)
    local i = {}
    for k, v in pairs(BASE) do
        i[k] = v
    end

    for k, v in pairs(over or {}) do
        i[k] = v
    end

    return i
end


is(write({ _remote_addr = "127.0.0.1", _method = "GET", _host = "example.com", route_id = "1",
           var = { request_uri = "/a?b=1", upstream_addr = "127.0.0.1:80", upstream_status = 200,
                   upstream_response_time = 3 } }, info()),
   '{"time":"2023-11-14T22:13:20.123Z","remote_addr":"127.0.0.1","method":"GET",'
   .. '"uri":"/a?b=1","host":"example.com","status":200,"route_id":"1","consumer":"",'
   .. '"request_time":0.012,"upstream_addr":"127.0.0.1:80","upstream_status":200,'
   .. '"upstream_response_time":3,"bytes_sent":1024,"request_type":"traditional_http",'
   .. '"request_llm_model":"","llm_model":"","llm_stream":false,"llm_provider_instance":"",'
   .. '"llm_time_to_first_token":0,"llm_prompt_tokens":0,"llm_completion_tokens":0,'
   .. '"llm_total_tokens":0,"llm_cache_read_input_tokens":0,'
   .. '"llm_cache_creation_input_tokens":0,"llm_reasoning_tokens":0,"llm_tool_count":0}',
   "plain proxy request: every field, in order")

local function field(l, name)
    return cjson.decode(l)[name]
end

is(field(write({}, info({ request_time = 0.0004 })), "request_time"), 0, "under 0.5 ms: 0")
ok(write({}, info({ request_time = 2 })):find('"request_time":2,', 1, true), "whole seconds")
ok(write({}, info({ request_time = 1.2345 })):find('"request_time":1.235,', 1, true),
   "ms rounded")
ok(write({}, info({ request_time = 0.05 })):find('"request_time":0.050,', 1, true),
   "three decimals")
ok(write({}, info({ bytes_sent = 123456789 })):find('"bytes_sent":123456789,', 1, true),
   "large integers")
ok(write({}, info({ start = 1700000000.9999 })):find('"time":"2023-11-14T22:13:20.999Z"', 1,
                                                      true), "milliseconds truncated")
is(field(write({ var = { request_uri = '/q"\\\1\200' } }, info()), "uri"), '/q"\\\1\200',
   "escaped uri")
local l = write({ var = { request_type = "ai_stream", llm_stream = true, llm_prompt_tokens = "12",
                          llm_usage_estimated = true, llm_has_tool_calls = "true",
                          error_reason = "read error" },
                  ai_stream_aborted = "client_disconnect" }, info({ client_gone = true }))
local d = cjson.decode(l)
is(d.llm_prompt_tokens, 12, "token counts as numbers")
ok(d.llm_stream == true and d.llm_usage_estimated == true and d.llm_has_tool_calls == true,
   "booleans")
is(d.llm_stream_aborted, "client_disconnect", "abort reason")
ok(d.client_closed == true and d.error == "read error", "client_closed and error")
ok(l:find('"llm_tool_count":0,"llm_usage_estimated":true,"llm_has_tool_calls":true,'
          .. '"llm_stream_aborted":"client_disconnect","client_closed":true,"error":"read error"}',
          1, true), "optional fields last, in order")

t.done_testing()
