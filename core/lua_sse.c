/* lua_sse.c -- core.sse_complete(s) and core.sse_hits(s, key [, first]) for
 * lua/sluice/ai/sse.lua and usage.lua: the scan of a relayed stream for its usage-carrying
 * events (sse_scan.c), with the events parsed as sse.lua's parse_event does: fields
 * "name: value" (one optional space), comment lines (":") skipped, data lines joined with
 * "\n", a trailing CR dropped, event "message" when unnamed or empty. */
#include "lua_vm.h"
#include "sse_scan.h"

typedef struct {
    lua_State   *L;
    const char  *s;
    int          n;
} hits_t;


/* pushes {event, data, id} for s[i..j] (j: the LF ending its last line, or the last byte), or
 * nothing when the block holds no field; returns 1 when it pushed */
static int
push_event(lua_State *L, const char *s, size_t i, size_t j)
{
    luaL_Buffer  data;
    const char  *event = NULL, *id = NULL;
    size_t       pos = i, le, nl, elen = 0, idlen = 0, ndata = 0;
    int          has_field = 0;

    luaL_buffinit(L, &data);
    while (pos <= j) {
        const char  *p = memchr(s + pos, '\n', j - pos + 1);
        if (p == NULL) {
            nl = j + 1;
            le = j + 1;
        } else {
            nl = (size_t) (p - s);
            le = nl;
        }

        if (le > pos && s[le - 1] == '\r') {
            le--;
        }

        if (le > pos && s[pos] != ':') {
            const char  *colon = memchr(s + pos, ':', le - pos);
            const char  *name = s + pos, *value;
            size_t       nlen, vlen;

            if (colon != NULL) {
                nlen = (size_t) (colon - name);
                value = colon + 1;
                if (value < s + le && *value == ' ') {
                    value++;
                }

                vlen = (size_t) (s + le - value);
            } else {
                nlen = le - pos;
                value = s + le;
                vlen = 0;
            }

            has_field = 1;
            if (nlen == 4 && memcmp(name, "data", 4) == 0) {
                if (ndata++ > 0) {
                    luaL_addchar(&data, '\n');
                }

                luaL_addlstring(&data, value, vlen);
            } else if (nlen == 5 && memcmp(name, "event", 5) == 0) {
                event = value;
                elen = vlen;
            } else if (nlen == 2 && memcmp(name, "id", 2) == 0) {
                id = value;
                idlen = vlen;
            }
        }

        pos = nl + 1;
    }

    luaL_pushresult(&data);             /* the data string (possibly "") */
    if (!has_field) {
        lua_pop(L, 1);
        return 0;
    }

    lua_createtable(L, 0, 3);
    lua_insert(L, -2);
    lua_setfield(L, -2, "data");
    if (event != NULL && elen > 0) {
        lua_pushlstring(L, event, elen);
    } else {
        lua_pushliteral(L, "message");
    }

    lua_setfield(L, -2, "event");
    if (id != NULL) {
        lua_pushlstring(L, id, idlen);
        lua_setfield(L, -2, "id");
    }

    return 1;
}


static void
on_hit(void *ud, size_t start, size_t end)
{
    hits_t  *h = ud;

    if (push_event(h->L, h->s, start, end)) {
        lua_rawseti(h->L, -2, ++h->n);
    }
}


/* sse_hits(region, key [, first]) -> array of events, or nil when none. With `first`: only
 * the hits among the first `first` events and the last one after them (sl_sse_hits_ends). */
int
sl_lua_sse_hits(lua_State *L)
{
    size_t       len, klen;
    const char  *s = luaL_checklstring(L, 1, &len);
    const char  *key = luaL_checklstring(L, 2, &klen);
    hits_t       h = { L, s, 0 };
    lua_Integer  first = luaL_optinteger(L, 3, -1);

    lua_createtable(L, 2, 0);
    if (first >= 0) {
        sl_sse_hits_ends(s, len, key, klen, (size_t) first, on_hit, &h);
    } else {
        sl_sse_hits(s, len, key, klen, on_hit, &h);
    }

    if (h.n == 0) {
        lua_pushnil(L);
    }

    return 1;
}


/* sse_complete(s) -> length of the complete part (through the last blank line) */
int
sl_lua_sse_complete(lua_State *L)
{
    size_t       len;
    const char  *s = luaL_checklstring(L, 1, &len);

    lua_pushinteger(L, (lua_Integer) sl_sse_complete(s, len));
    return 1;
}
