/* Tests for pipeline/log: every line is one valid JSON object with the
 * documented fields, whatever the message holds, and the level filter and
 * REEL_LOG_LEVEL are honoured. stderr is captured through a pipe. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pipeline/log.h"

/* ---- stderr capture: a pipe drained by a thread, so writers never block ---- */

typedef struct capture {
    int saved_fd;
    int read_fd;
    pthread_t reader;
    char *buf;
    size_t len, cap;
} capture_t;

static void *drain(void *arg) {
    capture_t *cap = arg;
    for (;;) {
        if (cap->cap - cap->len < 4096) {
            cap->cap = cap->cap ? cap->cap * 2 : 65536;
            cap->buf = realloc(cap->buf, cap->cap);
            if (!cap->buf) abort();
        }
        ssize_t n = read(cap->read_fd, cap->buf + cap->len, cap->cap - cap->len - 1);
        if (n <= 0) break;
        cap->len += (size_t)n;
    }
    cap->buf[cap->len] = '\0';
    return NULL;
}

static void capture_begin(capture_t *cap) {
    memset(cap, 0, sizeof *cap);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(stderr);
    cap->saved_fd = dup(STDERR_FILENO);
    assert_true(cap->saved_fd >= 0);
    assert_true(dup2(fds[1], STDERR_FILENO) >= 0);
    close(fds[1]);
    cap->read_fd = fds[0];
    assert_int_equal(pthread_create(&cap->reader, NULL, drain, cap), 0);
}

/* Restores stderr and returns what was written (owned by cap). */
static const char *capture_end(capture_t *cap) {
    dup2(cap->saved_fd, STDERR_FILENO); /* closes the pipe's last write end */
    close(cap->saved_fd);
    pthread_join(cap->reader, NULL);
    close(cap->read_fd);
    return cap->buf;
}

static void capture_free(capture_t *cap) {
    free(cap->buf);
}

static size_t count_lines(const char *s) {
    size_t n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* Parses one line (up to its newline) as a JSON object with exactly the five
 * documented string fields. */
static json_t *parse_line(const char *line, size_t len) {
    json_error_t err;
    json_t *j = json_loadb(line, len, 0, &err);
    if (!j) fail_msg("not JSON (%s): %.*s", err.text, (int)len, line);
    assert_true(json_is_object(j));
    assert_int_equal(json_object_size(j), 5);
    const char *fields[] = {"ts", "level", "component", "event", "msg"};
    for (size_t i = 0; i < 5; i++) assert_true(json_is_string(json_object_get(j, fields[i])));
    return j;
}

static const char *field(json_t *j, const char *name) {
    return json_string_value(json_object_get(j, name));
}

/* ---- tests ---- */

/* REEL_LOG_LEVEL (set in main before any log call) applies at first use; an
 * explicit setting made afterwards wins. Must run first. */
static void test_env_level_at_first_use(void **state) {
    (void)state;
    assert_false(log_enabled(LOG_WARN));
    assert_true(log_enabled(LOG_ERROR));
    capture_t cap;
    capture_begin(&cap);
    log_warn("hidden", "not written");
    log_error("shown", "written");
    const char *out = capture_end(&cap);
    assert_int_equal(count_lines(out), 1);
    assert_non_null(strstr(out, "\"event\":\"shown\""));
    capture_free(&cap);
    log_set_level(LOG_INFO);
    assert_true(log_enabled(LOG_INFO));
}

static void test_line_fields(void **state) {
    (void)state;
    log_set_level(LOG_INFO);
    log_set_component("run");
    capture_t cap;
    capture_begin(&cap);
    time_t before = time(NULL);
    log_info("batch_committed", "topic=%s partition=%d records=%d", "counts", 3, 500);
    time_t after = time(NULL);
    const char *out = capture_end(&cap);
    assert_int_equal(count_lines(out), 1);
    json_t *j = parse_line(out, strlen(out));
    assert_string_equal(field(j, "level"), "info");
    assert_string_equal(field(j, "component"), "run");
    assert_string_equal(field(j, "event"), "batch_committed");
    assert_string_equal(field(j, "msg"), "topic=counts partition=3 records=500");

    /* ISO-8601 UTC with milliseconds, and the current time. */
    const char *ts = field(j, "ts");
    assert_int_equal(strlen(ts), 24);
    struct tm tm = {0};
    const char *rest = strptime(ts, "%Y-%m-%dT%H:%M:%S", &tm);
    assert_non_null(rest);
    assert_true(rest[0] == '.' && rest[1] >= '0' && rest[1] <= '9' && rest[2] >= '0' &&
                rest[2] <= '9' && rest[3] >= '0' && rest[3] <= '9' && rest[4] == 'Z');
    time_t t = timegm(&tm);
    assert_true(t >= before - 1 && t <= after);
    json_decref(j);
    capture_free(&cap);
    log_set_component(NULL);
}

/* A registered secret is masked in every line, however often it occurs and
 * wherever (next to other text, at the ends); short ones are not. */
static void test_secrets_are_masked(void **state) {
    (void)state;
    log_set_level(LOG_INFO);
    log_add_secret("hunter2-secret");
    log_add_secret("p@ss");
    log_add_secret("ab"); /* too short to mask */
    capture_t cap;
    capture_begin(&cap);
    log_info("redis_unavailable",
             "hunter2-secret url=redis://:p@ss@h sasl=hunter2-secrethunter2-secret ab");
    const char *out = capture_end(&cap);
    json_t *j = parse_line(out, strlen(out));
    assert_string_equal(field(j, "msg"), "*** url=redis://:***@h sasl=****** ab");
    json_decref(j);
    capture_free(&cap);
}

/* Quotes, backslashes, control characters and invalid UTF-8 in event, msg
 * or component all come out as one valid JSON line that decodes to the text,
 * with U+FFFD for each bad byte. */
static void test_escaping(void **state) {
    (void)state;
    log_set_level(LOG_DEBUG);
    log_set_component("wor\"ker");
    capture_t cap;
    capture_begin(&cap);
    log_debug("bad\"event\n",
              "q=\"%s\" bs=\\ nl=\n tab=\t cr=\r bel=\x07 del=\x7f "
              "ff=\xff e=\xc3\xa9 euro=\xe2\x82\xac cut=\xe2\x82 sur=\xed\xa0\x80 "
              "over=\xc0\xaf end",
              "x");
    const char *out = capture_end(&cap);
    assert_int_equal(count_lines(out), 1);
    json_t *j = parse_line(out, strlen(out));
    assert_string_equal(field(j, "level"), "debug");
    assert_string_equal(field(j, "component"), "wor\"ker");
    assert_string_equal(field(j, "event"), "bad\"event\n");
    assert_string_equal(field(j, "msg"),
                        "q=\"x\" bs=\\ nl=\n tab=\t cr=\r bel=\x07 del=\x7f "
                        "ff=\xef\xbf\xbd e=\xc3\xa9 euro=\xe2\x82\xac "
                        "cut=\xef\xbf\xbd\xef\xbf\xbd sur=\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd "
                        "over=\xef\xbf\xbd\xef\xbf\xbd end");
    /* Control characters are escaped on the wire, not written raw. */
    assert_non_null(strstr(out, "bel=\\u0007"));
    assert_non_null(strstr(out, "nl=\\n"));
    json_decref(j);
    capture_free(&cap);
    log_set_component(NULL);
    log_set_level(LOG_INFO);
}

/* A message longer than a line is cut, ends in "...", and the line stays
 * within one atomic pipe write and valid JSON, even when cut inside text
 * that expands when escaped. */
static void test_long_message_truncated(void **state) {
    (void)state;
    size_t n = 10000;
    char *big = malloc(n + 1);
    assert_non_null(big);
    const char *fills[] = {"x", "\"", "\x01", "\xe2\x82\xac"};
    for (size_t k = 0; k < 4; k++) {
        size_t flen = strlen(fills[k]);
        for (size_t i = 0; i + flen <= n; i += flen) memcpy(big + i, fills[k], flen);
        big[n - n % flen] = '\0';
        capture_t cap;
        capture_begin(&cap);
        log_info("big", "%s", big);
        const char *out = capture_end(&cap);
        assert_int_equal(count_lines(out), 1);
        assert_true(strlen(out) <= 4096);
        json_t *j = parse_line(out, strlen(out));
        const char *msg = field(j, "msg");
        size_t mlen = strlen(msg);
        assert_true(mlen > 500);
        assert_string_equal(msg + mlen - 3, "...");
        assert_memory_equal(msg, fills[k], flen);
        json_decref(j);
        capture_free(&cap);
    }
    free(big);
}

static void test_level_filter(void **state) {
    (void)state;
    assert_int_equal(log_set_level_name("bogus"), -1);
    assert_int_equal(log_set_level_name("warn"), 0);
    assert_false(log_enabled(LOG_DEBUG));
    assert_false(log_enabled(LOG_INFO));
    assert_true(log_enabled(LOG_WARN));
    assert_true(log_enabled(LOG_ERROR));

    capture_t cap;
    capture_begin(&cap);
    log_debug("d", "debug");
    log_info("i", "info");
    log_warn("w", "warn %d", 1);
    log_error("e", "error %d", 2);
    const char *out = capture_end(&cap);
    assert_int_equal(count_lines(out), 2);
    const char *nl = strchr(out, '\n');
    json_t *w = parse_line(out, (size_t)(nl - out));
    json_t *e = parse_line(nl + 1, strlen(nl + 1));
    assert_string_equal(field(w, "level"), "warn");
    assert_string_equal(field(w, "msg"), "warn 1");
    assert_string_equal(field(e, "level"), "error");
    assert_string_equal(field(e, "event"), "e");
    json_decref(w);
    json_decref(e);
    capture_free(&cap);

    assert_int_equal(log_set_level_name("off"), 0);
    assert_false(log_enabled(LOG_ERROR));
    capture_begin(&cap);
    log_error("e", "nothing");
    out = capture_end(&cap);
    assert_int_equal(strlen(out), 0);
    capture_free(&cap);

    assert_int_equal(log_set_level_name("DEBUG"), 0);
    assert_true(log_enabled(LOG_DEBUG));
    assert_false(log_enabled(LOG_OFF));
    log_set_level(LOG_INFO);
}

#define THREADS 4
#define LINES_PER_THREAD 500

static void *spam(void *arg) {
    int id = (int)(intptr_t)arg;
    char payload[1500];
    memset(payload, 'a' + id, sizeof payload - 1);
    payload[sizeof payload - 1] = '\0';
    for (int i = 0; i < LINES_PER_THREAD; i++) log_info("spam", "t=%d i=%d %s", id, i, payload);
    return NULL;
}

/* Lines from several threads never interleave: each is one write(2). */
static void test_threads_do_not_interleave(void **state) {
    (void)state;
    capture_t cap;
    capture_begin(&cap);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, spam, (void *)(intptr_t)i), 0);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    const char *out = capture_end(&cap);
    assert_int_equal(count_lines(out), THREADS * LINES_PER_THREAD);
    int seen[THREADS] = {0};
    for (const char *line = out; *line;) {
        const char *nl = strchr(line, '\n');
        json_t *j = parse_line(line, (size_t)(nl - line));
        int id = -1, i = -1;
        assert_int_equal(sscanf(field(j, "msg"), "t=%d i=%d", &id, &i), 2);
        assert_true(id >= 0 && id < THREADS);
        assert_int_equal(i, seen[id]); /* each thread's lines in its order */
        seen[id]++;
        json_decref(j);
        line = nl + 1;
    }
    for (int i = 0; i < THREADS; i++) assert_int_equal(seen[i], LINES_PER_THREAD);
    capture_free(&cap);
}

int main(void) {
    setenv("REEL_LOG_LEVEL", "error", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_env_level_at_first_use),
        cmocka_unit_test(test_line_fields),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_long_message_truncated),
        cmocka_unit_test(test_level_filter),
        cmocka_unit_test(test_threads_do_not_interleave),
        cmocka_unit_test(test_secrets_are_masked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
