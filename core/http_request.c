/* http_request.c -- from bytes to a request handed to Lua: parse the head (http_parse.c),
 * check the limits, read a Content-Length or chunked body into memory (bounded by
 * client_max_body_size, answering Expect: 100-continue), then start the request's
 * coroutine. Also the request's reference counting: the connection, the coroutine and an
 * upstream transfer each hold one. */
#include "http_request.h"

#include <event2/buffer.h>

#include "http_response.h"
#include "lua_vm.h"
#include "upstream.h"
#include "worker.h"


static void
rebase(sl_str_t *s, const char *from, const char *to)
{
    if (s->len > 0 || s->data != NULL) {
        s->data = to + (s->data - from);
    }
}


static sl_req_t *
req_new(sl_conn_t *c, const char *buf, size_t head_len, const sl_http_head_t *h)
{
    sl_pool_t  *pool;
    sl_req_t   *r;
    char       *copy;
    size_t      i;

    pool = sl_pool_new(4096 + head_len);
    r = sl_pool_calloc(pool, sizeof(sl_req_t));
    r->pool = pool;
    r->conn = c;
    r->kind = c->kind;
    r->ssl = c->ssl;
    r->refs = 1;                /* the connection's */
    r->resp_length = -1;
    r->status = 200;
    memcpy(r->remote_addr, c->remote_addr, sizeof(r->remote_addr));
    r->remote_port = c->remote_port;
    r->start = sl_worker_now();
    r->req_length = head_len;

    /* the head's strings point into the input buffer: copy it and move the pointers */
    copy = sl_pool_alloc(pool, head_len + 1);
    memcpy(copy, buf, head_len);
    copy[head_len] = '\0';
    /* the scalar fields only: the header array is copied into r->headers below */
    r->head.method = h->method;
    r->head.target = h->target;
    r->head.path = h->path;
    r->head.query = h->query;
    r->head.authority = h->authority;
    r->head.version = h->version;
    r->head.content_length = h->content_length;
    r->head.host = h->host;
    r->head.chunked = h->chunked;
    r->head.keepalive = h->keepalive;
    r->head.expect_continue = h->expect_continue;
    rebase(&r->head.method, buf, copy);
    rebase(&r->head.target, buf, copy);
    rebase(&r->head.path, buf, copy);
    rebase(&r->head.query, buf, copy);
    rebase(&r->head.authority, buf, copy);
    rebase(&r->head.host, buf, copy);

    sl_hdrs_init(&r->headers, pool, h->nheaders + 8);
    for (i = 0; i < h->nheaders; i++) {
        sl_hdrs_add(&r->headers,
                    copy + (h->headers[i].name.data - buf), h->headers[i].name.len,
                    copy + (h->headers[i].value.data - buf), h->headers[i].value.len);
    }

    sl_hdrs_init(&r->resp_headers, pool, 16);
    r->head_only = r->head.method.len == 4 && memcmp(r->head.method.data, "HEAD", 4) == 0;
    r->keepalive = h->keepalive;

    sl_worker->nrequests++;
    return r;
}


void
sl_req_retain(sl_req_t *r)
{
    r->refs++;
}


void
sl_req_release(sl_req_t *r)
{
    if (--r->refs > 0) {
        return;
    }

    if (r->up != NULL) {
        sl_transfer_free(r->up);
        r->up = NULL;
    }

    if (r->body != NULL) {
        evbuffer_free(r->body);
    }

    if (r->pending != NULL) {
        evbuffer_free(r->pending);
    }

    sl_pool_free(r->pool);
    sl_worker->nrequests--;
    sl_worker_check_drained();
}


static void
start(sl_req_t *r)
{
    sl_conn_t  *c = r->conn;

    r->state = SL_REQ_PROCESS;
    c->nrequests++;

    if (c->nrequests >= sl_worker->conf->keepalive_requests || sl_worker->stopping) {
        r->keepalive = 0;
    }

    if (!r->keepalive) {
        c->closing = 1;
    }

    /* the read timeout stays as it is while the request is served (the upstream has its
     * own): one that runs out only re-enables reading (conn.c on_event), and not touching
     * it here saves two timer updates per request */
    sl_lua_run_request(r);
}


/* Moves body bytes from the connection's input into r->body. Returns SL_OK when the body
 * is complete, SL_AGAIN when more is needed, SL_ERROR when a response was already sent. */
static int
read_body(sl_req_t *r, struct evbuffer *in)
{
    size_t           n, consumed, off, dlen;
    struct evbuffer_iovec  v;
    int              rc;
    const char      *err;

    if (!r->head.chunked) {
        n = evbuffer_get_length(in);
        if ((int64_t) n > r->body_left) {
            n = (size_t) r->body_left;
        }

        if (n > 0) {
            evbuffer_remove_buffer(in, r->body, n);
            r->body_left -= n;
            r->req_length += n;
        }

        return r->body_left == 0 ? SL_OK : SL_AGAIN;
    }

    while (evbuffer_get_length(in) > 0) {
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1) {
            break;
        }

        rc = sl_http_chunked_parse(&r->chunked, v.iov_base, v.iov_len, &consumed, &off, &dlen,
                                   &err);
        if (rc == SL_ERROR) {
            sl_resp_conn_error(r->conn, 400, err);
            return SL_ERROR;
        }

        if (dlen > 0) {
            if (evbuffer_get_length(r->body) + dlen > r->body_limit) {
                sl_resp_conn_error(r->conn, 413, "request body too large");
                return SL_ERROR;
            }

            evbuffer_add(r->body, (char *) v.iov_base + off, dlen);
        }

        evbuffer_drain(in, consumed);
        r->req_length += consumed;

        if (rc == SL_OK) {
            return SL_OK;
        }

        if (consumed == 0) {
            break;
        }
    }

    return SL_AGAIN;
}


void
sl_http_on_input(sl_conn_t *c)
{
    struct evbuffer   *in = bufferevent_get_input(c->bev);
    sl_http_head_t     h;
    sl_http_limits_t   lim;
    sl_req_t          *r;
    size_t             len, head_len;
    const char        *p, *err;
    int                rc, status;
    const sl_conf_t   *conf = sl_worker->conf;
    static const char  cont[] = "HTTP/1.1 100 Continue\r\n\r\n";

    r = c->req;

    if (r == NULL) {
        len = evbuffer_get_length(in);
        if (len == 0) {
            return;
        }

        lim.max_line = conf->large_request_line;
        lim.max_head = conf->client_header_buffer_size;
        if (len > lim.max_head + 1) {
            len = lim.max_head + 1;
        }

        p = (const char *) evbuffer_pullup(in, len);

        /* the parser starts over on each call: skip it until a line end arrives, so a
         * client sending a byte at a time costs linear work, not quadratic. The first bytes
         * of a head that is not whole start its deadline (a whole one needs none: the timer
         * is not touched on the usual path). */
        if (len <= lim.max_head && c->head_scanned < len
            && memchr(p + c->head_scanned, '\n', len - c->head_scanned) == NULL)
        {
            sl_conn_head_deadline(c, 1);
            c->head_scanned = len;
            return;
        }

        rc = sl_http_parse_head(p, len, &lim, &h, &head_len, &status, &err);

        if (rc == SL_AGAIN) {
            sl_conn_head_deadline(c, 1);
            c->head_scanned = len;
            if (c->nrequests > 0) {
                sl_conn_set_timeouts(c, conf->client_header_timeout);
            }

            return;
        }

        sl_conn_head_deadline(c, 0);

        if (rc == SL_ERROR) {
            sl_log_info("bad request from %s: %s", c->remote_addr, err);
            sl_resp_conn_error(c, status, err);
            return;
        }

        r = req_new(c, p, head_len, &h);
        c->req = r;
        evbuffer_drain(in, head_len);

        if (h.content_length > 0 || h.chunked) {
            r->body_limit = conf->client_max_body_size;
            if (h.content_length > (int64_t) r->body_limit) {
                sl_resp_conn_error(c, 413, "request body too large");
                return;
            }

            r->body = evbuffer_new();
            r->body_left = h.content_length;
            sl_http_chunked_init(&r->chunked);
            r->state = SL_REQ_BODY;

            if (h.expect_continue && evbuffer_get_length(in) == 0 && h.version == 11) {
                bufferevent_write(c->bev, cont, sizeof(cont) - 1);
            }

            /* the body timeout only for a body still to come (below): one that came with
             * its head goes straight to the request, whose start sets the timeouts anyway */
            r->body_timer = 0;

        } else {
            start(r);
            return;
        }
    }

    if (r->state != SL_REQ_BODY) {
        return;
    }

    rc = read_body(r, in);
    if (rc == SL_OK) {
        start(r);
    } else if (rc == SL_AGAIN && !r->body_timer && r->state == SL_REQ_BODY) {
        r->body_timer = 1;
        sl_conn_set_timeouts(c, conf->client_body_timeout);
    }
}


void
sl_req_client_gone(sl_req_t *r)
{
    r->client_gone = 1;

    if (r->up != NULL && !r->up_done) {
        sl_log_info("client %s closed the connection, cancelling the upstream transfer",
                    r->remote_addr);
        sl_upstream_on_client_gone(r);
    }

    /* other waits (sleep, pdk.http) run their course; later writes to the client are
     * dropped and the log phase still runs */
}
