-- router.lua: picks the route for a request, with APISIX's radixtree router semantics.
--
-- Three modes, named like APISIX's `apisix.router.http`:
--   radixtree_host_uri (default, as in APISIX): routes with host/hosts are indexed by host
--     first. Exact hosts beat wildcards, longer wildcards beat shorter ones; within a host
--     the uri rules below apply. Routes without a host are tried only when no host route
--     matched.
--   radixtree_uri: one uri index; host/hosts is a filter like methods.
--   radixtree_uri_with_parameter: radixtree_uri plus ":name" path segments.
--
-- Uri rules (lua-resty-radixtree): "/a/b" is exact; a "*" makes the bytes before it a
-- prefix, so "/a/*" matches "/a/" and "/a/x/y" but not "/a", and "/a*" matches "/ab".
-- A "*" that opens a segment and is not last ("/a/*/b", "/login/*action") is a glob whose
-- capture is returned in params. Exact uris (a hash) beat prefixes; prefixes are tried
-- longest first (a hash of prefixes, so lookup costs O(path length), not O(routes)). Routes
-- sharing one key are ordered by priority (higher first), then longer uri, then array
-- order. When a candidate's methods, host, remote_addrs or vars do not match, the next
-- candidate is tried. vars and filter_func are evaluated by sluice.expr, remote_addrs by
-- sluice.ipmatcher.
--
-- The hot path allocates nothing, except the params table of a route with captures, and
-- the first time a Host header is seen, its normalized copy. With 10,000 routes a match
-- costs about what it costs with 10 only if it touches few cache lines, so the tables a
-- match reads (indexes, prefix sets and records, buckets, entries) are small arrays:
-- LuaJIT keeps an array part of up to 15 slots in the same allocation as the table.
local bit = require("bit")
local new_tab = require("table.new")
local clear_tab = require("table.clear")
local expr = require("sluice.expr")
local ipmatcher = require("sluice.ipmatcher")

local byte = string.byte
local sub = string.sub
local find = string.find
local lower = string.lower
local floor = math.floor
local type = type
local tostring = tostring
local next = next
local setmetatable = setmetatable
local band = bit.band
local bor = bit.bor
local tobit = bit.tobit
local bxor = bit.bxor
local rol = bit.rol
local ipairs = ipairs
local pairs = pairs
local sort = table.sort
local compile_vars = expr.compile_vars
local compile_filter_func = expr.compile_filter_func
local eval_rule = expr.eval_rule
local get_var = expr.get_var
local compile_cidrs = ipmatcher.compile_cidrs
local match_cidrs = ipmatcher.match_cidrs

local SLASH = byte("/")
local STAR = byte("*")
local COLON = byte(":")
local LBRACKET = byte("[")

local TOK_LIT, TOK_PARAM, TOK_GLOB = 1, 2, 3

-- The methods APISIX's schema allows, as bits, so a route's methods are one number.
local METHOD_BITS = {
    GET = 0x1, POST = 0x2, PUT = 0x4, DELETE = 0x8, PATCH = 0x10, HEAD = 0x20,
    OPTIONS = 0x40, CONNECT = 0x80, TRACE = 0x100, PURGE = 0x200,
}

local MODES = {
    radixtree_host_uri = { by_host = true, params = false },
    radixtree_uri = { by_host = false, params = false },
    radixtree_uri_with_parameter = { by_host = false, params = true },
}

-- APISIX schema_def host_def: "*" alone, or an optional leading "*" and host characters.
local HOST_PATTERN = "^%*?[%w%-%._%[%]:]+$"

local MAX_URI_LEN = 4096
local HOST_INDEX_MIN = 8        -- bucket size from which the uri modes pre-index by host
local HOST_CACHE_MAX = 1024     -- normalized Host headers remembered

-- Array layouts of what a match reads (see the top of the file for why arrays).
-- Prefix set record: key, #key, value, record of the next shorter key that is a prefix
-- (suffix) of this one or false, next record with the same hash or false.
local R_KEY, R_LEN, R_VALUE, R_UP, R_NEXT = 1, 2, 3, 4, 5
-- Prefix set: hash -> record, fit (see pset_build), longest key length, whether keys are
-- suffixes, the record of the empty key or false.
local P_MAP, P_FIT, P_MAXLEN, P_REVERSED, P_EMPTY = 1, 2, 3, 4, 5
-- Entry, one per (route, uri): the route, its methods bitmask (0 = any), PLAIN when
-- nothing but methods is checked, the uri, host rules (uri modes), path tokens, whether
-- they capture, remote_addrs matchers, compiled vars, the position in its bucket, and
-- the sort and index keys.
local E_ROUTE, E_METHODS, E_PLAIN, E_URI, E_HOSTS, E_TOKS, E_CAPS = 1, 2, 3, 4, 5, 6, 7
local E_REMOTE, E_VARS, E_POS, E_PRIORITY, E_SEQ, E_KEY = 8, 9, 10, 11, 12, 13
-- Uri index: { uri = bucket } for exact uris, a prefix set of buckets (while building a
-- plain { key = entries } table; false when empty), the host pattern it serves (an index
-- of radixtree_host_uri) or false.
local I_EXACT, I_PREFIXES, I_HOST = 1, 2, 3

local _M = {}

local mt = { __index = _M }


-- path patterns ---------------------------------------------------------------------------

-- Splits a uri into literal runs and captures. A capture is a whole segment: ":name"
-- (only with params) matches one or more non-"/" bytes, "*name" any bytes including "/".
-- An unnamed "*" is captured as ":ext", as lua-resty-radixtree does.
local function compile_pattern(path, with_params)
    local toks = {}
    local n = #path
    local lit_start, i = 1, 2

    while i <= n do
        local c = byte(path, i)
        if (c == STAR or (c == COLON and with_params)) and byte(path, i - 1) == SLASH then
            if i > lit_start then
                toks[#toks + 1] = { TOK_LIT, sub(path, lit_start, i - 1) }
            end

            local stop = find(path, "/", i, true) or n + 1
            local name = sub(path, i + 1, stop - 1)
            if c == STAR and name == "" then
                name = ":ext"
            end

            toks[#toks + 1] = { c == STAR and TOK_GLOB or TOK_PARAM, name }
            lit_start, i = stop, stop

        else
            i = i + 1
        end
    end

    if lit_start <= n then
        toks[#toks + 1] = { TOK_LIT, sub(path, lit_start) }
    end

    return toks
end


-- Does s[pos..n] match toks[ti..]? Fills caps (when given) on the way back from a match.
-- Globs are greedy and backtrack, so the whole path must match, as in radixtree.
local function match_toks(toks, ti, s, pos, n, caps)
    local tok = toks[ti]
    if not tok then
        return pos == n + 1
    end

    local kind, val = tok[1], tok[2]
    if kind == TOK_LIT then
        local len = #val
        if pos + len - 1 > n then
            return false
        end

        for k = 1, len do
            if byte(s, pos + k - 1) ~= byte(val, k) then
                return false
            end
        end

        return match_toks(toks, ti + 1, s, pos + len, n, caps)
    end

    if kind == TOK_PARAM then
        local stop = pos
        while stop <= n and byte(s, stop) ~= SLASH do
            stop = stop + 1
        end

        if stop == pos or not match_toks(toks, ti + 1, s, stop, n, caps) then
            return false
        end

        if caps then
            caps[val] = sub(s, pos, stop - 1)
        end

        return true
    end

    for stop = n + 1, pos, -1 do
        if match_toks(toks, ti + 1, s, stop, n, caps) then
            if caps then
                caps[val] = sub(s, pos, stop - 1)
            end

            return true
        end
    end

    return false
end


-- prefix sets -----------------------------------------------------------------------------

-- A prefix set answers "which stored keys are prefixes of s, longest first" (or suffixes,
-- for wildcard hosts) without allocating and without a per-byte trie walk, whose misses
-- grow with the number of keys. One pass over s computes a rolling hash of each prefix
-- length; only lengths some key has are probed, longest first, and a hit is verified
-- byte by byte. Each key's record links to the next shorter key that is its prefix.
--
local hash_scratch = {}


-- Bit operations only: LuaJIT compiles tobit(x + y) to a plain 32-bit add, whereas a
-- multiplying hash overflows its integer narrowing and runs three times slower.
local function hash_step(h, b)
    return tobit(rol(bxor(h, b), 7) + h)
end


-- Does key equal s[off + 1 .. off + len]?
local function same_bytes(key, len, s, off)
    for k = 1, len do
        if byte(key, k) ~= byte(s, off + k) then
            return false
        end
    end

    return true
end


-- keys: { key = value }; reversed: match suffixes; finish(value) -> stored value.
local function pset_build(keys, reversed, finish)
    local map, recs, maxlen = {}, {}, 0

    for key, value in pairs(keys) do
        local n = #key
        local h = 0
        for i = 1, n do
            h = hash_step(h, byte(key, reversed and n - i + 1 or i))
        end

        local rec = { key, n, finish(value), false, map[h] or false }
        map[h] = rec
        recs[key] = rec
        if n > maxlen then
            maxlen = n
        end
    end

    for key, rec in pairs(recs) do
        local n = #key
        for len = n - 1, 0, -1 do
            local up = recs[reversed and sub(key, n - len + 1) or sub(key, 1, len)]
            if up then
                rec[R_UP] = up
                break
            end
        end
    end

    -- fit[n]: the longest key length <= n, so fit[n] == n says some key is n bytes long.
    local fit = new_tab(maxlen, 0)
    local present = {}
    for key in pairs(recs) do
        present[#key] = true
    end

    local longest = 0
    for i = 1, maxlen do
        if present[i] then
            longest = i
        end

        fit[i] = longest
    end

    return { map, fit, maxlen, reversed, recs[""] or false }
end


-- The record of the longest key that is a prefix (suffix) of s, or false.
local function pset_longest(ps, s, n)
    -- Hash no further than the longest key that fits.
    local lim = ps[P_MAXLEN]
    if n < lim then
        lim = n
    end

    local fit = ps[P_FIT]
    lim = lim > 0 and fit[lim] or 0
    if lim == 0 then
        return ps[P_EMPTY]
    end

    -- Filled and read here with nothing in between that could yield: safe to share.
    local hs, h = hash_scratch, 0
    local reversed = ps[P_REVERSED]
    if reversed then
        for i = 1, lim do
            h = hash_step(h, byte(s, n - i + 1))
            hs[i] = h
        end

    else
        for i = 1, lim do
            h = hash_step(h, byte(s, i))
            hs[i] = h
        end
    end

    -- Probe only the lengths keys have, longest first.
    local map, len = ps[P_MAP], lim
    while len > 0 do
        local rec = map[hs[len]]
        while rec do
            if rec[R_LEN] == len and same_bytes(rec[R_KEY], len, s, reversed and n - len or 0) then
                return rec
            end

            rec = rec[R_NEXT]
        end

        len = len > 1 and fit[len - 1] or 0
    end

    return ps[P_EMPTY]
end


-- entries ---------------------------------------------------------------------------------

local function match_hosts(hosts, h, raw_host)
    local hn = #h
    for i = 1, #hosts do
        local rule = hosts[i]
        local want = rule.host
        if rule.with_port then
            -- radixtree compares a host:port rule with the Host header as sent.
            if raw_host and lower(raw_host) == want then
                return rule.pattern
            end

        elseif not rule.wildcard then
            if h == want then
                return rule.pattern
            end

        else
            local wn = #want
            if hn >= wn then
                local ok = true
                for k = 0, wn - 1 do
                    if byte(h, hn - k) ~= byte(want, wn - k) then
                        ok = false
                        break
                    end
                end

                if ok then
                    return rule.pattern
                end
            end
        end
    end

    return nil
end


-- Returns false, or the matched host pattern (uri modes) or true.
local function check_entry(e, mbit, path, h, raw_host, lookup)
    local methods = e[E_METHODS]
    if methods ~= 0 and band(methods, mbit) == 0 then
        return false
    end

    if e[E_PLAIN] then
        return true
    end

    local matched_host = true
    local hosts = e[E_HOSTS]
    if hosts then
        matched_host = match_hosts(hosts, h, raw_host)
        if not matched_host then
            return false
        end
    end

    local toks = e[E_TOKS]
    if toks and not match_toks(toks, 1, path, 1, #path, nil) then
        return false
    end

    local remote = e[E_REMOTE]
    if remote and not match_cidrs(remote, get_var(lookup, "remote_addr")) then
        return false
    end

    local vars = e[E_VARS]
    if vars and not eval_rule(vars, lookup) then
        return false
    end

    return matched_host
end


-- buckets ---------------------------------------------------------------------------------

-- A bucket is the array of entries stored under one key, in radixtree's order: priority,
-- then the longer uri, then array order. In the uri modes a large bucket whose routes
-- mostly differ by host (many tenants on "/v1/*") also gets bucket.hidx, a pre-filter by
-- host, so it is not scanned linearly: { exact = { host = entries }, wild = suffix set of
-- entries, rest = entries without an indexable host }. The lists keep bucket order
-- (E_POS; in the uri modes an entry lives in exactly one bucket) and are merged on the
-- way; check_entry still applies the host rules.
local function entry_before(a, b)
    if a[E_PRIORITY] ~= b[E_PRIORITY] then
        return a[E_PRIORITY] > b[E_PRIORITY]
    end

    local al, bl = #a[E_URI], #b[E_URI]
    if al ~= bl then
        return al > bl
    end

    return a[E_SEQ] < b[E_SEQ]
end


local function host_index(list)
    local exact, wild, rest = {}, {}, {}
    local indexed, has_wild = false, false

    for _, e in ipairs(list) do
        local rules = e[E_HOSTS]
        local indexable = rules ~= false
        for _, rule in ipairs(rules or {}) do
            indexable = indexable and not rule.with_port
        end

        if not indexable then
            rest[#rest + 1] = e

        else
            indexed = true
            for _, rule in ipairs(rules) do
                local set = exact
                if rule.wildcard then
                    set, has_wild = wild, true
                end

                local l = set[rule.host] or {}
                set[rule.host] = l
                if l[#l] ~= e then
                    l[#l + 1] = e
                end
            end
        end
    end

    if not indexed then
        return nil
    end

    return {
        exact = exact,
        wild = has_wild and pset_build(wild, true, function(l) return l end),
        rest = rest,
    }
end


local function bucket_finish(list, with_host_index)
    sort(list, entry_before)
    -- table.new: a bucket of up to 15 entries is a single allocation.
    local bucket = new_tab(#list, 0)
    for i, e in ipairs(list) do
        e[E_POS] = i
        bucket[i] = e
    end

    if with_host_index and #list >= HOST_INDEX_MIN then
        bucket.hidx = host_index(bucket)
    end

    return bucket
end


-- The first entry of list (ordered by E_POS) after position last, or nil.
local function first_after(list, last)
    local first = list[1]
    if not first or first[E_POS] > last then
        return first
    end

    local lo, hi = 2, #list
    while lo <= hi do
        local mid = floor((lo + hi) / 2)
        if list[mid][E_POS] > last then
            hi = mid - 1
        else
            lo = mid + 1
        end
    end

    return list[lo]
end


local function scan_indexed(hidx, mbit, path, h, raw_host, lookup)
    local exact = hidx.exact[h]
    local wild = hidx.wild and pset_longest(hidx.wild, h, #h)
    local rest = hidx.rest
    local last = 0

    while true do
        local best = exact and first_after(exact, last)
        local rec = wild
        while rec do
            local e = first_after(rec[R_VALUE], last)
            if e and (not best or e[E_POS] < best[E_POS]) then
                best = e
            end

            rec = rec[R_UP]
        end

        local e = first_after(rest, last)
        if e and (not best or e[E_POS] < best[E_POS]) then
            best = e
        end

        if not best then
            return nil
        end

        local mh = check_entry(best, mbit, path, h, raw_host, lookup)
        if mh then
            return best, mh
        end

        last = best[E_POS]
    end
end


local function scan(bucket, mbit, path, h, raw_host, lookup)
    local hidx = bucket.hidx
    if hidx then
        return scan_indexed(hidx, mbit, path, h, raw_host, lookup)
    end

    for i = 1, #bucket do
        local e = bucket[i]
        local mh = check_entry(e, mbit, path, h, raw_host, lookup)
        if mh then
            return e, mh
        end
    end

    return nil
end


-- uri index -------------------------------------------------------------------------------

local function index_new(host_pattern)
    return { {}, {}, host_pattern or false }
end


local function index_add(idx, entry)
    local key = entry[E_KEY]
    local set = key and idx[I_PREFIXES] or idx[I_EXACT]
    key = key or entry[E_URI]
    local list = set[key]
    if not list then
        list = {}
        set[key] = list
    end

    list[#list + 1] = entry
end


local function index_finish(idx, with_host_index)
    local exact = idx[I_EXACT]
    for uri, list in pairs(exact) do
        exact[uri] = bucket_finish(list, with_host_index)
    end

    if next(idx[I_PREFIXES]) == nil then
        idx[I_PREFIXES] = false
        return idx
    end

    idx[I_PREFIXES] = pset_build(idx[I_PREFIXES], false, function(list)
        return bucket_finish(list, with_host_index)
    end)

    return idx
end


-- Returns entry, matched host (or true) | nil.
local function match_index(idx, mbit, path, h, raw_host, lookup)
    local bucket = idx[I_EXACT][path]
    if bucket then
        local e, mh = scan(bucket, mbit, path, h, raw_host, lookup)
        if e then
            return e, mh
        end
    end

    local prefixes = idx[I_PREFIXES]
    if not prefixes then
        return nil
    end

    local rec = pset_longest(prefixes, path, #path)
    while rec do
        local e, mh = scan(rec[R_VALUE], mbit, path, h, raw_host, lookup)
        if e then
            return e, mh
        end

        rec = rec[R_UP]
    end

    return nil
end


-- Normalized Host headers, memoized: scanning the header byte by byte on every request
-- costs more than the rest of a typical match. Bounded (HOST_CACHE_MAX): clients choose
-- the keys.
local host_cache = {}
local host_cache_n = 0


-- Lowercase, port stripped, like nginx's $host.
local function norm_host(host)
    if host == nil then
        return ""
    end

    local h = host_cache[host]
    if h then
        return h
    end

    h = host
    if byte(h, 1) == LBRACKET then
        local close = find(h, "]", 1, true)
        if close then
            h = sub(h, 1, close)
        end

    else
        local colon = find(h, ":", 1, true)
        if colon and not find(h, ":", colon + 1, true) then
            h = sub(h, 1, colon - 1)
        end
    end

    h = lower(h)
    if host_cache_n >= HOST_CACHE_MAX then
        clear_tab(host_cache)
        host_cache_n = 0
    end

    host_cache[host] = h
    host_cache_n = host_cache_n + 1
    return h
end


-- building --------------------------------------------------------------------------------

local function is_array(v)
    return type(v) == "table" and (#v > 0 or next(v) == nil)
end


local function check_uri(uri)
    if type(uri) ~= "string" then
        return "uri: expected a string, got " .. type(uri)
    end

    if byte(uri, 1) ~= SLASH then
        return "uri: must start with '/': " .. uri
    end

    if #uri > MAX_URI_LEN then
        return "uri: longer than " .. MAX_URI_LEN .. " bytes"
    end

    return nil
end


local function route_uris(route)
    if route.uri ~= nil and route.uris ~= nil then
        return nil, "uri and uris are mutually exclusive"
    end

    if route.uri ~= nil then
        local err = check_uri(route.uri)
        if err then
            return nil, err
        end

        return { route.uri }
    end

    if route.uris == nil then
        return nil, "missing uri or uris"
    end

    if not is_array(route.uris) or #route.uris == 0 then
        return nil, "uris: expected a non-empty array"
    end

    for _, uri in ipairs(route.uris) do
        local err = check_uri(uri)
        if err then
            return nil, "uris: " .. err
        end
    end

    return route.uris
end


local function route_hosts(route, opts)
    if route.host ~= nil and route.hosts ~= nil then
        return nil, "host and hosts are mutually exclusive"
    end

    local hosts = route.hosts
    if route.host ~= nil then
        hosts = { route.host }

    elseif hosts == nil and opts.service_hosts then
        -- As APISIX: a route without hosts takes its service's.
        hosts = opts.service_hosts(route)
    end

    if hosts == nil then
        return false

    elseif not is_array(hosts) or #hosts == 0 then
        return nil, "hosts: expected a non-empty array"
    end

    for _, h in ipairs(hosts) do
        if type(h) ~= "string" or (h ~= "*" and not find(h, HOST_PATTERN)) then
            return nil, "invalid host: " .. tostring(h)
        end
    end

    return hosts
end


local function route_methods(route)
    local methods = route.methods
    if methods == nil then
        return 0
    end

    if not is_array(methods) then
        return nil, "methods: expected an array"
    end

    local mask = 0
    for _, m in ipairs(methods) do
        if not METHOD_BITS[m] then
            return nil, "methods: invalid method " .. tostring(m)
        end

        mask = bor(mask, METHOD_BITS[m])
    end

    return mask
end


local function route_remote(route)
    if route.remote_addr ~= nil and route.remote_addrs ~= nil then
        return nil, "remote_addr and remote_addrs are mutually exclusive"
    end

    if route.remote_addr ~= nil then
        return compile_cidrs({ route.remote_addr })
    end

    if route.remote_addrs ~= nil then
        return compile_cidrs(route.remote_addrs)
    end

    return false
end


local function host_rules(hosts)
    local rules = {}
    for i, pattern in ipairs(hosts) do
        local h = lower(pattern)
        local wildcard = byte(h, 1) == STAR
        rules[i] = {
            pattern = pattern,
            wildcard = wildcard,
            host = wildcard and sub(h, 2) or h,
            with_port = find(h, ":", 1, true) ~= nil and byte(h, 1) ~= LBRACKET,
        }
    end

    return rules
end


local function make_entry(route, uri, seq, common, mode)
    local hosts = (not mode.by_host and common.hosts) and host_rules(common.hosts) or false
    local key, toks, caps = false, false, false

    local stop = mode.params and find(uri, ":", 1, true) or nil
    local star = find(uri, "*", 1, true)
    if not stop or (star and star < stop) then
        stop = star
    end

    if stop then
        key = sub(uri, 1, stop - 1)
        -- A trailing "*" is a plain prefix: the tree already checked it, nothing to capture.
        if stop ~= #uri or byte(uri, stop) ~= STAR then
            toks = compile_pattern(uri, mode.params)
            for _, tok in ipairs(toks) do
                caps = caps or tok[1] ~= TOK_LIT
            end
        end
    end

    local plain = not (hosts or toks or common.remote or common.vars)
    return { route, common.methods, plain, uri, hosts, toks, caps, common.remote,
             common.vars, 0, common.priority, seq, key }
end


local function route_common(route, opts)
    local common = {}
    local err

    local priority = route.priority
    if priority == nil then
        priority = 0

    elseif type(priority) ~= "number" or priority ~= floor(priority) then
        return nil, "priority: expected an integer"
    end

    common.priority = priority

    common.methods, err = route_methods(route)
    if err then
        return nil, err
    end

    common.hosts, err = route_hosts(route, opts)
    if err then
        return nil, err
    end

    common.remote, err = route_remote(route)
    if err then
        return nil, "remote_addrs: " .. err
    end

    common.vars = false
    if route.vars ~= nil then
        common.vars, err = compile_vars(route.vars, opts)
        if err then
            return nil, err
        end

        common.vars = common.vars or false
    end

    -- APISIX's filter_func, checked after vars
    if route.filter_func ~= nil then
        local func
        func, err = compile_filter_func(route.filter_func)
        if not func then
            return nil, err
        end

        common.vars = common.vars and { logic = "AND", exprs = { common.vars, func } } or func
    end

    return common
end


local function route_name(route, i)
    if type(route) == "table" and route.id ~= nil then
        return tostring(route.id)
    end

    return "#" .. i
end


-- Adds an entry to the index of one host key, creating it on first use.
local function by_host_add(set, key, pattern, entry)
    local idx = set[key]
    if not idx then
        idx = index_new(pattern)
        set[key] = idx
    end

    index_add(idx, entry)
end


-- router.new(routes, opts) -> router | nil, err
-- routes: array of APISIX route tables (not modified; match returns them). opts, all
-- optional: router = "radixtree_host_uri" (default) | "radixtree_uri" |
-- "radixtree_uri_with_parameter"; re_find(subject, pattern, flags), ngx.re.find-like,
-- needed by vars using ~~ ("jo") or ~* ("joi"); service_hosts(route) -> hosts or nil,
-- asked for routes without host/hosts (APISIX gives them their service's hosts).
function _M.new(routes, opts)
    if type(routes) ~= "table" then
        return nil, "routes: expected an array"
    end

    opts = opts or {}
    local mode_name = opts.router or "radixtree_host_uri"
    local mode = MODES[mode_name]
    if not mode then
        return nil, "unknown router: " .. tostring(mode_name)
    end

    local default = index_new()
    local exact_hosts, wild_hosts = {}, {}
    local has_exact, has_wild, has_host_rules = false, false, false
    local seq = 0

    for i, route in ipairs(routes) do
        local name = route_name(route, i)
        if type(route) ~= "table" then
            return nil, "route " .. name .. ": expected a table"
        end

        local status = route.status
        if status ~= nil and status ~= 0 and status ~= 1 then
            return nil, "route " .. name .. ": status: expected 0 or 1"
        end

        local uris, err = route_uris(route)
        if not uris then
            return nil, "route " .. name .. ": " .. err
        end

        local common
        common, err = route_common(route, opts)
        if not common then
            return nil, "route " .. name .. ": " .. err
        end

        for _, uri in ipairs(status ~= 0 and uris or {}) do
            seq = seq + 1
            local e = make_entry(route, uri, seq, common, mode)

            if not common.hosts then
                index_add(default, e)

            elseif not mode.by_host then
                has_host_rules = true
                index_add(default, e)

            else
                for _, pattern in ipairs(common.hosts) do
                    local h = lower(pattern)
                    if byte(h, 1) == STAR then
                        has_wild = true
                        by_host_add(wild_hosts, sub(h, 2), pattern, e)
                    else
                        has_exact = true
                        by_host_add(exact_hosts, h, pattern, e)
                    end
                end
            end
        end
    end

    local self = {
        default = index_finish(default, has_host_rules),
        exact_hosts = false,
        wild_hosts = false,
        need_host = has_exact or has_wild or has_host_rules,
    }

    if has_exact then
        for _, idx in pairs(exact_hosts) do
            index_finish(idx, false)
        end

        self.exact_hosts = exact_hosts
    end

    if has_wild then
        self.wild_hosts = pset_build(wild_hosts, true, function(idx)
            return index_finish(idx, false)
        end)
    end

    return setmetatable(self, mt)
end


local function result(e, path, matched_host, host_pattern)
    local params
    if e[E_CAPS] then
        params = {}
        match_toks(e[E_TOKS], 1, path, 1, #path, params)
    end

    if matched_host == true then
        matched_host = host_pattern or nil
    end

    return e[E_ROUTE], params, e[E_URI], matched_host
end


-- r:match(method, path, host, lookup) -> route, params, matched_uri, matched_host | nil
-- path is the decoded uri without the query string; host the Host header (any case, port
-- allowed); lookup(name) (or a table) gives request variables for vars and remote_addr.
-- params holds path captures, or is nil; matched_uri is the route uri that matched and
-- matched_host the host pattern ("*.example.com") when a host rule decided it.
function _M.match(self, method, path, host, lookup)
    if type(path) ~= "string" then
        error("path must be a string", 2)
    end

    local mbit = METHOD_BITS[method] or 0
    local h = ""
    if self.need_host then
        h = norm_host(host)
    end

    local e, mh
    local exact_hosts = self.exact_hosts
    if exact_hosts then
        local idx = exact_hosts[h]
        if idx then
            e, mh = match_index(idx, mbit, path, h, host, lookup)
            if e then
                return result(e, path, mh, idx[I_HOST])
            end
        end
    end

    local wild_hosts = self.wild_hosts
    if wild_hosts then
        local rec = pset_longest(wild_hosts, h, #h)
        while rec do
            local idx = rec[R_VALUE]
            e, mh = match_index(idx, mbit, path, h, host, lookup)
            if e then
                return result(e, path, mh, idx[I_HOST])
            end

            rec = rec[R_UP]
        end
    end

    e, mh = match_index(self.default, mbit, path, h, host, lookup)
    if e then
        return result(e, path, mh, nil)
    end

    return nil
end


return _M
