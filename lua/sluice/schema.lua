-- schema.lua -- JSON-schema validator for plugin and Admin API input.
--
-- Behaves like the api7 `jsonschema` library APISIX uses, so error messages match what APISIX
-- users see ("property \"provider\" validation failed: matches none of the enum values"), and
-- like it fills `default` values into the checked value in place. A schema is compiled once
-- into a tree of closures and cached weakly by its table; changing a schema table after its
-- first use needs schema.invalidate(schema).
--
-- Keywords: type (incl. unions; also "table" and "function"), properties, required, default,
-- additionalProperties, patternProperties, dependencies, min/maxProperties, propertyNames
-- (boolean), items (list and tuple), additionalItems, minItems, maxItems, uniqueItems,
-- contains, minLength, maxLength (UTF-8 characters), pattern, format, minimum, maximum,
-- exclusiveMinimum, exclusiveMaximum, multipleOf, enum, const, allOf, anyOf, oneOf, not,
-- if/then/else, boolean schemas. Not supported: $ref (no bundled schema uses it).
--
-- Like jsonschema, an empty Lua table passes both "object" and "array", property order of
-- checks is fixed (sorted names) so messages are stable, and defaults are filled even in
-- branches of anyOf/oneOf that end up not matching.
--
-- Patterns are PCRE (as in APISIX, where ngx.re.find does the matching). The matcher can be
-- replaced with schema.set_re_find(fn(subject, pattern) -> bool); the default calls
-- libpcre2-8 through the FFI and caches compiled patterns.
local ffi   = require("ffi")
local cjson = require("cjson.safe")

local type         = type
local pairs        = pairs
local ipairs       = ipairs
local next         = next
local tostring     = tostring
local setmetatable = setmetatable
local getmetatable = getmetatable
local pcall        = pcall
local error        = error
local str_byte     = string.byte
local str_format   = string.format
local tab_concat   = table.concat
local tab_sort     = table.sort
local math_floor   = math.floor
local math_abs     = math.abs
local json_null    = cjson.null

local PCRE2_CACHE_MAX    = 1024
local PCRE2_JIT_COMPLETE = 1
local AF_INET, AF_INET6 = 2, 10

-- Regular expressions of the `format` keyword (same as jsonschema); ipv4/ipv6 use inet_pton.
local FORMAT_PATTERNS = {
    email = [[^([A-Za-z0-9_\-\.])+\@([A-Za-z0-9_\-\.])+\.([A-Za-z]{2,4})$]],
    hostname = [[^[a-zA-Z0-9\-\.]+$]],
    uuid = [[^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$]],
    date = [[^\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])$]],
    ["date-time"] = [[^\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])[Tt](?:[01]\d|2[0-3])]]
                    .. [[:[0-5]\d:[0-5]\d(?:\.\d+)?(?:[Zz]|[+-](?:[01]\d|2[0-3]):[0-5]\d)$]],
    uri = [[^[a-zA-Z][a-zA-Z0-9+\-.]*:[^\s]*$]],
}

local _M = {
    TYPE_CONSUMER = 1,      -- schema_type passed to plugin.check_schema, as in APISIX
    TYPE_METADATA = 2,
}

local compiled = setmetatable({}, { __mode = "k" })
local re_find


-- FFI declarations may already exist when the C host or another module declared them first;
-- each goes in its own pcall so one redefinition does not hide the others.
local function cdef(decl)
    pcall(ffi.cdef, decl)
end


local function load_lib(symbol, names)
    if pcall(function() return ffi.C[symbol] end) then
        return ffi.C
    end

    local last_err
    for _, name in ipairs(names) do
        local ok, lib = pcall(ffi.load, name)
        if ok then
            return lib
        end

        last_err = lib
    end

    return nil, last_err
end


cdef("typedef struct pcre2_real_code_8 pcre2_code_8;")
cdef("typedef struct pcre2_real_match_data_8 pcre2_match_data_8;")
cdef([[pcre2_code_8 *pcre2_compile_8(const unsigned char *pattern, size_t length,
    uint32_t options, int *errorcode, size_t *erroroffset, void *ccontext);]])
cdef("void pcre2_code_free_8(pcre2_code_8 *code);")
cdef("int pcre2_jit_compile_8(pcre2_code_8 *code, uint32_t options);")
cdef([[pcre2_match_data_8 *pcre2_match_data_create_from_pattern_8(const pcre2_code_8 *code,
    void *gcontext);]])
cdef("void pcre2_match_data_free_8(pcre2_match_data_8 *match_data);")
cdef([[int pcre2_match_8(const pcre2_code_8 *code, const unsigned char *subject, size_t length,
    size_t startoffset, uint32_t options, pcre2_match_data_8 *match_data, void *mcontext);]])
cdef("int inet_pton(int af, const char *src, void *dst);")

local pcre2
local pcre2_err
local pcre2_cache = {}      -- pattern -> {code, match_data} or false (does not compile)
local pcre2_cached = 0


local function pcre2_lib()
    if pcre2 == nil then
        pcre2, pcre2_err = load_lib("pcre2_compile_8",
                                    { "pcre2-8", "libpcre2-8.so.0" })
        pcre2 = pcre2 or false
    end

    return pcre2
end


local function pcre2_free(entry)
    pcre2.pcre2_match_data_free_8(entry[2])
    pcre2.pcre2_code_free_8(entry[1])
end


local function pcre2_compile(pattern)
    local lib = pcre2_lib()
    if not lib then
        error("schema: libpcre2-8 is not available: " .. tostring(pcre2_err))
    end

    local entry = pcre2_cache[pattern]
    if entry ~= nil then
        return entry
    end

    if pcre2_cached >= PCRE2_CACHE_MAX then
        -- Patterns come from schemas, so this only happens with unusual churn; start over
        -- rather than keep an LRU for a cold path.
        for _, e in pairs(pcre2_cache) do
            if e then
                pcre2_free(e)
            end
        end

        pcre2_cache, pcre2_cached = {}, 0
    end

    local errcode = ffi.new("int[1]")
    local erroffset = ffi.new("size_t[1]")
    local code = lib.pcre2_compile_8(pattern, #pattern, 0, errcode, erroffset, nil)
    if code == nil then
        pcre2_cache[pattern] = false
        return false
    end

    lib.pcre2_jit_compile_8(code, PCRE2_JIT_COMPLETE)     -- best effort; interpreter otherwise
    local md = lib.pcre2_match_data_create_from_pattern_8(code, nil)
    entry = { code, md }
    pcre2_cache[pattern] = entry
    pcre2_cached = pcre2_cached + 1
    return entry
end


-- Default matcher: true when `pattern` matches somewhere in `subject` (ngx.re.find semantics,
-- no UTF mode). A pattern that does not compile never matches.
local function pcre2_find(subject, pattern)
    local entry = pcre2_compile(pattern)
    if not entry then
        return false
    end

    local rc = pcre2.pcre2_match_8(entry[1], subject, #subject, 0, 0, entry[2], nil)
    return rc >= 0
end
_M.pcre2_find = pcre2_find
re_find = pcre2_find


function _M.set_re_find(fn)
    if fn ~= nil and type(fn) ~= "function" then
        error("set_re_find: function expected")
    end

    re_find = fn or pcre2_find
end


function _M.re_find(subject, pattern)
    return re_find(subject, pattern)
end


local inet_buf = ffi.new("unsigned char[16]")

local function valid_ip(family, s)
    return ffi.C.inet_pton(family, s, inet_buf) == 1
end


local function tablekind(t)
    -- 0: object, 1: empty (object or array), 2: array; as jsonschema's lib.tablekind
    local len = #t
    if len == 0 then
        return next(t) == nil and 1 or 0        -- no array part: keys only, or nothing
    end

    local n = 0
    for _ in next, t do
        n = n + 1
    end

    return n == len and 2 or 0
end


local function deepeq(a, b)
    if type(a) ~= type(b) then
        return false
    end

    if type(a) ~= "table" then
        return a == b
    end

    for k, v in pairs(a) do
        local w = b[k]
        if w == nil or not deepeq(v, w) then
            return false
        end
    end

    for k in pairs(b) do
        if a[k] == nil then
            return false
        end
    end

    return true
end
_M.deepeq = deepeq


local function deepcopy(v)
    if type(v) ~= "table" then
        return v
    end

    local t = {}
    for k, x in pairs(v) do
        t[k] = deepcopy(x)
    end

    return setmetatable(t, getmetatable(v))
end
_M.deepcopy = deepcopy


-- Number of UTF-8 characters; invalid sequences count one per byte, as jsonschema does.
local function utf8_len(s)
    local i, n, c = 1, #s, 0
    while i <= n do
        local b = str_byte(s, i)
        local extra = 0
        if b >= 0xC2 and b <= 0xDF then
            extra = 1

        elseif b >= 0xE0 and b <= 0xEF then
            extra = 2

        elseif b >= 0xF0 and b <= 0xF4 then
            extra = 3
        end

        if i + extra > n then
            extra = 0
        end

        for j = 1, extra do
            local x = str_byte(s, i + j)
            if x < 0x80 or x > 0xBF then
                extra = 0
                break
            end
        end

        i = i + extra + 1
        c = c + 1
    end

    return c
end
_M.utf8_len = utf8_len


local function quote(s)
    s = str_format("%q", tostring(s))
    return (s:gsub("\\\n", "\\n"))
end


-- Inside anyOf/oneOf/not/if a branch's error message is thrown away, so while `quiet` > 0
-- the costly messages (quoted names and values, nested prefixes) are not built.
local quiet = 0
local QUIET = "failed"
local wrapped = setmetatable({}, { __mode = "k" })     -- validator -> _M.validator()'s wrapper


local function try(validate, v)
    quiet = quiet + 1
    local ok = validate(v)
    quiet = quiet - 1
    return ok
end


local function unique_items(arr)
    local seen, tabs = {}, {}
    for i, v in ipairs(arr) do
        if type(v) == "table" then
            tabs[#tabs + 1] = i

        else
            if seen[v] then
                return false, seen[v], i
            end

            seen[v] = i
        end
    end

    for x = 1, #tabs - 1 do
        for y = x + 1, #tabs do
            if deepeq(arr[tabs[x]], arr[tabs[y]]) then
                return false, tabs[x], tabs[y]
            end
        end
    end

    return true
end


local function sorted_keys(t)
    local keys = {}
    for k in pairs(t) do
        keys[#keys + 1] = k
    end

    tab_sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    return keys
end


local TYPE_TESTS = {
    object = function(_, vt, kind) return vt == "table" and kind <= 1 end,
    array = function(_, vt, kind) return vt == "table" and kind >= 1 end,
    table = function(_, vt) return vt == "table" end,
    integer = function(v, vt) return vt == "number" and v % 1 == 0 end,
    number = function(_, vt) return vt == "number" end,
    string = function(_, vt) return vt == "string" end,
    boolean = function(_, vt) return vt == "boolean" end,
    null = function(v) return v == json_null end,
    ["function"] = function(_, vt) return vt == "function" end,
}


local compile


-- Each compiled schema is a list of checks run in jsonschema's order; a check gets the value,
-- its Lua type and a lazy table-kind getter, and returns nil when fine or an error string.
local function build(schema)
    if schema == true then
        return function() return true end
    end

    if schema == false then
        return function() return false, "expect false always" end
    end

    if type(schema) ~= "table" then
        error("invalid schema: table expected, got " .. type(schema))
    end

    local checks = {}
    local function add(fn)
        checks[#checks + 1] = fn
    end

    -- type
    local st = schema.type
    if type(st) == "string" then
        local test = TYPE_TESTS[st]
        if not test then
            error("invalid JSON type: " .. st)
        end

        local msg = "wrong type: expected " .. st .. ", got "
        add(function(v, vt, kind)
            if not test(v, vt, kind) then
                return msg .. vt
            end
        end)

    elseif type(st) == "table" then
        local tests = {}
        for i, t in ipairs(st) do
            tests[i] = TYPE_TESTS[t] or error("invalid JSON type: " .. tostring(t))
        end

        local msg = "wrong type: expected one of " .. tab_concat(st, ", ") .. ", got "
        add(function(v, vt, kind)
            for _, test in ipairs(tests) do
                if test(v, vt, kind) then
                    return
                end
            end

            return msg .. vt
        end)

    elseif st ~= nil then
        error('invalid "type" type: got ' .. type(st))
    end

    -- object keywords
    if schema.properties or schema.additionalProperties ~= nil or schema.patternProperties
       or schema.minProperties or schema.maxProperties or schema.dependencies
       or schema.required
    then
        local properties = schema.properties or {}
        local dependencies = schema.dependencies or {}
        local required = {}
        for _, k in ipairs(schema.required or {}) do
            required[k] = true
        end

        local props = {}
        for _, name in ipairs(sorted_keys(properties)) do
            local sub = properties[name]
            local p = { name = name, validate = compile(sub), required = required[name],
                        failed = "property " .. quote(name) .. " validation failed: " }
            if type(sub) == "table" and sub.default ~= nil then
                local dt = type(sub.default)
                if dt == "number" or dt == "string" or dt == "boolean" or dt == "table" then
                    p.default = sub.default
                end
            end

            local dep = dependencies[name]
            if type(dep) == "table" and #dep > 0 then
                p.dep_props = dep

            elseif dep ~= nil then
                p.dep_validate = compile(dep)
            end

            props[#props + 1] = p
        end

        local rest_required = {}
        for _, k in ipairs(schema.required or {}) do
            if properties[k] == nil then
                rest_required[#rest_required + 1] = k
            end
        end

        local rest_deps = {}
        for _, name in ipairs(sorted_keys(dependencies)) do
            if properties[name] == nil then
                local dep = dependencies[name]
                if type(dep) == "table" and #dep > 0 then
                    rest_deps[#rest_deps + 1] = { name = name, props = dep }

                else
                    rest_deps[#rest_deps + 1] = { name = name, validate = compile(dep) }
                end
            end
        end

        local ap = schema.additionalProperties
        local propset, ap_validate
        if ap ~= nil and ap ~= true then
            propset = {}
            for name in pairs(properties) do
                propset[name] = true
            end

            if type(ap) == "table" then
                ap_validate = compile(ap)
            end
        end

        local patterns
        if schema.patternProperties then
            patterns = {}
            for _, patt in ipairs(sorted_keys(schema.patternProperties)) do
                patterns[#patterns + 1] = {
                    pattern = patt,
                    validate = compile(schema.patternProperties[patt]),
                    failed = " (matching " .. quote(patt) .. "): ",
                }
            end
        end

        local min_props, max_props = schema.minProperties, schema.maxProperties

        add(function(v, vt, kind)
            if vt ~= "table" or kind > 1 then
                return
            end

            for _, p in ipairs(props) do
                local pv = v[p.name]
                if pv ~= nil then
                    local ok, err = p.validate(pv)
                    if not ok then
                        return quiet > 0 and QUIET or p.failed .. err
                    end

                    if p.dep_props then
                        for _, d in ipairs(p.dep_props) do
                            if v[d] == nil then
                                return "property " .. quote(d) .. " is required when "
                                       .. quote(p.name) .. " is set"
                            end
                        end

                    elseif p.dep_validate then
                        ok, err = p.dep_validate(v)
                        if not ok then
                            return "failed to validate dependent schema for "
                                   .. quote(p.name) .. ": " .. err
                        end
                    end

                elseif p.required then
                    return quiet > 0 and QUIET or "property " .. quote(p.name) .. " is required"

                elseif p.default ~= nil then
                    v[p.name] = deepcopy(p.default)
                end
            end

            for _, name in ipairs(rest_required) do
                if v[name] == nil then
                    return quiet > 0 and QUIET or "property " .. quote(name) .. " is required"
                end
            end

            for _, d in ipairs(rest_deps) do
                if v[d.name] ~= nil then
                    if d.props then
                        for _, dp in ipairs(d.props) do
                            if v[dp] == nil then
                                return "property " .. quote(dp) .. " is required when "
                                       .. quote(d.name) .. " is set"
                            end
                        end

                    else
                        local ok, err = d.validate(v)
                        if not ok then
                            return "failed to validate dependent schema for "
                                   .. quote(d.name) .. ": " .. err
                        end
                    end
                end
            end

            if patterns or propset or min_props or max_props then
                local count = 0
                for prop, value in pairs(v) do
                    count = count + 1
                    local matched = false
                    if patterns and type(prop) == "string" then
                        for _, pp in ipairs(patterns) do
                            if re_find(prop, pp.pattern) then
                                local ok, err = pp.validate(value)
                                if not ok then
                                    return "failed to validate " .. prop .. pp.failed .. err
                                end

                                matched = true
                            end
                        end
                    end

                    if propset and not (propset[prop] or matched) then
                        if not ap_validate then
                            return "additional properties forbidden, found " .. tostring(prop)
                        end

                        local ok, err = ap_validate(value)
                        if not ok then
                            return "failed to validate additional property " .. tostring(prop)
                                   .. ": " .. err
                        end
                    end
                end

                if min_props and count < min_props then
                    return "expect object to have at least " .. min_props .. " properties"
                end

                if max_props and count > max_props then
                    return "expect object to have at most " .. max_props .. " properties"
                end
            end
        end)
    end

    if schema.propertyNames == false then
        add(function(_, vt, kind)
            if not (vt == "table" and kind == 1) then
                return "expect false always"
            end
        end)
    end

    -- array keywords
    local items = schema.items
    if items ~= nil or schema.minItems or schema.maxItems or schema.uniqueItems then
        local min_items, max_items, unique = schema.minItems, schema.maxItems, schema.uniqueItems
        local tuple, list_validate, extra_validate, no_extra
        if type(items) == "table" and #items > 0 then
            tuple = {}
            for i, s in ipairs(items) do
                tuple[i] = compile(s)
            end

            if schema.additionalItems == false then
                no_extra = true

            elseif type(schema.additionalItems) == "table" then
                extra_validate = compile(schema.additionalItems)
            end

        elseif items == false then
            list_validate = function() return false, "expect false always" end

        elseif items ~= nil and items ~= true then
            list_validate = compile(items)
        end

        add(function(v, vt, kind)
            if vt ~= "table" or kind < 1 then
                return
            end

            local count = #v
            if min_items and count < min_items then
                return "expect array to have at least " .. min_items .. " items"
            end

            if max_items and count > max_items then
                return "expect array to have at most " .. max_items .. " items"
            end

            if tuple then
                for i, validate in ipairs(tuple) do
                    local item = v[i]
                    if item == nil then
                        break
                    end

                    local ok, err = validate(item)
                    if not ok then
                        return "failed to validate item " .. i .. ": " .. err
                    end
                end

                if no_extra and v[#tuple + 1] ~= nil then
                    return "found unexpected extra items in array"
                end

                if extra_validate then
                    for i = #tuple + 1, count do
                        local ok, err = extra_validate(v[i])
                        if not ok then
                            return "failed to validate additional item " .. i .. ": " .. err
                        end
                    end
                end

            elseif list_validate then
                for i, item in ipairs(v) do
                    local ok, err = list_validate(item)
                    if not ok then
                        return "failed to validate item " .. i .. ": " .. err
                    end
                end
            end

            if unique then
                local ok, a, b = unique_items(v)
                if not ok then
                    return "expected unique items but items " .. a .. " and " .. b
                           .. " are equal"
                end
            end
        end)
    end

    -- string keywords
    local min_len, max_len, pattern = schema.minLength, schema.maxLength, schema.pattern
    if min_len or max_len or pattern then
        local pattern_failed = pattern and ("failed to match pattern " .. quote(pattern)
                                            .. " with ")
        add(function(v, vt)
            if vt ~= "string" then
                return
            end

            if min_len or max_len then
                local c = utf8_len(v)
                if min_len and c < min_len then
                    return "string too short, expected at least " .. min_len .. ", got " .. c
                end

                if max_len and c > max_len then
                    return "string too long, expected at most " .. max_len .. ", got " .. c
                end
            end

            if pattern and not re_find(v, pattern) then
                return quiet > 0 and QUIET or pattern_failed .. quote(v)
            end
        end)
    end

    -- number keywords
    local minimum, maximum = schema.minimum, schema.maximum
    local xmin, xmax, mof = schema.exclusiveMinimum, schema.exclusiveMaximum, schema.multipleOf
    if minimum or maximum or xmin or xmax or mof then
        add(function(v, vt)
            if vt ~= "number" then
                return
            end

            if minimum and v < minimum then
                return "expected " .. tostring(v) .. " to be at least " .. tostring(minimum)
            end

            if xmin and v <= xmin then
                return "expected " .. tostring(v) .. " to be greater than " .. tostring(xmin)
            end

            if maximum and v > maximum then
                return "expected " .. tostring(v) .. " to be at most " .. tostring(maximum)
            end

            if xmax and v >= xmax then
                return "expected " .. tostring(v) .. " to be smaller than " .. tostring(xmax)
            end

            if mof then
                local bad
                if math_floor(mof) == mof then
                    bad = v % mof ~= 0

                else
                    -- relative tolerance: 1.13 / 0.01 is 112.99999999999999
                    local q = v / mof
                    local r = math_floor(q + 0.5)
                    bad = math_abs(q - r) > 1e-12 * (r == 0 and 1 or math_abs(r))
                end

                if bad then
                    return "expected " .. tostring(v) .. " to be a multiple of " .. tostring(mof)
                end
            end
        end)
    end

    if schema.enum then
        local enum = schema.enum
        add(function(v)
            for _, e in ipairs(enum) do
                if e == v or (type(e) == "table" and deepeq(e, v)) then
                    return
                end
            end

            return "matches none of the enum values"
        end)
    end

    if schema.allOf then
        local subs = {}
        for i, s in ipairs(schema.allOf) do
            subs[i] = compile(s)
        end

        add(function(v)
            for i, validate in ipairs(subs) do
                local ok, err = validate(v)
                if not ok then
                    return "allOf " .. i .. " failed: " .. err
                end
            end
        end)
    end

    if schema.anyOf then
        local subs, requires = {}, {}
        for i, s in ipairs(schema.anyOf) do
            subs[i] = compile(s)
            if type(s) == "table" and s.required then
                local str = cjson.encode(s.required)
                if str then
                    requires[#requires + 1] = str
                end
            end
        end

        local msg = "object matches none of the required"
        if #requires > 0 then
            msg = msg .. ": " .. tab_concat(requires, " or ")
        end

        add(function(v)
            for _, validate in ipairs(subs) do
                if try(validate, v) then
                    return
                end
            end

            return msg
        end)
    end

    if schema.oneOf then
        local subs = {}
        for i, s in ipairs(schema.oneOf) do
            subs[i] = compile(s)
        end

        add(function(v)
            local matched
            for i, validate in ipairs(subs) do
                if try(validate, v) then
                    if matched then
                        return "value should match only one schema, but matches both schemas "
                               .. matched .. " and " .. i
                    end

                    matched = i
                end
            end

            if not matched then
                return "value should match only one schema, but matches none"
            end
        end)
    end

    if schema["if"] ~= nil then
        local cond = compile(schema["if"])
        local then_v = schema["then"] ~= nil and compile(schema["then"])
        local else_v = schema["else"] ~= nil and compile(schema["else"])
        add(function(v)
            if try(cond, v) then
                if then_v and not try(then_v, v) then
                    return "then clause did not match"
                end

            elseif else_v and not try(else_v, v) then
                return "else clause did not match"
            end
        end)
    end

    if schema["not"] ~= nil then
        local sub = compile(schema["not"])
        add(function(v)
            if try(sub, v) then
                return "value wasn't supposed to match schema"
            end
        end)
    end

    local format = schema.format
    if format == "ipv4" or format == "ipv6" then
        local family = format == "ipv4" and AF_INET or AF_INET6
        local msg = "expect valid " .. format .. " format but got: "
        add(function(v, vt)
            if vt == "string" and not valid_ip(family, v) then
                return msg .. v
            end
        end)

    elseif format and FORMAT_PATTERNS[format] then
        local patt = FORMAT_PATTERNS[format]
        local msg = "expect valid " .. format .. " format but got: "
        add(function(v, vt)
            if vt == "string" and not re_find(v, patt) then
                return msg .. v
            end
        end)
    end

    if schema.const ~= nil then
        local const = schema.const
        add(function(v)
            if not deepeq(v, const) then
                return "failed to check const value"
            end
        end)
    end

    if schema.contains ~= nil then
        local contains = schema.contains
        if contains == true then
            add(function(_, vt, kind)
                if not (vt == "table" and kind == 2) then
                    return "check contains: expect array table"
                end
            end)

        elseif contains == false then
            add(function(_, vt)
                if vt == "table" then
                    return "check contains: expect table"
                end
            end)

        else
            local sub = compile(contains)
            add(function(v, vt, kind)
                if vt ~= "table" then
                    return
                end

                if kind == 1 then
                    return "check contains: empty array is invalid"
                end

                for _, item in ipairs(v) do
                    if sub(item) then
                        return
                    end
                end

                if #v > 0 then
                    return "failed to check contains"
                end
            end)
        end
    end

    local n = #checks
    return function(v)
        local vt = type(v)
        local kind = vt == "table" and tablekind(v) or nil
        for i = 1, n do
            local err = checks[i](v, vt, kind)
            if err then
                return false, err
            end
        end

        return true
    end
end


-- compile() returns the validator of a schema table, building it on first use. A forwarding
-- stub is registered before building so self-referencing schema tables terminate.
compile = function(schema)
    if type(schema) ~= "table" then
        return build(schema)
    end

    local v = compiled[schema]
    if v then
        return v
    end

    local real
    compiled[schema] = function(value)
        return real(value)
    end

    local ok, res = pcall(build, schema)
    if not ok then
        compiled[schema] = nil
        error(res, 0)
    end

    real = res
    compiled[schema] = res
    return res
end


-- schema.check(schema, value) -> true | false, err. Fills defaults into value in place. A
-- malformed schema is reported as err, not raised.
function _M.check(schema, value)
    quiet = 0       -- a validator that raised (a bad re_find) may have left it raised
    local ok, validator = pcall(compile, schema)
    if not ok then
        return false, "invalid schema: " .. tostring(validator)
    end

    return validator(value)
end


-- schema.validator(schema) -> fn(value) -> true | false, err; or nil, err for a bad schema.
function _M.validator(schema)
    local ok, validator = pcall(compile, schema)
    if not ok then
        return nil, tostring(validator)
    end

    -- one wrapper per validator, so the same schema gives the same function
    local w = wrapped[validator]
    if not w then
        w = function(value)
            quiet = 0       -- as in check()
            return validator(value)
        end
        wrapped[validator] = w
    end

    return w
end


-- Forget the compiled form of a schema table that was changed after its first use.
function _M.invalidate(schema)
    compiled[schema] = nil
end


return _M
