-- bench-ai-floor: the least an AI proxy must do per non-streaming request, for t/bench/ai.sh
-- (BENCH_FLOOR=1): read and check the JSON body (request.decode_lazy), put the model in
-- (request.splice), send it to conf.url, relay the answer with a copy, read the usage from
-- the copy (usage.from_body_string) and set the llm_* variables, so the AI metrics and the
-- access log's llm fields are produced as for ai-proxy. No protocol detection, provider
-- table, header filtering, limits or error handling: it measures the floor of "a Lua plugin
-- with the host's C helpers", to tell ai-proxy's own cost from the machinery's.
local request = require("sluice.ai.request")
local usage = require("sluice.ai.usage")
local pdk = require("sluice.pdk")

local HEADERS = { ["content-type"] = "application/json", authorization = "Bearer sk-gateway",
                  cookie = false, ["x-api-key"] = false, ["api-key"] = false }
local TIMEOUT = { connect = 30, send = 30, read = 30 }
local OUT, CHANGED = { model = "gpt-4o-mini" }, { model = true }

local _M = {
    name = "bench-ai-floor",
    version = 1,
    priority = 1040,
    schema = { type = "object", properties = { url = { type = "string" } },
               required = { "url" } },
}

local RELAY = { capture = 1024 * 1024, sse = false, plugin = _M.name }

function RELAY.done(ctx, _ok, _err, cap)
    local var = ctx.var
    local v = (pdk.time.update() - ctx.llm_request_start_time) * 1000 + 0.5
    var.llm_time_to_first_token = v - v % 1
    local u = usage.from_body_string("openai-chat", cap and cap.head)
    if u then
        var.llm_prompt_tokens = u.prompt_tokens
        var.llm_completion_tokens = u.completion_tokens
        var.llm_total_tokens = u.total_tokens
    end
end


function _M.access(conf, ctx)
    local raw = pdk.request.get_body(1024 * 1024, ctx)
    local body = raw and request.decode_lazy(raw)
    if type(body) ~= "table" then
        return 400, { message = "a JSON object body is needed" }
    end

    local var = ctx.var
    var.request_type = "ai_chat"
    var.request_llm_model = body.model
    var.llm_model = OUT.model
    var.llm_stream = "false"
    ctx.llm_request_start_time = pdk.time.update()
    ctx.upstream_target = { url = conf.url, method = "POST", headers = HEADERS, timeout = TIMEOUT,
                            body = request.splice(raw, OUT, CHANGED), keepalive = true,
                            keepalive_timeout = 60, keepalive_pool = 30 }
end


function _M.header_filter(_conf, ctx)
    ctx.relay = RELAY
end


function _M.body_filter()
    -- never called: the core relays the body (ctx.relay); present so that it may
end


return _M
