/* lua_vm.h -- the worker's LuaJIT state and the coroutines C runs in it: one per request,
 * one per timer callback. C functions that wait yield the running coroutine; the event
 * that ends the wait wakes it with sl_co_wake(), and it is resumed from the loop, never
 * from inside a curl or bufferevent callback. */
#ifndef SL_LUA_VM_H
#define SL_LUA_VM_H

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "http_request.h"

typedef struct sl_co_s sl_co_t;

/* pushes the values the yielded C function returns when resumed; returns their count */
typedef int (*sl_co_push_pt)(sl_co_t *co, lua_State *L);

struct sl_co_s {
    lua_State      *L;          /* the thread */
    int             ref;        /* registry reference keeping the thread alive */
    sl_req_t       *req;        /* NULL for timers */
    struct event   *wake_ev;
    sl_co_push_pt   push;       /* set by the waker */
    void           *wait;       /* what it waits for (owner-defined) */
    int             wait_kind;
    unsigned        waiting:1;
    unsigned        woken:1;
    unsigned        recoverable:1;  /* an http request's own coroutine (see resume) */
};

enum {
    SL_WAIT_NONE = 0,
    SL_WAIT_PROXY,      /* response head of the request's upstream */
    SL_WAIT_BODY,       /* next piece of the upstream body */
    SL_WAIT_PASS,       /* C relays the rest of the body */
    SL_WAIT_SLEEP,
    SL_WAIT_HTTP,       /* pdk.http transfers */
};

/* The worker's state: libraries, package paths, C modules, sluice.init loaded and its
 * init_worker() run. Returns NULL with *err on failure. */
lua_State *sl_lua_new(const char *home, const char *conf_json, int slot, int workers,
                      unsigned generation, const char **err);
void sl_lua_close(lua_State *L);

/* Runs a request through sluice.init (http, admin or metrics entry by r->kind). */
void sl_lua_run_request(sl_req_t *r);

/* Pops a function and its nargs arguments from L and runs them in a coroutine (a reused
 * one when there is one); req, when not NULL, is retained until the coroutine ends. */
void sl_co_spawn(lua_State *L, int nargs, sl_req_t *req);

/* The C-managed coroutine L is, or NULL when L is a coroutine Lua code created itself
 * (those cannot wait on C events). */
sl_co_t *sl_co_current(lua_State *L);

/* Yields the running coroutine until sl_co_wake(); use as `return sl_co_wait(L, co, k, w)`. */
int sl_co_wait(lua_State *L, sl_co_t *co, int kind, void *wait);

/* Schedules the resume of a waiting coroutine; push supplies the return values. */
void sl_co_wake(sl_co_t *co, sl_co_push_pt push);

/* The request the running coroutine serves, or NULL. */
sl_req_t *sl_lua_current_req(void);

/* Pushes a table of lowercased header name -> value (repeated names -> array). */
void sl_lua_push_headers(lua_State *L, const sl_hdrs_t *hs);

/* Graceful stop: run pending timers now with premature = true. */
void sl_timer_run_premature(void);

int luaopen_sluice_http(lua_State *L);
int luaopen_sluice_upstream(lua_State *L);
int luaopen_sluice_timer(lua_State *L);
int luaopen_sluice_core(lua_State *L);

/* lua_sse.c: core.sse_hits, core.sse_complete */
int sl_lua_sse_hits(lua_State *L);
int sl_lua_sse_complete(lua_State *L);

/* lua_json.c: core.json_top_spans, core.json_decode */
int sl_lua_json_top_spans(lua_State *L);
int sl_lua_json_decode(lua_State *L);
int sl_lua_json_splice(lua_State *L);
int sl_lua_json_splice_plan(lua_State *L);

#endif
