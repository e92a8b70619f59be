-- key-auth: identifies the consumer by an API key sent in a header (default `apikey`) or a
-- query argument (default `apikey`), as APISIX's apisix/plugins/key-auth.lua does. The
-- consumer's plugins are then merged over the route's by the runner (consumer wins).
-- Consumers carry {"key-auth": {"key": "..."}}, and so may their credentials
-- (/consumers/{name}/credentials/{id}); the key is sealed at rest (encrypt_fields). A
-- credential's key identifies its consumer, with credential_id set (X-Credential-Identifier).
-- The key -> consumer index is built once per configuration snapshot.
local pdk = require("sluice.pdk")
local schema = require("sluice.schema")
local config = require("sluice.config")

local type = type
local pairs = pairs
local ipairs = ipairs
local sort = table.sort
local setmetatable = setmetatable

local PLUGIN_NAME = "key-auth"

local schema_def = {
    type = "object",
    properties = {
        header = { type = "string", default = "apikey" },
        query = { type = "string", default = "apikey" },
        -- printable ASCII without " and \ (apisix/schema_def.lua get_realm_schema)
        realm = { type = "string", pattern = "^[\x20-\x21\x23-\x5B\\]-\x7E]+$",
                  default = "key", minLength = 1, maxLength = 128 },
        hide_credentials = { type = "boolean", default = false },
        anonymous_consumer = { type = "string", minLength = 1 },
    },
}

local consumer_schema = {
    type = "object",
    properties = {
        key = { type = "string" },
    },
    encrypt_fields = { "key" },
    required = { "key" },
}

local _M = {
    version = 0.1,
    priority = 2500,
    type = "auth",
    name = PLUGIN_NAME,
    schema = schema_def,
    consumer_schema = consumer_schema,
    encrypt_fields = { "key" },
}

-- snapshot.consumers (a table replaced with every snapshot) -> { key = consumer }
local index_by_consumers = setmetatable({}, { __mode = "k" })


function _M.check_schema(conf, schema_type)
    if schema_type == schema.TYPE_CONSUMER then
        return schema.check(consumer_schema, conf)
    end

    return schema.check(schema_def, conf)
end


local function credential_key(plugins)
    local conf = type(plugins) == "table" and plugins[PLUGIN_NAME]
    if type(conf) == "table" and type(conf.key) == "string" and conf.key ~= "" then
        return conf.key
    end

    return nil
end


local function key_index(snap)
    local consumers = snap.consumers
    local index = index_by_consumers[consumers]
    if index then
        return index
    end

    -- the Admin API refuses duplicate keys; a standalone file might not: the first username
    -- in sort order wins, whatever the table order
    local names = {}
    for name in pairs(consumers) do
        names[#names + 1] = name
    end

    sort(names)
    index = {}
    for _, name in ipairs(names) do
        local consumer = consumers[name]
        local key = type(consumer) == "table" and credential_key(consumer.plugins)
        if key and index[key] == nil then
            index[key] = consumer
        end
    end

    -- credentials (in key order, after the consumers' own keys): a copy of the consumer
    -- that says which credential matched, made once per snapshot
    for _, cred in ipairs(snap.credentials or {}) do
        local key = credential_key(type(cred.value) == "table" and cred.value.plugins)
        local consumer = consumers[cred.consumer]
        if key and index[key] == nil and type(consumer) == "table" then
            local c = {}
            for k, v in pairs(consumer) do
                c[k] = v
            end

            c.credential_id = cred.id
            index[key] = c
        end
    end

    index_by_consumers[consumers] = index
    return index
end


local function first(v)
    if type(v) == "table" then
        return v[1]
    end

    return v
end


-- the key as sent, and whether it came from the header; nil when absent
local function find_key(conf, ctx)
    local key = pdk.request.header(ctx, conf.header or "apikey")
    if key then
        return first(key), true
    end

    local args = pdk.request.get_args(ctx) or {}
    key = first(args[conf.query or "apikey"])
    if type(key) ~= "string" then
        return nil
    end

    return key, false
end


local function hide(conf, ctx, from_header)
    if from_header then
        pdk.request.set_header(ctx, conf.header or "apikey", nil)
        return
    end

    -- removing a query argument needs pdk.request.set_uri_args (the core's)
    local set_args = pdk.request.set_uri_args
    if set_args then
        local args = pdk.request.get_args(ctx) or {}
        args[conf.query or "apikey"] = nil
        set_args(ctx, args)
    end
end


local function attach(ctx, consumer)
    ctx.consumer = consumer
    ctx.consumer_name = consumer.username
    -- set or cleared, so a client cannot pose as a consumer upstream
    pdk.request.set_header(ctx, "X-Consumer-Username", consumer.username)
    pdk.request.set_header(ctx, "X-Credential-Identifier", consumer.credential_id)
    -- APISIX takes the custom id from the consumer's labels
    local labels = consumer.labels
    pdk.request.set_header(ctx, "X-Consumer-Custom-ID",
                           consumer.custom_id or type(labels) == "table" and labels.custom_id
                           or nil)
end


local function unauthorized(conf, message)
    pdk.response.set_header("WWW-Authenticate", 'apikey realm="' .. (conf.realm or "key") .. '"')
    return 401, { message = message }
end


function _M.rewrite(conf, ctx)
    local snap = config.current() or { consumers = {} }
    local consumers = snap.consumers
    local key, from_header = find_key(conf, ctx)

    local consumer, err
    if not key then
        err = "Missing API key in request"
    else
        consumer = key_index(snap)[key]
        if not consumer then
            pdk.log.warn("failed to find consumer: invalid api key")
            err = "Invalid API key in request"
        end
    end

    if consumer then
        if conf.hide_credentials then
            hide(conf, ctx, from_header)
        end

        attach(ctx, consumer)
        return
    end

    if not conf.anonymous_consumer then
        return unauthorized(conf, err)
    end

    if conf.hide_credentials and key then
        hide(conf, ctx, from_header)
    end

    local anonymous = consumers[conf.anonymous_consumer]
    if type(anonymous) ~= "table" then
        pdk.log.error("key-auth failed to authenticate the request, code: 401. error: ",
                      "failed to get anonymous consumer ", conf.anonymous_consumer)
        return unauthorized(conf, "Invalid user authorization")
    end

    attach(ctx, anonymous)
end


return _M
