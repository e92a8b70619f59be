-- aimlapi: api.aimlapi.com, OpenAI chat at /chat/completions (no /v1).
return {
    name = "aimlapi",
    host = "api.aimlapi.com",
    port = 443,
    capabilities = {
        ["openai-chat"] = { path = "/chat/completions", max_tokens = "max_tokens" },
    },
}
