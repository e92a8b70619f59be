/* sluice.h -- basics every C file of the host includes: return codes, the string slice
 * type, logging, and allocation that aborts instead of returning NULL. */
#ifndef SLUICE_H
#define SLUICE_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#define SLUICE_VERSION  "0.1.0"

#define SL_OK        0
#define SL_ERROR    -1
#define SL_AGAIN    -2
#define SL_DECLINED -3

typedef struct {
    const char  *data;
    size_t       len;
} sl_str_t;

#define sl_string(s)  { (s), sizeof(s) - 1 }
#define SL_UNUSED(x)  ((void) (x))

/* A function Lua calls through LuaJIT's FFI (exported by -rdynamic): FFI calls compile into
 * the calling trace, where a Lua C function ends it. */
#define SL_FFI  __attribute__((visibility("default"), used))
#define sl_min(a, b)  ((a) < (b) ? (a) : (b))
#define sl_max(a, b)  ((a) > (b) ? (a) : (b))

enum {
    SL_LOG_DEBUG = 0,
    SL_LOG_INFO,
    SL_LOG_NOTICE,
    SL_LOG_WARN,
    SL_LOG_ERROR,
    SL_LOG_CRIT,
};

/* Writes v in decimal at p (no terminator); returns the digits written (at most 20). For
 * the hot path, where snprintf's format parsing costs more than the rest of the header. */
static inline size_t
sl_fmt_u64(char *p, uint64_t v)
{
    char    tmp[20];
    size_t  n = 0, i;

    do {
        tmp[n++] = (char) ('0' + v % 10);
        v /= 10;
    } while (v != 0);

    for (i = 0; i < n; i++) {
        p[i] = tmp[n - 1 - i];
    }

    return n;
}


/* log.c: the error log. Messages below the configured level cost one comparison. */
extern int sl_log_level;

void sl_log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define sl_log(level, ...)                                                                  \
    do {                                                                                    \
        if ((level) >= sl_log_level) {                                                      \
            sl_log_write((level), __VA_ARGS__);                                             \
        }                                                                                   \
    } while (0)

#define sl_log_debug(...)  sl_log(SL_LOG_DEBUG, __VA_ARGS__)
#define sl_log_info(...)   sl_log(SL_LOG_INFO, __VA_ARGS__)
#define sl_log_notice(...) sl_log(SL_LOG_NOTICE, __VA_ARGS__)
#define sl_log_warn(...)   sl_log(SL_LOG_WARN, __VA_ARGS__)
#define sl_log_error(...)  sl_log(SL_LOG_ERROR, __VA_ARGS__)
#define sl_log_crit(...)   sl_log(SL_LOG_CRIT, __VA_ARGS__)

/* Allocation of small, fixed sizes: logs and aborts on failure, never returns NULL. */
void *sl_xmalloc(size_t size);
void *sl_xcalloc(size_t n, size_t size);
void *sl_xrealloc(void *p, size_t size);
char *sl_xstrndup(const char *s, size_t n);

#endif
