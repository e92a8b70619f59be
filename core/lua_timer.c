/* lua_timer.c -- sluice.timer: sleep(s) yields the running coroutine; at(delay, fn, ...)
 * and every(interval, fn, ...) run fn(premature, ...) in a coroutine of its own (no
 * request), so it may sleep or call pdk.http. A worker that stops gracefully runs pending
 * timers once with premature = true, as OpenResty does. */
#include <event2/event.h>

#include "lua_vm.h"
#include "worker.h"

typedef struct timer_s {
    struct event    *ev;
    int              ref;           /* {fn, args...} in the registry */
    int              nargs;
    double           interval;      /* > 0: every() */
    struct timer_s  *next, *prev;
} timer_t_;

static timer_t_  *timers;


static void
tv_of(double s, struct timeval *tv)
{
    if (s < 0) {
        s = 0;
    }

    tv->tv_sec = (long) s;
    tv->tv_usec = (long) ((s - tv->tv_sec) * 1e6);
}


static int
push_nothing(sl_co_t *co, lua_State *L)
{
    SL_UNUSED(co);
    SL_UNUSED(L);
    return 0;
}


static void
on_sleep(evutil_socket_t fd, short what, void *arg)
{
    sl_co_t  *co = arg;

    sl_worker_update_time();
    event_free(co->wait);
    co->wait = NULL;
    sl_co_wake(co, push_nothing);
}


static int
l_sleep(lua_State *L)
{
    double          s = luaL_checknumber(L, 1);
    sl_co_t        *co = sl_co_current(L);
    struct event   *ev;
    struct timeval  tv;

    if (co == NULL) {
        return luaL_error(L, "sleep() must be called from a request or timer coroutine");
    }

    ev = evtimer_new(sl_worker->base, on_sleep, co);
    tv_of(s, &tv);
    evtimer_add(ev, &tv);
    return sl_co_wait(L, co, SL_WAIT_SLEEP, ev);
}


static void
unlink_timer(timer_t_ *t)
{
    if (t->prev) {
        t->prev->next = t->next;
    } else {
        timers = t->next;
    }

    if (t->next) {
        t->next->prev = t->prev;
    }
}


static void
fire(timer_t_ *t, int premature)
{
    lua_State  *L = sl_worker->L;
    int         i, tbl;

    lua_rawgeti(L, LUA_REGISTRYINDEX, t->ref);
    tbl = lua_gettop(L);
    lua_rawgeti(L, tbl, 1);
    lua_pushboolean(L, premature);
    for (i = 0; i < t->nargs; i++) {
        lua_rawgeti(L, tbl, i + 2);
    }

    lua_remove(L, tbl);
    sl_co_spawn(L, t->nargs + 1, NULL);
}


static void
timer_free(timer_t_ *t)
{
    unlink_timer(t);
    luaL_unref(sl_worker->L, LUA_REGISTRYINDEX, t->ref);
    event_free(t->ev);
    free(t);
}


static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
    timer_t_       *t = arg;
    struct timeval  tv;

    sl_worker_update_time();
    if (t->interval > 0 && !sl_worker->stopping) {
        tv_of(t->interval, &tv);
        evtimer_add(t->ev, &tv);
        fire(t, 0);
        return;
    }

    fire(t, 0);
    timer_free(t);
}


static int
add_timer(lua_State *L, double interval)
{
    double          delay = luaL_checknumber(L, 1);
    int             n = lua_gettop(L), i;
    timer_t_       *t;
    struct timeval  tv;

    luaL_checktype(L, 2, LUA_TFUNCTION);
    if (interval > 0 && delay <= 0) {
        return luaL_error(L, "every() needs an interval > 0");
    }

    t = sl_xcalloc(1, sizeof(timer_t_));
    t->nargs = n - 2;
    t->interval = interval > 0 ? delay : 0;

    lua_createtable(L, n - 1, 0);
    for (i = 2; i <= n; i++) {
        lua_pushvalue(L, i);
        lua_rawseti(L, -2, i - 1);
    }

    t->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    t->ev = evtimer_new(sl_worker->base, on_timer, t);
    tv_of(delay, &tv);
    evtimer_add(t->ev, &tv);

    t->next = timers;
    if (timers) {
        timers->prev = t;
    }

    timers = t;
    lua_pushboolean(L, 1);
    return 1;
}


static int
l_at(lua_State *L)
{
    return add_timer(L, 0);
}


static int
l_every(lua_State *L)
{
    return add_timer(L, 1);
}


/* Graceful stop: pending timers run now with premature = true, then are dropped. */
void
sl_timer_run_premature(void)
{
    timer_t_  *t;

    while ((t = timers) != NULL) {
        evtimer_del(t->ev);
        fire(t, 1);
        timer_free(t);
    }
}


int
luaopen_sluice_timer(lua_State *L)
{
    static const luaL_Reg  fns[] = {
        {"sleep", l_sleep},
        {"at", l_at},
        {"every", l_every},
        {NULL, NULL},
    };

    lua_newtable(L);
    luaL_register(L, NULL, fns);
    return 1;
}
