/* json_decode.c -- TAP tests for the fast JSON decoder, against lua-cjson itself: for a
 * corpus of request bodies and odd inputs, and for thousands of byte-level mutations of them,
 * whatever the fast decoder accepts must be what cjson.decode returns (deep-equal, cjson.null
 * included), and the common shapes must be accepted. */
#include "tap.h"

#include <lauxlib.h>
#include <lualib.h>

#include "json_decode.h"

static const char  *deep_eq_src =
    "local null = require('cjson').null\n"
    "local function eq(a, b)\n"
    "  if type(a) ~= type(b) then return false end\n"
    "  if type(a) ~= 'table' then\n"
    "    if a ~= a and b ~= b then return true end\n"
    "    return a == b\n"
    "  end\n"
    "  for k, v in pairs(a) do if not eq(v, b[k]) then return false end end\n"
    "  for k in pairs(b) do if a[k] == nil then return false end end\n"
    "  return true\n"
    "end\n"
    "return function(fast, s)\n"
    "  local v, err = require('cjson.safe').decode(s)\n"
    "  if err then return false, 'cjson refused: ' .. err end\n"
    "  return eq(fast, v), 'differs from cjson'\n"
    "end\n";

static lua_State  *L;
static int         check_ref;


/* 1: accepted and equal to cjson; 0: declined; -1: accepted but wrong */
static int
check(const char *s, size_t len, const char **why)
{
    int  rc;

    if (sl_json_decode(L, s, len) != SL_OK) {
        return 0;
    }

    lua_rawgeti(L, LUA_REGISTRYINDEX, check_ref);
    lua_insert(L, -2);
    lua_pushlstring(L, s, len);
    lua_call(L, 2, 2);
    rc = lua_toboolean(L, -2) ? 1 : -1;
    *why = lua_tostring(L, -1);
    lua_pop(L, 2);
    return rc;
}


/* the same through sl_json_decode_top with every compound member of the keys below left
 * lazy (max_inline 0) and then decoded from its offset: 1 equal, 0 declined, -1 wrong */
static int
check_top(const char *s, size_t len, const char **why)
{
    int     rc, top = lua_gettop(L);
    size_t  used;

    lua_newtable(L);                                /* eligible */
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "messages");
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "tools");
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "nested");
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "a");
    lua_newtable(L);                                /* sentinel */
    if (sl_json_decode_top(L, s, len, top + 1, 0, top + 2) != SL_OK) {
        lua_settop(L, top);
        return 0;
    }

    /* top + 3: the object, top + 4: lazy offsets or nil */
    if (lua_istable(L, top + 4)) {
        lua_pushnil(L);
        while (lua_next(L, top + 4) != 0) {
            lua_Integer  at = lua_tointeger(L, -1);

            lua_pop(L, 1);
            lua_pushvalue(L, -1);
            if (sl_json_decode_prefix(L, s + at - 1, len - (size_t) at + 1, &used) != SL_OK) {
                lua_settop(L, top);
                *why = "a lazy member does not decode";
                return -1;
            }

            lua_rawset(L, top + 3);
        }
    }

    lua_rawgeti(L, LUA_REGISTRYINDEX, check_ref);
    lua_pushvalue(L, top + 3);
    lua_pushlstring(L, s, len);
    lua_call(L, 2, 2);
    rc = lua_toboolean(L, -2) ? 1 : -1;
    *why = lua_tostring(L, -1);
    lua_settop(L, top);
    return rc;
}


/* whether s is a JSON object (blanks, then '{') */
static int
is_object(const char *s, size_t len)
{
    size_t  i = 0;

    while (i < len && (s[i] == ' ' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t')) {
        i++;
    }

    return i < len && s[i] == '{';
}


int
main(void)
{
    static const char  *accept[] = {
        "{\"model\":\"gpt-4o\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
        " { \"a\" : [ 1 , -2.5 , 3e2 , 0 , -0 , 1.5E-3 ] , \"b\" : null , \"c\" : false } ",
        "{\"esc\":\"line\\nbreak \\\"q\\\" \\\\ \\/ \\b\\f\\r\\t \\u00e9 \\u20ac \\ud83d\\ude00\"}",
        "{\"nested\":{\"x\":[[],{},[{}],{\"y\":[null]}]},\"empty\":\"\"}",
        "[1,\"two\",{\"three\":3}]",
        "\"just a string\"",
        "12345678901234567890",
        "{\"dup\":1,\"dup\":2}",
        "{\"utf8\":\"caf\xc3\xa9 \xe2\x82\xac\"}",
        ("{\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{}}}],"
         "\"max_tokens\":100,\"temperature\":0.7}"),
    };
    static const char  *other[] = {
        "", " ", "{", "}", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "{'a':1}", "[01]", "[1.]",
        "[.5]", "[1e]", "[+1]", "[NaN]", "[Infinity]", "{\"a\":tru}", "nul", "\"\\x\"",
        "\"\\ud800\"", "\"\\udc00x\"", "\"a\x01b\"", "{\"a\":1} x", "[1]]", "\"unterminated",
        "[\"\\u12\"]", "{\"a\":[1,2}", "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
    };
    static const char  change[] = "{}[]\",:\\0123456789.eE+-tfnul \x01\xc3 a";
    static const char  insert[] = "{}[]\",:\\0e-n ";
    size_t        i, j, n, bad = 0, accepted = 0, tried = 0, bad_top = 0, tried_top = 0;
    int           rc;
    const char   *why = "";
    char          buf[512];
    unsigned      seed = 12345;

    L = luaL_newstate();
    luaL_openlibs(L);
    if (luaL_loadstring(L, deep_eq_src) != 0 || lua_pcall(L, 0, 1, 0) != 0) {
        printf("Bail out! %s\n", lua_tostring(L, -1));
        return 1;
    }

    check_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    for (i = 0; i < sizeof(accept) / sizeof(accept[0]); i++) {
        int  rc = check(accept[i], strlen(accept[i]), &why);
        ok(rc == 1, "accepted and equal to cjson: %.40s", accept[i]);
        if (rc != 1) {
            printf("#   %s\n", rc == 0 ? "declined" : why);
        }
    }

    for (i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
        int  rc = check(other[i], strlen(other[i]), &why);
        ok(rc != -1, "never accepted unlike cjson: %.40s", other[i]);
        if (rc == -1) {
            printf("#   %s\n", why);
        }
    }

    /* mutations: change, drop or insert a byte at a pseudo-random place */
    for (i = 0; i < sizeof(accept) / sizeof(accept[0]); i++) {
        for (j = 0; j < 3000; j++) {
            size_t  len = strlen(accept[i]), at;
            memcpy(buf, accept[i], len);
            seed = seed * 1103515245 + 12345;
            at = (seed >> 8) % len;
            switch ((seed >> 20) % 3) {
            case 0:
                buf[at] = change[(seed >> 4) % (sizeof(change) - 1)];
                n = len;
                break;
            case 1:
                memmove(buf + at, buf + at + 1, len - at - 1);
                n = len - 1;
                break;
            default:
                memmove(buf + at + 1, buf + at, len - at);
                buf[at] = insert[(seed >> 4) % (sizeof(insert) - 1)];
                n = len + 1;
                break;
            }

            tried++;
            rc = check(buf, n, &why);
            switch (rc) {
            case 1:
                accepted++;
                break;
            case -1:
                if (bad++ < 5) {
                    printf("# mutation accepted unlike cjson (%s): %.*s\n", why, (int) n, buf);
                }
                break;
            }

            if (is_object(buf, n)) {
                int  rt = check_top(buf, n, &why);

                tried_top++;
                if (rt == -1 || (rt == 1) != (rc == 1)) {
                    if (bad_top++ < 5) {
                        printf("# lazy decode %d vs decode %d (%s): %.*s\n", rt, rc,
                               rt == -1 ? why : "acceptance differs", (int) n, buf);
                    }
                }
            }
        }
    }

    is_int(bad, 0, "no mutation decoded differently from cjson (%zu tried, %zu accepted)",
           tried, accepted);
    is_int(bad_top, 0, "lazy top-level decode: same acceptance, same values after decoding the "
           "lazy members (%zu objects tried)", tried_top);

    for (i = 0; i < sizeof(accept) / sizeof(accept[0]); i++) {
        if (is_object(accept[i], strlen(accept[i]))) {
            ok(check_top(accept[i], strlen(accept[i]), &why) == 1, "lazy: %.40s", accept[i]);
        }
    }

    {
        /* a lazy member repeated, then a plain one: the last wins, no lazy offset left */
        const char  *dup = "{\"messages\":[1],\"messages\":[2,3],\"nested\":[1],\"nested\":4}";
        ok(check_top(dup, strlen(dup), &why) == 1, "repeated keys: the last one counts");
    }
    lua_close(L);
    done_testing();
}
