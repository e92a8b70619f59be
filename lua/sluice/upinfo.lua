-- sluice.upinfo: the current request's upstream numbers, read through the FFI (the access log
-- and the metrics want them on every request; a Lua C function would end LuaJIT's trace and
-- make the address string each time).
--
--   read() -> info | nil (no upstream yet): info.status, info.header_ms, info.total_ms,
--             info.connect_ms (-1 when not known yet), info.aborted, info.result, info.addr
--             (a const char *: ffi.string(info.addr) when the text is needed). info is one
--             struct reused by every call: read its fields at once.
--
-- Outside a worker (plain LuaJIT) read() is nil.
local ffi = require("ffi")

local _M = {}

local ok = pcall(ffi.cdef, [[
typedef struct {
    double      status, header_ms, total_ms, connect_ms;
    const char *addr;
    int         aborted, result;
} sl_ffi_up_info_t;
int sl_ffi_upstream_info(sl_ffi_up_info_t *out);
]])
local C = ffi.C
ok = ok and pcall(function() return C.sl_ffi_upstream_info end)

if ok then
    local info = ffi.new("sl_ffi_up_info_t")

    function _M.read()
        if C.sl_ffi_upstream_info(info) == 0 then
            return nil
        end

        return info
    end

    _M.string = ffi.string
else
    function _M.read()
        return nil
    end
end

return _M
