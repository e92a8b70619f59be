/* conn.c -- downstream connections. A connection reads one request at a time: while a
 * request is served, further (pipelined) input waits in the input buffer, capped by a read
 * watermark so a client cannot make us buffer without bound. Timeouts: header (first
 * request), keep-alive idle (between requests), body (while reading it), send (every write).
 * A connection is freed on the next loop turn, never inside its own callback.
 *
 * Writes on plain connections are lazy: the bufferevent's EV_WRITE stays disabled, bytes
 * queued in its output mark the connection dirty, and the end of the loop turn (on_flush)
 * writes them straight to the socket, all that a turn produced in one writev. Only what the
 * socket does not take enables EV_WRITE (and the send timeout) until it drains. A response
 * that fits the socket buffer thus costs no epoll_ctl at all, where a bufferevent that is
 * always write-enabled costs two per response (arm EPOLLOUT, disarm it). */
#include "conn.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include "fionread.h"
#include "http_request.h"
#include "http_response.h"
#include "tls.h"
#include "worker.h"

/* idle keep-alive connections, for the graceful stop */
#define MAX_TRACKED  65536

static sl_conn_t  **conns;
static size_t       nconns_cap;

static sl_conn_t     *dirty;            /* outputs to write at the end of this loop turn */
static struct event  *flush_ev;


static void on_write(struct bufferevent *bev, void *arg);


static void
undirty(sl_conn_t *c)
{
    sl_conn_t  **p;

    for (p = &dirty; *p != NULL; p = &(*p)->next_dirty) {
        if (*p == c) {
            *p = c->next_dirty;
            break;
        }
    }

    c->dirty = 0;
    c->next_dirty = NULL;
}


static void
on_flush(evutil_socket_t fd, short what, void *arg)
{
    sl_conn_t  *c;

    while ((c = dirty) != NULL) {
        dirty = c->next_dirty;
        c->next_dirty = NULL;
        c->dirty = 0;
        sl_conn_flush(c);
        if (!c->closed && evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
            on_write(c->bev, c);        /* what libevent would call after the write */
        }
    }
}


/* bytes were queued on a plain connection's output: write them this loop turn */
static void
on_output(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    sl_conn_t  *c = arg;

    if (info->n_added == 0 || c->dirty || c->closed
        || (bufferevent_get_enabled(c->bev) & EV_WRITE))
    {
        return;
    }

    c->dirty = 1;
    c->next_dirty = dirty;
    dirty = c;
    if (flush_ev == NULL) {
        flush_ev = event_new(sl_worker->base, -1, 0, on_flush, NULL);
    }

    event_active(flush_ev, EV_TIMEOUT, 0);
}


static void
track(sl_conn_t *c)
{
    if (conns == NULL) {
        nconns_cap = 1024;
        conns = sl_xcalloc(nconns_cap, sizeof(sl_conn_t *));
    }

    while ((size_t) c->fd >= nconns_cap && nconns_cap < MAX_TRACKED * 16) {
        conns = sl_xrealloc(conns, nconns_cap * 2 * sizeof(sl_conn_t *));
        memset(conns + nconns_cap, 0, nconns_cap * sizeof(sl_conn_t *));
        nconns_cap *= 2;
    }

    if ((size_t) c->fd < nconns_cap) {
        conns[c->fd] = c;
    }
}


static void
untrack(sl_conn_t *c)
{
    if (c->fd >= 0 && (size_t) c->fd < nconns_cap && conns[c->fd] == c) {
        conns[c->fd] = NULL;
    }
}


static void
on_free(evutil_socket_t fd, short what, void *arg)
{
    sl_conn_t  *c = arg;

    event_free(c->next_ev);
    event_free(c->head_ev);
    free(c);
    sl_worker->nconns--;
    sl_worker_check_drained();
}


void
sl_conn_close(sl_conn_t *c)
{
    sl_req_t  *r;

    if (c->closed) {
        return;
    }

    c->closed = 1;
    untrack(c);
    if (c->dirty) {
        undirty(c);
    }

    r = c->req;
    c->req = NULL;
    if (r != NULL) {
        r->conn = NULL;
        if (r->state == SL_REQ_PROCESS && !r->resp_done) {
            sl_req_client_gone(r);
        }

        sl_req_release(r);
    }

    sl_fionread_mark(c->fd, 0);
    bufferevent_free(c->bev);
    c->bev = NULL;
    event_del(c->next_ev);
    event_del(c->head_ev);
    c->head_armed = 0;
    event_base_once(sl_worker->base, -1, EV_TIMEOUT, on_free, c, NULL);
}


void
sl_conn_set_timeouts(sl_conn_t *c, double read_timeout)
{
    struct timeval   rtv, wtv;
    double           st = sl_worker->conf->send_timeout;

    if (c->timeouts_set && c->read_timeout == read_timeout) {
        return;                     /* libevent would re-add the events and their timers */
    }

    c->timeouts_set = 1;
    c->read_timeout = read_timeout;

    rtv.tv_sec = (long) read_timeout;
    rtv.tv_usec = (long) ((read_timeout - rtv.tv_sec) * 1e6);
    wtv.tv_sec = (long) st;
    wtv.tv_usec = (long) ((st - wtv.tv_sec) * 1e6);
    bufferevent_set_timeouts(c->bev, read_timeout > 0 ? &rtv : NULL, &wtv);
}


static void
on_read(struct bufferevent *bev, void *arg)
{
    sl_conn_t  *c = arg;

    sl_worker_update_time();

    if (c->closing) {
        /* waiting to close after the last response: discard input */
        evbuffer_drain(bufferevent_get_input(bev), evbuffer_get_length(bufferevent_get_input(bev)));
        return;
    }

    if (c->req != NULL && c->req->state >= SL_REQ_PROCESS) {
        return;     /* pipelined input waits for the current response */
    }

    sl_http_on_input(c);
}


static void
on_write(struct bufferevent *bev, void *arg)
{
    sl_conn_t  *c = arg;

    sl_worker_update_time();

    if (!c->ssl && evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
        bufferevent_disable(bev, EV_WRITE);     /* back to lazy writes */
    }

    /* the output fell to the low-water mark */
    if (c->req != NULL && c->req->waiting_drain) {
        sl_req_on_drain(c->req);
    }

    if (c->closing && c->req == NULL
        && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
    {
        sl_conn_close(c);
    }
}


static void
on_event(struct bufferevent *bev, short what, void *arg)
{
    sl_conn_t  *c = arg;
    sl_req_t   *r = c->req;

    sl_worker_update_time();

    if (what & BEV_EVENT_CONNECTED) {
        return;
    }

    if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING)) {
        if (r != NULL && (r->state == SL_REQ_HEAD || r->state == SL_REQ_BODY)) {
            sl_log_info("client %s timed out sending the request", c->remote_addr);
            sl_resp_conn_error(c, 408, "request timeout");
            return;
        }

        if (r != NULL) {
            /* being served: the read timeout is the one from before the request (start()
             * leaves it, which saves re-arming a timer twice per request); reading goes on,
             * so that a client that leaves is still seen */
            bufferevent_enable(bev, EV_READ);
            return;
        }

        if (evbuffer_get_length(bufferevent_get_input(bev)) > 0) {
            sl_resp_conn_error(c, 408, "request timeout");
            return;
        }
    }

    if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_WRITING)) {
        sl_log_info("client %s timed out reading the response", c->remote_addr);
    }

    sl_conn_close(c);
}


static void
on_head_deadline(evutil_socket_t fd, short what, void *arg)
{
    sl_conn_t  *c = arg;

    c->head_armed = 0;
    sl_worker_update_time();
    if (c->closed || (c->req != NULL && c->req->state != SL_REQ_HEAD)) {
        return;
    }

    if (evbuffer_get_length(bufferevent_get_input(c->bev)) == 0) {
        if (c->nrequests == 0) {
            sl_conn_close(c);       /* connected and never said a word */
        }

        return;     /* idle keep-alive: the keep-alive timeout decides */
    }

    sl_log_info("client %s did not send a whole request head in time", c->remote_addr);
    sl_resp_conn_error(c, 408, "request timeout");
}


void
sl_conn_head_deadline(sl_conn_t *c, int on)
{
    struct timeval  tv;
    double          t = sl_worker->conf->client_header_timeout;

    if (!on) {
        if (c->head_armed) {
            event_del(c->head_ev);
            c->head_armed = 0;
        }

        c->head_scanned = 0;
        return;
    }

    if (c->head_armed) {
        return;
    }

    tv.tv_sec = (long) t;
    tv.tv_usec = (long) ((t - tv.tv_sec) * 1e6);
    evtimer_add(c->head_ev, &tv);
    c->head_armed = 1;
}


static void
on_next(evutil_socket_t fd, short what, void *arg)
{
    sl_conn_t  *c = arg;

    if (!c->closed && c->req == NULL) {
        sl_http_on_input(c);
    }
}


void
sl_conn_accept(int fd, const struct sockaddr *sa, int kind, int ssl)
{
    sl_conn_t  *c;
    int         on = 1;
    void       *tls;

    c = sl_xcalloc(1, sizeof(sl_conn_t));
    c->fd = fd;
    c->kind = kind;
    c->ssl = ssl;

    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in  *in = (const struct sockaddr_in *) sa;
        inet_ntop(AF_INET, &in->sin_addr, c->remote_addr, sizeof(c->remote_addr));
        c->remote_port = ntohs(in->sin_port);

    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6  *in6 = (const struct sockaddr_in6 *) sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, c->remote_addr, sizeof(c->remote_addr));
        c->remote_port = ntohs(in6->sin6_port);
    }

    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));

    if (ssl) {
        tls = sl_tls_new_server_ssl(NULL);
        if (tls == NULL) {
            close(fd);
            free(c);
            return;
        }

        c->bev = bufferevent_openssl_socket_new(sl_worker->base, fd, tls,
                                                BUFFEREVENT_SSL_ACCEPTING,
                                                BEV_OPT_CLOSE_ON_FREE);
    } else {
        c->bev = bufferevent_socket_new(sl_worker->base, fd, BEV_OPT_CLOSE_ON_FREE);
        sl_fionread_mark(fd, c->bev != NULL);
    }

    if (c->bev == NULL) {
        close(fd);
        free(c);
        return;
    }

    c->next_ev = event_new(sl_worker->base, -1, 0, on_next, c);
    c->head_ev = evtimer_new(sl_worker->base, on_head_deadline, c);
    sl_conn_head_deadline(c, 1);
    sl_worker->nconns++;
    track(c);

    bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0,
                             sl_worker->conf->client_header_buffer_size + 65536);
    sl_conn_set_timeouts(c, sl_worker->conf->client_header_timeout);
    if (ssl) {
        bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    } else {
        /* a new bufferevent starts write-enabled: lazy writes want it off */
        bufferevent_disable(c->bev, EV_WRITE);
        evbuffer_add_cb(bufferevent_get_output(c->bev), on_output, c);
        bufferevent_enable(c->bev, EV_READ);
    }
}


void
sl_conn_request_done(sl_conn_t *c)
{
    struct evbuffer  *out;

    c->req = NULL;

    if (c->closed) {
        return;
    }

    if (c->closing || sl_worker->stopping) {
        c->closing = 1;
        out = bufferevent_get_output(c->bev);
        bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
        if (evbuffer_get_length(out) == 0) {
            sl_conn_close(c);
        }

        return;
    }

    sl_conn_set_timeouts(c, sl_worker->conf->keepalive_timeout);
    if (!(bufferevent_get_enabled(c->bev) & EV_READ)) {
        /* enabling re-adds the read event (a timer-heap update) even when it is on */
        bufferevent_enable(c->bev, EV_READ);
    }

    if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0) {
        event_active(c->next_ev, EV_TIMEOUT, 0);
    }
}


void
sl_conn_flush(sl_conn_t *c)
{
    struct evbuffer  *out;
    int               n;

    if (c == NULL || c->closed || c->ssl
        || (bufferevent_get_enabled(c->bev) & EV_WRITE))
    {
        return;
    }

    out = bufferevent_get_output(c->bev);
    if (evbuffer_get_length(out) == 0) {
        return;
    }

    /* a bufferevent keeps the start of its output frozen: only its own write callback may
     * drain it. Thawed for this write, as that callback does */
    evbuffer_unfreeze(out, 1);
    n = evbuffer_write(out, c->fd);
    evbuffer_freeze(out, 1);
    if (n < 0 || evbuffer_get_length(out) > 0) {
        /* the socket is full (or failed): libevent takes over, with the send timeout, and
         * reports a failure through on_event */
        bufferevent_enable(c->bev, EV_WRITE);
    }
}


void
sl_conn_close_idle(void)
{
    size_t  i;

    /* idle means: served a request and nothing of the next one has arrived. A connection
     * accepted just before the stop gets its first request served (the head deadline
     * bounds how long we wait for it), then closes */
    for (i = 0; i < nconns_cap; i++) {
        sl_conn_t  *c = conns[i];

        if (c != NULL && c->req == NULL && !c->closed && c->nrequests > 0
            && evbuffer_get_length(bufferevent_get_input(c->bev)) == 0)
        {
            sl_conn_close(c);
        }
    }
}
