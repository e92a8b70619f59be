/* find.c -- TAP tests for sl_find: the same answer as memmem for needles of every length
 * against texts of every length around the sixteen-byte steps, for JSON-like texts full of
 * near misses, and at the very end of the text. */
#define _GNU_SOURCE
#include "tap.h"

#include <stdlib.h>

#include "find.h"

ptrdiff_t sl_ffi_find(const char *s, size_t len, const char *needle, size_t nlen, size_t from);


int
main(void)
{
    static const char  *needles[] = { "\"usage\"", "_calls", "[DONE]", "DONE]", "\"", "ab",
                                      "\"usage\":{", "message_stop", "zz", "aaaaaaaaaaaaaaaaaaaaaz" };
    static const char   alphabet[] = "\"usage:{}[]_calsDONE ab";
    char                text[300];
    unsigned            seed = 7;
    size_t              i, len, n, bad = 0, rbad = 0, tried = 0, found = 0;

    /* fixed cases */
    ok(sl_find("data: {\"usage\":null}", 21, "\"usage\"", 7) != NULL, "a plain hit");
    ok(sl_find("\"usag\" \"usage", 13, "\"usage\"", 7) == NULL, "near misses only");
    {
        const char  *s = "0123456789abcdef0123456789abcdef0123456789\"usage\"";
        is_int(sl_find(s, strlen(s), "\"usage\"", 7) - s, 42, "at the very end, past the steps");
    }
    ok(sl_find("abc", 3, "", 0) != NULL, "empty needle");
    ok(sl_find("ab", 2, "abc", 3) == NULL, "needle longer than the text");
    {
        const char  *u = "{\"usage\":{\"a\":1},\"x\":{\"usage\":2}}";

        is_int(sl_rfind(u, strlen(u), "\"usage\"", 7) - u, 22, "rfind: the last one");
        is_int(sl_rfind(u, 8, "\"usage\"", 7) - u, 1, "rfind: the only one");
        ok(sl_rfind(u, 7, "\"usage\"", 7) == NULL, "rfind: cut short");
        ok(sl_rfind("aaa", 3, "aaa", 3) != NULL, "rfind: the whole text");
        ok(sl_rfind("ab", 2, "abc", 3) == NULL, "rfind: needle longer than the text");
    }

    /* random texts from a small alphabet (many partial matches), every needle, every length */
    for (n = 0; n < 4000; n++) {
        seed = seed * 1103515245 + 12345;
        len = (seed >> 8) % sizeof(text);
        for (i = 0; i < len; i++) {
            seed = seed * 1103515245 + 12345;
            text[i] = alphabet[(seed >> 16) % (sizeof(alphabet) - 1)];
        }

        /* plant a needle now and then */
        seed = seed * 1103515245 + 12345;
        {
            const char  *nd = needles[(seed >> 8) % (sizeof(needles) / sizeof(needles[0]))];
            size_t       nl = strlen(nd);
            if (len >= nl && (seed >> 20) % 2) {
                memcpy(text + (seed >> 4) % (len - nl + 1), nd, nl);
            }
        }

        for (i = 0; i < sizeof(needles) / sizeof(needles[0]); i++) {
            size_t       nl = strlen(needles[i]);
            const char  *want = memmem(text, len, needles[i], nl);
            const char  *got = sl_find(text, len, needles[i], nl);
            const char  *rwant = NULL, *q;

            /* the last occurrence, naively */
            for (q = want; q != NULL;
                 q = memmem(q + 1, len - (size_t) (q + 1 - text), needles[i], nl)) {
                rwant = q;
            }

            if (sl_rfind(text, len, needles[i], nl) != rwant && rbad++ < 5) {
                printf("# rfind %s in %.*s: want %ld\n", needles[i], (int) len, text,
                       rwant ? (long) (rwant - text) : -1L);
            }

            tried++;
            found += want != NULL;
            if (got != want && bad++ < 5) {
                printf("# needle %s in %.*s: got %ld want %ld\n", needles[i], (int) len, text,
                       got ? (long) (got - text) : -1L, want ? (long) (want - text) : -1L);
            }
        }
    }

    /* the FFI entry keeps a needle's picks by address: a buffer reused for another needle of
     * the same length still finds right (positions by memmem), and from/too-far behave */
    {
        char        nbuf[8];
        const char  *hay = "xx[DONE] \"usage\" _calls zz ab";
        size_t       hl = strlen(hay), k, fbad = 0;
        static const char  *same_len[] = { "[DONE]", "_calls", "\"usag", "zz ab\0", "DONE] " };

        for (k = 0; k < 40; k++) {
            const char  *nd = same_len[k % 5];
            const char  *w;
            ptrdiff_t    got;

            memcpy(nbuf, nd, 6);
            w = memmem(hay, hl, nbuf, 6);
            got = sl_ffi_find(hay, hl, nbuf, 6, 0);
            fbad += got != (w ? w - hay : -1);
        }

        is_int(fbad, 0, "sl_ffi_find: one needle buffer, five needles in turn");
        is_int(sl_ffi_find(hay, hl, "zz", 2, 20), 24, "sl_ffi_find: from an offset");
        is_int(sl_ffi_find(hay, hl, "[DONE]", 6, 3), -1, "sl_ffi_find: past the only match");
        is_int(sl_ffi_find(hay, hl, "x", 1, hl + 1), -1, "sl_ffi_find: from past the end");
    }

    is_int(bad, 0, "as memmem on %zu searches (%zu found)", tried, found);
    is_int(rbad, 0, "sl_rfind: the last of memmem's matches on the same searches");
    done_testing();
}
