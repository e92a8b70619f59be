-- sluice.find: plain substring search in whole bodies.
--
--   find(s, needle [, init]) -> position of the first needle at or after init (1-based), or nil:
--                               string.find(s, needle, init, true)
--   rfind(s, needle)          -> position of the last needle, or nil
--
-- In a worker both are FFI calls into core/find.c (32 or sixteen bytes checked per step, the
-- last needle found from the end), which LuaJIT compiles into the calling trace; plain LuaJIT
-- (unit tests) gets the same answers from string.find. (C.f() each time, not a local copy of
-- C.f: LuaJIT then calls the address directly.)
local find = string.find

local _M = {}


function _M.find(s, needle, init)
    return find(s, needle, init or 1, true)
end


function _M.rfind(s, needle)
    local last, p = nil, find(s, needle, 1, true)
    while p do
        last = p
        p = find(s, needle, p + 1, true)
    end

    return last
end


local ok, ffi = pcall(require, "ffi")
ok = ok and pcall(ffi.cdef, [[
ptrdiff_t sl_ffi_find(const char *s, size_t len, const char *needle, size_t nlen, size_t from);
ptrdiff_t sl_ffi_rfind(const char *s, size_t len, const char *needle, size_t nlen);
]])
local C = ok and ffi.C
ok = ok and pcall(function() return C.sl_ffi_find, C.sl_ffi_rfind end)
if ok then
    local tonumber = tonumber

    function _M.find(s, needle, init)
        local from = 0
        if init then
            if init < 1 then
                init = 1
            end
            from = init - 1
        end

        local p = tonumber(C.sl_ffi_find(s, #s, needle, #needle, from))
        if p < 0 then
            return nil
        end

        return p + 1
    end

    function _M.rfind(s, needle)
        local p = tonumber(C.sl_ffi_rfind(s, #s, needle, #needle))
        if p < 0 then
            return nil
        end

        return p + 1
    end
end

_M.native = ok or false

return _M
