/* http_response.h -- writing the response: status line and headers, Content-Length or
 * chunked bodies, JSON error bodies made by the gateway. Writes to a gone client are no-ops
 * that still count as done. */
#ifndef SL_HTTP_RESPONSE_H
#define SL_HTTP_RESPONSE_H

#include "http_request.h"

/* Sends r->status and r->resp_headers (hop-by-hop fields dropped). Framing: Content-Length
 * when r->resp_length >= 0, else chunked (HTTP/1.1) or close-delimited (HTTP/1.0). */
void sl_resp_send_headers(sl_req_t *r);

/* Queues body bytes (framed when chunked). Returns the output buffer length afterwards. */
size_t sl_resp_send_body(sl_req_t *r, const char *data, size_t len);

/* Ends the response (chunked terminator), then hands the connection back. */
void sl_resp_finish(sl_req_t *r);

/* A complete response with a body in one go. */
void sl_resp_send_full(sl_req_t *r, int status, const char *content_type,
                       const char *body, size_t len);

/* {"error_msg":"<msg>"} with status; the connection closes when close_conn is set. */
void sl_resp_send_error(sl_req_t *r, int status, const char *msg, int close_conn);

/* The error response for a request that could not even be parsed. */
void sl_resp_conn_error(sl_conn_t *c, int status, const char *msg);

const char *sl_http_reason(int status);

/* Bytes queued for the client and not yet written. */
size_t sl_resp_pending(sl_req_t *r);

#endif
