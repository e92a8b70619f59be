-- sluice.config: the configuration snapshot each worker serves from, and how it follows
-- the source. Sources: "store" (the Admin API's DIR/data/store.json; a version counter in
-- the sluice-config shared dict says when to re-read) and "file" (a standalone JSON or Lua
-- file in APISIX's shape, re-read when it changes). A snapshot is immutable: a request keeps
-- the one it started with; a change builds a new one. A source that fails to load or
-- validate is rejected whole and the previous snapshot keeps serving.
local conf_mod = require("sluice.conf")
local plugin = require("sluice.plugin")
local router_mod = require("sluice.router")
local validate = require("sluice.config.validate")
local store_mod = require("sluice.config.store")
local tab = require("sluice.pdk.table")

local pairs = pairs
local ipairs = ipairs
local type = type

local KINDS = { "routes", "services", "upstreams", "consumers", "plugin_configs",
                "global_rules", "plugin_metadata", "ssls" }

local _M = {}

local snapshot
local source = {}
local log = function() end


local function values(map)
    local list = {}
    for _, entry in pairs(map or {}) do
        list[#list + 1] = entry.value
    end

    return list
end


local function by_id(map)
    local t = {}
    for id, entry in pairs(map or {}) do
        t[id] = entry.value
    end

    return t
end


-- store-shaped document -> snapshot (or nil, err)
function _M.build(doc, version)
    local snap = {
        version = version or 0,
        upstreams = by_id(doc.upstreams),
        services = by_id(doc.services),
        consumers = by_id(doc.consumers),
        plugin_configs = by_id(doc.plugin_configs),
        plugin_metadata = by_id(doc.plugin_metadata),
        ssls = values(doc.ssls),
        global_rules = values(doc.global_rules),
        routes = {},
        info = {},       -- route -> {plugins = merged conf set, upstream = table}
    }

    local global = {}
    table.sort(snap.global_rules, function(a, b) return tostring(a.id) < tostring(b.id) end)
    for _, rule in ipairs(snap.global_rules) do
        for name, conf in pairs(rule.plugins or {}) do
            global[name] = conf
        end
    end

    snap.global_plugins = global

    for _, route in ipairs(values(doc.routes)) do
        local service = route.service_id and snap.services[tostring(route.service_id)]
        local pc = route.plugin_config_id and snap.plugin_configs[tostring(route.plugin_config_id)]
        local plugins = {}
        if service and service.plugins then
            tab.merge(plugins, service.plugins)
        end

        if pc and pc.plugins then
            for k, v in pairs(pc.plugins) do
                plugins[k] = v
            end
        end

        for k, v in pairs(route.plugins or {}) do
            plugins[k] = v
        end

        local up = route.upstream
        if not up and route.upstream_id then
            up = snap.upstreams[tostring(route.upstream_id)]
        end

        if not up and service then
            up = service.upstream
            if not up and service.upstream_id then
                up = snap.upstreams[tostring(service.upstream_id)]
            end
        end

        if route.status ~= 0 then
            snap.routes[#snap.routes + 1] = route
        end

        snap.info[route] = { plugins = plugins, upstream = up, service = service }
        if route.hosts == nil and route.host == nil and service and service.hosts then
            route.hosts = service.hosts
        end
    end

    local r, err = router_mod.new(snap.routes)
    if not r then
        return nil, err
    end

    snap.router = r
    snap.plans = setmetatable({}, { __mode = "k" })
    return snap
end


-- the ordered plugin list for a route (and consumer), cached per snapshot
function _M.plan(snap, route, consumer)
    local key = consumer and consumer or route
    local cache = snap.plans[route]
    if not cache then
        cache = {}
        snap.plans[route] = cache
    end

    local list = cache[key]
    if list and list.generation == plugin.generation() then
        return list
    end

    local info = snap.info[route]
    list = plugin.build(snap.global_plugins, info.plugins, consumer and consumer.plugins)
    cache[key] = list
    return list
end


local function read_file(path)
    local f, err = io.open(path, "rb")
    if not f then
        return nil, err
    end

    local data = f:read("*a")
    f:close()
    return data
end


local function load_file_doc(path)
    local raw, err = read_file(path)
    if not raw then
        return nil, "cannot read " .. path .. ": " .. tostring(err)
    end

    local doc
    doc, err = conf_mod.read_table(path)
    if not doc then
        return nil, err
    end

    local ok, out = validate.document(doc, plugin)
    if not ok then
        return nil, out
    end

    return out, raw
end


-- re-reads the source; returns true when a new snapshot was installed
function _M.refresh(force)
    if source.kind == "file" then
        local raw = read_file(source.path)
        if raw == nil then
            if not source.warned then
                log("error", "cannot read the configuration file ", source.path)
                source.warned = true
            end

            return false
        end

        if not force and raw == source.raw then
            return false
        end

        source.raw = raw
        source.warned = false
        local doc, err = load_file_doc(source.path)
        if not doc then
            log("error", "rejected configuration file ", source.path, ": ", err)
            return false
        end

        local snap, berr = _M.build(doc, (snapshot and snapshot.version or 0) + 1)
        if not snap then
            log("error", "rejected configuration file ", source.path, ": ", berr)
            return false
        end

        snapshot = snap
        return true
    end

    if source.kind == "store" then
        local version = source.version_fn and source.version_fn() or 0
        if not force and version == source.version then
            return false
        end

        local doc, err = source.store:read()
        if not doc then
            log("error", "cannot read the store: ", err)
            return false
        end

        local snap, berr = _M.build(doc, doc._index or version)
        if not snap then
            log("error", "cannot build the configuration from the store: ", berr)
            return false
        end

        source.version = version
        snapshot = snap
        return true
    end

    return false
end


-- worker start: conf is the normalised node configuration
function _M.init(conf, opts)
    log = opts.log or log
    if conf.config.provider == "file" then
        source = { kind = "file", path = conf.config.file }
    else
        local st, err = store_mod.open(conf.prefix .. "/data", {
            keyring = conf.data_encryption and conf.data_encryption.keyring,
            plugins = plugin,
        })
        if not st then
            return nil, err
        end

        source = { kind = "store", store = st, version_fn = opts.version_fn, version = -1 }
    end

    _M.refresh(true)
    if not snapshot then
        snapshot = _M.build({}, 0)
    end

    return true
end


function _M.current()
    return snapshot
end


function _M.store()
    return source.store
end


-- master (-t, start, reload): the source must load and validate
function _M.check(conf)
    local ok, err = plugin.init(conf, conf.home or _M.home or ".")
    if not ok then
        return nil, err
    end

    if conf.config.provider == "file" then
        local doc, derr = load_file_doc(conf.config.file)
        if not doc then
            return nil, "invalid configuration file " .. conf.config.file .. ": " .. derr
        end

        local snap, berr = _M.build(doc, 0)
        if not snap then
            return nil, berr
        end

        return true
    end

    local path = conf.prefix and (conf.prefix .. "/data/store.json")
    if path and read_file(path) then
        local doc, lerr = store_mod.load_file(path, {
            keyring = conf.data_encryption and conf.data_encryption.keyring })
        if not doc then
            return nil, "invalid store " .. path .. ": " .. tostring(lerr)
        end
    end

    return true
end


_M.KINDS = KINDS

return _M
