/* recommend_log.h: the recommend worker's collaborative state held in
 * memory (recommend.state=memory), with Redis as its log and snapshot store.
 *
 * Every event batch appends one entry to a Redis stream, in the batch's
 * exactly-once commit: the batch's applied events (dense ids, type, time,
 * weights, the 64-bit hash of the event id), 50 bytes each. The state is a
 * deterministic function of the log, so any worker rebuilds it as the last
 * snapshot plus the entries after it, and reaches the very bytes a worker
 * that never stopped holds. Keys, under the worker's "reel:{<group>}:":
 *
 *   mlog            stream; entry id "<seq>-0", fields n (nonce), e (events)
 *   mlog:head       "<seq>:<nonce>" of the last entry: the commit's guard,
 *                   so that an entry only lands on the head it was made on
 *   msnap           "<seq> <chunks> <bytes>": the snapshot covering
 *                   entries 1..seq (absent: none, the log starts at 1)
 *   msnap:<seq>:<k> the snapshot's bytes (rec_mem_save), in chunks
 *
 * The catalogue, ids and titles stay where recommend.state=redis keeps them
 * (feat, title, ids:*): they are small and written per Item record. */
#ifndef REEL_WORKERS_RECOMMEND_LOG_H
#define REEL_WORKERS_RECOMMEND_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/rec.h"
#include "pipeline/store.h"

typedef struct rlog rlog_t;

/* A log over the keys "<prefix>mlog"... (prefix = "reel:{<group>}:"), for
 * cfg (copied). snapshot_events: events between snapshots (0: never). The
 * state starts empty; rlog_sync() loads it. Returns a log the caller frees
 * with rlog_destroy(), or NULL out of memory. */
rlog_t *rlog_new(const rec_config_t *cfg, const char *prefix, long snapshot_events);
void rlog_destroy(rlog_t *l);

/* The state and a reader over it: borrowed, valid until the next
 * rlog_sync() (a reload replaces them). */
rec_mem_t *rlog_mem(rlog_t *l);
const rec_reader_t *rlog_reader(rlog_t *l);

/* Brings the state to Redis' head before a batch: nothing when it is there;
 * replays the entries others appended after ours; reloads snapshot and log
 * when ours did not land (a refused or lost commit) or was trimmed. Writes
 * a snapshot when one is due (a failed one is logged and tried again after
 * snapshot_events more events: the log still holds everything). 0 ok, -1
 * with errstr (Redis down or the stored state unreadable: the caller
 * retries the batch). */
int rlog_sync(rlog_t *l, store_t *s, char *errstr, size_t errstr_size);

/* Applies one checked event with dense ids to the state and records it for
 * the batch's entry. Returns 1 applied, 0 a duplicate (nothing recorded),
 * -1 out of memory (reason set). */
int rlog_apply(rlog_t *l, const rec_event_t *ev, char *reason, size_t reason_size);

/* Queues the batch's entry, its new head and the guard on b (nothing when
 * the batch applied no event), and takes the new head as its own: a commit
 * that does not land is found by the next rlog_sync(). 0, or -1 OOM. */
int rlog_queue(rlog_t *l, store_batch_t *b);

/* Writes a snapshot of the current state now (the state must be at Redis'
 * head: call after rlog_sync()). 0, or -1 with errstr. */
int rlog_snapshot(rlog_t *l, store_t *s, char *errstr, size_t errstr_size);

/* Operator repair of a log that holds a corrupt entry: deletes entries
 * from.. (all of them: an entry only makes sense after the ones before it),
 * resets the stream's last id so that entry `from` can be written again,
 * and moves mlog:head back to entry from - 1 (its nonce; "<seq>:" when it is
 * the snapshot's, trimmed; absent when from is 1), in one script. The events
 * of the dropped entries leave the state, though their input offsets stay
 * committed. Refuses from <= the snapshot's seq. *dropped: entries deleted.
 * 0, or -1 with errstr. The next rlog_sync() reloads. */
int rlog_drop_from(rlog_t *l, store_t *s, uint64_t from, uint64_t *dropped, char *errstr,
                   size_t errstr_size);

/* FNV-1a (64 bits) over n bytes: a snapshot's checksum in msnap, and the
 * state hash `reel recommend state` prints, so the two can be compared. */
uint64_t rlog_fnv64(const unsigned char *p, size_t n);

/* What the log holds, for `reel recommend state` and the logs. */
typedef struct rlog_info {
    uint64_t seq;      /* entries the state covers */
    uint64_t snap_seq; /* of the snapshot it was loaded from */
    uint64_t replayed; /* entries replayed since (others' and after reloads) */
    uint64_t reloads;
    uint64_t events; /* events applied by this process */
} rlog_info_t;
void rlog_get_info(const rlog_t *l, rlog_info_t *out);

#endif
