-- deepseek: api.deepseek.com, OpenAI chat at /chat/completions (no /v1).
return {
    name = "deepseek",
    host = "api.deepseek.com",
    port = 443,
    capabilities = {
        ["openai-chat"] = { path = "/chat/completions", max_tokens = "max_tokens" },
    },
}
