-- admin/init.lua -- the Admin API: client address check, X-API-KEY, request parsing and
-- dispatch to admin/resource.lua (routes, services, upstreams, consumers and their credentials,
-- consumer_groups, plugin_configs, global_rules, plugin_metadata, ssls, secrets, protos,
-- stream_routes) and admin/plugins.lua (plugins, schemas).
--
-- The C host calls, in every worker, admin.init(opts) once and admin.handle(req) for each
-- request on the admin listener:
--
--   admin.init({ keys = {{name =, key =, role = "admin"|"viewer"}},
--                allow = {"127.0.0.0/8", "::1"},      -- nil: loopback only; {}: anyone
--                data_dir = PREFIX .. "/data",        -- holds store.json
--                store = st,                          -- or an open config/store.lua store
--                keyring = {...} or nil,              -- data_encryption.keyring
--                max_body = 16 * 1024 * 1024,
--                plugins = registry,                  -- get(name), list()
--                on_change = function(version) end,   -- after each committed write
--                on_plugins_reload = function() end,
--                now = os.time,                       -- seconds, for create/update_time
--                key_required = true,                 -- false: no X-API-KEY check at all
--                read_only = "why" })                 -- refuse resource writes (400, why)
--     -> true | nil, err
--   admin.handle({ method =, path =, args = {}, headers = {} (lowercased names), body =,
--                  remote_addr = })
--     -> status, body (a table to JSON-encode, or a string sent as is), headers or nil
--
-- Messages and statuses follow APISIX's apisix/admin/init.lua; where Sluice differs it says
-- so: a disallowed address gets a JSON 403 (APISIX: nginx's deny page), and the body limit is
-- 16 MiB (APISIX: 1.5 MiB), still answered 400 "invalid request body: ..." as APISIX does.
local ffi      = require("ffi")
local bit      = require("bit")
local cjson    = require("cjson.safe")
local store    = require("sluice.config.store")
local resource = require("sluice.admin.resource")
local plugins  = require("sluice.admin.plugins")

local type     = type
local ipairs   = ipairs
local tostring = tostring
local tonumber = tonumber
local pcall    = pcall
local str_byte = string.byte
local str_sub  = string.sub
local str_find = string.find
local bxor     = bit.bxor
local bor      = bit.bor
local band     = bit.band
local lshift   = bit.lshift
local str_char = string.char
local concat   = table.concat

local PREFIX           = "/apisix/admin"
local DEFAULT_MAX_BODY = 16 * 1024 * 1024
local DEFAULT_ALLOW    = { "127.0.0.0/8", "::1/128" }
local AF_INET, AF_INET6 = 2, 10
local JSON_HEADERS = { ["Content-Type"] = "application/json", ["X-API-VERSION"] = "v3" }
local TEXT_HEADERS = { ["Content-Type"] = "text/plain" }

local _M = {}

local state

pcall(ffi.cdef, "int inet_pton(int af, const char *src, void *dst);")


-- Addresses ---------------------------------------------------------------------------------

local addr_buf = ffi.new("unsigned char[16]")

-- "1.2.3.4" / "::1" / "::ffff:1.2.3.4" -> family, 4 or 16 bytes as a string; mapped IPv4 is
-- folded to IPv4 so an IPv4 CIDR matches clients on a dual-stack socket.
local function parse_ip(s)
    if type(s) ~= "string" then
        return nil
    end

    if ffi.C.inet_pton(AF_INET, s, addr_buf) == 1 then
        return AF_INET, ffi.string(addr_buf, 4)
    end

    local zone = str_find(s, "%", 1, true)
    if zone then
        s = str_sub(s, 1, zone - 1)
    end

    if ffi.C.inet_pton(AF_INET6, s, addr_buf) == 1 then
        local b = ffi.string(addr_buf, 16)
        if str_sub(b, 1, 12) == "\0\0\0\0\0\0\0\0\0\0\255\255" then
            return AF_INET, str_sub(b, 13)
        end

        return AF_INET6, b
    end

    return nil
end


local function parse_cidr(s)
    if type(s) ~= "string" then
        return nil
    end

    local ip, bits = s:match("^([^/]+)/(%d+)$")
    ip = ip or s
    local family, bytes = parse_ip(ip)
    if not family then
        return nil
    end

    local max = #bytes * 8
    bits = bits and tonumber(bits) or max
    if bits > max then
        return nil
    end

    return { family = family, bytes = bytes, bits = bits }
end


local function in_cidr(family, bytes, cidr)
    if family ~= cidr.family then
        return false
    end

    local bits = cidr.bits
    local i = 1
    while bits >= 8 do
        if str_byte(bytes, i) ~= str_byte(cidr.bytes, i) then
            return false
        end

        bits = bits - 8
        i = i + 1
    end

    if bits == 0 then
        return true
    end

    local mask = band(lshift(0xff, 8 - bits), 0xff)
    return band(str_byte(bytes, i), mask) == band(str_byte(cidr.bytes, i), mask)
end


local function address_allowed(remote)
    if state.allow_all then
        return true
    end

    local family, bytes = parse_ip(remote)
    if not family then
        return false
    end

    for _, cidr in ipairs(state.allow) do
        if in_cidr(family, bytes, cidr) then
            return true
        end
    end

    return false
end


-- Keys --------------------------------------------------------------------------------------

-- Compares every byte of the longer string whatever the content, so the time taken does not
-- tell how much of a guess was right.
local function const_eq(a, b)
    local la, lb = #a, #b
    local n = la > lb and la or lb
    local diff = bxor(la, lb)
    for i = 1, n do
        diff = bor(diff, bxor(str_byte(a, i) or 0, str_byte(b, i) or 0))
    end

    return diff == 0
end
_M.const_eq = const_eq


local function cookie_value(cookie, name)
    if type(cookie) ~= "string" then
        return nil
    end

    for k, v in cookie:gmatch("([^=;%s]+)=([^;]*)") do
        if k == name then
            return v
        end
    end

    return nil
end


local function check_token(req)
    if state.key_required == false then
        return true
    end

    local headers = req.headers or {}
    local token = req.args.api_key or headers["x-api-key"]
                  or cookie_value(headers.cookie, "x_api_key")
    if type(token) == "table" then
        token = token[1]
    end

    if type(token) ~= "string" then
        return false, "missing apikey"
    end

    local found
    for _, row in ipairs(state.keys) do
        if const_eq(token, row.key) and not found then
            found = row
        end
    end

    if not found then
        return false, "wrong apikey"
    end

    if found.role == "viewer" and req.method ~= "GET" then
        return false, "invalid method for role viewer"
    end

    return true
end


-- Requests ----------------------------------------------------------------------------------

local function url_decode(s)
    s = s:gsub("+", " ")
    return (s:gsub("%%(%x%x)", function(h) return str_char(tonumber(h, 16)) end))
end


local function parse_query(q)
    local args = {}
    for pair in q:gmatch("[^&]+") do
        local k, v = pair:match("^([^=]*)=?(.*)$")
        if k and k ~= "" then
            args[url_decode(k)] = url_decode(v)
        end
    end

    return args
end


local function segments(path)
    local segs = {}
    for seg in path:gmatch("[^/]+") do
        segs[#segs + 1] = seg
    end

    return segs
end


local function json_body(req)
    local raw = req.body
    if raw == nil or raw == "" then
        return true, nil
    end

    local value, err = cjson.decode(raw)
    if err then
        return false, { error_msg = "invalid request body: " .. err, req_body = raw }
    end

    return true, value
end


local function respond(status, body, headers)
    if headers == nil then
        headers = type(body) == "table" and JSON_HEADERS or TEXT_HEADERS
        if type(body) == "string" and (str_sub(body, 1, 1) == "{" or body == "[]") then
            headers = JSON_HEADERS
        end
    end

    return status, body, headers
end


local function dispatch(req)
    local method = req.method
    local segs = segments(req.path)
    -- segs: "apisix", "admin", resource, id, sub/path...
    local res, id = segs[3], segs[4]
    local sub_path = #segs > 4 and concat(segs, "/", 5) or nil

    if method == "HEAD" and res == nil then
        return 200, ""
    end

    local ok, why = check_token(req)
    if not ok then
        return 401, { error_msg = "failed to check token", description = why }
    end

    local ctx = state.ctx

    if res == "plugins" and id == "reload" and #segs == 4 then
        return plugins.reload(ctx, method)
    end

    if res == "plugins" and id == "list" and #segs == 4 and method == "GET" then
        return plugins.list(ctx, req.args)
    end

    local body_size = req.body and #req.body or 0
    if body_size > state.max_body then
        return 400, { error_msg = "invalid request body: request size " .. body_size
                                  .. " is greater than the maximum size " .. state.max_body
                                  .. " allowed" }
    end

    if res == "schema" and id == "validate" and method == "POST" then
        local good, body = json_body(req)
        if not good then
            return 400, body
        end

        return plugins.validate(segs[5], body)
    end

    if res == nil then
        return 404, { error_msg = "Unsupported resource type: " }
    end

    if res == "plugins" or res == "schema" then
        if method ~= "GET" then
            return 404, { error_msg = "not found" }
        end

        if res == "schema" and id == "plugins" then
            return plugins.get(ctx, segs[5], req.args)
        end

        if res == "schema" then
            return plugins.resource_schema(id)
        end

        return plugins.get(ctx, id, req.args)
    end

    -- /consumers/{username}/credentials[/{id}]: the credentials of one consumer (scope)
    local scope
    if res == "consumers" and segs[5] == "credentials" then
        res, scope, id = "credentials", id, segs[6]
        sub_path = #segs > 6 and concat(segs, "/", 7) or nil

    elseif res == "secrets" and id ~= nil then
        -- /secrets/{manager}/{id}: stored as "<manager>/<id>"; /secrets/{manager} lists one
        -- manager's secrets
        if segs[5] then
            id = id .. "/" .. segs[5]
            sub_path = #segs > 5 and concat(segs, "/", 6) or nil

        else
            scope, id = id, nil
        end
    end

    if not resource.KINDS[res] then
        return 404, { error_msg = "Unsupported resource type: " .. res }
    end

    local handler = ({ GET = "get", PUT = "put", POST = "post", DELETE = "delete",
                       PATCH = "patch" })[method]
    if not handler then
        return 404, { error_msg = "not found" }
    end

    if state.read_only and handler ~= "get" then
        return 400, { error_msg = state.read_only }
    end

    local good, body = json_body(req)
    if not good then
        return 400, body
    end

    if req.args.ttl and not tonumber(req.args.ttl) then
        return 400, { error_msg = "invalid argument ttl: should be a number" }
    end

    -- etcd grants no lease of zero or less; Sluice says so rather than store an expired item
    if req.args.ttl and tonumber(req.args.ttl) <= 0 then
        return 400, { error_msg = "invalid argument ttl: should be a positive number" }
    end

    if res == "secrets" and handler ~= "get" and handler ~= "post" and id == nil then
        return 400, { error_msg = scope and "missing secret id" or "missing secret type" }
    end

    if handler == "get" then
        return resource.get(ctx, res, id, req.args, scope)

    elseif handler == "put" then
        return resource.put(ctx, res, id, body, req.args, scope)

    elseif handler == "post" then
        return resource.post(ctx, res, id, body, req.args)

    elseif handler == "delete" then
        return resource.delete(ctx, res, id, req.args, scope)
    end

    return resource.patch(ctx, res, id, body, sub_path, req.args)
end


-- admin.handle(req) -> status, body, headers (see the top of this file)
function _M.handle(req)
    if not state then
        return respond(503, { error_msg = "admin API is not initialised" })
    end

    if not address_allowed(req.remote_addr) then
        return respond(403, { error_msg = "forbidden: client address not allowed" })
    end

    local path = req.path or "/"
    local q = str_find(path, "?", 1, true)
    local args = req.args
    if q then
        args = args or parse_query(str_sub(path, q + 1))
        path = str_sub(path, 1, q - 1)
    end

    if path ~= PREFIX and str_sub(path, 1, #PREFIX + 1) ~= PREFIX .. "/" then
        return respond(404, { error_msg = "not found" })
    end

    local r = { method = (req.method or "GET"):upper(), path = path, args = args or {},
                headers = req.headers or {}, body = req.body, remote_addr = req.remote_addr }
    local ok, status, body, headers = pcall(dispatch, r)
    if not ok then
        return respond(500, { error_msg = "admin API error: " .. tostring(status) })
    end

    return respond(status, body, headers)
end


-- admin.init(opts) -> true | nil, err (see the top of this file)
function _M.init(opts)
    opts = opts or {}
    local keys = {}
    for i, row in ipairs(opts.keys or {}) do
        if type(row) ~= "table" or type(row.key) ~= "string" or row.key == "" then
            return nil, "admin.keys[" .. i .. "]: key must be a non-empty string"
        end

        local role = row.role or "admin"
        if role ~= "admin" and role ~= "viewer" then
            return nil, "admin.keys[" .. i .. "]: role must be admin or viewer"
        end

        keys[#keys + 1] = { name = row.name, key = row.key, role = role }
    end

    local allow, allow_all = {}, false
    local allow_conf = opts.allow
    if allow_conf == nil then
        allow_conf = DEFAULT_ALLOW
    end

    if #allow_conf == 0 then
        allow_all = true
    end

    for i, s in ipairs(allow_conf) do
        local cidr = parse_cidr(s)
        if not cidr then
            return nil, "admin.allow[" .. i .. "]: invalid address or CIDR: " .. tostring(s)
        end

        allow[#allow + 1] = cidr
    end

    if not opts.data_dir then
        return nil, "admin: data_dir is required"
    end

    -- the config builder's store when the host passes it: one parsed copy per worker
    local st = opts.store
    if not st then
        local err
        st, err = store.open(opts.data_dir, { keyring = opts.keyring, plugins = opts.plugins })
        if not st then
            return nil, err
        end
    end

    local registry = opts.plugins or { get = function() return nil end,
                                       list = function() return {} end }
    state = {
        keys = keys,
        key_required = opts.key_required,
        read_only = opts.read_only,
        allow = allow,
        allow_all = allow_all,
        max_body = opts.max_body or DEFAULT_MAX_BODY,
        ctx = {
            store = st,
            registry = registry,
            on_change = opts.on_change,
            on_plugins_reload = opts.on_plugins_reload,
            now = opts.now or os.time,
        },
    }

    return true
end


-- The store the Admin API writes, for the host's config builder in the same worker.
function _M.store()
    return state and state.ctx.store
end


return _M
