-- schema_def.lua -- JSON schemas of the Admin API resources, shaped like APISIX's
-- apisix/schema_def.lua so the same documents pass and fail with the same messages.
--
-- Differences from APISIX, on purpose: upstream `type` is an enum of the balancers Sluice has
-- (roundrobin, chash, ewma, least_conn); `plugin_metadata` exists so
-- POST /apisix/admin/schema/validate/plugin_metadata has something to check.
local _M = {}

local ID_PATTERN = [[^[a-zA-Z0-9-_.]+$]]

local id_schema = {
    anyOf = {
        { type = "string", minLength = 1, maxLength = 64, pattern = ID_PATTERN },
        { type = "integer", minimum = 1 },
    },
}
_M.id_schema = id_schema
_M.ID_PATTERN = ID_PATTERN

local host_def_pat = "^\\*$|^\\*?[0-9a-zA-Z-._\\[\\]:]+$"
local host_def = { type = "string", pattern = host_def_pat }
_M.host_def = host_def

local ipv4_seg = "([0-9]|[1-9][0-9]|1[0-9]{2}|2[0-4][0-9]|25[0-5])"
local ipv4_def = table.concat({ ipv4_seg, ipv4_seg, ipv4_seg, ipv4_seg }, [[\.]])
-- Loose like APISIX's: a correct IPv6 CIDR regex is not worth its size here.
local ipv6_def = "([a-fA-F0-9]{0,4}:){1,8}(:[a-fA-F0-9]{0,4}){0,8}([a-fA-F0-9]{0,4})?"
local ip_def = {
    { title = "IPv4", type = "string", format = "ipv4" },
    { title = "IPv4/CIDR", type = "string", pattern = "^" .. ipv4_def .. "/([12]?[0-9]|3[0-2])$" },
    { title = "IPv6", type = "string", format = "ipv6" },
    { title = "IPv6/CIDR", type = "string", pattern = "^" .. ipv6_def .. "/[0-9]{1,3}$" },
}
_M.ip_def = ip_def

_M.uri_def = {
    type = "string",
    pattern = [=[^[^\/]+:\/\/([\da-zA-Z.-]+|\[[\da-fA-F:]+\])(:\d+)?]=],
}

local timestamp_def = { type = "integer" }

local remote_addr_def = { description = "client IP", type = "string", anyOf = ip_def }

local label_value_def = {
    description = "value of label",
    type = "string",
    pattern = [[^\S+$]],
    maxLength = 256,
    minLength = 1,
}
_M.label_value_def = label_value_def

local labels_def = {
    description = "key/value pairs to specify attributes",
    type = "object",
    patternProperties = { [".*"] = label_value_def },
}

local rule_name_def = { type = "string", maxLength = 256, minLength = 1 }

local desc_def = { type = "string", maxLength = 256 }

local timeout_def = {
    type = "object",
    properties = {
        connect = { type = "number", exclusiveMinimum = 0 },
        send = { type = "number", exclusiveMinimum = 0 },
        read = { type = "number", exclusiveMinimum = 0 },
    },
    required = { "connect", "send", "read" },
}
_M.timeout_def = timeout_def

local method_schema = {
    description = "HTTP method",
    type = "string",
    enum = { "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE",
             "PURGE" },
}
_M.method_schema = method_schema


local function statuses(default)
    return {
        type = "array",
        minItems = 1,
        items = { type = "integer", minimum = 200, maximum = 599 },
        uniqueItems = true,
        default = default,
    }
end


local function counter(min, default)
    return { type = "integer", minimum = min, maximum = 254, default = default }
end


local health_checker_active = {
    type = "object",
    properties = {
        type = { type = "string", enum = { "http", "https", "tcp" }, default = "http" },
        timeout = { type = "number", default = 1 },
        concurrency = { type = "integer", default = 10 },
        host = host_def,
        port = { type = "integer", minimum = 1, maximum = 65535 },
        http_method = { type = "string", enum = method_schema.enum, default = "GET" },
        http_path = { type = "string", default = "/" },
        http_req_body = { type = "string", default = "" },
        https_verify_certificate = { type = "boolean", default = true },
        healthy = {
            type = "object",
            properties = {
                interval = { type = "integer", minimum = 1, default = 1 },
                http_statuses = statuses({ 200, 302 }),
                successes = counter(1, 2),
            },
        },
        unhealthy = {
            type = "object",
            properties = {
                interval = { type = "integer", minimum = 1, default = 1 },
                http_statuses = statuses({ 429, 404, 500, 501, 502, 503, 504, 505 }),
                http_failures = counter(1, 5),
                tcp_failures = counter(1, 2),
                timeouts = counter(1, 3),
            },
        },
        req_headers = {
            type = "array",
            minItems = 1,
            items = { type = "string", uniqueItems = true },
        },
    },
}
_M.health_checker_active = health_checker_active

local health_checker_passive = {
    type = "object",
    properties = {
        type = { type = "string", enum = { "http", "https", "tcp" }, default = "http" },
        healthy = {
            type = "object",
            properties = {
                http_statuses = statuses({ 200, 201, 202, 203, 204, 205, 206, 207, 208, 226,
                                           300, 301, 302, 303, 304, 305, 306, 307, 308 }),
                successes = counter(0, 5),
            },
        },
        unhealthy = {
            type = "object",
            properties = {
                http_statuses = statuses({ 429, 500, 503 }),
                tcp_failures = counter(0, 2),
                timeouts = counter(0, 7),
                http_failures = counter(0, 5),
            },
        },
    },
}
_M.health_checker_passive = health_checker_passive

local health_checker = {
    type = "object",
    properties = {
        active = health_checker_active,
        passive = health_checker_passive,
    },
    anyOf = {
        { required = { "active" } },
        { required = { "active", "passive" } },
    },
}
_M.health_checker = health_checker

local nodes_schema = {
    anyOf = {
        {
            type = "object",
            patternProperties = {
                [".*"] = { description = "weight of node", type = "integer", minimum = 0 },
            },
        },
        {
            type = "array",
            items = {
                type = "object",
                properties = {
                    host = host_def,
                    port = { description = "port of node", type = "integer", minimum = 1,
                             maximum = 65535 },
                    weight = { description = "weight of node", type = "integer", minimum = 0 },
                    priority = { description = "priority of node", type = "integer",
                                 default = 0 },
                    metadata = { description = "metadata of node", type = "object" },
                },
                required = { "host", "weight" },
            },
        },
    },
}
_M.nodes_schema = nodes_schema

local certificate_scheme = { type = "string", minLength = 128, maxLength = 64 * 1024 }
local private_key_schema = { type = "string", minLength = 64, maxLength = 64 * 1024 }

local upstream_schema = {
    type = "object",
    properties = {
        id = id_schema,
        name = rule_name_def,
        desc = desc_def,
        labels = labels_def,
        create_time = timestamp_def,
        update_time = timestamp_def,

        nodes = nodes_schema,
        retries = { type = "integer", minimum = 0 },
        retry_timeout = { type = "number", minimum = 0 },
        timeout = timeout_def,
        tls = {
            type = "object",
            properties = {
                client_cert_id = id_schema,
                client_cert = certificate_scheme,
                client_key = private_key_schema,
                verify = { type = "boolean", default = false },
            },
            dependencies = {
                client_cert = { required = { "client_key" } },
                client_key = { required = { "client_cert" } },
                client_cert_id = { ["not"] = { required = { "client_cert", "client_key" } } },
            },
        },
        keepalive_pool = {
            type = "object",
            properties = {
                size = { type = "integer", default = 320, minimum = 1 },
                idle_timeout = { type = "number", default = 60, minimum = 0 },
                requests = { type = "integer", default = 1000, minimum = 1 },
            },
        },
        type = {
            description = "algorithms of load balancing",
            type = "string",
            enum = { "roundrobin", "chash", "ewma", "least_conn" },
            default = "roundrobin",
        },
        checks = health_checker,
        hash_on = {
            type = "string",
            default = "vars",
            enum = { "vars", "header", "cookie", "consumer", "vars_combinations" },
        },
        key = { description = "the key of chash for dynamic load balancing", type = "string" },
        scheme = {
            default = "http",
            enum = { "grpc", "grpcs", "http", "https", "tcp", "tls", "udp", "kafka" },
        },
        discovery_type = { description = "discovery type", type = "string" },
        discovery_args = {
            type = "object",
            properties = {
                namespace_id = { type = "string" },
                group_name = { type = "string" },
            },
        },
        pass_host = {
            description = "mod of host passing",
            type = "string",
            enum = { "pass", "node", "rewrite" },
            default = "pass",
        },
        upstream_host = host_def,
        service_name = { type = "string", maxLength = 256, minLength = 1 },
    },
    oneOf = {
        { required = { "nodes" } },
        { required = { "service_name", "discovery_type" } },
    },
    additionalProperties = false,
}
_M.upstream = upstream_schema

_M.upstream_hash_vars_schema = {
    type = "string",
    pattern = [[^((uri|server_name|server_addr|request_uri|remote_port]]
              .. [[|remote_addr|query_string|host|hostname|mqtt_client_id)]]
              .. [[|arg_[0-9a-zA-z_-]+)$]],
}

_M.upstream_hash_header_schema = { type = "string", pattern = [[^[a-zA-Z0-9-_]+$]] }

_M.upstream_hash_vars_combinations_schema = { type = "string" }

local plugins_schema = { type = "object" }

_M.route = {
    type = "object",
    properties = {
        id = id_schema,
        name = rule_name_def,
        desc = desc_def,
        labels = labels_def,
        create_time = timestamp_def,
        update_time = timestamp_def,

        uri = { type = "string", minLength = 1, maxLength = 4096 },
        uris = {
            type = "array",
            items = { description = "HTTP uri", type = "string" },
            minItems = 1,
            uniqueItems = true,
        },
        priority = { type = "integer", default = 0 },
        methods = { type = "array", items = method_schema, uniqueItems = true },
        host = host_def,
        hosts = { type = "array", items = host_def, minItems = 1, uniqueItems = true },
        remote_addr = remote_addr_def,
        remote_addrs = {
            type = "array",
            items = remote_addr_def,
            minItems = 1,
            uniqueItems = true,
        },
        timeout = timeout_def,
        vars = { type = "array" },
        filter_func = { type = "string", minLength = 10, pattern = [[^function]] },
        script = { type = "string", minLength = 10, maxLength = 102400 },
        script_id = id_schema,
        plugins = plugins_schema,
        plugin_config_id = id_schema,
        upstream = upstream_schema,
        service_id = id_schema,
        upstream_id = id_schema,
        enable_websocket = { description = "enable websocket for request", type = "boolean" },
        status = {
            description = "route status, 1 to enable, 0 to disable",
            type = "integer",
            enum = { 1, 0 },
            default = 1,
        },
    },
    allOf = {
        { oneOf = { { required = { "uri" } }, { required = { "uris" } } } },
        {
            oneOf = {
                { ["not"] = { anyOf = { { required = { "host" } },
                                        { required = { "hosts" } } } } },
                { required = { "host" } },
                { required = { "hosts" } },
            },
        },
        {
            oneOf = {
                { ["not"] = { anyOf = { { required = { "remote_addr" } },
                                        { required = { "remote_addrs" } } } } },
                { required = { "remote_addr" } },
                { required = { "remote_addrs" } },
            },
        },
    },
    anyOf = {
        { required = { "plugins", "uri" } },
        { required = { "upstream", "uri" } },
        { required = { "upstream_id", "uri" } },
        { required = { "service_id", "uri" } },
        { required = { "plugins", "uris" } },
        { required = { "upstream", "uris" } },
        { required = { "upstream_id", "uris" } },
        { required = { "service_id", "uris" } },
        { required = { "script", "uri" } },
        { required = { "script", "uris" } },
    },
    ["not"] = {
        anyOf = {
            { required = { "script", "plugins" } },
            { required = { "script", "plugin_config_id" } },
        },
    },
    additionalProperties = false,
}

_M.service = {
    type = "object",
    properties = {
        id = id_schema,
        name = rule_name_def,
        desc = desc_def,
        labels = labels_def,
        create_time = timestamp_def,
        update_time = timestamp_def,

        plugins = plugins_schema,
        upstream = upstream_schema,
        upstream_id = id_schema,
        script = { type = "string", minLength = 10, maxLength = 102400 },
        enable_websocket = { description = "enable websocket for request", type = "boolean" },
        hosts = { type = "array", items = host_def, minItems = 1, uniqueItems = true },
    },
    additionalProperties = false,
}

_M.consumer = {
    type = "object",
    properties = {
        id = id_schema,
        username = {
            type = "string",
            minLength = 1,
            maxLength = rule_name_def.maxLength,
            pattern = [[^[a-zA-Z0-9_\-]+$]],
        },
        desc = desc_def,
        labels = labels_def,
        create_time = timestamp_def,
        update_time = timestamp_def,

        group_id = id_schema,
        plugins = plugins_schema,
    },
    required = { "username" },
    additionalProperties = false,
}

_M.ssl = {
    type = "object",
    properties = {
        id = id_schema,
        desc = desc_def,
        labels = labels_def,
        create_time = timestamp_def,
        update_time = timestamp_def,

        type = { type = "string", default = "server", enum = { "server", "client" } },
        cert = certificate_scheme,
        key = private_key_schema,
        sni = { type = "string", pattern = host_def_pat },
        snis = {
            type = "array",
            items = { type = "string", pattern = host_def_pat },
            minItems = 1,
        },
        certs = { type = "array", items = certificate_scheme },
        keys = { type = "array", items = private_key_schema },
        client = {
            type = "object",
            properties = {
                ca = certificate_scheme,
                depth = { type = "integer", minimum = 0, default = 1 },
                skip_mtls_uri_regex = {
                    type = "array",
                    minItems = 1,
                    uniqueItems = true,
                    items = { type = "string" },
                },
            },
            required = { "ca" },
        },
        status = { type = "integer", enum = { 1, 0 }, default = 1 },
        ssl_protocols = {
            type = "array",
            maxItems = 3,
            uniqueItems = true,
            items = { enum = { "TLSv1.1", "TLSv1.2", "TLSv1.3" } },
        },
    },
    ["if"] = { properties = { type = { enum = { "server" } } } },
    ["then"] = {
        oneOf = {
            { required = { "sni", "key", "cert" } },
            { required = { "snis", "key", "cert" } },
        },
    },
    ["else"] = { required = { "key", "cert" } },
    additionalProperties = false,
}

_M.global_rule = {
    type = "object",
    properties = {
        id = id_schema,
        create_time = timestamp_def,
        update_time = timestamp_def,
        plugins = plugins_schema,
    },
    required = { "id", "plugins" },
    additionalProperties = false,
}

_M.plugin_config = {
    type = "object",
    properties = {
        id = id_schema,
        name = { type = "string" },
        desc = desc_def,
        labels = labels_def,
        create_time = timestamp_def,
        update_time = timestamp_def,
        plugins = plugins_schema,
    },
    required = { "id", "plugins" },
    additionalProperties = false,
}

-- apisix/schema_def.lua consumer_group.
_M.consumer_group = {
    type = "object",
    properties = {
        id = id_schema,
        name = rule_name_def,
        desc = desc_def,
        labels = labels_def,
        create_time = timestamp_def,
        update_time = timestamp_def,
        plugins = plugins_schema,
    },
    required = { "id", "plugins" },
    additionalProperties = false,
}

-- apisix/schema_def.lua credential: one auth plugin, under /consumers/{name}/credentials/{id}.
_M.credential = {
    type = "object",
    properties = {
        id = {
            oneOf = {
                id_schema,
                {
                    type = "string",
                    minLength = 15,
                    maxLength = 128,
                    pattern = [[^[a-zA-Z0-9-_]+/credentials/[a-zA-Z0-9-_.]+$]],
                },
            },
        },
        name = rule_name_def,
        desc = desc_def,
        labels = labels_def,
        create_time = timestamp_def,
        update_time = timestamp_def,
        plugins = { type = "object", maxProperties = 1 },
    },
    additionalProperties = false,
}

-- apisix/schema_def.lua proto (APISIX also compiles `content`; Sluice only stores it).
_M.proto = {
    type = "object",
    properties = {
        id = id_schema,
        name = rule_name_def,
        desc = desc_def,
        labels = labels_def,
        create_time = timestamp_def,
        update_time = timestamp_def,
        content = { type = "string", minLength = 1, maxLength = 1024 * 1024 },
    },
    required = { "content" },
    additionalProperties = false,
}

-- apisix/schema_def.lua stream_route (xrpc `protocol` kept to its outer shape).
_M.stream_route = {
    type = "object",
    properties = {
        id = id_schema,
        name = rule_name_def,
        desc = desc_def,
        labels = labels_def,
        create_time = timestamp_def,
        update_time = timestamp_def,
        remote_addr = remote_addr_def,
        server_addr = { description = "server IP", type = "string", anyOf = ip_def },
        server_port = { description = "server port", type = "integer", minimum = 1,
                        maximum = 65535 },
        sni = { description = "server name indication", type = "string",
                pattern = host_def_pat },
        upstream = upstream_schema,
        upstream_id = id_schema,
        service_id = id_schema,
        plugins = plugins_schema,
        protocol = {
            type = "object",
            properties = {
                name = { type = "string" },
                superior_id = id_schema,
                conf = { description = "protocol-specific configuration", type = "object" },
                logger = { type = "array" },
            },
            required = { "name" },
        },
    },
    additionalProperties = false,
}

-- The schemas of apisix/secret/{vault,aws,gcp}.lua, by manager, with the fields Sluice seals
-- at rest (APISIX stores them in clear).
_M.secret_managers = {
    vault = {
        schema = {
            type = "object",
            properties = {
                uri = _M.uri_def,
                prefix = { type = "string" },
                token = { type = "string" },
                namespace = { type = "string" },
            },
            required = { "uri", "prefix", "token" },
        },
        encrypt_fields = { "token" },
    },
    aws = {
        schema = {
            type = "object",
            properties = {
                access_key_id = { type = "string" },
                secret_access_key = { type = "string" },
                session_token = { type = "string" },
                region = { type = "string", default = "us-east-1" },
                endpoint_url = _M.uri_def,
            },
            required = { "access_key_id", "secret_access_key" },
        },
        encrypt_fields = { "secret_access_key", "session_token" },
    },
    gcp = {
        schema = {
            type = "object",
            properties = {
                auth_config = {
                    type = "object",
                    properties = {
                        client_email = { type = "string" },
                        private_key = { type = "string" },
                        project_id = { type = "string" },
                        token_uri = { type = "string",
                                      default = "https://oauth2.googleapis.com/token" },
                        scope = { type = "array", items = { type = "string" },
                                  default = { "https://www.googleapis.com/auth/cloud-platform" } },
                        entries_uri = { type = "string",
                                        default = "https://secretmanager.googleapis.com/v1" },
                    },
                    required = { "client_email", "private_key", "project_id" },
                },
                ssl_verify = { type = "boolean", default = true },
                auth_file = { type = "string" },
            },
            oneOf = {
                { required = { "auth_config" } },
                { required = { "auth_file" } },
            },
        },
        encrypt_fields = { "auth_config.private_key" },
    },
}

-- The shape common to every plugin's metadata; the plugin's metadata_schema does the rest.
_M.plugin_metadata = {
    type = "object",
    properties = {
        id = { type = "string", minLength = 1 },
        create_time = timestamp_def,
        update_time = timestamp_def,
    },
}

-- What APISIX injects into every plugin schema: `_meta` is allowed on any plugin conf.
_M.plugin_injected_schema = {
    type = "object",
    properties = {
        disable = { type = "boolean" },
        error_response = { oneOf = { { type = "string" }, { type = "object" } } },
        priority = { description = "priority of plugins by customized order", type = "integer" },
        filter = { description = "filter determines whether the plugin needs to be executed",
                   type = "array" },
        pre_function = { type = "string" },
    },
    additionalProperties = false,
}

-- Resource kind (Admin API path segment) -> schema.
_M.by_kind = {
    routes = _M.route,
    services = _M.service,
    upstreams = _M.upstream,
    consumers = _M.consumer,
    ssls = _M.ssl,
    global_rules = _M.global_rule,
    plugin_configs = _M.plugin_config,
    plugin_metadata = _M.plugin_metadata,
    consumer_groups = _M.consumer_group,
    credentials = _M.credential,
    protos = _M.proto,
    stream_routes = _M.stream_route,
}


return _M
