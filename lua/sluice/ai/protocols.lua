-- protocols.lua -- the client wire protocols: detection, streaming flag, routing to a provider.
--
-- Detection follows APISIX (reference §2.2), first match wins:
--   bedrock-converse   path ends in /converse and `messages` is a table
--   anthropic-messages path ends in /v1/messages (any JSON object)
--   openai-responses   path ends in /v1/responses and the body has `input`
--   openai-chat        the body has a `messages` table (any path)
--   openai-embeddings  the body has `input`
--   passthrough        any other non-empty JSON object
-- `{}` and non-objects match nothing (the plugin answers 400).
--
-- Routing (route) picks the protocol spoken to the provider: the provider's preferred
-- protocol for this client protocol when it declares one and override.endpoint carries no path
-- of its own (anthropic: OpenAI chat clients go to the native Messages API through the reverse
-- converter); else the client's own protocol when the provider speaks it; else passthrough to
-- the client's path; else a converter to a protocol the provider speaks; else an error with
-- APISIX's text.
local type = type
local tostring = tostring
local next = next
local pairs = pairs
local ipairs = ipairs
local sub = string.sub
local sort = table.sort
local concat = table.concat

-- APISIX's protocol names, sorted (the keys of override.request_body).
local NAMES = {
    "anthropic-messages", "bedrock-converse", "openai-chat", "openai-embeddings",
    "openai-responses", "passthrough",
}

-- Converters that exist: client protocol -> protocols it can be converted to, in order.
local CONVERTIBLE = {
    ["anthropic-messages"] = { "openai-chat" },
    ["openai-chat"] = { "anthropic-messages" },
}

local _M = { NAMES = NAMES, CONVERTIBLE = CONVERTIBLE }


local function ends_with(s, suffix)
    return type(s) == "string" and #s >= #suffix and sub(s, -#suffix) == suffix
end


-- detect(body, path) -> protocol name | nil
function _M.detect(body, path)
    if type(body) ~= "table" then
        return nil
    end

    if ends_with(path, "/converse") and type(body.messages) == "table" then
        return "bedrock-converse"
    end

    if ends_with(path, "/v1/messages") then
        return "anthropic-messages"
    end

    if ends_with(path, "/v1/responses") and body.input ~= nil then
        return "openai-responses"
    end

    if type(body.messages) == "table" then
        return "openai-chat"
    end

    if body.input ~= nil then
        return "openai-embeddings"
    end

    if next(body) ~= nil then
        return "passthrough"
    end

    return nil
end


-- is_streaming(protocol, body) -> boolean: the client asked for a stream.
function _M.is_streaming(protocol, body)
    if protocol == "openai-embeddings" then
        return false
    end

    return type(body) == "table" and body.stream == true
end


local function supported_list(caps)
    local names = {}
    for name in pairs(caps) do
        names[#names + 1] = name
    end

    sort(names)
    return concat(names, ", ")
end


-- route(client_protocol, provider, endpoint_has_path) -> target_protocol, converting | nil, err
-- `converting` is true when the request and response must be converted.
function _M.route(client, provider, endpoint_has_path)
    local caps = provider.capabilities or {}
    local prefer = provider.prefer and provider.prefer[client]
    if prefer and caps[prefer] and not endpoint_has_path then
        return prefer, prefer ~= client
    end

    if caps[client] then
        return client, false
    end

    if client == "passthrough" then
        return "passthrough", false
    end

    local targets = CONVERTIBLE[client]
    if targets then
        for _, target in ipairs(targets) do
            if caps[target] then
                return target, true
            end
        end
    end

    return nil, "provider " .. tostring(provider.name) .. " does not support " .. client
                .. " protocol (supported: " .. supported_list(caps) .. ")"
end


-- request_content(protocol, body): what logging.payloads records as the request.
function _M.request_content(protocol, body)
    if type(body) ~= "table" then
        return nil
    end

    if protocol == "openai-chat" or protocol == "anthropic-messages"
       or protocol == "bedrock-converse" then
        return body.messages
    end

    if protocol == "openai-responses" or protocol == "openai-embeddings" then
        return body.input
    end

    return nil
end


-- end_user_id(protocol, body): OpenAI `safety_identifier` or `user`; Anthropic
-- `metadata.user_id`.
function _M.end_user_id(protocol, body)
    if type(body) ~= "table" then
        return nil
    end

    if protocol == "anthropic-messages" then
        local meta = body.metadata
        if type(meta) == "table" and type(meta.user_id) == "string" then
            return meta.user_id
        end

        return nil
    end

    if protocol == "openai-chat" or protocol == "openai-responses" then
        if type(body.safety_identifier) == "string" then
            return body.safety_identifier
        end

        if type(body.user) == "string" then
            return body.user
        end
    end

    return nil
end


-- tool_count(body): length of the `tools` array of the body sent upstream.
function _M.tool_count(body)
    if type(body) == "table" and type(body.tools) == "table" then
        return #body.tools
    end

    return 0
end


-- response_text(protocol, body): the answer text of a decoded non-streaming response.
function _M.response_text(protocol, body)
    if type(body) ~= "table" then
        return nil
    end

    local parts = {}
    if protocol == "openai-chat" and type(body.choices) == "table" then
        for _, choice in ipairs(body.choices) do
            local msg = type(choice) == "table" and choice.message
            if type(msg) == "table" and type(msg.content) == "string" then
                parts[#parts + 1] = msg.content
            end
        end

    elseif protocol == "anthropic-messages" and type(body.content) == "table" then
        for _, block in ipairs(body.content) do
            if type(block) == "table" and block.type == "text" and type(block.text) == "string" then
                parts[#parts + 1] = block.text
            end
        end

    elseif protocol == "openai-responses" and type(body.output) == "table" then
        for _, item in ipairs(body.output) do
            if type(item) == "table" and item.type == "message"
               and type(item.content) == "table" then
                for _, part in ipairs(item.content) do
                    if type(part) == "table" and part.type == "output_text"
                       and type(part.text) == "string" then
                        parts[#parts + 1] = part.text
                    end
                end
            end
        end

    else
        return nil
    end

    return concat(parts, " ")
end


-- has_tool_call(protocol, body): whether a decoded non-streaming response calls tools.
function _M.has_tool_call(protocol, body)
    if type(body) ~= "table" then
        return false
    end

    if protocol == "openai-chat" and type(body.choices) == "table" then
        for _, choice in ipairs(body.choices) do
            local msg = type(choice) == "table" and choice.message
            if type(msg) == "table" and type(msg.tool_calls) == "table" and #msg.tool_calls > 0 then
                return true
            end
        end

    elseif protocol == "anthropic-messages" and type(body.content) == "table" then
        for _, block in ipairs(body.content) do
            if type(block) == "table" and block.type == "tool_use" then
                return true
            end
        end

    elseif protocol == "openai-responses" and type(body.output) == "table" then
        for _, item in ipairs(body.output) do
            if type(item) == "table" and item.type == "function_call" then
                return true
            end
        end
    end

    return false
end


-- Markers that reveal a tool call in an undecoded non-streaming body (plain search).
local TOOL_MARKERS = {
    ["openai-chat"] = '"tool_calls"',
    ["anthropic-messages"] = '"tool_use"',
    ["openai-responses"] = '"function_call"',
}
_M.TOOL_MARKERS = TOOL_MARKERS


return _M
