/* find.h -- plain substring search for the needles stream scanning looks for in JSON text
 * ("usage", "_calls", "[DONE]"), where memchr on the needle's first byte stops every few
 * bytes: 32 (AVX2) or sixteen (SSE2) positions checked per step on two of the needle's rarest
 * bytes. */
#ifndef SL_FIND_H
#define SL_FIND_H

#include <stddef.h>

/* The first occurrence of needle in s[0..len), or NULL (s itself for an empty needle). */
const char *sl_find(const char *s, size_t len, const char *needle, size_t nlen);

/* The last occurrence of needle in s[0..len), or NULL (s + len for an empty needle): for
 * what a provider puts last in a body (its usage). memrchr on the needle's last byte. */
const char *sl_rfind(const char *s, size_t len, const char *needle, size_t nlen);

/* The two positions of needle sl_find compares first (a < b when nlen >= 2): pick them once
 * for a needle searched many times and pass them to sl_find_at. */
void sl_find_pick(const char *needle, size_t nlen, size_t *a, size_t *b);
const char *sl_find_at(const char *s, size_t len, const char *needle, size_t nlen, size_t a,
    size_t b);

#endif
