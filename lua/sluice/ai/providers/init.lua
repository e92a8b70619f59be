-- providers -- the LLM providers ai-proxy can reach, each declared as data in its own file.
--
-- A provider file returns a table:
--   name              as in configuration
--   host, port        default endpoint (https); none means override.endpoint is required
--   capabilities      { [protocol] = { path = "/v1/...", max_tokens = "<body field that
--                     override.llm_options.max_tokens sets>", max_tokens_clear = {fields
--                     removed when it is set} } }
--   prefer            optional { [client protocol] = protocol to convert to }
--   remove_model      optional: drop `model` from the body (the endpoint fixes it)
--   default_headers   optional: headers sent unless the client or auth.header set them
-- Adding one: a file here and its name in NAMES.
local ipairs = ipairs
local pcall = pcall
local require = require
local type = type

-- APISIX's provider names (the schema enum, in APISIX's order). vertex-ai and bedrock are
-- accepted by the schema so configurations load the same, and refused by check_schema as
-- unsupported, which is what APISIX does with a provider whose module is missing.
local NAMES = {
    "openai", "deepseek", "aimlapi", "anthropic", "openai-compatible", "azure-openai",
    "openrouter", "gemini", "vertex-ai", "bedrock",
}

local _M = { NAMES = NAMES }

local loaded = {}


-- get(name) -> provider table | nil, err
function _M.get(name)
    local p = loaded[name]
    if p then
        return p
    end

    if type(name) ~= "string" or not name:find("^[%w%-]+$") then
        return nil, "invalid provider name"
    end

    local ok, mod = pcall(require, "sluice.ai.providers." .. name)
    if not ok or type(mod) ~= "table" then
        return nil, "ai provider: " .. name .. " is not supported."
    end

    loaded[name] = mod
    return mod
end


-- list() -> names of the providers that load, in NAMES order.
function _M.list()
    local out = {}
    for _, name in ipairs(NAMES) do
        if _M.get(name) then
            out[#out + 1] = name
        end
    end

    return out
end


return _M
