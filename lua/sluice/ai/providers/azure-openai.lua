-- azure-openai: no default host; override.endpoint is the deployment URL with its path and
-- api-version query. The deployment fixes the model, so `model` is removed from the body.
return {
    name = "azure-openai",
    port = 443,
    remove_model = true,
    capabilities = {
        ["openai-chat"] = { path = "/completions", max_tokens = "max_tokens" },
    },
}
