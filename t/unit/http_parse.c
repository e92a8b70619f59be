/* http_parse.c -- tests core/http_parse.c: the request-head parser (every strictness rule,
 * limits, incremental feeding at every split point) and the chunked decoder (sizes,
 * extensions, trailers, framing errors, byte-by-byte feeding, pipelined bytes left alone).
 * Inputs are copied into heap buffers of their exact length, so ASan catches any over-read. */
#include <stdio.h>
#include <stdlib.h>

#include "sluice.h"
#include "http_parse.h"
#include "tap.h"

typedef struct {
    int          rc;
    int          status;
    const char  *err;
    size_t       head_len;
} result_t;

static sl_http_limits_t  lim = { 8192, 65536 };
static sl_http_head_t    head;


/* Parses buf[0..len) from an exact-size heap copy; the copy stays alive in *copy. */
static result_t
parse_n(const char *buf, size_t len, const sl_http_limits_t *l, char **copy)
{
    result_t  r;

    *copy = malloc(len ? len : 1);
    memcpy(*copy, buf, len);
    r.status = 0;
    r.err = NULL;
    r.head_len = 0;
    r.rc = sl_http_parse_head(*copy, len, l, &head, &r.head_len, &r.status, &r.err);
    return r;
}


static result_t
parse_lim(const char *s, const sl_http_limits_t *l)
{
    static char  *keep;
    result_t      r;

    free(keep);
    r = parse_n(s, strlen(s), l, &keep);
    return r;
}


static result_t
parse(const char *s)
{
    return parse_lim(s, &lim);
}


static void
expect_error(const char *req, int status, const char *name)
{
    result_t  r;

    r = parse(req);
    ok(r.rc == SL_ERROR && r.status == status, "%s -> %d (%s)", name, status,
       r.err ? r.err : "no error");
    if (r.rc != SL_ERROR || r.status != status) {
        printf("#   rc %d status %d\n", r.rc, r.status);
    }
}


static void
expect_ok(const char *req, const char *name)
{
    result_t  r;

    r = parse(req);
    ok(r.rc == SL_OK && r.head_len == strlen(req), "%s parses", name);
    if (r.rc != SL_OK) {
        printf("#   rc %d status %d err %s\n", r.rc, r.status, r.err ? r.err : "");
    }
}


static int
str_eq(sl_str_t s, const char *want)
{
    return s.len == strlen(want) && memcmp(s.data, want, s.len) == 0;
}


/* Every proper prefix of req must give SL_AGAIN or (for an invalid req) the same status,
 * and the whole of it the same result as a single parse. */
static void
check_splits(const char *req, const char *name)
{
    result_t  full, r;
    size_t    len, k, bad;
    char     *copy;

    len = strlen(req);
    full = parse_n(req, len, &lim, &copy);
    free(copy);

    bad = (size_t) -1;
    for (k = 0; k < len; k++) {
        r = parse_n(req, k, &lim, &copy);
        free(copy);
        if (full.rc == SL_OK) {
            if (k < full.head_len ? r.rc != SL_AGAIN
                : (r.rc != SL_OK || r.head_len != full.head_len))
            {
                bad = k;
                break;
            }

        } else if (r.rc != SL_AGAIN && (r.rc != SL_ERROR || r.status != full.status)) {
            bad = k;
            break;
        }
    }
    ok(bad == (size_t) -1, "%s: every prefix consistent with the whole", name);
    if (bad != (size_t) -1) {
        printf("#   prefix %zu: rc %d status %d\n", bad, r.rc, r.status);
    }
}


static void
test_valid_get(void)
{
    const char  *req = "GET /v1/models?limit=10&x=%20 HTTP/1.1\r\n"
                       "Host: api.example.com\r\n"
                       "User-Agent: curl/8.0\r\n"
                       "Accept: */*\r\n"
                       "\r\n";
    result_t     r;

    r = parse(req);
    is_int(r.rc, SL_OK, "GET: SL_OK");
    is_int(r.head_len, strlen(req), "GET: head_len is the whole head");
    ok(str_eq(head.method, "GET"), "GET: method");
    ok(str_eq(head.target, "/v1/models?limit=10&x=%20"), "GET: target");
    ok(str_eq(head.path, "/v1/models"), "GET: path");
    ok(str_eq(head.query, "limit=10&x=%20"), "GET: query");
    is_int(head.authority.len, 0, "GET: no authority");
    is_int(head.version, 11, "GET: version 11");
    is_int(head.nheaders, 3, "GET: 3 headers");
    ok(str_eq(head.headers[1].name, "User-Agent"), "GET: header name as sent");
    ok(str_eq(head.headers[1].value, "curl/8.0"), "GET: header value");
    ok(str_eq(head.host, "api.example.com"), "GET: host");
    is_int(head.content_length, -1, "GET: no content-length");
    is_int(head.chunked, 0, "GET: not chunked");
    is_int(head.keepalive, 1, "GET: HTTP/1.1 keeps alive");
    is_int(head.expect_continue, 0, "GET: no expect");

    r = parse("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    ok(r.rc == SL_OK && str_eq(head.path, "/") && head.query.len == 0, "GET /: path, no query");
    r = parse("GET /a? HTTP/1.1\r\nHost: a\r\n\r\n");
    ok(r.rc == SL_OK && str_eq(head.path, "/a") && head.query.len == 0
       && head.query.data == head.target.data + 3, "GET /a?: empty query after '?'");
    r = parse("GET /a?b?c HTTP/1.1\r\nHost: a\r\n\r\n");
    ok(r.rc == SL_OK && str_eq(head.path, "/a") && str_eq(head.query, "b?c"),
       "query starts at the first '?'");
}


static void
test_valid_post_pipelined(void)
{
    const char  *two = "POST /v1/chat/completions HTTP/1.1\r\n"
                       "Host: x\r\n"
                       "Content-Type: application/json\r\n"
                       "Content-Length: 7\r\n"
                       "\r\n"
                       "{\"a\":1}"
                       "GET /next HTTP/1.1\r\n"
                       "Host: y\r\n"
                       "Connection: close\r\n"
                       "\r\n";
    result_t     r;
    size_t       first;
    char        *copy;

    r = parse_n(two, strlen(two), &lim, &copy);
    is_int(r.rc, SL_OK, "POST: SL_OK with a body and a pipelined request behind");
    ok(str_eq(head.method, "POST"), "POST: method");
    is_int(head.content_length, 7, "POST: content_length");
    ok(memcmp(copy + r.head_len, "{\"a\":1}", 7) == 0, "POST: head_len ends at the body");
    first = r.head_len + 7;
    free(copy);

    r = parse_n(two + first, strlen(two) - first, &lim, &copy);
    is_int(r.rc, SL_OK, "pipelined GET: SL_OK");
    ok(str_eq(head.target, "/next"), "pipelined GET: target");
    ok(str_eq(head.host, "y"), "pipelined GET: host");
    is_int(head.keepalive, 0, "pipelined GET: Connection: close");
    is_int(r.head_len, strlen(two) - first, "pipelined GET: head_len");
    free(copy);
}


static void
test_line_ends_and_empty_lines(void)
{
    result_t  r;
    char      big[9000];

    r = parse("GET / HTTP/1.1\nHost: a\nX: y\n\n");
    ok(r.rc == SL_OK && head.nheaders == 2 && str_eq(head.headers[1].value, "y"),
       "bare LF line ends accepted");
    r = parse("GET / HTTP/1.1\r\nHost: a\n\r\n");
    is_int(r.rc, SL_OK, "mixed CRLF and LF accepted");

    r = parse("\r\n\r\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
    ok(r.rc == SL_OK && str_eq(head.method, "GET") && r.head_len == 5 + 27,
       "leading empty lines skipped, counted in head_len");
    r = parse("\r\n");
    is_int(r.rc, SL_AGAIN, "only empty lines: SL_AGAIN");

    memset(big, '\n', 8193);
    strcpy(big + 8193, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_error(big, 400, "more than max_line empty lines");
    memset(big, '\n', 8192);
    strcpy(big + 8192, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_ok(big, "max_line empty lines");
}


static void
test_request_line(void)
{
    result_t  r;

    expect_ok("get / HTTP/1.1\r\nHost: a\r\n\r\n", "lowercase method (a token)");
    expect_ok("M-SEARCH / HTTP/1.1\r\nHost: a\r\n\r\n", "method with '-'");
    expect_error("G@T / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "method with '@'");
    expect_error("GE(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "method with '('");
    expect_error(" / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "empty method");
    expect_error("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "two SP after method");
    expect_error("GET /  HTTP/1.1\r\nHost: a\r\n\r\n", 400, "two SP after target");
    expect_error("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400, "SP after version");
    expect_error("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 400, "HTAB as separator");
    expect_error("GET /\tx HTTP/1.1\r\nHost: a\r\n\r\n", 400, "HTAB in target");
    expect_error("GET /\x01x HTTP/1.1\r\nHost: a\r\n\r\n", 400, "CTL in target");
    expect_error("GET /\x7fx HTTP/1.1\r\nHost: a\r\n\r\n", 400, "DEL in target");
    expect_error("GET  HTTP/1.1\r\nHost: a\r\n\r\n", 400, "empty target");
    expect_error("GET /\r\nHost: a\r\n\r\n", 400, "missing version");
    expect_error("GET\r\nHost: a\r\n\r\n", 400, "method only");
    expect_ok("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", "obs-text (UTF-8) in target");

    r = parse("GET / HTTP/1.0\r\n\r\n");
    ok(r.rc == SL_OK && head.version == 10, "HTTP/1.0 without Host");
    expect_error("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505, "HTTP/2.0");
    expect_error("GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505, "HTTP/1.2");
    expect_error("GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505, "HTTP/0.9");
    expect_error("GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400, "HTTP/1.10");
    expect_error("GET / HTTP/1\r\nHost: a\r\n\r\n", 400, "HTTP/1");
    expect_error("GET / http/1.1\r\nHost: a\r\n\r\n", 400, "lowercase http");
    expect_error("GET / HTTX/1.1\r\nHost: a\r\n\r\n", 400, "HTTX/1.1");
    expect_error("GET / HTTP/a.b\r\nHost: a\r\n\r\n", 400, "HTTP/a.b");
}


static void
test_targets(void)
{
    result_t  r;

    r = parse("GET http://example.com:8080/a/b?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n");
    ok(r.rc == SL_OK && str_eq(head.path, "/a/b") && str_eq(head.query, "x=1")
       && str_eq(head.authority, "example.com:8080")
       && str_eq(head.target, "http://example.com:8080/a/b?x=1"), "absolute-form split");
    r = parse("GET https://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n");
    ok(r.rc == SL_OK && str_eq(head.path, "/") && head.query.len == 0
       && str_eq(head.authority, "example.com"), "absolute-form without path: path /");
    r = parse("GET http://h?q=1 HTTP/1.1\r\nHost: h\r\n\r\n");
    ok(r.rc == SL_OK && str_eq(head.path, "/") && str_eq(head.query, "q=1"),
       "absolute-form without path, with query");
    r = parse("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
    ok(r.rc == SL_OK && str_eq(head.path, "*") && head.query.len == 0, "OPTIONS *");
    expect_error("GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400, "* with GET");
    expect_error("CONNECT example.com:443 HTTP/1.1\r\nHost: a\r\n\r\n", 400, "authority-form");
    expect_error("GET a/b HTTP/1.1\r\nHost: a\r\n\r\n", 400, "relative target");
    expect_error("GET http:/x HTTP/1.1\r\nHost: a\r\n\r\n", 400, "scheme without //");
    expect_error("GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", 400, "empty authority");
    expect_error("GET 1http://x/ HTTP/1.1\r\nHost: a\r\n\r\n", 400, "scheme starts with digit");
}


static void
test_limits(void)
{
    sl_http_limits_t  small = { 32, 128 };
    result_t          r;
    char              buf[16384];
    size_t            i, n;

    /* request line of exactly 32 bytes: "GET /" + 19 x + " HTTP/1.1" */
    r = parse_lim("GET /xxxxxxxxxxxxxxxxxx HTTP/1.1\r\nHost: a\r\n\r\n", &small);
    is_int(r.rc, SL_OK, "request line of max_line bytes");
    r = parse_lim("GET /xxxxxxxxxxxxxxxxxxx HTTP/1.1\r\nHost: a\r\n\r\n", &small);
    ok(r.rc == SL_ERROR && r.status == 414, "request line of max_line + 1 bytes -> 414");
    r = parse_lim("GET /xxxxxxxxxxxxxxxxxxx HTTP/1.1\nHost: a\n\n", &small);
    ok(r.rc == SL_ERROR && r.status == 414, "same with LF line ends -> 414");
    r = parse_lim("GET /xxxxxxxxxxxxxxxxxx HTTP/1.1\r", &small);
    is_int(r.rc, SL_AGAIN, "max_line bytes and a CR: SL_AGAIN");
    r = parse_lim("GET /xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", &small);
    ok(r.rc == SL_ERROR && r.status == 414, "incomplete but already too long -> 414");
    r = parse_lim("GET /xxxxxxxxxxxxxxxxxxxxHTTP/1.1", &small);
    ok(r.rc == SL_ERROR && r.status == 414, "incomplete with max_line + 1 bytes -> 414");
    r = parse_lim("GET /xxxxxxxxxxxxxxxxxxxxxxxxxxx", &small);
    is_int(r.rc, SL_AGAIN, "incomplete within max_line: SL_AGAIN");

    /* head of exactly 128 bytes */
    strcpy(buf, "GET / HTTP/1.1\r\nHost: a\r\nX: ");
    n = strlen(buf);
    for (i = n; i < 128 - 4; i++) {
        buf[i] = 'v';
    }
    strcpy(buf + i, "\r\n\r\n");
    r = parse_lim(buf, &small);
    ok(r.rc == SL_OK && r.head_len == 128, "head of max_head bytes");
    buf[i] = 'v';
    strcpy(buf + i + 1, "\r\n\r\n");
    r = parse_lim(buf, &small);
    ok(r.rc == SL_ERROR && r.status == 431, "head of max_head + 1 bytes -> 431");
    buf[128] = '\0';
    r = parse_lim(buf, &small);
    ok(r.rc == SL_ERROR && r.status == 431, "incomplete head of max_head bytes -> 431");
    buf[127] = '\0';
    r = parse_lim(buf, &small);
    is_int(r.rc, SL_AGAIN, "incomplete head of max_head - 1 bytes: SL_AGAIN");

    /* header count */
    strcpy(buf, "GET / HTTP/1.1\r\nHost: a\r\n");
    n = strlen(buf);
    for (i = 1; i < SL_HTTP_MAX_HEADERS; i++) {
        n += sprintf(buf + n, "X-%zu: v\r\n", i);
    }
    strcpy(buf + n, "\r\n");
    r = parse(buf);
    ok(r.rc == SL_OK && head.nheaders == SL_HTTP_MAX_HEADERS, "100 headers accepted");
    n += sprintf(buf + n, "X-last: v\r\n");
    strcpy(buf + n, "\r\n");
    expect_error(buf, 431, "101 headers");
}


static void
test_header_syntax(void)
{
    result_t  r;

    expect_error("GET / HTTP/1.1\r\nHost: a\r\nFoo Bar: x\r\n\r\n", 400, "space in header name");
    expect_error("GET / HTTP/1.1\r\nHost: a\r\nFoo : x\r\n\r\n", 400, "space before ':'");
    expect_error("GET / HTTP/1.1\r\nHost: a\r\nFoo\t: x\r\n\r\n", 400, "tab before ':'");
    expect_error("GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n", 400, "empty header name");
    expect_error("GET / HTTP/1.1\r\nHost: a\r\nFoo\r\n\r\n", 400, "header line without ':'");
    expect_error("GET / HTTP/1.1\r\nHost: a\r\nF\x01o: x\r\n\r\n", 400, "CTL in header name");
    expect_error("GET / HTTP/1.1\r\nHost: a\r\nF\xc3\xb6o: x\r\n\r\n", 400,
                 "non-ASCII header name");
    expect_error("GET / HTTP/1.1\r\nHost: a\r\nFoo(: x\r\n\r\n", 400, "'(' in header name");
    r = parse("GET / HTTP/1.1\r\nHost: a\r\nFoo Bar: x\r\n\r\n");
    ok(r.err != NULL && strcmp(r.err, "invalid header name") == 0,
       "message: invalid header name");

    expect_error("GET / HTTP/1.1\r\nHost: a\r\nFoo: a\r\n b\r\n\r\n", 400, "obs-fold with SP");
    expect_error("GET / HTTP/1.1\r\nHost: a\r\nFoo: a\r\n\tb\r\n\r\n", 400, "obs-fold with HTAB");
    expect_error("GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400, "first header line starts with SP");

    expect_error("GET / HTTP/1.1\rHost: a\r\n\r\n", 400, "bare CR in request line");
    expect_error("GET / HTTP/1.1\r\r\nHost: a\r\n\r\n", 400, "CR CR LF ends request line");
    expect_error("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", 400, "bare CR in header value");
    expect_error("GET / HTTP/1.1\r\nHost: a\r\r\n\r\n", 400, "CR CR LF ends header line");
    expect_error("GET / HTTP/1.1\r\nHost: a\r\n\rX\r\n\r\n", 400, "bare CR at head end");
    expect_error("GET / HTTP/1.1\r\nHo\rst: a\r\n\r\n", 400, "bare CR in header name");
    expect_error("\rGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "bare CR before request line");
    r = parse("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n");
    ok(r.err != NULL && strcmp(r.err, "bare cr") == 0, "message: bare cr");

    r = parse("GET / HTTP/1.1\r\nHost: a\r\nX-A: \t  two  words \t \r\nX-B:\r\nX-C:   \r\n"
              "X-D:v\r\n\r\n");
    ok(r.rc == SL_OK && str_eq(head.headers[1].value, "two  words"),
       "value: OWS trimmed both sides, inner kept");
    ok(r.rc == SL_OK && head.headers[2].value.len == 0 && head.headers[3].value.len == 0,
       "empty and all-OWS values are empty");
    ok(r.rc == SL_OK && str_eq(head.headers[4].value, "v"), "value without OWS");
    r = parse("GET / HTTP/1.1\r\nHost: a\r\nX-A: a\tb\xff\x80 \"q\" ~\r\n\r\n");
    ok(r.rc == SL_OK && str_eq(head.headers[1].value, "a\tb\xff\x80 \"q\" ~"),
       "HTAB and obs-text kept inside values");
    r = parse("GET / HTTP/1.1\r\nHost: a\r\nX-Long: 0123456789abcdefghijklmnopqrstuvwxyz"
              "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\r\n\r\n");
    ok(r.rc == SL_OK && head.headers[1].value.len == 72, "long value (word-at-a-time scan)");

    expect_error("GET / HTTP/1.1\r\nHost: a\r\nX: a\x01z\r\n\r\n", 400, "CTL in value");
    expect_error("GET / HTTP/1.1\r\nHost: a\r\nX: 0123456789\x1f\r\n\r\n", 400,
                 "CTL late in a long value");
    expect_error("GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fz\r\n\r\n", 400, "DEL in value");
    expect_error("GET / HTTP/1.1\r\nHost: a\r\nX: abcdefghijklm\x7fz\r\n\r\n", 400,
                 "DEL late in a long value");
    {
        static const char  nul[] = "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n";
        char              *copy;

        r = parse_n(nul, sizeof(nul) - 1, &lim, &copy);
        ok(r.rc == SL_ERROR && r.status == 400, "NUL in value -> 400");
        free(copy);
    }
    {
        static const char  nul[] = "GET /a\0b HTTP/1.1\r\nHost: a\r\n\r\n";
        char              *copy;

        r = parse_n(nul, sizeof(nul) - 1, &lim, &copy);
        ok(r.rc == SL_ERROR && r.status == 400, "NUL in target -> 400");
        free(copy);
    }
}


/* A bad byte at every offset of long names, values and targets: the 16- and 8-byte scans must
 * stop exactly where the byte-at-a-time rules would. */
static void
test_scan_positions(void)
{
    static const u_char  bad_value[] = { 0x00, 0x01, 0x0b, 0x1f, 0x7f };
    static const u_char  good_value[] = { '\t', ' ', 0x80, 0xff, '~' };
    char                 req[256];
    size_t               i, j, n, fails, passes;
    int                  trimmed;
    result_t             r;

    fails = 0;
    passes = 0;
    for (i = 0; i < 40; i++) {
        for (j = 0; j < sizeof(bad_value); j++) {
            n = sprintf(req, "GET / HTTP/1.1\r\nHost: a\r\nX: ");
            memset(req + n, 'v', 40);
            req[n + i] = (char) bad_value[j];
            strcpy(req + n + 40, "\r\n\r\n");
            {
                char  *copy;

                r = parse_n(req, n + 44, &lim, &copy);
                free(copy);
            }
            fails += r.rc == SL_ERROR && r.status == 400;

            req[n + i] = (char) good_value[j];
            r = parse(req);
            /* OWS at either end is trimmed */
            trimmed = (i == 0 || i == 39) && j < 2;
            passes += r.rc == SL_OK && head.headers[1].value.len == (size_t) (40 - trimmed);
        }
    }
    is_int(fails, 40 * sizeof(bad_value), "value: CTL/DEL at every offset -> 400");
    is_int(passes, 40 * sizeof(good_value), "value: HTAB/SP/obs-text at every offset kept");

    fails = 0;
    passes = 0;
    for (i = 0; i < 40; i++) {
        n = sprintf(req, "GET / HTTP/1.1\r\nHost: a\r\n");
        memset(req + n, 'N', 40);
        req[n + i] = '(';
        strcpy(req + n + 40, ": v\r\n\r\n");
        r = parse(req);
        fails += r.rc == SL_ERROR && r.status == 400;
        req[n + i] = i % 2 ? '~' : '_';
        r = parse(req);
        passes += r.rc == SL_OK && head.headers[1].name.len == 40;
    }
    is_int(fails, 40, "name: non-tchar at every offset -> 400");
    is_int(passes, 40, "name: rare tchar at every offset accepted");

    fails = 0;
    passes = 0;
    for (i = 1; i < 40; i++) {
        n = sprintf(req, "GET /");
        memset(req + n, 't', 40);
        req[n + i] = '\x7f';
        strcpy(req + n + 40, " HTTP/1.1\r\nHost: a\r\n\r\n");
        r = parse(req);
        fails += r.rc == SL_ERROR && r.status == 400;
        req[n + i] = '\x80';
        r = parse(req);
        passes += r.rc == SL_OK && head.target.len == 41;
    }
    is_int(fails, 39, "target: DEL at every offset -> 400");
    is_int(passes, 39, "target: obs-text at every offset accepted");
}


static void
test_framing(void)
{
    result_t  r;

    expect_error("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n", 400, "Content-Length then TE");
    expect_error("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                 "Content-Length: 5\r\n\r\n", 400, "TE then Content-Length");
    expect_error("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n"
                 "Content-Length: 5\r\n\r\n", 400, "unsupported TE and Content-Length: 400");

    r = parse("POST / HTTP/1.1\r\nHost: a\r\ncontent-length:  42 \r\n\r\n");
    ok(r.rc == SL_OK && head.content_length == 42, "Content-Length 42 (any case, OWS)");
    r = parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
    ok(r.rc == SL_OK && head.content_length == 0, "Content-Length 0");
    r = parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n\r\n");
    ok(r.rc == SL_OK && head.content_length == 7, "Content-Length with leading zeros");
    r = parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4611686018427387904\r\n\r\n");
    ok(r.rc == SL_OK && head.content_length == SL_HTTP_MAX_CONTENT_LENGTH,
       "Content-Length 2^62 accepted");
    expect_error("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4611686018427387905\r\n\r\n",
                 400, "Content-Length 2^62 + 1");
    expect_error("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                 400, "Content-Length overflowing 64 bits");
    expect_error("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", 400, "CL +5");
    expect_error("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\n", 400, "CL -5");
    expect_error("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5a\r\n\r\n", 400, "CL 5a");
    expect_error("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n", 400, "CL 0x5");
    expect_error("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 5\r\n\r\n", 400, "CL '5 5'");
    expect_error("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5.0\r\n\r\n", 400, "CL 5.0");
    expect_error("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", 400, "CL empty");
    expect_error("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n", 400, "CL abc");

    r = parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n");
    ok(r.rc == SL_OK && head.content_length == 5, "identical Content-Length headers");
    r = parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5,5\r\n\r\n");
    ok(r.rc == SL_OK && head.content_length == 5, "identical Content-Length list");
    expect_error("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                 400, "differing Content-Length headers");
    expect_error("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n", 400,
                 "differing Content-Length list");
    expect_error("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,,5\r\n\r\n", 400,
                 "empty Content-Length list member");
    expect_error("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,\r\n\r\n", 400,
                 "trailing comma in Content-Length");

    r = parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
    ok(r.rc == SL_OK && head.chunked && head.content_length == -1, "TE chunked");
    r = parse("POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding:  ChUnKeD \r\n\r\n");
    ok(r.rc == SL_OK && head.chunked, "TE chunked, any case, OWS");
    expect_error("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501,
                 "TE gzip, chunked");
    expect_error("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "TE gzip");
    expect_error("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", 501,
                 "TE identity");
    expect_error("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
                 501, "TE chunked, chunked");
    expect_error("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n", 501, "two TE headers");
    expect_error("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", 501,
                 "TE xchunked");
    expect_error("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n", 501, "TE empty");
    r = parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n");
    ok(r.err != NULL && strcmp(r.err, "unsupported transfer-encoding") == 0,
       "message: unsupported transfer-encoding");
    expect_error("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "TE in HTTP/1.0");
}


static void
test_host_connection_expect(void)
{
    result_t  r;

    expect_error("GET / HTTP/1.1\r\n\r\n", 400, "HTTP/1.1 without Host");
    expect_error("GET / HTTP/1.1\r\nX-Host: a\r\n\r\n", 400, "X-Host is not Host");
    expect_error("GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", 400, "two Host headers");
    expect_error("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400, "two Host in HTTP/1.0");
    r = parse("GET / HTTP/1.1\r\nHOST: Example.COM:80\r\n\r\n");
    ok(r.rc == SL_OK && str_eq(head.host, "Example.COM:80"), "Host any case, value as sent");
    r = parse("GET / HTTP/1.1\r\nHost:\r\n\r\n");
    ok(r.rc == SL_OK && head.host.len == 0, "empty Host accepted");

    r = parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    ok(r.rc == SL_OK && !head.keepalive, "1.1 Connection: close");
    r = parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, CLOSE\r\n\r\n");
    ok(r.rc == SL_OK && !head.keepalive, "1.1 close in a list, any case");
    r = parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n");
    ok(r.rc == SL_OK && head.keepalive, "1.1 'closed' is not close");
    r = parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n");
    ok(r.rc == SL_OK && head.keepalive, "1.1 keep-alive");
    r = parse("GET / HTTP/1.0\r\n\r\n");
    ok(r.rc == SL_OK && !head.keepalive, "1.0 closes by default");
    r = parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
    ok(r.rc == SL_OK && head.keepalive, "1.0 Connection: Keep-Alive");
    r = parse("GET / HTTP/1.0\r\nConnection: TE,keep-alive ,x\r\n\r\n");
    ok(r.rc == SL_OK && head.keepalive, "1.0 keep-alive in a list");
    r = parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n");
    ok(r.rc == SL_OK && !head.keepalive, "1.0 keep-alive and close: close wins");

    r = parse("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n");
    ok(r.rc == SL_OK && head.expect_continue, "Expect: 100-continue");
    r = parse("POST / HTTP/1.1\r\nHost: a\r\nexpect:  100-Continue \r\n\r\n");
    ok(r.rc == SL_OK && head.expect_continue, "Expect: 100-Continue, any case");
    r = parse("POST / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n");
    ok(r.rc == SL_OK && !head.expect_continue, "other Expect values ignored");
}


static void
test_find(void)
{
    const sl_http_header_t  *hd;
    result_t                 r;

    r = parse("GET / HTTP/1.1\r\nHost: a\r\nX-Api-Key: one\r\nx-api-key: two\r\n\r\n");
    is_int(r.rc, SL_OK, "find: parsed");
    hd = sl_http_head_find(&head, "x-api-KEY", 9);
    ok(hd != NULL && str_eq(hd->value, "one"), "find: case-insensitive, first match");
    ok(sl_http_head_find(&head, "x-api-ke", 8) == NULL, "find: prefix is no match");
    ok(sl_http_head_find(&head, "authorization", 13) == NULL, "find: absent -> NULL");
    hd = sl_http_head_find(&head, "HOST", 4);
    ok(hd != NULL && hd == &head.headers[0], "find: Host");
}


static void
test_incremental(void)
{
    const char  *req = "POST /v1/chat/completions?stream=true HTTP/1.1\r\n"
                       "Host: api.openai.com\r\n"
                       "Authorization: Bearer sk-test-0123456789abcdef\r\n"
                       "Content-Type: application/json\r\n"
                       "Content-Length: 17\r\n"
                       "Expect: 100-continue\r\n"
                       "\r\n";
    result_t     r;
    size_t       len, k, again, same;
    char        *copy;
    sl_http_head_t  want;

    len = strlen(req);
    r = parse_n(req, len, &lim, &copy);
    want = head;
    free(copy);

    again = 0;
    for (k = 0; k < len; k++) {
        r = parse_n(req, k, &lim, &copy);
        again += r.rc == SL_AGAIN;
        free(copy);
    }
    is_int(again, len, "every proper prefix of a valid head: SL_AGAIN");

    /* growing one buffer, as the caller does: results must equal the one-shot parse */
    copy = malloc(len);
    same = 0;
    for (k = 1; k <= len; k++) {
        memcpy(copy, req, k);
        r.rc = sl_http_parse_head(copy, k, &lim, &head, &r.head_len, &r.status, &r.err);
        if (k < len) {
            same += r.rc == SL_AGAIN;
            continue;
        }
        same += r.rc == SL_OK && r.head_len == len && head.nheaders == want.nheaders
                && head.content_length == 17 && head.expect_continue && head.keepalive
                && head.method.data == copy && str_eq(head.path, "/v1/chat/completions")
                && str_eq(head.query, "stream=true") && str_eq(head.host, "api.openai.com")
                && str_eq(head.headers[1].value, "Bearer sk-test-0123456789abcdef");
    }
    is_int(same, len, "byte-by-byte growth: SL_AGAIN, then SL_OK with the same head");
    free(copy);

    check_splits(req, "valid POST");
    check_splits("\r\n\nGET / HTTP/1.1\nHost: a\n\n", "LF-only with empty lines");
    check_splits("GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", "bare CR");
    check_splits("GET / HTTP/1.1\r\nHost: a\r\nFoo Bar: x\r\n\r\n", "bad header name");
    check_splits("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", "501");
    check_splits("GET / HTTP/2.0\r\nHost: a\r\n\r\n", "505");
    check_splits("GET / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", "CL");
}


/* Chunked decoding: feeds in[0..len) in pieces cut at `cuts` (ascending, may be empty),
 * each piece an exact-size heap copy; collects the body. */
typedef struct {
    int          rc;
    const char  *err;
    char         body[16384];
    size_t       body_len;
    size_t       consumed;      /* total, when rc is SL_OK */
    int          stalled;       /* an SL_AGAIN call with input consumed nothing */
} dechunk_t;


static void
dechunk(const char *in, size_t len, const size_t *cuts, size_t ncuts, dechunk_t *d)
{
    sl_http_chunked_t  c;
    size_t             from, to, i, pos, used, off, dl;
    char              *piece;

    sl_http_chunked_init(&c);
    d->rc = SL_AGAIN;
    d->err = NULL;
    d->body_len = 0;
    d->consumed = 0;
    d->stalled = 0;

    from = 0;
    for (i = 0; i <= ncuts && d->rc == SL_AGAIN; i++) {
        to = i < ncuts ? cuts[i] : len;
        piece = malloc(to - from ? to - from : 1);
        memcpy(piece, in + from, to - from);
        pos = 0;
        do {
            d->rc = sl_http_chunked_parse(&c, piece + pos, to - from - pos, &used, &off, &dl,
                                          &d->err);
            if (dl) {
                memcpy(d->body + d->body_len, piece + pos + off, dl);
                d->body_len += dl;
            }
            if (d->rc == SL_AGAIN && used == 0 && to - from - pos > 0) {
                d->stalled = 1;
                break;
            }
            pos += used;
        } while (d->rc == SL_AGAIN && pos < to - from);
        free(piece);
        d->consumed = from + pos;
        from = to;
    }
}


static void
dechunk_whole(const char *in, dechunk_t *d)
{
    dechunk(in, strlen(in), NULL, 0, d);
}


static void
chunked_ok(const char *in, const char *body, size_t consumed, const char *name)
{
    dechunk_t  d;

    dechunk_whole(in, &d);
    ok(d.rc == SL_OK && d.body_len == strlen(body) && memcmp(d.body, body, d.body_len) == 0
       && d.consumed == consumed && !d.stalled, "chunked %s", name);
    if (d.rc != SL_OK) {
        printf("#   rc %d err %s\n", d.rc, d.err ? d.err : "");
    }
}


static void
chunked_error(const char *in, const char *name)
{
    dechunk_t  d;

    dechunk_whole(in, &d);
    ok(d.rc == SL_ERROR && d.err != NULL, "chunked %s -> error (%s)", name,
       d.err ? d.err : "none");
}


/* Two-piece feeding at every split point, and one byte at a time, must equal the whole. */
static void
chunked_splits(const char *in, const char *name)
{
    dechunk_t  whole, d;
    size_t     len, k, bad, cuts[8192];

    len = strlen(in);
    dechunk(in, len, NULL, 0, &whole);

    bad = (size_t) -1;
    for (k = 0; k <= len; k++) {
        dechunk(in, len, &k, 1, &d);
        if (d.rc != whole.rc || d.body_len != whole.body_len || d.stalled
            || memcmp(d.body, whole.body, d.body_len) != 0
            || (d.rc == SL_OK && d.consumed != whole.consumed))
        {
            bad = k;
            break;
        }
    }
    ok(bad == (size_t) -1, "chunked %s: split at every byte gives the same result", name);

    for (k = 0; k < len && k < 8192; k++) {
        cuts[k] = k + 1;
    }
    dechunk(in, len, cuts, k, &d);
    ok(d.rc == whole.rc && d.body_len == whole.body_len && !d.stalled
       && memcmp(d.body, whole.body, d.body_len) == 0
       && (d.rc != SL_OK || d.consumed == whole.consumed),
       "chunked %s: one byte at a time gives the same result", name);
}


static void
test_chunked(void)
{
    static char        big[16384];
    dechunk_t          d;
    sl_http_chunked_t  c;
    size_t             used, off, dl, n;
    const char        *err;
    int                rc;

    chunked_ok("5\r\nhello\r\n0\r\n\r\n", "hello", 15, "one chunk");
    chunked_ok("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "hello world", 26, "two chunks");
    chunked_ok("0\r\n\r\n", "", 5, "empty body");
    chunked_ok("A\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n", "0123456789abcdefghij", 35,
               "hex A and a");
    chunked_ok("000000000000000F\r\n0123456789abcde\r\n0\r\n\r\n", "0123456789abcde", 40,
               "16 hex digits");
    chunked_ok("5\nhello\n0\n\n", "hello", 11, "bare LF line ends");
    chunked_ok("5;name=value;flag\r\nhello\r\n0;last\r\n\r\n", "hello", 36, "extensions");
    chunked_ok("5 ;a=b\r\nhello\r\n0\t; x\r\n\r\n", "hello", 24, "whitespace before ';'");
    chunked_ok("5;q=\"a b\"\r\nhello\r\n0\r\n\r\n", "hello", 23, "quoted extension value");
    chunked_ok("5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n", "hello", 44,
               "trailers ignored");
    chunked_ok("5\r\nhello\r\n0\nX-T: 1\n\n", "hello", 20, "trailers with LF ends");
    chunked_ok("5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n", "hello", 15,
               "pipelined bytes after the last chunk stay");
    chunked_ok("5\r\nhello\r\n0\r\nX: y\r\n\r\nPOST", "hello", 21,
               "pipelined bytes after trailers stay");

    chunked_error("0x10\r\n0123456789abcdef\r\n0\r\n\r\n", "size 0x10");
    chunked_error("-1\r\nx\r\n0\r\n\r\n", "size -1");
    chunked_error("+1\r\nx\r\n0\r\n\r\n", "size +1");
    chunked_error("fffffffffffffffff\r\n", "17 hex digits");
    chunked_error("00000000000000001\r\nx\r\n0\r\n\r\n", "17 hex digits with leading zeros");
    chunked_error(" 5\r\nhello\r\n0\r\n\r\n", "leading space in size line");
    chunked_error("\t5\r\nhello\r\n0\r\n\r\n", "leading tab in size line");
    chunked_error("5 \r\nhello\r\n0\r\n\r\n", "trailing space in size line");
    chunked_error("5\t\r\nhello\r\n0\r\n\r\n", "trailing tab in size line");
    chunked_error("5 5\r\nhello\r\n0\r\n\r\n", "space inside size");
    chunked_error("\r\nhello\r\n0\r\n\r\n", "empty size line");
    chunked_error(";a\r\nhello\r\n0\r\n\r\n", "extension without size");
    chunked_error("g\r\n", "size g");
    chunked_error("5\rhello\r\n0\r\n\r\n", "bare CR after size");
    chunked_error("5;a\rb\r\nhello\r\n0\r\n\r\n", "bare CR in extension");
    chunked_error("5;a\x01\r\nhello\r\n0\r\n\r\n", "CTL in extension");
    chunked_error("5\r\nhelloX\r\n0\r\n\r\n", "data not followed by CRLF");
    chunked_error("5\r\nhello\rX0\r\n\r\n", "data followed by CR and no LF");
    chunked_error("5\r\nhello0\r\n\r\n", "next size right after data");
    chunked_error("5\r\nhello\r\n0\r\nX: a\rb\r\n\r\n", "bare CR in trailer");
    chunked_error("5\r\nhello\r\n0\r\nX: \x01\r\n\r\n", "CTL in trailer");
    chunked_error("5\r\nhello\r\n0\r\n\rX", "bare CR in the final line");

    /* extension bytes: 4096 per line allowed, 4097 not */
    n = sprintf(big, "1;");
    memset(big + n, 'e', 4095);
    n += 4095;
    n += sprintf(big + n, "\r\nx\r\n0\r\n\r\n");
    dechunk_whole(big, &d);
    ok(d.rc == SL_OK && d.body_len == 1, "chunked extensions of 4096 bytes");
    n = sprintf(big, "1;");
    memset(big + n, 'e', 4096);
    n += 4096;
    n += sprintf(big + n, "\r\nx\r\n0\r\n\r\n");
    dechunk_whole(big, &d);
    ok(d.rc == SL_ERROR, "chunked extensions of 4097 bytes -> error");
    n = sprintf(big, "1;");
    memset(big + n, 'e', 3000);
    n += 3000;
    n += sprintf(big + n, "\r\nx\r\n1;");
    memset(big + n, 'e', 3000);
    n += 3000;
    sprintf(big + n, "\r\ny\r\n0\r\n\r\n");
    dechunk_whole(big, &d);
    ok(d.rc == SL_OK && d.body_len == 2, "extension limit is per chunk line");
    n = sprintf(big, "1");
    memset(big + n, ' ', 4097);
    n += 4097;
    sprintf(big + n, ";a\r\nx\r\n0\r\n\r\n");
    dechunk_whole(big, &d);
    ok(d.rc == SL_ERROR, "4097 bytes of whitespace before ';' -> error");

    /* trailer section: 8192 bytes allowed, more not */
    n = sprintf(big, "0\r\nX: ");
    memset(big + n, 't', 8192 - 3 - 2);       /* "X: " + value + CRLF */
    n += 8192 - 3 - 2;
    n += sprintf(big + n, "\r\n\r\n");
    dechunk_whole(big, &d);
    ok(d.rc == SL_OK && d.consumed == n, "trailer section of 8192 bytes");
    n = sprintf(big, "0\r\nX: ");
    memset(big + n, 't', 8192 - 3 - 1);
    n += 8192 - 3 - 1;
    sprintf(big + n, "\r\n\r\n");
    dechunk_whole(big, &d);
    ok(d.rc == SL_ERROR, "trailer section of 8193 bytes -> error");

    chunked_splits("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "two chunks");
    chunked_splits("5;a=b\r\nhello\r\n0;c\r\nX-T: v\r\nY: w\r\n\r\nGET / HTTP/1.1\r\n",
                   "extensions, trailers, pipelined");
    chunked_splits("3\nabc\n0\n\nxyz", "LF ends, pipelined");
    chunked_splits("5\r\nhelloX\r\n0\r\n\r\n", "missing CRLF after data");
    chunked_splits("fffffffffffffffff\r\n", "17 hex digits");

    /* a huge chunk: the decoder hands out what it has and waits for the rest */
    sl_http_chunked_init(&c);
    rc = sl_http_chunked_parse(&c, "ffffffffffffffff\r\nabc", 21, &used, &off, &dl, &err);
    ok(rc == SL_AGAIN && used == 21 && off == 18 && dl == 3, "size 2^64-1: data span given");
    ok(c.remaining == UINT64_MAX - 3, "size 2^64-1: remaining counts down");

    /* one span per call: consumed stops after it, the caller calls again */
    sl_http_chunked_init(&c);
    rc = sl_http_chunked_parse(&c, "2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n", 22, &used, &off, &dl, &err);
    ok(rc == SL_AGAIN && off == 3 && dl == 2 && used == 5, "first span, consumed up to its end");
    rc = sl_http_chunked_parse(&c, "\r\n2\r\ncd\r\n0\r\n\r\n", 17, &used, &off, &dl, &err);
    ok(rc == SL_AGAIN && off == 5 && dl == 2 && used == 7, "second span at its offset");
    rc = sl_http_chunked_parse(&c, "\r\n0\r\n\r\n", 7, &used, &off, &dl, &err);
    ok(rc == SL_OK && dl == 0 && used == 7, "last chunk: SL_OK without data");
    rc = sl_http_chunked_parse(&c, "more", 4, &used, &off, &dl, &err);
    ok(rc == SL_OK && used == 0 && dl == 0, "after the end: SL_OK, nothing consumed");

    sl_http_chunked_init(&c);
    rc = sl_http_chunked_parse(&c, "z\r\n", 3, &used, &off, &dl, &err);
    ok(rc == SL_ERROR && used == 0, "error: consumed up to the bad byte");
    err = NULL;
    rc = sl_http_chunked_parse(&c, "0\r\n\r\n", 5, &used, &off, &dl, &err);
    ok(rc == SL_ERROR && err != NULL, "error is sticky");

    sl_http_chunked_init(&c);
    rc = sl_http_chunked_parse(&c, "", 0, &used, &off, &dl, &err);
    ok(rc == SL_AGAIN && used == 0 && dl == 0, "empty input: SL_AGAIN");
}


int
main(void)
{
    test_valid_get();
    test_valid_post_pipelined();
    test_line_ends_and_empty_lines();
    test_request_line();
    test_targets();
    test_limits();
    test_header_syntax();
    test_scan_positions();
    test_framing();
    test_host_connection_expect();
    test_find();
    test_incremental();
    test_chunked();
    done_testing();
}
