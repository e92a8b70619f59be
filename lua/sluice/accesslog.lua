-- sluice.accesslog: one JSON object per finished request, written through the worker's
-- buffered access-log writer. Fields: see README "Access log". Secrets never appear here:
-- only names, numbers and the request line. The line is assembled by hand (fixed field
-- order, strings escaped only when they need it): this runs for every request.
local cjson = require("cjson.safe")
local core = require("sluice.core")

local floor = math.floor
local date = os.date
local format = string.format
local find = string.find
local tostring = tostring
local tonumber = tonumber
local rawget = rawget
local concat = table.concat
local type = type

local NUM = {
    "llm_time_to_first_token", "llm_prompt_tokens", "llm_completion_tokens",
    "llm_total_tokens", "llm_cache_read_input_tokens", "llm_cache_creation_input_tokens",
    "llm_reasoning_tokens", "llm_tool_count",
}

local NUM_KEYS = {}
for i, k in ipairs(NUM) do
    NUM_KEYS[i] = ',"' .. k .. '":'
end

local _M = {}

local last_sec, last_prefix


local function iso_time(t)
    local sec = floor(t)
    if sec ~= last_sec then
        last_sec = sec
        last_prefix = date("!%Y-%m-%dT%H:%M:%S", sec)
    end

    return last_prefix .. format(".%03dZ", floor((t - sec) * 1000))
end
_M.iso_time = iso_time


local function str(v)
    if v == nil then
        return '""'
    end

    if type(v) ~= "string" then
        v = tostring(v)
    end

    if find(v, '[%c"\\\128-\255]') then
        return cjson.encode(v)
    end

    return '"' .. v .. '"'
end


local function num(v)
    if v == floor(v) and v > -1e15 and v < 1e15 then
        return format("%d", v)
    end

    return format("%.3f", v)
end


local buf = {}
local n = 0


local function put(k, v)
    n = n + 1
    buf[n] = k
    n = n + 1
    buf[n] = v
end


-- info: numbers from the host {status, bytes_sent, request_time, start}
function _M.write(ctx, info)
    local var = ctx.var
    n = 0

    local up_status = tonumber(rawget(var, "upstream_status"))
    local up_time = rawget(var, "upstream_response_time")
    local stream = rawget(var, "llm_stream")

    put('{"time":', str(iso_time(info.start)))
    put(',"remote_addr":', str(ctx._remote_addr))
    put(',"method":', str(ctx._method))
    put(',"uri":', str(var.request_uri))
    put(',"host":', str(ctx._host))
    put(',"status":', num(info.status))
    put(',"route_id":', str(ctx.route_id))
    put(',"consumer":', str(ctx.consumer_name))
    put(',"request_time":', num(floor(info.request_time * 1000 + 0.5) / 1000))
    put(',"upstream_addr":', str(rawget(var, "upstream_addr")))
    put(',"upstream_status":', up_status and num(up_status) or '""')
    put(',"upstream_response_time":', tonumber(up_time) and num(tonumber(up_time)) or '""')
    put(',"bytes_sent":', num(info.bytes_sent))
    put(',"request_type":', str(rawget(var, "request_type") or "traditional_http"))
    put(',"request_llm_model":', str(rawget(var, "request_llm_model")))
    put(',"llm_model":', str(rawget(var, "llm_model")))
    put(',"llm_stream":', (stream == true or stream == "true") and "true" or "false")
    put(',"llm_provider_instance":', str(rawget(var, "llm_provider_instance")))

    for i = 1, #NUM do
        local v = tonumber(rawget(var, NUM[i]))
        put(NUM_KEYS[i], v and num(v) or "0")
    end

    if rawget(var, "llm_usage_estimated") then
        put(',"llm_usage_estimated":', "true")
    end

    local tool_calls = rawget(var, "llm_has_tool_calls")
    if tool_calls ~= nil then
        put(',"llm_has_tool_calls":',
            (tool_calls == true or tool_calls == "true") and "true" or "false")
    end

    local aborted = ctx.ai_stream_aborted or ctx.upstream_aborted
    if aborted then
        put(',"llm_stream_aborted":', str(aborted))
    end

    if info.client_gone then
        put(',"client_closed":', "true")
    end

    local reason = rawget(var, "error_reason")
    if reason then
        put(',"error":', str(reason))
    end

    n = n + 1
    buf[n] = "}"
    core.access_log(concat(buf, "", 1, n))
end


return _M
