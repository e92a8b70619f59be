-- crypto.lua: AES-256-GCM sealing of secrets (lua/sluice/crypto.lua): round trips, keyring
-- rotation, tamper detection, keyring validation, base64 and PEM checks.
package.path = "lua/?.lua;lua/?/init.lua;t/unit/?.lua;" .. package.path
local t = require("tap")
local crypto = require("sluice.crypto")

local ok, is, like = t.ok, t.is, t.like

local K1 = "0123456789abcdef"                      -- 16 characters
local K2 = "abcdefghijklmnopqrstuvwxyz012345"      -- 32 characters

-- keyring validation
local box, err = crypto.new({ K1 })
ok(box, "16-character entry accepted")
ok(crypto.new({ K2 }), "32-character entry accepted")
ok(crypto.new(K1), "a single string is a keyring of one")
box, err = crypto.new({ "short" })
is(box, nil, "other lengths refused")
like(err, "keyring%[1%]", "error names the entry")
is(crypto.new({}), nil, "empty keyring refused")
is(crypto.new(nil), nil, "missing keyring refused")
is(select(2, crypto.new({ K1, 42 })), "data_encryption.keyring[2]: expected a string of 16 or 32 "
   .. "characters", "non-string entry refused")

-- round trip
box = assert(crypto.new({ K1 }))
local secret = "Bearer sk-test-0123456789"
local sealed = assert(box:encrypt(secret))
ok(crypto.is_encrypted(sealed), "sealed value carries the prefix")
is(sealed:sub(1, #crypto.PREFIX), "$sluice$aes-256-gcm$v1$", "prefix and version")
ok(not sealed:find(secret, 1, true), "plaintext absent from the sealed value")
ok(not sealed:find("sk-test", 1, true), "no fragment of the secret either")
local plain, idx = box:decrypt(sealed)
is(plain, secret, "decrypts back")
is(idx, 1, "opened with the first entry")
ok(box:encrypt(secret) ~= sealed, "random IV: same plaintext, different ciphertext")
is(box:decrypt(assert(box:encrypt(""))), "", "empty string round trip")
local long = string.rep("x\0y", 10000)
is(box:decrypt(assert(box:encrypt(long))), long, "long value with NUL bytes")
local utf8 = "clé secrète ✓"
is(box:decrypt(assert(box:encrypt(utf8))), utf8, "UTF-8 value")

-- not encrypted / tampered / wrong key
ok(not crypto.is_encrypted("sk-plain"), "plain value is not encrypted")
ok(not crypto.is_encrypted(nil), "nil is not encrypted")
local p, e = box:decrypt("sk-plain")
is(p, nil, "decrypt refuses plain values")
is(e, "value is not encrypted", "plain value message")
local raw = crypto.base64_decode(sealed:sub(#crypto.PREFIX + 1))
local flipped = raw:sub(1, 14) .. string.char((raw:byte(15) + 1) % 256) .. raw:sub(16)
p, e = box:decrypt(crypto.PREFIX .. crypto.base64_encode(flipped))
is(p, nil, "tampered ciphertext refused")
is(e, "no keyring entry decrypts the value", "tamper message")
p, e = box:decrypt(crypto.PREFIX .. "!!!")
is(p, nil, "malformed base64 refused")
is(e, "malformed encrypted value", "malformed message")
local other = assert(crypto.new({ K2 }))
is(other:decrypt(sealed), nil, "another key cannot open it")

-- rotation: new key first, old key still opens old values
local rotated = assert(crypto.new({ K2, K1 }))
plain, idx = rotated:decrypt(sealed)
is(plain, secret, "old value opens after rotation")
is(idx, 2, "with the second entry")
local resealed = assert(rotated:encrypt(secret))
is(select(2, rotated:decrypt(resealed)), 1, "new values use the first entry")
is(box:decrypt(resealed), nil, "old keyring cannot open values sealed with the new key")

-- helpers
is(#crypto.sha256("abc"), 32, "sha256 is 32 bytes")
is(crypto.base64_encode(crypto.sha256("abc")), "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=",
   "sha256 known answer")
for _, s in ipairs({ "", "a", "ab", "abc", "abcd" }) do
    is(crypto.base64_decode(crypto.base64_encode(s)), s, "base64 round trip of " .. #s .. " bytes")
end

is(crypto.base64_decode("abc"), nil, "base64 length must be a multiple of 4")
is(#crypto.random_bytes(12), 12, "random bytes")

-- PEM checks used by the ssls resource
local cert_ok, cert_err = crypto.check_pem_cert("not a cert")
is(cert_ok, nil, "bad certificate refused")
is(cert_err, "failed to parse cert: PEM_read_bio_X509_AUX() failed", "APISIX cert message")
is(select(2, crypto.check_pem_key("not a key")),
   "failed to parse key: PEM_read_bio_PrivateKey() failed", "APISIX key message")

local tmp = os.tmpname()
local rc = os.execute("openssl req -x509 -newkey rsa:2048 -nodes -keyout " .. tmp .. ".key -out "
                      .. tmp .. ".crt -days 1 -subj /CN=test.local >/dev/null 2>&1")
if rc == 0 or rc == true then
    local f = io.open(tmp .. ".crt")
    local cert = f:read("*a")
    f:close()
    f = io.open(tmp .. ".key")
    local key = f:read("*a")
    f:close()
    ok(crypto.check_pem_cert(cert), "real certificate parses")
    ok(crypto.check_pem_key(key), "real key parses")
    os.remove(tmp .. ".crt")
    os.remove(tmp .. ".key")
else
    ok(true, "# skip: openssl command not available")
    ok(true, "# skip: openssl command not available")
end

os.remove(tmp)

-- speed
local t0 = os.clock()
for _ = 1, 10000 do
    box:decrypt(box:encrypt(secret))
end
local ms = (os.clock() - t0) * 1000
ok(ms < 5000, string.format("10000 seal+open in %.1f ms", ms))
io.write(string.format("# 10000 seal+open: %.1f ms\n", ms))

t.done_testing()
