-- pdk.upstream: where the request goes. set(ctx, target) replaces the route's upstream
-- (ai-proxy sets the provider endpoint); abort(ctx) stops a transfer from body_filter.
local has_up, up = pcall(require, "sluice.upstream")

local _M = {}


-- target = {url, method, headers = {name = value | false}, body, timeout = {connect,
-- send, read} (s), ssl_verify, keepalive, keepalive_timeout, keepalive_pool}
function _M.set(ctx, target)
    if type(target) ~= "table" or type(target.url) ~= "string" then
        error("pdk.upstream.set needs a target with a url", 2)
    end

    ctx.upstream_target = target
end


function _M.abort(ctx, reason)
    ctx.upstream_aborted = reason or "aborted"
    if has_up then
        up.abort()
    end
end


return _M
