/* sse_scan.c -- see sse_scan.h. The key is looked for with sl_find (find.h: two of its
 * rarest bytes checked sixteen positions at a time), or backwards from the end for the last
 * hit; only the events it is found in are delimited, by looking back for the blank line
 * before the hit and forward for the one after it. */
#define _GNU_SOURCE             /* memrchr */
#include "sse_scan.h"

#include <string.h>

#include "find.h"


/* the boundary at or after i: *lf = the LF ending the event's last line, returns the first
 * position after the blank line, or 0 when none */
static size_t
next_boundary(const char *s, size_t len, size_t i, size_t *lf)
{
    const char  *p;

    while (i < len) {
        p = memchr(s + i, '\n', len - i);
        if (p == NULL) {
            return 0;
        }

        i = (size_t) (p - s);
        if (i + 1 < len && s[i + 1] == '\n') {
            *lf = i;
            return i + 2;
        }

        if (i + 2 < len && s[i + 1] == '\r' && s[i + 2] == '\n') {
            *lf = i;
            return i + 3;
        }

        i++;
    }

    return 0;
}


size_t
sl_sse_complete(const char *s, size_t len)
{
    size_t  i = 0, next, lf, last = 0;

    if (len >= 2 && s[len - 1] == '\n'
        && (s[len - 2] == '\n' || (len >= 3 && s[len - 2] == '\r' && s[len - 3] == '\n')))
    {
        return len;                 /* providers write whole events: the usual case */
    }

    while ((next = next_boundary(s, len, i, &lf)) != 0) {
        last = next;
        i = next;
    }

    return last;
}


/* the start of the event holding position pos: just after the blank line before it */
static size_t
event_start(const char *s, size_t from, size_t pos)
{
    size_t  i = pos;

    while (i > from) {
        i--;
        if (s[i] == '\n' && i > from) {
            if (s[i - 1] == '\n') {
                return i + 1;
            }

            if (s[i - 1] == '\r' && i - 1 > from && s[i - 2] == '\n') {
                return i + 1;
            }
        }
    }

    return from;
}


void
sl_sse_hits(const char *s, size_t len, const char *key, size_t klen,
            void (*fn)(void *ud, size_t start, size_t end), void *ud)
{
    size_t       from = 0, q, start, lf, next, a, b;
    const char  *p;

    if (klen == 0) {
        return;
    }

    sl_find_pick(key, klen, &a, &b);
    while (from < len) {
        p = sl_find_at(s + from, len - from, key, klen, a, b);
        if (p == NULL) {
            return;
        }

        q = (size_t) (p - s) + klen;
        while (q < len && (s[q] == ' ' || s[q] == '\t')) {
            q++;
        }

        if (q >= len || s[q] != ':') {
            from = (size_t) (p - s) + 1;
            continue;
        }

        q++;
        while (q < len && (s[q] == ' ' || s[q] == '\t')) {
            q++;
        }

        if (q >= len || s[q] != '{') {
            from = (size_t) (p - s) + 1;
            continue;
        }

        start = event_start(s, from, (size_t) (p - s));
        next = next_boundary(s, len, (size_t) (p - s), &lf);
        if (next == 0) {
            lf = len - 1;
            next = len;
        }

        fn(ud, start, lf);
        from = next;
    }
}


/* the last occurrence of key in s[from..len) with an object value, or NULL: candidates found
 * backwards by memrchr on the key's rarest byte */
static const char *
last_object_key(const char *s, size_t from, size_t len, const char *key, size_t klen, size_t a)
{
    const char  *p, *lo = s + from + a;
    size_t       end = len, q;

    while (end > from + a && (p = memrchr(lo, key[a], (size_t) (s + end - lo))) != NULL) {
        end = (size_t) (p - s);
        if (p - a + klen > s + len || memcmp(p - a, key, klen) != 0) {
            continue;
        }

        q = (size_t) (p - a - s) + klen;
        while (q < len && (s[q] == ' ' || s[q] == '\t')) {
            q++;
        }

        if (q >= len || s[q] != ':') {
            continue;
        }

        q++;
        while (q < len && (s[q] == ' ' || s[q] == '\t')) {
            q++;
        }

        if (q < len && s[q] == '{') {
            return p - a;
        }
    }

    return NULL;
}


void
sl_sse_hits_ends(const char *s, size_t len, const char *key, size_t klen, size_t first,
                 void (*fn)(void *ud, size_t start, size_t end), void *ud)
{
    size_t       head = 0, lf, next, i, a, b, start;
    const char  *p;

    if (klen == 0) {
        return;
    }

    /* the first events, whole */
    for (i = 0; i < first; i++) {
        next = next_boundary(s, len, head, &lf);
        if (next == 0) {
            head = len;
            break;
        }

        head = next;
    }

    sl_sse_hits(s, head, key, klen, fn, ud);
    if (head >= len) {
        return;
    }

    /* then the last hit, looked for from the end */
    sl_find_pick(key, klen, &a, &b);
    p = last_object_key(s, head, len, key, klen, a);
    if (p == NULL) {
        return;
    }

    start = event_start(s, head, (size_t) (p - s));
    next = next_boundary(s, len, (size_t) (p - s), &lf);
    if (next == 0) {
        lf = len - 1;
    }

    fn(ud, start, lf);
}
