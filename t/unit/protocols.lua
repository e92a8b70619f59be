-- protocols.lua: client protocol detection for each path/body shape, streaming flag, routing to
-- each provider (native, converter, passthrough, errors), request/response helpers; and the
-- provider data files and the schema helpers they rely on.
local t = require("t.unit.tap")
local cjson = require("cjson.safe")
local protocols = require("sluice.ai.protocols")
local providers = require("sluice.ai.providers")
local schema = require("sluice.ai.schema")

local ok, is, is_deeply = t.ok, t.is, t.is_deeply


-- detection
local CASES = {
    { "/v1/chat/completions", { messages = {} }, "openai-chat" },
    { "/anything", { model = "x", messages = { { role = "user", content = "hi" } } },
      "openai-chat" },
    { "/v1/messages", { model = "claude", messages = {} }, "anthropic-messages" },
    { "/v1/messages", { model = "claude" }, "anthropic-messages" },
    { "/proxy/v1/messages", { foo = 1 }, "anthropic-messages" },
    { "/v1/messages/count_tokens", { messages = {} }, "openai-chat" },
    { "/v1/responses", { input = "hi" }, "openai-responses" },
    { "/v1/responses", { input = { { role = "user", content = "hi" } } }, "openai-responses" },
    { "/v1/responses", { messages = {} }, "openai-chat" },
    { "/v1/responses", { model = "x" }, "passthrough" },
    { "/v1/embeddings", { input = "text" }, "openai-embeddings" },
    { "/anything", { input = { "a", "b" } }, "openai-embeddings" },
    { "/anything", { input = cjson.null }, "openai-embeddings" },
    { "/model/x/converse", { messages = {} }, "bedrock-converse" },
    { "/model/x/converse", { input = "x" }, "openai-embeddings" },
    { "/v1/images/generations", { prompt = "a cat", model = "dall-e" }, "passthrough" },
    { "/v1/chat/completions", { model = "gpt-4" }, "passthrough" },
    { "/v1/chat/completions", { messages = "hello" }, "passthrough" },
    { "/v1/chat/completions", {}, nil },
    { "/v1/messages", "string body", nil },
    { "/v1/chat/completions", 42, nil },
    { "/v1/chat/completions", nil, nil },
}

for _, c in ipairs(CASES) do
    is(protocols.detect(c[2], c[1]), c[3],
       "detect " .. c[1] .. " " .. (type(c[2]) == "table" and t.dump(c[2]) or tostring(c[2])))
end

is(protocols.detect({ messages = {} }, nil), "openai-chat", "no path: body decides")

-- streaming flag
do
    ok(protocols.is_streaming("openai-chat", { stream = true }), "chat stream true")
    ok(not protocols.is_streaming("openai-chat", { stream = "true" }), "only boolean true")
    ok(not protocols.is_streaming("openai-chat", {}), "absent")
    ok(protocols.is_streaming("anthropic-messages", { stream = true }), "anthropic")
    ok(protocols.is_streaming("openai-responses", { stream = true }), "responses")
    ok(protocols.is_streaming("passthrough", { stream = true }), "passthrough")
    ok(not protocols.is_streaming("openai-embeddings", { stream = true }), "embeddings never")
end


-- routing
local function route(client, provider, has_path)
    local p = assert(providers.get(provider))
    return { protocols.route(client, p, has_path) }
end

is_deeply(route("openai-chat", "openai"), { "openai-chat", false }, "openai: chat native")
is_deeply(route("openai-responses", "openai"), { "openai-responses", false },
          "openai: responses native")
is_deeply(route("openai-embeddings", "openai"), { "openai-embeddings", false },
          "openai: embeddings native")
is_deeply(route("anthropic-messages", "openai"), { "openai-chat", true },
          "openai: anthropic clients converted to chat")
is_deeply(route("anthropic-messages", "openai-compatible"), { "openai-chat", true },
          "openai-compatible: anthropic converted")
is_deeply(route("anthropic-messages", "anthropic"), { "anthropic-messages", false },
          "anthropic: messages native")
is_deeply(route("openai-chat", "anthropic"), { "anthropic-messages", true },
          "anthropic: chat clients served by the Messages API (reverse converter)")
is_deeply(route("openai-chat", "anthropic", true), { "openai-chat", false },
          "anthropic with an endpoint path: chat sent as is")
is_deeply(route("passthrough", "deepseek"), { "passthrough", false }, "passthrough")
is_deeply(route("openai-chat", "azure-openai"), { "openai-chat", false }, "azure chat")
is_deeply(route("openai-responses", "deepseek"),
          { nil, "provider deepseek does not support openai-responses protocol "
                 .. "(supported: openai-chat)" }, "deepseek: no responses")
is_deeply(route("openai-embeddings", "anthropic"),
          { nil, "provider anthropic does not support openai-embeddings protocol "
                 .. "(supported: anthropic-messages, openai-chat)" },
          "anthropic: no embeddings, supported list sorted")
is_deeply(route("bedrock-converse", "openai"),
          { nil, "provider openai does not support bedrock-converse protocol (supported: "
                 .. "openai-chat, openai-embeddings, openai-responses)" }, "bedrock clients")
is_deeply(route("anthropic-messages", "gemini"), { "openai-chat", true }, "gemini converted")


-- helpers
do
    is(protocols.end_user_id("openai-chat", { user = "u1" }), "u1", "chat user")
    is(protocols.end_user_id("openai-chat", { user = "u1", safety_identifier = "s1" }), "s1",
       "safety_identifier first")
    is(protocols.end_user_id("openai-responses", { user = "u2" }), "u2", "responses user")
    is(protocols.end_user_id("anthropic-messages", { metadata = { user_id = "a1" } }), "a1",
       "anthropic metadata.user_id")
    is(protocols.end_user_id("anthropic-messages", { user = "x" }), nil, "anthropic ignores user")
    is(protocols.end_user_id("passthrough", { user = "x" }), nil, "passthrough none")

    is(protocols.tool_count({ tools = { {}, {} } }), 2, "two tools")
    is(protocols.tool_count({}), 0, "no tools")

    is(protocols.request_content("openai-chat", { messages = { 1 } })[1], 1, "chat content")
    is(protocols.request_content("openai-responses", { input = "x" }), "x", "responses input")
    is(protocols.request_content("passthrough", { input = "x" }), nil, "passthrough none")

    is(protocols.response_text("openai-chat", { choices = {
        { message = { content = "a" } }, { message = { content = "b" } } } }), "a b",
       "chat texts space-joined")
    is(protocols.response_text("anthropic-messages", { content = {
        { type = "text", text = "x" }, { type = "tool_use" } } }), "x", "anthropic text")
    is(protocols.response_text("openai-responses", { output = { { type = "message",
        content = { { type = "output_text", text = "r" } } } } }), "r", "responses text")
    is(protocols.response_text("openai-embeddings", { data = {} }), nil, "embeddings none")

    ok(protocols.has_tool_call("openai-chat", { choices = { { message = { tool_calls = {
        { id = "1" } } } } } }), "chat tool call")
    ok(not protocols.has_tool_call("openai-chat", { choices = { { message = {
        tool_calls = {} } } } }), "empty tool_calls")
    ok(protocols.has_tool_call("anthropic-messages", { content = { { type = "tool_use" } } }),
       "anthropic tool_use")
    ok(protocols.has_tool_call("openai-responses", { output = { { type = "function_call" } } }),
       "responses function_call")

    is_deeply(protocols.NAMES, { "anthropic-messages", "bedrock-converse", "openai-chat",
        "openai-embeddings", "openai-responses", "passthrough" }, "protocol names as APISIX")
end


-- providers (reference §0.2)
local EXPECT = {
    openai = { "api.openai.com", { ["openai-chat"] = { "/v1/chat/completions",
        "max_completion_tokens" }, ["openai-responses"] = { "/v1/responses",
        "max_output_tokens" }, ["openai-embeddings"] = { "/v1/embeddings" } } },
    deepseek = { "api.deepseek.com", { ["openai-chat"] = { "/chat/completions", "max_tokens" } } },
    aimlapi = { "api.aimlapi.com", { ["openai-chat"] = { "/chat/completions", "max_tokens" } } },
    anthropic = { "api.anthropic.com", { ["openai-chat"] = { "/v1/chat/completions",
        "max_tokens" }, ["anthropic-messages"] = { "/v1/messages", "max_tokens" } } },
    ["openai-compatible"] = { nil, { ["openai-chat"] = { "/v1/chat/completions", "max_tokens" },
        ["openai-responses"] = { "/v1/responses", "max_output_tokens" },
        ["openai-embeddings"] = { "/v1/embeddings" } } },
    ["azure-openai"] = { nil, { ["openai-chat"] = { "/completions", "max_tokens" } } },
    openrouter = { "openrouter.ai", { ["openai-chat"] = { "/api/v1/chat/completions",
        "max_tokens" } } },
    gemini = { "generativelanguage.googleapis.com", { ["openai-chat"] = {
        "/v1beta/openai/chat/completions", "max_completion_tokens" } } },
}

for name, want in pairs(EXPECT) do
    local p, err = providers.get(name)
    ok(p ~= nil, name .. " loads " .. tostring(err))
    if p then
        is(p.name, name, name .. ": name")
        is(p.host, want[1], name .. ": host")
        local caps = {}
        for proto, cap in pairs(p.capabilities) do
            caps[proto] = { cap.path, cap.max_tokens }
        end

        is_deeply(caps, want[2], name .. ": capabilities, paths, max_tokens fields")
    end
end

do
    is(providers.get("azure-openai").remove_model, true, "azure removes model")
    is_deeply(providers.get("openai").capabilities["openai-chat"].max_tokens_clear,
              { "max_tokens" }, "openai chat drops the client's max_tokens")
    is_deeply(providers.list(), { "openai", "deepseek", "aimlapi", "anthropic",
        "openai-compatible", "azure-openai", "openrouter", "gemini" }, "list")
    local p, err = providers.get("vertex-ai")
    is(p, nil, "vertex-ai not supported")
    is(err, "ai provider: vertex-ai is not supported.", "APISIX's message")
    is(select(2, providers.get("../x")), "invalid provider name", "names are checked")
    is(#providers.NAMES, 10, "APISIX's 10 names for the schema enum")
end


-- schema helpers
do
    local ep = schema.parse_endpoint("http://localhost:1980")
    is_deeply(ep, { scheme = "http", host = "localhost", port = 1980 }, "host and port, no path")
    ep = schema.parse_endpoint("https://r.openai.azure.com/openai/deployments/d/chat/completions"
                               .. "?api-version=2024-02-01")
    is_deeply(ep, { scheme = "https", host = "r.openai.azure.com", port = 443,
        path = "/openai/deployments/d/chat/completions", query = "api-version=2024-02-01" },
        "azure endpoint with path and query")
    ep = schema.parse_endpoint("http://h/")
    is_deeply(ep, { scheme = "http", host = "h", port = 80 }, "a lone slash is no path")
    ep = schema.parse_endpoint("http://[::1]:8080/x")
    is_deeply(ep, { scheme = "http", host = "[::1]", port = 8080, path = "/x" }, "IPv6")
    ep = schema.parse_endpoint("api.example.com")
    is_deeply(ep, { scheme = "https", host = "api.example.com", port = 443 }, "no scheme: https")
    ep = schema.parse_endpoint("HTTP://h?x=1#frag")
    is_deeply(ep, { scheme = "http", host = "h", port = 80, query = "x=1" }, "query, fragment")
    is(select(2, schema.parse_endpoint("ftp://h")), "invalid endpoint: unsupported scheme ftp",
       "scheme checked")
    is(select(2, schema.parse_endpoint("http://h:99999")), "invalid endpoint: bad port", "port")
    is(select(2, schema.parse_endpoint("http://:80/x")), "invalid endpoint: no host", "no host")

    ok(schema.check_instance({ provider = "openai", auth = {} }), "openai ok")
    is(select(2, schema.check_instance({ provider = "bedrock", auth = {} })),
       "ai provider: bedrock is not supported.", "bedrock refused as APISIX does")
    is(select(2, schema.check_instance({ provider = "openai", auth = {},
        override = { endpoint = "http://:1" } })), "invalid endpoint: no host", "bad endpoint")

    local s = schema.ai_proxy
    is_deeply(s.required, { "provider", "auth" }, "required")
    is(s.properties.timeout.default, 30000, "timeout default")
    is(s.properties.timeout.maximum, 600000, "timeout max")
    is(s.properties.max_req_body_size.default, 67108864, "max_req_body_size default")
    is(s.properties.keepalive_timeout.minimum, 1000, "keepalive_timeout minimum")
    is(s.properties.keepalive_pool.default, 30, "keepalive_pool default")
    is(s.properties.max_stream_duration_ms.minimum, 1, "max_stream_duration_ms minimum")
    is(s.properties.provider.enum, providers.NAMES, "provider enum")
    is(s.properties.auth.additionalProperties, false, "auth closed")
    is(s.properties.override.properties.llm_options.additionalProperties, false,
       "llm_options closed")
    ok(s.properties.override.properties.request_body.properties["openai-chat"] ~= nil,
       "request_body keyed by protocol")
    is(s.properties.options.additionalProperties, true, "options open")
end


t.done_testing()
