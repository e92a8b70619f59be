-- tap.lua: a small TAP producer for pure-Lua unit tests run under plain luajit.
package.path = "lua/?.lua;lua/?/init.lua;t/unit/?.lua;" .. package.path

local _M = {}

local n, failed = 0, 0


local function report(cond, name, diag)
    n = n + 1
    if cond then
        io.write("ok ", n, " - ", name or "", "\n")
        return true
    end

    failed = failed + 1
    io.write("not ok ", n, " - ", name or "", "\n")
    if diag then
        io.write("#   ", (tostring(diag):gsub("\n", "\n#   ")), "\n")
    end

    return false
end


local function dump(v, seen)
    local t = type(v)
    if t == "string" then
        return string.format("%q", v)
    end

    if t ~= "table" then
        return tostring(v)
    end

    seen = seen or {}
    if seen[v] then
        return "<cycle>"
    end

    seen[v] = true
    local keys = {}
    for k in pairs(v) do
        keys[#keys + 1] = k
    end

    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    local parts = {}
    for _, k in ipairs(keys) do
        parts[#parts + 1] = "[" .. dump(k, seen) .. "]=" .. dump(v[k], seen)
    end

    return "{" .. table.concat(parts, ",") .. "}"
end
_M.dump = dump


local function deep_eq(a, b)
    if type(a) ~= type(b) then
        return false
    end

    if type(a) ~= "table" then
        return a == b
    end

    for k, v in pairs(a) do
        if not deep_eq(v, b[k]) then
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


function _M.ok(cond, name)
    return report(cond, name)
end


function _M.is(got, want, name)
    return report(got == want, name, "got " .. dump(got) .. ", want " .. dump(want))
end


function _M.is_deeply(got, want, name)
    return report(deep_eq(got, want), name, "got " .. dump(got) .. "\nwant " .. dump(want))
end


function _M.like(got, pattern, name)
    return report(type(got) == "string" and got:find(pattern) ~= nil, name,
                  "got " .. dump(got) .. ", want match of " .. pattern)
end


function _M.done_testing()
    io.write("1..", n, "\n")
    os.exit(failed == 0 and 0 or 1)
end


return _M
