-- config/store.lua -- the embedded configuration store (config.provider "store"): one JSON
-- document, DATA_DIR/store.json, holding every Admin API resource.
--
-- Document shape (what st:read() returns and what st:transaction() hands to its function):
--
--   {
--     _format = "sluice-store", _version = 1,
--     _index = 42,                 -- bumped once per committed write; like etcd's revision
--     routes = {                   -- every kind is a map id -> entry, ids are strings
--       ["1"] = { value = { id = "1", uri = "/v1/chat/completions", plugins = {...},
--                           create_time = 1700000000, update_time = 1700000000 },
--                 createdIndex = 3, modifiedIndex = 41 },
--     },
--     services = {}, upstreams = {}, plugin_configs = {}, global_rules = {}, ssls = {},
--     consumers = {},              -- keyed by username
--     credentials = {},            -- keyed "<username>/<credential id>"
--     secrets = {},                -- keyed "<manager>/<id>" ("vault/1")
--     plugin_metadata = {},        -- keyed by plugin name
--     consumer_groups = {}, protos = {}, stream_routes = {},
--   }
--
-- An entry written with ?ttl=N also has expire_at (seconds since the epoch, fractional, see
-- store.now()). An expired entry is gone: every transaction drops expired entries before its
-- function runs, readers skip them (store.expired), and st:sweep() removes them from the file.
--
-- Values are stored as written (no schema defaults). Secrets are sealed at rest: the fields a
-- plugin names in encrypt_fields (dotted paths; a table-valued field such as auth.header has
-- each of its values sealed), ssls key/keys, upstream tls.client_key. Documents handed out
-- here are always decrypted; only the file holds ciphertext.
--
-- Durability: a transaction takes an exclusive flock on DATA_DIR/store.lock, re-reads the
-- file, runs the caller's function, then writes store.json.tmp.<pid>, fsyncs it, renames it
-- over store.json and fsyncs the directory, all before returning. A crash at any point
-- leaves either the old or the new file, never a mix; a write that returned is on disk.
-- flock blocks the calling worker for the length of another writer's transaction (a few ms).
--
-- Cost with many resources: when the file's bytes are those of the cached document (the
-- usual case: the last write was ours, or we read it since), the transaction starts from a
-- copy of the cached document's maps instead of parsing the file, and only the entries it
-- wrote are encoded again (each entry's JSON is cached). So entries are immutable: a write
-- puts a new entry table into the (copied) map, it never changes one in place.
--
-- Reads are cheap: st:read() keeps the parsed document and re-reads the file only when its
-- inode, size, mtime or ctime changed (statx through the FFI). Timestamps are coarse, so for
-- two seconds after a change the bytes are compared as well, as git does for racy entries.
local ffi    = require("ffi")
local cjson  = require("cjson.safe")
local crypto = require("sluice.crypto")
local schema = require("sluice.schema")
local schema_def = require("sluice.schema_def")

local type         = type
local pairs        = pairs
local ipairs       = ipairs
local next         = next
local tostring     = tostring
local tonumber     = tonumber
local pcall        = pcall
local assert       = assert
local setmetatable = setmetatable
local deepcopy     = schema.deepcopy
local io_open      = io.open
local os_time      = os.time
local str_find     = string.find
local str_sub      = string.sub
local str_match    = string.match
local str_fmt      = string.format
local tab_concat   = table.concat
local ffi_str      = ffi.string

local FORMAT  = "sluice-store"
local VERSION = 1
local KINDS = { "routes", "services", "upstreams", "consumers", "plugin_configs",
                "global_rules", "plugin_metadata", "ssls", "consumer_groups", "credentials",
                "secrets", "protos", "stream_routes" }
local TYPE_CONSUMER = 1
local TYPE_METADATA = 2
local SECRET_MANAGERS = schema_def.secret_managers

local O_RDONLY  = 0
local O_WRONLY  = 1
local O_RDWR    = 2
local O_CREAT   = 0x40
local O_TRUNC   = 0x200
local O_CLOEXEC = 0x80000
local LOCK_EX   = 2
local LOCK_UN   = 8
local EINTR     = 4
local ENOENT    = 2
local EEXIST    = 17
local AT_FDCWD  = -100
local STATX_BASIC_STATS = 0x7ff
local RACY_SECONDS      = 2

local _M = { KINDS = KINDS, FORMAT = FORMAT }

local json = cjson.new()
json.encode_sparse_array(true)

local function cdef(decl)
    pcall(ffi.cdef, decl)      -- the host may have declared it already
end

cdef("int open(const char *pathname, int flags, ...);")
cdef("int close(int fd);")
cdef("long write(int fd, const void *buf, size_t count);")
cdef("int fsync(int fd);")
cdef("int rename(const char *oldpath, const char *newpath);")
cdef("int unlink(const char *pathname);")
cdef("int mkdir(const char *pathname, unsigned int mode);")
cdef("int flock(int fd, int operation);")
cdef("int getpid(void);")
cdef("char *strerror(int errnum);")
cdef([[typedef struct {
    int64_t tv_sec; uint32_t tv_nsec; int32_t reserved;
} sl_store_statx_ts_t;]])
cdef([[typedef struct {
    uint32_t mask; uint32_t blksize; uint64_t attributes;
    uint32_t nlink; uint32_t uid; uint32_t gid; uint16_t mode; uint16_t spare0;
    uint64_t ino; uint64_t size; uint64_t blocks; uint64_t attributes_mask;
    sl_store_statx_ts_t atime, btime, ctime, mtime;
    uint32_t rdev_major, rdev_minor, dev_major, dev_minor;
    uint64_t spare2[14];
} sl_store_statx_t;]])
cdef([[int statx(int dirfd, const char *pathname, int flags, unsigned int mask,
    sl_store_statx_t *statxbuf);]])
cdef([[typedef struct {
    size_t pathc; char **pathv; size_t offs; int flags;
    void *closedir; void *readdir; void *opendir; void *lstat; void *stat;
} sl_store_glob_t;]])
cdef("int glob(const char *pattern, int flags, void *errfunc, sl_store_glob_t *pglob);")
cdef("void globfree(sl_store_glob_t *pglob);")
cdef("typedef struct { long tv_sec; long tv_nsec; } sl_store_timespec_t;")
cdef("int clock_gettime(int clk_id, sl_store_timespec_t *tp);")

local C = ffi.C
local CLOCK_REALTIME = 0
local now_ts = ffi.new("sl_store_timespec_t")


-- store.now() -> seconds since the epoch with sub-second precision (the clock of expire_at)
function _M.now()
    C.clock_gettime(CLOCK_REALTIME, now_ts)
    return tonumber(now_ts.tv_sec) + tonumber(now_ts.tv_nsec) / 1e9
end


-- store.expired(entry, now) -> true when the entry was written with a ttl that has run out
function _M.expired(entry, now)
    local at = type(entry) == "table" and entry.expire_at
    return type(at) == "number" and at <= (now or _M.now())
end


local function errstr(what, path)
    local e = ffi.errno()
    return what .. " " .. path .. ": " .. ffi_str(C.strerror(e)), e
end


local function sys_open(path, flags, mode)
    local fd
    repeat
        fd = C.open(path, flags, ffi.new("int", mode or 0))
    until fd >= 0 or ffi.errno() ~= EINTR
    return fd
end


-- identity of the file at path: "missing", a string, or nil, err
local statx_buf = ffi.new("sl_store_statx_t")

local function file_ident(path)
    if C.statx(AT_FDCWD, path, 0, STATX_BASIC_STATS, statx_buf) ~= 0 then
        local err, e = errstr("failed to stat", path)
        if e == ENOENT then
            return "missing", 0
        end

        return nil, err
    end

    local b = statx_buf
    return str_fmt("%s:%s:%d.%d:%d.%d", tostring(b.ino), tostring(b.size),
                   tonumber(b.mtime.tv_sec), b.mtime.tv_nsec,
                   tonumber(b.ctime.tv_sec), b.ctime.tv_nsec),
           tonumber(b.mtime.tv_sec)
end


local function read_file(path)
    local f, err = io_open(path, "rb")
    if not f then
        return nil, err
    end

    local data = f:read("*a")
    f:close()
    return data
end


local function write_all(fd, data, path)
    local n, off = #data, 0
    local buf = ffi.cast("const char *", data)
    while off < n do
        local w = C.write(fd, buf + off, n - off)
        if w < 0 then
            if ffi.errno() ~= EINTR then
                return nil, errstr("failed to write", path)
            end

        else
            off = off + tonumber(w)
        end
    end

    return true
end


local function fsync_dir(dir)
    local fd = sys_open(dir, O_RDONLY + O_CLOEXEC)
    if fd < 0 then
        return nil, errstr("failed to open", dir)
    end

    local ok = C.fsync(fd) == 0
    local err = not ok and errstr("failed to fsync", dir)
    C.close(fd)
    return ok or nil, err
end


-- tmp -> fsync -> rename -> fsync(dir). The target is untouched unless rename succeeded.
local function write_atomic(self, data)
    local tmp = self.dir .. "/store.json.tmp." .. C.getpid()
    local fd = sys_open(tmp, O_WRONLY + O_CREAT + O_TRUNC + O_CLOEXEC, 384)    -- 0600
    if fd < 0 then
        return nil, errstr("failed to create", tmp)
    end

    local ok, err = write_all(fd, data, tmp)
    if ok and C.fsync(fd) ~= 0 then
        ok, err = nil, errstr("failed to fsync", tmp)
    end

    C.close(fd)
    if ok and C.rename(tmp, self._rename_path or self.path) ~= 0 then
        ok, err = nil, errstr("failed to rename " .. tmp .. " to", self._rename_path or self.path)
    end

    if not ok then
        C.unlink(tmp)
        return nil, err
    end

    return fsync_dir(self.dir)
end


-- A tmp file seen while holding the lock belongs to a writer that died mid-write.
local function remove_stale_tmp(dir)
    local g = ffi.new("sl_store_glob_t")
    if C.glob(dir .. "/store.json.tmp.*", 0, nil, g) == 0 then
        for i = 0, tonumber(g.pathc) - 1 do
            C.unlink(g.pathv[i])
        end
    end

    C.globfree(g)
end


function _M.empty()
    local doc = { _format = FORMAT, _version = VERSION, _index = 0 }
    for _, kind in ipairs(KINDS) do
        doc[kind] = {}
    end

    return doc
end


local function decode(raw, path)
    local doc, err = json.decode(raw)
    if type(doc) ~= "table" then
        return nil, "failed to parse " .. path .. ": " .. tostring(err or "not an object")
    end

    if doc._format ~= FORMAT then
        return nil, "failed to parse " .. path .. ": not a sluice store (_format)"
    end

    if type(doc._index) ~= "number" then
        return nil, "failed to parse " .. path .. ": _index is not a number"
    end

    for _, kind in ipairs(KINDS) do
        local map = doc[kind]
        if map == nil then
            doc[kind] = {}

        elseif type(map) ~= "table" then
            return nil, "failed to parse " .. path .. ": " .. kind .. " is not an object"
        end
    end

    return doc
end


-- Sealing -----------------------------------------------------------------------------------

-- The encrypt_fields of a plugin for a schema type, looked up as APISIX does (consumer confs
-- use consumer_schema when the plugin has one) plus the plugin-level field of the contract.
local function encrypt_fields(registry, name, schema_type)
    local p = registry and registry.get(name)
    if type(p) ~= "table" then
        return nil
    end

    if schema_type == TYPE_METADATA then
        return p.metadata_encrypt_fields
               or (type(p.metadata_schema) == "table" and p.metadata_schema.encrypt_fields)
    end

    if schema_type == TYPE_CONSUMER and type(p.consumer_schema) == "table" then
        return p.consumer_encrypt_fields or p.consumer_schema.encrypt_fields
    end

    return p.encrypt_fields or (type(p.schema) == "table" and p.schema.encrypt_fields)
end
_M.encrypt_fields = encrypt_fields


local function is_array(t)
    return #t > 0 or next(t) == nil
end


-- Apply op to the string(s) at a dotted path: arrays met on the way are walked element by
-- element; at the leaf a string, an array of strings or a map of strings is handled.
local function process_field(conf, path, op)
    local dot = str_find(path, ".", 1, true)
    if not dot then
        local v = conf[path]
        if type(v) == "string" then
            conf[path] = op(v, conf, path)

        elseif type(v) == "table" then
            for k, x in pairs(v) do
                if type(x) == "string" then
                    v[k] = op(x, v, k)
                end
            end
        end

        return
    end

    local v = conf[str_sub(path, 1, dot - 1)]
    if type(v) ~= "table" then
        return
    end

    local rest = str_sub(path, dot + 1)
    if is_array(v) then
        for _, item in ipairs(v) do
            if type(item) == "table" then
                process_field(item, rest, op)
            end
        end

    else
        process_field(v, rest, op)
    end
end
_M.process_field = process_field


-- Which parts of a resource value hold secrets: fn(plugins, name, fields) for a plugin conf
-- (plugins[name]), fn(nil, nil, fields) for paths in the value itself.
local function each_secret_site(registry, kind, id, value, fn)
    if type(value) ~= "table" then
        return
    end

    local plugins = value.plugins
    if type(plugins) == "table" and kind ~= "plugin_metadata" and kind ~= "upstreams"
       and kind ~= "ssls" and kind ~= "secrets"
    then
        local schema_type = (kind == "consumers" or kind == "credentials") and TYPE_CONSUMER
                            or nil
        for name, conf in pairs(plugins) do
            if type(conf) == "table" then
                local fields = encrypt_fields(registry, name, schema_type)
                if type(fields) == "table" and #fields > 0 then
                    fn(plugins, name, fields)
                end
            end
        end
    end

    if kind == "plugin_metadata" then
        local fields = encrypt_fields(registry, id, TYPE_METADATA)
        if type(fields) == "table" and #fields > 0 then
            fn(nil, nil, fields)
        end

    elseif kind == "ssls" then
        fn(nil, nil, { "key", "keys" })

    elseif kind == "upstreams" then
        fn(nil, nil, { "tls.client_key" })

    elseif kind == "routes" or kind == "services" or kind == "stream_routes" then
        fn(nil, nil, { "upstream.tls.client_key" })

    elseif kind == "secrets" then
        local manager = str_match(tostring(id), "^([^/]+)/")
        local m = manager and SECRET_MANAGERS[manager]
        if m then
            fn(nil, nil, m.encrypt_fields)
        end
    end
end


local function sealer(self, undo)
    return function(plain, t, k)
        if crypto.is_encrypted(plain) then
            return plain
        end

        local c = self.enc_memo[plain]
        if not c then
            c = assert(self.box:encrypt(plain))
            self.enc_memo[plain] = c
            self.dec_memo[c] = plain       -- the next re-read need not open it again
        end

        if undo then
            undo[#undo + 1] = { t, k, plain }
        end

        return c
    end
end


-- A copy of value with its secrets sealed, or value itself when it has none to seal.
local function seal_value(self, kind, id, value)
    local sealed
    local op = sealer(self)
    each_secret_site(self.registry, kind, id, value, function(plugins, name, fields)
        sealed = sealed or deepcopy(value)
        local target = plugins and sealed.plugins[name] or sealed
        for _, path in ipairs(fields) do
            process_field(target, path, op)
        end
    end)

    return sealed or value
end


-- The JSON of one entry as it goes to disk, with its key: '"<id>":{...}'. Secrets are swapped
-- for their sealed form in place, the entry encoded, and the plaintext put back.
local function encode_entry(self, kind, id, entry)
    local key = json.encode(tostring(id))
    if not self.box or type(entry) ~= "table" or type(entry.value) ~= "table" then
        local out, err = json.encode(entry)
        if not out then
            error("failed to encode " .. kind .. "/" .. tostring(id) .. ": " .. tostring(err), 0)
        end

        return key .. ":" .. out
    end

    local undo = {}
    local op = sealer(self, undo)
    local value = entry.value
    local ok, out, err = pcall(function()
        each_secret_site(self.registry, kind, id, value, function(plugins, name, fields)
            local target = plugins and plugins[name] or value
            for _, path in ipairs(fields) do
                process_field(target, path, op)
            end
        end)

        return json.encode(entry)
    end)

    for i = #undo, 1, -1 do
        local u = undo[i]
        u[1][u[2]] = u[3]
    end

    if not ok then
        error(out, 0)
    end

    if not out then
        error("failed to encode " .. kind .. "/" .. tostring(id) .. ": " .. tostring(err), 0)
    end

    return key .. ":" .. out
end


-- JSON of doc as it goes to disk. Entries are never changed once in a document (a write puts
-- a new entry in a copy of the map), so each entry's JSON is kept, weakly, and a write
-- encodes only the entries it made. The cache is dropped when the plugin registry changes
-- generation (encrypt_fields may have changed).
local function encode_doc(self, doc)
    local registry = self.registry
    local gen = registry and registry.generation and registry.generation() or 0
    local cache = self.enc_cache
    if not cache or self.enc_gen ~= gen then
        cache = setmetatable({}, { __mode = "k" })
        self.enc_cache = cache
        self.enc_gen = gen
    end

    local parts = { '{"_format":"', FORMAT, '","_version":', tostring(VERSION), ',"_index":',
                    str_fmt("%d", doc._index) }
    local n = #parts
    for _, kind in ipairs(KINDS) do
        n = n + 1
        parts[n] = ',"' .. kind .. '":{'
        local sep = ""
        for id, entry in pairs(doc[kind]) do
            local j = type(entry) == "table" and cache[entry]
            if not j then
                j = encode_entry(self, kind, id, entry)
                if type(entry) == "table" then
                    cache[entry] = j
                end
            end

            n = n + 1
            parts[n] = sep .. j
            sep = ","
        end

        n = n + 1
        parts[n] = "}"
    end

    parts[n + 1] = "}"
    return tab_concat(parts)
end


-- Decrypt, in place, every sealed string anywhere in a freshly decoded document. Opening by
-- prefix rather than by encrypt_fields keeps values readable after a plugin changes its
-- fields or disappears. Memo tables are rebuilt per document so they only hold live values.
local function unseal_doc(self, doc, raw, reused)
    self.warnings = {}
    if raw and not str_find(raw, crypto.PREFIX, 1, true) then
        return doc
    end

    local dec_old, dec_new, enc_new = self.dec_memo, {}, {}
    local where

    local function walk(t)
        for k, v in pairs(t) do
            local tv = type(v)
            if tv == "table" then
                walk(v)

            elseif tv == "string" and crypto.is_encrypted(v) then
                local plain, first = dec_old[v], nil
                if plain then
                    first = self.enc_memo[plain] == v

                elseif self.box then
                    local idx
                    plain, idx = self.box:decrypt(v)
                    first = idx == 1
                end

                if plain then
                    t[k] = plain
                    dec_new[v] = plain
                    if first then
                        enc_new[plain] = v
                    end

                else
                    self.warnings[#self.warnings + 1] = "failed to decrypt a field of " .. where
                        .. (self.box and ": no keyring entry opens it" or ": no keyring")
                end
            end
        end
    end

    for _, kind in ipairs(KINDS) do
        for id, entry in pairs(doc[kind]) do
            if type(entry) == "table" and type(entry.value) == "table"
               and not (reused and reused[entry])
            then
                where = kind .. "/" .. tostring(id)
                walk(entry.value)
            end
        end
    end

    self.dec_memo, self.enc_memo = dec_new, enc_new
    return doc
end


-- A freshly parsed document takes over the entries of the previous one that did not change
-- (same createdIndex and modifiedIndex: indexes are unique per write), so their decrypted
-- values, their cached JSON and the config builder's checked copies carry over, and only
-- the changed entries are new tables. Returns the set of entries taken over.
local function adopt(self, doc)
    local old = self.cache and self.cache.doc
    if type(old) ~= "table" then
        return nil
    end

    local reused = {}
    for _, kind in ipairs(KINDS) do
        local omap, nmap = old[kind], doc[kind]
        if type(omap) == "table" then
            for id, e in pairs(nmap) do
                local o = omap[id]
                if type(o) == "table" and type(e) == "table"
                   and o.modifiedIndex == e.modifiedIndex and o.createdIndex == e.createdIndex
                   and o.modifiedIndex ~= nil
                then
                    nmap[id] = o
                    reused[o] = true
                end
            end
        end
    end

    return reused
end


-- Public API --------------------------------------------------------------------------------

local mt = {}
mt.__index = mt


-- st:read() -> doc | nil, err. The document is shared by every caller until the next change:
-- treat it as read-only (deep-copy before filling defaults into it).
function mt:read()
    local ident, mtime = file_ident(self.path)
    if not ident then
        return nil, mtime
    end

    local cache = self.cache
    if ident == "missing" then
        if not (cache and cache.ident == "missing") then
            self.cache = { ident = "missing", doc = _M.empty() }
        end

        return self.cache.doc
    end

    local racy = os_time() - mtime <= RACY_SECONDS
    if cache and cache.ident == ident and not racy then
        return cache.doc
    end

    local raw, err = read_file(self.path)
    if not raw then
        return nil, "failed to read " .. self.path .. ": " .. tostring(err)
    end

    if cache and cache.raw == raw then
        cache.ident = ident
        return cache.doc
    end

    local doc
    doc, err = decode(raw, self.path)
    if not doc then
        return nil, err
    end

    unseal_doc(self, doc, raw, adopt(self, doc))
    self.cache = { ident = ident, raw = raw, doc = doc }
    return doc
end


-- A private copy of doc for one transaction: new top level and kind maps, shared entries.
local function cow(doc)
    local copy = {}
    for k, v in pairs(doc) do
        copy[k] = v
    end

    for _, kind in ipairs(KINDS) do
        local map = {}
        for id, entry in pairs(doc[kind]) do
            map[id] = entry
        end

        copy[kind] = map
    end

    return copy
end


local function commit(self, fn)
    remove_stale_tmp(self.dir)

    local doc, err
    if file_ident(self.path) ~= "missing" then
        local raw
        raw, err = read_file(self.path)
        if not raw then
            return nil, "failed to read " .. self.path .. ": " .. tostring(err)
        end

        -- the same bytes as the cached document: start from it (strings are interned, so
        -- this is a pointer comparison unless the bytes differ)
        local cache = self.cache
        if cache and cache.raw == raw and cache.doc then
            doc = cache.doc

        else
            -- A file that does not parse is never overwritten: that would lose everything.
            doc, err = decode(raw, self.path)
            if not doc then
                return nil, err
            end

            unseal_doc(self, doc, raw, adopt(self, doc))
            self.cache = { ident = file_ident(self.path), raw = raw, doc = doc }
        end

        doc = cow(doc)

    else
        doc = _M.empty()
    end

    doc._index = doc._index + 1

    local now, dropped = _M.now(), 0
    for _, kind in ipairs(KINDS) do
        local map = doc[kind]
        for id, entry in pairs(map) do
            if _M.expired(entry, now) then
                map[id] = nil
                dropped = dropped + 1
            end
        end
    end

    local result
    result, err = fn(doc, dropped)
    if result == nil then
        return nil, err
    end

    local out = encode_doc(self, doc)
    local ok
    ok, err = write_atomic(self, out)
    if not ok then
        return nil, err
    end

    self.cache = { ident = file_ident(self.path), raw = out, doc = doc }
    return result
end


-- st:transaction(fn) -> result | nil, err. fn(doc, dropped) gets a private decrypted copy of the
-- current document (its own top level and kind maps; the entries are shared and must be
-- replaced, not changed) with doc._index already set to this write's index; it mutates it and
-- returns a non-nil result to commit, or nil, err to leave the file untouched (err is passed
-- back as is, so it may be a table). Errors raised by fn also leave the file untouched.
-- Expired entries are already gone from doc; dropped says how many there were.
function mt:transaction(fn)
    local lock = sys_open(self.lock_path, O_RDWR + O_CREAT + O_CLOEXEC, 384)
    if lock < 0 then
        return nil, errstr("failed to open", self.lock_path)
    end

    local rc
    repeat
        rc = C.flock(lock, LOCK_EX)
    until rc == 0 or ffi.errno() ~= EINTR

    if rc ~= 0 then
        local err = errstr("failed to lock", self.lock_path)
        C.close(lock)
        return nil, err
    end

    local ok, res, err = pcall(commit, self, fn)
    C.flock(lock, LOCK_UN)
    C.close(lock)
    if not ok then
        return nil, "store transaction failed: " .. tostring(res)
    end

    return res, err
end


-- st:sweep() -> true when expired entries were removed from the file, false when there were
-- none, nil, err on failure.
function mt:sweep()
    local res, err = self:transaction(function(doc, dropped)
        if dropped == 0 then
            return nil, "nothing expired"
        end

        return { version = doc._index }
    end)
    if res then
        return true
    end

    if err == "nothing expired" then
        return false
    end

    return nil, err
end


-- Seal a copy of one resource value as it would be written (for callers that need to know
-- what goes to disk, e.g. tests); the value itself is not changed.
function mt:seal(kind, id, value)
    if not self.box then
        return value
    end

    return seal_value(self, kind, id, value)
end


local function mkdir_p(dir)
    local path = ""
    for part in dir:gmatch("[^/]+") do
        path = path .. (path == "" and str_sub(dir, 1, 1) == "/" and "/" or
                        (path == "" and "" or "/")) .. part
        if C.mkdir(path, 448) ~= 0 and ffi.errno() ~= EEXIST then       -- 0700
            return nil, errstr("failed to create", path)
        end
    end

    return true
end


-- store.open(data_dir, opts) -> st | nil, err
--   data_dir: the directory that holds store.json and store.lock (created if missing)
--   opts.keyring: data_encryption.keyring (array of 16/32-character strings); without it
--                 secrets are stored in plain text, as APISIX does
--   opts.plugins: the plugin registry (get(name)) that declares encrypt_fields
function _M.open(data_dir, opts)
    opts = opts or {}
    if type(data_dir) ~= "string" or data_dir == "" then
        return nil, "store: data directory expected"
    end

    data_dir = data_dir:gsub("(.)/+$", "%1")
    local ok, err = mkdir_p(data_dir)
    if not ok then
        return nil, err
    end

    local box
    if opts.keyring ~= nil and not (type(opts.keyring) == "table" and #opts.keyring == 0) then
        box, err = crypto.new(opts.keyring)
        if not box then
            return nil, err
        end
    end

    return setmetatable({
        dir = data_dir,
        path = data_dir .. "/store.json",
        lock_path = data_dir .. "/store.lock",
        box = box,
        registry = opts.plugins,
        enc_memo = {},
        dec_memo = {},
        warnings = {},
    }, mt)
end


-- store.load_file(path, opts) -> doc | nil, err: parse a store file without opening a store
-- (opts.keyring to decrypt). For tools and tests.
function _M.load_file(path, opts)
    local raw, err = read_file(path)
    if not raw then
        return nil, "failed to read " .. path .. ": " .. tostring(err)
    end

    local doc
    doc, err = decode(raw, path)
    if not doc then
        return nil, err
    end

    opts = opts or {}
    local self = { enc_memo = {}, dec_memo = {}, warnings = {} }
    if opts.keyring then
        self.box, err = crypto.new(opts.keyring)
        if not self.box then
            return nil, err
        end
    end

    unseal_doc(self, doc, raw)
    return doc, nil, self.warnings
end


return _M
