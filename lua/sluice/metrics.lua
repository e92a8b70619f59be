-- sluice.metrics: Prometheus metrics counted in the "prometheus-metrics" shared dict, so
-- every worker adds to the same numbers, exposed on metrics.listen at
-- /apisix/prometheus/metrics. Names and labels are APISIX's (see README "Metrics").
--
-- Storage: one shm key per series: "<id>\1<label values joined by \2>" for counters and
-- gauges, plus "\3<bucket index>", "\3s" (sum) and "\3c" (count) suffixes for histograms.
-- Buckets are stored per bucket and made cumulative when collected.
local shared = require("sluice.shared")

-- the host gives the transfer time unrounded (ctx.var has whole ms, too coarse for an
-- overhead of tens of microseconds); nil outside a worker (unit tests, the master)
local upinfo = require("sluice.upinfo")

local concat = table.concat
local floor = math.floor
local tostring = tostring
local tonumber = tonumber
local sub = string.sub
local find = string.find
local byte = string.byte
local gsub = string.gsub
local format = string.format

local MS_BUCKETS = { 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000 }
local TOKEN_BUCKETS = { 1, 10, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000,
                        100000, 200000, 500000, 1000000 }
local OVERHEAD_BUCKETS = { 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                           0.025, 0.05, 0.1, 0.25, 0.5, 1 }

-- id -> definition; counters are exposed "untyped": APISIX's names lack the "_total" suffix
-- that promtool's lint requires of counters, and dashboards query these names
local DEFS = {
    { id = "a", name = "apisix_http_status", kind = "untyped",
      help = "HTTP status codes per route in Sluice",
      labels = { "code", "route", "matched_uri", "matched_host", "service", "consumer", "node",
                 "request_type", "request_llm_model", "llm_model", "response_source" } },
    { id = "b", name = "apisix_http_latency", kind = "histogram", buckets = MS_BUCKETS,
      help = "HTTP request latency in milliseconds per route in Sluice",
      labels = { "type", "route", "service", "consumer", "node", "request_type",
                 "request_llm_model", "llm_model" } },
    { id = "c", name = "apisix_bandwidth", kind = "untyped",
      help = "Total bandwidth in bytes consumed per route in Sluice",
      labels = { "type", "route", "service", "consumer", "node", "request_type",
                 "request_llm_model", "llm_model" } },
    { id = "d", name = "apisix_llm_latency", kind = "histogram", buckets = MS_BUCKETS,
      help = "LLM request latency in milliseconds (type total or ttft)",
      labels = { "type", "route_id", "service_id", "consumer", "node", "request_type",
                 "request_llm_model", "llm_model" } },
    { id = "e", name = "apisix_llm_prompt_tokens", kind = "untyped",
      help = "LLM prompt tokens consumed",
      labels = { "route_id", "service_id", "consumer", "node", "request_type",
                 "request_llm_model", "llm_model" } },
    { id = "f", name = "apisix_llm_completion_tokens", kind = "untyped",
      help = "LLM completion tokens consumed",
      labels = { "route_id", "service_id", "consumer", "node", "request_type",
                 "request_llm_model", "llm_model" } },
    { id = "g", name = "apisix_llm_active_connections", kind = "gauge",
      help = "Number of active connections to LLM providers",
      labels = { "route", "route_id", "matched_uri", "matched_host", "service", "service_id",
                 "consumer", "node", "request_type", "request_llm_model", "llm_model" } },
    { id = "h", name = "apisix_llm_prompt_tokens_dist", kind = "histogram",
      buckets = TOKEN_BUCKETS, help = "Distribution of LLM prompt tokens per request",
      labels = { "route_id", "service_id", "consumer", "node", "request_type",
                 "request_llm_model", "llm_model" } },
    { id = "i", name = "apisix_llm_completion_tokens_dist", kind = "histogram",
      buckets = TOKEN_BUCKETS, help = "Distribution of LLM completion tokens per request",
      labels = { "route_id", "service_id", "consumer", "node", "request_type",
                 "request_llm_model", "llm_model" } },
    { id = "j", name = "sluice_gateway_overhead_seconds", kind = "histogram",
      buckets = OVERHEAD_BUCKETS,
      help = "Time spent in the gateway itself, excluding the upstream, streaming included",
      labels = { "route", "request_type" } },
    { id = "k", name = "sluice_llm_requests_failed", kind = "untyped",
      help = "AI requests that got no complete answer from the provider, by reason",
      labels = { "route_id", "node", "reason" } },
}

local BY_ID = {}
for _, d in ipairs(DEFS) do
    BY_ID[d.id] = d
end

local _M = { DEFS = DEFS }

local dict
local pending = {}          -- shm key -> amount not yet added to the shared dict
local npending = 0
local FLUSH_EVERY = 0.5     -- seconds; a scrape sees a worker's counts this late at most
local FLUSH_KEYS = 4096     -- or sooner, when this many series are waiting

-- label keys are built once per (route, node, consumer, request type, models) and kept
-- with the route table, so recording a request allocates nothing
local key_cache = setmetatable({}, { __mode = "k" })
local NO_ROUTE = {}


local function flush()
    if not dict or npending == 0 then
        return
    end

    for key, n in pairs(pending) do
        local ok, err = dict:incr(key, n, 0)
        if not ok and err then
            -- a full zone evicts; losing a series beats blocking a request
            break
        end
    end

    table.clear(pending)
    npending = 0
end
_M.flush = flush


local function add(key, n)
    local cur = pending[key]
    if cur then
        pending[key] = cur + n
        return
    end

    pending[key] = n
    npending = npending + 1
    if npending >= FLUSH_KEYS then
        flush()
    end
end


function _M.init()
    dict = shared["prometheus-metrics"]
    local ok_timer, timer = pcall(require, "sluice.timer")
    if dict and ok_timer then
        timer.every(FLUSH_EVERY, function(premature)
            flush()
        end)
    end
end


local function trunc(v)
    v = v == nil and "" or tostring(v)
    if #v > 128 then
        v = sub(v, 1, 128)
    end

    return v
end


local function join(...)
    return concat({ ... }, "\2")
end


-- the keys of one histogram series: buckets, sum, count
local function hist_keys(id, labels, buckets)
    local base = id .. "\1" .. labels .. "\3"
    local keys = { sum = base .. "s", count = base .. "c" }
    for i = 1, #buckets + 1 do
        keys[i] = base .. i
    end

    return keys
end


local function observe(keys, buckets, v)
    local idx = #buckets + 1
    for i = 1, #buckets do
        if v <= buckets[i] then
            idx = i
            break
        end
    end

    add(keys[idx], 1)
    add(keys.sum, v)
    add(keys.count, 1)
end


local function node_of(ctx)
    if ctx.picked_ai_instance_name then
        return ctx.picked_ai_instance_name
    end

    local addr = rawget(ctx.var, "upstream_addr")
    if not addr or addr == "" then
        return ""
    end

    return addr
end


-- all keys of one label set, built on first use
local function build_keys(ctx, node, consumer, rtype, rmodel, model)
    local route = ctx.route
    local route_id = ctx.route_id and tostring(ctx.route_id) or ""
    local service = route and route.service_id and tostring(route.service_id) or ""
    local muri = route and (route.uri or (route.uris and route.uris[1])) or ""
    local mhost = route and (route.host or (route.hosts and route.hosts[1])) or ""
    node = (gsub(node, ":%d+$", ""))
    rmodel, model = trunc(rmodel), trunc(model)

    local tail = join(consumer, node, rtype, rmodel, model)
    local rs = join(route_id, service, tail)
    local ai = rtype ~= "traditional_http"
    local k = {
        status_prefix = join(route_id, muri, mhost, service, tail),
        status = { apisix = {}, nginx = {}, upstream = {} },
        req = hist_keys("b", join("request", rs), MS_BUCKETS),
        up = hist_keys("b", join("upstream", rs), MS_BUCKETS),
        gw = hist_keys("b", join("apisix", rs), MS_BUCKETS),
        overhead = hist_keys("j", join(route_id, rtype), OVERHEAD_BUCKETS),
        egress = "c\1" .. join("egress", rs),
        ingress = "c\1" .. join("ingress", rs),
        failed = {},
        route_id = route_id,
        node = node,
    }

    if ai then
        local ls = join(route_id, service, tail)
        k.prompt = "e\1" .. ls
        k.completion = "f\1" .. ls
        k.prompt_dist = hist_keys("h", ls, TOKEN_BUCKETS)
        k.completion_dist = hist_keys("i", ls, TOKEN_BUCKETS)
        k.total = hist_keys("d", join("total", ls), MS_BUCKETS)
        k.ttft = hist_keys("d", join("ttft", ls), MS_BUCKETS)
        k.active = "g\1" .. join(route_id, route_id, muri, mhost, service, service, consumer,
                                  node, rtype, rmodel, model)
    end

    return k
end


local function keys_of(ctx)
    local var = ctx.var
    local node = node_of(ctx)
    local consumer = ctx.consumer_name or ""
    local rtype = rawget(var, "request_type") or "traditional_http"
    local rmodel = rawget(var, "request_llm_model") or ""
    local model = rawget(var, "llm_model") or ""

    -- nested lookups: no string is built on the hot path
    local c = key_cache[ctx.route or NO_ROUTE]
    if not c then
        c = {}
        key_cache[ctx.route or NO_ROUTE] = c
    end

    local t = c[node]
    if not t then t = {}; c[node] = t end
    local u = t[consumer]
    if not u then u = {}; t[consumer] = u end
    local v = u[rtype]
    if not v then v = {}; u[rtype] = v end
    local w = v[rmodel]
    if not w then w = {}; v[rmodel] = w end
    local k = w[model]
    if not k then
        k = build_keys(ctx, node, consumer, rtype, rmodel, model)
        w[model] = k
    end

    return k
end


function _M.record(ctx, info)
    if not dict then
        return
    end

    local k = keys_of(ctx)
    local var = ctx.var
    local code = info.status

    -- response_source, as APISIX: "upstream" when the upstream sent a response head,
    -- "nginx" when the request went upstream but no head came back (the gateway's 502/504),
    -- "apisix" when the gateway answered without going upstream (no route, a plugin's exit)
    local src
    if (tonumber(rawget(var, "upstream_status")) or 0) > 0 then
        src = "upstream"
    else
        local addr = rawget(var, "upstream_addr")
        src = (addr and addr ~= "") and "nginx" or "apisix"
    end

    local by_code = k.status[src]
    local skey = by_code[code]
    if not skey then
        skey = "a\1" .. join(tostring(code), k.status_prefix, src)
        by_code[code] = skey
    end

    add(skey, 1)

    local request_ms = info.request_time
    local up_ms = tonumber(rawget(var, "upstream_response_time"))
    observe(k.req, MS_BUCKETS, request_ms)
    if up_ms then
        observe(k.up, MS_BUCKETS, up_ms)
    end

    local up_exact = up_ms
    if up_ms then
        local u = upinfo.read()
        if u and u.total_ms >= 0 then
            up_exact = u.total_ms
        end
    end

    local overhead = request_ms - (up_exact or 0)
    if overhead < 0 then
        overhead = 0
    end

    observe(k.gw, MS_BUCKETS, overhead)
    observe(k.overhead, OVERHEAD_BUCKETS, overhead / 1000)

    add(k.egress, info.bytes_sent)
    if info.request_length then
        add(k.ingress, info.request_length)
    end

    if not k.prompt then
        return
    end

    local prompt = tonumber(rawget(var, "llm_prompt_tokens")) or 0
    local completion = tonumber(rawget(var, "llm_completion_tokens")) or 0
    add(k.prompt, prompt)
    add(k.completion, completion)
    observe(k.prompt_dist, TOKEN_BUCKETS, prompt)
    observe(k.completion_dist, TOKEN_BUCKETS, completion)

    local ttft = tonumber(rawget(var, "llm_time_to_first_token")) or 0
    if ttft ~= 0 and code < 400 then
        observe(k.total, MS_BUCKETS, up_ms or request_ms)
        if rawget(var, "request_type") == "ai_stream" then
            observe(k.ttft, MS_BUCKETS, ttft)
        end
    end

    local reason = ctx.ai_stream_aborted or ctx.upstream_aborted or (code >= 500 and code)
    if reason then
        reason = tostring(reason)
        local fkey = k.failed[reason]
        if not fkey then
            fkey = "k\1" .. join(k.route_id, k.node, reason)
            k.failed[reason] = fkey
        end

        add(fkey, 1)
    end
end


-- apisix_llm_active_connections: +1 when an AI request goes to a provider, -1 at log.
-- A gauge must be current, so it goes to the shared dict at once, not through the worker's
-- batch: a scrape sees an open request at once. open and close are separate functions (one
-- path each, which LuaJIT compiles into its caller's trace; a branch on the sign left the
-- other side to the interpreter on every request).
function _M.llm_active_open(ctx)
    local key = dict and keys_of(ctx).active
    if key then
        ctx._metrics_active = key
        dict:incr(key, 1, 0)
    end
end


-- the -1 goes to the series the +1 went to, whatever changed in between
function _M.llm_active_close(ctx)
    local key = dict and ctx._metrics_active
    if key then
        dict:incr(key, -1, 0)
    end
end


local function escape(v)
    if find(v, '[\\"\n]') then
        v = gsub(v, "\\", "\\\\")
        v = gsub(v, '"', '\\"')
        v = gsub(v, "\n", "\\n")
    end

    return v
end


local function split(s, sep)
    local out, pos = {}, 1
    while true do
        local i = find(s, sep, pos, true)
        if not i then
            out[#out + 1] = sub(s, pos)
            return out
        end

        out[#out + 1] = sub(s, pos, i - 1)
        pos = i + 1
    end
end


local function label_str(def, values, extra)
    local parts = {}
    for i, name in ipairs(def.labels) do
        parts[#parts + 1] = name .. '="' .. escape(values[i] or "") .. '"'
    end

    if extra then
        parts[#parts + 1] = extra
    end

    return "{" .. concat(parts, ",") .. "}"
end


local function num(v)
    if v == floor(v) and v < 1e15 and v > -1e15 then
        return format("%d", v)
    end

    return format("%.17g", v)
end


function _M.collect()
    if not dict then
        return ""
    end

    flush()

    local series = {}       -- id -> {labels string -> {value | hist}}
    for _, key in ipairs(dict:keys(0)) do
        local id = sub(key, 1, 1)
        local def = BY_ID[id]
        if def and byte(key, 2) == 1 then
            local rest = sub(key, 3)
            local s = series[id] or {}
            series[id] = s
            if def.kind == "histogram" then
                local i = find(rest, "\3", 1, true)
                if i then
                    local labels, part = sub(rest, 1, i - 1), sub(rest, i + 1)
                    local h = s[labels] or { buckets = {}, sum = 0, count = 0 }
                    s[labels] = h
                    local v = dict:get(key) or 0
                    if part == "s" then
                        h.sum = v
                    elseif part == "c" then
                        h.count = v
                    else
                        h.buckets[tonumber(part)] = v
                    end
                end
            else
                s[rest] = dict:get(key) or 0
            end
        end
    end

    local out = {}
    for _, def in ipairs(DEFS) do
        local s = series[def.id]
        out[#out + 1] = "# HELP " .. def.name .. " " .. def.help
        out[#out + 1] = "# TYPE " .. def.name .. " " .. def.kind
        if s then
            local keys = {}
            for labels in pairs(s) do
                keys[#keys + 1] = labels
            end

            table.sort(keys)
            for _, labels in ipairs(keys) do
                local values = split(labels, "\2")
                if def.kind == "histogram" then
                    local h = s[labels]
                    local cum = 0
                    for i, le in ipairs(def.buckets) do
                        cum = cum + (h.buckets[i] or 0)
                        out[#out + 1] = def.name .. "_bucket"
                                        .. label_str(def, values, 'le="' .. format("%g", le) .. '"')
                                        .. " " .. num(cum)
                    end

                    cum = cum + (h.buckets[#def.buckets + 1] or 0)
                    out[#out + 1] = def.name .. "_bucket" .. label_str(def, values, 'le="+Inf"')
                                    .. " " .. num(cum)
                    out[#out + 1] = def.name .. "_sum" .. label_str(def, values) .. " "
                                    .. num(h.sum)
                    out[#out + 1] = def.name .. "_count" .. label_str(def, values) .. " "
                                    .. num(h.count)
                else
                    out[#out + 1] = def.name .. label_str(def, values) .. " " .. num(s[labels])
                end
            end
        end
    end

    out[#out + 1] = ""
    return concat(out, "\n")
end


return _M
