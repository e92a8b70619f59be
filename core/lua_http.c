/* lua_http.c -- sluice.http: the current request and its response, for the Lua framework
 * (lua/sluice/pdk/ modules wraps it for plugins). Every function works on the request of the
 * running coroutine; misuse (no request) raises. Response writes after the client left are
 * accepted and dropped. */
#include <event2/buffer.h>
#include <stdio.h>
#include <strings.h>

#include "http_response.h"
#include "headers.h"
#include "lua_vm.h"
#include "worker.h"


static sl_req_t *
req(lua_State *L)
{
    sl_req_t  *r = sl_lua_current_req();

    if (r == NULL) {
        luaL_error(L, "no request in this context");
    }

    return r;
}


static int
l_get_method(lua_State *L)
{
    sl_req_t  *r = req(L);

    lua_pushlstring(L, r->head.method.data, r->head.method.len);
    return 1;
}


/* origin-form: path[?query], also for an absolute-form request target */
static int
l_get_uri(lua_State *L)
{
    sl_req_t  *r = req(L);

    if (r->head.target.len > 0 && r->head.target.data[0] == '/') {
        lua_pushlstring(L, r->head.target.data, r->head.target.len);
        return 1;
    }

    lua_pushlstring(L, r->head.path.data, r->head.path.len);
    if (r->head.query.len > 0) {
        lua_pushliteral(L, "?");
        lua_pushlstring(L, r->head.query.data, r->head.query.len);
        lua_concat(L, 3);
    }

    return 1;
}


static int
l_get_path(lua_State *L)
{
    sl_req_t  *r = req(L);

    lua_pushlstring(L, r->head.path.data, r->head.path.len);
    return 1;
}


static int
l_get_query(lua_State *L)
{
    sl_req_t  *r = req(L);

    lua_pushlstring(L, r->head.query.data, r->head.query.len);
    return 1;
}


/* method, path, query, host, remote_addr: what every request needs, in one crossing */
static int
l_info(lua_State *L)
{
    sl_req_t  *r = req(L);

    lua_pushlstring(L, r->head.method.data, r->head.method.len);
    lua_pushlstring(L, r->head.path.data, r->head.path.len);
    lua_pushlstring(L, r->head.query.data, r->head.query.len);
    if (r->head.host.len > 0) {
        lua_pushlstring(L, r->head.host.data, r->head.host.len);
    } else {
        lua_pushlstring(L, r->head.authority.data, r->head.authority.len);
    }

    lua_pushstring(L, r->remote_addr);
    return 5;
}


static int
l_get_header(lua_State *L)
{
    sl_req_t        *r = req(L);
    size_t           len;
    const char      *name = luaL_checklstring(L, 1, &len);
    const sl_hdr_t  *h = sl_hdrs_find(&r->headers, name, len);

    if (h == NULL) {
        /* "content_type" style names, as in ctx.var.http_content_type */
        char   buf[256];
        size_t i;

        if (len < sizeof(buf) && memchr(name, '_', len) != NULL) {
            for (i = 0; i < len; i++) {
                buf[i] = name[i] == '_' ? '-' : name[i];
            }

            h = sl_hdrs_find(&r->headers, buf, len);
        }

        if (h == NULL) {
            lua_pushnil(L);
            return 1;
        }
    }

    lua_pushlstring(L, h->value.data, h->value.len);
    return 1;
}


static void
push_lower(lua_State *L, const sl_str_t *s)
{
    char    buf[256];
    size_t  i;

    if (s->len >= sizeof(buf)) {
        lua_pushlstring(L, s->data, s->len);
        return;
    }

    for (i = 0; i < s->len; i++) {
        buf[i] = (char) ((s->data[i] >= 'A' && s->data[i] <= 'Z') ? s->data[i] + 32 : s->data[i]);
    }

    lua_pushlstring(L, buf, s->len);
}


/* table of lowercased name -> value; repeated names -> array of values */
void
sl_lua_push_headers(lua_State *L, const sl_hdrs_t *hs)
{
    size_t  i;

    lua_createtable(L, 0, (int) hs->n);
    for (i = 0; i < hs->n; i++) {
        if (hs->items[i].name.len == 0) {
            continue;
        }

        push_lower(L, &hs->items[i].name);
        lua_pushvalue(L, -1);
        lua_rawget(L, -3);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            lua_pushlstring(L, hs->items[i].value.data, hs->items[i].value.len);
            lua_rawset(L, -3);
            continue;
        }

        if (lua_isstring(L, -1)) {
            lua_createtable(L, 2, 0);
            lua_insert(L, -2);
            lua_rawseti(L, -2, 1);
        }

        lua_pushlstring(L, hs->items[i].value.data, hs->items[i].value.len);
        lua_rawseti(L, -2, (int) lua_objlen(L, -2) + 1);
        lua_rawset(L, -3);
    }
}


static int
l_get_headers(lua_State *L)
{
    sl_lua_push_headers(L, &req(L)->headers);
    return 1;
}


static int
l_set_header(lua_State *L)
{
    sl_req_t    *r = req(L);
    size_t       nlen, vlen = 0;
    const char  *name = luaL_checklstring(L, 1, &nlen);
    const char  *value = lua_isnoneornil(L, 2) ? NULL : luaL_checklstring(L, 2, &vlen);

    if (nlen == 0 || memchr(name, '\n', nlen) || (value && memchr(value, '\n', vlen))) {
        return luaL_error(L, "invalid header name or value");
    }

    sl_hdrs_set(&r->headers, name, nlen, value, vlen);
    return 0;
}


static int
l_get_body(lua_State *L)
{
    sl_req_t  *r = req(L);
    size_t     len;

    if (r->body == NULL || (len = evbuffer_get_length(r->body)) == 0) {
        lua_pushnil(L);
        return 1;
    }

    lua_pushlstring(L, (const char *) evbuffer_pullup(r->body, -1), len);
    return 1;
}


static int
l_body_size(lua_State *L)
{
    sl_req_t  *r = req(L);

    lua_pushinteger(L, r->body ? (lua_Integer) evbuffer_get_length(r->body) : 0);
    return 1;
}


static int
l_set_body(lua_State *L)
{
    sl_req_t    *r = req(L);
    size_t       len = 0;
    const char  *data = lua_isnoneornil(L, 1) ? "" : luaL_checklstring(L, 1, &len);

    if (r->body == NULL) {
        r->body = evbuffer_new();
    } else {
        evbuffer_drain(r->body, evbuffer_get_length(r->body));
    }

    evbuffer_add(r->body, data, len);
    return 0;
}


/* set_query(q): the query string sent upstream (and seen by later plugins) */
static int
l_set_query(lua_State *L)
{
    sl_req_t    *r = req(L);
    size_t       len;
    const char  *q = luaL_checklstring(L, 1, &len);
    char        *t;

    r->head.query.data = sl_pool_strndup(r->pool, q, len);
    r->head.query.len = len;

    t = sl_pool_alloc(r->pool, r->head.path.len + len + 2);
    memcpy(t, r->head.path.data, r->head.path.len);
    if (len > 0) {
        t[r->head.path.len] = '?';
        memcpy(t + r->head.path.len + 1, q, len);
    }

    r->head.target.data = t;
    r->head.target.len = r->head.path.len + (len > 0 ? len + 1 : 0);
    return 0;
}


static int
l_conn_info(lua_State *L)
{
    sl_req_t  *r = req(L);

    lua_pushinteger(L, r->remote_port);
    lua_pushboolean(L, r->ssl);
    lua_pushinteger(L, r->head.version);
    lua_pushnumber(L, r->start);
    return 4;
}


/* ---- response ---- */

static int
l_set_status(lua_State *L)
{
    sl_req_t  *r = req(L);
    int        status = (int) luaL_checkinteger(L, 1);

    if (status < 100 || status > 999) {
        return luaL_error(L, "invalid status %d", status);
    }

    if (!r->headers_sent) {
        r->status = status;
    }

    return 0;
}


static int
l_get_status(lua_State *L)
{
    lua_pushinteger(L, req(L)->status);
    return 1;
}


static int
l_resp_header(lua_State *L)
{
    sl_req_t        *r = req(L);
    size_t           len;
    const char      *name = luaL_checklstring(L, 1, &len);
    const sl_hdr_t  *h = sl_hdrs_find(&r->resp_headers, name, len);

    if (h == NULL) {
        lua_pushnil(L);
        return 1;
    }

    lua_pushlstring(L, h->value.data, h->value.len);
    return 1;
}


/* The same for the FFI (pdk.response.get_header): the value and its length, NULL when there is
 * no such header; *vlen = (size_t) -1 outside a request. */
SL_FFI const char *
sl_ffi_resp_header(const char *name, size_t nlen, size_t *vlen)
{
    sl_req_t        *r = sl_lua_current_req();
    const sl_hdr_t  *h;

    if (r == NULL) {
        *vlen = (size_t) -1;
        return NULL;
    }

    h = sl_hdrs_find(&r->resp_headers, name, nlen);
    if (h == NULL) {
        *vlen = 0;
        return NULL;
    }

    *vlen = h->value.len;
    return h->value.data != NULL ? h->value.data : "";
}


static int
l_resp_headers(lua_State *L)
{
    sl_lua_push_headers(L, &req(L)->resp_headers);
    return 1;
}


static int
l_set_resp_header(lua_State *L)
{
    sl_req_t    *r = req(L);
    size_t       nlen, vlen = 0;
    const char  *name = luaL_checklstring(L, 1, &nlen);
    const char  *value = lua_isnoneornil(L, 2) ? NULL : luaL_checklstring(L, 2, &vlen);
    int          add = lua_toboolean(L, 3);

    if (nlen == 0 || memchr(name, '\n', nlen) || memchr(name, ':', nlen)
        || (value && (memchr(value, '\n', vlen) || memchr(value, '\r', vlen))))
    {
        return luaL_error(L, "invalid header name or value");
    }

    if (r->headers_sent) {
        return 0;
    }

    if (nlen == 14 && strncasecmp(name, "content-length", 14) == 0) {
        r->resp_length = value ? strtoll(value, NULL, 10) : -1;
        return 0;
    }

    if (add && value != NULL) {
        sl_hdrs_add(&r->resp_headers, sl_pool_strndup(r->pool, name, nlen), nlen,
                    sl_pool_strndup(r->pool, value, vlen), vlen);
    } else {
        sl_hdrs_set(&r->resp_headers, name, nlen, value, vlen);
    }

    return 0;
}


/* one name or prefix (the string at idx) into the set, copied into buf when there is one */
static void
set_add(lua_State *L, sl_hdr_set_t *set, int idx, int prefix, char *buf, size_t size,
    size_t *used)
{
    const char  *s;
    size_t       len;

    s = lua_tolstring(L, idx, &len);
    if (set->n == SL_HDR_SET_MAX || len == 0 || len > 255) {
        luaL_error(L, "header set: at most %d names and prefixes of 1 to 255 bytes",
                   SL_HDR_SET_MAX);
    }

    if (buf != NULL) {
        if (*used + len > size) {
            luaL_error(L, "header set: names too long");
        }
        memcpy(buf + *used, s, len);
        s = buf + *used;
        *used += len;
    }

    set->e[set->n].s = s;
    set->e[set->n].len = (unsigned short) len;
    set->e[set->n].prefix = (unsigned char) prefix;
    set->e[set->n].first = (unsigned char) s[0] | 0x20;
    set->n++;
}


/* A header set (headers.h) from the Lua table `names` (lowercase names as keys, true values)
 * and the array `prefixes` (lowercase strings) at stack indexes ni and pi (pi may be none).
 * With buf the strings are copied there (a set that outlives the call); without, they point
 * into the Lua strings, which the caller's tables keep alive while the set is used. */
static void
compile_set(lua_State *L, int ni, int pi, sl_hdr_set_t *set, char *buf, size_t size)
{
    size_t  np, j, used = 0;

    luaL_checktype(L, ni, LUA_TTABLE);
    np = lua_istable(L, pi) ? lua_objlen(L, pi) : 0;
    set->n = 0;
    for (j = 1; j <= np; j++) {
        lua_rawgeti(L, pi, (int) j);
        if (lua_type(L, -1) != LUA_TSTRING) {
            luaL_error(L, "header set: prefixes must be strings");
        }
        set_add(L, set, -1, 1, buf, size, &used);
        lua_pop(L, 1);
    }

    lua_pushnil(L);
    while (lua_next(L, ni) != 0) {
        /* the key is not converted in place (lua_next needs it as it is): only strings */
        if (lua_toboolean(L, -1) && lua_type(L, -2) == LUA_TSTRING) {
            set_add(L, set, -2, 0, buf, size, &used);
        }
        lua_pop(L, 1);
    }

    sl_hdr_set_index(set);
}


/* header_set(names [, prefixes]) -> a compiled set (userdata) for pdk.response.clear_headers:
 * made once, matched by sl_ffi_clear_resp_headers without reading a Lua table per call */
#define SET_BUF  (SL_HDR_SET_MAX * 64)

static int
l_header_set(lua_State *L)
{
    sl_hdr_set_t  *set = lua_newuserdata(L, sizeof(sl_hdr_set_t) + SET_BUF);

    /* userdata never moves (LuaJIT's GC does not compact): the pointers into it stay good */
    lua_insert(L, 1);
    compile_set(L, 2, 3, set, (char *) (set + 1), SET_BUF);
    lua_settop(L, 1);
    return 1;
}


/* The response filter's fast path, an FFI call (a Lua C function ends a LuaJIT trace):
 * removes the response headers of a set made by header_set. -1 outside a request. */
SL_FFI int
sl_ffi_clear_resp_headers(const void *set)
{
    sl_req_t  *r = sl_lua_current_req();

    if (r == NULL || set == NULL) {
        return -1;
    }

    if (!r->headers_sent) {
        sl_hdrs_remove_set(&r->resp_headers, set);
    }

    return 0;
}


/* clear_resp_headers(names [, prefixes]): removes every response header whose lowercased
 * name is a key of the table `names` or starts with one of the lowercase strings of the array
 * `prefixes`; one pass over the headers, no table of them built, no string made */
static int
l_clear_resp_headers(lua_State *L)
{
    sl_req_t      *r = req(L);
    sl_hdr_set_t   set;

    compile_set(L, 1, 2, &set, NULL, 0);
    if (!r->headers_sent) {
        sl_hdrs_remove_set(&r->resp_headers, &set);
    }

    return 0;
}


static int
l_send_headers(lua_State *L)
{
    sl_req_t  *r = req(L);

    if (lua_toboolean(L, 1)) {
        r->resp_length = -1;        /* the body will change length: chunked */
    }

    sl_resp_send_headers(r);
    return 0;
}


static int
l_send_body(lua_State *L)
{
    sl_req_t    *r = req(L);
    size_t       len;
    const char  *data = luaL_checklstring(L, 1, &len);

    if (!r->headers_sent) {
        sl_resp_send_headers(r);
    }

    sl_resp_send_body(r, data, len);
    return 0;
}


static int
l_finish(lua_State *L)
{
    sl_resp_finish(req(L));
    return 0;
}


/* respond(status, body, content_type): a whole response in one call */
static int
l_respond(lua_State *L)
{
    sl_req_t    *r = req(L);
    int          status = (int) luaL_checkinteger(L, 1);
    size_t       len = 0;
    const char  *body = lua_isnoneornil(L, 2) ? "" : luaL_checklstring(L, 2, &len);
    const char  *ct = luaL_optstring(L, 3, NULL);

    if (r->headers_sent) {
        sl_resp_send_body(r, body, len);
        sl_resp_finish(r);
        return 0;
    }

    sl_resp_send_full(r, status, ct, body, len);
    return 0;
}


static int
l_error(lua_State *L)
{
    sl_req_t    *r = req(L);
    int          status = (int) luaL_checkinteger(L, 1);
    const char  *msg = luaL_checkstring(L, 2);

    sl_resp_send_error(r, status, msg, lua_toboolean(L, 3));
    return 0;
}


/* numbers for the access log, in one crossing */
static int
l_log_info(lua_State *L)
{
    sl_req_t  *r = req(L);
    double     end = r->finish > 0 ? r->finish : sl_worker_now();

    lua_pushinteger(L, r->status);
    lua_pushnumber(L, (double) r->bytes_sent);
    lua_pushnumber(L, (end - r->start) * 1000);
    lua_pushboolean(L, r->client_gone);
    lua_pushboolean(L, r->resp_done);
    lua_pushnumber(L, r->start);
    lua_pushnumber(L, (double) r->req_length);
    return 7;
}


static int
l_state(lua_State *L)
{
    sl_req_t  *r = req(L);

    lua_pushboolean(L, r->headers_sent);
    lua_pushboolean(L, r->resp_done);
    lua_pushboolean(L, r->client_gone);
    return 3;
}


int
luaopen_sluice_http(lua_State *L)
{
    static const luaL_Reg  fns[] = {
        {"get_method", l_get_method},
        {"get_uri", l_get_uri},
        {"get_path", l_get_path},
        {"get_query", l_get_query},
        {"info", l_info},
        {"get_header", l_get_header},
        {"get_headers", l_get_headers},
        {"set_header", l_set_header},
        {"get_body", l_get_body},
        {"body_size", l_body_size},
        {"set_body", l_set_body},
        {"conn_info", l_conn_info},
        {"set_query", l_set_query},
        {"set_status", l_set_status},
        {"get_status", l_get_status},
        {"resp_header", l_resp_header},
        {"resp_headers", l_resp_headers},
        {"set_resp_header", l_set_resp_header},
        {"clear_resp_headers", l_clear_resp_headers},
        {"header_set", l_header_set},
        {"send_headers", l_send_headers},
        {"send_body", l_send_body},
        {"finish", l_finish},
        {"respond", l_respond},
        {"error", l_error},
        {"log_info", l_log_info},
        {"state", l_state},
        {NULL, NULL},
    };

    lua_newtable(L);
    luaL_register(L, NULL, fns);
    return 1;
}
