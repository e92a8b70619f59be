-- crypto.lua -- secrets at rest: AES-256-GCM over OpenSSL's libcrypto (EVP) through the FFI.
--
-- The key of a keyring entry is SHA-256(entry), so entries keep APISIX's shape
-- (data_encryption.keyring: 16- or 32-character strings) while every key is 256 bits.
-- A sealed value is PREFIX .. base64(iv[12] .. ciphertext .. tag[16]); the prefix tells sealed
-- values from plain ones, so plain values stored before a keyring existed still load, and
-- the version in it leaves room for another format. Encryption uses the first entry;
-- decryption tries each, so a new key can be put first while old values still open.
-- Nothing here logs: values and keys never leave through error messages.
local ffi = require("ffi")

local type         = type
local ipairs       = ipairs
local tostring     = tostring
local setmetatable = setmetatable
local math_ceil    = math.ceil
local ffi_new      = ffi.new
local ffi_str      = ffi.string
local str_sub      = string.sub
local str_byte     = string.byte

local PREFIX  = "$sluice$aes-256-gcm$v1$"
local IV_LEN  = 12
local TAG_LEN = 16
local EVP_CTRL_GCM_GET_TAG = 0x10
local EVP_CTRL_GCM_SET_TAG = 0x11

local _M = { PREFIX = PREFIX }


local function cdef(decl)
    pcall(ffi.cdef, decl)      -- the host may have declared it already
end


cdef("typedef struct evp_cipher_st EVP_CIPHER;")
cdef("typedef struct evp_cipher_ctx_st EVP_CIPHER_CTX;")
cdef("typedef struct evp_md_st EVP_MD;")
cdef("typedef struct bio_st BIO;")
cdef("typedef struct x509_st X509;")
cdef("typedef struct evp_pkey_st EVP_PKEY;")
cdef("const EVP_CIPHER *EVP_aes_256_gcm(void);")
cdef("EVP_CIPHER_CTX *EVP_CIPHER_CTX_new(void);")
cdef("void EVP_CIPHER_CTX_free(EVP_CIPHER_CTX *ctx);")
cdef("int EVP_CIPHER_CTX_ctrl(EVP_CIPHER_CTX *ctx, int type, int arg, void *ptr);")
cdef([[int EVP_EncryptInit_ex(EVP_CIPHER_CTX *ctx, const EVP_CIPHER *type, void *impl,
    const unsigned char *key, const unsigned char *iv);]])
cdef([[int EVP_EncryptUpdate(EVP_CIPHER_CTX *ctx, unsigned char *out, int *outl,
    const unsigned char *in, int inl);]])
cdef("int EVP_EncryptFinal_ex(EVP_CIPHER_CTX *ctx, unsigned char *out, int *outl);")
cdef([[int EVP_DecryptInit_ex(EVP_CIPHER_CTX *ctx, const EVP_CIPHER *type, void *impl,
    const unsigned char *key, const unsigned char *iv);]])
cdef([[int EVP_DecryptUpdate(EVP_CIPHER_CTX *ctx, unsigned char *out, int *outl,
    const unsigned char *in, int inl);]])
cdef("int EVP_DecryptFinal_ex(EVP_CIPHER_CTX *ctx, unsigned char *out, int *outl);")
cdef("int RAND_bytes(unsigned char *buf, int num);")
cdef("const EVP_MD *EVP_sha256(void);")
cdef([[int EVP_Digest(const void *data, size_t count, unsigned char *md, unsigned int *size,
    const EVP_MD *type, void *impl);]])
cdef("int EVP_EncodeBlock(unsigned char *t, const unsigned char *f, int n);")
cdef("int EVP_DecodeBlock(unsigned char *t, const unsigned char *f, int n);")
cdef("void ERR_clear_error(void);")
cdef("BIO *BIO_new_mem_buf(const void *buf, int len);")
cdef("int BIO_free(BIO *a);")
cdef("X509 *PEM_read_bio_X509_AUX(BIO *bp, X509 **x, void *cb, void *u);")
cdef("void X509_free(X509 *a);")
cdef("EVP_PKEY *PEM_read_bio_PrivateKey(BIO *bp, EVP_PKEY **x, void *cb, void *u);")
cdef("void EVP_PKEY_free(EVP_PKEY *key);")

local C
if pcall(function() return ffi.C.EVP_aes_256_gcm end) then
    C = ffi.C

else
    local ok, lib = pcall(ffi.load, "crypto")
    if not ok then
        ok, lib = pcall(ffi.load, "libcrypto.so.3")
    end

    if not ok then
        error("crypto: libcrypto is not available: " .. tostring(lib))
    end

    C = lib
end

local mdlen = ffi_new("unsigned int[1]")
local outl = ffi_new("int[1]")


function _M.sha256(s)
    local md = ffi_new("unsigned char[32]")
    if C.EVP_Digest(s, #s, md, mdlen, C.EVP_sha256(), nil) ~= 1 then
        return nil, "sha256 failed"
    end

    return ffi_str(md, 32)
end


function _M.random_bytes(n)
    local buf = ffi_new("unsigned char[?]", n)
    if C.RAND_bytes(buf, n) ~= 1 then
        C.ERR_clear_error()
        return nil, "RAND_bytes failed"
    end

    return ffi_str(buf, n)
end


function _M.base64_encode(s)
    local buf = ffi_new("unsigned char[?]", 4 * math_ceil(#s / 3) + 1)
    local n = C.EVP_EncodeBlock(buf, s, #s)
    return ffi_str(buf, n)
end


function _M.base64_decode(s)
    if #s % 4 ~= 0 or s:find("[^%w%+/=]") then
        return nil, "invalid base64"
    end

    local buf = ffi_new("unsigned char[?]", #s / 4 * 3 + 1)
    local n = C.EVP_DecodeBlock(buf, s, #s)
    if n < 0 then
        return nil, "invalid base64"
    end

    -- EVP_DecodeBlock counts the padding as output bytes
    if str_byte(s, -1) == 61 then
        n = n - 1
        if str_byte(s, -2) == 61 then
            n = n - 1
        end
    end

    return ffi_str(buf, n)
end


function _M.is_encrypted(v)
    return type(v) == "string" and str_sub(v, 1, #PREFIX) == PREFIX
end


local function seal(key, plain)
    local iv, err = _M.random_bytes(IV_LEN)
    if not iv then
        return nil, err
    end

    local ctx = C.EVP_CIPHER_CTX_new()
    if ctx == nil then
        return nil, "EVP_CIPHER_CTX_new failed"
    end

    local n = #plain
    local out = ffi_new("unsigned char[?]", n + TAG_LEN + 1)
    local tag = ffi_new("unsigned char[?]", TAG_LEN)
    local ok = C.EVP_EncryptInit_ex(ctx, C.EVP_aes_256_gcm(), nil, key, iv) == 1
               and C.EVP_EncryptUpdate(ctx, out, outl, plain, n) == 1
    local len = outl[0]
    ok = ok and C.EVP_EncryptFinal_ex(ctx, out + len, outl) == 1
    len = len + outl[0]
    ok = ok and C.EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, tag) == 1
    C.EVP_CIPHER_CTX_free(ctx)
    if not ok then
        C.ERR_clear_error()
        return nil, "encryption failed"
    end

    return PREFIX .. _M.base64_encode(iv .. ffi_str(out, len) .. ffi_str(tag, TAG_LEN))
end


local function open(key, iv, ct, tag)
    local ctx = C.EVP_CIPHER_CTX_new()
    if ctx == nil then
        return nil
    end

    local out = ffi_new("unsigned char[?]", #ct + TAG_LEN + 1)
    local tagbuf = ffi_new("unsigned char[?]", TAG_LEN)
    ffi.copy(tagbuf, tag, TAG_LEN)
    local ok = C.EVP_DecryptInit_ex(ctx, C.EVP_aes_256_gcm(), nil, key, iv) == 1
               and C.EVP_DecryptUpdate(ctx, out, outl, ct, #ct) == 1
    local len = outl[0]
    ok = ok and C.EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tagbuf) == 1
            and C.EVP_DecryptFinal_ex(ctx, out + len, outl) == 1
    C.EVP_CIPHER_CTX_free(ctx)
    if not ok then
        C.ERR_clear_error()
        return nil
    end

    return ffi_str(out, len + outl[0])
end


local box_mt = {}
box_mt.__index = box_mt


-- box:encrypt(plain) -> sealed string | nil, err
function box_mt:encrypt(plain)
    if type(plain) ~= "string" then
        return nil, "string expected"
    end

    return seal(self.keys[1], plain)
end


-- box:decrypt(sealed) -> plain, index of the keyring entry that opened it | nil, err
function box_mt:decrypt(sealed)
    if not _M.is_encrypted(sealed) then
        return nil, "value is not encrypted"
    end

    local raw = _M.base64_decode(str_sub(sealed, #PREFIX + 1))
    if not raw or #raw < IV_LEN + TAG_LEN then
        return nil, "malformed encrypted value"
    end

    local iv = str_sub(raw, 1, IV_LEN)
    local ct = str_sub(raw, IV_LEN + 1, -TAG_LEN - 1)
    local tag = str_sub(raw, -TAG_LEN)
    for i, key in ipairs(self.keys) do
        local plain = open(key, iv, ct, tag)
        if plain then
            return plain, i
        end
    end

    return nil, "no keyring entry decrypts the value"
end


-- crypto.new(keyring) -> box | nil, err. keyring: a string or an array of strings of 16 or
-- 32 characters (data_encryption.keyring). An empty keyring is an error: callers that allow
-- running without encryption check for it first.
function _M.new(keyring)
    if type(keyring) == "string" then
        keyring = { keyring }
    end

    if type(keyring) ~= "table" or #keyring == 0 then
        return nil, "data_encryption.keyring: expected a non-empty array of strings"
    end

    local keys = {}
    for i, entry in ipairs(keyring) do
        if type(entry) ~= "string" or (#entry ~= 16 and #entry ~= 32) then
            return nil, "data_encryption.keyring[" .. i .. "]: expected a string of 16 or 32 "
                        .. "characters"
        end

        keys[i] = _M.sha256(entry)
    end

    return setmetatable({ keys = keys }, box_mt)
end


local function with_bio(pem, fn)
    if type(pem) ~= "string" then
        return nil
    end

    local bio = C.BIO_new_mem_buf(pem, #pem)
    if bio == nil then
        return nil
    end

    local res = fn(bio)
    C.BIO_free(bio)
    C.ERR_clear_error()
    return res
end


-- PEM checks for the ssls resource, with APISIX's messages.
function _M.check_pem_cert(pem)
    local ok = with_bio(pem, function(bio)
        local x = C.PEM_read_bio_X509_AUX(bio, nil, nil, nil)
        if x == nil then
            return false
        end

        C.X509_free(x)
        return true
    end)

    if not ok then
        return nil, "failed to parse cert: PEM_read_bio_X509_AUX() failed"
    end

    return true
end


function _M.check_pem_key(pem)
    local ok = with_bio(pem, function(bio)
        local k = C.PEM_read_bio_PrivateKey(bio, nil, nil, nil)
        if k == nil then
            return false
        end

        C.EVP_PKEY_free(k)
        return true
    end)

    if not ok then
        return nil, "failed to parse key: PEM_read_bio_PrivateKey() failed"
    end

    return true
end


return _M
