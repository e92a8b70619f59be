-- The Lua part of Sluice as a rock. The C host (build/sluice) is built by make; this maps the
-- framework modules (lua/) and the bundled plugins (plugins/). Regenerate with rockspec/gen.sh.
package = "sluice"
version = "dev-1"
source = { url = "git+file://." }
description = {
    summary = "Sluice AI gateway: Lua framework and bundled plugins",
    license = "Apache-2.0",
}
dependencies = { "lua >= 5.1", "lua-cjson" }
build = {
    type = "builtin",
    modules = {
        ["sluice.accesslog"] = "lua/sluice/accesslog.lua",
        ["sluice.admin"] = "lua/sluice/admin/init.lua",
        ["sluice.admin.plugins"] = "lua/sluice/admin/plugins.lua",
        ["sluice.admin.resource"] = "lua/sluice/admin/resource.lua",
        ["sluice.ai.convert"] = "lua/sluice/ai/convert.lua",
        ["sluice.ai.protocols"] = "lua/sluice/ai/protocols.lua",
        ["sluice.ai.providers.aimlapi"] = "lua/sluice/ai/providers/aimlapi.lua",
        ["sluice.ai.providers.anthropic"] = "lua/sluice/ai/providers/anthropic.lua",
        ["sluice.ai.providers.azure-openai"] = "lua/sluice/ai/providers/azure-openai.lua",
        ["sluice.ai.providers.deepseek"] = "lua/sluice/ai/providers/deepseek.lua",
        ["sluice.ai.providers.gemini"] = "lua/sluice/ai/providers/gemini.lua",
        ["sluice.ai.providers"] = "lua/sluice/ai/providers/init.lua",
        ["sluice.ai.providers.openai-compatible"] = "lua/sluice/ai/providers/openai-compatible.lua",
        ["sluice.ai.providers.openai"] = "lua/sluice/ai/providers/openai.lua",
        ["sluice.ai.providers.openrouter"] = "lua/sluice/ai/providers/openrouter.lua",
        ["sluice.ai.request"] = "lua/sluice/ai/request.lua",
        ["sluice.ai.schema"] = "lua/sluice/ai/schema.lua",
        ["sluice.ai.sse"] = "lua/sluice/ai/sse.lua",
        ["sluice.ai.usage"] = "lua/sluice/ai/usage.lua",
        ["sluice.balancer"] = "lua/sluice/balancer.lua",
        ["sluice.conf"] = "lua/sluice/conf.lua",
        ["sluice.config"] = "lua/sluice/config.lua",
        ["sluice.config.store"] = "lua/sluice/config/store.lua",
        ["sluice.config.validate"] = "lua/sluice/config/validate.lua",
        ["sluice.crypto"] = "lua/sluice/crypto.lua",
        ["sluice.ctx"] = "lua/sluice/ctx.lua",
        ["sluice"] = "lua/sluice/init.lua",
        ["sluice.metrics"] = "lua/sluice/metrics.lua",
        ["sluice.pdk"] = "lua/sluice/pdk.lua",
        ["sluice.pdk.json"] = "lua/sluice/pdk/json.lua",
        ["sluice.pdk.re"] = "lua/sluice/pdk/re.lua",
        ["sluice.pdk.request"] = "lua/sluice/pdk/request.lua",
        ["sluice.pdk.response"] = "lua/sluice/pdk/response.lua",
        ["sluice.pdk.table"] = "lua/sluice/pdk/table.lua",
        ["sluice.pdk.upstream"] = "lua/sluice/pdk/upstream.lua",
        ["sluice.plugin"] = "lua/sluice/plugin.lua",
        ["sluice.router"] = "lua/sluice/router.lua",
        ["sluice.schema"] = "lua/sluice/schema.lua",
        ["sluice.schema_def"] = "lua/sluice/schema_def.lua",
        ["sluice.shared"] = "lua/sluice/shared.lua",
        ["sluice.tls"] = "lua/sluice/tls.lua",
        ["sluice.plugins.ai-proxy"] = "plugins/ai-proxy.lua",
        ["sluice.plugins.key-auth"] = "plugins/key-auth.lua",
    },
}
