/* log.c -- the error log and the allocation helpers that log before aborting. The error
 * log is line-buffered by the kernel (one write(2) per line, O_APPEND), so lines from
 * several workers never interleave; sl_log_reopen() follows a rotated file on SIGUSR1. */
#include "sluice.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

int sl_log_level = SL_LOG_NOTICE;

static int          log_fd = 2;
static int          log_stderr_too;
static char         log_path[4096];
static const char  *level_names[] = {"debug", "info", "notice", "warn", "error", "crit"};


int
sl_log_open(const char *path, int also_stderr, const char **err)
{
    int  fd;

    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        *err = "cannot open the error log";
        return SL_ERROR;
    }

    if (log_fd > 2) {
        close(log_fd);
    }

    log_fd = fd;
    log_stderr_too = also_stderr;
    snprintf(log_path, sizeof(log_path), "%s", path);
    return SL_OK;
}


int
sl_log_reopen(void)
{
    const char  *err;

    if (log_path[0] == '\0') {
        return SL_OK;
    }

    return sl_log_open(log_path, log_stderr_too, &err);
}


int
sl_log_parse_level(const char *name)
{
    size_t  i;

    for (i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcmp(name, level_names[i]) == 0) {
            return (int) i;
        }
    }

    return -1;
}


void
sl_log_write(int level, const char *fmt, ...)
{
    char            buf[4096];
    int             n, m;
    va_list         ap;
    struct timeval  tv;
    struct tm       tm;

    gettimeofday(&tv, NULL);
    localtime_r(&tv.tv_sec, &tm);

    n = snprintf(buf, sizeof(buf), "%04d/%02d/%02d %02d:%02d:%02d [%s] %d: ",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                 tm.tm_sec, level_names[level < 0 ? 0 : level > 5 ? 5 : level], (int) getpid());

    va_start(ap, fmt);
    m = vsnprintf(buf + n, sizeof(buf) - n - 1, fmt, ap);
    va_end(ap);

    if (m < 0) {
        m = 0;
    }

    n += m;
    if ((size_t) n > sizeof(buf) - 2) {
        n = sizeof(buf) - 2;
    }

    buf[n++] = '\n';

    if (write(log_fd, buf, n) < 0) {
        /* nowhere left to report it */
    }

    if (log_stderr_too && log_fd != 2) {
        if (write(2, buf, n) < 0) {
            /* same */
        }
    }
}


void *
sl_xmalloc(size_t size)
{
    void  *p = malloc(size);

    if (p == NULL) {
        sl_log_crit("out of memory allocating %zu bytes", size);
        abort();
    }

    return p;
}


void *
sl_xcalloc(size_t n, size_t size)
{
    void  *p = calloc(n, size);

    if (p == NULL) {
        sl_log_crit("out of memory allocating %zu x %zu bytes", n, size);
        abort();
    }

    return p;
}


void *
sl_xrealloc(void *p, size_t size)
{
    void  *q = realloc(p, size);

    if (q == NULL) {
        sl_log_crit("out of memory reallocating %zu bytes", size);
        abort();
    }

    return q;
}


char *
sl_xstrndup(const char *s, size_t n)
{
    char  *p = sl_xmalloc(n + 1);

    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}


static int      alog_fd = -1;
static char     alog_path[4096];
static char    *alog_buf;
static size_t   alog_len, alog_cap;


int
sl_access_log_open(const char *path, size_t buffer, const char **err)
{
    int  fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);

    if (fd < 0) {
        *err = "cannot open the access log";
        return SL_ERROR;
    }

    if (alog_fd >= 0) {
        sl_access_log_flush();
        close(alog_fd);
    }

    alog_fd = fd;
    snprintf(alog_path, sizeof(alog_path), "%s", path);
    if (alog_buf == NULL) {
        alog_cap = buffer < 4096 ? 4096 : buffer;
        alog_buf = sl_xmalloc(alog_cap);
    }

    return SL_OK;
}


void
sl_access_log_flush(void)
{
    size_t   off = 0;
    ssize_t  n;

    while (alog_fd >= 0 && off < alog_len) {
        n = write(alog_fd, alog_buf + off, alog_len - off);
        if (n <= 0) {
            if (n < 0 && errno == EINTR) {
                continue;
            }

            break;
        }

        off += (size_t) n;
    }

    alog_len = 0;
}


void
sl_access_log_write(const char *line, size_t len)
{
    if (alog_fd < 0) {
        return;
    }

    if (alog_len + len + 1 > alog_cap) {
        sl_access_log_flush();
        if (len + 1 > alog_cap) {
            if (write(alog_fd, line, len) < 0 || write(alog_fd, "\n", 1) < 0) {
                /* nowhere to report it */
            }

            return;
        }
    }

    memcpy(alog_buf + alog_len, line, len);
    alog_len += len;
    alog_buf[alog_len++] = '\n';
}


int
sl_access_log_reopen(void)
{
    const char  *err;

    if (alog_path[0] == '\0') {
        return SL_OK;
    }

    return sl_access_log_open(alog_path, alog_cap, &err);
}
