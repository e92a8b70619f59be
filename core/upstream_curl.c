/* upstream_curl.c -- the libcurl engine of upstream.c: https, HTTP/2, host names. One CURLM
 * per worker, driven by its event base: curl says which sockets to watch (on_curl_socket)
 * and when to wake it (on_curl_timer). The multi's connection cache is the keep-alive pool
 * (size, idle age); HTTP/2 is used when a TLS upstream offers it. Timeouts: connect by curl;
 * send and read as inactivity checks on the transfer's timer (upstream.c). Finished
 * transfers are collected after curl returns, so callbacks never re-enter curl. */
#include "upstream.h"

#include <stdio.h>
#include <strings.h>
#include <sys/socket.h>

#include "conf.h"
#include "worker.h"

typedef struct {
    sl_upstream_t      *up;
    CURLM              *multi;
    struct event       *timer;
    struct event       *collect;     /* deferred check_done() after a direct kick */
    uint16_t           *uses;        /* requests served per socket, for keepalive_requests */
    size_t              nuses;
} engine_t;

typedef struct {
    struct event   *ev;
    curl_socket_t   fd;
} sock_t;


static void check_done(engine_t *e);


static engine_t *
engine(sl_transfer_t *t)
{
    return t->up->curl;
}


static void
on_sock_event(evutil_socket_t fd, short what, void *arg)
{
    engine_t  *e = arg;
    int        running, action = 0;

    sl_worker_update_time();

    if (what & EV_READ) {
        action |= CURL_CSELECT_IN;
    }

    if (what & EV_WRITE) {
        action |= CURL_CSELECT_OUT;
    }

    curl_multi_socket_action(e->multi, fd, action, &running);
    check_done(e);
}


static int
on_curl_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    engine_t       *e = userp;
    sock_t         *sk = socketp;
    short           kind;
    sl_transfer_t  *t = NULL;

    if (what == CURL_POLL_REMOVE) {
        if (sk != NULL) {
            event_free(sk->ev);
            free(sk);
            curl_multi_assign(e->multi, s, NULL);
        }

        return 0;
    }

    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &t);
    if (t != NULL && what == CURL_POLL_IN && !t->sent) {
        /* curl only reads now: the request is out, the read timeout starts */
        t->sent = 1;
        t->last_io = sl_worker_update_time();
    }

    kind = EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0)
           | ((what & CURL_POLL_OUT) ? EV_WRITE : 0);

    if (sk == NULL) {
        sk = sl_xmalloc(sizeof(sock_t));
        sk->fd = s;
        sk->ev = event_new(e->up->base, s, kind, on_sock_event, e);
        curl_multi_assign(e->multi, s, sk);

    } else {
        event_del(sk->ev);
        event_assign(sk->ev, e->up->base, s, kind, on_sock_event, e);
    }

    event_add(sk->ev, NULL);
    return 0;
}


static void
on_collect(evutil_socket_t fd, short what, void *arg)
{
    SL_UNUSED(fd);
    SL_UNUSED(what);
    check_done(arg);
}


static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
    engine_t  *e = arg;
    int        running;

    SL_UNUSED(fd);
    SL_UNUSED(what);
    sl_worker_update_time();
    curl_multi_socket_action(e->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(e);
}


static int
on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    engine_t        *e = userp;
    struct timeval   tv;

    SL_UNUSED(multi);

    if (timeout_ms < 0) {
        evtimer_del(e->timer);
        return 0;
    }

    tv.tv_sec = timeout_ms / 1000;
    tv.tv_usec = (timeout_ms % 1000) * 1000;
    evtimer_add(e->timer, &tv);
    return 0;
}


void *
sl_up_curl_new(sl_upstream_t *up)
{
    engine_t         *e = sl_xcalloc(1, sizeof(engine_t));
    const sl_conf_t  *conf = up->conf;

    e->up = up;
    e->multi = curl_multi_init();
    e->timer = evtimer_new(up->base, on_timer, e);
    e->collect = event_new(up->base, -1, 0, on_collect, e);
    curl_multi_setopt(e->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(e->multi, CURLMOPT_SOCKETDATA, e);
    curl_multi_setopt(e->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(e->multi, CURLMOPT_TIMERDATA, e);
    curl_multi_setopt(e->multi, CURLMOPT_MAXCONNECTS, conf->up_keepalive_pool);
    curl_multi_setopt(e->multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
    return e;
}


void
sl_up_curl_free(void *state)
{
    engine_t  *e = state;

    curl_multi_cleanup(e->multi);
    event_free(e->timer);
    event_free(e->collect);
    free(e->uses);
    free(e);
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
            t->on_headers(t);
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

    rc = t->on_body(t, p, n);

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

    SL_UNUSED(dltotal);
    SL_UNUSED(dlnow);
    SL_UNUSED(ultotal);

    if (!t->sent && ulnow >= (curl_off_t) t->body_len) {
        t->sent = 1;
        t->last_io = sl_worker_update_time();
        curl_easy_setopt(t->easy, CURLOPT_NOPROGRESS, 1L);
    }

    return 0;
}


void
sl_up_curl_stop(sl_transfer_t *t)
{
    if (t->easy != NULL) {
        curl_multi_remove_handle(engine(t)->multi, t->easy);
    }
}


/* counts requests per upstream connection; past keepalive_requests the socket is shut
 * down, so curl's liveness check drops it from the cache instead of reusing it */
static void
count_use(engine_t *e, sl_transfer_t *t)
{
    long           max = ((const sl_conf_t *) e->up->conf)->up_keepalive_requests;
    curl_socket_t  sock = CURL_SOCKET_BAD;

    curl_easy_getinfo(t->easy, CURLINFO_ACTIVESOCKET, &sock);
    if (sock == CURL_SOCKET_BAD || max <= 0) {
        return;
    }

    if ((size_t) sock >= e->nuses) {
        size_t  n = (size_t) sock * 2 + 64;
        e->uses = sl_xrealloc(e->uses, n * sizeof(uint16_t));
        memset(e->uses + e->nuses, 0, (n - e->nuses) * sizeof(uint16_t));
        e->nuses = n;
    }

    if (++e->uses[sock] >= max) {
        e->uses[sock] = 0;
        shutdown(sock, SHUT_RDWR);
    }
}


static void
check_done(engine_t *e)
{
    CURLMsg        *msg;
    int             left, result;
    sl_transfer_t  *t;
    double          ct = 0;

    while ((msg = curl_multi_info_read(e->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE) {
            continue;
        }

        t = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &t);
        if (t == NULL || t->done) {
            continue;
        }

        switch (msg->data.result) {
        case CURLE_OK:
            result = SL_OK;
            count_use(e, t);
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

        curl_easy_getinfo(t->easy, CURLINFO_CONNECT_TIME, &ct);
        t->connect_time = ct;
        curl_multi_remove_handle(e->multi, t->easy);
        sl_transfer_finish(t, result);
    }
}


/* Inactivity check. Before the connection is up, curl's own connect timeout rules. Then
 * the send timeout applies while the request body goes out, and the read timeout from the
 * moment the request is sent until the response ends (counted between two reads). */
void
sl_up_curl_on_timer(sl_transfer_t *t)
{
    double      limit, idle, now;
    curl_off_t  upl = 0, connected = 0;

    now = sl_worker_update_time();
    curl_easy_getinfo(t->easy, CURLINFO_SIZE_UPLOAD_T, &upl);
    curl_easy_getinfo(t->easy, CURLINFO_PRETRANSFER_TIME_T, &connected);

    if (upl != t->uploaded) {
        t->uploaded = upl;
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
        sl_transfer_arm(t, sl_min(limit - idle, sl_min(t->read_timeout, t->send_timeout)));
        return;
    }

    t->error = "upstream timed out";
    sl_up_curl_stop(t);
    sl_transfer_finish(t, 504);
}


/* the method and body as curl wants them */
static void
set_method(sl_transfer_t *t)
{
    CURL         *easy = t->easy;
    const char   *m = t->method.data;
    size_t        mlen = t->method.len;
    char          buf[64];

    if (mlen == 0) {
        m = t->has_body ? "POST" : "GET";
        mlen = strlen(m);
    }

    if (mlen == 3 && memcmp(m, "GET", 3) == 0 && !t->has_body) {
        curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
        return;
    }

    if (mlen == 4 && memcmp(m, "HEAD", 4) == 0) {
        curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
        return;
    }

    if (t->has_body || (mlen == 4 && memcmp(m, "POST", 4) == 0)) {
        curl_easy_setopt(easy, CURLOPT_POSTFIELDS, t->body ? t->body : "");
        curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) t->body_len);
    }

    if (!(mlen == 4 && memcmp(m, "POST", 4) == 0)) {
        snprintf(buf, sizeof(buf), "%.*s", (int) sl_min(mlen, 60), m);
        curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, buf);
    }
}


/* "Name: value" lines; curl's own additions switched off (Expect, Accept, and the form
 * Content-Type it would put on a POST) */
static void
set_headers(sl_transfer_t *t)
{
    char            buf[1024], *line;
    size_t          i, need;
    int             has_ct = 0, has_accept = 0;
    const sl_hdr_t  *h;

    for (i = 0; i < t->req_headers.n; i++) {
        h = &t->req_headers.items[i];
        if (h->name.len == 0) {
            continue;
        }

        has_ct |= sl_hdr_is(&h->name, "content-type", 12);
        has_accept |= sl_hdr_is(&h->name, "accept", 6);
        need = h->name.len + h->value.len + 3;
        line = need > sizeof(buf) ? sl_xmalloc(need) : buf;
        memcpy(line, h->name.data, h->name.len);
        line[h->name.len] = ':';
        line[h->name.len + 1] = ' ';
        memcpy(line + h->name.len + 2, h->value.data, h->value.len);
        line[need - 1] = '\0';
        t->slist = curl_slist_append(t->slist, line);
        if (line != buf) {
            free(line);
        }
    }

    if (t->host.len > 0) {
        snprintf(buf, sizeof(buf), "Host: %.*s", (int) sl_min(t->host.len, 1000), t->host.data);
        t->slist = curl_slist_append(t->slist, buf);
    }

    t->slist = curl_slist_append(t->slist, "Expect:");
    if (!has_accept) {
        t->slist = curl_slist_append(t->slist, "Accept:");
    }

    if (t->has_body && !has_ct) {
        t->slist = curl_slist_append(t->slist, "Content-Type:");
    }

    curl_easy_setopt(t->easy, CURLOPT_HTTPHEADER, t->slist);
}


int
sl_up_curl_start(sl_transfer_t *t, const char **err)
{
    engine_t         *e = engine(t);
    const sl_conf_t  *conf = e->up->conf;
    char              url[8192];
    int               running;

    if (t->easy == NULL) {
        t->easy = curl_easy_init();
        if (t->easy == NULL) {
            *err = "cannot start the upstream transfer";
            return SL_ERROR;
        }
    }

    t->native = 0;
    if (t->url.len >= sizeof(url)) {
        *err = "upstream url too long";
        return SL_ERROR;
    }

    memcpy(url, t->url.data, t->url.len);
    url[t->url.len] = '\0';

    curl_easy_setopt(t->easy, CURLOPT_URL, url);
    curl_easy_setopt(t->easy, CURLOPT_PRIVATE, t);
    curl_easy_setopt(t->easy, CURLOPT_HEADERFUNCTION, on_curl_header);
    curl_easy_setopt(t->easy, CURLOPT_HEADERDATA, t);
    curl_easy_setopt(t->easy, CURLOPT_WRITEFUNCTION, on_curl_body);
    curl_easy_setopt(t->easy, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(t->easy, CURLOPT_ERRORBUFFER, t->errbuf);
    curl_easy_setopt(t->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(t->easy, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(t->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    /* no proxy from the environment (http_proxy...): upstreams are reached directly, and
     * curl would otherwise read the environment on every transfer */
    curl_easy_setopt(t->easy, CURLOPT_PROXY, "");
    curl_easy_setopt(t->easy, CURLOPT_MAXAGE_CONN,
                     (long) sl_max(1, t->keepalive_timeout > 0 ? t->keepalive_timeout
                                                               : conf->up_keepalive_timeout));
    curl_easy_setopt(t->easy, CURLOPT_CONNECTTIMEOUT_MS, (long) (t->connect_timeout * 1000));
    if (t->max_time > 0) {
        curl_easy_setopt(t->easy, CURLOPT_TIMEOUT_MS, (long) (t->max_time * 1000));
    }

    if (!t->ssl_verify) {
        curl_easy_setopt(t->easy, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(t->easy, CURLOPT_SSL_VERIFYHOST, 0L);
    }

    if (!t->keepalive) {
        curl_easy_setopt(t->easy, CURLOPT_FORBID_REUSE, 1L);
    }

    if (t->http2) {
        curl_easy_setopt(t->easy, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_2TLS);
    } else if (strncasecmp(url, "https:", 6) != 0) {
        curl_easy_setopt(t->easy, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1);
    }

    set_headers(t);
    set_method(t);
    if (t->has_body && t->body_len > 0) {
        curl_easy_setopt(t->easy, CURLOPT_XFERINFOFUNCTION, on_curl_progress);
        curl_easy_setopt(t->easy, CURLOPT_XFERINFODATA, t);
        curl_easy_setopt(t->easy, CURLOPT_NOPROGRESS, 0L);
    }

    if (curl_multi_add_handle(e->multi, t->easy) != CURLM_OK) {
        *err = "cannot start the upstream transfer";
        return SL_ERROR;
    }

    /* let curl connect and send now rather than from a zero timeout on the next loop turn;
     * whatever it finishes is collected (and reported) from the loop as usual */
    curl_multi_socket_action(e->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    event_active(e->collect, EV_TIMEOUT, 0);
    return SL_OK;
}


void
sl_up_curl_resume(sl_transfer_t *t)
{
    curl_easy_pause(t->easy, CURLPAUSE_CONT);
    check_done(engine(t));
}


/* a transfer about to be reused: a clean easy handle (it keeps its DNS and TLS caches) */
void
sl_up_curl_reset(sl_transfer_t *t)
{
    curl_slist_free_all(t->slist);
    t->slist = NULL;
    if (t->easy != NULL && !t->native) {
        curl_easy_reset(t->easy);
    }
}


void
sl_up_curl_release(sl_transfer_t *t)
{
    curl_slist_free_all(t->slist);
    t->slist = NULL;
    if (t->easy != NULL) {
        curl_easy_cleanup(t->easy);
        t->easy = NULL;
    }
}
