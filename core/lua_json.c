/* lua_json.c -- JSON helpers for the Lua side:
 *   core.json_top_spans(s): the top-level members of a JSON object as {key, first, last}
 *     (1-based, `"key": value` from the key's quote to the value's last byte), nil when s is
 *     not one object, false when a key holds an escape (lua/sluice/ai/request.lua's Lua twin
 *     handles those);
 *   core.json_splice(s, pairs): s with top-level members replaced: pairs maps a key to the
 *     whole `"key":value` text that replaces its member (the first one; repeats are dropped)
 *     or to false (removed); keys s lacks are appended in byte order. nil when s is not one
 *     object, false when a key of s holds an escape or there are more than SPLICE_MAX keys
 *     in pairs (the Lua splice of lua/sluice/ai/request.lua handles those);
 *   core.json_decode(s): true, value, or false when the fast decoder declines (the caller
 *     then asks lua-cjson, which also words the error);
 *   core.json_decode(s, init): the value starting at byte init (1-based) of s, whatever
 *     follows it: true, value, position after it, or false;
 *   core.json_decode(s, nil, eligible, max_inline, sentinel): the top-level object with its
 *     big members left undecoded (json_decode.h, sl_json_decode_top): true, object, lazy
 *     (key -> offset of the value, or nil), or false. */
#include "json_decode.h"
#include "json_scan.h"
#include "lua_vm.h"

#include <lauxlib.h>
#include <stdlib.h>

#define SPLICE_MAX  32

typedef struct {
    lua_State  *L;
    int         n;
} spans_t;


static void
on_member(void *ud, const char *key, size_t klen, size_t first, size_t last)
{
    spans_t  *sp = ud;

    lua_createtable(sp->L, 3, 0);
    lua_pushlstring(sp->L, key, klen);
    lua_rawseti(sp->L, -2, 1);
    lua_pushinteger(sp->L, (lua_Integer) first + 1);
    lua_rawseti(sp->L, -2, 2);
    lua_pushinteger(sp->L, (lua_Integer) last + 1);
    lua_rawseti(sp->L, -2, 3);
    lua_rawseti(sp->L, -2, ++sp->n);
}


int
sl_lua_json_top_spans(lua_State *L)
{
    size_t       len;
    const char  *s = luaL_checklstring(L, 1, &len);
    spans_t      sp = { L, 0 };
    int          rc;

    lua_createtable(L, 8, 0);
    rc = sl_json_top_spans(s, len, on_member, &sp);
    if (rc == SL_JSON_MALFORMED) {
        lua_pushnil(L);
    } else if (rc == SL_JSON_ESCAPED) {
        lua_pushboolean(L, 0);
    }

    return 1;
}


typedef struct {
    lua_State    *L;
    const char   *s;
    char         *out;          /* room for all of it, counted before (see sl_lua_json_splice) */
    size_t        n;
    int           items;        /* members written so far */
    int           ndone;
    const void   *done[SPLICE_MAX];     /* keys of pairs already written (interned: by address) */
    const struct splice_plan_s  *plan;  /* a compiled plan instead of the pairs table */
    unsigned char               pdone[SPLICE_MAX];
} splice_t;


/* json_splice_plan(pairs) -> the pairs made once into a list sorted by key (userdata), which
 * json_splice takes in their place: no Lua table read and no key interned per call. */
typedef struct splice_plan_s {
    int     n;
    size_t  room;                   /* the texts and a comma each */
    struct {
        const char  *key, *pair;    /* pair NULL: the member is removed */
        size_t       klen, plen;
    }       e[SPLICE_MAX];
    char    buf[];
} splice_plan_t;

#define SPLICE_PLAN_MT  "sluice.json_splice_plan"


static void
splice_put(splice_t *sp, const char *p, size_t n)
{
    if (sp->items++ > 0) {
        sp->out[sp->n++] = ',';
    }

    memcpy(sp->out + sp->n, p, n);
    sp->n += n;
}


static void
on_splice_plan(splice_t *sp, const char *key, size_t klen, size_t first, size_t last)
{
    const splice_plan_t  *p = sp->plan;
    int                   i;

    for (i = 0; i < p->n; i++) {
        if (p->e[i].klen == klen && memcmp(p->e[i].key, key, klen) == 0) {
            break;
        }
    }

    if (i == p->n) {
        splice_put(sp, sp->s + first, last - first + 1);
        return;
    }

    if (sp->pdone[i]) {
        return;                     /* a repeated key: its replacement is written already */
    }

    if (p->e[i].pair != NULL) {
        splice_put(sp, p->e[i].pair, p->e[i].plen);
    }

    sp->pdone[i] = 1;
}


static void
on_splice(void *ud, const char *key, size_t klen, size_t first, size_t last)
{
    splice_t     *sp = ud;
    lua_State    *L = sp->L;
    const void   *k;
    const char   *pair;
    size_t        plen;
    int           i;

    if (sp->plan != NULL) {
        on_splice_plan(sp, key, klen, first, last);
        return;
    }

    lua_pushlstring(L, key, klen);
    k = lua_tostring(L, -1);        /* interned: one address per distinct key */
    lua_rawget(L, 2);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        splice_put(sp, sp->s + first, last - first + 1);
        return;
    }

    pair = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &plen) : NULL;
    lua_pop(L, 1);
    for (i = 0; i < sp->ndone; i++) {
        if (sp->done[i] == k) {
            return;                 /* a repeated key: its replacement is written already */
        }
    }

    if (pair != NULL) {
        splice_put(sp, pair, plen);
    }

    sp->done[sp->ndone++] = k;
}


typedef struct {
    const char  *key;
    size_t       klen;
    const char  *pair;
    size_t       plen;
} extra_t;


static int
extra_cmp(const void *a, const void *b)
{
    const extra_t  *x = a, *y = b;
    size_t          n = x->klen < y->klen ? x->klen : y->klen;
    int             c = memcmp(x->key, y->key, n);

    return c != 0 ? c : (x->klen > y->klen) - (x->klen < y->klen);
}


/* json_splice with a compiled plan: the same output as with its table */
static int
splice_by_plan(lua_State *L, const char *s, size_t len, splice_t *sp)
{
    const splice_plan_t  *p = sp->plan;
    char                  stack[8192];
    size_t                room = len + 2 + p->room;
    int                   rc, i;

    sp->L = L;
    sp->s = s;
    sp->n = 0;
    sp->items = 0;
    sp->ndone = 0;
    sp->out = room <= sizeof(stack) ? stack : malloc(room);
    if (sp->out == NULL) {
        return luaL_error(L, "json_splice: out of memory");
    }

    sp->out[sp->n++] = '{';
    rc = sl_json_top_spans(s, len, on_splice, sp);
    if (rc < 0) {
        if (sp->out != stack) {
            free(sp->out);
        }

        if (rc == SL_JSON_MALFORMED) {
            lua_pushnil(L);
        } else {
            lua_pushboolean(L, 0);
        }

        return 1;
    }

    for (i = 0; i < p->n; i++) {
        if (!sp->pdone[i] && p->e[i].pair != NULL) {
            splice_put(sp, p->e[i].pair, p->e[i].plen);
        }
    }

    sp->out[sp->n++] = '}';
    lua_pushlstring(L, sp->out, sp->n);
    if (sp->out != stack) {
        free(sp->out);
    }

    return 1;
}


int
sl_lua_json_splice_plan(lua_State *L)
{
    splice_plan_t  *p;
    extra_t         e[SPLICE_MAX];
    size_t          need = 0, used = 0, kl, pl;
    int             n = 0, i;

    luaL_checktype(L, 1, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, 1) != 0) {
        int  vt = lua_type(L, -1);

        if (n == SPLICE_MAX || lua_type(L, -2) != LUA_TSTRING
            || (vt != LUA_TSTRING && !(vt == LUA_TBOOLEAN && !lua_toboolean(L, -1))))
        {
            lua_pop(L, 2);
            lua_pushboolean(L, 0);  /* what json_splice declines with the table too */
            return 1;
        }

        e[n].key = lua_tolstring(L, -2, &kl);
        e[n].klen = kl;
        e[n].pair = vt == LUA_TSTRING ? lua_tolstring(L, -1, &pl) : NULL;
        e[n].plen = vt == LUA_TSTRING ? pl : 0;
        need += kl + e[n].plen;
        n++;
        lua_pop(L, 1);
    }

    /* sorted by key: the keys a body lacks are appended in byte order, as with the table */
    if (n > 1) {
        qsort(e, (size_t) n, sizeof(extra_t), extra_cmp);
    }

    p = lua_newuserdata(L, sizeof(splice_plan_t) + need + 1);
    p->n = n;
    p->room = 0;
    for (i = 0; i < n; i++) {
        memcpy(p->buf + used, e[i].key, e[i].klen);
        p->e[i].key = p->buf + used;
        p->e[i].klen = e[i].klen;
        used += e[i].klen;
        p->e[i].pair = NULL;
        p->e[i].plen = 0;
        if (e[i].pair != NULL) {
            memcpy(p->buf + used, e[i].pair, e[i].plen);
            p->e[i].pair = p->buf + used;
            p->e[i].plen = e[i].plen;
            used += e[i].plen;
            p->room += e[i].plen + 1;
        }
    }

    luaL_getmetatable(L, SPLICE_PLAN_MT);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        luaL_newmetatable(L, SPLICE_PLAN_MT);
    }
    lua_setmetatable(L, -2);
    return 1;
}


int
sl_lua_json_splice(lua_State *L)
{
    size_t       len, room, plen;
    const char  *s = luaL_checklstring(L, 1, &len);
    splice_t     sp;
    extra_t      extra[SPLICE_MAX];
    char         stack[8192];
    int          rc, nkeys = 0, nextra = 0, i, j;

    sp.plan = NULL;
    if (lua_type(L, 2) == LUA_TUSERDATA) {
        sp.plan = luaL_checkudata(L, 2, SPLICE_PLAN_MT);
        memset(sp.pdone, 0, sizeof(sp.pdone));
        return splice_by_plan(L, s, len, &sp);
    }

    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);

    /* the output is at most s, every text and a comma each, and the braces */
    room = len + 2;
    lua_pushnil(L);
    while (lua_next(L, 2) != 0) {
        int  vt = lua_type(L, -1), bad;

        bad = ++nkeys > SPLICE_MAX || lua_type(L, -2) != LUA_TSTRING
              || (vt != LUA_TSTRING && !(vt == LUA_TBOOLEAN && !lua_toboolean(L, -1)));
        if (vt == LUA_TSTRING) {
            (void) lua_tolstring(L, -1, &plen);
            room += plen + 1;
        }

        lua_pop(L, 1);
        if (bad) {
            lua_pop(L, 1);
            lua_pushboolean(L, 0);
            return 1;
        }
    }

    sp.L = L;
    sp.s = s;
    sp.n = 0;
    sp.items = 0;
    sp.ndone = 0;
    sp.out = room <= sizeof(stack) ? stack : malloc(room);
    if (sp.out == NULL) {
        return luaL_error(L, "json_splice: out of memory");
    }

    sp.out[sp.n++] = '{';
    rc = sl_json_top_spans(s, len, on_splice, &sp);
    if (rc < 0) {
        if (sp.out != stack) {
            free(sp.out);
        }

        if (rc == SL_JSON_MALFORMED) {
            lua_pushnil(L);
        } else {
            lua_pushboolean(L, 0);
        }

        return 1;
    }

    /* the keys s lacks, in byte order (pairs' iteration order is the table's) */
    lua_pushnil(L);
    while (lua_next(L, 2) != 0) {
        size_t       klen;
        const char  *k = lua_tolstring(L, -2, &klen);
        const char  *pair = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &plen) : NULL;

        lua_pop(L, 1);
        if (pair == NULL) {
            continue;
        }

        for (j = 0; j < sp.ndone && sp.done[j] != k; j++) {
            /* written in place */
        }

        if (j < sp.ndone) {
            continue;
        }

        extra[nextra].key = k;
        extra[nextra].klen = klen;
        extra[nextra].pair = pair;
        extra[nextra].plen = plen;
        nextra++;
    }

    if (nextra > 1) {
        qsort(extra, (size_t) nextra, sizeof(extra_t), extra_cmp);
    }

    for (i = 0; i < nextra; i++) {
        splice_put(&sp, extra[i].pair, extra[i].plen);
    }

    sp.out[sp.n++] = '}';
    lua_pushlstring(L, sp.out, sp.n);
    if (sp.out != stack) {
        free(sp.out);
    }

    return 1;
}


int
sl_lua_json_decode(lua_State *L)
{
    size_t       len, used;
    const char  *s = luaL_checklstring(L, 1, &len);
    lua_Integer  init;

    if (lua_istable(L, 3)) {
        /* json_decode(s, nil, eligible, max_inline, sentinel) */
        size_t  max_inline = (size_t) luaL_checkinteger(L, 4);

        luaL_checktype(L, 5, LUA_TTABLE);
        if (sl_json_decode_top(L, s, len, 3, max_inline, 5) != SL_OK) {
            lua_pushboolean(L, 0);
            return 1;
        }

        lua_pushboolean(L, 1);
        lua_insert(L, -3);
        return 3;
    }

    if (!lua_isnoneornil(L, 2)) {
        init = luaL_checkinteger(L, 2);
        if (init < 1 || (size_t) init > len
            || sl_json_decode_prefix(L, s + init - 1, len - (size_t) init + 1, &used) != SL_OK)
        {
            lua_pushboolean(L, 0);
            return 1;
        }

        lua_pushboolean(L, 1);
        lua_insert(L, -2);
        lua_pushinteger(L, init + (lua_Integer) used);
        return 3;
    }

    if (sl_json_decode(L, s, len) != SL_OK) {
        lua_pushboolean(L, 0);
        return 1;
    }

    lua_pushboolean(L, 1);
    lua_insert(L, -2);
    return 2;
}
