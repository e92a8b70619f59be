-- usage.lua: normalised usage per protocol, non-streaming extraction without a full decode,
-- stream accounting (only usage events decoded; every split position), tool calls, terminal
-- events and estimates for streams cut short.
local t = require("t.unit.tap")

-- count decodes: usage.lua caches cjson.decode when loaded, so wrap it first
local cjson = require("cjson.safe")
local real_decode = cjson.decode
local decodes = 0
cjson.decode = function(s)
    decodes = decodes + 1
    return real_decode(s)
end

local usage = require("sluice.ai.usage")
local sse = require("sluice.ai.sse")

local ok, is, is_deeply = t.ok, t.is, t.is_deeply


local function u6(p, c, total, cr, cw, r)
    return { prompt_tokens = p, completion_tokens = c, total_tokens = total,
             cache_read_input_tokens = cr or 0, cache_creation_input_tokens = cw or 0,
             reasoning_tokens = r or 0 }
end


local function run_stream(protocol, pieces, collect)
    local acc = usage.new_stream(protocol, collect)
    local st = sse.new()
    for _, p in ipairs(pieces) do
        usage.scan_stream(acc, st, p)
    end

    usage.finish_stream(acc, st)
    return acc
end


-- normalise / extract per protocol
do
    is_deeply(usage.extract("openai-chat", { usage = { prompt_tokens = 30, completion_tokens = 15,
        total_tokens = 45, prompt_tokens_details = { cached_tokens = 10,
        cache_creation_input_tokens = 5 },
        completion_tokens_details = { reasoning_tokens = 7 } } }),
        u6(30, 15, 45, 10, 5, 7), "openai-chat with details")
    is_deeply(usage.extract("openai-chat", { usage = { prompt_tokens = 3, completion_tokens = 2,
        prompt_cache_hit_tokens = 1 } }), u6(3, 2, 5, 1), "deepseek cache hits, total computed")
    is_deeply(usage.extract("openai-chat", { usage = { prompt_tokens = 3, completion_tokens = 2,
        total_tokens = 5, prompt_tokens_details = cjson.null } }), u6(3, 2, 5),
        "null details")
    is(usage.extract("openai-chat", { usage = cjson.null }), nil, "null usage")
    is(usage.extract("openai-chat", {}), nil, "no usage")
    is(usage.extract("openai-chat", "x"), nil, "not a table")
    is_deeply(usage.extract("openai-responses", { usage = { input_tokens = 20, output_tokens = 5,
        input_tokens_details = { cached_tokens = 4 }, output_tokens_details = {
        reasoning_tokens = 2 } } }), u6(20, 5, 25, 4, 0, 2), "responses")
    is_deeply(usage.extract("openai-embeddings", { usage = { prompt_tokens = 8,
        total_tokens = 8 } }), u6(8, 0, 8), "embeddings")
    is_deeply(usage.extract("anthropic-messages", { usage = { input_tokens = 50,
        output_tokens = 30, cache_creation_input_tokens = 100, cache_read_input_tokens = 200 } }),
        u6(50, 30, 80, 200, 100), "anthropic: total is input + output")
    is_deeply(usage.extract("bedrock-converse", { usage = { inputTokens = 1, outputTokens = 2,
        totalTokens = 3 } }), u6(1, 2, 3), "bedrock")
    is(usage.extract("passthrough", { usage = { prompt_tokens = 1 } }), nil, "passthrough: none")
    local u, raw = usage.extract("openai-chat", { usage = { prompt_tokens = 1 } })
    is(raw and raw.prompt_tokens, 1, "raw usage returned")
    is(u.total_tokens, 1, "total from parts")
end


-- non-streaming bodies: the usage object alone
do
    decodes = 0
    local body = '{"id":"x","choices":[{"message":{"content":"hi \\"usage\\":{1}"}}],'
                 .. '"usage":{"prompt_tokens":23,"completion_tokens":8,"total_tokens":31}}'
    local u, raw, decoded = usage.from_body_string("openai-chat", body)
    is_deeply(u, u6(23, 8, 31), "openai-chat body")
    is(raw.total_tokens, 31, "raw")
    is(decoded, nil, "body not decoded whole")
    is(decodes, 0, "usage object read without cjson (integer counts)")

    local emb = { '{"object":"list","data":[' }
    for i = 1, 2000 do
        emb[#emb + 1] = '{"embedding":[0.1,0.2,0.3],"index":' .. i .. '},'
    end

    emb[#emb + 1] = '{"embedding":[0.4],"index":0}],"model":"e","usage":{"prompt_tokens":8,'
                    .. '"total_tokens":8}}'
    decodes = 0
    u = usage.from_body_string("openai-embeddings", table.concat(emb))
    is_deeply(u, u6(8, 0, 8), "large embeddings body")
    is(decodes, 0, "embeddings: only the usage object read, without cjson")

    decodes = 0
    u = usage.from_body_string("openai-chat", '{"usage":{"prompt_tokens":2,"completion_tokens":1,'
                               .. '"total_tokens":3,"x":1.5}}')
    is_deeply(u, u6(2, 1, 3), "usage object with a fraction")
    is(decodes, 1, "usage object other than integer counts: cjson decodes it")

    local cases = {
        '{"completion_tokens":3,"prompt_tokens":7,"total_tokens":10}', '{}',
        '{"a":{"b":1,"c":{}},"d":0}', '{"a":01}', '{"a":-1}', '{"a":null}', '{"a" :1}',
        '{"a\\"b":1}', '{"a":1,"a":2}', '{"a":123456789012345678}', '{"a":[1]}', '{"a":1,}',
        '{"a":1', '{"a":{"b":{"c":{"d":1}}}}', '{"":1}', '{"a":1e3}', '{"a":true}',
        '{"prompt_tokens":9,"prompt_tokens_details":{"cached_tokens":0},"total_tokens":12}',
    }
    for _, c in ipairs(cases) do
        is_deeply(usage.decode_counts(c), cjson.decode(c), "decode_counts as cjson: " .. c)
    end

    -- a nested "usage" (a tool schema property) before the real one
    local resp = '{"tools":[{"parameters":{"properties":{"usage":{"type":"object"}}}}],'
                 .. '"usage":{"input_tokens":20,"output_tokens":5,"total_tokens":25}}'
    u = usage.from_body_string("openai-responses", resp)
    is_deeply(u, u6(20, 5, 25), "last usage object wins")

    -- usage not last and a later nested one: falls back to a full decode
    local odd = '{"usage":{"input_tokens":1,"output_tokens":2},"content":[{"type":"tool_use",'
                .. '"input":{"usage":{"kind":"x"}}}]}'
    u, raw, decoded = usage.from_body_string("anthropic-messages", odd)
    is_deeply(u, u6(1, 2, 3), "implausible cut-out object: full decode fallback")
    ok(type(decoded) == "table", "decoded body returned by the fallback")

    is(usage.from_body_string("openai-chat", '{"choices":[]}'), nil, "no usage in body")
    is(usage.from_body_string("openai-chat", "not json"), nil, "not JSON")
    is(usage.from_body_string("openai-chat", ""), nil, "empty")
    u = usage.from_body_string("openai-chat", '{"usage" : { "prompt_tokens" : 2 ,'
                                               .. ' "completion_tokens" : 1 } }')
    is_deeply(u, u6(2, 1, 3), "spaced JSON")
end


-- streams
local OPENAI = {
    'data: {"id":"c","choices":[{"delta":{"role":"assistant","content":""}}],"usage":null}\n\n',
    'data: {"id":"c","choices":[{"delta":{"content":"Hello"}}],"usage":null}\n\n',
    'data: {"id":"c","choices":[{"delta":{"content":" world"},"finish_reason":"stop"}],'
    .. '"usage":null}\n\n',
    'data: {"id":"c","choices":[],"usage":{"prompt_tokens":30,"completion_tokens":15,'
    .. '"total_tokens":45,"prompt_tokens_details":{"cached_tokens":10,'
    .. '"cache_creation_input_tokens":5},"completion_tokens_details":{"reasoning_tokens":7}}}\n\n',
    "data: [DONE]\n\n",
}

local ANTHROPIC = {
    "event: message_start\n",
    'data: {"type":"message_start","message":{"id":"m","type":"message","role":"assistant",'
    .. '"content":[],"usage":{"input_tokens":50,"output_tokens":1,'
    .. '"cache_creation_input_tokens":100,"cache_read_input_tokens":200}}}\n\n',
    "event: content_block_start\n",
    'data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n',
    "event: ping\ndata: {\"type\": \"ping\"}\n\n",
    "event: content_block_delta\n",
    'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta",'
    .. '"text":"Hello from Claude!"}}\n\n',
    "event: content_block_stop\n",
    'data: {"type":"content_block_stop","index":0}\n\n',
    "event: message_delta\n",
    'data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},'
    .. '"usage":{"output_tokens":30}}\n\n',
    "event: message_stop\n",
    'data: {"type":"message_stop"}\n\n',
}

local RESPONSES = {
    "event: response.created\n",
    'data: {"type":"response.created","response":{"id":"r","usage":null}}\n\n',
    "event: response.output_text.delta\n",
    'data: {"type":"response.output_text.delta","delta":"Hi there"}\n\n',
    "event: response.completed\n",
    'data: {"type":"response.completed","response":{"output":[{"type":"function_call",'
    .. '"id":"call_1","name":"get_weather","arguments":"{}"}],"usage":{"input_tokens":20,'
    .. '"output_tokens":5,"total_tokens":25,"input_tokens_details":{"cached_tokens":3}}}}\n\n',
}

do
    decodes = 0
    local acc = run_stream("openai-chat", OPENAI, true)
    local u, _, est = usage.finish(acc, 999)
    is_deeply(u, u6(30, 15, 45, 10, 5, 7), "openai stream usage from the final chunk")
    is(est, false, "exact")
    is(decodes, 1 + 2, "decoded: the usage event, plus the two collected text deltas")
    ok(acc.done, "[DONE] seen")
    is(acc.tool_call, false, "no tool call")
    is(usage.text(acc), "Hello world", "collected text")

    decodes = 0
    run_stream("openai-chat", OPENAI)
    is(decodes, 1, "without text collection only the usage event is decoded")

    acc = run_stream("anthropic-messages", ANTHROPIC)
    u, _, est = usage.finish(acc, 999)
    is_deeply(u, u6(50, 30, 80, 200, 100), "anthropic: message_start + message_delta merged")
    is(est, false, "exact")
    ok(acc.done, "message_stop seen")
    is(acc.raw.output_tokens, 30, "raw usage merged: output from message_delta")
    is(acc.raw.input_tokens, 50, "raw usage merged: input from message_start")

    acc = run_stream("openai-responses", RESPONSES, true)
    u = usage.finish(acc)
    is_deeply(u, u6(20, 5, 25, 3), "responses: response.completed")
    ok(acc.tool_call, "responses: function_call detected")
    ok(acc.done, "responses: completed")
    is(usage.text(acc), "Hi there", "responses text")
end


-- the APISIX fixtures (#13662: total = input + output)
do
    local fixture = "event: message_start\n"
        .. 'data: {"type":"message_start","message":{"id":"msg_123","type":"message",'
        .. '"role":"assistant","content":[],"usage":{"input_tokens":10,"output_tokens":0}}}\n\n'
        .. "event: content_block_delta\n"
        .. 'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta",'
        .. '"text":"Hi"}}\n\n'
        .. "event: message_delta\n"
        .. 'data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},'
        .. '"usage":{"output_tokens":8}}\n\n'
        .. "event: message_stop\ndata: {}"
    local acc = run_stream("anthropic-messages", { fixture })
    is_deeply(usage.finish(acc), u6(10, 8, 18), "anthropic fixture: 10 8 18")

    local tools = "event: message_start\n"
        .. 'data: {"type":"message_start","message":{"usage":{"input_tokens":20,'
        .. '"output_tokens":0}}}\n\n'
        .. "event: content_block_start\n"
        .. 'data: {"type":"content_block_start","index":0,"content_block":{"type":"tool_use",'
        .. '"id":"toolu_1","name":"get_weather"}}\n\n'
        .. "event: message_delta\n"
        .. 'data: {"type":"message_delta","delta":{"stop_reason":"tool_use"},'
        .. '"usage":{"output_tokens":5}}\n\n'
    acc = run_stream("anthropic-messages", { tools })
    is_deeply(usage.finish(acc), u6(20, 5, 25), "anthropic tool fixture: 20 5 25")
    ok(acc.tool_call, "anthropic tool_use detected")

    local otools = 'data: {"choices":[{"delta":{"role":"assistant","tool_calls":[{"index":0,'
        .. '"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]},'
        .. '"index":0,"finish_reason":null}],"usage":null}\n\n'
        .. 'data: {"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]},'
        .. '"index":0,"finish_reason":"tool_calls"}],"usage":null}\n\n'
        .. 'data: {"choices":[{"delta":{},"index":0,"finish_reason":null}],"usage":{'
        .. '"prompt_tokens":15,"completion_tokens":10,"total_tokens":25}}\n\n'
        .. "data: [DONE]"
    acc = run_stream("openai-chat", { otools })
    is_deeply(usage.finish(acc), u6(15, 10, 25), "openai tool fixture: 15 10 25")
    ok(acc.tool_call, "openai tool_calls detected")

    acc = run_stream("openai-chat", { 'data: {"choices":[{"delta":{"tool_calls":[]}}]}\n\n' })
    is(acc.tool_call, false, "empty tool_calls array is not a tool call")
end


-- every split position gives the same accounting
do
    for name, spec in pairs({ openai = { "openai-chat", OPENAI },
                              anthropic = { "anthropic-messages", ANTHROPIC },
                              responses = { "openai-responses", RESPONSES } }) do
        local stream = table.concat(spec[2])
        local want = usage.finish(run_stream(spec[1], { stream }))
        local bad
        for i = 2, #stream do
            local got = usage.finish(run_stream(spec[1], { stream:sub(1, i - 1), stream:sub(i) }))
            if t.dump(got) ~= t.dump(want) then
                bad = bad or i
            end
        end

        ok(bad == nil, name .. ": usage identical at every split position"
                       .. (bad and (" (bad " .. bad .. ")") or ""))

        local crlf = stream:gsub("\n", "\r\n")
        bad = nil
        for i = 2, #crlf, 3 do
            local got = usage.finish(run_stream(spec[1], { crlf:sub(1, i - 1), crlf:sub(i) }))
            if t.dump(got) ~= t.dump(want) then
                bad = bad or i
            end
        end

        ok(bad == nil, name .. ": CRLF, usage identical at split positions")
    end
end


-- cut streams: estimates
do
    -- openai cut before the usage chunk: prompt estimated, completion from deltas
    local acc = run_stream("openai-chat", { OPENAI[1], OPENAI[2], OPENAI[3] })
    is(acc.final, false, "no final usage")
    is(acc.deltas, 2, "two non-empty deltas")
    is(acc.text_bytes, 11, "11 bytes of text")
    local u, _, est = usage.finish(acc, 12)
    is(est, true, "estimated")
    is(u.prompt_tokens, 12, "prompt from the request estimate")
    is(u.completion_tokens, 3, "completion: ceil(11/4) = 3 (>= 2 deltas)")
    is(u.total_tokens, 15, "total")

    -- anthropic cut after some text: prompt exact from message_start
    acc = run_stream("anthropic-messages", { ANTHROPIC[1], ANTHROPIC[2], ANTHROPIC[6],
                                             ANTHROPIC[7] })
    u, _, est = usage.finish(acc, 999)
    is(est, true, "anthropic cut: estimated")
    is(u.prompt_tokens, 50, "prompt exact from message_start")
    is(u.cache_read_input_tokens, 200, "cache tokens kept")
    is(u.completion_tokens, 5, "completion: ceil(18/4)")
    is(u.total_tokens, 55, "total")

    -- many one-token deltas: at least one token each
    local pieces = {}
    for i = 1, 10 do
        pieces[i] = 'data: {"choices":[{"delta":{"content":"a"}}]}\n\n'
    end

    u = usage.finish(run_stream("openai-chat", pieces), 0)
    is(u.completion_tokens, 10, "one token per delta at least")

    -- never reported usage, stream ended normally: still estimated
    acc = run_stream("openai-chat", { OPENAI[2], OPENAI[5] })
    u, _, est = usage.finish(acc, 4)
    ok(acc.done and est, "ended without usage: estimated")

    -- nothing at all
    u, _, est = usage.finish(usage.new_stream("openai-chat"), 7)
    is_deeply({ u.prompt_tokens, u.completion_tokens, est }, { 7, 0, true }, "empty stream")
end


-- observe_event (the conversion path)
do
    local acc = usage.new_stream("openai-chat", true)
    local data = '{"choices":[{"delta":{"content":"hey"}}]}'
    usage.observe_event(acc, "message", real_decode(data), data)
    data = '{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}'
    usage.observe_event(acc, "message", real_decode(data), data)
    is_deeply(usage.finish(acc), u6(1, 1, 2), "usage from a decoded event")
    is(usage.text(acc), "hey", "text from the raw data")

    acc = usage.new_stream("anthropic-messages")
    usage.observe_event(acc, nil, { type = "message_start", message = { usage = {
        input_tokens = 3 } } })
    usage.observe_event(acc, nil, { type = "message_delta", usage = { output_tokens = 4 } })
    is_deeply(usage.finish(acc), u6(3, 4, 7), "anthropic type taken from the object")
end


-- merge semantics
do
    local a = usage.zero()
    usage.merge(a, u6(10, 0, 10))
    usage.merge(a, u6(0, 8, 8))
    is_deeply(a, u6(10, 8, 18), "merge keeps earlier non-zero values, recomputes total")
    usage.merge(a, u6(0, 0, 50))
    is(a.total_tokens, 50, "a larger reported total wins")
end


-- prompt estimates
do
    is(usage.estimate_prompt({ messages = { { role = "user", content = "12345678" } } }), 2 + 3,
       "8 bytes -> 2 tokens, plus 3 per message")
    is(usage.estimate_prompt({ messages = { { role = "user", content = { { type = "image_url",
        image_url = { url = "data:image/png;base64," .. string.rep("A", 10000) } },
        { type = "text", text = "abcd" } } } } }), 1 + 3, "image data not counted")
    is(usage.estimate_prompt({ input = "abcdefgh" }), 2, "input string")
    is(usage.estimate_prompt(nil), 0, "no body")
    is(usage.estimate_bytes(0), 0, "0 bytes")
    is(usage.estimate_bytes(5), 2, "5 bytes -> 2")
end


t.done_testing()
