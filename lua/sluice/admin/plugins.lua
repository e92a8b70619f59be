-- admin/plugins.lua -- the Admin API endpoints about plugins and schemas, as in
-- apisix/admin/{plugins,schema}.lua and the plugin routes of apisix/admin/init.lua:
--   GET  /apisix/admin/plugins/list            names, highest priority first
--   GET  /apisix/admin/plugins/{name}          the plugin's schema (?schema_type=consumer)
--   GET  /apisix/admin/plugins?all=true        every plugin's attributes (deprecated in APISIX)
--   PUT  /apisix/admin/plugins/reload          re-load plugin code, 200 "done"
--   GET  /apisix/admin/schema/{name}           a resource schema (route, upstream ...)
--   POST /apisix/admin/schema/validate/{kind}  check a body against a resource schema
local schema     = require("sluice.schema")
local schema_def = require("sluice.schema_def")

local type     = type
local pcall    = pcall
local ipairs   = ipairs
local tostring = tostring
local tab_sort = table.sort

local ALL_ATTRS = { "version", "priority", "schema", "metadata_schema", "consumer_schema",
                    "type", "scope" }

-- GET /apisix/admin/schema/{name} names, as core.schema fields in APISIX
local SCHEMAS = {
    route = schema_def.route,
    service = schema_def.service,
    upstream = schema_def.upstream,
    consumer = schema_def.consumer,
    ssl = schema_def.ssl,
    global_rule = schema_def.global_rule,
    plugin_config = schema_def.plugin_config,
    plugin_metadata = schema_def.plugin_metadata,
    id_schema = schema_def.id_schema,
    upstream_hash_vars_schema = schema_def.upstream_hash_vars_schema,
    upstream_hash_header_schema = schema_def.upstream_hash_header_schema,
}

local _M = {}


local function err_body(msg)
    return { error_msg = msg }
end


local function subsystem_of(args)
    return args.subsystem or "http"
end


local function plugin_names(registry)
    local names = {}
    local ok, list = pcall(registry.list)
    if not ok or type(list) ~= "table" then
        return names
    end

    for _, name in ipairs(list) do
        local p = registry.get(name)
        if type(p) == "table" and p.priority then
            names[#names + 1] = name
        end
    end

    return names
end


function _M.list(ctx, args)
    local subsystem = subsystem_of(args)
    if subsystem ~= "http" and subsystem ~= "stream" then
        return 400, "invalid subsystem passed"
    end

    if subsystem == "stream" then
        return 200, "[]"       -- no stream plugins in Sluice
    end

    local registry = ctx.registry
    local names = plugin_names(registry)
    local prio = {}
    for _, name in ipairs(names) do
        prio[name] = registry.get(name).priority
    end

    tab_sort(names, function(a, b)
        if prio[a] ~= prio[b] then
            return prio[a] > prio[b]
        end

        return a < b
    end)

    if #names == 0 then
        return 200, "[]"
    end

    return 200, names
end


function _M.get(ctx, name, args)
    local subsystem = subsystem_of(args)
    if subsystem ~= "http" and subsystem ~= "stream" then
        return 400, err_body("unsupported subsystem: " .. tostring(subsystem))
    end

    local registry = ctx.registry
    if args.all == "true" then
        local all = {}
        if subsystem == "http" then
            for _, pname in ipairs(plugin_names(registry)) do
                local p = registry.get(pname)
                local picked = {}
                for _, attr in ipairs(ALL_ATTRS) do
                    picked[attr] = p[attr]
                end

                all[pname] = picked
            end
        end

        return 200, all
    end

    local p = subsystem == "http" and name and registry.get(name) or nil
    if type(p) ~= "table" then
        return 404, err_body("plugin not found in subsystem " .. subsystem)
    end

    local json_schema = p.schema
    if args.schema_type == "consumer" then
        json_schema = p.consumer_schema
    end

    if not json_schema then
        return 400, err_body("not found schema")
    end

    return 200, json_schema
end


function _M.reload(ctx, method)
    if method ~= "PUT" then
        return 405, err_body("please use PUT method to reload the plugins, " .. method
                             .. " method is not allowed.")
    end

    if ctx.on_plugins_reload then
        local ok, err = pcall(ctx.on_plugins_reload)
        if not ok then
            return 503, err_body("failed to reload plugins: " .. tostring(err))
        end
    end

    return 200, "done"
end


function _M.resource_schema(name)
    local s = SCHEMAS[name]
    if not s then
        return 400, err_body("not found schema: " .. tostring(name))
    end

    return 200, s
end


-- POST /apisix/admin/schema/validate/{kind}: the resource schema only, as APISIX does (no
-- plugin or reference checks); the body is not changed by default filling.
function _M.validate(kind, body)
    local s = schema_def.by_kind[kind]
    if not s then
        return 404, err_body("Unsupported resource type: " .. tostring(kind))
    end

    local ok, err = schema.check(s, schema.deepcopy(body))
    if not ok then
        return 400, err_body(err)
    end

    return 200, ""
end


return _M
