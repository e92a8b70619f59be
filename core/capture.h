/* capture.h -- a copy of a response body the core relays by itself (pass_body with
 * `capture`), for the plugin that asked: the first `max` bytes, then the last TAIL bytes, and
 * when the first complete SSE event with a data line went by. ai-proxy relays a stream this
 * way and reads its usage from the copy at the end, instead of running Lua on every chunk. */
#ifndef SL_CAPTURE_H
#define SL_CAPTURE_H

#include "sluice.h"

#define SL_CAPTURE_TAIL  16384

typedef struct sl_capture_s {
    char      *head;
    size_t     head_len, head_max, head_cap;
    char      *tail;             /* ring of the bytes after the head, SL_CAPTURE_TAIL long */
    size_t     tail_pos;         /* next write position in the ring */
    uint64_t   tail_total;       /* bytes that went to the ring */
    uint64_t   bytes;            /* all body bytes seen */
    size_t     ev_start;         /* SSE scan: start of the event being looked at */
    size_t     ev_pos;           /* SSE scan: where it stopped */
    double     first_event;      /* 0 until the first SSE event with data was complete */
    unsigned   sse:1;            /* look for the first event */
} sl_capture_t;

void sl_capture_init(sl_capture_t *c, size_t max, int sse);
void sl_capture_free(sl_capture_t *c);

/* Takes n more body bytes seen at time now. */
void sl_capture_add(sl_capture_t *c, const char *p, size_t n, double now);

/* The last bytes that did not fit the head, in order, into out (SL_CAPTURE_TAIL bytes
 * room): returns their length. */
size_t sl_capture_tail(const sl_capture_t *c, char *out);

#endif
