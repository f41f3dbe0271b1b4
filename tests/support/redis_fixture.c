/* redis_fixture.c: a private redis-server for one test (see redis_fixture.h). */
#include "tests/support/redis_fixture.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FIXTURE_START_TIMEOUT_MS 10000
#define FIXTURE_STOP_TIMEOUT_MS 10000

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

/* A port nobody listens on now. Another process may take it before redis
 * does; tests that need TCP are few and the window is short. */
static int free_port(void) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    socklen_t len = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;
    if (fd < 0) return -1;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

/* The last lines of redis.log, so a failed start explains itself. */
static void log_tail(const redis_fixture_t *f, char *buf, size_t n) {
    char path[300];
    buf[0] = '\0';
    snprintf(path, sizeof path, "%s/redis.log", f->dir);
    FILE *fp = fopen(path, "r");
    if (!fp) return;
    if (fseek(fp, 0, SEEK_END) == 0) {
        long size = ftell(fp);
        long from = size > (long)n - 1 ? size - ((long)n - 1) : 0;
        fseek(fp, from, SEEK_SET);
        size_t got = fread(buf, 1, n - 1, fp);
        buf[got] = '\0';
    }
    fclose(fp);
}

/* Forks and execs redis-server in f->dir; stdout and stderr are appended to
 * <dir>/redis.log (appended, so a restart keeps the earlier run's log). */
static int spawn(redis_fixture_t *f, char *errstr, size_t n) {
    char port[16], logpath[300];
    const char *server = getenv("REDIS_SERVER") ? getenv("REDIS_SERVER") : "redis-server";
    const char *argv[32];
    int a = 0;

    snprintf(port, sizeof port, "%d", f->port);
    snprintf(logpath, sizeof logpath, "%s/redis.log", f->dir);
    argv[a++] = server;
    argv[a++] = "--port";
    argv[a++] = port;
    if (f->port > 0) {
        argv[a++] = "--bind";
        argv[a++] = "127.0.0.1";
    }
    argv[a++] = "--unixsocket";
    argv[a++] = f->socket_path;
    argv[a++] = "--unixsocketperm";
    argv[a++] = "700";
    argv[a++] = "--dir";
    argv[a++] = f->dir;
    argv[a++] = "--save";
    argv[a++] = "";
    argv[a++] = "--appendonly";
    argv[a++] = f->persistent ? "yes" : "no";
    if (f->persistent) {
        argv[a++] = "--appendfsync";
        argv[a++] = "always";
    }
    argv[a++] = "--daemonize";
    argv[a++] = "no";
    argv[a++] = NULL;

    int logfd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (logfd < 0) {
        snprintf(errstr, n, "%s: %s", logpath, strerror(errno));
        return -1;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(errstr, n, "fork: %s", strerror(errno));
        close(logfd);
        return -1;
    }
    if (pid == 0) {
        /* Only async-signal-safe calls from here to exec. The server must
         * not outlive a test that crashes or is killed by ctest's timeout. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent) _exit(127);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) dup2(devnull, 0);
        dup2(logfd, 1);
        dup2(logfd, 2);
        execvp(server, (char *const *)argv);
        static const char msg[] = "redis_fixture: cannot exec redis-server\n";
        ssize_t w = write(2, msg, sizeof msg - 1);
        (void)w;
        _exit(127);
    }
    close(logfd);
    f->pid = pid;
    return 0;
}

/* Waits until the server answers PING with PONG; a server still loading its
 * AOF answers LOADING, so waiting for PONG means the data are back. */
static int wait_ready(redis_fixture_t *f, char *errstr, size_t n) {
    double deadline = now_ms() + FIXTURE_START_TIMEOUT_MS;
    struct timeval tv = {0, 200000};
    for (;;) {
        int status;
        if (waitpid(f->pid, &status, WNOHANG) == f->pid) {
            char tail[600];
            f->pid = 0;
            log_tail(f, tail, sizeof tail);
            snprintf(errstr, n, "redis-server exited (%s %d) before answering; %s/redis.log: %s",
                     WIFEXITED(status) ? "status" : "signal",
                     WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), f->dir, tail);
            return -1;
        }
        redisContext *c = redisConnectUnixWithTimeout(f->socket_path, tv);
        if (c && !c->err) {
            redisSetTimeout(c, tv);
            redisReply *r = redisCommand(c, "PING");
            int ok = r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
            if (r) freeReplyObject(r);
            if (ok) {
                redisFree(c);
                return 0;
            }
        }
        if (c) redisFree(c);
        if (now_ms() > deadline) {
            snprintf(errstr, n, "redis-server did not answer PING within %d ms (see %s/redis.log)",
                     FIXTURE_START_TIMEOUT_MS, f->dir);
            redis_fixture_stop(f);
            return -1;
        }
        sleep_ms(10);
    }
}

static int rm_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw) {
    (void)sb;
    (void)type;
    (void)ftw;
    remove(path);
    return 0;
}

static void remove_dir(redis_fixture_t *f) {
    if (f->dir[0]) nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    f->dir[0] = '\0';
}

int redis_fixture_start(redis_fixture_t *f, int persistent, char *errstr, size_t errstr_size) {
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp) tmp = "/tmp";
    if (f->pid > 0) {
        snprintf(errstr, errstr_size, "redis fixture already running (pid %d)", (int)f->pid);
        return -1;
    }
    f->persistent = persistent;
    if (f->port < 0 && (f->port = free_port()) < 0) {
        snprintf(errstr, errstr_size, "no free TCP port on 127.0.0.1");
        return -1;
    }
    if ((size_t)snprintf(f->dir, sizeof f->dir, "%s/reel-redis-XXXXXX", tmp) >= sizeof f->dir) {
        snprintf(errstr, errstr_size, "TMPDIR too long");
        f->dir[0] = '\0';
        return -1;
    }
    if (!mkdtemp(f->dir)) {
        snprintf(errstr, errstr_size, "mkdtemp %s: %s", f->dir, strerror(errno));
        f->dir[0] = '\0';
        return -1;
    }
    /* sun_path holds 107 bytes; a long TMPDIR would otherwise make redis
     * fail with a less obvious message. */
    int len = snprintf(f->socket_path, sizeof f->socket_path, "%s/redis.sock", f->dir);
    if (len < 0 || (size_t)len >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        snprintf(errstr, errstr_size, "socket path under %s is too long; set a shorter TMPDIR",
                 tmp);
        goto fail;
    }
    snprintf(f->url, sizeof f->url, "unix://%s", f->socket_path);
    if (f->port > 0)
        snprintf(f->tcp_url, sizeof f->tcp_url, "redis://127.0.0.1:%d", f->port);
    else
        f->tcp_url[0] = '\0';
    if (spawn(f, errstr, errstr_size) < 0) goto fail;
    if (wait_ready(f, errstr, errstr_size) < 0) goto fail;
    return 0;
fail:
    redis_fixture_stop(f);
    remove_dir(f);
    return -1;
}

int redis_fixture_stop(redis_fixture_t *f) {
    int status = 0;
    if (f->pid <= 0) return 0;
    /* A test may have stopped the server with SIGSTOP; SIGTERM alone would
     * then wait forever. */
    kill(f->pid, SIGCONT);
    kill(f->pid, SIGTERM);
    double deadline = now_ms() + FIXTURE_STOP_TIMEOUT_MS;
    for (;;) {
        pid_t w = waitpid(f->pid, &status, WNOHANG);
        if (w == f->pid || (w < 0 && errno != EINTR)) break;
        if (now_ms() > deadline) {
            kill(f->pid, SIGKILL);
            waitpid(f->pid, &status, 0);
            status = -1;
            break;
        }
        sleep_ms(5);
    }
    f->pid = 0;
    return status == 0 ? 0 : -1;
}

int redis_fixture_restart(redis_fixture_t *f, char *errstr, size_t errstr_size) {
    if (!f->dir[0]) {
        snprintf(errstr, errstr_size, "redis fixture was never started");
        return -1;
    }
    redis_fixture_stop(f);
    if (spawn(f, errstr, errstr_size) < 0) return -1;
    return wait_ready(f, errstr, errstr_size);
}

void redis_fixture_cleanup(redis_fixture_t *f) {
    redis_fixture_stop(f);
    remove_dir(f);
}

redisContext *redis_fixture_connect(const redis_fixture_t *f) {
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectUnixWithTimeout(f->socket_path, tv);
    if (!c) return NULL;
    if (c->err || redisSetTimeout(c, tv) != REDIS_OK) {
        redisFree(c);
        return NULL;
    }
    return c;
}
