-- expr.lua: route "vars" and "filter_func", evaluated as APISIX does (lua-resty-expr v1).
--
-- A rule is an expression or a list of rules; a list is AND unless its first element names
-- the logic: "AND", "OR", "!AND", "!OR". An expression is { var, op, value }, or
-- { var, "!", op, value } for its negation; the short { var, value } means "==". Operators
-- (any case): == ~= > >= < <= (numbers compared as numbers), ~~ and ~* (regex, the second
-- caseless, through opts.re_find), in (var is in the value array), has (the value is in
-- the var array), ipmatch (sluice.ipmatcher: an address or range, or an array of them).
-- A JSON null value compares like nil. filter_func is Lua source of function(vars) ->
-- boolean; a filter that throws does not match.
--
-- compile_vars(vars, opts) -> rule | nil | nil, err   nil alone: vars is empty
-- compile_filter_func(src) -> rule | nil, err
-- eval_rule(rule, lookup) -> boolean                  lookup(name), or a table of variables
-- get_var(lookup, name) -> value
--
-- A compiled rule is { logic = "AND"|"OR"|"!AND"|"!OR", exprs = { rule... } }, a leaf
-- { l_v, op, r_v, negate }, or { logic = "FUNC", fn }; callers may build an AND of rules.
local ipmatcher = require("sluice.ipmatcher")

local compile_cidrs = ipmatcher.compile_cidrs
local match_cidrs = ipmatcher.match_cidrs
local lower = string.lower
local upper = string.upper
local type = type
local tostring = tostring
local tonumber = tonumber
local setmetatable = setmetatable

local LOGIC_OPS = { AND = true, OR = true, ["!AND"] = true, ["!OR"] = true }

local COMPARE_OPS = {
    ["=="] = true, ["~="] = true, [">"] = true, [">="] = true, ["<"] = true, ["<="] = true,
    ["~~"] = true, ["~*"] = true, ["in"] = true, ["has"] = true, ["ipmatch"] = true,
}

local _M = {}


local function compile_leaf(expr, opts)
    local l_v, op, r_v
    local negate = false

    if #expr == 4 then
        if expr[2] ~= "!" then
            return nil, "bad 'not' expression"
        end

        negate = true
        l_v, op, r_v = expr[1], expr[3], expr[4]
    else
        l_v, op, r_v = expr[1], expr[2], expr[3]
    end

    if type(op) == "string" then
        op = lower(op)
    end

    -- JSON null (cjson.null is a lightuserdata) compares like nil, as ngx.null does there.
    if type(r_v) == "userdata" then
        r_v = nil
    end

    -- ["arg_x", "1"] is kept for compatibility: it means ["arg_x", "==", "1"].
    if r_v == nil and not COMPARE_OPS[op] then
        r_v, op = op, "=="
        if r_v == nil then
            return nil, "invalid expression"
        end
    end

    if l_v == nil or op == nil then
        return nil, "invalid expression"
    end

    if not COMPARE_OPS[op] then
        return nil, "invalid operator '" .. tostring(op) .. "'"
    end

    local leaf = { l_v = l_v, op = op, r_v = r_v, negate = negate }

    if op == "~~" or op == "~*" then
        if type(r_v) ~= "string" then
            return nil, "operator '" .. op .. "' needs a string pattern"
        end

        if not opts.re_find then
            return nil, "operator '" .. op .. "' needs the re_find option of router.new"
        end

        leaf.re_find = opts.re_find
        leaf.re_flags = op == "~*" and "joi" or "jo"

    elseif op == "ipmatch" then
        if type(r_v) == "string" then
            r_v = { r_v }
        end

        local matchers, err = compile_cidrs(r_v)
        if not matchers then
            return nil, err
        end

        leaf.r_v = matchers
    end

    return leaf
end


local function compile_rule(rule, opts)
    local n = #rule
    if n == 0 then
        return nil, "rule too short"
    end

    if type(rule[1]) == "table" then
        local exprs = {}
        for i = 1, n do
            if type(rule[i]) ~= "table" then
                return nil, "rule should be wrapped inside brackets"
            end

            local res, err = compile_rule(rule[i], opts)
            if not res then
                return nil, err
            end

            exprs[i] = res
        end

        return { logic = "AND", exprs = exprs }
    end

    local op = type(rule[1]) == "string" and upper(rule[1])
    if op and LOGIC_OPS[op] then
        if n <= 2 then
            return nil, "rule too short"
        end

        local exprs = {}
        for i = 2, n do
            if type(rule[i]) ~= "table" then
                return nil, "rule should be wrapped inside brackets"
            end

            local res, err = compile_rule(rule[i], opts)
            if not res then
                return nil, err
            end

            exprs[i - 1] = res
        end

        return { logic = op, exprs = exprs }
    end

    return compile_leaf(rule, opts)
end


-- vars (a route's "vars" array) -> compiled rule, or nil for an empty array, or nil, err.
-- opts.re_find is needed by ~~ and ~*.
function _M.compile_vars(vars, opts)
    if type(vars) ~= "table" then
        return nil, "vars: expected an array"
    end

    if #vars == 0 then
        return nil
    end

    if type(vars[1]) ~= "table" then
        local op = type(vars[1]) == "string" and upper(vars[1])
        if not (op and LOGIC_OPS[op]) then
            return nil, "vars: rule should be wrapped inside brackets"
        end
    end

    local compiled, err = compile_rule(vars, opts)
    if not compiled then
        return nil, "vars: " .. err
    end

    return compiled
end


-- The value of the request variable name, from lookup (a function or a table) if any.
local function get_var(lookup, name)
    if lookup == nil then
        return nil
    end

    if type(lookup) == "function" then
        return lookup(name)
    end

    return lookup[name]
end


_M.get_var = get_var


local function compare(leaf, l_v)
    local op, r_v = leaf.op, leaf.r_v

    if op == "==" then
        if type(r_v) == "number" then
            l_v = tonumber(l_v)
            if not l_v then
                return false
            end
        end

        return l_v == r_v
    end

    if op == "~=" then
        if type(r_v) == "number" then
            l_v = tonumber(l_v)
            if not l_v then
                return true
            end
        end

        return l_v ~= r_v
    end

    if op == "~~" or op == "~*" then
        if type(l_v) == "number" then
            l_v = tostring(l_v)
        end

        if type(l_v) ~= "string" then
            return false
        end

        if leaf.re_find(l_v, r_v, leaf.re_flags) then
            return true
        end

        return false
    end

    if op == "in" then
        if type(r_v) == "table" then
            for i = 1, #r_v do
                if r_v[i] == l_v then
                    return true
                end
            end
        end

        return false
    end

    if op == "has" then
        if type(l_v) == "table" then
            for i = 1, #l_v do
                if l_v[i] == r_v then
                    return true
                end
            end
        end

        return false
    end

    if op == "ipmatch" then
        return match_cidrs(r_v, l_v)
    end

    local l, r = tonumber(l_v), tonumber(r_v)
    if not l or not r then
        return false
    end

    if op == ">" then
        return l > r
    end

    if op == ">=" then
        return l >= r
    end

    if op == "<" then
        return l < r
    end

    return l <= r
end


local eval_rule


local function eval_leaf(leaf, lookup)
    if leaf.logic then
        return eval_rule(leaf, lookup)
    end

    return compare(leaf, get_var(lookup, leaf.l_v)) ~= leaf.negate
end


-- Does the request (lookup: a function or a table of variables) satisfy the compiled rule?
eval_rule = function(rule, lookup)
    local logic, exprs = rule.logic, rule.exprs
    if not logic then
        return eval_leaf(rule, lookup)
    end

    if logic == "FUNC" then
        -- filter_func(vars): a table view of the lookup, as APISIX passes ngx.var
        local vars = type(lookup) == "table" and lookup
                     or setmetatable({}, { __index = function(_, k) return lookup(k) end })
        local ok, res = pcall(rule.fn, vars)
        return ok and res and true or false
    end

    local any = logic == "OR" or logic == "!OR"
    local result = not any
    for i = 1, #exprs do
        if eval_leaf(exprs[i], lookup) == any then
            result = any
            break
        end
    end

    if logic == "!AND" or logic == "!OR" then
        return not result
    end

    return result
end


_M.eval_rule = eval_rule


-- APISIX's filter_func: src is Lua source of function(vars) -> boolean, checked after vars.
function _M.compile_filter_func(src)
    if type(src) ~= "string" then
        return nil, "filter_func: expected a string"
    end

    local chunk, cerr = loadstring("return " .. src, "=filter_func")
    local ok, fn = pcall(chunk or error, cerr)
    if not chunk or not ok or type(fn) ~= "function" then
        return nil, "filter_func: " .. tostring(cerr or fn or "not a function")
    end

    return { logic = "FUNC", fn = fn }
end


return _M
