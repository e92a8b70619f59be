/* conf.c -- loads the node configuration through a short-lived Lua state: the file may be
 * JSON or Lua, and the checks live in lua/sluice/conf.lua so they are written once. The
 * master calls this at start, for -t and on SIGHUP; the state is closed before any fork. */
#include "conf.h"

#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <unistd.h>

#include "log.h"


void
sl_conf_set_paths(void *vL, const char *home)
{
    lua_State  *L = vL;
    char        buf[8192];

    lua_getglobal(L, "package");
    snprintf(buf, sizeof(buf), "%s/lua/?.lua;%s/lua/?/init.lua;%s/plugins/?.lua;"
             "/usr/share/lua/5.1/?.lua;/usr/share/lua/5.1/?/init.lua",
             home, home, home);
    lua_pushstring(L, buf);
    lua_setfield(L, -2, "path");
    lua_pushstring(L, "/usr/lib/x86_64-linux-gnu/lua/5.1/?.so;/usr/local/lib/lua/5.1/?.so;"
                   "/usr/lib/lua/5.1/?.so");
    lua_setfield(L, -2, "cpath");
    lua_pop(L, 1);
}


static double
get_num(lua_State *L, int idx, const char *key, double dflt)
{
    double  v = dflt;

    lua_getfield(L, idx, key);
    if (lua_isnumber(L, -1)) {
        v = lua_tonumber(L, -1);
    }

    lua_pop(L, 1);
    return v;
}


static void
copy_str(lua_State *L, int idx, const char *key, char *dst, size_t size)
{
    lua_getfield(L, idx, key);
    snprintf(dst, size, "%s", lua_isstring(L, -1) ? lua_tostring(L, -1) : "");
    lua_pop(L, 1);
}


static int
workers_auto(void)
{
    long  n = sysconf(_SC_NPROCESSORS_ONLN);

    return n < 1 ? 1 : n > SL_MAX_WORKERS ? SL_MAX_WORKERS : (int) n;
}


/* Lua chunk run by sl_conf_load: returns conf, json or nil, err */
static const char  *load_chunk =
    "local path, prefix, check_routes, home = ...\n"
    "local conf_mod = require('sluice.conf')\n"
    "local conf, err = conf_mod.load(path, prefix)\n"
    "if not conf then return nil, err end\n"
    "conf.home = home\n"
    "if check_routes then\n"
    "  local ok, cerr = require('sluice.config').check(conf)\n"
    "  if not ok then return nil, cerr end\n"
    "end\n"
    "local json = require('cjson.safe').encode(conf)\n"
    "return conf, json\n";


sl_conf_t *
sl_conf_load(const char *path, const char *prefix, const char *home, int check_routes,
             char **err)
{
    lua_State   *L;
    sl_conf_t   *c;
    const char  *s;
    size_t       i, n;
    char         buf[512];

    L = luaL_newstate();
    if (L == NULL) {
        *err = strdup("cannot create a Lua state");
        return NULL;
    }

    luaL_openlibs(L);
    sl_conf_set_paths(L, home);

    if (luaL_loadbuffer(L, load_chunk, strlen(load_chunk), "=conf") != 0) {
        *err = strdup(lua_tostring(L, -1));
        lua_close(L);
        return NULL;
    }

    lua_pushstring(L, path);
    lua_pushstring(L, prefix);
    lua_pushboolean(L, check_routes);
    lua_pushstring(L, home);

    if (lua_pcall(L, 4, 2, 0) != 0 || lua_isnil(L, -2)) {
        s = lua_tostring(L, -1);
        *err = strdup(s ? s : "unknown configuration error");
        lua_close(L);
        return NULL;
    }

    c = sl_xcalloc(1, sizeof(sl_conf_t));
    c->path = strdup(path);
    c->prefix = strdup(prefix);
    c->home = strdup(home);
    c->json = strdup(lua_tostring(L, -1));
    lua_pop(L, 1);

    /* stack: conf */
    lua_getfield(L, -1, "listeners");
    n = lua_objlen(L, -1);
    for (i = 0; i < n && i < SL_MAX_LISTEN; i++) {
        lua_rawgeti(L, -1, (int) i + 1);
        copy_str(L, -1, "host", c->listen[i].host, sizeof(c->listen[i].host));
        c->listen[i].port = (int) get_num(L, -1, "port", 0);
        lua_getfield(L, -1, "ssl");
        c->listen[i].ssl = lua_toboolean(L, -1);
        lua_pop(L, 1);
        copy_str(L, -1, "kind", buf, sizeof(buf));
        c->listen[i].kind = strcmp(buf, "admin") == 0 ? SL_LISTEN_ADMIN
                            : strcmp(buf, "metrics") == 0 ? SL_LISTEN_METRICS : SL_LISTEN_HTTP;
        lua_pop(L, 1);
    }

    c->nlisten = i;
    lua_pop(L, 1);

    lua_getfield(L, -1, "workers");
    c->workers = lua_isnumber(L, -1) ? (int) lua_tonumber(L, -1) : workers_auto();
    lua_pop(L, 1);

    copy_str(L, -1, "log_level", buf, sizeof(buf));
    c->log_level = sl_log_parse_level(buf);

    lua_getfield(L, -1, "http");
    c->client_max_body_size = (size_t) get_num(L, -1, "client_max_body_size", 64 << 20);
    c->client_header_buffer_size = (size_t) get_num(L, -1, "client_header_buffer_size", 32768);
    c->large_request_line = (size_t) get_num(L, -1, "large_request_line", 8192);
    c->client_header_timeout = get_num(L, -1, "client_header_timeout", 60);
    c->client_body_timeout = get_num(L, -1, "client_body_timeout", 60);
    c->keepalive_timeout = get_num(L, -1, "keepalive_timeout", 75);
    c->send_timeout = get_num(L, -1, "send_timeout", 60);
    c->keepalive_requests = (size_t) get_num(L, -1, "keepalive_requests", 10000);
    c->send_buffer_size = (size_t) get_num(L, -1, "send_buffer_size", 256 * 1024);
    lua_pop(L, 1);

    lua_getfield(L, -1, "upstream");
    c->up_keepalive_pool = (long) get_num(L, -1, "keepalive_pool", 320);
    c->up_keepalive_timeout = get_num(L, -1, "keepalive_timeout", 60);
    c->up_keepalive_requests = (long) get_num(L, -1, "keepalive_requests", 1000);
    c->up_connect_timeout = get_num(L, -1, "connect_timeout", 60);
    c->up_send_timeout = get_num(L, -1, "send_timeout", 60);
    c->up_read_timeout = get_num(L, -1, "read_timeout", 60);
    lua_pop(L, 1);

    lua_getfield(L, -1, "zones");
    n = lua_objlen(L, -1);
    for (i = 0; i < n && i < SL_MAX_ZONES; i++) {
        lua_rawgeti(L, -1, (int) i + 1);
        copy_str(L, -1, "name", c->zones[i].name, sizeof(c->zones[i].name));
        c->zones[i].size = (size_t) get_num(L, -1, "size", 1 << 20);
        lua_pop(L, 1);
    }

    c->nzones = i;
    lua_pop(L, 1);

    lua_getfield(L, -1, "access_log");
    if (lua_istable(L, -1)) {
        copy_str(L, -1, "path", buf, sizeof(buf));
        c->access_log = strdup(buf);
        c->access_log_buffer = (size_t) get_num(L, -1, "buffer", 65536);
        c->access_log_flush = get_num(L, -1, "flush", 1);
    }

    lua_pop(L, 1);

    lua_close(L);
    return c;
}


void
sl_conf_free(sl_conf_t *c)
{
    if (c == NULL) {
        return;
    }

    free(c->path);
    free(c->prefix);
    free(c->home);
    free(c->json);
    free(c->access_log);
    free(c);
}
