-- sluice.tablepool: emptied tables keep no values, a pool hands back what it was given, at
-- most max of them, emptied; and the reuse is what sluice.ctx relies on (a table stored to
-- again with the same keys).
local t = require("t.unit.tap")
local tablepool = require("sluice.tablepool")

local x = { a = 1, b = "two", [1] = true, [2] = false, nested = {} }
tablepool.empty(x)
t.is(next(x), nil, "empty: no value left")
x.a, x.c = 3, 4
t.is_deeply(x, { a = 3, c = 4 }, "an emptied table takes stores, old keys and new")

local pool = tablepool.new(2)
t.is(pool:take(), nil, "a new pool has nothing")
local t1, t2, t3 = { k = 1 }, { k = 2 }, { k = 3 }
pool:put(t1)
pool:put(t2)
pool:put(t3)
t.is(pool.n, 2, "at most max tables kept")
local a, b = pool:take(), pool:take()
t.ok(a == t2 and b == t1, "taken back last in, first out")
t.is(next(a), nil, "taken tables are empty")
t.is(pool:take(), nil, "then nothing")

-- the same table through many requests' worth of distinct keys stays bounded: a rehash
-- drops the keys that hold nil (5,000 more rounds after the first 5,000 add next to nothing)
local r = {}
local function rounds(from, to)
    for i = from, to do
        r["once-" .. i] = i
        r.fixed = i
        tablepool.empty(r)
    end

    collectgarbage()
    collectgarbage()
    return collectgarbage("count")
end
local at5k = rounds(1, 5000)
local at50k = rounds(5001, 50000)
t.is(next(r), nil, "no value survives 50,000 reuses")
t.ok(at50k - at5k < 4, "the table did not grow with the keys (" .. (at50k - at5k) .. " KB)")

t.done_testing()
