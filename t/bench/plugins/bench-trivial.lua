-- bench-trivial: the cheapest plugin that still runs two phases, for t/bench/core.pl. access
-- sets one log variable, log bumps a worker-local counter; neither allocates nor yields, so
-- what the benchmark measures is the host's cost of entering Lua, not the plugin's.
--
-- With SLUICE_BENCH_LUA_PROFILE=<file> in the environment (core.pl --profile sets it) the
-- worker also runs LuaJIT's sampling profiler and rewrites <file> every PROFILE_EVERY
-- requests: samples by VM state (compiled, interpreted, C, GC, JIT compiler) and by the
-- innermost Lua function and line. The profiler's timer counts the whole process's CPU time
-- and a sample is charged to the Lua code that runs next, so time in the host (event loop,
-- libcurl, the kernel) lands on the line where the request's coroutine had yielded (the
-- upstream proxy and finish calls). The "Lua code" lists leave out samples taken in C and
-- in the GC and show where Lua itself spends; GC samples are listed by the allocating
-- function that ran the GC step, which pays for everyone's garbage. Without the variable
-- the log phase is the bare counter.
local getenv = os.getenv

local PROFILE_EVERY = 20000
local PROFILE_TOP = 25

local _M = {
    name = "bench-trivial",
    version = 1,
    priority = 1,
    schema = { type = "object" },
}

local served = 0            -- requests this worker has logged


function _M.access(_conf, ctx)
    ctx.var.x = 1
end


function _M.log(_conf, _ctx)
    served = served + 1
end


function _M.count()
    return served
end


local profile_file = getenv("SLUICE_BENCH_LUA_PROFILE")
if not profile_file or profile_file == "" then
    return _M
end

local profile = require("jit.profile")

local VMSTATE = { N = "compiled", I = "interpreted", C = "C (host or C function)", G = "GC",
                  J = "JIT compiler" }

local by_state = {}
local own_line = {}
local by_func, own_func, gc_func = {}, {}, {}
local total, own = 0, 0


local function add(counts, key, n)
    counts[key] = (counts[key] or 0) + n
end


local function on_sample(thread, samples, vmstate)
    total = total + samples
    add(by_state, vmstate, samples)
    local line = profile.dumpstack(thread, "pl", 1)
    local func = profile.dumpstack(thread, "pF", 1)
    add(by_func, func, samples)
    if vmstate == "G" then
        add(gc_func, func, samples)

    elseif vmstate ~= "C" then
        own = own + samples
        add(own_line, line, samples)
        add(own_func, func, samples)
    end
end


-- the n biggest entries of counts, as percentages of all samples
local function top(counts, n)
    local keys = {}
    for k in pairs(counts) do
        keys[#keys + 1] = k
    end

    table.sort(keys, function(a, b) return counts[a] > counts[b] end)
    local out = {}
    for i = 1, math.min(n, #keys) do
        out[i] = string.format("%6.2f%%  %s", 100 * counts[keys[i]] / total, keys[i])
    end

    return table.concat(out, "\n")
end


local function write_profile()
    local f = io.open(profile_file, "w")
    if not f then
        return
    end

    local states = {}
    for s, n in pairs(by_state) do
        states[#states + 1] = string.format("%s %.1f%%", VMSTATE[s] or s, 100 * n / total)
    end

    f:write("LuaJIT profiler, 1 ms samples: ", total, " over ", served, " requests\n",
            "VM state: ", table.concat(states, ", "), "\n",
            string.format("Lua code (compiled, interpreted): %.1f%% of samples\n\n",
                          100 * own / total),
            "Lua code by innermost function (% of all samples):\n",
            top(own_func, PROFILE_TOP), "\n\n",
            "Lua code by innermost line:\n", top(own_line, PROFILE_TOP), "\n\n",
            "GC, by the function whose allocation ran the GC step:\n", top(gc_func, 10), "\n\n",
            "all samples by innermost function (host time lands on yield points):\n",
            top(by_func, 12), "\n")
    f:close()
end


profile.start("li1", on_sample)

function _M.log(_conf, _ctx)
    served = served + 1
    if served % PROFILE_EVERY == 0 then
        write_profile()
    end
end


return _M
