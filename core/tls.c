/* tls.c -- TLS termination. One server SSL_CTX per worker (TLS 1.2+, ALPN http/1.1). The
 * certificate of a handshake is picked in the servername callback: it asks Lua
 * (require("sluice.tls").lookup(sni), run with lua_pcall on the worker's main state; the
 * function never yields) for the ssls resource matching the SNI and gets back its id, a
 * version string and the cert and key PEMs. Parsed certificates and keys are cached per id
 * and replaced when the version changes, so a handshake parses PEM only the first time a
 * certificate is used. No certificate for the name: the handshake fails with an
 * unrecognized_name alert. */
#include "tls.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "lua_vm.h"
#include "worker.h"

#define CACHE_BUCKETS  256

typedef struct sl_tls_cert_s  sl_tls_cert_t;

struct sl_tls_cert_s {
    sl_tls_cert_t    *next;
    char             *id;           /* the ssls resource id */
    char             *version;      /* changes whenever the resource is written */
    X509             *cert;         /* leaf */
    STACK_OF(X509)   *chain;        /* intermediates that followed it in the PEM, or NULL */
    EVP_PKEY         *pkey;
};

static SSL_CTX        *server_ctx;
static sl_tls_cert_t  *cache[CACHE_BUCKETS];
static int             lookup_ref = LUA_NOREF;


static int
on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
        unsigned int inlen, void *arg)
{
    static const unsigned char  h11[] = "\x08http/1.1";

    if (SSL_select_next_proto((unsigned char **) out, outlen, h11, sizeof(h11) - 1, in, inlen)
        != OPENSSL_NPN_NEGOTIATED)
    {
        return SSL_TLSEXT_ERR_NOACK;
    }

    return SSL_TLSEXT_ERR_OK;
}


/* PEM passphrase callback: keys must not be encrypted; without this OpenSSL would prompt
 * on the terminal. */
static int
no_passphrase(char *buf, int size, int rwflag, void *u)
{
    SL_UNUSED(buf);
    SL_UNUSED(size);
    SL_UNUSED(rwflag);
    SL_UNUSED(u);
    return 0;
}


static unsigned
hash_id(const char *id)
{
    unsigned  h = 5381;

    while (*id != '\0') {
        h = h * 33 + (unsigned char) *id++;
    }

    return h % CACHE_BUCKETS;
}


static void
cert_free(sl_tls_cert_t *e)
{
    X509_free(e->cert);
    sk_X509_pop_free(e->chain, X509_free);
    EVP_PKEY_free(e->pkey);
    free(e->id);
    free(e->version);
    free(e);
}


/* Parses a leaf certificate (plus any chain after it) and its key into a new entry, or
 * returns NULL with *err. */
static sl_tls_cert_t *
cert_parse(const char *cert_pem, size_t cert_len, const char *key_pem, size_t key_len,
           const char **err)
{
    BIO            *bio;
    X509           *x;
    sl_tls_cert_t  *e;

    e = sl_xcalloc(1, sizeof(sl_tls_cert_t));

    bio = BIO_new_mem_buf(cert_pem, (int) cert_len);
    if (bio == NULL) {
        *err = "out of memory";
        goto failed;
    }

    e->cert = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL);
    if (e->cert == NULL) {
        BIO_free(bio);
        *err = "cannot parse the certificate";
        goto failed;
    }

    while ((x = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL)) != NULL) {
        if (e->chain == NULL) {
            e->chain = sk_X509_new_null();
        }

        if (e->chain == NULL || !sk_X509_push(e->chain, x)) {
            X509_free(x);
            BIO_free(bio);
            *err = "out of memory";
            goto failed;
        }
    }

    ERR_clear_error();      /* the end of the PEM data leaves an error queued */
    BIO_free(bio);

    bio = BIO_new_mem_buf(key_pem, (int) key_len);
    if (bio == NULL) {
        *err = "out of memory";
        goto failed;
    }

    e->pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
    BIO_free(bio);
    if (e->pkey == NULL) {
        *err = "cannot parse the private key";
        goto failed;
    }

    return e;

failed:
    ERR_clear_error();
    cert_free(e);
    return NULL;
}


/* The cached entry for id at version, parsing the PEMs when there is none or it is stale.
 * Returns NULL with *err. */
static sl_tls_cert_t *
cert_get(const char *id, const char *version, const char *cert_pem, size_t cert_len,
         const char *key_pem, size_t key_len, const char **err)
{
    unsigned         h = hash_id(id);
    sl_tls_cert_t   *e, **pp, *fresh;

    for (pp = &cache[h]; *pp != NULL; pp = &(*pp)->next) {
        if (strcmp((*pp)->id, id) == 0) {
            break;
        }
    }

    e = *pp;
    if (e != NULL && strcmp(e->version, version) == 0) {
        return e;
    }

    if (cert_pem == NULL || key_pem == NULL) {
        *err = "the ssl resource has no cert or key";
        return NULL;
    }

    fresh = cert_parse(cert_pem, cert_len, key_pem, key_len, err);
    if (fresh == NULL) {
        return NULL;
    }

    fresh->id = sl_xstrndup(id, strlen(id));
    fresh->version = sl_xstrndup(version, strlen(version));

    /* replace the stale entry in place; connections that use it hold their own refs */
    if (e != NULL) {
        fresh->next = e->next;
        *pp = fresh;
        cert_free(e);

    } else {
        fresh->next = cache[h];
        cache[h] = fresh;
    }

    return fresh;
}


static int
use_cert(SSL *ssl, const sl_tls_cert_t *e, const char **err)
{
    int  i;

    if (SSL_use_certificate(ssl, e->cert) != 1) {
        *err = "cannot use the certificate";
        return SL_ERROR;
    }

    if (SSL_use_PrivateKey(ssl, e->pkey) != 1) {
        *err = "the private key does not match the certificate";
        return SL_ERROR;
    }

    for (i = 0; e->chain != NULL && i < sk_X509_num(e->chain); i++) {
        if (SSL_add1_chain_cert(ssl, sk_X509_value(e->chain, i)) != 1) {
            *err = "cannot add a chain certificate";
            return SL_ERROR;
        }
    }

    return SL_OK;
}


/* Pushes require("sluice.tls").lookup, resolving it once. Returns SL_OK or SL_ERROR with
 * the Lua error on the stack. */
static int
push_lookup(lua_State *L)
{
    if (lookup_ref != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, lookup_ref);
        return SL_OK;
    }

    lua_getglobal(L, "require");
    lua_pushliteral(L, "sluice.tls");
    if (lua_pcall(L, 1, 1, 0) != 0) {
        return SL_ERROR;
    }

    lua_getfield(L, -1, "lookup");
    lua_remove(L, -2);
    if (!lua_isfunction(L, -1)) {
        lua_pop(L, 1);
        lua_pushliteral(L, "sluice.tls has no lookup function");
        return SL_ERROR;
    }

    lua_pushvalue(L, -1);
    lookup_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return SL_OK;
}


/* Picks the certificate for the client's SNI. Runs inside SSL_do_handshake on the event
 * loop, never inside Lua code, so the main state is free for a lua_pcall. */
static int
on_servername(SSL *ssl, int *alert, void *arg)
{
    lua_State      *L = sl_worker != NULL ? sl_worker->L : NULL;
    const char     *sni, *id, *version, *cert_pem, *key_pem, *err = NULL;
    size_t          cert_len = 0, key_len = 0;
    int             top, rc = SSL_TLSEXT_ERR_ALERT_FATAL;
    sl_tls_cert_t  *e;

    SL_UNUSED(arg);
    *alert = SSL_AD_INTERNAL_ERROR;
    if (L == NULL) {
        return rc;
    }

    sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    top = lua_gettop(L);

    if (push_lookup(L) != SL_OK) {
        sl_log_error("tls: cannot load sluice.tls: %s", lua_tostring(L, -1));
        goto done;
    }

    if (sni != NULL) {
        lua_pushstring(L, sni);
    } else {
        lua_pushnil(L);
    }

    /* lookup(sni) -> id, version, cert_pem, key_pem | nil, err */
    if (lua_pcall(L, 1, 4, 0) != 0) {
        sl_log_error("tls: sluice.tls.lookup failed: %s", lua_tostring(L, -1));
        goto done;
    }

    if (lua_isnil(L, -4)) {
        sl_log_info("tls: no certificate for server name \"%.255s\": %s",
                    sni != NULL ? sni : "", lua_isstring(L, -3) ? lua_tostring(L, -3) : "");
        *alert = SSL_AD_UNRECOGNIZED_NAME;
        goto done;
    }

    id = lua_tostring(L, -4);
    version = lua_tostring(L, -3);
    cert_pem = lua_tolstring(L, -2, &cert_len);
    key_pem = lua_tolstring(L, -1, &key_len);
    if (id == NULL || version == NULL) {
        sl_log_error("tls: sluice.tls.lookup returned no id or version");
        goto done;
    }

    e = cert_get(id, version, cert_pem, cert_len, key_pem, key_len, &err);
    if (e == NULL || use_cert(ssl, e, &err) != SL_OK) {
        sl_log_error("tls: ssl %s for server name \"%.255s\": %s", id,
                     sni != NULL ? sni : "", err);
        ERR_clear_error();
        goto done;
    }

    rc = SSL_TLSEXT_ERR_OK;

done:
    lua_settop(L, top);
    return rc;
}


int
sl_tls_init(const char **err)
{
    if (server_ctx != NULL) {
        return SL_OK;
    }

    server_ctx = SSL_CTX_new(TLS_server_method());
    if (server_ctx == NULL) {
        *err = "cannot create the TLS context";
        return SL_ERROR;
    }

    SSL_CTX_set_min_proto_version(server_ctx, TLS1_2_VERSION);
    SSL_CTX_set_cipher_list(server_ctx, "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:!aNULL:!MD5");
    SSL_CTX_set_options(server_ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_alpn_select_cb(server_ctx, on_alpn, NULL);
    SSL_CTX_set_tlsext_servername_callback(server_ctx, on_servername);
    return SL_OK;
}


void *
sl_tls_new_server_ssl(void *arg)
{
    const char  *err;

    SL_UNUSED(arg);
    if (server_ctx == NULL && sl_tls_init(&err) != SL_OK) {
        sl_log_error("%s", err);
        return NULL;
    }

    return SSL_new(server_ctx);
}


void
sl_tls_cleanup(void)
{
    int             i;
    sl_tls_cert_t  *e, *next;

    for (i = 0; i < CACHE_BUCKETS; i++) {
        for (e = cache[i]; e != NULL; e = next) {
            next = e->next;
            cert_free(e);
        }

        cache[i] = NULL;
    }

    SSL_CTX_free(server_ctx);
    server_ctx = NULL;
    lookup_ref = LUA_NOREF;
}
