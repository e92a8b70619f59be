/* lua_json.c -- TAP tests for core.json_splice. links: core/json_scan.c core/json_decode.c */
/* Every case runs twice: with the pairs table, and with the plan json_splice_plan makes of it
 * (the same output, or the same refusal). */
/* The members it does not touch keep their bytes, replacements take the first
 * member of their key and drop repeats, removals go, new keys come last in byte order, and
 * what it cannot do it declines (nil: not one object; false: an escaped key, a bad table). */
#include "tap.h"

#include <lauxlib.h>
#include <lualib.h>

#include "lua_vm.h"

static lua_State  *L;
static int         with_plan;


/* splice(s, pairs given as "k1", "text1"|NULL for false, ..., NULL) -> pushes the result */
static void
run(const char *s, size_t len, const char *const *kv)
{
    lua_pushcfunction(L, sl_lua_json_splice);
    lua_pushlstring(L, s, len);
    lua_newtable(L);
    for (; kv[0] != NULL; kv += 2) {
        if (kv[1] != NULL) {
            lua_pushstring(L, kv[1]);
        } else {
            lua_pushboolean(L, 0);
        }

        lua_setfield(L, -2, kv[0]);
    }

    if (with_plan) {
        /* the table made into a plan: false when the builder declines it */
        lua_pushcfunction(L, sl_lua_json_splice_plan);
        lua_insert(L, -2);
        lua_call(L, 1, 1);
        if (lua_isboolean(L, -1)) {
            lua_pop(L, 3);
            lua_pushboolean(L, 0);
            return;
        }
    }

    lua_call(L, 2, 1);
}


static void
splices(const char *s, const char *const *kv, const char *want, const char *what)
{
    size_t       n;
    const char  *got;

    for (with_plan = 0; with_plan < 2; with_plan++) {
        run(s, strlen(s), kv);
        got = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &n) : NULL;
        if (got == NULL) {
            ok(0, "%s%s", what, with_plan ? " (plan)" : "");
            printf("#   got %s\n", lua_typename(L, lua_type(L, -1)));
        } else {
            is_str(got, n, want, "%s%s", what, with_plan ? " (plan)" : "");
        }

        lua_pop(L, 1);
    }

    with_plan = 0;
}


static void
declines(const char *s, const char *const *kv, int want_nil, const char *what)
{
    for (with_plan = 0; with_plan < 2; with_plan++) {
        run(s, strlen(s), kv);
        ok(want_nil ? lua_isnil(L, -1) : (lua_isboolean(L, -1) && !lua_toboolean(L, -1)),
           "%s%s", what, with_plan ? " (plan)" : "");
        lua_pop(L, 1);
    }

    with_plan = 0;
}


int
main(void)
{
    static const char *const  model[] = { "model", "\"model\":\"gpt-4o-mini\"", NULL };
    static const char *const  none[] = { NULL };
    static const char *const  drop[] = { "temperature", NULL, NULL };
    static const char *const  add[] = {
        "stream_options", "\"stream_options\":{\"include_usage\":true}",
        "max_tokens", "\"max_tokens\":5", "model", "\"model\":\"m\"", NULL };
    char                      big[20000], want[20100];
    size_t                    i, n;

    L = luaL_newstate();
    luaL_openlibs(L);

    splices("{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", model,
            "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
            "a member replaced in place");
    splices(" { \"a\" : [ 1 , 2 ] ,\n \"model\" : \"x\" , \"b\":{\"model\":1} } ", model,
            "{\"a\" : [ 1 , 2 ],\"model\":\"gpt-4o-mini\",\"b\":{\"model\":1}}",
            "untouched members keep their bytes; nested keys of the same name are not members");
    splices("{\"a\":1,\"temperature\":0.7,\"b\":2}", drop, "{\"a\":1,\"b\":2}", "removed");
    splices("{\"temperature\":0.7}", drop, "{}", "the only member removed");
    splices("{\"a\":1}", add,
            "{\"a\":1,\"max_tokens\":5,\"model\":\"m\",\"stream_options\":{\"include_usage\":true}}",
            "new keys appended in byte order");
    splices("{\"model\":\"a\",\"x\":1,\"model\":\"b\"}", model,
            "{\"model\":\"gpt-4o-mini\",\"x\":1}", "a repeated key: first replaced, repeats gone");
    splices("{}", model, "{\"model\":\"gpt-4o-mini\"}", "into an empty object");
    splices("{\"a\":\"q\\\"uo}te\",\"model\":1}", model, "{\"a\":\"q\\\"uo}te\",\"model\":\"gpt-4o-mini\"}",
            "escapes inside values are skipped over");
    splices("{\"a\":1}", none, "{\"a\":1}", "nothing to change");

    /* a body past the host buffer's size (luaL_Buffer flushes to the stack) */
    n = (size_t) snprintf(big, sizeof(big), "{\"model\":\"x\",\"messages\":\"");
    memset(big + n, 'a', 18000);
    n += 18000;
    memcpy(big + n, "\"}", 3);
    n = (size_t) snprintf(want, sizeof(want), "{\"model\":\"gpt-4o-mini\",%s", big + 13);
    splices(big, model, want, "an 18 KB body");

    declines("[1,2]", model, 1, "an array: nil");
    declines("{\"a\":1", model, 1, "an unterminated object: nil");
    declines("{\"a\":1} x", model, 1, "trailing bytes: nil");
    declines("", model, 1, "empty: nil");
    declines("{\"m\\u006fdel\":1}", model, 0, "an escaped key: false (the Lua splice decodes it)");

    /* a value that is neither text nor false */
    lua_pushcfunction(L, sl_lua_json_splice);
    lua_pushstring(L, "{\"a\":1}");
    lua_newtable(L);
    lua_pushinteger(L, 5);
    lua_setfield(L, -2, "a");
    lua_call(L, 2, 1);
    ok(lua_isboolean(L, -1) && !lua_toboolean(L, -1), "a number as replacement: false");
    lua_pop(L, 1);

    /* more keys than it tracks */
    lua_pushcfunction(L, sl_lua_json_splice);
    lua_pushstring(L, "{\"a\":1}");
    lua_newtable(L);
    for (i = 0; i < 40; i++) {
        char  key[16];

        snprintf(key, sizeof(key), "k%d", (int) i);
        lua_pushfstring(L, "\"%s\":1", key);
        lua_setfield(L, -2, key);
    }

    lua_call(L, 2, 1);
    ok(lua_isboolean(L, -1) && !lua_toboolean(L, -1), "40 keys: false");
    lua_pop(L, 1);

    lua_close(L);
    done_testing();
}
