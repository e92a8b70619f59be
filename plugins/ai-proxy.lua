-- ai-proxy: proxies OpenAI-compatible (and Anthropic) requests to one LLM provider, relays
-- streams as they arrive and accounts the tokens used. Name, priority and schema as APISIX's.
--
-- access: reads and checks the body, detects the client protocol, picks the protocol spoken
--   to the provider, builds the request (ai/request.lua) and hands it to the core's upstream
--   layer (pdk.upstream.set); the LLM call is libcurl's, not a Lua socket loop.
-- header_filter: strips the provider's account/cookie/CDN headers (the rest, x-request-id,
--   x-ratelimit-*, retry-after ..., reach the client) and picks how the body is handled from
--   the upstream status and Content-Type:
--   raw       429/5xx and other errors, passthrough: bytes untouched, no accounting
--   stream    SSE relayed chunk by chunk unchanged; usage found by a scan that decodes only
--             the usage-carrying event(s) (ai/usage.lua scan_stream)
--   stream_convert  SSE parsed, each event decoded and converted (ai/convert.lua)
--   tee       non-streaming JSON relayed unchanged while the chunks are kept by reference;
--             at the end the usage object is cut out and decoded alone
--   hold      as tee, but held back until the end because max_response_bytes is set (an
--             over-long body is answered 502 instead of cut mid-JSON)
--   convert   non-streaming body collected, decoded, converted, sent at the end
--   The cheapest correct choice: only conversion or a response size limit hold bytes back;
--   usage never does.
-- body_filter: per chunk: TTFT (first complete SSE event; for non-streaming bodies the end,
--   as APISIX), usage, conversion, limits (max_response_bytes,
--   max_stream_duration_ms) through pdk.upstream.abort.
-- log: final llm_* variables; a stream that did not end normally (client gone, limit hit,
--   provider died) or never reported usage is accounted from what was seen, with
--   ctx.var.llm_usage_estimated = true; llm_summary when logging.summaries.
--
-- Per-request state lives in ctx["ai-proxy"]; ai-proxy-multi reuses read_request(),
-- proxy_to() and the phase functions, which read only the shared top-level settings of conf.
local pdk = require("sluice.pdk")
local core_schema = require("sluice.schema")
local cjson = require("cjson.safe")
local ai_schema = require("sluice.ai.schema")
local providers = require("sluice.ai.providers")
local protocols = require("sluice.ai.protocols")
local request = require("sluice.ai.request")
local usage = require("sluice.ai.usage")
local sse = require("sluice.ai.sse")
local convert = require("sluice.ai.convert")

local type = type
local pcall = pcall
local setmetatable = setmetatable
local ipairs = ipairs
local tonumber = tonumber
local tostring = tostring
local find = string.find
-- string.find(s, needle, 1, true) 32 bytes per step, for needles in whole bodies
local find_in = require("sluice.find").find
local sub = string.sub
local concat = table.concat
local decode = cjson.decode
local decode_body = require("sluice.pdk.json").decode  -- the host's fast decoder, then cjson

local NAME = "ai-proxy"
local RELAY, RELAY_BODY, relay_done  -- the core-relayed answer (defined before header_filter)
local relay_body_done, NO_CAPTURE     -- (defined after account_body)
local DEFAULT_MAX_BODY = 67108864
local NO_OUTPUT_MSG = "streaming response completed without producing any output; the "
    .. "upstream likely returned a different stream format than the converter expects"

-- Provider response headers not passed to the client: they name the gateway's provider
-- account, set cookies or transport policy for the provider's domain, or describe its CDN.
-- Everything else passes (x-request-id, openai-processing-ms, x-ratelimit-*, retry-after
-- ...). A denylist, not an allowlist, so headers that plugins running before this one put on
-- the response (CORS, request ids) survive.
local STRIP_HEADERS = {
    ["set-cookie"] = true, ["openai-organization"] = true, ["openai-project"] = true,
    ["anthropic-organization-id"] = true, ["alt-svc"] = true, ["server"] = true,
    ["strict-transport-security"] = true, ["x-envoy-upstream-service-time"] = true,
    ["cf-ray"] = true, ["cf-cache-status"] = true,
}
local STRIP_PREFIXES = { "cf-", "x-envoy-" }
-- compiled once (a pdk without header_set gets the tables)
local STRIP = pdk.response.header_set and pdk.response.header_set(STRIP_HEADERS, STRIP_PREFIXES)
              or STRIP_HEADERS

-- Protocols whose streams carry usage (others are relayed raw).
local STREAM_USAGE = {
    ["openai-chat"] = true, ["anthropic-messages"] = true, ["openai-responses"] = true,
}
local BODY_USAGE = {
    ["openai-chat"] = true, ["anthropic-messages"] = true, ["openai-responses"] = true,
    ["openai-embeddings"] = true,
}

-- A nil local: naming a key with it in a table constructor reserves the key's slot (see
-- sluice/ctx.lua) without giving it a value.
local NONE      -- luacheck: ignore 221 (never set: that is the point)

-- sluice.metrics is loaded on first use: the master loads plugins for schema checks only.
local metrics


-- apisix_llm_active_connections: +1 when the request goes to the provider, -1 at log.
local function load_metrics()
    local ok, m = pcall(require, "sluice.metrics")
    metrics = ok and type(m) == "table" and m.llm_active_open and m or false
    return metrics
end

local function active_open(ctx)
    local m = metrics
    if m == nil then
        m = load_metrics()
    end

    if m then
        m.llm_active_open(ctx)
    end
end

local function active_close(ctx)
    if metrics then
        metrics.llm_active_close(ctx)
    end
end


local _M = {
    name = NAME,
    version = 0.5,
    priority = 1040,
    schema = ai_schema.ai_proxy,
    encrypt_fields = ai_schema.encrypt_fields,
}


-- The clock read afresh (pdk.time.now() is cached per event-loop turn, which may have begun
-- well before this moment): for the start, the first token and the end.
local function fresh_now()
    return pdk.time.update()
end


-- Whole milliseconds; rounded, since now() has ms precision and 0.3 s is 299.99... ms.
local function ms(seconds)
    local v = seconds * 1000 + 0.5
    return v - v % 1                -- floor(v); math.floor here aborted LuaJIT's traces
end


-- A check_schema replaces the loader's schema check (as in APISIX), so it runs it first.
function _M.check_schema(conf)
    local ok, err = core_schema.check(_M.schema, conf)
    if not ok then
        return false, err
    end

    return ai_schema.check_instance(conf)
end


-- read_request(conf, ctx) -> body, raw | nil, status, resp. Checks Content-Type, reads and
-- decodes the body, detects the protocol; sets request_type, request_llm_model and
-- ctx.ai_client_protocol. Statuses and bodies as APISIX's (reference §2.7).
function _M.read_request(conf, ctx)
    local ct = pdk.request.header(ctx, "Content-Type") or "application/json"
    if sub(ct, 1, 16) ~= "application/json" then
        return nil, 400, "unsupported content-type: " .. ct
                         .. ", only application/json is supported"
    end

    local max = conf.max_req_body_size or DEFAULT_MAX_BODY
    local raw, err = pdk.request.get_body(max, ctx)
    if err then
        local status = 400
        local msg = tostring(err)
        if find(msg, "greater than", 1, true) or find(msg, "large", 1, true)
           or find(msg, "size", 1, true) then
            status = 413
            if not find(msg, "greater than the maximum size", 1, true) then
                local cl = tonumber(pdk.request.header(ctx, "Content-Length"))
                if cl then
                    msg = "request size " .. cl .. " is greater than the maximum size "
                          .. max .. " allowed"
                end
            end
        end

        pdk.log.warn("failed to read request body: ", msg)
        return nil, status, { message = "could not get body: " .. msg }
    end

    if raw == nil or raw == "" then
        return nil, 400, { message = "could not get body: request body is empty" }
    end

    -- decoded once, from the bytes in hand (pdk.request.get_json would fetch them again), and
    -- left where get_json finds it for the plugins after this one
    local body = ctx._json_body
    if body == nil then
        -- the conversation left undecoded when big (request.decode_lazy); the body is then
        -- not handed to later plugins as ctx._json_body (pdk.request.get_json decodes it)
        local lazy
        body, lazy = request.decode_lazy(raw)
        if lazy then
            lazy[0] = raw           -- the bytes the offsets point into, whatever set_body does
            ctx._ai_lazy = lazy

        elseif body == nil then
            local v, derr = decode_body(raw)
            if derr then
                return nil, 400, { message = "could not parse JSON request body: " .. derr }
            end

            body = v                -- valid JSON that is not an object: no protocol below
        end

        if type(body) == "table" and not lazy then
            ctx._json_body = body
        end
    end

    if type(body) == "table" and (type(body.model) == "string"
                                  or type(body.model) == "number") then
        ctx.var.request_llm_model = body.model
    end

    local proto = protocols.detect(body, ctx.var.uri or pdk.request.get_path())
    if not proto then
        return nil, 400, "no matching AI protocol for the request"
    end

    ctx.ai_client_protocol = proto
    ctx.var.request_type = protocols.is_streaming(proto, body) and "ai_stream" or "ai_chat"
    return body, raw
end


-- The lazy members of the request body decoded in place (see request.decode_lazy), when
-- something is about to read them. Returns the body.
local function materialize(ctx, body)
    local lazy = ctx._ai_lazy
    if not lazy then
        return body
    end

    ctx._ai_lazy = nil
    local raw = lazy[0]
    lazy[0] = nil
    local ok = raw and request.materialize(body, lazy, raw)
    if not ok then
        -- cannot happen (the bytes were checked as they were skipped): decode it all
        body = raw and decode_body(raw)
    end

    if type(body) == "table" then
        ctx._json_body = body
    end

    return body
end
_M.materialize = materialize


local BUILD_ARGS = {
    instance = NONE, conf = NONE, provider = NONE, endpoint = NONE, client_protocol = NONE,
    target_protocol = NONE, converting = NONE, body = NONE, raw = NONE, uri = NONE,
    query = NONE, method = NONE, client_headers = NONE, state = NONE, fast = NONE,
}


-- The request state (ctx[NAME]): every field the phases set is named in the constructor, so
-- the table is made at its final size; finished requests' tables are emptied and reused (a
-- table of 32 hash slots per request is most of what a request allocated for the GC).
local state_pool = require("sluice.tablepool").new(256)

local function take_state()
    local st = state_pool:take()
    if st then
        return st
    end

    return {
        client = NONE, target = NONE, converter = NONE, cstate = NONE, body = NONE,
        collect = NONE, start = NONE, bytes = NONE, active = NONE, status = NONE,
        streaming = NONE, nonstream = NONE, mode = NONE, failed = NONE, ttft = NONE,
        deadline = NONE, sse = NONE, ss = NONE, acc = NONE, parts = NONE, replace = NONE,
        replaced = NONE, sent = NONE, cut = NONE, eof = NONE, end_time = NONE, invalid = NONE,
        final_usage = NONE, final_raw = NONE, tool_call = NONE, text = NONE,
    }
end


-- the request is over (its log phase ran): nothing reads its state any more
local function release_state(ctx, st)
    ctx[NAME] = nil
    state_pool:put(st)
end


-- override.endpoint parsed once per instance conf (false: none or unparseable).
local endpoints = setmetatable({}, { __mode = "k" })

local function endpoint_of(inst)
    local ep = endpoints[inst]
    if ep == nil then
        local o = inst.override
        ep = type(o) == "table" and o.endpoint ~= nil and ai_schema.parse_endpoint(o.endpoint)
             or false
        endpoints[inst] = ep
    end

    return ep or nil
end


-- proxy_to(conf, inst, ctx, body, raw, instance_name) -> nil | status, body. Routes the
-- client protocol to the provider, builds the upstream request and sets it. `inst` is the
-- ai-proxy conf itself or one ai-proxy-multi instance.
function _M.proxy_to(conf, inst, ctx, body, raw, instance_name)
    local provider, perr = providers.get(inst.provider)
    if not provider then
        return 500, { error_msg = perr }
    end

    local client = ctx.ai_client_protocol
    local ep = endpoint_of(inst)
    local target, converting = protocols.route(client, provider, ep ~= nil and ep.path ~= nil)
    if not target then
        return 400, converting
    end

    local client_headers
    if converting or provider.default_headers then
        client_headers = pdk.request.headers(ctx)
    end

    local query, method
    if target == "passthrough" then
        local uri = pdk.request.get_uri() or ""
        local q = find(uri, "?", 1, true)
        query = q and sub(uri, q + 1) or nil
        method = pdk.request.get_method()
    end

    local logging = conf.logging
    local collect = (type(logging) == "table" and logging.payloads == true)
                    or ctx.llm_collect_response_text == true
    local lazy = ctx._ai_lazy
    if lazy and (converting or collect or request.touches_lazy(inst, target, provider, ep)) then
        body = materialize(ctx, body)
    end

    -- converter state only when converting; build's arguments in one table reused by every
    -- request (build neither yields nor keeps it), emptied of the request's data after
    local cstate = converting and {} or nil
    local a = BUILD_ARGS
    a.instance, a.conf, a.provider, a.endpoint = inst, conf, provider, ep
    a.client_protocol, a.target_protocol, a.converting = client, target, converting
    a.body, a.raw, a.uri = body, raw, ctx.var.uri or pdk.request.get_path()
    a.query, a.method, a.client_headers, a.state = query, method, client_headers, cstate
    a.fast = not collect            -- info.body is only read for tool_count / end_user_id
    local req, info, errbody = request.build(a)
    a.body, a.raw, a.client_headers, a.state, a.query = nil, nil, nil, nil, nil
    if not req then
        if info ~= 400 then
            pdk.log.error("failed to build request: ", errbody and errbody.error_msg)
        end

        return info, errbody
    end

    local var = ctx.var
    local model = request.model(inst, body)
    if model ~= nil then
        var.llm_model = model
    end

    if cstate then
        cstate.model = model
    end
    local stream_req = var.request_type == "ai_stream"
    var.llm_stream = stream_req and "true" or "false"
    var.llm_tool_count = protocols.tool_count(info.body)
    local end_user = protocols.end_user_id(target, info.body)
    if end_user then
        var.llm_end_user_id = end_user
    end

    if collect then
        var.llm_request_body = info.body
    end

    ctx.picked_ai_instance_name = instance_name
    ctx.picked_ai_instance = inst
    ctx.balancer_ip = instance_name
    var.llm_provider_instance = instance_name
    ctx.ai_target_protocol = target
    ctx.ai_converter = info.converter

    if stream_req and conf.max_stream_duration_ms then
        -- a whole-transfer deadline for the core (body_filter only sees a stalled stream
        -- when the next chunk comes); checked per chunk here as well
        req.max_duration = conf.max_stream_duration_ms / 1000
    end

    local now = fresh_now()
    ctx.llm_request_start_time = now
    local st = take_state()
    st.client = client
    st.target = target
    st.converter = info.converter
    st.cstate = cstate
    st.body = body
    st.collect = collect
    st.start = now
    st.bytes = 0
    ctx[NAME] = st

    pdk.upstream.set(ctx, req)
    active_open(ctx)
    st.active = true
    return nil
end


-- "ai-proxy-<provider>" (the instance name in logs and metrics), made once per conf.
local instance_names = setmetatable({}, { __mode = "k" })


function _M.access(conf, ctx)
    local body, raw, resp = _M.read_request(conf, ctx)
    if not body then
        return raw, resp
    end

    local name = instance_names[conf]
    if not name then
        name = "ai-proxy-" .. conf.provider
        instance_names[conf] = name
    end

    return _M.proxy_to(conf, conf, ctx, body, raw, name)
end


-- The response body is over (the last chunk, or the end of a relayed stream). When it ended
-- because the provider's connection broke, or the core's whole-transfer deadline
-- (max_stream_duration_ms, set in proxy_to) ended it before a chunk came to check, the cut
-- is recorded with its reason.
local function body_ended(ctx, st, now)
    st.eof = true
    st.end_time = now or fresh_now()
    ctx.var.llm_request_done = true
    if not ctx.upstream_error or st.cut then
        return
    end

    local reason = "read_error"
    if st.deadline and st.end_time >= st.deadline - 0.01 then
        reason = "max_stream_duration_ms"
        pdk.log.warn("aborting AI stream: max_stream_duration_ms exceeded; bytes=",
                     st.bytes, " duration_ms=", ms(st.end_time - st.start),
                     " route_id=", ctx.var.route_id or "")
    end

    st.cut = reason
    ctx.ai_stream_aborted = reason
end


-- The stream relayed by the core (see header_filter): what the per-chunk path finds, found
-- once in the copy: TTFT (the core timed the first complete event with data), usage, text
-- for the estimate of a cut stream. A copy longer than RELAY_CAPTURE kept its head and its
-- last 16 KB; the scan then picks up again at the tail's first whole event.
local RELAY_CAPTURE = 1024 * 1024
RELAY = { capture = RELAY_CAPTURE, sse = true, plugin = NAME, done = NONE }
RELAY_BODY = { capture = RELAY_CAPTURE, sse = false, plugin = NAME, done = NONE }

relay_done = function(ctx, ok, err, cap)
    local st = ctx[NAME]
    if not st then
        return
    end

    cap = cap or NO_CAPTURE
    if st.nonstream then
        return relay_body_done(ctx, st, ok, err, cap)
    end

    if not st.acc then
        return
    end

    st.bytes = cap.bytes
    if cap.first_event then
        st.ttft = true
        ctx.var.llm_time_to_first_token = ms(cap.first_event - st.start)
    end

    local acc, state = st.acc, st.sse
    local tail = cap.tail
    if ok and not tail and usage.scan_relayed(acc, cap.head) then
        -- a whole stream that ended well: its usage read from its ends
        body_ended(ctx, st)
        return
    end

    if cap.head ~= "" then
        usage.scan_stream(acc, state, cap.head)
    end

    if tail then
        if cap.tail_total > #tail then
            -- bytes in between were not kept: start over at the tail's first event
            state = sse.new()
            st.sse = state
            local b = find(tail, "\n\n", 1, true) or find(tail, "\r\n\r\n", 1, true)
            tail = b and sub(tail, b) or ""
        end

        if tail ~= "" then
            usage.scan_stream(acc, state, tail)
        end
    end

    usage.finish_stream(acc, state)
    if not ok then
        ctx.upstream_error = err
    end

    body_ended(ctx, st)
end
RELAY.done, RELAY_BODY.done = relay_done, relay_done


function _M.header_filter(conf, ctx)
    local st = ctx[NAME]
    if not st then
        return
    end

    local status = tonumber(pdk.response.get_upstream_status(ctx)) or 200
    local ct = pdk.response.get_header("Content-Type") or ""
    st.status = status
    st.streaming = find(ct, "text/event-stream", 1, true) ~= nil
    pdk.response.clear_headers(STRIP, STRIP_PREFIXES)

    if status == 429 or status >= 500 then
        -- the provider's error, with its body and headers; TTFT = time to the error
        st.mode = "raw"
        st.failed = true
        ctx.var.llm_time_to_first_token = ms(fresh_now() - st.start)
        st.ttft = true
        return
    end

    local max_bytes = conf.max_response_bytes
    if st.streaming then
        if conf.max_stream_duration_ms then
            st.deadline = st.start + conf.max_stream_duration_ms / 1000
        end

        if st.converter then
            st.mode = "stream_convert"
            st.sse = sse.new()
            st.ss = st.converter.new_stream(st.cstate)
            st.acc = usage.new_stream(st.target, st.collect)
            pdk.response.set_header("Content-Length", nil)

        elseif STREAM_USAGE[st.target] then
            st.mode = "stream"
            st.sse = sse.new()
            st.acc = usage.new_stream(st.target, st.collect)
            if not max_bytes then
                -- nothing to check per chunk: the core relays the stream and keeps a copy,
                -- read once at the end (when ai-proxy is the route's only body filter)
                ctx.relay = RELAY      -- RELAY.done: relay_done
            end

        else
            st.mode = "raw"
        end

        return
    end

    st.nonstream = true
    if st.converter and status < 500 then
        st.mode = "convert"
        st.parts = {}
        pdk.response.set_header("Content-Length", nil)

    elseif status >= 400 or not BODY_USAGE[st.target] then
        st.mode = "raw"

    elseif max_bytes then
        st.mode = "hold"
        st.parts = {}

    else
        -- the core relays the body and keeps a copy, read once at the end (when ai-proxy is
        -- the route's only body filter; otherwise body_filter collects it, "tee")
        st.mode = "tee"
        st.parts = {}
        ctx.relay = RELAY_BODY
    end

    if max_bytes then
        local cl = tonumber(pdk.response.get_header("Content-Length"))
        if cl and cl > max_bytes then
            pdk.log.warn("aborting AI response: Content-Length ", cl,
                         " exceeds max_response_bytes ", max_bytes)
            st.replace = "max_response_bytes exceeded"
            ctx.ai_stream_aborted = "max_response_bytes"
            pdk.response.set_status(502)
            pdk.response.set_header("Content-Type", "text/plain")
            pdk.response.set_header("Content-Length", nil)
        end
    end
end


-- Stop the upstream transfer: the client's response ends after the current chunk.
local function cut(ctx, st, reason, now)
    st.cut = reason
    st.end_time = now
    ctx.ai_stream_aborted = reason
    ctx.var.llm_request_done = true
    pdk.upstream.abort(ctx, reason)
end


-- Replace a response that has not reached the client yet by a plain-text error. Works when
-- the core still holds the status (nothing sent so far); otherwise the body is just cut.
local function fail_unsent(ctx, st, status, msg, now, reason)
    pcall(pdk.response.set_status, status)
    pcall(pdk.response.set_header, "Content-Type", "text/plain")
    ctx.chunk = msg
    st.replaced = true
    if ctx.eof then
        st.end_time = now
        return
    end

    cut(ctx, st, reason, now)
end


local function set_ttft(ctx, st, now)
    st.ttft = true
    now = now or fresh_now()
    ctx.var.llm_time_to_first_token = ms(now - st.start)
    return now
end


-- TTFT of a stream: when its first complete event with data arrives (not a keep-alive
-- comment, and not the first byte of an event split over several reads).
local function stream_chunk(ctx, st, chunk, eof, now)
    local region = usage.scan_stream(st.acc, st.sse, chunk)
    if not st.ttft and region ~= "" and find(region, "data:", 1, true) then
        set_ttft(ctx, st)
    end

    if eof then
        usage.finish_stream(st.acc, st.sse)
    end
end


local function stream_convert_chunk(ctx, st, chunk, eof, now)
    local events = sse.feed(st.sse, chunk)
    if eof then
        for _, ev in ipairs(sse.flush(st.sse)) do
            events[#events + 1] = ev
        end
    end

    if not st.ttft and events[1] then
        set_ttft(ctx, st)
    end

    local conv, ss, acc = st.converter, st.ss, st.acc
    local out = {}
    for _, ev in ipairs(events) do
        local data = ev.data
        local obj
        if data == "[DONE]" then
            acc.done = true

        elseif data ~= "" then
            obj = decode(data)
            if obj ~= nil then
                usage.observe_event(acc, ev.event, obj, data)
            end
        end

        local res = conv.stream(ss, ev.event, obj, data)
        if res then
            for _, s in ipairs(res) do
                out[#out + 1] = s
            end
        end
    end

    if eof then
        local res = conv.finish(ss)
        if res then
            for _, s in ipairs(res) do
                out[#out + 1] = s
            end
        end
    end

    local s = concat(out)
    if s ~= "" then
        st.sent = true
    end

    ctx.chunk = s
    if eof and not st.sent then
        pdk.log.error(NO_OUTPUT_MSG)
        ctx.var.error_reason = NO_OUTPUT_MSG
        ctx.ai_stream_aborted = "no_output"
        fail_unsent(ctx, st, 502, NO_OUTPUT_MSG, now, "no_output")
    end
end


-- Usage, tool calls and text of a complete non-streaming body of the provider's protocol.
local function account_body(st, s, obj)
    local target = st.target
    local u, raw, decoded, err
    if obj then
        u, raw = usage.extract(target, obj)
        decoded = obj

    else
        u, raw, decoded, err = usage.from_body_string(target, s)
        st.invalid = err
    end

    if u then
        st.final_usage, st.final_raw = u, raw
    end

    local marker = protocols.TOOL_MARKERS[target]
    local need_decode = st.collect or (marker and find_in(s, marker))
    if need_decode and not decoded then
        decoded = decode(s)
    end

    if decoded then
        st.tool_call = protocols.has_tool_call(target, decoded)
        if st.collect then
            st.text = protocols.response_text(target, decoded)
        end
    end
end


-- A non-streaming answer relayed by the core (see header_filter): usage, tool calls and the
-- text found once in the copy. The provider puts usage last, so a body longer than the copy's
-- head has it in the tail.
NO_CAPTURE = { bytes = 0, head = "" }

relay_body_done = function(ctx, st, ok, err, cap)
    st.bytes = cap.bytes
    if not ok then
        ctx.upstream_error = err
    end

    local now = set_ttft(ctx, st)
    local tail = cap.tail
    if tail then
        local u, raw = usage.from_body_string(st.target, tail)
        if u then
            st.final_usage, st.final_raw = u, raw
        end

        local marker = protocols.TOOL_MARKERS[st.target]
        st.tool_call = marker and (find_in(cap.head, marker) or find_in(tail, marker))
                       and true or false

    else
        account_body(st, cap.head)
        if st.invalid and ok then
            pdk.log.warn("provider response is not valid JSON, usage is not available; ",
                         "route_id=", ctx.var.route_id or "", " bytes=", #cap.head)
            ctx.var.error_reason = "provider response is not valid JSON"
        end
    end

    body_ended(ctx, st, now)
end


local function nonstream_chunk(conf, ctx, st, chunk, eof, now)
    local parts = st.parts
    parts[#parts + 1] = chunk
    local mode = st.mode
    if mode ~= "tee" then
        ctx.chunk = ""
    end

    local max_bytes = conf.max_response_bytes
    if max_bytes and st.bytes > max_bytes then
        pdk.log.warn("aborting AI response: body size exceeds max_response_bytes ", max_bytes,
                     " (read ", st.bytes, " bytes)")
        st.parts = nil
        st.cut = "max_response_bytes"
        ctx.ai_stream_aborted = "max_response_bytes"
        if mode ~= "tee" then
            fail_unsent(ctx, st, 502, "max_response_bytes exceeded", now, "max_response_bytes")

        elseif not eof then
            cut(ctx, st, "max_response_bytes", now)
        end

        return
    end

    if not eof then
        return
    end

    set_ttft(ctx, st)
    local s = concat(parts)
    st.parts = nil
    if mode ~= "convert" then
        account_body(st, s)
        if st.invalid and not ctx.upstream_error then
            -- a whole body that is not JSON (a cut one is reported as read_error)
            pdk.log.warn("provider response is not valid JSON, usage is not available; ",
                         "route_id=", ctx.var.route_id or "", " bytes=", #s)
            ctx.var.error_reason = "provider response is not valid JSON"
        end

        if mode == "hold" then
            ctx.chunk = s
        end

        return
    end

    local obj = decode(s)
    if type(obj) ~= "table" then
        pdk.log.warn("failed to decode response from ai service, usage is not available")
        if not ctx.upstream_error then
            ctx.var.error_reason = "provider response is not valid JSON"
        end

        ctx.chunk = s
        return
    end

    account_body(st, s, obj)
    local res, err = st.converter.response(obj, st.cstate)
    local out = res and convert.encode(res)
    if not out then
        pdk.log.warn("failed to convert response: ", err)
        ctx.chunk = s
        return
    end

    ctx.chunk = out
end


function _M.body_filter(conf, ctx)
    local st = ctx[NAME]
    if not st or not st.mode then
        return
    end

    if st.cut or st.replaced then
        ctx.chunk = ""
        return
    end

    local now = pdk.time.now()
    if st.replace then
        fail_unsent(ctx, st, 502, st.replace, now, "max_response_bytes")
        return
    end

    local chunk = ctx.chunk or ""
    local eof = ctx.eof
    st.bytes = st.bytes + #chunk
    local mode = st.mode

    if mode == "stream" then
        stream_chunk(ctx, st, chunk, eof, now)

    elseif mode == "stream_convert" then
        stream_convert_chunk(ctx, st, chunk, eof, now)

    elseif mode == "raw" then
        if not st.ttft and #chunk > 0 then
            set_ttft(ctx, st)
        end

    else
        nonstream_chunk(conf, ctx, st, chunk, eof, now)
    end

    if eof then
        body_ended(ctx, st)
        return
    end

    if st.cut or mode == "tee" or mode == "hold" or mode == "convert" then
        return                      -- cut already, or limited in nonstream_chunk
    end

    local max_bytes = conf.max_response_bytes
    local reason
    if st.deadline and now >= st.deadline then
        reason = "max_stream_duration_ms"

    elseif max_bytes and st.bytes > max_bytes then
        reason = "max_response_bytes"
    end

    if reason then
        pdk.log.warn("aborting AI stream: ", reason, " exceeded; bytes=", st.bytes,
                     " duration_ms=", ms(now - st.start), " route_id=",
                     ctx.var.route_id or "")
        if mode == "stream_convert" and not st.sent then
            -- nothing reached the client yet: answer with the limit, as APISIX does
            st.cut = reason
            fail_unsent(ctx, st, reason == "max_stream_duration_ms" and 504 or 502,
                        reason .. " exceeded", now, reason)
            return
        end

        cut(ctx, st, reason, now)
    end
end


-- Final usage: exact, or estimated from what was seen when the response was cut short.
local function final_usage(ctx, st)
    local acc = st.acc
    local info = ctx.log_info
    if st.cut == "read_error" and info and info.client_gone then
        -- the core ended the transfer because the client left: not the provider's fault
        st.cut = "client_disconnect"
        ctx.ai_stream_aborted = st.cut
    end

    if acc then
        if not st.eof and not st.cut then
            st.cut = ctx.ai_stream_aborted
                     or (info and info.client_gone and "client_disconnect") or "read_error"
            ctx.ai_stream_aborted = st.cut
        end

        local prompt = 0
        if not acc.final then
            st.body = materialize(ctx, st.body)
            prompt = usage.estimate_prompt(st.body)
        end

        local u, raw, estimated = usage.finish(acc, prompt)
        return u, raw, estimated, acc.tool_call, usage.text(acc)
    end

    if st.final_usage then
        return st.final_usage, st.final_raw, false, st.tool_call, st.text
    end

    if st.nonstream and (not st.eof or st.cut) and not st.failed and BODY_USAGE[st.target] then
        -- a non-streaming answer cut short: the provider billed it all; estimate
        local u = usage.zero()
        st.body = materialize(ctx, st.body)
        u.prompt_tokens = usage.estimate_prompt(st.body)
        u.completion_tokens = usage.estimate_bytes(st.bytes)
        u.total_tokens = u.prompt_tokens + u.completion_tokens
        return u, nil, true, st.tool_call, st.text
    end

    return usage.zero(), nil, false, st.tool_call, st.text
end


function _M.log(conf, ctx)
    local st = ctx[NAME]
    if not st then
        return
    end

    local var = ctx.var
    local now = pdk.time.now()
    if st.active then
        st.active = false
        active_close(ctx)
    end

    local u, raw, estimated, tool_call, text
    if st.mode then
        u, raw, estimated, tool_call, text = final_usage(ctx, st)

    else
        u = usage.zero()            -- the provider never answered
    end

    ctx.ai_token_usage = u
    ctx.llm_raw_usage = raw
    var.llm_prompt_tokens = u.prompt_tokens
    var.llm_completion_tokens = u.completion_tokens
    var.llm_total_tokens = u.total_tokens
    var.llm_cache_read_input_tokens = u.cache_read_input_tokens
    var.llm_cache_creation_input_tokens = u.cache_creation_input_tokens
    var.llm_reasoning_tokens = u.reasoning_tokens
    if estimated then
        var.llm_usage_estimated = true
        pdk.log.info("AI usage estimated (", ctx.ai_stream_aborted or "provider reported none",
                     "): prompt_tokens=", u.prompt_tokens, " completion_tokens=",
                     u.completion_tokens, " route_id=", var.route_id or "")
    end

    var.llm_has_tool_calls = tool_call and "true" or "false"
    if text then
        var.llm_response_text = text
    end

    if not st.ttft then
        var.llm_time_to_first_token = 0
    end

    var.apisix_upstream_response_time = ms((st.end_time or now) - st.start)

    local logging = conf.logging
    if type(logging) ~= "table" then
        release_state(ctx, st)
        return
    end

    if logging.summaries then
        local summary = {
            request_model = var.request_llm_model,
            model = var.llm_model,
            duration = var.llm_time_to_first_token,
            prompt_tokens = u.prompt_tokens,
            completion_tokens = u.completion_tokens,
            total_tokens = u.total_tokens,
            upstream_response_time = var.apisix_upstream_response_time,
            stream = var.llm_stream,
            tool_count = var.llm_tool_count,
            has_tool_calls = var.llm_has_tool_calls,
            end_user_id = var.llm_end_user_id,
            cache_read_input_tokens = u.cache_read_input_tokens,
            cache_creation_input_tokens = u.cache_creation_input_tokens,
            reasoning_tokens = u.reasoning_tokens,
            content_risk_level = var.llm_content_risk_level,
            usage_estimated = estimated or nil,
        }
        var.llm_summary = summary
        ctx.llm_summary = summary
    end

    if logging.payloads then
        ctx.llm_request = {
            messages = protocols.request_content(st.client, st.body),
            stream = var.request_type == "ai_stream",
        }
        ctx.llm_response_text = { content = text }
    end

    release_state(ctx, st)
end


return _M
