-- test-pdk: exercises the plugin API for t/http/pdk.t (and the shared-dict counter in
-- t/http/reload.t). conf.mode picks what it does.
local pdk = require("sluice.pdk")

local schema = {
    type = "object",
    properties = {
        mode = { type = "string" },
        url = { type = "string" },
        sleep = { type = "number" },
    },
    required = { "mode" },
}

local _M = { name = "test-pdk", version = 1, priority = 1000, schema = schema }

local DICT = "plugin-limit-count"

-- pdk.response.clear_headers with a set made once (mode "strip_set") and with the tables
-- (mode "strip_tables"): the same names go
local STRIP_NAMES, STRIP_PREFIXES = { ["x-drop-me"] = true, ["server"] = true }, { "x-pre-" }
local STRIP_SET = pdk.response.header_set(STRIP_NAMES, STRIP_PREFIXES)


local function request_info(ctx)
    local args = pdk.request.get_args(ctx)
    local body = pdk.request.get_body(nil, ctx)
    local info = {
        method = pdk.request.get_method(),
        uri = pdk.request.get_uri(),
        path = pdk.request.get_path(),
        arg_x = ctx.var.arg_x,
        args_x = args.x,
        http_x_foo = ctx.var.http_x_foo,
        header_x_foo = pdk.request.header(ctx, "x-FOO"),
        headers_x_foo = pdk.request.headers(ctx)["x-foo"],
        body_len = body and #body or 0,
        remote_addr = ctx.var.remote_addr,
        route_id = ctx.var.route_id,
    }
    local json, err = pdk.request.get_json(ctx)
    info.json_model = json and json.model
    info.json_err = err
    return info, json
end


local MODES = {}


function MODES.request(conf, ctx)
    local info, json = request_info(ctx)
    ctx[_M.name] = info
    pdk.request.set_header(ctx, "X-Added", "added")
    pdk.request.set_header(ctx, "X-Remove-Me", nil)
    if json then
        json.extra = "yes"
        pdk.request.set_body(ctx, pdk.json.encode(json))
        local again = pdk.request.get_json(ctx)
        info.json_after_set = again and again.extra
    end
end


-- pdk.upstream.set with headers made once into a plan: set, replaced (any case) and removed
local PLAN_HEADERS = { ["x-plan"] = "yes", ["X-Foo"] = "from-plan", ["x-remove-me"] = false }
local PLAN = pdk.upstream.header_plan(PLAN_HEADERS)

function MODES.plan(conf, ctx)
    pdk.upstream.set(ctx, { url = conf.url, method = "POST", headers = PLAN,
                            body = '{"via":"plan"}' })
end


-- ctx and ctx.var are reused by later requests (sluice.ctx): none of a request's values may
-- show up in the next one
function MODES.fresh(conf, ctx)
    local left = {}
    for _, k in ipairs({ "fresh_marker", "route_leftover" }) do
        if ctx[k] ~= nil then
            left[#left + 1] = "ctx." .. k
        end
    end

    if rawget(ctx.var, "fresh_var") ~= nil or rawget(ctx.var, "llm_model") ~= nil then
        left[#left + 1] = "ctx.var"
    end

    if ctx[_M.name] ~= nil then
        left[#left + 1] = "ctx[plugin]"
    end

    ctx.fresh_marker = true
    ctx.route_leftover = ctx.var.arg_id
    ctx.var.fresh_var = ctx.var.arg_id
    ctx.var.llm_model = "m-" .. tostring(ctx.var.arg_id)
    ctx[_M.name] = { id = ctx.var.arg_id }
    ctx.fresh_left = #left == 0 and "clean" or table.concat(left, ",")
end


function MODES.strict_json(conf, ctx)
    local json, err = pdk.request.get_json(ctx)
    if not json then
        return 400, { error = err }
    end

    return 200, { model = json.model }
end


function MODES.shared(conf, ctx)
    local dict = pdk.shared[DICT]
    local n, err = dict:incr("test-pdk-count", 1, 0)
    if not n then
        return 500, { error = err }
    end

    return 200, { count = n, worker = pdk.worker.id() }
end


function MODES.http(conf, ctx)
    local res, err = pdk.http.request({
        method = "POST",
        url = conf.url,
        headers = { ["X-From-Plugin"] = "yes", ["Content-Type"] = "application/json" },
        body = '{"from":"plugin"}',
        timeout = 1,
    })
    if not res then
        return 502, { error = tostring(err) }
    end

    return 200, { status = res.status, content_type = res.headers["content-type"],
                  body = res.body }
end


function MODES.sleep(conf, ctx)
    pdk.timer.sleep(conf.sleep or 0.2)
    return 200, { slept = conf.sleep or 0.2 }
end


function MODES.re(conf, ctx)
    local m = pdk.re.match(pdk.request.get_path(), [[^/pdk/re/(\w+)-(\d+)$]], "jo")
    local none = pdk.re.match("nothing here", [[\d+]], "jo")
    local replaced, n = pdk.re.gsub("a1b22c333", [[\d+]], "#", "jo")
    local from, to = pdk.re.find("hello world", [[wor]], "jo")
    local ci = pdk.re.match("HeLLo", "^hello$", "ijo")
    return 200, { m0 = m and m[0], m1 = m and m[1], m2 = m and m[2], none = none == nil,
                  replaced = replaced, n = n, from = from, to = to, ci = ci and ci[0] }
end


function MODES.log(conf, ctx)
    pdk.log.warn("says ", 42, " for ", ctx.var.arg_id)
end


function MODES.peek(conf, ctx)
    local v = pdk.shared[DICT]:get("test-pdk-log-" .. tostring(ctx.var.arg_id))
    return 200, { value = v or pdk.json.null }
end


function _M.access(conf, ctx)
    local fn = MODES[conf.mode]
    if fn then
        return fn(conf, ctx)
    end
end


function _M.header_filter(conf, ctx)
    if conf.mode == "request" then
        pdk.response.set_header("X-Seen", pdk.json.encode(ctx[_M.name]))
    end

    if conf.mode == "status" then
        pdk.response.set_status(203)
    end

    if conf.mode == "fresh" then
        pdk.response.set_header("X-Fresh", ctx.fresh_left)
        pdk.response.set_header("X-Fresh-Var", ctx.var.fresh_var)
    end

    if conf.mode == "strip_set" then
        pdk.response.clear_headers(STRIP_SET)
    elseif conf.mode == "strip_tables" then
        pdk.response.clear_headers(STRIP_NAMES, STRIP_PREFIXES)
    end

    pdk.response.set_header("X-Upstream-Status", tostring(pdk.response.get_upstream_status(ctx)))
    pdk.response.set_header("X-Upstream-Ct", pdk.response.get_header("Content-Type"))
end


function _M.body_filter(conf, ctx)
    if conf.mode == "upper" and ctx.chunk then
        ctx.chunk = ctx.chunk:upper()
    end
end


function _M.log(conf, ctx)
    if conf.mode == "log" then
        pdk.shared[DICT]:set("test-pdk-log-" .. tostring(ctx.var.arg_id),
                             tostring(ctx.var.status) .. "/" .. tostring(ctx.var.upstream_status))
    end
end


return _M
