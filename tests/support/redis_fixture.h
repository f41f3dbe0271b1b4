/* redis_fixture.h: a private redis-server for one test.
 *
 * Each fixture runs its own redis-server in a fresh temporary directory
 * ($TMPDIR or /tmp), listening on a unix socket there (and on 127.0.0.1 if
 * asked), so tests run in parallel and never touch a server they did not
 * start. The server dies with the test process (PR_SET_PDEATHSIG), so a
 * crashed test leaves no server behind.
 *
 *     redis_fixture_t f = {0};          // or {.port = -1} for TCP too
 *     if (redis_fixture_start(&f, 0, err, sizeof err) < 0) fail(err);
 *     store_t *s = store_new(f.url, err, sizeof err);
 *     ...
 *     redis_fixture_cleanup(&f);
 */
#ifndef REEL_TESTS_SUPPORT_REDIS_FIXTURE_H
#define REEL_TESTS_SUPPORT_REDIS_FIXTURE_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct redis_fixture {
    pid_t pid;      /* the running server; 0 when stopped */
    int persistent; /* appendonly yes + appendfsync always: state survives restart */
    /* Before the first start: 0 for the unix socket only, N > 0 to also
     * listen on 127.0.0.1:N, -1 for a free port chosen by the fixture.
     * After start: the TCP port, or 0. A restart keeps the same port. */
    int port;
    char dir[256];         /* the temporary directory: AOF, redis.log, socket */
    char socket_path[128]; /* <dir>/redis.sock */
    char url[160];         /* "unix://<dir>/redis.sock", for store_new() */
    char tcp_url[64];      /* "redis://127.0.0.1:<port>", or "" without TCP */
} redis_fixture_t;

/* Starts a server in a new temporary directory and waits (up to 10 s) until
 * it answers PING. f must be zeroed first, except port (see above).
 * Returns 0, or -1 with a reason in errstr (with the end of redis.log when
 * the server died). On failure the directory is removed. */
int redis_fixture_start(redis_fixture_t *f, int persistent, char *errstr, size_t errstr_size);

/* Stops the server (SIGTERM, then SIGKILL after 10 s) and waits for it. The
 * directory stays, so redis_fixture_restart() finds the AOF. A stopped
 * server's socket is gone: clients get "connection refused" or ENOENT at
 * once. Returns 0 when the server exited cleanly (or was not running). */
int redis_fixture_stop(redis_fixture_t *f);

/* Stops the server if it runs, then starts it again in the same directory,
 * on the same socket and port. With persistent, the data survive. */
int redis_fixture_restart(redis_fixture_t *f, char *errstr, size_t errstr_size);

/* Stops the server if it runs and removes the directory. Safe to call on a
 * zeroed or already cleaned fixture. */
void redis_fixture_cleanup(redis_fixture_t *f);

/* A plain hiredis connection to the server's unix socket (5 s timeouts),
 * for a test to inspect or prepare state behind the code under test's back.
 * The caller frees it with redisFree(). NULL if it cannot connect. */
redisContext *redis_fixture_connect(const redis_fixture_t *f);

#endif
