-- pdk.upstream: where the request goes. set(ctx, target) replaces the route's upstream
-- (ai-proxy sets the provider endpoint); abort(ctx) stops a transfer from body_filter.
local has_up, up = pcall(require, "sluice.upstream")

local _M = {}


-- target = {url, method, headers = {name = value | false}, body, timeout = {connect,
-- send, read} (s), ssl_verify, keepalive, keepalive_timeout, keepalive_pool}; headers may
-- also be a plan made once by header_plan(headers)
function _M.set(ctx, target)
    if type(target) ~= "table" or type(target.url) ~= "string" then
        error("pdk.upstream.set needs a target with a url", 2)
    end

    ctx.upstream_target = target
end


-- header_plan(headers) -> the same headers made once into the host's list, for a target's
-- headers: the host then reads no Lua table for them per request. Outside a worker (unit
-- tests) the table itself.
function _M.header_plan(headers)
    if has_up and up.header_plan then
        return up.header_plan(headers)
    end

    return headers
end


function _M.abort(ctx, reason)
    ctx.upstream_aborted = reason or "aborted"
    if has_up then
        up.abort()
    end
end


return _M
