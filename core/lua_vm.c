/* lua_vm.c -- the worker's LuaJIT state, and coroutine scheduling. Each request and each
 * timer callback runs in a coroutine of its own, entered with lua_resume. A coroutine that
 * waits holds a reference on its request; when it returns (or fails) the request is
 * finished: a handler that never answered gets a JSON 500, one that failed mid-stream has
 * its connection closed. Plugins' phases run unprotected (a pcall frame per call would end
 * LuaJIT's traces on every request, see plugin.lua): when an http request's coroutine fails,
 * sluice.init.http_request_failed runs in a new coroutine on the same request, given the
 * dead one and the error with its traceback, and ends the request as the failed phase
 * calls for (its 500, the log phase, the access log). sluice.core (this file) also carries
 * the small utilities Lua needs from the host: time, logging, worker identity, the access
 * log. */
#include "lua_vm.h"

#include <event2/event.h>
#include <stdio.h>
#include <unistd.h>

#include "conf.h"
#include "http_response.h"
#include "log.h"
#include "worker.h"

#define SPARE_MAX  256

static lua_State  *main_L;
static sl_co_t    *spare[SPARE_MAX];      /* finished coroutines, ready to run again */
static size_t      nspare;
static int         entry_ref[3] = {LUA_NOREF, LUA_NOREF, LUA_NOREF};
static int         failed_ref = LUA_NOREF;   /* sluice.init.http_request_failed */
static sl_co_t    *current;

static void co_spawn(lua_State *L, int nargs, sl_req_t *req, int recoverable);


sl_req_t *
sl_lua_current_req(void)
{
    return current != NULL ? current->req : NULL;
}


sl_co_t *
sl_co_current(lua_State *L)
{
    if (current != NULL && current->L == L) {
        return current;
    }

    return NULL;
}


/* A coroutine that returned normally is as good as a new one (status 0, empty stack):
 * keep it, so a request costs no thread allocation. One that failed is dropped. */
static void
co_free(sl_co_t *co, int failed)
{
    if (!failed && nspare < SPARE_MAX && lua_status(co->L) == 0) {
        lua_settop(co->L, 0);
        co->req = NULL;
        co->push = NULL;
        co->wait = NULL;
        co->wait_kind = SL_WAIT_NONE;
        co->waiting = 0;
        co->woken = 0;
        spare[nspare++] = co;
        return;
    }

    luaL_unref(main_L, LUA_REGISTRYINDEX, co->ref);
    event_free(co->wake_ev);
    free(co);
}


/* The coroutine ended, normally or not: make sure its request is answered and released. */
static void
co_end(sl_co_t *co, int failed)
{
    sl_req_t  *r = co->req;

    if (r != NULL) {
        /* a recovery coroutine (see resume) that took the request over finishes it */
        if (!r->resp_done && (r->co == co || r->co == NULL)) {
            if (!r->headers_sent) {
                sl_resp_send_error(r, 500, "internal server error", failed);
            } else {
                if (r->conn != NULL) {
                    r->conn->closing = 1;
                }

                r->resp_chunked = 0;
                sl_resp_finish(r);
            }
        }

        if (r->co == co) {
            r->co = NULL;
        }

        sl_req_release(r);
    }

    co_free(co, failed);
}


static void
resume(sl_co_t *co, int nargs)
{
    sl_co_t     *prev = current;
    int          rc;
    const char  *msg;

    current = co;
    co->waiting = 0;
    co->woken = 0;
    co->wait_kind = SL_WAIT_NONE;
    rc = lua_resume(co->L, nargs);
    current = prev;

    if (rc == LUA_YIELD) {
        if (!co->waiting) {
            /* coroutine.yield() from plugin code at the top level: resume it next turn */
            lua_settop(co->L, 0);
            co->waiting = 1;
            co->push = NULL;
            co->woken = 1;
            event_active(co->wake_ev, EV_TIMEOUT, 0);
        }

        return;
    }

    if (rc != 0) {
        msg = lua_tostring(co->L, -1);
        luaL_traceback(main_L, co->L, msg ? msg : "(error object is not a string)", 0);
        if (co->recoverable && co->req != NULL && failed_ref != LUA_NOREF) {
            /* http_request_failed(dead thread, message with traceback): it logs, answers and
             * runs the log phase; the dead thread's stack stays readable meanwhile */
            lua_rawgeti(main_L, LUA_REGISTRYINDEX, failed_ref);
            lua_rawgeti(main_L, LUA_REGISTRYINDEX, co->ref);
            lua_pushvalue(main_L, -3);
            lua_remove(main_L, -4);
            co_spawn(main_L, 2, co->req, 0);
        } else {
            sl_log_error("lua error: %s", lua_tostring(main_L, -1));
            lua_pop(main_L, 1);
        }

        co_end(co, 1);
        return;
    }

    co_end(co, 0);
}


static void
on_wake(evutil_socket_t fd, short what, void *arg)
{
    sl_co_t  *co = arg;
    int       n = 0;

    lua_settop(co->L, 0);
    if (co->push != NULL) {
        n = co->push(co, co->L);
    }

    resume(co, n);
}


static void
co_spawn(lua_State *L, int nargs, sl_req_t *req, int recoverable)
{
    sl_co_t  *co;

    if (nspare > 0) {
        co = spare[--nspare];

    } else {
        co = sl_xcalloc(1, sizeof(sl_co_t));
        co->L = lua_newthread(L);
        co->ref = luaL_ref(L, LUA_REGISTRYINDEX);
        co->wake_ev = event_new(sl_worker->base, -1, 0, on_wake, co);
    }

    co->req = req;
    co->recoverable = recoverable ? 1 : 0;

    if (req != NULL) {
        sl_req_retain(req);
        req->co = co;
    }

    /* move fn and args from L to the thread */
    lua_xmove(L, co->L, nargs + 1);
    resume(co, nargs);
}


void
sl_co_spawn(lua_State *L, int nargs, sl_req_t *req)
{
    co_spawn(L, nargs, req, 0);
}


int
sl_co_wait(lua_State *L, sl_co_t *co, int kind, void *wait)
{
    co->waiting = 1;
    co->wait_kind = kind;
    co->wait = wait;
    co->push = NULL;
    return lua_yield(L, 0);
}


void
sl_co_wake(sl_co_t *co, sl_co_push_pt push)
{
    if (co->woken) {
        return;
    }

    co->woken = 1;
    co->push = push;
    event_active(co->wake_ev, EV_TIMEOUT, 0);
}


void
sl_lua_run_request(sl_req_t *r)
{
    int  kind = r->kind < 0 || r->kind > 2 ? 0 : r->kind;

    lua_rawgeti(main_L, LUA_REGISTRYINDEX, entry_ref[kind]);
    co_spawn(main_L, 0, r, kind == 0);
}


/* ---- sluice.core ---- */

static int
l_now(lua_State *L)
{
    lua_pushnumber(L, sl_worker_now());
    return 1;
}


static int
l_update_time(lua_State *L)
{
    lua_pushnumber(L, sl_worker_update_time());
    return 1;
}


static int
l_log(lua_State *L)
{
    int          level = (int) luaL_checkinteger(L, 1);
    size_t       len;
    const char  *msg = luaL_checklstring(L, 2, &len);

    if (level >= sl_log_level) {
        sl_log_write(level, "%.*s", (int) sl_min(len, 3500), msg);
    }

    return 0;
}


static int
l_log_level(lua_State *L)
{
    lua_pushinteger(L, sl_log_level);
    return 1;
}


static int
l_worker(lua_State *L)
{
    lua_pushinteger(L, sl_worker->slot);
    lua_pushinteger(L, sl_worker->conf->workers);
    lua_pushinteger(L, (lua_Integer) sl_worker->generation);
    lua_pushinteger(L, (lua_Integer) getpid());
    return 4;
}


static int
l_access_log(lua_State *L)
{
    size_t       len;
    const char  *line = luaL_checklstring(L, 1, &len);

    sl_access_log_write(line, len);
    return 0;
}


static int
l_stats(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer) sl_worker->nconns);
    lua_pushinteger(L, (lua_Integer) sl_worker->nrequests);
    return 2;
}


int
luaopen_sluice_core(lua_State *L)
{
    static const luaL_Reg  fns[] = {
        {"now", l_now},
        {"update_time", l_update_time},
        {"log", l_log},
        {"log_level", l_log_level},
        {"worker", l_worker},
        {"access_log", l_access_log},
        {"stats", l_stats},
        {"sse_hits", sl_lua_sse_hits},
        {"sse_complete", sl_lua_sse_complete},
        {"json_top_spans", sl_lua_json_top_spans},
        {"json_decode", sl_lua_json_decode},
        {"json_splice", sl_lua_json_splice},
        {"json_splice_plan", sl_lua_json_splice_plan},
        {NULL, NULL},
    };

    lua_newtable(L);
    luaL_register(L, NULL, fns);
    lua_pushstring(L, sl_worker->conf->prefix);
    lua_setfield(L, -2, "prefix");
    lua_pushstring(L, sl_worker->conf->home);
    lua_setfield(L, -2, "home");
    lua_pushstring(L, SLUICE_VERSION);
    lua_setfield(L, -2, "version");
    return 1;
}


static void
preload(lua_State *L, const char *name, lua_CFunction fn)
{
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, fn);
    lua_setfield(L, -2, name);
    lua_pop(L, 2);
}


lua_State *
sl_lua_new(const char *home, const char *conf_json, int slot, int workers, unsigned generation,
           const char **err)
{
    lua_State         *L;
    static char        errbuf[1024];
    static const char *entries[3] = {"http_request", "admin_request", "metrics_request"};
    int                i;

    L = luaL_newstate();
    if (L == NULL) {
        *err = "cannot create the Lua state";
        return NULL;
    }

    luaL_openlibs(L);
    sl_conf_set_paths(L, home);
    preload(L, "sluice.core", luaopen_sluice_core);
    preload(L, "sluice.http", luaopen_sluice_http);
    preload(L, "sluice.upstream", luaopen_sluice_upstream);
    preload(L, "sluice.timer", luaopen_sluice_timer);
    main_L = L;

    lua_getglobal(L, "require");
    lua_pushstring(L, "sluice.init");
    if (lua_pcall(L, 1, 1, 0) != 0) {
        snprintf(errbuf, sizeof(errbuf), "%s", lua_tostring(L, -1));
        *err = errbuf;
        lua_close(L);
        return NULL;
    }

    for (i = 0; i < 3; i++) {
        lua_getfield(L, -1, entries[i]);
        entry_ref[i] = luaL_ref(L, LUA_REGISTRYINDEX);
    }

    lua_getfield(L, -1, "http_request_failed");
    if (lua_isfunction(L, -1)) {
        failed_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    } else {
        lua_pop(L, 1);
    }

    lua_getfield(L, -1, "init_worker");
    lua_pushstring(L, conf_json);
    lua_pushinteger(L, slot);
    lua_pushinteger(L, workers);
    lua_pushinteger(L, (lua_Integer) generation);
    if (lua_pcall(L, 4, 0, 0) != 0) {
        snprintf(errbuf, sizeof(errbuf), "%s", lua_tostring(L, -1));
        *err = errbuf;
        lua_close(L);
        return NULL;
    }

    lua_settop(L, 0);
    return L;
}


void
sl_lua_close(lua_State *L)
{
    lua_close(L);
    main_L = NULL;
}
