-- sluice.plugin: loading plugins from disk (plugin_paths first, then the bundled plugins/),
-- re-loading them, checking a plugin's configuration, and running a phase over a route's
-- plugin list in priority order (highest first). Each phase call is protected: a plugin
-- that throws is logged with its name and traceback and the client gets a JSON 500.
local schema_ok, schema = pcall(require, "sluice.schema")

local pairs = pairs
local ipairs = ipairs
local type = type
local sort = table.sort
local xpcall = xpcall
local traceback = debug.traceback

local PHASES = { "rewrite", "access", "header_filter", "body_filter", "log" }

local _M = { PHASES = PHASES }

local plugins = {}          -- name -> module
local names = {}            -- enabled names, in configuration order
local search = {}           -- directories, first match wins
local generation = 0


local function file_exists(path)
    local f = io.open(path, "rb")
    if f then
        f:close()
        return true
    end

    return false
end


local function load_one(name)
    for _, dir in ipairs(search) do
        local path = dir .. "/" .. name .. ".lua"
        if file_exists(path) then
            local chunk, err = loadfile(path)
            if not chunk then
                return nil, "failed to load plugin [" .. name .. "]: " .. err
            end

            local ok, mod = pcall(chunk, name)
            if not ok then
                return nil, "failed to load plugin [" .. name .. "]: " .. tostring(mod)
            end

            if type(mod) ~= "table" then
                return nil, "plugin [" .. name .. "] must return a table"
            end

            mod.name = mod.name or name
            mod.priority = mod.priority or 0
            mod.schema = mod.schema or { type = "object" }
            return mod
        end
    end

    return nil, "plugin [" .. name .. "] not found in " .. table.concat(search, ", ")
end


-- conf: the normalised node configuration (plugins, plugin_paths); home: install dir
function _M.init(conf, home)
    search = {}
    for _, dir in ipairs(conf.plugin_paths or {}) do
        search[#search + 1] = dir
    end

    search[#search + 1] = home .. "/plugins"
    names = conf.plugins or {}
    return _M.load_all()
end


-- (re)loads every enabled plugin; on any failure nothing changes
function _M.load_all()
    local next_plugins = {}
    for _, name in ipairs(names) do
        local mod, err = load_one(name)
        if not mod then
            -- a bundled name that does not exist (yet) is skipped, a broken file is fatal
            if not err:find("not found", 1, true) then
                return nil, err
            end
        else
            next_plugins[name] = mod
        end
    end

    plugins = next_plugins
    generation = generation + 1
    return true
end


function _M.generation()
    return generation
end


function _M.get(name)
    return plugins[name]
end


function _M.list()
    local list = {}
    for _, name in ipairs(names) do
        if plugins[name] then
            list[#list + 1] = name
        end
    end

    return list
end


-- validates (and fills defaults of) one plugin's configuration
function _M.check_conf(name, conf, schema_type)
    local mod = plugins[name]
    if not mod then
        return nil, "unknown plugin [" .. name .. "]"
    end

    if type(conf) ~= "table" then
        return nil, "failed to check the configuration of plugin " .. name
                    .. " err: wrong type: expected object, got " .. type(conf)
    end

    local s = mod.schema
    if schema_type == "metadata" then
        s = mod.metadata_schema or { type = "object" }
    elseif schema_type == "consumer" then
        s = mod.consumer_schema or mod.schema
    end

    if schema_ok then
        local ok, err = schema.check(s, conf)
        if not ok then
            return nil, "failed to check the configuration of plugin " .. name .. " err: " .. err
        end
    end

    if mod.check_schema and schema_type ~= "metadata" then
        local ok, err = mod.check_schema(conf, schema_type)
        if not ok and err then
            return nil, "failed to check the configuration of plugin " .. name .. " err: " .. err
        end
    end

    return true
end


local function by_priority(a, b)
    if a.priority ~= b.priority then
        return a.priority > b.priority
    end

    return a.name < b.name
end


-- builds the ordered list for a set of plugin configurations {name = conf}; later tables
-- win for the same name (global < service < plugin_config < route < consumer)
function _M.build(...)
    local merged = {}
    for i = 1, select("#", ...) do
        local set = select(i, ...)
        if set then
            for name, conf in pairs(set) do
                if type(conf) == "table" and not (conf._meta and conf._meta.disable) then
                    merged[name] = conf
                end
            end
        end
    end

    local list = {}
    for name, conf in pairs(merged) do
        local mod = plugins[name]
        if mod then
            list[#list + 1] = { name = name, mod = mod, conf = conf, priority = mod.priority }
        end
    end

    sort(list, by_priority)

    local has, only = {}, {}
    local n_body_filter = 0
    for _, phase in ipairs(PHASES) do
        has[phase] = false
        local n = 0
        for _, p in ipairs(list) do
            if p.mod[phase] then
                has[phase] = true
                n = n + 1
                only[phase] = n == 1 and p or false
                if phase == "body_filter" then
                    n_body_filter = n_body_filter + 1
                    list.body_filter_plugin = p.name
                end
            end
        end
    end

    list.has = has
    list.only = only                        -- the phase's one plugin, when it has one
    list.n_body_filter = n_body_filter      -- serve() lets a lone body_filter relay in C
    list.generation = generation
    return list
end


local current_plugin

local function on_error(err)
    return traceback(tostring(err), 2)
end


-- runs one plugin's phase; returns status, body, name when a plugin ends the request (rewrite
-- and access). Unprotected: a pcall frame here ended LuaJIT's traces in every plugin (a trace
-- that starts inside a phase function cannot return through it), which left much of each
-- request to the interpreter. A throw ends the request's coroutine instead, and the host runs
-- sluice.init.http_request_failed, which reads `p` and `phase` from this frame
-- (_M.failed_call) to log, answer and finish as the old per-call pcall did.
local function call(p, fn, phase, ctx)
    current_plugin = p.name
    local code, body = fn(p.conf, ctx)
    current_plugin = nil
    if code and (phase == "rewrite" or phase == "access") then
        return code, body, p.name
    end

    return nil
end


function _M.run(list, phase, ctx)
    if not list.has[phase] then
        return nil
    end

    -- one plugin (the usual case): no loop, so the JIT compiles the call in line instead of
    -- aborting a trace that leaves a one-pass loop
    local one = list.only and list.only[phase]
    if one then
        local fn = one.mod[phase]
        if fn then
            return call(one, fn, phase, ctx)
        end

        return nil
    end

    for i = 1, #list do
        local p = list[i]
        local fn = p.mod[phase]
        if fn then
            local code, body, name = call(p, fn, phase, ctx)
            if code then
                return code, body, name
            end
        end
    end

    return nil
end


-- frame_locals(co, fn, a, b): the values of the locals named a and b in the innermost frame
-- of fn on the stack of the coroutine co (a dead request coroutine: see
-- sluice.init.http_request_failed), or nothing when fn is not on it.
function _M.frame_locals(co, fn, a, b)
    for level = 0, 200 do
        local info = debug.getinfo(co, level, "f")
        if not info then
            break
        end

        if info.func == fn then
            local va, vb
            for i = 1, 50 do
                local name, v = debug.getlocal(co, level, i)
                if not name then
                    break
                end

                if name == a then
                    va = v
                elseif name == b then
                    vb = v
                end
            end

            return va, vb
        end
    end

    return nil
end


-- The plugin call a dead request coroutine failed in: p, phase (nil when it failed outside
-- any plugin's phase). The throw skipped call()'s reset of the running plugin's name (which
-- pdk.log puts before messages): it is reset here.
function _M.failed_call(co)
    current_plugin = nil
    return _M.frame_locals(co, call, "p", "phase")
end


-- The phase of the plugins after `after` (all of them when nil), each one protected: for the
-- rest of a log phase after a plugin failed in it. Failures are logged with log(...).
function _M.run_protected(list, phase, ctx, log, after)
    local skipping = after ~= nil
    for i = 1, #list do
        local p = list[i]
        local fn = p.mod[phase]
        if not skipping and fn then
            current_plugin = p.name
            local ok, err = xpcall(fn, on_error, p.conf, ctx)
            current_plugin = nil
            if not ok then
                log("plugin ", p.name, " failed in ", phase, ": ", err)
            end
        end

        if p == after then
            skipping = false
        end
    end
end


function _M.current()
    return current_plugin
end


return _M
