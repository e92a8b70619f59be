/* upstream_h1.c -- the native HTTP/1.1 engine of upstream.c: plain http to an IP literal,
 * which is what a gateway proxies to on its hot path (sidecars, local model servers, mocks,
 * anything behind a load balancer address).
 *
 * Why not libcurl for these: a profile of a proxied request put a third of the worker's
 * instructions in curl (URL parsing, a printf-built request, two poll() liveness checks per
 * reuse, socket callbacks re-registering the fd with epoll twice per request). Here a request
 * on a pooled connection costs one sendmsg() and one recv(), and the fd stays registered for
 * reading for its whole life, so no epoll_ctl on the hot path.
 *
 * Connections are pooled per peer address: idle ones sit on the peer's list (the most recent
 * is reused first) and on one list for the worker (the oldest is closed first when the pool is
 * full, and by a sweep once they passed their idle age). An idle connection that becomes
 * readable was closed by the peer (or sent garbage) and is dropped. A reused connection that
 * fails before any response byte came (the peer closed it while we sent) is retried once on a
 * fresh connection, as curl and nginx do. Response heads are parsed by upstream_resp.c, chunked
 * bodies by http_parse.c's decoder; body bytes go to on_body straight from the read buffer. */
#include "upstream.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "conf.h"
#include "upstream_resp.h"
#include "worker.h"

#define RBUF_SIZE    16384
#define MAX_HEAD     65536
#define NBUCKETS     256

enum {
    M_NONE = 0,             /* no body (HEAD, 204, 304) */
    M_LENGTH,               /* Content-Length */
    M_CHUNKED,
    M_CLOSE,                /* until the peer closes */
};

typedef struct peer_s  peer_t;
typedef struct engine_s  engine_t;

struct peer_s {
    peer_t                  *next;          /* hash chain */
    struct sockaddr_storage  sa;
    socklen_t                salen;
    sl_h1_conn_t            *idle;          /* most recently used first */
    char                     name[64];      /* "ip:port", for messages */
};

struct sl_h1_conn_s {
    engine_t       *e;
    int             fd;
    struct event   *rev;                    /* read, registered for the connection's life */
    struct event   *wev;                    /* write, while connecting or a write is pending */
    peer_t         *peer;
    sl_h1_conn_t   *prev, *next;            /* the peer's idle list */
    sl_h1_conn_t   *gprev, *gnext;          /* the engine's idle list, oldest first */
    sl_transfer_t  *t;                      /* the transfer it carries, NULL when idle */
    double          idle_since;
    double          max_idle;
    unsigned        requests;               /* responses completed on it */
    unsigned        connecting:1;
    unsigned        reading:1;              /* rev is added */
    unsigned        writing:1;              /* wev is added */
    char           *rbuf;
    size_t          rcap, rpos, rend;
};

struct engine_s {
    sl_upstream_t  *up;
    peer_t         *buckets[NBUCKETS];
    sl_h1_conn_t   *ghead, *gtail;
    size_t          nidle;
    struct event   *sweep;
    sl_up_resp_t    resp;                   /* parse scratch (one worker, one at a time) */
};


static void on_read(evutil_socket_t fd, short what, void *arg);
static void on_write(evutil_socket_t fd, short what, void *arg);
static void process(sl_transfer_t *t);


static engine_t *
engine(sl_transfer_t *t)
{
    return t->up->h1;
}


static const sl_conf_t *
conf_of(engine_t *e)
{
    return e->up->conf;
}


/* ---- the pool ---- */

static void
unlink_idle(engine_t *e, sl_h1_conn_t *c)
{
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        c->peer->idle = c->next;
    }

    if (c->next != NULL) {
        c->next->prev = c->prev;
    }

    if (c->gprev != NULL) {
        c->gprev->gnext = c->gnext;
    } else {
        e->ghead = c->gnext;
    }

    if (c->gnext != NULL) {
        c->gnext->gprev = c->gprev;
    } else {
        e->gtail = c->gprev;
    }

    c->prev = c->next = c->gprev = c->gnext = NULL;
    e->nidle--;
}


static void
close_conn(engine_t *e, sl_h1_conn_t *c)
{
    if (c->t == NULL) {
        unlink_idle(e, c);
    }

    event_free(c->rev);
    event_free(c->wev);
    close(c->fd);
    free(c->rbuf);
    free(c);
}


static void
on_sweep(evutil_socket_t fd, short what, void *arg)
{
    engine_t      *e = arg;
    sl_h1_conn_t  *c, *next;
    double         now = sl_worker_update_time();

    SL_UNUSED(fd);
    SL_UNUSED(what);

    for (c = e->ghead; c != NULL; c = next) {
        next = c->gnext;
        if (now - c->idle_since >= c->max_idle) {
            close_conn(e, c);
        }
    }

    if (e->nidle == 0) {
        event_del(e->sweep);
    }
}


/* the transfer is done with c and the response was complete: keep it or close it */
static void
put_conn(engine_t *e, sl_h1_conn_t *c, sl_transfer_t *t, int keep)
{
    const sl_conf_t  *conf = conf_of(e);
    peer_t           *p = c->peer;

    c->t = NULL;
    c->requests++;
    if (!keep || (conf->up_keepalive_requests > 0
                  && c->requests >= (unsigned) conf->up_keepalive_requests)
        || conf->up_keepalive_pool <= 0)
    {
        c->t = t;                   /* not idle: close_conn must not unlink it */
        close_conn(e, c);
        return;
    }

    if (!c->reading) {
        event_add(c->rev, NULL);
        c->reading = 1;
    }

    if (c->writing) {
        event_del(c->wev);
        c->writing = 0;
    }

    c->rpos = c->rend = 0;
    c->idle_since = sl_worker_now();
    c->max_idle = t->keepalive_timeout > 0 ? t->keepalive_timeout : conf->up_keepalive_timeout;

    c->next = p->idle;
    if (p->idle != NULL) {
        p->idle->prev = c;
    }

    p->idle = c;
    c->gprev = e->gtail;
    if (e->gtail != NULL) {
        e->gtail->gnext = c;
    } else {
        e->ghead = c;
    }

    e->gtail = c;
    if (e->nidle++ == 0) {
        struct timeval  tv = { 1, 0 };
        event_add(e->sweep, &tv);
    }

    if (e->nidle > (size_t) conf->up_keepalive_pool) {
        close_conn(e, e->ghead);
    }
}


static peer_t *
find_peer(engine_t *e, const struct sockaddr_storage *sa, socklen_t salen, const sl_str_t *name)
{
    const unsigned char  *b = (const unsigned char *) sa;
    unsigned              h = 0;
    socklen_t             i;
    peer_t               *p;

    for (i = 0; i < salen; i++) {
        h = h * 31 + b[i];
    }

    h %= NBUCKETS;
    for (p = e->buckets[h]; p != NULL; p = p->next) {
        if (p->salen == salen && memcmp(&p->sa, sa, salen) == 0) {
            return p;
        }
    }

    p = sl_xcalloc(1, sizeof(peer_t));
    memcpy(&p->sa, sa, salen);
    p->salen = salen;
    snprintf(p->name, sizeof(p->name), "%.*s", (int) sl_min(name->len, 63), name->data);
    p->next = e->buckets[h];
    e->buckets[h] = p;
    return p;
}


void *
sl_up_h1_new(sl_upstream_t *up)
{
    engine_t  *e = sl_xcalloc(1, sizeof(engine_t));

    e->up = up;
    e->sweep = event_new(up->base, -1, EV_PERSIST, on_sweep, e);
    return e;
}


void
sl_up_h1_free(void *state)
{
    engine_t  *e = state;
    peer_t    *p, *next;
    size_t     i;

    while (e->ghead != NULL) {
        close_conn(e, e->ghead);
    }

    for (i = 0; i < NBUCKETS; i++) {
        for (p = e->buckets[i]; p != NULL; p = next) {
            next = p->next;
            free(p);
        }
    }

    event_free(e->sweep);
    free(e);
}


/* ---- the request ---- */

/* "http://ip[:port]/path?query": the address, the authority and the path; SL_DECLINED for
 * anything else (https, host names, user info), which curl handles */
static int
parse_url(const sl_str_t *url, struct sockaddr_storage *sa, socklen_t *salen,
          sl_str_t *authority, sl_str_t *path)
{
    const char  *p = url->data, *end = url->data + url->len, *a, *ae, *hs, *he, *port = NULL;
    char         host[64];
    long         pn = 80;

    if (url->len < 8 || strncasecmp(p, "http://", 7) != 0) {
        return SL_DECLINED;
    }

    a = p + 7;
    for (ae = a; ae < end && *ae != '/' && *ae != '?' && *ae != '#'; ae++) {
        if (*ae == '@') {
            return SL_DECLINED;
        }
    }

    authority->data = a;
    authority->len = (size_t) (ae - a);

    if (a < ae && *a == '[') {
        hs = a + 1;
        he = memchr(hs, ']', (size_t) (ae - hs));
        if (he == NULL) {
            return SL_DECLINED;
        }

        if (he + 1 < ae) {
            if (he[1] != ':') {
                return SL_DECLINED;
            }

            port = he + 2;
        }

    } else {
        hs = a;
        he = memchr(a, ':', (size_t) (ae - a));
        if (he != NULL) {
            port = he + 1;
        } else {
            he = ae;
        }
    }

    if (he - hs <= 0 || (size_t) (he - hs) >= sizeof(host)) {
        return SL_DECLINED;
    }

    if (port != NULL) {
        if (port == ae || ae - port > 5) {
            return SL_DECLINED;
        }

        for (pn = 0; port < ae; port++) {
            if (*port < '0' || *port > '9') {
                return SL_DECLINED;
            }

            pn = pn * 10 + (*port - '0');
        }

        if (pn < 1 || pn > 65535) {
            return SL_DECLINED;
        }
    }

    memcpy(host, hs, (size_t) (he - hs));
    host[he - hs] = '\0';
    memset(sa, 0, sizeof(*sa));

    if (*a == '[') {
        struct sockaddr_in6  *s6 = (struct sockaddr_in6 *) sa;
        if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1) {
            return SL_DECLINED;
        }

        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t) pn);
        *salen = sizeof(*s6);

    } else {
        struct sockaddr_in  *s4 = (struct sockaddr_in *) sa;
        if (inet_pton(AF_INET, host, &s4->sin_addr) != 1) {
            return SL_DECLINED;
        }

        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t) pn);
        *salen = sizeof(*s4);
    }

    /* the path: from the first '/' or '?', without a fragment */
    path->data = ae;
    path->len = (size_t) (end - ae);
    he = memchr(ae, '#', (size_t) (end - ae));
    if (he != NULL) {
        path->len = (size_t) (he - ae);
    }

    /* "http://h:80" names the default port: Host carries no port then (what curl sends) */
    if (pn == 80 && port != NULL) {
        authority->len -= 3;
    }

    return SL_OK;
}


static void
grow(sl_transfer_t *t, size_t n)
{
    t->wcap = sl_max(t->wcap * 2, t->wlen + n + 256);
    t->wbuf = sl_xrealloc(t->wbuf, t->wcap);
}


static inline void
put(sl_transfer_t *t, const char *s, size_t n)
{
    if (t->wlen + n > t->wcap) {
        grow(t, n);
    }

    memcpy(t->wbuf + t->wlen, s, n);
    t->wlen += n;
}


#define PUT_LIT(t, s)  put((t), (s), sizeof(s) - 1)


static int
is_method(const sl_str_t *m, const char *s, size_t n)
{
    return m->len == n && memcmp(m->data, s, n) == 0;
}


/* the request head into t->wbuf: request line, Host, the fields as given (less the ones
 * that frame the message, which are ours to set), Content-Length, Connection */
static void
build_head(sl_transfer_t *t, const sl_str_t *authority, const sl_str_t *path)
{
    sl_str_t         m = t->method;
    const sl_hdr_t  *h;
    size_t           i;
    int              has_host = 0, n;
    char             num[32];

    if (m.len == 0) {
        m.data = t->has_body ? "POST" : "GET";
        m.len = strlen(m.data);
    }

    t->head_req = is_method(&m, "HEAD", 4);
    t->wlen = 0;
    put(t, m.data, m.len);
    PUT_LIT(t, " ");
    if (path->len == 0 || path->data[0] == '?') {
        PUT_LIT(t, "/");
    }

    put(t, path->data, path->len);
    PUT_LIT(t, " HTTP/1.1\r\nHost: ");

    if (t->host.len > 0) {
        put(t, t->host.data, t->host.len);
        has_host = 1;
    } else {
        for (i = 0; i < t->req_headers.n; i++) {
            h = &t->req_headers.items[i];
            if (sl_hdr_is(&h->name, "host", 4)) {
                put(t, h->value.data, h->value.len);
                has_host = 1;
                break;
            }
        }
    }

    if (!has_host) {
        put(t, authority->data, authority->len);
    }

    PUT_LIT(t, "\r\n");

    for (i = 0; i < t->req_headers.n; i++) {
        h = &t->req_headers.items[i];
        switch (h->name.len) {
        case 0:
            continue;
        case 4:
            if (sl_hdr_is(&h->name, "host", 4)) {
                continue;
            }
            break;
        case 10:
            if (sl_hdr_is(&h->name, "connection", 10)) {
                continue;
            }
            break;
        case 14:
            if (sl_hdr_is(&h->name, "content-length", 14)) {
                continue;
            }
            break;
        case 17:
            if (sl_hdr_is(&h->name, "transfer-encoding", 17)) {
                continue;
            }
            break;
        }

        put(t, h->name.data, h->name.len);
        PUT_LIT(t, ": ");
        put(t, h->value.data, h->value.len);
        PUT_LIT(t, "\r\n");
    }

    if (t->has_body || is_method(&m, "POST", 4) || is_method(&m, "PUT", 3)
        || is_method(&m, "PATCH", 5))
    {
        n = snprintf(num, sizeof(num), "Content-Length: %zu\r\n", t->has_body ? t->body_len : 0);
        put(t, num, (size_t) n);
    }

    if (!t->keepalive) {
        PUT_LIT(t, "Connection: close\r\n");
    }

    PUT_LIT(t, "\r\n");
}


/* ends the transfer with an error; fmt has two %s: what, then the peer's address */
static void
fail(sl_transfer_t *t, int status, const char *fmt, const char *what)
{
    if (t->done) {
        return;
    }

    snprintf(t->errbuf, sizeof(t->errbuf), fmt, what,
             t->conn != NULL ? t->conn->peer->name : "upstream");
    t->error = t->errbuf;
    sl_up_h1_stop(t);
    sl_transfer_finish(t, status);
}


/* a fresh connection to the peer: SL_OK (maybe still connecting) or SL_ERROR with errno */
static int
connect_peer(engine_t *e, sl_transfer_t *t, peer_t *p)
{
    sl_h1_conn_t  *c;
    int            fd, one = 1;

    fd = socket(p->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return SL_ERROR;
    }

    (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    if (connect(fd, (struct sockaddr *) &p->sa, p->salen) != 0 && errno != EINPROGRESS) {
        int  err = errno;
        close(fd);
        errno = err;
        return SL_ERROR;
    }

    c = sl_xcalloc(1, sizeof(sl_h1_conn_t));
    c->e = e;
    c->fd = fd;
    c->peer = p;
    c->t = t;
    c->connecting = 1;
    c->rcap = RBUF_SIZE;
    c->rbuf = sl_xmalloc(c->rcap);
    c->rev = event_new(e->up->base, fd, EV_READ | EV_PERSIST, on_read, c);
    c->wev = event_new(e->up->base, fd, EV_WRITE | EV_PERSIST, on_write, c);
    event_add(c->rev, NULL);
    event_add(c->wev, NULL);
    c->reading = 1;
    c->writing = 1;
    t->conn = c;
    return SL_OK;
}


/* sends what is left of head + body: SL_OK all out, SL_AGAIN wait, SL_ERROR (errno) */
static int
send_request(sl_transfer_t *t)
{
    sl_h1_conn_t   *c = t->conn;
    struct iovec    iov[2];
    struct msghdr   msg;
    size_t          total = t->wlen + (t->has_body ? t->body_len : 0);
    ssize_t         n;
    int             cnt;

    while (t->woff < total) {
        cnt = 0;
        if (t->woff < t->wlen) {
            iov[cnt].iov_base = t->wbuf + t->woff;
            iov[cnt].iov_len = t->wlen - t->woff;
            cnt++;
        }

        if (t->has_body && t->body_len > 0) {
            size_t  off = t->woff > t->wlen ? t->woff - t->wlen : 0;
            iov[cnt].iov_base = (char *) t->body + off;
            iov[cnt].iov_len = t->body_len - off;
            cnt++;
        }

        memset(&msg, 0, sizeof(msg));
        msg.msg_iov = iov;
        msg.msg_iovlen = (size_t) cnt;
        n = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }

            return errno == EAGAIN || errno == EWOULDBLOCK ? SL_AGAIN : SL_ERROR;
        }

        t->woff += (size_t) n;
        t->last_io = sl_worker_now();
    }

    return SL_OK;
}


static int retry(sl_transfer_t *t);


/* writes the request and arranges what comes next */
static void
do_send(sl_transfer_t *t)
{
    sl_h1_conn_t  *c = t->conn;
    int            rc = send_request(t);

    if (rc == SL_OK) {
        t->sent = 1;
        t->last_io = sl_worker_now();
        if (c->writing) {
            event_del(c->wev);
            c->writing = 0;
        }

        return;
    }

    if (rc == SL_AGAIN) {
        if (!c->writing) {
            event_add(c->wev, NULL);
            c->writing = 1;
        }

        return;
    }

    if (t->got_bytes) {
        /* the upstream answered before taking the whole body (a 413, say): read on */
        t->sent = 1;
        t->keep = 0;
        if (c->writing) {
            event_del(c->wev);
            c->writing = 0;
        }

        return;
    }

    if ((errno == EPIPE || errno == ECONNRESET) && c->requests > 0 && !t->retried) {
        retry(t);
        return;
    }

    fail(t, 502, "send() failed (%s) while sending the request to %s", strerror(errno));
}


/* a pooled connection died under us before any byte of the answer: once more on a new one */
static int
retry(sl_transfer_t *t)
{
    engine_t  *e = engine(t);
    peer_t    *p = t->conn->peer;

    t->conn->t = t;
    close_conn(e, t->conn);
    t->conn = NULL;
    t->retried = 1;
    t->woff = 0;
    t->sent = 0;

    if (connect_peer(e, t, p) != SL_OK) {
        snprintf(t->errbuf, sizeof(t->errbuf), "connect() to %s failed (%s)", p->name,
                 strerror(errno));
        t->error = t->errbuf;
        sl_transfer_finish(t, 502);
        return SL_ERROR;
    }

    return SL_OK;
}


int
sl_up_h1_start(sl_transfer_t *t, const char **err)
{
    engine_t                 *e = engine(t);
    struct sockaddr_storage   sa;
    socklen_t                 salen;
    sl_str_t                  authority, path;
    peer_t                   *p;
    sl_h1_conn_t             *c;
    double                    now = sl_worker_now();

    if (t->http2 || parse_url(&t->url, &sa, &salen, &authority, &path) != SL_OK) {
        return SL_DECLINED;
    }

    t->native = 1;
    t->keep = 1;
    t->woff = 0;
    build_head(t, &authority, &path);
    p = find_peer(e, &sa, salen, &authority);

    /* a pooled connection, the most recently used one that is still young enough */
    while ((c = p->idle) != NULL) {
        unlink_idle(e, c);
        if (now - c->idle_since < c->max_idle) {
            c->t = t;
            t->conn = c;
            do_send(t);             /* a failure here is reported from the loop (upstream.c) */
            return SL_OK;
        }

        c->t = t;
        close_conn(e, c);
    }

    if (connect_peer(e, t, p) != SL_OK) {
        snprintf(t->errbuf, sizeof(t->errbuf), "connect() to %s failed (%s)", p->name,
                 strerror(errno));
        *err = t->errbuf;
        return SL_ERROR;
    }

    return SL_OK;
}


/* ---- the response ---- */

static void
complete(sl_transfer_t *t)
{
    engine_t      *e = engine(t);
    sl_h1_conn_t  *c = t->conn;
    int            keep = t->keep;

    if (c->rpos != c->rend || t->woff < t->wlen + (t->has_body ? t->body_len : 0)) {
        keep = 0;                   /* bytes after the response, or the request not all out */
    }

    t->conn = NULL;
    put_conn(e, c, t, keep);
    sl_transfer_finish(t, SL_OK);
}


/* hands body bytes to on_body: SL_OK taken, SL_AGAIN paused (kept for resume) */
static int
deliver(sl_transfer_t *t)
{
    sl_h1_conn_t  *c = t->conn;
    int            rc;

    if (t->pend_len == 0) {
        return SL_OK;
    }

    rc = t->on_body(t, c->rbuf + t->pend_off, t->pend_len);

    if (rc == SL_AGAIN) {
        /* reading stops only if the socket turns readable meanwhile (on_read): a response
         * already whole in the buffer then costs no epoll_ctl to pause and resume */
        t->paused = 1;
        return SL_AGAIN;
    }

    t->pend_len = 0;
    return SL_OK;
}


/* the body bytes in the buffer, one span at a time */
static void
process_body(sl_transfer_t *t)
{
    sl_h1_conn_t  *c = t->conn;
    size_t         avail, consumed, off, len;
    const char    *err;
    int            rc;

    for ( ;; ) {
        if (deliver(t) != SL_OK || t->done) {
            return;
        }

        if (t->complete) {
            complete(t);
            return;
        }

        avail = c->rend - c->rpos;
        if (avail == 0) {
            c->rpos = c->rend = 0;
            return;
        }

        switch (t->mode) {
        case M_LENGTH:
            len = (size_t) sl_min((int64_t) avail, t->remaining);
            t->pend_off = c->rpos;
            t->pend_len = len;
            c->rpos += len;
            t->remaining -= (int64_t) len;
            t->complete = t->remaining == 0;
            break;

        case M_CHUNKED:
            rc = sl_http_chunked_parse(&t->chunked, c->rbuf + c->rpos, avail, &consumed, &off,
                                       &len, &err);
            if (rc == SL_ERROR) {
                fail(t, 502, "upstream sent an invalid chunked body (%s) from %s", err);
                return;
            }

            t->pend_off = c->rpos + off;
            t->pend_len = len;
            c->rpos += consumed;
            t->complete = rc == SL_OK;
            break;

        case M_CLOSE:
            t->pend_off = c->rpos;
            t->pend_len = avail;
            c->rpos += avail;
            break;

        default:
            t->complete = 1;
            break;
        }
    }
}


/* the head is parsed: headers into the transfer's pool, framing decided, on_headers */
static void
take_head(sl_transfer_t *t, sl_up_resp_t *h, size_t head_len)
{
    sl_h1_conn_t  *c = t->conn;
    const char    *base = c->rbuf + c->rpos;
    char          *copy = sl_pool_alloc(t->pool, head_len);
    size_t         i;

    memcpy(copy, base, head_len);
    t->headers.n = 0;
    for (i = 0; i < h->nheaders; i++) {
        sl_hdrs_add(&t->headers, copy + (h->headers[i].name.data - base), h->headers[i].name.len,
                    copy + (h->headers[i].value.data - base), h->headers[i].value.len);
    }

    t->status = h->status;
    t->keep = t->keep && h->keepalive && t->keepalive;
    if (t->head_req || h->status == 204 || h->status == 304) {
        t->mode = M_NONE;
        t->complete = 1;
    } else if (h->chunked) {
        t->mode = M_CHUNKED;
        sl_http_chunked_init(&t->chunked);
    } else if (h->content_length >= 0) {
        t->mode = M_LENGTH;
        t->remaining = h->content_length;
        t->complete = h->content_length == 0;
    } else {
        t->mode = M_CLOSE;
        t->keep = 0;
    }

    c->rpos += head_len;
    t->headers_done = 1;
    t->on_headers(t);
}


static void
process(sl_transfer_t *t)
{
    engine_t      *e = engine(t);
    sl_h1_conn_t  *c = t->conn;
    size_t         head_len;
    const char    *err;
    int            rc;

    while (!t->headers_done) {
        rc = sl_up_resp_parse(c->rbuf + c->rpos, c->rend - c->rpos, MAX_HEAD, &e->resp,
                              &head_len, &err);
        if (rc == SL_AGAIN) {
            return;
        }

        if (rc == SL_ERROR) {
            fail(t, 502, "%s (from %s)", err);
            return;
        }

        if (e->resp.status == 101) {
            fail(t, 502, "%s switched protocols (from %s): not supported", "upstream");
            return;
        }

        if (e->resp.status < 200) {
            c->rpos += head_len;    /* 100 Continue, 103 Early Hints: the final head follows */
            continue;
        }

        take_head(t, &e->resp, head_len);
        if (t->done) {
            return;
        }
    }

    process_body(t);
}


static void
on_eof(sl_transfer_t *t, int err)
{
    sl_h1_conn_t  *c = t->conn;

    if (!t->got_bytes && c->requests > 0 && !t->retried) {
        retry(t);
        return;
    }

    if (err == 0 && t->headers_done && t->mode == M_CLOSE) {
        t->complete = 1;
        process_body(t);
        return;
    }

    if (err != 0) {
        fail(t, 502, "recv() failed (%s) while reading the response from %s", strerror(err));
        return;
    }

    fail(t, 502, t->headers_done ? "%s closed the connection: response body cut short (%s)"
                                 : "%s prematurely closed the connection (%s)", "upstream");
}


static void
read_response(sl_transfer_t *t)
{
    sl_h1_conn_t  *c = t->conn;
    size_t         space;
    ssize_t        n;

    for ( ;; ) {
        if (c->rend == c->rcap) {
            if (c->rpos > 0) {
                memmove(c->rbuf, c->rbuf + c->rpos, c->rend - c->rpos);
                c->rend -= c->rpos;
                c->rpos = 0;
            } else if (c->rcap < MAX_HEAD + RBUF_SIZE) {
                c->rcap *= 2;
                c->rbuf = sl_xrealloc(c->rbuf, c->rcap);
            } else {
                fail(t, 502, "%s sent too big a response head (%s)", "upstream");
                return;
            }
        }

        space = c->rcap - c->rend;
        n = recv(c->fd, c->rbuf + c->rend, space, 0);
        if (n > 0) {
            c->rend += (size_t) n;
            t->got_bytes = 1;
            t->last_io = sl_worker_now();
            process(t);
            if (t->done || t->paused || (size_t) n < space) {
                return;
            }

            continue;
        }

        if (n == 0) {
            on_eof(t, 0);
            return;
        }

        if (errno == EINTR) {
            continue;
        }

        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            if (errno == ECONNRESET && !t->got_bytes) {
                on_eof(t, 0);
            } else {
                on_eof(t, errno);
            }
        }

        return;
    }
}


/* an idle connection became readable: closed by the peer, or junk; either way it goes */
static void
idle_readable(engine_t *e, sl_h1_conn_t *c)
{
    char     b;
    ssize_t  n = recv(c->fd, &b, 1, MSG_PEEK);

    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        return;
    }

    close_conn(e, c);
}


static void
connected(sl_transfer_t *t)
{
    sl_h1_conn_t  *c = t->conn;
    int            err = 0;
    socklen_t      len = sizeof(err);

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
        err = errno;
    }

    if (err == EINPROGRESS || err == EALREADY) {
        return;
    }

    if (err != 0) {
        errno = err;
        fail(t, 502, "connect() failed (%s) to %s", strerror(err));
        return;
    }

    c->connecting = 0;
    t->connect_time = sl_worker_now() - t->start;
    do_send(t);
}


static void
on_read(evutil_socket_t fd, short what, void *arg)
{
    sl_h1_conn_t   *c = arg;
    sl_transfer_t  *t = c->t;

    SL_UNUSED(fd);
    SL_UNUSED(what);

    sl_worker_update_time();
    if (t == NULL) {
        idle_readable(c->e, c);
        return;
    }

    if (c->connecting) {
        connected(t);
        if (t->done || c->connecting || t->conn != c) {
            return;
        }
    }

    if (t->paused) {
        event_del(c->rev);          /* the consumer is behind: stop reading until resume */
        c->reading = 0;
        return;
    }

    read_response(t);
}


static void
on_write(evutil_socket_t fd, short what, void *arg)
{
    sl_h1_conn_t   *c = arg;
    sl_transfer_t  *t = c->t;

    SL_UNUSED(fd);
    SL_UNUSED(what);

    sl_worker_update_time();
    if (t == NULL) {
        event_del(c->wev);
        c->writing = 0;
        return;
    }

    if (c->connecting) {
        connected(t);
        return;
    }

    do_send(t);
}


void
sl_up_h1_resume(sl_transfer_t *t)
{
    sl_h1_conn_t  *c = t->conn;

    if (c == NULL) {
        return;
    }

    process_body(t);
    if (!t->done && !t->paused && t->conn == c && !c->reading) {
        event_add(c->rev, NULL);
        c->reading = 1;
    }
}


void
sl_up_h1_stop(sl_transfer_t *t)
{
    if (t->conn != NULL) {
        t->conn->t = t;
        close_conn(engine(t), t->conn);
        t->conn = NULL;
    }
}


/* Inactivity check: connect timeout until connected, send timeout while the request goes
 * out, read timeout from then on (counted between two reads); a paused transfer waits for
 * its client, which is the downstream's send timeout to judge. */
void
sl_up_h1_on_timer(sl_transfer_t *t)
{
    double  now = sl_worker_update_time(), limit, idle;

    if (t->conn != NULL && t->conn->connecting) {
        limit = t->connect_timeout;
    } else if (t->sent) {
        limit = t->read_timeout;
    } else {
        limit = t->send_timeout;
    }

    if (t->paused) {
        t->last_io = now;
    }

    idle = now - t->last_io;
    if (idle + 0.001 < limit) {
        sl_transfer_arm(t, limit - idle);
        return;
    }

    fail(t, 504, "upstream timed out (%s, %s)", t->conn != NULL && t->conn->connecting
                                                 ? "connect" : t->sent ? "read" : "send");
}
