/* tls.c -- TLS termination. One SSL_CTX per worker; the certificate for a handshake is
 * picked in the client-hello callback by asking Lua (sluice.tls.lookup) for the ssls
 * resource matching the SNI, and cached per certificate. */
#include "tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

static SSL_CTX  *server_ctx;


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
