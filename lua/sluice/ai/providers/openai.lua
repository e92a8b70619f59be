-- openai: api.openai.com. Chat, Responses and embeddings. `max_tokens` (override.llm_options)
-- becomes max_completion_tokens for chat (the client's max_tokens is dropped, newer models
-- refuse it) and max_output_tokens for the Responses API.
return {
    name = "openai",
    host = "api.openai.com",
    port = 443,
    capabilities = {
        ["openai-chat"] = {
            path = "/v1/chat/completions",
            max_tokens = "max_completion_tokens",
            max_tokens_clear = { "max_tokens" },
        },
        ["openai-responses"] = { path = "/v1/responses", max_tokens = "max_output_tokens" },
        ["openai-embeddings"] = { path = "/v1/embeddings" },
    },
}
