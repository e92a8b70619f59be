-- router_bench: ns per match with 10 and with 10,000 routes; the issue's bar is that the
-- second stays within 2x of the first. Run from the repo root: luajit t/bench/router_bench.lua
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path

local router = require("sluice.router")

local MATCHES = 1000000
local REQUESTS = 1000       -- distinct requests, cycled
local ROUNDS = 5            -- best of


-- A realistic mix, in the same proportions at every size: half exact /v1 paths (some
-- POST-only), 30% prefixes, 10% exact hosts, 10% wildcard hosts.
local function make_routes(n)
    local routes = {}
    local kinds = {}
    for i = 1, n do
        -- 20 slots; a router smaller than 20 routes spreads its routes over them.
        local slot = n >= 20 and (i - 1) % 20 or math.floor((i - 1) * 20 / n)
        local kind, route
        if slot < 10 then
            kind = "exact"
            route = { id = i, uri = "/v1/svc" .. i .. "/chat/completions" }
            if i % 2 == 0 then
                route.methods = { "POST" }
            end

        elseif slot < 16 then
            kind = "prefix"
            route = { id = i, uri = "/api/v" .. (i % 3) .. "/svc" .. i .. "/*" }

        elseif slot < 18 then
            kind = "host"
            route = { id = i, uri = "/v1/*", host = "tenant" .. i .. ".example.com",
                      methods = { "POST", "GET" } }

        else
            kind = "wild"
            route = { id = i, uri = "/v1/*", hosts = { "*.r" .. i .. ".example.net" } }
        end

        kinds[kind] = kinds[kind] or {}
        table.insert(kinds[kind], i)
        routes[i] = route
    end

    return routes, kinds
end


-- 70% hits (exact, prefix, exact host, wildcard host), 30% misses; same shape at any size.
local function make_requests(routes, kinds)
    local reqs = {}
    local function pick(list)
        return list[math.random(#list)]
    end

    for i = 1, REQUESTS do
        local roll = math.random(100)
        local method = math.random(5) == 1 and "GET" or "POST"
        local path
        local host = "gw.local"
        if roll <= 35 then
            path = routes[pick(kinds.exact)].uri

        elseif roll <= 55 then
            local uri = routes[pick(kinds.prefix)].uri
            path = uri:sub(1, -2) .. "models/gpt-4o/usage"

        elseif roll <= 65 then
            host = "tenant" .. pick(kinds.host) .. ".example.com"
            path = "/v1/chat/completions"

        elseif roll <= 70 then
            host = "eu.r" .. pick(kinds.wild) .. ".example.net"
            path = "/v1/embeddings"

        elseif roll <= 85 then
            path = "/v1/svc" .. (i + 1000000) .. "/chat/completions"

        else
            host = "tenant999999.example.com"
            path = "/v2/unknown/" .. i
        end

        reqs[i] = { method, path, host }
    end

    return reqs
end


local function bench(r, reqs)
    local n = #reqs
    local hits = 0
    local start = os.clock()
    for i = 1, MATCHES do
        local q = reqs[i % n + 1]
        if r:match(q[1], q[2], q[3]) then
            hits = hits + 1
        end
    end

    return (os.clock() - start) * 1e9 / MATCHES, hits
end


local function setup(size, mode)
    math.randomseed(size)
    local routes, kinds = make_routes(size)
    local r = assert(router.new(routes, { router = mode }))
    return r, make_requests(routes, kinds)
end


-- Rounds alternate between the two sizes and the best of each is kept, so that a noisy
-- neighbour on the machine slows both alike instead of skewing the ratio.
local function compare(mode)
    local small_r, small_q = setup(10, mode)
    local large_r, large_q = setup(10000, mode)
    bench(small_r, small_q)
    bench(large_r, large_q)
    collectgarbage()

    local kb = collectgarbage("count")
    local best = { math.huge, math.huge }
    local hits = {}
    for _ = 1, ROUNDS do
        local ns
        ns, hits[1] = bench(small_r, small_q)
        best[1] = math.min(best[1], ns)
        ns, hits[2] = bench(large_r, large_q)
        best[2] = math.min(best[2], ns)
    end

    local grown = collectgarbage("count") - kb
    for i, size in ipairs({ 10, 10000 }) do
        print(string.format("%-20s %6d routes: %6.1f ns/match  (%d%% hits)", mode, size, best[i],
                            hits[i] * 100 / MATCHES))
    end

    print(string.format("%-20s ratio 10,000 / 10 routes: %.2fx (bar: 2x); heap grew %.0f KB "
                        .. "over %d matches", mode, best[2] / best[1], grown,
                        2 * ROUNDS * MATCHES))
end


for _, mode in ipairs({ "radixtree_host_uri", "radixtree_uri" }) do
    compare(mode)
end
