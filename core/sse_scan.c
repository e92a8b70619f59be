/* sse_scan.c -- see sse_scan.h. The key is looked for by memchr on its rarest byte;
 * only the events it is found in are delimited, by looking back for the blank line before the
 * hit and forward for the one after it. */
#include "sse_scan.h"

#include <string.h>


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


/* The key's byte least likely in JSON text (by a rough rank), to memchr for: memmem restarts
 * at every occurrence of any prefix, and '"' or 'u' are everywhere in a stream. */
static size_t
rare_index(const char *key, size_t klen)
{
    static const char  common[] = "\"e:,ta{}oinsrhldcum_0123456789pfgwybvkxjqz";
    size_t             i, best = 0, rank, best_rank = 0;
    const char        *c;

    for (i = 0; i < klen; i++) {
        c = memchr(common, key[i], sizeof(common) - 1);
        rank = c != NULL ? (size_t) (c - common) : sizeof(common);
        if (rank >= best_rank) {
            best = i;
            best_rank = rank;
        }
    }

    return best;
}


/* the first occurrence of key in s[from..len), or NULL */
static const char *
find_key(const char *s, size_t from, size_t len, const char *key, size_t klen, size_t k)
{
    const char  *p = s + from + k, *end;

    if (len - from < klen) {
        return NULL;
    }

    end = s + len - (klen - k);
    while (p < end && (p = memchr(p, key[k], (size_t) (end - p))) != NULL) {
        if (memcmp(p - k, key, klen) == 0) {
            return p - k;
        }

        p++;
    }

    return NULL;
}


void
sl_sse_hits(const char *s, size_t len, const char *key, size_t klen,
            void (*fn)(void *ud, size_t start, size_t end), void *ud)
{
    size_t       from = 0, q, start, lf, next, k;
    const char  *p;

    if (klen == 0) {
        return;
    }

    k = rare_index(key, klen);
    while (from < len) {
        p = find_key(s, from, len, key, klen, k);
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
