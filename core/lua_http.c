/* lua_http.c -- sluice.http: the current request and its response, for the Lua framework
 * (lua/sluice/pdk/ modules wraps it for plugins). Every function works on the request of the
 * running coroutine; misuse (no request) raises. Response writes after the client left are
 * accepted and dropped. */
#include <event2/buffer.h>
#include <stdio.h>
#include <strings.h>

#include "http_response.h"
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


/* clear_resp_headers(names [, prefixes]): removes every response header whose lowercased
 * name is a key of the table `names` or starts with one of the lowercase strings of the array
 * `prefixes`; one pass over the headers, no table of them built, no string made */
#define CLEAR_MAX  32

static int
l_clear_resp_headers(lua_State *L)
{
    sl_req_t    *r = req(L);
    sl_hdr_t    *h;
    const char  *names[CLEAR_MAX], *pres[8];
    size_t       nlens[CLEAR_MAX], plens[8], i, j, nn = 0, np;
    int          drop;

    luaL_checktype(L, 1, LUA_TTABLE);
    np = lua_istable(L, 2) ? lua_objlen(L, 2) : 0;
    if (r->headers_sent) {
        return 0;
    }

    if (np > 8) {
        return luaL_error(L, "clear_resp_headers: at most 8 prefixes");
    }

    /* the strings stay alive in the caller's tables while this runs */
    for (j = 0; j < np; j++) {
        lua_rawgeti(L, 2, (int) j + 1);
        pres[j] = lua_tolstring(L, -1, &plens[j]);
        lua_pop(L, 1);
        if (pres[j] == NULL) {
            return luaL_error(L, "clear_resp_headers: prefixes must be strings");
        }
    }

    lua_pushnil(L);
    while (lua_next(L, 1) != 0) {
        if (lua_toboolean(L, -1) && lua_type(L, -2) == LUA_TSTRING) {
            if (nn == CLEAR_MAX) {
                return luaL_error(L, "clear_resp_headers: at most %d names", CLEAR_MAX);
            }

            names[nn] = lua_tolstring(L, -2, &nlens[nn]);
            nn++;
        }

        lua_pop(L, 1);
    }

    for (i = 0; i < r->resp_headers.n; i++) {
        h = &r->resp_headers.items[i];
        if (h->name.len == 0) {
            continue;
        }

        drop = 0;
        for (j = 0; j < nn && !drop; j++) {
            drop = nlens[j] == h->name.len && strncasecmp(h->name.data, names[j], nlens[j]) == 0;
        }

        for (j = 0; j < np && !drop; j++) {
            drop = plens[j] <= h->name.len && strncasecmp(h->name.data, pres[j], plens[j]) == 0;
        }

        if (drop) {
            h->name.len = 0;        /* removed (see headers.h) */
        }
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
