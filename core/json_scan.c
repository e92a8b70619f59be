/* json_scan.c -- see json_scan.h. Values are skipped, not checked: the body was decoded once
 * already (a malformed one never gets here); strings honour backslash escapes, objects and
 * arrays nest, a scalar runs to the next ',', '}', ']' or blank. */
#include "json_scan.h"


static size_t
skip_ws(const char *s, size_t len, size_t p)
{
    while (p < len && (s[p] == ' ' || s[p] == '\t' || s[p] == '\r' || s[p] == '\n')) {
        p++;
    }

    return p;
}


/* p at an opening quote: the offset after the closing one, or 0; *esc set when the string
 * holds a backslash. memchr to the next quote (a message's text rarely has one), then a look
 * back: the quote ends the string when an even number of backslashes precede it. */
static size_t
skip_string(const char *s, size_t len, size_t p, int *esc)
{
    size_t       open = p, b;
    const char  *q;

    for (p++; p < len; p = (size_t) (q - s) + 1) {
        q = memchr(s + p, '"', len - p);
        if (q == NULL) {
            return 0;
        }

        for (b = (size_t) (q - s); b > open + 1 && s[b - 1] == '\\'; b--) {
            /* count the backslashes before the quote */
        }

        if (((size_t) (q - s) - b) % 2 == 0) {
            if (memchr(s + open + 1, '\\', (size_t) (q - s) - open - 1) != NULL) {
                *esc = 1;
            }

            return (size_t) (q - s) + 1;
        }
    }

    return 0;
}


/* the offset after the value starting at p, or 0 */
static size_t
skip_value(const char *s, size_t len, size_t p)
{
    size_t  depth = 0, q = p;
    int     esc = 0;

    if (p >= len) {
        return 0;
    }

    if (s[p] == '"') {
        return skip_string(s, len, p, &esc);
    }

    if (s[p] == '{' || s[p] == '[') {
        while (q < len) {
            switch (s[q]) {
            case '"':
                q = skip_string(s, len, q, &esc);
                if (q == 0) {
                    return 0;
                }

                continue;
            case '{':
            case '[':
                depth++;
                break;
            case '}':
            case ']':
                if (--depth == 0) {
                    return q + 1;
                }
                break;
            }

            q++;
        }

        return 0;
    }

    while (q < len && s[q] != ',' && s[q] != '}' && s[q] != ']' && s[q] != ' ' && s[q] != '\t'
           && s[q] != '\r' && s[q] != '\n')
    {
        q++;
    }

    return q < len && q > p ? q : 0;
}


int
sl_json_top_spans(const char *s, size_t len,
                  void (*fn)(void *ud, const char *key, size_t klen, size_t first, size_t last),
                  void *ud)
{
    size_t  p = skip_ws(s, len, 0), kend, q, vend;
    int     n = 0, esc;

    if (p >= len || s[p] != '{') {
        return SL_JSON_MALFORMED;
    }

    p = skip_ws(s, len, p + 1);
    if (p < len && s[p] == '}') {
        return skip_ws(s, len, p + 1) == len ? 0 : SL_JSON_MALFORMED;
    }

    for ( ;; ) {
        if (p >= len || s[p] != '"') {
            return SL_JSON_MALFORMED;
        }

        esc = 0;
        kend = skip_string(s, len, p, &esc);
        if (kend == 0) {
            return SL_JSON_MALFORMED;
        }

        if (esc) {
            return SL_JSON_ESCAPED;
        }

        q = skip_ws(s, len, kend);
        if (q >= len || s[q] != ':') {
            return SL_JSON_MALFORMED;
        }

        q = skip_ws(s, len, q + 1);
        vend = skip_value(s, len, q);
        if (vend == 0) {
            return SL_JSON_MALFORMED;
        }

        fn(ud, s + p + 1, kend - p - 2, p, vend - 1);
        n++;

        q = skip_ws(s, len, vend);
        if (q < len && s[q] == ',') {
            p = skip_ws(s, len, q + 1);
            continue;
        }

        if (q < len && s[q] == '}') {
            return skip_ws(s, len, q + 1) == len ? n : SL_JSON_MALFORMED;
        }

        return SL_JSON_MALFORMED;
    }
}
