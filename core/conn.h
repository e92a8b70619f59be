/* conn.h -- a downstream connection: its bufferevent (plain or TLS), timeouts, keep-alive,
 * and the request it is currently reading or serving. */
#ifndef SL_CONN_H
#define SL_CONN_H

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "sluice.h"

struct sl_req_s;

typedef struct sl_conn_s {
    struct bufferevent  *bev;
    int                  fd;
    int                  kind;          /* SL_LISTEN_* */
    int                  ssl;
    char                 remote_addr[64];
    int                  remote_port;
    struct sl_req_s     *req;           /* being read or served; NULL when idle */
    size_t               nrequests;
    struct event        *next_ev;       /* deferred start of the next pipelined request */
    struct event        *head_ev;       /* deadline for the whole request head */
    size_t               head_scanned;  /* head bytes seen without a line end yet */
    double               read_timeout;  /* as last set by sl_conn_set_timeouts */
    struct sl_conn_s    *next_dirty;    /* on the list of outputs to write this loop turn */
    unsigned             dirty:1;
    unsigned             closing:1;     /* close once the output is written */
    unsigned             closed:1;      /* bufferevent gone; waiting for the deferred free */
    unsigned             head_armed:1;  /* head_ev is pending */
    unsigned             timeouts_set:1;
} sl_conn_t;

/* Takes ownership of an accepted socket. */
void sl_conn_accept(int fd, const struct sockaddr *sa, int kind, int ssl);

/* Closes the connection now; a request being served learns that its client is gone. */
void sl_conn_close(sl_conn_t *c);

/* The current request's response is complete: go on with keep-alive or close. */
void sl_conn_request_done(sl_conn_t *c);

/* Applies the read/write timeouts for the connection's state. */
void sl_conn_set_timeouts(sl_conn_t *c, double read_timeout);

/* Starts (on = 1) or clears the deadline for receiving a whole request head; unlike a read
 * timeout it is not pushed back by each byte, so a trickling client is cut off. */
void sl_conn_head_deadline(sl_conn_t *c, int on);

/* Closes idle keep-alive connections (graceful stop). */
void sl_conn_close_idle(void);

/* Writes what is queued straight to the socket (plain connections), so a response is on its
 * way before the log phase runs; what the socket does not take is left to libevent. Queued
 * bytes are also written at the end of the loop turn without this call (see conn.c). */
void sl_conn_flush(sl_conn_t *c);

#endif
