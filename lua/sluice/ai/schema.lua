-- schema.lua -- ai-proxy's configuration schema, and the parts ai-proxy-multi shares.
--
-- Same keys, types, defaults and limits as APISIX's apisix/plugins/ai-proxy/schema.lua, so a
-- route moves over unchanged. One deliberate difference: APISIX declares auth's sub-keys under
-- patternProperties (regexes, so "myheader" would be read as `header`); here they are plain
-- properties with additionalProperties false, which accepts every configuration APISIX's
-- intent accepts.
local providers = require("sluice.ai.providers")
local protocols = require("sluice.ai.protocols")

local ipairs = ipairs
local pairs = pairs
local tonumber = tonumber
local type = type

local _M = {}


local auth_item = {
    type = "object",
    patternProperties = {
        ["^[a-zA-Z0-9._-]+$"] = { type = "string" },
    },
}

_M.auth = {
    type = "object",
    properties = {
        header = auth_item,
        query = auth_item,
        gcp = {
            type = "object",
            properties = {
                service_account_json = { type = "string" },
                max_ttl = { type = "integer", minimum = 1 },
                expire_early_secs = { type = "integer", minimum = 0, default = 60 },
            },
        },
        aws = {
            type = "object",
            properties = {
                access_key_id = { type = "string", minLength = 1 },
                secret_access_key = { type = "string", minLength = 1 },
                session_token = { type = "string", minLength = 1 },
            },
            required = { "access_key_id", "secret_access_key" },
        },
    },
    additionalProperties = false,
}

_M.options = {
    type = "object",
    properties = {
        model = { type = "string" },
    },
    additionalProperties = true,
}

local request_body_props = {}
for _, name in ipairs(protocols.NAMES) do
    request_body_props[name] = { type = "object", additionalProperties = true }
end

_M.override = {
    type = "object",
    properties = {
        endpoint = { type = "string", minLength = 1 },
        llm_options = {
            type = "object",
            properties = {
                max_tokens = { type = "integer", minimum = 1 },
            },
            additionalProperties = false,
        },
        request_body = {
            type = "object",
            properties = request_body_props,
            additionalProperties = false,
        },
        request_body_force_override = { type = "boolean", default = false },
    },
}

_M.provider_conf = {
    type = "object",
    properties = {
        project_id = { type = "string" },
        region = { type = "string", minLength = 1 },
    },
}

_M.logging = {
    type = "object",
    properties = {
        summaries = { type = "boolean", default = false },
        payloads = { type = "boolean", default = false },
    },
}

_M.provider = { type = "string", enum = providers.NAMES }

-- Transport and limit settings shared by ai-proxy and ai-proxy-multi (top level of both).
_M.common = {
    timeout = { type = "integer", minimum = 1, maximum = 600000, default = 30000 },
    max_req_body_size = { type = "integer", minimum = 1, default = 67108864 },
    max_stream_duration_ms = { type = "integer", minimum = 1 },
    max_response_bytes = { type = "integer", minimum = 1 },
    keepalive = { type = "boolean", default = true },
    keepalive_timeout = { type = "integer", minimum = 1000, default = 60000 },
    keepalive_pool = { type = "integer", minimum = 1, default = 30 },
    streaming_flush_interval_ms = { type = "integer", minimum = 0, default = 10 },
    ssl_verify = { type = "boolean", default = true },
}

_M.encrypt_fields = {
    "auth.header", "auth.query", "auth.gcp.service_account_json",
    "auth.aws.secret_access_key", "auth.aws.session_token",
}


local function ai_proxy_schema()
    local props = {
        provider = _M.provider,
        provider_conf = _M.provider_conf,
        logging = _M.logging,
        auth = _M.auth,
        options = _M.options,
        override = _M.override,
    }
    for k, v in pairs(_M.common) do
        props[k] = v
    end

    return {
        type = "object",
        properties = props,
        required = { "provider", "auth" },
        encrypt_fields = _M.encrypt_fields,
    }
end

_M.ai_proxy = ai_proxy_schema()


-- Parse an override.endpoint: {scheme, host, port, path (nil when none or "/"), query (raw,
-- nil when none)} | nil, err. Accepts "http(s)://host[:port][/path][?query]", IPv6 in [].
function _M.parse_endpoint(endpoint)
    if type(endpoint) ~= "string" then
        return nil, "invalid endpoint"
    end

    local scheme, rest = endpoint:match("^(%a[%w+.-]*)://(.*)$")
    if not scheme then
        scheme, rest = "https", endpoint
    end

    scheme = scheme:lower()
    if scheme ~= "http" and scheme ~= "https" then
        return nil, "invalid endpoint: unsupported scheme " .. scheme
    end

    rest = rest:gsub("#.*$", "")
    local authority, tail = rest:match("^([^/?]*)(.*)$")
    local host, port
    if authority:sub(1, 1) == "[" then
        host, port = authority:match("^(%[[%x:.]+%])(.*)$")

    else
        host, port = authority:match("^([^:]*)(.*)$")
    end

    if not host or host == "" then
        return nil, "invalid endpoint: no host"
    end

    if port ~= "" then
        port = port:match("^:(%d+)$")
        if not port then
            return nil, "invalid endpoint: bad port"
        end

        port = tonumber(port)
        if port < 1 or port > 65535 then
            return nil, "invalid endpoint: bad port"
        end

    else
        port = scheme == "https" and 443 or 80
    end

    local path, query = tail:match("^([^?]*)%??(.*)$")
    if path == "" or path == "/" then
        path = nil
    end

    if query == "" then
        query = nil
    end

    return { scheme = scheme, host = host, port = port, path = path, query = query }
end


-- check(conf) -> true | false, err: what the schema cannot say, for an ai-proxy conf or one
-- ai-proxy-multi instance.
function _M.check_instance(conf)
    local p, err = providers.get(conf.provider)
    if not p then
        return false, err
    end

    local override = conf.override
    local endpoint = type(override) == "table" and override.endpoint or nil
    if endpoint ~= nil then
        local _, perr = _M.parse_endpoint(endpoint)
        if perr then
            return false, perr
        end

    elseif not p.host then
        -- APISIX accepts this and fails every request; refusing it here says so once
        return false, "provider " .. conf.provider .. " has no default endpoint: set "
                      .. "override.endpoint"
    end

    return true
end


return _M
