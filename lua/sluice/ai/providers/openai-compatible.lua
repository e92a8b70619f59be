-- openai-compatible: any server speaking OpenAI's API (vLLM, Ollama, LiteLLM ...). No default
-- host: override.endpoint names it.
return {
    name = "openai-compatible",
    capabilities = {
        ["openai-chat"] = { path = "/v1/chat/completions", max_tokens = "max_tokens" },
        ["openai-responses"] = { path = "/v1/responses", max_tokens = "max_output_tokens" },
        ["openai-embeddings"] = { path = "/v1/embeddings" },
    },
}
