-- convert.lua -- Anthropic Messages <-> OpenAI chat completions: requests, responses, streams.
--
-- Two converters, chosen by protocols.route():
--   anthropic-messages -> openai-chat  Anthropic clients on OpenAI-chat providers (as APISIX:
--       whitelist request building, tool names made OpenAI-safe and restored in responses,
--       thinking -> reasoning_effort, structured output -> strict response_format, cached
--       tokens deducted from input_tokens, message_delta/message_stop held back until the
--       usage chunk that follows finish_reason).
--   openai-chat -> anthropic-messages  OpenAI clients on the anthropic provider's native
--       Messages API (APISIX lacks it): system messages -> `system`, tool messages ->
--       tool_result blocks, tool_calls <-> tool_use, reasoning_effort -> thinking budget,
--       max_tokens defaulted (Anthropic requires it), Bearer key -> x-api-key.
-- Each converter: request(body, state) -> body | nil, err; response(obj, state) -> obj | nil, err;
-- new_stream(state) -> ss; stream(ss, event_name, obj, data) -> array of SSE strings | nil;
-- finish(ss) -> array | nil (clean end of an upstream stream that never said it was done);
-- headers(h) (the outgoing header table, lowercase, false = remove); drop_prefixes (client
-- headers of the other protocol's SDK, not sent). `state` is per request (tool-name map,
-- model, include_usage) and carries from request to response.
--
-- Converters never modify their input (it is the client's cached body). Output tables are
-- encoded with encode() below, not cjson: lua-cjson 2.1 cannot tell [] from {}, and arrays
-- built here are marked with array().
local cjson = require("cjson.safe")
local sse = require("sluice.ai.sse")
local bit = require("bit")

local type = type
local error = error
local pcall = pcall
local pairs = pairs
local ipairs = ipairs
local next = next
local tostring = tostring
local tonumber = tonumber
local setmetatable = setmetatable
local getmetatable = getmetatable
local find = string.find
local sub = string.sub
local gsub = string.gsub
local byte = string.byte
local format = string.format
local lower = string.lower
local concat = table.concat
local sort = table.sort
local floor = math.floor
local huge = math.huge
local max = math.max
local min = math.min
local os_time = os.time
local cjson_encode = cjson.encode
local cjson_decode = cjson.decode
local sse_encode = sse.encode
local null = cjson.null

local ARRAY_MT = { __name = "json_array" }
local MAX_DEPTH = 128
local TOOL_NAME_MAX = 64
local TOOL_NAME_PREFIX = TOOL_NAME_MAX - 8 - 1
local DEFAULT_MAX_TOKENS = 4096
local ADAPTIVE_DEFAULT_EFFORT = "medium"

local _M = { null = null, DEFAULT_MAX_TOKENS = DEFAULT_MAX_TOKENS }


------------------------------------------------------------------------------------------------
-- JSON encoding that knows arrays
------------------------------------------------------------------------------------------------

-- array(t) marks t (or a new table) to encode as a JSON array, even when empty.
local function array(t)
    return setmetatable(t or {}, ARRAY_MT)
end
_M.array = array


function _M.is_array(t)
    return getmetatable(t) == ARRAY_MT
end


local function encode_string(s)
    local e = cjson_encode(s)
    if find(s, "/", 1, true) then
        e = gsub(e, "\\/", "/")         -- lua-cjson escapes "/"; valid but noisy
    end

    return e
end


local function encode_number(v)
    if v ~= v or v == huge or v == -huge then
        return "null"
    end

    if v == floor(v) and v > -9007199254740992 and v < 9007199254740992 then
        return format("%d", v)
    end

    local s = format("%.14g", v)
    if tonumber(s) ~= v then
        s = format("%.17g", v)
    end

    return s
end


local function is_sequence(t)
    local n = #t
    if n == 0 then
        return false
    end

    local count = 0
    for _ in pairs(t) do
        count = count + 1
        if count > n then
            return false
        end
    end

    return count == n
end


local encode_into


local function encode_table(t, buf, depth)
    if depth > MAX_DEPTH then
        error("json: nesting too deep")
    end

    if getmetatable(t) == ARRAY_MT or is_sequence(t) then
        local n = #t
        if n == 0 then
            buf[#buf + 1] = "[]"
            return
        end

        buf[#buf + 1] = "["
        for i = 1, n do
            if i > 1 then
                buf[#buf + 1] = ","
            end

            encode_into(t[i], buf, depth + 1)
        end

        buf[#buf + 1] = "]"
        return
    end

    local keys = {}
    for k in pairs(t) do
        keys[#keys + 1] = tostring(k)
    end

    if #keys == 0 then
        buf[#buf + 1] = "{}"
        return
    end

    sort(keys)
    buf[#buf + 1] = "{"
    for i, k in ipairs(keys) do
        if i > 1 then
            buf[#buf + 1] = ","
        end

        local v = t[k]
        if v == nil then
            v = t[tonumber(k)]
        end

        buf[#buf + 1] = encode_string(k)
        buf[#buf + 1] = ":"
        encode_into(v, buf, depth + 1)
    end

    buf[#buf + 1] = "}"
end


encode_into = function(v, buf, depth)
    local t = type(v)
    if t == "string" then
        buf[#buf + 1] = encode_string(v)

    elseif t == "number" then
        buf[#buf + 1] = encode_number(v)

    elseif t == "boolean" then
        buf[#buf + 1] = v and "true" or "false"

    elseif t == "table" then
        encode_table(v, buf, depth)

    else
        buf[#buf + 1] = "null"          -- nil, cjson.null and anything unencodable
    end
end


-- encode(v) -> JSON text | nil, err
function _M.encode(v)
    local buf = {}
    local ok, err = pcall(encode_into, v, buf, 0)
    if not ok then
        return nil, err
    end

    return concat(buf)
end
local encode = _M.encode


------------------------------------------------------------------------------------------------
-- helpers
------------------------------------------------------------------------------------------------

local function str(v)
    if type(v) == "string" then
        return v
    end

    return nil
end


local function tab(v)
    if type(v) == "table" then
        return v
    end

    return nil
end


local function num(v)
    if type(v) == "number" then
        return v
    end

    return 0
end


local function deep_copy(v, depth)
    if type(v) ~= "table" then
        return v
    end

    depth = depth or 0
    if depth > MAX_DEPTH then
        return nil
    end

    local out = {}
    for k, item in pairs(v) do
        out[k] = deep_copy(item, depth + 1)
    end

    return setmetatable(out, getmetatable(v))
end
_M.deep_copy = deep_copy


-- JSON-schema keywords whose values are arrays, and those holding sub-schemas.
local SCHEMA_ARRAYS = {
    required = true, enum = true, anyOf = true, oneOf = true, allOf = true,
    prefixItems = true, examples = true, type = true,
}
local SCHEMA_MAPS = {
    properties = true, patternProperties = true, ["$defs"] = true, definitions = true,
    dependentSchemas = true,
}
local SCHEMA_SUBS = {
    items = true, additionalProperties = true, ["not"] = true, ["if"] = true,
    ["then"] = true, ["else"] = true, contains = true, propertyNames = true,
    unevaluatedProperties = true, unevaluatedItems = true, additionalItems = true,
}


-- copy_schema(s): a copy of a JSON schema whose array keywords encode as arrays even when
-- lua-cjson decoded an empty [] as {} ("required": [] must not become {}).
local function copy_schema(s, depth)
    if type(s) ~= "table" then
        return s
    end

    depth = depth or 0
    if depth > MAX_DEPTH then
        return {}
    end

    if is_sequence(s) or getmetatable(s) == ARRAY_MT then
        local out = array()
        for i, item in ipairs(s) do
            out[i] = copy_schema(item, depth + 1)
        end

        return out
    end

    local out = {}
    for k, v in pairs(s) do
        if SCHEMA_ARRAYS[k] and type(v) == "table" then
            local a = array()
            for i, item in ipairs(v) do
                a[i] = copy_schema(item, depth + 1)
            end

            out[k] = a

        elseif SCHEMA_MAPS[k] and type(v) == "table" then
            local m = {}
            for name, sub_schema in pairs(v) do
                m[name] = copy_schema(sub_schema, depth + 1)
            end

            out[k] = m

        elseif SCHEMA_SUBS[k] then
            out[k] = copy_schema(v, depth + 1)

        else
            out[k] = deep_copy(v, depth + 1)
        end
    end

    return out
end
_M.copy_schema = copy_schema


-- FNV-1a, 32 bits, as 8 hex digits: a stable tag for renamed tool names. The mapping only has
-- to be a pure function of the name within this gateway (history and tools agree, responses
-- are mapped back through state), so a cryptographic hash buys nothing here.
local function hash8(s)
    local h = -2128831035            -- 2166136261 as a signed 32-bit value
    for i = 1, #s do
        h = bit.bxor(h, byte(s, i))
        h = bit.tobit(bit.lshift(h, 24) + h * 403 + 0)      -- h * 16777619 mod 2^32
    end

    return bit.tohex(h)
end


-- The OpenAI-side name of an Anthropic tool: [a-zA-Z0-9_-], at most 64 bytes. A name that had
-- to change becomes <55-byte prefix>_<hash8(original)>; `reverse` maps it back.
local function openai_tool_name(name, reverse)
    local clean = gsub(name, "[^a-zA-Z0-9_%-]", "_")
    if clean == name and #name <= TOOL_NAME_MAX then
        return name
    end

    local renamed = sub(clean, 1, TOOL_NAME_PREFIX) .. "_" .. hash8(name)
    reverse[renamed] = name
    return renamed
end
_M.openai_tool_name = openai_tool_name


local function sse_event(event, obj)
    return sse_encode(event, encode(obj))
end


------------------------------------------------------------------------------------------------
-- anthropic-messages -> openai-chat
------------------------------------------------------------------------------------------------

local A2O = {
    from = "anthropic-messages",
    to = "openai-chat",
    drop_prefixes = { "anthropic-", "x-stainless-" },
}

local BUILTIN_TOOL_PREFIXES = {
    "computer_", "bash_", "text_editor_", "web_search", "code_execution_",
}

local OPENAI_TO_ANTHROPIC_STOP = {
    stop = "end_turn",
    length = "max_tokens",
    content_filter = "end_turn",
    tool_calls = "tool_use",
    function_call = "tool_use",
}


local function is_builtin_tool(tool)
    local t = tool.type
    if type(t) ~= "string" then
        return false
    end

    for _, prefix in ipairs(BUILTIN_TOOL_PREFIXES) do
        if sub(t, 1, #prefix) == prefix then
            return true
        end
    end

    return false
end


local function media_block(block)
    local source = tab(block.source)
    if not source then
        return nil
    end

    if block.type == "image" then
        if source.type == "base64" then
            if not str(source.data) or source.data == "" then
                return nil
            end

            return { type = "image_url", image_url = {
                url = "data:" .. (str(source.media_type) or "image/png") .. ";base64,"
                      .. source.data } }
        end

        if source.type == "url" and str(source.url) and source.url ~= "" then
            return { type = "image_url", image_url = { url = source.url } }
        end

    elseif block.type == "document" and source.type == "base64" then
        if not str(source.data) or source.data == "" then
            return nil
        end

        return { type = "image_url", image_url = {
            url = "data:" .. (str(source.media_type) or "application/pdf") .. ";base64,"
                  .. source.data } }
    end

    return nil
end


local function text_of_parts(parts)
    local out = {}
    for _, part in ipairs(parts) do
        if part.type == "text" then
            out[#out + 1] = part.text or ""
        end
    end

    return concat(out)
end


-- OpenAI strict mode: every object closed (additionalProperties false) and every property
-- required. Works on a copy_schema() copy.
local function strict_schema(s, depth)
    if type(s) ~= "table" or (depth or 0) > MAX_DEPTH then
        return
    end

    depth = (depth or 0) + 1
    if s.type == "object" and type(s.properties) == "table" then
        s.additionalProperties = false
        local required = array()
        for name, prop in pairs(s.properties) do
            required[#required + 1] = name
            strict_schema(prop, depth)
        end

        sort(required)
        s.required = required
    end

    strict_schema(s.items, depth)
    for _, key in ipairs({ "anyOf", "oneOf", "allOf" }) do
        if type(s[key]) == "table" then
            for _, item in ipairs(s[key]) do
                strict_schema(item, depth)
            end
        end
    end

    for _, key in ipairs({ "$defs", "definitions" }) do
        if type(s[key]) == "table" then
            for _, item in pairs(s[key]) do
                strict_schema(item, depth)
            end
        end
    end
end


local function thinking_effort(thinking, output_config)
    if type(thinking) ~= "table" then
        return nil
    end

    if thinking.type == "adaptive" then
        if type(output_config) == "table" and str(output_config.effort)
           and output_config.effort ~= "" then
            return output_config.effort
        end

        return ADAPTIVE_DEFAULT_EFFORT
    end

    if thinking.type ~= "enabled" then
        return nil
    end

    local budget = num(thinking.budget_tokens)
    if budget >= 4096 then
        return "high"
    end

    if budget >= 2048 then
        return "medium"
    end

    if budget >= 1024 then
        return "low"
    end

    return "minimal"
end


local function tool_choice_to_openai(tc)
    if type(tc) ~= "table" then
        return nil
    end

    if tc.type == "auto" then
        return "auto"
    end

    if tc.type == "any" then
        return "required"
    end

    if tc.type == "none" then
        return "none"
    end

    if tc.type == "tool" and str(tc.name) then
        return { type = "function", ["function"] = { name = tc.name } }
    end

    return nil
end


-- Claude Code puts a per-request billing tag (cch=...) in the system prompt; it would defeat
-- the provider's prompt cache, so it is removed.
local BILLING_PREFIX = "x-anthropic-billing-header:"

local function strip_billing(text)
    if lower(sub(text, 1, #BILLING_PREFIX)) ~= BILLING_PREFIX then
        return text
    end

    local value = sub(text, #BILLING_PREFIX + 1)
    value = gsub(value, " ?cch=[^;]*;?", "")
    value = gsub(value, "^[; ]+", "")
    value = gsub(value, "[; ]+$", "")
    if value == "" then
        return nil
    end

    return BILLING_PREFIX .. value
end


local function system_to_openai(system)
    if type(system) == "string" then
        if system == "" then
            return nil
        end

        return { role = "system", content = system }
    end

    if type(system) ~= "table" then
        return nil
    end

    local parts = {}
    for _, block in ipairs(system) do
        if type(block) == "table" and block.type == "text" and str(block.text) then
            local text = strip_billing(block.text)
            if text then
                parts[#parts + 1] = text
            end
        end
    end

    local text = concat(parts)
    if text == "" then
        return nil
    end

    return { role = "system", content = text }
end


local function tool_result_content(content)
    if type(content) == "string" then
        return content
    end

    if type(content) ~= "table" then
        return ""
    end

    local texts, parts = {}, array()
    local has_media = false
    for _, item in ipairs(content) do
        if type(item) == "table" then
            if item.type == "text" and str(item.text) then
                texts[#texts + 1] = item.text
                parts[#parts + 1] = { type = "text", text = item.text }

            elseif item.type == "image" or item.type == "document" then
                local m = media_block(item)
                if m then
                    parts[#parts + 1] = m
                    has_media = true
                end
            end
        end
    end

    if has_media then
        return parts
    end

    return concat(texts)
end


function A2O.request(body, state)
    if type(body) ~= "table" then
        return nil, "request body must be a table"
    end

    if type(body.messages) ~= "table" or #body.messages == 0 then
        return nil, "missing messages"
    end

    local out = {}
    if str(body.model) then
        out.model = body.model
    end

    if body.stream ~= nil and body.stream ~= null then
        out.stream = body.stream
        if body.stream == true then
            out.stream_options = { include_usage = true }
        end
    end

    if type(body.max_tokens) == "number" then
        out.max_completion_tokens = body.max_tokens
    end

    if type(body.temperature) == "number" then
        out.temperature = body.temperature
    end

    if type(body.top_p) == "number" then
        out.top_p = body.top_p
    end

    if type(body.stop_sequences) == "table" then
        out.stop = array(deep_copy(body.stop_sequences))
    end

    local effort = thinking_effort(body.thinking, body.output_config)
    if effort then
        out.reasoning_effort = effort
    end

    local tc = body.tool_choice
    if tc ~= nil then
        out.tool_choice = tool_choice_to_openai(tc)
        if type(tc) == "table" and tc.disable_parallel_tool_use == true then
            out.parallel_tool_calls = false
        end
    end

    local output_format = body.output_format
    if type(output_format) ~= "table" or next(output_format) == nil then
        output_format = type(body.output_config) == "table" and body.output_config.format or nil
    end

    if type(output_format) == "table" and output_format.type == "json_schema"
       and type(output_format.schema) == "table" and next(output_format.schema) then
        local schema = copy_schema(output_format.schema)
        strict_schema(schema)
        out.response_format = {
            type = "json_schema",
            json_schema = { name = "structured_output", schema = schema, strict = true },
        }
    end

    if type(body.metadata) == "table" and str(body.metadata.user_id) then
        out.user = body.metadata.user_id
    end

    if str(body.service_tier) then
        out.service_tier = body.service_tier
    end

    local reverse = {}
    if type(body.tools) == "table" and #body.tools > 0 then
        local tools, declared = array(), {}
        for _, tool in ipairs(body.tools) do
            if type(tool) == "table" and not is_builtin_tool(tool) and str(tool.name)
               and tool.name ~= "" then
                local name = openai_tool_name(tool.name, reverse)
                declared[tool.name] = name
                local params = tool.input_schema
                if type(params) == "table" then
                    params = copy_schema(params)
                end

                tools[#tools + 1] = { type = "function", ["function"] = {
                    name = name, description = str(tool.description), parameters = params } }
            end
        end

        if #tools > 0 then
            out.tools = tools
        end

        local otc = out.tool_choice
        if type(otc) == "table" and otc.type == "function" then
            local fn = otc["function"]
            fn.name = declared[fn.name] or fn.name
        end
    end

    local messages = array()
    local sys = system_to_openai(body.system)
    if sys then
        messages[#messages + 1] = sys
    end

    for i, msg in ipairs(body.messages) do
        if type(msg) ~= "table" or not str(msg.role) then
            return nil, "invalid message at index " .. i
        end

        if type(msg.content) == "string" then
            messages[#messages + 1] = { role = msg.role, content = msg.content }

        elseif type(msg.content) ~= "table" then
            return nil, "invalid message content at index " .. i

        else
            local calls, results, parts = array(), {}, array()
            for _, block in ipairs(msg.content) do
                if type(block) == "table" then
                    local bt = block.type
                    if bt == "text" and str(block.text) then
                        parts[#parts + 1] = { type = "text", text = block.text }

                    elseif bt == "image" or bt == "document" then
                        local m = media_block(block)
                        if m then
                            parts[#parts + 1] = m
                        end

                    elseif bt == "tool_use" then
                        if str(block.id) and str(block.name) then
                            local args = type(block.input) == "table"
                                         and encode(block.input) or "{}"
                            calls[#calls + 1] = { id = block.id, type = "function",
                                ["function"] = { name = openai_tool_name(block.name, reverse),
                                                 arguments = args } }
                        end

                    elseif bt == "tool_result" then
                        if str(block.tool_use_id) then
                            results[#results + 1] = { role = "tool",
                                tool_call_id = block.tool_use_id,
                                content = tool_result_content(block.content) }
                        end
                    end
                    -- thinking / redacted_thinking: OpenAI chat has no input for past reasoning
                end
            end

            if #results > 0 then
                -- a tool message must directly follow the assistant's tool_calls message
                for _, r in ipairs(results) do
                    messages[#messages + 1] = r
                end

                if #parts > 0 then
                    messages[#messages + 1] = { role = msg.role, content = parts }
                end

            else
                local new = { role = msg.role }
                if #calls > 0 then
                    new.tool_calls = calls
                    local text = text_of_parts(parts)
                    new.content = text ~= "" and text or nil

                elseif #parts == 0 then
                    new.content = ""

                elseif msg.role == "assistant" then
                    new.content = text_of_parts(parts)

                else
                    new.content = parts
                end

                messages[#messages + 1] = new
            end
        end
    end

    out.messages = messages
    if next(reverse) then
        state.tool_name_map = reverse
    end

    if out.tools == nil then
        out.tool_choice = nil
        out.parallel_tool_calls = nil
    end

    return out
end


local function anthropic_error(err)
    local etype, msg = "api_error", ""
    if type(err) == "table" then
        etype = str(err.type) or str(err.code) or etype
        msg = str(err.message) or ""

    elseif type(err) == "string" then
        msg = err
    end

    return { type = "error", error = { type = etype, message = msg } }
end


-- OpenAI usage -> Anthropic usage: cached tokens are not part of Anthropic's input_tokens.
local function usage_to_anthropic(u)
    local details = tab(u.prompt_tokens_details)
    local prompt = num(u.prompt_tokens)
    local out = { output_tokens = num(u.completion_tokens) }
    if details then
        local cached = num(details.cached_tokens)
        out.input_tokens = max(0, prompt - cached)
        if cached > 0 then
            out.cache_read_input_tokens = cached
        end

        if type(details.cache_creation_input_tokens) == "number" then
            out.cache_creation_input_tokens = details.cache_creation_input_tokens
        end

    else
        out.input_tokens = prompt
    end

    return out
end


function A2O.response(obj, state)
    if type(obj) ~= "table" then
        return nil, "response body must be a table"
    end

    if obj.error ~= nil and obj.error ~= null then
        return anthropic_error(obj.error)
    end

    local choice = tab(obj.choices) and tab(obj.choices[1])
    if not choice then
        return nil, "no choices in response"
    end

    local content = array()
    local msg = tab(choice.message)
    if msg then
        local reasoning = str(msg.reasoning_content) or str(msg.reasoning)
        if reasoning and reasoning ~= "" then
            content[#content + 1] = { type = "thinking", thinking = reasoning, signature = "" }
        end

        if str(msg.content) and msg.content ~= "" then
            content[#content + 1] = { type = "text", text = msg.content }
        end

        local map = state and state.tool_name_map
        if type(msg.tool_calls) == "table" then
            for _, tc in ipairs(msg.tool_calls) do
                if type(tc) == "table" then
                    local fn = tab(tc["function"]) or {}
                    local input = str(fn.arguments) and cjson_decode(fn.arguments)
                    if type(input) ~= "table" then
                        input = {}
                    end

                    local name = str(fn.name) or ""
                    content[#content + 1] = { type = "tool_use", id = str(tc.id) or "",
                                              name = map and map[name] or name, input = input }
                end
            end
        end
    end

    if #content == 0 then
        content[1] = { type = "text", text = "" }
    end

    local u = tab(obj.usage)
    return {
        id = obj.id,
        type = "message",
        role = "assistant",
        model = (state and state.model) or obj.model,
        content = content,
        stop_reason = OPENAI_TO_ANTHROPIC_STOP[str(choice.finish_reason) or ""] or "end_turn",
        stop_sequence = null,
        usage = u and usage_to_anthropic(u) or { input_tokens = 0, output_tokens = 0 },
    }
end


function A2O.new_stream(state)
    return { state = state or {}, first = true, next_index = 0, open = nil, block = nil,
             tools = {}, done = false, pending = nil, started = false }
end


local function close_block(ss, out)
    if ss.open ~= nil then
        out[#out + 1] = sse_event("content_block_stop",
                                  { type = "content_block_stop", index = ss.open })
        ss.open, ss.block = nil, nil
    end
end


local function open_block(ss, out, kind, block)
    close_block(ss, out)
    local idx = ss.next_index
    ss.next_index = idx + 1
    ss.open, ss.block = idx, kind
    out[#out + 1] = sse_event("content_block_start",
                              { type = "content_block_start", index = idx, content_block = block })
    return idx
end


local function flush_pending(ss, out, usage)
    local md = ss.pending
    if not md then
        return
    end

    if usage and md.usage == nil then
        md.usage = usage_to_anthropic(usage)
    end

    out[#out + 1] = sse_event("message_delta", md)
    out[#out + 1] = sse_event("message_stop", { type = "message_stop" })
    ss.pending = nil
end


local function finish_reason_of(choice)
    local fr = choice and choice.finish_reason
    if type(fr) ~= "string" then
        return nil
    end

    fr = fr:match("^%s*(.-)%s*$")
    if fr == "" or fr == "null" then
        return nil
    end

    return fr
end


-- One OpenAI chunk (obj) or "[DONE]" (obj nil, data "[DONE]") -> Anthropic events.
function A2O.stream(ss, _, obj, data)
    if obj == nil then
        if data == "[DONE]" then
            return A2O.finish(ss)
        end

        return nil
    end

    if type(obj) ~= "table" then
        return nil
    end

    local out = {}
    if obj.error ~= nil and obj.error ~= null then
        close_block(ss, out)
        out[#out + 1] = sse_event("error", anthropic_error(obj.error))
        ss.done, ss.pending = true, nil
        return out
    end

    if ss.done then
        flush_pending(ss, out, tab(obj.usage))
        return out
    end

    if ss.first then
        ss.first, ss.started = false, true
        out[#out + 1] = sse_event("message_start", { type = "message_start", message = {
            id = obj.id, type = "message", role = "assistant",
            model = ss.state.model or obj.model, content = array(),
            stop_reason = null, stop_sequence = null,
            usage = { input_tokens = 0, output_tokens = 0 } } })
    end

    local choice = tab(obj.choices) and tab(obj.choices[1])
    local delta = choice and tab(choice.delta)
    if delta then
        local reasoning = str(delta.reasoning_content) or str(delta.reasoning)
        if reasoning and reasoning ~= "" then
            if ss.block ~= "thinking" then
                open_block(ss, out, "thinking", { type = "thinking", thinking = "" })
            end

            out[#out + 1] = sse_event("content_block_delta", { type = "content_block_delta",
                index = ss.open, delta = { type = "thinking_delta", thinking = reasoning } })
        end

        if str(delta.content) and delta.content ~= "" then
            if ss.block ~= "text" then
                open_block(ss, out, "text", { type = "text", text = "" })
            end

            out[#out + 1] = sse_event("content_block_delta", { type = "content_block_delta",
                index = ss.open, delta = { type = "text_delta", text = delta.content } })
        end

        if type(delta.tool_calls) == "table" then
            local map = ss.state.tool_name_map
            for _, tcd in ipairs(delta.tool_calls) do
                if type(tcd) == "table" and type(tcd.index) == "number" then
                    local fn = tab(tcd["function"]) or {}
                    local idx = ss.tools[tcd.index]
                    if idx == nil then
                        local name = str(fn.name) or ""
                        idx = open_block(ss, out, "tool_use", { type = "tool_use",
                            id = str(tcd.id) or "", name = map and map[name] or name,
                            input = {} })
                        ss.tools[tcd.index] = idx
                    end

                    if str(fn.arguments) and fn.arguments ~= "" then
                        out[#out + 1] = sse_event("content_block_delta", {
                            type = "content_block_delta", index = idx,
                            delta = { type = "input_json_delta", partial_json = fn.arguments } })
                    end
                end
            end
        end
    end

    local fr = finish_reason_of(choice)
    if fr then
        close_block(ss, out)
        local md = { type = "message_delta",
                     delta = { stop_reason = OPENAI_TO_ANTHROPIC_STOP[fr] or "end_turn",
                               stop_sequence = null } }
        local u = tab(obj.usage)
        if u then
            md.usage = usage_to_anthropic(u)
        end

        -- held back: the usage chunk usually follows finish_reason
        ss.pending, ss.done = md, true
    end

    return out
end


function A2O.finish(ss)
    local out = {}
    if ss.pending then
        flush_pending(ss, out)
        return out
    end

    if ss.started and not ss.done then
        close_block(ss, out)
        out[#out + 1] = sse_event("message_delta", { type = "message_delta",
            delta = { stop_reason = "end_turn", stop_sequence = null },
            usage = { input_tokens = 0, output_tokens = 0 } })
        out[#out + 1] = sse_event("message_stop", { type = "message_stop" })
        ss.done = true
        return out
    end

    return nil
end


-- Anthropic SDKs send the key as x-api-key; OpenAI-style providers want a Bearer token.
function A2O.headers(h)
    local key = h["x-api-key"]
    if type(key) == "string" and key ~= "" then
        if type(h["authorization"]) ~= "string" then
            h["authorization"] = "Bearer " .. key
        end

        h["x-api-key"] = false
    end
end


------------------------------------------------------------------------------------------------
-- openai-chat -> anthropic-messages
------------------------------------------------------------------------------------------------

local O2A = {
    from = "openai-chat",
    to = "anthropic-messages",
    drop_prefixes = { "openai-", "x-stainless-" },
}

local ANTHROPIC_TO_OPENAI_STOP = {
    end_turn = "stop",
    stop_sequence = "stop",
    max_tokens = "length",
    tool_use = "tool_calls",
    pause_turn = "stop",
    refusal = "content_filter",
}

local EFFORT_BUDGET = { low = 1024, medium = 2048, high = 4096, xhigh = 8192 }


-- "data:<media type>;base64,<data>" -> media type, data
local function parse_data_url(url)
    local mt, data = url:match("^data:([^;,]+);base64,(.*)$")
    return mt, data
end


local function image_block(part)
    local iu = part.image_url
    local url = type(iu) == "table" and str(iu.url) or str(iu)
    if not url or url == "" then
        return nil
    end

    local mt, data = parse_data_url(url)
    if mt then
        if mt == "application/pdf" then
            return { type = "document", source = { type = "base64", media_type = mt,
                                                   data = data } }
        end

        return { type = "image", source = { type = "base64", media_type = mt, data = data } }
    end

    return { type = "image", source = { type = "url", url = url } }
end


local function file_block(part)
    local f = tab(part.file)
    local fd = f and str(f.file_data)
    if not fd then
        return nil
    end

    local mt, data = parse_data_url(fd)
    if not mt then
        return nil
    end

    return { type = "document", source = { type = "base64", media_type = mt, data = data } }
end


-- OpenAI content (string or parts) -> Anthropic blocks (array, maybe empty).
local function content_blocks(content)
    local blocks = array()
    if type(content) == "string" then
        if content ~= "" then
            blocks[1] = { type = "text", text = content }
        end

        return blocks
    end

    if type(content) ~= "table" then
        return blocks
    end

    for _, part in ipairs(content) do
        if type(part) == "table" then
            local b
            if (part.type == "text" or part.type == "input_text") and str(part.text) then
                if part.text ~= "" then
                    b = { type = "text", text = part.text }
                end

            elseif part.type == "refusal" and str(part.refusal) then
                b = { type = "text", text = part.refusal }

            elseif part.type == "image_url" then
                b = image_block(part)

            elseif part.type == "file" then
                b = file_block(part)
            end

            if b then
                blocks[#blocks + 1] = b
            end
        end
    end

    return blocks
end


local function text_of(content)
    if type(content) == "string" then
        return content
    end

    local parts = {}
    if type(content) == "table" then
        for _, part in ipairs(content) do
            if type(part) == "table" and str(part.text) then
                parts[#parts + 1] = part.text
            end
        end
    end

    return concat(parts, "\n")
end


local function tool_choice_to_anthropic(tc)
    if tc == "auto" then
        return { type = "auto" }
    end

    if tc == "required" then
        return { type = "any" }
    end

    if tc == "none" then
        return { type = "none" }
    end

    if type(tc) == "table" then
        local fn = tab(tc["function"])
        if fn and str(fn.name) then
            return { type = "tool", name = fn.name }
        end
    end

    return nil
end


function O2A.request(body, state)
    if type(body) ~= "table" then
        return nil, "request body must be a table"
    end

    if type(body.messages) ~= "table" or #body.messages == 0 then
        return nil, "missing messages"
    end

    local out = {}
    if str(body.model) then
        out.model = body.model
    end

    local mt = body.max_completion_tokens
    if type(mt) ~= "number" then
        mt = body.max_tokens
    end

    out.max_tokens = type(mt) == "number" and mt or DEFAULT_MAX_TOKENS

    if body.stream == true then
        out.stream = true
        local so = tab(body.stream_options)
        state.include_usage = so and so.include_usage == true or false
    end

    if type(body.temperature) == "number" then
        out.temperature = min(max(body.temperature, 0), 1)     -- Anthropic's range is 0..1
    end

    if type(body.top_p) == "number" then
        out.top_p = body.top_p
    end

    if type(body.stop) == "string" then
        out.stop_sequences = array({ body.stop })

    elseif type(body.stop) == "table" and #body.stop > 0 then
        out.stop_sequences = array(deep_copy(body.stop))
    end

    local user = str(body.safety_identifier) or str(body.user)
    if user then
        out.metadata = { user_id = user }
    end

    local budget = EFFORT_BUDGET[str(body.reasoning_effort) or ""]
    if budget then
        out.thinking = { type = "enabled", budget_tokens = budget }
        if out.max_tokens <= budget then
            out.max_tokens = budget + out.max_tokens
        end

        out.temperature, out.top_p = nil, nil        -- not allowed with extended thinking
    end

    local rf = tab(body.response_format)
    if rf and rf.type == "json_schema" and tab(rf.json_schema)
       and tab(rf.json_schema.schema) then
        out.output_config = { format = { type = "json_schema",
                                         schema = copy_schema(rf.json_schema.schema) } }
    end

    if type(body.tools) == "table" then
        local tools = array()
        for _, tool in ipairs(body.tools) do
            local fn = type(tool) == "table" and tool.type == "function" and tab(tool["function"])
            if fn and str(fn.name) then
                local schema = tab(fn.parameters) and copy_schema(fn.parameters)
                               or { type = "object", properties = {} }
                tools[#tools + 1] = { name = fn.name, description = str(fn.description),
                                      input_schema = schema }
            end
        end

        if #tools > 0 then
            out.tools = tools
            local tc = tool_choice_to_anthropic(body.tool_choice)
            if body.parallel_tool_calls == false then
                tc = tc or { type = "auto" }
                if tc.type ~= "none" then
                    tc.disable_parallel_tool_use = true
                end
            end

            out.tool_choice = tc
        end
    end

    local system = {}
    local messages = array()
    local last_results          -- the user message collecting consecutive tool results
    for i, msg in ipairs(body.messages) do
        if type(msg) ~= "table" or not str(msg.role) then
            return nil, "invalid message at index " .. i
        end

        local role = msg.role
        if role == "system" or role == "developer" then
            local text = text_of(msg.content)
            if text ~= "" then
                system[#system + 1] = text
            end

        elseif role == "tool" then
            local content = msg.content
            if type(content) == "table" then
                content = content_blocks(content)

            elseif type(content) ~= "string" then
                content = ""
            end

            local result = { type = "tool_result", tool_use_id = str(msg.tool_call_id) or "",
                             content = content }
            if last_results then
                last_results.content[#last_results.content + 1] = result

            else
                last_results = { role = "user", content = array({ result }) }
                messages[#messages + 1] = last_results
            end

        elseif role == "assistant" then
            last_results = nil
            local blocks = content_blocks(msg.content)
            if type(msg.tool_calls) == "table" then
                for _, tc in ipairs(msg.tool_calls) do
                    local fn = type(tc) == "table" and tab(tc["function"])
                    if fn then
                        local input = str(fn.arguments) and cjson_decode(fn.arguments)
                        if type(input) ~= "table" then
                            input = {}
                        end

                        blocks[#blocks + 1] = { type = "tool_use", id = str(tc.id) or "",
                                                name = str(fn.name) or "", input = input }
                    end
                end
            end

            if #blocks > 0 then
                messages[#messages + 1] = { role = "assistant", content = blocks }
            end

        elseif role == "user" then
            local blocks = content_blocks(msg.content)
            if last_results then
                -- tool results and the user's next words form one user turn
                for _, b in ipairs(blocks) do
                    last_results.content[#last_results.content + 1] = b
                end

                last_results = nil

            elseif type(msg.content) == "string" and msg.content ~= "" then
                messages[#messages + 1] = { role = "user", content = msg.content }

            elseif #blocks > 0 then
                messages[#messages + 1] = { role = "user", content = blocks }
            end
        end
        -- "function" (legacy) messages have no Anthropic form and are dropped
    end

    if #messages == 0 then
        return nil, "missing messages"
    end

    out.messages = messages
    if #system > 0 then
        out.system = concat(system, "\n\n")
    end

    return out
end


local function openai_error(err)
    local etype, msg = "api_error", ""
    if type(err) == "table" then
        etype = str(err.type) or etype
        msg = str(err.message) or ""

    elseif type(err) == "string" then
        msg = err
    end

    return { error = { message = msg, type = etype, param = null, code = null } }
end


-- Anthropic usage -> OpenAI usage: OpenAI's prompt_tokens include the cached ones.
local function usage_to_openai(u)
    local input = num(u.input_tokens)
    local cache_read = num(u.cache_read_input_tokens)
    local cache_write = num(u.cache_creation_input_tokens)
    local prompt = input + cache_read + cache_write
    local completion = num(u.output_tokens)
    local details = { cached_tokens = cache_read }
    if cache_write > 0 then
        details.cache_creation_input_tokens = cache_write
    end

    return { prompt_tokens = prompt, completion_tokens = completion,
             total_tokens = prompt + completion, prompt_tokens_details = details }
end


function O2A.response(obj, state)
    if type(obj) ~= "table" then
        return nil, "response body must be a table"
    end

    if obj.type == "error" or (obj.error ~= nil and obj.error ~= null) then
        return openai_error(obj.error)
    end

    if type(obj.content) ~= "table" then
        return nil, "no content in response"
    end

    local texts, thinking = {}, {}
    local calls = array()
    for _, block in ipairs(obj.content) do
        if type(block) == "table" then
            if block.type == "text" and str(block.text) then
                texts[#texts + 1] = block.text

            elseif block.type == "thinking" and str(block.thinking) then
                thinking[#thinking + 1] = block.thinking

            elseif block.type == "tool_use" then
                local input = type(block.input) == "table" and block.input or {}
                calls[#calls + 1] = { id = str(block.id) or "", type = "function",
                    ["function"] = { name = str(block.name) or "", arguments = encode(input) } }
            end
        end
    end

    local message = { role = "assistant" }
    if #texts > 0 then
        message.content = concat(texts)

    elseif #calls > 0 then
        message.content = null

    else
        message.content = ""
    end

    if #calls > 0 then
        message.tool_calls = calls
    end

    if #thinking > 0 then
        message.reasoning_content = concat(thinking)
    end

    local u = tab(obj.usage)
    return {
        id = obj.id,
        object = "chat.completion",
        created = (state and state.created) or os_time(),
        model = obj.model,
        choices = array({ {
            index = 0,
            message = message,
            finish_reason = ANTHROPIC_TO_OPENAI_STOP[str(obj.stop_reason) or ""] or "stop",
        } }),
        usage = usage_to_openai(u or {}),
    }
end


function O2A.new_stream(state)
    state = state or {}
    return { state = state, id = nil, model = nil, created = state.created or os_time(),
             tools = {}, ntools = 0, usage = {}, finish = nil, started = false, done = false }
end


local function chunk(ss, delta, finish)
    return sse_encode(nil, encode({
        id = ss.id, object = "chat.completion.chunk", created = ss.created, model = ss.model,
        choices = array({ { index = 0, delta = delta, finish_reason = finish or null } }),
    }))
end


local function merge_usage(ss, u)
    if type(u) ~= "table" then
        return
    end

    for _, k in ipairs({ "input_tokens", "output_tokens", "cache_read_input_tokens",
                         "cache_creation_input_tokens" }) do
        if type(u[k]) == "number" and (u[k] > 0 or ss.usage[k] == nil) then
            ss.usage[k] = u[k]
        end
    end
end


local function end_stream(ss, out)
    if ss.state.include_usage then
        out[#out + 1] = sse_encode(nil, encode({
            id = ss.id, object = "chat.completion.chunk", created = ss.created,
            model = ss.model, choices = array(), usage = usage_to_openai(ss.usage) }))
    end

    out[#out + 1] = "data: [DONE]\n\n"
    ss.done = true
end


-- One Anthropic event -> OpenAI chunks.
function O2A.stream(ss, event_name, obj)
    if type(obj) ~= "table" or ss.done then
        return nil
    end

    local t = str(obj.type) or event_name
    local out = {}
    if t == "message_start" then
        local m = tab(obj.message) or {}
        ss.id, ss.model, ss.started = m.id, m.model, true
        merge_usage(ss, m.usage)
        out[1] = chunk(ss, { role = "assistant", content = "" })

    elseif t == "content_block_start" then
        local b = tab(obj.content_block)
        if b and b.type == "tool_use" and type(obj.index) == "number" then
            local ti = ss.ntools
            ss.ntools = ti + 1
            ss.tools[obj.index] = ti
            out[1] = chunk(ss, { tool_calls = array({ { index = ti, id = str(b.id) or "",
                type = "function", ["function"] = { name = str(b.name) or "",
                                                    arguments = "" } } }) })

        elseif b and b.type == "text" and str(b.text) and b.text ~= "" then
            out[1] = chunk(ss, { content = b.text })
        end

    elseif t == "content_block_delta" then
        local d = tab(obj.delta)
        if d then
            if d.type == "text_delta" and str(d.text) then
                out[1] = chunk(ss, { content = d.text })

            elseif d.type == "input_json_delta" and str(d.partial_json) then
                local ti = ss.tools[obj.index]
                if ti and d.partial_json ~= "" then
                    out[1] = chunk(ss, { tool_calls = array({ { index = ti,
                        ["function"] = { arguments = d.partial_json } } }) })
                end

            elseif d.type == "thinking_delta" and str(d.thinking) then
                out[1] = chunk(ss, { reasoning_content = d.thinking })
            end
        end

    elseif t == "message_delta" then
        merge_usage(ss, obj.usage)
        local d = tab(obj.delta)
        local reason = d and str(d.stop_reason)
        if reason then
            ss.finish = ANTHROPIC_TO_OPENAI_STOP[reason] or "stop"
            out[1] = chunk(ss, {}, ss.finish)
        end

    elseif t == "message_stop" then
        if not ss.finish then
            ss.finish = "stop"
            out[#out + 1] = chunk(ss, {}, "stop")
        end

        end_stream(ss, out)

    elseif t == "error" then
        out[1] = sse_encode(nil, encode(openai_error(obj.error)))
        out[2] = "data: [DONE]\n\n"
        ss.done = true

    else
        return nil                  -- ping, content_block_stop, unknown events
    end

    return out
end


function O2A.finish(ss)
    if ss.done or not ss.started then
        return nil
    end

    local out = {}
    if not ss.finish then
        ss.finish = "stop"
        out[1] = chunk(ss, {}, "stop")
    end

    end_stream(ss, out)
    return out
end


-- OpenAI-style configuration puts the key in a Bearer token; the Messages API wants x-api-key.
function O2A.headers(h)
    local auth = h["authorization"]
    if type(auth) == "string" and type(h["x-api-key"]) ~= "string" then
        local key = auth:match("^[Bb]earer%s+(.+)$")
        if key then
            h["x-api-key"] = key
            h["authorization"] = false
        end
    end
end


------------------------------------------------------------------------------------------------

local CONVERTERS = {
    ["anthropic-messages"] = { ["openai-chat"] = A2O },
    ["openai-chat"] = { ["anthropic-messages"] = O2A },
}


-- get(from, to) -> converter | nil
function _M.get(from, to)
    local m = CONVERTERS[from]
    return m and m[to]
end


_M.anthropic_to_openai = A2O
_M.openai_to_anthropic = O2A

return _M
