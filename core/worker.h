/* worker.h -- the worker process: one event base, one Lua state, one curl multi. */
#ifndef SL_WORKER_H
#define SL_WORKER_H

#include <event2/event.h>
#include <event2/listener.h>

#include "conf.h"
#include "listen.h"

struct lua_State;
struct sl_upstream_s;
struct sl_tls_s;

typedef struct {
    struct evconnlistener  *ev;
    int                     kind;      /* SL_LISTEN_* */
    int                     ssl;
} sl_worker_listener_t;

typedef struct sl_worker_s {
    struct event_base      *base;
    sl_conf_t              *conf;
    int                     slot;
    unsigned                generation;
    struct lua_State       *L;
    struct sl_upstream_s   *upstream;
    sl_worker_listener_t    listeners[SL_MAX_LISTEN];
    size_t                  nlisteners;
    size_t                  nconns;        /* open downstream connections */
    size_t                  nrequests;     /* requests not yet finished (incl. log phase) */
    int                     stopping;      /* graceful drain in progress */
    double                  now;           /* cached wall-clock time, seconds */
    struct sl_tls_s        *tls;
} sl_worker_t;

extern sl_worker_t  *sl_worker;

/* Runs a worker in slot `slot` until it stops; returns the process exit status. */
int sl_worker_run(sl_conf_t *conf, sl_listeners_t *ls, int slot, unsigned generation);

/* Wall-clock seconds with microsecond precision, cached per event-loop turn. */
double sl_worker_now(void);

/* Refreshes the cached time. */
double sl_worker_update_time(void);

/* Called when a connection or request ends: a draining worker exits once idle. */
void sl_worker_check_drained(void);

#endif
