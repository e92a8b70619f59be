-- sluice.config: the configuration snapshot each worker serves from, and how it follows
-- the source. Sources: "store" (the Admin API's DIR/data/store.json; a version counter in
-- the sluice-config shared dict says when to re-read) and "file" (a standalone JSON or Lua
-- file in APISIX's shape, re-read when it changes). A snapshot is immutable: a request keeps
-- the one it started with; a change builds a new one.
--
-- Every resource is checked as APISIX's data plane checks what it reads from etcd (schema,
-- plugin schemas, defaults filled in). For the store the check runs on a copy (the Admin API
-- serves the document as written) and the checked copy is kept per id and write index, so a
-- change re-checks only what changed; a stored item that no longer passes (a plugin was
-- removed from the node) is skipped with a logged reason. A standalone file is checked whole
-- and rejected whole: the previous snapshot keeps serving and the reason is logged.
local conf_mod = require("sluice.conf")
local plugin = require("sluice.plugin")
local router_mod = require("sluice.router")
local validate = require("sluice.config.validate")
local store_mod = require("sluice.config.store")
local schema = require("sluice.schema")

local pairs = pairs
local ipairs = ipairs
local type = type
local tostring = tostring
local setmetatable = setmetatable
local next = next
local deepcopy = schema.deepcopy
local sort = table.sort

local KINDS = { "routes", "services", "upstreams", "consumers", "plugin_configs",
                "global_rules", "plugin_metadata", "ssls", "consumer_groups", "credentials" }

-- the order items are checked in (references point into earlier kinds). secrets, protos and
-- stream_routes are stored by the Admin API but nothing here uses them.
local CHECK_ORDER = { "upstreams", "ssls", "services", "plugin_configs", "consumer_groups",
                      "consumers", "credentials", "global_rules", "plugin_metadata", "routes" }

local SKIP_REFS = { skip_references = true }
local now = store_mod.now
local expired = store_mod.expired
local EMPTY = setmetatable({}, { __newindex = function() error("read-only table") end })

-- vars operators ~~ and ~* use PCRE2 (pdk.re), as APISIX's lua-resty-expr does
local ROUTER_OPTS = {
    re_find = function(subject, pattern, flags)
        return (require("sluice.pdk.re").find(subject, pattern, flags and flags:gsub("[jo]", "")))
    end,
}

local _M = {}

local snapshot
local source = {}
local log = function() end


-- ids of one kind's entries in a stable order: file position when known, else id
local function sorted_ids(map)
    local ids, n, ordered = {}, 0, false
    for id, entry in pairs(map or {}) do
        if type(entry) == "table" and type(entry.value) == "table" then
            n = n + 1
            ids[n] = id
            ordered = ordered or entry.order ~= nil
        end
    end

    if ordered then
        sort(ids, function(a, b)
            local oa, ob = map[a].order or 0, map[b].order or 0
            if oa ~= ob then
                return oa < ob
            end

            return tostring(a) < tostring(b)
        end)

    else
        sort(ids)
    end

    return ids
end


-- The checked value of one entry: from the previous build when the entry did not change,
-- else a checked copy; false when it does not pass.
local function checked(kind, id, entry, doc, ctx)
    if not ctx.validate then
        return entry.value
    end

    local prev = ctx.prev[kind]
    local c = prev and prev[id]
    if c and c.ci == entry.createdIndex and c.mi == entry.modifiedIndex and c.gen == ctx.gen then
        ctx.items[kind][id] = c
        return c.value
    end

    local copy = deepcopy(entry.value)
    local ok, err = validate.resource(kind, copy, doc, plugin, SKIP_REFS)
    if not ok then
        log("error", "skipping ", kind, "/", id, ": ", err)
        copy = false
    end

    ctx.items[kind][id] = { ci = entry.createdIndex, mi = entry.modifiedIndex, gen = ctx.gen,
                            value = copy }
    return copy
end


local function merge_into(dst, set)
    if type(set) == "table" then
        for name, conf in pairs(set) do
            dst[name] = conf
        end
    end
end


local function pick_upstream(route, service, upstreams)
    if route.upstream_id ~= nil then
        return upstreams[tostring(route.upstream_id)]
    end

    if route.upstream then
        return route.upstream
    end

    if not service then
        return nil
    end

    if service.upstream_id ~= nil then
        return upstreams[tostring(service.upstream_id)]
    end

    return service.upstream
end


-- A consumer as requests see it: with a group_id, the group's plugins under its own (the
-- consumer's conf wins for the same plugin, as in APISIX's merge_consumer_route). A new table
-- per snapshot: the checked value is shared with other snapshots.
local function effective_consumer(consumer, groups)
    local group = consumer.group_id ~= nil and groups[tostring(consumer.group_id)]
    if not group or type(group.plugins) ~= "table" or next(group.plugins) == nil then
        return consumer
    end

    local c = {}
    for k, v in pairs(consumer) do
        c[k] = v
    end

    c.plugins = {}
    merge_into(c.plugins, group.plugins)
    merge_into(c.plugins, consumer.plugins)
    return c
end


-- store-shaped document -> snapshot (or nil, err).
-- opts.validate: check every item (a copy of it); opts.prev: the snapshot this one replaces,
-- whose checked items are reused when unchanged.
function _M.build(doc, version, opts)
    opts = opts or {}
    local ctx = {
        validate = opts.validate,
        prev = opts.prev and opts.prev._items or {},
        gen = plugin.generation(),
        items = {},
    }

    local by_kind = {}
    local clock, next_expiry = now(), nil
    for _, kind in ipairs(CHECK_ORDER) do
        ctx.items[kind] = {}
        local t, list, n = {}, {}, 0
        local map = doc[kind]
        for _, id in ipairs(sorted_ids(map)) do
            local entry = map[id]
            local v = not expired(entry, clock) and checked(kind, id, entry, doc, ctx)
            if v and entry.expire_at and (not next_expiry or entry.expire_at < next_expiry) then
                next_expiry = entry.expire_at
            end

            if v then
                t[id] = v
                n = n + 1
                list[n] = v
            end
        end

        by_kind[kind] = { map = t, list = list }
    end

    local consumers = {}
    for name, c in pairs(by_kind.consumers.map) do
        consumers[name] = effective_consumer(c, by_kind.consumer_groups.map)
    end

    -- credentials whose consumer is served: { consumer = username, id =, value = }, key order
    local credentials, ckeys = {}, {}
    for key in pairs(by_kind.credentials.map) do
        ckeys[#ckeys + 1] = key
    end

    sort(ckeys)
    for _, key in ipairs(ckeys) do
        local user, cid = key:match("^([^/]+)/(.+)$")
        if user and consumers[user] then
            credentials[#credentials + 1] = { consumer = user, id = cid,
                                              value = by_kind.credentials.map[key] }
        end
    end

    local snap = {
        version = version or 0,
        next_expiry = next_expiry,                  -- the first expire_at of a served item
        upstreams = by_kind.upstreams.map,
        services = by_kind.services.map,
        consumers = consumers,                      -- by username, group plugins merged in
        credentials = credentials,
        consumer_groups = by_kind.consumer_groups.map,
        plugin_configs = by_kind.plugin_configs.map,
        plugin_metadata = by_kind.plugin_metadata.map,
        ssls = by_kind.ssls.list,
        global_rules = by_kind.global_rules.list,
        routes = {},
        info = {},       -- route -> {plugins = merged conf set, upstream = table, service}
        _items = ctx.items,
    }

    -- global rules in id order; a later rule's conf wins for the same plugin (the Admin API
    -- refuses two rules with the same plugin)
    local global = {}
    for _, rule in ipairs(snap.global_rules) do
        for name, conf in pairs(rule.plugins or {}) do
            global[name] = conf
        end
    end

    snap.global_plugins = global

    -- precedence as APISIX: service < plugin_config < route (< consumer, at request time)
    for _, route in ipairs(by_kind.routes.list) do
        local service = route.service_id ~= nil and snap.services[tostring(route.service_id)]
                        or nil
        local pc = route.plugin_config_id ~= nil
                   and snap.plugin_configs[tostring(route.plugin_config_id)] or nil
        local plugins = route.plugins or EMPTY
        if service or pc then
            plugins = {}
            merge_into(plugins, service and service.plugins)
            merge_into(plugins, pc and pc.plugins)
            merge_into(plugins, route.plugins)
        end

        local r = route
        if route.hosts == nil and route.host == nil and service and service.hosts then
            -- this snapshot's view: the checked route itself is shared with later snapshots
            r = {}
            for k, v in pairs(route) do
                r[k] = v
            end

            r.hosts = service.hosts
        end

        if r.status ~= 0 then
            snap.routes[#snap.routes + 1] = r
        end

        snap.info[r] = { plugins = plugins, upstream = pick_upstream(r, service, snap.upstreams),
                         service = service }
    end

    local rt, err = router_mod.new(snap.routes, ROUTER_OPTS)
    if not rt then
        return nil, err
    end

    snap.router = rt
    snap.plans = setmetatable({}, { __mode = "k" })
    return snap
end


-- the ordered plugin list for a route (and consumer), cached per snapshot
function _M.plan(snap, route, consumer)
    local key = consumer and consumer or route
    local cache = snap.plans[route]
    if not cache then
        cache = setmetatable({}, { __mode = "k" })
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


-- The plugins a consumer brings that the route (and the global rules) do not have, auth
-- plugins excepted: APISIX runs their rewrite phase once the consumer is known
-- ("rewrite_in_consumer"). Cached per snapshot; an empty list when there are none.
function _M.plan_consumer_rewrite(snap, route, consumer)
    local key = snap.consumer_rewrite
    if not key then
        key = setmetatable({}, { __mode = "k" })
        snap.consumer_rewrite = key
    end

    local per_route = key[route]
    if not per_route then
        per_route = setmetatable({}, { __mode = "k" })
        key[route] = per_route
    end

    local list = per_route[consumer]
    if list and list.generation == plugin.generation() then
        return list
    end

    local info = snap.info[route]
    local only = {}
    for name, conf in pairs(consumer.plugins or EMPTY) do
        local mod = plugin.get(name)
        if info.plugins[name] == nil and snap.global_plugins[name] == nil
           and not (mod and mod.type == "auth")
        then
            only[name] = conf
        end
    end

    list = plugin.build(only)
    per_route[consumer] = list
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
    local doc, err = conf_mod.read_table(path)
    if not doc then
        return nil, err
    end

    local ok, out = validate.document(doc, plugin)
    if not ok then
        return nil, out
    end

    return out
end


local function refresh_file(force)
    local raw = read_file(source.path)
    if raw == nil then
        if not source.warned then
            log("error", "cannot read the configuration file ", source.path)
            source.warned = true
        end

        return false
    end

    if not force and raw == source.raw and source.gen == plugin.generation() then
        return false
    end

    source.raw = raw
    source.gen = plugin.generation()
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


local function refresh_store(force)
    local version = source.version_fn and source.version_fn() or 0
    local gen = plugin.generation()
    local expiring = snapshot and snapshot.next_expiry and now() >= snapshot.next_expiry
    if not force and version == source.version and gen == source.gen and not expiring then
        return false
    end

    local doc, err = source.store:read()
    if not doc then
        log("error", "cannot read the store: ", err)
        return false
    end

    -- tried once per change: a document that does not build is not retried every poll
    source.version = version
    source.gen = gen
    if snapshot and doc == source.doc and not force and gen == snapshot._gen
       and not expiring
    then
        return false
    end

    if expiring then
        -- the first worker to get here takes expired items out of the file too
        local swept, serr = source.store:sweep()
        if swept == nil then
            log("error", "cannot remove expired items from the store: ", serr)

        elseif swept then
            doc = source.store:read() or doc
        end
    end

    if doc ~= source.doc then
        -- sealed values no keyring entry opens stay sealed: say so once per document
        for _, w in ipairs(source.store.warnings or {}) do
            log("error", w)
        end
    end

    local snap, berr = _M.build(doc, doc._index or version, { validate = true, prev = snapshot })
    if not snap then
        log("error", "cannot build the configuration from the store: ", berr)
        return false
    end

    snap._gen = gen
    source.doc = doc
    snapshot = snap
    return true
end


-- re-reads the source; returns true when a new snapshot was installed
function _M.refresh(force)
    if source.kind == "file" then
        return refresh_file(force)
    end

    if source.kind == "store" then
        return refresh_store(force)
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

    local keyring = conf.data_encryption and conf.data_encryption.keyring
    if keyring ~= nil and not (type(keyring) == "table" and next(keyring) == nil) then
        local box, kerr = require("sluice.crypto").new(keyring)
        if not box then
            return nil, kerr
        end
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
