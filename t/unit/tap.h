/* tap.h -- the smallest TAP producer for C unit tests: ok(), is_int(), done_testing(). */
#ifndef SL_TAP_H
#define SL_TAP_H

#include <stdio.h>
#include <string.h>

static int tap_n, tap_failed;

#define ok(cond, ...)                                                                       \
    do {                                                                                    \
        int ok_ = (cond) ? 1 : 0;                                                           \
        tap_n++;                                                                            \
        if (!ok_) {                                                                         \
            tap_failed++;                                                                   \
        }                                                                                   \
        printf("%sok %d - ", ok_ ? "" : "not ", tap_n);                                     \
        printf(__VA_ARGS__);                                                                \
        printf("\n");                                                                       \
        if (!ok_) {                                                                         \
            printf("#   failed at %s line %d\n", __FILE__, __LINE__);                      \
        }                                                                                   \
    } while (0)

#define is_int(got, want, ...)                                                              \
    do {                                                                                    \
        long long g_ = (long long) (got), w_ = (long long) (want);                          \
        ok(g_ == w_, __VA_ARGS__);                                                          \
        if (g_ != w_) {                                                                     \
            printf("#   got %lld, want %lld\n", g_, w_);                                    \
        }                                                                                   \
    } while (0)

#define is_str(got, glen, want, ...)                                                        \
    do {                                                                                    \
        size_t wl_ = strlen(want);                                                          \
        int eq_ = (glen) == wl_ && memcmp((got), (want), wl_) == 0;                         \
        ok(eq_, __VA_ARGS__);                                                               \
        if (!eq_) {                                                                         \
            printf("#   got '%.*s', want '%s'\n", (int) (glen), (got), (want));             \
        }                                                                                   \
    } while (0)

#define done_testing()                                                                      \
    do {                                                                                    \
        printf("1..%d\n", tap_n);                                                           \
        return tap_failed ? 1 : 0;                                                          \
    } while (0)

#endif
