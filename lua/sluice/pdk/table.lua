-- pdk.table: small table helpers plugins keep needing.
local _M = {}

local ok_new, new_tab = pcall(require, "table.new")
local ok_clear, clear_tab = pcall(require, "table.clear")

_M.new = ok_new and new_tab or function() return {} end
_M.clear = ok_clear and clear_tab or function(t)
    for k in pairs(t) do
        t[k] = nil
    end
end


function _M.deepcopy(v, seen)
    if type(v) ~= "table" then
        return v
    end

    seen = seen or {}
    if seen[v] then
        return seen[v]
    end

    local t = {}
    seen[v] = t
    for k, val in pairs(v) do
        t[_M.deepcopy(k, seen)] = _M.deepcopy(val, seen)
    end

    return setmetatable(t, getmetatable(v))
end


-- merges src over dst (tables merged recursively, arrays replaced); returns dst
function _M.merge(dst, src)
    for k, v in pairs(src) do
        if type(v) == "table" and type(dst[k]) == "table" and #v == 0 and next(v) ~= nil then
            _M.merge(dst[k], v)
        else
            dst[k] = v
        end
    end

    return dst
end


return _M
