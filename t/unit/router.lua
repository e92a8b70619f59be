-- router: uri exact/prefix/params, precedence, methods, hosts in all three router modes,
-- remote_addrs, vars (lua-resty-expr), priority, status, validation errors, no allocation
-- on the hot path, and a randomised cross-check against a linear reference matcher.
package.path = "lua/?.lua;lua/?/init.lua;t/unit/?.lua;" .. package.path

local tap = require("tap")
local router = require("sluice.router")

local ok, is, is_deeply, like = tap.ok, tap.is, tap.is_deeply, tap.like


local function build(routes, opts)
    local r, err = router.new(routes, opts)
    if not r then
        error("router.new failed: " .. tostring(err), 2)
    end

    return r
end


-- id of the matched route, or nil
local function id_of(r, method, path, host, lookup)
    local route = r:match(method, path, host, lookup)
    return route and route.id
end


local function vars_of(t)
    return function(name)
        return t[name]
    end
end


-- uri: exact and prefix -------------------------------------------------------------------

do
    local r = build({
        { id = "exact", uri = "/a/b" },
        { id = "prefix", uri = "/a/*" },
        { id = "bytes", uri = "/blog/bar*" },
        { id = "root", uri = "/" },
    })

    is(id_of(r, "GET", "/a/b"), "exact", "exact uri matches")
    is(id_of(r, "GET", "/a/"), "prefix", "/a/* matches /a/")
    is(id_of(r, "GET", "/a/x/y/z"), "prefix", "/a/* matches deeper paths")
    is(id_of(r, "GET", "/a/b/c"), "prefix", "exact /a/b does not match /a/b/c")
    is(id_of(r, "GET", "/a"), nil, "/a/* does not match /a: the prefix is the bytes before *")
    is(id_of(r, "GET", "/blog/bar"), "bytes", "/blog/bar* matches /blog/bar (APISIX docs)")
    is(id_of(r, "GET", "/blog/barn"), "bytes", "prefix is byte-wise, not per segment")
    is(id_of(r, "GET", "/blog/bar/a/b"), "bytes", "/blog/bar* matches /blog/bar/a/b")
    is(id_of(r, "GET", "/"), "root", "exact / matches /")
    is(id_of(r, "GET", "/xx"), nil, "exact / does not match /xx")
    is(id_of(r, "GET", ""), nil, "empty path matches nothing")
end

do
    -- The precedence table of APISIX docs/en/latest/router-radixtree.md.
    local r = build({
        { id = "foo", uri = "/blog/foo/*" },
        { id = "a", uri = "/blog/foo/a/*" },
        { id = "c", uri = "/blog/foo/c/*" },
        { id = "bar", uri = "/blog/foo/bar" },
    })

    is(id_of(r, "GET", "/blog/foo/bar"), "bar", "docs: /blog/foo/bar -> /blog/foo/bar")
    is(id_of(r, "GET", "/blog/foo/a/b/c"), "a", "docs: /blog/foo/a/b/c -> /blog/foo/a/*")
    is(id_of(r, "GET", "/blog/foo/c/d"), "c", "docs: /blog/foo/c/d -> /blog/foo/c/*")
    is(id_of(r, "GET", "/blog/foo/gloo"), "foo", "docs: /blog/foo/gloo -> /blog/foo/*")
    is(id_of(r, "GET", "/blog/bar"), nil, "docs: /blog/bar -> no match")
end

do
    local r = build({
        { id = "wide", uri = "/*", priority = 100 },
        { id = "mid", uri = "/v1/*", priority = 50 },
        { id = "exact", uri = "/v1/chat", priority = -5 },
    })

    is(id_of(r, "GET", "/v1/chat"), "exact", "exact beats prefix whatever the priorities")
    is(id_of(r, "GET", "/v1/models"), "mid", "longest prefix beats a higher-priority shorter one")
    is(id_of(r, "GET", "/v2"), "wide", "shortest prefix still catches the rest")
end

do
    -- Prefix keys that split radix-tree edges in every order.
    local r = build({
        { id = "equal", uri = "/equal*" },
        { id = "equal123", uri = "/equal123*" },
        { id = "eq", uri = "/eq*" },
        { id = "equal12x", uri = "/equal12x*" },
    })

    is(id_of(r, "GET", "/equal1"), "equal", "radixtree test: /equal1 -> /equal*")
    is(id_of(r, "GET", "/equal12"), "equal", "radixtree test: /equal12 -> /equal*")
    is(id_of(r, "GET", "/equal123"), "equal123", "radixtree test: /equal123 -> /equal123*")
    is(id_of(r, "GET", "/equal1234"), "equal123", "radixtree test: /equal1234 -> /equal123*")
    is(id_of(r, "GET", "/equal12xyz"), "equal12x", "sibling after an edge split")
    is(id_of(r, "GET", "/eqx"), "eq", "shorter key above a split")
    is(id_of(r, "GET", "/e"), nil, "shorter than every key")
end

do
    local r = build({
        { id = "many", uris = { "/x", "/y/*" } },
        { id = "one", uri = "/z" },
    })

    is(id_of(r, "GET", "/x"), "many", "uris: first uri")
    is(id_of(r, "GET", "/y/1"), "many", "uris: second uri, a prefix")
    is(id_of(r, "GET", "/z"), "one", "other route unaffected")
    local route, params, matched_uri = r:match("GET", "/y/1")
    ok(route and params == nil, "plain prefix returns no params")
    is(matched_uri, "/y/*", "matched_uri says which of uris matched")
end


-- priority and order ----------------------------------------------------------------------

do
    local r = build({
        { id = "low", uri = "/p", priority = 1 },
        { id = "high", uri = "/p", priority = 10 },
        { id = "first", uri = "/q" },
        { id = "second", uri = "/q" },
        { id = "neg", uri = "/n/*", priority = -1 },
        { id = "zero", uri = "/n/*" },
    })

    is(id_of(r, "GET", "/p"), "high", "same uri: higher priority first")
    is(id_of(r, "GET", "/q"), "first", "same uri and priority: array order")
    is(id_of(r, "GET", "/n/1"), "zero", "default priority 0 beats -1")
end

do
    local r = build({
        { id = "short", uri = "/k/*" },
        { id = "long", uri = "/k/*/end" },
    })

    is(id_of(r, "GET", "/k/a/end"), "long", "same key: the longer uri is tried first")
    is(id_of(r, "GET", "/k/a/other"), "short", "then the shorter one")
end


-- fallback to the next candidate ----------------------------------------------------------

do
    local r = build({
        { id = "exact-post", uri = "/v1/chat", methods = { "POST" } },
        { id = "deep-put", uri = "/v1/*", methods = { "PUT" } },
        { id = "any", uri = "/*" },
    })

    is(id_of(r, "POST", "/v1/chat"), "exact-post", "exact with matching method")
    is(id_of(r, "GET", "/v1/chat"), "any", "exact and deeper prefix fail on method: shortest")
    is(id_of(r, "PUT", "/v1/chat"), "deep-put", "exact fails on method: next prefix")
end

do
    local r = build({
        { id = "p10-post", uri = "/s", priority = 10, methods = { "POST" } },
        { id = "p5", uri = "/s", priority = 5 },
    })

    is(id_of(r, "POST", "/s"), "p10-post", "higher priority taken when it matches")
    is(id_of(r, "GET", "/s"), "p5", "same uri: falls back to the lower priority")
end


-- methods ---------------------------------------------------------------------------------

do
    local r = build({
        { id = "get", uri = "/m", methods = { "GET", "HEAD" } },
        { id = "all", uri = "/all" },
        { id = "empty", uri = "/empty", methods = {} },
    })

    is(id_of(r, "GET", "/m"), "get", "listed method matches")
    is(id_of(r, "HEAD", "/m"), "get", "second listed method matches")
    is(id_of(r, "POST", "/m"), nil, "unlisted method does not")
    is(id_of(r, "get", "/m"), nil, "methods are case-sensitive")
    is(id_of(r, nil, "/m"), nil, "no method: routes with methods do not match")
    is(id_of(r, "PURGE", "/all"), "all", "no methods: every method")
    is(id_of(r, "BREW", "/all"), "all", "no methods: even unknown ones")
    is(id_of(r, "DELETE", "/empty"), "empty", "empty methods array: every method")
end


-- hosts: radixtree_host_uri (default) -----------------------------------------------------

do
    local r = build({
        { id = "plain-exact", uri = "/v1/chat" },
        { id = "foo-prefix", uri = "/v1/*", host = "foo.com" },
        { id = "wild", uri = "/v1/*", hosts = { "*.example.com" } },
        { id = "deeper-wild", uri = "/v1/*", hosts = { "*.api.example.com" } },
        { id = "exact-host", uri = "/v1/*", hosts = { "a.api.example.com" } },
        { id = "only-x", uri = "/x", hosts = { "foo.com" } },
        { id = "star", uri = "/star", host = "*" },
        { id = "bare", uri = "/bare*", host = "*example.com" },
    })

    is(id_of(r, "GET", "/v1/chat", "foo.com"), "foo-prefix",
       "host_uri: a host route beats a hostless exact uri")
    is(id_of(r, "GET", "/v1/chat", "bar.com"), "plain-exact", "unknown host: hostless routes")
    is(id_of(r, "GET", "/v1/chat"), "plain-exact", "no host: hostless routes")
    is(id_of(r, "GET", "/v1/chat", "FOO.Com"), "foo-prefix", "host compared case-insensitively")
    is(id_of(r, "GET", "/v1/chat", "foo.com:8443"), "foo-prefix", "port stripped")
    is(id_of(r, "GET", "/v1/chat", "x.example.com"), "wild", "wildcard host")
    is(id_of(r, "GET", "/v1/chat", "a.b.example.com"), "wild", "wildcard covers several labels")
    is(id_of(r, "GET", "/v1/chat", "example.com"), "plain-exact",
       "*.example.com does not match example.com")
    is(id_of(r, "GET", "/v1/chat", "b.api.example.com"), "deeper-wild", "longer wildcard first")
    is(id_of(r, "GET", "/v1/chat", "a.api.example.com"), "exact-host", "exact host beats wildcards")
    is(id_of(r, "GET", "/x", "foo.com"), "only-x", "second route under the same host")
    is(id_of(r, "GET", "/x", "bar.com"), nil, "host route is not reachable from another host")
    is(id_of(r, "GET", "/star", "anything.org"), "star", "host * matches any host")
    is(id_of(r, "GET", "/bare", "fooexample.com"), "bare", "*example.com is a byte-wise suffix")

    local route, params, matched_uri, matched_host = r:match("GET", "/v1/x", "q.example.com")
    is(route.id, "wild", "match returns the route table")
    is(params, nil, "no params")
    is(matched_uri, "/v1/*", "matched_uri")
    is(matched_host, "*.example.com", "matched_host is the host pattern")
    local _, _, _, plain_host = r:match("GET", "/v1/chat", "bar.com")
    is(plain_host, nil, "matched_host nil for a hostless route")
end

do
    local r = build({
        { id = "host-post", uri = "/v1/*", host = "foo.com", methods = { "POST" } },
        { id = "wild-get", uri = "/v1/chat", host = "*.com", methods = { "GET" } },
        { id = "plain", uri = "/v1/*" },
    })

    is(id_of(r, "POST", "/v1/chat", "foo.com"), "host-post", "host route matches")
    is(id_of(r, "GET", "/v1/chat", "foo.com"), "wild-get", "exact host fails: wildcard host next")
    is(id_of(r, "PUT", "/v1/chat", "foo.com"), "plain", "all host routes fail: hostless next")
end

do
    local r = build({
        { id = "upper", uri = "/u", hosts = { "API.Example.COM", "*.Wild.ORG" } },
    })

    is(id_of(r, "GET", "/u", "api.example.com"), "upper", "route hosts lowercased")
    is(id_of(r, "GET", "/u", "X.WILD.org"), "upper", "wildcard route hosts lowercased")
end


do
    local services = { s1 = { "svc.example.com" } }
    local opts = {
        service_hosts = function(route)
            return route.service_id and services[route.service_id]
        end,
    }
    local r = build({
        { id = "via-service", uri = "/s", service_id = "s1" },
        { id = "own-host", uri = "/s", host = "own.example.com", service_id = "s1" },
        { id = "plain", uri = "/s" },
    }, opts)

    is(id_of(r, "GET", "/s", "svc.example.com"), "via-service", "service hosts apply")
    is(id_of(r, "GET", "/s", "own.example.com"), "own-host", "route hosts win over service's")
    is(id_of(r, "GET", "/s", "other.com"), "plain", "no service: hostless")

    local bad, err = router.new({ { id = 9, uri = "/s", service_id = "s1" } },
                                { service_hosts = function() return { "bad host" } end })
    ok(bad == nil, "invalid service hosts: no router")
    like(err, "^route 9: invalid host: bad host", "invalid service hosts: error")
end


-- hosts: radixtree_uri (host is a filter) -------------------------------------------------

do
    local opts = { router = "radixtree_uri" }
    local r = build({
        { id = "plain-exact", uri = "/v1/chat" },
        { id = "foo-prefix", uri = "/v1/*", host = "foo.com" },
        { id = "wild", uri = "/w", hosts = { "bar.org", "*.example.com" } },
        { id = "with-port", uri = "/port", host = "foo.com:8080" },
    }, opts)

    is(id_of(r, "GET", "/v1/chat", "foo.com"), "plain-exact",
       "uri mode: exact uri beats host prefix")
    is(id_of(r, "GET", "/v1/models", "foo.com"), "foo-prefix", "uri mode: host filter passes")
    is(id_of(r, "GET", "/v1/models", "Foo.COM:80"), "foo-prefix", "uri mode: case and port")
    is(id_of(r, "GET", "/v1/models", "bar.com"), nil, "uri mode: host filter fails")
    is(id_of(r, "GET", "/v1/models"), nil, "uri mode: no host fails a host filter")
    is(id_of(r, "GET", "/w", "bar.org"), "wild", "uri mode: second host in list")
    is(id_of(r, "GET", "/w", "z.example.com"), "wild", "uri mode: wildcard")
    is(id_of(r, "GET", "/w", "example.com"), nil, "uri mode: wildcard needs the dot")
    is(id_of(r, "GET", "/port", "foo.com:8080"), "with-port", "uri mode: host:port rule")
    is(id_of(r, "GET", "/port", "foo.com"), nil, "uri mode: host:port rule needs the port")
    local _, _, _, mh = r:match("GET", "/w", "z.example.com")
    is(mh, "*.example.com", "uri mode: matched_host")
end


do
    -- radixtree_uri with many routes on one uri: the bucket gets a host pre-index, which
    -- must keep the bucket's order (priority, then array order) across its lists.
    local routes = {}
    for i = 1, 12 do
        routes[#routes + 1] = { id = "t" .. i, uri = "/v1/*", host = "t" .. i .. ".com" }
    end

    routes[#routes + 1] = { id = "wild-low", uri = "/v1/*", host = "*.com", priority = -1 }
    routes[#routes + 1] = { id = "wild-high", uri = "/v1/*", host = "*.t3.com", priority = 5 }
    routes[#routes + 1] = { id = "port", uri = "/v1/*", host = "t4.com:8080", priority = 9 }
    routes[#routes + 1] = { id = "any-post", uri = "/v1/*", methods = { "POST" }, priority = 1 }
    routes[#routes + 1] = { id = "both", uri = "/v1/*", hosts = { "x.org", "*.x.org" } }
    routes[#routes + 1] = { id = "t5-put", uri = "/v1/*", host = "*.t5.com", methods = { "PUT" } }
    local r = build(routes, { router = "radixtree_uri" })

    is(id_of(r, "GET", "/v1/a", "t7.com"), "t7", "host pre-index: exact host")
    is(id_of(r, "POST", "/v1/a", "t7.com"), "any-post",
       "host pre-index: higher-priority rest first")
    is(id_of(r, "GET", "/v1/a", "z.t3.com"), "wild-high", "host pre-index: wildcard by priority")
    is(id_of(r, "GET", "/v1/a", "t3.com"), "t3", "host pre-index: exact before lower wildcard")
    is(id_of(r, "GET", "/v1/a", "nobody.com"), "wild-low", "host pre-index: shorter wildcard")
    is(id_of(r, "PUT", "/v1/a", "a.t5.com"), "t5-put", "host pre-index: longest wildcard")
    is(id_of(r, "GET", "/v1/a", "a.t5.com"), "wild-low",
       "host pre-index: longest wildcard fails, a shorter one matches")
    is(id_of(r, "GET", "/v1/a", "t4.com:8080"), "port", "host pre-index: host:port rule in rest")
    is(id_of(r, "GET", "/v1/a", "t4.com"), "t4", "host pre-index: port rule skipped without port")
    is(id_of(r, "GET", "/v1/a", "x.org"), "both", "host pre-index: exact of a mixed route")
    is(id_of(r, "GET", "/v1/a", "a.x.org"), "both", "host pre-index: wildcard of a mixed route")
    is(id_of(r, "GET", "/v1/a", "x.net"), nil, "host pre-index: no candidate")
end

do
    -- Two prefixes whose rolling hashes collide must still tell apart. The hash is
    -- replicated here; if router.lua changes it, this stays a test of two distinct keys.
    local bit = require("bit")
    local function hash(str)
        local h = 0
        for i = 1, #str do
            h = bit.tobit(bit.rol(bit.bxor(h, str:byte(i)), 7) + h)
        end

        return h
    end

    local seen, a, b = {}, nil, nil
    for i = 1, 400000 do
        local key = "/c/" .. i .. "/"
        local h = hash(key)
        if seen[h] and #seen[h] == #key then
            a, b = seen[h], key
            break
        end

        seen[h] = key
    end

    ok(a ~= nil, "found two prefixes with the same hash: " .. tostring(a) .. " " .. tostring(b))
    if a then
        local r = build({ { id = "a", uri = a .. "*" }, { id = "b", uri = b .. "*" } })
        is(id_of(r, "GET", a .. "x"), "a", "colliding prefix a")
        is(id_of(r, "GET", b .. "x"), "b", "colliding prefix b")
        is(id_of(r, "GET", "/c/0/x"), nil, "neither")
    end
end

do
    local r = build({ { id = "w", uri = "/h", host = "*.example.com" } })
    local hits = 0
    for i = 1, 3000 do
        if id_of(r, "GET", "/h", "N" .. i .. ".Example.com:443") == "w" then
            hits = hits + 1
        end
    end

    is(hits, 3000, "more distinct Host headers than the normalization cache holds")
    is(id_of(r, "GET", "/h", "example.org"), nil, "and the cache does not confuse hosts")
end


-- path parameters -------------------------------------------------------------------------

do
    local r = build({
        { id = "user", uri = "/user/:name" },
        { id = "age", uri = "/user/:name/age" },
        { id = "two", uri = "/o/:org/r/:repo" },
        { id = "login", uri = "/login/*action" },
        { id = "mid", uri = "/files/*/raw" },
    }, { router = "radixtree_uri_with_parameter" })

    local route, params = r:match("GET", "/user/john")
    is(route and route.id, "user", ":name matches one segment")
    is_deeply(params, { name = "john" }, ":name captured")
    route, params = r:match("GET", "/user/john/age")
    is(route and route.id, "age", "longer pattern under the same key")
    is_deeply(params, { name = "john" }, "capture before a literal")
    is(id_of(r, "GET", "/user/"), nil, ":name needs at least one byte")
    is(id_of(r, "GET", "/user/a/b"), nil, ":name does not cross /")
    params = select(2, r:match("GET", "/o/apache/r/apisix"))
    is_deeply(params, { org = "apache", repo = "apisix" }, "two params")
    route, params = r:match("GET", "/login/a/b")
    is(route and route.id, "login", "*action matches the rest")
    is_deeply(params, { action = "a/b" }, "*action captured")
    route, params = r:match("GET", "/files/a/b/raw")
    is(route and route.id, "mid", "glob in the middle")
    is_deeply(params, { [":ext"] = "a/b" }, "unnamed glob captured as :ext")
    is(id_of(r, "GET", "/files/a/b/cooked"), nil, "glob in the middle still needs the tail")
end

do
    -- APISIX's default routers pass no_param_match: ":" is literal, "*" globs still work.
    local r = build({
        { id = "literal", uri = "/user/:name" },
        { id = "login", uri = "/login/*action" },
    })

    is(id_of(r, "GET", "/user/john"), nil, "host_uri: :name is literal")
    is(id_of(r, "GET", "/user/:name"), "literal", "host_uri: literal :name matches itself")
    local route, params = r:match("GET", "/login/x")
    is(route and route.id, "login", "host_uri: *action glob")
    is_deeply(params, { action = "x" }, "host_uri: glob captured")
end


-- remote_addrs ----------------------------------------------------------------------------

do
    local r = build({
        { id = "v4", uri = "/r", remote_addrs = { "127.0.0.1", "192.168.0.0/16" } },
        { id = "v6", uri = "/r", remote_addrs = { "::1", "fe80::/32" } },
        { id = "single", uri = "/s", remote_addr = "10.0.0.0/8" },
        { id = "mapped", uri = "/m", remote_addr = "::ffff:1.2.3.0/120" },
        { id = "any", uri = "/a", remote_addr = "0.0.0.0/0" },
    })

    local function from(addr)
        return vars_of({ remote_addr = addr })
    end

    is(id_of(r, "GET", "/r", nil, from("127.0.0.1")), "v4", "exact IPv4")
    is(id_of(r, "GET", "/r", nil, from("192.168.44.3")), "v4", "IPv4 CIDR")
    is(id_of(r, "GET", "/r", nil, from("192.169.0.1")), nil, "outside the IPv4 CIDR")
    is(id_of(r, "GET", "/r", nil, from("::1")), "v6", "exact IPv6 (falls past the v4 route)")
    is(id_of(r, "GET", "/r", nil, from("0:0:0:0:0:0:0:1")), "v6", "uncompressed IPv6")
    is(id_of(r, "GET", "/r", nil, from("fe80:0:1::abcd")), "v6", "IPv6 CIDR")
    is(id_of(r, "GET", "/r", nil, from("fe81::1")), nil, "outside the IPv6 CIDR")
    is(id_of(r, "GET", "/r", nil, from("not-an-ip")), nil, "garbage address")
    is(id_of(r, "GET", "/r"), nil, "no lookup: no remote_addr")
    is(id_of(r, "GET", "/s", nil, from("10.200.1.1")), "single", "remote_addr (singular)")
    is(id_of(r, "GET", "/m", nil, from("::ffff:1.2.3.77")), "mapped", "embedded IPv4 in IPv6")
    is(id_of(r, "GET", "/a", nil, from("8.8.8.8")), "any", "0.0.0.0/0")
    is(id_of(r, "GET", "/a", nil, { remote_addr = "8.8.4.4" }), "any", "lookup may be a table")
end


-- vars ------------------------------------------------------------------------------------

do
    local re_calls = {}
    local function fake_re_find(subject, pattern, flags)
        -- A stand-in for pdk.re.find: the router must hand it the regex untouched.
        re_calls[#re_calls + 1] = { subject, pattern, flags }
        local s, p = subject, pattern
        if flags == "joi" then
            s, p = s:lower(), p:lower()
        end

        return s:find(p, 1, true)
    end

    local r = build({
        { id = "eq", uri = "/eq", vars = { { "arg_x", "==", "1" } } },
        { id = "num", uri = "/num", vars = { { "arg_n", "==", 5 } } },
        { id = "ne", uri = "/ne", vars = { { "arg_x", "~=", "1" } } },
        { id = "gt", uri = "/gt", vars = { { "arg_n", ">", 10 } } },
        { id = "lt", uri = "/lt", vars = { { "arg_n", "<", "10" } } },
        { id = "ge", uri = "/ge", vars = { { "arg_n", ">=", 10 } } },
        { id = "in", uri = "/in", vars = { { "http_model", "in", { "gpt-4o", "gpt-4" } } } },
        { id = "has", uri = "/has", vars = { { "list", "has", "b" } } },
        { id = "not", uri = "/not", vars = { { "arg_x", "!", "==", "1" } } },
        { id = "re", uri = "/re", vars = { { "http_ua", "~~", "curl" } } },
        { id = "rei", uri = "/rei", vars = { { "http_ua", "~*", "CURL" } } },
        { id = "and", uri = "/and", vars = { { "arg_a", "==", "1" }, { "arg_b", "==", "2" } } },
        { id = "or", uri = "/or", vars = {
            { "OR", { "arg_a", "==", "1" }, { "arg_b", "==", "2" } },
        } },
        { id = "nested", uri = "/nested", vars = {
            "!AND", { "arg_a", "==", "1" },
            { "OR", { "arg_b", "==", "2" }, { "arg_c", "==", "3" } },
        } },
        { id = "compat", uri = "/compat", vars = { { "arg_x", "1" } } },
        { id = "ip", uri = "/ip", vars = { { "http_x_real_ip", "ipmatch", { "10.0.0.0/8" } } } },
        { id = "fallback", uri = "/eq" },
    }, { re_find = fake_re_find })

    local function hit(path, t)
        return id_of(r, "GET", path, nil, vars_of(t))
    end

    is(hit("/eq", { arg_x = "1" }), "eq", "== string")
    is(hit("/eq", { arg_x = "2" }), "fallback", "== fails: next route with the same uri")
    is(hit("/eq", {}), "fallback", "== with a missing variable fails")
    is(hit("/num", { arg_n = "5" }), "num", "== number compares tonumber(var)")
    is(hit("/num", { arg_n = "5x" }), nil, "== number with a non-number var")
    is(hit("/ne", { arg_x = "2" }), "ne", "~=")
    is(hit("/ne", {}), "ne", "~= with a missing variable holds")
    is(hit("/ne", { arg_x = "1" }), nil, "~= fails")
    is(hit("/gt", { arg_n = "11" }), "gt", "> numeric")
    is(hit("/gt", { arg_n = "9" }), nil, "> fails")
    is(hit("/gt", { arg_n = "abc" }), nil, "> with a non-number")
    is(hit("/lt", { arg_n = "9" }), "lt", "< with a string operand")
    is(hit("/ge", { arg_n = "10" }), "ge", ">=")
    is(hit("/in", { http_model = "gpt-4" }), "in", "in")
    is(hit("/in", { http_model = "claude" }), nil, "in fails")
    is(hit("/has", { list = { "a", "b" } }), "has", "has")
    is(hit("/has", { list = "b" }), nil, "has needs a list")
    is(hit("/not", { arg_x = "2" }), "not", "! negates")
    is(hit("/not", { arg_x = "1" }), nil, "! negates (fails)")
    is(hit("/re", { http_ua = "curl/8.0" }), "re", "~~ through re_find")
    is_deeply(re_calls[#re_calls], { "curl/8.0", "curl", "jo" }, "~~ passes subject, pattern, jo")
    is(hit("/re", { http_ua = "wget" }), nil, "~~ fails")
    is(hit("/re", {}), nil, "~~ with a missing variable fails")
    is(hit("/rei", { http_ua = "curl/8.0" }), "rei", "~* is case-insensitive")
    is(re_calls[#re_calls][3], "joi", "~* passes joi")
    is(hit("/and", { arg_a = "1", arg_b = "2" }), "and", "all rules must hold")
    is(hit("/and", { arg_a = "1", arg_b = "3" }), nil, "one rule fails")
    is(hit("/or", { arg_b = "2" }), "or", "OR")
    is(hit("/or", { arg_a = "9", arg_b = "9" }), nil, "OR fails")
    is(hit("/nested", { arg_a = "1", arg_c = "3" }), nil, "!AND of true, true")
    is(hit("/nested", { arg_a = "1", arg_c = "4" }), "nested", "!AND of true, false")
    is(hit("/compat", { arg_x = "1" }), "compat", "two-element rule means ==")
    is(hit("/ip", { http_x_real_ip = "10.1.2.3" }), "ip", "ipmatch")
    is(hit("/ip", { http_x_real_ip = "11.1.2.3" }), nil, "ipmatch fails")
    is(id_of(r, "GET", "/eq", nil, { arg_x = "1" }), "eq", "lookup may be a table")
    is(id_of(r, "GET", "/eq"), "fallback", "no lookup: variables are missing")
end


-- status ----------------------------------------------------------------------------------

do
    local r = build({
        { id = "off", uri = "/st", status = 0, priority = 10 },
        { id = "on", uri = "/st", status = 1 },
        { id = "off-only", uri = "/gone", status = 0 },
    })

    is(id_of(r, "GET", "/st"), "on", "status 0 skipped, status 1 used")
    is(id_of(r, "GET", "/gone"), nil, "a disabled route matches nothing")
end


-- validation ------------------------------------------------------------------------------

do
    local function fails(routes, pattern, name, opts)
        local r, err = router.new(routes, opts)
        ok(r == nil, name .. ": no router")
        like(err, pattern, name .. ": error")
    end

    fails({ { id = 7 } }, "^route 7: missing uri or uris$", "no uri")
    fails({ { id = "x", uri = "a/b" } }, "^route x: uri: must start with '/'", "relative uri")
    fails({ { id = "x", uri = 42 } }, "^route x: uri: expected a string", "uri not a string")
    fails({ { id = "x", uris = {} } }, "^route x: uris: expected a non%-empty array", "empty uris")
    fails({ { id = "x", uris = "/a" } }, "^route x: uris: expected", "uris not an array")
    fails({ { id = "x", uris = { "/a", "b" } } }, "^route x: uris: uri: must start",
          "bad uris item")
    fails({ { id = "x", uri = "/a", uris = { "/b" } } }, "mutually exclusive", "uri and uris")
    fails({ { id = "x", uri = "/" .. string.rep("a", 4096) } }, "longer than", "uri too long")
    fails({ { id = "x", uri = "/a", methods = "GET" } }, "^route x: methods: expected an array",
          "methods not an array")
    fails({ { id = "x", uri = "/a", methods = { "GET", "FETCH" } } }, "invalid method FETCH",
          "unknown method")
    fails({ { id = "x", uri = "/a", host = "a b" } }, "^route x: invalid host: a b", "bad host")
    fails({ { id = "x", uri = "/a", host = 1 } }, "invalid host", "host not a string")
    fails({ { id = "x", uri = "/a", hosts = {} } }, "hosts: expected a non%-empty", "empty hosts")
    fails({ { id = "x", uri = "/a", host = "a", hosts = { "b" } } }, "mutually exclusive",
          "host and hosts")
    fails({ { id = "x", uri = "/a", priority = "1" } }, "priority: expected an integer",
          "priority not a number")
    fails({ { id = "x", uri = "/a", priority = 1.5 } }, "priority: expected an integer",
          "priority not an integer")
    fails({ { id = "x", uri = "/a", status = 2 } }, "status: expected 0 or 1", "bad status")
    fails({ { id = "x", uri = "/a", remote_addr = "300.1.1.1" } }, "invalid IP address",
          "bad IPv4")
    fails({ { id = "x", uri = "/a", remote_addrs = { "1.2.3.4/33" } } }, "invalid IP address",
          "bad IPv4 prefix length")
    fails({ { id = "x", uri = "/a", remote_addrs = { "1:2:3" } } }, "invalid IP address",
          "bad IPv6")
    fails({ { id = "x", uri = "/a", remote_addrs = {} } }, "non%-empty array", "empty remote_addrs")
    fails({ { id = "x", uri = "/a", vars = { { "a", "=~", "b" } } } },
          "^route x: vars: invalid operator '=~'", "bad vars operator")
    fails({ { id = "x", uri = "/a", vars = { "a", "==", "b" } } }, "wrapped inside brackets",
          "vars not nested")
    fails({ { id = "x", uri = "/a", vars = { { "a", "~~", "b" } } } }, "needs the re_find option",
          "~~ without re_find")
    fails({ { id = "x", uri = "/a", vars = "a" } }, "vars: expected an array", "vars a string")
    fails({ { uri = "/ok" }, { uri = 1 } }, "^route #2: ", "route without id named by index")
    fails({ "nope" }, "^route #1: expected a table", "route not a table")
    fails("nope", "^routes: expected an array", "routes not a table")
    fails({}, "^unknown router: x$", "unknown router mode", { router = "x" })

    local r = router.new({})
    ok(r ~= nil and r:match("GET", "/") == nil, "no routes: a router that matches nothing")
    ok(not pcall(r.match, r, "GET", nil), "match without a path is a programming error")
end


-- no allocation on the hot path -----------------------------------------------------------

do
    local routes = {}
    for i = 1, 200 do
        routes[#routes + 1] = { id = "e" .. i, uri = "/v1/e" .. i, methods = { "POST" } }
        routes[#routes + 1] = { id = "p" .. i, uri = "/api/p" .. i .. "/*" }
        routes[#routes + 1] = { id = "h" .. i, uri = "/v1/*", host = "h" .. i .. ".example.com" }
    end

    routes[#routes + 1] = { id = "w", uri = "/w/*", host = "*.wild.com" }
    local r = build(routes)
    local paths = { "/v1/e7", "/api/p9/x/y", "/v1/chat", "/nope", "/w/1", "/api/p12" }
    local hosts = { "h3.example.com", "x.wild.com", "other.com" }

    local function run(n)
        local hits = 0
        for i = 1, n do
            local route = r:match("POST", paths[i % #paths + 1], hosts[i % #hosts + 1])
            if route then
                hits = hits + 1
            end
        end

        return hits
    end

    run(20000)
    collectgarbage()
    collectgarbage("stop")
    local before = collectgarbage("count")
    local hits = run(100000)
    local grown = collectgarbage("count") - before
    collectgarbage("restart")
    ok(hits > 0, "warm loop hits routes")
    ok(grown < 16, "100,000 matches allocate nothing (grew " .. grown .. " KB)")
end


-- randomised cross-check against a linear reference ---------------------------------------

-- The reference scans every route per request and ranks candidates the way radixtree does:
-- host bucket (host_uri mode), then exact before prefix, longer prefix first, then
-- priority, longer uri, array order.
local function reference(routes, mode, method, path, host)
    local h = host and host:lower():gsub(":%d+$", "") or ""
    local best, best_rank

    local function consider(route, uri, seq, host_rank)
        local star = uri:find("*", 1, true)
        local path_rank
        if not star then
            if uri ~= path then
                return
            end

            path_rank = 1e9
        else
            local key = uri:sub(1, star - 1)
            if path:sub(1, #key) ~= key then
                return
            end

            path_rank = #key
        end

        if route.methods and #route.methods > 0 then
            local found = false
            for _, m in ipairs(route.methods) do
                found = found or m == method
            end

            if not found then
                return
            end
        end

        local rank = { host_rank, path_rank, route.priority or 0, #uri, -seq }
        local better = not best_rank
        if best_rank then
            for k = 1, #rank do
                if rank[k] ~= best_rank[k] then
                    better = rank[k] > best_rank[k]
                    break
                end
            end
        end

        if better then
            best, best_rank = route, rank
        end
    end

    local seq = 0
    for _, route in ipairs(routes) do
        local hosts = route.hosts or (route.host and { route.host })
        for _, uri in ipairs(route.uris or { route.uri }) do
            seq = seq + 1
            if not hosts then
                consider(route, uri, seq, 0)
            else
                for _, pattern in ipairs(hosts) do
                    local p = pattern:lower()
                    local host_rank
                    if p:sub(1, 1) == "*" then
                        local suffix = p:sub(2)
                        if h:sub(-#suffix) == suffix or suffix == "" then
                            host_rank = 1 + #suffix
                        end

                    elseif p == h then
                        host_rank = 1e9
                    end

                    if host_rank then
                        consider(route, uri, seq, mode == "radixtree_uri" and 0 or host_rank)
                    end
                end
            end
        end
    end

    return best
end

do
    math.randomseed(42)
    local segs = { "v1", "v2", "chat", "a", "ab", "abc", "x" }
    local host_pool = { "foo.com", "a.foo.com", "b.a.foo.com", "bar.org" }
    local pattern_pool = { "foo.com", "*.foo.com", "*.a.foo.com", "bar.org", "*.org", "*" }
    local method_pool = { "GET", "POST", "PUT" }

    local function random_path()
        local parts = {}
        for i = 1, math.random(0, 3) do
            parts[i] = segs[math.random(#segs)]
        end

        return "/" .. table.concat(parts, "/")
    end

    local mismatches = 0
    local checked = 0
    for _, mode in ipairs({ "radixtree_host_uri", "radixtree_uri" }) do
        for round = 1, 60 do
            -- Every third round draws uris from a pool of three, so buckets grow large
            -- enough for the host pre-index of the uri modes.
            local pool = round % 3 == 0 and { random_path(), random_path(), random_path() }
            local routes = {}
            for i = 1, math.random(1, 30) do
                local uri = pool and pool[math.random(#pool)] or random_path()
                local kind = math.random(3)
                if kind == 2 then
                    uri = uri .. (uri:sub(-1) == "/" and "*" or "/*")
                elseif kind == 3 then
                    uri = uri .. "*"
                end

                local route = { id = i, uri = uri }
                if math.random(3) == 1 then
                    route.methods = { method_pool[math.random(#method_pool)] }
                end

                if math.random(3) == 1 then
                    route.priority = math.random(-1, 2)
                end

                if math.random(3) == 1 then
                    route.hosts = { pattern_pool[math.random(#pattern_pool)] }
                    if math.random(3) == 1 then
                        route.hosts[2] = pattern_pool[math.random(#pattern_pool)]
                    end
                end

                routes[i] = route
            end

            local r = build(routes, { router = mode })
            for _ = 1, 50 do
                local method = method_pool[math.random(#method_pool)]
                local path = random_path()
                if math.random(2) == 1 then
                    path = path .. segs[math.random(#segs)]
                end

                local host = math.random(4) > 1 and host_pool[math.random(#host_pool)] or nil
                local got = r:match(method, path, host)
                local want = reference(routes, mode, method, path, host)
                checked = checked + 1
                if got ~= want then
                    mismatches = mismatches + 1
                    if mismatches <= 3 then
                        io.write("# ", mode, " ", method, " ", path, " ", tostring(host),
                                 ": got ", tostring(got and got.id), " want ",
                                 tostring(want and want.id), "\n")
                    end
                end
            end
        end
    end

    is(mismatches, 0, "random routes agree with the linear reference (" .. checked .. " requests)")
end


tap.done_testing()
