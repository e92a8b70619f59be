/* upstream_resp.h -- the response-head parser of the native HTTP/1.1 upstream client. */
#ifndef SL_UPSTREAM_RESP_H
#define SL_UPSTREAM_RESP_H

#include "http_parse.h"

#define SL_UP_MAX_HEADERS  128

typedef struct {
    int               version;          /* 10 or 11 */
    int               status;
    sl_http_header_t  headers[SL_UP_MAX_HEADERS];
    size_t            nheaders;
    int64_t           content_length;   /* -1: none (or overridden by Transfer-Encoding) */
    unsigned          chunked:1;        /* Transfer-Encoding ends in chunked */
    unsigned          other_te:1;       /* another transfer coding: the body ends at close */
    unsigned          keepalive:1;      /* the connection may carry another request */
} sl_up_resp_t;

/* Parses the response head in buf[0..len), stateless like sl_http_parse_head: call again from
 * the start when more bytes came. SL_OK: *head_len = bytes up to and including the blank
 * line, the sl_str_t in *h point into buf. SL_AGAIN: need more (and len < max). SL_ERROR:
 * *err a static message ("upstream sent ..."). Heads longer than max are an error. */
int sl_up_resp_parse(const char *buf, size_t len, size_t max, sl_up_resp_t *h,
    size_t *head_len, const char **err);

/* First header of that name (case-insensitive, lowercase literal), or NULL. */
const sl_http_header_t *sl_up_resp_find(const sl_up_resp_t *h, const char *name, size_t len);

#endif
