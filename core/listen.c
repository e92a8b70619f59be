/* listen.c -- opening, keeping and closing the listening sockets across reloads. */
#include "listen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>


static int
open_one(const sl_listen_conf_t *lc, int reuseport, const char **err)
{
    struct addrinfo   hints, *res;
    char              port[16];
    int               fd, on = 1;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(port, sizeof(port), "%d", lc->port);

    if (getaddrinfo(lc->host, port, &hints, &res) != 0) {
        *err = "cannot resolve the listen address";
        return -1;
    }

    fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        freeaddrinfo(res);
        *err = "socket() failed";
        return -1;
    }

    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    if (reuseport) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on));
    }

    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));

    if (bind(fd, res->ai_addr, res->ai_addrlen) != 0) {
        *err = errno == EADDRINUSE ? "address already in use" : "bind() failed";
        freeaddrinfo(res);
        close(fd);
        return -1;
    }

    freeaddrinfo(res);

    if (listen(fd, 4096) != 0) {
        *err = "listen() failed";
        close(fd);
        return -1;
    }

    /* the workers inherit it across fork; exec never happens */
    fcntl(fd, F_SETFD, 0);
    return fd;
}


/* A listener whose address was free before we bound it: a second instance of Sluice must
 * not silently share the port through SO_REUSEPORT. Probe with a plain bind first. */
static int
probe_free(const sl_listen_conf_t *lc, const char **err)
{
    int  fd = open_one(lc, 0, err);

    if (fd < 0) {
        return SL_ERROR;
    }

    close(fd);
    return SL_OK;
}


static int
fill_slots(sl_listener_t *l, int want, const char **err)
{
    int  fd;

    if (l->conf.kind != SL_LISTEN_HTTP) {
        want = 1;
    }

    while (l->nfds < want) {
        fd = open_one(&l->conf, 1, err);
        if (fd < 0) {
            return SL_ERROR;
        }

        l->fds[l->nfds++] = fd;
    }

    /* fewer workers: a socket nobody accepts on would strand the connections the kernel
     * hashes to it */
    while (l->nfds > want) {
        close(l->fds[--l->nfds]);
    }

    return SL_OK;
}


int
sl_listen_sync(sl_listeners_t *set, const sl_conf_t *conf, const char **err)
{
    sl_listeners_t  next;
    size_t          i, j;
    int             found, k;

    memset(&next, 0, sizeof(next));

    for (i = 0; i < conf->nlisten; i++) {
        found = 0;
        for (j = 0; j < set->n; j++) {
            if (set->ls[j].conf.port == conf->listen[i].port
                && strcmp(set->ls[j].conf.host, conf->listen[i].host) == 0
                && set->ls[j].conf.kind == conf->listen[i].kind)
            {
                next.ls[next.n] = set->ls[j];
                next.ls[next.n].conf = conf->listen[i];
                set->ls[j].keep = 1;
                found = 1;
                break;
            }
        }

        if (!found) {
            if (probe_free(&conf->listen[i], err) != SL_OK) {
                goto failed;
            }

            next.ls[next.n].conf = conf->listen[i];
            next.ls[next.n].nfds = 0;
        }

        if (fill_slots(&next.ls[next.n], conf->workers, err) != SL_OK) {
            next.n++;
            goto failed;
        }

        next.n++;
    }

    for (j = 0; j < set->n; j++) {
        if (!set->ls[j].keep) {
            for (k = 0; k < set->ls[j].nfds; k++) {
                close(set->ls[j].fds[k]);
            }
        }
    }

    for (i = 0; i < next.n; i++) {
        next.ls[i].keep = 0;
    }

    *set = next;
    return SL_OK;

failed:

    /* close only what this call opened: sockets not in the old set */
    for (i = 0; i < next.n; i++) {
        for (k = 0; k < next.ls[i].nfds; k++) {
            found = 0;
            for (j = 0; j < set->n; j++) {
                int  m;
                for (m = 0; m < set->ls[j].nfds; m++) {
                    if (set->ls[j].fds[m] == next.ls[i].fds[k]) {
                        found = 1;
                    }
                }
            }

            if (!found) {
                close(next.ls[i].fds[k]);
            }
        }
    }

    for (j = 0; j < set->n; j++) {
        set->ls[j].keep = 0;
    }

    return SL_ERROR;
}


int
sl_listen_fd(const sl_listener_t *ls, int slot)
{
    if (ls->conf.kind != SL_LISTEN_HTTP || ls->nfds == 1) {
        return ls->fds[0];
    }

    return ls->fds[slot % ls->nfds];
}
