-- sluice.tablepool: per-request tables reused instead of made anew (the GC's work grows with
-- the bytes requests allocate; a table with a presized hash part is most of them).
--
--   empty(t)      every value of t set to nil, its keys kept: the next request's stores to
--                 the same keys find their slots (table.clear would make each a new key
--                 again). Keys a request set only once go when the table next grows: a rehash
--                 keeps only non-nil values.
--   new(max)      a pool: pool:take() -> an emptied table or nil; pool:put(t) empties t and
--                 keeps it unless max tables wait already.
local next = next

local _M = {}


local function empty(t)
    for k in next, t do
        t[k] = nil
    end
end
_M.empty = empty


local Pool = {}
Pool.__index = Pool


function Pool:take()
    local n = self.n
    if n == 0 then
        return nil
    end

    local t = self[n]
    self[n] = nil
    self.n = n - 1
    return t
end


function Pool:put(t)
    local n = self.n
    if n < self.max then
        empty(t)
        n = n + 1
        self[n] = t
        self.n = n
    end
end


function _M.new(max)
    return setmetatable({ n = 0, max = max or 256 }, Pool)
end


return _M
