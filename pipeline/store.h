/* store.h: Redis state for workers, over hiredis. One store per worker
 * thread; not thread safe.
 *
 * Exactly-once state: a worker's state changes for a batch of one partition
 * and that partition's next offset are applied by one Lua script, which
 * refuses a batch whose offsets were already applied. A lost reply is thus
 * safe to retry. */
#ifndef REEL_PIPELINE_STORE_H
#define REEL_PIPELINE_STORE_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>

typedef struct store store_t;
typedef struct store_batch store_batch_t;

/* Connects to url: "redis://[user:password@]host[:port][/db]" or
 * "unix:///path/to/socket[?db=N]". A password alone is "redis://:pw@host".
 * Returns NULL with a reason in errstr on a bad url or a failed connection.
 * The caller owns the store and frees it with store_destroy(). */
store_t *store_new(const char *url, char *errstr, size_t errstr_size);
/* store_new() that also says whether retrying can help: *permanent (may be
 * NULL) is 1 when it cannot, that is a bad url, Redis refused the
 * credentials or the user's permissions (NOAUTH, WRONGPASS, NOPERM) or has
 * no such database, and 0
 * for a failure that may pass (Redis down, a timeout, out of memory). */
store_t *store_open(const char *url, int *permanent, char *errstr, size_t errstr_size);
void store_destroy(store_t *s);

/* 1 when the last (re)connect was refused for credentials or permissions
 * (the password changed, the ACL user was disabled): retrying will not
 * help, so a worker stops with the reason instead of backing off. */
int store_refused(const store_t *s);

/* Parses url as store_new() does, without connecting. Returns 0, or -1
 * with the reason in errstr (never the password). */
int store_url_check(const char *url, char *errstr, size_t errstr_size);

/* The (decoded) password of url into out; returns 1 when url parses and
 * has one, else 0 with out empty. For masking it in logs. */
int store_url_password(const char *url, char *out, size_t out_size);

/* Writes url into out (always NUL-terminated, truncated to out_size) with
 * the password of its userinfo and of a password= query option replaced by
 * "***": the form of a url for logs and messages. Any string is accepted. */
void store_url_redact(const char *url, char *out, size_t out_size);

/* Reconnects if the last command found the connection broken (the store
 * remembers). Returns 0 when connected, -1 with errstr otherwise. Callers
 * back off between failed attempts; see store_backoff_ms(). */
int store_ensure_connected(store_t *s, char *errstr, size_t errstr_size);

/* Milliseconds to wait before retry number attempt (0-based): exponential
 * from 50 ms, capped at 5 s. */
unsigned store_backoff_ms(unsigned attempt);

/* Round trips made so far (one per pipelined flush or command). */
uint64_t store_round_trips(const store_t *s);

/* The hiredis context for pipelined reads (redisAppendCommand and
 * redisGetReply). Borrowed; NULL while disconnected. A caller that sees an
 * I/O error on it calls store_mark_broken(). */
redisContext *store_redis(store_t *s);
void store_mark_broken(store_t *s);

/* Runs one command (printf-like, as redisCommand). Returns a reply the
 * caller frees with freeReplyObject(), or NULL with errstr on a connection
 * error or an error reply. */
redisReply *store_command(store_t *s, char *errstr, size_t errstr_size, const char *fmt, ...);

/* A batch of write commands, applied atomically by store_commit(). The
 * caller owns it; it copies every argument. */
store_batch_t *store_batch_new(void);
void store_batch_destroy(store_batch_t *b);
void store_batch_reset(store_batch_t *b);
size_t store_batch_count(const store_batch_t *b);
/* Appends one command with argc binary-safe arguments. Returns 0 or -1. */
int store_batch_add(store_batch_t *b, int argc, const char *const *argv, const size_t *argvlen);
/* Appends one command of argc NUL-terminated strings. Returns 0 or -1. */
int store_batch_addv(store_batch_t *b, int argc, ...);
/* Makes the batch's commit conditional: it applies nothing, and
 * store_commit() returns 4, unless the string at key equals expected (a
 * missing key reads as ""). For state that a worker also holds in memory
 * and logs to Redis: a commit on top of a log someone else extended must
 * not land. Copies both; store_batch_reset() clears it. 0 ok, -1 OOM. */
int store_batch_guard(store_batch_t *b, const char *key, const char *expected);

/* Applies the batch's commands and sets field <partition> of the hash
 * offsets_key to next_offset, in one atomic step (a Lua script, loaded with
 * SCRIPT LOAD and re-sent when Redis forgot it after a restart).
 * first_offset is where the batch continues from: the offset the caller
 * believes applied (so offsets Kafka skipped, by retention or compaction,
 * are bridged), or the first record's offset when nothing was applied yet.
 *   stored = the partition's current value (none: -1)
 *   stored >= next_offset           -> nothing applied, returns 0 (replay)
 *   first_offset < stored < next    -> nothing applied, returns 2 (overlap:
 *                                      the caller re-reads from stored)
 *   0 <= stored < first_offset      -> nothing applied, returns 3 (Redis is
 *                                      behind the caller: it lost writes, e.g.
 *                                      a crash with appendfsync everysec or a
 *                                      failover; the caller re-reads from
 *                                      stored so the lost state is rebuilt)
 *   the batch's guard does not hold -> nothing applied, returns 4 (the
 *                                      caller processes the batch again)
 *   otherwise                       -> applied, returns 1
 * *stored_offset receives the value found. Returns -1 with errstr on error
 * (nothing was applied, or the reply was lost: retrying is safe).
 * One exception: Redis cannot roll back, so when a command of the batch
 * fails in Redis (WRONGTYPE, a field that is not an integer) the commands
 * before it stay applied and the offset is not advanced. errstr then says
 * "k-1 applied", and this store refuses to send that batch again (every
 * retry returns -1 at once) rather than apply its first commands twice. */
int store_commit(store_t *s, const store_batch_t *b, const char *offsets_key, int32_t partition,
                 int64_t first_offset, int64_t next_offset, int64_t *stored_offset, char *errstr,
                 size_t errstr_size);

/* Reads field <partition> of offsets_key into *offset (-1 when absent).
 * Returns 0 or -1 with errstr. */
int store_get_offset(store_t *s, const char *offsets_key, int32_t partition, int64_t *offset,
                     char *errstr, size_t errstr_size);

#endif
