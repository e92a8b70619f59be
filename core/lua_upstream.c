/* lua_upstream.c -- sluice.upstream: HTTP requests that yield.
 *
 * proxy(opts) sends the current request upstream (its headers as plugins left them, minus
 * hop-by-hop fields, plus X-Forwarded-*), and yields until the response head arrives. Then
 * either pass_body() lets C relay the body straight to the client (no Lua per chunk), or
 * read_body() hands each piece to Lua (body_filter plugins) which writes it with
 * sluice.http.send_body. Either way a slow client pauses the upstream at the high-water
 * mark (http.send_buffer_size) instead of buffering without bound.
 *
 * request(opts) / request_multi({opts...}) are the plugin HTTP client (pdk.http): buffered
 * responses, several transfers at once on the same curl multi. */
#include <event2/buffer.h>
#include <stdio.h>
#include <strings.h>

#include "capture.h"
#include "http_response.h"
#include "lua_vm.h"
#include "upstream.h"
#include "worker.h"

#define MAX_MULTI  64


static double
opt_num(lua_State *L, int idx, const char *key, double dflt)
{
    double  v = dflt;

    lua_getfield(L, idx, key);
    if (lua_isnumber(L, -1)) {
        v = lua_tonumber(L, -1);
    }

    lua_pop(L, 1);
    return v;
}


static int
opt_bool(lua_State *L, int idx, const char *key, int dflt)
{
    int  v = dflt;

    lua_getfield(L, idx, key);
    if (!lua_isnil(L, -1)) {
        v = lua_toboolean(L, -1);
    }

    lua_pop(L, 1);
    return v;
}


static void
set_timeouts(lua_State *L, int idx, sl_transfer_t *t)
{
    double  all = opt_num(L, idx, "timeout", -1);

    if (all > 0) {
        t->connect_timeout = t->send_timeout = t->read_timeout = all;
    }

    t->connect_timeout = opt_num(L, idx, "connect_timeout", t->connect_timeout);
    t->send_timeout = opt_num(L, idx, "send_timeout", t->send_timeout);
    t->read_timeout = opt_num(L, idx, "read_timeout", t->read_timeout);
}


/* a header from Lua: copied, the strings may be collected while the transfer runs */
static void
add_lua_header(sl_transfer_t *t, const char *name, size_t nlen, const char *value, size_t vlen)
{
    sl_transfer_add_header(t, sl_pool_strndup(t->pool, name, nlen), nlen,
                           sl_pool_strndup(t->pool, value, vlen), vlen);
}


/* ---- the request's own upstream ---- */

static int
push_proxy(sl_co_t *co, lua_State *L)
{
    sl_req_t  *r = co->req;

    if (r->up_status > 0 && r->up->headers_done) {
        lua_pushinteger(L, r->up_status);
        return 1;
    }

    lua_pushnil(L);
    lua_pushstring(L, r->up_error ? r->up_error : "upstream failed");
    lua_pushinteger(L, r->up_result > 0 ? r->up_result : 502);
    return 3;
}


/* read_body(): chunk, eof[, err] */
static int
push_chunk(sl_co_t *co, lua_State *L)
{
    sl_req_t  *r = co->req;
    size_t     len = r->pending ? evbuffer_get_length(r->pending) : 0;
    int        eof;

    if (len > 0) {
        lua_pushlstring(L, (const char *) evbuffer_pullup(r->pending, -1), len);
        evbuffer_drain(r->pending, len);
    } else {
        lua_pushliteral(L, "");
    }

    eof = r->up_done;
    lua_pushboolean(L, eof);

    if (eof && r->up_result != SL_OK) {
        lua_pushstring(L, r->up_error ? r->up_error : "upstream failed");
        return 3;
    }

    if (!eof && r->up != NULL && r->up->paused && !r->waiting_drain
        && sl_resp_pending(r) <= sl_worker->conf->send_buffer_size)
    {
        sl_transfer_resume(r->up);
    }

    return 2;
}


/* pass_body{capture=}'s third result: {bytes, head, tail, first_event} */
static void
push_capture(lua_State *L, const sl_capture_t *c)
{
    char    tail[SL_CAPTURE_TAIL];
    size_t  n;

    lua_createtable(L, 0, 4);
    lua_pushnumber(L, (lua_Number) c->bytes);
    lua_setfield(L, -2, "bytes");
    lua_pushlstring(L, c->head != NULL ? c->head : "", c->head_len);
    lua_setfield(L, -2, "head");
    n = sl_capture_tail(c, tail);
    if (n > 0) {
        lua_pushlstring(L, tail, n);
        lua_setfield(L, -2, "tail");
        lua_pushnumber(L, (lua_Number) c->tail_total);
        lua_setfield(L, -2, "tail_total");
    }

    if (c->first_event > 0) {
        lua_pushnumber(L, c->first_event);
        lua_setfield(L, -2, "first_event");
    }
}


static int
push_pass(sl_co_t *co, lua_State *L)
{
    sl_req_t  *r = co->req;

    if (r->up_result != SL_OK) {
        lua_pushnil(L);
        lua_pushstring(L, r->up_error ? r->up_error : "upstream failed");
    } else {
        lua_pushboolean(L, 1);
        if (r->capture == NULL) {
            return 1;
        }

        lua_pushnil(L);
    }

    if (r->capture != NULL) {
        push_capture(L, r->capture);
        return 3;
    }

    return 2;
}


static void
wake_if(sl_req_t *r, int kind, sl_co_push_pt push)
{
    sl_co_t  *co = r->co;

    if (co != NULL && co->waiting && co->wait_kind == kind) {
        sl_co_wake(co, push);
    }
}


static void
on_proxy_headers(sl_transfer_t *t)
{
    sl_req_t        *r = t->data;
    const sl_hdr_t  *cl;
    size_t           i;

    r->up_status = t->status;
    r->up_header_time = sl_worker_now();
    r->status = t->status;
    r->resp_headers.n = 0;

    for (i = 0; i < t->headers.n; i++) {
        sl_hdrs_add(&r->resp_headers, t->headers.items[i].name.data, t->headers.items[i].name.len,
                    t->headers.items[i].value.data, t->headers.items[i].value.len);
    }

    cl = sl_hdrs_find(&t->headers, "content-length", 14);
    r->resp_length = cl != NULL ? strtoll(cl->value.data, NULL, 10) : -1;

    wake_if(r, SL_WAIT_PROXY, push_proxy);
}


static int
on_proxy_body(sl_transfer_t *t, const char *p, size_t n)
{
    sl_req_t  *r = t->data;
    size_t     high = sl_worker->conf->send_buffer_size;

    if (r->client_gone) {
        return SL_OK;
    }

    if (r->up_direct) {
        if (sl_resp_pending(r) > high) {
            r->waiting_drain = 1;
            bufferevent_setwatermark(r->conn->bev, EV_WRITE, high / 2, 0);
            return SL_AGAIN;
        }

        if (r->capture != NULL) {
            sl_capture_add(r->capture, p, n, sl_worker_now());
        }

        sl_resp_send_body(r, p, n);
        return SL_OK;
    }

    /* nobody asked for the body yet (the header phases run): it stays with the transfer,
     * which pauses until pass_body or read_body, instead of being copied aside */
    if (!r->up_body_wanted) {
        return SL_AGAIN;
    }

    if (r->pending == NULL) {
        r->pending = evbuffer_new();
    }

    /* Lua has not taken what is buffered, or the client has not taken what Lua sent:
     * pause until it has (push_chunk and sl_req_on_drain resume) */
    if (evbuffer_get_length(r->pending) > high || r->waiting_drain) {
        return SL_AGAIN;
    }

    evbuffer_add(r->pending, p, n);
    wake_if(r, SL_WAIT_BODY, push_chunk);
    return SL_OK;
}


static void
on_proxy_done(sl_transfer_t *t, int result)
{
    sl_req_t  *r = t->data;

    r->up_done = 1;
    r->up_result = result;
    r->up_error = t->error;
    /* the last byte's time: the transfer may have waited (paused) for the header phases */
    r->up_end = result == SL_OK && t->last_io > 0 ? t->last_io : sl_worker_now();

    if (result != SL_OK) {
        sl_log_warn("upstream %s failed: %s", r->up_addr, t->error ? t->error : "error");
    }

    wake_if(r, SL_WAIT_PROXY, push_proxy);
    wake_if(r, SL_WAIT_BODY, push_chunk);
    wake_if(r, SL_WAIT_PASS, push_pass);
}


void
sl_req_on_drain(sl_req_t *r)
{
    r->waiting_drain = 0;
    if (r->conn != NULL) {
        bufferevent_setwatermark(r->conn->bev, EV_WRITE, 0, 0);
    }

    if (r->up != NULL && r->up->paused) {
        sl_transfer_resume(r->up);
    }

    wake_if(r, SL_WAIT_BODY, push_chunk);
}


void
sl_upstream_on_client_gone(sl_req_t *r)
{
    sl_transfer_cancel(r->up);
    r->up_done = 1;
    r->up_result = 499;
    r->up_error = "client closed the connection";
    r->up_end = sl_worker_now();
    wake_if(r, SL_WAIT_PROXY, push_proxy);
    wake_if(r, SL_WAIT_BODY, push_chunk);
    wake_if(r, SL_WAIT_PASS, push_pass);
}


static int
skip_forward(const sl_str_t *n)
{
    switch (n->len) {
    case 0:
        return 1;
    case 2:
        return sl_hdr_is(n, "te", 2);
    case 4:
        return sl_hdr_is(n, "host", 4);
    case 6:
        return sl_hdr_is(n, "expect", 6);
    case 7:
        return sl_hdr_is(n, "trailer", 7) || sl_hdr_is(n, "upgrade", 7);
    case 9:
        return sl_hdr_is(n, "x-real-ip", 9);
    case 10:
        return sl_hdr_is(n, "connection", 10) || sl_hdr_is(n, "keep-alive", 10);
    case 14:
        return sl_hdr_is(n, "content-length", 14);
    case 15:
        return sl_hdr_is(n, "x-forwarded-for", 15);
    case 16:
        return sl_hdr_is(n, "proxy-connection", 16) || sl_hdr_is(n, "x-forwarded-host", 16);
    case 17:
        return sl_hdr_is(n, "transfer-encoding", 17) || sl_hdr_is(n, "x-forwarded-proto", 17);
    default:
        return 0;
    }
}


/* Is name one of the comma-separated tokens of the client's Connection header? Those are
 * hop-by-hop too (RFC 9110 7.6.1). */
static int
listed_in_connection(const sl_hdr_t *conn, const sl_str_t *name)
{
    const char  *p, *end, *tok;
    size_t       len;

    if (conn == NULL) {
        return 0;
    }

    p = conn->value.data;
    end = p + conn->value.len;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ',')) {
            p++;
        }

        tok = p;
        while (p < end && *p != ',' && *p != ' ' && *p != '\t') {
            p++;
        }

        len = (size_t) (p - tok);
        if (len == name->len && strncasecmp(tok, name->data, len) == 0) {
            return 1;
        }
    }

    return 0;
}


/* A headers table ({lowercase name = value | false}) made once into a list (header_plan):
 * proxy() then matches the client's headers against it and adds its values without reading
 * a Lua table per request. */
#define PLAN_MAX  64

typedef struct {
    size_t  n;
    struct {
        const char  *name, *value;  /* value NULL: the header is removed */
        size_t       nlen, vlen;
    }       e[PLAN_MAX];
    char    buf[];
} header_plan_t;

#define PLAN_MT  "sluice.upstream.header_plan"


/* header_plan(headers) -> a plan (userdata) for proxy()'s headers argument */
static int
l_header_plan(lua_State *L)
{
    size_t          need = 0, used = 0, nl, vl, n = 0, k;
    header_plan_t  *p;
    const char     *name, *value;
    char           *dst;

    luaL_checktype(L, 1, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, 1) != 0) {
        if (lua_type(L, -2) == LUA_TSTRING
            && (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TBOOLEAN))
        {
            lua_tolstring(L, -2, &nl);
            vl = 0;
            if (lua_type(L, -1) == LUA_TSTRING) {
                lua_tolstring(L, -1, &vl);
            }
            need += nl + vl;
            n++;
        }
        lua_pop(L, 1);
    }

    if (n > PLAN_MAX) {
        return luaL_error(L, "header_plan: at most %d headers", PLAN_MAX);
    }

    p = lua_newuserdata(L, sizeof(header_plan_t) + need + 1);
    p->n = 0;
    dst = p->buf;
    lua_pushnil(L);
    while (lua_next(L, 1) != 0) {
        int  vt = lua_type(L, -1);

        if (lua_type(L, -2) == LUA_TSTRING && (vt == LUA_TSTRING || vt == LUA_TBOOLEAN)) {
            name = lua_tolstring(L, -2, &nl);
            for (k = 0; k < nl; k++) {
                dst[used + k] = (char) ((name[k] >= 'A' && name[k] <= 'Z')
                                        ? name[k] + 32 : name[k]);
            }
            p->e[p->n].name = dst + used;
            p->e[p->n].nlen = nl;
            used += nl;
            p->e[p->n].value = NULL;
            p->e[p->n].vlen = 0;
            if (vt == LUA_TSTRING) {
                value = lua_tolstring(L, -1, &vl);
                memcpy(dst + used, value, vl);
                p->e[p->n].value = dst + used;
                p->e[p->n].vlen = vl;
                used += vl;
            }
            p->n++;
        }
        lua_pop(L, 1);
    }

    luaL_getmetatable(L, PLAN_MT);
    lua_setmetatable(L, -2);
    return 1;
}


/* the plan's entry for a client header name (any case), or -1 */
static int
plan_find(const header_plan_t *p, const sl_str_t *name)
{
    size_t  i;

    for (i = 0; i < p->n; i++) {
        if (p->e[i].nlen == name->len && strncasecmp(p->e[i].name, name->data, name->len) == 0) {
            return (int) i;
        }
    }

    return -1;
}


typedef struct {
    sl_str_t  url, addr, host, method, body;
    double    timeout, connect, send, read, keepalive_timeout, max_time;
    int       ssl_verify, keepalive, http2, has_body, has_headers;
} proxy_opts_t;


#define KEY_IS(k, kl, lit)  ((kl) == sizeof(lit) - 1 && memcmp((k), (lit), (kl)) == 0)

/* the options table in one pass (lua_next): reading 15 fields by name would intern each key
 * again. Strings point into the table, which holds them until the call returns. */
static void
read_proxy_opts(lua_State *L, int idx, proxy_opts_t *o)
{
    const char  *k;
    size_t       kl;
    int          vt;

    memset(o, 0, sizeof(*o));
    o->timeout = o->connect = o->send = o->read = -1;
    o->ssl_verify = o->keepalive = 1;

    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        if (lua_type(L, -2) != LUA_TSTRING) {
            lua_pop(L, 1);
            continue;
        }

        k = lua_tolstring(L, -2, &kl);
        vt = lua_type(L, -1);
        if (vt == LUA_TSTRING) {
            sl_str_t  v;
            v.data = lua_tolstring(L, -1, &v.len);
            if (KEY_IS(k, kl, "url")) {
                o->url = v;
            } else if (KEY_IS(k, kl, "addr")) {
                o->addr = v;
            } else if (KEY_IS(k, kl, "host")) {
                o->host = v;
            } else if (KEY_IS(k, kl, "method")) {
                o->method = v;
            } else if (KEY_IS(k, kl, "body")) {
                o->body = v;
                o->has_body = 1;
            }

        } else if (vt == LUA_TNUMBER) {
            double  v = lua_tonumber(L, -1);
            if (KEY_IS(k, kl, "timeout")) {
                o->timeout = v;
            } else if (KEY_IS(k, kl, "connect_timeout")) {
                o->connect = v;
            } else if (KEY_IS(k, kl, "send_timeout")) {
                o->send = v;
            } else if (KEY_IS(k, kl, "read_timeout")) {
                o->read = v;
            } else if (KEY_IS(k, kl, "keepalive_timeout")) {
                o->keepalive_timeout = v;
            } else if (KEY_IS(k, kl, "max_time")) {
                o->max_time = v;
            }

        } else if (vt == LUA_TBOOLEAN) {
            int  v = lua_toboolean(L, -1);
            if (KEY_IS(k, kl, "ssl_verify")) {
                o->ssl_verify = v;
            } else if (KEY_IS(k, kl, "keepalive")) {
                o->keepalive = v;
            } else if (KEY_IS(k, kl, "http2")) {
                o->http2 = v;
            }

        } else if (vt == LUA_TTABLE && KEY_IS(k, kl, "headers")) {
            o->has_headers = 1;
        }

        lua_pop(L, 1);
    }
}


/* The positional form, which reads no table at all: proxy(url, method, headers, body, host,
 * addr, connect_timeout, send_timeout, read_timeout, ssl_verify, keepalive,
 * keepalive_timeout, max_time); headers (3) a table, a header_plan or nil. */
static void
arg_str(lua_State *L, int idx, sl_str_t *v)
{
    if (lua_type(L, idx) == LUA_TSTRING) {
        v->data = lua_tolstring(L, idx, &v->len);
    }
}


static double
arg_num(lua_State *L, int idx, double dflt)
{
    return lua_type(L, idx) == LUA_TNUMBER ? lua_tonumber(L, idx) : dflt;
}


static void
read_proxy_args(lua_State *L, proxy_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    arg_str(L, 1, &o->url);
    arg_str(L, 2, &o->method);
    o->has_headers = lua_istable(L, 3) || lua_isuserdata(L, 3);
    if (lua_type(L, 4) == LUA_TSTRING) {
        arg_str(L, 4, &o->body);
        o->has_body = 1;
    }
    arg_str(L, 5, &o->host);
    arg_str(L, 6, &o->addr);
    o->timeout = -1;
    o->connect = arg_num(L, 7, -1);
    o->send = arg_num(L, 8, -1);
    o->read = arg_num(L, 9, -1);
    o->ssl_verify = lua_isnoneornil(L, 10) || lua_toboolean(L, 10);
    o->keepalive = lua_isnoneornil(L, 11) || lua_toboolean(L, 11);
    o->keepalive_timeout = arg_num(L, 12, 0);
    o->max_time = arg_num(L, 13, 0);
}


static void
copy_addr(char *dst, size_t size, const sl_str_t *s)
{
    size_t  n = sl_min(s->len, size - 1);

    memcpy(dst, s->data, n);
    dst[n] = '\0';
}


/* proxy{url=, method=, host=, headers={lowercase = value|false}, body=, timeouts,
 *       ssl_verify=, keepalive=} -> status | nil, err, gateway_status  (yields) */
static int
l_proxy(lua_State *L)
{
    sl_req_t        *r = sl_lua_current_req();
    sl_co_t         *co = sl_co_current(L);
    sl_transfer_t   *t;
    const char      *err, *body = NULL;
    size_t           i, blen = 0, len;
    const sl_hdr_t  *h, *xff, *conn_hdr;
    char             line[8192];
    int              has_body;
    proxy_opts_t     o;
    header_plan_t   *plan;

    if (r == NULL || co == NULL || co->req != r) {
        return luaL_error(L, "proxy() must be called from the request's own coroutine");
    }

    if (r->up != NULL) {
        if (!r->up_done || r->up_status != 0 || r->headers_sent) {
            return luaL_error(L, "the request was already sent upstream");
        }

        /* a retry after a failure without response: the old transfer goes */
        sl_transfer_free(r->up);
        r->up = NULL;
        r->up_done = 0;
        r->up_result = SL_OK;
        r->up_error = NULL;
    }

    if (lua_type(L, 1) == LUA_TSTRING) {
        read_proxy_args(L, &o);
    } else {
        luaL_checktype(L, 1, LUA_TTABLE);
        read_proxy_opts(L, 1, &o);
    }

    if (o.url.data == NULL) {
        return luaL_error(L, "proxy(): url is required");
    }

    t = sl_transfer_new(sl_worker->upstream);
    r->up = t;
    t->data = r;
    t->on_headers = on_proxy_headers;
    t->on_body = on_proxy_body;
    t->on_done = on_proxy_done;

    if (o.timeout > 0) {
        t->connect_timeout = t->send_timeout = t->read_timeout = o.timeout;
    }

    if (o.connect >= 0) {
        t->connect_timeout = o.connect;
    }

    if (o.send >= 0) {
        t->send_timeout = o.send;
    }

    if (o.read >= 0) {
        t->read_timeout = o.read;
    }

    t->url = o.url;
    copy_addr(r->up_addr, sizeof(r->up_addr), o.addr.data != NULL ? &o.addr : &o.url);
    t->ssl_verify = o.ssl_verify;
    t->keepalive = o.keepalive;
    t->keepalive_timeout = o.keepalive_timeout;
    /* the whole transfer, streams included (ai-proxy's max_stream_duration_ms) */
    t->max_time = o.max_time;
    t->http2 = o.http2;

    /* headers: the client's, as edited, minus what a proxy must not forward */
    conn_hdr = sl_hdrs_find(&r->headers, "connection", 10);
    if (!o.has_headers) {
        lua_pushnil(L);
    } else if (lua_type(L, 1) == LUA_TSTRING) {
        lua_pushvalue(L, 3);
    } else {
        lua_getfield(L, 1, "headers");
    }

    plan = lua_type(L, -1) == LUA_TUSERDATA ? luaL_checkudata(L, -1, PLAN_MT) : NULL;

    for (i = 0; i < r->headers.n; i++) {
        h = &r->headers.items[i];
        if (skip_forward(&h->name) || listed_in_connection(conn_hdr, &h->name)) {
            continue;
        }

        if (plan != NULL) {
            if (plan_find(plan, &h->name) >= 0) {
                continue;       /* overridden or removed below */
            }
        } else if (lua_istable(L, -1) && h->name.len < 200) {
            char   lower[200];
            size_t k;
            for (k = 0; k < h->name.len; k++) {
                lower[k] = (char) ((h->name.data[k] >= 'A' && h->name.data[k] <= 'Z')
                                   ? h->name.data[k] + 32 : h->name.data[k]);
            }

            lua_pushlstring(L, lower, h->name.len);
            lua_rawget(L, -2);
            len = lua_isnil(L, -1);
            lua_pop(L, 1);
            if (!len) {
                continue;       /* overridden or removed below */
            }
        }

        /* the request's own fields live as long as the request, which outlives t */
        sl_transfer_add_header(t, h->name.data, h->name.len, h->value.data, h->value.len);
    }

    if (plan != NULL) {
        for (i = 0; i < plan->n; i++) {
            if (plan->e[i].value != NULL) {
                add_lua_header(t, plan->e[i].name, plan->e[i].nlen, plan->e[i].value,
                               plan->e[i].vlen);
            }
        }
    } else if (lua_istable(L, -1)) {
        lua_pushnil(L);
        while (lua_next(L, -2) != 0) {
            if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING) {
                size_t      nl, vl;
                const char *n = lua_tolstring(L, -2, &nl), *v = lua_tolstring(L, -1, &vl);
                add_lua_header(t, n, nl, v, vl);
            }

            lua_pop(L, 1);
        }
    }

    lua_pop(L, 1);

    xff = sl_hdrs_find(&r->headers, "x-forwarded-for", 15);
    if (xff != NULL) {
        len = (size_t) snprintf(line, sizeof(line), "%.*s, %s",
                                (int) sl_min(xff->value.len, 4096), xff->value.data,
                                r->remote_addr);
        add_lua_header(t, "X-Forwarded-For", 15, line, sl_min(len, sizeof(line) - 1));
    } else {
        sl_transfer_add_header(t, "X-Forwarded-For", 15, r->remote_addr,
                               strlen(r->remote_addr));
    }

    sl_transfer_add_header(t, "X-Real-IP", 9, r->remote_addr, strlen(r->remote_addr));
    if (r->ssl) {
        sl_transfer_add_header(t, "X-Forwarded-Proto", 17, "https", 5);
    } else {
        sl_transfer_add_header(t, "X-Forwarded-Proto", 17, "http", 4);
    }

    if (r->head.host.len > 0) {
        sl_transfer_add_header(t, "X-Forwarded-Host", 16, r->head.host.data,
                               sl_min(r->head.host.len, 1024));
    }

    if (o.host.data != NULL) {
        t->host.data = sl_pool_strndup(t->pool, o.host.data, o.host.len);
        t->host.len = o.host.len;
    }

    /* body: a replacement from Lua (kept alive in the pool) or the client's */
    if (o.has_body) {
        body = sl_pool_strndup(r->pool, o.body.data, o.body.len);
        blen = o.body.len;
        has_body = 1;
    } else if (r->body != NULL && evbuffer_get_length(r->body) > 0) {
        blen = evbuffer_get_length(r->body);
        body = (const char *) evbuffer_pullup(r->body, -1);
        has_body = 1;
    } else {
        has_body = 0;
    }

    t->body = body;
    t->body_len = blen;
    t->has_body = has_body;

    if (o.method.data != NULL) {
        t->method.data = sl_pool_strndup(t->pool, o.method.data, o.method.len);
        t->method.len = o.method.len;
    } else {
        t->method = r->head.method;
    }

    r->up_start = sl_worker_now();
    if (sl_transfer_start(t, &err) != SL_OK) {
        r->up_done = 1;
        r->up_result = 502;
        r->up_error = err;
        lua_pushnil(L);
        lua_pushstring(L, err);
        lua_pushinteger(L, 502);
        return 3;
    }

    /* curl was kicked at once: the response head may already be here (a reused connection
     * to a fast provider), and then nobody would wake us */
    if (t->headers_done || r->up_done) {
        return push_proxy(co, L);
    }

    return sl_co_wait(L, co, SL_WAIT_PROXY, t);
}


/* read_body() -> chunk, eof[, err]; yields while nothing is buffered */
static int
l_read_body(lua_State *L)
{
    sl_req_t  *r = sl_lua_current_req();
    sl_co_t   *co = sl_co_current(L);

    if (r == NULL || co == NULL || r->up == NULL) {
        return luaL_error(L, "read_body() without an upstream");
    }

    if (!r->up_body_wanted) {
        r->up_body_wanted = 1;
        if (r->up->paused && !r->waiting_drain) {
            sl_transfer_resume(r->up);      /* what waited comes into r->pending now */
        }
    }

    if (r->conn != NULL && sl_resp_pending(r) > sl_worker->conf->send_buffer_size) {
        r->waiting_drain = 1;
        bufferevent_setwatermark(r->conn->bev, EV_WRITE, sl_worker->conf->send_buffer_size / 2, 0);
        return sl_co_wait(L, co, SL_WAIT_BODY, r->up);
    }

    if ((r->pending != NULL && evbuffer_get_length(r->pending) > 0) || r->up_done) {
        return push_chunk(co, L);
    }

    return sl_co_wait(L, co, SL_WAIT_BODY, r->up);
}


static void
free_capture(void *data)
{
    sl_capture_free(data);
}


/* pass_body([{capture = bytes, sse = bool}]) -> true | nil, err [, capture]; relays the rest
 * of the body in C, yields until done. With capture, the third result is the copy:
 * {bytes, head, tail (the last bytes past the head), tail_total, first_event (time)} */
static int
l_pass_body(lua_State *L)
{
    sl_req_t  *r = sl_lua_current_req();
    sl_co_t   *co = sl_co_current(L);
    size_t     len;

    if (r == NULL || co == NULL || r->up == NULL) {
        return luaL_error(L, "pass_body() without an upstream");
    }

    if (lua_istable(L, 1) && r->capture == NULL) {
        /* {capture = bytes, sse = true}: keep a copy for the caller (see capture.h) */
        double  max = opt_num(L, 1, "capture", 0);
        if (max > 0) {
            r->capture = sl_pool_calloc(r->pool, sizeof(sl_capture_t));
            sl_capture_init(r->capture, (size_t) sl_min(max, 64.0 * 1024 * 1024),
                            opt_bool(L, 1, "sse", 0));
            sl_pool_cleanup_add(r->pool, free_capture, r->capture);
        }
    }

    r->up_direct = 1;
    if (r->pending != NULL && (len = evbuffer_get_length(r->pending)) > 0) {
        const char  *p = (const char *) evbuffer_pullup(r->pending, -1);
        if (r->capture != NULL) {
            sl_capture_add(r->capture, p, len, sl_worker_now());
        }

        sl_resp_send_body(r, p, len);
        evbuffer_drain(r->pending, len);
    }

    if (r->up_done) {
        return push_pass(co, L);
    }

    if (r->up->paused && !r->waiting_drain) {
        sl_transfer_resume(r->up);
        if (r->up_done) {
            return push_pass(co, L);
        }
    }

    return sl_co_wait(L, co, SL_WAIT_PASS, r->up);
}


/* abort(): stop the upstream transfer; the response can then be finished */
static int
l_abort(lua_State *L)
{
    sl_req_t  *r = sl_lua_current_req();

    if (r != NULL && r->up != NULL && !r->up_done) {
        sl_transfer_cancel(r->up);
        r->up_done = 1;
        r->up_aborted = 1;
        r->up_end = sl_worker_now();
    }

    return 0;
}


/* The upstream's numbers for the access log and the metrics, through the FFI
 * (lua/sluice/upinfo.lua: read on every request; a Lua C function would end the LuaJIT trace
 * and make the address string each time): times in ms, -1 when not known yet. 0 without an
 * upstream. */
typedef struct {
    double      status, header_ms, total_ms, connect_ms;
    const char *addr;
    int         aborted, result;
} sl_ffi_up_info_t;

SL_FFI int
sl_ffi_upstream_info(sl_ffi_up_info_t *out)
{
    sl_req_t  *r = sl_lua_current_req();

    if (r == NULL || r->up == NULL) {
        return 0;
    }

    out->addr = r->up_addr;
    out->status = r->up_status;
    out->header_ms = r->up_header_time > 0 ? (r->up_header_time - r->up_start) * 1000 : -1;
    out->total_ms = r->up_end > 0 ? (r->up_end - r->up_start) * 1000 : -1;
    out->connect_ms = r->up->connect_time * 1000;
    out->aborted = r->up_aborted;
    out->result = r->up_result;
    return 1;
}


/* ---- pdk.http: buffered requests, one or many at once ---- */

typedef struct {
    sl_co_t          *co;
    int               n;
    int               left;
    int               multi;        /* results as an array */
    sl_transfer_t    *ts[MAX_MULTI];
    struct evbuffer  *bodies[MAX_MULTI];
    int               results[MAX_MULTI];
    size_t            max_body;
} http_wait_t;


static void
http_wait_free(http_wait_t *w)
{
    int  i;

    for (i = 0; i < w->n; i++) {
        if (w->ts[i] != NULL) {
            sl_transfer_free(w->ts[i]);
        }

        if (w->bodies[i] != NULL) {
            evbuffer_free(w->bodies[i]);
        }
    }

    free(w);
}


static void
push_result(lua_State *L, http_wait_t *w, int i)
{
    sl_transfer_t  *t = w->ts[i];
    size_t          len = evbuffer_get_length(w->bodies[i]);

    if (w->results[i] != SL_OK) {
        lua_pushnil(L);
        lua_pushstring(L, t->error ? t->error : "request failed");
        return;
    }

    lua_createtable(L, 0, 3);
    lua_pushinteger(L, t->status);
    lua_setfield(L, -2, "status");
    sl_lua_push_headers(L, &t->headers);
    lua_setfield(L, -2, "headers");
    lua_pushlstring(L, len ? (const char *) evbuffer_pullup(w->bodies[i], -1) : "", len);
    lua_setfield(L, -2, "body");
    lua_pushnil(L);
}


static int
push_http(sl_co_t *co, lua_State *L)
{
    http_wait_t  *w = co->wait;
    int           i;

    if (!w->multi) {
        push_result(L, w, 0);
        http_wait_free(w);
        return 2;
    }

    lua_createtable(L, w->n, 0);
    for (i = 0; i < w->n; i++) {
        push_result(L, w, i);
        if (lua_isnil(L, -2)) {
            /* {nil, err} becomes {ok = false, err = ...} */
            lua_createtable(L, 0, 1);
            lua_insert(L, -2);
            lua_setfield(L, -2, "err");
            lua_remove(L, -2);
        } else {
            lua_pop(L, 1);
        }

        lua_rawseti(L, -2, i + 1);
    }

    http_wait_free(w);
    return 1;
}


static void
on_http_headers(sl_transfer_t *t)
{
    SL_UNUSED(t);
}


static int
on_http_body(sl_transfer_t *t, const char *p, size_t n)
{
    http_wait_t  *w = t->data;
    int           i;

    for (i = 0; i < w->n; i++) {
        if (w->ts[i] == t) {
            if (evbuffer_get_length(w->bodies[i]) + n > w->max_body) {
                t->error = "response body too large";
                return SL_OK;
            }

            evbuffer_add(w->bodies[i], p, n);
        }
    }

    return SL_OK;
}


static void
on_http_done(sl_transfer_t *t, int result)
{
    http_wait_t  *w = t->data;
    int           i;

    for (i = 0; i < w->n; i++) {
        if (w->ts[i] == t) {
            w->results[i] = result;
        }
    }

    if (--w->left == 0) {
        sl_co_wake(w->co, push_http);
    }
}


static int
start_http(lua_State *L, int idx, http_wait_t *w, int i, const char **err)
{
    sl_transfer_t  *t;
    const char     *url, *method, *body;
    size_t          len;

    lua_getfield(L, idx, "url");
    url = lua_tolstring(L, -1, &len);
    if (url == NULL) {
        lua_pop(L, 1);
        *err = "url is required";
        return SL_ERROR;
    }

    t = sl_transfer_new(sl_worker->upstream);
    w->ts[i] = t;
    w->bodies[i] = evbuffer_new();
    t->data = w;
    t->on_headers = on_http_headers;
    t->on_body = on_http_body;
    t->on_done = on_http_done;
    t->url.data = sl_pool_strndup(t->pool, url, len);
    t->url.len = len;
    lua_pop(L, 1);

    set_timeouts(L, idx, t);
    t->ssl_verify = opt_bool(L, idx, "ssl_verify", 1);

    lua_getfield(L, idx, "headers");
    if (lua_istable(L, -1)) {
        lua_pushnil(L);
        while (lua_next(L, -2) != 0) {
            if (lua_type(L, -2) == LUA_TSTRING && lua_isstring(L, -1)) {
                size_t      nl, vl;
                const char *n = lua_tolstring(L, -2, &nl), *v = lua_tolstring(L, -1, &vl);
                add_lua_header(t, n, nl, v, vl);
            }

            lua_pop(L, 1);
        }
    }

    lua_pop(L, 1);

    lua_getfield(L, idx, "body");
    if (lua_isstring(L, -1)) {
        /* copied: the Lua string may be collected while we wait */
        body = lua_tolstring(L, -1, &len);
        t->body = sl_pool_strndup(t->pool, body, len);
        t->body_len = len;
        t->has_body = 1;
    }

    lua_pop(L, 1);

    lua_getfield(L, idx, "method");
    method = lua_tolstring(L, -1, &len);
    if (method != NULL) {
        t->method.data = sl_pool_strndup(t->pool, method, len);
        t->method.len = len;
    }

    lua_pop(L, 1);

    return sl_transfer_start(t, err);
}


static int
do_http(lua_State *L, int multi)
{
    sl_co_t      *co = sl_co_current(L);
    http_wait_t  *w;
    const char   *err = NULL;
    int           i, n;

    if (co == NULL) {
        return luaL_error(L, "pdk.http.request must be called from a request, timer or "
                             "pdk coroutine, not from a coroutine created by Lua code");
    }

    luaL_checktype(L, 1, LUA_TTABLE);
    n = multi ? (int) lua_objlen(L, 1) : 1;
    if (n < 1 || n > MAX_MULTI) {
        return luaL_error(L, "request_multi takes 1 to %d requests", MAX_MULTI);
    }

    w = sl_xcalloc(1, sizeof(http_wait_t));
    w->co = co;
    w->n = n;
    w->multi = multi;
    w->max_body = 64 * 1024 * 1024;

    for (i = 0; i < n; i++) {
        if (multi) {
            lua_rawgeti(L, 1, i + 1);
            if (!lua_istable(L, -1)) {
                http_wait_free(w);
                return luaL_error(L, "request_multi: entry %d is not a table", i + 1);
            }
        } else {
            lua_pushvalue(L, 1);
        }

        w->max_body = (size_t) opt_num(L, -1, "max_body_size", (double) w->max_body);
        if (start_http(L, lua_gettop(L), w, i, &err) != SL_OK) {
            lua_pop(L, 1);
            if (w->ts[i] != NULL) {
                w->ts[i]->error = err;
                w->results[i] = 502;
            } else {
                /* no transfer at all: fail the whole call */
                http_wait_free(w);
                lua_pushnil(L);
                lua_pushstring(L, err);
                return 2;
            }

            continue;
        }

        lua_pop(L, 1);
        w->left++;
    }

    if (w->left == 0) {
        co->wait = w;
        return push_http(co, L);
    }

    return sl_co_wait(L, co, SL_WAIT_HTTP, w);
}


static int
l_request(lua_State *L)
{
    return do_http(L, 0);
}


static int
l_request_multi(lua_State *L)
{
    return do_http(L, 1);
}


int
luaopen_sluice_upstream(lua_State *L)
{
    static const luaL_Reg  fns[] = {
        {"proxy", l_proxy},
        {"header_plan", l_header_plan},
        {"read_body", l_read_body},
        {"pass_body", l_pass_body},
        {"abort", l_abort},
        {"request", l_request},
        {"request_multi", l_request_multi},
        {NULL, NULL},
    };

    luaL_newmetatable(L, PLAN_MT);
    lua_pop(L, 1);
    lua_newtable(L);
    luaL_register(L, NULL, fns);
    return 1;
}
