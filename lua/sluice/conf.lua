-- sluice.conf: reads the node configuration (conf/sluice.json, or a .lua file returning the
-- same table), fills defaults and checks it. The master calls load() at start and on every
-- reload; a configuration that fails here is never applied. The result is also handed to
-- every worker as JSON (normalised: sizes in bytes, times in seconds).
local cjson = require("cjson.safe")

local type = type
local tonumber = tonumber

local DEFAULT_ADMIN_KEY = "edd1c9f034335f136f87ad84b625c8f1"

-- zones the bundled plugins and the core count in; users add more with shared_dicts
local BUNDLED_ZONES = {
    ["sluice-config"] = 1024 * 1024,
    ["prometheus-metrics"] = 16 * 1024 * 1024,
    ["plugin-limit-count"] = 10 * 1024 * 1024,
    ["ai-rate-limiting"] = 10 * 1024 * 1024,
    ["upstream-healthcheck"] = 4 * 1024 * 1024,
}

local BUNDLED_PLUGINS = {
    "ai-proxy", "ai-proxy-multi", "ai-request-rewrite", "ai-rate-limiting",
    "ai-prompt-decorator", "ai-prompt-template", "ai-prompt-guard",
    "ai-aws-content-moderation", "ai-rag", "key-auth", "prometheus",
}

local _M = { DEFAULT_ADMIN_KEY = DEFAULT_ADMIN_KEY, BUNDLED_PLUGINS = BUNDLED_PLUGINS }


-- "64m", "10k", "1g", 1024 -> bytes
function _M.parse_size(v)
    if type(v) == "number" then
        return v >= 0 and math.floor(v) or nil
    end

    if type(v) ~= "string" then
        return nil
    end

    local n, unit = v:lower():match("^%s*(%d+%.?%d*)%s*([kmg]?)b?%s*$")
    n = tonumber(n)
    if not n then
        return nil
    end

    local mult = ({ [""] = 1, k = 1024, m = 1024 * 1024, g = 1024 * 1024 * 1024 })[unit]
    return math.floor(n * mult)
end


-- 60, "60s", "500ms", "2m" -> seconds
function _M.parse_time(v)
    if type(v) == "number" then
        return v >= 0 and v or nil
    end

    if type(v) ~= "string" then
        return nil
    end

    local n, unit = v:lower():match("^%s*(%d+%.?%d*)%s*(m?s?)%s*$")
    n = tonumber(n)
    if not n then
        return nil
    end

    if unit == "ms" then
        return n / 1000
    end

    if unit == "m" then
        return n * 60
    end

    return n
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


-- reads a JSON or Lua configuration file into a table
function _M.read_table(path)
    if path:sub(-4) == ".lua" then
        local chunk, err = loadfile(path)
        if not chunk then
            return nil, err
        end

        local ok, t = pcall(chunk)
        if not ok then
            return nil, path .. ": " .. tostring(t)
        end

        if type(t) ~= "table" then
            return nil, path .. ": must return a table"
        end

        return t
    end

    local data, err = read_file(path)
    if not data then
        return nil, err
    end

    local t, derr = cjson.decode(data)
    if type(t) ~= "table" then
        return nil, path .. ": invalid JSON: " .. tostring(derr or "not an object")
    end

    return t
end


local function parse_listen(s, kind)
    if type(s) ~= "string" then
        return nil, "listen address must be a string like \"127.0.0.1:9080\""
    end

    local addr, flags = s:match("^%s*(%S+)%s*(.*)$")
    local host, port = addr:match("^%[(.+)%]:(%d+)$")
    if not host then
        host, port = addr:match("^(.+):(%d+)$")
    end

    if not host then
        port = addr:match("^(%d+)$")
        host = "0.0.0.0"
    end

    port = tonumber(port)
    if not port or port < 1 or port > 65535 then
        return nil, "invalid listen address: " .. s
    end

    local ssl = false
    for flag in flags:gmatch("%S+") do
        if flag == "ssl" then
            ssl = true
        else
            return nil, "unknown listen flag \"" .. flag .. "\" in " .. s
        end
    end

    return { host = host, port = port, ssl = ssl, kind = kind }
end


local function is_loopback(host)
    return host:match("^127%.") ~= nil or host == "::1" or host == "localhost"
end


local function check_positive(t, key, parse, default, name)
    local v = t[key]
    if v == nil then
        t[key] = default
        return true
    end

    local n = parse(v)
    if not n then
        return nil, "invalid " .. name .. ": " .. tostring(v)
    end

    t[key] = n
    return true
end


-- Returns the normalised configuration, or nil and a one-line reason.
function _M.normalise(conf, prefix)
    if type(conf) ~= "table" then
        return nil, "configuration must be an object"
    end

    local listen = conf.listen or { "0.0.0.0:9080" }
    if type(listen) == "string" then
        listen = { listen }
    end

    if type(listen) ~= "table" or #listen == 0 then
        return nil, "listen must be a list of \"ip:port\" strings"
    end

    local listeners = {}
    for _, s in ipairs(listen) do
        local l, err = parse_listen(s, "http")
        if not l then
            return nil, err
        end

        listeners[#listeners + 1] = l
    end

    local admin = conf.admin
    if admin == nil then
        admin = {}
    end

    if admin ~= false then
        if type(admin) ~= "table" then
            return nil, "admin must be an object"
        end

        admin.listen = admin.listen or "127.0.0.1:9180"
        admin.keys = admin.keys or {
            { name = "admin", key = DEFAULT_ADMIN_KEY, role = "admin" },
        }
        admin.allow = admin.allow or { "127.0.0.0/8", "::1/128" }
        local l, err = parse_listen(admin.listen, "admin")
        if not l then
            return nil, "admin." .. err
        end

        if type(admin.keys) ~= "table" then
            return nil, "admin.keys must be a list"
        end

        for i, k in ipairs(admin.keys) do
            if type(k) ~= "table" or type(k.key) ~= "string" or #k.key == 0 then
                return nil, "admin.keys[" .. i .. "].key must be a non-empty string"
            end

            k.role = k.role or "admin"
            if k.role ~= "admin" and k.role ~= "viewer" then
                return nil, "admin.keys[" .. i .. "].role must be admin or viewer"
            end

            if k.key == DEFAULT_ADMIN_KEY and not is_loopback(l.host) then
                return nil, "refusing to start: the default admin key is only allowed when "
                            .. "admin.listen is a loopback address; set admin.keys"
            end
        end

        listeners[#listeners + 1] = l
        conf.admin = admin
    end

    local metrics = conf.metrics
    if metrics == nil then
        metrics = { listen = "127.0.0.1:9091" }
    end

    if metrics ~= false then
        if type(metrics) ~= "table" then
            return nil, "metrics must be an object"
        end

        local l, err = parse_listen(metrics.listen or "127.0.0.1:9091", "metrics")
        if not l then
            return nil, "metrics." .. err
        end

        listeners[#listeners + 1] = l
        conf.metrics = metrics
    end

    local seen = {}
    for _, l in ipairs(listeners) do
        local key = l.host .. ":" .. l.port
        if seen[key] then
            return nil, "address " .. key .. " is listed twice"
        end

        seen[key] = true
    end

    conf.listeners = listeners

    local workers = conf.workers or "auto"
    if workers ~= "auto" and (type(workers) ~= "number" or workers < 1 or workers > 64
                              or workers % 1 ~= 0) then
        return nil, "workers must be \"auto\" or a number from 1 to 64"
    end

    conf.workers = workers

    conf.log_level = conf.log_level or "notice"
    local levels = { debug = 1, info = 1, notice = 1, warn = 1, error = 1, crit = 1 }
    if not levels[conf.log_level] then
        return nil, "log_level must be one of debug, info, notice, warn, error, crit"
    end

    local http = conf.http or {}
    if type(http) ~= "table" then
        return nil, "http must be an object"
    end

    local checks = {
        { "client_max_body_size", _M.parse_size, 64 * 1024 * 1024, "http.client_max_body_size" },
        { "client_header_buffer_size", _M.parse_size, 32 * 1024,
          "http.client_header_buffer_size" },
        { "large_request_line", _M.parse_size, 8 * 1024, "http.large_request_line" },
        { "client_header_timeout", _M.parse_time, 60, "http.client_header_timeout" },
        { "client_body_timeout", _M.parse_time, 60, "http.client_body_timeout" },
        { "keepalive_timeout", _M.parse_time, 75, "http.keepalive_timeout" },
        { "send_timeout", _M.parse_time, 60, "http.send_timeout" },
        { "keepalive_requests", _M.parse_size, 10000, "http.keepalive_requests" },
        { "send_buffer_size", _M.parse_size, 256 * 1024, "http.send_buffer_size" },
    }
    for _, c in ipairs(checks) do
        local ok, err = check_positive(http, c[1], c[2], c[3], c[4])
        if not ok then
            return nil, err
        end
    end

    conf.http = http

    local up = conf.upstream or {}
    if type(up) ~= "table" then
        return nil, "upstream must be an object"
    end

    checks = {
        { "keepalive_pool", _M.parse_size, 320, "upstream.keepalive_pool" },
        { "keepalive_timeout", _M.parse_time, 60, "upstream.keepalive_timeout" },
        { "keepalive_requests", _M.parse_size, 1000, "upstream.keepalive_requests" },
        { "connect_timeout", _M.parse_time, 60, "upstream.connect_timeout" },
        { "send_timeout", _M.parse_time, 60, "upstream.send_timeout" },
        { "read_timeout", _M.parse_time, 60, "upstream.read_timeout" },
    }
    for _, c in ipairs(checks) do
        local ok, err = check_positive(up, c[1], c[2], c[3], c[4])
        if not ok then
            return nil, err
        end
    end

    conf.upstream = up

    local zones = {}
    for name, size in pairs(BUNDLED_ZONES) do
        zones[name] = size
    end

    if conf.shared_dicts ~= nil then
        if type(conf.shared_dicts) ~= "table" then
            return nil, "shared_dicts must be an object of name: size"
        end

        for name, size in pairs(conf.shared_dicts) do
            local n = _M.parse_size(size)
            if type(name) ~= "string" or not name:match("^[%w_%-%.]+$") or not n
               or n < 64 * 1024 then
                return nil, "invalid shared dict " .. tostring(name)
                            .. ": size must be at least 64k"
            end

            zones[name] = n
        end
    end

    local zone_list = {}
    for name, size in pairs(zones) do
        zone_list[#zone_list + 1] = { name = name, size = size }
    end

    table.sort(zone_list, function(a, b) return a.name < b.name end)
    conf.zones = zone_list

    local cfg = conf.config or {}
    if type(cfg) ~= "table" then
        return nil, "config must be an object"
    end

    cfg.provider = cfg.provider or "store"
    if cfg.provider ~= "store" and cfg.provider ~= "file" then
        return nil, "config.provider must be \"store\" or \"file\""
    end

    if cfg.provider == "file" then
        if type(cfg.file) ~= "string" then
            return nil, "config.file is required with config.provider \"file\""
        end

        if prefix and cfg.file:sub(1, 1) ~= "/" then
            cfg.file = prefix .. "/" .. cfg.file
        end
    end

    conf.config = cfg

    if conf.plugins ~= nil and type(conf.plugins) ~= "table" then
        return nil, "plugins must be a list of plugin names"
    end

    conf.plugins = conf.plugins or BUNDLED_PLUGINS

    if conf.plugin_paths ~= nil and type(conf.plugin_paths) ~= "table" then
        return nil, "plugin_paths must be a list of directories"
    end

    conf.plugin_paths = conf.plugin_paths or {}

    local log = conf.access_log
    if log == nil then
        log = {}
    end

    if log ~= false and type(log) ~= "table" then
        return nil, "access_log must be an object or false"
    end

    if log then
        log.path = log.path or "logs/access.log"
        log.buffer = _M.parse_size(log.buffer or 64 * 1024)
        log.flush = _M.parse_time(log.flush or 1)
        if prefix and log.path:sub(1, 1) ~= "/" then
            log.path = prefix .. "/" .. log.path
        end
    end

    conf.access_log = log
    conf.prefix = prefix
    return conf
end


function _M.load(path, prefix)
    local conf, err = _M.read_table(path)
    if not conf then
        return nil, err
    end

    return _M.normalise(conf, prefix)
end


return _M
