-- anthropic: api.anthropic.com. Native Messages API at /v1/messages and Anthropic's
-- OpenAI-compatible chat endpoint. OpenAI chat clients are served through the native Messages
-- API (`prefer`; the reverse converter in ai/convert.lua), which reports cache tokens and
-- supports what the compatibility endpoint lacks; with an override.endpoint that has its own
-- path the client's protocol goes there unchanged, as in APISIX.
return {
    name = "anthropic",
    host = "api.anthropic.com",
    port = 443,
    capabilities = {
        ["openai-chat"] = { path = "/v1/chat/completions", max_tokens = "max_tokens" },
        ["anthropic-messages"] = { path = "/v1/messages", max_tokens = "max_tokens" },
    },
    prefer = { ["openai-chat"] = "anthropic-messages" },
    -- sent unless the client or auth.header already set them
    default_headers = { ["anthropic-version"] = "2023-06-01" },
}
