/* http_parse.c -- strict HTTP/1.1 request-head parser and chunked-body decoder; pure, no I/O.
 *
 * Strictness is the point: a gateway that accepts what the upstream or a cache in front of it
 * reads differently invites request smuggling. So framing is unambiguous or rejected: one
 * Content-Length value or "chunked" alone, never both; no obs-fold, no bare CR, no whitespace
 * before ':', no control characters in values, no HTTP/1.0 with Transfer-Encoding.
 *
 * The head parser is stateless: the caller re-parses from the start of the head when bytes
 * arrive. Heads are small and usually come in one read, so keeping no state is cheaper than
 * resuming; the limits bound the quadratic worst case of a client trickling bytes. Character
 * classes come from one 256-byte table; long runs (targets, header names, values such as API
 * keys and user agents) are skipped 16 bytes at a time with SSE2, 8 with SWAR elsewhere. */
#include "sluice.h"

#include "http_parse.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define C_TOKEN   0x01          /* tchar: header names, methods */
#define C_VALUE   0x02          /* field-value byte: HTAB, SP, VCHAR, obs-text */
#define C_TARGET  0x04          /* request-target byte: VCHAR, obs-text (no SP, CTL, DEL) */
#define C_HEX     0x08
#define C_SCHEME  0x10          /* ALPHA DIGIT + - . */

#define IS_TCHAR(c)                                                                         \
    (((c) >= '0' && (c) <= '9') || ((c) >= 'A' && (c) <= 'Z') || ((c) >= 'a' && (c) <= 'z') \
     || (c) == '!' || (c) == '#' || (c) == '$' || (c) == '%' || (c) == '&' || (c) == '\''    \
     || (c) == '*' || (c) == '+' || (c) == '-' || (c) == '.' || (c) == '^' || (c) == '_'     \
     || (c) == '`' || (c) == '|' || (c) == '~')

#define CT(c)                                                                               \
    ((IS_TCHAR(c) ? C_TOKEN : 0)                                                            \
     | ((c) == '\t' || ((c) >= 0x20 && (c) != 0x7f) ? C_VALUE : 0)                          \
     | ((c) > 0x20 && (c) != 0x7f ? C_TARGET : 0)                                           \
     | (((c) >= '0' && (c) <= '9') || ((c) >= 'a' && (c) <= 'f') || ((c) >= 'A' && (c) <= 'F') \
        ? C_HEX : 0)                                                                        \
     | (((c) >= '0' && (c) <= '9') || ((c) >= 'A' && (c) <= 'Z') || ((c) >= 'a' && (c) <= 'z') \
        || (c) == '+' || (c) == '-' || (c) == '.' ? C_SCHEME : 0))

#define CT4(c)    CT(c), CT((c) + 1), CT((c) + 2), CT((c) + 3)
#define CT16(c)   CT4(c), CT4((c) + 4), CT4((c) + 8), CT4((c) + 12)
#define CT64(c)   CT16(c), CT16((c) + 16), CT16((c) + 32), CT16((c) + 48)

static const uint8_t  ctab[256] = { CT64(0), CT64(64), CT64(128), CT64(192) };

#define LC(c)     ((c) + ((c) >= 'A' && (c) <= 'Z' ? 0x20 : 0))
#define LC4(c)    LC(c), LC((c) + 1), LC((c) + 2), LC((c) + 3)
#define LC16(c)   LC4(c), LC4((c) + 4), LC4((c) + 8), LC4((c) + 12)
#define LC64(c)   LC16(c), LC16((c) + 16), LC16((c) + 32), LC16((c) + 48)

static const uint8_t  lower[256] = { LC64(0), LC64(64), LC64(128), LC64(192) };

#define ONES      0x0101010101010101ULL
#define HIGHS     0x8080808080808080ULL

/* Non-zero when one of the 8 bytes is < n (n <= 0x80); exact when none is. */
#define HAS_LESS(x, n)  (((x) - ONES * (n)) & ~(x) & HIGHS)
#define HAS_ZERO(x)     HAS_LESS(x, 1)

enum {
    ST_SIZE = 0,                /* chunk-size hex digits */
    ST_SIZE_WS,                 /* whitespace after the size: only ';' may follow */
    ST_EXT,                     /* chunk extensions up to the line end */
    ST_SIZE_LF,                 /* CR seen on the size line */
    ST_DATA,
    ST_DATA_CR,                 /* chunk data done: CRLF (or LF) must follow */
    ST_DATA_LF,
    ST_TRAILER,                 /* start of a trailer line, or of the final blank line */
    ST_TRAILER_LINE,
    ST_TRAILER_LF,
    ST_END_LF,                  /* CR of the final blank line seen */
    ST_DONE,
    ST_FAILED,
};

static const char  slash[] = "/";


static inline uint64_t
load8(const u_char *p)
{
    uint64_t  x;

    memcpy(&x, p, sizeof(x));
    return x;
}


/* Skips bytes >= lo except DEL, 16 at a time with SSE2 (part of every x86-64) or 8 at a time
 * with SWAR; stops at or before the first other byte. The caller's table loop finishes. */
static inline const u_char *
skip_vchar(const u_char *p, const u_char *end, u_char lo)
{
    uint64_t  x;
#if defined(__SSE2__)
    __m128i   v, vlo, vdel;
    unsigned  bad;

    vlo = _mm_set1_epi8((char) lo);
    vdel = _mm_set1_epi8(0x7f);
    while (end - p >= 16) {
        v = _mm_loadu_si128((const __m128i *) p);
        bad = ~_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_max_epu8(v, vlo), v))
              | _mm_movemask_epi8(_mm_cmpeq_epi8(v, vdel));
        bad &= 0xffff;
        if (bad) {
            return p + __builtin_ctz(bad);
        }
        p += 16;
    }
#endif

    while (end - p >= 8) {
        x = load8(p);
        if (HAS_LESS(x, lo) | HAS_ZERO(x ^ (ONES * 0x7f))) {
            break;
        }
        p += 8;
    }

    return p;
}


/* Skips the common header-name bytes (ALPHA DIGIT '-') 16 at a time; the table loop after it
 * handles the rest of tchar and finds the ':'. */
static inline const u_char *
skip_name(const u_char *p, const u_char *end)
{
#if defined(__SSE2__)
    __m128i   v, l, m;
    unsigned  bad;

    while (end - p >= 16) {
        v = _mm_loadu_si128((const __m128i *) p);
        l = _mm_or_si128(v, _mm_set1_epi8(0x20));
        /* signed compares: bytes >= 0x80 are negative and fall outside every range */
        m = _mm_and_si128(_mm_cmpgt_epi8(l, _mm_set1_epi8('a' - 1)),
                          _mm_cmplt_epi8(l, _mm_set1_epi8('z' + 1)));
        m = _mm_or_si128(m, _mm_and_si128(_mm_cmpgt_epi8(v, _mm_set1_epi8('0' - 1)),
                                          _mm_cmplt_epi8(v, _mm_set1_epi8('9' + 1))));
        m = _mm_or_si128(m, _mm_cmpeq_epi8(v, _mm_set1_epi8('-')));
        bad = ~_mm_movemask_epi8(m) & 0xffff;
        if (bad) {
            return p + __builtin_ctz(bad);
        }
        p += 16;
    }
#else
    (void) end;
#endif

    return p;
}


/* First byte in [p, end) that cannot be in a field value (CR, LF, other CTLs, DEL). */
static inline const u_char *
scan_value(const u_char *p, const u_char *end)
{
    p = skip_vchar(p, end, 0x20);
    while (p < end && (ctab[*p] & C_VALUE)) {
        p++;
    }

    return p;
}


/* First byte in [p, end) that cannot be in a request-target (SP, CTL, DEL). */
static inline const u_char *
scan_target(const u_char *p, const u_char *end)
{
    p = skip_vchar(p, end, 0x21);
    while (p < end && (ctab[*p] & C_TARGET)) {
        p++;
    }

    return p;
}


/* First byte in [p, end) that is not a tchar. */
static inline const u_char *
scan_name(const u_char *p, const u_char *end)
{
    p = skip_name(p, end);
    while (p < end && (ctab[*p] & C_TOKEN)) {
        p++;
    }

    return p;
}


/* s[0..n) equals the lowercase literal lit (n bytes), ignoring the case of s. */
static inline int
ieq(const u_char *s, size_t n, const char *lit, size_t litlen)
{
    size_t  i;

    if (n != litlen) {
        return 0;
    }

    for (i = 0; i < n; i++) {
        if (lower[s[i]] != (u_char) lit[i]) {
            return 0;
        }
    }

    return 1;
}


static inline int
is_ows(u_char c)
{
    return c == ' ' || c == '\t';
}


/* Content-Length: 1#DIGIT with all list members equal; *cl is -1 or an earlier value. */
static int
parse_content_length(const u_char *p, const u_char *end, int64_t *cl, const char **err)
{
    int64_t  v;
    int      d;

    for (;;) {
        while (p < end && is_ows(*p)) {
            p++;
        }

        if (p == end || *p < '0' || *p > '9') {
            *err = "invalid content-length";
            return SL_ERROR;
        }

        v = 0;
        while (p < end && *p >= '0' && *p <= '9') {
            d = *p++ - '0';
            if (v > (SL_HTTP_MAX_CONTENT_LENGTH - d) / 10) {
                *err = "content-length too large";
                return SL_ERROR;
            }
            v = v * 10 + d;
        }

        while (p < end && is_ows(*p)) {
            p++;
        }

        if (*cl >= 0 && *cl != v) {
            *err = "conflicting content-length values";
            return SL_ERROR;
        }
        *cl = v;

        if (p == end) {
            return SL_OK;
        }

        if (*p != ',') {
            *err = "invalid content-length";
            return SL_ERROR;
        }
        p++;
    }
}


/* Connection: a comma list of tokens; only "close" and "keep-alive" matter here. */
static void
parse_connection(const u_char *p, const u_char *end, unsigned *close, unsigned *keep)
{
    const u_char  *t;

    while (p < end) {
        while (p < end && (is_ows(*p) || *p == ',')) {
            p++;
        }

        t = p;
        while (p < end && *p != ',' && !is_ows(*p)) {
            p++;
        }

        if (ieq(t, p - t, "close", 5)) {
            *close = 1;

        } else if (ieq(t, p - t, "keep-alive", 10)) {
            *keep = 1;
        }
    }
}


/* Splits h->target into path, query and (absolute-form) authority. */
static int
parse_target(sl_http_head_t *h, const char **err)
{
    const u_char  *t, *end, *p, *q;

    t = (const u_char *) h->target.data;
    end = t + h->target.len;

    if (*t == '/') {
        p = t;

    } else if (h->target.len == 1 && *t == '*') {
        /* asterisk-form is for OPTIONS only (RFC 9112 3.2.4) */
        if (!(h->method.len == 7 && memcmp(h->method.data, "OPTIONS", 7) == 0)) {
            *err = "invalid request target";
            return SL_ERROR;
        }
        h->path = h->target;
        h->query.data = h->target.data + 1;
        h->query.len = 0;
        return SL_OK;

    } else {
        /* absolute-form: scheme "://" authority [path] ["?" query] */
        p = t;
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z'))) {
            goto invalid;
        }
        while (p < end && (ctab[*p] & C_SCHEME)) {
            p++;
        }
        if (end - p < 3 || p[0] != ':' || p[1] != '/' || p[2] != '/') {
            goto invalid;
        }
        p += 3;

        q = p;
        while (p < end && *p != '/' && *p != '?') {
            p++;
        }
        if (p == q) {
            goto invalid;
        }
        h->authority.data = (const char *) q;
        h->authority.len = p - q;
    }

    q = memchr(p, '?', end - p);
    if (q == NULL) {
        q = end;
        h->query.data = (const char *) end;
        h->query.len = 0;

    } else {
        h->query.data = (const char *) q + 1;
        h->query.len = end - q - 1;
    }

    if (q == p) {
        /* absolute-form without a path ("http://host" or "http://host?x") */
        h->path.data = slash;
        h->path.len = 1;

    } else {
        h->path.data = (const char *) p;
        h->path.len = q - p;
    }

    return SL_OK;

invalid:

    *err = "invalid request target";
    return SL_ERROR;
}


/* The request line in [p, le), line end excluded; p is at the method. */
static int
parse_request_line(sl_http_head_t *h, const u_char *p, const u_char *le, int *status,
    const char **err)
{
    const u_char  *line, *s;
    uint64_t       v;

    line = p;
    s = p;
    while (p < le && (ctab[*p] & C_TOKEN)) {
        p++;
    }
    if (p == s || p == le || *p != ' ') {
        *err = "invalid method";
        goto failed;
    }
    h->method.data = (const char *) s;
    h->method.len = p - s;

    s = ++p;
    p = scan_target(p, le);
    if (p == s) {
        *err = "invalid request target";
        goto failed;
    }
    if (p == le) {
        *err = "missing http version";
        goto failed;
    }
    if (*p != ' ') {
        *err = "invalid character in request target";
        goto failed;
    }
    h->target.data = (const char *) s;
    h->target.len = p - s;
    p++;

    if (le - p != 8) {
        *err = "invalid http version";
        goto failed;
    }

    v = load8(p);
    if (memcmp(&v, "HTTP/1.1", 8) == 0) {
        h->version = 11;

    } else if (memcmp(&v, "HTTP/1.0", 8) == 0) {
        h->version = 10;

    } else if (memcmp(p, "HTTP/", 5) == 0 && p[5] >= '0' && p[5] <= '9' && p[6] == '.'
               && p[7] >= '0' && p[7] <= '9')
    {
        *status = 505;
        *err = "http version not supported";
        return SL_ERROR;

    } else {
        *err = "invalid http version";
        goto failed;
    }

    if (parse_target(h, err) != SL_OK) {
        *status = 400;
        return SL_ERROR;
    }

    return SL_OK;

failed:

    *status = 400;
    /* a lone CR is the likelier story than the character class that tripped over it */
    if (memchr(line, '\r', le - line) != NULL) {
        *err = "bare cr in request line";
    }
    return SL_ERROR;
}


/* Host: a reg-name or IPv4 address, or an [IPv6] literal, then an optional :port. No '/',
 * '\\', '@' or "..": they would let a Host value steer paths or confuse a host match. */
static int
valid_host(const char *p, size_t len)
{
    size_t  i = 0;
    int     dot = 0;

    if (len > 0 && p[0] == '[') {
        for (i = 1; i < len && p[i] != ']'; i++) {
            unsigned char  c = (unsigned char) p[i];
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
                  || c == ':' || c == '.'))
            {
                return 0;
            }
        }

        if (i == len) {
            return 0;               /* no closing bracket */
        }

        i++;

    } else {
        for (; i < len && p[i] != ':'; i++) {
            unsigned char  c = (unsigned char) p[i];

            if (c == '.') {
                if (dot) {
                    return 0;
                }

                dot = 1;
                continue;
            }

            dot = 0;
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
                  || c == '-' || c == '_' || c == '~' || c == '%' || c == '!' || c == '$'
                  || c == '&' || c == '\'' || c == '(' || c == ')' || c == '*' || c == '+'
                  || c == ',' || c == ';' || c == '=' || c >= 0x80))
            {
                return 0;
            }
        }
    }

    if (i == len) {
        return 1;
    }

    if (p[i] != ':') {
        return 0;
    }

    for (i++; i < len; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return 0;
        }
    }

    return 1;
}


int
sl_http_parse_head(const char *buf, size_t len, const sl_http_limits_t *lim,
    sl_http_head_t *h, size_t *head_len, int *status, const char **err)
{
    const u_char  *start, *p, *end, *lf, *le, *name, *val, *ve;
    size_t         avail, n, name_len;
    unsigned       host_n, te_n, te_bad, cl_seen, conn_close, conn_keep;
    sl_http_header_t  *hd;

    /* Bytes past max_head are never looked at, so every verdict depends only on what lies
     * within the limit and a prefix of the input gives SL_AGAIN or the verdict of the whole. */
    start = (const u_char *) buf;
    end = start + sl_min(len, lim->max_head);

    /* Empty lines before the request line: RFC 9112 2.2 says skip at least one. */
    p = start;
    while (p < end && (*p == '\r' || *p == '\n')) {
        if (*p == '\r') {
            if (p + 1 == end) {
                break;
            }
            if (p[1] != '\n') {
                goto bare_cr;
            }
            p++;
        }
        p++;
    }
    if ((size_t) (p - start) > lim->max_line) {
        *err = "too many empty lines before the request line";
        goto invalid;
    }

    /* The request line: its LF must come within max_line + 2 bytes (line and CRLF). */
    avail = end - p;
    n = sl_min(avail, lim->max_line + 2);
    lf = memchr(p, '\n', n);
    if (lf == NULL) {
        if (n == lim->max_line + 2 || (avail == lim->max_line + 1 && p[avail - 1] != '\r')) {
            *status = 414;
            *err = "request line too long";
            return SL_ERROR;
        }
        goto again;
    }

    le = lf;
    if (le > p && le[-1] == '\r') {
        le--;
    }
    if ((size_t) (le - p) > lim->max_line) {
        *status = 414;
        *err = "request line too long";
        return SL_ERROR;
    }
    h->authority.data = NULL;
    h->authority.len = 0;
    if (parse_request_line(h, p, le, status, err) != SL_OK) {
        return SL_ERROR;
    }

    h->nheaders = 0;
    h->content_length = -1;
    h->host.data = NULL;
    h->host.len = 0;
    h->chunked = 0;
    h->keepalive = 0;
    h->expect_continue = 0;

    host_n = 0;
    te_n = 0;
    te_bad = 0;
    cl_seen = 0;
    conn_close = 0;
    conn_keep = 0;

    p = lf + 1;

    for (;;) {
        if (p >= end) {
            goto again;
        }

        if (*p == '\n') {
            p++;
            break;
        }

        if (*p == '\r') {
            if (p + 1 >= end) {
                goto again;
            }
            if (p[1] != '\n') {
                goto bare_cr;
            }
            p += 2;
            break;
        }

        if (is_ows(*p)) {
            *err = "obsolete line folding";
            goto invalid;
        }

        if (h->nheaders == SL_HTTP_MAX_HEADERS) {
            *status = 431;
            *err = "too many headers";
            return SL_ERROR;
        }

        name = p;
        p = scan_name(p, end);
        if (p >= end) {
            goto again;
        }
        if (*p != ':' || p == name) {
            *err = "invalid header name";
            goto invalid;
        }
        name_len = p - name;
        p++;

        while (p < end && is_ows(*p)) {
            p++;
        }
        val = p;
        p = scan_value(p, end);
        if (p >= end) {
            goto again;
        }

        ve = p;
        if (*p == '\n') {
            p++;

        } else if (*p == '\r') {
            if (p + 1 >= end) {
                goto again;
            }
            if (p[1] != '\n') {
                goto bare_cr;
            }
            p += 2;

        } else {
            *err = "invalid character in header value";
            goto invalid;
        }

        while (ve > val && is_ows(ve[-1])) {
            ve--;
        }

        hd = &h->headers[h->nheaders++];
        hd->name.data = (const char *) name;
        hd->name.len = name_len;
        hd->value.data = (const char *) val;
        hd->value.len = ve - val;

        /* the headers that change framing or connection handling; dispatch on length first */
        switch (name_len) {

        case 4:
            if (ieq(name, 4, "host", 4)) {
                host_n++;
                h->host = hd->value;
            }
            break;

        case 6:
            if (ieq(name, 6, "expect", 6) && ieq(val, ve - val, "100-continue", 12)) {
                h->expect_continue = 1;
            }
            break;

        case 10:
            if (ieq(name, 10, "connection", 10)) {
                parse_connection(val, ve, &conn_close, &conn_keep);
            }
            break;

        case 14:
            if (ieq(name, 14, "content-length", 14)) {
                cl_seen = 1;
                if (parse_content_length(val, ve, &h->content_length, err) != SL_OK) {
                    goto invalid;
                }
            }
            break;

        case 17:
            if (ieq(name, 17, "transfer-encoding", 17)) {
                te_n++;
                if (!ieq(val, ve - val, "chunked", 7)) {
                    te_bad = 1;
                }
            }
            break;

        default:
            break;
        }
    }

    if (te_n) {
        if (cl_seen) {
            *err = "both content-length and transfer-encoding";
            goto invalid;
        }
        if (h->version == 10) {
            *err = "transfer-encoding in http/1.0";
            goto invalid;
        }
        if (te_bad || te_n > 1) {
            /* "chunked" repeated is "chunked, chunked": a coding applied twice */
            *status = 501;
            *err = "unsupported transfer-encoding";
            return SL_ERROR;
        }
        h->chunked = 1;
    }

    if (host_n > 1) {
        *err = "more than one host header";
        goto invalid;
    }
    if (host_n == 0 && h->version == 11) {
        *err = "missing host header";
        goto invalid;
    }
    if (host_n == 1 && !valid_host(h->host.data, h->host.len)) {
        *err = "invalid host header";
        goto invalid;
    }

    h->keepalive = h->version == 11 ? !conn_close : (conn_keep && !conn_close);

    *head_len = p - start;
    return SL_OK;

again:

    if (len >= lim->max_head) {
        goto too_large;
    }
    return SL_AGAIN;

too_large:

    *status = 431;
    *err = "request header too large";
    return SL_ERROR;

bare_cr:

    *err = "bare cr";

invalid:

    *status = 400;
    return SL_ERROR;
}


const sl_http_header_t *
sl_http_head_find(const sl_http_head_t *h, const char *name, size_t len)
{
    size_t                   i, j;
    const sl_http_header_t  *hd;

    for (i = 0; i < h->nheaders; i++) {
        hd = &h->headers[i];
        if (hd->name.len != len) {
            continue;
        }
        for (j = 0; j < len; j++) {
            if (lower[(u_char) hd->name.data[j]] != lower[(u_char) name[j]]) {
                break;
            }
        }
        if (j == len) {
            return hd;
        }
    }

    return NULL;
}


void
sl_http_chunked_init(sl_http_chunked_t *c)
{
    memset(c, 0, sizeof(*c));
    c->state = ST_SIZE;
}


int
sl_http_chunked_parse(sl_http_chunked_t *c, const char *buf, size_t len, size_t *consumed,
    size_t *data_off, size_t *data_len, const char **err)
{
    const u_char  *p, *end;
    u_char         ch;
    size_t         n;

    p = (const u_char *) buf;
    end = p + len;
    *data_off = 0;
    *data_len = 0;

    if (c->state == ST_FAILED) {
        *consumed = 0;
        *err = c->err;
        return SL_ERROR;
    }

    while (p < end) {
        ch = *p;

        switch (c->state) {

        case ST_SIZE:
            if (ctab[ch] & C_HEX) {
                if (++c->ndigits > 16) {
                    c->err = "chunk size too large";
                    goto failed;
                }
                c->size = (c->size << 4) | (ch <= '9' ? ch - '0' : (lower[ch] - 'a' + 10));
                break;
            }
            if (c->ndigits == 0) {
                c->err = "invalid chunk size";
                goto failed;
            }
            if (ch == ';') {
                c->state = ST_EXT;
                c->ext_bytes = 1;
            } else if (ch == '\r') {
                c->state = ST_SIZE_LF;
            } else if (ch == '\n') {
                goto size_line_done;
            } else if (is_ows(ch)) {
                c->state = ST_SIZE_WS;
                c->ext_bytes = 1;
            } else {
                c->err = "invalid chunk size";
                goto failed;
            }
            break;

        case ST_SIZE_WS:
            /* BWS is allowed before ';' only (RFC 9112 7.1.1); it counts as extension */
            if (ch == ';') {
                c->state = ST_EXT;
            } else if (!is_ows(ch)) {
                c->err = "invalid chunk size";
                goto failed;
            }
            if (++c->ext_bytes > SL_HTTP_MAX_CHUNK_EXT) {
                c->err = "chunk extensions too long";
                goto failed;
            }
            break;

        case ST_EXT:
            if (ch == '\r') {
                c->state = ST_SIZE_LF;
                break;
            }
            if (ch == '\n') {
                goto size_line_done;
            }
            if (!(ctab[ch] & C_VALUE)) {
                c->err = "invalid chunk extension";
                goto failed;
            }
            if (++c->ext_bytes > SL_HTTP_MAX_CHUNK_EXT) {
                c->err = "chunk extensions too long";
                goto failed;
            }
            break;

        case ST_SIZE_LF:
            if (ch != '\n') {
                c->err = "bare cr in chunk size line";
                goto failed;
            }
            goto size_line_done;

        case ST_DATA:
            n = sl_min((uint64_t) (end - p), c->remaining);
            c->remaining -= n;
            if (c->remaining == 0) {
                c->state = ST_DATA_CR;
            }
            *data_off = p - (const u_char *) buf;
            *data_len = n;
            *consumed = *data_off + n;
            return SL_AGAIN;

        case ST_DATA_CR:
            if (ch == '\r') {
                c->state = ST_DATA_LF;
            } else if (ch == '\n') {
                c->state = ST_SIZE;
            } else {
                c->err = "missing crlf after chunk data";
                goto failed;
            }
            break;

        case ST_DATA_LF:
            if (ch != '\n') {
                c->err = "missing crlf after chunk data";
                goto failed;
            }
            c->state = ST_SIZE;
            break;

        case ST_TRAILER:
            if (ch == '\r') {
                c->state = ST_END_LF;
                break;
            }
            if (ch == '\n') {
                p++;
                goto done;
            }
            c->state = ST_TRAILER_LINE;
            __attribute__((fallthrough));   /* the byte belongs to the trailer line */

        case ST_TRAILER_LINE:
            if (++c->trailer_bytes > SL_HTTP_MAX_TRAILER) {
                c->err = "chunked trailer too large";
                goto failed;
            }
            if (ch == '\r') {
                c->state = ST_TRAILER_LF;
            } else if (ch == '\n') {
                c->state = ST_TRAILER;
            } else if (!(ctab[ch] & C_VALUE)) {
                c->err = "invalid character in chunked trailer";
                goto failed;
            }
            break;

        case ST_TRAILER_LF:
            if (ch != '\n') {
                c->err = "bare cr in chunked trailer";
                goto failed;
            }
            if (++c->trailer_bytes > SL_HTTP_MAX_TRAILER) {
                c->err = "chunked trailer too large";
                goto failed;
            }
            c->state = ST_TRAILER;
            break;

        case ST_END_LF:
            if (ch != '\n') {
                c->err = "bare cr in chunked trailer";
                goto failed;
            }
            p++;
            goto done;

        case ST_DONE:
            *consumed = p - (const u_char *) buf;
            return SL_OK;

        default:
            c->err = "chunked decoder in a bad state";
            goto failed;
        }

        p++;
        continue;

    size_line_done:

        p++;
        if (c->size == 0) {
            c->state = ST_TRAILER;
        } else {
            c->state = ST_DATA;
            c->remaining = c->size;
        }
        c->size = 0;
        c->ndigits = 0;
        c->ext_bytes = 0;
    }

    *consumed = len;
    return c->state == ST_DONE ? SL_OK : SL_AGAIN;

done:

    c->state = ST_DONE;
    *consumed = p - (const u_char *) buf;
    return SL_OK;

failed:

    c->state = ST_FAILED;
    *consumed = p - (const u_char *) buf;
    *err = c->err;
    return SL_ERROR;
}
