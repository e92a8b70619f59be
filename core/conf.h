/* conf.h -- the node configuration as the C host needs it. lua/sluice/conf.lua reads and
 * checks the file; sl_conf_load() copies the values C uses and keeps the normalised JSON for
 * the workers' Lua side. */
#ifndef SL_CONF_H
#define SL_CONF_H

#include "sluice.h"

#define SL_MAX_LISTEN   32
#define SL_MAX_ZONES    64
#define SL_MAX_WORKERS  64

enum {
    SL_LISTEN_HTTP = 0,
    SL_LISTEN_ADMIN,
    SL_LISTEN_METRICS,
};

typedef struct {
    char    host[64];
    int     port;
    int     ssl;
    int     kind;
} sl_listen_conf_t;

typedef struct {
    char    name[64];
    size_t  size;
} sl_zone_conf_t;

typedef struct sl_conf_s {
    char             *path;
    char             *prefix;
    char             *home;         /* where lua/ and plugins/ live */
    char             *json;         /* normalised configuration, for the workers' Lua */
    sl_listen_conf_t  listen[SL_MAX_LISTEN];
    size_t            nlisten;
    int               workers;
    int               log_level;
    size_t            client_max_body_size;
    size_t            client_header_buffer_size;
    size_t            large_request_line;
    double            client_header_timeout;
    double            client_body_timeout;
    double            keepalive_timeout;
    double            send_timeout;
    size_t            keepalive_requests;
    size_t            send_buffer_size;
    long              up_keepalive_pool;
    double            up_keepalive_timeout;
    long              up_keepalive_requests;
    double            up_connect_timeout;
    double            up_send_timeout;
    double            up_read_timeout;
    sl_zone_conf_t    zones[SL_MAX_ZONES];
    size_t            nzones;
    char             *access_log;   /* NULL when off */
    size_t            access_log_buffer;
    double            access_log_flush;
} sl_conf_t;

/* Reads and checks the configuration at path. On failure returns NULL with *err set to a
 * one-line reason (owned by the caller: free()). check_routes also loads the route file or
 * store through Lua, as -t and reload do. */
sl_conf_t *sl_conf_load(const char *path, const char *prefix, const char *home,
                        int check_routes, char **err);

void sl_conf_free(sl_conf_t *conf);

/* Sets package.path/cpath of L for home (lua/ and plugins/). */
void sl_conf_set_paths(void *L, const char *home);

#endif
