/* upstream.c -- outbound transfers: their life cycle, their timer, and the choice of engine.
 * A transfer is filled in by its owner (lua_upstream.c), started here, and run by the native
 * HTTP/1.1 client when its url is plain http to an IP literal (upstream_h1.c), by libcurl
 * otherwise (upstream_curl.c). Finished transfers are kept (up to SPARE_MAX) with their pool
 * block, timer, request buffer and easy handle, so a request allocates nothing here. */
#include "upstream.h"

#include "conf.h"
#include "worker.h"

#define SPARE_MAX  64


static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
    sl_transfer_t  *t = arg;

    SL_UNUSED(fd);
    SL_UNUSED(what);

    if (t->deferred != 0) {
        /* failed while starting: reported now, from the loop */
        int  result = t->deferred;
        t->deferred = 0;
        sl_transfer_finish(t, result);
        return;
    }

    if (t->done) {
        return;
    }

    if (t->max_time > 0 && sl_worker_update_time() - t->start >= t->max_time) {
        t->error = "upstream timed out";
        if (t->native) {
            sl_up_h1_stop(t);
        } else {
            sl_up_curl_stop(t);
        }

        sl_transfer_finish(t, 504);
        return;
    }

    if (t->native) {
        sl_up_h1_on_timer(t);
    } else {
        sl_up_curl_on_timer(t);
    }
}


sl_upstream_t *
sl_upstream_new(struct event_base *base, const void *conf)
{
    sl_upstream_t  *up = sl_xcalloc(1, sizeof(sl_upstream_t));

    up->base = base;
    up->conf = conf;
    up->spare = sl_xcalloc(SPARE_MAX, sizeof(sl_transfer_t *));
    up->curl = sl_up_curl_new(up);
    up->h1 = sl_up_h1_new(up);
    return up;
}


static void
release(sl_transfer_t *t)
{
    sl_up_curl_release(t);
    event_free(t->timer);
    sl_pool_free(t->pool);
    free(t->wbuf);
    free(t);
}


void
sl_upstream_free(sl_upstream_t *up)
{
    size_t  i;

    for (i = 0; i < up->nspare; i++) {
        release(up->spare[i]);
    }

    sl_up_h1_free(up->h1);
    sl_up_curl_free(up->curl);
    free(up->spare);
    free(up);
}


size_t
sl_upstream_active(sl_upstream_t *up)
{
    return up->active;
}


sl_transfer_t *
sl_transfer_new(sl_upstream_t *up)
{
    const sl_conf_t  *conf = up->conf;
    sl_transfer_t    *t;
    sl_pool_t        *pool;
    struct event     *timer;
    CURL             *easy;
    char             *wbuf;
    size_t            wcap;

    if (up->nspare > 0) {
        t = up->spare[--up->nspare];
        pool = t->pool;
        timer = t->timer;
        sl_up_curl_reset(t);
        easy = t->easy;
        wbuf = t->wbuf;
        wcap = t->wcap;
        memset(t, 0, sizeof(*t));
        t->pool = pool;
        t->timer = timer;
        t->easy = easy;
        t->wbuf = wbuf;
        t->wcap = wcap;
        event_assign(t->timer, up->base, -1, 0, on_timer, t);

    } else {
        t = sl_xcalloc(1, sizeof(sl_transfer_t));
        t->pool = sl_pool_new(2048);
        t->timer = evtimer_new(up->base, on_timer, t);
    }

    t->up = up;
    sl_hdrs_init(&t->headers, t->pool, 16);
    sl_hdrs_init(&t->req_headers, t->pool, 24);
    t->connect_timeout = conf->up_connect_timeout;
    t->send_timeout = conf->up_send_timeout;
    t->read_timeout = conf->up_read_timeout;
    t->ssl_verify = 1;
    t->keepalive = 1;
    return t;
}


void
sl_transfer_add_header(sl_transfer_t *t, const char *name, size_t nlen, const char *value,
                       size_t vlen)
{
    sl_hdrs_add(&t->req_headers, name, nlen, value, vlen);
}


int
sl_transfer_start(sl_transfer_t *t, const char **err)
{
    int  rc;

    t->start = sl_worker_now();
    t->last_io = t->start;

    t->starting = 1;
    rc = sl_up_h1_start(t, err);
    if (rc == SL_DECLINED) {
        rc = sl_up_curl_start(t, err);
    }

    t->starting = 0;
    if (rc != SL_OK) {
        t->error = *err;
        t->done = 1;
        return SL_ERROR;
    }

    t->active = 1;
    t->up->active++;
    if (t->deferred != 0) {
        event_active(t->timer, EV_TIMEOUT, 1);
        return SL_OK;
    }

    sl_transfer_arm(t, sl_min(t->connect_timeout, sl_min(t->send_timeout, t->read_timeout)));
    return SL_OK;
}


void
sl_transfer_arm(sl_transfer_t *t, double limit)
{
    struct timeval  tv;

    if (t->max_time > 0) {
        limit = sl_min(limit, t->max_time - (sl_worker_now() - t->start));
    }

    if (limit < 0.01) {
        limit = 0.01;
    }

    tv.tv_sec = (long) limit;
    tv.tv_usec = (long) ((limit - (double) tv.tv_sec) * 1e6);
    evtimer_add(t->timer, &tv);
}


void
sl_transfer_finish(sl_transfer_t *t, int result)
{
    if (t->done) {
        return;
    }

    if (t->starting) {
        t->deferred = result;       /* no callback from inside sl_transfer_start */
        return;
    }

    t->done = 1;
    if (t->active) {
        t->active = 0;
        t->up->active--;
    }

    evtimer_del(t->timer);
    t->on_done(t, result);
}


void
sl_transfer_resume(sl_transfer_t *t)
{
    if (!t->paused || t->done) {
        return;
    }

    t->paused = 0;
    t->last_io = sl_worker_now();
    if (t->native) {
        sl_up_h1_resume(t);
    } else {
        sl_up_curl_resume(t);
    }
}


void
sl_transfer_cancel(sl_transfer_t *t)
{
    if (t->active) {
        t->active = 0;
        t->up->active--;
        if (t->native) {
            sl_up_h1_stop(t);
        } else {
            sl_up_curl_stop(t);
        }
    }

    t->done = 1;
    evtimer_del(t->timer);
}


void
sl_transfer_free(sl_transfer_t *t)
{
    sl_upstream_t  *up = t->up;

    sl_transfer_cancel(t);
    if (up->nspare < SPARE_MAX) {
        sl_pool_reset(t->pool);
        up->spare[up->nspare++] = t;
        return;
    }

    release(t);
}
