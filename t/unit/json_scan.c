/* json_scan.c -- TAP tests for the top-level member scan used to splice request bodies:
 * spans of every value kind, blanks, nesting with brackets inside strings, escapes in values
 * and in keys, and what is not one object. */
#include "tap.h"

#include "json_scan.h"

typedef struct {
    char    keys[8][32];
    size_t  first[8], last[8];
    int     n;
} got_t;


static void
collect(void *ud, const char *key, size_t klen, size_t first, size_t last)
{
    got_t  *g = ud;

    if (g->n < 8) {
        snprintf(g->keys[g->n], sizeof(g->keys[0]), "%.*s", (int) klen, key);
        g->first[g->n] = first;
        g->last[g->n] = last;
    }

    g->n++;
}


static int
scan(const char *s, got_t *g)
{
    memset(g, 0, sizeof(*g));
    return sl_json_top_spans(s, strlen(s), collect, g);
}


int
main(void)
{
    const char  *s1 = " {\"model\":\"gpt-4o\", \"stream\" : true,\"n\":-1.5e3,"
                      "\"messages\":[{\"role\":\"user\",\"content\":\"a ] } \\\" [ {\"}],"
                      "\"o\":{\"a\":[1,{\"b\":null}]},\"e\":[]}\n";
    got_t        g;
    int          rc;

    rc = scan(s1, &g);
    is_int(rc, 6, "six members");
    is_str(g.keys[0], strlen(g.keys[0]), "model", "first key");
    is_int(g.first[0], 2, "span starts at the key's quote");
    is_int(g.last[0], strlen(" {\"model\":\"gpt-4o\"") - 1, "and ends at the value's last byte");
    ok(memcmp(s1 + g.first[1], "\"stream\" : true", 15) == 0
       && g.last[1] == g.first[1] + 14, "blanks around ':' kept inside the span");
    ok(memcmp(s1 + g.first[2], "\"n\":-1.5e3", 10) == 0 && g.last[2] == g.first[2] + 9,
       "a number");
    ok(s1[g.last[3]] == ']' && s1[g.last[3] + 1] == ',', "brackets and quotes inside strings");
    ok(s1[g.last[4]] == '}' && s1[g.last[4] + 1] == ',', "nested object");
    ok(memcmp(s1 + g.first[5], "\"e\":[]", 6) == 0, "an empty array");

    is_int(scan("{}", &g), 0, "empty object");
    is_int(scan("{\"a\\u0041\":1}", &g), SL_JSON_ESCAPED, "an escaped key: the caller decodes");
    is_int(scan("[1,2]", &g), SL_JSON_MALFORMED, "an array");
    is_int(scan("{\"a\":1} x", &g), SL_JSON_MALFORMED, "bytes after the object");
    is_int(scan("{\"a\":1,}", &g), SL_JSON_MALFORMED, "a trailing comma");
    is_int(scan("{\"a\" 1}", &g), SL_JSON_MALFORMED, "no colon");
    is_int(scan("{\"a\":\"x}", &g), SL_JSON_MALFORMED, "an unterminated string");
    is_int(scan("{\"a\":[1,2}", &g), SL_JSON_MALFORMED, "an unterminated array");
    done_testing();
}
