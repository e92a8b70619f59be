-- sluice.pdk: the plugin API. Names follow Apache APISIX's `core` where it has one, so an
-- APISIX plugin ports with few changes. Documented in README.md ("Lua plugin API").
-- The C modules are optional here so plugins load (for schema checks) in the master too.
local json = require("sluice.pdk.json")

local has_core, core = pcall(require, "sluice.core")
local has_timer, timer = pcall(require, "sluice.timer")
local has_up, up = pcall(require, "sluice.upstream")

local concat = table.concat
local select = select
local tostring = tostring

local _M = {
    version = has_core and core.version or "0.1.0",
    json = json,
    request = require("sluice.pdk.request"),
    response = require("sluice.pdk.response"),
    upstream = require("sluice.pdk.upstream"),
    re = require("sluice.pdk.re"),
    shared = require("sluice.shared"),
    table = require("sluice.pdk.table"),
}

-- pdk.log: to the error log, one line per call, arguments concatenated
local LEVELS = { debug = 0, info = 1, notice = 2, warn = 3, error = 4, crit = 5 }
_M.log = {}
for name, level in pairs(LEVELS) do
    _M.log[name] = function(...)
        if not has_core or level < core.log_level() then
            return
        end

        local n = select("#", ...)
        local parts = { ... }
        for i = 1, n do
            parts[i] = tostring(parts[i])
        end

        local who = require("sluice.plugin").current()
        local msg = concat(parts, "", 1, n)
        core.log(level, who and ("[" .. who .. "] " .. msg) or msg)
    end
end

-- pdk.time: the worker's cached clock (now) and a fresh read (update), seconds. In the host
-- they are FFI calls, which LuaJIT compiles into the trace (a Lua C function would end the
-- trace and restart one after it); plain LuaJIT (unit tests) gets os.time().
_M.time = {
    now = function() return has_core and core.now() or os.time() end,
    update = function() return has_core and core.update_time() or os.time() end,
}
do
    local ffi = require("ffi")
    local ok = pcall(ffi.cdef, "double sl_worker_now(void); double sl_worker_update_time(void);")
    local C = ffi.C
    ok = ok and has_core and pcall(function() return C.sl_worker_now, C.sl_worker_update_time end)
    if ok then
        _M.time.now = function() return C.sl_worker_now() end
        _M.time.update = function() return C.sl_worker_update_time() end
    end
end

-- pdk.timer
_M.timer = {
    sleep = function(s) return timer.sleep(s) end,
    at = function(delay, fn, ...) return timer.at(delay, fn, ...) end,
    every = function(interval, fn, ...) return timer.every(interval, fn, ...) end,
}
if not has_timer then
    _M.timer = {}
end

-- pdk.http: a yielding HTTP client on the worker's curl multi
_M.http = {
    -- request{method, url, headers, body, timeout (s), ssl_verify} -> res | nil, err
    request = function(opts)
        if type(opts) ~= "table" or type(opts.url) ~= "string" then
            error("pdk.http.request needs a table with a url", 2)
        end

        return up.request(opts)
    end,
    -- request_multi{opts, ...} -> {res | {err = ...}, ...}, run at the same time
    request_multi = function(list)
        return up.request_multi(list)
    end,
}
if not has_up then
    _M.http = {}
end

-- pdk.worker
_M.worker = {
    id = function() return has_core and (core.worker()) or 0 end,
    count = function() return has_core and select(2, core.worker()) or 1 end,
}


return _M
