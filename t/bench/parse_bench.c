/* parse_bench.c -- ns per request head: sl_http_parse_head() against Debian's libhttp-parser
 * (nodejs http-parser 2.9) on the same bytes. http-parser runs as it would in a server: a
 * fresh parser per request and callbacks that record the method, URL and header spans.
 * Each case runs a few rounds of N parses; the best round is printed (least disturbed).
 *
 *   apt-get install -y libhttp-parser-dev
 *   gcc -std=gnu11 -O2 -Icore t/bench/parse_bench.c core/http_parse.c core/log.c \
 *       -o build/parse_bench -lhttp_parser
 *   ./build/parse_bench [N]          (N parses per round, default 1000000) */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <http_parser.h>

#include "sluice.h"
#include "http_parse.h"

#define ROUNDS  7

/* What an OpenAI SDK (python, httpx) sends for a chat completion: 400 bytes. */
static const char  req_openai[] =
    "POST /v1/chat/completions HTTP/1.1\r\n"
    "Host: gateway.example.com\r\n"
    "Accept-Encoding: gzip, deflate\r\n"
    "Connection: keep-alive\r\n"
    "Accept: application/json\r\n"
    "Content-Type: application/json\r\n"
    "User-Agent: OpenAI/Python 1.54.4\r\n"
    "X-Stainless-Lang: python\r\n"
    "X-Stainless-Package-Version: 1.54.4\r\n"
    "X-Stainless-OS: Linux\r\n"
    "X-Stainless-Arch: x64\r\n"
    "Authorization: Bearer sk-proj-4f1c2a9e8b7d6c5e4f3a2b1c0d9e8f7a\r\n"
    "Content-Length: 142\r\n"
    "\r\n";

/* A browser GET with a query string: 400 bytes. */
static const char  req_browser[] =
    "GET /v1/models?limit=20&order=desc HTTP/1.1\r\n"
    "Host: gateway.example.com\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    "Accept-Language: en-US,en;q=0.5\r\n"
    "Accept-Encoding: gzip, deflate, br, zstd\r\n"
    "Connection: keep-alive\r\n"
    "Cookie: session=3f2a9c81d4e7b6a5\r\n"
    "Upgrade-Insecure-Requests: 1\r\n"
    "Sec-Fetch-Dest: document\r\n"
    "\r\n";

/* What a server keeps from http-parser's callbacks. */
typedef struct {
    const char  *url;
    size_t       url_len;
    sl_http_header_t  headers[SL_HTTP_MAX_HEADERS];
    size_t       nheaders;
    int          in_value;
    int          done;
} hp_req_t;

static volatile size_t  sink;


static double
now_ns(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}


static int
on_url(http_parser *p, const char *at, size_t len)
{
    hp_req_t  *r = p->data;

    if (r->url == NULL) {
        r->url = at;
    }
    r->url_len += len;
    return 0;
}


static int
on_header_field(http_parser *p, const char *at, size_t len)
{
    hp_req_t  *r = p->data;

    /* a field after a value starts the next header; otherwise the name continues */
    if (r->in_value || r->nheaders == 0) {
        if (r->nheaders == SL_HTTP_MAX_HEADERS) {
            return 1;
        }
        r->headers[r->nheaders].name.data = at;
        r->headers[r->nheaders].name.len = 0;
        r->headers[r->nheaders].value.data = NULL;
        r->headers[r->nheaders].value.len = 0;
        r->nheaders++;
        r->in_value = 0;
    }
    r->headers[r->nheaders - 1].name.len += len;
    return 0;
}


static int
on_header_value(http_parser *p, const char *at, size_t len)
{
    hp_req_t  *r = p->data;

    if (r->headers[r->nheaders - 1].value.data == NULL) {
        r->headers[r->nheaders - 1].value.data = at;
    }
    r->headers[r->nheaders - 1].value.len += len;
    r->in_value = 1;
    return 0;
}


static int
on_headers_complete(http_parser *p)
{
    hp_req_t  *r = p->data;

    r->done = 1;
    return 0;
}


static double
bench_ours(const char *req, size_t len, long n)
{
    static sl_http_head_t  h;
    sl_http_limits_t       lim = { 8192, 32768 };
    size_t                 head_len, acc;
    int                    status;
    const char            *err;
    double                 t0, t, best;
    long                   i;
    int                    round;

    best = 1e300;
    for (round = 0; round < ROUNDS; round++) {
        acc = 0;
        t0 = now_ns();
        for (i = 0; i < n; i++) {
            if (sl_http_parse_head(req, len, &lim, &h, &head_len, &status, &err) != SL_OK) {
                fprintf(stderr, "sl_http_parse_head failed: %s\n", err);
                exit(1);
            }
            acc += head_len + h.nheaders + h.path.len;
        }
        t = (now_ns() - t0) / n;
        sink += acc;
        if (t < best) {
            best = t;
        }
    }

    return best;
}


static double
bench_http_parser(const char *req, size_t len, long n, int split_url)
{
    static hp_req_t               r;
    http_parser                   p;
    http_parser_settings          s;
    struct http_parser_url        u;
    size_t                        acc, got;
    double                        t0, t, best;
    long                          i;
    int                           round;

    memset(&s, 0, sizeof(s));
    s.on_url = on_url;
    s.on_header_field = on_header_field;
    s.on_header_value = on_header_value;
    s.on_headers_complete = on_headers_complete;

    best = 1e300;
    for (round = 0; round < ROUNDS; round++) {
        acc = 0;
        t0 = now_ns();
        for (i = 0; i < n; i++) {
            r.url = NULL;
            r.url_len = 0;
            r.nheaders = 0;
            r.in_value = 0;
            r.done = 0;
            http_parser_init(&p, HTTP_REQUEST);
            p.data = &r;
            got = http_parser_execute(&p, &s, req, len);
            if (got != len || !r.done || HTTP_PARSER_ERRNO(&p) != HPE_OK) {
                fprintf(stderr, "http_parser failed: %s\n",
                        http_errno_name(HTTP_PARSER_ERRNO(&p)));
                exit(1);
            }
            if (split_url) {
                /* what sl_http_parse_head gives for free: path and query */
                http_parser_url_init(&u);
                if (http_parser_parse_url(r.url, r.url_len, 0, &u) != 0) {
                    fprintf(stderr, "http_parser_parse_url failed\n");
                    exit(1);
                }
                acc += u.field_data[UF_PATH].len;
            }
            acc += r.nheaders + r.url_len + p.http_minor + http_should_keep_alive(&p);
        }
        t = (now_ns() - t0) / n;
        sink += acc;
        if (t < best) {
            best = t;
        }
    }

    return best;
}


static void
run(const char *name, const char *req, long n)
{
    size_t  len = strlen(req);
    double  ours, hp, hpu;

    ours = bench_ours(req, len, n);
    hp = bench_http_parser(req, len, n, 0);
    hpu = bench_http_parser(req, len, n, 1);

    printf("%-8s %4zu bytes  sl_http_parse_head %6.1f ns (%5.2f GB/s)   "
           "http_parser %6.1f ns (%5.2f GB/s)   http_parser+parse_url %6.1f ns\n",
           name, len, ours, len / ours, hp, len / hp, hpu);
}


int
main(int argc, char **argv)
{
    long  n;

    n = argc > 1 ? atol(argv[1]) : 1000000;
    if (n <= 0) {
        fprintf(stderr, "usage: %s [parses-per-round]\n", argv[0]);
        return 2;
    }

    printf("http_parser %lu.%lu.%lu, %ld parses per round, best of %d rounds\n",
           (http_parser_version() >> 16) & 255, (http_parser_version() >> 8) & 255,
           http_parser_version() & 255, n, ROUNDS);
    run("openai", req_openai, n);
    run("browser", req_browser, n);
    return (int) (sink & 0);
}
