/* json_scan.h -- the top-level members of a JSON object, found without decoding it: what
 * ai-proxy splices when it changes a key or two of a request body (lua/sluice/ai/request.lua
 * has the Lua twin). */
#ifndef SL_JSON_SCAN_H
#define SL_JSON_SCAN_H

#include "sluice.h"

#define SL_JSON_MALFORMED  -1
#define SL_JSON_ESCAPED    -2       /* a key holds a backslash escape: the caller decodes */

/* Calls fn(ud, key, klen, first, last) for each member of the object in s[0..len): key without
 * its quotes; first = offset of the key's opening quote, last = offset of the value's last
 * byte. Returns the number of members, SL_JSON_MALFORMED when s is not one object (with only
 * whitespace around it), or SL_JSON_ESCAPED. */
int sl_json_top_spans(const char *s, size_t len,
    void (*fn)(void *ud, const char *key, size_t klen, size_t first, size_t last), void *ud);

#endif
