/* listen.h -- listening sockets, created by the master before fork. Traffic listeners get
 * one SO_REUSEPORT socket per worker slot, so the kernel spreads connections and a worker
 * that is replaced (crash or reload) hands its slot's socket to its successor: the socket
 * never closes, so no connection is refused. */
#ifndef SL_LISTEN_H
#define SL_LISTEN_H

#include "conf.h"

typedef struct {
    sl_listen_conf_t  conf;
    int               fds[SL_MAX_WORKERS];   /* per worker slot; admin/metrics use fds[0] */
    int               nfds;
    int               keep;                  /* mark for reload reconciliation */
} sl_listener_t;

typedef struct {
    sl_listener_t     ls[SL_MAX_LISTEN];
    size_t            n;
} sl_listeners_t;

/* Makes the set match conf: keeps sockets whose address is unchanged, opens new ones (with
 * enough per-slot sockets for conf->workers), closes those no longer configured. On error
 * nothing already open is closed and *err says why. */
int sl_listen_sync(sl_listeners_t *set, const sl_conf_t *conf, const char **err);

/* The socket a worker in slot `slot` accepts on. */
int sl_listen_fd(const sl_listener_t *ls, int slot);

#endif
