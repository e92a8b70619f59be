-- pdk.request: the client's request. Header and body edits change what goes upstream.
local json = require("sluice.pdk.json")

local has_http, http = pcall(require, "sluice.http")

local type = type
local lower = string.lower
local tonumber = tonumber

local _M = {}


function _M.get_method()
    return http.get_method()
end


function _M.get_uri()
    return http.get_uri()
end


function _M.get_path()
    return http.get_path()
end


local function unescape(s)
    s = s:gsub("+", " ")
    return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end
_M.unescape_uri = unescape


function _M.decode_args(query)
    local args = {}
    if not query or query == "" then
        return args
    end

    for pair in query:gmatch("[^&]+") do
        local k, v = pair:match("^([^=]*)=(.*)$")
        if not k then
            k, v = pair, true
        else
            v = unescape(v)
        end

        k = unescape(k)
        local cur = args[k]
        if cur == nil then
            args[k] = v
        elseif type(cur) == "table" then
            cur[#cur + 1] = v
        else
            args[k] = { cur, v }
        end
    end

    return args
end


function _M.get_args(ctx)
    if ctx and ctx._args then
        return ctx._args
    end

    local args = _M.decode_args(http.get_query())
    if ctx then
        ctx._args = args
    end

    return args
end
_M.get_uri_args = _M.get_args


local function escape(s)
    return (tostring(s):gsub("[^%w%-%._~]", function(c)
        return string.format("%%%02X", string.byte(c))
    end))
end
_M.escape_uri = escape


-- set_uri_args(ctx, args): replaces the query string sent upstream; args is a table
-- (name -> string | true | array) or an already encoded string
function _M.set_uri_args(ctx, args)
    if type(ctx) ~= "table" or (args == nil and ctx._method == nil) then
        ctx, args = nil, ctx
    end

    local q
    if type(args) == "string" then
        q = args
    else
        local names = {}
        for k in pairs(args or {}) do
            names[#names + 1] = k
        end

        table.sort(names)
        local parts = {}
        for _, k in ipairs(names) do
            local v = args[k]
            if type(v) == "table" then
                for _, item in ipairs(v) do
                    parts[#parts + 1] = escape(k) .. "=" .. escape(item)
                end
            elseif v == true then
                parts[#parts + 1] = escape(k)
            elseif v ~= false and v ~= nil then
                parts[#parts + 1] = escape(k) .. "=" .. escape(v)
            end
        end

        q = table.concat(parts, "&")
    end

    http.set_query(q)
    if ctx then
        ctx._args = nil
        ctx._query = q
        if ctx.var then
            rawset(ctx.var, "args", q)
            rawset(ctx.var, "request_uri", nil)
        end
    end
end


function _M.header(ctx, name)
    if type(ctx) == "string" then
        name = ctx
    end

    return http.get_header(name)
end
_M.get_header = _M.header


function _M.headers(ctx)
    return http.get_headers()
end
_M.get_headers = _M.headers


function _M.set_header(ctx, name, value)
    if type(ctx) == "string" then
        name, value = ctx, name
    end

    if value ~= nil and type(value) ~= "string" then
        value = tostring(value)
    end

    http.set_header(name, value)
end


-- get_body(max_size, ctx) -> body | nil (empty) | nil, err
function _M.get_body(max_size, ctx)
    if type(max_size) == "table" then
        max_size = ctx         -- get_body(ctx, max_size), APISIX's order
    end

    if max_size and http.body_size() > max_size then
        return nil, "request size " .. http.body_size() .. " is greater than the maximum size "
                    .. max_size .. " allowed"
    end

    return http.get_body()
end
_M.get_body_data = _M.get_body


function _M.set_body(ctx, data)
    if type(ctx) == "string" or ctx == nil then
        data = ctx
        ctx = nil
    end

    http.set_body(data or "")
    if ctx then
        ctx._json_body = nil
        ctx._json_err = nil
    end
end
_M.set_body_data = function(data) http.set_body(data or "") end


-- get_json(ctx, max_size) -> table | nil, err; decoded once per request
function _M.get_json(ctx, max_size)
    if ctx and ctx._json_body then
        return ctx._json_body
    end

    local body, err = _M.get_body(max_size, ctx)
    if not body then
        return nil, err or "empty request body"
    end

    local t, derr = json.decode(body)
    if type(t) ~= "table" then
        return nil, "invalid JSON in request body: " .. tostring(derr or "not an object")
    end

    if ctx then
        ctx._json_body = t
    end

    return t
end
_M.get_json_body = _M.get_json


function _M.get_remote_addr()
    local _, _, _, _, addr = http.info()
    return addr
end


function _M.get_scheme()
    local _, ssl = http.conn_info()
    return ssl and "https" or "http"
end


function _M.get_host()
    local _, _, _, host = http.info()
    return host and lower((host:gsub(":%d+$", ""))) or ""
end


if not has_http then
    _M.available = false
end


return _M
