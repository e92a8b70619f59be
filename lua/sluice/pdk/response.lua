-- pdk.response: status and headers of the response (in header_filter: the upstream's, as
-- they will be sent), and exit() to end a request from rewrite/access.
local has_http, http = pcall(require, "sluice.http")

local _M = {}


function _M.set_status(code)
    http.set_status(code)
end


function _M.get_status()
    return http.get_status()
end


function _M.get_header(name)
    return http.resp_header(name)
end


function _M.get_headers()
    return http.resp_headers()
end


function _M.set_header(name, value)
    if value ~= nil and type(value) ~= "string" then
        value = tostring(value)
    end

    http.set_resp_header(name, value)
end


function _M.add_header(name, value)
    http.set_resp_header(name, tostring(value), true)
end


function _M.clear_header(name)
    http.set_resp_header(name, nil)
end


-- clear_headers(names, prefixes): removes every response header whose lowercased name is a key
-- of `names` ({["set-cookie"] = true, ...}) or starts with one of `prefixes` ({"cf-", ...},
-- lowercase). One pass in C, no table of the headers built.
function _M.clear_headers(names, prefixes)
    http.clear_resp_headers(names, prefixes)
end


function _M.get_upstream_status(ctx)
    return ctx and ctx.var and tonumber(ctx.var.upstream_status)
end


-- use as: return pdk.response.exit(403, {message = "..."})
function _M.exit(code, body)
    return code, body
end


if not has_http then
    _M.available = false
end


return _M
