/* headers.h -- a mutable list of HTTP header fields whose memory comes from a pool. Used for
 * the request headers plugins edit and for the response headers sent to the client. */
#ifndef SL_HEADERS_H
#define SL_HEADERS_H

#include "pool.h"

typedef struct {
    sl_str_t  name;
    sl_str_t  value;
} sl_hdr_t;

typedef struct {
    sl_hdr_t   *items;
    size_t      n;          /* includes removed entries (name.len == 0) */
    size_t      cap;
    sl_pool_t  *pool;
} sl_hdrs_t;

void sl_hdrs_init(sl_hdrs_t *h, sl_pool_t *pool, size_t cap);

/* Appends; name and value must outlive the list (pool memory or static). */
void sl_hdrs_add(sl_hdrs_t *h, const char *name, size_t nlen, const char *value, size_t vlen);

/* Copies name and value into the pool, replaces every field of that name with one (or, when
 * value is NULL, removes them all). */
void sl_hdrs_set(sl_hdrs_t *h, const char *name, size_t nlen, const char *value, size_t vlen);

/* First live field of that name (case-insensitive), or NULL. */
const sl_hdr_t *sl_hdrs_find(const sl_hdrs_t *h, const char *name, size_t nlen);

/* A set of lowercase header names and name prefixes, made once (http.header_set in
 * lua_http.c) and matched against a list many times: what a response filter removes. */
#define SL_HDR_SET_MAX  40

typedef struct {
    const char     *s;
    unsigned short  len;
    unsigned char   prefix;         /* matches every name that starts with s */
    unsigned char   first;          /* s[0] | 0x20, a cheap first test */
} sl_hdr_set_entry_t;

typedef struct {
    size_t              n;
    sl_hdr_set_entry_t  e[SL_HDR_SET_MAX];
    unsigned char       lo[32], hi[32];     /* entries [lo, hi) of first & 31 (sl_hdr_set_index) */
} sl_hdr_set_t;

/* Orders the entries by first byte and indexes them by it; call once the entries are in. */
void sl_hdr_set_index(sl_hdr_set_t *set);

/* Removes every live field whose name (case-insensitively) is a name of the set or starts
 * with one of its prefixes; returns how many. */
size_t sl_hdrs_remove_set(sl_hdrs_t *h, const sl_hdr_set_t *set);

/* Case-insensitive comparison of a header name with a lowercase literal. */
int sl_hdr_is(const sl_str_t *name, const char *lower, size_t len);

#endif
