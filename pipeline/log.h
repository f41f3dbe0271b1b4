/* log.h: JSON-lines logging on stderr, one object per line:
 * {"ts":"2026-11-28T12:00:00.123Z","level":"info","component":"run",
 *  "event":"batch_committed","msg":"topic=counts partition=3 records=500"}
 * Thread safe: each line is written with one write(2). */
#ifndef REEL_PIPELINE_LOG_H
#define REEL_PIPELINE_LOG_H

typedef enum { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_OFF } log_level_t;

/* Minimum level written (default LOG_INFO); "debug", "info", "warn",
 * "error", "off". Returns 0, or -1 for an unknown name. */
int log_set_level_name(const char *name);
void log_set_level(log_level_t level);
int log_enabled(log_level_t level);
/* Component name in every line (copied; default "reel"). */
void log_set_component(const char *component);

/* Masks secret (copied) as "***" in every later line, whoever wrote it
 * (reel or librdkafka): passwords from the configuration never reach the
 * log even when an error message or a debug line quotes them. Secrets
 * shorter than 4 bytes are not masked; at most 32 are kept. */
void log_add_secret(const char *secret);

/* event: a short snake_case identifier for alerting and grep; msg is
 * printf-formatted free text. Both are JSON-escaped. */
void log_write(log_level_t level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_debug(ev, ...) log_write(LOG_DEBUG, ev, __VA_ARGS__)
#define log_info(ev, ...) log_write(LOG_INFO, ev, __VA_ARGS__)
#define log_warn(ev, ...) log_write(LOG_WARN, ev, __VA_ARGS__)
#define log_error(ev, ...) log_write(LOG_ERROR, ev, __VA_ARGS__)

#endif
