/* links: core/find.c */
/* sse_scan.c -- TAP tests for the C scan of a stream for its usage-carrying events: which
 * events hit (object values only, blanks allowed around ':'), their bounds (LF and CRLF
 * blank lines, the first and the last event), and the complete part of a block. */
#include "tap.h"

#include "sse_scan.h"

typedef struct {
    size_t  start[8], end[8];
    int     n;
} got_t;


static void
collect(void *ud, size_t start, size_t end)
{
    got_t  *g = ud;

    if (g->n < 8) {
        g->start[g->n] = start;
        g->end[g->n] = end;
    }

    g->n++;
}


static got_t
ends(const char *s, size_t first)
{
    got_t  g;

    memset(&g, 0, sizeof(g));
    sl_sse_hits_ends(s, strlen(s), "\"usage\"", 7, first, collect, &g);
    return g;
}


static got_t
hits(const char *s)
{
    got_t  g;

    memset(&g, 0, sizeof(g));
    sl_sse_hits(s, strlen(s), "\"usage\"", 7, collect, &g);
    return g;
}


int
main(void)
{
    const char  *s1 = "data: {\"a\":1,\"usage\":null}\n\n"
                      "data: {\"usage\":{\"prompt_tokens\":9}}\n\n"
                      "data: [DONE]\n\n";
    const char  *s2 = "event: message_start\r\ndata: {\"message\":{\"usage\" : {\"input_tokens\":3}}}"
                      "\r\n\r\nevent: message_delta\r\ndata: {\"usage\":\t{\"output_tokens\":5}}\r\n\r\n";
    const char  *s3 = "data: {\"usage\":{\"x\":1}}";
    const char  *s4 = ": comment with \"usage\":{ inside\n\ndata: {\"text\":\"usage\"}\n\n";
    got_t        g;

    g = hits(s1);
    is_int(g.n, 1, "null usage skipped, the object one found");
    ok(g.n == 1 && strncmp(s1 + g.start[0], "data: {\"usage\"", 14) == 0, "its event starts at its line");
    ok(g.n == 1 && s1[g.end[0]] == '\n' && s1[g.end[0] + 1] == '\n', "and ends at its last LF");

    g = hits(s2);
    is_int(g.n, 2, "CRLF events, blanks around ':', both Anthropic events");
    ok(g.n == 2 && strncmp(s2 + g.start[0], "event: message_start", 20) == 0, "first event bounds");
    ok(g.n == 2 && strncmp(s2 + g.start[1], "event: message_delta", 20) == 0, "second event bounds");

    g = hits(s3);
    ok(g.n == 1 && g.start[0] == 0 && g.end[0] == strlen(s3) - 1, "an unterminated last event");

    g = hits(s4);
    is_int(g.n, 1, "a comment block is reported (the parser drops it); a string value is not");

    is_int(sl_sse_complete(s1, strlen(s1)), strlen(s1), "whole events: all complete");
    is_int(sl_sse_complete("data: 1\n\ndata: 2\n", 17), 9, "an unfinished event is left out");
    is_int(sl_sse_complete("data: 1\r\n\r\ndata", 15), 11, "CRLF blank line");
    is_int(sl_sse_complete("data: 1\n", 8), 0, "nothing complete");
    /* the ends only: hits among the first events, then the last one */
    {
        const char  *anth = "event: message_start\ndata: {\"message\":{\"usage\":{\"input_tokens\":3}}}\n\n"
                            "event: ping\ndata: {\"type\":\"ping\"}\n\n"
                            "data: {\"usage\":{\"mid\":1}}\n\n"
                            "data: {\"delta\":{\"text\":\"x\"},\"usage\":null}\n\n"
                            "event: message_delta\ndata: {\"usage\":{\"output_tokens\":5}}\n\n"
                            "data: {\"usage\":null}\n\n"
                            "event: message_stop\ndata: {}\n\n";

        g = ends(anth, 2);
        is_int(g.n, 2, "ends: the first event's hit and the last hit, not the middle one");
        ok(g.n == 2 && strncmp(anth + g.start[0], "event: message_start", 20) == 0, "ends: first");
        ok(g.n == 2 && strncmp(anth + g.start[1], "event: message_delta", 20) == 0,
           "ends: last object hit (later null ones skipped)");
        ok(g.n == 2 && anth[g.end[1]] == '\n' && anth[g.end[1] + 1] == '\n', "ends: its bounds");

        g = ends(s1, 2);
        is_int(g.n, 1, "ends: a hit inside the first events is not repeated");
        g = ends(s1, 0);
        is_int(g.n, 1, "ends: first = 0: only the last hit");
        ok(g.n == 1 && strncmp(s1 + g.start[0], "data: {\"usage\"", 14) == 0, "ends: its start");
        g = ends(s3, 0);
        is_int(g.n, 1, "ends: an event without its blank line, at the end");
        g = ends("data: {\"usage\":null}\n\ndata: {\"a\":1}\n\ndata: {\"b\":2}\n\n", 1);
        is_int(g.n, 0, "ends: no object value anywhere: no hit");
    }

    done_testing();
}
