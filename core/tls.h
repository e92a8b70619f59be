/* tls.h -- OpenSSL server contexts for "ip:port ssl" listeners: certificates come from the
 * ssls resources (cert, key, snis) and are chosen by SNI. */
#ifndef SL_TLS_H
#define SL_TLS_H

#include "sluice.h"

/* A new SSL object for an accepted connection, or NULL (logged). arg is unused. */
void *sl_tls_new_server_ssl(void *arg);

/* Creates the worker's server context (TLS 1.2+, modern ciphers, ALPN http/1.1). */
int sl_tls_init(const char **err);

#endif
