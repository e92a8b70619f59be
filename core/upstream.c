/* upstream.c -- outbound HTTP on libcurl's multi interface. One CURLM per worker, driven
 * by its event base: curl says which sockets to watch (on_curl_socket) and when to wake it
 * (on_curl_timer). The multi's connection cache is the keep-alive pool (size, idle age);
 * HTTP/2 is used when a TLS upstream offers it. Timeouts: connect by curl; send and read as
 * inactivity timers of our own (one timer per transfer, re-armed lazily). Finished
 * transfers are collected after curl returns, so callbacks never re-enter curl. */
#include "upstream.h"

#include <sys/socket.h>

#include "conf.h"
#include "worker.h"

#define SPARE_MAX  64

struct sl_upstream_s {
    CURLM              *multi;
    sl_transfer_t      *spare[SPARE_MAX];    /* finished transfers kept for reuse */
    size_t              nspare;
    struct event_base  *base;
    struct event       *timer;
    struct event       *collect;        /* deferred check_done() after a direct kick */
    size_t              active;
    const sl_conf_t    *conf;
    uint16_t           *uses;       /* requests served per socket, for keepalive_requests */
    size_t              nuses;
};

typedef struct {
    struct event   *ev;
    curl_socket_t   fd;
} sock_t;


static void check_done(sl_upstream_t *up);


static void
on_sock_event(evutil_socket_t fd, short what, void *arg)
{
    sl_upstream_t  *up = arg;
    int             running, action = 0;

    sl_worker_update_time();

    if (what & EV_READ) {
        action |= CURL_CSELECT_IN;
    }

    if (what & EV_WRITE) {
        action |= CURL_CSELECT_OUT;
    }

    curl_multi_socket_action(up->multi, fd, action, &running);
    check_done(up);
}


static int
on_curl_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    sl_upstream_t  *up = userp;
    sock_t         *sk = socketp;
    short           kind;
    sl_transfer_t  *t = NULL;

    if (what == CURL_POLL_REMOVE) {
        if (sk != NULL) {
            event_free(sk->ev);
            free(sk);
            curl_multi_assign(up->multi, s, NULL);
        }

        return 0;
    }

    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &t);
    if (t != NULL) {
        t->sock = s;
        if (what == CURL_POLL_IN && !t->sent) {
            /* curl only reads now: the request is out, the read timeout starts */
            t->sent = 1;
            t->last_io = sl_worker_update_time();
        }
    }

    kind = EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0)
           | ((what & CURL_POLL_OUT) ? EV_WRITE : 0);

    if (sk == NULL) {
        sk = sl_xmalloc(sizeof(sock_t));
        sk->fd = s;
        sk->ev = event_new(up->base, s, kind, on_sock_event, up);
        curl_multi_assign(up->multi, s, sk);

    } else {
        event_del(sk->ev);
        event_assign(sk->ev, up->base, s, kind, on_sock_event, up);
    }

    event_add(sk->ev, NULL);
    return 0;
}


static void
on_collect(evutil_socket_t fd, short what, void *arg)
{
    check_done(arg);
}


static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
    sl_upstream_t  *up = arg;
    int             running;

    sl_worker_update_time();
    curl_multi_socket_action(up->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(up);
}


static int
on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    sl_upstream_t   *up = userp;
    struct timeval   tv;

    if (timeout_ms < 0) {
        evtimer_del(up->timer);
        return 0;
    }

    tv.tv_sec = timeout_ms / 1000;
    tv.tv_usec = (timeout_ms % 1000) * 1000;
    evtimer_add(up->timer, &tv);
    return 0;
}


sl_upstream_t *
sl_upstream_new(struct event_base *base, const void *vconf)
{
    sl_upstream_t    *up = sl_xcalloc(1, sizeof(sl_upstream_t));
    const sl_conf_t  *conf = vconf;

    up->base = base;
    up->conf = conf;
    up->multi = curl_multi_init();
    up->timer = evtimer_new(base, on_timer, up);
    up->collect = event_new(base, -1, 0, on_collect, up);
    curl_multi_setopt(up->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(up->multi, CURLMOPT_SOCKETDATA, up);
    curl_multi_setopt(up->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(up->multi, CURLMOPT_TIMERDATA, up);
    curl_multi_setopt(up->multi, CURLMOPT_MAXCONNECTS, conf->up_keepalive_pool);
    curl_multi_setopt(up->multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
    return up;
}


void
sl_upstream_free(sl_upstream_t *up)
{
    curl_multi_cleanup(up->multi);
    event_free(up->timer);
    event_free(up->collect);
    free(up->uses);
    free(up);
}


size_t
sl_upstream_active(sl_upstream_t *up)
{
    return up->active;
}


/* status line or header line; the blank line ends a response head */
static size_t
on_curl_header(char *p, size_t size, size_t nitems, void *arg)
{
    sl_transfer_t  *t = arg;
    size_t          n = size * nitems, len = n, i;
    char           *colon, *v, *ve;

    t->last_io = sl_worker_now();

    while (len > 0 && (p[len - 1] == '\n' || p[len - 1] == '\r')) {
        len--;
    }

    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        /* a new response head (after 1xx): start over */
        t->headers.n = 0;
        for (i = 5; i < len && p[i] != ' '; i++) {
            /* version */
        }

        t->status = (i + 4 <= len) ? atoi(p + i + 1) : 0;
        return n;
    }

    if (len == 0) {
        if (t->status >= 100 && t->status < 200) {
            return n;
        }

        if (!t->headers_done) {
            t->headers_done = 1;
            t->in_callback = 1;
            t->on_headers(t);
            t->in_callback = 0;
        }

        return n;
    }

    colon = memchr(p, ':', len);
    if (colon == NULL) {
        return n;
    }

    v = colon + 1;
    ve = p + len;
    while (v < ve && (*v == ' ' || *v == '\t')) {
        v++;
    }

    sl_hdrs_add(&t->headers, sl_pool_strndup(t->pool, p, (size_t) (colon - p)),
                (size_t) (colon - p), sl_pool_strndup(t->pool, v, (size_t) (ve - v)),
                (size_t) (ve - v));
    return n;
}


static size_t
on_curl_body(char *p, size_t size, size_t nitems, void *arg)
{
    sl_transfer_t  *t = arg;
    size_t          n = size * nitems;
    int             rc;

    t->last_io = sl_worker_now();

    if (!t->headers_done) {
        /* HTTP/0.9 or a head without blank line: treat what we have as the head */
        t->headers_done = 1;
        t->on_headers(t);
    }

    t->in_callback = 1;
    rc = t->on_body(t, p, n);
    t->in_callback = 0;

    if (rc == SL_AGAIN) {
        t->paused = 1;
        return CURL_WRITEFUNC_PAUSE;
    }

    return n;
}


/* with a request body: notes when the last byte went out, for the read timeout */
static int
on_curl_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                 curl_off_t ulnow)
{
    sl_transfer_t  *t = arg;

    if (!t->sent && ulnow >= t->body_len) {
        t->sent = 1;
        t->last_io = sl_worker_update_time();
        curl_easy_setopt(t->easy, CURLOPT_NOPROGRESS, 1L);
    }

    return 0;
}


static void
finish(sl_transfer_t *t, int result)
{
    sl_upstream_t  *up = t->up;

    if (t->done) {
        return;
    }

    t->done = 1;
    if (t->active) {
        t->active = 0;
        up->active--;
        curl_multi_remove_handle(up->multi, t->easy);
    }

    evtimer_del(t->timer);
    t->on_done(t, result);
}


/* counts requests per upstream connection; past keepalive_requests the socket is shut
 * down, so curl's liveness check drops it from the cache instead of reusing it */
static void
count_use(sl_upstream_t *up, sl_transfer_t *t)
{
    long  max = up->conf->up_keepalive_requests;

    if (t->sock < 0 || max <= 0) {
        return;
    }

    if ((size_t) t->sock >= up->nuses) {
        size_t  n = (size_t) t->sock * 2 + 64;
        up->uses = sl_xrealloc(up->uses, n * sizeof(uint16_t));
        memset(up->uses + up->nuses, 0, (n - up->nuses) * sizeof(uint16_t));
        up->nuses = n;
    }

    if (++up->uses[t->sock] >= max) {
        up->uses[t->sock] = 0;
        shutdown(t->sock, SHUT_RDWR);
    }
}


static void
check_done(sl_upstream_t *up)
{
    CURLMsg        *msg;
    int             left, result;
    sl_transfer_t  *t;

    while ((msg = curl_multi_info_read(up->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE) {
            continue;
        }

        t = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &t);
        if (t == NULL) {
            continue;
        }

        switch (msg->data.result) {
        case CURLE_OK:
            result = SL_OK;
            count_use(up, t);
            break;

        case CURLE_OPERATION_TIMEDOUT:
            result = 504;
            t->error = "upstream timed out";
            break;

        default:
            result = 502;
            t->error = t->errbuf[0] ? t->errbuf : curl_easy_strerror(msg->data.result);
            break;
        }

        finish(t, result);
    }
}


/* Inactivity timer. Before the connection is up, curl's own connect timeout rules. Then
 * the send timeout applies while the request body goes out, and the read timeout from the
 * moment the request is sent until the response ends (counted between two reads). */
static void
on_io_timer(evutil_socket_t fd, short what, void *arg)
{
    sl_transfer_t   *t = arg;
    double           limit, idle, now;
    curl_off_t       up = 0, connected = 0;
    struct timeval   tv;

    now = sl_worker_update_time();
    curl_easy_getinfo(t->easy, CURLINFO_SIZE_UPLOAD_T, &up);
    curl_easy_getinfo(t->easy, CURLINFO_PRETRANSFER_TIME_T, &connected);

    if (up != t->uploaded) {
        t->uploaded = up;
        if (!t->sent) {
            t->last_io = now;       /* the body is still going out: that is progress */
        }
    }

    if (connected == 0 && !t->headers_done) {
        /* still connecting: CURLOPT_CONNECTTIMEOUT_MS decides */
        t->last_io = now;
        limit = t->connect_timeout;

    } else if (t->headers_done || t->sent) {
        limit = t->read_timeout;

    } else {
        limit = t->send_timeout;
    }

    idle = now - t->last_io;

    if (t->paused) {
        /* waiting for the client to read: that is the send timeout of the downstream */
        t->last_io = now;
        idle = 0;
    }

    if (idle + 0.001 < limit) {
        limit -= idle;
        limit = sl_min(limit, sl_min(t->read_timeout, t->send_timeout));
        if (limit < 0.01) {
            limit = 0.01;
        }

        tv.tv_sec = (long) limit;
        tv.tv_usec = (long) ((limit - tv.tv_sec) * 1e6);
        evtimer_add(t->timer, &tv);
        return;
    }

    t->error = "upstream timed out";
    finish(t, 504);
}


/* A transfer, recycled when possible: curl_easy_init() costs more than a reset, and a
 * reset easy handle keeps its caches (DNS, TLS session) */
sl_transfer_t *
sl_transfer_new(sl_upstream_t *up)
{
    sl_transfer_t  *t;
    CURL           *easy = NULL;
    struct event   *timer = NULL;

    if (up->nspare > 0) {
        t = up->spare[--up->nspare];
        easy = t->easy;
        timer = t->timer;
        curl_easy_reset(easy);
        memset(t, 0, sizeof(*t));
    } else {
        t = sl_xcalloc(1, sizeof(sl_transfer_t));
    }

    t->up = up;
    t->pool = sl_pool_new(2048);
    t->easy = easy ? easy : curl_easy_init();
    t->sock = -1;
    t->timer = timer ? timer : evtimer_new(up->base, on_io_timer, t);
    event_assign(t->timer, up->base, -1, 0, on_io_timer, t);
    sl_hdrs_init(&t->headers, t->pool, 16);
    t->connect_timeout = up->conf->up_connect_timeout;
    t->send_timeout = up->conf->up_send_timeout;
    t->read_timeout = up->conf->up_read_timeout;

    curl_easy_setopt(t->easy, CURLOPT_PRIVATE, t);
    curl_easy_setopt(t->easy, CURLOPT_HEADERFUNCTION, on_curl_header);
    curl_easy_setopt(t->easy, CURLOPT_HEADERDATA, t);
    curl_easy_setopt(t->easy, CURLOPT_WRITEFUNCTION, on_curl_body);
    curl_easy_setopt(t->easy, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(t->easy, CURLOPT_ERRORBUFFER, t->errbuf);
    curl_easy_setopt(t->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(t->easy, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(t->easy, CURLOPT_MAXAGE_CONN, (long) up->conf->up_keepalive_timeout);
    curl_easy_setopt(t->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    /* no proxy from the environment (http_proxy...): upstreams are reached directly, and
     * curl would otherwise read the environment on every transfer */
    curl_easy_setopt(t->easy, CURLOPT_PROXY, "");
    return t;
}


void
sl_transfer_add_header(sl_transfer_t *t, const char *line)
{
    t->req_headers = curl_slist_append(t->req_headers, line);
}


int
sl_transfer_start(sl_transfer_t *t, const char **err)
{
    struct timeval  tv;
    double          first;

    curl_easy_setopt(t->easy, CURLOPT_HTTPHEADER, t->req_headers);
    if (t->body_len > 0) {
        curl_easy_setopt(t->easy, CURLOPT_XFERINFOFUNCTION, on_curl_progress);
        curl_easy_setopt(t->easy, CURLOPT_XFERINFODATA, t);
        curl_easy_setopt(t->easy, CURLOPT_NOPROGRESS, 0L);
    }

    curl_easy_setopt(t->easy, CURLOPT_CONNECTTIMEOUT_MS, (long) (t->connect_timeout * 1000));

    if (curl_multi_add_handle(t->up->multi, t->easy) != CURLM_OK) {
        *err = "cannot start the upstream transfer";
        return SL_ERROR;
    }

    t->active = 1;
    t->up->active++;
    t->last_io = sl_worker_now();

    /* let curl connect and send now rather than from a zero timeout on the next loop
     * turn; whatever it finishes is collected (and reported) from the loop as usual */
    {
        int  running;
        curl_multi_socket_action(t->up->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        event_active(t->up->collect, EV_TIMEOUT, 0);
    }

    first = sl_min(t->read_timeout, t->send_timeout);
    if (first < 0.01) {
        first = 0.01;
    }

    tv.tv_sec = (long) first;
    tv.tv_usec = (long) ((first - tv.tv_sec) * 1e6);
    evtimer_add(t->timer, &tv);
    return SL_OK;
}


void
sl_transfer_resume(sl_transfer_t *t)
{
    if (!t->paused || t->done) {
        return;
    }

    t->paused = 0;
    t->last_io = sl_worker_now();
    curl_easy_pause(t->easy, CURLPAUSE_CONT);
    check_done(t->up);
}


void
sl_transfer_cancel(sl_transfer_t *t)
{
    if (t->active) {
        t->active = 0;
        t->up->active--;
        curl_multi_remove_handle(t->up->multi, t->easy);
    }

    t->done = 1;
    evtimer_del(t->timer);
}


void
sl_transfer_free(sl_transfer_t *t)
{
    if (t->active) {
        t->active = 0;
        t->up->active--;
        curl_multi_remove_handle(t->up->multi, t->easy);
    }

    curl_slist_free_all(t->req_headers);
    t->req_headers = NULL;
    sl_pool_free(t->pool);
    t->pool = NULL;
    evtimer_del(t->timer);

    if (t->up->nspare < SPARE_MAX) {
        t->up->spare[t->up->nspare++] = t;
        return;
    }

    curl_easy_cleanup(t->easy);
    event_free(t->timer);
    free(t);
}
