/* capture.c -- the copy of a relayed body (see capture.h). The head grows by doubling up to
 * its limit; past it, bytes go round a fixed ring, so a long stream costs a bounded amount of
 * memory and its final event (where OpenAI-style streams put the usage) is still there. The
 * SSE scan runs only until the first event with a data line is complete: per the SSE
 * specification, lines end in CRLF, LF or CR, and an empty line ends an event. */
#include "capture.h"


void
sl_capture_init(sl_capture_t *c, size_t max, int sse)
{
    memset(c, 0, sizeof(*c));
    c->head_max = max;
    c->sse = sse ? 1 : 0;
}


void
sl_capture_free(sl_capture_t *c)
{
    free(c->head);
    free(c->tail);
    c->head = c->tail = NULL;
}


/* is the line [p, e) a data line ("data" then ':' or the end)? */
static int
data_line(const char *p, const char *e)
{
    return e - p >= 4 && memcmp(p, "data", 4) == 0 && (e - p == 4 || p[4] == ':');
}


/* looks for the end of the first event with a data line in head[ev_pos..head_len) */
static void
scan_sse(sl_capture_t *c, double now)
{
    const char  *b = c->head, *p = b + c->ev_pos, *end = b + c->head_len, *ls, *ev_end;
    int          has_data;

    for ( ;; ) {
        /* the event starting at ev_start: walk its lines from the one p is in */
        has_data = 0;
        ls = b + c->ev_start;
        p = ls;
        for ( ;; ) {
            const char  *le = p;
            while (le < end && *le != '\n' && *le != '\r') {
                le++;
            }

            if (le == end) {
                c->ev_pos = (size_t) (ls - b);
                return;                 /* this line is not complete yet */
            }

            /* the line end: CRLF needs its LF before we can tell it from a CR */
            if (*le == '\r' && le + 1 == end) {
                c->ev_pos = (size_t) (ls - b);
                return;
            }

            ev_end = le + ((*le == '\r' && le[1] == '\n') ? 2 : 1);
            if (le == p) {
                break;                  /* an empty line: the event is complete */
            }

            has_data |= data_line(p, le);
            p = ev_end;
        }

        if (has_data) {
            c->first_event = now;
            c->sse = 0;
            return;
        }

        c->ev_start = (size_t) (ev_end - b);
        c->ev_pos = c->ev_start;
    }
}


void
sl_capture_add(sl_capture_t *c, const char *p, size_t n, double now)
{
    size_t  room, k;

    c->bytes += n;
    room = c->head_max - c->head_len;
    k = sl_min(room, n);
    if (k > 0) {
        if (c->head_len + k > c->head_cap) {
            c->head_cap = sl_min(c->head_max, sl_max(c->head_cap * 2, c->head_len + k + 4096));
            c->head = sl_xrealloc(c->head, c->head_cap);
        }

        memcpy(c->head + c->head_len, p, k);
        c->head_len += k;
        p += k;
        n -= k;
        if (c->sse) {
            scan_sse(c, now);
        }
    }

    if (n == 0) {
        return;
    }

    if (c->tail == NULL) {
        c->tail = sl_xmalloc(SL_CAPTURE_TAIL);
    }

    c->tail_total += n;
    if (n >= SL_CAPTURE_TAIL) {
        memcpy(c->tail, p + n - SL_CAPTURE_TAIL, SL_CAPTURE_TAIL);
        c->tail_pos = 0;
        return;
    }

    k = sl_min(n, SL_CAPTURE_TAIL - c->tail_pos);
    memcpy(c->tail + c->tail_pos, p, k);
    memcpy(c->tail, p + k, n - k);
    c->tail_pos = (c->tail_pos + n) % SL_CAPTURE_TAIL;
}


size_t
sl_capture_tail(const sl_capture_t *c, char *out)
{
    size_t  len;

    if (c->tail == NULL || c->tail_total == 0) {
        return 0;
    }

    if (c->tail_total < SL_CAPTURE_TAIL) {
        memcpy(out, c->tail, (size_t) c->tail_total);
        return (size_t) c->tail_total;
    }

    len = SL_CAPTURE_TAIL - c->tail_pos;
    memcpy(out, c->tail + c->tail_pos, len);
    memcpy(out + len, c->tail, c->tail_pos);
    return SL_CAPTURE_TAIL;
}
