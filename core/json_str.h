/* json_str.h -- the inner loop of JSON string scanning, shared by the decoder and the
 * scanners: the first byte at or after p that ends a run of plain string bytes, i.e. a quote,
 * a backslash or a control character (< 0x20). Eight bytes per step (SWAR) while eight remain,
 * then byte by byte; end when there is none. */
#ifndef SL_JSON_STR_H
#define SL_JSON_STR_H

#include <stdint.h>
#include <string.h>

#define SL_JSON_ONES   0x0101010101010101ULL
#define SL_JSON_HIGHS  0x8080808080808080ULL


static inline const char *
sl_json_str_stop(const char *p, const char *end)
{
    uint64_t  w, q, b, c;

    while (end - p >= 8) {
        memcpy(&w, p, 8);
        q = w ^ (SL_JSON_ONES * '"');
        b = w ^ (SL_JSON_ONES * '\\');
        /* a byte of q or b is zero, or a byte of w is below 0x20: its high bit set here */
        q = (q - SL_JSON_ONES) & ~q;
        b = (b - SL_JSON_ONES) & ~b;
        c = (w - SL_JSON_ONES * 0x20) & ~w;
        if ((q | b | c) & SL_JSON_HIGHS) {
            break;                  /* one of these eight: find it below */
        }

        p += 8;
    }

    for ( ; p < end; p++) {
        unsigned char  ch = (unsigned char) *p;

        if (ch == '"' || ch == '\\' || ch < 0x20) {
            return p;
        }
    }

    return end;
}

#endif
