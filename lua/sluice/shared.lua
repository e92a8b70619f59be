-- sluice.shared: shared dictionaries, the zones the master maps before fork (core/shm.c),
-- for Lua through LuaJIT FFI (core/lua_shm.c). Same methods and return conventions as
-- ngx.shared.DICT, so APISIX code ports as is:
--
--   local shared = require("sluice.shared")
--   local dict = shared.my_zone                 -- or shared.get_zone("my-zone"); nil if none
--   local ok, err, forcible = dict:set("k", "v", 10)      -- exptime in seconds, 0 = never
--   local v, flags = dict:get("k")
--   local n, err = dict:incr("hits", 1, 0, 60)            -- init 0, ttl 60 s when created
--
-- Keys are strings (numbers are converted) of 1..65535 bytes; values nil (deletes),
-- booleans, numbers and strings. A key or value of another type raises; runtime failures
-- come back as values ("not found", "exists", "no memory", "not a number").
local ffi = require("ffi")
local new_tab = require("table.new")

local C = ffi.C
local ffi_string = ffi.string
local ffi_cast = ffi.cast
local type = type
local tostring = tostring
local error = error
local setmetatable = setmetatable
local rawget = rawget
local rawset = rawset
local pcall = pcall

local MAX_KEY_LEN = 65535
local MAX_FLAGS = 4294967295
local DEFAULT_MAX_KEYS = 1024   -- as ngx.shared.DICT:get_keys

local T_NIL, T_BOOLEAN, T_NUMBER, T_STRING = 0, 1, 3, 4

-- A second load (tests that clear package.loaded) must not redefine the types.
if not pcall(ffi.typeof, "sl_ffi_shm_out_t") then
    ffi.cdef[[
typedef struct {
    double       num;
    const char  *str;
    uint32_t     len;
    uint32_t     flags;
    int          stale;
    int          forcible;
    const char  *err;
} sl_ffi_shm_out_t;

void *sl_ffi_shm_zone(const char *name, size_t len);
int sl_ffi_shm_get(void *zone, const char *key, size_t klen, int stale_ok,
    sl_ffi_shm_out_t *out);
int sl_ffi_shm_set(void *zone, const char *key, size_t klen, int type, double num,
    const char *str, size_t len, double exptime, uint32_t flags, sl_ffi_shm_out_t *out);
int sl_ffi_shm_safe_set(void *zone, const char *key, size_t klen, int type, double num,
    const char *str, size_t len, double exptime, uint32_t flags, sl_ffi_shm_out_t *out);
int sl_ffi_shm_add(void *zone, const char *key, size_t klen, int type, double num,
    const char *str, size_t len, double exptime, uint32_t flags, sl_ffi_shm_out_t *out);
int sl_ffi_shm_replace(void *zone, const char *key, size_t klen, int type, double num,
    const char *str, size_t len, double exptime, uint32_t flags, sl_ffi_shm_out_t *out);
int sl_ffi_shm_incr(void *zone, const char *key, size_t klen, double n, double init,
    int has_init, double init_ttl, sl_ffi_shm_out_t *out);
int sl_ffi_shm_delete(void *zone, const char *key, size_t klen, sl_ffi_shm_out_t *out);
int sl_ffi_shm_expire(void *zone, const char *key, size_t klen, double ttl,
    sl_ffi_shm_out_t *out);
int sl_ffi_shm_ttl(void *zone, const char *key, size_t klen, sl_ffi_shm_out_t *out);
int sl_ffi_shm_keys(void *zone, int max, sl_ffi_shm_out_t *out);
int sl_ffi_shm_flush_all(void *zone, sl_ffi_shm_out_t *out);
int sl_ffi_shm_flush_expired(void *zone, int max, sl_ffi_shm_out_t *out);
double sl_ffi_shm_free_space(void *zone);
double sl_ffi_shm_capacity(void *zone);
]]
end

-- One result struct for every call: the calls never yield, so nothing else can use it
-- between a call and the reads of its results.
local out = ffi.new("sl_ffi_shm_out_t")

-- Under plain luajit (pure-Lua unit tests) the C side is absent: every zone is then nil.
local in_host = pcall(function() return C.sl_ffi_shm_zone end)

local _M = {}

local dict = {}
local dict_mt = { __index = dict }


local function zone_of(self)
    local zone = type(self) == "table" and self.zone
    if not zone then
        error("bad \"zone\" argument: call methods with a colon", 3)
    end

    return zone
end


-- Returns key, len or nil, err; raises on a key that is neither string nor number.
local function check_key(key)
    local kt = type(key)
    if kt ~= "string" then
        if kt ~= "number" then
            error("bad key type: string expected, got " .. kt, 3)
        end

        key = tostring(key)
    end

    local len = #key
    if len == 0 then
        return nil, "empty key"
    end

    if len > MAX_KEY_LEN then
        return nil, "key too long"
    end

    return key, len
end


local function check_exptime(exptime, what)
    if exptime == nil then
        return 0
    end

    if type(exptime) ~= "number" or not (exptime >= 0) then  -- luacheck: ignore 581 (NaN)
        error("bad \"" .. what .. "\" argument: non-negative number expected", 3)
    end

    return exptime
end


local function check_flags(flags)
    if flags == nil then
        return 0
    end

    if type(flags) ~= "number" or not (flags >= 0 and flags <= MAX_FLAGS) or flags % 1 ~= 0 then
        error("bad \"flags\" argument: integer 0..4294967295 expected", 3)
    end

    return flags
end


-- Returns type, num, str, len for the C side.
local function value_args(value)
    local vt = type(value)
    if vt == "string" then
        return T_STRING, 0, value, #value
    end

    if vt == "number" then
        return T_NUMBER, value, nil, 0
    end

    if vt == "boolean" then
        return T_BOOLEAN, value and 1 or 0, nil, 0
    end

    if vt == "nil" then
        return T_NIL, 0, nil, 0
    end

    error("bad value type: nil, boolean, number or string expected, got " .. vt, 3)
end


local function store_result(rc)
    if rc == 0 then
        return true, nil, out.forcible ~= 0
    end

    return false, ffi_string(out.err), out.forcible ~= 0
end


-- The value just fetched into out, or nil for an unknown type code.
local function fetched_value(t)
    if t == T_STRING then
        return ffi_string(out.str, out.len)
    end

    if t == T_NUMBER then
        return out.num
    end

    if t == T_BOOLEAN then
        return out.num ~= 0
    end

    return nil
end


-- dict:get(key) -> value, flags (flags only when not 0) | nil (missing) | nil, err
function dict.get(self, key)
    local zone = zone_of(self)
    local k, len = check_key(key)
    if not k then
        return nil, len
    end

    local t = C.sl_ffi_shm_get(zone, k, len, 0, out)
    if t <= 0 then
        if t < 0 then
            return nil, ffi_string(out.err)
        end

        return nil
    end

    local value = fetched_value(t)
    local flags = out.flags
    if flags ~= 0 then
        return value, flags
    end

    return value
end


-- dict:get_stale(key) -> value, flags (or nil), stale; expired items not yet reclaimed too.
function dict.get_stale(self, key)
    local zone = zone_of(self)
    local k, len = check_key(key)
    if not k then
        return nil, len
    end

    local t = C.sl_ffi_shm_get(zone, k, len, 1, out)
    if t <= 0 then
        if t < 0 then
            return nil, ffi_string(out.err)
        end

        return nil
    end

    local value = fetched_value(t)
    local flags = out.flags
    return value, flags ~= 0 and flags or nil, out.stale ~= 0
end


-- dict:set(key, value, exptime, flags) -> ok, err, forcible. A nil value deletes.
function dict.set(self, key, value, exptime, flags)
    local zone = zone_of(self)
    local k, len = check_key(key)
    if not k then
        return false, len, false
    end

    local t, num, str, slen = value_args(value)
    return store_result(C.sl_ffi_shm_set(zone, k, len, t, num, str, slen,
                                         check_exptime(exptime, "exptime"), check_flags(flags),
                                         out))
end


-- dict:safe_set(...) -> like set, but "no memory" rather than evicting live items.
function dict.safe_set(self, key, value, exptime, flags)
    local zone = zone_of(self)
    local k, len = check_key(key)
    if not k then
        return false, len, false
    end

    local t, num, str, slen = value_args(value)
    return store_result(C.sl_ffi_shm_safe_set(zone, k, len, t, num, str, slen,
                                              check_exptime(exptime, "exptime"),
                                              check_flags(flags), out))
end


-- dict:add(...) -> like set, but false, "exists" when the key is live.
function dict.add(self, key, value, exptime, flags)
    local zone = zone_of(self)
    local k, len = check_key(key)
    if not k then
        return false, len, false
    end

    local t, num, str, slen = value_args(value)
    return store_result(C.sl_ffi_shm_add(zone, k, len, t, num, str, slen,
                                         check_exptime(exptime, "exptime"), check_flags(flags),
                                         out))
end


-- dict:replace(...) -> like set, but false, "not found" unless the key is live.
function dict.replace(self, key, value, exptime, flags)
    local zone = zone_of(self)
    local k, len = check_key(key)
    if not k then
        return false, len, false
    end

    local t, num, str, slen = value_args(value)
    return store_result(C.sl_ffi_shm_replace(zone, k, len, t, num, str, slen,
                                             check_exptime(exptime, "exptime"),
                                             check_flags(flags), out))
end


-- dict:incr(key, n, init, init_ttl) -> new value, nil, forcible | nil, err.
-- Without init a missing key is "not found"; with it the key starts at init + n and
-- init_ttl seconds to live. A live non-number is "not a number".
function dict.incr(self, key, n, init, init_ttl)
    local zone = zone_of(self)
    local k, len = check_key(key)
    if not k then
        return nil, len
    end

    if type(n) ~= "number" then
        error("bad \"value\" argument: number expected", 2)
    end

    local has_init, init_n = 0, 0
    if init ~= nil then
        if type(init) ~= "number" then
            error("bad \"init\" argument: number expected", 2)
        end

        has_init, init_n = 1, init

    elseif init_ttl ~= nil then
        error("must provide \"init\" when \"init_ttl\" is specified", 2)
    end

    local rc = C.sl_ffi_shm_incr(zone, k, len, n, init_n, has_init,
                                 check_exptime(init_ttl, "init_ttl"), out)
    if rc ~= 0 then
        return nil, ffi_string(out.err)
    end

    return out.num, nil, out.forcible ~= 0
end


-- dict:delete(key) -> true (whether or not the key existed)
function dict.delete(self, key)
    local zone = zone_of(self)
    local k, len = check_key(key)
    if not k then
        return false, len
    end

    if C.sl_ffi_shm_delete(zone, k, len, out) ~= 0 then
        return false, ffi_string(out.err)
    end

    return true
end


-- dict:expire(key, ttl) -> true | false, "not found". ttl 0 makes the item never expire.
function dict.expire(self, key, ttl)
    local zone = zone_of(self)
    local k, len = check_key(key)
    if not k then
        return false, len
    end

    if ttl == nil then
        error("bad \"exptime\" argument: non-negative number expected", 2)
    end

    if C.sl_ffi_shm_expire(zone, k, len, check_exptime(ttl, "exptime"), out) ~= 0 then
        return false, ffi_string(out.err)
    end

    return true
end


-- dict:ttl(key) -> seconds left (0: never expires) | nil, "not found"
function dict.ttl(self, key)
    local zone = zone_of(self)
    local k, len = check_key(key)
    if not k then
        return nil, len
    end

    if C.sl_ffi_shm_ttl(zone, k, len, out) ~= 0 then
        return nil, ffi_string(out.err)
    end

    return out.num
end


-- dict:keys(max) -> array of live keys, most recently used first; max defaults to 1024,
-- 0 means all. Also available as dict:get_keys(max), ngx.shared's name.
function dict.keys(self, max)
    local zone = zone_of(self)
    if max == nil then
        max = DEFAULT_MAX_KEYS

    elseif type(max) ~= "number" or not (max >= 0) then  -- luacheck: ignore 581 (NaN)
        error("bad \"max\" argument: non-negative number expected", 2)
    end

    local n = C.sl_ffi_shm_keys(zone, max, out)
    if n < 0 then
        return nil, ffi_string(out.err)
    end

    local keys = new_tab(n, 0)
    local p = ffi_cast("const uint8_t *", out.str)
    local pos = 0
    for i = 1, n do
        local len = p[pos] + p[pos + 1] * 256
        keys[i] = ffi_string(p + pos + 2, len)
        pos = pos + 2 + len
    end

    return keys
end

dict.get_keys = dict.keys


-- dict:flush_all() drops every item.
function dict.flush_all(self)
    local zone = zone_of(self)
    if C.sl_ffi_shm_flush_all(zone, out) ~= 0 then
        return nil, ffi_string(out.err)
    end
end


-- dict:flush_expired(max) -> number of expired items freed (max 0 or nil: all)
function dict.flush_expired(self, max)
    local zone = zone_of(self)
    local n = C.sl_ffi_shm_flush_expired(zone, max or 0, out)
    if n < 0 then
        return nil, ffi_string(out.err)
    end

    return n
end


-- dict:free_space() -> bytes free in the zone
function dict.free_space(self)
    return C.sl_ffi_shm_free_space(zone_of(self))
end


-- dict:capacity() -> the zone's size in bytes
function dict.capacity(self)
    return C.sl_ffi_shm_capacity(zone_of(self))
end


-- shared.get_zone(name) -> the zone's dictionary object, or nil if no such zone (or when
-- running outside the sluice binary)
function _M.get_zone(name)
    if type(name) ~= "string" then
        error("bad zone name: string expected, got " .. type(name), 2)
    end

    if not in_host then
        return nil
    end

    local d = rawget(_M, name)
    if d ~= nil and type(d) == "table" and d.zone then
        return d
    end

    local zone = C.sl_ffi_shm_zone(name, #name)
    if zone == nil then
        return nil
    end

    d = setmetatable({ zone = zone, name = name }, dict_mt)
    if rawget(_M, name) == nil then
        rawset(_M, name, d)             -- later shared.<name> lookups are plain field reads
    end

    return d
end


-- shared.<zone_name>: lazily looked up; nil for an unknown zone.
setmetatable(_M, {
    __index = function(_, name)
        if type(name) ~= "string" then
            return nil
        end

        return _M.get_zone(name)
    end,
})


return _M
