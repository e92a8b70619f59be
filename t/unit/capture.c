/* capture.c -- TAP tests for the relayed-body copy: head up to its limit, the ring of the
 * last bytes, and the time of the first complete SSE event with data, fed in pieces. */
#include "tap.h"

#include "capture.h"


static void
test_head_tail(void)
{
    sl_capture_t  c;
    char          big[40000], out[SL_CAPTURE_TAIL];
    size_t        i, n;

    for (i = 0; i < sizeof(big); i++) {
        big[i] = (char) ('a' + i % 26);
    }

    sl_capture_init(&c, 1000, 0);
    sl_capture_add(&c, big, 600, 1.0);
    is_int(c.head_len, 600, "under the limit: all in the head");
    is_int(sl_capture_tail(&c, out), 0, "no tail yet");
    sl_capture_add(&c, big + 600, 600, 1.0);
    is_int(c.head_len, 1000, "the head stops at its limit");
    n = sl_capture_tail(&c, out);
    is_int(n, 200, "the rest went to the tail");
    ok(memcmp(out, big + 1000, 200) == 0, "tail bytes in order");
    sl_capture_add(&c, big + 1200, 30000, 1.0);
    n = sl_capture_tail(&c, out);
    is_int(n, SL_CAPTURE_TAIL, "a full ring");
    ok(memcmp(out, big + 31200 - SL_CAPTURE_TAIL, SL_CAPTURE_TAIL) == 0,
       "the ring holds the last bytes, in order");
    for (i = 0; i < 100; i++) {
        sl_capture_add(&c, big + 31200 + i * 7, 7, 1.0);
    }

    n = sl_capture_tail(&c, out);
    ok(n == SL_CAPTURE_TAIL && memcmp(out, big + 31900 - SL_CAPTURE_TAIL, SL_CAPTURE_TAIL) == 0,
       "small pieces wrap the ring correctly");
    is_int(c.bytes, 31900, "every byte counted");
    sl_capture_free(&c);
}


static double
first_event(const char *s, size_t piece)
{
    sl_capture_t  c;
    size_t        i, len = strlen(s);
    double        t = 0;

    sl_capture_init(&c, 65536, 1);
    for (i = 0; i < len; i += piece) {
        sl_capture_add(&c, s + i, sl_min(piece, len - i), (double) (i + 1));
    }

    t = c.first_event;
    sl_capture_free(&c);
    return t;
}


static void
test_sse(void)
{
    const char  *s1 = ": keep-alive\n\ndata: {\"a\":1}\n\ndata: 2\n\n";
    const char  *s2 = "event: x\r\ndata: 1\r\n\r\n";
    const char  *s3 = "data: 1\n";
    const char  *s4 = "id: 1\n\nretry: 5\n\ndata\n\n";
    size_t       piece;
    int          same = 1;
    double       whole = first_event(s1, 1000);

    ok(whole > 0, "a comment, then an event with data");
    for (piece = 1; piece < 20; piece++) {
        double  t = first_event(s1, piece);
        /* the time is the offset + 1 of the piece that completed the event */
        same &= t > 0 && t <= (double) strlen(": keep-alive\n\ndata: {\"a\":1}\n\n");
        same &= t >= (double) strlen(": keep-alive\n\ndata: {\"a\":1}\n") - piece;
    }

    ok(same, "fed in pieces: found when the blank line after the data line arrives");
    ok(first_event(s2, 3) > 0, "CRLF line ends");
    is_int((long long) first_event(s3, 100), 0, "no blank line yet: not complete");
    ok(first_event(s4, 2) > 0, "a bare data line counts; events without data do not");
    is_int((long long) first_event("event: ping\n\n: x\n\n", 4), 0, "no data at all");
}


int
main(void)
{
    test_head_tail();
    test_sse();
    done_testing();
}
