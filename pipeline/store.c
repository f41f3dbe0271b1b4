/* store.c: Redis state for workers, over hiredis 0.14 (see store.h).
 *
 * hiredis 0.14 writes with write(2), not send(MSG_NOSIGNAL): a write to a
 * connection Redis has closed raises SIGPIPE. The process must ignore
 * SIGPIPE (workers do, as librdkafka also asks); the store then sees EPIPE,
 * marks itself broken and reconnects on the next store_ensure_connected(). */
#include "pipeline/store.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/un.h>

/* A dead server must never hang a worker: connects give up after 3 s and
 * every command after 5 s (the connection is then broken, and a commit whose
 * reply timed out is safe to retry). A batch whose script runs longer than
 * 5 s always times out, so batches are kept well below that (100k commands
 * run in a fraction of a second). */
#define STORE_CONNECT_TIMEOUT_MS 3000
#define STORE_COMMAND_TIMEOUT_MS 5000

#define STORE_BACKOFF_FIRST_MS 50u
#define STORE_BACKOFF_MAX_MS 5000u

/* The script applies one command with unpack(), which Redis's Lua limits to
 * about 7990 values (LUAI_MAXCSTACK); a command must stay below that. */
#define STORE_MAX_ARGC 7000

/* The commit script. KEYS[1] = offsets hash, KEYS[2] = the guard key (or
 * KEYS[1] again when there is none); ARGV = partition, first offset, next
 * offset, number of commands, guard flag ('1': KEYS[2] must hold ARGV[6],
 * a missing key reading as ''), the guard value, then for each command its
 * argc followed by its arguments. Returns {code, stored} with stored as the string found
 * (so the C side parses it exactly; the comparisons here use Lua doubles,
 * exact for offsets below 2^53).
 *
 * Atomicity caveat: Redis runs the script with no other client in between,
 * but Redis 7 does not roll back writes made before a command that fails
 * (WRONGTYPE, a hash field that is not an integer, an overflow...). The
 * script stops at the first failing command, does not advance the offset,
 * and says how many commands it applied before: "PARTIAL command k of n
 * failed, k-1 applied: ..." (or "CMDFAILED ... none applied" for the first,
 * which is safe to retry). Such a failure is deterministic, so a retry would
 * only apply the first k-1 commands again: store_commit() refuses to re-send
 * a batch that failed PARTIAL (see failed_* in struct store). A batch must
 * therefore hold only commands that cannot fail on the data they meet.
 * Running out of memory cannot cause PARTIAL: Redis 7 refuses a script's
 * write for maxmemory only before its first write.
 *
 * The commands touch keys the script does not declare, which standalone
 * Redis allows; on Redis Cluster they would have to share offsets_key's hash
 * slot. */
static const char commit_script[] =
    "local stored = redis.call('HGET', KEYS[1], ARGV[1])\n"
    "if not stored then stored = '-1' end\n"
    "local s = tonumber(stored)\n"
    "if not s then return redis.error_reply('ERR offset field ' .. ARGV[1] .. ' of ' .. KEYS[1] "
    ".. ' is not a number') end\n"
    "local first = tonumber(ARGV[2])\n"
    "local nxt = tonumber(ARGV[3])\n"
    "if s >= nxt then return {0, stored} end\n"
    "if first < s then return {2, stored} end\n"
    "if s >= 0 and first > s then return {3, stored} end\n"
    "if ARGV[5] == '1' and (redis.call('GET', KEYS[2]) or '') ~= ARGV[6] then\n"
    "  return {4, stored}\n"
    "end\n"
    "local n = tonumber(ARGV[4])\n"
    "local i = 7\n"
    "for c = 1, n do\n"
    "  local argc = tonumber(ARGV[i])\n"
    "  local r = redis.pcall(unpack(ARGV, i + 1, i + argc))\n"
    "  if type(r) == 'table' and r.err then\n"
    "    if c == 1 then\n"
    "      return redis.error_reply('CMDFAILED command 1 of ' .. n .. ' failed, none applied: ' "
    ".. r.err)\n"
    "    end\n"
    "    return redis.error_reply('PARTIAL command ' .. c .. ' of ' .. n .. ' failed, ' .. (c - 1) "
    ".. ' applied: ' .. r.err)\n"
    "  end\n"
    "  i = i + 1 + argc\n"
    "end\n"
    "redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])\n"
    "return {1, stored}\n";

/* One argument of a batch: where its bytes start in the arena, and how many. */
typedef struct batch_part {
    size_t off;
    size_t len;
} batch_part_t;

/* A batch is two growable arrays, whatever its size: the bytes of every
 * argument (each command's argc first, as decimal text, so a commit sends
 * the batch as it lies), and where each argument starts. Batches of 100k
 * commands thus cost a few reallocs, not one malloc per argument. */
struct store_batch {
    char *arena;
    size_t arena_len, arena_cap;
    batch_part_t *parts;
    size_t n_parts, parts_cap;
    size_t n_cmds;
    char *guard_key, *guard_value; /* NULL: no guard */
};

struct store {
    /* From the url; the strings are owned. */
    int is_unix;
    char *host; /* TCP */
    int port;
    char *path; /* unix socket */
    char *user; /* NULL: AUTH password alone (or no AUTH) */
    char *password;
    int db;

    redisContext *c; /* NULL before the first connection */
    int broken;      /* c must not be used; store_ensure_connected() replaces it */
    int refused;     /* the last connect failed on credentials or permissions */
    char sha[41];    /* of commit_script, from SCRIPT LOAD */
    uint64_t round_trips;

    /* The last commit that failed PARTIAL (offsets_key NULL: none). The same
     * commit again would re-apply its first commands, so it is refused here
     * without a round trip; any successful commit clears this. */
    char *failed_key;
    int32_t failed_partition;
    int64_t failed_first, failed_next;
    char failed_err[256];

    /* Argument vectors of the last commit, reused so that a commit allocates
     * only when a batch is larger than any before. */
    const char **argv;
    size_t *argvlen;
    size_t argv_cap;
};

static void set_err(char *errstr, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *errstr, size_t n, const char *fmt, ...) {
    if (!errstr || n == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errstr, n, fmt, ap);
    va_end(ap);
}

/* ---- url ---- */

static int hexval(int ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* Returns a malloc'd, percent-decoded copy of src[0..len), or NULL with
 * errstr. "%00" is refused: the result is used as a C string. what names
 * the part for the message; the bytes themselves are never echoed because
 * they may be a password. */
static char *url_decode(const char *src, size_t len, const char *what, char *errstr, size_t n) {
    char *out = malloc(len + 1);
    size_t o = 0;
    if (!out) {
        set_err(errstr, n, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < len; i++) {
        if (src[i] != '%') {
            out[o++] = src[i];
            continue;
        }
        int hi = i + 2 < len ? hexval((unsigned char)src[i + 1]) : -1;
        int lo = i + 2 < len ? hexval((unsigned char)src[i + 2]) : -1;
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
            set_err(errstr, n, "redis url: bad percent-encoding in the %s", what);
            free(out);
            return NULL;
        }
        out[o++] = (char)(hi * 16 + lo);
        i += 2;
    }
    out[o] = '\0';
    return out;
}

/* Parses a decimal number of len bytes in [min, max]; -1 if it is not one. */
static long long parse_num(const char *p, size_t len, long long min, long long max) {
    long long v = 0;
    if (len == 0 || len > 18) return -1;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)p[i])) return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v < min || v > max ? -1 : v;
}

/* userinfo is "user:password" or ":password". */
static int parse_userinfo(store_t *s, const char *p, size_t len, char *errstr, size_t n) {
    const char *colon = memchr(p, ':', len);
    if (!colon) {
        set_err(errstr, n,
                "redis url: credentials need a ':' (redis://user:password@host, or "
                "redis://:password@host for a password alone)");
        return -1;
    }
    size_t ulen = (size_t)(colon - p);
    if (ulen > 0 && !(s->user = url_decode(p, ulen, "user", errstr, n))) return -1;
    if (!(s->password = url_decode(colon + 1, len - ulen - 1, "password", errstr, n))) return -1;
    if (s->password[0] == '\0') {
        set_err(errstr, n, "redis url: empty password");
        return -1;
    }
    return 0;
}

/* Query options: db, user and password (the latter two mostly for unix
 * sockets, where a config file may prefer them out of the path). */
static int parse_query(store_t *s, const char *q, char *errstr, size_t n) {
    while (*q) {
        size_t len = strcspn(q, "&");
        const char *eq = memchr(q, '=', len);
        if (!eq) {
            set_err(errstr, n, "redis url: option without '=' in the query");
            return -1;
        }
        size_t klen = (size_t)(eq - q), vlen = len - klen - 1;
        const char *v = eq + 1;
        if (klen == 2 && memcmp(q, "db", 2) == 0) {
            long long db = parse_num(v, vlen, 0, INT_MAX);
            if (db < 0) {
                set_err(errstr, n, "redis url: db must be a number >= 0");
                return -1;
            }
            s->db = (int)db;
        } else if (klen == 4 && memcmp(q, "user", 4) == 0) {
            free(s->user);
            if (!(s->user = url_decode(v, vlen, "user", errstr, n))) return -1;
        } else if (klen == 8 && memcmp(q, "password", 8) == 0) {
            free(s->password);
            if (!(s->password = url_decode(v, vlen, "password", errstr, n))) return -1;
        } else {
            set_err(errstr, n, "redis url: unknown option \"%.*s\" (known: db, user, password)",
                    (int)(klen > 32 ? 32 : klen), q);
            return -1;
        }
        q += len;
        if (*q == '&') q++;
    }
    if (s->user && !s->password) {
        set_err(errstr, n, "redis url: a user needs a password");
        return -1;
    }
    return 0;
}

/* Fills s's url fields. Reserved characters in the credentials are best
 * percent-encoded; an '@' or '/' in a password is tolerated because the
 * credentials end at the last '@' before the query. A '?' must be encoded. */
static int parse_url(store_t *s, const char *url, char *errstr, size_t n) {
    const char *rest;
    if (strncmp(url, "redis://", 8) == 0) {
        rest = url + 8;
    } else if (strncmp(url, "unix://", 7) == 0) {
        s->is_unix = 1;
        rest = url + 7;
    } else if (strncmp(url, "rediss://", 9) == 0) {
        set_err(errstr, n, "redis url: TLS (rediss://) is not supported by hiredis 0.14");
        return -1;
    } else {
        set_err(errstr, n,
                "redis url must start with redis:// or unix:// "
                "(redis://[user:password@]host[:port][/db] or unix:///path[?db=N])");
        return -1;
    }

    const char *query = strchr(rest, '?');
    const char *end = query ? query : rest + strlen(rest);
    const char *at = NULL;
    for (const char *p = rest; p < end; p++)
        if (*p == '@') at = p;
    if (at) {
        if (parse_userinfo(s, rest, (size_t)(at - rest), errstr, n) < 0) return -1;
        rest = at + 1;
    }

    if (s->is_unix) {
        /* unix:///path: an empty host, then the absolute path. */
        if (*rest != '/') {
            set_err(errstr, n, "redis url: a unix url takes no host (unix:///path/to/socket)");
            return -1;
        }
        if (rest == end || end - rest == 1) {
            set_err(errstr, n, "redis url: missing socket path (unix:///path/to/socket)");
            return -1;
        }
        if (!(s->path = url_decode(rest, (size_t)(end - rest), "socket path", errstr, n)))
            return -1;
        /* hiredis 0.14 silently truncates a longer path to sun_path. */
        if (strlen(s->path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
            set_err(errstr, n, "redis url: socket path longer than %zu bytes",
                    sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
            return -1;
        }
    } else {
        const char *slash = memchr(rest, '/', (size_t)(end - rest));
        const char *hend = slash ? slash : end;
        const char *hstart = rest, *colon = NULL;
        if (*rest == '[') { /* [IPv6]:port */
            const char *rb = memchr(rest, ']', (size_t)(hend - rest));
            if (!rb) {
                set_err(errstr, n, "redis url: unterminated '[' in the host");
                return -1;
            }
            hstart = rest + 1;
            colon = rb + 1 < hend ? rb + 1 : NULL;
            if (colon && *colon != ':') {
                set_err(errstr, n, "redis url: junk after ']' in the host");
                return -1;
            }
            hend = rb;
        } else {
            colon = memchr(rest, ':', (size_t)(hend - rest));
        }
        const char *hostend = colon && !(*rest == '[') ? colon : hend;
        if (hostend == hstart) {
            set_err(errstr, n, "redis url: missing host (redis://host[:port][/db])");
            return -1;
        }
        if (!(s->host = strndup(hstart, (size_t)(hostend - hstart)))) {
            set_err(errstr, n, "out of memory");
            return -1;
        }
        s->port = 6379;
        if (colon) {
            const char *pend = slash ? slash : end;
            long long port = parse_num(colon + 1, (size_t)(pend - colon - 1), 1, 65535);
            if (port < 0) {
                set_err(errstr, n, "redis url: port must be a number from 1 to 65535");
                return -1;
            }
            s->port = (int)port;
        }
        if (slash && end - slash > 1) {
            long long db = parse_num(slash + 1, (size_t)(end - slash - 1), 0, INT_MAX);
            if (db < 0) {
                set_err(errstr, n, "redis url: database must be a number >= 0 (redis://host/2)");
                return -1;
            }
            s->db = (int)db;
        }
    }
    return query ? parse_query(s, query + 1, errstr, n) : 0;
}

/* Where the store connects, for messages; never the credentials. */
static void describe(const store_t *s, char *buf, size_t n) {
    if (s->is_unix)
        snprintf(buf, n, "redis unix:%s", s->path);
    else
        snprintf(buf, n, "redis %s:%d", s->host, s->port);
}

/* ---- connection ---- */

static struct timeval ms_tv(int ms) {
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    return tv;
}

/* One command on c, counted as a round trip. */
static redisReply *round_trip(store_t *s, redisContext *c, int argc, const char **argv,
                              const size_t *argvlen) {
    s->round_trips++;
    return redisCommandArgv(c, argc, argv, argvlen);
}

/* Runs a setup command on a fresh connection. Returns its reply (the caller
 * frees it), or NULL with errstr for an I/O error or an error reply. */
static redisReply *setup_cmd(store_t *s, redisContext *c, const char *what, int argc,
                             const char **argv, char *errstr, size_t n) {
    char where[160];
    describe(s, where, sizeof where);
    redisReply *r = round_trip(s, c, argc, argv, NULL);
    if (!r) {
        set_err(errstr, n, "%s: %s: %s", where, what, c->errstr);
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        /* Credentials and permissions do not fix themselves: the store says
         * so (store_refused()), so that callers fail at once instead of
         * retrying for ever. Redis's replies never echo the password. */
        if (strncmp(r->str, "NOAUTH", 6) == 0) {
            s->refused = 1;
            set_err(errstr, n,
                    "%s: authentication failed: the server requires a password "
                    "(redis://:password@host or redis://user:password@host): %s",
                    where, r->str);
        } else if (strncmp(r->str, "WRONGPASS", 9) == 0 ||
                   (strcmp(what, "AUTH") == 0 && strncmp(r->str, "ERR", 3) == 0)) {
            /* WRONGPASS (Redis 6+), "ERR invalid password" (older), "ERR
             * AUTH <password> called without any password configured";
             * not LOADING or BUSY, which pass. */
            s->refused = 1;
            set_err(errstr, n, "%s: authentication failed%s%s%s: %s", where,
                    s->user ? " for user '" : "", s->user ? s->user : "", s->user ? "'" : "",
                    r->str);
        } else if (strncmp(r->str, "NOPERM", 6) == 0) {
            s->refused = 1;
            set_err(errstr, n, "%s: %s: permission denied%s%s%s: %s", where, what,
                    s->user ? " for user '" : "", s->user ? s->user : "", s->user ? "'" : "",
                    r->str);
        } else {
            /* A database the server does not have will not appear either;
             * other errors (LOADING after a restart, BUSY) pass. */
            if (strcmp(what, "SELECT") == 0 && strstr(r->str, "out of range")) s->refused = 1;
            set_err(errstr, n, "%s: %s: %s", where, what, r->str);
        }
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

/* Opens a new connection, authenticates, selects the db and loads the
 * commit script; on success it replaces s->c. On failure s is unchanged. */
static int store_connect(store_t *s, char *errstr, size_t n) {
    char where[160];
    redisContext *c = NULL;
    redisReply *r = NULL;

    describe(s, where, sizeof where);
    s->refused = 0;
    if (s->is_unix)
        c = redisConnectUnixWithTimeout(s->path, ms_tv(STORE_CONNECT_TIMEOUT_MS));
    else
        c = redisConnectWithTimeout(s->host, s->port, ms_tv(STORE_CONNECT_TIMEOUT_MS));
    if (!c) {
        set_err(errstr, n, "%s: out of memory", where);
        goto fail;
    }
    if (c->err) {
        set_err(errstr, n, "%s: connect: %s", where, c->errstr);
        goto fail;
    }
    if (redisSetTimeout(c, ms_tv(STORE_COMMAND_TIMEOUT_MS)) != REDIS_OK) {
        set_err(errstr, n, "%s: setting the command timeout: %s", where, c->errstr);
        goto fail;
    }
    /* Keepalive finds a peer that vanished without closing (a host down)
     * while the connection is idle. */
    if (!s->is_unix) redisEnableKeepAlive(c);

    if (s->password) {
        const char *argv[3] = {"AUTH", s->user ? s->user : s->password, s->password};
        if (!(r = setup_cmd(s, c, "AUTH", s->user ? 3 : 2, argv, errstr, n))) goto fail;
        freeReplyObject(r);
    }
    if (s->db != 0) {
        char db[16];
        snprintf(db, sizeof db, "%d", s->db);
        const char *argv[2] = {"SELECT", db};
        if (!(r = setup_cmd(s, c, "SELECT", 2, argv, errstr, n))) goto fail;
        freeReplyObject(r);
    }
    const char *argv[3] = {"SCRIPT", "LOAD", commit_script};
    if (!(r = setup_cmd(s, c, "SCRIPT LOAD", 3, argv, errstr, n))) goto fail;
    if (r->type != REDIS_REPLY_STRING || r->len != 40) {
        set_err(errstr, n, "%s: SCRIPT LOAD: unexpected reply", where);
        goto fail;
    }
    memcpy(s->sha, r->str, 40);
    s->sha[40] = '\0';
    freeReplyObject(r);

    if (s->c) redisFree(s->c);
    s->c = c;
    s->broken = 0;
    return 0;
fail:
    if (r) freeReplyObject(r);
    if (c) redisFree(c);
    return -1;
}

store_t *store_open(const char *url, int *permanent, char *errstr, size_t errstr_size) {
    store_t *s = NULL;
    if (permanent) *permanent = 1;
    if (!url) {
        set_err(errstr, errstr_size, "redis url: none given");
        return NULL;
    }
    if (!(s = calloc(1, sizeof *s))) {
        set_err(errstr, errstr_size, "out of memory");
        if (permanent) *permanent = 0;
        return NULL;
    }
    if (parse_url(s, url, errstr, errstr_size) < 0) goto fail;
    if (store_connect(s, errstr, errstr_size) < 0) {
        if (permanent) *permanent = s->refused;
        goto fail;
    }
    if (permanent) *permanent = 0;
    return s;
fail:
    store_destroy(s);
    return NULL;
}

store_t *store_new(const char *url, char *errstr, size_t errstr_size) {
    return store_open(url, NULL, errstr, errstr_size);
}

int store_refused(const store_t *s) {
    return s->refused;
}

int store_url_check(const char *url, char *errstr, size_t errstr_size) {
    store_t *s = calloc(1, sizeof *s);
    if (!s) {
        set_err(errstr, errstr_size, "out of memory");
        return -1;
    }
    int rc = url ? parse_url(s, url, errstr, errstr_size) : -1;
    if (!url) set_err(errstr, errstr_size, "redis url: none given");
    store_destroy(s);
    return rc;
}

int store_url_password(const char *url, char *out, size_t out_size) {
    if (!out || out_size == 0) return 0;
    out[0] = '\0';
    store_t *s = url ? calloc(1, sizeof *s) : NULL;
    if (!s) return 0;
    char err[256];
    int found = 0;
    if (parse_url(s, url, err, sizeof err) == 0 && s->password) {
        snprintf(out, out_size, "%s", s->password);
        found = 1;
    }
    store_destroy(s);
    return found;
}

/* Copies [src, src+n) into out at *o, bounded by size (always leaving room
 * for the terminating NUL). */
static void put_span(char *out, size_t size, size_t *o, const char *src, size_t n) {
    for (size_t i = 0; i < n && *o + 1 < size; i++) out[(*o)++] = src[i];
}

void store_url_redact(const char *url, char *out, size_t out_size) {
    static const char mask[] = "***";
    if (!out || out_size == 0) return;
    size_t o = 0;
    if (!url) url = "";
    const char *p = url;
    const char *scheme = strstr(url, "://");
    if (scheme) {
        p = scheme + 3;
        put_span(out, out_size, &o, url, (size_t)(p - url));
        /* userinfo ends at the last '@' before the path or query (passwords
         * may hold an '@' or '/' unencoded, which parse_url tolerates too). */
        const char *q = strchr(p, '?');
        const char *lim = q ? q : p + strlen(p);
        const char *at = NULL;
        for (const char *x = p; x < lim; x++)
            if (*x == '@') at = x;
        if (at) {
            const char *colon = memchr(p, ':', (size_t)(at - p));
            if (colon) {
                put_span(out, out_size, &o, p, (size_t)(colon - p) + 1);
                put_span(out, out_size, &o, mask, sizeof mask - 1);
            } else {
                put_span(out, out_size, &o, mask, sizeof mask - 1);
            }
            p = at;
        }
    }
    /* The rest, with the value of every password= query option masked. */
    const char *q = strchr(p, '?');
    if (!q) {
        put_span(out, out_size, &o, p, strlen(p));
    } else {
        put_span(out, out_size, &o, p, (size_t)(q - p) + 1);
        p = q + 1;
        while (*p) {
            const char *amp = strchr(p, '&');
            size_t len = amp ? (size_t)(amp - p) : strlen(p);
            if (len >= 9 && memcmp(p, "password=", 9) == 0) {
                put_span(out, out_size, &o, p, 9);
                put_span(out, out_size, &o, mask, sizeof mask - 1);
            } else {
                put_span(out, out_size, &o, p, len);
            }
            p += len;
            if (*p == '&') put_span(out, out_size, &o, p++, 1);
        }
    }
    out[o] = '\0';
}

void store_destroy(store_t *s) {
    if (!s) return;
    if (s->c) redisFree(s->c);
    free(s->host);
    free(s->path);
    free(s->user);
    if (s->password) {
        /* Do not leave the password in freed heap memory. */
        volatile char *p = s->password;
        while (*p) *p++ = 0;
        free(s->password);
    }
    free(s->failed_key);
    free(s->argv);
    free(s->argvlen);
    free(s);
}

int store_ensure_connected(store_t *s, char *errstr, size_t errstr_size) {
    if (s->c && !s->broken) return 0;
    return store_connect(s, errstr, errstr_size);
}

unsigned store_backoff_ms(unsigned attempt) {
    if (attempt >= 16) return STORE_BACKOFF_MAX_MS;
    unsigned ms = STORE_BACKOFF_FIRST_MS << attempt;
    return ms > STORE_BACKOFF_MAX_MS ? STORE_BACKOFF_MAX_MS : ms;
}

uint64_t store_round_trips(const store_t *s) {
    return s->round_trips;
}

redisContext *store_redis(store_t *s) {
    return s->broken ? NULL : s->c;
}

/* The context stays allocated until the reconnect, so a caller that still
 * holds it (to read c->errstr, say) does not read freed memory. */
void store_mark_broken(store_t *s) {
    s->broken = 1;
}

/* Connection for one operation: reconnects once if the store is broken, so
 * a caller that only retries with back-off still recovers. NULL with errstr
 * when there is none. */
static redisContext *usable(store_t *s, char *errstr, size_t n) {
    if (store_ensure_connected(s, errstr, n) < 0) return NULL;
    return s->c;
}

/* A NULL reply: the connection is unusable (I/O error, timeout, protocol
 * error); hiredis 0.14 cannot resume it. */
static void lost(store_t *s, const char *what, char *errstr, size_t n) {
    char where[160];
    describe(s, where, sizeof where);
    set_err(errstr, n, "%s: %s: %s", where, what, s->c->errstr[0] ? s->c->errstr : "I/O error");
    s->broken = 1;
}

redisReply *store_command(store_t *s, char *errstr, size_t errstr_size, const char *fmt, ...) {
    redisContext *c = usable(s, errstr, errstr_size);
    if (!c) return NULL;
    va_list ap;
    va_start(ap, fmt);
    s->round_trips++;
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (!r) {
        lost(s, "command", errstr, errstr_size);
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        if (strstr(r->str, "NOPERM")) s->refused = 1;
        set_err(errstr, errstr_size, "redis: %s", r->str);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

/* ---- batches ---- */

store_batch_t *store_batch_new(void) {
    return calloc(1, sizeof(store_batch_t));
}

void store_batch_destroy(store_batch_t *b) {
    if (!b) return;
    free(b->arena);
    free(b->parts);
    free(b->guard_key);
    free(b->guard_value);
    free(b);
}

/* Keeps the memory for the next batch of the same size. */
void store_batch_reset(store_batch_t *b) {
    b->arena_len = 0;
    b->n_parts = 0;
    b->n_cmds = 0;
    free(b->guard_key);
    free(b->guard_value);
    b->guard_key = b->guard_value = NULL;
}

int store_batch_guard(store_batch_t *b, const char *key, const char *expected) {
    char *k = strdup(key), *v = strdup(expected);
    if (!k || !v) {
        free(k);
        free(v);
        return -1;
    }
    free(b->guard_key);
    free(b->guard_value);
    b->guard_key = k;
    b->guard_value = v;
    return 0;
}

size_t store_batch_count(const store_batch_t *b) {
    return b->n_cmds;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem, size_t first) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : first;
    while (c < need) {
        if (c > SIZE_MAX / 2 / elem) return -1;
        c *= 2;
    }
    void *np = realloc(*p, c * elem);
    if (!np) return -1;
    *p = np;
    *cap = c;
    return 0;
}

static int batch_reserve(store_batch_t *b, int argc, size_t bytes) {
    if (grow((void **)&b->parts, &b->parts_cap, b->n_parts + (size_t)argc + 1, sizeof *b->parts,
             256) < 0)
        return -1;
    /* +12: the argc text. */
    return grow((void **)&b->arena, &b->arena_cap, b->arena_len + bytes + 12, 1, 4096);
}

static void batch_put(store_batch_t *b, const void *p, size_t len) {
    b->parts[b->n_parts].off = b->arena_len;
    b->parts[b->n_parts].len = len;
    b->n_parts++;
    if (len) memcpy(b->arena + b->arena_len, p, len);
    b->arena_len += len;
}

static void batch_put_argc(store_batch_t *b, int argc) {
    char num[12];
    int len = snprintf(num, sizeof num, "%d", argc);
    batch_put(b, num, (size_t)len);
}

int store_batch_add(store_batch_t *b, int argc, const char *const *argv, const size_t *argvlen) {
    size_t bytes = 0;
    if (argc < 1 || argc > STORE_MAX_ARGC) return -1;
    for (int i = 0; i < argc; i++) {
        size_t len = argvlen ? argvlen[i] : strlen(argv[i]);
        if (len > SIZE_MAX / 2 - bytes) return -1;
        bytes += len;
    }
    if (batch_reserve(b, argc, bytes) < 0) return -1;
    batch_put_argc(b, argc);
    for (int i = 0; i < argc; i++) batch_put(b, argv[i], argvlen ? argvlen[i] : strlen(argv[i]));
    b->n_cmds++;
    return 0;
}

int store_batch_addv(store_batch_t *b, int argc, ...) {
    va_list ap;
    size_t bytes = 0;
    if (argc < 1 || argc > STORE_MAX_ARGC) return -1;
    va_start(ap, argc);
    for (int i = 0; i < argc; i++) bytes += strlen(va_arg(ap, const char *));
    va_end(ap);
    if (batch_reserve(b, argc, bytes) < 0) return -1;
    batch_put_argc(b, argc);
    va_start(ap, argc);
    for (int i = 0; i < argc; i++) {
        const char *a = va_arg(ap, const char *);
        batch_put(b, a, strlen(a));
    }
    va_end(ap);
    b->n_cmds++;
    return 0;
}

/* ---- commit ---- */

/* Parses a whole decimal int64; -1 if it is not one. */
static int parse_i64(const char *p, size_t len, int64_t *out) {
    char buf[24];
    char *end;
    if (len == 0 || len >= sizeof buf) return -1;
    memcpy(buf, p, len);
    buf[len] = '\0';
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (errno || *end) return -1;
    *out = v;
    return 0;
}

/* Records a commit that failed PARTIAL; see struct store. If the copy fails
 * the guard is simply not armed. */
static void remember_partial(store_t *s, const char *key, int32_t partition, int64_t first,
                             int64_t next, const char *why) {
    free(s->failed_key);
    s->failed_key = strdup(key);
    s->failed_partition = partition;
    s->failed_first = first;
    s->failed_next = next;
    snprintf(s->failed_err, sizeof s->failed_err, "%s", why);
}

/* Grows the commit's argument vectors together to at least need entries. */
static int reserve_argv(store_t *s, size_t need) {
    if (need <= s->argv_cap) return 0;
    size_t cap = s->argv_cap ? s->argv_cap : 64;
    while (cap < need) cap *= 2;
    const char **argv = realloc(s->argv, cap * sizeof *argv);
    if (!argv) return -1;
    s->argv = argv;
    size_t *argvlen = realloc(s->argvlen, cap * sizeof *argvlen);
    if (!argvlen) return -1; /* argv is merely larger than argv_cap says */
    s->argvlen = argvlen;
    s->argv_cap = cap;
    return 0;
}

int store_commit(store_t *s, const store_batch_t *b, const char *offsets_key, int32_t partition,
                 int64_t first_offset, int64_t next_offset, int64_t *stored_offset, char *errstr,
                 size_t errstr_size) {
    char part[16], first[24], next[24], ncmds[24];
    size_t n_parts = b ? b->n_parts : 0;
    redisReply *r = NULL;
    int rc = -1;

    if (first_offset < 0 || next_offset < first_offset) {
        set_err(errstr, errstr_size, "commit: bad offsets %lld..%lld", (long long)first_offset,
                (long long)next_offset);
        return -1;
    }
    if (n_parts > (size_t)INT_MAX - 8) {
        set_err(errstr, errstr_size, "commit: batch too large");
        return -1;
    }
    if (s->failed_key && strcmp(s->failed_key, offsets_key) == 0 &&
        s->failed_partition == partition && s->failed_first == first_offset &&
        s->failed_next == next_offset) {
        set_err(errstr, errstr_size,
                "commit: not re-sent: this batch already failed part way (%s); a retry would "
                "apply its first commands again. Repair the data, then restart the worker",
                s->failed_err);
        return -1;
    }
    redisContext *c = usable(s, errstr, errstr_size);
    if (!c) return -1;
    if (reserve_argv(s, n_parts + 11) < 0) {
        set_err(errstr, errstr_size, "out of memory");
        return -1;
    }

    snprintf(part, sizeof part, "%d", (int)partition);
    snprintf(first, sizeof first, "%lld", (long long)first_offset);
    snprintf(next, sizeof next, "%lld", (long long)next_offset);
    snprintf(ncmds, sizeof ncmds, "%zu", b ? b->n_cmds : 0);
    const int guarded = b && b->guard_key;
    const char *head[11] = {
        "EVALSHA", s->sha, "2",   offsets_key,         guarded ? b->guard_key : offsets_key, part,
        first,     next,   ncmds, guarded ? "1" : "0", guarded ? b->guard_value : ""};
    for (int i = 0; i < 11; i++) {
        s->argv[i] = head[i];
        s->argvlen[i] = strlen(head[i]);
    }
    for (size_t i = 0; i < n_parts; i++) {
        s->argv[11 + i] = b->arena + b->parts[i].off;
        s->argvlen[11 + i] = b->parts[i].len;
    }
    int argc = (int)(n_parts + 11);

    r = round_trip(s, c, argc, s->argv, s->argvlen);
    if (r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
        /* Redis forgot the script (SCRIPT FLUSH, or a restart or failover our
         * connection did not see): send it whole. EVAL caches it again, so
         * later EVALSHAs find it under the same sha. */
        freeReplyObject(r);
        s->argv[0] = "EVAL";
        s->argvlen[0] = 4;
        s->argv[1] = commit_script;
        s->argvlen[1] = sizeof commit_script - 1;
        r = round_trip(s, c, argc, s->argv, s->argvlen);
    }
    if (!r) {
        lost(s, "commit (reply lost; retrying is safe)", errstr, errstr_size);
        return -1;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        /* An ACL user without the rights to the worker's keys or to EVALSHA:
         * as permanent as a wrong password. */
        if (strstr(r->str, "NOPERM")) s->refused = 1;
        if (strncmp(r->str, "PARTIAL ", 8) == 0) {
            remember_partial(s, offsets_key, partition, first_offset, next_offset, r->str + 8);
            set_err(errstr, errstr_size,
                    "commit: %s (the offset was not advanced; this batch will not be re-sent)",
                    r->str + 8);
        } else if (strncmp(r->str, "CMDFAILED ", 10) == 0) {
            set_err(errstr, errstr_size, "commit: %s", r->str + 10);
        } else {
            set_err(errstr, errstr_size, "commit: %s", r->str);
        }
        goto done;
    }
    int64_t stored;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || r->element[1]->type != REDIS_REPLY_STRING ||
        parse_i64(r->element[1]->str, r->element[1]->len, &stored) < 0 ||
        r->element[0]->integer < 0 || r->element[0]->integer > 4) {
        set_err(errstr, errstr_size, "commit: unexpected reply from the commit script");
        goto done;
    }
    if (stored_offset) *stored_offset = stored;
    rc = (int)r->element[0]->integer;
    free(s->failed_key); /* the worker has moved on */
    s->failed_key = NULL;
done:
    freeReplyObject(r);
    return rc;
}

int store_get_offset(store_t *s, const char *offsets_key, int32_t partition, int64_t *offset,
                     char *errstr, size_t errstr_size) {
    char part[16];
    redisContext *c = usable(s, errstr, errstr_size);
    if (!c) return -1;
    snprintf(part, sizeof part, "%d", (int)partition);
    const char *argv[3] = {"HGET", offsets_key, part};
    redisReply *r = round_trip(s, c, 3, argv, NULL);
    int rc = -1;
    if (!r) {
        lost(s, "HGET", errstr, errstr_size);
        return -1;
    }
    if (r->type == REDIS_REPLY_NIL) {
        *offset = -1;
        rc = 0;
    } else if (r->type == REDIS_REPLY_STRING) {
        if (parse_i64(r->str, r->len, offset) == 0)
            rc = 0;
        else
            set_err(errstr, errstr_size, "field %s of %s is not an offset", part, offsets_key);
    } else if (r->type == REDIS_REPLY_ERROR) {
        if (strstr(r->str, "NOPERM")) s->refused = 1;
        set_err(errstr, errstr_size, "HGET %s %s: %s", offsets_key, part, r->str);
    } else {
        set_err(errstr, errstr_size, "HGET %s %s: unexpected reply", offsets_key, part);
    }
    freeReplyObject(r);
    return rc;
}
