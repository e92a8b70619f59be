-- sluice.ctx: the per-request context shared by all plugins of a request.
--
--   ctx.var            request variables, computed on first use and cached; plugins may set
--                      their own. Built in: remote_addr, remote_port, uri (path), request_uri
--                      (path?query), args (query string), host, method, scheme,
--                      server_protocol, http_<header> (dashes as underscores), arg_<name>,
--                      route_id, route_name, service_id, consumer_name, request_time.
--                      Set by ai-proxy: request_type, request_llm_model, llm_model,
--                      llm_time_to_first_token, llm_prompt_tokens, llm_completion_tokens,
--                      llm_total_tokens, llm_stream, llm_cache_read_input_tokens,
--                      llm_cache_creation_input_tokens, llm_reasoning_tokens, llm_tool_count,
--                      llm_has_tool_calls, llm_end_user_id, llm_usage_estimated (the stream
--                      was cut: tokens so far), llm_request_done, llm_provider_instance,
--                      llm_summary (logging.summaries), apisix_upstream_response_time (ms).
--                      Set by the core after the upstream answered: upstream_addr,
--                      upstream_status, upstream_response_time (ms), upstream_header_time.
--   ctx.route          the matched route (read-only)
--   ctx.route_id       its id
--   ctx.consumer       the consumer identified by an auth plugin (key-auth), or nil
--   ctx.consumer_name  its username
--   ctx.upstream_target  set by pdk.upstream.set(): the request goes there instead
--   ctx.chunk, ctx.eof body_filter: the current piece of the response body and whether it is
--                      the last; assign ctx.chunk to change it ("" drops it)
--   ctx.upstream_aborted  reason given to pdk.upstream.abort()
--   ctx.upstream_error    set in body_filter when the upstream failed mid-body
--   ctx.ai_client_protocol, ctx.ai_target_protocol, ctx.ai_converter  ai-proxy: the
--                      client's wire protocol, the provider's, and the converter between them
--   ctx.ai_stream_aborted  ai-proxy: why a stream was cut (client_disconnect, read_error,
--                      max_stream_duration_ms, max_response_bytes)
--   ctx.ai_token_usage ai-proxy: normalised usage {prompt_tokens, completion_tokens, ...}
--   ctx.picked_ai_instance_name  ai-proxy(-multi): the instance that served the request
--   ctx.llm_collect_response_text  set by a plugin before ai-proxy's body_filter runs to have
--                      ctx.var.llm_response_text assembled
--   ctx[<plugin name>] plugin-private state
--
-- ctx and ctx.var are recycled when the request is over (after its log phase, _M.release):
-- a plugin must not keep either past its log phase (a timer that needs a value copies it),
-- as with APISIX's api_ctx, which goes back to a table pool at the same point. Reusing them
-- saves two tables of 32 hash slots per request, which the garbage collector would otherwise
-- sweep and free: its work grows with the bytes a request allocates.
local http = require("sluice.http")
local request = require("sluice.pdk.request")

local sub = string.sub
local gsub = string.gsub
local lower = string.lower
local rawset = rawset
local setmetatable = setmetatable
local getmetatable = getmetatable
local type = type
local tablepool = require("sluice.tablepool")

local _M = {}

local builtin = {}

function builtin.remote_addr(ctx)
    return ctx._remote_addr
end

function builtin.remote_port()
    return (http.conn_info())
end

function builtin.uri(ctx)
    return ctx._path
end

function builtin.request_uri()
    return http.get_uri()
end

function builtin.args(ctx)
    return ctx._query
end

function builtin.host(ctx)
    return ctx._host
end

function builtin.method(ctx)
    return ctx._method
end

function builtin.request_method(ctx)
    return ctx._method
end

function builtin.scheme()
    local _, ssl = http.conn_info()
    return ssl and "https" or "http"
end

function builtin.server_protocol()
    local _, _, v = http.conn_info()
    return v == 10 and "HTTP/1.0" or "HTTP/1.1"
end

function builtin.route_id(ctx)
    return ctx.route_id
end

function builtin.route_name(ctx)
    return ctx.route and ctx.route.name
end

function builtin.service_id(ctx)
    return ctx.route and ctx.route.service_id
end

function builtin.consumer_name(ctx)
    return ctx.consumer_name
end

function builtin.request_body()
    return http.get_body()
end


local var_mt = {
    __index = function(t, key)
        local ctx = t._ctx
        local fn = builtin[key]
        local v
        if fn then
            v = fn(ctx)
        elseif sub(key, 1, 5) == "http_" then
            v = http.get_header(gsub(sub(key, 6), "_", "-"))
        elseif sub(key, 1, 4) == "arg_" then
            v = request.get_args(ctx)[sub(key, 5)]
            if type(v) == "table" then
                v = v[1]
            end
        elseif sub(key, 1, 7) == "cookie_" then
            local cookie = http.get_header("cookie")
            if cookie then
                local name = sub(key, 8)
                for k, val in cookie:gmatch("([^=;%s]+)=([^;]*)") do
                    if k == name then
                        v = val
                        break
                    end
                end
            end
        end

        if v ~= nil then
            rawset(t, key, v)
        end

        return v
    end,
}


-- Host header -> lowercased host without port; few distinct values, so cached (bounded)
local host_cache, host_cache_n = {}, 0


local function norm_host(host)
    if not host then
        return ""
    end

    local h = host_cache[host]
    if h then
        return h
    end

    h = lower((host:gsub(":%d+$", "")))
    if host_cache_n >= 1024 then
        host_cache, host_cache_n = {}, 0
    end

    host_cache[host] = h
    host_cache_n = host_cache_n + 1
    return h
end


-- A table constructor reserves a hash slot for every key it names, also for keys whose value
-- is nil at run time: listing the fields every request sets (as NONE, a nil local) saves the
-- table from growing (rehashing) several times per request. The keys hold nil until set, so
-- nothing changes for readers (pairs skips them, __index still runs for them).
local NONE      -- luacheck: ignore 221 (never set: that is the point)


-- finished requests' ctx and var tables, emptied (sluice.tablepool: keys and sizes kept)
local ctx_pool, var_pool = tablepool.new(256), tablepool.new(256)


function _M.new(method, path, query, host, remote_addr)
    local ctx = ctx_pool:take()
    if ctx then
        local var = var_pool:take()
        ctx._method = method
        ctx._path = path
        ctx._query = query
        ctx._host = norm_host(host)
        ctx._remote_addr = remote_addr
        ctx._raw_host = host
        ctx.var = var
        var._ctx = ctx
        return ctx
    end

    ctx = {
        _method = method,
        _path = path,
        _query = query,
        _host = norm_host(host),
        _remote_addr = remote_addr,
        var = NONE,
        _raw_host = host,
        route = NONE,
        route_id = NONE,
        conf_version = NONE,
        log_info = NONE,
        consumer = NONE,
        consumer_name = NONE,
        upstream_target = NONE,
        chunk = NONE,
        eof = NONE,
        upstream_error = NONE,
        upstream_aborted = NONE,
        -- ai-proxy's (an AI request sets most of these; 32 slots either way)
        ai_client_protocol = NONE,
        ai_target_protocol = NONE,
        ai_converter = NONE,
        ai_stream_aborted = NONE,
        ai_token_usage = NONE,
        llm_raw_usage = NONE,
        llm_request_start_time = NONE,
        picked_ai_instance_name = NONE,
        picked_ai_instance = NONE,
        balancer_ip = NONE,
        _metrics_active = NONE,
        ["ai-proxy"] = NONE,
    }
    ctx.var = setmetatable({
        _ctx = ctx,
        request_uri = NONE,
        upstream_addr = NONE,
        upstream_status = NONE,
        upstream_header_time = NONE,
        upstream_response_time = NONE,
        status = NONE,
        request_time = NONE,
        uri = NONE,
        error_reason = NONE,
        -- set by ai-proxy on every AI request
        request_type = NONE,
        request_llm_model = NONE,
        llm_model = NONE,
        llm_stream = NONE,
        llm_tool_count = NONE,
        llm_provider_instance = NONE,
        llm_time_to_first_token = NONE,
        llm_request_done = NONE,
        llm_prompt_tokens = NONE,
        llm_completion_tokens = NONE,
        llm_total_tokens = NONE,
        llm_cache_read_input_tokens = NONE,
        llm_cache_creation_input_tokens = NONE,
        llm_reasoning_tokens = NONE,
        llm_has_tool_calls = NONE,
        apisix_upstream_response_time = NONE,
    }, var_mt)
    return ctx
end


-- The request is over: its ctx and var are emptied for the next one (see the top).
function _M.release(ctx)
    local var = ctx.var
    if type(var) ~= "table" or getmetatable(var) ~= var_mt then
        return                      -- released already, or not made by new()
    end

    -- the two pools always hold the same number: a ctx is taken with its var
    if ctx_pool.n < ctx_pool.max then
        var_pool:put(var)
        ctx_pool:put(ctx)
    end
end


return _M
