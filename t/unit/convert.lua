-- convert.lua: the JSON encoder; Anthropic Messages -> OpenAI chat (request, response, stream,
-- headers) and the reverse; round trips with tool calls.
local t = require("t.unit.tap")
local cjson = require("cjson.safe")
local convert = require("sluice.ai.convert")
local sse = require("sluice.ai.sse")

local ok, is, is_deeply, like = t.ok, t.is, t.is_deeply, t.like
local A2O, O2A = convert.anthropic_to_openai, convert.openai_to_anthropic
local encode, decode = convert.encode, cjson.decode


-- parse SSE strings produced by a converter into {event, obj}
local function events_of(strings)
    local out = {}
    for _, s in ipairs(strings or {}) do
        for _, ev in ipairs(sse.feed(sse.new(), s)) do
            out[#out + 1] = { event = ev.event, data = ev.data, obj = decode(ev.data) }
        end
    end

    return out
end


local function types_of(evs)
    local out = {}
    for i, e in ipairs(evs) do
        out[i] = e.event
    end

    return out
end


------------------------------------------------------------------------------------------------
-- encoder
------------------------------------------------------------------------------------------------
do
    is(encode({}), "{}", "empty table is an object")
    is(encode(convert.array()), "[]", "marked empty array")
    is(encode({ 1, 2, 3 }), "[1,2,3]", "sequence")
    is(encode({ b = 1, a = 2 }), '{"a":2,"b":1}', "sorted keys")
    is(encode({ [1] = "x", [3] = "y" }), '{"1":"x","3":"y"}', "sparse -> object")
    is(encode("a/b"), '"a/b"', "slash not escaped")
    is(encode("a\\/b"), '"a\\\\/b"', "backslash before slash")
    is(encode('q"\n\t'), '"q\\"\\n\\t"', "escapes")
    is(encode("héllo"), '"héllo"', "UTF-8 kept")
    is(encode(0.7), "0.7", "float")
    is(encode(12345678901234), "12345678901234", "large integer exact")
    is(encode(-3), "-3", "negative integer")
    is(encode(1e300), "1e+300", "huge float")
    is(encode(0 / 0), "null", "NaN -> null")
    is(encode(cjson.null), "null", "cjson.null")
    is(encode(true), "true", "boolean")
    is(encode({ a = { convert.array(), {} } }), '{"a":[[],{}]}', "nested")
    local deep = {}
    local cur = deep
    for _ = 1, 200 do
        cur.x = {}
        cur = cur.x
    end

    local s, err = encode(deep)
    is(s, nil, "too deep fails")
    like(err, "too deep", "error says why")
    is_deeply(decode(encode({ msg = "x/y", n = { 1, 2 } })), { msg = "x/y", n = { 1, 2 } },
              "round trip through cjson")
end


------------------------------------------------------------------------------------------------
-- anthropic -> openai: request
------------------------------------------------------------------------------------------------
do
    local st = {}
    local body = {
        model = "claude-sonnet-4", max_tokens = 1024, metadata = { user_id = "u1" }, top_k = 5,
        thinking = { type = "enabled", budget_tokens = 8000 }, unknown_field = "x",
        temperature = 0.5, top_p = 0.9, stop_sequences = { "END" }, service_tier = "auto",
        messages = { { role = "user", content = "Hello" } },
    }
    local before = t.dump(body)
    local r = A2O.request(body, st)
    is(before, t.dump(body), "client body not modified")
    is(r.model, "claude-sonnet-4", "model")
    is(r.max_completion_tokens, 1024, "max_tokens -> max_completion_tokens")
    is(r.max_tokens, nil, "max_tokens not forwarded")
    is(r.reasoning_effort, "high", "thinking 8000 -> high")
    is(r.user, "u1", "metadata.user_id -> user")
    is(r.top_k, nil, "top_k dropped")
    is(r.unknown_field, nil, "unknown fields dropped")
    is(r.thinking, nil, "thinking not forwarded raw")
    is(r.metadata, nil, "metadata not forwarded")
    is(r.temperature, 0.5, "temperature")
    is(r.top_p, 0.9, "top_p")
    is_deeply(r.stop, { "END" }, "stop_sequences -> stop")
    is(r.service_tier, "auto", "service_tier")
    is_deeply(r.messages, { { role = "user", content = "Hello" } }, "string content")

    for _, c in ipairs({ { 0, "minimal" }, { 1023, "minimal" }, { 1024, "low" }, { 2047, "low" },
                          { 2048, "medium" }, { 4095, "medium" }, { 4096, "high" } }) do
        local x = A2O.request({ messages = { { role = "user", content = "h" } },
                                thinking = { type = "enabled", budget_tokens = c[1] } }, {})
        is(x.reasoning_effort, c[2], "budget " .. c[1] .. " -> " .. c[2])
    end

    is(A2O.request({ messages = { { role = "user", content = "h" } },
                     thinking = { type = "disabled" } }, {}).reasoning_effort, nil, "disabled")
    is(A2O.request({ messages = { { role = "user", content = "h" } },
                     thinking = { type = "adaptive" }, output_config = { effort = "low" } },
                   {}).reasoning_effort, "low", "adaptive uses output_config.effort")
    is(A2O.request({ messages = { { role = "user", content = "h" } },
                     thinking = { type = "adaptive" } }, {}).reasoning_effort, "medium",
       "adaptive default medium")

    local tools = { { name = "f", input_schema = { type = "object" } } }
    local function tc(choice)
        return A2O.request({ messages = { { role = "user", content = "h" } }, tools = tools,
                             tool_choice = choice }, {})
    end

    is(tc({ type = "auto" }).tool_choice, "auto", "tool_choice auto")
    is(tc({ type = "any" }).tool_choice, "required", "tool_choice any -> required")
    is(tc({ type = "none" }).tool_choice, "none", "tool_choice none")
    is_deeply(tc({ type = "tool", name = "f" }).tool_choice,
              { type = "function", ["function"] = { name = "f" } }, "tool_choice tool")
    is(tc({ type = "auto", disable_parallel_tool_use = true }).parallel_tool_calls, false,
       "disable_parallel_tool_use")
    local x = A2O.request({ messages = { { role = "user", content = "h" } },
                            tool_choice = { type = "auto" } }, {})
    is(x.tool_choice, nil, "tool_choice dropped without tools")
    x = A2O.request({ messages = { { role = "user", content = "h" } }, tools = {} }, {})
    is(x.tools, nil, "empty tools: no tools field")
    x = A2O.request({ messages = { { role = "user", content = "h" } }, tools = {
        { type = "computer_20241022", name = "computer" }, { type = "bash_20250124", name = "b" },
        { name = "ok", input_schema = { type = "object", properties = {}, required = {} } } } },
        {})
    is(#x.tools, 1, "built-in tools skipped")
    like(encode(x.tools), '"required":%[%]', "empty required stays an array")

    -- streaming
    x = A2O.request({ messages = { { role = "user", content = "h" } }, stream = true }, {})
    ok(x.stream == true and x.stream_options.include_usage == true, "stream adds include_usage")
    x = A2O.request({ messages = { { role = "user", content = "h" } }, stream = false }, {})
    is(x.stream_options, nil, "no stream_options when not streaming")

    -- system
    x = A2O.request({ system = "Be helpful.", messages = { { role = "user", content = "h" } } }, {})
    is_deeply(x.messages[1], { role = "system", content = "Be helpful." }, "system string")
    x = A2O.request({ system = { { type = "text", text = "A.", cache_control = {
        type = "ephemeral" } }, { type = "text", text = " B." } },
        messages = { { role = "user", content = "h" } } }, {})
    is_deeply(x.messages[1], { role = "system", content = "A. B." }, "system blocks joined")
    x = A2O.request({ system = { { type = "text",
        text = "x-anthropic-billing-header: cc_version=1; cch=abc123;" },
        { type = "text", text = "Rules." } }, messages = { { role = "user", content = "h" } } }, {})
    is(x.messages[1].content, "x-anthropic-billing-header:cc_version=1Rules.",
       "billing header cch removed")

    -- media
    x = A2O.request({ messages = { { role = "user", content = {
        { type = "text", text = "What is this?" },
        { type = "image", source = { type = "base64", media_type = "image/jpeg", data = "abc" } },
        { type = "image", source = { type = "url", url = "https://x/y.png" } },
        { type = "document", source = { type = "base64", media_type = "application/pdf",
                                        data = "JVBER" } } } } } }, {})
    local parts = x.messages[1].content
    is(parts[1].type, "text", "text part")
    is(parts[2].image_url.url, "data:image/jpeg;base64,abc", "base64 image")
    is(parts[3].image_url.url, "https://x/y.png", "url image")
    is(parts[4].image_url.url, "data:application/pdf;base64,JVBER", "pdf document")

    -- tool use / tool result ordering
    x = A2O.request({ messages = {
        { role = "user", content = "weather?" },
        { role = "assistant", content = { { type = "text", text = "Checking." },
            { type = "tool_use", id = "call_1", name = "get_weather", input = { city = "SF" } },
            { type = "tool_use", id = "call_2", name = "get_time", input = {} } } },
        { role = "user", content = { { type = "tool_result", tool_use_id = "call_1",
            content = "Sunny" }, { type = "tool_result", tool_use_id = "call_2",
            content = { { type = "text", text = "noon" } } },
            { type = "text", text = "thanks" } } },
    } }, {})
    is(#x.messages, 5, "user, assistant, tool, tool, user")
    local a = x.messages[2]
    is(a.content, "Checking.", "assistant text alongside tool_calls")
    is(a.tool_calls[1]["function"].name, "get_weather", "tool call name")
    is_deeply(decode(a.tool_calls[1]["function"].arguments), { city = "SF" }, "arguments JSON")
    is(a.tool_calls[2]["function"].arguments, "{}", "empty input -> {}")
    is_deeply(x.messages[3], { role = "tool", tool_call_id = "call_1", content = "Sunny" },
              "tool result")
    is(x.messages[4].content, "noon", "tool result text blocks joined")
    is(x.messages[5].role, "user", "text after tool results comes last")
    x = A2O.request({ messages = { { role = "user", content = { { type = "tool_result",
        tool_use_id = "c", content = { { type = "text", text = "shot" }, { type = "image",
        source = { type = "base64", media_type = "image/png", data = "i" } } } } } } } }, {})
    is(x.messages[1].content[2].type, "image_url", "tool result with an image keeps parts")

    -- tool names
    local long = string.rep("n", 70)
    local st2 = {}
    x = A2O.request({ messages = { { role = "assistant", content = { { type = "tool_use",
        id = "c1", name = "my.tool", input = {} } } } }, tools = {
        { name = "my.tool", input_schema = {} }, { name = long, input_schema = {} },
        { name = "plain_name", input_schema = {} } }, tool_choice = { type = "tool",
        name = "my.tool" } }, st2)
    local n1 = x.tools[1]["function"].name
    ok(n1:match("^my_tool_%x%x%x%x%x%x%x%x$") ~= nil, "dotted name sanitised with a hash: " .. n1)
    ok(#x.tools[2]["function"].name <= 64, "long name truncated")
    is(x.tools[3]["function"].name, "plain_name", "valid name unchanged")
    is(x.messages[1].tool_calls[1]["function"].name, n1, "history uses the same name")
    is(x.tool_choice["function"].name, n1, "tool_choice follows the rename")
    is(st2.tool_name_map[n1], "my.tool", "reverse map kept in state")
    is(convert.openai_tool_name("my.tool", {}), n1, "mapping is stable")
    ok(convert.openai_tool_name("a.b", {}) ~= convert.openai_tool_name("a_b.", {}),
       "different names do not collide")

    -- structured output
    local schema = { type = "object", properties = { a = { type = "string" },
                                                     b = { type = "string" } },
                     required = { "a" } }
    x = A2O.request({ messages = { { role = "user", content = "h" } }, output_config = {
        format = { type = "json_schema", schema = schema } } }, {})
    local out = x.response_format.json_schema
    is(out.name, "structured_output", "schema name")
    is(out.strict, true, "strict")
    is(out.schema.additionalProperties, false, "closed object")
    is_deeply(out.schema.required, { "a", "b" }, "all properties required, sorted")
    is(#schema.required, 1, "client schema not modified")
    x = A2O.request({ messages = { { role = "user", content = "h" } }, output_format = {
        type = "json_schema", schema = { type = "object", properties = { e = { type = "object",
        properties = {} } } } } }, {})
    like(encode(x.response_format), '"required":%[%]', "empty required encodes as []")
    x = A2O.request({ messages = { { role = "user", content = "h" } },
                      output_format = { type = "json_object" } }, {})
    is(x.response_format, nil, "json_object is not mapped")

    -- errors
    is(select(2, A2O.request({ model = "x" }, {})), "missing messages", "no messages")
    is(select(2, A2O.request({ messages = "hi" }, {})), "missing messages", "messages a string")
    is(select(2, A2O.request({ messages = {} }, {})), "missing messages", "empty messages")
    is(select(2, A2O.request({ messages = { "x" } }, {})), "invalid message at index 1",
       "bad message")
    is(select(2, A2O.request({ messages = { { role = "user", content = 5 } } }, {})),
       "invalid message content at index 1", "bad content")
end


------------------------------------------------------------------------------------------------
-- anthropic -> openai: response
------------------------------------------------------------------------------------------------
do
    local st = { model = "claude-x", tool_name_map = { my_tool_abcdef12 = "my.tool" } }
    local r = A2O.response({ id = "chatcmpl-1", model = "gpt-4o", choices = { { index = 0,
        message = { role = "assistant", content = "The answer is 42.",
                    reasoning_content = "Let me think." }, finish_reason = "stop" } },
        usage = { prompt_tokens = 30, completion_tokens = 15, total_tokens = 45,
                  prompt_tokens_details = { cached_tokens = 10,
                                            cache_creation_input_tokens = 5 } } }, st)
    is(r.type, "message", "type message")
    is(r.role, "assistant", "role")
    is(r.model, "claude-x", "model from state (the client's/route's)")
    is(r.content[1].type, "thinking", "reasoning -> thinking block")
    is(r.content[1].signature, "", "empty signature")
    is(r.content[2].text, "The answer is 42.", "text block")
    is(r.stop_reason, "end_turn", "stop -> end_turn")
    is_deeply(r.usage, { input_tokens = 20, output_tokens = 15, cache_read_input_tokens = 10,
                         cache_creation_input_tokens = 5 }, "cached tokens deducted")

    r = A2O.response({ choices = { { message = { content = cjson.null, tool_calls = {
        { id = "call_abc", type = "function", ["function"] = { name = "my_tool_abcdef12",
          arguments = '{"x":1}' } },
        { id = "call_2", ["function"] = { name = "other", arguments = "not json" } },
        { id = "call_3", ["function"] = cjson.null } } }, finish_reason = "tool_calls" } } }, st)
    is(r.stop_reason, "tool_use", "tool_calls -> tool_use")
    is(r.content[1].name, "my.tool", "original tool name restored")
    is_deeply(r.content[1].input, { x = 1 }, "arguments decoded")
    is_deeply(r.content[2].input, {}, "malformed arguments -> {}")
    is(r.content[3].type, "tool_use", "null function tolerated")
    like(encode(r), '"input":{}', "empty input encodes as an object")

    r = A2O.response({ choices = { { message = cjson.null, finish_reason = "length" } },
                       usage = cjson.null }, {})
    is_deeply(r.content, { { type = "text", text = "" } }, "no content -> empty text block")
    is(r.stop_reason, "max_tokens", "length -> max_tokens")
    is_deeply(r.usage, { input_tokens = 0, output_tokens = 0 }, "null usage")

    r = A2O.response({ choices = { { message = { content = "x" } } }, usage = {
        prompt_tokens = 10, completion_tokens = 5, prompt_tokens_details = cjson.null } }, {})
    is_deeply(r.usage, { input_tokens = 10, output_tokens = 5 }, "null details")

    r = A2O.response({ error = { message = "The model does not exist",
                                 type = "invalid_request_error" } }, {})
    is_deeply(r, { type = "error", error = { type = "invalid_request_error",
        message = "The model does not exist" } }, "error converted")
    is(select(2, A2O.response({ choices = {} }, {})), "no choices in response", "no choices")
    is(select(2, A2O.response("x", {})), "response body must be a table", "not a table")
end


------------------------------------------------------------------------------------------------
-- anthropic -> openai: stream (OpenAI chunks in, Anthropic events out)
------------------------------------------------------------------------------------------------
local function a2o_run(chunks, state)
    local ss = A2O.new_stream(state or {})
    local out = {}
    for _, c in ipairs(chunks) do
        local obj = c ~= "[DONE]" and c or nil
        for _, s in ipairs(A2O.stream(ss, "message", obj, c == "[DONE]" and c or nil) or {}) do
            out[#out + 1] = s
        end
    end

    return events_of(out), ss
end

do
    local evs = a2o_run({
        { id = "c1", model = "gpt-4o", choices = { { index = 0, delta = { role = "assistant" },
          finish_reason = cjson.null } } },
        { id = "c1", choices = { { index = 0, delta = { content = "Hello" } } } },
        { id = "c1", choices = { { index = 0, delta = { content = " world" },
          finish_reason = "stop" } }, usage = { prompt_tokens = 5, completion_tokens = 5,
          total_tokens = 10 } },
        "[DONE]",
    }, { model = "claude-3-5" })
    is_deeply(types_of(evs), { "message_start", "content_block_start", "content_block_delta",
        "content_block_delta", "content_block_stop", "message_delta", "message_stop" },
        "event sequence")
    is(evs[1].obj.message.model, "claude-3-5", "message_start model from state")
    like(evs[1].data, '"content":%[%]', "message_start content is []")
    is(evs[3].obj.delta.text, "Hello", "first delta")
    is(evs[6].obj.delta.stop_reason, "end_turn", "stop reason")
    is_deeply(evs[6].obj.usage, { input_tokens = 5, output_tokens = 5 }, "usage in message_delta")

    -- null / empty finish_reason does not stop; usage deferred to the trailing chunk
    local ss
    evs, ss = a2o_run({
        { id = "c", choices = { { delta = { content = "a" }, finish_reason = cjson.null } } },
        { id = "c", choices = { { delta = { content = "b" }, finish_reason = "" } } },
        { id = "c", choices = { { delta = { content = "c" }, finish_reason = "null" } } },
    })
    ok(not ss.done, "null/empty/\"null\" finish_reason keeps the stream open")
    local more = events_of(A2O.stream(ss, "message", { id = "c", choices = { {
        delta = {}, finish_reason = "stop" } } }))
    is_deeply(types_of(more), { "content_block_stop" },
              "finish_reason closes the block, holds stop")
    more = events_of(A2O.stream(ss, "message", { id = "c", choices = {}, usage = {
        prompt_tokens = 9, completion_tokens = 3, prompt_tokens_details = {
        cached_tokens = 4 } } }))
    is_deeply(types_of(more), { "message_delta", "message_stop" }, "usage chunk flushes the stop")
    is_deeply(more[1].obj.usage, { input_tokens = 5, output_tokens = 3,
                                   cache_read_input_tokens = 4 }, "deferred usage merged")
    is(#(A2O.stream(ss, "message", { choices = {} }) or {}), 0, "chunks after stop ignored")
    is(A2O.stream(ss, "message", nil, "[DONE]"), nil, "[DONE] after stop: nothing")

    -- [DONE] right after message_start still closes the message
    evs, ss = a2o_run({ { id = "c", choices = { { delta = { role = "assistant" } } } }, "[DONE]" })
    is_deeply(types_of(evs), { "message_start", "message_delta", "message_stop" },
              "done after message_start emits message_stop")

    -- thinking -> text -> tool with dynamic indexes, names restored
    evs = a2o_run({
        { choices = { { delta = { reasoning_content = "hmm" } } } },
        { choices = { { delta = { content = "ok" } } } },
        { choices = { { delta = { tool_calls = { { index = 0, id = "call_1", type = "function",
          ["function"] = { name = "t_abcd", arguments = "" } } } } } } },
        { choices = { { delta = { tool_calls = { { index = 0, ["function"] = {
          arguments = '{"a":' } } } } } } },
        { choices = { { delta = { tool_calls = { { index = 0, ["function"] = {
          arguments = '1}' } } } } } } },
        { choices = { { delta = { tool_calls = { { index = 1, id = "call_2", ["function"] = {
          name = "u", arguments = "{}" } } } }, finish_reason = "tool_calls" } } },
        "[DONE]",
    }, { tool_name_map = { t_abcd = "t.orig" } })
    is_deeply(types_of(evs), { "message_start", "content_block_start", "content_block_delta",
        "content_block_stop", "content_block_start", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_stop", "message_delta",
        "message_stop" }, "thinking, text, two tools")
    is(evs[2].obj.content_block.type, "thinking", "thinking block")
    is(evs[3].obj.delta.type, "thinking_delta", "thinking delta")
    is(evs[5].obj.index, 1, "text block index 1")
    is(evs[8].obj.content_block.name, "t.orig", "tool name restored")
    like(evs[8].data, '"input":{}', "tool_use input {}")
    is(evs[9].obj.delta.partial_json, '{"a":', "input_json_delta")
    is(evs[12].obj.index, 3, "second tool index 3")
    is(evs[15].obj.delta.stop_reason, "tool_use", "tool_use stop reason")

    -- upstream error chunk
    evs = a2o_run({ { error = { message = "boom", type = "server_error" } } })
    is(evs[1].event, "error", "error event")
    is(evs[1].obj.error.message, "boom", "error message")

    -- finish at EOF without [DONE]
    local ss2 = A2O.new_stream({})
    A2O.stream(ss2, "message", { choices = { { delta = { content = "x" } } } })
    evs = events_of(A2O.finish(ss2))
    is_deeply(types_of(evs), { "content_block_stop", "message_delta", "message_stop" },
              "EOF closes an open message")
    is(A2O.finish(A2O.new_stream({})), nil, "nothing to close before any chunk")
end


------------------------------------------------------------------------------------------------
-- headers
------------------------------------------------------------------------------------------------
do
    local h = { ["x-api-key"] = "k1" }
    A2O.headers(h)
    is(h.authorization, "Bearer k1", "x-api-key -> Bearer")
    is(h["x-api-key"], false, "x-api-key removed")
    h = { ["x-api-key"] = "k1", authorization = "Bearer mine" }
    A2O.headers(h)
    is(h.authorization, "Bearer mine", "configured authorization kept")

    h = { authorization = "Bearer sk-ant" }
    O2A.headers(h)
    is(h["x-api-key"], "sk-ant", "Bearer -> x-api-key")
    is(h.authorization, false, "authorization removed")
    h = { authorization = "Bearer a", ["x-api-key"] = "b" }
    O2A.headers(h)
    is(h["x-api-key"], "b", "configured x-api-key kept")
    is(h.authorization, "Bearer a", "then authorization left alone")
    is_deeply(A2O.drop_prefixes, { "anthropic-", "x-stainless-" }, "A2O drops anthropic-*")
    is_deeply(O2A.drop_prefixes, { "openai-", "x-stainless-" }, "O2A drops openai-*")
end


------------------------------------------------------------------------------------------------
-- openai -> anthropic: request
------------------------------------------------------------------------------------------------
do
    local st = {}
    local body = {
        model = "claude-3", temperature = 1.5, top_p = 0.9, stop = "END", user = "u9",
        n = 2, seed = 7, frequency_penalty = 1, logprobs = true,
        stream = true, stream_options = { include_usage = true },
        messages = {
            { role = "system", content = "Be brief." },
            { role = "developer", content = { { type = "text", text = "No emojis." } } },
            { role = "user", content = "weather in Paris?" },
            { role = "assistant", content = cjson.null, tool_calls = {
                { id = "call_1", type = "function", ["function"] = { name = "get_weather",
                  arguments = '{"city":"Paris"}' } },
                { id = "call_2", type = "function", ["function"] = { name = "get_time",
                  arguments = "oops" } } } },
            { role = "tool", tool_call_id = "call_1", content = "Sunny" },
            { role = "tool", tool_call_id = "call_2", content = { { type = "text",
              text = "noon" } } },
            { role = "user", content = "thanks" },
            { role = "assistant", content = "You're welcome." },
            { role = "user", content = {
                { type = "text", text = "and this?" },
                { type = "image_url", image_url = { url = "data:image/png;base64,iVBOR" } },
                { type = "image_url", image_url = { url = "https://x/y.jpg" } },
                { type = "file", file = { file_data = "data:application/pdf;base64,JVB" } } } },
        },
        tools = { { type = "function", ["function"] = { name = "get_weather",
            description = "d", parameters = { type = "object", properties = {
            city = { type = "string" } }, required = {} } } },
            { type = "function", ["function"] = { name = "get_time" } } },
        tool_choice = "required", parallel_tool_calls = false,
    }
    local before = t.dump(body)
    local r = O2A.request(body, st)
    is(before, t.dump(body), "client body not modified")
    is(r.model, "claude-3", "model")
    is(r.max_tokens, convert.DEFAULT_MAX_TOKENS, "max_tokens defaulted")
    is(r.temperature, 1, "temperature clamped to 1")
    is(r.top_p, 0.9, "top_p")
    is_deeply(r.stop_sequences, { "END" }, "stop string -> stop_sequences")
    is_deeply(r.metadata, { user_id = "u9" }, "user -> metadata.user_id")
    ok(r.n == nil and r.seed == nil and r.frequency_penalty == nil and r.logprobs == nil,
       "unsupported fields dropped")
    is(r.stream, true, "stream")
    is(r.stream_options, nil, "stream_options not sent")
    is(st.include_usage, true, "include_usage remembered for the response")
    is(r.system, "Be brief.\n\nNo emojis.", "system + developer -> system")
    is(#r.messages, 5, "user, assistant, user(results+thanks), assistant, user")
    is(r.messages[1].content, "weather in Paris?", "user string")
    local a = r.messages[2]
    is(a.role, "assistant", "assistant")
    is_deeply(a.content[1], { type = "tool_use", id = "call_1", name = "get_weather",
                              input = { city = "Paris" } }, "tool call -> tool_use")
    is_deeply(a.content[2].input, {}, "bad arguments -> {}")
    local u = r.messages[3]
    is(u.role, "user", "tool results in a user turn")
    is_deeply(u.content[1], { type = "tool_result", tool_use_id = "call_1", content = "Sunny" },
              "tool result string")
    is(u.content[2].content[1].text, "noon", "tool result parts -> blocks")
    is_deeply(u.content[3], { type = "text", text = "thanks" }, "next user words join the turn")
    is_deeply(r.messages[4].content, { { type = "text", text = "You're welcome." } },
              "assistant text block")
    local m = r.messages[5].content
    is_deeply(m[2], { type = "image", source = { type = "base64", media_type = "image/png",
                                                 data = "iVBOR" } }, "data URL image")
    is_deeply(m[3], { type = "image", source = { type = "url", url = "https://x/y.jpg" } },
              "URL image")
    is_deeply(m[4], { type = "document", source = { type = "base64",
        media_type = "application/pdf", data = "JVB" } }, "pdf file -> document")
    is(#r.tools, 2, "tools")
    is(r.tools[1].input_schema.properties.city.type, "string", "parameters -> input_schema")
    like(encode(r.tools[1]), '"required":%[%]', "empty required stays []")
    is_deeply(r.tools[2].input_schema, { type = "object", properties = {} },
              "missing parameters -> empty object schema")
    is_deeply(r.tool_choice, { type = "any", disable_parallel_tool_use = true },
              "required -> any, parallel_tool_calls false")

    local function rq(extra)
        local b = { messages = { { role = "user", content = "h" } } }
        for k, v in pairs(extra) do
            b[k] = v
        end

        return O2A.request(b, {})
    end

    is(rq({ max_tokens = 50 }).max_tokens, 50, "max_tokens")
    is(rq({ max_completion_tokens = 60, max_tokens = 50 }).max_tokens, 60,
       "max_completion_tokens first")
    local x = rq({ reasoning_effort = "medium", max_tokens = 1000, temperature = 0.2 })
    is_deeply(x.thinking, { type = "enabled", budget_tokens = 2048 },
              "reasoning_effort -> thinking")
    is(x.max_tokens, 3048, "max_tokens raised above the budget")
    is(x.temperature, nil, "temperature removed with thinking")
    is(rq({ reasoning_effort = "minimal" }).thinking, nil, "minimal: no thinking")
    is_deeply(rq({ stop = { "a", "b" } }).stop_sequences, { "a", "b" }, "stop array")
    is(rq({ safety_identifier = "s" }).metadata.user_id, "s", "safety_identifier")
    x = rq({ response_format = { type = "json_schema", json_schema = { name = "n",
        schema = { type = "object", properties = {} } } } })
    is_deeply(x.output_config, { format = { type = "json_schema", schema = { type = "object",
        properties = {} } } }, "json_schema -> output_config.format")
    is(rq({ response_format = { type = "json_object" } }).output_config, nil, "json_object dropped")
    local tools = { { type = "function", ["function"] = { name = "f" } } }
    is_deeply(rq({ tools = tools, tool_choice = "auto" }).tool_choice, { type = "auto" }, "auto")
    is_deeply(rq({ tools = tools, tool_choice = "none" }).tool_choice, { type = "none" }, "none")
    is_deeply(rq({ tools = tools, tool_choice = { type = "function", ["function"] = {
        name = "f" } } }).tool_choice, { type = "tool", name = "f" }, "named tool")
    is_deeply(rq({ tools = tools, parallel_tool_calls = false }).tool_choice,
              { type = "auto", disable_parallel_tool_use = true }, "parallel false alone")
    is(rq({ tool_choice = "auto" }).tool_choice, nil, "no tools: no tool_choice")
    is(rq({ tools = { { type = "custom", custom = {} } } }).tools, nil,
       "non-function tools dropped")
    is(rq({ stream = true }).stream, true, "stream without options")

    is(select(2, O2A.request({ messages = {} }, {})), "missing messages", "empty messages")
    is(select(2, O2A.request({}, {})), "missing messages", "no messages")
    is(select(2, O2A.request({ messages = { { role = "system", content = "x" } } }, {})),
       "missing messages", "only a system message")
    is(select(2, O2A.request({ messages = { { content = "x" } } }, {})),
       "invalid message at index 1", "no role")
end


------------------------------------------------------------------------------------------------
-- openai -> anthropic: response
------------------------------------------------------------------------------------------------
do
    local r = O2A.response({ id = "msg_1", type = "message", role = "assistant", model = "claude-3",
        content = { { type = "thinking", thinking = "hmm", signature = "sig" },
                    { type = "text", text = "Let me check." },
                    { type = "tool_use", id = "toolu_1", name = "get_weather",
                      input = { city = "Paris" } } },
        stop_reason = "tool_use", usage = { input_tokens = 20, output_tokens = 8,
        cache_read_input_tokens = 5, cache_creation_input_tokens = 2 } }, { created = 1700 })
    is(r.object, "chat.completion", "object")
    is(r.id, "msg_1", "id")
    is(r.created, 1700, "created from state")
    is(r.model, "claude-3", "model")
    local c = r.choices[1]
    is(c.finish_reason, "tool_calls", "tool_use -> tool_calls")
    is(c.message.content, "Let me check.", "text")
    is(c.message.reasoning_content, "hmm", "thinking -> reasoning_content")
    is(c.message.tool_calls[1]["function"].name, "get_weather", "tool name")
    is_deeply(decode(c.message.tool_calls[1]["function"].arguments), { city = "Paris" },
              "input -> arguments string")
    is_deeply(r.usage, { prompt_tokens = 27, completion_tokens = 8, total_tokens = 35,
        prompt_tokens_details = { cached_tokens = 5, cache_creation_input_tokens = 2 } },
        "usage: prompt includes cache tokens")

    for from, to in pairs({ end_turn = "stop", stop_sequence = "stop", max_tokens = "length",
                            refusal = "content_filter", pause_turn = "stop" }) do
        is(O2A.response({ content = { { type = "text", text = "x" } }, stop_reason = from },
                        {}).choices[1].finish_reason, to, from .. " -> " .. to)
    end

    r = O2A.response({ content = { { type = "tool_use", id = "t", name = "n", input = {} } } }, {})
    is(r.choices[1].message.content, cjson.null, "only tools: content null")
    like(encode(r), '"arguments":"{}"', "empty input -> \"{}\"")
    r = O2A.response({ content = {} }, {})
    is(r.choices[1].message.content, "", "no content: empty string")
    r = O2A.response({ type = "error", error = { type = "overloaded_error",
                                                 message = "Overloaded" } }, {})
    is_deeply(r, { error = { message = "Overloaded", type = "overloaded_error",
        param = cjson.null, code = cjson.null } }, "error converted")
    is(select(2, O2A.response({ id = "x" }, {})), "no content in response", "no content")
end


------------------------------------------------------------------------------------------------
-- openai -> anthropic: stream (Anthropic events in, OpenAI chunks out)
------------------------------------------------------------------------------------------------
local ANTHROPIC_STREAM = {
    { "message_start", { type = "message_start", message = { id = "msg_1", model = "claude-3",
      usage = { input_tokens = 10, output_tokens = 1, cache_read_input_tokens = 3 } } } },
    { "content_block_start", { type = "content_block_start", index = 0,
      content_block = { type = "thinking", thinking = "" } } },
    { "content_block_delta", { type = "content_block_delta", index = 0,
      delta = { type = "thinking_delta", thinking = "plan" } } },
    { "content_block_delta", { type = "content_block_delta", index = 0,
      delta = { type = "signature_delta", signature = "s" } } },
    { "content_block_stop", { type = "content_block_stop", index = 0 } },
    { "content_block_start", { type = "content_block_start", index = 1,
      content_block = { type = "text", text = "" } } },
    { "ping", { type = "ping" } },
    { "content_block_delta", { type = "content_block_delta", index = 1,
      delta = { type = "text_delta", text = "Checking" } } },
    { "content_block_stop", { type = "content_block_stop", index = 1 } },
    { "content_block_start", { type = "content_block_start", index = 2,
      content_block = { type = "tool_use", id = "toolu_1", name = "get_weather", input = {} } } },
    { "content_block_delta", { type = "content_block_delta", index = 2,
      delta = { type = "input_json_delta", partial_json = '{"city":' } } },
    { "content_block_delta", { type = "content_block_delta", index = 2,
      delta = { type = "input_json_delta", partial_json = '"Paris"}' } } },
    { "content_block_stop", { type = "content_block_stop", index = 2 } },
    { "message_delta", { type = "message_delta", delta = { stop_reason = "tool_use" },
      usage = { output_tokens = 12 } } },
    { "message_stop", { type = "message_stop" } },
}

local function o2a_run(stream, state)
    local ss = O2A.new_stream(state)
    local out = {}
    for _, e in ipairs(stream) do
        for _, s in ipairs(O2A.stream(ss, e[1], e[2]) or {}) do
            out[#out + 1] = s
        end
    end

    return out, ss
end

do
    local out = o2a_run(ANTHROPIC_STREAM, { include_usage = true, created = 5 })
    local evs = events_of(out)
    is(evs[#evs].data, "[DONE]", "ends with [DONE]")
    is(evs[1].obj.choices[1].delta.role, "assistant", "first chunk carries the role")
    is(evs[1].obj.id, "msg_1", "id from message_start")
    is(evs[1].obj.object, "chat.completion.chunk", "chunk object")
    is(evs[1].obj.created, 5, "created")
    like(evs[1].data, '"finish_reason":null', "finish_reason null while streaming")
    is(evs[2].obj.choices[1].delta.reasoning_content, "plan", "thinking -> reasoning_content")
    is(evs[3].obj.choices[1].delta.content, "Checking", "text delta")
    local tc = evs[4].obj.choices[1].delta.tool_calls[1]
    is_deeply({ tc.index, tc.id, tc.type, tc["function"].name, tc["function"].arguments },
              { 0, "toolu_1", "function", "get_weather", "" }, "tool call start")
    is(evs[5].obj.choices[1].delta.tool_calls[1]["function"].arguments, '{"city":',
       "arguments delta")
    is(evs[7].obj.choices[1].finish_reason, "tool_calls", "finish reason chunk")
    local last = evs[#evs - 1].obj
    is(#last.choices, 0, "usage chunk has no choices")
    is_deeply(last.usage, { prompt_tokens = 13, completion_tokens = 12, total_tokens = 25,
        prompt_tokens_details = { cached_tokens = 3 } }, "usage chunk")
    is(#evs, 9, "9 chunks")

    out = o2a_run(ANTHROPIC_STREAM, { include_usage = false })
    evs = events_of(out)
    is(#evs, 8, "no usage chunk when the client did not ask")
    is(evs[#evs].data, "[DONE]", "still ends with [DONE]")

    -- text block start with text, error event, EOF without message_stop
    local ss = O2A.new_stream({})
    O2A.stream(ss, "message_start", ANTHROPIC_STREAM[1][2])
    evs = events_of(O2A.stream(ss, "content_block_start", { type = "content_block_start",
        index = 0, content_block = { type = "text", text = "Hi" } }))
    is(evs[1].obj.choices[1].delta.content, "Hi", "initial block text sent")
    evs = events_of(O2A.finish(ss))
    is(evs[1].obj.choices[1].finish_reason, "stop", "EOF: finish chunk")
    is(evs[2].data, "[DONE]", "EOF: [DONE]")
    is(O2A.finish(ss), nil, "finish once")

    ss = O2A.new_stream({})
    evs = events_of(O2A.stream(ss, "error", { type = "error", error = { type = "overloaded_error",
                                                                       message = "busy" } }))
    is(evs[1].obj.error.message, "busy", "error chunk")
    is(evs[2].data, "[DONE]", "then [DONE]")
    is(O2A.stream(ss, "message_stop", { type = "message_stop" }), nil, "nothing after done")
    is(O2A.finish(O2A.new_stream({})), nil, "finish before start: nothing")
    is(O2A.stream(O2A.new_stream({}), "ping", { type = "ping" }), nil, "ping dropped")
end


------------------------------------------------------------------------------------------------
-- round trips
------------------------------------------------------------------------------------------------
do
    -- OpenAI request -> Anthropic -> OpenAI keeps the conversation
    local req = { model = "m", max_tokens = 100, messages = {
        { role = "system", content = "sys" },
        { role = "user", content = "q" },
        { role = "assistant", content = "calling", tool_calls = { { id = "c1",
          type = "function", ["function"] = { name = "f", arguments = '{"a":1}' } } } },
        { role = "tool", tool_call_id = "c1", content = "r1" },
        { role = "assistant", content = "done" } },
        tools = { { type = "function", ["function"] = { name = "f", description = "d",
                    parameters = { type = "object" } } } } }
    local ant = O2A.request(req, {})
    local back = A2O.request(decode(encode(ant)), {})
    is_deeply(back.messages, { { role = "system", content = "sys" },
        { role = "user", content = "q" },
        { role = "assistant", content = "calling", tool_calls = { { id = "c1", type = "function",
          ["function"] = { name = "f", arguments = '{"a":1}' } } } },
        { role = "tool", tool_call_id = "c1", content = "r1" },
        { role = "assistant", content = "done" } }, "messages survive a round trip")
    is(back.max_completion_tokens, 100, "max tokens survive")
    is(back.tools[1]["function"].name, "f", "tools survive")

    -- Anthropic response -> OpenAI -> Anthropic keeps content and usage
    local resp = { id = "msg", type = "message", role = "assistant", model = "m",
        content = { { type = "text", text = "hi" }, { type = "tool_use", id = "t1", name = "f",
                    input = { x = { 1, 2 } } } },
        stop_reason = "tool_use", usage = { input_tokens = 7, output_tokens = 3,
                                            cache_read_input_tokens = 2 } }
    local oai = O2A.response(resp, {})
    local again = A2O.response(decode(encode(oai)), { model = "m" })
    is_deeply(again.content, resp.content, "content round trip")
    is(again.stop_reason, "tool_use", "stop reason round trip")
    is_deeply(again.usage, { input_tokens = 7, output_tokens = 3, cache_read_input_tokens = 2 },
              "usage round trip (cache tokens split back out)")

    -- Anthropic stream -> OpenAI chunks -> Anthropic stream: same text and tool input
    local chunks = o2a_run(ANTHROPIC_STREAM, { include_usage = true })
    local ss = A2O.new_stream({})
    local out = {}
    for _, s in ipairs(chunks) do
        for _, ev in ipairs(sse.feed(sse.new(), s)) do
            local obj = ev.data ~= "[DONE]" and decode(ev.data) or nil
            for _, o in ipairs(A2O.stream(ss, ev.event, obj, ev.data) or {}) do
                out[#out + 1] = o
            end
        end
    end

    local evs = events_of(out)
    local text, json, thinking, tool = {}, {}, {}, nil
    for _, e in ipairs(evs) do
        local o = e.obj
        if e.event == "content_block_delta" then
            if o.delta.type == "text_delta" then
                text[#text + 1] = o.delta.text

            elseif o.delta.type == "input_json_delta" then
                json[#json + 1] = o.delta.partial_json

            elseif o.delta.type == "thinking_delta" then
                thinking[#thinking + 1] = o.delta.thinking
            end

        elseif e.event == "content_block_start" and o.content_block.type == "tool_use" then
            tool = o.content_block
        end
    end

    is(table.concat(text), "Checking", "stream round trip: text")
    is(table.concat(thinking), "plan", "stream round trip: thinking")
    is_deeply(decode(table.concat(json)), { city = "Paris" }, "stream round trip: tool input")
    is(tool and tool.name, "get_weather", "stream round trip: tool name")
    is(evs[#evs].event, "message_stop", "stream round trip: ends with message_stop")
    local md = evs[#evs - 1].obj
    is(md.delta.stop_reason, "tool_use", "stream round trip: stop reason")
    is_deeply(md.usage, { input_tokens = 10, output_tokens = 12, cache_read_input_tokens = 3 },
              "stream round trip: usage")
end


do
    is(convert.get("anthropic-messages", "openai-chat"), A2O, "get A2O")
    is(convert.get("openai-chat", "anthropic-messages"), O2A, "get O2A")
    is(convert.get("openai-chat", "openai-responses"), nil, "no such converter")
end


t.done_testing()
