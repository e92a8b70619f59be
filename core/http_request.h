/* http_request.h -- one HTTP request from parse to log: its head, body, header edits,
 * response state, upstream transfer and Lua coroutine. Freed when the last holder (the
 * connection, the coroutine, a transfer) releases it. */
#ifndef SL_HTTP_REQUEST_H
#define SL_HTTP_REQUEST_H

#include <event2/buffer.h>

#include "conn.h"
#include "headers.h"
#include "http_parse.h"
#include "pool.h"

struct sl_transfer_s;
struct sl_co_s;

enum {
    SL_REQ_HEAD = 0,
    SL_REQ_BODY,
    SL_REQ_PROCESS,
    SL_REQ_DONE,
};

/* the request line and framing of a parsed head; the fields are named as in
 * sl_http_head_t, whose header array is copied into sl_req_t.headers instead */
typedef struct {
    sl_str_t   method;
    sl_str_t   target;
    sl_str_t   path;
    sl_str_t   query;
    sl_str_t   authority;
    int        version;
    int64_t    content_length;
    sl_str_t   host;
    unsigned   chunked:1;
    unsigned   keepalive:1;
    unsigned   expect_continue:1;
} sl_req_head_t;

typedef struct sl_req_s {
    sl_pool_t             *pool;
    sl_conn_t             *conn;            /* NULL once the client is gone */
    int                    kind;            /* SL_LISTEN_* of the connection */
    int                    state;
    int                    refs;
    sl_req_head_t          head;            /* strings point into pool memory */
    sl_hdrs_t              headers;         /* request headers as plugins left them */
    char                   remote_addr[64];
    int                    remote_port;
    int                    ssl;

    /* body */
    struct evbuffer       *body;
    int64_t                body_left;       /* Content-Length bytes still to read */
    sl_http_chunked_t      chunked;
    size_t                 body_limit;

    /* response */
    int                    status;
    sl_hdrs_t              resp_headers;
    int64_t                resp_length;     /* Content-Length to send, -1: chunked/close */
    uint64_t               bytes_sent;
    uint64_t               req_length;      /* head + body bytes received */
    uint64_t               body_sent;
    unsigned               headers_sent:1;
    unsigned               resp_chunked:1;
    unsigned               resp_done:1;
    unsigned               keepalive:1;
    unsigned               head_only:1;
    unsigned               client_gone:1;
    unsigned               filtered:1;      /* body_filter plugins: send chunked */
    unsigned               body_timer:1;    /* client_body_timeout set for this body */
    unsigned               waiting_drain:1; /* upstream paused until the client drains */

    /* times (seconds, wall clock) */
    double                 start;
    double                 finish;

    /* upstream */
    struct sl_transfer_s  *up;
    struct evbuffer       *pending;         /* upstream body not yet taken by Lua */
    struct sl_capture_s   *capture;         /* pass_body{capture=}: a copy for the plugin */
    double                 up_start;
    double                 up_header_time;
    double                 up_end;
    int                    up_status;
    char                   up_addr[80];
    int                    up_result;       /* SL_OK, or the gateway status it failed with */
    const char            *up_error;
    unsigned               up_done:1;
    unsigned               up_direct:1;     /* body relayed by C without Lua */
    unsigned               up_body_wanted:1;/* Lua reads the body (read_body called) */
    unsigned               up_reading:1;    /* Lua waits in read_chunk() */
    unsigned               up_passing:1;    /* Lua waits in pass_body() */
    unsigned               up_aborted:1;

    struct sl_co_s        *co;
} sl_req_t;

/* Called by conn.c when input arrived for connection c (new head, or body). */
void sl_http_on_input(sl_conn_t *c);

/* The client left while r was being served: cancel its upstream, wake its coroutine. */
void sl_req_client_gone(sl_req_t *r);

void sl_req_retain(sl_req_t *r);
void sl_req_release(sl_req_t *r);

/* The response writer says: output drained below the low-water mark. */
void sl_req_on_drain(sl_req_t *r);

#endif
