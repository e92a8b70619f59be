/* json_str.h -- the inner loop of JSON string scanning, shared by the decoder and the
 * scanners: the first byte at or after p that ends a run of plain string bytes, i.e. a quote,
 * a backslash or a control character (< 0x20). Sixteen bytes per step with SSE2, eight (SWAR)
 * while eight remain, then byte by byte; end when there is none. */
#ifndef SL_JSON_STR_H
#define SL_JSON_STR_H

#include <stdint.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define SL_JSON_ONES   0x0101010101010101ULL
#define SL_JSON_HIGHS  0x8080808080808080ULL


static inline const char *
sl_json_str_stop(const char *p, const char *end)
{
    uint64_t  w, q, b, c;

#if defined(__SSE2__)
    {
        const __m128i  vq = _mm_set1_epi8('"');
        const __m128i  vb = _mm_set1_epi8('\\');
        const __m128i  vc = _mm_set1_epi8(0x1f);

        while (end - p >= 16) {
            __m128i   v = _mm_loadu_si128((const __m128i *) p);
            __m128i   m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, vq), _mm_cmpeq_epi8(v, vb)),
                                       _mm_cmpeq_epi8(_mm_min_epu8(v, vc), v));  /* v <= 0x1f */
            unsigned  mask = (unsigned) _mm_movemask_epi8(m);

            if (mask != 0) {
                return p + __builtin_ctz(mask);
            }

            p += 16;
        }
    }
#endif

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
