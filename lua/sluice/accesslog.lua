-- sluice.accesslog: one JSON object per finished request, written through the worker's
-- buffered access-log writer. Fields: see README "Access log". Secrets never appear here:
-- only names, numbers and the request line.
local cjson = require("cjson.safe")
local core = require("sluice.core")

local floor = math.floor
local date = os.date
local format = string.format
local tonumber = tonumber

local _M = {}

local NUM = {
    "llm_time_to_first_token", "llm_prompt_tokens", "llm_completion_tokens",
    "llm_total_tokens", "llm_cache_read_input_tokens", "llm_cache_creation_input_tokens",
    "llm_reasoning_tokens", "llm_tool_count",
}


local function iso_time(t)
    local sec = floor(t)
    return date("!%Y-%m-%dT%H:%M:%S", sec) .. format(".%03dZ", floor((t - sec) * 1000))
end
_M.iso_time = iso_time


-- info: numbers from the host {status, bytes_sent, request_time, start}
function _M.write(ctx, info)
    local var = ctx.var
    local line = {
        time = iso_time(info.start),
        remote_addr = ctx._remote_addr,
        method = ctx._method,
        uri = var.request_uri,
        host = ctx._host,
        status = info.status,
        route_id = ctx.route_id or "",
        consumer = ctx.consumer_name or "",
        request_time = floor(info.request_time * 1000 + 0.5) / 1000,
        upstream_addr = var.upstream_addr or "",
        upstream_status = tonumber(var.upstream_status) or "",
        upstream_response_time = var.upstream_response_time or "",
        bytes_sent = info.bytes_sent,
        request_type = var.request_type or "traditional_http",
        request_llm_model = var.request_llm_model or "",
        llm_model = var.llm_model or "",
        llm_stream = var.llm_stream == true or var.llm_stream == "true",
        llm_provider_instance = var.llm_provider_instance or "",
    }

    for i = 1, #NUM do
        local k = NUM[i]
        line[k] = tonumber(var[k]) or 0
    end

    if var.llm_usage_estimated then
        line.llm_usage_estimated = true
    end

    if var.llm_has_tool_calls then
        line.llm_has_tool_calls = var.llm_has_tool_calls == true or var.llm_has_tool_calls == "true"
    end

    local aborted = ctx.ai_stream_aborted or ctx.upstream_aborted
    if aborted then
        line.llm_stream_aborted = aborted
    end

    if info.client_gone then
        line.client_closed = true
    end

    if var.error_reason then
        line.error = var.error_reason
    end

    local s = cjson.encode(line)
    if s then
        core.access_log(s)
    end
end


return _M
