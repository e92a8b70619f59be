/* tls.h -- OpenSSL server context for "ip:port ssl" listeners: certificates come from the
 * ssls resources (cert, key, snis) and are chosen by SNI. */
#ifndef SL_TLS_H
#define SL_TLS_H

#include "sluice.h"

/* A new SSL object for an accepted connection, or NULL (logged). arg is unused. The caller
 * owns it (bufferevent_openssl frees it with the connection). */
void *sl_tls_new_server_ssl(void *arg);

/* Creates the worker's server context: TLS 1.2+, modern ciphers, ALPN http/1.1, and the
 * servername callback that picks the certificate. Idempotent. Returns SL_OK or SL_ERROR
 * with a static *err. */
int sl_tls_init(const char **err);

/* Frees the context and every cached certificate (worker exit; tests). */
void sl_tls_cleanup(void);

#endif
