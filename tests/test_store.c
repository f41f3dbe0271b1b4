/* test_store.c: pipeline/store.c against a real redis-server that each test
 * starts (tests/support/redis_fixture.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pipeline/store.h"
#include "tests/support/redis_fixture.h"

typedef struct ctx {
    redis_fixture_t f;
    store_t *s;
    redisContext *raw; /* the test's own connection, to look behind the store */
    char err[1024];
} ctx_t;

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void sleep_ms(unsigned ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int setup_with(void **state, int persistent, int port) {
    ctx_t *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->f.port = port;
    if (redis_fixture_start(&c->f, persistent, c->err, sizeof c->err) < 0) {
        print_error("redis fixture: %s\n", c->err);
        free(c);
        return -1;
    }
    c->raw = redis_fixture_connect(&c->f);
    if (!c->raw) {
        redis_fixture_cleanup(&c->f);
        free(c);
        return -1;
    }
    *state = c;
    return 0;
}

static int setup_unix(void **state) {
    return setup_with(state, 0, 0);
}
static int setup_persistent(void **state) {
    return setup_with(state, 1, 0);
}
static int setup_tcp(void **state) {
    return setup_with(state, 0, -1);
}

/* setup_* and the store most tests want. */
static int setup_store(void **state) {
    if (setup_unix(state) < 0) return -1;
    ctx_t *c = *state;
    c->s = store_new(c->f.url, c->err, sizeof c->err);
    if (!c->s) print_error("store_new: %s\n", c->err);
    return c->s ? 0 : -1;
}

static int setup_store_persistent(void **state) {
    if (setup_persistent(state) < 0) return -1;
    ctx_t *c = *state;
    c->s = store_new(c->f.url, c->err, sizeof c->err);
    if (!c->s) print_error("store_new: %s\n", c->err);
    return c->s ? 0 : -1;
}

static int teardown(void **state) {
    ctx_t *c = *state;
    if (!c) return 0;
    store_destroy(c->s);
    if (c->raw) redisFree(c->raw);
    redis_fixture_cleanup(&c->f);
    free(c);
    return 0;
}

/* A fresh connection each time: a server may have restarted since. */
static redisReply *raw_cmd(ctx_t *c, const char *fmt, ...) {
    va_list ap;
    if (c->raw) redisFree(c->raw);
    c->raw = redis_fixture_connect(&c->f);
    assert_non_null(c->raw);
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c->raw, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    return r;
}

/* An integer stored as a string (GET or HGET); -1 when absent. */
static long long raw_int(ctx_t *c, const char *cmd, const char *key, const char *field) {
    redisReply *r = field ? raw_cmd(c, "%s %s %s", cmd, key, field) : raw_cmd(c, "%s %s", cmd, key);
    long long v = -1;
    if (r->type == REDIS_REPLY_STRING)
        v = strtoll(r->str, NULL, 10);
    else
        assert_int_equal(r->type, REDIS_REPLY_NIL);
    freeReplyObject(r);
    return v;
}

static long long hget(ctx_t *c, const char *key, const char *field) {
    return raw_int(c, "HGET", key, field);
}

/* A batch of n increments: field "f<i % fields>" of key by 1. */
static store_batch_t *incr_batch(const char *key, int n, int fields) {
    store_batch_t *b = store_batch_new();
    assert_non_null(b);
    for (int i = 0; i < n; i++) {
        char field[32];
        snprintf(field, sizeof field, "f%d", i % fields);
        assert_int_equal(store_batch_addv(b, 4, "HINCRBY", key, field, "1"), 0);
    }
    return b;
}

static int commit(ctx_t *c, const store_batch_t *b, int32_t partition, int64_t first, int64_t next,
                  int64_t *stored) {
    return store_commit(c->s, b, "{t}:offsets", partition, first, next, stored, c->err,
                        sizeof c->err);
}

/* ---- urls ---- */

/* A bad url is refused before any connection, with a reason that names the
 * part at fault, and never echoes a password. */
static void test_bad_urls_are_refused_with_a_reason(void **state) {
    (void)state;
    static const struct {
        const char *url, *reason;
    } cases[] = {
        {"http://localhost", "must start with redis:// or unix://"},
        {"localhost:6379", "must start with redis:// or unix://"},
        {"rediss://localhost", "TLS"},
        {"redis://", "missing host"},
        {"redis://:6379/0", "missing host"},
        {"redis://localhost:0", "port must be a number from 1 to 65535"},
        {"redis://localhost:65536", "port must be"},
        {"redis://localhost:63a9", "port must be"},
        {"redis://localhost:", "port must be"},
        {"redis://localhost/zero", "database must be a number"},
        {"redis://localhost/-1", "database must be a number"},
        {"redis://[::1:6379", "unterminated '['"},
        {"redis://bob@localhost", "credentials need a ':'"},
        {"redis://:@localhost", "empty password"},
        {"redis://:s3cr%zzt@localhost", "bad percent-encoding in the password"},
        {"redis://:s3cr%00t@localhost", "bad percent-encoding in the password"},
        {"redis://:s3cr3t@localhost:port", "port must be"},
        {"redis://localhost?timeout=3", "unknown option \"timeout\""},
        {"redis://localhost?db", "without '='"},
        {"unix://", "takes no host"},
        {"unix:///", "missing socket path"},
        {"unix://host/tmp/redis.sock", "takes no host"},
        {"unix:///tmp/redis.sock?db=two", "db must be a number"},
        {"unix:///tmp/redis.sock?user=alice", "a user needs a password"},
    };
    char err[512];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        err[0] = '\0';
        store_t *s = store_new(cases[i].url, err, sizeof err);
        if (s || !strstr(err, cases[i].reason) || strstr(err, "s3cr"))
            fail_msg("url %s: got \"%s\", want \"%s\"", cases[i].url, err, cases[i].reason);
    }

    char longpath[300] = "unix:///";
    memset(longpath + 8, 'x', 200);
    longpath[208] = '\0';
    assert_null(store_new(longpath, err, sizeof err));
    assert_non_null(strstr(err, "socket path longer than"));
    assert_null(store_new(NULL, err, sizeof err));
    /* errstr is optional. */
    assert_null(store_new("ftp://x", NULL, 0));
}

/* A server that is not there is reported at once, naming where, and the
 * store is not created. */
static void test_unreachable_server_is_reported(void **state) {
    ctx_t *c = *state;
    char url[256];
    double t0 = now_ms();
    assert_null(store_new("unix:///nonexistent-reel-dir/redis.sock", c->err, sizeof c->err));
    assert_non_null(strstr(c->err, "unix:/nonexistent-reel-dir/redis.sock"));
    assert_non_null(strstr(c->err, "No such file"));

    /* A TCP port nobody listens on any more: the fixture's, after stopping. */
    snprintf(url, sizeof url, "%s", c->f.tcp_url);
    assert_int_equal(redis_fixture_stop(&c->f), 0);
    assert_null(store_new(url, c->err, sizeof c->err));
    assert_non_null(strstr(c->err, "Connection refused"));
    assert_true(now_ms() - t0 < 1000);
}

/* "/db" and "?db=N" select the database the store writes to. */
static void test_url_selects_the_database(void **state) {
    ctx_t *c = *state;
    char url[256];

    snprintf(url, sizeof url, "%s?db=3", c->f.url);
    store_t *s = store_new(url, c->err, sizeof c->err);
    assert_non_null(s);
    redisReply *r = store_command(s, c->err, sizeof c->err, "SET where unix-db3");
    assert_non_null(r);
    freeReplyObject(r);
    store_destroy(s);

    snprintf(url, sizeof url, "%s/5", c->f.tcp_url);
    s = store_new(url, c->err, sizeof c->err);
    assert_non_null(s);
    r = store_command(s, c->err, sizeof c->err, "SET where tcp-db5");
    assert_non_null(r);
    freeReplyObject(r);
    store_destroy(s);

    /* The trailing "/" alone means db 0. */
    snprintf(url, sizeof url, "%s/", c->f.tcp_url);
    s = store_new(url, c->err, sizeof c->err);
    assert_non_null(s);
    store_destroy(s);

    assert_true(raw_int(c, "GET", "where", NULL) == -1); /* db 0 untouched */
    assert_non_null(c->raw);
    r = redisCommand(c->raw, "SELECT 3");
    freeReplyObject(r);
    r = redisCommand(c->raw, "GET where");
    assert_string_equal(r->str, "unix-db3");
    freeReplyObject(r);
    r = redisCommand(c->raw, "SELECT 5");
    freeReplyObject(r);
    r = redisCommand(c->raw, "GET where");
    assert_string_equal(r->str, "tcp-db5");
    freeReplyObject(r);

    /* A database the server does not have fails the connection. */
    snprintf(url, sizeof url, "%s/99", c->f.tcp_url);
    assert_null(store_new(url, c->err, sizeof c->err));
    assert_non_null(strstr(c->err, "SELECT"));
}

/* requirepass: no password, a wrong one and the right one (encoded or not);
 * an ACL user with its password, over TCP and over the unix socket. */
static void test_auth_with_password_and_acl_user(void **state) {
    ctx_t *c = *state;
    char url[256];
    redisReply *r = raw_cmd(c, "CONFIG SET requirepass %s", "p@ss/w:rd");
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);

    assert_null(store_new(c->f.tcp_url, c->err, sizeof c->err));
    assert_non_null(strstr(c->err, "requires a password"));

    snprintf(url, sizeof url, "redis://:wrong@127.0.0.1:%d", c->f.port);
    assert_null(store_new(url, c->err, sizeof c->err));
    assert_non_null(strstr(c->err, "WRONGPASS"));
    assert_null(strstr(c->err, "wrong")); /* the password is not echoed */

    snprintf(url, sizeof url, "redis://:p%%40ss%%2Fw%%3Ard@127.0.0.1:%d", c->f.port);
    store_t *s = store_new(url, c->err, sizeof c->err);
    if (!s) fail_msg("%s", c->err);
    r = store_command(s, c->err, sizeof c->err, "PING");
    assert_non_null(r);
    freeReplyObject(r);
    store_destroy(s);

    /* Unencoded '@' and '/' in the password are tolerated. */
    snprintf(url, sizeof url, "redis://:p@ss/w:rd@127.0.0.1:%d/0", c->f.port);
    s = store_new(url, c->err, sizeof c->err);
    if (!s) fail_msg("%s", c->err);
    store_destroy(s);

    /* The test's raw connection must authenticate too from now on. */
    redisFree(c->raw);
    c->raw = redis_fixture_connect(&c->f);
    r = redisCommand(c->raw, "AUTH %s", "p@ss/w:rd");
    freeReplyObject(r);
    r = redisCommand(c->raw, "ACL SETUSER alice on >s3cret ~* &* +@all");
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);

    snprintf(url, sizeof url, "redis://alice:s3cret@127.0.0.1:%d", c->f.port);
    s = store_new(url, c->err, sizeof c->err);
    if (!s) fail_msg("%s", c->err);
    r = store_command(s, c->err, sizeof c->err, "ACL WHOAMI");
    assert_non_null(r);
    assert_string_equal(r->str, "alice");
    freeReplyObject(r);
    store_destroy(s);

    snprintf(url, sizeof url, "redis://alice:nope@127.0.0.1:%d", c->f.port);
    assert_null(store_new(url, c->err, sizeof c->err));
    assert_non_null(strstr(c->err, "WRONGPASS"));

    snprintf(url, sizeof url, "%s?user=alice&password=s3cret", c->f.url);
    s = store_new(url, c->err, sizeof c->err);
    if (!s) fail_msg("%s", c->err);
    store_destroy(s);
}

/* Refused credentials are permanent (a worker must stop, not retry):
 * store_open() says so for no password, a wrong one, a disabled ACL user and
 * a user without the rights the store needs; a server that is down is not
 * permanent. A running store whose password was changed under it reports the
 * refusal on its reconnect (store_refused()). */
static void test_refused_credentials_are_permanent(void **state) {
    ctx_t *c = *state;
    char url[256];
    int permanent = -1;
    redisReply *r = raw_cmd(c, "ACL SETUSER alice on >s3cret ~* &* +@all");
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
    r = raw_cmd(c, "ACL SETUSER reader on >r3ader ~* +get +ping");
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);

    snprintf(url, sizeof url, "redis://alice:s3cret@127.0.0.1:%d", c->f.port);
    store_t *s = store_open(url, &permanent, c->err, sizeof c->err);
    if (!s) fail_msg("%s", c->err);
    assert_int_equal(permanent, 0);
    assert_int_equal(store_refused(s), 0);

    snprintf(url, sizeof url, "redis://alice:nope@127.0.0.1:%d", c->f.port);
    assert_null(store_open(url, &permanent, c->err, sizeof c->err));
    assert_int_equal(permanent, 1);
    assert_non_null(strstr(c->err, "authentication failed for user 'alice'"));
    assert_null(strstr(c->err, "nope"));

    /* reader may GET but not SCRIPT LOAD: refused, naming the command */
    snprintf(url, sizeof url, "redis://reader:r3ader@127.0.0.1:%d", c->f.port);
    assert_null(store_open(url, &permanent, c->err, sizeof c->err));
    assert_int_equal(permanent, 1);
    assert_non_null(strstr(c->err, "permission denied"));
    assert_non_null(strstr(c->err, "NOPERM"));

    /* nothing listens: may pass, retrying is right */
    assert_null(store_open("redis://127.0.0.1:1", &permanent, c->err, sizeof c->err));
    assert_int_equal(permanent, 0);
    /* a database the server does not have never appears */
    snprintf(url, sizeof url, "redis://alice:s3cret@127.0.0.1:%d/99", c->f.port);
    assert_null(store_open(url, &permanent, c->err, sizeof c->err));
    assert_int_equal(permanent, 1);
    /* a bad url never works */
    assert_null(store_open("http://x", &permanent, c->err, sizeof c->err));
    assert_int_equal(permanent, 1);

    /* The password changes while alice's store runs: its reconnect is
     * refused, and says so. */
    r = raw_cmd(c, "ACL SETUSER alice resetpass >n3w");
    freeReplyObject(r);
    store_mark_broken(s);
    assert_int_equal(store_ensure_connected(s, c->err, sizeof c->err), -1);
    assert_int_equal(store_refused(s), 1);
    assert_non_null(strstr(c->err, "WRONGPASS"));
    store_destroy(s);

    /* A disabled user likewise. */
    r = raw_cmd(c, "ACL SETUSER alice off");
    freeReplyObject(r);
    snprintf(url, sizeof url, "redis://alice:n3w@127.0.0.1:%d", c->f.port);
    assert_null(store_open(url, &permanent, c->err, sizeof c->err));
    assert_int_equal(permanent, 1);

    /* requirepass set and none given */
    r = raw_cmd(c, "CONFIG SET requirepass %s", "pw");
    freeReplyObject(r);
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", c->f.port);
    assert_null(store_open(url, &permanent, c->err, sizeof c->err));
    assert_int_equal(permanent, 1);
    assert_non_null(strstr(c->err, "requires a password"));
}

/* Urls are checked without a connection, and written for logs with every
 * password masked. */
static void test_url_check_and_redaction(void **state) {
    (void)state;
    char err[256], out[256];
    assert_int_equal(store_url_check("redis://u:pw@h:6379/2", err, sizeof err), 0);
    assert_int_equal(store_url_check("redis://h:99999", err, sizeof err), -1);
    assert_non_null(strstr(err, "port"));
    assert_int_equal(store_url_check(NULL, err, sizeof err), -1);
    static const char *const cases[][2] = {
        {"redis://user:s3cret@host:6379/1", "redis://user:***@host:6379/1"},
        {"redis://:s3cret@host", "redis://:***@host"},
        {"redis://:p@ss/w:rd@127.0.0.1:6380/0", "redis://:***@127.0.0.1:6380/0"},
        {"redis://host:6379", "redis://host:6379"},
        {"unix:///run/r.sock?db=2&user=u&password=s3cret",
         "unix:///run/r.sock?db=2&user=u&password=***"},
        {"unix:///run/r.sock?password=s3cret&db=1", "unix:///run/r.sock?password=***&db=1"},
        {"redis://tok3n@host", "redis://***@host"},
        {"not a url", "not a url"},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        store_url_redact(cases[i][0], out, sizeof out);
        assert_string_equal(out, cases[i][1]);
    }
    /* truncation keeps the string terminated and never shows the secret */
    char small[12];
    store_url_redact("redis://:s3cretpassword@host", small, sizeof small);
    assert_int_equal(strlen(small), sizeof small - 1);
    assert_null(strstr(small, "s3cret"));
}

/* ---- commits ---- */

/* A commit applies every command and records next_offset, in one round trip. */
static void test_commit_applies_commands_and_offset(void **state) {
    ctx_t *c = *state;
    store_batch_t *b = store_batch_new();
    int64_t stored = 99, off = 99;
    assert_int_equal(store_batch_addv(b, 4, "HINCRBY", "{t}:counts", "a", "1"), 0);
    assert_int_equal(store_batch_addv(b, 4, "HINCRBY", "{t}:counts", "b", "2"), 0);
    assert_int_equal(store_batch_addv(b, 3, "SET", "{t}:last", "42"), 0);
    assert_int_equal(store_batch_count(b), 3);

    assert_int_equal(store_get_offset(c->s, "{t}:offsets", 3, &off, c->err, sizeof c->err), 0);
    assert_int_equal(off, -1);
    uint64_t rt = store_round_trips(c->s);
    assert_int_equal(commit(c, b, 3, 0, 3, &stored), 1);
    assert_int_equal(store_round_trips(c->s) - rt, 1);
    assert_int_equal(stored, -1);

    assert_int_equal(hget(c, "{t}:counts", "a"), 1);
    assert_int_equal(hget(c, "{t}:counts", "b"), 2);
    assert_int_equal(raw_int(c, "GET", "{t}:last", NULL), 42);
    assert_int_equal(hget(c, "{t}:offsets", "3"), 3);
    assert_int_equal(store_get_offset(c->s, "{t}:offsets", 3, &off, c->err, sizeof c->err), 0);
    assert_int_equal(off, 3);
    /* Other partitions are independent. */
    assert_int_equal(store_get_offset(c->s, "{t}:offsets", 4, &off, c->err, sizeof c->err), 0);
    assert_int_equal(off, -1);
    store_batch_destroy(b);
}

/* A replayed batch must not change state: Redis keeps the count of one pass. */
static void test_replay_is_applied_once(void **state) {
    ctx_t *c = *state;
    store_batch_t *b = incr_batch("{t}:counts", 10, 2);
    int64_t stored;
    assert_int_equal(commit(c, b, 0, 100, 110, &stored), 1);
    assert_int_equal(commit(c, b, 0, 100, 110, &stored), 0);
    assert_int_equal(stored, 110);
    /* An older batch, entirely below the stored offset, is a replay too. */
    assert_int_equal(commit(c, b, 0, 90, 100, &stored), 0);
    assert_int_equal(hget(c, "{t}:counts", "f0"), 5);
    assert_int_equal(hget(c, "{t}:counts", "f1"), 5);
    assert_int_equal(hget(c, "{t}:offsets", "0"), 110);
    store_batch_destroy(b);
}

/* A batch that starts before the stored offset but ends after it would apply
 * some records twice: nothing is applied and the caller learns where to
 * resume. */
static void test_overlap_applies_nothing(void **state) {
    ctx_t *c = *state;
    store_batch_t *b = incr_batch("{t}:counts", 10, 1);
    int64_t stored;
    assert_int_equal(commit(c, b, 1, 0, 10, &stored), 1);
    assert_int_equal(commit(c, b, 1, 5, 15, &stored), 2);
    assert_int_equal(stored, 10);
    assert_int_equal(hget(c, "{t}:counts", "f0"), 10);
    assert_int_equal(hget(c, "{t}:offsets", "1"), 10);
    store_batch_destroy(b);
}

/* A guarded batch applies only while its guard key holds the expected
 * value (a missing key reads as ""): otherwise 4, nothing applied and the
 * offset not advanced, and the same batch applies once the guard holds. */
static void test_guard_refuses_a_moved_state(void **state) {
    ctx_t *c = *state;
    store_batch_t *b = incr_batch("{t}:counts", 4, 1);
    int64_t stored;
    assert_int_equal(store_batch_guard(b, "{t}:head", ""), 0);
    assert_int_equal(store_batch_addv(b, 3, "SET", "{t}:head", "1"), 0);
    assert_int_equal(commit(c, b, 3, 0, 10, &stored), 1);
    assert_int_equal(hget(c, "{t}:counts", "f0"), 4);

    store_batch_reset(b);
    assert_int_equal(store_batch_addv(b, 4, "HINCRBY", "{t}:counts", "f0", "1"), 0);
    assert_int_equal(store_batch_guard(b, "{t}:head", ""), 0); /* stale: head is "1" */
    assert_int_equal(commit(c, b, 3, 10, 20, &stored), 4);
    assert_int_equal(stored, 10);
    assert_int_equal(hget(c, "{t}:counts", "f0"), 4);
    assert_int_equal(hget(c, "{t}:offsets", "3"), 10);
    assert_int_equal(store_batch_guard(b, "{t}:head", "1"), 0);
    assert_int_equal(commit(c, b, 3, 10, 20, &stored), 1);
    assert_int_equal(hget(c, "{t}:counts", "f0"), 5);
    assert_int_equal(hget(c, "{t}:offsets", "3"), 20);

    /* reset drops the guard: an unguarded batch applies whatever the key. */
    store_batch_reset(b);
    assert_int_equal(store_batch_addv(b, 4, "HINCRBY", "{t}:counts", "f0", "1"), 0);
    assert_int_equal(commit(c, b, 3, 20, 30, &stored), 1);
    assert_int_equal(hget(c, "{t}:counts", "f0"), 6);
    store_batch_destroy(b);
}

/* A batch must continue from the stored offset: one starting past it is
 * refused (3: Redis lost writes the caller saw applied) and nothing is
 * applied; the caller bridges offsets Kafka skipped by passing the stored
 * offset as first_offset, and a batch starting exactly there applies. */
static void test_gap_is_refused_and_contiguous_batches_apply(void **state) {
    ctx_t *c = *state;
    store_batch_t *b = incr_batch("{t}:counts", 3, 1);
    int64_t stored;
    assert_int_equal(commit(c, b, 2, 0, 10, &stored), 1);
    assert_int_equal(commit(c, b, 2, 20, 30, &stored), 3);
    assert_int_equal(stored, 10);
    assert_int_equal(hget(c, "{t}:counts", "f0"), 3);
    assert_int_equal(hget(c, "{t}:offsets", "2"), 10);
    assert_int_equal(commit(c, b, 2, 10, 30, &stored), 1);
    assert_int_equal(stored, 10);
    assert_int_equal(commit(c, b, 2, 30, 31, &stored), 1);
    assert_int_equal(stored, 30);
    assert_int_equal(hget(c, "{t}:counts", "f0"), 9);
    assert_int_equal(hget(c, "{t}:offsets", "2"), 31);

    /* An empty batch (every record went to the DLQ) still moves the offset. */
    assert_int_equal(commit(c, NULL, 2, 31, 40, &stored), 1);
    store_batch_reset(b);
    assert_int_equal(commit(c, b, 2, 40, 41, &stored), 1);
    assert_int_equal(hget(c, "{t}:offsets", "2"), 41);
    assert_int_equal(hget(c, "{t}:counts", "f0"), 9);

    /* Nonsense offsets never reach Redis. */
    assert_int_equal(commit(c, b, 2, 50, 49, &stored), -1);
    assert_non_null(strstr(c->err, "bad offsets"));
    assert_int_equal(commit(c, b, 2, -1, 49, &stored), -1);
    store_batch_destroy(b);
}

/* 100k commands in one commit (500k script arguments) apply exactly, in one
 * round trip; the batch is reusable after a reset. */
static void test_large_batch_applies(void **state) {
    ctx_t *c = *state;
    store_batch_t *b = incr_batch("{big}:h", 100000, 1000);
    int64_t stored;
    assert_int_equal(store_batch_count(b), 100000);
    uint64_t rt = store_round_trips(c->s);
    double t0 = now_ms();
    assert_int_equal(
        store_commit(c->s, b, "{big}:offsets", 0, 0, 100000, &stored, c->err, sizeof c->err), 1);
    double took = now_ms() - t0;
    assert_int_equal(store_round_trips(c->s) - rt, 1);
    print_message("100k-command commit: %.0f ms\n", took);

    redisReply *r = raw_cmd(c, "HLEN {big}:h");
    assert_int_equal(r->integer, 1000);
    freeReplyObject(r);
    r = raw_cmd(c, "HGETALL {big}:h");
    assert_int_equal(r->elements, 2000);
    for (size_t i = 1; i < r->elements; i += 2) assert_string_equal(r->element[i]->str, "100");
    freeReplyObject(r);

    store_batch_reset(b);
    assert_int_equal(store_batch_count(b), 0);
    for (int i = 0; i < 100000; i++) store_batch_addv(b, 4, "HINCRBY", "{big}:h", "f0", "1");
    assert_int_equal(
        store_commit(c->s, b, "{big}:offsets", 0, 100000, 200000, &stored, c->err, sizeof c->err),
        1);
    assert_int_equal(hget(c, "{big}:h", "f0"), 100100);
    assert_int_equal(hget(c, "{big}:h", "f1"), 100);
    store_batch_destroy(b);
}

/* Arguments are binary safe and copied; argc is bounded by what the script's
 * unpack() can take. */
static void test_batch_arguments(void **state) {
    ctx_t *c = *state;
    store_batch_t *b = store_batch_new();
    char key[] = "{t}:bin", val[] = {'a', '\0', 'b'};
    const char *argv[3] = {"SET", key, val};
    size_t argvlen[3] = {3, sizeof key - 1, sizeof val};
    int64_t stored;

    assert_int_equal(store_batch_add(b, 3, argv, argvlen), 0);
    key[0] = 'X'; /* the batch holds its own copy */
    const char *cargv[3] = {"SET", "{t}:empty", ""};
    assert_int_equal(store_batch_add(b, 3, cargv, NULL), 0); /* NULL lengths: C strings */
    assert_int_equal(store_batch_add(b, 0, argv, argvlen), -1);
    assert_int_equal(store_batch_addv(b, 0), -1);
    assert_int_equal(store_batch_count(b), 2);

    /* The largest command allowed: HSET key + 3499 field/value pairs. */
    enum { ARGC = 7000 };
    const char **big = calloc(ARGC, sizeof *big);
    char(*names)[16] = calloc(ARGC, 16);
    big[0] = "HSET";
    big[1] = "{t}:wide";
    for (int i = 2; i < ARGC; i++) {
        snprintf(names[i], 16, "%d", i);
        big[i] = names[i];
    }
    assert_int_equal(store_batch_add(b, ARGC, big, NULL), 0);
    assert_int_equal(store_batch_add(b, ARGC + 1, big, NULL), -1);
    assert_int_equal(store_batch_count(b), 3);

    assert_int_equal(commit(c, b, 0, 0, 1, &stored), 1);
    redisReply *r = raw_cmd(c, "GET {t}:bin");
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_int_equal(r->len, 3);
    assert_memory_equal(r->str, val, 3);
    freeReplyObject(r);
    r = raw_cmd(c, "STRLEN {t}:empty");
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
    r = raw_cmd(c, "HLEN {t}:wide");
    assert_int_equal(r->integer, (ARGC - 2) / 2);
    freeReplyObject(r);
    free(big);
    free(names);
    store_batch_destroy(b);
}

/* Redis 7 cannot roll back a script's earlier writes when a command fails.
 * The error says how many commands were applied, the offset is not
 * advanced, and the store refuses to re-send that batch: the worker's retry
 * loop must not apply the first commands again and again. */
static void test_failing_command_is_reported_and_not_reapplied(void **state) {
    ctx_t *c = *state;
    store_batch_t *b = store_batch_new();
    int64_t stored, off;
    redisReply *r = raw_cmd(c, "SET {t}:str text");
    freeReplyObject(r);
    store_batch_addv(b, 4, "HINCRBY", "{t}:counts", "a", "1");
    store_batch_addv(b, 4, "HINCRBY", "{t}:str", "x", "1"); /* WRONGTYPE */
    store_batch_addv(b, 4, "HINCRBY", "{t}:counts", "b", "1");

    assert_int_equal(commit(c, b, 0, 0, 3, &stored), -1);
    assert_non_null(strstr(c->err, "command 2 of 3 failed, 1 applied: WRONGTYPE"));
    assert_int_equal(store_get_offset(c->s, "{t}:offsets", 0, &off, c->err, sizeof c->err), 0);
    assert_int_equal(off, -1);
    assert_int_equal(hget(c, "{t}:counts", "a"), 1);
    assert_int_equal(hget(c, "{t}:counts", "b"), -1);
    /* An error reply does not break the connection. */
    assert_non_null(store_redis(c->s));

    /* Retries of the same batch are refused without a round trip. */
    uint64_t rt = store_round_trips(c->s);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(commit(c, b, 0, 0, 3, &stored), -1);
        assert_non_null(strstr(c->err, "not re-sent"));
        assert_non_null(strstr(c->err, "WRONGTYPE"));
    }
    assert_int_equal(store_round_trips(c->s), rt);
    assert_int_equal(hget(c, "{t}:counts", "a"), 1);

    /* Another batch goes through, and clears the refusal. */
    store_batch_t *ok = incr_batch("{t}:other", 1, 1);
    assert_int_equal(commit(c, ok, 1, 0, 1, &stored), 1);
    r = raw_cmd(c, "DEL {t}:str");
    freeReplyObject(r);
    assert_int_equal(commit(c, b, 0, 0, 3, &stored), 1);
    assert_int_equal(hget(c, "{t}:counts", "a"), 2); /* the documented cost: applied twice */
    assert_int_equal(hget(c, "{t}:counts", "b"), 1);

    /* A failure at the first command applied nothing: retries are sent. */
    store_batch_reset(b);
    store_batch_addv(b, 4, "HINCRBY", "{t}:counts", "b", "x"); /* not an integer */
    store_batch_addv(b, 4, "HINCRBY", "{t}:counts", "a", "1");
    for (int i = 0; i < 2; i++) {
        rt = store_round_trips(c->s);
        assert_int_equal(commit(c, b, 0, 3, 5, &stored), -1);
        assert_non_null(strstr(c->err, "command 1 of 2 failed, none applied"));
        assert_int_equal(store_round_trips(c->s) - rt, 1);
    }
    assert_int_equal(hget(c, "{t}:counts", "a"), 2);
    assert_int_equal(hget(c, "{t}:offsets", "0"), 3);

    /* A non-numeric offset field is refused before anything is applied. */
    r = raw_cmd(c, "HSET {t}:offsets 7 garbage");
    freeReplyObject(r);
    assert_int_equal(commit(c, ok, 7, 0, 2, &stored), -1);
    assert_non_null(strstr(c->err, "not a number"));
    assert_int_equal(store_get_offset(c->s, "{t}:offsets", 7, &off, c->err, sizeof c->err), -1);
    assert_non_null(strstr(c->err, "not an offset"));
    assert_int_equal(hget(c, "{t}:other", "f0"), 1);
    store_batch_destroy(ok);
    store_batch_destroy(b);
}

/* When Redis forgets the script (SCRIPT FLUSH here; a restart or failover
 * behind a proxy in production) the commit re-sends it and applies once. */
static void test_noscript_resends_the_script(void **state) {
    ctx_t *c = *state;
    store_batch_t *b = incr_batch("{t}:counts", 4, 1);
    int64_t stored;
    assert_int_equal(commit(c, b, 0, 0, 4, &stored), 1);
    redisReply *r = raw_cmd(c, "SCRIPT FLUSH");
    freeReplyObject(r);

    uint64_t rt = store_round_trips(c->s);
    assert_int_equal(commit(c, b, 0, 4, 8, &stored), 1);
    assert_int_equal(store_round_trips(c->s) - rt, 2); /* EVALSHA, then EVAL */
    rt = store_round_trips(c->s);
    assert_int_equal(commit(c, b, 0, 8, 12, &stored), 1);
    assert_int_equal(store_round_trips(c->s) - rt, 1); /* EVAL cached it again */
    assert_int_equal(hget(c, "{t}:counts", "f0"), 12);
    assert_int_equal(hget(c, "{t}:offsets", "0"), 12);
    store_batch_destroy(b);
}

/* ---- failures ---- */

/* Redis restarts between two commits: the next commit finds the connection
 * gone and fails, store_ensure_connected() reconnects (loading the script
 * again), and the state persisted in the AOF is intact. */
static void test_restart_reconnects_with_state_intact(void **state) {
    ctx_t *c = *state;
    store_batch_t *b = incr_batch("{t}:counts", 5, 1);
    int64_t stored;
    assert_int_equal(commit(c, b, 0, 0, 5, &stored), 1);

    assert_int_equal(redis_fixture_restart(&c->f, c->err, sizeof c->err), 0);
    assert_int_equal(hget(c, "{t}:counts", "f0"), 5);

    /* The old connection is dead (EPIPE on the unix socket). */
    assert_int_equal(commit(c, b, 0, 5, 10, &stored), -1);
    assert_null(store_redis(c->s));
    assert_int_equal(store_ensure_connected(c->s, c->err, sizeof c->err), 0);
    assert_non_null(store_redis(c->s));
    assert_int_equal(commit(c, b, 0, 5, 10, &stored), 1);
    assert_int_equal(stored, 5);
    assert_int_equal(commit(c, b, 0, 0, 5, &stored), 0); /* the first batch, replayed */
    assert_int_equal(hget(c, "{t}:counts", "f0"), 10);
    assert_int_equal(hget(c, "{t}:offsets", "0"), 10);
    store_batch_destroy(b);
}

/* While Redis is down a commit fails at once (no hang); the worker's retry
 * loop with back-off applies the batch exactly once when Redis is back. */
static void test_commit_while_down_fails_fast_and_retry_applies_once(void **state) {
    ctx_t *c = *state;
    store_batch_t *b = incr_batch("{t}:counts", 3, 1);
    int64_t stored;
    assert_int_equal(commit(c, b, 0, 0, 3, &stored), 1);
    assert_int_equal(redis_fixture_stop(&c->f), 0);

    double t0 = now_ms();
    assert_int_equal(commit(c, b, 0, 3, 6, &stored), -1);
    assert_int_equal(commit(c, b, 0, 3, 6, &stored), -1); /* reconnect attempt fails too */
    assert_int_equal(store_ensure_connected(c->s, c->err, sizeof c->err), -1);
    assert_non_null(strstr(c->err, "connect"));
    assert_true(now_ms() - t0 < 1000);

    assert_int_equal(redis_fixture_restart(&c->f, c->err, sizeof c->err), 0);
    int rc = -1;
    for (unsigned attempt = 0; attempt < 10 && rc < 0; attempt++) {
        if (store_ensure_connected(c->s, c->err, sizeof c->err) == 0)
            rc = commit(c, b, 0, 3, 6, &stored);
        if (rc < 0) sleep_ms(store_backoff_ms(attempt));
    }
    assert_int_equal(rc, 1);
    assert_int_equal(commit(c, b, 0, 3, 6, &stored), 0);
    assert_int_equal(hget(c, "{t}:counts", "f0"), 6);
    assert_int_equal(hget(c, "{t}:offsets", "0"), 6);
    store_batch_destroy(b);
}

/* A reply lost after Redis applied the batch: the worker cannot tell, so it
 * sends the identical batch again, which must be a replay. */
static void test_retry_after_lost_reply_is_a_replay(void **state) {
    ctx_t *c = *state;
    store_batch_t *b = incr_batch("{t}:counts", 7, 7);
    int64_t stored;
    assert_int_equal(commit(c, b, 5, 70, 77, &stored), 1);
    assert_int_equal(commit(c, b, 5, 70, 77, &stored), 0);
    assert_int_equal(stored, 77);
    for (int i = 0; i < 7; i++) {
        char f[16];
        snprintf(f, sizeof f, "f%d", i);
        assert_int_equal(hget(c, "{t}:counts", f), 1);
    }
    store_batch_destroy(b);
}

/* A server that stops answering (SIGSTOP) does not hang the worker: the
 * commit times out with -1. The server, resumed, runs the commit it had
 * received, so this is a real lost reply; the retry is a replay. */
static void test_stalled_server_times_out_and_retry_is_a_replay(void **state) {
    ctx_t *c = *state;
    store_batch_t *b = incr_batch("{t}:counts", 4, 1);
    int64_t stored;
    assert_int_equal(kill(c->f.pid, SIGSTOP), 0);
    double t0 = now_ms();
    assert_int_equal(commit(c, b, 0, 0, 4, &stored), -1);
    double took = now_ms() - t0;
    assert_int_equal(kill(c->f.pid, SIGCONT), 0);
    assert_true(took > 4000 && took < 8000);
    assert_non_null(strstr(c->err, "retrying is safe"));

    /* Wait until the resumed server has run the stalled commit. */
    double deadline = now_ms() + 3000;
    while (hget(c, "{t}:offsets", "0") != 4 && now_ms() < deadline) sleep_ms(10);
    assert_int_equal(hget(c, "{t}:offsets", "0"), 4);

    assert_int_equal(store_ensure_connected(c->s, c->err, sizeof c->err), 0);
    assert_int_equal(commit(c, b, 0, 0, 4, &stored), 0);
    assert_int_equal(stored, 4);
    assert_int_equal(hget(c, "{t}:counts", "f0"), 4);
    store_batch_destroy(b);
}

/* ---- the rest of the api ---- */

static void test_command_round_trips_and_mark_broken(void **state) {
    ctx_t *c = *state;
    uint64_t rt = store_round_trips(c->s);
    redisReply *r = store_command(c->s, c->err, sizeof c->err, "SET %s %b", "{t}:k", "v\0w", 3);
    assert_non_null(r);
    freeReplyObject(r);
    r = store_command(c->s, c->err, sizeof c->err, "STRLEN %s", "{t}:k");
    assert_int_equal(r->integer, 3);
    freeReplyObject(r);
    assert_int_equal(store_round_trips(c->s) - rt, 2);

    /* An error reply is NULL with the reason, and the store stays usable. */
    assert_null(store_command(c->s, c->err, sizeof c->err, "HGET onlykey"));
    assert_non_null(strstr(c->err, "wrong number of arguments"));
    assert_non_null(store_redis(c->s));

    /* Pipelining through the borrowed context. */
    redisContext *ctx = store_redis(c->s);
    redisAppendCommand(ctx, "INCR {t}:p");
    redisAppendCommand(ctx, "INCR {t}:p");
    for (int i = 1; i <= 2; i++) {
        void *reply;
        assert_int_equal(redisGetReply(ctx, &reply), REDIS_OK);
        assert_int_equal(((redisReply *)reply)->integer, i);
        freeReplyObject(reply);
    }

    /* A caller that saw an I/O error marks the store; it reconnects. */
    store_mark_broken(c->s);
    assert_null(store_redis(c->s));
    rt = store_round_trips(c->s);
    assert_int_equal(store_ensure_connected(c->s, c->err, sizeof c->err), 0);
    assert_non_null(store_redis(c->s));
    assert_int_equal(store_round_trips(c->s) - rt, 1); /* SCRIPT LOAD */
    assert_int_equal(store_ensure_connected(c->s, c->err, sizeof c->err), 0);
    assert_int_equal(store_round_trips(c->s) - rt, 1); /* connected: nothing sent */
}

static void test_backoff_doubles_to_a_cap(void **state) {
    (void)state;
    assert_int_equal(store_backoff_ms(0), 50);
    assert_int_equal(store_backoff_ms(1), 100);
    assert_int_equal(store_backoff_ms(2), 200);
    assert_int_equal(store_backoff_ms(6), 3200);
    assert_int_equal(store_backoff_ms(7), 5000);
    assert_int_equal(store_backoff_ms(40), 5000);
    assert_int_equal(store_backoff_ms(UINT_MAX), 5000);
}

int main(void) {
    /* hiredis writes with write(2): a server that went away raises SIGPIPE,
     * which workers ignore too. */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_urls_are_refused_with_a_reason),
        cmocka_unit_test(test_backoff_doubles_to_a_cap),
        cmocka_unit_test_setup_teardown(test_unreachable_server_is_reported, setup_tcp, teardown),
        cmocka_unit_test_setup_teardown(test_url_selects_the_database, setup_tcp, teardown),
        cmocka_unit_test_setup_teardown(test_auth_with_password_and_acl_user, setup_tcp, teardown),
        cmocka_unit_test_setup_teardown(test_refused_credentials_are_permanent, setup_tcp,
                                        teardown),
        cmocka_unit_test(test_url_check_and_redaction),
        cmocka_unit_test_setup_teardown(test_commit_applies_commands_and_offset, setup_store,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_replay_is_applied_once, setup_store, teardown),
        cmocka_unit_test_setup_teardown(test_overlap_applies_nothing, setup_store, teardown),
        cmocka_unit_test_setup_teardown(test_guard_refuses_a_moved_state, setup_store, teardown),
        cmocka_unit_test_setup_teardown(test_gap_is_refused_and_contiguous_batches_apply,
                                        setup_store, teardown),
        cmocka_unit_test_setup_teardown(test_large_batch_applies, setup_store, teardown),
        cmocka_unit_test_setup_teardown(test_batch_arguments, setup_store, teardown),
        cmocka_unit_test_setup_teardown(test_failing_command_is_reported_and_not_reapplied,
                                        setup_store, teardown),
        cmocka_unit_test_setup_teardown(test_noscript_resends_the_script, setup_store, teardown),
        cmocka_unit_test_setup_teardown(test_restart_reconnects_with_state_intact,
                                        setup_store_persistent, teardown),
        cmocka_unit_test_setup_teardown(test_commit_while_down_fails_fast_and_retry_applies_once,
                                        setup_store_persistent, teardown),
        cmocka_unit_test_setup_teardown(test_retry_after_lost_reply_is_a_replay, setup_store,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_stalled_server_times_out_and_retry_is_a_replay,
                                        setup_store, teardown),
        cmocka_unit_test_setup_teardown(test_command_round_trips_and_mark_broken, setup_store,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
