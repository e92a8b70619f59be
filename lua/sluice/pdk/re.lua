-- pdk.re: PCRE2 regular expressions with JIT, compiled once per (pattern, flags) and
-- cached, in the shape of OpenResty's ngx.re: match, find, gmatch, gsub, sub.
-- Flags: i (caseless), m (multiline), s (dotall), x (extended), u (utf), j and o (always on).
local ffi = require("ffi")

local C = ffi.C
local ffi_string = ffi.string
local byte = string.byte
local sub = string.sub
local type = type

ffi.cdef[[
typedef struct pcre2_real_code_8 pcre2_code_8;
typedef struct pcre2_real_match_data_8 pcre2_match_data_8;
pcre2_code_8 *pcre2_compile_8(const unsigned char *, size_t, uint32_t, int *, size_t *, void *);
int pcre2_jit_compile_8(pcre2_code_8 *, uint32_t);
pcre2_match_data_8 *pcre2_match_data_create_from_pattern_8(const pcre2_code_8 *, void *);
int pcre2_match_8(const pcre2_code_8 *, const unsigned char *, size_t, size_t, uint32_t,
                  pcre2_match_data_8 *, void *);
size_t *pcre2_get_ovector_pointer_8(pcre2_match_data_8 *);
int pcre2_get_error_message_8(int, unsigned char *, size_t);
int pcre2_pattern_info_8(const pcre2_code_8 *, uint32_t, void *);
void pcre2_code_free_8(pcre2_code_8 *);
void pcre2_match_data_free_8(pcre2_match_data_8 *);
]]

local ok_sym = pcall(function() return C.pcre2_compile_8 end)
local lib = ok_sym and C or ffi.load("pcre2-8")

local CASELESS, MULTILINE, DOTALL, EXTENDED, UTF = 0x8, 0x400, 0x20, 0x80, 0x80000
local JIT_COMPLETE = 1
local INFO_NAMECOUNT, INFO_NAMEENTRYSIZE, INFO_NAMETABLE = 17, 18, 19
local CACHE_MAX = 1024

local _M = {}

local cache, cache_n = {}, 0
local errcode = ffi.new("int[1]")
local erroff = ffi.new("size_t[1]")
local u32 = ffi.new("uint32_t[1]")
local ptr = ffi.new("unsigned char *[1]")


local function flags_of(opts)
    local f = 0
    if opts then
        for i = 1, #opts do
            local c = byte(opts, i)
            if c == 105 then f = bit.bor(f, CASELESS)
            elseif c == 109 then f = bit.bor(f, MULTILINE)
            elseif c == 115 then f = bit.bor(f, DOTALL)
            elseif c == 120 then f = bit.bor(f, EXTENDED)
            elseif c == 117 then f = bit.bor(f, UTF)
            end
        end
    end

    return f
end


local function compile(pattern, opts)
    local key = opts and (opts .. "\0" .. pattern) or pattern
    local re = cache[key]
    if re then
        return re
    end

    local code = lib.pcre2_compile_8(pattern, #pattern, flags_of(opts), errcode, erroff, nil)
    if code == nil then
        local buf = ffi.new("unsigned char[256]")
        lib.pcre2_get_error_message_8(errcode[0], buf, 256)
        return nil, "failed to compile regex \"" .. pattern .. "\": " .. ffi_string(buf)
                    .. " at offset " .. tonumber(erroff[0])
    end

    ffi.gc(code, lib.pcre2_code_free_8)
    lib.pcre2_jit_compile_8(code, JIT_COMPLETE)
    local md = ffi.gc(lib.pcre2_match_data_create_from_pattern_8(code, nil),
                      lib.pcre2_match_data_free_8)

    -- named groups: name -> group number
    local names
    lib.pcre2_pattern_info_8(code, INFO_NAMECOUNT, u32)
    local count = u32[0]
    if count > 0 then
        names = {}
        lib.pcre2_pattern_info_8(code, INFO_NAMEENTRYSIZE, u32)
        local size = u32[0]
        lib.pcre2_pattern_info_8(code, INFO_NAMETABLE, ptr)
        local p = ptr[0]
        for i = 0, count - 1 do
            local e = p + i * size
            local n = e[0] * 256 + e[1]
            names[ffi_string(e + 2)] = n
        end
    end

    re = { code = code, md = md, ov = lib.pcre2_get_ovector_pointer_8(md), names = names }
    if cache_n >= CACHE_MAX then
        cache, cache_n = {}, 0
    end

    cache[key] = re
    cache_n = cache_n + 1
    return re
end
_M.compile = compile


-- runs re on subject from init (1-based); returns rc (groups + 1) or nil
local function exec(re, subject, init)
    local rc = lib.pcre2_match_8(re.code, subject, #subject, init - 1, 0, re.md, nil)
    if rc < 0 then
        return nil
    end

    return rc
end


local function captures(re, subject, rc)
    local ov = re.ov
    local m = {}
    for i = 0, rc - 1 do
        local s, e = ov[2 * i], ov[2 * i + 1]
        if s ~= e or s < 1e18 then
            m[i] = sub(subject, tonumber(s) + 1, tonumber(e))
        end
    end

    if re.names then
        for name, n in pairs(re.names) do
            m[name] = m[n]
        end
    end

    return m
end


-- match(subject, regex, opts, ctx) -> captures table ([0] whole match) | nil | nil, err
function _M.match(subject, regex, opts, ctx)
    local re, err = compile(regex, opts)
    if not re then
        return nil, err
    end

    local init = ctx and ctx.pos or 1
    local rc = exec(re, subject, init)
    if not rc then
        return nil
    end

    if ctx then
        ctx.pos = tonumber(re.ov[1]) + 1
    end

    return captures(re, subject, rc)
end


-- find(subject, regex, opts) -> from, to (1-based, inclusive) | nil
function _M.find(subject, regex, opts, ctx)
    local re, err = compile(regex, opts)
    if not re then
        return nil, nil, err
    end

    local rc = exec(re, subject, ctx and ctx.pos or 1)
    if not rc then
        return nil
    end

    local from, to = tonumber(re.ov[0]) + 1, tonumber(re.ov[1])
    if ctx then
        ctx.pos = to + 1
    end

    return from, to
end


function _M.gmatch(subject, regex, opts)
    local re, err = compile(regex, opts)
    if not re then
        return nil, err
    end

    local pos = 1
    return function()
        if pos > #subject + 1 then
            return nil
        end

        local rc = exec(re, subject, pos)
        if not rc then
            pos = #subject + 2
            return nil
        end

        local s, e = tonumber(re.ov[0]), tonumber(re.ov[1])
        pos = e == s and e + 2 or e + 1
        return captures(re, subject, rc)
    end
end


local function expand(repl, m)
    if type(repl) == "function" then
        return tostring(repl(m))
    end

    local function named(g)
        local name = g:sub(2, -2)
        return m[tonumber(name) or name] or ""
    end

    return (repl:gsub("%$(%b{})", named):gsub("%$(%d)", function(d)
        return m[tonumber(d)] or ""
    end))
end


local function replace(subject, regex, repl, opts, global)
    local re, err = compile(regex, opts)
    if not re then
        return nil, nil, err
    end

    local out, n, pos = {}, 0, 1
    while pos <= #subject + 1 do
        local rc = exec(re, subject, pos)
        if not rc then
            break
        end

        local s, e = tonumber(re.ov[0]), tonumber(re.ov[1])
        out[#out + 1] = sub(subject, pos, s)
        out[#out + 1] = expand(repl, captures(re, subject, rc))
        n = n + 1
        if e == s then
            out[#out + 1] = sub(subject, s + 1, s + 1)
            pos = e + 2
        else
            pos = e + 1
        end

        if not global then
            break
        end
    end

    out[#out + 1] = sub(subject, pos)
    return table.concat(out), n
end


function _M.gsub(subject, regex, repl, opts)
    return replace(subject, regex, repl, opts, true)
end


function _M.sub(subject, regex, repl, opts)
    return replace(subject, regex, repl, opts, false)
end


return _M
