-- tls.lua: SNI -> ssls resource matching (lua/sluice/tls.lua): exact names, one-label
-- wildcards, case and trailing dots, disabled and client certificates, the id order when two
-- resources claim a name, and lookup() against a configuration snapshot.
package.path = "lua/?.lua;lua/?/init.lua;t/unit/?.lua;" .. package.path
local t = require("tap")
local tls = require("sluice.tls")
local config = require("sluice.config")

local ok, is = t.ok, t.is

local function ssl(id, snis, extra)
    local v = { id = id, cert = "CERT-" .. id, key = "KEY-" .. id, snis = snis }
    for k, x in pairs(extra or {}) do
        v[k] = x
    end

    return v
end

local index = tls.build_index({
    ssl("1", { "test.local", "API.Example.com" }),
    ssl("2", { "*.wild.local" }),
    ssl("3", { "*.deep.wild.local" }),
    ssl("4", { "off.local" }, { status = 0 }),
    ssl("5", { "client.local" }, { type = "client" }),
    ssl("7", { "both.local" }),
    ssl("6", { "both.local" }),
    { id = "8", cert = "C", key = "K", sni = "single.local" },
})

local function id_for(name)
    local e = tls.match(index, name)
    return e and e.id
end

is(id_for("test.local"), "1", "exact name")
is(id_for("api.example.com"), "1", "names are case-insensitive (configured upper case)")
is(id_for("TEST.LOCAL"), "1", "names are case-insensitive (client upper case)")
is(id_for("test.local."), "1", "a trailing dot names the same host")
is(id_for("a.wild.local"), "2", "wildcard matches one label")
is(id_for("x.y.wild.local"), nil, "not two labels")
is(id_for("wild.local"), nil, "not the bare domain")
is(id_for("x.deep.wild.local"), "3", "the longer wildcard for its own names")
is(id_for("deep.wild.local"), "2", "and the shorter one above it")
is(id_for("off.local"), nil, "status 0 is not served")
is(id_for("client.local"), nil, "client certificates are not served")
is(id_for("both.local"), "6", "two resources for one name: the lower id")
is(id_for("single.local"), "8", "the single sni field")
is(id_for("other.local"), nil, "unknown name")
is(id_for(""), nil, "empty name")
is(id_for(nil), nil, "no name")

-- lookup() reads the current snapshot
local store = require("sluice.config.store")
local doc = store.empty()
doc.ssls["1"] = { value = ssl("1", { "a.local" }, { update_time = 10 }), createdIndex = 1,
                  modifiedIndex = 1 }
local snap = assert(config.build(doc, 1))
package.loaded["sluice.config"].current = function() return snap end

local id, version, cert, key = tls.lookup("a.local")
is(id, "1", "lookup: id")
is(cert, "CERT-1", "lookup: cert")
is(key, "KEY-1", "lookup: key")
ok(type(version) == "string" and version:find("^10:"), "lookup: version starts with update_time")
local id2, version2 = tls.lookup("A.LOCAL")
ok(id2 == "1" and version2 == version, "same version while the resource is unchanged")

local n, err = tls.lookup("b.local")
ok(n == nil and err == "no ssls resource matches", "lookup: no match -> nil, err")
n, err = tls.lookup(nil)
ok(n == nil and err:find("SNI"), "lookup: no SNI -> nil, err")

doc.ssls["1"] = { value = ssl("1", { "a.local" }, { update_time = 10, cert = "CERT-NEW" }),
                  createdIndex = 1, modifiedIndex = 2 }
snap = assert(config.build(doc, 2))
local _, version3, cert3 = tls.lookup("a.local")
is(cert3, "CERT-NEW", "a new snapshot: the new certificate")
ok(version3 ~= version, "and a new version, even within the same update_time")

t.done_testing()
