/* upstream_resp.c -- TAP tests for the native client's response-head parser: framing
 * (Content-Length, chunked, close-delimited), keep-alive by version and Connection, LF line
 * ends, heads fed byte by byte, and every refusal. */
#include "tap.h"

#include "upstream_resp.h"

static sl_up_resp_t  h;


static int
parse(const char *s, size_t *head_len, const char **err)
{
    return sl_up_resp_parse(s, strlen(s), 65536, &h, head_len, err);
}


static void
test_basic(void)
{
    const char  *s = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     "Content-Length: 12\r\nX-Empty:\r\n\r\n{\"a\":1}";
    size_t       hl = 0;
    const char  *err = NULL;
    const sl_http_header_t  *f;

    is_int(parse(s, &hl, &err), SL_OK, "a plain head parses");
    is_int(hl, strstr(s, "\r\n\r\n") + 4 - s, "head length up to the blank line");
    is_int(h.status, 200, "status");
    is_int(h.version, 11, "HTTP/1.1");
    is_int(h.content_length, 12, "Content-Length");
    ok(h.keepalive, "HTTP/1.1 keeps the connection");
    is_int(h.nheaders, 3, "three fields");
    f = sl_up_resp_find(&h, "content-type", 12);
    ok(f != NULL, "find is case-insensitive");
    if (f != NULL) {
        is_str(f->value.data, f->value.len, "application/json", "value");
    }

    f = sl_up_resp_find(&h, "x-empty", 7);
    ok(f != NULL && f->value.len == 0, "an empty value");
}


static void
test_incremental(void)
{
    const char  *s = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
    size_t       i, hl;
    const char  *err;
    int          rc = SL_AGAIN, bad = 0;

    for (i = 1; i < strlen(s); i++) {
        rc = sl_up_resp_parse(s, i, 65536, &h, &hl, &err);
        bad |= rc != SL_AGAIN;
    }

    ok(!bad, "every prefix asks for more");
    is_int(sl_up_resp_parse(s, strlen(s), 65536, &h, &hl, &err), SL_OK, "the whole head parses");
    is_int(h.status, 404, "status 404");
}


static void
test_framing(void)
{
    size_t       hl;
    const char  *err;

    is_int(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", &hl, &err), SL_OK,
           "chunked");
    ok(h.chunked && h.keepalive && h.content_length == -1, "chunked, reusable");

    is_int(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", &hl, &err), SL_OK,
           "gzip, chunked");
    ok(h.chunked, "chunked last counts");

    is_int(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", &hl, &err), SL_OK,
           "chunked, gzip");
    ok(!h.chunked && h.other_te && !h.keepalive, "chunked not last: read to the close");

    is_int(parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                 &hl, &err), SL_OK, "length and chunked");
    ok(h.chunked && h.content_length == -1 && !h.keepalive,
       "chunked wins over the length, the connection is not reused");

    is_int(parse("HTTP/1.0 200 OK\r\n\r\n", &hl, &err), SL_OK, "HTTP/1.0");
    ok(!h.keepalive && h.content_length == -1, "1.0 without keep-alive: not reused");

    is_int(parse("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n\r\n", &hl,
                 &err), SL_OK, "HTTP/1.0 keep-alive");
    ok(h.keepalive && h.version == 10, "1.0 with keep-alive: reused");

    is_int(parse("HTTP/1.1 200 OK\r\nConnection: upgrade, close\r\n\r\n", &hl, &err), SL_OK,
           "Connection: close among tokens");
    ok(!h.keepalive, "close wins");

    is_int(parse("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", &hl, &err),
           SL_OK, "the same length twice");
    is_int(h.content_length, 3, "is fine");

    is_int(parse("HTTP/1.1 200 OK\nContent-Length: 2\nX: y\n\nok", &hl, &err), SL_OK,
           "LF line ends");
    is_int(hl, strlen("HTTP/1.1 200 OK\nContent-Length: 2\nX: y\n\n"), "LF head length");

    is_int(parse("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n", &hl, &err), SL_OK,
           "a 1xx head");
    is_int(h.status, 100, "parsed alone (the caller skips it)");
    is_int(hl, 25, "its own length");

    is_int(parse("HTTP/1.1 503\r\n\r\n", &hl, &err), SL_OK, "no reason phrase");
    is_int(h.status, 503, "status 503");
}


static void
test_errors(void)
{
    static const char  *bad[] = {
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
        "HTTP/1.1 200 OK\r\nFolded: a\r\n b\r\n\r\n",
        "HTTP/1.1 200 OK\r\nBad Name: a\r\n\r\n",
        "HTTP/1.1 200 OK\r\n: empty\r\n\r\n",
        "HTTP/1.1 200 OK\r\nNo-Colon\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX: a\x01b\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
        "HTTP/2 200\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/1.1 200OK\r\n\r\n",
        "ICY 200 OK\r\n\r\n",
        "<html>hello</html>\n",
    };
    size_t       i, hl;
    const char  *err;
    char         big[70000];

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err = NULL;
        is_int(parse(bad[i], &hl, &err), SL_ERROR, "refused: %.*s", (int) strcspn(bad[i] + 0, "\r"),
               bad[i]);
        ok(err != NULL && strncmp(err, "upstream sent", 13) == 0, "with a message (%s)",
           err ? err : "none");
    }

    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    memcpy(big, "HTTP/1.1 200 OK\r\nX: ", 20);
    is_int(sl_up_resp_parse(big, strlen(big), 65536, &h, &hl, &err), SL_ERROR,
           "an unfinished head past the limit");
    memcpy(big + 60000, "\r\n\r\n", 4);
    is_int(sl_up_resp_parse(big, 60004, 1000, &h, &hl, &err), SL_ERROR,
           "a complete head past the limit");
}


int
main(void)
{
    test_basic();
    test_incremental();
    test_framing();
    test_errors();
    done_testing();
}
