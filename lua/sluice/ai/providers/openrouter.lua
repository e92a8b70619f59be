-- openrouter: openrouter.ai, OpenAI chat at /api/v1/chat/completions.
return {
    name = "openrouter",
    host = "openrouter.ai",
    port = 443,
    capabilities = {
        ["openai-chat"] = { path = "/api/v1/chat/completions", max_tokens = "max_tokens" },
    },
}
