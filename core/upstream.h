/* upstream.h -- outbound HTTP through libcurl's multi interface on the worker's event base.
 * A transfer reports through three callbacks; none of them may free the transfer (use
 * sl_transfer_free() later, outside curl's callbacks). */
#ifndef SL_UPSTREAM_H
#define SL_UPSTREAM_H

#include <curl/curl.h>
#include <event2/event.h>

#include "headers.h"
#include "pool.h"

struct sl_req_s;

typedef struct sl_upstream_s sl_upstream_t;
typedef struct sl_transfer_s sl_transfer_t;

struct sl_transfer_s {
    sl_upstream_t       *up;
    CURL                *easy;
    struct curl_slist   *req_headers;
    sl_pool_t           *pool;           /* response headers live here */
    void                *data;           /* the owner's */

    /* the final (non-1xx) status and headers are complete */
    void               (*on_headers)(sl_transfer_t *t);
    /* body bytes; return SL_AGAIN to pause (curl keeps them and calls again on resume) */
    int                (*on_body)(sl_transfer_t *t, const char *p, size_t n);
    /* finished: result is SL_OK, or 502/504 with t->error set */
    void               (*on_done)(sl_transfer_t *t, int result);

    int                  status;
    sl_hdrs_t            headers;
    char                 errbuf[CURL_ERROR_SIZE];
    const char          *error;
    double               connect_timeout;   /* seconds */
    double               send_timeout;
    double               read_timeout;
    double               last_io;
    curl_off_t           body_len;        /* request body bytes to send */
    curl_off_t           uploaded;
    struct event        *timer;
    int                  sock;
    unsigned             active:1;
    unsigned             paused:1;
    unsigned             headers_done:1;
    unsigned             done:1;
    unsigned             in_callback:1;
    unsigned             sent:1;          /* the request is out: waiting to read */
};

/* One per worker. */
sl_upstream_t *sl_upstream_new(struct event_base *base, const void *conf);
void sl_upstream_free(sl_upstream_t *up);
size_t sl_upstream_active(sl_upstream_t *up);

/* A new transfer with an easy handle ready for curl_easy_setopt. */
sl_transfer_t *sl_transfer_new(sl_upstream_t *up);

/* Adds a request header line "Name: value". */
void sl_transfer_add_header(sl_transfer_t *t, const char *line);

/* Starts it; the callbacks fire from the event loop. */
int sl_transfer_start(sl_transfer_t *t, const char **err);

/* Resumes a transfer paused by on_body returning SL_AGAIN. Not from curl callbacks. */
void sl_transfer_resume(sl_transfer_t *t);

/* Stops a running transfer without calling on_done. Not from its callbacks. */
void sl_transfer_cancel(sl_transfer_t *t);

/* Cancels (if running) and frees. Not from this transfer's callbacks. */
void sl_transfer_free(sl_transfer_t *t);

/* The request's client left: stop its proxy transfer now. */
void sl_upstream_on_client_gone(struct sl_req_s *r);

#endif
