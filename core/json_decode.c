/* json_decode.c -- see json_decode.h. Recursive descent over the bytes; a string without
 * escapes is pushed straight from the input (memchr to its closing quote), one with escapes
 * goes through a luaL_Buffer; the plain runs are found eight bytes at a time (json_str.h). Declined (for lua-cjson to judge): control characters in
 * strings, lone surrogates, numbers JSON does not allow or longer than 63 bytes, nesting past
 * MAX_DEPTH, anything after the value but blanks. */
#include "json_decode.h"
#include "json_str.h"

#include <lauxlib.h>
#include <stdlib.h>

#define MAX_DEPTH  200

typedef struct {
    lua_State   *L;
    const char  *p;
    const char  *end;
    int          depth;
    int          skip;          /* check only: push nothing (sl_json_decode_top's big members) */
} dec_t;


static int value(dec_t *d);


static void
ws(dec_t *d)
{
    while (d->p < d->end && (*d->p == ' ' || *d->p == '\n' || *d->p == '\r' || *d->p == '\t')) {
        d->p++;
    }
}


static int
hex4(const char *p, unsigned *out)
{
    unsigned  v = 0;
    int       i;

    for (i = 0; i < 4; i++) {
        char  c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') {
            v |= (unsigned) (c - '0');
        } else if (c >= 'a' && c <= 'f') {
            v |= (unsigned) (c - 'a' + 10);
        } else if (c >= 'A' && c <= 'F') {
            v |= (unsigned) (c - 'A' + 10);
        } else {
            return SL_ERROR;
        }
    }

    *out = v;
    return SL_OK;
}


static void
put_utf8(luaL_Buffer *b, unsigned cp)
{
    if (cp < 0x80) {
        luaL_addchar(b, (char) cp);
    } else if (cp < 0x800) {
        luaL_addchar(b, (char) (0xc0 | (cp >> 6)));
        luaL_addchar(b, (char) (0x80 | (cp & 0x3f)));
    } else if (cp < 0x10000) {
        luaL_addchar(b, (char) (0xe0 | (cp >> 12)));
        luaL_addchar(b, (char) (0x80 | ((cp >> 6) & 0x3f)));
        luaL_addchar(b, (char) (0x80 | (cp & 0x3f)));
    } else {
        luaL_addchar(b, (char) (0xf0 | (cp >> 18)));
        luaL_addchar(b, (char) (0x80 | ((cp >> 12) & 0x3f)));
        luaL_addchar(b, (char) (0x80 | ((cp >> 6) & 0x3f)));
        luaL_addchar(b, (char) (0x80 | (cp & 0x3f)));
    }
}


/* the \\uXXXX escape at q (a surrogate pair: both halves): its code point and length */
static int
unicode_escape(const char *q, const char *end, unsigned *cp, size_t *n)
{
    unsigned  lo;

    if (end - q < 6 || hex4(q + 2, cp) != SL_OK) {
        return SL_DECLINED;
    }

    *n = 6;
    if (*cp >= 0xd800 && *cp <= 0xdbff) {
        /* a high surrogate: its low half must follow */
        if (end - q < 12 || q[6] != '\\' || q[7] != 'u' || hex4(q + 8, &lo) != SL_OK
            || lo < 0xdc00 || lo > 0xdfff)
        {
            return SL_DECLINED;
        }

        *cp = 0x10000 + ((*cp - 0xd800) << 10) + (lo - 0xdc00);
        *n = 12;
    } else if (*cp >= 0xdc00 && *cp <= 0xdfff) {
        return SL_DECLINED;
    }

    return SL_OK;
}


/* the rest of a string from its first backslash at q, checked as string() decodes it */
static int
skip_escaped(dec_t *d, const char *q)
{
    unsigned  cp;
    size_t    n;

    while (q < d->end) {
        if (*q == '"') {
            d->p = q + 1;
            return SL_OK;
        }

        if ((unsigned char) *q < 0x20) {
            return SL_DECLINED;
        }

        if (*q != '\\') {
            q = sl_json_str_stop(q, d->end);
            continue;
        }

        if (q + 1 >= d->end) {
            return SL_DECLINED;
        }

        switch (q[1]) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
            q += 2;
            continue;
        case 'u':
            if (unicode_escape(q, d->end, &cp, &n) != SL_OK) {
                return SL_DECLINED;
            }

            q += n;
            continue;
        default:
            return SL_DECLINED;
        }
    }

    return SL_DECLINED;
}


/* d->p at the opening quote */
static int
string(dec_t *d)
{
    const char   *s = d->p + 1, *q;
    luaL_Buffer   b;
    unsigned      cp;
    size_t        n;

    q = sl_json_str_stop(s, d->end);
    if (q == d->end || (unsigned char) *q < 0x20) {
        return SL_DECLINED;
    }

    if (*q == '"') {
        if (!d->skip) {
            lua_pushlstring(d->L, s, (size_t) (q - s));
        }

        d->p = q + 1;
        return SL_OK;
    }

    if (d->skip) {
        return skip_escaped(d, q);
    }

    luaL_buffinit(d->L, &b);
    luaL_addlstring(&b, s, (size_t) (q - s));
    while (q < d->end) {
        char  c = *q;

        if (c == '"') {
            luaL_pushresult(&b);
            d->p = q + 1;
            return SL_OK;
        }

        if ((unsigned char) c < 0x20) {
            return SL_DECLINED;
        }

        if (c != '\\') {
            const char  *r = sl_json_str_stop(q, d->end);

            luaL_addlstring(&b, q, (size_t) (r - q));
            q = r;
            continue;
        }

        if (q + 1 >= d->end) {
            return SL_DECLINED;
        }

        switch (q[1]) {
        case '"':  luaL_addchar(&b, '"'); break;
        case '\\': luaL_addchar(&b, '\\'); break;
        case '/':  luaL_addchar(&b, '/'); break;
        case 'b':  luaL_addchar(&b, '\b'); break;
        case 'f':  luaL_addchar(&b, '\f'); break;
        case 'n':  luaL_addchar(&b, '\n'); break;
        case 'r':  luaL_addchar(&b, '\r'); break;
        case 't':  luaL_addchar(&b, '\t'); break;
        case 'u':
            if (unicode_escape(q, d->end, &cp, &n) != SL_OK) {
                return SL_DECLINED;
            }

            put_utf8(&b, cp);
            q += n;
            continue;
        default:
            return SL_DECLINED;
        }

        q += 2;
    }

    return SL_DECLINED;
}


/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int
number(dec_t *d)
{
    const char  *p = d->p, *start = p;
    char         buf[64];
    size_t       n;
    int          frac = 0;

    if (p < d->end && *p == '-') {
        p++;
    }

    if (p >= d->end || *p < '0' || *p > '9') {
        return SL_DECLINED;
    }

    if (*p == '0') {
        p++;
        if (p < d->end && *p >= '0' && *p <= '9') {
            return SL_DECLINED;
        }
    } else {
        while (p < d->end && *p >= '0' && *p <= '9') {
            p++;
        }
    }

    if (p < d->end && *p == '.') {
        frac = 1;
        p++;
        if (p >= d->end || *p < '0' || *p > '9') {
            return SL_DECLINED;
        }

        while (p < d->end && *p >= '0' && *p <= '9') {
            p++;
        }
    }

    if (p < d->end && (*p == 'e' || *p == 'E')) {
        frac = 1;
        p++;
        if (p < d->end && (*p == '+' || *p == '-')) {
            p++;
        }

        if (p >= d->end || *p < '0' || *p > '9') {
            return SL_DECLINED;
        }

        while (p < d->end && *p >= '0' && *p <= '9') {
            p++;
        }
    }

    n = (size_t) (p - start);
    if (d->skip) {
        d->p = p;
        return SL_OK;
    }

    if (n <= 15 && !frac) {
        /* an integer of at most 15 digits: exact in a double, no strtod needed */
        const char  *q = start + (*start == '-');
        double       v = 0;

        for ( ; q < p; q++) {
            v = v * 10 + (*q - '0');
        }

        lua_pushnumber(d->L, *start == '-' ? -v : v);
        d->p = p;
        return SL_OK;
    }

    if (n >= sizeof(buf)) {
        return SL_DECLINED;
    }

    memcpy(buf, start, n);
    buf[n] = '\0';
    lua_pushnumber(d->L, strtod(buf, NULL));
    d->p = p;
    return SL_OK;
}


static int
literal(dec_t *d, const char *word, size_t n)
{
    if ((size_t) (d->end - d->p) < n || memcmp(d->p, word, n) != 0) {
        return SL_DECLINED;
    }

    d->p += n;
    return SL_OK;
}


/* tables start with room for a few entries: growing one from empty rehashes it at 1, 2, 3
 * and 5 entries, and request bodies are made of small objects and arrays */
static int
object(dec_t *d)
{
    if (!d->skip) {
        lua_createtable(d->L, 0, 4);
    }

    d->p++;
    ws(d);
    if (d->p < d->end && *d->p == '}') {
        d->p++;
        return SL_OK;
    }

    for ( ;; ) {
        if (d->p >= d->end || *d->p != '"' || string(d) != SL_OK) {
            return SL_DECLINED;
        }

        ws(d);
        if (d->p >= d->end || *d->p != ':') {
            return SL_DECLINED;
        }

        d->p++;
        ws(d);
        if (value(d) != SL_OK) {
            return SL_DECLINED;
        }

        if (!d->skip) {
            lua_rawset(d->L, -3);
        }

        ws(d);
        if (d->p < d->end && *d->p == ',') {
            d->p++;
            ws(d);
            continue;
        }

        if (d->p < d->end && *d->p == '}') {
            d->p++;
            return SL_OK;
        }

        return SL_DECLINED;
    }
}


static int
array(dec_t *d)
{
    int  i = 0;

    if (!d->skip) {
        lua_createtable(d->L, 4, 0);
    }

    d->p++;
    ws(d);
    if (d->p < d->end && *d->p == ']') {
        d->p++;
        return SL_OK;
    }

    for ( ;; ) {
        if (value(d) != SL_OK) {
            return SL_DECLINED;
        }

        if (!d->skip) {
            lua_rawseti(d->L, -2, ++i);
        }

        ws(d);
        if (d->p < d->end && *d->p == ',') {
            d->p++;
            ws(d);
            continue;
        }

        if (d->p < d->end && *d->p == ']') {
            d->p++;
            return SL_OK;
        }

        return SL_DECLINED;
    }
}


static int
value(dec_t *d)
{
    int  rc;

    if (d->p >= d->end || (!d->skip && !lua_checkstack(d->L, 4))) {
        return SL_DECLINED;
    }

    switch (*d->p) {
    case '{':
    case '[':
        if (++d->depth > MAX_DEPTH) {
            return SL_DECLINED;
        }

        rc = *d->p == '{' ? object(d) : array(d);
        d->depth--;
        return rc;
    case '"':
        return string(d);
    case 't':
        if (literal(d, "true", 4) != SL_OK) {
            return SL_DECLINED;
        }

        if (!d->skip) {
            lua_pushboolean(d->L, 1);
        }

        return SL_OK;
    case 'f':
        if (literal(d, "false", 5) != SL_OK) {
            return SL_DECLINED;
        }

        if (!d->skip) {
            lua_pushboolean(d->L, 0);
        }

        return SL_OK;
    case 'n':
        if (literal(d, "null", 4) != SL_OK) {
            return SL_DECLINED;
        }

        if (!d->skip) {
            lua_pushlightuserdata(d->L, NULL);
        }

        return SL_OK;
    default:
        return number(d);
    }
}


int
sl_json_decode(lua_State *L, const char *s, size_t len)
{
    dec_t  d = { L, s, s + len, 0, 0 };
    int    top = lua_gettop(L);

    ws(&d);
    if (value(&d) == SL_OK) {
        ws(&d);
        if (d.p == d.end) {
            return SL_OK;
        }
    }

    lua_settop(L, top);
    return SL_DECLINED;
}


int
sl_json_decode_prefix(lua_State *L, const char *s, size_t len, size_t *used)
{
    dec_t  d = { L, s, s + len, 0, 0 };
    int    top = lua_gettop(L);

    ws(&d);
    if (value(&d) == SL_OK) {
        *used = (size_t) (d.p - s);
        return SL_OK;
    }

    lua_settop(L, top);
    return SL_DECLINED;
}


int
sl_json_decode_top(lua_State *L, const char *s, size_t len, int eligible, size_t max_inline,
                   int sentinel)
{
    dec_t        d = { L, s, s + len, 0, 0 };
    int          top = lua_gettop(L), t, z, big;
    const char  *v;

    if (!lua_checkstack(L, 8)) {
        return SL_DECLINED;
    }

    ws(&d);
    if (d.p >= d.end || *d.p != '{') {
        return SL_DECLINED;
    }

    lua_createtable(L, 0, 8);
    t = lua_gettop(L);
    lua_pushnil(L);                 /* becomes the lazy table at the first big member */
    z = t + 1;
    d.p++;
    ws(&d);
    if (d.p < d.end && *d.p == '}') {
        d.p++;
        goto done;
    }

    for ( ;; ) {
        if (d.p >= d.end || *d.p != '"' || string(&d) != SL_OK) {
            goto fail;
        }

        ws(&d);
        if (d.p >= d.end || *d.p != ':') {
            goto fail;
        }

        d.p++;
        ws(&d);
        v = d.p;
        big = 0;
        if (v < d.end && (*v == '[' || *v == '{')) {
            lua_pushvalue(L, -1);
            lua_rawget(L, eligible);
            if (lua_toboolean(L, -1)) {
                d.skip = 1;
                big = value(&d) == SL_OK;
                d.skip = 0;
                if (!big) {
                    goto fail;
                }

                big = (size_t) (d.p - v) > max_inline;
                if (!big) {
                    d.p = v;        /* small: decoded below after all */
                }
            }

            lua_pop(L, 1);
        }

        if (big) {
            if (lua_isnil(L, z)) {
                lua_newtable(L);
                lua_replace(L, z);
            }

            lua_pushvalue(L, -1);
            lua_pushinteger(L, (lua_Integer) (v - s) + 1);
            lua_rawset(L, z);
            lua_pushvalue(L, sentinel);
            lua_rawset(L, t);

        } else {
            if (lua_istable(L, z)) {
                /* a repeated key: the last one counts, as in lua-cjson */
                lua_pushvalue(L, -1);
                lua_pushnil(L);
                lua_rawset(L, z);
            }

            if (value(&d) != SL_OK) {
                goto fail;
            }

            lua_rawset(L, t);
        }

        ws(&d);
        if (d.p < d.end && *d.p == ',') {
            d.p++;
            ws(&d);
            continue;
        }

        if (d.p < d.end && *d.p == '}') {
            d.p++;
            break;
        }

        goto fail;
    }

done:
    ws(&d);
    if (d.p == d.end) {
        return SL_OK;
    }

fail:
    lua_settop(L, top);
    return SL_DECLINED;
}
