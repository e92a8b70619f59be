/* http_parse_fuzz.c -- libFuzzer target for core/http_parse.c. The input is parsed as a request
 * head (under roomy and under tiny limits) and as a chunked body, whole and cut into pieces
 * at pseudo-random points. Besides memory errors (ASan/UBSan) it checks the contracts:
 * results and spans stay inside the input, every prefix of the input gives SL_AGAIN or the
 * verdict of the whole, and the chunked decoder yields the same body however it is fed.
 * Build and run: see t/fuzz/README. */
#include <stdio.h>
#include <stdlib.h>

#include "sluice.h"
#include "http_parse.h"

#define CHECK(cond)                                                                         \
    do {                                                                                    \
        if (!(cond)) {                                                                      \
            fprintf(stderr, "check failed: %s (line %d)\n", #cond, __LINE__);              \
            abort();                                                                        \
        }                                                                                   \
    } while (0)

typedef struct {
    int          rc;
    int          status;
    const char  *err;
    size_t       head_len;
} result_t;

static sl_http_head_t  head, head2;
static uint64_t        rng;


static uint64_t
next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}


static int
in_buf(sl_str_t s, const char *buf, size_t len)
{
    return s.data != NULL && s.data >= buf && s.len <= len && s.data + s.len <= buf + len;
}


/* Parses an exact-size heap copy of data[0..len) so over-reads hit the redzone. */
static result_t
parse_copy(const uint8_t *data, size_t len, const sl_http_limits_t *lim, sl_http_head_t *h,
    char **copy)
{
    result_t  r;

    *copy = malloc(len ? len : 1);
    memcpy(*copy, data, len);
    r.status = 0;
    r.err = NULL;
    r.head_len = 0;
    r.rc = sl_http_parse_head(*copy, len, lim, h, &r.head_len, &r.status, &r.err);
    return r;
}


static void
check_head(const result_t *r, const sl_http_head_t *h, const char *buf, size_t len,
    const sl_http_limits_t *lim)
{
    size_t  i, hl;

    if (r->rc == SL_ERROR) {
        CHECK(r->status == 400 || r->status == 414 || r->status == 431 || r->status == 501
              || r->status == 505);
        CHECK(r->err != NULL && r->err[0] >= 'a' && r->err[0] <= 'z');
        return;
    }

    if (r->rc == SL_AGAIN) {
        CHECK(len < lim->max_head);
        return;
    }

    CHECK(r->rc == SL_OK);
    hl = r->head_len;
    CHECK(hl > 0 && hl <= len && hl <= lim->max_head);
    CHECK(buf[hl - 1] == '\n');
    CHECK(h->version == 10 || h->version == 11);
    CHECK(in_buf(h->method, buf, hl) && h->method.len > 0);
    CHECK(in_buf(h->target, buf, hl) && h->target.len > 0);
    CHECK(h->target.len <= lim->max_line);
    CHECK(in_buf(h->path, buf, hl) || (h->path.len == 1 && h->path.data[0] == '/'));
    CHECK(h->query.len == 0 || in_buf(h->query, buf, hl));
    CHECK(h->authority.len == 0 || in_buf(h->authority, buf, hl));
    CHECK(h->host.len == 0 || in_buf(h->host, buf, hl));
    CHECK(h->nheaders <= SL_HTTP_MAX_HEADERS);
    for (i = 0; i < h->nheaders; i++) {
        CHECK(in_buf(h->headers[i].name, buf, hl) && h->headers[i].name.len > 0);
        CHECK(h->headers[i].value.len == 0 || in_buf(h->headers[i].value, buf, hl));
        CHECK(memchr(h->headers[i].value.data, '\r', h->headers[i].value.len) == NULL);
        CHECK(memchr(h->headers[i].value.data, '\n', h->headers[i].value.len) == NULL);
        CHECK(memchr(h->headers[i].value.data, '\0', h->headers[i].value.len) == NULL);
    }
    CHECK(h->content_length >= -1 && h->content_length <= SL_HTTP_MAX_CONTENT_LENGTH);
    CHECK(!(h->chunked && h->content_length >= 0));
    CHECK(!(h->chunked && h->version == 10));
    CHECK(h->version == 10 || sl_http_head_find(h, "host", 4) != NULL);
}


/* The head under one set of limits: whole, then prefixes. */
static void
fuzz_head(const uint8_t *data, size_t len, const sl_http_limits_t *lim)
{
    result_t  full, r;
    char     *copy, *copy2;
    size_t    k, i, n;

    full = parse_copy(data, len, lim, &head, &copy);
    check_head(&full, &head, copy, len, lim);

    n = len < 16 ? len : 12;
    for (i = 0; i <= n; i++) {
        if (len < 16) {
            k = i;
        } else if (i == 0 && full.rc == SL_OK) {
            k = full.head_len - 1;
        } else if (i == 1) {
            k = len - 1;
        } else {
            k = next_rand() % (len + 1);
        }

        r = parse_copy(data, k, lim, &head2, &copy2);
        check_head(&r, &head2, copy2, k, lim);

        if (full.rc == SL_OK) {
            if (k < full.head_len) {
                CHECK(r.rc == SL_AGAIN);
            } else {
                CHECK(r.rc == SL_OK && r.head_len == full.head_len);
                CHECK(head2.nheaders == head.nheaders && head2.version == head.version);
                CHECK(head2.method.data - copy2 == head.method.data - copy);
                CHECK(head2.target.len == head.target.len);
                CHECK(head2.content_length == head.content_length);
                CHECK(head2.chunked == head.chunked && head2.keepalive == head.keepalive);
            }

        } else if (full.rc == SL_ERROR) {
            CHECK(r.rc == SL_AGAIN || (r.rc == SL_ERROR && r.status == full.status));

        } else {
            CHECK(r.rc == SL_AGAIN);
        }
        free(copy2);
    }

    free(copy);
}


typedef struct {
    int      rc;
    uint8_t *body;
    size_t   body_len;
    size_t   consumed;
} dechunk_t;


/* Feeds data[0..len) to a fresh decoder in pieces (ncuts random cut points). */
static void
dechunk(const uint8_t *data, size_t len, size_t ncuts, dechunk_t *d)
{
    sl_http_chunked_t  c;
    size_t             from, to, pos, used, off, dl, i, plen;
    char              *piece;
    const char        *err;

    sl_http_chunked_init(&c);
    d->rc = SL_AGAIN;
    d->body = malloc(len ? len : 1);
    d->body_len = 0;
    d->consumed = 0;

    from = 0;
    for (i = 0; i <= ncuts && d->rc == SL_AGAIN; i++) {
        to = i < ncuts ? from + next_rand() % (len - from + 1) : len;
        plen = to - from;
        piece = malloc(plen ? plen : 1);
        memcpy(piece, data + from, plen);
        pos = 0;
        do {
            err = NULL;
            d->rc = sl_http_chunked_parse(&c, piece + pos, plen - pos, &used, &off, &dl, &err);
            CHECK(used <= plen - pos);
            CHECK(dl == 0 || (off <= plen - pos && dl <= plen - pos - off));
            CHECK(dl == 0 || off + dl <= used);
            CHECK(dl == 0 || d->rc == SL_AGAIN);
            CHECK(d->rc != SL_ERROR || err != NULL);
            CHECK(d->rc != SL_AGAIN || plen - pos == 0 || used > 0);
            if (dl) {
                CHECK(d->body_len + dl <= len);
                memcpy(d->body + d->body_len, piece + pos + off, dl);
                d->body_len += dl;
            }
            pos += used;
        } while (d->rc == SL_AGAIN && pos < plen);
        free(piece);
        d->consumed = from + pos;
        from = to;
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sl_http_limits_t  roomy = { 256, 2048 };
    sl_http_limits_t  tiny;
    dechunk_t         whole, cut;
    uint64_t          h;
    size_t            i;

    h = 1469598103934665603ULL;
    for (i = 0; i < size; i++) {
        h = (h ^ data[i]) * 1099511628211ULL;
    }
    rng = h | 1;

    fuzz_head(data, size, &roomy);

    tiny.max_line = 1 + h % 48;
    tiny.max_head = 1 + (h >> 8) % 160;
    fuzz_head(data, size, &tiny);

    dechunk(data, size, 0, &whole);
    CHECK(whole.rc != SL_OK || whole.consumed <= size);
    for (i = 0; i < 3; i++) {
        dechunk(data, size, 1 + i * 3, &cut);
        CHECK(cut.rc == whole.rc);
        CHECK(cut.body_len == whole.body_len);
        CHECK(memcmp(cut.body, whole.body, cut.body_len) == 0);
        CHECK(cut.rc != SL_OK || cut.consumed == whole.consumed);
        free(cut.body);
    }
    free(whole.body);

    return 0;
}
