/* log.c: JSON lines on stderr.
 *
 * Each line is built in a stack buffer no larger than PIPE_BUF and written
 * with one write(2), so lines from several threads (or processes sharing a
 * pipe to a log collector) never interleave. Longer messages are cut and end
 * in "...". Every line is valid JSON whatever bytes the caller passes:
 * invalid UTF-8 becomes U+FFFD. */
#include "pipeline/log.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES 4096 /* == PIPE_BUF on Linux: writes up to it are atomic */
#define MSG_MAX_BYTES 4096  /* formatted text before escaping; more is cut */
#define EVENT_MAX_BYTES 128 /* escaped event; an event is an identifier */
#define COMPONENT_MAX 64

_Static_assert(LINE_MAX_BYTES <= PIPE_BUF, "a line must fit one atomic pipe write");

static atomic_int g_level = LOG_INFO;
static pthread_mutex_t g_component_lock = PTHREAD_MUTEX_INITIALIZER;
static char g_component[COMPONENT_MAX] = "reel";
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

static int level_from_name(const char *name, log_level_t *out) {
    for (int i = LOG_DEBUG; i <= LOG_OFF; i++) {
        if (strcasecmp(name, level_names[i]) == 0) {
            *out = (log_level_t)i;
            return 0;
        }
    }
    if (strcasecmp(name, "warning") == 0) {
        *out = LOG_WARN;
        return 0;
    }
    return -1;
}

/* REEL_LOG_LEVEL is read once, before any explicit setting, so a level set
 * by the program (from -X log.level=...) wins over the environment. */
static void init_from_env(void) {
    const char *env = getenv("REEL_LOG_LEVEL");
    log_level_t level;
    if (env && *env && level_from_name(env, &level) == 0) atomic_store(&g_level, (int)level);
}

int log_set_level_name(const char *name) {
    pthread_once(&g_once, init_from_env);
    log_level_t level;
    if (!name || level_from_name(name, &level) < 0) return -1;
    atomic_store(&g_level, (int)level);
    return 0;
}

void log_set_level(log_level_t level) {
    pthread_once(&g_once, init_from_env);
    if ((int)level < LOG_DEBUG || level > LOG_OFF) return;
    atomic_store(&g_level, (int)level);
}

int log_enabled(log_level_t level) {
    pthread_once(&g_once, init_from_env);
    return level < LOG_OFF && (int)level >= atomic_load(&g_level);
}

void log_set_component(const char *component) {
    pthread_mutex_lock(&g_component_lock);
    snprintf(g_component, sizeof g_component, "%s", component ? component : "reel");
    pthread_mutex_unlock(&g_component_lock);
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0 when the
 * bytes there are not one: overlong forms, surrogates, code points above
 * U+10FFFF and cut sequences are all rejected, as JSON parsers do. */
static size_t utf8_len(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    return len;
}

/* Appends src[0..n) JSON-escaped to out at *pos, never past limit. Stops at
 * a whole escape or character so the output stays valid. Returns 0, or -1
 * when it stopped early for lack of room. */
static int escape(char *out, size_t *pos, size_t limit, const char *src, size_t n) {
    const unsigned char *s = (const unsigned char *)src;
    size_t p = *pos;
    int rc = 0;
    for (size_t i = 0; i < n;) {
        char tmp[8];
        const char *unit = tmp;
        size_t ulen, consumed = 1;
        unsigned char c = s[i];
        if (c == '"' || c == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)c;
            ulen = 2;
        } else if (c == '\n') {
            unit = "\\n", ulen = 2;
        } else if (c == '\r') {
            unit = "\\r", ulen = 2;
        } else if (c == '\t') {
            unit = "\\t", ulen = 2;
        } else if (c < 0x20 || c == 0x7F) {
            snprintf(tmp, sizeof tmp, "\\u%04x", c);
            ulen = 6;
        } else if (c < 0x80) {
            tmp[0] = (char)c;
            ulen = 1;
        } else if ((ulen = utf8_len(s + i, n - i)) > 0) {
            unit = (const char *)s + i;
            consumed = ulen;
        } else {
            unit = "\xEF\xBF\xBD", ulen = 3; /* U+FFFD for one bad byte */
        }
        if (p + ulen > limit) {
            rc = -1;
            break;
        }
        memcpy(out + p, unit, ulen);
        p += ulen;
        i += consumed;
    }
    *pos = p;
    return rc;
}

static void append(char *out, size_t *pos, const char *s) {
    size_t n = strlen(s);
    memcpy(out + *pos, s, n); /* callers reserve room for these fixed parts */
    *pos += n;
}

/* Secrets (passwords from the configuration) masked in every line. Added
 * at start-up, never removed; a slot is filled before the count covers it,
 * so readers need no lock. */
#define LOG_MAX_SECRETS 32
#define LOG_MIN_SECRET 4
static char *g_secrets[LOG_MAX_SECRETS];
static atomic_int g_n_secrets;
static pthread_mutex_t g_secrets_lock = PTHREAD_MUTEX_INITIALIZER;

void log_add_secret(const char *secret) {
    if (!secret || strlen(secret) < LOG_MIN_SECRET) return;
    pthread_mutex_lock(&g_secrets_lock);
    int n = atomic_load(&g_n_secrets);
    int known = 0;
    for (int i = 0; i < n; i++) known |= strcmp(g_secrets[i], secret) == 0;
    if (!known && n < LOG_MAX_SECRETS && (g_secrets[n] = strdup(secret)))
        atomic_store(&g_n_secrets, n + 1);
    pthread_mutex_unlock(&g_secrets_lock);
}

/* Replaces every registered secret in msg[0..*n) by "***" (never longer
 * than a secret, so msg only shrinks). */
static void scrub(char *msg, size_t *n) {
    int k = atomic_load(&g_n_secrets);
    for (int i = 0; i < k; i++) {
        const char *sec = g_secrets[i];
        size_t sl = strlen(sec), at = 0;
        char *hit;
        while (at < *n && (hit = memmem(msg + at, *n - at, sec, sl))) {
            size_t off = (size_t)(hit - msg);
            memcpy(hit, "***", 3);
            memmove(hit + 3, hit + sl, *n - off - sl);
            *n -= sl - 3;
            at = off + 3;
        }
    }
}

void log_write(log_level_t level, const char *event, const char *fmt, ...) {
    if (!log_enabled(level)) return;
    int saved_errno = errno; /* callers may log and then still use errno */

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char tsbuf[40];
    size_t tslen = strftime(tsbuf, sizeof tsbuf, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(tsbuf + tslen, sizeof tsbuf - tslen, ".%03ldZ", ts.tv_nsec / 1000000L);

    char msg[MSG_MAX_BYTES];
    int msg_len = 0;
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        msg_len = vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
    }
    if (msg_len < 0) msg_len = 0;
    int cut = (size_t)msg_len >= sizeof msg;
    size_t msg_n = cut ? sizeof msg - 1 : (size_t)msg_len;
    scrub(msg, &msg_n);

    char component[COMPONENT_MAX];
    pthread_mutex_lock(&g_component_lock);
    memcpy(component, g_component, sizeof component);
    pthread_mutex_unlock(&g_component_lock);

    /* Fixed parts are short and bounded (timestamp, level, the escaped
     * component and event are capped), so only msg can run out of room;
     * the tail `..."}` and newline are always reserved. */
    static const char tail[] = "\"}\n";
    static const char ellipsis[] = "...";
    char line[LINE_MAX_BYTES];
    size_t pos = 0;
    append(line, &pos, "{\"ts\":\"");
    append(line, &pos, tsbuf);
    append(line, &pos, "\",\"level\":\"");
    append(line, &pos, level_names[level]);
    append(line, &pos, "\",\"component\":\"");
    escape(line, &pos, pos + 6 * COMPONENT_MAX, component, strlen(component));
    append(line, &pos, "\",\"event\":\"");
    const char *ev = event ? event : "";
    escape(line, &pos, pos + EVENT_MAX_BYTES, ev, strlen(ev));
    append(line, &pos, "\",\"msg\":\"");
    size_t limit = sizeof line - (sizeof tail - 1) - (sizeof ellipsis - 1);
    if (escape(line, &pos, limit, msg, msg_n) < 0) cut = 1;
    if (cut) append(line, &pos, ellipsis);
    append(line, &pos, tail);

    /* One write(2) per line; a pipe takes it whole. Retry only what a
     * signal or a short write to a file left over. */
    const char *p = line;
    size_t left = pos;
    while (left > 0) {
        ssize_t w = write(STDERR_FILENO, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            break; /* nowhere left to report it */
        }
        p += w;
        left -= (size_t)w;
    }
    errno = saved_errno;
}
