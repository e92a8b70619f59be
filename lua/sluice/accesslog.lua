-- sluice.accesslog: one JSON object per finished request, written through the worker's
-- buffered access-log writer. Fields: see README "Access log". Secrets never appear here:
-- only names, numbers and the request line. The line is assembled by hand (fixed field
-- order, strings escaped only when they need it): this runs for every request.
local cjson = require("cjson.safe")
local core = require("sluice.core")
local ffi = require("ffi")
local strbuf = require("string.buffer")

local floor = math.floor
local date = os.date
local format = string.format
local byte = string.byte
local tostring = tostring
local tonumber = tonumber
local rawget = rawget
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

-- '.000Z"' .. '.999Z"': the millisecond tail of "time", closing quote included
local MS_TAIL = {}
for i = 0, 999 do
    MS_TAIL[i] = format('.%03dZ"', i)
end

-- "000" .. "999": the fraction of request_time
local FRAC = {}
for i = 0, 999 do
    FRAC[i] = format("%03d", i)
end

local INT_CACHE_MAX = 4095          -- small integers' strings are kept (statuses, sizes)
local SAFE_CACHE_MAX = 4096         -- strings known to need no escaping

local _M = {}

local last_sec, last_prefix
local int_str = {}
local safe, nsafe = {}, 0


local function iso_time(t)
    local sec = floor(t)
    if sec ~= last_sec then
        last_sec = sec
        last_prefix = date("!%Y-%m-%dT%H:%M:%S", sec)
    end

    return last_prefix .. format(".%03dZ", floor((t - sec) * 1000))
end
_M.iso_time = iso_time


-- true when v (a string) can go between quotes as it is: no control character, quote,
-- backslash or byte >= 127 (what the pattern '[%c"\\\128-\255]' finds)
local function is_safe(v)
    if safe[v] then
        return true
    end

    for i = 1, #v do
        local b = byte(v, i)
        if b < 32 or b >= 127 or b == 34 or b == 92 then
            return false
        end
    end

    if nsafe >= SAFE_CACHE_MAX then
        safe, nsafe = {}, 0
    end

    safe[v] = true
    nsafe = nsafe + 1
    return true
end


local function num(v)
    if v == floor(v) and v > -1e15 and v < 1e15 then
        if v >= 0 and v <= INT_CACHE_MAX then
            local s = int_str[v]
            if not s then
                s = format("%d", v)
                int_str[v] = s
            end

            return s
        end

        return format("%d", v)
    end

    return format("%.3f", v)
end


-- The line is put together in a string.buffer and handed to the host by pointer: never a
-- Lua string, so never interned (interning ~600 bytes that differ from the previous line in
-- a few places cost more than building them: the hash samples bytes, lines collide).
local sb = strbuf.new(1024)

ffi.cdef[[void sl_access_log_write(const char *line, size_t len);]]
local write_line
do
    local ok, fn = pcall(function() return ffi.C.sl_access_log_write end)
    if ok and fn then
        write_line = function()
            local p, len = sb:ref()
            fn(p, len)
        end
    else
        -- outside the host (unit tests): through sluice.core as a string
        write_line = function()
            core.access_log(sb:tostring())
        end
    end
end


local function put(k, v)
    sb:put(k, v)
end


-- kq: ',"name":"'; k: ',"name":'. A string goes between quotes as it is, or JSON-encoded
-- when it needs escaping; nil is ""
local function put_str(kq, k, v)
    if v == nil then
        sb:put(kq, '"')
        return
    end

    if type(v) ~= "string" then
        v = tostring(v)
    end

    if is_safe(v) then
        sb:put(kq, v, '"')
        return
    end

    sb:put(k, cjson.encode(v))
end


-- info: numbers from the host {status, bytes_sent, request_time, start}
function _M.write(ctx, info)
    local var = ctx.var
    sb:reset()

    local up_status = tonumber(rawget(var, "upstream_status"))
    local up_time = tonumber(rawget(var, "upstream_response_time"))
    local stream = rawget(var, "llm_stream")

    local t = info.start
    local sec = floor(t)
    if sec ~= last_sec then
        last_sec = sec
        last_prefix = date("!%Y-%m-%dT%H:%M:%S", sec)
    end

    local ms = floor((t - sec) * 1000)
    sb:put('{"time":"', last_prefix, MS_TAIL[ms] or format('.%03dZ"', ms))
    put_str(',"remote_addr":"', ',"remote_addr":', ctx._remote_addr)
    put_str(',"method":"', ',"method":', ctx._method)
    put_str(',"uri":"', ',"uri":', var.request_uri)
    put_str(',"host":"', ',"host":', ctx._host)
    put(',"status":', num(info.status))
    put_str(',"route_id":"', ',"route_id":', ctx.route_id)
    put_str(',"consumer":"', ',"consumer":', ctx.consumer_name)

    -- request_time: seconds rounded to the ms; whole seconds print as integers
    local rt = floor(info.request_time * 1000 + 0.5)
    local frac = rt % 1000
    if frac ~= 0 and rt > 0 and rt < 1e12 then
        sb:put(',"request_time":', num((rt - frac) / 1000), ".", FRAC[frac])
    else
        put(',"request_time":', num(rt / 1000))
    end

    put_str(',"upstream_addr":"', ',"upstream_addr":', rawget(var, "upstream_addr"))
    put(',"upstream_status":', up_status and num(up_status) or '""')
    put(',"upstream_response_time":', up_time and num(up_time) or '""')
    put(',"bytes_sent":', num(info.bytes_sent))
    put_str(',"request_type":"', ',"request_type":',
            rawget(var, "request_type") or "traditional_http")
    put_str(',"request_llm_model":"', ',"request_llm_model":', rawget(var, "request_llm_model"))
    put_str(',"llm_model":"', ',"llm_model":', rawget(var, "llm_model"))
    put(',"llm_stream":', (stream == true or stream == "true") and "true" or "false")
    put_str(',"llm_provider_instance":"', ',"llm_provider_instance":',
            rawget(var, "llm_provider_instance"))

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
        put_str(',"llm_stream_aborted":"', ',"llm_stream_aborted":', aborted)
    end

    if info.client_gone then
        put(',"client_closed":', "true")
    end

    local reason = rawget(var, "error_reason")
    if reason then
        put_str(',"error":"', ',"error":', reason)
    end

    sb:put("}")
    write_line()
end


return _M
