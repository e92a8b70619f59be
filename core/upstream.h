/* upstream.h -- outbound HTTP for the worker: proxied requests and the plugin HTTP client.
 *
 * A transfer is described by plain fields (url, method, headers, body, timeouts), then
 * started; it reports through three callbacks, none of which may free the transfer (use
 * sl_transfer_free() later, outside the callbacks). Two engines sit behind it, chosen per
 * transfer at start: the native HTTP/1.1 client (upstream_h1.c: plain http to an IP
 * literal, the hot path of a gateway) and libcurl's multi (upstream_curl.c: https, HTTP/2,
 * host names, which need TLS, ALPN and an asynchronous resolver). */
#ifndef SL_UPSTREAM_H
#define SL_UPSTREAM_H

#include <curl/curl.h>
#include <event2/event.h>

#include "headers.h"
#include "http_parse.h"
#include "pool.h"

struct sl_req_s;

typedef struct sl_upstream_s sl_upstream_t;
typedef struct sl_transfer_s sl_transfer_t;
typedef struct sl_h1_conn_s sl_h1_conn_t;

struct sl_transfer_s {
    sl_upstream_t       *up;
    sl_pool_t           *pool;           /* response headers and copied request parts */
    void                *data;           /* the owner's */

    /* the final (non-1xx) status and headers are complete */
    void               (*on_headers)(sl_transfer_t *t);
    /* body bytes; return SL_AGAIN to pause (the same bytes come again after resume) */
    int                (*on_body)(sl_transfer_t *t, const char *p, size_t n);
    /* finished: result is SL_OK, or 502/504 with t->error set */
    void               (*on_done)(sl_transfer_t *t, int result);

    /* ---- the request, set before sl_transfer_start ---- */
    sl_str_t             url;             /* read during start only */
    sl_str_t             method;          /* "" = GET, or POST with a body */
    sl_str_t             host;            /* Host field; len 0 = from the url */
    sl_hdrs_t            req_headers;     /* sent as they are; read during start only */
    const char          *body;            /* must live until the transfer ends */
    size_t               body_len;
    double               connect_timeout; /* seconds */
    double               send_timeout;
    double               read_timeout;
    double               max_time;        /* the whole transfer; 0 = no limit */
    double               keepalive_timeout;  /* idle age of a pooled connection; 0 = conf */
    unsigned             has_body:1;
    unsigned             ssl_verify:1;
    unsigned             keepalive:1;
    unsigned             http2:1;         /* HTTP/2 over TLS when offered */

    /* ---- the response ---- */
    int                  status;
    sl_hdrs_t            headers;
    const char          *error;
    char                 errbuf[CURL_ERROR_SIZE];
    double               connect_time;    /* seconds from start to connected; 0 reused */

    /* ---- state ---- */
    double               start;
    double               last_io;
    struct event        *timer;
    unsigned             native:1;        /* which engine runs it */
    unsigned             active:1;
    unsigned             paused:1;
    unsigned             headers_done:1;
    unsigned             done:1;
    unsigned             sent:1;          /* the request is out: waiting to read */
    unsigned             starting:1;      /* inside sl_transfer_start */
    int                  deferred;        /* a result to report from the loop */

    /* libcurl engine */
    CURL                *easy;
    struct curl_slist   *slist;
    curl_off_t           uploaded;

    /* native engine */
    sl_h1_conn_t        *conn;
    char                *wbuf;            /* the request head, kept for a retry */
    size_t               wcap, wlen, woff;   /* woff: bytes of head + body written */
    int64_t              remaining;       /* body bytes left (length mode) */
    size_t               pend_off, pend_len; /* body bytes on_body has not taken */
    sl_http_chunked_t    chunked;
    unsigned             mode:2;          /* body framing, see upstream_h1.c */
    unsigned             retried:1;
    unsigned             head_req:1;
    unsigned             got_bytes:1;     /* something of the response arrived */
    unsigned             complete:1;      /* the response body is all there */
    unsigned             keep:1;          /* the connection may be pooled afterwards */
};

/* One per worker. */
sl_upstream_t *sl_upstream_new(struct event_base *base, const void *conf);
void sl_upstream_free(sl_upstream_t *up);
size_t sl_upstream_active(sl_upstream_t *up);

/* A new transfer with defaults from the config (timeouts, keep-alive, TLS verify on). */
sl_transfer_t *sl_transfer_new(sl_upstream_t *up);

/* Adds a request header; name and value are read during sl_transfer_start only. */
void sl_transfer_add_header(sl_transfer_t *t, const char *name, size_t nlen,
    const char *value, size_t vlen);

/* Starts it; the callbacks fire from the event loop (never from here). SL_ERROR with *err
 * when it cannot start at all (then t->error is set too, and no callback comes). */
int sl_transfer_start(sl_transfer_t *t, const char **err);

/* Resumes a transfer paused by on_body returning SL_AGAIN. Not from its callbacks; may call
 * them (on_body, on_done) before it returns. */
void sl_transfer_resume(sl_transfer_t *t);

/* Stops a running transfer without calling on_done. Not from its callbacks. */
void sl_transfer_cancel(sl_transfer_t *t);

/* Cancels (if running) and frees. Not from this transfer's callbacks. */
void sl_transfer_free(sl_transfer_t *t);

/* The request's client left: stop its proxy transfer now. */
void sl_upstream_on_client_gone(struct sl_req_s *r);


/* ---- between upstream.c and its engines ---- */

struct sl_upstream_s {
    struct event_base  *base;
    const void         *conf;          /* sl_conf_t */
    size_t              active;
    sl_transfer_t     **spare;         /* finished transfers kept for reuse */
    size_t              nspare;
    void               *curl;          /* upstream_curl.c's state */
    void               *h1;            /* upstream_h1.c's state */
};

/* Called by an engine when its transfer ended: stops the timer, marks it done, calls
 * on_done. */
void sl_transfer_finish(sl_transfer_t *t, int result);

/* Re-arms the transfer's timer for `limit` seconds (at least 10 ms). */
void sl_transfer_arm(sl_transfer_t *t, double limit);

void *sl_up_curl_new(sl_upstream_t *up);
void sl_up_curl_free(void *state);
int sl_up_curl_start(sl_transfer_t *t, const char **err);
void sl_up_curl_resume(sl_transfer_t *t);
void sl_up_curl_stop(sl_transfer_t *t);       /* removes it from the multi */
void sl_up_curl_release(sl_transfer_t *t);    /* frees the easy handle */
void sl_up_curl_reset(sl_transfer_t *t);      /* for reuse */
void sl_up_curl_on_timer(sl_transfer_t *t);

void *sl_up_h1_new(sl_upstream_t *up);
void sl_up_h1_free(void *state);
/* SL_DECLINED: not a plain-http IP-literal url, use curl */
int sl_up_h1_start(sl_transfer_t *t, const char **err);
void sl_up_h1_resume(sl_transfer_t *t);
void sl_up_h1_stop(sl_transfer_t *t);         /* closes its connection unless pooled */
void sl_up_h1_on_timer(sl_transfer_t *t);

#endif
