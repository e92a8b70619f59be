/* json_decode.h -- a JSON decoder into Lua values for the request bodies AI plugins read: the
 * common shapes (objects, arrays, strings with escapes, plain numbers, literals) decoded about
 * 5x faster than lua-cjson; anything else declined, and the caller asks lua-cjson, whose
 * result (and error message) is then the answer. Values are what lua-cjson builds: tables,
 * strings, numbers, booleans, and lightuserdata NULL (cjson.null) for null. */
#ifndef SL_JSON_DECODE_H
#define SL_JSON_DECODE_H

#include <lua.h>

#include "sluice.h"

/* SL_OK with the value pushed, or SL_DECLINED with nothing pushed. */
int sl_json_decode(lua_State *L, const char *s, size_t len);

/* The same for the value at the start of s (blanks before it skipped), whatever follows it:
 * *used is set to the bytes it took. */
int sl_json_decode_prefix(lua_State *L, const char *s, size_t len, size_t *used);

/* The top-level object of s, with its big members left undecoded: a member whose key is in
 * the table at stack index `eligible` and whose value is an array or object of more than
 * max_inline bytes is checked as the decoder would decode it, and gets the value at stack
 * index `sentinel` instead; the second value pushed maps those keys to the 1-based offset of
 * their value in s (nil when there are none). SL_OK with both pushed, or SL_DECLINED with
 * nothing pushed (not an object, or what sl_json_decode declines). */
int sl_json_decode_top(lua_State *L, const char *s, size_t len, int eligible, size_t max_inline,
    int sentinel);

#endif
