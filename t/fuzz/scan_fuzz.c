/* scan_fuzz.c -- libFuzzer target for the byte scanners of a request's and a stream's AI path:
 * core/find.c (sl_find must answer as memmem), core/sse_scan.c (event bounds stay inside the
 * input and in order; the ends scan reports a subset of the full scan's events, the full
 * scan's last one included), core/json_decode.c (whatever the lazy top-level decode accepts,
 * the plain decoder accepts too, and the other way round for objects), and core.json_splice
 * (its output, when it gives one, is a JSON object the decoder accepts). Build and run: see
 * t/fuzz/README. */
#define _GNU_SOURCE
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "find.h"
#include "json_decode.h"
#include "lua_vm.h"
#include "sse_scan.h"

#define CHECK(cond)                                                                         \
    do {                                                                                    \
        if (!(cond)) {                                                                      \
            fprintf(stderr, "check failed: %s (line %d)\n", #cond, __LINE__);              \
            abort();                                                                        \
        }                                                                                   \
    } while (0)

typedef struct {
    size_t  len, n, start[64], end[64];
} hits_t;

static lua_State  *L;


static void
on_hit(void *ud, size_t start, size_t end)
{
    hits_t  *h = ud;

    CHECK(start <= end && end < h->len);
    if (h->n > 0 && h->n <= 64) {
        CHECK(start > h->end[h->n - 1]);
    }

    if (h->n < 64) {
        h->start[h->n] = start;
        h->end[h->n] = end;
    }

    h->n++;
}


static void
fuzz_find(const char *s, size_t size)
{
    static const char  *needles[] = { "\"usage\"", "_calls", "[DONE]", "ab", "\"", "message_stop" };
    size_t              i;

    for (i = 0; i < sizeof(needles) / sizeof(needles[0]); i++) {
        size_t  nl = strlen(needles[i]);
        CHECK(sl_find(s, size, needles[i], nl) == memmem(s, size, needles[i], nl));
    }

    /* the input's own head as a needle */
    if (size > 4) {
        size_t  nl = 2 + (unsigned char) s[0] % 6;
        if (nl < size) {
            CHECK(sl_find(s + 1, size - 1, s + 1, nl) == s + 1);
            CHECK(sl_find(s + nl, size - nl, s, nl) == memmem(s + nl, size - nl, s, nl));
        }
    }
}


static void
fuzz_sse(const char *s, size_t size)
{
    hits_t  all = { size, 0, {0}, {0} }, ends = { size, 0, {0}, {0} };
    size_t  i, j;

    if (size == 0) {
        return;
    }

    CHECK(sl_sse_complete(s, size) <= size);
    sl_sse_hits(s, size, "\"usage\"", 7, on_hit, &all);
    sl_sse_hits_ends(s, size, "\"usage\"", 7, 2, on_hit, &ends);
    CHECK(ends.n <= all.n);
    if (all.n > 0 && all.n <= 64 && ends.n <= 64) {
        CHECK(ends.n > 0);
        CHECK(ends.end[ends.n - 1] == all.end[all.n - 1]);
        for (i = 0; i < ends.n; i++) {
            for (j = 0; j < all.n && all.end[j] != ends.end[i]; j++) {
                /* every event the ends scan reports, the full scan reports too */
            }

            CHECK(j < all.n);
        }
    }
}


static void
fuzz_json(const char *s, size_t size)
{
    int     top = lua_gettop(L), full, lazy;
    size_t  used, i;

    full = sl_json_decode(L, s, size) == SL_OK;
    lua_settop(L, top);

    lua_newtable(L);
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "messages");
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "a");
    lua_newtable(L);
    lazy = sl_json_decode_top(L, s, size, top + 1, (unsigned char) (size ? s[0] : 0) % 8,
                              top + 2) == SL_OK;
    if (lazy) {
        CHECK(full);
        CHECK(lua_istable(L, top + 3));
        if (lua_istable(L, top + 4)) {
            lua_pushnil(L);
            while (lua_next(L, top + 4) != 0) {
                lua_Integer  at = lua_tointeger(L, -1);

                CHECK(at >= 1 && (size_t) at <= size);
                CHECK(sl_json_decode_prefix(L, s + at - 1, size - (size_t) at + 1, &used)
                      == SL_OK);
                lua_pop(L, 2);
            }
        }
    } else if (full) {
        /* the plain decoder took it: the lazy one declines only what is not an object */
        for (i = 0; i < size && (s[i] == ' ' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t');
             i++)
        {
        }

        CHECK(i == size || s[i] != '{');
    }

    lua_settop(L, top);

    /* splice: replace "model", drop "a", add "b" */
    lua_pushcfunction(L, sl_lua_json_splice);
    lua_pushlstring(L, s, size);
    lua_newtable(L);
    lua_pushliteral(L, "\"model\":\"m\"");
    lua_setfield(L, -2, "model");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "a");
    lua_pushliteral(L, "\"b\":[1,{\"c\":null}]");
    lua_setfield(L, -2, "b");
    lua_call(L, 2, 1);
    if (lua_type(L, -1) == LUA_TSTRING) {
        size_t       olen;
        const char  *out = lua_tolstring(L, -1, &olen);

        CHECK(olen >= 2 && out[0] == '{' && out[olen - 1] == '}');
        if (full) {
            /* a valid object stays valid */
            CHECK(sl_json_decode(L, out, olen) == SL_OK);
            lua_pop(L, 1);
        }
    }

    lua_settop(L, top);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char  *s = (const char *) data;

    if (L == NULL) {
        L = luaL_newstate();
        luaL_openlibs(L);
    }

    fuzz_find(s, size);
    fuzz_sse(s, size);
    fuzz_json(s, size);
    return 0;
}
