-- admin.lua: the Admin API (lua/sluice/admin/*.lua) driven through admin.handle() with fake
-- requests, a temporary store and a stub plugin registry: auth and address checks, every
-- method on every resource, envelopes, pagination and filters, merge and sub-path PATCH,
-- references and forced deletes, validation messages (APISIX's), encryption at rest, the
-- plugin and schema endpoints, standalone documents (config/validate.lua), and timings.
package.path = "lua/?.lua;lua/?/init.lua;t/unit/?.lua;" .. package.path
local t = require("tap")
local ffi = require("ffi")
local cjson = require("cjson.safe")
local admin = require("sluice.admin")
local schema = require("sluice.schema")
local store = require("sluice.config.store")
local validate = require("sluice.config.validate")

local ok, is, is_deeply, like = t.ok, t.is, t.is_deeply, t.like

ffi.cdef([[
struct sl_admin_test_tv { long tv_sec; long tv_usec; };
int gettimeofday(struct sl_admin_test_tv *tv, void *tz);
]])
local tv = ffi.new("struct sl_admin_test_tv")
local function now_ms()
    ffi.C.gettimeofday(tv, nil)
    return tonumber(tv.tv_sec) * 1000 + tonumber(tv.tv_usec) / 1000
end

local KEY = "edd1c9f034335f136f87ad84b625c8f1"
local VIEWER_KEY = "viewer-key-0000000000000000000000"
local KEYRING = { "0123456789abcdef" }

-- stub plugin registry ---------------------------------------------------------------------
local ai_proxy_schema = {
    type = "object",
    properties = {
        provider = { type = "string", enum = { "openai", "deepseek", "openai-compatible" } },
        auth = {
            type = "object",
            properties = {
                header = { type = "object" },
                query = { type = "object" },
            },
        },
        options = { type = "object" },
        timeout = { type = "integer", default = 30000 },
    },
    required = { "provider", "auth" },
    encrypt_fields = { "auth.header", "auth.query" },
}

local key_auth_consumer_schema = {
    type = "object",
    properties = { key = { type = "string" } },
    required = { "key" },
    encrypt_fields = { "key" },
}

local plugins = {
    ["ai-proxy"] = {
        name = "ai-proxy", priority = 1040, version = 0.5, schema = ai_proxy_schema,
        check_schema = function(conf)
            return schema.check(ai_proxy_schema, conf)
        end,
    },
    ["key-auth"] = {
        name = "key-auth", priority = 2500, type = "auth",
        schema = { type = "object", properties = { header = { type = "string",
                                                              default = "apikey" } } },
        consumer_schema = key_auth_consumer_schema,
    },
    ["strict"] = {
        name = "strict", priority = 10,
        schema = { type = "object", properties = { n = { type = "integer" } },
                   required = { "n" }, additionalProperties = false },
    },
    ["traffic-split"] = { name = "traffic-split", priority = 966, schema = { type = "object" } },
    ["example-plugin"] = {
        name = "example-plugin", priority = 0,
        schema = { type = "object" },
        metadata_schema = { type = "object", properties = { ikey = { type = "number" },
                                                            skey = { type = "string" } },
                            required = { "ikey" } },
    },
    ["no-priority"] = { name = "no-priority", schema = { type = "object" } },
}

local registry = {}
function registry.get(name)
    return plugins[name]
end

function registry.list()
    local names = {}
    for name in pairs(plugins) do
        names[#names + 1] = name
    end

    table.sort(names)
    return names
end

-- setup -------------------------------------------------------------------------------------
local base = os.tmpname()
os.remove(base)
local DATA = base .. ".d/data"
local clock = 1700000000
local changes, reloads = {}, 0

local function init(extra)
    local opts = {
        keys = { { name = "admin", key = KEY, role = "admin" },
                 { name = "viewer", key = VIEWER_KEY, role = "viewer" } },
        data_dir = DATA,
        keyring = KEYRING,
        max_body = 64 * 1024,
        plugins = registry,
        on_change = function(v) changes[#changes + 1] = v end,
        on_plugins_reload = function() reloads = reloads + 1 end,
        now = function() return clock end,
    }
    for k, v in pairs(extra or {}) do
        opts[k] = v
    end

    return admin.init(opts)
end

assert(init())


local function call(method, path, body, args, headers, remote)
    if type(body) == "table" then
        body = cjson.encode(body)
    end

    local h = headers or { ["x-api-key"] = KEY }
    local status, res, rh = admin.handle({ method = method, path = path, body = body,
                                           args = args, headers = h,
                                           remote_addr = remote == nil and "127.0.0.1"
                                                         or remote })
    return status, res, rh
end


local function raw_store()
    local f = io.open(DATA .. "/store.json", "rb")
    if not f then
        return ""
    end

    local s = f:read("*a")
    f:close()
    return s
end


local function err_of(res)
    return type(res) == "table" and res.error_msg or res
end


local R = "/apisix/admin/routes"
local function route(extra)
    local r = { uri = "/v1/chat/completions",
                plugins = { ["ai-proxy"] = { provider = "openai",
                                             auth = { header = { Authorization = "Bearer sk-1" } } } } }
    for k, v in pairs(extra or {}) do
        r[k] = v
    end

    return r
end

-- addresses and keys ------------------------------------------------------------------------
local s, res = call("GET", R, nil, nil, nil, "10.0.0.1")
is(s, 403, "address outside admin.allow: 403")
is(err_of(res), "forbidden: client address not allowed", "403 body")
is(call("GET", R, nil, nil, nil, "::1"), 200, "::1 allowed by default")
is(call("GET", R, nil, nil, nil, "::ffff:127.0.0.1"), 200, "v4-mapped loopback allowed")
is(call("GET", R, nil, nil, nil, false), 403, "no remote address: refused")

s, res = call("GET", R, nil, nil, {})
is(s, 401, "no key: 401")
is_deeply(res, { error_msg = "failed to check token", description = "missing apikey" },
          "missing apikey body")
s, res = call("GET", R, nil, nil, { ["x-api-key"] = KEY .. "x" })
is_deeply(res, { error_msg = "failed to check token", description = "wrong apikey" },
          "wrong apikey body")
is(call("GET", R, nil, nil, { ["x-api-key"] = KEY:sub(1, -2) }), 401, "prefix of the key refused")
is(call("GET", R, nil, { api_key = KEY }, {}), 200, "?api_key= accepted")
is(call("GET", R .. "?api_key=" .. KEY, nil, nil, {}), 200, "api_key in the path's query")
is(call("GET", R, nil, nil, { cookie = "a=b; x_api_key=" .. KEY }), 200, "x_api_key cookie")
is(call("GET", R, nil, nil, { ["x-api-key"] = VIEWER_KEY }), 200, "viewer may GET")
s, res = call("PUT", R .. "/v", route(), nil, { ["x-api-key"] = VIEWER_KEY })
is(s, 401, "viewer may not PUT")
is(res.description, "invalid method for role viewer", "viewer message")
is(raw_store(), "", "refused requests wrote nothing")

ok(admin.const_eq("abc", "abc"), "const_eq equal")
ok(not admin.const_eq("abc", "abd"), "const_eq last byte differs")
ok(not admin.const_eq("abc", "abcd"), "const_eq length differs")
ok(not admin.const_eq("", "a"), "const_eq empty")

assert(init({ allow = { "10.0.0.0/8", "2001:db8::/32", "192.168.1.7" } }))
is(call("GET", R, nil, nil, nil, "10.1.2.3"), 200, "IPv4 CIDR allows")
is(call("GET", R, nil, nil, nil, "11.0.0.1"), 403, "IPv4 CIDR refuses")
is(call("GET", R, nil, nil, nil, "2001:db8::5"), 200, "IPv6 CIDR allows")
is(call("GET", R, nil, nil, nil, "2001:db9::5"), 403, "IPv6 CIDR refuses")
is(call("GET", R, nil, nil, nil, "192.168.1.7"), 200, "single address allows")
is(call("GET", R, nil, nil, nil, "192.168.1.8"), 403, "single address is /32")
is(call("GET", R, nil, nil, nil, "127.0.0.1"), 403, "loopback not implied by a custom list")
assert(init({ allow = { "10.1.0.0/17" } }))
is(call("GET", R, nil, nil, nil, "10.1.127.255"), 200, "odd prefix length allows")
is(call("GET", R, nil, nil, nil, "10.1.128.0"), 403, "odd prefix length refuses")
assert(init({ allow = {} }))
is(call("GET", R, nil, nil, nil, "203.0.113.9"), 200, "empty allow list: anyone")
local bad, berr = admin.init({ data_dir = DATA, allow = { "10.0.0.0/33" } })
is(bad, nil, "bad CIDR refused")
like(berr, "admin.allow%[1%]", "bad CIDR message")
bad, berr = admin.init({ data_dir = DATA, keys = { { key = "k", role = "root" } } })
like(berr, "role must be admin or viewer", "bad role refused")
assert(init({ keys = {} }))
is(call("GET", R), 401, "no keys configured: nothing passes")
assert(init({ keys = {}, key_required = false }))
is(call("GET", R, nil, nil, {}), 200, "key_required = false: no check")
assert(init())

-- routes: PUT / GET / POST / DELETE ------------------------------------------------------------
s, res = call("GET", R)
is(s, 200, "empty list")
is(res, '{"total":0,"list":[]}', "empty list keeps [] for list")

s, res = call("PUT", R .. "/1", route({ desc = "first" }))
is(s, 201, "PUT creates: 201")
is(res.key, "/apisix/routes/1", "envelope key")
is(res.value.id, "1", "id from the path, a string")
is(res.value.create_time, clock, "create_time")
is(res.value.update_time, clock, "update_time")
is(res.createdIndex, 1, "createdIndex")
is(res.modifiedIndex, 1, "modifiedIndex")
is(res.value.priority, nil, "defaults are not stored")
is(res.value.plugins["ai-proxy"].timeout, nil, "plugin defaults are not stored")
is_deeply(changes, { 1 }, "on_change called with the new version")

clock = clock + 10
s, res = call("PUT", R .. "/1", route({ desc = "second" }))
is(s, 200, "PUT replaces: 200")
is(res.value.create_time, clock - 10, "create_time kept on replace")
is(res.value.update_time, clock, "update_time moves on replace")
is(res.createdIndex, 1, "createdIndex kept")
is(res.modifiedIndex, 2, "modifiedIndex moves")

s, res = call("GET", R .. "/1")
is(s, 200, "GET one")
is(res.key, "/apisix/routes/1", "GET envelope key")
is(res.value.desc, "second", "GET value")
is(res.createdIndex, 1, "GET createdIndex")
is(res.modifiedIndex, 2, "GET modifiedIndex")
is(res.value.plugins["ai-proxy"].auth.header.Authorization, "Bearer sk-1",
   "GET returns the secret decrypted")
ok(not raw_store():find("sk-1", 1, true), "the secret is not in the file")

s, res = call("GET", R .. "/404")
is(s, 404, "GET missing: 404")
is(res.error_msg, "Key not found", "404 error_msg")
is(res.message, "Key not found", "404 message (APISIX's etcd body)")

s, res = call("PUT", R, route({ id = 7 }))
is(s, 201, "PUT /routes with id in the body")
is(res.key, "/apisix/routes/7", "key from the body id")
is(res.value.id, 7, "body id kept as written")

local before = raw_store()
local nchanges = #changes
local function refused(method, path, body, want_status, want_msg, name, args)
    local st, r = call(method, path, body, args)
    is(st, want_status, name .. ": status")
    if want_msg then
        is(err_of(r), want_msg, name .. ": message")
    end

    return r
end

refused("PUT", R, route(), 400, "missing route id", "PUT without id")
refused("PUT", R .. "/1", route({ id = "2" }), 400, "wrong route id", "PUT id mismatch")
refused("PUT", R .. "/1", nil, 400, "missing configurations", "PUT without body")
refused("PUT", R .. "/1", "[1,2]", 400, "invalid configuration: wrong type: expected object, got table", "PUT with an array")
refused("PUT", R .. "/1", '"str"', 400,
        "invalid configuration: wrong type: expected object, got string", "PUT with a string")
local r = refused("PUT", R .. "/1", "{bad json", 400, nil, "malformed JSON")
like(r.error_msg, "^invalid request body: Expected object key string", "malformed JSON message")
is(r.req_body, "{bad json", "malformed JSON echoes the body like APISIX")
refused("PUT", R .. "/1", route({ create_time = 1 }), 400,
        "the property is forbidden:  create_time", "create_time forbidden")
refused("PUT", R .. "/1", route({ upstream = { nodes = { ["a:1"] = 1 }, update_time = 1 } }), 400,
        "the property is forbidden:  upstream.update_time", "upstream.update_time forbidden")
refused("PUT", R .. "/1", route({ uri = 666 }), 400,
        'invalid configuration: property "uri" validation failed: wrong type: expected string, '
        .. "got number", "route schema")
refused("PUT", R .. "/x", { uri = "/a" }, 400,
        'invalid configuration: object matches none of the required: ["plugins","uri"] or '
        .. '["upstream","uri"] or ["upstream_id","uri"] or ["service_id","uri"] or '
        .. '["plugins","uris"] or ["upstream","uris"] or ["upstream_id","uris"] or '
        .. '["service_id","uris"] or ["script","uri"] or ["script","uris"]',
        "route needs plugins, upstream, upstream_id or service_id")
refused("PUT", R .. "/x", { plugins = {} }, 400,
        "invalid configuration: allOf 1 failed: value should match only one schema, but "
        .. "matches none", "route needs uri or uris")
refused("PUT", R .. "/bad$id", route(), 400,
        'invalid configuration: property "id" validation failed: object matches none of the '
        .. "required", "bad id in the path")
refused("PUT", R .. "/" .. string.rep("a", 65), route(), 400,
        'invalid configuration: property "id" validation failed: object matches none of the '
        .. "required", "id longer than 64")
refused("PUT", R .. "/x", route({ host = "a.com", hosts = { "b.com" } }), 400,
        "only one of host or hosts is allowed", "host and hosts")
refused("PUT", R .. "/x", route({ remote_addr = "1.1.1.1", remote_addrs = { "1.1.1.1" } }), 400,
        "only one of remote_addr or remote_addrs is allowed", "remote_addr and remote_addrs")
refused("PUT", R .. "/x", { uri = "/a", plugins = { nope = {} } }, 400, "unknown plugin [nope]",
        "unknown plugin")
refused("PUT", R .. "/x", { uri = "/a", plugins = { ["ai-proxy"] = { provider = "x", auth = {} } } },
        400, 'failed to check the configuration of plugin ai-proxy err: property "provider" '
        .. "validation failed: matches none of the enum values", "plugin schema (check_schema)")
refused("PUT", R .. "/x", { uri = "/a", plugins = { strict = { n = "1" } } }, 400,
        'failed to check the configuration of plugin strict err: property "n" validation failed: '
        .. "wrong type: expected integer, got string", "plugin schema (no check_schema)")
refused("PUT", R .. "/x", { uri = "/a", plugins = { ["ai-proxy"] = "on" } }, 400,
        'invalid plugin conf "on" for plugin [ai-proxy]', "plugin conf not an object")
refused("PUT", R .. "/x", route({ filter_func = "function(vars) return" }), 400, nil,
        "filter_func that does not compile")
refused("POST", R, route({ id = "5" }), 400, "wrong route id, do not need it", "POST with body id")
refused("POST", R .. "/5", route(), 400, "wrong route id, do not need it", "POST with path id")
refused("GET", "/apisix/admin/routs", nil, 404, "Unsupported resource type: routs",
        "unknown resource")
refused("PUT", R .. "/x", route(), 400, "invalid argument ttl: should be a number", "bad ttl",
        { ttl = "soon" })
local huge = cjson.encode({ uri = string.rep("x", 70 * 1024), plugins = {} })
refused("PUT", R .. "/x", huge, 400, "invalid request body: request size " .. #huge
        .. " is greater than the maximum size 65536 allowed", "body over max_body")
refused("DELETE", R, nil, 400, "missing route id", "DELETE without id")
refused("DELETE", R .. "/nope", nil, 404, "Key not found", "DELETE missing")
is(raw_store(), before, "none of the refused requests touched the store")
is(#changes, nchanges, "and on_change was not called")

s, res = call("PUT", R .. "/m", { uri = "/m", plugins = { strict = { n = 1, _meta = { disable = false } } } })
is(s, 201, "_meta allowed with additionalProperties = false")
s, res = call("PUT", R .. "/m2", { uri = "/m", plugins = { strict = { _meta = { disable = true } } } })
is(s, 201, "a disabled plugin with a failing conf is accepted")
refused("PUT", R .. "/m3", { uri = "/m", plugins = { strict = { n = 1, _meta = { x = 1 } } } }, 400,
        'failed to check the configuration of plugin strict err: property "_meta" validation '
        .. "failed: additional properties forbidden, found x", "_meta is validated")

s, res = call("POST", R, route({ desc = "posted" }))
is(s, 201, "POST: 201")
like(res.value.id, "^%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d$", "POST id is 20 digits")
is(res.key, "/apisix/routes/" .. res.value.id, "POST key")
local posted = res.value.id
local s2, res2 = call("POST", R, route())
is(s2, 201, "second POST")
ok(res2.value.id ~= posted, "POST ids are unique")
s, res = call("DELETE", R .. "/" .. posted)
is(s, 200, "DELETE: 200")
is_deeply(res, { deleted = "1", key = "/apisix/routes/" .. posted }, "DELETE body")
is(call("GET", R .. "/" .. posted), 404, "deleted route is gone")
call("DELETE", R .. "/" .. res2.value.id)
call("DELETE", R .. "/m")
call("DELETE", R .. "/m2")

s, res = call("GET", R)
is(res.total, 2, "list total")
is(res.list[1].key, "/apisix/routes/1", "list sorted by key")
is(res.list[2].key, "/apisix/routes/7", "second")
ok(res.list[1].createdIndex and res.list[1].modifiedIndex, "list items carry indexes")

-- PATCH --------------------------------------------------------------------------------------
clock = clock + 10
before = raw_store()
s, res = call("PATCH", R .. "/1", { desc = "patched", labels = { env = "prod" },
                                    plugins = { ["ai-proxy"] = { options = { model = "m" } } } })
is(s, 200, "PATCH merge: 200")
is(res.value.desc, "patched", "merged field")
is(res.value.labels.env, "prod", "added field")
is(res.value.plugins["ai-proxy"].options.model, "m", "nested merge adds")
is(res.value.plugins["ai-proxy"].auth.header.Authorization, "Bearer sk-1", "nested merge keeps")
is(res.value.update_time, clock, "PATCH moves update_time")
is(res.value.create_time, 1700000000, "PATCH keeps create_time")
ok(res.modifiedIndex > res.createdIndex, "PATCH moves modifiedIndex")
ok(not raw_store():find("sk-1", 1, true), "PATCH keeps the secret sealed on disk")

s, res = call("PATCH", R .. "/1", '{"desc":null,"plugins":{"ai-proxy":{"options":null}}}')
is(s, 200, "PATCH with null")
is(res.value.desc, nil, "null removes a field")
is(res.value.plugins["ai-proxy"].options, nil, "null removes a nested field")
s, res = call("PATCH", R .. "/1", { methods = { "GET", "POST" } })
is_deeply(res.value.methods, { "GET", "POST" }, "array set")
s, res = call("PATCH", R .. "/1", { methods = { "PUT" } })
is_deeply(res.value.methods, { "PUT" }, "arrays are replaced, not merged")
s, res = call("PATCH", R .. "/1", { update_time = 5 })
is(res.value.update_time, 5, "an update_time given in a PATCH is kept")

s, res = call("PATCH", R .. "/1/desc", '"via sub path"')
is(s, 200, "sub-path PATCH")
is(res.value.desc, "via sub path", "sub-path sets the attribute")
s, res = call("PATCH", R .. "/1/plugins/ai-proxy/auth/header", { Authorization = "Bearer sk-2" })
is(res.value.plugins["ai-proxy"].auth.header.Authorization, "Bearer sk-2", "deep sub-path")
is(res.value.plugins["ai-proxy"].provider, "openai", "siblings untouched")
s, res = call("PATCH", R .. "/1/methods", { "GET" })
is_deeply(res.value.methods, { "GET" }, "sub-path with an array")
s, res = call("PATCH", R .. "/1/methods/1", '"POST"')
is_deeply(res.value.methods, { "POST" }, "sub-path into an array element")
s, res = call("PATCH", R .. "/1/labels/env", "null")
is(res.value.labels.env, nil, "sub-path null removes")
ok(not raw_store():find("sk-2", 1, true), "patched secret sealed on disk")

before = raw_store()
nchanges = #changes
refused("PATCH", R .. "/1/desc/x", '"y"', 400, "invalid sub-path: /desc", "sub-path through a string")
refused("PATCH", R .. "/1", { uri = 5 }, 400,
        'invalid configuration: property "uri" validation failed: wrong type: expected string, '
        .. "got number", "PATCH result is validated")
refused("PATCH", R .. "/1", { plugins = { ["ai-proxy"] = { provider = "nope" } } }, 400,
        'failed to check the configuration of plugin ai-proxy err: property "provider" '
        .. "validation failed: matches none of the enum values", "PATCH validates plugins")
refused("PATCH", R .. "/1", { id = "2" }, 400, "wrong route id", "PATCH id mismatch")
refused("PATCH", R .. "/nope", { desc = "x" }, 404, "Key not found", "PATCH missing")
refused("PATCH", R .. "/1", nil, 400, "missing new configuration", "PATCH without body")
refused("PATCH", R .. "/1", '"x"', 400, "invalid configuration", "PATCH with a string")
refused("PATCH", R, { desc = "x" }, 400, "missing route id", "PATCH without id")
is(raw_store(), before, "refused PATCHes left the store untouched")
is(#changes, nchanges, "and on_change was not called")

-- pagination and filters ---------------------------------------------------------------------
for i = 1, 25 do
    call("PUT", R .. "/p" .. string.format("%02d", i), {
        uri = "/page/" .. i, plugins = {}, name = i % 2 == 0 and "even-" .. i or "odd-" .. i,
        labels = i <= 3 and { team = "a" } or nil,
    })
end

s, res = call("GET", R, nil, { page = "1", page_size = "10" })
is(res.total, 27, "paged total counts everything")
is(#res.list, 10, "page 1 has page_size items")
local ordered = true
for i = 2, #res.list do
    ordered = ordered and res.list[i - 1].createdIndex < res.list[i].createdIndex
end
ok(ordered, "pages are ordered by createdIndex")
is(res.list[1].key, "/apisix/routes/1", "oldest first")
s, res = call("GET", R, nil, { page = "3", page_size = "10" })
is(#res.list, 7, "last page")
s, res = call("GET", R, nil, { page = "4", page_size = "10" })
is(res, '{"total":27,"list":[]}', "past the end: empty list")
s, res = call("GET", R, nil, { page = "-1", page_size = "10" })
is(#res.list, 10, "a bad page means page 1")
s, res = call("GET", R, nil, { page = "1", page_size = "5" })
is(s, 400, "page_size below 10")
is(res, "page_size must be between 10 and 500", "APISIX's page_size message (plain text)")
s, res = call("GET", R, nil, { page = "1", page_size = "501" })
is(s, 400, "page_size above 500")
s, res = call("GET", R, nil, { name = "^even" })
is(res.total, 12, "name filter (regex)")
s, res = call("GET", R, nil, { uri = "/page/1[0-9]$" })
is(res.total, 10, "uri filter (regex)")
s, res = call("GET", R, nil, { label = "team" })
is(res.total, 3, "label filter")
s, res = call("GET", R .. "?page=2&page_size=10&name=odd", nil, nil)
is(res.total, 13, "query string in the path")
is(#res.list, 3, "filter then paginate")
for i = 1, 25 do
    call("DELETE", R .. "/p" .. string.format("%02d", i))
end

-- upstreams, services, plugin_configs: references and deletes -----------------------------------
local U = "/apisix/admin/upstreams"
local S = "/apisix/admin/services"
local PC = "/apisix/admin/plugin_configs"
s, res = call("PUT", U .. "/u1", { nodes = { ["127.0.0.1:1980"] = 1 }, type = "roundrobin" })
is(s, 201, "upstream created")
is(res.key, "/apisix/upstreams/u1", "upstream key")
is(res.value.pass_host, nil, "upstream defaults not stored")
s, res = call("POST", U, { nodes = { { host = "127.0.0.1", port = 80, weight = 1 } } })
is(s, 201, "POST upstream with array nodes")
call("DELETE", U .. "/" .. res.value.id)

refused("PUT", U .. "/bad", { nodes = { ["127.0.0.1:70000"] = 1 } }, 400, "invalid port 70000",
        "node port out of range")
refused("PUT", U .. "/bad", { nodes = { ["a:1"] = 1 }, pass_host = "rewrite" }, 400,
        "`upstream_host` can't be empty when `pass_host` is `rewrite`", "pass_host rewrite")
refused("PUT", U .. "/bad", { nodes = { ["a:1"] = 1 }, type = "chash" }, 400, "missing key",
        "chash without key")
refused("PUT", U .. "/bad", { nodes = { ["a:1"] = 1 }, type = "chash", hash_on = "header",
                              key = "$#^@" }, 400,
        'invalid configuration: failed to match pattern "^[a-zA-Z0-9-_]+$" with "$#^@"',
        "chash header key")
refused("PUT", U .. "/bad", { nodes = { { host = "::1", port = 80, weight = 1 } } }, 400,
        "invalid configuration: IPv6 address must be enclosed with '[' and ']'", "bare IPv6")
refused("PUT", U .. "/bad", { nodes = { ["a:1"] = 1 }, retries = -1 }, 400,
        'invalid configuration: property "retries" validation failed: expected -1 to be at '
        .. "least 0", "upstream schema")
refused("PUT", U .. "/bad", { nodes = { ["a:1"] = 1 }, type = "random" }, 400,
        'invalid configuration: property "type" validation failed: matches none of the enum '
        .. "values", "balancer type")
refused("PUT", U .. "/bad", { nodes = { ["a:1"] = 1 }, tls = { client_cert_id = "nope" } }, 400,
        "failed to fetch ssl info by ssl id [nope], response code: 404", "missing client cert")

refused("PUT", R .. "/r-u", { uri = "/u", upstream_id = "nope" }, 400,
        "failed to fetch upstream info by upstream id [nope], response code: 404",
        "route to a missing upstream")
refused("PUT", R .. "/r-s", { uri = "/s", service_id = "nope" }, 400,
        "failed to fetch service info by service id [nope], response code: 404",
        "route to a missing service")
refused("PUT", R .. "/r-p", { uri = "/p", plugins = {}, plugin_config_id = "nope" }, 400,
        "failed to fetch plugin config info by plugin config id [nope], response code: 404",
        "route to a missing plugin config")
refused("PUT", S .. "/s0", { upstream_id = "nope" }, 400,
        "failed to fetch upstream info by upstream id [nope], response code: 404",
        "service to a missing upstream")

is(call("PUT", R .. "/r-u", { uri = "/u", upstream_id = "u1" }), 201, "route to u1")
is(call("PUT", S .. "/s1", { upstream_id = "u1", plugins = {} }), 201, "service to u1")
is(call("PUT", R .. "/r-s", { uri = "/s", service_id = "s1" }), 201, "route to s1")
is(call("PUT", PC .. "/pc1", { plugins = { strict = { n = 1 } } }), 201, "plugin config")
is(call("PUT", R .. "/r-p", { uri = "/p", plugins = {}, plugin_config_id = "pc1" }), 201,
   "route to pc1")
refused("POST", PC, { plugins = {} }, 405, "not supported `POST` method for plugin config",
        "POST plugin config")
refused("PUT", PC .. "/pc2", { plugins = { nope = {} } }, 400, "unknown plugin [nope]",
        "plugin config with an unknown plugin")

before = raw_store()
refused("DELETE", U .. "/u1", nil, 400,
        "can not delete this upstream, route [r-u] is still using it now", "upstream used by a route")
refused("DELETE", S .. "/s1", nil, 400,
        "can not delete this service directly, route [r-s] is still using it now",
        "service used by a route")
refused("DELETE", PC .. "/pc1", nil, 400,
        "can not delete this plugin config, route [r-p] is still using it now",
        "plugin config used by a route")
is(raw_store(), before, "refused deletes left the store untouched")

call("DELETE", R .. "/r-u")
refused("DELETE", U .. "/u1", nil, 400,
        "can not delete this upstream, service [s1] is still using it now", "then by a service")
call("PATCH", S .. "/s1", '{"upstream_id":null,"upstream":{"nodes":{"a:1":1}}}')
is(call("PUT", S .. "/s2", { plugins = { ["traffic-split"] = { rules = {
    { weighted_upstreams = { { upstream_id = "u1", weight = 1 } } } } } } }), 201,
   "service with traffic-split")
refused("DELETE", U .. "/u1", nil, 400,
        "can not delete this upstream, plugin in service [s2] is still using it now",
        "then by a plugin")
s, res = call("DELETE", U .. "/u1", nil, { force = "true" })
is(s, 200, "force=true deletes anyway")
is_deeply(res, { deleted = "1", key = "/apisix/upstreams/u1" }, "forced delete body")
s, res = call("DELETE", S .. "/s1", nil, { force = "true" })
is(s, 200, "forced service delete")
s, res = call("DELETE", PC .. "/pc1", nil, { force = "true" })
is(s, 200, "forced plugin config delete")
s, res = call("PATCH", U .. "/nope/nodes", { ["a:1"] = 1 })
is(s, 404, "PATCH of a deleted upstream")
is(call("PUT", U .. "/u2", { nodes = { ["a:1"] = 1 } }), 201, "another upstream")
s, res = call("PATCH", U .. "/u2/nodes", { ["b:2"] = 3 })
is_deeply(res.value.nodes, { ["b:2"] = 3 }, "sub-path PATCH replaces nodes")

-- consumers ---------------------------------------------------------------------------------
local CO = "/apisix/admin/consumers"
s, res = call("PUT", CO, { username = "jack", plugins = { ["key-auth"] = { key = "k-jack" } } })
is(s, 201, "consumer created by username")
is(res.key, "/apisix/consumers/jack", "consumer key")
is(res.value.id, nil, "consumers have no id")
ok(not raw_store():find("k-jack", 1, true), "consumer key sealed (consumer_schema.encrypt_fields)")
s, res = call("GET", CO .. "/jack")
is(res.value.plugins["key-auth"].key, "k-jack", "consumer key decrypted on GET")
is(call("PUT", CO .. "/jack", { username = "jack", plugins = { ["key-auth"] = { key = "k-jack" } } }),
   200, "PUT /consumers/{username} replaces")
refused("PUT", CO .. "/jack", { username = "rose" }, 400, "wrong username", "username mismatch")
refused("PUT", CO .. "/jack", { desc = "x" }, 400,
        'invalid configuration: property "username" is required', "username required")
refused("PUT", CO, { username = "bob", plugins = { ["key-auth"] = { key = "k-jack" } } }, 400,
        "duplicate key of plugin key-auth found with consumer: jack", "duplicate key-auth key")
refused("PUT", CO, { username = "bob", plugins = { ["key-auth"] = {} } }, 400,
        "invalid plugins configuration: failed to check the configuration of plugin key-auth err: "
        .. 'property "key" is required', "consumer plugin uses consumer_schema")
refused("PUT", CO, { username = "bob", group_id = "g" }, 400,
        "failed to fetch consumer group info by consumer group id [g], response code: 404",
        "consumer groups do not exist")
refused("POST", CO, { username = "bob" }, 405, "not supported `POST` method for consumer",
        "POST consumer")
refused("PATCH", CO .. "/jack", { desc = "x" }, 405, "not supported `PATCH` method for consumer",
        "PATCH consumer")
s, res = call("GET", CO)
is(res.total, 1, "consumer list")
s, res = call("DELETE", CO .. "/jack")
is_deeply(res, { deleted = "1", key = "/apisix/consumers/jack" }, "consumer DELETE body")

-- global rules -------------------------------------------------------------------------------
local G = "/apisix/admin/global_rules"
local gconf = { plugins = { strict = { n = 1 } } }
s, res = call("PUT", G .. "/g1", gconf)
is(s, 201, "global rule created")
is(res.value.id, "g1", "global rule id")
is(call("PUT", G .. "/g1", gconf), 200, "a rule does not conflict with itself")
refused("PUT", G .. "/g2", gconf, 400, "plugin 'strict' already exists in global rule with id 'g1'",
        "plugin in two global rules")
refused("PUT", G .. "/g2", {}, 400, 'invalid configuration: property "plugins" is required',
        "global rule needs plugins")
refused("POST", G, gconf, 405, "not supported `POST` method for global rule", "POST global rule")
s, res = call("PATCH", G .. "/g1/plugins/strict/n", "2")
is(res.value.plugins.strict.n, 2, "PATCH a global rule")
s, res = call("DELETE", G .. "/g1")
is_deeply(res, { deleted = "1", key = "/apisix/global_rules/g1" }, "global rule DELETE body")

-- plugin metadata ----------------------------------------------------------------------------
local PM = "/apisix/admin/plugin_metadata"
s, res = call("PUT", PM .. "/example-plugin", { ikey = 1, skey = "val" })
is(s, 201, "plugin metadata created")
is(res.key, "/apisix/plugin_metadata/example-plugin", "metadata key")
is(res.value.id, "example-plugin", "metadata id is the plugin name")
is(call("PUT", PM .. "/example-plugin", { ikey = 2 }), 200, "metadata replaced")
refused("PUT", PM .. "/example-plugin", { skey = "x" }, 400,
        'invalid configuration: property "ikey" is required', "metadata_schema enforced")
refused("PUT", PM .. "/nope", { ikey = 1 }, 400, "invalid plugin name", "metadata of unknown plugin")
refused("PUT", PM, { ikey = 1 }, 400, "missing plugin name", "metadata without a name")
is(call("PUT", PM .. "/ai-proxy", { anything = true }), 201, "no metadata_schema: any object")
refused("POST", PM, { ikey = 1 }, 405, "not supported `POST` method for plugin_metadata",
        "POST metadata")
refused("PATCH", PM .. "/example-plugin", { ikey = 1 }, 405,
        "not supported `PATCH` method for plugin_metadata", "PATCH metadata")
s, res = call("DELETE", PM .. "/example-plugin")
is_deeply(res, { deleted = "1", key = "/apisix/plugin_metadata/example-plugin" },
          "metadata DELETE body")

-- ssls ---------------------------------------------------------------------------------------
local SS = "/apisix/admin/ssls"
refused("PUT", SS .. "/1", { sni = "a.com" }, 400, "invalid configuration: then clause did not match",
        "ssl schema")
refused("PUT", SS .. "/1", { sni = "a.com", cert = string.rep("x", 200), key = string.rep("y", 100) },
        400, "failed to parse cert: PEM_read_bio_X509_AUX() failed", "bad certificate")
local tmp = os.tmpname()
local rc = os.execute("openssl req -x509 -newkey rsa:2048 -nodes -keyout " .. tmp .. ".key -out "
                      .. tmp .. ".crt -days 1 -subj /CN=test.local >/dev/null 2>&1")
if rc == 0 or rc == true then
    local cert = io.open(tmp .. ".crt"):read("*a")
    local key = io.open(tmp .. ".key"):read("*a")
    os.remove(tmp .. ".crt")
    os.remove(tmp .. ".key")
    s, res = call("PUT", SS .. "/1", { snis = { "test.local" }, cert = cert, key = key })
    is(s, 201, "ssl created")
    is(res.value.key, nil, "ssl key not echoed")
    s, res = call("GET", SS .. "/1")
    is(res.value.key, nil, "ssl key never returned by GET")
    is(res.value.cert, cert, "cert returned")
    local body = key:match("%-%-%-%-%-\n(.-)\n")
    ok(not raw_store():find(body, 1, true), "ssl key sealed on disk")
    is(store.open(DATA, { keyring = KEYRING }):read().ssls["1"].value.key, key,
       "ssl key readable by the config builder")
    refused("PUT", U .. "/tls", { nodes = { ["a:1"] = 1 }, tls = { client_cert_id = "1" } }, 400,
            "failed to fetch ssl info by ssl id [1], wrong ssl type", "server cert as client cert")
    is(call("PUT", SS .. "/c1", { type = "client", cert = cert, key = key }), 201, "client cert")
    is(call("PUT", U .. "/tls", { nodes = { ["a:1"] = 1 }, tls = { client_cert_id = "c1" } }), 201,
       "upstream with a client cert")
    refused("DELETE", SS .. "/c1", nil, 400,
            "can not delete this ssl, upstream [tls] is still using it now", "ssl in use")
    is(call("DELETE", SS .. "/c1", nil, { force = "true" }), 200, "forced ssl delete")
else
    for _ = 1, 12 do
        ok(true, "# skip: openssl command not available")
    end
end

os.remove(tmp)

-- plugins and schema endpoints ------------------------------------------------------------
s, res = call("GET", "/apisix/admin/plugins/list")
is(s, 200, "plugins/list")
is_deeply(res, { "key-auth", "ai-proxy", "traffic-split", "strict", "example-plugin" },
          "names by priority, highest first; plugins without priority left out")
s, res = call("GET", "/apisix/admin/plugins/ai-proxy")
ok(res == ai_proxy_schema, "plugin schema")
s, res = call("GET", "/apisix/admin/plugins/key-auth", nil, { schema_type = "consumer" })
ok(res == key_auth_consumer_schema, "consumer schema")
s, res = call("GET", "/apisix/admin/plugins/nope")
is(s, 404, "unknown plugin schema")
is(err_of(res), "plugin not found in subsystem http", "unknown plugin message")
s, res = call("GET", "/apisix/admin/plugins/ai-proxy", nil, { subsystem = "asdf" })
is(err_of(res), "unsupported subsystem: asdf", "bad subsystem")
s, res = call("GET", "/apisix/admin/plugins", nil, { all = "true" })
is(res["ai-proxy"].priority, 1040, "plugins?all=true")
s, res = call("GET", "/apisix/admin/schema/plugins/strict")
is(res.required[1], "n", "schema/plugins/{name}")
s, res = call("PUT", "/apisix/admin/plugins/reload")
is(s, 200, "plugins/reload")
is(res, "done", "reload body")
is(reloads, 1, "on_plugins_reload called")
s, res = call("GET", "/apisix/admin/plugins/reload")
is(s, 405, "reload with GET")
is(err_of(res), "please use PUT method to reload the plugins, GET method is not allowed.",
   "reload GET message")
is(call("GET", "/apisix/admin/plugins/reload", nil, nil, { ["x-api-key"] = VIEWER_KEY }), 405,
   "viewer can GET the reload path (and is told to PUT)")
is(call("PUT", "/apisix/admin/plugins/reload", nil, nil, { ["x-api-key"] = VIEWER_KEY }), 401,
   "viewer cannot reload")

local V = "/apisix/admin/schema/validate/"
s, res = call("POST", V .. "routes", { uri = "/a", upstream = { nodes = { ["a:1"] = 1 } } })
is(s, 200, "schema/validate ok")
s, res = call("POST", V .. "routes", { uri = 666, upstream = { nodes = { ["a:1"] = 1 } } })
is(s, 400, "schema/validate fails")
is(err_of(res), 'property "uri" validation failed: wrong type: expected string, got number',
   "schema/validate message has no prefix")
s, res = call("POST", V .. "upstreams", { nodes = { ["a:1"] = 1 }, type = "roundrobin" })
is(s, 200, "schema/validate upstreams")
s, res = call("POST", V .. "nope", {})
is(err_of(res), "Unsupported resource type: nope", "schema/validate unknown kind")
s, res = call("GET", "/apisix/admin/schema/route")
is(res.type, "object", "GET schema/route")
s, res = call("GET", "/apisix/admin/schema/nope")
is(err_of(res), "not found schema: nope", "unknown schema")

-- odds and ends ------------------------------------------------------------------------------
is(call("HEAD", "/apisix/admin"), 200, "HEAD /apisix/admin")
is(call("GET", "/other"), 404, "outside the prefix")
is(call("OPTIONS", R), 404, "unsupported method")
is(call("GET", "/apisix/admin/consumers/jack/credentials"), 404, "credentials not supported")
local _, _, hdrs = call("GET", R)
is(hdrs["X-API-VERSION"], "v3", "X-API-VERSION header")
is(hdrs["Content-Type"], "application/json", "JSON content type")
local v0 = changes[#changes]
call("PUT", R .. "/ver", route())
ok(changes[#changes] > v0, "versions passed to on_change grow")

assert(init({ on_change = function() error("hook failed") end }))
is(call("PUT", R .. "/hook", route()), 201, "a failing on_change does not fail the write")
is(call("GET", R .. "/hook"), 200, "and the write is there")
assert(init())

local real_get = registry.get
registry.get = function() error("registry exploded") end
s, res = call("PUT", R .. "/boom", route())
is(s, 503, "an error inside the transaction is a 503")
like(err_of(res), "registry exploded", "with the reason")
registry.get = real_get
ok(call("GET", R) == 200, "the store lock was released")

-- the file on disk is what the config builder reads --------------------------------------------
local builder = assert(store.open(DATA, { keyring = KEYRING, plugins = registry }))
local bdoc = assert(builder:read())
is(bdoc.routes["1"].value.plugins["ai-proxy"].auth.header.Authorization, "Bearer sk-2",
   "config builder reads decrypted values")
local copy = schema.deepcopy(bdoc.routes["1"].value)
ok(validate.resource("routes", copy, bdoc, registry), "stored values validate")
is(copy.priority, 0, "validate.resource fills defaults into the copy")

-- standalone documents (config/validate.lua) ------------------------------------------------
local sdoc = {
    routes = {
        { id = "r1", uri = "/a", upstream_id = "u1" },          -- forward reference
        { id = "r2", uri = "/b", plugins = { ["ai-proxy"] = { provider = "openai", auth = {} } } },
        { uri = "/c", service_id = "s1" },
    },
    upstreams = { { id = "u1", nodes = { ["a:1"] = 1 } } },
    services = { { id = "s1", upstream_id = "u1" } },
    consumers = { { username = "jack", plugins = { ["key-auth"] = { key = "k" } } } },
    plugin_metadata = { { id = "example-plugin", ikey = 1 } },
    global_rules = { { id = "g", plugins = { strict = { n = 1 } } } },
    routes_conf_version = 3,
    stream_routes = { { id = "ignored" } },
}
local good, shaped = validate.document(sdoc, registry)
ok(good, "standalone document validates" .. (good and "" or (": " .. tostring(shaped))))
if good then
    is(shaped.routes.r1.value.priority, 0, "defaults filled")
    is(shaped.routes.arr_3.value.id, "arr_3", "an item without id gets arr_<n>, as APISIX")
    is(shaped.consumers.jack.value.username, "jack", "consumers keyed by username")
    is(shaped.plugin_metadata["example-plugin"].value.ikey, 1, "metadata keyed by plugin")
    is(shaped.routes.r2.value.plugins["ai-proxy"].timeout, 30000, "plugin defaults filled")
end

local function doc_err(d)
    local g, e = validate.document(d, registry)
    return g and "ok" or e
end

is(doc_err({ routes = { { id = "r1", uri = "/a", plugins = {} },
                        { id = "r1", uri = "/b", plugins = {} } } }),
   "found duplicate id r1 in routes", "duplicate id")
is(doc_err({ consumers = { { username = "a" }, { username = "a" } } }),
   "found duplicate username a in consumers", "duplicate username")
is(doc_err({ routes = { { id = "r1", uri = "/a", plugins = {} }, { id = "r2", uri = 5 } } }),
   'invalid routes[1] (id r2): invalid configuration: property "uri" validation failed: '
   .. "wrong type: expected string, got number", "the broken item is named")
is(doc_err({ routes = { { id = "r1", uri = "/a", upstream_id = "nope" } } }),
   "invalid routes[0] (id r1): failed to fetch upstream info by upstream id [nope], response "
   .. "code: 404", "missing reference")
is(doc_err({ consumers = { { username = "a", plugins = { nope = {} } } } }),
   "invalid consumers[0] (id a): invalid plugins configuration: unknown plugin [nope]",
   "unknown plugin in a consumer")
is(doc_err({ routez = {} }), "invalid configuration: unknown resource type routez", "unknown key")
is(doc_err({ routes = { a = 1 } }), "invalid configuration: routes must be an array",
   "resource list must be an array")
is(doc_err({ routes = { "x" } }), "invalid routes[0]: it should be an object", "item not an object")
is(doc_err({ routes_conf_version = "x" }), "routes_conf_version must be a number", "conf version")
is(doc_err("x"), "invalid configuration: expected an object with resource lists", "not an object")
is(doc_err({}), "ok", "empty document")

-- timings: a 2000-route store ---------------------------------------------------------------
local big = base .. ".big/data"
assert(store.open(big, { keyring = KEYRING, plugins = registry }):transaction(function(d)
    for i = 1, 2000 do
        local id = "b" .. i
        d.routes[id] = { createdIndex = d._index, modifiedIndex = d._index, value = route({
            id = id, uri = "/v1/chat/" .. i, create_time = clock, update_time = clock,
            plugins = { ["ai-proxy"] = { provider = "openai",
                                         auth = { header = { Authorization = "Bearer sk-" .. i } } } },
        }) }
    end
    return true
end))
assert(init({ data_dir = big }))
local t0 = now_ms()
for i = 1, 10 do
    assert(call("PUT", R .. "/b" .. i, route({ desc = "x" })) == 200)
end
local t_put = (now_ms() - t0) / 10
t0 = now_ms()
s, res = call("GET", R)
local t_list = now_ms() - t0
is(res.total, 2000, "list of 2000")
t0 = now_ms()
for i = 1, 100 do
    call("GET", R .. "/b" .. i)
end
local t_get = (now_ms() - t0) / 100
t0 = now_ms()
s, res = call("GET", R, nil, { page = "200", page_size = "10" })
local t_page = now_ms() - t0
is(#res.list, 10, "last page of 2000")
ok(t_put < 1000, string.format("PUT into a 2000-route store: %.1f ms", t_put))
io.write(string.format("# admin, 2000 routes: PUT %.1f ms, GET one %.3f ms, GET list %.1f ms, "
                       .. "GET page %.1f ms\n", t_put, t_get, t_list, t_page))

os.execute("rm -rf " .. base .. ".d " .. base .. ".big")
t.done_testing()
