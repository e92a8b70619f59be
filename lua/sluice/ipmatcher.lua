-- ipmatcher.lua: IPv4 and IPv6 addresses and CIDR ranges, as route remote_addrs and the
-- vars operator "ipmatch" (sluice.expr) use them.
--
--   "1.2.3.4" and "::1" match one address; "10.0.0.0/8" and "fe80::/32" a range. IPv6 takes
--   "::" shorthand and a trailing dotted quad ("::ffff:1.2.3.4"). An IPv4 pattern never
--   matches an IPv6 address, nor the other way round.
--
-- compile_cidrs(list) -> matchers | nil, err    list: a non-empty array of such strings
-- match_cidrs(matchers, addr) -> boolean         addr: the client address, any type
--
-- Matching allocates nothing and never yields, so it can parse into shared scratch tables.
local byte = string.byte
local sub = string.sub
local find = string.find
local floor = math.floor
local type = type
local tonumber = tonumber
local ipairs = ipairs

local COLON = byte(":")
local DOT = byte(".")

local _M = {}


-- Parses a dotted quad in s[i..j] into a number; nil if malformed.
local function parse_ip4(s, i, j)
    local val, part, digits, dots = 0, 0, 0, 0
    for k = i, j do
        local c = byte(s, k)
        if c == DOT then
            if digits == 0 or dots == 3 then
                return nil
            end

            val = val * 256 + part
            part, digits, dots = 0, 0, dots + 1

        elseif c >= 48 and c <= 57 then
            part = part * 10 + c - 48
            digits = digits + 1
            if digits > 3 or part > 255 then
                return nil
            end

        else
            return nil
        end
    end

    if digits == 0 or dots ~= 3 then
        return nil
    end

    return val * 256 + part
end


local function hex_value(c)
    if c >= 48 and c <= 57 then
        return c - 48
    end

    if c >= 97 and c <= 102 then
        return c - 87
    end

    if c >= 65 and c <= 70 then
        return c - 55
    end

    return nil
end


local ip6_scratch = { 0, 0, 0, 0, 0, 0, 0, 0 }


-- Parses an IPv6 address in s[1..n] into out[1..8] (16-bit groups); false if malformed.
-- Matching reuses one scratch table: parsing and comparing never yield in between.
local function parse_ip6(s, n, out)
    local g = ip6_scratch
    local cnt, gap, i = 0, nil, 1

    if n >= 2 and byte(s, 1) == COLON and byte(s, 2) == COLON then
        gap, i = 0, 3
    end

    while i <= n do
        local start, v = i, 0
        while i <= n do
            local d = hex_value(byte(s, i))
            if not d then
                break
            end

            v = v * 16 + d
            i = i + 1
        end

        if i <= n and byte(s, i) == DOT then
            local v4 = parse_ip4(s, start, n)
            if not v4 or cnt > 6 then
                return false
            end

            g[cnt + 1] = floor(v4 / 65536)
            g[cnt + 2] = v4 % 65536
            cnt = cnt + 2
            break
        end

        if i == start or i - start > 4 or cnt == 8 then
            return false
        end

        cnt = cnt + 1
        g[cnt] = v
        if i > n then
            break
        end

        if byte(s, i) ~= COLON or i == n then
            return false
        end

        i = i + 1
        if byte(s, i) == COLON then
            if gap then
                return false
            end

            gap, i = cnt, i + 1
        end
    end

    if not gap then
        if cnt ~= 8 then
            return false
        end

        for k = 1, 8 do
            out[k] = g[k]
        end

        return true
    end

    if cnt > 7 then
        return false
    end

    local zeros = 8 - cnt
    for k = 1, gap do
        out[k] = g[k]
    end

    for k = gap + 1, gap + zeros do
        out[k] = 0
    end

    for k = gap + 1, cnt do
        out[k + zeros] = g[k]
    end

    return true
end


-- "1.2.3.4", "10.0.0.0/8", "::1", "fe80::/32" -> matcher table, or nil, err.
local function compile_cidr(spec)
    if type(spec) ~= "string" then
        return nil, "invalid IP address: expected a string"
    end

    local addr, bits = spec, nil
    local slash = find(spec, "/", 1, true)
    if slash then
        addr = sub(spec, 1, slash - 1)
        bits = tonumber(sub(spec, slash + 1))
        if not bits or bits ~= floor(bits) or bits < 0 then
            return nil, "invalid IP address: " .. spec
        end
    end

    if find(addr, ":", 1, true) then
        local groups = {}
        if not parse_ip6(addr, #addr, groups) or (bits and bits > 128) then
            return nil, "invalid IP address: " .. spec
        end

        return { v = 6, groups = groups, bits = bits or 128 }
    end

    local ip = parse_ip4(addr, 1, #addr)
    if not ip or (bits and bits > 32) then
        return nil, "invalid IP address: " .. spec
    end

    local div = 2 ^ (32 - (bits or 32))
    return { v = 4, div = div, net = floor(ip / div) }
end


-- list: a non-empty array of addresses and ranges -> matchers, or nil, err.
function _M.compile_cidrs(list)
    if type(list) ~= "table" or #list == 0 then
        return nil, "expected a non-empty array of IP addresses"
    end

    local matchers = {}
    for i, spec in ipairs(list) do
        local m, err = compile_cidr(spec)
        if not m then
            return nil, err
        end

        matchers[i] = m
    end

    return matchers
end


local ip6_req = { 0, 0, 0, 0, 0, 0, 0, 0 }


-- Does addr (a string) fall in any of matchers? false for anything not an IP address.
function _M.match_cidrs(matchers, addr)
    if type(addr) ~= "string" then
        return false
    end

    local n = #addr
    local v4
    local is_v6 = find(addr, ":", 1, true) ~= nil
    if is_v6 then
        if not parse_ip6(addr, n, ip6_req) then
            return false
        end

    else
        v4 = parse_ip4(addr, 1, n)
        if not v4 then
            return false
        end
    end

    for i = 1, #matchers do
        local m = matchers[i]
        if m.v == 4 then
            if v4 and floor(v4 / m.div) == m.net then
                return true
            end

        elseif is_v6 then
            local groups, left, ok = m.groups, m.bits, true
            for k = 1, 8 do
                if left <= 0 then
                    break
                end

                if left >= 16 then
                    ok = ip6_req[k] == groups[k]
                else
                    local div = 2 ^ (16 - left)
                    ok = floor(ip6_req[k] / div) == floor(groups[k] / div)
                end

                if not ok then
                    break
                end

                left = left - 16
            end

            if ok then
                return true
            end
        end
    end

    return false
end


return _M
