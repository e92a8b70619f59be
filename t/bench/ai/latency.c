/* latency.c -- what a gateway adds to one AI request at concurrency 1, measured with one
 * clock. The program is both ends: the client (one keep-alive connection to --connect) and
 * the provider (listening on --listen, where the gateway's route points). Run it once with
 * --connect = the gateway and once with --connect = --listen (the same request sent
 * directly); the difference is the gateway's share.
 *
 *   chat mode:   client sends the request; the provider answers a JSON body at once; the
 *                time until the client has the whole response (rtt).
 *   stream mode: client sends the request; once the provider has it, it writes the response
 *                head and event 1 (ttfb: request sent -> event 1 at the client; first: event 1
 *                written -> at the client), then each next event only after the client has
 *                the previous one (gap: event written -> at the client), one HTTP chunk each,
 *                then the terminating chunk.
 *
 *   latency --mode chat|stream --listen PORT --connect PORT --path /v1/chat/completions
 *           --body FILE (request body) --reply FILE (chat: JSON; stream: SSE events)
 *           [-n ITERATIONS] [--warmup N] [--close 1 (stream: the provider closes its
 *           connection after each stream, so each stream starts on a new one)]
 *
 * Prints one line per measure: "<name> n=.. p50=.. p90=.. p99=.. max=.. (us)", and the number
 * of stalls (the client got nothing for STALL_MS while the provider had answered: the
 * iteration is dropped, counted and repeated on fresh connections). Blocking sockets with
 * poll(); every wait has a limit (exit 1 on a provider-side timeout, a protocol error or more
 * than MAX_STALLS stalls). */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#define MAX_UP      16
#define BUF_SIZE    (1 << 20)
#define WAIT_MS     5000
#define STALL_MS    1000
#define MAX_EVENTS  4096
#define MAX_STALLS  50

typedef struct {
    int     fd;
    int     continued;      /* 100 Continue sent for the request being read */
    char   *buf;
    size_t  len;
} up_conn_t;

/* incremental HTTP/1.1 response reader: head, then Content-Length or chunked body */
typedef struct {
    int     state;          /* 0 head, 1 length body, 2 chunk size, 3 chunk data, 4 chunk
                             * CRLF, 5 trailer, 6 done */
    char    head[8192];
    size_t  head_len;
    long    remaining;
    char    line[64];
    size_t  line_len;
    int     status;
    long    events;         /* "\n\n" seen in the decoded body */
    char    last;           /* last decoded body byte */
} resp_t;

static up_conn_t    ups[MAX_UP];
static int          n_ups;
static int          listen_fd = -1;
static int          client_fd = -1;
static int          connect_port;
static long         cur_iter;       /* for error messages */
static long         cur_event;


static void
die(const char *fmt, ...)
{
    va_list  ap;

    va_start(ap, fmt);
    fprintf(stderr, "latency (iteration %ld, event %ld): ", cur_iter, cur_event);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}


static double
now_us(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}


static char *
slurp(const char *path, size_t *len)
{
    FILE  *f = fopen(path, "rb");
    char  *s;
    long   n;

    if (f == NULL) {
        die("cannot open %s", path);
    }

    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    s = malloc(n + 1);
    if (s == NULL || fread(s, 1, n, f) != (size_t) n) {
        die("cannot read %s", path);
    }

    s[n] = '\0';
    fclose(f);
    *len = n;
    return s;
}


static void
nodelay(int fd)
{
    int  one = 1;

    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}


static void
write_all(int fd, const char *p, size_t n)
{
    ssize_t  w;

    while (n > 0) {
        w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }

            die("write: %s", strerror(errno));
        }

        p += w;
        n -= w;
    }
}


static void
client_connect(void)
{
    struct sockaddr_in  sa;

    client_fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons(connect_port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(client_fd, (struct sockaddr *) &sa, sizeof(sa)) != 0) {
        die("connect to port %d: %s", connect_port, strerror(errno));
    }

    nodelay(client_fd);
}


static void
up_accept(void)
{
    int  fd = accept(listen_fd, NULL, NULL);

    if (fd < 0) {
        die("accept: %s", strerror(errno));
    }

    if (n_ups == MAX_UP) {
        die("more than %d provider connections", MAX_UP);
    }

    nodelay(fd);
    ups[n_ups].fd = fd;
    ups[n_ups].buf = malloc(BUF_SIZE);
    ups[n_ups].len = 0;
    ups[n_ups].continued = 0;
    n_ups++;
}


static void
up_close(int i)
{
    close(ups[i].fd);
    free(ups[i].buf);
    ups[i] = ups[--n_ups];
}


/* A complete request in c->buf? Returns its length, 0 if not yet. Answers Expect once. */
static size_t
up_request_len(up_conn_t *c)
{
    char    *end, *h, *eol;
    size_t   head;
    long     cl = 0;
    int      expect = 0;

    c->buf[c->len] = '\0';
    end = strstr(c->buf, "\r\n\r\n");
    if (end == NULL) {
        return 0;
    }

    head = end + 4 - c->buf;
    for (h = c->buf; h < end; h = eol + 2) {
        eol = strstr(h, "\r\n");
        if (strncasecmp(h, "content-length:", 15) == 0) {
            cl = strtol(h + 15, NULL, 10);
        } else if (strncasecmp(h, "expect:", 7) == 0) {
            expect = 1;
        } else if (strncasecmp(h, "transfer-encoding:", 18) == 0) {
            die("chunked request bodies are not handled");
        }
    }

    if (expect && !c->continued && c->len < head + cl) {
        write_all(c->fd, "HTTP/1.1 100 Continue\r\n\r\n", 25);
        c->continued = 1;
    }

    if (c->len < head + cl) {
        return 0;
    }

    c->continued = 0;
    return head + cl;
}


/* Waits for a whole request on any provider connection; returns its index. */
static int
up_wait_request(void)
{
    struct pollfd  pfd[MAX_UP + 1];
    double         deadline = now_us() + WAIT_MS * 1000.0;
    int            i, n;
    ssize_t        r;
    size_t         len;

    for ( ;; ) {
        for (i = 0; i < n_ups; i++) {
            len = up_request_len(&ups[i]);
            if (len > 0) {
                memmove(ups[i].buf, ups[i].buf + len, ups[i].len - len);
                ups[i].len -= len;
                return i;
            }
        }

        n = 0;
        for (i = 0; i < n_ups; i++) {
            pfd[n].fd = ups[i].fd;
            pfd[n++].events = POLLIN;
        }

        pfd[n].fd = listen_fd;
        pfd[n++].events = POLLIN;
        if (now_us() > deadline) {
            die("timed out waiting for the request at the provider");
        }

        if (poll(pfd, n, WAIT_MS) <= 0) {
            continue;
        }

        if (pfd[n - 1].revents & POLLIN) {
            up_accept();
            continue;
        }

        for (i = n_ups - 1; i >= 0; i--) {
            if (!(pfd[i].revents & (POLLIN | POLLHUP | POLLERR))) {
                continue;
            }

            r = read(ups[i].fd, ups[i].buf + ups[i].len, BUF_SIZE - 1 - ups[i].len);
            if (r <= 0) {
                up_close(i);
                continue;
            }

            ups[i].len += r;
        }
    }
}


static void
resp_reset(resp_t *rs)
{
    memset(rs, 0, sizeof(*rs));
}


static void
body_bytes(resp_t *rs, const char *p, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        if (p[i] == '\n' && rs->last == '\n') {
            rs->events++;
            rs->last = 0;
            continue;
        }

        rs->last = p[i];
    }
}


/* Feeds bytes read from the client socket to the response reader. */
static void
resp_feed(resp_t *rs, const char *p, size_t n)
{
    size_t  take;
    char   *end;

    while (n > 0 && rs->state != 6) {
        switch (rs->state) {
        case 0:
            take = n < sizeof(rs->head) - 1 - rs->head_len ? n : sizeof(rs->head) - 1
                                                                 - rs->head_len;
            memcpy(rs->head + rs->head_len, p, take);
            rs->head_len += take;
            rs->head[rs->head_len] = '\0';
            end = strstr(rs->head, "\r\n\r\n");
            if (end == NULL) {
                if (rs->head_len == sizeof(rs->head) - 1) {
                    die("response head too long");
                }

                p += take;
                n -= take;
                break;
            }

            take = take - (rs->head_len - (end + 4 - rs->head));
            p += take;
            n -= take;
            rs->status = atoi(rs->head + 9);
            if (strcasestr(rs->head, "\r\ntransfer-encoding: chunked")) {
                rs->state = 2;
            } else {
                end = strcasestr(rs->head, "\r\ncontent-length:");
                if (end == NULL) {
                    die("response without length: %s", rs->head);
                }

                rs->remaining = strtol(end + 17, NULL, 10);
                rs->state = rs->remaining > 0 ? 1 : 6;
            }

            break;

        case 1:
        case 3:
            take = (long) n < rs->remaining ? n : (size_t) rs->remaining;
            body_bytes(rs, p, take);
            p += take;
            n -= take;
            rs->remaining -= take;
            if (rs->remaining == 0) {
                rs->state = rs->state == 1 ? 6 : 4;
            }

            break;

        case 2:
        case 4:
        case 5:
            rs->line[rs->line_len < sizeof(rs->line) - 1 ? rs->line_len++ : rs->line_len] = *p;
            p++;
            n--;
            if (rs->line_len < 2 || rs->line[rs->line_len - 1] != '\n') {
                break;
            }

            rs->line[rs->line_len] = '\0';
            if (rs->state == 2) {
                rs->remaining = strtol(rs->line, NULL, 16);
                rs->state = rs->remaining > 0 ? 3 : 5;
            } else if (rs->state == 4) {
                rs->state = 2;
            } else if (rs->line_len == 2) {
                rs->state = 6;              /* the empty line after the last chunk */
            }

            rs->line_len = 0;
            break;
        }
    }
}


/* Reads from the client until `events` events are in (-1: the whole response). Returns 0, or
 * -1 when nothing more came for STALL_MS: a stall, counted and reported by the caller (the
 * gateway held a response back), which then starts afresh on new connections. */
static int
client_wait(resp_t *rs, long events)
{
    static char    buf[65536];
    struct pollfd  pfd;
    double         deadline = now_us() + STALL_MS * 1000.0;
    ssize_t        r;

    while (events >= 0 ? rs->events < events : rs->state != 6) {
        pfd.fd = client_fd;
        pfd.events = POLLIN;
        if (now_us() > deadline) {
            fprintf(stderr, "latency: stall at iteration %ld, event %ld: the client got "
                    "nothing for %d ms (status %d, %ld events)\n", cur_iter, cur_event,
                    STALL_MS, rs->status, rs->events);
            return -1;
        }

        if (poll(&pfd, 1, STALL_MS) <= 0) {
            continue;
        }

        r = read(client_fd, buf, sizeof(buf));
        if (r <= 0) {
            die("the client connection closed (status %d)", rs->status);
        }

        deadline = now_us() + STALL_MS * 1000.0;

        resp_feed(rs, buf, r);
    }

    return 0;
}


static int
cmp_double(const void *a, const void *b)
{
    double  x = *(const double *) a, y = *(const double *) b;

    return x < y ? -1 : x > y;
}


static void
report(const char *name, double *v, long n)
{
    if (n == 0) {
        return;
    }

    qsort(v, n, sizeof(double), cmp_double);
    printf("%s n=%ld p50=%.1f p90=%.1f p99=%.1f max=%.1f us\n", name, n, v[n / 2],
           v[(long) (n * 0.9)], v[(long) (n * 0.99)], v[n - 1]);
}


int
main(int argc, char **argv)
{
    const char          *mode = "chat", *path = "/v1/chat/completions";
    const char          *body_file = NULL, *reply_file = NULL;
    char                *body, *reply, *req, *ev_start[MAX_EVENTS], *p, *q;
    size_t               body_len, reply_len, req_len, ev_len[MAX_EVENTS];
    long                 iters = 1000, warmup = 100, n_ev = 0, i, k, n_gap = 0, stalls = 0;
    int                  listen_port = 0, stream, u, one = 1, close_each = 0;
    struct sockaddr_in   sa;
    double              *rtt, *ttfb, *first, *gap, *reqlat, t0, t1;
    char                 head[256], *first_buf;
    resp_t               rs;

    for (i = 1; i < argc; i++) {
        if (i + 1 >= argc) {
            die("option %s needs a value", argv[i]);
        }

        if (strcmp(argv[i], "--mode") == 0) {
            mode = argv[++i];
        } else if (strcmp(argv[i], "--listen") == 0) {
            listen_port = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--connect") == 0) {
            connect_port = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--path") == 0) {
            path = argv[++i];
        } else if (strcmp(argv[i], "--body") == 0) {
            body_file = argv[++i];
        } else if (strcmp(argv[i], "--reply") == 0) {
            reply_file = argv[++i];
        } else if (strcmp(argv[i], "-n") == 0) {
            iters = atol(argv[++i]);
        } else if (strcmp(argv[i], "--warmup") == 0) {
            warmup = atol(argv[++i]);
        } else if (strcmp(argv[i], "--close") == 0) {
            close_each = atoi(argv[++i]);
        } else {
            die("unknown option %s", argv[i]);
        }
    }

    if (!listen_port || !connect_port || !body_file || !reply_file || iters <= 0) {
        die("usage: latency --mode chat|stream --listen PORT --connect PORT --body FILE "
            "--reply FILE [--path P] [-n N] [--warmup N] [--close 0|1]");
    }

    stream = strcmp(mode, "stream") == 0;
    body = slurp(body_file, &body_len);
    reply = slurp(reply_file, &reply_len);

    req = malloc(body_len + 512);
    req_len = sprintf(req, "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                      "application/json\r\nAuthorization: Bearer sk-bench\r\n"
                      "Content-Length: %zu\r\n\r\n", path, body_len);
    memcpy(req + req_len, body, body_len);
    req_len += body_len;

    if (stream) {
        /* the reply file is SSE: split it at blank lines, one HTTP chunk per event */
        for (p = reply; p < reply + reply_len && n_ev < MAX_EVENTS; p = q + 2) {
            q = strstr(p, "\n\n");
            if (q == NULL) {
                break;
            }

            /* kept as one HTTP chunk, "<hex>\r\n<event>\r\n", written in one call */
            ev_len[n_ev] = q + 2 - p;
            ev_start[n_ev] = malloc(ev_len[n_ev] + 32);
            k = sprintf(ev_start[n_ev], "%zx\r\n", ev_len[n_ev]);
            memcpy(ev_start[n_ev] + k, p, ev_len[n_ev]);
            memcpy(ev_start[n_ev] + k + ev_len[n_ev], "\r\n", 2);
            ev_len[n_ev] += k + 2;
            n_ev++;
        }

        if (n_ev == 0) {
            die("no events in %s", reply_file);
        }
    }

    listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons(listen_port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listen_fd, (struct sockaddr *) &sa, sizeof(sa)) != 0 || listen(listen_fd, 64)) {
        die("listen on %d: %s", listen_port, strerror(errno));
    }

    first_buf = malloc(reply_len + 512);
    rtt = calloc(iters, sizeof(double));
    ttfb = calloc(iters, sizeof(double));
    first = calloc(iters, sizeof(double));
    reqlat = calloc(iters, sizeof(double));
    gap = calloc(iters * (n_ev + 1), sizeof(double));
    client_connect();

    for (i = -warmup; i < iters; i++) {
        cur_iter = i;
        cur_event = 0;
        resp_reset(&rs);
        t0 = now_us();
        write_all(client_fd, req, req_len);
        u = up_wait_request();
        t1 = now_us();
        if (i >= 0) {
            reqlat[i] = t1 - t0;
        }

        if (!stream) {
            k = sprintf(head, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        "X-Request-Id: bench\r\nContent-Length: %zu\r\n\r\n", reply_len);
            write_all(ups[u].fd, head, k);
            write_all(ups[u].fd, reply, reply_len);
            if (client_wait(&rs, -1) != 0) {
                goto stalled;
            }

            if (i >= 0) {
                rtt[i] = now_us() - t0;
            }

        } else {
            t1 = now_us();
            k = sprintf(head, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                        "X-Request-Id: bench\r\nTransfer-Encoding: chunked\r\n%s\r\n",
                        close_each ? "Connection: close\r\n" : "");
            memcpy(first_buf, head, k);
            memcpy(first_buf + k, ev_start[0], ev_len[0]);
            write_all(ups[u].fd, first_buf, k + ev_len[0]);
            if (client_wait(&rs, 1) != 0) {
                goto stalled;
            }

            if (i >= 0) {
                ttfb[i] = now_us() - t0;
                first[i] = now_us() - t1;
            }

            for (k = 1; k < n_ev; k++) {
                cur_event = k;
                t1 = now_us();
                write_all(ups[u].fd, ev_start[k], ev_len[k]);
                if (client_wait(&rs, k + 1) != 0) {
                    goto stalled;
                }

                if (i >= 0) {
                    gap[n_gap++] = now_us() - t1;
                }
            }

            write_all(ups[u].fd, "0\r\n\r\n", 5);
            if (close_each) {
                up_close(u);
            }

            if (client_wait(&rs, -1) != 0) {
                goto stalled;
            }

            if (i >= 0) {
                rtt[i] = now_us() - t0;
            }
        }

        if (rs.status != 200) {
            die("status %d from port %d", rs.status, connect_port);
        }

        continue;

    stalled:
        /* not measured: start again on fresh connections, the iteration is repeated */
        stalls++;
        if (stalls > MAX_STALLS) {
            die("%ld stalls: giving up", stalls);
        }

        close(client_fd);
        while (n_ups > 0) {
            up_close(n_ups - 1);
        }

        client_connect();
        i--;
    }

    printf("stalls n=%ld (responses the gateway held back for %d ms; repeated)\n", stalls,
           STALL_MS);
    report("request", reqlat, iters);
    report("rtt", rtt, iters);
    if (stream) {
        report("ttfb", ttfb, iters);
        report("first", first, iters);
        report("gap", gap, n_gap);
    }

    return 0;
}
