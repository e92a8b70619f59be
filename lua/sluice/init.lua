-- sluice.init: the entry points the C host calls. init_worker() once per worker;
-- http_request(), admin_request() and metrics_request() in a fresh coroutine per request,
-- by listener kind. http_request() is the request's whole life: route, rewrite, access,
-- upstream, header_filter, body_filter per chunk, finish, then log (the client already has
-- its response when log runs).
local core = require("sluice.core")
local http = require("sluice.http")
local upstream = require("sluice.upstream")
local cjson = require("cjson.safe")
local plugin = require("sluice.plugin")
local config = require("sluice.config")
local ctx_mod = require("sluice.ctx")
local balancer = require("sluice.balancer")
local accesslog = require("sluice.accesslog")
local upinfo = require("sluice.upinfo")
local pdk = require("sluice.pdk")

local type = type
local tostring = tostring
local floor = math.floor
local run = plugin.run
local plan = config.plan

local NOT_FOUND = '{"error_msg":"404 Route Not Found"}\n'
local EMPTY = {}            -- read-only: absent timeouts
local JSON = "application/json"

local _M = {}

local node_conf
local metrics
local log_enabled = true


local function log_error(...)
    pdk.log.error(...)
end


local function respond(status, body)
    local t = type(body)
    if t == "table" then
        http.respond(status, (cjson.encode(body) or "{}") .. "\n", JSON)
    elseif t == "string" then
        http.respond(status, body,
                     not http.resp_header("Content-Type") and "text/plain; charset=utf-8" or nil)
    elseif status >= 400 then
        http.respond(status, '{"error_msg":"' .. status .. ' ' .. (status == 401 and "Unauthorized"
            or status == 403 and "Forbidden" or status == 429 and "Too Many Requests"
            or status == 503 and "Service Unavailable" or "Error") .. '"}\n', JSON)
    else
        http.respond(status, "", nil)
    end
end


-- APISIX's _meta.error_response replaces the body of a >= 400 exit
local function exit_body(ctx, code, body)
    local meta = ctx.plugin_meta
    if code >= 400 and meta and meta.error_response then
        return meta.error_response
    end

    return body
end


-- after: a log phase that failed in plugin `after` goes on with the plugins after it, each
-- protected (see http_request_failed)
local function finish_log(ctx, list, after)
    local info = ctx.log_info
    if not info then
        local status, bytes_sent, request_time, client_gone, _, start, req_len = http.log_info()
        info = { status = status, bytes_sent = bytes_sent, request_time = request_time,
                 client_gone = client_gone, start = start, request_length = req_len }
        ctx.var.status = status
        ctx.var.request_time = request_time
        ctx.log_info = info
    end

    if list then
        if after ~= nil then
            plugin.run_protected(list, "log", ctx, log_error, after ~= true and after or nil)
        else
            run(list, "log", ctx)
        end
    end

    if metrics then
        metrics.record(ctx, info)
    end

    if log_enabled then
        accesslog.write(ctx, info)
    end
end


local function set_upstream_vars(ctx)
    local u = upinfo.read()
    if u then
        local var = ctx.var
        var.upstream_addr = var.upstream_addr or upinfo.string(u.addr)
        local status, header_ms, total_ms = u.status, u.header_ms, u.total_ms
        var.upstream_status = status > 0 and status or ""
        var.upstream_header_time = header_ms >= 0 and floor(header_ms + 0.5) or ""
        var.upstream_response_time = total_ms >= 0 and floor(total_ms + 0.5) or ""
    end
end


-- a target url's "host:port", by url: a few distinct urls per route (bounded)
local url_addr, url_addr_n = {}, 0


local function addr_of(url)
    local addr = url_addr[url]
    if addr == nil then
        addr = url:match("^%a+://([^/?#]+)") or false
        if url_addr_n >= 1024 then
            url_addr, url_addr_n = {}, 0
        end

        url_addr[url] = addr
        url_addr_n = url_addr_n + 1
    end

    return addr or nil
end


-- sends the request to the plugin's target or the route's upstream; returns status or
-- nil, err, gateway_status
local function proxy(ctx, route_up)
    local target = ctx.upstream_target
    if target then
        local t = target.timeout or EMPTY
        local addr = target.addr or addr_of(target.url)
        ctx.var.upstream_addr = addr
        -- positional: C reads no options table (target.header_plan: the headers made once
        -- into a list by upstream.header_plan, as ai-proxy does per instance)
        return upstream.proxy(target.url, target.method, target.header_plan or target.headers,
                              target.body, target.host, addr, t.connect, t.send, t.read,
                              target.ssl_verify ~= false, target.keepalive ~= false,
                              target.keepalive_timeout, target.max_duration)
    end

    if not route_up then
        return nil, "missing upstream configuration in Route or Service", 503
    end

    local tried
    local retries = route_up.retries
    local scheme = route_up.scheme or "http"
    local timeout = route_up.timeout or EMPTY
    local uri = http.get_uri()
    while true do
        local node, err = balancer.pick(route_up, tried)
        if not node then
            return nil, err, 502
        end

        local host
        local pass = route_up.pass_host or "pass"
        if pass == "node" then
            host = node.port == (scheme == "https" and 443 or 80) and node.host or node.addr
        elseif pass == "rewrite" then
            host = route_up.upstream_host
        else
            host = ctx._raw_host
        end

        ctx.var.upstream_addr = node.addr
        local status, perr, code = upstream.proxy(
            scheme .. "://" .. node.addr .. uri, nil, nil, nil, host, node.addr,
            timeout.connect, timeout.send, timeout.read,
            not (route_up.tls and route_up.tls.verify == false))
        if status or code ~= 502 then
            return status, perr, code
        end

        -- connect failure before anything was sent back: try another node
        tried = tried or {}
        tried[node.addr] = true
        if retries == nil then
            retries = balancer.node_count(route_up) - 1
        end

        if retries <= 0 then
            return status, perr, code
        end

        retries = retries - 1
        log_error("upstream ", node.addr, " failed (", perr, "), retrying")
    end
end


local function serve(ctx, list, route_up)
    local status, err, code = proxy(ctx, route_up)
    local has = list.has
    if not status or has.header_filter or has.body_filter then
        set_upstream_vars(ctx)      -- plugins below may read upstream_status
    end

    if not status then
        ctx.var.error_reason = err
        if code == 499 then
            return
        end

        http.error(code or 502, code == 504 and "upstream timed out"
                               or code == 503 and err or "upstream failed: " .. tostring(err))
        return
    end

    if list.has.header_filter then
        run(list, "header_filter", ctx)
    end

    -- No body_filter: the core relays the body. Nor when the only body_filter plugin leaves
    -- the body to the core (ctx.relay, set in its header_filter: the options of
    -- upstream.pass_body, e.g. capture, and `plugin`, its own name) and accounts for it once
    -- at the end from the copy (ctx.relay.done or ctx.relay_done: fn(ctx, ok, err, capture))
    -- instead of per chunk.
    local relay = ctx.relay
    relay = relay and list.n_body_filter == 1 and relay.plugin == list.body_filter_plugin
            and relay
    if not list.has.body_filter or relay then
        http.send_headers()
        local ok, perr, cap = upstream.pass_body(relay or nil)
        set_upstream_vars(ctx)
        if not ok then
            -- cut short by the upstream: close instead of ending the body cleanly, so the
            -- client can tell (what nginx does)
            ctx.var.error_reason = perr
            http.error(502, perr, true)
        end

        local done = relay and (relay.done or ctx.relay_done)
        if done then
            -- unprotected, as plugins' phases are (see http_request_failed, which finishes
            -- a whole body when done throws; a cut one was ended just above)
            ctx._relay_done = relay
            done(ctx, ok, perr, cap)
            ctx._relay_done = nil
        end

        return
    end

    -- the body may change length: chunked; headers go out with the first piece, so a
    -- body_filter may still change the status until then
    http.set_resp_header("Content-Length", nil)
    while true do
        local chunk, eof, rerr = upstream.read_body()
        if chunk == nil then
            break
        end

        ctx.chunk = chunk
        ctx.eof = eof
        if rerr then
            ctx.upstream_error = rerr
        end

        run(list, "body_filter", ctx)
        local out = ctx.chunk
        if out and out ~= "" then
            http.send_body(out)
        end

        if eof or ctx.upstream_aborted then
            if rerr then
                ctx.var.error_reason = rerr
                if not ctx.upstream_aborted then
                    http.error(502, rerr, true)
                end
            end

            break
        end
    end

    set_upstream_vars(ctx)
end


function _M.http_request()
    local method, path, query, host, remote_addr = http.info()
    local snap = config.current()
    local ctx = ctx_mod.new(method, path, query, host, remote_addr)

    local route = snap.router:match(method, path, ctx._host, ctx.var)
    if not route then
        http.respond(404, NOT_FOUND, JSON)
        finish_log(ctx, nil)
        ctx_mod.release(ctx)
        return
    end

    ctx.route = route
    ctx.route_id = route.id
    ctx.conf_version = snap.version
    local info = snap.info[route]
    local list = plan(snap, route, nil)

    local code, body = run(list, "rewrite", ctx)
    if not code and ctx.consumer then
        -- the consumer's plugins merge over the route's; those only the consumer has run
        -- their rewrite phase now (APISIX's rewrite_in_consumer)
        ctx.consumer_name = ctx.consumer.username
        list = plan(snap, route, ctx.consumer)
        code, body = run(config.plan_consumer_rewrite(snap, route, ctx.consumer), "rewrite",
                         ctx)
    end

    if not code then
        code, body = run(list, "access", ctx)
    end

    if code then
        respond(code, exit_body(ctx, code, body))
    else
        serve(ctx, list, info.upstream)
        http.finish()
    end

    finish_log(ctx, list)
    ctx_mod.release(ctx)            -- reused by a later request: nothing may keep it
end


local http_request = _M.http_request
local INTERNAL = { error_msg = "internal server error" }


-- The request's coroutine failed: a plugin, or the core, threw. Plugins' phases run without
-- a pcall each (see plugin.lua's call); the host (core/lua_vm.c) calls this instead, in a new
-- coroutine on the same request, with the dead coroutine (its stack still readable: the
-- failed plugin and phase, the request's ctx and plan) and the error with its traceback.
-- It ends the request as a pcall around the plugin call would have: rewrite or access ->
-- the JSON 500 (or _meta.error_response), then the log phase; header_filter, body_filter or
-- the relay's done -> the upstream stopped, a JSON 500 if nothing was sent yet, else the
-- connection closed (what nginx does when a filter fails), then the log phase; log -> the
-- log phase goes on with the next plugin. The access log line and the metrics are written
-- in every case.
function _M.http_request_failed(co, msg)
    local p, phase = plugin.failed_call(co)
    local ctx, list = plugin.frame_locals(co, http_request, "ctx", "list")
    local relay = ctx and ctx._relay_done
    if p then
        log_error("plugin ", p.name, " failed in ", phase, ": ", msg)
    elseif relay then
        log_error("relay_done of ", relay.plugin, " failed: ", msg)
    else
        log_error("request failed: ", msg)
    end

    if not ctx then
        return                      -- before the request had a ctx: the host answers 500
    end

    local _, resp_done = http.state()
    if phase == "log" then
        finish_log(ctx, list, p)
        return
    end

    if resp_done and not p and not relay then
        return                      -- the core failed after the response: nothing to redo
    end

    if not resp_done then
        if relay then
            http.finish()           -- the body went out whole; only its accounting failed
        elseif phase == "rewrite" or phase == "access" then
            respond(500, exit_body(ctx, 500, INTERNAL))
        else
            upstream.abort()
            http.error(500, "internal server error", true)
        end
    end

    finish_log(ctx, list, true)
end


function _M.admin_request()
    local method, path, query, _, remote_addr = http.info()
    local admin = _M.admin
    if not admin then
        http.respond(404, NOT_FOUND, JSON)
        return
    end

    local status, body, headers = admin.handle({
        method = method,
        path = path,
        args = pdk.request.decode_args(query),
        headers = http.get_headers(),
        body = http.get_body(),
        remote_addr = remote_addr,
    })

    if headers then
        for k, v in pairs(headers) do
            http.set_resp_header(k, v)
        end
    end

    if type(body) == "table" then
        http.respond(status, (cjson.encode(body) or "{}") .. "\n", JSON)
    else
        local ct = not (headers and headers["Content-Type"]) and "text/plain" or nil
        http.respond(status, body or "", ct)
    end
end


function _M.metrics_request()
    local method, path = http.info()
    if path ~= "/apisix/prometheus/metrics" or (method ~= "GET" and method ~= "HEAD") then
        http.respond(404, NOT_FOUND, JSON)
        return
    end

    if not metrics then
        http.respond(200, "", "text/plain; version=0.0.4")
        return
    end

    http.respond(200, metrics.collect(), "text/plain; version=0.0.4; charset=utf-8")
end


local function version_fn()
    local dict = pdk.shared["sluice-config"]
    return dict and dict:get("version") or 0
end


function _M.init_worker(conf_json, slot, workers, generation)
    -- a GC cycle when the heap has tripled, not doubled: every cycle walks the live heap
    -- (routes, plugin state), so fewer cycles is less work per request (-6 % instructions per
    -- ai-proxy request, t/bench/lua_cost.sh); idle memory is unchanged
    collectgarbage("setpause", 300)
    node_conf = cjson.decode(conf_json)
    node_conf.home = core.home
    log_enabled = node_conf.access_log ~= false and node_conf.access_log ~= nil

    local ok, err = plugin.init(node_conf, core.home)
    if not ok then
        error(err)
    end

    ok, err = config.init(node_conf, {
        log = function(level, ...)
            local f = pdk.log[level] or pdk.log.error
            f(...)
        end,
        version_fn = version_fn,
    })
    if not ok then
        error(err)
    end

    local has_metrics, m = pcall(require, "sluice.metrics")
    if has_metrics then
        metrics = m
        metrics.init(node_conf)
    end

    local has_admin, admin = pcall(require, "sluice.admin")
    if has_admin and node_conf.admin then
        local read_only
        if node_conf.config.provider == "file" then
            read_only = "the configuration comes from config.file (config.provider \"file\"); "
                        .. "the Admin API cannot change it"
        end

        local aok, aerr = admin.init({
            read_only = read_only,
            keys = node_conf.admin.keys,
            allow = node_conf.admin.allow,
            data_dir = node_conf.prefix .. "/data",
            keyring = node_conf.data_encryption and node_conf.data_encryption.keyring,
            max_body = 16 * 1024 * 1024,
            plugins = plugin,
            store = config.store(),
            on_change = function()
                local dict = pdk.shared["sluice-config"]
                if dict then
                    dict:incr("version", 1, 0)
                end

                config.refresh(false)
            end,
            on_plugins_reload = function()
                local dict = pdk.shared["sluice-config"]
                if dict then
                    dict:incr("plugins_version", 1, 0)
                end
            end,
        })
        if not aok then
            error("admin API: " .. tostring(aerr))
        end

        _M.admin = admin
    elseif not has_admin and node_conf.admin then
        pdk.log.warn("admin API not available: ", admin)
    end

    -- follow the configuration source and plugin reloads
    local plugins_version = version_fn and (pdk.shared["sluice-config"]
        and pdk.shared["sluice-config"]:get("plugins_version")) or 0
    pdk.timer.every(node_conf.config.provider == "file" and 1 or 0.1, function()
        local dict = pdk.shared["sluice-config"]
        local pv = dict and dict:get("plugins_version") or 0
        if pv ~= plugins_version then
            plugins_version = pv
            local rok, rerr = plugin.load_all()
            if not rok then
                pdk.log.error("plugin reload failed: ", rerr)
            end
        end

        config.refresh(false)
    end)
end


return _M
