/* log.h -- error log set-up; the sl_log_* macros themselves live in sluice.h. */
#ifndef SL_LOG_H
#define SL_LOG_H

/* Opens (or re-opens) the error log at path; also_stderr copies lines to stderr. */
int sl_log_open(const char *path, int also_stderr, const char **err);

/* Re-opens the current error log file (SIGUSR1, after rotation). */
int sl_log_reopen(void);

/* "debug".."crit" -> SL_LOG_*, or -1. */
int sl_log_parse_level(const char *name);



/* The access log: lines are buffered per worker and written whole with O_APPEND, so lines
 * from several workers never interleave. */
int sl_access_log_open(const char *path, size_t buffer, const char **err);
void sl_access_log_write(const char *line, size_t len);
void sl_access_log_flush(void);
int sl_access_log_reopen(void);
#endif
