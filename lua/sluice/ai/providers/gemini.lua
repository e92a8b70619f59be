-- gemini: Google's OpenAI-compatible endpoint on generativelanguage.googleapis.com.
return {
    name = "gemini",
    host = "generativelanguage.googleapis.com",
    port = 443,
    capabilities = {
        ["openai-chat"] = {
            path = "/v1beta/openai/chat/completions",
            max_tokens = "max_completion_tokens",
        },
    },
}
