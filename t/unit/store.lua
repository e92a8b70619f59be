-- store.lua: the durable configuration store (lua/sluice/config/store.lua): transactions,
-- atomic replacement (failures leave the file untouched), freshness across store objects,
-- encryption at rest, a 2000-route timing, and kill -9 of writers in a write storm.
package.path = "lua/?.lua;lua/?/init.lua;t/unit/?.lua;" .. package.path
local t = require("tap")
local ffi = require("ffi")
local cjson = require("cjson.safe")
local store = require("sluice.config.store")
local crypto = require("sluice.crypto")

local ok, is, is_deeply, like = t.ok, t.is, t.is_deeply, t.like

pcall(ffi.cdef, "int fork(void);")
pcall(ffi.cdef, "int kill(int pid, int sig);")
pcall(ffi.cdef, "int waitpid(int pid, int *status, int options);")
pcall(ffi.cdef, "int usleep(unsigned int usec);")
pcall(ffi.cdef, "void _exit(int status);")
pcall(ffi.cdef, "int getpid(void);")
ffi.cdef([[
struct sl_test_timeval { long tv_sec; long tv_usec; };
int gettimeofday(struct sl_test_timeval *tv, void *tz);
]])

local K1 = "0123456789abcdef"
local K2 = "abcdefghijklmnopqrstuvwxyz012345"

local tv = ffi.new("struct sl_test_timeval")
local function now_ms()
    ffi.C.gettimeofday(tv, nil)
    return tonumber(tv.tv_sec) * 1000 + tonumber(tv.tv_usec) / 1000
end


local function tmpdir()
    local p = os.tmpname()
    os.remove(p)
    return p .. ".d/data"
end


local function slurp(path)
    local f = io.open(path, "rb")
    if not f then
        return nil
    end

    local s = f:read("*a")
    f:close()
    return s
end


local function ls(dir)
    local out = {}
    local p = io.popen("ls -a " .. dir)
    for line in p:lines() do
        if line ~= "." and line ~= ".." then
            out[#out + 1] = line
        end
    end

    p:close()
    table.sort(out)
    return out
end


local function put_route(id, value)
    return function(doc)
        value.id = id
        doc.routes[id] = { value = value, createdIndex = doc._index, modifiedIndex = doc._index }
        return { index = doc._index }
    end
end


local registry = {
    plugins = {
        ["ai-proxy"] = {
            name = "ai-proxy",
            schema = { type = "object",
                       encrypt_fields = { "auth.header", "auth.query", "auth.aws.secret" } },
        },
        ["key-auth"] = {
            name = "key-auth",
            schema = { type = "object" },
            consumer_schema = { type = "object", encrypt_fields = { "key" } },
        },
        ["ai-proxy-multi"] = {
            name = "ai-proxy-multi",
            encrypt_fields = { "instances.auth.header" },     -- plugin-level, as the contract says
        },
        ["my-logger"] = {
            name = "my-logger",
            metadata_schema = { type = "object", encrypt_fields = { "token" } },
        },
    },
}
function registry.get(name)
    return registry.plugins[name]
end


-- basics -------------------------------------------------------------------------------------
local dir = tmpdir()
local st = assert(store.open(dir))
ok(os.rename(dir, dir), "data dir created (with its parents)")
local doc = assert(st:read())
is(doc._index, 0, "missing file reads as an empty store")
for _, kind in ipairs(store.KINDS) do
    is_deeply(doc[kind], {}, "empty " .. kind)
end

local res = assert(st:transaction(put_route("1", { uri = "/a", plugins = {} })))
is(res.index, 1, "first write has index 1")
doc = assert(st:read())
is(doc._index, 1, "index stored")
is(doc.routes["1"].value.uri, "/a", "value stored")
is(doc.routes["1"].createdIndex, 1, "createdIndex")
local mode = io.popen("stat -c %a " .. dir .. "/store.json"):read("*l")
is(mode, "600", "store.json is 0600")
is_deeply(ls(dir), { "store.json", "store.lock" }, "no tmp file left")
local raw_doc = cjson.decode(slurp(dir .. "/store.json"))
is(raw_doc._format, "sluice-store", "file format marker")

res = assert(st:transaction(put_route("2", { uri = "/b", plugins = {} })))
is(res.index, 2, "index moves once per write")

-- abort and errors leave the file untouched ----------------------------------------------------
local before = slurp(dir .. "/store.json")
local r, err = st:transaction(function(d)
    d.routes["1"] = nil
    return nil, { status = 400, body = { error_msg = "nope" } }
end)
is(r, nil, "aborted transaction returns nil")
is_deeply(err, { status = 400, body = { error_msg = "nope" } }, "error passed through as is")
is(slurp(dir .. "/store.json"), before, "abort: file untouched")
ok(st:read().routes["1"], "abort: cached document untouched")

r, err = st:transaction(function(d)
    d.routes = nil
    error("boom")
end)
is(r, nil, "raising transaction returns nil")
like(err, "store transaction failed: .*boom", "raise reported")
is(slurp(dir .. "/store.json"), before, "raise: file untouched")
ok(st:transaction(function() return true end), "lock released after a raise")
before = slurp(dir .. "/store.json")

-- rename failure: the tmp file is written and fsynced, then rename to a bad path fails
st._rename_path = dir .. "/missing/store.json"
r, err = st:transaction(put_route("3", { uri = "/c", plugins = {} }))
st._rename_path = nil
is(r, nil, "rename failure returns nil")
like(err, "^failed to rename .*store.json.tmp.%d+ to .*/missing/store.json: No such file",
     "rename failure message")
is(slurp(dir .. "/store.json"), before, "rename failure: file untouched")
is(st:read().routes["3"], nil, "rename failure: not visible")
is_deeply(ls(dir), { "store.json", "store.lock" }, "rename failure: tmp file removed")

-- a tmp file left by a writer killed mid-write is removed by the next writer
local f = io.open(dir .. "/store.json.tmp.99999", "w")
f:write("{half")
f:close()
assert(st:transaction(put_route("3", { uri = "/c", plugins = {} })))
is_deeply(ls(dir), { "store.json", "store.lock" }, "stale tmp file cleaned")

-- corrupt file: read fails, writes refuse to replace it
local good = slurp(dir .. "/store.json")
f = io.open(dir .. "/store.json", "w")
f:write('{"routes": ')
f:close()
local st_c = assert(store.open(dir))
local d, rerr = st_c:read()
is(d, nil, "corrupt file: read fails")
like(rerr, "failed to parse", "corrupt file message")
r, err = st_c:transaction(put_route("4", { uri = "/d", plugins = {} }))
is(r, nil, "corrupt file: write refused")
is(slurp(dir .. "/store.json"), '{"routes": ', "corrupt file: not overwritten")
f = io.open(dir .. "/store.json", "w")
f:write(good)
f:close()

-- two store objects (two workers): changes are seen at once, even same-size ones
local w1 = assert(store.open(dir))
local w2 = assert(store.open(dir))
assert(w1:transaction(put_route("x", { uri = "/aaaa", plugins = {} })))
is(w2:read().routes["x"].value.uri, "/aaaa", "second store object sees the write")
local cached = w2:read()
ok(w2:read() == cached, "unchanged file: the same document object is returned")
assert(w1:transaction(put_route("x", { uri = "/bbbb", plugins = {} })))
is(w2:read().routes["x"].value.uri, "/bbbb", "same-size change within the same second is seen")
assert(w2:transaction(function(dd)
    is(dd.routes["x"].value.uri, "/bbbb", "transaction re-reads the file under the lock")
    -- entries are replaced, never changed in place (they are shared with the cache)
    local old = dd.routes["x"]
    dd.routes["x"] = { value = { id = "x", uri = "/cccc", plugins = {} },
                       createdIndex = old.createdIndex, modifiedIndex = dd._index }
    return true
end))
is(w1:read().routes["x"].value.uri, "/cccc", "and the first sees the second's write")
ok(w1:read() ~= w2:read(), "each reader has its own parsed copy")

-- load_file
local loaded = assert(store.load_file(dir .. "/store.json"))
is(loaded.routes["x"].value.uri, "/cccc", "load_file")
is(store.load_file(dir .. "/nope.json"), nil, "load_file of a missing file")

-- encryption at rest -----------------------------------------------------------------------
local edir = tmpdir()
local es = assert(store.open(edir, { keyring = { K1 }, plugins = registry }))
local SECRET_H = "Bearer sk-header-secret-1"
local SECRET_Q = "sk-query-secret-2"
local SECRET_AWS = "aws-secret-3"
local SECRET_MULTI = "Bearer sk-multi-4"
local SECRET_KEY = "consumer-key-5"
local SECRET_META = "meta-token-6"
local PEM_KEY = "-----BEGIN PRIVATE KEY-----\nprivate-7\n-----END PRIVATE KEY-----"
local CLIENT_KEY = "-----BEGIN PRIVATE KEY-----\nclient-8\n-----END PRIVATE KEY-----"
local ALL = { SECRET_H, SECRET_Q, SECRET_AWS, SECRET_MULTI, SECRET_KEY, SECRET_META, "private-7",
              "client-8" }

assert(es:transaction(function(dd)
    local i = dd._index
    dd.routes["1"] = { createdIndex = i, modifiedIndex = i, value = {
        id = "1", uri = "/chat",
        plugins = {
            ["ai-proxy"] = { provider = "openai",
                             auth = { header = { Authorization = SECRET_H },
                                      query = { key = SECRET_Q },
                                      aws = { secret = SECRET_AWS } } },
            ["unknown-plugin"] = { token = "not-a-declared-secret" },
        },
        upstream = { nodes = { ["a:1"] = 1 }, tls = { client_key = CLIENT_KEY } },
    } }
    dd.routes["2"] = { createdIndex = i, modifiedIndex = i, value = {
        id = "2", uri = "/multi",
        plugins = { ["ai-proxy-multi"] = { instances = {
            { name = "a", auth = { header = { Authorization = SECRET_MULTI } } },
            { name = "b", auth = { header = { Authorization = SECRET_MULTI } } },
        } } },
    } }
    dd.consumers["jack"] = { createdIndex = i, modifiedIndex = i, value = {
        username = "jack", plugins = { ["key-auth"] = { key = SECRET_KEY } } } }
    dd.plugin_metadata["my-logger"] = { createdIndex = i, modifiedIndex = i, value = {
        id = "my-logger", token = SECRET_META, endpoint = "http://log" } }
    dd.ssls["s1"] = { createdIndex = i, modifiedIndex = i, value = {
        id = "s1", cert = "CERT", key = PEM_KEY, keys = { PEM_KEY } } }
    return true
end))

local file = slurp(edir .. "/store.json")
for _, s in ipairs(ALL) do
    ok(not file:find(s, 1, true), "raw file lacks secret " .. s)
end
ok(file:find("not-a-declared-secret", 1, true), "undeclared fields stay plain")
is(cjson.decode(file).plugin_metadata["my-logger"].value.endpoint, "http://log",
   "non-secret metadata stays plain")
ok(file:find(crypto.PREFIX, 1, true), "raw file holds sealed values")

local ed = assert(es:read())
local ap = ed.routes["1"].value.plugins["ai-proxy"]
is(ap.auth.header.Authorization, SECRET_H, "read: header map value decrypted")
is(ap.auth.query.key, SECRET_Q, "read: query map value decrypted")
is(ap.auth.aws.secret, SECRET_AWS, "read: nested dotted path decrypted")
is(ed.routes["1"].value.upstream.tls.client_key, CLIENT_KEY, "read: upstream tls key decrypted")
is(ed.routes["2"].value.plugins["ai-proxy-multi"].instances[2].auth.header.Authorization,
   SECRET_MULTI, "read: path through an array decrypted")
is(ed.consumers["jack"].value.plugins["key-auth"].key, SECRET_KEY, "read: consumer_schema field")
is(ed.plugin_metadata["my-logger"].value.token, SECRET_META, "read: metadata_schema field")
is(ed.ssls["s1"].value.key, PEM_KEY, "read: ssl key")
is(ed.ssls["s1"].value.keys[1], PEM_KEY, "read: ssl keys[]")

local fresh = assert(store.open(edir, { keyring = { K1 }, plugins = registry }))
is(fresh:read().routes["1"].value.plugins["ai-proxy"].auth.header.Authorization, SECRET_H,
   "another store object with the keyring decrypts")
is(fresh:read().consumers.jack.value.plugins["key-auth"].key, SECRET_KEY,
   "decrypting needs no registry entry")

local nokey = assert(store.open(edir))
local nd = assert(nokey:read())
ok(crypto.is_encrypted(nd.routes["1"].value.plugins["ai-proxy"].auth.header.Authorization),
   "without the keyring values stay sealed")
ok(#nokey.warnings > 0, "and warnings say so")
ok(not table.concat(nokey.warnings, "\n"):find("sk-", 1, true), "warnings carry no values")
like(nokey.warnings[1], "^failed to decrypt a field of ", "warning names the resource")

local via_file = assert(store.load_file(edir .. "/store.json", { keyring = { K1 } }))
is(via_file.ssls.s1.value.key, PEM_KEY, "load_file with keyring decrypts")

-- unchanged secrets keep their ciphertext across writes (no churn)
local c_before = cjson.decode(file).routes["1"].value.plugins["ai-proxy"].auth.header
assert(es:transaction(put_route("9", { uri = "/z", plugins = {} })))
local c_after = cjson.decode(slurp(edir .. "/store.json")).routes["1"].value.plugins["ai-proxy"]
                .auth.header
is(c_after.Authorization, c_before.Authorization, "ciphertext stable for unchanged secrets")

-- seal() shows what goes to disk without changing the value
local v = { plugins = { ["ai-proxy"] = { auth = { header = { A = "x" } } } } }
local sealed = es:seal("routes", "z", v)
ok(crypto.is_encrypted(sealed.plugins["ai-proxy"].auth.header.A), "seal() seals a copy")
is(v.plugins["ai-proxy"].auth.header.A, "x", "seal() leaves the value alone")

-- rotation: new key first; old values still open, the next write re-seals with the new key
local rot = assert(store.open(edir, { keyring = { K2, K1 }, plugins = registry }))
is(rot:read().routes["1"].value.plugins["ai-proxy"].auth.header.Authorization, SECRET_H,
   "rotated keyring opens old values")
assert(rot:transaction(function() return true end))
local only_new = assert(store.open(edir, { keyring = { K2 }, plugins = registry }))
local od = assert(only_new:read())
is(od.routes["1"].value.plugins["ai-proxy"].auth.header.Authorization, SECRET_H,
   "after a write, the new key alone opens everything")
is(#only_new.warnings, 0, "no value left under the old key")

-- plain values written before a keyring existed get sealed by the next write
local pdir = tmpdir()
local plain_st = assert(store.open(pdir, { plugins = registry }))
assert(plain_st:transaction(put_route("1", { uri = "/p", plugins = {
    ["ai-proxy"] = { auth = { header = { Authorization = SECRET_H } } } } })))
ok(slurp(pdir .. "/store.json"):find(SECRET_H, 1, true), "no keyring: stored plain")
local later = assert(store.open(pdir, { keyring = { K1 }, plugins = registry }))
is(later:read().routes["1"].value.plugins["ai-proxy"].auth.header.Authorization, SECRET_H,
   "plain values read fine once a keyring exists")
assert(later:transaction(function() return true end))
ok(not slurp(pdir .. "/store.json"):find(SECRET_H, 1, true), "and are sealed by the next write")
is(store.open(pdir, { keyring = { "bad" } }), nil, "bad keyring refused at open")

-- 2000 routes: timing --------------------------------------------------------------------------
local bdir = tmpdir()
local bs = assert(store.open(bdir, { keyring = { K1 }, plugins = registry }))
local t0 = now_ms()
assert(bs:transaction(function(dd)
    for i = 1, 2000 do
        local id = tostring(i)
        dd.routes[id] = { createdIndex = dd._index, modifiedIndex = dd._index, value = {
            id = id, uri = "/v1/chat/completions/" .. i, methods = { "POST" },
            plugins = { ["ai-proxy"] = { provider = "openai",
                                         auth = { header = { Authorization = "Bearer sk-" .. i } },
                                         options = { model = "gpt-4o-mini" } } },
            upstream = { nodes = { ["127.0.0.1:1980"] = 1 }, type = "roundrobin" },
        } }
    end
    return true
end))
local t_bulk = now_ms() - t0
local size = #slurp(bdir .. "/store.json")

t0 = now_ms()
local N = 20
for i = 1, N do
    assert(bs:transaction(put_route("1", { uri = "/changed/" .. i, plugins = {} })))
end
local t_write = (now_ms() - t0) / N

local cold = assert(store.open(bdir, { keyring = { K1 }, plugins = registry }))
t0 = now_ms()
local cd = assert(cold:read())
local t_cold = now_ms() - t0
is(cd.routes["2000"].value.plugins["ai-proxy"].auth.header.Authorization, "Bearer sk-2000",
   "2000-route store decrypts")

t0 = now_ms()
for _ = 1, 1000 do
    cold:read()
end
local t_cached = (now_ms() - t0) / 1000

ok(t_write < 500, string.format("one write to a 2000-route store: %.1f ms", t_write))
ok(t_cold < 1000, string.format("cold read of a 2000-route store: %.1f ms", t_cold))
io.write(string.format("# 2000 routes (%d bytes): bulk insert %.1f ms, one-route write %.1f ms, "
                       .. "cold read %.1f ms, cached read %.3f ms\n",
                       size, t_bulk, t_write, t_cold, t_cached))

-- kill -9 in a write storm -------------------------------------------------------------------
local kdir = tmpdir()
assert(store.open(kdir))
local WRITERS = 4
local pids, acks = {}, {}
for w = 1, WRITERS do
    acks[w] = kdir .. "/../ack." .. w
    local pid = ffi.C.fork()
    if pid == 0 then
        -- child: write until killed (or 10 s), acknowledging each committed write
        local cs = store.open(kdir)
        local af = io.open(acks[w], "w")
        local deadline = now_ms() + 10000
        local n = 0
        while now_ms() < deadline do
            n = n + 1
            local id = w .. "-" .. n
            local got = cs:transaction(function(dd)
                dd.routes[id] = { createdIndex = dd._index, modifiedIndex = dd._index,
                                  value = { id = id, uri = "/" .. id, plugins = {},
                                            pad = string.rep("x", (n * 37) % 500) } }
                if n % 7 == 0 then
                    dd.routes[w .. "-" .. (n - 3)] = nil     -- deletes too
                end
                return true
            end)
            if got then
                af:write(id, n % 7 == 0 and (" del " .. w .. "-" .. (n - 3)) or "", "\n")
                af:flush()
            end
        end
        af:close()
        ffi.C._exit(0)
    end

    pids[w] = pid
end

ffi.C.usleep(400000)
for _, pid in ipairs(pids) do
    ffi.C.kill(pid, 9)
end

local status = ffi.new("int[1]")
for _, pid in ipairs(pids) do
    ffi.C.waitpid(pid, status, 0)
end

local kd, kerr = store.load_file(kdir .. "/store.json")
ok(kd, "after kill -9 the store loads" .. (kerr and (": " .. kerr) or ""))
-- Writer w's transaction n deletes w-(n-3) when n % 7 == 0. A writer can be killed after a
-- commit and before its acknowledgement, so the one transaction after the last acknowledged
-- may have happened too: ids it may have deleted are not expected.
local acked, missing, resurrected = 0, 0, 0
local last, seen = {}, {}
for w = 1, WRITERS do
    last[w] = 0
    for line in io.lines(acks[w]) do
        local n = tonumber(line:match("^%d+%-(%d+)"))
        if n then
            acked = acked + 1
            last[w] = math.max(last[w], n)
            seen[#seen + 1] = { w, n }
        end
    end
end

for _, e in ipairs(seen) do
    local w, n = e[1], e[2]
    local id = w .. "-" .. n
    local deleter = n + 3
    local maybe_deleted = deleter % 7 == 0 and deleter <= last[w] + 1
    local surely_deleted = deleter % 7 == 0 and deleter <= last[w]
    if kd and not kd.routes[id] and not maybe_deleted then
        missing = missing + 1
        io.write("# missing: ", id, "\n")
    end

    if kd and kd.routes[id] and surely_deleted then
        resurrected = resurrected + 1
    end
end

ok(acked > 20, "writers made progress before the kill (" .. acked .. " acknowledged)")
is(missing, 0, "every acknowledged write is in the store")
is(resurrected, 0, "no acknowledged delete is undone")
local leftover = 0
for _, name in ipairs(ls(kdir)) do
    if name:find("^store.json.tmp") then
        leftover = leftover + 1
    end
end

io.write("# kill -9 storm: ", leftover, " writer(s) killed with a tmp file open\n")
local ks = assert(store.open(kdir))
ok(ks:transaction(function() return true end), "store writable after the kill")
is_deeply(ls(kdir), { "store.json", "store.lock" }, "tmp files of killed writers cleaned")
io.write("# kill -9 storm: " .. acked .. " acknowledged writes by " .. WRITERS
         .. " writers in 0.4 s, all present\n")

os.execute("rm -rf " .. dir:gsub("/data$", "") .. " " .. edir:gsub("/data$", "") .. " "
           .. pdir:gsub("/data$", "") .. " " .. bdir:gsub("/data$", "") .. " "
           .. kdir:gsub("/data$", ""))

t.done_testing()
