/* sse_scan.h -- the events of a block of Server-Sent Events whose data holds a JSON key with
 * an object value ("usage": {...}): what ai-proxy decodes of a relayed stream, found in C.
 * Same rules as lua/sluice/ai/sse.lua (its pure-Lua twin, used where the host is absent):
 * an event ends at a blank line, lines end in LF or CRLF. */
#ifndef SL_SSE_SCAN_H
#define SL_SSE_SCAN_H

#include "sluice.h"

/* Length of the complete part of s (through the last blank line), 0 if none. */
size_t sl_sse_complete(const char *s, size_t len);

/* Calls fn(ud, start, end) for each event of s[0..len) (a complete region) holding `key`
 * (e.g. "\"usage\"") followed by optional blanks, ':', optional blanks and '{'; [start, end]
 * is the event from its first byte to the LF ending its last line (or len - 1). */
void sl_sse_hits(const char *s, size_t len, const char *key, size_t klen,
    void (*fn)(void *ud, size_t start, size_t end), void *ud);

/* The same for the first `first` events of s, and then only the last event after them that
 * holds key: where a relayed stream keeps its usage (Anthropic's message_start first, the
 * final usage last), without a pass over every byte in between. */
void sl_sse_hits_ends(const char *s, size_t len, const char *key, size_t klen, size_t first,
    void (*fn)(void *ud, size_t start, size_t end), void *ud);

#endif
