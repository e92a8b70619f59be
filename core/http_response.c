/* http_response.c -- the response side of a request: one write of the status line and
 * headers, body bytes framed by Content-Length or chunked encoding, the chunked
 * terminator, and the gateway's own JSON errors. When the client has gone, writes are
 * dropped but the request still finishes (the log phase must run). */
#include "http_response.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <strings.h>
#include <time.h>

#include "worker.h"

#define HEAD_BUF  8192


const char *
sl_http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Time-out";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Request Entity Too Large";
    case 414: return "Request-URI Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Temporarily Unavailable";
    case 504: return "Gateway Time-out";
    case 505: return "HTTP Version Not Supported";
    default:  return "Unknown";
    }
}


/* fields a proxy never forwards (RFC 9110 7.6.1) or sets itself */
static int
skip_header(const sl_str_t *n)
{
    switch (n->len) {
    case 0:
        return 1;
    case 2:
        return sl_hdr_is(n, "te", 2);
    case 6:
        return sl_hdr_is(n, "server", 6);
    case 7:
        return sl_hdr_is(n, "trailer", 7) || sl_hdr_is(n, "upgrade", 7);
    case 10:
        return sl_hdr_is(n, "connection", 10) || sl_hdr_is(n, "keep-alive", 10);
    case 14:
        return sl_hdr_is(n, "content-length", 14);
    case 16:
        return sl_hdr_is(n, "proxy-connection", 16);
    case 17:
        return sl_hdr_is(n, "transfer-encoding", 17);
    default:
        return 0;
    }
}


static int
has_body(const sl_req_t *r)
{
    return !r->head_only && r->status != 204 && r->status != 304
           && !(r->status >= 100 && r->status < 200);
}


void
sl_resp_send_headers(sl_req_t *r)
{
    struct evbuffer  *out;
    char              buf[HEAD_BUF];
    size_t            n = 0, i, need;
    const sl_hdr_t   *h;
    sl_conn_t        *c = r->conn;

    if (r->headers_sent) {
        return;
    }

    r->headers_sent = 1;
    if (c == NULL) {
        return;
    }

    if (r->resp_length < 0 && has_body(r)) {
        if (r->head.version == 11) {
            r->resp_chunked = 1;
        } else {
            r->keepalive = 0;   /* the end of the body is the end of the connection */
        }
    }

    if (!r->keepalive || sl_worker->stopping) {
        r->keepalive = 0;
        c->closing = 1;
    }

    out = bufferevent_get_output(c->bev);

    {
        const char  *reason = sl_http_reason(r->status);
        size_t       rlen = strlen(reason);
        int          st = r->status >= 100 && r->status <= 999 ? r->status : 500;

        memcpy(buf, r->head.version == 10 ? "HTTP/1.0 " : "HTTP/1.1 ", 9);
        buf[9] = (char) ('0' + st / 100);
        buf[10] = (char) ('0' + st / 10 % 10);
        buf[11] = (char) ('0' + st % 10);
        buf[12] = ' ';
        memcpy(buf + 13, reason, rlen);
        n = 13 + rlen;
        memcpy(buf + n, "\r\nServer: sluice\r\n", 18);
        n += 18;
    }

    for (i = 0; i < r->resp_headers.n; i++) {
        h = &r->resp_headers.items[i];
        if (skip_header(&h->name)) {
            continue;
        }

        need = h->name.len + h->value.len + 4;
        if (n + need > sizeof(buf) - 128) {
            evbuffer_add(out, buf, n);
            n = 0;
            if (need > sizeof(buf) - 128) {
                evbuffer_add(out, h->name.data, h->name.len);
                evbuffer_add(out, ": ", 2);
                evbuffer_add(out, h->value.data, h->value.len);
                evbuffer_add(out, "\r\n", 2);
                continue;
            }
        }

        memcpy(buf + n, h->name.data, h->name.len);
        n += h->name.len;
        buf[n++] = ':';
        buf[n++] = ' ';
        memcpy(buf + n, h->value.data, h->value.len);
        n += h->value.len;
        buf[n++] = '\r';
        buf[n++] = '\n';
    }

    if (r->resp_chunked) {
        memcpy(buf + n, "Transfer-Encoding: chunked\r\n", 28);
        n += 28;

    } else if (r->resp_length >= 0 && (has_body(r) || r->head_only)) {
        memcpy(buf + n, "Content-Length: ", 16);
        n += 16;
        n += sl_fmt_u64(buf + n, (uint64_t) r->resp_length);
        buf[n++] = '\r';
        buf[n++] = '\n';
    }

    if (!r->keepalive) {
        memcpy(buf + n, "Connection: close\r\n", 19);
        n += 19;

    } else if (r->head.version == 10) {
        memcpy(buf + n, "Connection: keep-alive\r\n", 24);
        n += 24;
    }

    buf[n++] = '\r';
    buf[n++] = '\n';
    evbuffer_add(out, buf, n);
    r->bytes_sent += n;
}


size_t
sl_resp_send_body(sl_req_t *r, const char *data, size_t len)
{
    struct evbuffer  *out;
    char              size[24];
    int               n;

    if (r->conn == NULL || r->resp_done) {
        return 0;
    }

    out = bufferevent_get_output(r->conn->bev);
    if (len == 0 || !has_body(r)) {
        return evbuffer_get_length(out);
    }

    if (r->resp_chunked) {
        n = 0;
        do {
            n++;
        } while ((len >> (4 * n)) != 0 && n < 16);

        for (int i = 0; i < n; i++) {
            size[n - 1 - i] = "0123456789abcdef"[(len >> (4 * i)) & 0xf];
        }

        size[n++] = '\r';
        size[n++] = '\n';
        evbuffer_add(out, size, (size_t) n);
        evbuffer_add(out, data, len);
        evbuffer_add(out, "\r\n", 2);
        r->bytes_sent += (size_t) n + 2;

    } else {
        evbuffer_add(out, data, len);
    }

    r->bytes_sent += len;
    r->body_sent += len;
    return evbuffer_get_length(out);
}


size_t
sl_resp_pending(sl_req_t *r)
{
    if (r->conn == NULL) {
        return 0;
    }

    return evbuffer_get_length(bufferevent_get_output(r->conn->bev));
}


void
sl_resp_finish(sl_req_t *r)
{
    sl_conn_t  *c = r->conn;

    if (r->resp_done) {
        return;
    }

    if (!r->headers_sent) {
        sl_resp_send_headers(r);
    }

    r->resp_done = 1;
    r->finish = sl_worker_update_time();

    if (c == NULL) {
        return;
    }

    /* an upstream that failed mid-body (not a deliberate abort): no clean end, close,
     * so the client can tell the body is incomplete (what nginx does) */
    if (r->up != NULL && r->up_done && r->up_result != SL_OK && !r->up_aborted) {
        c->closing = 1;
        r->resp_chunked = 0;
    }

    if (r->resp_chunked && has_body(r)) {
        evbuffer_add(bufferevent_get_output(c->bev), "0\r\n\r\n", 5);
        r->bytes_sent += 5;
    }

    /* a body the upstream cut short leaves the framing in doubt */
    if (!r->resp_chunked && r->resp_length >= 0 && has_body(r)
        && (int64_t) r->body_sent != r->resp_length)
    {
        c->closing = 1;
    }

    sl_conn_flush(c);

    r->conn = NULL;
    if (c->req == r) {
        sl_conn_request_done(c);
        sl_req_release(r);
    }
}


void
sl_resp_send_full(sl_req_t *r, int status, const char *content_type, const char *body,
                  size_t len)
{
    r->status = status;
    r->resp_length = (int64_t) len;
    if (content_type != NULL) {
        sl_hdrs_set(&r->resp_headers, "Content-Type", 12, content_type, strlen(content_type));
    }

    sl_resp_send_headers(r);
    sl_resp_send_body(r, body, len);
    sl_resp_finish(r);
}


/* {"error_msg":"..."} with the message's quotes and backslashes escaped */
static size_t
error_body(char *buf, size_t size, const char *msg)
{
    size_t  n = 0;

    n += (size_t) snprintf(buf, size, "{\"error_msg\":\"");
    for (; *msg != '\0' && n < size - 8; msg++) {
        if (*msg == '"' || *msg == '\\') {
            buf[n++] = '\\';
        }

        buf[n++] = (unsigned char) *msg < 0x20 ? ' ' : *msg;
    }

    n += (size_t) snprintf(buf + n, size - n, "\"}\n");
    return n;
}


void
sl_resp_send_error(sl_req_t *r, int status, const char *msg, int close_conn)
{
    char  body[1024];
    size_t  n = error_body(body, sizeof(body), msg);

    if (close_conn) {
        r->keepalive = 0;
    }

    if (r->headers_sent) {
        /* too late for a status: cut the connection so the client sees the failure */
        if (r->conn != NULL) {
            r->conn->closing = 1;
            r->resp_chunked = 0;
        }

        sl_resp_finish(r);
        return;
    }

    r->resp_headers.n = 0;
    sl_resp_send_full(r, status, "application/json", body, n);
}


void
sl_resp_conn_error(sl_conn_t *c, int status, const char *msg)
{
    char              body[512], head[256];
    size_t            n;
    int               hn;
    struct evbuffer  *out;
    sl_req_t         *r = c->req;

    if (c->closed) {
        return;
    }

    n = error_body(body, sizeof(body), msg);
    hn = snprintf(head, sizeof(head),
                  "HTTP/1.1 %d %s\r\nServer: sluice\r\nContent-Type: application/json\r\n"
                  "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                  status, sl_http_reason(status), n);

    out = bufferevent_get_output(c->bev);
    evbuffer_add(out, head, (size_t) hn);
    evbuffer_add(out, body, n);

    c->closing = 1;
    bufferevent_disable(c->bev, EV_READ);

    if (r != NULL) {
        c->req = NULL;
        r->conn = NULL;
        sl_req_release(r);
    }

    sl_conn_request_done(c);
}
