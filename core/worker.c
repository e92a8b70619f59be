/* worker.c -- a worker process: its event base, Lua state and curl multi; accepting on its
 * listeners; stopping. SIGQUIT (graceful): stop accepting, close idle connections, let
 * in-flight requests (streams included) finish, then exit. SIGTERM: exit now. SIGUSR1:
 * reopen the logs. The master's death also ends the worker. */
#include "worker.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/time.h>
#include <unistd.h>

#include "conn.h"
#include "log.h"
#include "lua_vm.h"
#include "upstream.h"

static sl_worker_t   worker;
sl_worker_t         *sl_worker;


double
sl_worker_now(void)
{
    return worker.now;
}


double
sl_worker_update_time(void)
{
    struct timeval  tv;

    gettimeofday(&tv, NULL);
    worker.now = tv.tv_sec + tv.tv_usec / 1e6;
    return worker.now;
}


static void
on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int socklen,
          void *arg)
{
    sl_worker_listener_t  *wl = arg;

    sl_worker_update_time();
    sl_conn_accept(fd, sa, wl->kind, wl->ssl);
}


static void
on_accept_error(struct evconnlistener *l, void *arg)
{
    sl_log_warn("accept() failed: %s", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}


void
sl_worker_check_drained(void)
{
    if (worker.stopping && worker.nconns == 0 && worker.nrequests == 0) {
        event_base_loopbreak(worker.base);
    }
}


static void
stop_accepting(void)
{
    size_t  i;

    for (i = 0; i < worker.nlisteners; i++) {
        if (worker.listeners[i].ev != NULL) {
            evconnlistener_free(worker.listeners[i].ev);
            worker.listeners[i].ev = NULL;
        }
    }
}


static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
    switch (sig) {

    case SIGQUIT:
        if (worker.stopping) {
            break;
        }

        sl_log_info("worker draining %zu connection(s)", worker.nconns);
        worker.stopping = 1;
        stop_accepting();
        sl_conn_close_idle();
        sl_timer_run_premature();
        sl_worker_check_drained();
        break;

    case SIGTERM:
    case SIGINT:
        event_base_loopbreak(worker.base);
        break;

    case SIGUSR1:
        sl_log_reopen();
        sl_access_log_reopen();
        break;

    default:
        break;
    }
}


static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
    sl_worker_update_time();
    sl_access_log_flush();

    /* the master is gone (killed with SIGKILL): do not linger */
    if (getppid() == 1) {
        event_base_loopbreak(worker.base);
    }
}


int
sl_worker_run(sl_conf_t *conf, sl_listeners_t *ls, int slot, unsigned generation)
{
    const char      *err;
    size_t           i;
    int              sigs[] = {SIGQUIT, SIGTERM, SIGINT, SIGUSR1};
    struct event    *ev;
    struct timeval   tick;
    sl_worker_listener_t  *wl;

    prctl(PR_SET_PDEATHSIG, SIGTERM);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);

    sl_worker = &worker;
    worker.conf = conf;
    worker.slot = slot;
    worker.generation = generation;
    worker.base = event_base_new();
    sl_worker_update_time();

    if (conf->access_log != NULL
        && sl_access_log_open(conf->access_log, conf->access_log_buffer, &err) != SL_OK)
    {
        sl_log_error("%s: %s", err, conf->access_log);
    }

    worker.upstream = sl_upstream_new(worker.base, conf);

    worker.L = sl_lua_new(conf->home, conf->json, slot, conf->workers, generation, &err);
    if (worker.L == NULL) {
        sl_log_crit("worker %d cannot start Lua: %s", slot, err);
        return 2;
    }

    for (i = 0; i < ls->n; i++) {
        wl = &worker.listeners[worker.nlisteners];
        wl->kind = ls->ls[i].conf.kind;
        wl->ssl = ls->ls[i].conf.ssl;
        wl->ev = evconnlistener_new(worker.base, on_accept, wl, LEV_OPT_REUSEABLE, -1,
                                    sl_listen_fd(&ls->ls[i], slot));
        if (wl->ev == NULL) {
            sl_log_crit("worker %d cannot listen", slot);
            return 2;
        }

        evconnlistener_set_error_cb(wl->ev, on_accept_error);
        worker.nlisteners++;
    }

    /* sockets of other slots: not ours to accept on */
    for (i = 0; i < ls->n; i++) {
        int k;
        for (k = 0; k < ls->ls[i].nfds; k++) {
            if (ls->ls[i].fds[k] != sl_listen_fd(&ls->ls[i], slot)) {
                close(ls->ls[i].fds[k]);
            }
        }
    }

    for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
        ev = evsignal_new(worker.base, sigs[i], on_signal, NULL);
        event_add(ev, NULL);
    }

    tick.tv_sec = 0;
    tick.tv_usec = 500000;
    ev = event_new(worker.base, -1, EV_PERSIST, on_tick, NULL);
    event_add(ev, &tick);

    event_base_dispatch(worker.base);

    sl_access_log_flush();
    sl_log_info("worker %d (slot %d) exiting", (int) getpid(), slot);
    return 0;
}
