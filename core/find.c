/* find.c -- see find.h. The "generic SIMD" substring search: two bytes of the needle, picked
 * as the rarest in JSON text, are compared at 32 positions per step (AVX2, when the CPU has
 * it) or sixteen (SSE2), and only positions where both match are compared in full. The rest,
 * or everything where neither exists: memchr on the rarest byte, then a full compare. */
#define _GNU_SOURCE                 /* memrchr */

#include "find.h"

#include "sluice.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif


/* rank of a byte in JSON text, most common first: a needle's two highest-ranked bytes are the
 * ones compared first */
static const char  common[] = "\"e:,ta{}oinsrhldcum_0123456789pfgwybvkxjqz ";
static unsigned char  ranks[256];
static int            ranks_ready;


static size_t
rank_of(unsigned char c)
{
    size_t  i;

    if (!ranks_ready) {
        memset(ranks, sizeof(common) - 1, sizeof(ranks));
        for (i = 0; i < sizeof(common) - 1; i++) {
            ranks[(unsigned char) common[i]] = (unsigned char) i;
        }
        ranks_ready = 1;
    }

    return ranks[c];
}


void
sl_find_pick(const char *needle, size_t nlen, size_t *a, size_t *b)
{
    size_t  i, r, ra = 0, rb = 0;

    *a = 0;
    *b = nlen > 1 ? nlen - 1 : 0;
    if (nlen < 2) {
        return;
    }

    /* the rarest position, then the rarest other one */
    for (i = 0; i < nlen; i++) {
        r = rank_of((unsigned char) needle[i]);
        if (r >= ra) {
            ra = r;
            *a = i;
        }
    }

    *b = *a == 0 ? 1 : 0;
    for (i = 0; i < nlen; i++) {
        r = rank_of((unsigned char) needle[i]);
        if (i != *a && r >= rb) {
            rb = r;
            *b = i;
        }
    }

    if (*a > *b) {
        size_t  t = *a;
        *a = *b;
        *b = t;
    }
}


#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

/* the same with 32 positions per step, where the CPU has AVX2 (checked once, at run time);
 * returns the first position not looked at through *next */
__attribute__((target("avx2")))
static const char *
find_avx2(const char *s, size_t len, const char *needle, size_t nlen, size_t a, size_t b,
          size_t *next)
{
    const __m256i  ca = _mm256_set1_epi8(needle[a]);
    const __m256i  cb = _mm256_set1_epi8(needle[b]);
    size_t         i = 0;

    for ( ; i + b + 32 <= len; i += 32) {
        __m256i   ba = _mm256_loadu_si256((const __m256i *) (s + i + a));
        __m256i   bb = _mm256_loadu_si256((const __m256i *) (s + i + b));
        unsigned  mask = (unsigned) _mm256_movemask_epi8(
            _mm256_and_si256(_mm256_cmpeq_epi8(ba, ca), _mm256_cmpeq_epi8(bb, cb)));

        while (mask != 0) {
            size_t  at = i + (size_t) __builtin_ctz(mask);

            if (at + nlen <= len && memcmp(s + at, needle, nlen) == 0) {
                return s + at;
            }

            mask &= mask - 1;
        }
    }

    *next = i;
    return NULL;
}


static int
has_avx2(void)
{
    static int  known = -1;

    if (known < 0) {
        __builtin_cpu_init();
        known = __builtin_cpu_supports("avx2") ? 1 : 0;
    }

    return known;
}
#endif


const char *
sl_find_at(const char *s, size_t len, const char *needle, size_t nlen, size_t a, size_t b)
{
    const char  *p, *end;
    size_t       i = 0;

    if (nlen == 0) {
        return s;
    }

    if (nlen > len) {
        return NULL;
    }

    if (nlen == 1) {
        return memchr(s, needle[0], len);
    }

#if defined(__x86_64__) && defined(__GNUC__)
    if (len >= 64 && has_avx2()) {
        p = find_avx2(s, len, needle, nlen, a, b, &i);
        if (p != NULL) {
            return p;
        }
    }
#endif

#if defined(__SSE2__)
    {
        const __m128i  ca = _mm_set1_epi8(needle[a]);
        const __m128i  cb = _mm_set1_epi8(needle[b]);

        /* positions i .. i + 15 as needle starts: bytes up to i + b + 15 are read */
        for ( ; i + b + 16 <= len; i += 16) {
            __m128i   ba = _mm_loadu_si128((const __m128i *) (s + i + a));
            __m128i   bb = _mm_loadu_si128((const __m128i *) (s + i + b));
            unsigned  mask = (unsigned) _mm_movemask_epi8(
                _mm_and_si128(_mm_cmpeq_epi8(ba, ca), _mm_cmpeq_epi8(bb, cb)));

            while (mask != 0) {
                size_t  at = i + (size_t) __builtin_ctz(mask);

                if (at + nlen <= len && memcmp(s + at, needle, nlen) == 0) {
                    return s + at;
                }

                mask &= mask - 1;
            }
        }
    }
#endif

    /* the rest (or everything, without SSE2): memchr on the rarest byte */
    end = s + len - (nlen - a);
    p = s + i + a;
    while (p <= end && (p = memchr(p, needle[a], (size_t) (end - p) + 1)) != NULL) {
        if (memcmp(p - a, needle, nlen) == 0) {
            return p - a;
        }

        p++;
    }

    return NULL;
}


const char *
sl_find(const char *s, size_t len, const char *needle, size_t nlen)
{
    size_t  a, b;

    sl_find_pick(needle, nlen, &a, &b);
    return sl_find_at(s, len, needle, nlen, a, b);
}


const char *
sl_rfind(const char *s, size_t len, const char *needle, size_t nlen)
{
    const char  *p;
    size_t       n;

    if (nlen == 0) {
        return s + len;
    }

    if (nlen > len) {
        return NULL;
    }

    /* p: the last byte of a candidate; candidates end at s + nlen - 1 .. s + len - 1 */
    n = len - nlen + 1;
    while (n > 0 && (p = memrchr(s + nlen - 1, needle[nlen - 1], n)) != NULL) {
        if (memcmp(p - (nlen - 1), needle, nlen) == 0) {
            return p - (nlen - 1);
        }

        n = (size_t) (p - (s + nlen - 1));
    }

    return NULL;
}


/* For LuaJIT's FFI (lua/sluice/find.lua): byte offsets, -1 when the needle is absent. Lua's
 * needles are a few constant strings: their picks are kept by address and length. A freed
 * needle whose address comes back for another of the same length only gets picks that are
 * not the rarest: sl_find_at is right with any two positions. */
#define PICKS  8

SL_FFI ptrdiff_t
sl_ffi_find(const char *s, size_t len, const char *needle, size_t nlen, size_t from)
{
    static struct {
        const char  *needle;
        size_t       nlen, a, b;
    }                    picks[PICKS];
    static unsigned      next;
    const char          *p;
    size_t               a, b;
    unsigned             i;

    if (from > len) {
        return -1;
    }

    for (i = 0; i < PICKS; i++) {
        if (picks[i].needle == needle && picks[i].nlen == nlen) {
            break;
        }
    }

    if (i < PICKS) {
        a = picks[i].a;
        b = picks[i].b;
    } else {
        sl_find_pick(needle, nlen, &a, &b);
        i = next++ % PICKS;
        picks[i].needle = needle;
        picks[i].nlen = nlen;
        picks[i].a = a;
        picks[i].b = b;
    }

    p = sl_find_at(s + from, len - from, needle, nlen, a, b);
    return p != NULL ? p - s : -1;
}


SL_FFI ptrdiff_t
sl_ffi_rfind(const char *s, size_t len, const char *needle, size_t nlen)
{
    const char  *p = sl_rfind(s, len, needle, nlen);

    return p != NULL ? p - s : -1;
}
