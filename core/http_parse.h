/* http_parse.h -- strict HTTP/1.1 request-head parser and chunked-body decoder. Pure functions
 * over caller-owned bytes: no I/O, no allocation, nothing logged. */
#ifndef SL_HTTP_PARSE_H
#define SL_HTTP_PARSE_H

#include "sluice.h"

#define SL_HTTP_MAX_HEADERS 256

/* Per chunk-size line: bytes after the size digits (BWS, ';' and extensions), line end not
 * included. */
#define SL_HTTP_MAX_CHUNK_EXT    4096

/* Trailer fields of a chunked body, their line ends included, the final blank line not. */
#define SL_HTTP_MAX_TRAILER      8192

/* Largest accepted Content-Length: 2^62. */
#define SL_HTTP_MAX_CONTENT_LENGTH  ((int64_t) 1 << 62)

typedef struct {
    sl_str_t  name;
    sl_str_t  value;
} sl_http_header_t;

typedef struct {
    sl_str_t  method;           /* token */
    sl_str_t  target;           /* request-target as sent: origin-form, absolute-form or "*" */
    sl_str_t  path;             /* target up to '?'; absolute-form: its path, "/" if empty */
    sl_str_t  query;            /* after '?', without it; len 0 if none */
    sl_str_t  authority;        /* absolute-form only: host[:port] from the target, else len 0 */
    int       version;          /* 10 or 11 */
    sl_http_header_t headers[SL_HTTP_MAX_HEADERS];
    size_t    nheaders;
    int64_t   content_length;   /* -1 when absent */
    sl_str_t  host;             /* Host header value (len 0 if absent) */
    unsigned  chunked:1;        /* Transfer-Encoding is chunked */
    unsigned  keepalive:1;      /* HTTP/1.1 unless "Connection: close"; HTTP/1.0 only with
                                 * "Connection: keep-alive" */
    unsigned  expect_continue:1;/* "Expect: 100-continue" (case-insensitive) */
} sl_http_head_t;

typedef struct {
    size_t  max_line;           /* request-line bytes without its line end; beyond -> 414 */
    size_t  max_head;           /* whole head bytes, blank line included; beyond -> 431 */
} sl_http_limits_t;

/* Parses the request head in buf[0..len). Stateless: when more bytes arrive the caller calls
 * again from the start of the head (the same buf, longer len).
 *
 * Returns SL_OK when the head is complete: *head_len = bytes up to and including the blank
 * line; bytes after it (a body, a pipelined request) are not looked at.
 * Returns SL_AGAIN when more bytes are needed and no limit is exceeded yet; *h is then
 * incomplete and must not be used.
 * Returns SL_ERROR with *status 400, 414, 431, 501 or 505 and *err a static lowercase message.
 *
 * Errors depend only on the bytes seen so far, so feeding a head in pieces ends with the same
 * result as parsing it whole. An incomplete head with len >= max_head is 431 at once (it can
 * only end past the limit), so a caller reading into a buffer of max_head bytes always gets a
 * verdict before the buffer is full. Empty lines before the request line are skipped (at most
 * max_line bytes of them) and count towards head_len and max_head.
 *
 * All sl_str_t in *h point into buf, except path "/" for an absolute-form target without a
 * path (a static string). Limits must be > 0 and < SIZE_MAX / 2. */
int sl_http_parse_head(const char *buf, size_t len, const sl_http_limits_t *lim,
    sl_http_head_t *h, size_t *head_len, int *status, const char **err);

/* First header named `name` (case-insensitive, len bytes), or NULL. */
const sl_http_header_t *sl_http_head_find(const sl_http_head_t *h, const char *name,
    size_t len);

typedef struct {
    int       state;
    unsigned  ndigits;          /* hex digits seen in the current size line */
    uint64_t  size;             /* chunk size being read */
    uint64_t  remaining;        /* data bytes left in the current chunk */
    size_t    ext_bytes;        /* bytes after the size digits in the current size line */
    size_t    trailer_bytes;    /* bytes of the trailer section so far */
    const char *err;            /* set once the decoder failed; later calls fail again */
} sl_http_chunked_t;

void sl_http_chunked_init(sl_http_chunked_t *c);

/* Incremental chunked-body decoder. Consumes bytes from buf[0..len): *consumed = bytes eaten.
 * A call yields at most ONE span of body bytes, buf[*data_off .. *data_off + *data_len); it
 * returns right after that span, so a span always comes with SL_AGAIN. Without body bytes
 * *data_len = 0 (and *data_off = 0).
 *
 * Returns SL_OK when the last chunk and the trailer section are complete: *consumed stops
 * right after the final line end, so pipelined bytes stay in buf. Later calls return SL_OK
 * consuming nothing.
 * Returns SL_AGAIN when it needs more input (everything was consumed) or has more to give
 * (*consumed < len: call again with the rest). Every SL_AGAIN call with len > 0 consumes
 * at least one byte.
 * Returns SL_ERROR on bad framing with *err a static lowercase message (a 400); the decoder
 * stays failed. */
int sl_http_chunked_parse(sl_http_chunked_t *c, const char *buf, size_t len, size_t *consumed,
    size_t *data_off, size_t *data_len, const char **err);

#endif
