-- sluice.tls: which certificate a TLS handshake gets. core/tls.c calls lookup(sni) from its
-- servername callback with lua_pcall on the worker's main state, so nothing here may yield.
-- The ssls resources of the current configuration snapshot are indexed once per snapshot:
-- exact names first, then wildcards ("*.example.com" matches "a.example.com", one label
-- only, as APISIX's radixtree_sni does; never "example.com" itself). Values come from the
-- snapshot already decrypted (config/store.lua opens sealed keys on read).
local config = require("sluice.config")

local type = type
local ipairs = ipairs
local tostring = tostring
local setmetatable = setmetatable
local lower = string.lower
local find = string.find
local sub = string.sub
local byte = string.byte

local STAR = byte("*")

local _M = {}

-- snapshot.ssls (a fresh table per snapshot) -> { exact = {}, wild = {} }
local index_by_ssls = setmetatable({}, { __mode = "k" })


local function names_of(ssl)
    if type(ssl.snis) == "table" then
        return ssl.snis
    end

    if type(ssl.sni) == "string" then
        return { ssl.sni }
    end

    return {}
end


-- a string that changes whenever the certificate or key does, so core/tls.c re-parses
local function version_of(ssl)
    local ok, crypto = pcall(require, "sluice.crypto")
    local digest = ""
    if ok then
        local d = crypto.sha256((ssl.cert or "") .. "\0" .. (ssl.key or ""))
        if d then
            digest = crypto.base64_encode(d)
        end
    end

    return tostring(ssl.update_time or 0) .. ":" .. #(ssl.cert or "") .. ":" .. digest
end


-- ssls: array of ssls resource values -> index
function _M.build_index(ssls)
    local exact, wild = {}, {}
    -- by id, so the same snapshot always picks the same resource for a name
    local sorted = {}
    for _, ssl in ipairs(ssls or {}) do
        if type(ssl) == "table" and ssl.status ~= 0 and (ssl.type or "server") == "server"
           and type(ssl.cert) == "string" and type(ssl.key) == "string"
        then
            sorted[#sorted + 1] = ssl
        end
    end

    table.sort(sorted, function(a, b) return tostring(a.id) < tostring(b.id) end)

    for _, ssl in ipairs(sorted) do
        local entry = { id = tostring(ssl.id), ssl = ssl }
        for _, name in ipairs(names_of(ssl)) do
            if type(name) == "string" then
                name = lower(name)
                if byte(name, 1) == STAR then
                    local suffix = sub(name, 2)         -- ".example.com"
                    if wild[suffix] == nil then
                        wild[suffix] = entry
                    end

                elseif exact[name] == nil then
                    exact[name] = entry
                end
            end
        end
    end

    return { exact = exact, wild = wild }
end


-- the index entry for a server name, or nil
function _M.match(index, sni)
    if type(sni) ~= "string" or sni == "" then
        return nil
    end

    sni = lower(sni)
    if byte(sni, -1) == 46 then         -- a trailing dot names the same host
        sni = sub(sni, 1, -2)
    end

    local e = index.exact[sni]
    if e then
        return e
    end

    local dot = find(sni, ".", 1, true)
    if not dot or dot == 1 then
        return nil
    end

    return index.wild[sub(sni, dot)]
end


-- lookup(sni) -> id, version, cert_pem, key_pem | nil, err
function _M.lookup(sni)
    if sni == nil then
        return nil, "the client sent no server name (SNI)"
    end

    local snap = config.current()
    local ssls = snap and snap.ssls
    if type(ssls) ~= "table" then
        return nil, "no ssls configured"
    end

    local index = index_by_ssls[ssls]
    if not index then
        index = _M.build_index(ssls)
        index_by_ssls[ssls] = index
    end

    local e = _M.match(index, sni)
    if not e then
        return nil, "no ssls resource matches"
    end

    if not e.version then
        e.version = version_of(e.ssl)
    end

    return e.id, e.version, e.ssl.cert, e.ssl.key
end


return _M
