/* recommend_log.c: the recommend worker's state in memory, logged to Redis
 * (see recommend_log.h for the keys). */
#include "workers/recommend_log.h"

#include <inttypes.h>
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

static int unpack_event(const unsigned char *p, rec_event_t *ev) {
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
    /* Dense ids index arrays the state grows to hold them: an id no
     * dictionary reaches is corruption, not a reason to allocate gigabytes. */
    if (type >= REC_EV_N || has_rating > 1 || ev->event_hash == 0 || ev->user >= MAX_DENSE_ID ||
        ev->item >= MAX_DENSE_ID)
        return -1;
    ev->type = (rec_event_type_t)type;
    ev->has_rating = has_rating;
    ev->event_id = ev->user_id = ev->item_id = "";
    return 0;
}

static int apply_event(rlog_t *l, const rec_event_t *ev, char *reason, size_t n) {
    l->ds.n = 0;
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

/* Replays one stored entry's events. 0, or -1 with errstr. */
static int replay_entry(rlog_t *l, uint64_t seq, const unsigned char *p, size_t len, char *errstr,
                        size_t n) {
    uint32_t count;
    if (len < 8 || memcmp(p, ENTRY_MAGIC, 4) != 0) goto bad;
    memcpy(&count, p + 4, 4);
    if ((len - 8) / EVENT_BYTES != count || (len - 8) % EVENT_BYTES != 0) goto bad;
    for (uint32_t k = 0; k < count; k++) {
        rec_event_t ev;
        char reason[256];
        if (unpack_event(p + 8 + (size_t)k * EVENT_BYTES, &ev) < 0) goto bad;
        if (apply_event(l, &ev, reason, sizeof reason) < 0) {
            snprintf(errstr, n, "replaying log entry %" PRIu64 ": %s", seq, reason);
            return -1;
        }
    }
    l->replayed++;
    return 0;
bad:
    snprintf(errstr, n, "log entry %" PRIu64 " is corrupt (%zu bytes)", seq, len);
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
            if (replay_entry(l, seq, (const unsigned char *)events->str, events->len, errstr, n) <
                0) {
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

/* A new empty state, or the stored snapshot, then the log after it. */
static int reload(rlog_t *l, store_t *s, char *errstr, size_t n) {
    char k[512], ck[600];
    redisReply *r = store_command(s, errstr, n, "GET %s", key(l, k, sizeof k, "msnap"));
    if (!r) return -1;
    unsigned long long seq = 0, chunks = 0, bytes = 0;
    if (r->type == REDIS_REPLY_STRING &&
        sscanf(r->str, "%llu %llu %llu", &seq, &chunks, &bytes) != 3) {
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
        unsigned char *data = malloc(bytes ? bytes : 1);
        size_t have = 0;
        if (!data) {
            snprintf(errstr, n, "out of memory");
            return -1;
        }
        for (unsigned long long c = 0; c < chunks; c++) {
            snprintf(ck, sizeof ck, "%smsnap:%llu:%llu", l->prefix, seq, c);
            r = store_command(s, errstr, n, "GET %s", ck);
            if (!r) {
                free(data);
                return -1;
            }
            if (r->type != REDIS_REPLY_STRING || r->len > bytes - have) {
                freeReplyObject(r);
                free(data);
                snprintf(errstr, n, "snapshot chunk %s is missing or too long", ck);
                return -1;
            }
            memcpy(data + have, r->str, r->len);
            have += r->len;
            freeReplyObject(r);
        }
        if (have != bytes) {
            free(data);
            snprintf(errstr, n, "snapshot %llu has %zu of %llu bytes", seq, have, bytes);
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
        if (t > 0) {
            log_warn("recommend_state_reload",
                     "state at log entry %" PRIu64 ", Redis at %" PRIu64
                     ": reloading the snapshot and the log",
                     l->seq, seq);
            if (reload(l, s, errstr, errstr_size) < 0) return -1;
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

/* Sets the snapshot pointer if it moves forward, trims the log it covers
 * and deletes the chunks of the one it replaces. KEYS: msnap, mlog; ARGV:
 * seq, chunks, bytes, chunk key prefix ("reel:{g}:msnap:"). */
static const char swap_lua[] =
    "local cur = redis.call('GET', KEYS[1])\n"
    "local oseq, ochunks = 0, 0\n"
    "if cur then\n"
    "  local a, b = string.match(cur, '^(%d+) (%d+)')\n"
    "  oseq, ochunks = tonumber(a) or 0, tonumber(b) or 0\n"
    "end\n"
    "if oseq >= tonumber(ARGV[1]) then return 0 end\n"
    "redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[2] .. ' ' .. ARGV[3])\n"
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
    char seq_s[24], chunks_s[24], bytes_s[24];
    snprintf(seq_s, sizeof seq_s, "%" PRIu64, l->seq);
    snprintf(chunks_s, sizeof chunks_s, "%zu", chunks);
    snprintf(bytes_s, sizeof bytes_s, "%zu", b.len);
    redisReply *r = store_command(s, errstr, errstr_size, "EVAL %s 2 %s %s %s %s %s %s", swap_lua,
                                  key(l, mk, sizeof mk, "msnap"), key(l, lk, sizeof lk, "mlog"),
                                  seq_s, chunks_s, bytes_s, prefix);
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
