/* lua_json.c -- JSON helpers for the Lua side:
 *   core.json_top_spans(s): the top-level members of a JSON object as {key, first, last}
 *     (1-based, `"key": value` from the key's quote to the value's last byte), nil when s is
 *     not one object, false when a key holds an escape (lua/sluice/ai/request.lua's Lua twin
 *     handles those);
 *   core.json_decode(s): true, value, or false when the fast decoder declines (the caller
 *     then asks lua-cjson, which also words the error). */
#include "json_decode.h"
#include "json_scan.h"
#include "lua_vm.h"

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


int
sl_lua_json_decode(lua_State *L)
{
    size_t       len;
    const char  *s = luaL_checklstring(L, 1, &len);

    if (sl_json_decode(L, s, len) != SL_OK) {
        lua_pushboolean(L, 0);
        return 1;
    }

    lua_pushboolean(L, 1);
    lua_insert(L, -2);
    return 2;
}
