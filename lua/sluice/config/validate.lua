-- config/validate.lua -- validation of configuration resources, shared by the Admin API and the
-- standalone file provider, with APISIX's checks and messages (apisix/admin/<kind>.lua,
-- apisix/upstream.lua check_upstream_conf, apisix/plugin.lua check_single_plugin_schema).
--
-- validate.resource() checks one value in place: schema `default`s are filled into it, so the
-- Admin API passes a copy (it stores what the user wrote) while a config builder may pass the
-- value it is about to use. References (upstream_id, service_id, plugin_config_id,
-- tls.client_cert_id) are looked up in `doc`, a document of the store's shape
-- (doc[kind][id].value, see config/store.lua).
local cjson      = require("cjson.safe")
local schema     = require("sluice.schema")
local schema_def = require("sluice.schema_def")
local crypto     = require("sluice.crypto")

local type         = type
local pairs        = pairs
local ipairs       = ipairs
local next         = next
local select       = select
local tostring     = tostring
local tonumber     = tonumber
local pcall        = pcall
local setmetatable = setmetatable
local loadstring   = loadstring
local str_sub      = string.sub
local str_find     = string.find
local tab_sort     = table.sort

local TYPE_CONSUMER = schema.TYPE_CONSUMER
local TYPE_METADATA = schema.TYPE_METADATA

-- The order resources are indexed and checked in a standalone document.
local KINDS = { "upstreams", "ssls", "services", "plugin_configs", "routes", "consumer_groups",
                "consumers", "global_rules", "plugin_metadata" }

-- APISIX resource types a standalone file may carry that Sluice does not read from one.
local IGNORED_KINDS = { stream_routes = true, protos = true, secrets = true,
                        graphql_cost_decorations = true }

-- Auth plugins whose key attribute must be unique across consumers (apisix/consumer.lua).
local UNIQUE_KEY_ATTRS = {
    ["key-auth"] = "key",
    ["basic-auth"] = "username",
    ["jwt-auth"] = "key",
    ["hmac-auth"] = "key_id",
    ["ldap-auth"] = "user_dn",
}

local _M = { KINDS = KINDS }

local injected = setmetatable({}, { __mode = "k" })


local function invalid(err)
    return false, "invalid configuration: " .. err
end


-- "$secret://..." and "$env://..." are resolved at run time, so their content is not checked.
local function is_secret_ref(v)
    return type(v) == "string" and (str_sub(v, 1, 10) == "$secret://"
                                    or str_sub(v, 1, 7):upper() == "$ENV://")
end


local function lookup(doc, kind, id)
    local map = doc and doc[kind]
    return type(map) == "table" and map[tostring(id)] or nil
end


-- Allow `_meta` in every plugin conf, as APISIX does by injecting it into plugin schemas at
-- load time. Idempotent; the plugin loader may call it too.
function _M.inject_meta(plugin_schema)
    if type(plugin_schema) ~= "table" or injected[plugin_schema] then
        return
    end

    injected[plugin_schema] = true
    if plugin_schema.properties == nil then
        plugin_schema.properties = {}
    end

    if type(plugin_schema.properties) == "table" and plugin_schema.properties._meta == nil then
        plugin_schema.properties._meta = schema_def.plugin_injected_schema
        schema.invalidate(plugin_schema)
    end
end


-- One plugin conf: apisix/plugin.lua check_single_plugin_schema.
function _M.check_plugin(name, conf, registry, schema_type)
    if type(conf) ~= "table" then
        return false, "invalid plugin conf " .. tostring(cjson.encode(conf)) .. " for plugin ["
                      .. tostring(name) .. "]"
    end

    local p = registry and registry.get(name)
    if type(p) ~= "table" then
        return false, "unknown plugin [" .. tostring(name) .. "]"
    end

    _M.inject_meta(p.schema)

    local ok, err
    if p.check_schema then
        local res
        res, ok, err = pcall(p.check_schema, conf, schema_type)
        if not res then
            ok, err = false, tostring(ok)
        end

    else
        local s = schema_type == TYPE_CONSUMER and p.consumer_schema or p.schema
        if s then
            ok, err = schema.check(s, conf)

        else
            ok = true
        end
    end

    if not ok then
        -- a disabled plugin never runs, so a failing check does not invalidate the item
        local meta = conf._meta
        if not (type(meta) == "table" and meta.disable == true) then
            return false, "failed to check the configuration of plugin " .. name .. " err: "
                          .. tostring(err)
        end
    end

    return true
end


function _M.check_plugins(plugins, registry, schema_type)
    if type(plugins) ~= "table" then
        return true
    end

    local names = {}
    for name in pairs(plugins) do
        names[#names + 1] = name
    end

    tab_sort(names, function(a, b) return tostring(a) < tostring(b) end)
    for _, name in ipairs(names) do
        local ok, err = _M.check_plugin(name, plugins[name], registry, schema_type)
        if not ok then
            return false, err
        end
    end

    return true
end


local function check_cert_key(cert, key)
    if is_secret_ref(cert) or is_secret_ref(key) then
        return true
    end

    local ok, err = crypto.check_pem_cert(cert)
    if not ok then
        return false, err
    end

    if key == nil then
        return true
    end

    return crypto.check_pem_key(key)
end


local function parse_port(addr)
    -- "host:port", "[v6]:port", "v6" (no port)
    if str_sub(addr, 1, 1) == "[" then
        local port = addr:match("^%[.-%]:(%d+)$")
        return tonumber(port)
    end

    local _, colons = addr:gsub(":", "")
    if colons ~= 1 then
        return nil
    end

    return tonumber(addr:match(":(%d+)$"))
end


local function unbracketed_ipv6(host)
    return type(host) == "string" and str_sub(host, 1, 1) ~= "["
           and select(2, host:gsub(":", "")) >= 2
end


-- apisix/upstream.lua check_upstream_conf, admin side.
function _M.check_upstream(conf, doc, opts)
    if type(conf) == "table" and type(conf.nodes) == "table" then
        for _, node in ipairs(conf.nodes) do
            if type(node) == "table" and unbracketed_ipv6(node.host) then
                return invalid("IPv6 address must be enclosed with '[' and ']'")
            end
        end
    end

    local ok, err = schema.check(schema_def.upstream, conf)
    if not ok then
        return invalid(err)
    end

    if conf.nodes and #conf.nodes == 0 then
        for addr in pairs(conf.nodes) do
            local port = type(addr) == "string" and parse_port(addr)
            if port and (port < 1 or port > 65535) then
                return false, "invalid port " .. port
            end
        end
    end

    local ssl_id = conf.tls and conf.tls.client_cert_id
    if ssl_id and not (opts and opts.skip_references) then
        local ssl = lookup(doc, "ssls", ssl_id)
        if not ssl then
            return false, "failed to fetch ssl info by ssl id [" .. tostring(ssl_id)
                          .. "], response code: 404"
        end

        if type(ssl.value) ~= "table" or ssl.value.type ~= "client" then
            return false, "failed to fetch ssl info by ssl id [" .. tostring(ssl_id)
                          .. "], wrong ssl type"
        end
    end

    if conf.pass_host == "rewrite" and (conf.upstream_host == nil or conf.upstream_host == "") then
        return false, "`upstream_host` can't be empty when `pass_host` is `rewrite`"
    end

    if conf.tls and conf.tls.client_cert then
        ok, err = check_cert_key(conf.tls.client_cert, conf.tls.client_key)
        if not ok then
            return false, err
        end
    end

    if conf.type ~= "chash" then
        return true
    end

    if conf.hash_on ~= "consumer" and not conf.key then
        return false, "missing key"
    end

    local key_schema
    if conf.hash_on == "vars" then
        key_schema = schema_def.upstream_hash_vars_schema

    elseif conf.hash_on == "header" or conf.hash_on == "cookie" then
        key_schema = schema_def.upstream_hash_header_schema

    elseif conf.hash_on == "vars_combinations" then
        key_schema = schema_def.upstream_hash_vars_combinations_schema
    end

    if key_schema then
        ok, err = schema.check(key_schema, conf.key)
        if not ok then
            return invalid(err)
        end
    end

    return true
end


local function check_ref(doc, opts, kind, id, what)
    if id == nil or (opts and opts.skip_references) then
        return true
    end

    if not lookup(doc, kind, id) then
        return false, "failed to fetch " .. what .. " info by " .. what .. " id ["
                      .. tostring(id) .. "], response code: 404"
    end

    return true
end


local function check_code(field, code, prefix)
    if code == nil then
        return true
    end

    local fn, err = loadstring(prefix .. code)
    if not fn then
        return false, "failed to load '" .. field .. "' string: " .. tostring(err)
    end

    -- Compiled only, never run: Sluice does not execute Lua code sent to the Admin API.
    return true
end


local checkers = {}


function checkers.routes(value, doc, registry, opts)
    if value.host and value.hosts then
        return false, "only one of host or hosts is allowed"
    end

    if value.remote_addr and value.remote_addrs then
        return false, "only one of remote_addr or remote_addrs is allowed"
    end

    local ok, err = schema.check(schema_def.route, value)
    if not ok then
        return invalid(err)
    end

    if value.upstream then
        ok, err = _M.check_upstream(value.upstream, doc, opts)
        if not ok then
            return false, err
        end
    end

    ok, err = check_ref(doc, opts, "upstreams", value.upstream_id, "upstream")
    if ok then
        ok, err = check_ref(doc, opts, "services", value.service_id, "service")
    end

    if ok and value.plugin_config_id ~= nil and not (opts and opts.skip_references)
       and not lookup(doc, "plugin_configs", value.plugin_config_id)
    then
        ok, err = false, "failed to fetch plugin config info by plugin config id ["
                         .. tostring(value.plugin_config_id) .. "], response code: 404"
    end

    if ok then
        ok, err = _M.check_plugins(value.plugins, registry)
    end

    if ok then
        ok, err = check_code("filter_func", value.filter_func, "return ")
    end

    if ok then
        ok, err = check_code("script", value.script, "")
    end

    return ok, err
end


function checkers.services(value, doc, registry, opts)
    local ok, err = schema.check(schema_def.service, value)
    if not ok then
        return invalid(err)
    end

    if value.upstream then
        ok, err = _M.check_upstream(value.upstream, doc, opts)
        if not ok then
            return false, err
        end
    end

    ok, err = check_ref(doc, opts, "upstreams", value.upstream_id, "upstream")
    if ok then
        ok, err = _M.check_plugins(value.plugins, registry)
    end

    if ok then
        ok, err = check_code("script", value.script, "")
    end

    return ok, err
end


function checkers.upstreams(value, doc, _, opts)
    return _M.check_upstream(value, doc, opts)
end


local function sorted_keys(map)
    local keys = {}
    for k in pairs(type(map) == "table" and map or {}) do
        keys[#keys + 1] = k
    end

    tab_sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    return keys
end


local function holds_key(value, plugin_name, attr, key)
    local conf = type(value) == "table" and type(value.plugins) == "table"
                 and value.plugins[plugin_name]
    return type(conf) == "table" and conf[attr] == key
end


-- apisix/consumer.lua check_duplicate_key: an auth key in `plugins` that another consumer or
-- credential holds. Writing a consumer (self_cred nil), its own credentials do not count;
-- writing a credential, only that credential itself does not. Consumers are looked at before
-- credentials, each in key order, so the message is the same on every run.
local function duplicate_key(plugins, doc, self_consumer, self_cred)
    for _, plugin_name in ipairs(sorted_keys(plugins)) do
        local attr = UNIQUE_KEY_ATTRS[plugin_name]
        local conf = plugins[plugin_name]
        local key = attr and type(conf) == "table" and conf[attr]
        if type(key) == "string" and not is_secret_ref(key) then
            local consumers = doc and doc.consumers
            for _, name in ipairs(sorted_keys(consumers)) do
                local entry = consumers[name]
                if (name ~= self_consumer or self_cred)
                   and holds_key(type(entry) == "table" and entry.value, plugin_name, attr, key)
                then
                    return "duplicate " .. attr .. " of plugin " .. plugin_name
                           .. " found with consumer: " .. name
                end
            end

            local creds = doc and doc.credentials
            for _, ckey in ipairs(sorted_keys(creds)) do
                local owner, cid = tostring(ckey):match("^([^/]+)/(.+)$")
                local entry = creds[ckey]
                local is_self = owner == self_consumer and (not self_cred or cid == self_cred)
                if owner and not is_self
                   and holds_key(type(entry) == "table" and entry.value, plugin_name, attr, key)
                then
                    return "duplicate " .. attr .. " of plugin " .. plugin_name
                           .. " found with credential: " .. cid .. " of consumer: " .. owner
                end
            end
        end
    end

    return nil
end


function checkers.consumers(value, doc, registry, opts)
    local ok, err = schema.check(schema_def.consumer, value)
    if not ok then
        return invalid(err)
    end

    if value.plugins then
        ok, err = _M.check_plugins(value.plugins, registry, TYPE_CONSUMER)
        if not ok then
            return false, "invalid plugins configuration: " .. err
        end

        err = duplicate_key(value.plugins, doc, value.username)
        if err then
            return false, err
        end
    end

    if value.group_id ~= nil and not (opts and opts.skip_references)
       and not lookup(doc, "consumer_groups", value.group_id)
    then
        return false, "failed to fetch consumer group info by consumer group id ["
                      .. tostring(value.group_id) .. "], response code: 404"
    end

    return true
end


-- apisix/admin/credentials.lua: only auth plugins, checked with their consumer schema.
-- opts.consumer (the owner's username) turns on the duplicate-key check.
function checkers.credentials(value, doc, registry, opts)
    local ok, err = schema.check(schema_def.credential, value)
    if not ok then
        return invalid(err)
    end

    if value.plugins then
        ok, err = _M.check_plugins(value.plugins, registry, TYPE_CONSUMER)
        if not ok then
            return false, "invalid plugins configuration: " .. err
        end

        for _, name in ipairs(sorted_keys(value.plugins)) do
            local p = registry.get(name)
            if type(p) ~= "table" or p.type ~= "auth" then
                return false, "only supports auth type plugins in consumer credential"
            end
        end

        if opts and opts.consumer then
            err = duplicate_key(value.plugins, doc, opts.consumer, tostring(value.id))
            if err then
                return false, err
            end
        end
    end

    return true
end


-- A checker for a resource that is a schema plus plugins checked as a route's
-- (apisix/admin/consumer_group.lua, plugin_config.lua).
local function schema_and_plugins(def)
    return function(value, _, registry)
        local ok, err = schema.check(def, value)
        if not ok then
            return invalid(err)
        end

        return _M.check_plugins(value.plugins, registry)
    end
end


checkers.consumer_groups = schema_and_plugins(schema_def.consumer_group)


-- apisix/admin/secrets.lua: value.id is "<manager>/<id>"; the manager's own schema.
function checkers.secrets(value)
    local manager = type(value.id) == "string" and value.id:match("^([^/]+)/") or nil
    if not manager then
        return false, "missing secret type"
    end

    local m = schema_def.secret_managers[manager]
    if not m then
        return false, "invalid secret manager: " .. manager
    end

    local ok, err = schema.check(m.schema, value)
    if not ok then
        return invalid(err)
    end

    return true
end


-- apisix/admin/proto.lua, except that the content is not compiled (nothing here uses it).
function checkers.protos(value)
    local ok, err = schema.check(schema_def.proto, value)
    if not ok then
        return invalid(err)
    end

    return true
end


-- apisix/admin/stream_routes.lua: schema, references, the xrpc superior route.
function checkers.stream_routes(value, doc, _, opts)
    local ok, err = schema.check(schema_def.stream_route, value)
    if not ok then
        return invalid(err)
    end

    ok, err = check_ref(doc, opts, "upstreams", value.upstream_id, "upstream")
    if ok then
        ok, err = check_ref(doc, opts, "services", value.service_id, "service")
    end

    if not ok then
        return false, err
    end

    local sup = value.protocol and value.protocol.superior_id
    if sup ~= nil and not (opts and opts.skip_references) then
        if value.id ~= nil and tostring(sup) == tostring(value.id) then
            return false, "stream route can not set itself as superior_id"
        end

        local entry = lookup(doc, "stream_routes", sup)
        if not entry then
            return false, "failed to fetch stream routes[" .. tostring(sup)
                          .. "], response code: 404"
        end

        local sp = type(entry.value) == "table" and entry.value.protocol
        if type(sp) == "table" and sp.name ~= value.protocol.name then
            return false, "protocol mismatch: subordinate protocol [" .. value.protocol.name
                          .. "] does not match superior protocol [" .. tostring(sp.name) .. "]"
        end
    end

    return true
end


checkers.plugin_configs = schema_and_plugins(schema_def.plugin_config)


function checkers.global_rules(value, doc, registry)
    local ok, err = schema.check(schema_def.global_rule, value)
    if not ok then
        return invalid(err)
    end

    ok, err = _M.check_plugins(value.plugins, registry)
    if not ok then
        return false, err
    end

    local rules = doc and doc.global_rules
    if type(rules) ~= "table" then
        return true
    end

    local ids = {}
    for id in pairs(rules) do
        ids[#ids + 1] = id
    end

    tab_sort(ids)
    local names = {}
    for name in pairs(value.plugins) do
        names[#names + 1] = name
    end

    tab_sort(names)
    for _, id in ipairs(ids) do
        local other = rules[id].value
        if id ~= tostring(value.id) and type(other) == "table"
           and type(other.plugins) == "table"
        then
            for _, name in ipairs(names) do
                if other.plugins[name] ~= nil then
                    return false, "plugin '" .. name .. "' already exists in global rule with id '"
                                  .. tostring(other.id or id) .. "'"
                end
            end
        end
    end

    return true
end


local EMPTY_METADATA_SCHEMA = { type = "object", properties = {} }


function checkers.plugin_metadata(value, _, registry)
    local name = value.id
    if name == nil then
        return false, "missing plugin name"
    end

    local p = registry and registry.get(tostring(name))
    if type(p) ~= "table" then
        return false, "invalid plugin name"
    end

    -- id and the timestamps belong to the resource, not to the plugin's metadata schema
    local id, ctime, utime = value.id, value.create_time, value.update_time
    value.id, value.create_time, value.update_time = nil, nil, nil

    local ok, err
    if p.metadata_schema and p.check_schema then
        local res
        res, ok, err = pcall(p.check_schema, value, TYPE_METADATA)
        if not res then
            ok, err = false, tostring(ok)
        end

    else
        ok, err = schema.check(p.metadata_schema or EMPTY_METADATA_SCHEMA, value)
    end

    value.id, value.create_time, value.update_time = id, ctime, utime
    if not ok then
        return invalid(tostring(err))
    end

    return true
end


function checkers.ssls(value)
    local ok, err = schema.check(schema_def.ssl, value)
    if not ok then
        return invalid(err)
    end

    ok, err = check_cert_key(value.cert, value.key)
    if not ok then
        return false, err
    end

    if value.type == "client" then
        return true
    end

    local ncerts = value.certs and #value.certs or 0
    local nkeys = value.keys and #value.keys or 0
    if ncerts ~= nkeys then
        return false, "mismatched number of certs and keys"
    end

    for i = 1, ncerts do
        ok, err = check_cert_key(value.certs[i], value.keys[i])
        if not ok then
            return false, "failed to handle cert-key pair[" .. i .. "]: " .. err
        end
    end

    if value.client and not is_secret_ref(value.client.ca) then
        ok, err = crypto.check_pem_cert(value.client.ca)
        if not ok then
            return false, "failed to validate client_cert: " .. err
        end
    end

    return true
end


-- validate.resource(kind, value, doc, registry, opts) -> true | false, err
--   kind: routes, services, upstreams, consumers, plugin_configs, global_rules,
--         plugin_metadata (value.id is the plugin name), ssls, consumer_groups, credentials
--         (opts.consumer: the owner), secrets (value.id is "<manager>/<id>"), protos,
--         stream_routes
--   doc: store-shaped document used for references, duplicate keys and global-rule conflicts
--   registry: plugin registry with get(name)
--   opts.skip_references: do not resolve *_id references (and group_id, superior_id)
-- Fills schema defaults into value.
function _M.resource(kind, value, doc, registry, opts)
    local checker = checkers[kind]
    if not checker then
        return false, "unsupported resource type: " .. tostring(kind)
    end

    if type(value) ~= "table" then
        return invalid("wrong type: expected object, got " .. type(value))
    end

    return checker(value, doc, registry, opts)
end


-- validate.document(doc, registry, opts) -> true, store_doc | false, err
-- A standalone document {"routes": [...], "upstreams": [...], ...}: every item is checked
-- (in place, defaults filled) and the first error names the item. On success the second
-- value is the same resources in the store's shape (config/store.lua), ids as strings, each
-- value.id set as APISIX does (id, else consumer username, else "arr_<n>").
function _M.document(doc, registry, opts)
    if type(doc) ~= "table" then
        return false, "invalid configuration: expected an object with resource lists"
    end

    local out = { _index = 0 }
    for _, kind in ipairs(KINDS) do
        out[kind] = {}
    end

    for key, items in pairs(doc) do
        if out[key] then
            if type(items) ~= "table" or (#items == 0 and next(items) ~= nil) then
                return false, "invalid configuration: " .. key .. " must be an array"
            end

        elseif type(key) == "string" and str_find(key, "_conf_version$") then
            if type(items) ~= "number" then
                return false, key .. " must be a number"
            end

        elseif not IGNORED_KINDS[key] then
            return false, "invalid configuration: unknown resource type " .. tostring(key)
        end
    end

    -- index first: references may point forward in the file
    for _, kind in ipairs(KINDS) do
        for i, item in ipairs(doc[kind] or {}) do
            if type(item) ~= "table" then
                return false, "invalid " .. kind .. "[" .. (i - 1) .. "]: it should be an object"
            end

            local id = item.id
            if kind == "consumers" then
                id = item.username
            end

            if id == nil then
                id = "arr_" .. i
            end

            id = tostring(id)
            if out[kind][id] then
                local what = kind == "consumers" and "username" or "id"
                return false, "found duplicate " .. what .. " " .. id .. " in " .. kind
            end

            out[kind][id] = { value = item, createdIndex = 0, modifiedIndex = 0, order = i }
        end
    end

    for _, kind in ipairs(KINDS) do
        for i, item in ipairs(doc[kind] or {}) do
            local ok, err = _M.resource(kind, item, out, registry, opts)
            if not ok then
                local id = kind == "consumers" and item.username or item.id
                return false, "invalid " .. kind .. "[" .. (i - 1) .. "]"
                              .. (id ~= nil and (" (id " .. tostring(id) .. ")") or "")
                              .. ": " .. tostring(err)
            end
        end
    end

    for _, kind in ipairs(KINDS) do
        if kind ~= "consumers" then
            for id, entry in pairs(out[kind]) do
                entry.value.id = id
            end
        end
    end

    return true, out
end


return _M
