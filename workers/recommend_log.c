/* recommend_log.c: the recommend worker's state in memory, logged to Redis
 * (see recommend_log.h for the keys). */
#include "workers/recommend_log.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "pipeline/log.h"

#define ENTRY_MAGIC "RLG1"
#define EVENT_BYTES 50
#define SNAP_CHUNK (8u << 20)
#define TAIL_PAGE 256
#define MAX_DENSE_ID (1u << 28)

struct rlog {
    rec_config_t cfg;
    char prefix[300];
    long snapshot_events;
    rec_mem_t *mem;
    rec_reader_t rd;
    rec_work_t *work;
    rec_deltas_t ds;
    /* The head the state reflects: entries 1..seq, the last one's nonce. */
    uint64_t seq;
    char nonce[24];
    int unconfirmed; /* our last entry was queued; not seen in Redis yet */
    int dirty;       /* events applied since the last rlog_queue() */
    int loaded;      /* the state was read from Redis at least once */
    rec_buf_t entry; /* the batch's packed events */
    uint32_t nentry;
    uint64_t snap_seq, since_snap;
    uint64_t replayed, reloads, events;
    uint64_t rng;
};

static const char *key(const rlog_t *l, char *buf, size_t n, const char *suffix) {
    snprintf(buf, n, "%s%s", l->prefix, suffix);
    return buf;
}

rlog_t *rlog_new(const rec_config_t *cfg, const char *prefix, long snapshot_events) {
    rlog_t *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    l->cfg = *cfg;
    snprintf(l->prefix, sizeof l->prefix, "%s", prefix);
    l->snapshot_events = snapshot_events;
    l->mem = rec_mem_new(cfg);
    l->work = rec_work_new(cfg);
    if (!l->mem || !l->work) {
        rlog_destroy(l);
        return NULL;
    }
    l->rd = rec_mem_reader(l->mem);
    /* Nonces only tell entries apart; they need not be unpredictable. */
    l->rng = (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ULL ^ (uint64_t)getpid() << 32 ^
             (uint64_t)(uintptr_t)l;
    return l;
}

void rlog_destroy(rlog_t *l) {
    if (!l) return;
    rec_mem_destroy(l->mem);
    rec_work_destroy(l->work);
    rec_deltas_free(&l->ds);
    free(l->entry.data);
    free(l);
}

rec_mem_t *rlog_mem(rlog_t *l) {
    return l->mem;
}

const rec_reader_t *rlog_reader(rlog_t *l) {
    return &l->rd;
}

void rlog_get_info(const rlog_t *l, rlog_info_t *out) {
    out->seq = l->seq;
    out->snap_seq = l->snap_seq;
    out->replayed = l->replayed;
    out->reloads = l->reloads;
    out->events = l->events;
}

/* ------------------------------------------------------------------ */
/* Events in an entry                                                  */

static void pack_event(const rec_event_t *ev, uint64_t hash, unsigned char out[EVENT_BYTES]) {
    uint8_t type = (uint8_t)ev->type, has_rating = (uint8_t)(ev->has_rating != 0);
    unsigned char *p = out;
    memcpy(p, &ev->user, 4), p += 4;
    memcpy(p, &ev->item, 4), p += 4;
    memcpy(p, &type, 1), p += 1;
    memcpy(p, &has_rating, 1), p += 1;
    memcpy(p, &ev->ts_ms, 8), p += 8;
    memcpy(p, &ev->watch_seconds, 8), p += 8;
    memcpy(p, &ev->duration_seconds, 8), p += 8;
    memcpy(p, &ev->rating, 8), p += 8;
    memcpy(p, &hash, 8);
}

/* Unpacks the event at p and checks what the worker checked before it
 * logged it (rec_event_check, less the string ids and the clock). The ids
 * must be below lim[0] (users) and lim[1] (items), the dictionaries' next
 * ids: dense ids index arrays the state grows to hold them, so an id no
 * dictionary reached is corruption, not a reason to allocate gigabytes
 * (2^28 - 1 users alone would take ~30 GB). Returns 0, or -1 with what is
 * wrong in why. */
static int unpack_event(const unsigned char *p, const uint64_t lim[2], rec_event_t *ev, char *why,
                        size_t n) {
    uint8_t type, has_rating;
    memset(ev, 0, sizeof *ev);
    memcpy(&ev->user, p, 4), p += 4;
    memcpy(&ev->item, p, 4), p += 4;
    memcpy(&type, p, 1), p += 1;
    memcpy(&has_rating, p, 1), p += 1;
    memcpy(&ev->ts_ms, p, 8), p += 8;
    memcpy(&ev->watch_seconds, p, 8), p += 8;
    memcpy(&ev->duration_seconds, p, 8), p += 8;
    memcpy(&ev->rating, p, 8), p += 8;
    memcpy(&ev->event_hash, p, 8);
    if (type >= REC_EV_N)
        snprintf(why, n, "unknown event type %u", type);
    else if (has_rating > 1 || ev->event_hash == 0)
        snprintf(why, n, "bad flags or event hash");
    else if (ev->user >= MAX_DENSE_ID || ev->user >= lim[0])
        snprintf(why, n, "user %" PRIu32 " beyond the %" PRIu64 " allocated", ev->user, lim[0]);
    else if (ev->item >= MAX_DENSE_ID || ev->item >= lim[1])
        snprintf(why, n, "item %" PRIu32 " beyond the %" PRIu64 " allocated", ev->item, lim[1]);
    else if (ev->ts_ms <= 0 || !isfinite(ev->watch_seconds) || ev->watch_seconds < 0 ||
             !isfinite(ev->duration_seconds) || ev->duration_seconds < 0 ||
             (type == REC_EV_RATING &&
              (!has_rating || !isfinite(ev->rating) || ev->rating < 0.5 || ev->rating > 5.0)))
        /* A NaN weight would spread through every counter it touches. */
        snprintf(why, n, "time, watch time, duration or rating out of range");
    else {
        ev->type = (rec_event_type_t)type;
        ev->has_rating = has_rating;
        ev->event_id = ev->user_id = ev->item_id = "";
        return 0;
    }
    return -1;
}

static int apply_event(rlog_t *l, const rec_event_t *ev, char *reason, size_t n) {
    l->ds.n = 0;
    l->ds.once = rec_mem_once(l->mem); /* a loaded snapshot may be either layout */
    int r = rec_process_event(&l->cfg, &l->rd, l->work, ev, &l->ds, reason, n);
    if (r == 1 && rec_mem_apply(l->mem, l->ds.d, l->ds.n) < 0) {
        snprintf(reason, n, "out of memory");
        return -1;
    }
    if (r == 1) l->since_snap++;
    return r;
}

int rlog_apply(rlog_t *l, const rec_event_t *ev, char *reason, size_t reason_size) {
    rec_event_t e = *ev;
    if (!e.event_hash) e.event_hash = rec_hash64(e.event_id, strlen(e.event_id));
    if (!e.event_hash) e.event_hash = 1; /* 0 means "hash the id" */
    l->dirty = 1;
    int r = apply_event(l, &e, reason, reason_size);
    if (r != 1) return r;
    unsigned char packed[EVENT_BYTES];
    pack_event(&e, e.event_hash, packed);
    if (!l->entry.data) {
        l->entry.cap = 1 << 16; /* the header and ~1,300 events; doubled as needed */
        if (!(l->entry.data = malloc(l->entry.cap))) goto oom;
    }
    if (l->nentry == 0) {
        /* Header: the magic, then the event count (set below). */
        memcpy(l->entry.data, ENTRY_MAGIC, 4);
        l->entry.len = 8;
    }
    if (l->entry.cap - l->entry.len < EVENT_BYTES) {
        size_t cap = l->entry.cap * 2;
        unsigned char *d = realloc(l->entry.data, cap);
        if (!d) goto oom;
        l->entry.data = d;
        l->entry.cap = cap;
    }
    memcpy(l->entry.data + l->entry.len, packed, EVENT_BYTES);
    l->entry.len += EVENT_BYTES;
    l->nentry++;
    memcpy(l->entry.data + 4, &l->nentry, 4);
    l->events++;
    return 1;
oom:
    snprintf(reason, reason_size, "out of memory");
    return -1;
}

/* Replays one stored entry's events; lim: unpack_event's. 0, or -1 with
 * errstr. */
static int replay_entry(rlog_t *l, uint64_t seq, const unsigned char *p, size_t len,
                        const uint64_t lim[2], char *errstr, size_t n) {
    uint32_t count;
    char why[160] = "bad magic or length";
    rec_event_t ev;
    if (len < 8 || memcmp(p, ENTRY_MAGIC, 4) != 0) goto bad;
    memcpy(&count, p + 4, 4);
    if ((len - 8) / EVENT_BYTES != count || (len - 8) % EVENT_BYTES != 0) goto bad;
    /* Every event is checked before the first is applied: a corrupt entry
     * must leave the state as it was, or the state would hold part of an
     * entry the log (once repaired) does not have. */
    for (uint32_t k = 0; k < count; k++)
        if (unpack_event(p + 8 + (size_t)k * EVENT_BYTES, lim, &ev, why, sizeof why) < 0) {
            snprintf(errstr, n,
                     "log entry %" PRIu64 " is corrupt (event %" PRIu32 " of %" PRIu32 ": %s)", seq,
                     k, count, why);
            return -1;
        }
    for (uint32_t k = 0; k < count; k++) {
        char reason[256];
        unpack_event(p + 8 + (size_t)k * EVENT_BYTES, lim, &ev, why, sizeof why);
        if (apply_event(l, &ev, reason, sizeof reason) < 0) {
            /* Part of the entry is in the state: reload before going on. */
            l->loaded = 0;
            snprintf(errstr, n, "replaying log entry %" PRIu64 ": %s", seq, reason);
            return -1;
        }
    }
    l->replayed++;
    return 0;
bad:
    snprintf(errstr, n, "log entry %" PRIu64 " is corrupt (%zu bytes: %s)", seq, len, why);
    return -1;
}

/* ------------------------------------------------------------------ */
/* Reading Redis                                                       */

/* "<seq>-0" -> seq; 0 when it is not of that form. */
static uint64_t parse_id(const char *s, size_t len) {
    char buf[32];
    if (len == 0 || len >= sizeof buf) return 0;
    memcpy(buf, s, len);
    buf[len] = 0;
    char *end;
    unsigned long long v = strtoull(buf, &end, 10);
    return strcmp(end, "-0") == 0 ? (uint64_t)v : 0;
}

/* The field f of a stream entry's field list. */
static const redisReply *entry_field(const redisReply *fields, const char *f) {
    if (!fields || fields->type != REDIS_REPLY_ARRAY) return NULL;
    for (size_t k = 0; k + 1 < fields->elements; k += 2)
        if (fields->element[k]->type == REDIS_REPLY_STRING &&
            strcmp(fields->element[k]->str, f) == 0 &&
            fields->element[k + 1]->type == REDIS_REPLY_STRING)
            return fields->element[k + 1];
    return NULL;
}

/* lim[0], lim[1]: the next dense ids of the user and item dictionaries
 * (ids:user:next, ids:item:next under the worker's prefix; absent: 0). */
static int next_ids(rlog_t *l, store_t *s, uint64_t lim[2], char *errstr, size_t n) {
    char uk[512], ik[512];
    redisReply *r =
        store_command(s, errstr, n, "MGET %s %s", key(l, uk, sizeof uk, "ids:user:next"),
                      key(l, ik, sizeof ik, "ids:item:next"));
    if (!r) return -1;
    int rc = r->type == REDIS_REPLY_ARRAY && r->elements == 2 ? 0 : -1;
    for (size_t k = 0; rc == 0 && k < 2; k++) {
        const redisReply *v = r->element[k];
        lim[k] = v->type == REDIS_REPLY_STRING ? strtoull(v->str, NULL, 10) : 0;
    }
    freeReplyObject(r);
    if (rc < 0) snprintf(errstr, n, "MGET %s: unexpected reply", uk);
    return rc;
}

/* Replays the entries after l->seq, up to the end of the log. Returns 0,
 * 1 when the log does not continue from l->seq (trimmed by a newer
 * snapshot, or lost: the caller reloads), -1 with errstr. */
static int tail(rlog_t *l, store_t *s, char *errstr, size_t n) {
    char k[512];
    key(l, k, sizeof k, "mlog");
    for (;;) {
        char start[32];
        snprintf(start, sizeof start, "%" PRIu64 "-0", l->seq + 1);
        redisReply *r = store_command(s, errstr, n, "XRANGE %s %s + COUNT %d", k, start, TAIL_PAGE);
        if (!r) return -1;
        if (r->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(r);
            snprintf(errstr, n, "XRANGE %s: unexpected reply", k);
            return -1;
        }
        size_t got = r->elements;
        /* The dictionaries' next ids, read after the page: every entry in
         * it had its ids allocated before its commit, so they are below. */
        uint64_t lim[2];
        if (got > 0 && next_ids(l, s, lim, errstr, n) < 0) {
            freeReplyObject(r);
            return -1;
        }
        for (size_t e = 0; e < got; e++) {
            const redisReply *en = r->element[e];
            if (en->type != REDIS_REPLY_ARRAY || en->elements != 2 ||
                en->element[0]->type != REDIS_REPLY_STRING) {
                freeReplyObject(r);
                snprintf(errstr, n, "%s: malformed entry", k);
                return -1;
            }
            uint64_t seq = parse_id(en->element[0]->str, en->element[0]->len);
            if (seq != l->seq + 1) {
                freeReplyObject(r);
                return 1;
            }
            const redisReply *nonce = entry_field(en->element[1], "n");
            const redisReply *events = entry_field(en->element[1], "e");
            if (!nonce || !events || nonce->len >= sizeof l->nonce) {
                freeReplyObject(r);
                snprintf(errstr, n, "log entry %" PRIu64 " lacks its fields", seq);
                return -1;
            }
            if (replay_entry(l, seq, (const unsigned char *)events->str, events->len, lim, errstr,
                             n) < 0) {
                freeReplyObject(r);
                return -1;
            }
            l->seq = seq;
            memcpy(l->nonce, nonce->str, nonce->len);
            l->nonce[nonce->len] = 0;
        }
        freeReplyObject(r);
        if (got < TAIL_PAGE) return 0;
    }
}

static int read_head(rlog_t *l, store_t *s, uint64_t *seq, char *nonce, size_t nn, char *errstr,
                     size_t n);

uint64_t rlog_fnv64(const unsigned char *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t k = 0; k < n; k++) h = (h ^ p[k]) * 0x100000001b3ULL;
    return h;
}

/* A new empty state, or the stored snapshot, then the log after it. */
static int reload(rlog_t *l, store_t *s, char *errstr, size_t n) {
    char k[512], ck[600];
    redisReply *r = store_command(s, errstr, n, "GET %s", key(l, k, sizeof k, "msnap"));
    if (!r) return -1;
    unsigned long long seq = 0, chunks = 0, bytes = 0, sum = 0;
    int fields = 0;
    if (r->type == REDIS_REPLY_STRING &&
        (fields = sscanf(r->str, "%llu %llu %llu %llx", &seq, &chunks, &bytes, &sum)) < 3) {
        freeReplyObject(r);
        snprintf(errstr, n, "%s is malformed", k);
        return -1;
    }
    freeReplyObject(r);
    rec_mem_t *m = NULL;
    if (seq > 0) {
        if (chunks == 0 || chunks > 100000 || bytes > chunks * (unsigned long long)SNAP_CHUNK) {
            snprintf(errstr, n, "%s is malformed", k);
            return -1;
        }
        /* The buffer grows with the chunks Redis returns rather than to the
         * pointer's size: a garbled pointer ("1 100000 800000000000") must
         * not allocate 800 GB. */
        unsigned char *data = NULL;
        size_t have = 0;
        for (unsigned long long c = 0; c < chunks; c++) {
            snprintf(ck, sizeof ck, "%smsnap:%llu:%llu", l->prefix, seq, c);
            r = store_command(s, errstr, n, "GET %s", ck);
            if (!r) {
                free(data);
                return -1;
            }
            unsigned char *d = NULL;
            if (r->type != REDIS_REPLY_STRING || r->len > bytes - have) {
                freeReplyObject(r);
                free(data);
                snprintf(errstr, n, "snapshot chunk %s is missing or too long", ck);
                return -1;
            }
            if (!(d = realloc(data, have + r->len + 1))) {
                freeReplyObject(r);
                free(data);
                snprintf(errstr, n, "out of memory");
                return -1;
            }
            data = d;
            memcpy(data + have, r->str, r->len);
            have += r->len;
            freeReplyObject(r);
        }
        if (have != bytes) {
            free(data);
            snprintf(errstr, n, "snapshot %llu has %zu of %llu bytes", seq, have, bytes);
            return -1;
        }
        /* rec_mem_load refuses what is malformed, but a flipped bit in a
         * counter loads as another valid state: the pointer's checksum
         * (absent in snapshots written before it) tells them apart. */
        uint64_t got = rlog_fnv64(data, have);
        if (fields == 4 && got != (uint64_t)sum) {
            free(data);
            snprintf(errstr, n,
                     "snapshot %llu is corrupt (its checksum is %016llx, %s says %016llx)", seq,
                     (unsigned long long)got, k, sum);
            return -1;
        }
        char err[256];
        m = rec_mem_load(&l->cfg, data, have, err, sizeof err);
        free(data);
        if (!m) {
            snprintf(errstr, n, "snapshot %llu: %s", seq, err);
            return -1;
        }
    } else if (!(m = rec_mem_new(&l->cfg))) {
        snprintf(errstr, n, "out of memory");
        return -1;
    }
    rec_mem_destroy(l->mem);
    l->mem = m;
    l->rd = rec_mem_reader(m);
    l->seq = l->snap_seq = seq;
    l->nonce[0] = 0;
    l->since_snap = 0;
    l->unconfirmed = l->dirty = 0;
    l->nentry = 0;
    l->reloads++;
    int t = tail(l, s, errstr, n);
    if (t != 0) {
        if (t > 0) snprintf(errstr, n, "the log does not continue from snapshot %llu", seq);
        return -1;
    }
    if (l->seq > 0 && !l->nonce[0]) {
        /* Nothing after the snapshot: its last entry's nonce is the head's. */
        uint64_t hseq;
        char hn[24];
        if (read_head(l, s, &hseq, hn, sizeof hn, errstr, n) < 0) return -1;
        if (hseq == l->seq) memcpy(l->nonce, hn, sizeof hn);
    }
    l->loaded = 1;
    return 0;
}

/* Reads the head "<seq>:<nonce>" (absent: 0, ""). */
static int read_head(rlog_t *l, store_t *s, uint64_t *seq, char *nonce, size_t nn, char *errstr,
                     size_t n) {
    char k[512];
    redisReply *r = store_command(s, errstr, n, "GET %s", key(l, k, sizeof k, "mlog:head"));
    if (!r) return -1;
    *seq = 0;
    nonce[0] = 0;
    int rc = 0;
    if (r->type == REDIS_REPLY_STRING) {
        char *colon = memchr(r->str, ':', r->len);
        size_t nl = colon ? r->len - (size_t)(colon + 1 - r->str) : 0;
        if (!colon || nl >= nn) {
            snprintf(errstr, n, "%s is malformed", k);
            rc = -1;
        } else {
            *seq = strtoull(r->str, NULL, 10);
            memcpy(nonce, colon + 1, nl);
            nonce[nl] = 0;
        }
    }
    freeReplyObject(r);
    return rc;
}

/* Whether log entry seq carries nonce (1), is absent or another (0). */
static int entry_is(rlog_t *l, store_t *s, uint64_t seq, const char *nonce, char *errstr,
                    size_t n) {
    char k[512], id[32];
    snprintf(id, sizeof id, "%" PRIu64 "-0", seq);
    redisReply *r =
        store_command(s, errstr, n, "XRANGE %s %s %s", key(l, k, sizeof k, "mlog"), id, id);
    if (!r) return -1;
    int is = 0;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 && r->element[0]->elements == 2) {
        const redisReply *f = entry_field(r->element[0]->element[1], "n");
        is = f && strcmp(f->str, nonce) == 0;
    }
    freeReplyObject(r);
    return is;
}

int rlog_sync(rlog_t *l, store_t *s, char *errstr, size_t errstr_size) {
    if (!l->loaded || l->dirty) {
        if (l->dirty)
            log_warn("recommend_state_reload",
                     "a batch was abandoned after changing the state in memory; reloading it");
        if (reload(l, s, errstr, errstr_size) < 0) return -1;
    }
    uint64_t seq;
    char nonce[24];
    if (read_head(l, s, &seq, nonce, sizeof nonce, errstr, errstr_size) < 0) return -1;
    if (seq != l->seq || strcmp(nonce, l->nonce) != 0) {
        /* Someone appended after us, or our last entry did not land. Ours
         * counts when the log still holds it (or it is the snapshot's). */
        int ours = l->seq == 0 || (l->seq == l->snap_seq && !l->unconfirmed);
        if (!ours) {
            ours = entry_is(l, s, l->seq, l->nonce, errstr, errstr_size);
            if (ours < 0) return -1;
        }
        int t = ours && seq > l->seq ? tail(l, s, errstr, errstr_size) : 1;
        if (t < 0) return -1;
        /* The log ended before the head: a snapshot trimmed it meanwhile
         * (the reload finds the entries after that snapshot), or the head
         * names an entry the log lacks (the reload does not, below). */
        if (t == 0 && l->seq < seq) t = 1;
        if (t > 0) {
            log_warn("recommend_state_reload",
                     "state at log entry %" PRIu64 ", Redis at %" PRIu64
                     ": reloading the snapshot and the log",
                     l->seq, seq);
            if (reload(l, s, errstr, errstr_size) < 0) return -1;
        }
        if (l->seq < seq) {
            /* The head names an entry the log lacks (deleted by hand): the
             * commit's guard would refuse every batch, forever, as
             * state_conflict. */
            snprintf(errstr, errstr_size,
                     "mlog:head is at log entry %" PRIu64 " but the log ends at %" PRIu64
                     " (see docs/recommend.md, State in memory)",
                     seq, l->seq);
            return -1;
        }
    }
    l->unconfirmed = 0;
    if (l->snapshot_events > 0 && l->since_snap >= (uint64_t)l->snapshot_events &&
        rlog_snapshot(l, s, errstr, errstr_size) < 0) {
        /* The log still holds every entry: go on, and try again after
         * another snapshot_events rather than stall the partition. */
        log_warn("recommend_snapshot_failed", "%s (retrying after %ld more events)", errstr,
                 l->snapshot_events);
        l->since_snap = 0;
    }
    return 0;
}

int rlog_queue(rlog_t *l, store_batch_t *b) {
    l->dirty = 0;
    if (l->nentry == 0) return 0;
    char k[512], hk[512], guard[64], head[64], id[32], nonce[24];
    snprintf(guard, sizeof guard, "%" PRIu64 ":%s", l->seq, l->nonce);
    if (l->seq == 0) guard[0] = 0;
    l->rng ^= l->rng << 13;
    l->rng ^= l->rng >> 7;
    l->rng ^= l->rng << 17;
    snprintf(nonce, sizeof nonce, "%016" PRIx64, l->rng);
    snprintf(id, sizeof id, "%" PRIu64 "-0", l->seq + 1);
    snprintf(head, sizeof head, "%" PRIu64 ":%s", l->seq + 1, nonce);
    key(l, k, sizeof k, "mlog");
    key(l, hk, sizeof hk, "mlog:head");
    const char *argv[7] = {"XADD", k, id, "n", nonce, "e", (const char *)l->entry.data};
    size_t argl[7] = {4, strlen(k), strlen(id), 1, strlen(nonce), 1, l->entry.len};
    if (store_batch_guard(b, hk, guard) < 0 || store_batch_add(b, 7, argv, argl) < 0 ||
        store_batch_addv(b, 3, "SET", hk, head) < 0)
        return -1;
    l->seq++;
    memcpy(l->nonce, nonce, sizeof nonce);
    l->unconfirmed = 1;
    l->nentry = 0;
    return 0;
}

/* Drops log entries ARGV[1].. and moves the head back to the entry before
 * them. KEYS: mlog, mlog:head, msnap. Returns the number dropped, or an
 * error. */
static const char drop_lua[] =
    "local from = tonumber(ARGV[1])\n"
    "local p = redis.call('GET', KEYS[3])\n"
    "local snap = p and tonumber(string.match(p, '^(%d+)')) or 0\n"
    "if from <= snap then\n"
    "  return redis.error_reply('entry ' .. from .. ' is covered by snapshot ' .. snap)\n"
    "end\n"
    "local prev, head = from - 1, nil\n"
    "if prev > 0 then\n"
    "  local e = redis.call('XRANGE', KEYS[1], prev .. '-0', prev .. '-0')\n"
    "  if #e == 1 then\n"
    "    for k = 1, #e[1][2], 2 do\n"
    "      if e[1][2][k] == 'n' then head = prev .. ':' .. e[1][2][k + 1] end\n"
    "    end\n"
    "  elseif prev == snap then\n"
    "    head = prev .. ':'\n"
    "  end\n"
    "  if not head then return redis.error_reply('the log lacks entry ' .. prev) end\n"
    "end\n"
    "local gone = redis.call('XRANGE', KEYS[1], from .. '-0', '+')\n"
    "for _, e in ipairs(gone) do redis.call('XDEL', KEYS[1], e[1]) end\n"
    "if redis.call('EXISTS', KEYS[1]) == 1 then\n"
    "  redis.call('XSETID', KEYS[1], prev .. '-0', 'MAXDELETEDID', prev .. '-0')\n"
    "end\n"
    "if head then redis.call('SET', KEYS[2], head) else redis.call('DEL', KEYS[2]) end\n"
    "return #gone\n";

int rlog_drop_from(rlog_t *l, store_t *s, uint64_t from, uint64_t *dropped, char *errstr,
                   size_t errstr_size) {
    char lk[512], hk[512], mk[512], from_s[24];
    snprintf(from_s, sizeof from_s, "%" PRIu64, from);
    redisReply *r = store_command(s, errstr, errstr_size, "EVAL %s 3 %s %s %s %s", drop_lua,
                                  key(l, lk, sizeof lk, "mlog"), key(l, hk, sizeof hk, "mlog:head"),
                                  key(l, mk, sizeof mk, "msnap"), from_s);
    if (!r) return -1;
    int rc = 0;
    if (r->type == REDIS_REPLY_INTEGER) {
        *dropped = (uint64_t)r->integer;
    } else {
        snprintf(errstr, errstr_size, "dropping log entries from %s: %s", from_s,
                 r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        rc = -1;
    }
    freeReplyObject(r);
    /* What this process held may include the dropped entries. */
    l->loaded = 0;
    return rc;
}

/* Sets the snapshot pointer if it moves forward, trims the log it covers
 * and deletes the chunks of the one it replaces. KEYS: msnap, mlog; ARGV:
 * seq, chunks, bytes, chunk key prefix ("reel:{g}:msnap:"), checksum. */
static const char swap_lua[] =
    "local cur = redis.call('GET', KEYS[1])\n"
    "local oseq, ochunks = 0, 0\n"
    "if cur then\n"
    "  local a, b = string.match(cur, '^(%d+) (%d+)')\n"
    "  oseq, ochunks = tonumber(a) or 0, tonumber(b) or 0\n"
    "end\n"
    "if oseq >= tonumber(ARGV[1]) then return 0 end\n"
    "redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[2] .. ' ' .. ARGV[3] .. ' ' .. ARGV[5])\n"
    "redis.call('XTRIM', KEYS[2], 'MINID', ARGV[1] + 1)\n"
    "for c = 0, ochunks - 1 do redis.call('DEL', ARGV[4] .. oseq .. ':' .. c) end\n"
    "return 1\n";

int rlog_snapshot(rlog_t *l, store_t *s, char *errstr, size_t errstr_size) {
    rec_buf_t b = {0};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (rec_mem_save(l->mem, &b) < 0) {
        free(b.data);
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    size_t chunks = (b.len + SNAP_CHUNK - 1) / SNAP_CHUNK;
    char ck[600], prefix[512], mk[512], lk[512];
    snprintf(prefix, sizeof prefix, "%smsnap:", l->prefix);
    /* The chunks go first, under keys no reader knows yet; the pointer
     * moves to them in one step. */
    for (size_t c = 0; c < chunks; c++) {
        size_t off = c * SNAP_CHUNK, len = b.len - off < SNAP_CHUNK ? b.len - off : SNAP_CHUNK;
        snprintf(ck, sizeof ck, "%s%" PRIu64 ":%zu", prefix, l->seq, c);
        redisReply *r = store_command(s, errstr, errstr_size, "SET %s %b", ck, b.data + off, len);
        if (!r) {
            free(b.data);
            return -1;
        }
        freeReplyObject(r);
    }
    /* hiredis formats neither %zu nor PRIu64: numbers go as strings. */
    char seq_s[24], chunks_s[24], bytes_s[24], sum_s[24];
    snprintf(seq_s, sizeof seq_s, "%" PRIu64, l->seq);
    snprintf(chunks_s, sizeof chunks_s, "%zu", chunks);
    snprintf(bytes_s, sizeof bytes_s, "%zu", b.len);
    snprintf(sum_s, sizeof sum_s, "%016" PRIx64, rlog_fnv64(b.data, b.len));
    redisReply *r =
        store_command(s, errstr, errstr_size, "EVAL %s 2 %s %s %s %s %s %s %s", swap_lua,
                      key(l, mk, sizeof mk, "msnap"), key(l, lk, sizeof lk, "mlog"), seq_s,
                      chunks_s, bytes_s, prefix, sum_s);
    if (!r) {
        free(b.data);
        return -1;
    }
    int moved = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (moved) {
        l->snap_seq = l->seq;
        log_info("recommend_snapshot",
                 "state at log entry %" PRIu64 ": %zu bytes in %zu chunks, %.0f ms", l->seq, b.len,
                 chunks, (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6);
    } else {
        /* A newer snapshot is there already: ours was for nothing. */
        for (size_t c = 0; c < chunks; c++) {
            snprintf(ck, sizeof ck, "%s%" PRIu64 ":%zu", prefix, l->seq, c);
            redisReply *d = store_command(s, errstr, errstr_size, "DEL %s", ck);
            if (d) freeReplyObject(d);
        }
    }
    l->since_snap = 0;
    free(b.data);
    return 0;
}
