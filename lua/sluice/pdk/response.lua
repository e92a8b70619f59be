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

-- in a worker: an FFI call (header_filter reads headers on every response)
do
    local ffi = require("ffi")
    local ok = has_http and pcall(ffi.cdef, [[
const char *sl_ffi_resp_header(const char *name, size_t nlen, size_t *vlen);
]])
    local C = ffi.C
    ok = ok and pcall(function() return C.sl_ffi_resp_header end)
    if ok then
        local vlen = ffi.new("size_t[1]")
        local NO_REQUEST = ffi.cast("size_t", -1)

        _M.get_header = function(name)
            if type(name) ~= "string" then
                return http.resp_header(name)
            end

            local p = C.sl_ffi_resp_header(name, #name, vlen)
            if p == nil then
                if vlen[0] == NO_REQUEST then
                    return http.resp_header(name)       -- raises "no request in this context"
                end

                return nil
            end

            return ffi.string(p, vlen[0])
        end
    end
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
-- lowercase). One pass in C, no table of the headers built. `names` may instead be a set made
-- once by header_set(names, prefixes): the per-request path for a filter that runs on every
-- response (an FFI call, which LuaJIT compiles into the caller's trace).
local clear_set
do
    local ffi = require("ffi")
    local ok = has_http and pcall(ffi.cdef, "int sl_ffi_clear_resp_headers(const void *set);")
    local C = ffi.C
    ok = ok and pcall(function() return C.sl_ffi_clear_resp_headers end)
    if ok then
        clear_set = function(set) C.sl_ffi_clear_resp_headers(set) end
    end
end

local SET_MT = { __name = "sluice.header_set" }

function _M.header_set(names, prefixes)
    if has_http and http.header_set then
        return http.header_set(names, prefixes)
    end

    return setmetatable({ names = names, prefixes = prefixes }, SET_MT)
end


function _M.clear_headers(names, prefixes)
    if type(names) == "userdata" and clear_set then
        clear_set(names)
    elseif getmetatable(names) == SET_MT then
        http.clear_resp_headers(names.names, names.prefixes)
    else
        http.clear_resp_headers(names, prefixes)
    end
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
