-- sluice.metrics: Prometheus metrics counted in the "prometheus-metrics" shared dict, so
-- every worker adds to the same numbers, exposed on metrics.listen at
-- /apisix/prometheus/metrics. Names and labels are APISIX's (see README "Metrics").
--
-- Storage: one shm key per series: "<id>\1<label values joined by \2>" for counters and
-- gauges, plus "\3<bucket index>", "\3s" (sum) and "\3c" (count) suffixes for histograms.
-- Buckets are stored per bucket and made cumulative when collected.
local shared = require("sluice.shared")

-- the C upstream module gives the transfer time unrounded (ctx.var has whole ms, too coarse
-- for an overhead of tens of microseconds); absent outside a worker (unit tests, the master)
local has_upstream, upstream = pcall(require, "sluice.upstream")
if not has_upstream or type(upstream) ~= "table" or type(upstream.info) ~= "function" then
    upstream = nil
end

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

local AI_LABELS = { "request_type", "request_llm_model", "llm_model" }

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


function _M.init()
    dict = shared["prometheus-metrics"]
end


local function trunc(v)
    v = v == nil and "" or tostring(v)
    if #v > 128 then
        v = sub(v, 1, 128)
    end

    return v
end


local function incr(key, n)
    local ok, err = dict:incr(key, n, 0)
    if not ok and err then
        return nil, err
    end

    return ok
end


local function observe(id, labels, buckets, v)
    local key = id .. "\1" .. labels .. "\3"
    local idx = #buckets + 1
    for i = 1, #buckets do
        if v <= buckets[i] then
            idx = i
            break
        end
    end

    incr(key .. idx, 1)
    incr(key .. "s", v)
    incr(key .. "c", 1)
end


local function node_of(ctx)
    local var = ctx.var
    if ctx.picked_ai_instance_name then
        return ctx.picked_ai_instance_name
    end

    local addr = rawget(var, "upstream_addr")
    if not addr or addr == "" then
        return ""
    end

    return (gsub(addr, ":%d+$", ""))
end


-- the common label values of a request, as one string per label set
local function base(ctx)
    local var = ctx.var
    local route = ctx.route
    local service = route and route.service_id or ""
    return {
        route = ctx.route_id and tostring(ctx.route_id) or "",
        service = tostring(service),
        consumer = ctx.consumer_name or "",
        node = node_of(ctx),
        request_type = rawget(var, "request_type") or "traditional_http",
        request_llm_model = trunc(rawget(var, "request_llm_model")),
        llm_model = trunc(rawget(var, "llm_model")),
        matched_uri = route and (route.uri or (route.uris and route.uris[1])) or "",
        matched_host = route and (route.host or (route.hosts and route.hosts[1])) or "",
    }
end


-- label values joined by "\2": plain concatenation (a vararg table per call showed up as a
-- tenth of a streamed request's Lua time, GC included)
local S = "\2"


function _M.record(ctx, info)
    if not dict then
        return
    end

    local b = base(ctx)
    local var = ctx.var
    local code = tostring(info.status)
    local ai = b.request_type ~= "traditional_http"
    local tail = b.consumer .. S .. b.node .. S .. b.request_type .. S .. b.request_llm_model
                 .. S .. b.llm_model

    local source = (ai or rawget(var, "upstream_status")) and "upstream" or "sluice"
    incr("a\1" .. code .. S .. b.route .. S .. b.matched_uri .. S .. b.matched_host .. S
         .. b.service .. S .. tail .. S .. source, 1)

    local request_ms = info.request_time
    local up_ms = tonumber(rawget(var, "upstream_response_time"))
    local up_exact = up_ms
    if upstream and up_ms then
        local ok, _, _, _, total_ms = pcall(upstream.info)
        if ok and type(total_ms) == "number" and total_ms >= 0 then
            up_exact = total_ms
        end
    end

    local rs = b.route .. S .. b.service .. S .. tail
    observe("b", "request" .. S .. rs, MS_BUCKETS, request_ms)
    if up_ms then
        observe("b", "upstream" .. S .. rs, MS_BUCKETS, up_ms)
    end

    local overhead = request_ms - (up_exact or 0)
    if overhead < 0 then
        overhead = 0
    end

    observe("b", "apisix" .. S .. rs, MS_BUCKETS, overhead)
    observe("j", b.route .. S .. b.request_type, OVERHEAD_BUCKETS, overhead / 1000)

    incr("c\1egress" .. S .. rs, info.bytes_sent)
    if info.request_length then
        incr("c\1ingress" .. S .. rs, info.request_length)
    end

    if not ai then
        return
    end

    local service_id = b.service
    local ls = b.route .. S .. service_id .. S .. tail
    local prompt = tonumber(rawget(var, "llm_prompt_tokens")) or 0
    local completion = tonumber(rawget(var, "llm_completion_tokens")) or 0
    incr("e\1" .. ls, prompt)
    incr("f\1" .. ls, completion)
    observe("h", ls, TOKEN_BUCKETS, prompt)
    observe("i", ls, TOKEN_BUCKETS, completion)

    local ttft = tonumber(rawget(var, "llm_time_to_first_token")) or 0
    if ttft ~= 0 and info.status < 400 then
        observe("d", "total" .. S .. ls, MS_BUCKETS, up_ms or request_ms)
        if b.request_type == "ai_stream" then
            observe("d", "ttft" .. S .. ls, MS_BUCKETS, ttft)
        end
    end

    if ctx.upstream_aborted or info.status >= 500 then
        incr("k\1" .. b.route .. S .. b.node .. S .. tostring(ctx.upstream_aborted or info.status),
             1)
    end
end


-- apisix_llm_active_connections: +1 when an AI request goes to a provider, -1 at log
function _M.llm_active(ctx, delta)
    if not dict then
        return
    end

    -- the series chosen at +1 is the one decremented, whatever labels change meanwhile
    local key = ctx._llm_active_key
    if not key then
        local b = base(ctx)
        key = "g\1" .. b.route .. S .. b.route .. S .. b.matched_uri .. S .. b.matched_host
              .. S .. b.service .. S .. b.service .. S .. b.consumer .. S .. b.node .. S
              .. b.request_type .. S .. b.request_llm_model .. S .. b.llm_model
        ctx._llm_active_key = key
    end

    incr(key, delta)
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
