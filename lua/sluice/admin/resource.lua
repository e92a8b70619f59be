-- admin/resource.lua -- GET/PUT/POST/DELETE/PATCH of Admin API resources over the store,
-- following apisix/admin/resource.lua: the same id rules, statuses, envelopes and messages.
--
-- Every write runs inside one store transaction: references are checked against the same
-- document that is then written, so a route cannot be stored pointing at an upstream deleted
-- a moment before. What is stored is what the client sent plus id and timestamps; schema
-- defaults are filled only into the copy that is validated (as APISIX does).
local cjson    = require("cjson.safe")
local schema   = require("sluice.schema")
local validate = require("sluice.config.validate")
local store    = require("sluice.config.store")

local type       = type
local pcall      = pcall
local pairs      = pairs
local ipairs     = ipairs
local next       = next
local tostring   = tostring
local tonumber   = tonumber
local str_format = string.format
local tab_sort   = table.sort
local tab_concat = table.concat
local deepcopy   = schema.deepcopy
local null       = cjson.null
local expired    = store.expired
local clock      = store.now

local MIN_PAGE_SIZE = 10
local MAX_PAGE_SIZE = 500

-- Per resource: the word APISIX uses in messages, which methods it refuses, whether the id
-- comes from the body (consumers: username; plugin_metadata: the plugin name in the path).
-- credentials live under a consumer (`scope`, the username): stored as "<username>/<id>",
-- their value.id is the credential id. secrets are stored as "<manager>/<id>", which is also
-- their value.id, as in APISIX.
local KINDS = {
    routes = { kind = "route", filters = { service_id = true, upstream_id = true } },
    services = { kind = "service" },
    upstreams = { kind = "upstream" },
    consumers = { kind = "consumer", no_id = true, unsupported = { post = true, patch = true } },
    plugin_configs = { kind = "plugin config", unsupported = { post = true } },
    global_rules = { kind = "global rule", unsupported = { post = true } },
    plugin_metadata = { kind = "plugin_metadata", no_id = true,
                        unsupported = { post = true, patch = true } },
    ssls = { kind = "ssl" },
    consumer_groups = { kind = "consumer group", unsupported = { post = true } },
    credentials = { kind = "credential", scoped = true,
                    unsupported = { post = true, patch = true } },
    secrets = { kind = "secret", unsupported = { post = true } },
    protos = { kind = "proto", unsupported = { patch = true } },
    stream_routes = { kind = "stream route", unsupported = { patch = true },
                      filters = { service_id = true, upstream_id = true } },
}

local _M = { KINDS = KINDS }


local function err_body(msg)
    return { error_msg = msg }
end


local function fail(status, msg)
    return nil, { status = status, body = err_body(msg) }
end


-- APISIX answers a missing key with etcd's {"message":"Key not found"}; error_msg is added so
-- Sluice's own rule (every error has error_msg) holds too.
local function not_found()
    return nil, { status = 404, body = { error_msg = "Key not found", message = "Key not found" } }
end


local function etcd_key(name, id)
    if name == "credentials" then
        local user, cid = tostring(id):match("^([^/]+)/(.+)$")
        return "/apisix/consumers/" .. user .. "/credentials/" .. cid
    end

    return "/apisix/" .. name .. "/" .. tostring(id)
end


-- the store key of a resource: credentials are kept per consumer
local function store_key(name, id, scope)
    if KINDS[name].scoped then
        return scope .. "/" .. tostring(id)
    end

    return tostring(id)
end


-- ?ttl=N -> the entry's expire_at (init.lua has checked that N is a positive number)
local function expire_at(args)
    local ttl = args and tonumber(args.ttl)
    return ttl and clock() + ttl or nil
end


-- ssls never give their private keys back (apisix/admin/resource.lua get).
local function public_value(name, value)
    if name ~= "ssls" or type(value) ~= "table" then
        return value
    end

    local copy = {}
    for k, v in pairs(value) do
        if k ~= "key" and k ~= "keys" then
            copy[k] = v
        end
    end

    return copy
end


local function envelope(name, id, entry)
    return {
        key = etcd_key(name, id),
        value = public_value(name, entry.value),
        createdIndex = entry.createdIndex,
        modifiedIndex = entry.modifiedIndex,
    }
end


local function is_array(t)
    return #t > 0 or next(t) == nil
end


local function strip_nulls(v)
    if type(v) == "table" then
        for k, x in pairs(v) do
            if x == null then
                v[k] = nil

            else
                strip_nulls(x)
            end
        end
    end

    return v
end


-- JSON merge patch with APISIX's twist (core.table.merge): arrays, and objects replacing
-- arrays or empty tables, are replaced whole; null removes a key.
local function merge(origin, patch)
    for k, v in pairs(patch) do
        if v == null then
            origin[k] = nil

        elseif type(v) == "table" then
            local o = origin[k]
            if type(o) == "table" and not is_array(o) and not is_array(v) then
                merge(o, v)

            else
                origin[k] = strip_nulls(v)
            end

        else
            origin[k] = v
        end
    end

    return origin
end
_M.merge = merge


local function split(path)
    local segs = {}
    for seg in path:gmatch("[^/]+") do
        segs[#segs + 1] = seg
    end

    return segs
end


-- PATCH /x/{id}/{a/b/c}: set one attribute (core.table.patch); intermediate objects are
-- created, a numeric segment indexes into an array.
local function patch_path(node, sub_path, conf)
    local segs = split(sub_path)
    if #segs == 0 then
        return conf
    end

    local cur = node
    for i = 1, #segs - 1 do
        local seg = segs[i]
        if tonumber(seg) and #cur > 0 then
            seg = tonumber(seg)
        end

        if cur[seg] == nil then
            cur[seg] = {}
        end

        cur = cur[seg]
        if type(cur) ~= "table" then
            return nil, "invalid sub-path: /" .. tab_concat(segs, "/", 1, i)
        end
    end

    local last = segs[#segs]
    if tonumber(last) and #cur > 0 then
        last = tonumber(last)
    end

    if conf == null then
        cur[last] = nil

    else
        cur[last] = strip_nulls(conf)
    end

    return node
end


local function forbidden_times(conf)
    local msg = "the property is forbidden: "
    for _, v in ipairs({ "create_time", "update_time" }) do
        if conf[v] then
            return msg .. " " .. v
        end
    end

    for _, sub in ipairs({ "upstream", "plugins" }) do
        if type(conf[sub]) == "table" then
            for _, v in ipairs({ "create_time", "update_time" }) do
                if conf[sub][v] then
                    return msg .. " " .. sub .. "." .. v
                end
            end
        end
    end

    return nil
end


local function sorted_ids(map)
    local ids = {}
    for id in pairs(map or {}) do
        ids[#ids + 1] = id
    end

    tab_sort(ids)
    return ids
end


local function upstream_in_plugins(plugins, up_id)
    local ts = type(plugins) == "table" and plugins["traffic-split"]
    if type(ts) ~= "table" or type(ts.rules) ~= "table" then
        return false
    end

    for _, rule in ipairs(ts.rules) do
        for _, wu in ipairs(type(rule) == "table" and rule.weighted_upstreams or {}) do
            if type(wu) == "table" and wu.upstream_id ~= nil
               and tostring(wu.upstream_id) == up_id
            then
                return true
            end
        end
    end

    return false
end


-- Delete checkers: who still uses the resource (apisix/admin/{upstreams,services,
-- plugin_config}.lua). ssls is Sluice's own: an upstream's tls.client_cert_id.
local delete_checkers = {}

function delete_checkers.upstreams(id, doc)
    local order = {
        { "routes", "route", false }, { "services", "service", false },
        { "plugin_configs", "plugin_config", true }, { "consumers", "consumer", true },
        { "global_rules", "global_rules", true },
    }
    for _, o in ipairs(order) do
        local map, label, plugins_only = doc[o[1]], o[2], o[3]
        for _, rid in ipairs(sorted_ids(map)) do
            local v = map[rid].value
            if type(v) == "table" then
                local shown = v.id ~= nil and tostring(v.id) or rid
                if upstream_in_plugins(v.plugins, id) then
                    return "can not delete this upstream, plugin in " .. label .. " [" .. shown
                           .. "] is still using it now"
                end

                if not plugins_only and v.upstream_id ~= nil and tostring(v.upstream_id) == id then
                    return "can not delete this upstream, " .. label .. " [" .. shown
                           .. "] is still using it now"
                end
            end
        end
    end
end


-- The first entry of map, in id order, whose ref(value) is id: its id as shown, or nil.
local function first_referrer(map, ref, id)
    for _, rid in ipairs(sorted_ids(map)) do
        local v = map[rid].value
        local r = type(v) == "table" and ref(v) or nil
        if r ~= nil and tostring(r) == id then
            return tostring(v.id or rid)
        end
    end
end


local function service_id(v) return v.service_id end
local function plugin_config_id(v) return v.plugin_config_id end
local function group_id(v) return v.group_id end
local function superior_id(v) return type(v.protocol) == "table" and v.protocol.superior_id end


function delete_checkers.services(id, doc)
    local r = first_referrer(doc.routes, service_id, id)
    if r then
        return "can not delete this service directly, route [" .. r .. "] is still using it now"
    end
end


function delete_checkers.plugin_configs(id, doc)
    local r = first_referrer(doc.routes, plugin_config_id, id)
    if r then
        return "can not delete this plugin config, route [" .. r .. "] is still using it now"
    end
end


function delete_checkers.ssls(id, doc)
    for _, o in ipairs({ { "upstreams", "upstream" }, { "routes", "route" },
                         { "services", "service" } }) do
        local map, label = doc[o[1]], o[2]
        for _, rid in ipairs(sorted_ids(map)) do
            local v = map[rid].value
            local up = type(v) == "table" and (o[1] == "upstreams" and v or v.upstream)
            local tls = type(up) == "table" and up.tls
            if type(tls) == "table" and tls.client_cert_id ~= nil
               and tostring(tls.client_cert_id) == id
            then
                return "can not delete this ssl, " .. label .. " [" .. tostring(v.id or rid)
                       .. "] is still using it now"
            end
        end
    end
end


function delete_checkers.consumer_groups(id, doc)
    local r = first_referrer(doc.consumers, group_id, id)
    if r then
        return "can not delete this consumer group, consumer [" .. r .. "] is still using it now"
    end
end


function delete_checkers.protos(id, doc)
    for _, o in ipairs({ { "routes", "route" }, { "services", "service" } }) do
        local map, label = doc[o[1]], o[2]
        for _, rid in ipairs(sorted_ids(map)) do
            local v = map[rid].value
            local gt = type(v) == "table" and type(v.plugins) == "table"
                       and v.plugins["grpc-transcode"]
            if type(gt) == "table" and gt.proto_id ~= nil and tostring(gt.proto_id) == id then
                return "can not delete this proto, " .. label .. " [" .. tostring(v.id or rid)
                       .. "] is still using it now"
            end
        end
    end
end


function delete_checkers.stream_routes(id, doc)
    local r = first_referrer(doc.stream_routes, superior_id, id)
    if r then
        return "can not delete this stream route directly, stream route [" .. r
               .. "] is still using it as superior_id"
    end
end


-- Reading ----------------------------------------------------------------------------------

local function list_filter(name, value, args)
    if args.name then
        if type(value.name) ~= "string" or not schema.re_find(value.name, args.name) then
            return false
        end
    end

    if args.label then
        if type(value.labels) ~= "table" or value.labels[args.label] == nil then
            return false
        end
    end

    if args.uri then
        local matched = type(value.uri) == "string" and schema.re_find(value.uri, args.uri)
        if not matched and type(value.uris) == "table" then
            for _, u in ipairs(value.uris) do
                if type(u) == "string" and schema.re_find(u, args.uri) then
                    matched = true
                    break
                end
            end
        end

        if not matched then
            return false
        end
    end

    if type(args.filter) == "string" then
        local fields = KINDS[name].filters or {}
        for pair in args.filter:gmatch("[^&]+") do
            local k, v = pair:match("^([^=]+)=(.*)$")
            if k and fields[k] then
                if value[k] == nil or tostring(value[k]) ~= v then
                    return false
                end
            end
        end
    end

    return true
end


-- scope: the consumer of credentials; for a list, a key prefix (secrets: the manager)
function _M.get(ctx, name, id, args, scope)
    local doc, err = ctx.store:read()
    if not doc then
        return 503, err_body(err)
    end

    local now = clock()
    local map = doc[name] or {}
    if id then
        local key = store_key(name, id, scope)
        local entry = map[key]
        if not entry or expired(entry, now) then
            return 404, { error_msg = "Key not found", message = "Key not found" }
        end

        return 200, envelope(name, key, entry)
    end

    local prefix = scope and scope .. "/"
    local list = {}
    for _, key in ipairs(sorted_ids(map)) do
        local entry = map[key]
        if type(entry.value) == "table" and not expired(entry, now)
           and (not prefix or key:sub(1, #prefix) == prefix)
           and list_filter(name, entry.value, args)
        then
            list[#list + 1] = envelope(name, key, entry)
        end
    end

    if KINDS[name].scoped and #list == 0 then
        -- APISIX lists credentials as an etcd directory that has no init_dir: none is a 404
        return 404, { error_msg = "Key not found", message = "Key not found" }
    end

    local total = #list
    local page, page_size = tonumber(args.page), tonumber(args.page_size)
    if page and page_size then
        if page_size < MIN_PAGE_SIZE or page_size > MAX_PAGE_SIZE then
            return 400, "page_size must be between 10 and 500"
        end

        if page < 1 then
            page = 1
        end

        tab_sort(list, function(a, b) return a.createdIndex < b.createdIndex end)
        local from = (page - 1) * page_size + 1
        local res = {}
        for i = from, from + page_size - 1 do
            res[#res + 1] = list[i]
        end

        list = res
    end

    if #list == 0 then
        -- cjson would write an empty Lua table as {}
        return 200, '{"total":' .. total .. ',"list":[]}'
    end

    return 200, { total = total, list = list }
end


-- Writing ----------------------------------------------------------------------------------

local function write(ctx, fn)
    local res, err = ctx.store:transaction(fn)
    if res == nil then
        if type(err) == "table" then
            return err.status, err.body
        end

        return 503, err_body(tostring(err))
    end

    if ctx.on_change then
        -- the write is on disk whatever the hook does; a failing hook must not turn it into
        -- an error the client would retry
        pcall(ctx.on_change, res.version)
    end

    return res.status, res.body
end


local function check_value(ctx, name, value, doc, scope)
    local opts = scope and { consumer = scope } or nil
    local ok, err = validate.resource(name, deepcopy(value), doc, ctx.registry, opts)
    if not ok then
        return nil, { status = 400, body = err_body(err) }
    end

    return true
end


local function store_value(doc, name, key, value, now, status_if_new, expire)
    local map = doc[name]
    local old = map[key]
    value.create_time = old and type(old.value) == "table" and old.value.create_time or now
    value.update_time = now
    local entry = {
        value = value,
        createdIndex = old and old.createdIndex or doc._index,
        modifiedIndex = doc._index,
        expire_at = expire,
    }
    map[key] = entry
    return {
        status = old and 200 or status_if_new,
        body = envelope(name, key, entry),
        version = doc._index,
    }
end


function _M.put(ctx, name, id, conf, args, scope)
    local meta = KINDS[name]
    if meta.unsupported and meta.unsupported.put then
        return 405, err_body("not supported `PUT` method for " .. meta.kind)
    end

    if conf == nil then
        return 400, err_body("missing configurations")
    end

    if type(conf) ~= "table" or #conf > 0 then
        return 400, err_body("invalid configuration: wrong type: expected object, got "
                             .. type(conf))
    end

    if not meta.no_id then
        id = id or conf.id
        if id == nil then
            return 400, err_body("missing " .. meta.kind .. " id")
        end

        if conf.id ~= nil and tostring(conf.id) ~= tostring(id) then
            return 400, err_body("wrong " .. meta.kind .. " id")
        end

        conf.id = id

    elseif name == "plugin_metadata" then
        if id == nil then
            return 400, err_body("missing plugin name")
        end

        conf.id = id
    end

    local bad = forbidden_times(conf)
    if bad then
        return 400, err_body(bad)
    end

    if name == "consumers" and id ~= nil and type(conf.username) == "string"
       and conf.username ~= id
    then
        return 400, err_body("wrong username")
    end

    return write(ctx, function(doc)
        local ok, err = check_value(ctx, name, conf, doc, scope)
        if not ok then
            return nil, err
        end

        if name == "credentials" and not doc.consumers[scope] then
            return fail(404, "consumer not found")
        end

        local key = name == "consumers" and conf.username or store_key(name, conf.id, scope)
        return store_value(doc, name, key, conf, ctx.now(), 201, expire_at(args))
    end)
end


function _M.post(ctx, name, id, conf, args)
    local meta = KINDS[name]
    if meta.unsupported and meta.unsupported.post then
        return 405, err_body("not supported `POST` method for " .. meta.kind)
    end

    if conf == nil then
        return 400, err_body("missing configurations")
    end

    if type(conf) ~= "table" or #conf > 0 then
        return 400, err_body("invalid configuration: wrong type: expected object, got "
                             .. type(conf))
    end

    if id ~= nil or conf.id ~= nil then
        return 400, err_body("wrong " .. meta.kind .. " id, do not need it")
    end

    local bad = forbidden_times(conf)
    if bad then
        return 400, err_body(bad)
    end

    return write(ctx, function(doc)
        local ok, err = check_value(ctx, name, conf, doc)
        if not ok then
            return nil, err
        end

        -- like APISIX (etcd's revision, %020d): the index of this write, unique per store
        local n = doc._index
        local key = str_format("%020d", n)
        while doc[name][key] do
            n = n + 1
            key = str_format("%020d", n)
        end

        conf.id = key
        return store_value(doc, name, key, conf, ctx.now(), 201, expire_at(args))
    end)
end


function _M.delete(ctx, name, id, args, scope)
    local meta = KINDS[name]
    if id == nil then
        return 400, err_body("missing " .. meta.kind .. " id")
    end

    return write(ctx, function(doc)
        local checker = delete_checkers[name]
        if checker and args.force ~= "true" then
            local err = checker(id, doc)
            if err then
                return fail(400, err)
            end
        end

        local key = store_key(name, id, scope)
        if not doc[name][key] then
            return not_found()
        end

        doc[name][key] = nil
        if name == "consumers" then
            -- a consumer's credentials go with it (APISIX: rmdir of its credentials/)
            local prefix = key .. "/"
            for ckey in pairs(doc.credentials) do
                if ckey:sub(1, #prefix) == prefix then
                    doc.credentials[ckey] = nil
                end
            end
        end

        return { status = 200, body = { deleted = "1", key = etcd_key(name, key) },
                 version = doc._index }
    end)
end


function _M.patch(ctx, name, id, conf, sub_path, args)
    local meta = KINDS[name]
    if meta.unsupported and meta.unsupported.patch then
        return 405, err_body("not supported `PATCH` method for " .. meta.kind)
    end

    if id == nil then
        return 400, err_body("missing " .. meta.kind .. " id")
    end

    if conf == nil then
        return 400, err_body("missing new configuration")
    end

    if (sub_path == nil or sub_path == "") and type(conf) ~= "table" then
        return 400, err_body("invalid configuration")
    end

    return write(ctx, function(doc)
        local entry = doc[name][id]
        if not entry then
            return not_found()
        end

        -- entries are shared with the store's cached document: build a new one, never
        -- change this one (config/store.lua reuses unchanged entries across writes)
        local node = deepcopy(entry.value)
        local update_time_given = false
        if sub_path and sub_path ~= "" then
            local err
            node, err = patch_path(node, sub_path, conf)
            if not node then
                return fail(400, err)
            end

            if type(node) ~= "table" then
                return fail(400, "invalid configuration: wrong type: expected object, got "
                                 .. type(node))
            end

        else
            update_time_given = conf.update_time ~= nil
            node = merge(node, conf)
        end

        if node.id ~= nil and tostring(node.id) ~= id then
            return fail(400, "wrong " .. meta.kind .. " id")
        end

        node.id = id
        local ok, err = check_value(ctx, name, node, doc)
        if not ok then
            return nil, err
        end

        if not update_time_given then
            node.update_time = ctx.now()
        end

        if node.create_time == nil then
            node.create_time = ctx.now()
        end

        local fresh = { value = node, createdIndex = entry.createdIndex,
                        modifiedIndex = doc._index, expire_at = expire_at(args) }
        doc[name][id] = fresh
        return { status = 200, body = envelope(name, id, fresh), version = doc._index }
    end)
end


return _M
