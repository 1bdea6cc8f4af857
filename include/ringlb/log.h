/* log.h — the error log (stderr), shared by every thread.
 *
 * Each message is formatted into a stack buffer and written with one write(2), so lines of
 * different threads never interleave. Messages below the global level are dropped before any
 * formatting. Logging is for rare events (errors, reloads); the request path does not log.
 */
#ifndef RINGLB_LOG_H
#define RINGLB_LOG_H

enum rlb_log_level { RLB_LOG_ERROR = 0, RLB_LOG_WARN, RLB_LOG_INFO, RLB_LOG_DEBUG };

/* The current level (messages above it are dropped). Any thread may read it. */
extern enum rlb_log_level rlb_log_level_current;

/* Parse "error"|"warn"|"info"|"debug" into *out. Returns 0 or -EINVAL. */
int rlb_log_level_parse(const char *s, enum rlb_log_level *out);

/* Write one line "TIME LEVEL message\n" to stderr when `level` is enabled. Any thread. */
void rlb_log(enum rlb_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define rlb_log_error(...) rlb_log(RLB_LOG_ERROR, __VA_ARGS__)
#define rlb_log_warn(...) rlb_log(RLB_LOG_WARN, __VA_ARGS__)
#define rlb_log_info(...)                                                              \
    do {                                                                               \
        if (rlb_log_level_current >= RLB_LOG_INFO) rlb_log(RLB_LOG_INFO, __VA_ARGS__); \
    } while (0)
#define rlb_log_debug(...)                                                               \
    do {                                                                                 \
        if (rlb_log_level_current >= RLB_LOG_DEBUG) rlb_log(RLB_LOG_DEBUG, __VA_ARGS__); \
    } while (0)

#endif
