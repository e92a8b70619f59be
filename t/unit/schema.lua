-- schema.lua: the JSON-schema validator (lua/sluice/schema.lua) and the resource schemas
-- (lua/sluice/schema_def.lua): each keyword, APISIX/jsonschema messages, default filling,
-- caching, PCRE2 patterns and the injectable matcher.
package.path = "lua/?.lua;lua/?/init.lua;t/unit/?.lua;" .. package.path
local t = require("tap")
local cjson = require("cjson.safe")
local schema = require("sluice.schema")
local def = require("sluice.schema_def")

local ok, is, is_deeply, like = t.ok, t.is, t.is_deeply, t.like


local function fails(s, v, want, name)
    local good, err = schema.check(s, v)
    is(good, false, name .. " fails")
    is(err, want, name .. " message")
end


local function passes(s, v, name)
    local good, err = schema.check(s, v)
    ok(good, name .. (err and (" (" .. err .. ")") or ""))
end


local function j(s)
    return assert(cjson.decode(s))
end


-- type -------------------------------------------------------------------------------------
passes({ type = "string" }, "x", "string")
fails({ type = "string" }, 1, "wrong type: expected string, got number", "string vs number")
fails({ type = "integer" }, "1", "wrong type: expected integer, got string", "integer vs string")
fails({ type = "integer" }, 1.5, "wrong type: expected integer, got number", "integer vs float")
passes({ type = "integer" }, 3, "integer")
passes({ type = "number" }, 1.5, "number")
passes({ type = "boolean" }, false, "boolean")
passes({ type = "null" }, cjson.null, "null")
fails({ type = "null" }, false, "wrong type: expected null, got boolean", "null vs boolean")
passes({ type = "object" }, { a = 1 }, "object")
passes({ type = "object" }, {}, "empty table is an object")
passes({ type = "array" }, {}, "empty table is an array")
fails({ type = "object" }, { 1, 2 }, "wrong type: expected object, got table", "array vs object")
fails({ type = "array" }, { a = 1 }, "wrong type: expected array, got table", "object vs array")
passes({ type = { "string", "integer" } }, 5, "union: integer")
passes({ type = { "string", "integer" } }, "5", "union: string")
fails({ type = { "string", "integer" } }, { a = 1 },
      "wrong type: expected one of string, integer, got table", "union message")
fails({ type = "object" }, nil, "wrong type: expected object, got nil", "nil value")

-- properties, required, additionalProperties, patternProperties ------------------------
local obj = {
    type = "object",
    properties = {
        provider = { type = "string", enum = { "openai", "deepseek" } },
        n = { type = "integer", minimum = 1 },
    },
    required = { "provider" },
    additionalProperties = false,
}
fails(obj, { provider = "x" },
      'property "provider" validation failed: matches none of the enum values', "enum in property")
fails(obj, { n = 2 }, 'property "provider" is required', "required")
fails(obj, { provider = "openai", n = 0 },
      'property "n" validation failed: expected 0 to be at least 1', "minimum in property")
fails(obj, { provider = "openai", extra = 1 }, "additional properties forbidden, found extra",
      "additionalProperties false")
passes(obj, { provider = "deepseek", n = 3 }, "valid object")
fails({ type = "object", required = { "a", "b" } }, { a = 1 }, 'property "b" is required',
      "required without properties")
fails({ type = "object", additionalProperties = { type = "string" } }, { a = 1 },
      "failed to validate additional property a: wrong type: expected string, got number",
      "additionalProperties schema")
passes({ type = "object", additionalProperties = { type = "string" } }, { a = "x" },
       "additionalProperties schema passes")
local pp = { type = "object", patternProperties = { ["^x-"] = { type = "string" } },
             additionalProperties = false }
passes(pp, { ["x-a"] = "1" }, "patternProperties match")
fails(pp, { ["x-a"] = 1 },
      'failed to validate x-a (matching "^x-"): wrong type: expected string, got number',
      "patternProperties message")
fails(pp, { y = "1" }, "additional properties forbidden, found y", "not matching any pattern")
fails({ type = "object", minProperties = 2 }, { a = 1 },
      "expect object to have at least 2 properties", "minProperties")
fails({ type = "object", maxProperties = 1 }, { a = 1, b = 2 },
      "expect object to have at most 1 properties", "maxProperties")

-- dependencies -----------------------------------------------------------------------------
local deps = {
    type = "object",
    properties = { cert = { type = "string" }, key = { type = "string" } },
    dependencies = { cert = { "key" }, id = { ["not"] = { required = { "cert" } } } },
}
fails(deps, { cert = "c" }, 'property "key" is required when "cert" is set', "dependency list")
passes(deps, { cert = "c", key = "k" }, "dependency satisfied")
fails(deps, { id = 1, cert = "c", key = "k" },
      'failed to validate dependent schema for "id": value wasn\'t supposed to match schema',
      "dependency schema")

-- strings ----------------------------------------------------------------------------------
fails({ type = "string", minLength = 2 }, "a", "string too short, expected at least 2, got 1",
      "minLength")
fails({ type = "string", maxLength = 2 }, "abc", "string too long, expected at most 2, got 3",
      "maxLength")
passes({ type = "string", maxLength = 2 }, "\xc3\xa9\xc3\xa9", "maxLength counts UTF-8 chars")
fails({ type = "string", pattern = "^[a-z]+$" }, "A1",
      'failed to match pattern "^[a-z]+$" with "A1"', "pattern")
passes({ type = "string", pattern = "^\\d{3}(?=x)" }, "123x", "PCRE lookahead and \\d")
passes({ type = "string", pattern = "b" }, "abc", "pattern is a search, not anchored")
passes({ type = "string", pattern = def.ID_PATTERN }, "a-b_c.1", "id pattern")
fails({ type = "string", pattern = def.ID_PATTERN }, "a b",
      'failed to match pattern "^[a-zA-Z0-9-_.]+$" with "a b"', "id pattern rejects space")
fails({ type = "string", pattern = "(" }, "x", 'failed to match pattern "(" with "x"',
      "a pattern that does not compile never matches")
fails({ type = "string", format = "ipv4" }, "1.2.3.999",
      "expect valid ipv4 format but got: 1.2.3.999", "format ipv4")
passes({ type = "string", format = "ipv6" }, "fe80::1", "format ipv6")
passes({ type = "string", format = "email" }, "a@b.io", "format email")

-- numbers ----------------------------------------------------------------------------------
fails({ type = "number", maximum = 10 }, 11, "expected 11 to be at most 10", "maximum")
fails({ type = "number", exclusiveMinimum = 0 }, 0, "expected 0 to be greater than 0",
      "exclusiveMinimum")
fails({ type = "number", exclusiveMaximum = 1 }, 1, "expected 1 to be smaller than 1",
      "exclusiveMaximum")
passes({ type = "number", exclusiveMaximum = 1 }, 0.5, "exclusiveMaximum passes")
fails({ type = "number", multipleOf = 3 }, 7, "expected 7 to be a multiple of 3", "multipleOf")
passes({ type = "number", multipleOf = 0.01 }, 1.13, "float multipleOf tolerance")
passes({ minimum = 5 }, "not a number", "number keywords ignore other types")

-- arrays -----------------------------------------------------------------------------------
local arr = { type = "array", items = { type = "string" }, minItems = 1, maxItems = 3,
              uniqueItems = true }
fails(arr, {}, "expect array to have at least 1 items", "minItems")
fails(arr, { "a", "b", "c", "d" }, "expect array to have at most 3 items", "maxItems")
fails(arr, { "a", 1 }, "failed to validate item 2: wrong type: expected string, got number",
      "items")
fails(arr, { "a", "b", "a" }, "expected unique items but items 1 and 3 are equal", "uniqueItems")
fails({ type = "array", uniqueItems = true }, { { a = 1 }, { a = 1 } },
      "expected unique items but items 1 and 2 are equal", "uniqueItems deep")
local tuple = { type = "array", items = { { type = "string" }, { type = "integer" } },
                additionalItems = false }
passes(tuple, { "a", 1 }, "tuple")
fails(tuple, { "a", "b" }, "failed to validate item 2: wrong type: expected integer, got string",
      "tuple item")
fails(tuple, { "a", 1, 2 }, "found unexpected extra items in array", "additionalItems false")
fails({ type = "array", contains = { type = "integer" } }, { "a" }, "failed to check contains",
      "contains")
passes({ type = "array", contains = { type = "integer" } }, { "a", 1 }, "contains passes")

-- enum, const ------------------------------------------------------------------------------
passes({ enum = { 1, "a", { x = 1 } } }, { x = 1 }, "enum with table")
fails({ enum = { 1, 0 } }, 3, "matches none of the enum values", "enum number")
fails({ const = "a" }, "b", "failed to check const value", "const")
passes({ const = { 1, 2 } }, { 1, 2 }, "const table")

-- combinators ------------------------------------------------------------------------------
local any = { anyOf = { { required = { "a" } }, { required = { "b", "c" } } } }
fails(any, { c = 1 }, 'object matches none of the required: ["a"] or ["b","c"]', "anyOf message")
passes(any, { b = 1, c = 2 }, "anyOf second")
fails({ anyOf = { { type = "string" }, { type = "integer" } } }, {},
      "object matches none of the required", "anyOf without required")
local one = { oneOf = { { type = "integer" }, { type = "number" } } }
fails(one, 1, "value should match only one schema, but matches both schemas 1 and 2", "oneOf both")
fails(one, "x", "value should match only one schema, but matches none", "oneOf none")
passes(one, 1.5, "oneOf exactly one")
fails({ allOf = { { type = "number" }, { minimum = 5 } } }, 3,
      "allOf 2 failed: expected 3 to be at least 5", "allOf")
fails({ ["not"] = { type = "string" } }, "x", "value wasn't supposed to match schema", "not")
local cond = {
    ["if"] = { properties = { type = { enum = { "server" } } } },
    ["then"] = { required = { "sni" } },
    ["else"] = { required = { "key" } },
}
fails(cond, { type = "server" }, "then clause did not match", "if/then")
fails(cond, { type = "client" }, "else clause did not match", "if/else")
passes(cond, { type = "client", key = "k" }, "if/else passes")
passes(true, 42, "boolean schema true")
fails(false, 42, "expect false always", "boolean schema false")

-- defaults ---------------------------------------------------------------------------------
local dflt = {
    type = "object",
    properties = {
        timeout = { type = "integer", default = 30000 },
        ssl_verify = { type = "boolean", default = true },
        headers = { type = "object", default = { a = "b" } },
        nested = {
            type = "object",
            properties = { x = { type = "string", default = "y" } },
            default = {},
        },
    },
}
local v = {}
passes(dflt, v, "defaults schema")
is(v.timeout, 30000, "number default filled")
is(v.ssl_verify, true, "boolean default filled")
is_deeply(v.headers, { a = "b" }, "table default filled")
is_deeply(v.nested, {}, "nested default is the default as written (not re-validated)")
local w = {}
schema.check(dflt, w)
w.headers.a = "changed"
local w2 = {}
schema.check(dflt, w2)
is(w2.headers.a, "b", "table defaults are copied, not shared")
local given = { timeout = 5 }
schema.check(dflt, given)
is(given.timeout, 5, "given values are kept")
local nested = { nested = {} }
schema.check(dflt, nested)
is(nested.nested.x, "y", "defaults inside nested objects")

-- caching and bad schemas -----------------------------------------------------------------
local s1 = { type = "string" }
ok(schema.validator(s1) == schema.validator(s1), "validator compiled once per schema table")
local bad_ok, bad_err = schema.check({ type = "strin" }, "x")
is(bad_ok, false, "unknown type is an error")
like(bad_err, "invalid schema", "bad schema reported, not raised")
local mutable = { type = "string" }
passes(mutable, "x", "before change")
mutable.type = "integer"
passes(mutable, "x", "cached until invalidated")
schema.invalidate(mutable)
fails(mutable, "x", "wrong type: expected integer, got string", "after invalidate")
local selfref = { type = "object", properties = {} }
selfref.properties.child = selfref
passes(selfref, { child = { child = {} } }, "self-referencing schema table")

-- injectable matcher -----------------------------------------------------------------------
local seen
schema.set_re_find(function(subject, pattern)
    seen = pattern
    return subject == "magic"
end)
local inj = { type = "string", pattern = "^anything$" }
passes(inj, "magic", "custom matcher used")
is(seen, "^anything$", "custom matcher got the pattern")
schema.set_re_find(nil)
fails(inj, "magic", 'failed to match pattern "^anything$" with "magic"', "PCRE2 restored")
ok(schema.pcre2_find("abc", "^a.c$"), "pcre2_find direct")

-- resource schemas (APISIX messages from t/admin/*.t) ----------------------------------------
local up = { nodes = { ["127.0.0.1:80"] = 1 } }
fails(def.route, j('{"uri":666,"upstream":{"nodes":{"a":1}}}'),
      'property "uri" validation failed: wrong type: expected string, got number', "route uri type")
fails(def.route, j('{"uri":"","upstream":{"nodes":{"a":1}}}'),
      'property "uri" validation failed: string too short, expected at least 1, got 0',
      "route uri empty")
fails(def.route, j('{"uris":["/a","/a"],"upstream":{"nodes":{"a":1}}}'),
      'property "uris" validation failed: expected unique items but items 1 and 2 are equal',
      "route uris unique")
fails(def.route, { upstream = up },
      "allOf 1 failed: value should match only one schema, but matches none", "route needs uri")
like(select(2, schema.check(def.route, { uri = "/a" })),
     '^object matches none of the required: %["plugins","uri"%] or %["upstream","uri"%]',
     "route needs plugins, upstream, upstream_id or service_id")
fails(def.route, { uri = "/a", plugins = {}, status = 3 },
      'property "status" validation failed: matches none of the enum values', "route status")
fails(def.route, { uri = "/a", plugins = {}, plugin_config_id = "@@@@" },
      'property "plugin_config_id" validation failed: object matches none of the required',
      "route id_schema")
fails(def.route, { uri = "/a", plugins = {}, labels = { env = {} } },
      'property "labels" validation failed: failed to validate env (matching ".*"): '
      .. "wrong type: expected string, got table", "labels")
fails(def.route, { uri = "/a", plugins = {}, methods = { "GET", "GET" } },
      'property "methods" validation failed: expected unique items but items 1 and 2 are equal',
      "duplicate methods")
passes(def.route, { uri = "/a", plugins = {}, id = "r-1.x_y" }, "string id")
passes(def.route, { uri = "/a", plugins = {}, id = 7 }, "integer id")
fails(def.route, { uri = "/a", plugins = {}, id = string.rep("a", 65) },
      'property "id" validation failed: object matches none of the required', "id too long")
fails(def.route, { uri = "/a", plugins = {}, remote_addr = "1.2.3.400" },
      'property "remote_addr" validation failed: object matches none of the required',
      "remote_addr")
passes(def.route, { uri = "/a", plugins = {}, remote_addrs = { "10.0.0.0/8", "::1" } },
       "remote_addrs v4 cidr and v6")
local route = { uri = "/a", upstream = { nodes = { ["a:1"] = 1 } } }
passes(def.route, route, "route with upstream")
is(route.priority, 0, "route priority default")
is(route.status, 1, "route status default")
is(route.upstream.type, "roundrobin", "upstream type default")
is(route.upstream.pass_host, "pass", "upstream pass_host default")
is(route.upstream.scheme, "http", "upstream scheme default")

passes(def.upstream, { nodes = { { host = "a", port = 80, weight = 1 } }, type = "chash",
                       key = "remote_addr" }, "upstream array nodes")
fails(def.upstream, { nodes = { "a" } },
      'property "nodes" validation failed: object matches none of the required', "bad nodes")
fails(def.upstream, { nodes = {}, type = "random" },
      'property "type" validation failed: matches none of the enum values', "balancer type enum")
fails(def.upstream, { nodes = {}, timeout = { connect = 0, send = 1, read = 1 } },
      'property "timeout" validation failed: property "connect" validation failed: '
      .. "expected 0 to be greater than 0", "timeout")
fails(def.upstream, { nodes = {}, retries = -1 },
      'property "retries" validation failed: expected -1 to be at least 0', "retries")
local ka = { nodes = {}, keepalive_pool = {} }
passes(def.upstream, ka, "keepalive_pool")
is_deeply(ka.keepalive_pool, { size = 320, idle_timeout = 60, requests = 1000 },
          "keepalive_pool defaults")
fails(def.upstream, { nodes = {}, checks = { passive = {} } },
      'property "checks" validation failed: object matches none of the required: ["active"] or '
      .. '["active","passive"]', "checks anyOf")
fails(def.upstream, { nodes = {}, foo = 1 }, "additional properties forbidden, found foo",
      "upstream additionalProperties")
fails(def.upstream, { type = "roundrobin" },
      "value should match only one schema, but matches none", "upstream needs nodes")

fails(def.consumer, {}, 'property "username" is required', "consumer username")
fails(def.consumer, { username = "a b" },
      'property "username" validation failed: failed to match pattern "^[a-zA-Z0-9_\\\\-]+$" '
      .. 'with "a b"', "consumer username pattern")
fails(def.ssl, { sni = "a.com" }, "then clause did not match", "ssl if/then")
fails(def.ssl, { type = "client" }, "else clause did not match", "ssl if/else")
fails(def.global_rule, { id = "1" }, 'property "plugins" is required', "global rule plugins")
fails(def.plugin_config, { plugins = {} }, 'property "id" is required', "plugin_config id")

-- timing -----------------------------------------------------------------------------------
local big = { uri = "/v1/chat/completions", plugins = {}, methods = { "POST" },
              upstream = { nodes = { ["127.0.0.1:1980"] = 1 }, type = "roundrobin" } }
local t0 = os.clock()
for _ = 1, 2000 do
    schema.check(def.route, schema.deepcopy(big))
end
local ms = (os.clock() - t0) * 1000
ok(ms < 2000, string.format("2000 route validations in %.1f ms", ms))
io.write(string.format("# 2000 route schema checks: %.1f ms\n", ms))

t.done_testing()
