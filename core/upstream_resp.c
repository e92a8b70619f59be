/* upstream_resp.c -- the response-head parser of the native HTTP/1.1 upstream client; pure,
 * no I/O, no allocation.
 *
 * An upstream is trusted more than a client, but its framing still decides where one response
 * ends and the next begins on a pooled connection, so ambiguity is refused: differing
 * Content-Length values, a length that is not digits, obs-fold, control characters. Lines may
 * end in CRLF or a bare LF (what servers send in the wild, what nginx accepts); a bare CR is
 * an error. Transfer-Encoding wins over Content-Length (RFC 9112 6.3), and then the
 * connection is not reused. */
#include "upstream_resp.h"

#include <strings.h>


#define TCHAR  0x01         /* a header-name byte */
#define CTL    0x02         /* not allowed in a value or reason: CTL (but HTAB), DEL */

#define IS_TCHAR(c)                                                                         \
    (((c) >= '0' && (c) <= '9') || ((c) >= 'A' && (c) <= 'Z') || ((c) >= 'a' && (c) <= 'z') \
     || (c) == '!' || (c) == '#' || (c) == '$' || (c) == '%' || (c) == '&' || (c) == '\''    \
     || (c) == '*' || (c) == '+' || (c) == '-' || (c) == '.' || (c) == '^' || (c) == '_'     \
     || (c) == '`' || (c) == '|' || (c) == '~')
#define CC(c)    ((IS_TCHAR(c) ? TCHAR : 0) | (((c) < 0x20 && (c) != '\t') || (c) == 0x7f ? CTL : 0))
#define CC4(c)   CC(c), CC((c) + 1), CC((c) + 2), CC((c) + 3)
#define CC16(c)  CC4(c), CC4((c) + 4), CC4((c) + 8), CC4((c) + 12)
#define CC64(c)  CC16(c), CC16((c) + 16), CC16((c) + 32), CC16((c) + 48)

static const unsigned char  cls[256] = { CC64(0), CC64(64), CC64(128), CC64(192) };


/* one line of buf[p..end): *le = its end (the CR of a CRLF, or the LF), returns the position
 * after the LF, or NULL when no LF yet. A CR elsewhere is a control character, refused by
 * the checks of names and values. */
static const char *
next_line(const char *p, const char *end, const char **le)
{
    const char  *lf = memchr(p, '\n', (size_t) (end - p));

    if (lf == NULL) {
        return NULL;
    }

    *le = (lf > p && lf[-1] == '\r') ? lf - 1 : lf;
    return lf + 1;
}


#define ONES   0x0101010101010101ULL
#define HIGHS  0x8080808080808080ULL

/* a byte < 0x20 or == 0x7f among the 8 (HTAB among them needs the byte loop to tell) */
#define SUSPECT(x)  ((((x) - ONES * 0x20) & ~(x) & HIGHS)                                   \
                     | ((((x) ^ (ONES * 0x7f)) - ONES) & ~((x) ^ (ONES * 0x7f)) & HIGHS))


static int
has_ctl(const char *p, const char *end)
{
    uint64_t  x;

    /* values (dates, ids, types) are skipped 8 bytes at a time */
    while (end - p >= 8) {
        memcpy(&x, p, 8);
        if (SUSPECT(x)) {
            break;
        }

        p += 8;
    }

    for (; p < end; p++) {
        if (cls[(unsigned char) *p] & CTL) {
            return 1;
        }
    }

    return 0;
}


static int
name_is(const sl_str_t *n, const char *lower, size_t len)
{
    return n->len == len && strncasecmp(n->data, lower, len) == 0;
}


/* the comma-separated tokens of a value: is `tok` one of them (case-insensitive)? is it the
 * last one? */
static int
has_token(const sl_str_t *v, const char *tok, size_t len, int *last)
{
    const char  *p = v->data, *end = p + v->len, *s, *e;
    int          found = 0;

    *last = 0;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ',')) {
            p++;
        }

        s = p;
        while (p < end && *p != ',') {
            p++;
        }

        e = p;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t')) {
            e--;
        }

        if (e == s) {
            continue;
        }

        *last = ((size_t) (e - s) == len && strncasecmp(s, tok, len) == 0);
        found |= *last;
    }

    return found;
}


static int
parse_length(const sl_str_t *v, int64_t *out)
{
    int64_t  n = 0;
    size_t   i;

    if (v->len == 0 || v->len > 18) {
        return SL_ERROR;
    }

    for (i = 0; i < v->len; i++) {
        if (v->data[i] < '0' || v->data[i] > '9') {
            return SL_ERROR;
        }

        n = n * 10 + (v->data[i] - '0');
    }

    *out = n;
    return SL_OK;
}


static int
parse_status_line(const char *p, const char *le, sl_up_resp_t *h, const char **err)
{
    /* HTTP/1.x SP 3DIGIT [SP reason] */
    if (has_ctl(p, le)) {
        *err = "upstream sent a control character in the status line";
        return SL_ERROR;
    }

    if (le - p < 12 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1')
        || p[8] != ' ' || p[9] < '1' || p[9] > '9' || p[10] < '0' || p[10] > '9'
        || p[11] < '0' || p[11] > '9' || (le - p > 12 && p[12] != ' '))
    {
        *err = "upstream sent an invalid status line";
        return SL_ERROR;
    }

    h->version = p[7] == '1' ? 11 : 10;
    h->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    return SL_OK;
}


int
sl_up_resp_parse(const char *buf, size_t len, size_t max, sl_up_resp_t *h, size_t *head_len,
                 const char **err)
{
    const char  *p = buf, *end = buf + len, *le, *next, *colon, *v, *ve;
    int          last, keep = 0, close = 0;
    int64_t      cl;
    sl_str_t     name, value;

    h->nheaders = 0;
    h->content_length = -1;
    h->chunked = 0;
    h->other_te = 0;
    h->keepalive = 0;

    next = next_line(p, end, &le);
    if (next == NULL) {
        if (len >= 5 && memcmp(buf, "HTTP/", 5) != 0) {
            *err = "upstream sent no valid HTTP/1.x response";
            return SL_ERROR;
        }

        goto again;
    }

    if (parse_status_line(p, le, h, err) != SL_OK) {
        return SL_ERROR;
    }

    for (p = next; ; p = next) {
        next = next_line(p, end, &le);
        if (next == NULL) {
            goto again;
        }

        if (le == p) {
            break;                          /* the blank line */
        }

        if (*p == ' ' || *p == '\t') {
            *err = "upstream sent an obsolete line folding";
            return SL_ERROR;
        }

        colon = memchr(p, ':', (size_t) (le - p));
        if (colon == NULL || colon == p) {
            *err = "upstream sent an invalid header line";
            return SL_ERROR;
        }

        for (v = p; v < colon; v++) {
            if (!(cls[(unsigned char) *v] & TCHAR)) {
                *err = "upstream sent an invalid header name";
                return SL_ERROR;
            }
        }

        v = colon + 1;
        ve = le;
        while (v < ve && (*v == ' ' || *v == '\t')) {
            v++;
        }

        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) {
            ve--;
        }

        if (has_ctl(v, ve)) {
            *err = "upstream sent a control character in a header value";
            return SL_ERROR;
        }

        if (h->nheaders == SL_UP_MAX_HEADERS) {
            *err = "upstream sent too many header lines";
            return SL_ERROR;
        }

        name.data = p;
        name.len = (size_t) (colon - p);
        value.data = v;
        value.len = (size_t) (ve - v);
        h->headers[h->nheaders].name = name;
        h->headers[h->nheaders].value = value;
        h->nheaders++;

        switch (name.len) {
        case 10:
            if (name_is(&name, "connection", 10)) {
                close |= has_token(&value, "close", 5, &last);
                keep |= has_token(&value, "keep-alive", 10, &last);
            }
            break;

        case 14:
            if (name_is(&name, "content-length", 14)) {
                if (parse_length(&value, &cl) != SL_OK
                    || (h->content_length >= 0 && h->content_length != cl))
                {
                    *err = "upstream sent an invalid Content-Length";
                    return SL_ERROR;
                }

                h->content_length = cl;
            }
            break;

        case 17:
            if (name_is(&name, "transfer-encoding", 17)) {
                if (has_token(&value, "chunked", 7, &last) && last && !h->chunked) {
                    h->chunked = 1;
                } else {
                    h->other_te = 1;
                }
            }
            break;
        }
    }

    *head_len = (size_t) (next - buf);
    if (*head_len > max) {
        *err = "upstream sent too big a response head";
        return SL_ERROR;
    }

    if (h->chunked && h->other_te) {
        h->chunked = 0;                     /* chunked not last, or twice: read to the end */
    }

    h->keepalive = !close && (h->version == 11 || keep) && !h->other_te
                   && !(h->chunked && h->content_length >= 0);
    if (h->chunked || h->other_te) {
        h->content_length = -1;
    }

    return SL_OK;

again:

    if (len >= max) {
        *err = "upstream sent too big a response head";
        return SL_ERROR;
    }

    return SL_AGAIN;
}


const sl_http_header_t *
sl_up_resp_find(const sl_up_resp_t *h, const char *name, size_t len)
{
    size_t  i;

    for (i = 0; i < h->nheaders; i++) {
        if (name_is(&h->headers[i].name, name, len)) {
            return &h->headers[i];
        }
    }

    return NULL;
}
