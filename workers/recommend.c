/* recommend.c: the `recommend` worker. Incremental item-based and user-based
 * collaborative filtering, content-based filtering, popularity and a hybrid
 * blend (kernels/rec.h) over state kept in Redis.
 *
 * Inputs: `viewing-events` (ViewingEvent, keyed by user) and `items` (Item,
 * the catalogue). Output: one Recommendations record per user touched by a
 * batch, computed after every event of the batch is applied, with the
 * user's last input record of the batch as its source.
 *
 * State. Every key is rt_key(ctx, ...) = "reel:{<group>}:<suffix>" and is
 * written only through rt_state(), so it is applied exactly once, with the
 * batch's offsets. The rec.h state maps onto:
 *
 *   seen:<u>        list of 16-hex event-id hashes (RPUSH + LTRIM seen_cap)
 *   hist:<u>        hash item -> packed rec_hist_t (40 bytes, see pack_hist)
 *   unorm           hash user -> double
 *   udot            hash "<u>:<v>" (u <= v) -> double: user dot products are
 *                   symmetric, so each pair is stored (and incremented) once
 *   utop:<u>        a user's neighbours: string of entries (uint32 user id,
 *                   float32 score, both little-endian), best first
 *   istat:c, :n2    hash item -> double (one hash per statistic)
 *   pop             zset member "%08x" item id, score istat c
 *   pair:<f>        hash "<i>:<j>" (i < j) -> number, for the symmetric
 *                   fields f (c, d, rn, rd): each pair once, not per order
 *   pair:<f>:<i>    hash j -> double, for the row-specific fields (rs, rq)
 *   cons:<i>        hash user -> packed (double a, int64 t)
 *   itop:<i>        an item's neighbours, as utop
 *   feat            hash item -> REC_FEAT_META float32 (host order)
 *   feat:version    counter: Item records applied (cat_reload reads feat
 *                   again only when it moved)
 *   title           hash item -> title
 *   ids:<kind>      hash string id -> dense id (kind: item, user)
 *   ids:<kind>:rev  hash dense id -> string id
 *   ids:<kind>:next counter; ids are allocated outside the commit by a Lua
 *                   get-or-create (idempotent: a retried batch reuses them)
 * Numbers are decimal (%.17g for doubles, %.9g for float scores); dense ids in hash fields are
 * decimal, in zset members fixed-width hex.
 *
 * Reads go through a batch-scoped overlay: a rec_mem_t holds every key the
 * batch has read (fetched from Redis on a miss, pipelined, then loaded into
 * the empty rec_mem by applying synthetic deltas) plus every delta of the
 * batch's events, applied as soon as the event is processed. Additive
 * counters (pairs, item stats, user norms and dots) may receive deltas before
 * their base is read: adding the base later gives base + deltas. Lists that
 * are not additive (seen, history, consumers) are loaded before they are
 * written. Top-K lists are kept outside the rec_mem: per row, the base read
 * from Redis plus the batch's latest score per member; a read returns the
 * best K of their union, which is exactly what Redis holds after the
 * commit's ZADD + ZREMRANGEBYRANK (so a member evicted and re-added within a
 * batch is judged by its final score, not by the order of the updates).
 * The overlay is discarded after the batch.
 *
 * Additive deltas are summed per key and field within the batch into one
 * HINCRBYFLOAT (HINCRBY for undecayed counts; ZINCRBY for pop); each top-K row gets one ZADD with
 * its members' final scores and one ZREMRANGEBYRANK.
 *
 * With recommend.state=memory none of the collaborative keys above (seen,
 * hist, unorm, udot, utop, istat, pop, pair, cons, itop) is written: that
 * state lives in this process and Redis holds its log and snapshots
 * (workers/recommend_log.h); feat, title and ids stay as they are here.
 *
 * Content: the worker caches every item's features (the `feat` hash) and
 * refreshes the cache on reload (recommend.reload.interval.ms), since the
 * catalogue is small; items of its own `items` partitions are added at once.
 * The whole cache is the content candidate block. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/rec.h"
#include "pipeline/log.h"
#include "workers/recommend_log.h"
#include "workers/workers.h"

static const char *const recommend_inputs[] = {"viewing-events", "items", NULL};

static const config_key_t recommend_keys[] = {
    {"recommend.topics", "viewing-events,items", "Input topics: viewing events and the catalogue."},
    {"recommend.output", "recommendations", "Topic of the Recommendations records."},
    {"recommend.top.n", "10", "Items per Recommendations record."},
    {"recommend.history.cap", "100",
     "Items kept in each user's history (recommend.history.evict says which leave)."},
    {"recommend.seen.cap", "256", "Event ids remembered per user to drop re-sent events."},
    {"recommend.consumers.cap", "100", "Latest consumers kept per item for user-based CF."},
    {"recommend.similarity", "cosine",
     "Item-item similarity: cosine, jaccard, lift, pearson, count."},
    {"recommend.item.k", "50", "Neighbours kept per item."},
    {"recommend.user.k", "50", "Neighbours kept per user."},
    {"recommend.half.life.days", "0", "Half-life of the time decay in days (0: no decay)."},
    {"recommend.decay.epoch.ms", "1577836800000",
     "Forward-decay reference time; keep |event time - epoch| / half-life under ~500."},
    {"recommend.weights", "item_cf=1,user_cf=0.5,content=0.05,popular=0.05",
     "Hybrid blend weights of the sources."},
    {"recommend.event.weights", "",
     "Implicit feedback weights, e.g. view=0.5,play=1,complete=3 (empty: the defaults)."},
    {"recommend.pop.candidates", "200", "Popular items considered per request."},
    {"recommend.shrink", "0", "Similarity shrinkage s * n / (n + shrink)."},
    {"recommend.item.norm", "source",
     "Item CF: divide a history item's votes by its neighbourhood mass (source), a "
     "candidate's by its own (target), both, or none."},
    {"recommend.similarity.power", "2",
     "Item CF votes are affinity x similarity^power (> 1 trusts close neighbours more)."},
    {"recommend.similarity.alpha", "0.4",
     "Item CF votes use the asymmetric cosine D / (n_cand^(2 alpha) n_hist^(2 - 2 alpha)); 0.5: "
     "the cosine."},
    {"recommend.iuf.beta", "0.4",
     "Cosine counters: each event's increments weighted by (1 + the user's other history "
     "items)^-beta (0: off; changing it needs a new state)."},
    {"recommend.user.similarity.power", "3",
     "User CF: a neighbour votes similarity^power x (its affinity / its largest)^affinity.power."},
    {"recommend.user.affinity.power", "0.3", "See recommend.user.similarity.power."},
    {"recommend.history.evict", "weakest",
     "Which history entry leaves beyond the cap: oldest (least recently used) or weakest "
     "(lowest affinity)."},
    {"recommend.reload.interval.ms", "1000",
     "How often the item feature cache is checked (one MGET) and a step of the multimodal "
     "refresh runs."},
    {"recommend.prefetch", "2",
     "Batch prefetch depth: 0 reads on demand, 1 what every event reads, 2 also the "
     "neighbour lists' members that re-scoring reads (a round trip each)."},
    {"recommend.posters.group", "",
     "Group of the tag worker whose poster embeddings feed the content vectors (empty: "
     "<group.id>-tag)."},
    {"recommend.sentiment.group", "",
     "Group of the sentiment worker whose per-item review sentiment feeds the blend (empty: "
     "<group.id>-sentiment)."},
    {"recommend.poster.weight", "0.5", "Weight of the poster-embedding block (0: posters off)."},
    {"recommend.sentiment.weight", "0.1",
     "Review sentiment prior: scores are multiplied by 1 + weight * mean sentiment (0: off)."},
    {"recommend.sentiment.prior.count", "2",
     "Neutral pseudo-reviews in each item's mean sentiment (few reviews count less)."},
    {"recommend.multimodal.refresh.ms", "30000",
     "How often a cycle re-reading poster embeddings and review sentiment from Redis starts "
     "(0: never); it runs in steps, one per reload."},
    {"recommend.state", "redis",
     "Where the collaborative state lives: redis (every counter a Redis key, updated per "
     "batch) or memory (in this process, logged to Redis as one stream entry per batch "
     "plus periodic snapshots; one worker per group; see docs/recommend.md)."},
    {"recommend.snapshot.events", "500000",
     "recommend.state=memory: events between snapshots of the state in Redis (each "
     "snapshot trims the log it covers; 0: never)."},
    {NULL, NULL, NULL},
};

#define DUP_METRIC "reel_recommend_duplicate_events_total"
#define HIST_BYTES 40
#define CONS_BYTES 16

static const char *const pf_names[REC_PF_N] = {"c", "d", "rn", "rd", "rs", "rq"};
static const char *const src_names[4] = {"item_cf", "user_cf", "content", "popular"};

/* ------------------------------------------------------------------ */
/* A map from (kind, 64-bit key) to a value, reset per batch in O(1).   */

enum {
    K_SEEN = 1,
    K_HIST,
    K_CONS,
    K_ISTAT,
    K_UNORM,
    K_PAIR,
    K_UDOT,
    K_ROW,                            /* top-K row: i = index into rows; key = kind bit | row */
    K_MEMB,                           /* top-K member: i = index into pend */
    K_AGG_PAIR,                       /* + f: summed PAIR_ADD */
    K_AGG_IS = K_AGG_PAIR + REC_PF_N, /* + f: summed ITEM_ADD */
    K_AGG_UNORM = K_AGG_IS + REC_IS_N,
    K_AGG_UDOT,
    K_TOUCH,  /* user touched by the batch: i = index into touched */
    K_ITEMID, /* item dense id allocated this batch: i = index */
    K_PAIRA,  /* asymmetric pair fields of (row, col) loaded */
};

/* Pair fields equal in both orders: stored once, in the hash pair:<f> under
 * the field "<lo>:<hi>" (lo < hi), so one HINCRBY(FLOAT) per pair and one
 * HMGET for any set of pairs. */
#define SYM_PF (REC_PFM(REC_PF_C) | REC_PFM(REC_PF_D) | REC_PFM(REC_PF_RN) | REC_PFM(REC_PF_RD))

typedef struct kent {
    uint64_t key;
    uint32_t gen;
    uint8_t kind;
    double v;
    int64_t i;
} kent_t;

typedef struct kmap {
    kent_t *e;
    uint32_t cap, n, gen;
} kmap_t;

static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static inline uint64_t pack2(uint32_t a, uint32_t b) {
    return (uint64_t)a << 32 | b;
}

static kent_t *km_find(const kmap_t *m, uint8_t kind, uint64_t key) {
    if (!m->cap) return NULL;
    uint32_t mask = m->cap - 1;
    for (uint32_t p = (uint32_t)mix64(key * 31 + kind) & mask;; p = (p + 1) & mask) {
        kent_t *e = &m->e[p];
        if (e->gen != m->gen) return NULL;
        if (e->key == key && e->kind == kind) return e;
    }
}

static int km_grow(kmap_t *m) {
    uint32_t cap = m->cap ? m->cap * 2 : 1024;
    kent_t *e = calloc(cap, sizeof *e);
    if (!e) return -1;
    for (uint32_t q = 0; q < m->cap; q++) {
        if (m->e[q].gen != m->gen) continue;
        uint32_t p = (uint32_t)mix64(m->e[q].key * 31 + m->e[q].kind) & (cap - 1);
        while (e[p].gen == m->gen) p = (p + 1) & (cap - 1);
        e[p] = m->e[q];
    }
    free(m->e);
    m->e = e;
    m->cap = cap;
    return 0;
}

/* The entry of (kind, key), created with v = 0 and i = -1 when absent
 * (*created = 1). NULL when out of memory. */
static kent_t *km_put(kmap_t *m, uint8_t kind, uint64_t key, int *created) {
    if (created) *created = 0;
    kent_t *found = km_find(m, kind, key);
    if (found) return found;
    /* At most half full: linear probing stays short, and lookups are most
     * of a batch's CPU. */
    if ((m->n + 1) * 2 > m->cap && km_grow(m) < 0) return NULL;
    uint32_t mask = m->cap - 1;
    for (uint32_t p = (uint32_t)mix64(key * 31 + kind) & mask;; p = (p + 1) & mask) {
        kent_t *e = &m->e[p];
        if (e->gen != m->gen) {
            e->gen = m->gen;
            e->key = key;
            e->kind = kind;
            e->v = 0;
            e->i = -1;
            m->n++;
            if (created) *created = 1;
            return e;
        }
        if (e->key == key && e->kind == kind) return e;
    }
}

static void km_reset(kmap_t *m) {
    /* A table grown for a big batch is shrunk when the last batch used a
     * small part of it: lookups spread over a sparse table larger than the
     * cache miss every time, and small batches (low rates, where latency
     * matters) would pay for the largest one seen. */
    if (m->cap > 4096 && (size_t)m->n * 8 < m->cap) {
        uint32_t cap = m->cap;
        while (cap > 4096 && (size_t)m->n * 8 < cap) cap /= 2;
        kent_t *e = calloc(cap, sizeof *e);
        if (e) {
            free(m->e);
            m->e = e;
            m->cap = cap;
            m->n = 0;
            m->gen = 1;
            return;
        }
    }
    m->gen++;
    m->n = 0;
    if (m->gen == 0) { /* wrapped: clear for real */
        if (m->e) memset(m->e, 0, (size_t)m->cap * sizeof *m->e);
        m->gen = 1;
    }
}

/* ------------------------------------------------------------------ */
/* String id <-> dense id, cached for the worker's lifetime.           */

typedef struct sent {
    char *s; /* NULL: empty */
    uint32_t id;
} sent_t;

typedef struct idmap {
    sent_t *e;
    uint32_t cap, n;
    char **names; /* dense id -> string (borrowed from e), may be NULL */
    uint32_t ncap;
} idmap_t;

static void idmap_free(idmap_t *m) {
    for (uint32_t k = 0; k < m->cap; k++) free(m->e[k].s);
    free(m->e);
    free(m->names);
}

static int64_t idmap_find(const idmap_t *m, const char *s, size_t len) {
    if (!m->cap) return -1;
    uint32_t mask = m->cap - 1;
    for (uint32_t p = (uint32_t)rec_hash64(s, len) & mask;; p = (p + 1) & mask) {
        if (!m->e[p].s) return -1;
        if (strncmp(m->e[p].s, s, len) == 0 && m->e[p].s[len] == 0) return m->e[p].id;
    }
}

static const char *idmap_name(const idmap_t *m, uint32_t id) {
    return id < m->ncap ? m->names[id] : NULL;
}

static int idmap_add(idmap_t *m, const char *s, size_t len, uint32_t id) {
    if (idmap_find(m, s, len) >= 0) return 0;
    if ((m->n + 1) * 2 > m->cap) {
        uint32_t cap = m->cap ? m->cap * 2 : 1024;
        sent_t *e = calloc(cap, sizeof *e);
        if (!e) return -1;
        for (uint32_t q = 0; q < m->cap; q++) {
            if (!m->e[q].s) continue;
            uint32_t p = (uint32_t)rec_hash64(m->e[q].s, strlen(m->e[q].s)) & (cap - 1);
            while (e[p].s) p = (p + 1) & (cap - 1);
            e[p] = m->e[q];
        }
        free(m->e);
        m->e = e;
        m->cap = cap;
    }
    if (id >= m->ncap) {
        uint32_t ncap = m->ncap ? m->ncap : 1024;
        while (ncap <= id) ncap *= 2;
        char **names = realloc(m->names, (size_t)ncap * sizeof *names);
        if (!names) return -1;
        memset(names + m->ncap, 0, (size_t)(ncap - m->ncap) * sizeof *names);
        m->names = names;
        m->ncap = ncap;
    }
    char *copy = strndup(s, len);
    if (!copy) return -1;
    uint32_t p = (uint32_t)rec_hash64(s, len) & (m->cap - 1);
    while (m->e[p].s) p = (p + 1) & (m->cap - 1);
    m->e[p].s = copy;
    m->e[p].id = id;
    m->n++;
    m->names[id] = copy;
    return 0;
}

/* ------------------------------------------------------------------ */
/* The worker's state                                                  */

typedef struct toprow {
    uint32_t row;
    uint8_t user;       /* 0: itopk, 1: utopk */
    uint8_t loaded;     /* base read (or queued) */
    uint8_t best_valid; /* best holds the current topk_read() result */
    int nbase;
    rec_scored_t *base;
    int32_t head; /* pending members, index into pend */
    int npend;
    int nbest;
    rec_scored_t *best; /* the best K of base and pending, sorted */
} toprow_t;

typedef struct pend {
    uint32_t member;
    float score;
    int32_t next;
} pend_t;

/* One queued read: ncmd replies, applied by fetch_apply. */
typedef struct fetch {
    uint8_t kind;
    uint8_t ncmd;
    uint32_t a;
    uint32_t off, n; /* ids in fids[off..off+n) */
} fetch_t;

typedef struct touched {
    uint32_t user;
    size_t rec; /* the user's last record in the batch */
} touched_t;

/* A decoded event of the batch, before and after id mapping. */
typedef struct bev {
    rec_event_t ev;
    size_t rec;
    int ok;
} bev_t;

typedef struct rstate {
    rec_config_t cfg;
    int top_n;
    char output[256];
    char prefix[300]; /* "reel:{group}:" */
    const codec_schema_t *out_schema;
    avro_value_t out;
    int out_made;
    metrics_t *metrics;
    char labels[128];

    /* Worker-lifetime caches. */
    idmap_t items, users;
    uint32_t n_items; /* one past the largest item id known */
    float *cat;       /* ncat x REC_FEAT_DIM */
    uint32_t *cat_ids;
    size_t ncat, capcat;
    uint64_t cat_version; /* moves with every write to cat (the reader's catalogue_version) */
    int32_t *cat_row;     /* item id -> row, -1 none */
    uint32_t cat_row_cap;
    /* Multimodal parts, re-read every mm_interval_ms (mm_refresh). */
    char posters_key[300]; /* the tag worker's poster-embeddings hash */
    char sent_group[256];  /* the sentiment worker's group */
    int64_t mm_interval_ms, mm_last_ms;
    long long feat_version; /* feat:version at the last full read */
    int feat_loaded;
    int prefetch; /* recommend.prefetch: prefetch_events */
    float *sent;  /* item id -> shrunk mean review sentiment */
    uint32_t nsent;
    size_t mm_posters, mm_sent; /* items with each, at the last complete cycle */
    int mm_phase;               /* 0 idle, 1 posters, 2 sentiment, 3 ending */
    unsigned long long mm_scan; /* HSCAN cursor */
    uint32_t mm_next;           /* next item id of the sentiment phase */
    size_t mm_np, mm_ns;        /* counts of the cycle in progress */
    long mm_cycles;

    /* Batch-scoped overlay. */
    rec_mem_t *mem;
    rec_reader_t mr; /* rec_mem's reader */
    rec_reader_t rd; /* the overlay reader */
    kmap_t km;
    toprow_t *rows;
    size_t nrows, caprows;
    unsigned char *topbuf; /* a row's best entries and their packed form */
    size_t captopbuf;
    pend_t *pend;
    size_t npend, cappend;
    fetch_t *fq;
    size_t nfq, capfq, fq_done;
    uint32_t *fids;
    size_t nfids, capfids;
    int pop_loaded;
    store_t *store;
    int failed;
    char err[256];

    rec_work_t *work;
    rec_deltas_t deltas;
    rlog_t *log;      /* recommend.state=memory; NULL: state in Redis */
    rec_reader_t lrd; /* log mode: the memory state with this cache's content */
    bev_t *evs;
    size_t capevs;
    touched_t *touched;
    size_t ntouched, captouched;
    rec_rec_t *recs; /* ntouched x top_n */
    int *nrecs;
    size_t caprecs;

    /* Command building. */
    const char **av;
    size_t *al;
    char (*num)[32];
    size_t capav;
    rec_scored_t *scratch;
    size_t capscratch;
} rstate_t;

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *key_of(const rstate_t *st, char *buf, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static const char *key_of(const rstate_t *st, char *buf, size_t n, const char *fmt, ...) {
    size_t pl = strlen(st->prefix);
    memcpy(buf, st->prefix, pl + 1);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + pl, n - pl, fmt, ap);
    va_end(ap);
    return buf;
}

static int grow(void **p, size_t *cap, size_t need, size_t size) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * size);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

/* Room for n command arguments in av/al/num. */
static int args_room(rstate_t *st, size_t n) {
    if (n <= st->capav) return 0;
    size_t c = st->capav ? st->capav : 256;
    while (c < n) c *= 2;
    const char **av = realloc(st->av, c * sizeof *av);
    if (av) st->av = av;
    size_t *al = realloc(st->al, c * sizeof *al);
    if (al) st->al = al;
    char(*num)[32] = realloc(st->num, c * sizeof *num);
    if (num) st->num = num;
    if (!av || !al || !num) return -1;
    st->capav = c;
    return 0;
}

static void set_arg(rstate_t *st, size_t k, const char *s, size_t len) {
    st->av[k] = s;
    st->al[k] = len;
}

static void set_arg_s(rstate_t *st, size_t k, const char *s) {
    set_arg(st, k, s, strlen(s));
}

/* Decimal digits of v at out (no NUL); returns their count. printf was a
 * tenth of a batch's CPU, mostly for ids. */
static size_t fmt_u32(char *out, uint32_t v) {
    char tmp[10];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t k = 0; k < n; k++) out[k] = tmp[n - 1 - k];
    return n;
}

/* "a" or "a:b" into out (at least 22 bytes), NUL-terminated. */
static const char *fmt_ids(char *out, uint32_t a, const uint32_t *b) {
    size_t n = fmt_u32(out, a);
    if (b) {
        out[n++] = ':';
        n += fmt_u32(out + n, *b);
    }
    out[n] = '\0';
    return out;
}

static void set_arg_num(rstate_t *st, size_t k, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_arg_num(rstate_t *st, size_t k, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(st->num[k], sizeof st->num[k], fmt, ap);
    va_end(ap);
    set_arg(st, k, st->num[k], (size_t)len);
}

/* ------------------------------------------------------------------ */
/* Packing                                                             */

static void pack_hist(const rec_hist_t *h, unsigned char out[HIST_BYTES]) {
    memcpy(out, &h->item, 4);
    memcpy(out + 4, &h->rating, 4);
    memcpy(out + 8, &h->a, 8);
    memcpy(out + 16, &h->t_first, 8);
    memcpy(out + 24, &h->t_rated, 8);
    memcpy(out + 32, &h->t_last, 8);
}

static void unpack_hist(const unsigned char *in, rec_hist_t *h) {
    memset(h, 0, sizeof *h);
    memcpy(&h->item, in, 4);
    memcpy(&h->rating, in + 4, 4);
    memcpy(&h->a, in + 8, 8);
    memcpy(&h->t_first, in + 16, 8);
    memcpy(&h->t_rated, in + 24, 8);
    memcpy(&h->t_last, in + 32, 8);
}

/* ------------------------------------------------------------------ */
/* Feature cache                                                       */

/* Neighbour lists are strings of (uint32 id, float32 score) entries,
 * little-endian, best first: one GET reads a row and one SET writes it.
 * (Sorted sets cost Redis a parse of every stored score on each ordered
 * insert, and ZADD of a changed row was most of the commit's time.) */
#define TOP_ENTRY_BYTES 8

static void pack_top(const rec_scored_t *e, unsigned char out[TOP_ENTRY_BYTES]) {
    uint32_t bits;
    memcpy(&bits, &e->score, 4);
    for (int k = 0; k < 4; k++) {
        out[k] = (unsigned char)(e->id >> (8 * k));
        out[4 + k] = (unsigned char)(bits >> (8 * k));
    }
}

static void unpack_top(const unsigned char *in, rec_scored_t *e) {
    uint32_t id = 0, bits = 0;
    for (int k = 0; k < 4; k++) {
        id |= (uint32_t)in[k] << (8 * k);
        bits |= (uint32_t)in[4 + k] << (8 * k);
    }
    e->id = id;
    memcpy(&e->score, &bits, 4);
}

static int cat_set(rstate_t *st, uint32_t item, const float *f) {
    if (item >= st->cat_row_cap) {
        uint32_t cap = st->cat_row_cap ? st->cat_row_cap : 1024;
        while (cap <= item) cap *= 2;
        int32_t *r = realloc(st->cat_row, (size_t)cap * sizeof *r);
        if (!r) return -1;
        for (uint32_t k = st->cat_row_cap; k < cap; k++) r[k] = -1;
        st->cat_row = r;
        st->cat_row_cap = cap;
    }
    if (st->cat_row[item] < 0) {
        if (st->ncat == st->capcat) {
            size_t cap = st->capcat ? st->capcat * 2 : 1024;
            float *c = realloc(st->cat, cap * REC_FEAT_DIM * sizeof *c);
            if (!c) return -1;
            st->cat = c;
            uint32_t *ids = realloc(st->cat_ids, cap * sizeof *ids);
            if (!ids) return -1;
            st->cat_ids = ids;
            st->capcat = cap;
        }
        st->cat_row[item] = (int32_t)st->ncat;
        st->cat_ids[st->ncat++] = item;
    }
    memcpy(st->cat + (size_t)st->cat_row[item] * REC_FEAT_DIM, f, REC_FEAT_DIM * sizeof *f);
    st->cat_version++;
    if (item + 1 > st->n_items) st->n_items = item + 1;
    return 0;
}

/* The cache row of item, created (all zero) when absent, for the caller to
 * write; NULL on OOM. */
static float *cat_row_of(rstate_t *st, uint32_t item) {
    if (item >= st->cat_row_cap || st->cat_row[item] < 0) {
        float zero[REC_FEAT_DIM] = {0};
        if (cat_set(st, item, zero) < 0) return NULL;
    }
    st->cat_version++;
    return st->cat + (size_t)st->cat_row[item] * REC_FEAT_DIM;
}

/* Sets the metadata part of item's features (f: REC_FEAT_META floats),
 * keeping its poster block. */
static int cat_set_meta(rstate_t *st, uint32_t item, const float *f) {
    float *row = cat_row_of(st, item);
    if (!row) return -1;
    memcpy(row, f, REC_FEAT_META * sizeof *f);
    return 0;
}

/* Reads every item's features and the item id counter, when the feature
 * hash changed since the last read: feat:version counts the Item records
 * applied (in the same commit as their HSET), so one GET per reload
 * replaces a catalogue-sized HGETALL while nothing changes. */
static int cat_reload(rstate_t *st, store_t *s, char *errstr, size_t n) {
    char key[512], key2[512];
    redisReply *r =
        store_command(s, errstr, n, "MGET %s %s", key_of(st, key, sizeof key, "feat:version"),
                      key_of(st, key2, sizeof key2, "ids:item:next"));
    if (!r) return -1;
    long long version = 0;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
        if (r->element[0]->type == REDIS_REPLY_STRING)
            version = strtoll(r->element[0]->str, NULL, 10);
        if (r->element[1]->type == REDIS_REPLY_STRING) {
            uint32_t next = (uint32_t)strtoul(r->element[1]->str, NULL, 10);
            if (next > st->n_items) st->n_items = next;
        }
    }
    freeReplyObject(r);
    if (st->feat_loaded && version == st->feat_version) return 0;
    r = store_command(s, errstr, n, "HGETALL %s", key_of(st, key, sizeof key, "feat"));
    if (!r) return -1;
    st->feat_loaded = 1;
    st->feat_version = version;
    if (r->type == REDIS_REPLY_ARRAY) {
        for (size_t k = 0; k + 1 < r->elements; k += 2) {
            redisReply *f = r->element[k], *v = r->element[k + 1];
            if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING ||
                v->len != REC_FEAT_META * sizeof(float))
                continue;
            float feat[REC_FEAT_META];
            memcpy(feat, v->str, sizeof feat);
            if (cat_set_meta(st, (uint32_t)strtoul(f->str, NULL, 10), feat) < 0) {
                freeReplyObject(r);
                snprintf(errstr, n, "out of memory");
                return -1;
            }
        }
    }
    freeReplyObject(r);
    return 0;
}

/* Reads one pipelined reply; NULL (reason in errstr, connection marked
 * broken) on failure. */
static redisReply *mm_reply(store_t *s, char *errstr, size_t n) {
    redisContext *c = store_redis(s);
    void *r = NULL;
    if (!c || redisGetReply(c, &r) != REDIS_OK || !r) {
        snprintf(errstr, n, "redis read: %s", c ? c->errstr : "not connected");
        store_mark_broken(s);
        return NULL;
    }
    return r;
}

/* The other workers' contributions to the content features are re-read in
 * cycles, one bounded step per reload, so that no step blocks the worker's
 * thread for long: a cycle starts every recommend.multimodal.refresh.ms and
 * (1) reads this group's item id map when it lacks names (the other workers
 * key by string item id), (2) walks the tag worker's poster hash with HSCAN,
 * MM_POSTERS_PER_STEP fields a step, (3) reads count and sum of the
 * sentiment hash of MM_ITEMS_PER_STEP known items a step (pipelined HMGETs).
 * They change no state of this worker: only what it recommends. */
#define MM_POSTERS_PER_STEP 1000
#define MM_ITEMS_PER_STEP 5000

static int mm_posters_apply(rstate_t *st, redisReply *arr) {
    for (size_t k = 0; arr && arr->type == REDIS_REPLY_ARRAY && k + 1 < arr->elements; k += 2) {
        redisReply *f = arr->element[k], *v = arr->element[k + 1];
        /* float32[dim] in host order, as the tag worker writes it */
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING || v->len == 0 ||
            v->len % sizeof(float) || v->len > 65536 * sizeof(float))
            continue;
        int64_t id = idmap_find(&st->items, f->str, f->len);
        if (id < 0) continue; /* an item not seen yet: next cycle */
        float *row = cat_row_of(st, (uint32_t)id);
        if (!row) return -1;
        size_t dim = v->len / sizeof(float);
        float *emb = malloc(v->len);
        if (!emb) return -1;
        memcpy(emb, v->str, v->len);
        rec_features_poster(row, emb, dim, st->cfg.poster_weight);
        free(emb);
        st->mm_np++;
    }
    return 0;
}

/* One step of the cycle. Returns 0 (*done = 1 when a cycle ended), -1 with
 * the reason in errstr. */
static int mm_step(rstate_t *st, store_t *s, int *done, char *errstr, size_t n) {
    *done = 0;
    redisContext *c = store_redis(s);
    if (!c) {
        snprintf(errstr, n, "redis not connected");
        return -1;
    }
    const int posters = st->cfg.poster_weight != 0;
    const int sentiment = st->cfg.sentiment_weight != 0;
    if (st->mm_phase == 0) {
        if (st->mm_interval_ms <= 0 || (!posters && !sentiment)) return 0;
        if (st->mm_cycles > 0 && now_ms() - st->mm_last_ms < st->mm_interval_ms) return 0;
        st->mm_last_ms = now_ms();
        st->mm_scan = 0;
        st->mm_next = 0;
        st->mm_np = st->mm_ns = 0;
        st->mm_phase = posters ? 1 : 2;
        if (st->items.n < st->n_items) { /* ids this instance has no name for */
            char key[512];
            redisReply *ir =
                store_command(s, errstr, n, "HGETALL %s", key_of(st, key, sizeof key, "ids:item"));
            if (!ir) return -1;
            for (size_t k = 0; ir->type == REDIS_REPLY_ARRAY && k + 1 < ir->elements; k += 2) {
                redisReply *f = ir->element[k], *v = ir->element[k + 1];
                if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING || f->len == 0 ||
                    f->len > 256)
                    continue;
                uint32_t id = (uint32_t)strtoul(v->str, NULL, 10);
                if (idmap_add(&st->items, f->str, f->len, id) < 0) {
                    freeReplyObject(ir);
                    snprintf(errstr, n, "out of memory");
                    return -1;
                }
                if (id + 1 > st->n_items) st->n_items = id + 1;
            }
            freeReplyObject(ir);
        }
        return 0;
    }
    if (st->mm_phase == 1) {
        char cur[32];
        snprintf(cur, sizeof cur, "%llu", st->mm_scan);
        redisReply *r = store_command(s, errstr, n, "HSCAN %s %s COUNT %d", st->posters_key, cur,
                                      MM_POSTERS_PER_STEP);
        if (!r) return -1;
        int rc = 0;
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
            r->element[0]->type == REDIS_REPLY_STRING) {
            st->mm_scan = strtoull(r->element[0]->str, NULL, 10);
            if (mm_posters_apply(st, r->element[1]) < 0) {
                snprintf(errstr, n, "out of memory");
                rc = -1;
            }
        } else {
            st->mm_scan = 0; /* not a hash (or an error reply): nothing to read */
        }
        freeReplyObject(r);
        if (rc == 0 && st->mm_scan == 0) st->mm_phase = sentiment ? 2 : 3;
        if (rc < 0 || st->mm_phase != 3) return rc;
    }
    if (st->mm_phase == 2) {
        uint32_t nnames = st->items.ncap;
        if (nnames > st->nsent) {
            float *p = realloc(st->sent, (size_t)nnames * sizeof *p);
            if (!p) {
                snprintf(errstr, n, "out of memory");
                return -1;
            }
            memset(p + st->nsent, 0, (size_t)(nnames - st->nsent) * sizeof *p);
            st->sent = p;
            st->nsent = nnames;
        }
        uint32_t end = st->mm_next + MM_ITEMS_PER_STEP;
        if (end > nnames) end = nnames;
        char key[600], suffix[300];
        size_t cmds = 0;
        for (uint32_t id = st->mm_next; id < end; id++) {
            const char *name = idmap_name(&st->items, id);
            if (!name) continue;
            snprintf(suffix, sizeof suffix, "sentiment:item:%s", name);
            rt_key_for(st->sent_group, suffix, key, sizeof key);
            if (redisAppendCommand(c, "HMGET %s count sum", key) != REDIS_OK) {
                snprintf(errstr, n, "redis: %s", c->errstr);
                store_mark_broken(s);
                return -1;
            }
            cmds++;
        }
        for (uint32_t id = st->mm_next; id < end && cmds > 0; id++) {
            if (!idmap_name(&st->items, id)) continue;
            redisReply *r = mm_reply(s, errstr, n);
            if (!r) return -1;
            cmds--;
            float v = 0;
            if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                r->element[0]->type == REDIS_REPLY_STRING &&
                r->element[1]->type == REDIS_REPLY_STRING) {
                v = rec_sentiment_mean(strtod(r->element[1]->str, NULL),
                                       strtod(r->element[0]->str, NULL),
                                       st->cfg.sentiment_prior_count);
                st->mm_ns++;
            }
            st->sent[id] = v;
            freeReplyObject(r);
        }
        st->mm_next = end;
        if (end >= nnames) st->mm_phase = 3;
    }
    if (st->mm_phase == 3) {
        st->mm_posters = st->mm_np;
        st->mm_sent = st->mm_ns;
        st->mm_phase = 0;
        st->mm_cycles++;
        *done = 1;
        log_info("recommend_multimodal", "posters=%zu sentiment=%zu items=%u", st->mm_posters,
                 st->mm_sent, st->items.n);
    }
    return 0;
}

/* A whole cycle at once (at start). */
static int mm_refresh(rstate_t *st, store_t *s, char *errstr, size_t n) {
    int done = 0;
    for (int k = 0; k < 1000000 && !done; k++) {
        if (mm_step(st, s, &done, errstr, n) < 0) return -1;
        if (st->mm_phase == 0 && !done) return 0; /* nothing to do */
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Reads: a queue of pipelined fetches, applied to the overlay          */

static void fail(rstate_t *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(rstate_t *st, const char *fmt, ...) {
    if (st->failed) return;
    st->failed = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->err, sizeof st->err, fmt, ap);
    va_end(ap);
}

/* Appends one command of nargs arguments in av/al to the connection. */
static int append_cmd(rstate_t *st, int nargs) {
    redisContext *c = store_redis(st->store);
    if (!c) {
        fail(st, "redis not connected");
        return -1;
    }
    if (redisAppendCommandArgv(c, nargs, st->av, st->al) != REDIS_OK) {
        fail(st, "redis: %s", c->errstr);
        store_mark_broken(st->store);
        return -1;
    }
    return 0;
}

static fetch_t *fq_push(rstate_t *st, uint8_t kind, uint32_t a, const uint32_t *ids, size_t n) {
    if (grow((void **)&st->fq, &st->capfq, st->nfq + 1, sizeof *st->fq) < 0 ||
        grow((void **)&st->fids, &st->capfids, st->nfids + n, sizeof *st->fids) < 0) {
        fail(st, "out of memory");
        return NULL;
    }
    fetch_t *f = &st->fq[st->nfq++];
    f->kind = kind;
    f->ncmd = 0;
    f->a = a;
    f->off = (uint32_t)st->nfids;
    f->n = (uint32_t)n;
    if (n) memcpy(st->fids + st->nfids, ids, n * sizeof *ids);
    st->nfids += n;
    return f;
}

/* Marks (kind, key) loaded; returns 1 if it was not (the caller fetches it),
 * 0 if it was, -1 out of memory. */
static int mark(rstate_t *st, uint8_t kind, uint64_t key) {
    int created;
    if (!km_put(&st->km, kind, key, &created)) {
        fail(st, "out of memory");
        return -1;
    }
    return created;
}

/* Whole-key fetches: seen list, history, consumers. */
static void q_whole(rstate_t *st, uint8_t kind, uint32_t a) {
    if (st->failed || mark(st, kind, a) != 1) return;
    char key[512];
    if (args_room(st, 4) < 0) return fail(st, "out of memory");
    if (kind == K_SEEN) {
        set_arg_s(st, 0, "LRANGE");
        set_arg_s(st, 1, key_of(st, key, sizeof key, "seen:%u", a));
        set_arg_s(st, 2, "0");
        set_arg_s(st, 3, "-1");
        if (append_cmd(st, 4) < 0) return;
    } else {
        set_arg_s(st, 0, "HGETALL");
        set_arg_s(st, 1, key_of(st, key, sizeof key, kind == K_HIST ? "hist:%u" : "cons:%u", a));
        if (append_cmd(st, 2) < 0) return;
    }
    fetch_t *f = fq_push(st, kind, a, NULL, 0);
    if (f) f->ncmd = 1;
}

/* HMGET of the ids not yet loaded, for pairs (row a), udot (user a), item
 * stats and user norms. */
static void q_fields(rstate_t *st, uint8_t kind, uint32_t a, const uint32_t *ids, int n) {
    if (st->failed || n <= 0) return;
    size_t start = st->nfids;
    if (grow((void **)&st->fids, &st->capfids, st->nfids + (size_t)n, sizeof *st->fids) < 0)
        return fail(st, "out of memory");
    size_t m = 0;
    for (int k = 0; k < n; k++) {
        uint64_t key = kind == K_PAIRA ? pack2(a, ids[k])
                       : (kind == K_PAIR || kind == K_UDOT)
                           ? (a < ids[k] ? pack2(a, ids[k]) : pack2(ids[k], a))
                           : ids[k];
        int r = mark(st, kind, key);
        if (r < 0) return;
        if (r) st->fids[start + m++] = ids[k];
    }
    if (m == 0) return;
    if (args_room(st, m + 2) < 0) return fail(st, "out of memory");
    /* The ids sit in fids[start..start+m); fq_push copies them again, so
     * build the fetch by hand instead. */
    if (grow((void **)&st->fq, &st->capfq, st->nfq + 1, sizeof *st->fq) < 0)
        return fail(st, "out of memory");
    fetch_t *f = &st->fq[st->nfq++];
    f->kind = kind;
    f->a = a;
    f->off = (uint32_t)start;
    f->n = (uint32_t)m;
    f->ncmd = 0;
    st->nfids = start + m;
    char key[512];
    set_arg_s(st, 0, "HMGET");
    for (size_t k = 0; k < m; k++)
        set_arg_s(st, 2 + k, fmt_ids(st->num[2 + k], st->fids[start + k], NULL));
    if (kind == K_PAIR) {
        /* Symmetric fields: one hash per field, "<lo>:<hi>" fields. */
        unsigned pf = rec_config_fields(&st->cfg) & SYM_PF;
        for (size_t k = 0; k < m; k++) {
            uint32_t c = st->fids[start + k];
            uint32_t lo = a < c ? a : c, hi = a < c ? c : a;
            set_arg_s(st, 2 + k, fmt_ids(st->num[2 + k], lo, &hi));
        }
        for (int fl = 0; fl < REC_PF_N; fl++) {
            if (!(pf & REC_PFM(fl))) continue;
            set_arg_s(st, 1, key_of(st, key, sizeof key, "pair:%s", pf_names[fl]));
            if (append_cmd(st, (int)m + 2) < 0) return;
            f->ncmd++;
        }
    } else if (kind == K_PAIRA) {
        unsigned pf = rec_config_fields(&st->cfg) & ~SYM_PF;
        for (int fl = 0; fl < REC_PF_N; fl++) {
            if (!(pf & REC_PFM(fl))) continue;
            set_arg_s(st, 1, key_of(st, key, sizeof key, "pair:%s:%u", pf_names[fl], a));
            if (append_cmd(st, (int)m + 2) < 0) return;
            f->ncmd++;
        }
    } else if (kind == K_ISTAT) {
        set_arg_s(st, 1, key_of(st, key, sizeof key, "istat:c"));
        if (append_cmd(st, (int)m + 2) < 0) return;
        set_arg_s(st, 1, key_of(st, key, sizeof key, "istat:n2"));
        if (append_cmd(st, (int)m + 2) < 0) return;
        f->ncmd = 2;
    } else {
        if (kind == K_UDOT) /* symmetric: "<lo>:<hi>" fields of one hash */
            for (size_t k = 0; k < m; k++) {
                uint32_t c = st->fids[start + k];
                uint32_t lo = a < c ? a : c, hi = a < c ? c : a;
                set_arg_s(st, 2 + k, fmt_ids(st->num[2 + k], lo, &hi));
            }
        set_arg_s(st, 1,
                  kind == K_UNORM ? key_of(st, key, sizeof key, "unorm")
                                  : key_of(st, key, sizeof key, "udot"));
        if (append_cmd(st, (int)m + 2) < 0) return;
        f->ncmd = 1;
    }
}

static toprow_t *row_get(rstate_t *st, int user, uint32_t row) {
    int created;
    kent_t *e = km_put(&st->km, K_ROW, (uint64_t)user << 32 | row, &created);
    if (!e) return NULL;
    if (created) {
        if (grow((void **)&st->rows, &st->caprows, st->nrows + 1, sizeof *st->rows) < 0)
            return NULL;
        toprow_t *r = &st->rows[st->nrows];
        memset(r, 0, sizeof *r);
        r->row = row;
        r->user = (uint8_t)user;
        r->head = -1;
        e->i = (int64_t)st->nrows++;
    }
    return &st->rows[e->i];
}

static void q_topk(rstate_t *st, int user, uint32_t row) {
    if (st->failed) return;
    toprow_t *r = row_get(st, user, row);
    if (!r) return fail(st, "out of memory");
    if (r->loaded) return;
    r->loaded = 1;
    char key[512];
    if (args_room(st, 5) < 0) return fail(st, "out of memory");
    set_arg_s(st, 0, "GET");
    set_arg_s(st, 1, key_of(st, key, sizeof key, "%s:%u", user ? "utop" : "itop", row));
    if (append_cmd(st, 2) < 0) return;
    fetch_t *f = fq_push(st, K_ROW, row, NULL, 0);
    if (f) {
        f->ncmd = 1;
        f->off = (uint32_t)user; /* which list */
    }
}

static void q_pop(rstate_t *st) {
    if (st->failed || st->pop_loaded) return;
    st->pop_loaded = 1;
    char key[512];
    if (args_room(st, 4) < 0) return fail(st, "out of memory");
    set_arg_s(st, 0, "ZREVRANGE");
    set_arg_s(st, 1, key_of(st, key, sizeof key, "pop"));
    set_arg_s(st, 2, "0");
    set_arg_num(st, 3, "%d", st->cfg.pop_candidates + st->cfg.hist_cap + 1);
    if (append_cmd(st, 4) < 0) return;
    fetch_t *f = fq_push(st, 0, 0, NULL, 0);
    if (f) f->ncmd = 1;
}

static int apply1(rstate_t *st, const rec_delta_t *d) {
    if (rec_mem_apply(st->mem, d, 1) < 0) {
        fail(st, "out of memory");
        return -1;
    }
    return 0;
}

static double reply_double(const redisReply *r) {
    if (!r || r->type != REDIS_REPLY_STRING) return 0.0;
    return strtod(r->str, NULL);
}

/* Loads the replies of one fetch into the overlay. */
static void fetch_apply(rstate_t *st, const fetch_t *f, redisReply **rep) {
    rec_delta_t d;
    const uint32_t *ids = st->fids + f->off;
    memset(&d, 0, sizeof d);
    switch (f->kind) {
    case K_SEEN: {
        redisReply *r = rep[0];
        d.op = REC_OP_SEEN_ADD;
        d.a = f->a;
        for (size_t k = 0; r->type == REDIS_REPLY_ARRAY && k < r->elements; k++) {
            if (r->element[k]->type != REDIS_REPLY_STRING) continue;
            d.key = strtoull(r->element[k]->str, NULL, 16);
            if (apply1(st, &d) < 0) return;
        }
        break;
    }
    case K_HIST: {
        redisReply *r = rep[0];
        d.op = REC_OP_HIST_SET;
        d.a = f->a;
        for (size_t k = 0; r->type == REDIS_REPLY_ARRAY && k + 1 < r->elements; k += 2) {
            redisReply *v = r->element[k + 1];
            if (v->type != REDIS_REPLY_STRING || v->len != HIST_BYTES) continue;
            unpack_hist((const unsigned char *)v->str, &d.hist);
            d.b = d.hist.item;
            if (apply1(st, &d) < 0) return;
        }
        break;
    }
    case K_CONS: {
        redisReply *r = rep[0];
        d.op = REC_OP_CONS_SET;
        d.a = f->a;
        for (size_t k = 0; r->type == REDIS_REPLY_ARRAY && k + 1 < r->elements; k += 2) {
            redisReply *u = r->element[k], *v = r->element[k + 1];
            if (u->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING ||
                v->len != CONS_BYTES)
                continue;
            d.b = (uint32_t)strtoul(u->str, NULL, 10);
            memcpy(&d.v, v->str, 8);
            memcpy(&d.t, v->str + 8, 8);
            if (apply1(st, &d) < 0) return;
        }
        break;
    }
    case K_PAIR:
    case K_PAIRA: {
        unsigned pf = rec_config_fields(&st->cfg) & (f->kind == K_PAIR ? SYM_PF : ~SYM_PF);
        int c = 0;
        d.op = REC_OP_PAIR_ADD;
        d.a = f->a;
        for (int fl = 0; fl < REC_PF_N; fl++) {
            if (!(pf & REC_PFM(fl))) continue;
            redisReply *r = rep[c++];
            d.f = (uint8_t)fl;
            for (uint32_t k = 0; r->type == REDIS_REPLY_ARRAY && k < f->n && k < r->elements; k++) {
                d.v = reply_double(r->element[k]);
                if (d.v == 0) continue;
                d.a = f->a;
                d.b = ids[k];
                if (apply1(st, &d) < 0) return;
                if (f->kind == K_PAIR && ids[k] != f->a) { /* the mirror */
                    d.a = ids[k];
                    d.b = f->a;
                    if (apply1(st, &d) < 0) return;
                }
            }
        }
        break;
    }
    case K_ISTAT:
        d.op = REC_OP_ITEM_ADD;
        for (int fl = 0; fl < REC_IS_N; fl++) {
            redisReply *r = rep[fl];
            d.f = (uint8_t)fl;
            for (uint32_t k = 0; r->type == REDIS_REPLY_ARRAY && k < f->n && k < r->elements; k++) {
                d.v = reply_double(r->element[k]);
                if (d.v == 0) continue;
                d.a = ids[k];
                if (apply1(st, &d) < 0) return;
            }
        }
        break;
    case K_UNORM:
    case K_UDOT: {
        redisReply *r = rep[0];
        d.op = f->kind == K_UNORM ? REC_OP_USER_ADD : REC_OP_UDOT_ADD;
        for (uint32_t k = 0; r->type == REDIS_REPLY_ARRAY && k < f->n && k < r->elements; k++) {
            d.v = reply_double(r->element[k]);
            if (d.v == 0) continue;
            d.a = f->kind == K_UNORM ? ids[k] : f->a;
            d.b = f->kind == K_UNORM ? 0 : ids[k];
            if (apply1(st, &d) < 0) return;
            if (f->kind == K_UDOT && ids[k] != f->a) { /* the mirror */
                d.a = ids[k];
                d.b = f->a;
                if (apply1(st, &d) < 0) return;
            }
        }
        break;
    }
    case K_ROW: {
        toprow_t *row = row_get(st, (int)f->off, f->a);
        redisReply *r = rep[0];
        if (!row) return fail(st, "out of memory");
        size_t n = r->type == REDIS_REPLY_STRING ? r->len / TOP_ENTRY_BYTES : 0;
        free(row->base);
        row->base = n ? malloc(n * sizeof *row->base) : NULL;
        row->nbase = 0;
        row->best_valid = 0;
        if (n && !row->base) return fail(st, "out of memory");
        for (size_t k = 0; k < n; k++)
            unpack_top((const unsigned char *)r->str + k * TOP_ENTRY_BYTES,
                       &row->base[row->nbase++]);
        break;
    }
    default: { /* pop: the most popular items' statistics */
        redisReply *r = rep[0];
        size_t n = r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
        uint32_t *tmp = n ? malloc(n * sizeof *tmp) : NULL;
        if (n && !tmp) return fail(st, "out of memory");
        size_t m = 0;
        for (size_t k = 0; k < n; k++)
            if (r->element[k]->type == REDIS_REPLY_STRING)
                tmp[m++] = (uint32_t)strtoul(r->element[k]->str, NULL, 16);
        q_fields(st, K_ISTAT, 0, tmp, (int)m);
        free(tmp);
        break;
    }
    }
}

/* Reads every queued reply and loads it into the overlay. Returns 0 or -1
 * (st->failed, reason in st->err). */
static int flush(rstate_t *st) {
    redisReply *rep[REC_PF_N + 2];
    while (!st->failed && st->fq_done < st->nfq) {
        fetch_t f = st->fq[st->fq_done++];
        redisContext *c = store_redis(st->store);
        int got = 0, bad = 0;
        for (; got < f.ncmd; got++) {
            void *r = NULL;
            if (!c || redisGetReply(c, &r) != REDIS_OK || !r) {
                fail(st, "redis read: %s", c ? c->errstr : "not connected");
                store_mark_broken(st->store);
                break;
            }
            rep[got] = r;
            if (rep[got]->type == REDIS_REPLY_ERROR) {
                if (!bad) fail(st, "redis: %s", rep[got]->str);
                bad = 1;
            }
        }
        if (!st->failed) fetch_apply(st, &f, rep);
        for (int k = 0; k < got; k++) freeReplyObject(rep[k]);
    }
    if (st->failed) {
        /* The connection holds replies nobody will read: drop it. */
        store_mark_broken(st->store);
        return -1;
    }
    st->nfq = st->fq_done = 0;
    st->nfids = 0;
    return 0;
}

/* ------------------------------------------------------------------ */
/* The overlay reader                                                  */

static int o_event_seen(void *cx, uint32_t u, uint64_t h) {
    rstate_t *st = cx;
    q_whole(st, K_SEEN, u);
    flush(st);
    return st->mr.event_seen(st->mr.ctx, u, h);
}

static int o_history(void *cx, uint32_t u, rec_hist_t *out, int cap) {
    rstate_t *st = cx;
    q_whole(st, K_HIST, u);
    flush(st);
    return st->mr.history(st->mr.ctx, u, out, cap);
}

static void o_pairs(void *cx, uint32_t row, const uint32_t *cols, int n, double *out) {
    rstate_t *st = cx;
    unsigned pf = rec_config_fields(&st->cfg);
    if (pf & SYM_PF) q_fields(st, K_PAIR, row, cols, n);
    if (pf & ~SYM_PF) q_fields(st, K_PAIRA, row, cols, n);
    flush(st);
    st->mr.pairs(st->mr.ctx, row, cols, n, out);
}

static void o_item_stats(void *cx, const uint32_t *items, int n, double *out) {
    rstate_t *st = cx;
    q_fields(st, K_ISTAT, 0, items, n);
    flush(st);
    st->mr.item_stats(st->mr.ctx, items, n, out);
}

static void o_user_norms(void *cx, const uint32_t *users, int n, double *out) {
    rstate_t *st = cx;
    q_fields(st, K_UNORM, 0, users, n);
    flush(st);
    st->mr.user_norms(st->mr.ctx, users, n, out);
}

static void o_user_dots(void *cx, uint32_t u, const uint32_t *others, int n, double *out) {
    rstate_t *st = cx;
    q_fields(st, K_UDOT, u, others, n);
    flush(st);
    st->mr.user_dots(st->mr.ctx, u, others, n, out);
}

static int o_consumers(void *cx, uint32_t i, rec_cons_t *out, int cap) {
    rstate_t *st = cx;
    q_whole(st, K_CONS, i);
    flush(st);
    return st->mr.consumers(st->mr.ctx, i, out, cap);
}

static int better(const rec_scored_t *a, const rec_scored_t *b) {
    return a->score > b->score || (a->score == b->score && a->id > b->id);
}

static int cmp_better(const void *a, const void *b) {
    return better(a, b) ? -1 : better(b, a) ? 1 : 0;
}

/* The best min(cap, K) of the row's base and the batch's latest scores:
 * what Redis holds after the commit. Kept sorted in the row until a member
 * changes, since a batch reads the same rows many times. */
static int topk_read(rstate_t *st, int user, uint32_t row, rec_scored_t *out, int cap) {
    q_topk(st, user, row);
    if (flush(st) < 0) return 0;
    toprow_t *r = row_get(st, user, row);
    if (!r) return 0;
    if (r->best_valid) {
        int n = r->nbest < cap ? r->nbest : cap;
        memcpy(out, r->best, (size_t)n * sizeof *out);
        return n;
    }
    size_t n = 0;
    if (grow((void **)&st->scratch, &st->capscratch, (size_t)r->nbase + r->npend + 1,
             sizeof *st->scratch) < 0)
        return 0;
    /* The base as stored is best first: keep its members without a pending
     * score in that order, sort the few pending entries, and merge. */
    int sorted = 1;
    for (int k = 0; k < r->nbase; k++)
        if (!km_find(&st->km, K_MEMB, (uint64_t)user << 63 | pack2(row, r->base[k].id))) {
            if (n > 0 && better(&r->base[k], &st->scratch[n - 1])) sorted = 0;
            st->scratch[n++] = r->base[k];
        }
    const size_t nb = n;
    for (int32_t p = r->head; p >= 0; p = st->pend[p].next) {
        st->scratch[n].id = st->pend[p].member;
        st->scratch[n++].score = st->pend[p].score;
    }
    if (!sorted) {
        qsort(st->scratch, n, sizeof *st->scratch, cmp_better);
    } else if (n > nb) {
        qsort(st->scratch + nb, n - nb, sizeof *st->scratch, cmp_better);
    }
    int k = user ? st->cfg.user_k : st->cfg.item_k;
    size_t keep = (int)n > k ? (size_t)k : n;
    rec_scored_t *best = realloc(r->best, (keep + 1) * sizeof *best);
    if (!best) {
        fail(st, "out of memory");
        return 0;
    }
    if (!sorted || n == nb) {
        memcpy(best, st->scratch, keep * sizeof *best);
    } else {
        size_t a = 0, b = nb, o = 0;
        while (o < keep) {
            if (b >= n || (a < nb && better(&st->scratch[a], &st->scratch[b])))
                best[o++] = st->scratch[a++];
            else
                best[o++] = st->scratch[b++];
        }
    }
    n = keep;
    r->best = best;
    r->nbest = (int)n;
    r->best_valid = 1;
    if ((int)n > cap) n = (size_t)cap;
    memcpy(out, best, n * sizeof *out);
    return (int)n;
}

static int o_item_topk(void *cx, uint32_t i, rec_scored_t *out, int cap) {
    return topk_read(cx, 0, i, out, cap);
}

static int o_user_topk(void *cx, uint32_t u, rec_scored_t *out, int cap) {
    return topk_read(cx, 1, u, out, cap);
}

static const float *o_features(void *cx, uint32_t i) {
    rstate_t *st = cx;
    if (i >= st->cat_row_cap || st->cat_row[i] < 0) return NULL;
    return st->cat + (size_t)st->cat_row[i] * REC_FEAT_DIM;
}

static int o_popular(void *cx, rec_scored_t *out, int cap) {
    rstate_t *st = cx;
    /* The true top list is within Redis' top list plus the items the batch
     * changed (counts only grow), and both are in the overlay once the
     * former's statistics are loaded. */
    q_pop(st);
    if (flush(st) < 0) return 0;
    return st->mr.popular(st->mr.ctx, out, cap);
}

static int o_catalogue(void *cx, const float **feat, const uint32_t **ids, size_t *n) {
    rstate_t *st = cx;
    *feat = st->cat;
    *ids = st->cat_ids;
    *n = st->ncat;
    return 0;
}

static uint64_t o_catalogue_version(void *cx) {
    return ((rstate_t *)cx)->cat_version;
}

static float o_sentiment(void *cx, uint32_t i) {
    rstate_t *st = cx;
    return i < st->nsent ? st->sent[i] : 0.0f;
}

static uint32_t o_n_items(void *cx) {
    return ((rstate_t *)cx)->n_items;
}

/* The reader of recommend.state=memory: the collaborative state from the
 * log's memory, the content (features, catalogue, sentiment) from the
 * worker's cache, as in Redis mode. */
#define LOG_RD(st) rlog_reader((st)->log)
static int l_event_seen(void *cx, uint32_t u, uint64_t h) {
    const rec_reader_t *r = LOG_RD((rstate_t *)cx);
    return r->event_seen(r->ctx, u, h);
}
static int l_history(void *cx, uint32_t u, rec_hist_t *out, int cap) {
    const rec_reader_t *r = LOG_RD((rstate_t *)cx);
    return r->history(r->ctx, u, out, cap);
}
static const rec_hist_t *l_history_view(void *cx, uint32_t u, int *n) {
    const rec_reader_t *r = LOG_RD((rstate_t *)cx);
    return r->history_view(r->ctx, u, n);
}
static void l_pairs(void *cx, uint32_t row, const uint32_t *cols, int n, double *out) {
    const rec_reader_t *r = LOG_RD((rstate_t *)cx);
    r->pairs(r->ctx, row, cols, n, out);
}
static void l_item_stats(void *cx, const uint32_t *items, int n, double *out) {
    const rec_reader_t *r = LOG_RD((rstate_t *)cx);
    r->item_stats(r->ctx, items, n, out);
}
static void l_user_norms(void *cx, const uint32_t *users, int n, double *out) {
    const rec_reader_t *r = LOG_RD((rstate_t *)cx);
    r->user_norms(r->ctx, users, n, out);
}
static void l_user_dots(void *cx, uint32_t u, const uint32_t *others, int n, double *out) {
    const rec_reader_t *r = LOG_RD((rstate_t *)cx);
    r->user_dots(r->ctx, u, others, n, out);
}
static int l_consumers(void *cx, uint32_t i, rec_cons_t *out, int cap) {
    const rec_reader_t *r = LOG_RD((rstate_t *)cx);
    return r->consumers(r->ctx, i, out, cap);
}
static int l_item_topk(void *cx, uint32_t i, rec_scored_t *out, int cap) {
    const rec_reader_t *r = LOG_RD((rstate_t *)cx);
    return r->item_topk(r->ctx, i, out, cap);
}
static void l_item_topk_head(void *cx, uint32_t i, int k, float *kth, float *pos_sum) {
    const rec_reader_t *r = LOG_RD((rstate_t *)cx);
    r->item_topk_head(r->ctx, i, k, kth, pos_sum);
}
static int l_user_topk(void *cx, uint32_t u, rec_scored_t *out, int cap) {
    const rec_reader_t *r = LOG_RD((rstate_t *)cx);
    return r->user_topk(r->ctx, u, out, cap);
}
static int l_popular(void *cx, rec_scored_t *out, int cap) {
    const rec_reader_t *r = LOG_RD((rstate_t *)cx);
    return r->popular(r->ctx, out, cap);
}
static uint32_t l_n_items(void *cx) {
    rstate_t *st = cx;
    uint32_t m = rec_mem_item_count(rlog_mem(st->log));
    return m > st->n_items ? m : st->n_items;
}

/* ------------------------------------------------------------------ */
/* Writes                                                              */

static int agg_add(rstate_t *st, uint8_t kind, uint64_t key, double v) {
    kent_t *e = km_put(&st->km, kind, key, NULL);
    if (!e) {
        fail(st, "out of memory");
        return -1;
    }
    e->v += v;
    return 0;
}

static int topk_set(rstate_t *st, int user, uint32_t row, uint32_t member, float score) {
    toprow_t *r = row_get(st, user, row);
    int created;
    kent_t *e =
        r ? km_put(&st->km, K_MEMB, (uint64_t)user << 63 | pack2(row, member), &created) : NULL;
    if (!e) goto oom;
    if (created) {
        if (grow((void **)&st->pend, &st->cappend, st->npend + 1, sizeof *st->pend) < 0) goto oom;
        pend_t *p = &st->pend[st->npend];
        p->member = member;
        p->next = r->head;
        r->head = (int32_t)st->npend;
        r->npend++;
        e->i = (int64_t)st->npend++;
    }
    st->pend[e->i].score = score;
    r->best_valid = 0;
    return 0;
oom:
    fail(st, "out of memory");
    return -1;
}

/* Applies one event's delta to the overlay and queues its Redis writes. */
static int apply_delta(rstate_t *st, store_batch_t *b, const rec_delta_t *d) {
    char key[512], field[32], val[64];
    switch ((rec_op_t)d->op) {
    case REC_OP_SEEN_ADD:
        q_whole(st, K_SEEN, d->a);
        if (flush(st) < 0 || apply1(st, d) < 0) return -1;
        key_of(st, key, sizeof key, "seen:%u", d->a);
        snprintf(val, sizeof val, "%016llx", (unsigned long long)d->key);
        snprintf(field, sizeof field, "%d", -st->cfg.seen_cap);
        if (store_batch_addv(b, 3, "RPUSH", key, val) < 0 ||
            store_batch_addv(b, 4, "LTRIM", key, field, "-1") < 0)
            goto oom;
        return 0;
    case REC_OP_HIST_SET:
    case REC_OP_HIST_DEL:
        q_whole(st, K_HIST, d->a);
        if (flush(st) < 0 || apply1(st, d) < 0) return -1;
        key_of(st, key, sizeof key, "hist:%u", d->a);
        if (d->op == REC_OP_HIST_SET) {
            unsigned char packed[HIST_BYTES];
            pack_hist(&d->hist, packed);
            snprintf(field, sizeof field, "%u", d->hist.item);
            const char *av[4] = {"HSET", key, field, (const char *)packed};
            size_t al[4] = {4, strlen(key), strlen(field), HIST_BYTES};
            if (store_batch_add(b, 4, av, al) < 0) goto oom;
        } else {
            snprintf(field, sizeof field, "%u", d->b);
            if (store_batch_addv(b, 3, "HDEL", key, field) < 0) goto oom;
        }
        return 0;
    case REC_OP_CONS_SET:
    case REC_OP_CONS_DEL:
        q_whole(st, K_CONS, d->a);
        if (flush(st) < 0 || apply1(st, d) < 0) return -1;
        key_of(st, key, sizeof key, "cons:%u", d->a);
        snprintf(field, sizeof field, "%u", d->b);
        if (d->op == REC_OP_CONS_SET) {
            unsigned char packed[CONS_BYTES];
            memcpy(packed, &d->v, 8);
            memcpy(packed + 8, &d->t, 8);
            const char *av[4] = {"HSET", key, field, (const char *)packed};
            size_t al[4] = {4, strlen(key), strlen(field), CONS_BYTES};
            if (store_batch_add(b, 4, av, al) < 0) goto oom;
        } else if (store_batch_addv(b, 3, "HDEL", key, field) < 0) {
            goto oom;
        }
        return 0;
    case REC_OP_PAIR_ADD:
        if (d->f >= REC_PF_N || !(rec_config_fields(&st->cfg) & REC_PFM(d->f))) return 0;
        if (apply1(st, d) < 0) return -1;
        if (REC_PFM(d->f) & SYM_PF) { /* stored once: the kernel sends both orders */
            if (d->a > d->b) return 0;
        }
        return agg_add(st, (uint8_t)(K_AGG_PAIR + d->f), pack2(d->a, d->b), d->v);
    case REC_OP_ITEM_ADD:
        if (d->f >= REC_IS_N) return 0;
        /* Loaded first so that popular() sees base + delta. */
        q_fields(st, K_ISTAT, 0, &d->a, 1);
        if (flush(st) < 0 || apply1(st, d) < 0) return -1;
        return agg_add(st, (uint8_t)(K_AGG_IS + d->f), d->a, d->v);
    case REC_OP_USER_ADD:
        if (apply1(st, d) < 0) return -1;
        return agg_add(st, K_AGG_UNORM, d->a, d->v);
    case REC_OP_UDOT_ADD:
        if (apply1(st, d) < 0) return -1;
        /* Emitted in both orders with the same value: stored once, under
         * "<lo>:<hi>" (a user with itself, in both, as before). */
        if (d->a > d->b) return 0;
        return agg_add(st, K_AGG_UDOT, pack2(d->a, d->b), d->v);
    case REC_OP_ITOPK_SET:
    case REC_OP_UTOPK_SET:
        return topk_set(st, d->op == REC_OP_UTOPK_SET, d->a, d->b, (float)d->v);
    default:
        return 0;
    }
oom:
    fail(st, "out of memory");
    return -1;
}

/* Counts without decay are whole numbers: HINCRBY (cheaper than
 * HINCRBYFLOAT) with the integer in val; else HINCRBYFLOAT with val as is.
 * Such a field only ever receives whole numbers, so it always holds one. */
/* v as a C99 hexadecimal float ("0x1.91eb851eb851fp+1"): exact, and about
 * ten times cheaper than "%.17g" (no decimal conversion), which matters at
 * tens of increments per event. Redis parses increments with strtold /
 * strtod, which read this form to the same value. */
static void fmt_hexfloat(char out[64], double v) {
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    int exp = (int)((bits >> 52) & 0x7ff);
    uint64_t man = bits & ((1ull << 52) - 1);
    if (exp == 0x7ff) { /* not finite: never summed, but say so plainly */
        snprintf(out, 64, "%.17g", v);
        return;
    }
    char *p = out;
    if (bits >> 63) *p++ = '-';
    if (exp == 0 && man == 0) {
        *p++ = '0';
        *p = '\0';
        return;
    }
    static const char hex[] = "0123456789abcdef";
    *p++ = '0';
    *p++ = 'x';
    *p++ = exp ? '1' : '0';
    int e = exp ? exp - 1023 : -1022;
    if (man) {
        *p++ = '.';
        int nd = 13;
        while (nd > 0 && ((man >> (4 * (13 - nd))) & 0xf) == 0) nd--;
        for (int d = 0; d < nd; d++) *p++ = hex[(man >> (48 - 4 * d)) & 0xf];
    }
    *p++ = 'p';
    if (e < 0) {
        *p++ = '-';
        e = -e;
    } else {
        *p++ = '+';
    }
    char digits[8];
    int nd = 0;
    do {
        digits[nd++] = (char)('0' + e % 10);
        e /= 10;
    } while (e);
    while (nd) *p++ = digits[--nd];
    *p = '\0';
}

static const char *incr_cmd(const rstate_t *st, double v, char val[64]) {
    if (st->cfg.half_life_ms != 0 || !(fabs(v) < 9e15) || v != floor(v)) return "HINCRBYFLOAT";
    snprintf(val, 64, "%lld", (long long)v);
    return "HINCRBY";
}

/* The batch's summed counters and top-K rows as Redis commands. */
static int emit_aggregates(rstate_t *st, store_batch_t *b) {
    char key[512], field[32], val[64], mem[16];
    for (uint32_t q = 0; q < st->km.cap; q++) {
        const kent_t *e = &st->km.e[q];
        if (e->gen != st->km.gen || e->kind < K_AGG_PAIR || e->kind > K_AGG_UDOT) continue;
        if (e->v == 0) continue;
        uint32_t a = (uint32_t)(e->key >> 32), c = (uint32_t)e->key;
        fmt_hexfloat(val, e->v);
        int rc;
        if (e->kind < K_AGG_IS) {
            int f = e->kind - K_AGG_PAIR;
            if (REC_PFM(f) & SYM_PF) {
                key_of(st, key, sizeof key, "pair:%s", pf_names[f]);
                fmt_ids(field, a, &c);
            } else {
                key_of(st, key, sizeof key, "pair:%s:%u", pf_names[f], a);
                fmt_ids(field, c, NULL);
            }
            rc = store_batch_addv(b, 4, f == REC_PF_C ? incr_cmd(st, e->v, val) : "HINCRBYFLOAT",
                                  key, field, val);
        } else if (e->kind < K_AGG_UNORM) {
            int f = e->kind - K_AGG_IS;
            key_of(st, key, sizeof key, "istat:%s", f == REC_IS_C ? "c" : "n2");
            fmt_ids(field, c, NULL);
            rc = store_batch_addv(b, 4, f == REC_IS_C ? incr_cmd(st, e->v, val) : "HINCRBYFLOAT",
                                  key, field, val);
            if (rc == 0 && f == REC_IS_C) {
                snprintf(mem, sizeof mem, "%08x", c);
                rc =
                    store_batch_addv(b, 4, "ZINCRBY", key_of(st, key, sizeof key, "pop"), val, mem);
            }
        } else if (e->kind == K_AGG_UNORM) {
            fmt_ids(field, c, NULL);
            rc = store_batch_addv(b, 4, "HINCRBYFLOAT", key_of(st, key, sizeof key, "unorm"), field,
                                  val);
        } else {
            fmt_ids(field, a, &c);
            rc = store_batch_addv(b, 4, "HINCRBYFLOAT", key_of(st, key, sizeof key, "udot"), field,
                                  val);
        }
        if (rc < 0) goto oom;
    }
    /* Each changed row is written whole: its base first, in one round
     * trip for the rows not read yet. */
    for (size_t r = 0; r < st->nrows; r++)
        if (st->rows[r].npend > 0 && !st->rows[r].loaded)
            q_topk(st, st->rows[r].user, st->rows[r].row);
    if (flush(st) < 0) return -1;
    for (size_t r = 0; r < st->nrows; r++) {
        const toprow_t *row = &st->rows[r];
        if (row->npend == 0) continue;
        int kk = row->user ? st->cfg.user_k : st->cfg.item_k;
        if (grow((void **)&st->topbuf, &st->captopbuf,
                 ((size_t)kk + 1) * (TOP_ENTRY_BYTES + sizeof(rec_scored_t)), 1) < 0)
            goto oom;
        rec_scored_t *best = (rec_scored_t *)(void *)st->topbuf;
        unsigned char *blob = st->topbuf + ((size_t)kk + 1) * sizeof *best;
        int nb = topk_read(st, row->user, row->row, best, kk);
        if (st->failed) return -1;
        row = &st->rows[r];
        for (int k = 0; k < nb; k++) pack_top(&best[k], blob + (size_t)k * TOP_ENTRY_BYTES);
        key_of(st, key, sizeof key, "%s:%u", row->user ? "utop" : "itop", row->row);
        const char *argv[3] = {"SET", key, (const char *)blob};
        size_t argl[3] = {3, strlen(key), (size_t)nb * TOP_ENTRY_BYTES};
        if (store_batch_add(b, 3, argv, argl) < 0) goto oom;
    }
    return 0;
oom:
    fail(st, "out of memory");
    return -1;
}

/* ------------------------------------------------------------------ */
/* Ids                                                                 */

/* Get-or-create of dense ids: KEYS = forward hash, reverse hash, counter;
 * ARGV = string ids. Idempotent, so it runs outside the commit. */
static const char alloc_lua[] = "local out = {}\n"
                                "for k = 1, #ARGV do\n"
                                "  local id = redis.call('HGET', KEYS[1], ARGV[k])\n"
                                "  if not id then\n"
                                "    id = redis.call('INCR', KEYS[3]) - 1\n"
                                "    redis.call('HSET', KEYS[1], ARGV[k], id)\n"
                                "    redis.call('HSET', KEYS[2], id, ARGV[k])\n"
                                "  end\n"
                                "  out[k] = tonumber(id)\n"
                                "end\n"
                                "return out\n";

/* Maps the strings (ptr/len pairs) to ids through the cache, allocating the
 * missing ones in Redis with one script call. Returns 0 or -1. */
static int map_ids(rstate_t *st, int item, const char **s, const size_t *len, size_t n) {
    idmap_t *m = item ? &st->items : &st->users;
    size_t miss = 0;
    for (size_t k = 0; k < n; k++)
        if (idmap_find(m, s[k], len[k]) < 0) miss++;
    if (miss == 0) return 0;
    if (args_room(st, 6 + miss) < 0) {
        fail(st, "out of memory");
        return -1;
    }
    char k1[512], k2[512], k3[512];
    const char *kind = item ? "item" : "user";
    set_arg_s(st, 0, "EVAL");
    set_arg_s(st, 1, alloc_lua);
    set_arg_s(st, 2, "3");
    set_arg_s(st, 3, key_of(st, k1, sizeof k1, "ids:%s", kind));
    set_arg_s(st, 4, key_of(st, k2, sizeof k2, "ids:%s:rev", kind));
    set_arg_s(st, 5, key_of(st, k3, sizeof k3, "ids:%s:next", kind));
    size_t a = 6;
    /* A string may repeat: a second HGET in the script finds the first. */
    for (size_t k = 0; k < n; k++)
        if (idmap_find(m, s[k], len[k]) < 0) set_arg(st, a++, s[k], len[k]);
    if (append_cmd(st, (int)a) < 0) return -1;
    redisContext *c = store_redis(st->store);
    void *rv = NULL;
    if (redisGetReply(c, &rv) != REDIS_OK || !rv) {
        fail(st, "redis read: %s", c->errstr);
        store_mark_broken(st->store);
        return -1;
    }
    redisReply *r = rv;
    int rc = 0;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != a - 6) {
        fail(st, "id allocation: %s", r->type == REDIS_REPLY_ERROR ? r->str : "bad reply");
        rc = -1;
    } else {
        for (size_t k = 0; k < r->elements; k++) {
            uint32_t id = (uint32_t)r->element[k]->integer;
            if (idmap_add(m, st->av[6 + k], st->al[6 + k], id) < 0) {
                fail(st, "out of memory");
                rc = -1;
                break;
            }
            if (item && id + 1 > st->n_items) st->n_items = id + 1;
        }
    }
    freeReplyObject(r);
    return rc;
}

/* Names of item ids the cache lacks (allocated by another worker). */
static int fetch_item_names(rstate_t *st, const uint32_t *ids, size_t n) {
    size_t miss = 0;
    if (args_room(st, 2 + n) < 0) {
        fail(st, "out of memory");
        return -1;
    }
    for (size_t k = 0; k < n; k++)
        if (!idmap_name(&st->items, ids[k])) set_arg_num(st, 2 + miss++, "%u", ids[k]);
    if (miss == 0) return 0;
    char key[512];
    set_arg_s(st, 0, "HMGET");
    set_arg_s(st, 1, key_of(st, key, sizeof key, "ids:item:rev"));
    if (append_cmd(st, (int)miss + 2) < 0) return -1;
    redisContext *c = store_redis(st->store);
    void *rv = NULL;
    if (redisGetReply(c, &rv) != REDIS_OK || !rv) {
        fail(st, "redis read: %s", c->errstr);
        store_mark_broken(st->store);
        return -1;
    }
    redisReply *r = rv;
    for (size_t k = 0; r->type == REDIS_REPLY_ARRAY && k < r->elements && k < miss; k++) {
        if (r->element[k]->type != REDIS_REPLY_STRING) continue;
        uint32_t id = (uint32_t)strtoul(st->num[2 + k], NULL, 10);
        if (idmap_add(&st->items, r->element[k]->str, r->element[k]->len, id) < 0) {
            freeReplyObject(r);
            fail(st, "out of memory");
            return -1;
        }
    }
    freeReplyObject(r);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Decoding                                                            */

static int get_string(avro_value_t *rec, const char *name, const char **s, size_t *len) {
    avro_value_t f;
    if (avro_value_get_by_name(rec, name, &f, NULL) || avro_value_get_string(&f, s, len)) return -1;
    if (*len > 0) (*len)--; /* the size counts the NUL */
    return 0;
}

/* An optional (["null", T]) field: 1 when set, with the value in *branch. */
static int get_optional(avro_value_t *rec, const char *name, avro_value_t *branch) {
    avro_value_t f;
    int disc;
    if (avro_value_get_by_name(rec, name, &f, NULL) || avro_value_get_discriminant(&f, &disc) ||
        disc != 1 || avro_value_get_current_branch(&f, branch))
        return 0;
    return 1;
}

static int decode_event(avro_value_t *v, rec_event_t *ev, size_t lens[3]) {
    memset(ev, 0, sizeof *ev);
    avro_value_t f, b;
    int type;
    if (get_string(v, "event_id", &ev->event_id, &lens[0]) ||
        get_string(v, "user_id", &ev->user_id, &lens[1]) ||
        get_string(v, "item_id", &ev->item_id, &lens[2]))
        return -1;
    if (avro_value_get_by_name(v, "type", &f, NULL) || avro_value_get_enum(&f, &type)) return -1;
    ev->type = (rec_event_type_t)type;
    if (avro_value_get_by_name(v, "ts", &f, NULL) || avro_value_get_long(&f, &ev->ts_ms)) return -1;
    if (avro_value_get_by_name(v, "watch_seconds", &f, NULL) ||
        avro_value_get_double(&f, &ev->watch_seconds))
        return -1;
    if (get_optional(v, "duration_seconds", &b)) avro_value_get_double(&b, &ev->duration_seconds);
    if (get_optional(v, "rating", &b)) {
        float r = 0;
        avro_value_get_float(&b, &r);
        ev->rating = r;
        ev->has_rating = 1;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Output                                                              */

static int set_str(avro_value_t *rec, const char *name, const char *s) {
    avro_value_t f;
    if (avro_value_get_by_name(rec, name, &f, NULL)) return -1;
    return avro_value_set_string(&f, s);
}

static int fill_output(rstate_t *st, rt_ctx_t *ctx, const char *user, const rt_record_t *src,
                       const rec_rec_t *recs, int n) {
    avro_value_t *o = &st->out, items, el, f, srcv;
    if (avro_value_reset(o) || set_str(o, "user_id", user)) return -1;
    if (avro_value_get_by_name(o, "items", &items, NULL)) return -1;
    for (int k = 0; k < n; k++) {
        const char *name = idmap_name(&st->items, recs[k].item);
        char fallback[32];
        if (!name) {
            snprintf(fallback, sizeof fallback, "#%u", recs[k].item);
            name = fallback;
        }
        if (avro_value_append(&items, &el, NULL) || set_str(&el, "item_id", name) ||
            avro_value_get_by_name(&el, "score", &f, NULL) ||
            avro_value_set_float(&f, recs[k].score) ||
            avro_value_get_by_name(&el, "sources", &f, NULL))
            return -1;
        for (int s = 0; s < 4; s++) {
            avro_value_t sv;
            if (!(recs[k].sources & (1u << s))) continue;
            if (avro_value_append(&f, &sv, NULL) || avro_value_set_string(&sv, src_names[s]))
                return -1;
        }
    }
    if (set_str(o, "model_version", rt_model_version(ctx))) return -1;
    if (avro_value_get_by_name(o, "source", &srcv, NULL) || set_str(&srcv, "topic", src->topic) ||
        avro_value_get_by_name(&srcv, "partition", &f, NULL) ||
        avro_value_set_int(&f, src->partition) ||
        avro_value_get_by_name(&srcv, "offset", &f, NULL) || avro_value_set_long(&f, src->offset))
        return -1;
    if (avro_value_get_by_name(o, "ts", &f, NULL) || avro_value_set_long(&f, now_ms())) return -1;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Batches                                                             */

static int overlay_begin(rstate_t *st, rt_ctx_t *ctx, char *errstr, size_t n) {
    /* Memory mode reads its own state: no overlay. */
    if (!st->log) {
        rec_mem_destroy(st->mem);
        st->mem = rec_mem_new_rowwise(&st->cfg);
        if (!st->mem) {
            snprintf(errstr, n, "out of memory");
            return -1;
        }
        st->mr = rec_mem_reader(st->mem);
    }
    km_reset(&st->km);
    for (size_t r = 0; r < st->nrows; r++) {
        free(st->rows[r].base);
        free(st->rows[r].best);
    }
    st->nrows = st->npend = st->nfq = st->fq_done = st->nfids = 0;
    st->pop_loaded = 0;
    st->failed = 0;
    st->err[0] = 0;
    st->store = rt_store(ctx);
    if (store_ensure_connected(st->store, errstr, n) < 0) return -1;
    return 0;
}

static int process_items(rstate_t *st, rt_ctx_t *ctx, const rt_batch_t *batch) {
    store_batch_t *b = rt_state(ctx);
    const char **ids = malloc((batch->count + 1) * sizeof *ids);
    size_t *lens = malloc((batch->count + 1) * sizeof *lens);
    uint8_t *good = calloc(batch->count + 1, 1);
    int rc = -1;
    size_t n = 0;
    if (!ids || !lens || !good) {
        fail(st, "out of memory");
        goto done;
    }
    for (size_t k = 0; k < batch->count; k++) {
        const rt_record_t *r = &batch->records[k];
        const char *s;
        size_t len;
        if (get_string(r->avro, "item_id", &s, &len) < 0 || len == 0 || len > 256 ||
            strlen(s) != len) {
            rt_fail(ctx, r, "process", len == 0 ? "empty item_id" : "bad item_id");
            continue;
        }
        good[k] = 1;
        ids[n] = s;
        lens[n++] = len;
    }
    if (map_ids(st, 1, ids, lens, n) < 0) goto done;
    for (size_t k = 0; k < batch->count; k++) {
        const rt_record_t *r = &batch->records[k];
        const char *s;
        size_t len;
        if (!good[k] || get_string(r->avro, "item_id", &s, &len) < 0) continue;
        uint32_t id = (uint32_t)idmap_find(&st->items, s, len);
        const char *genres[64], *tags[64], *title = "";
        int ng = 0, nt = 0, year = 0;
        size_t tl, cnt;
        avro_value_t arr, el, yb;
        get_string(r->avro, "title", &title, &tl);
        if (avro_value_get_by_name(r->avro, "genres", &arr, NULL) == 0 &&
            avro_value_get_size(&arr, &cnt) == 0)
            for (size_t g = 0; g < cnt && ng < 64; g++) {
                size_t sl;
                if (avro_value_get_by_index(&arr, g, &el, NULL) == 0 &&
                    avro_value_get_string(&el, &genres[ng], &sl) == 0)
                    ng++;
            }
        if (avro_value_get_by_name(r->avro, "tags", &arr, NULL) == 0 &&
            avro_value_get_size(&arr, &cnt) == 0)
            for (size_t g = 0; g < cnt && nt < 64; g++) {
                size_t sl;
                if (avro_value_get_by_index(&arr, g, &el, NULL) == 0 &&
                    avro_value_get_string(&el, &tags[nt], &sl) == 0)
                    nt++;
            }
        if (get_optional(r->avro, "year", &yb)) avro_value_get_int(&yb, &year);
        float feat[REC_FEAT_DIM];
        rec_item_features(genres, ng, tags, nt, year, feat);
        if (cat_set_meta(st, id, feat) < 0) {
            fail(st, "out of memory");
            goto done;
        }
        char key[512], field[32];
        snprintf(field, sizeof field, "%u", id);
        key_of(st, key, sizeof key, "feat");
        /* Only the metadata part: the poster block comes from the tag
         * worker's hash at each refresh. */
        const char *av[4] = {"HSET", key, field, (const char *)feat};
        size_t al[4] = {4, strlen(key), strlen(field), REC_FEAT_META * sizeof *feat};
        if (store_batch_add(b, 4, av, al) < 0 ||
            store_batch_addv(b, 4, "HSET", key_of(st, key, sizeof key, "title"), field, title) <
                0 ||
            store_batch_addv(b, 2, "INCR", key_of(st, key, sizeof key, "feat:version")) < 0) {
            fail(st, "out of memory");
            goto done;
        }
    }
    rc = 0;
done:
    free(ids);
    free(lens);
    free(good);
    return rc;
}

static int touch(rstate_t *st, uint32_t user, size_t rec) {
    int created;
    kent_t *e = km_put(&st->km, K_TOUCH, user, &created);
    if (!e) goto oom;
    if (created) {
        if (grow((void **)&st->touched, &st->captouched, st->ntouched + 1, sizeof *st->touched) < 0)
            goto oom;
        e->i = (int64_t)st->ntouched++;
        st->touched[e->i].user = user;
    }
    st->touched[e->i].rec = rec;
    return 0;
oom:
    fail(st, "out of memory");
    return -1;
}

static int cmp_ev_user(const void *a, const void *b) {
    const rec_event_t *x = *(rec_event_t *const *)a, *y = *(rec_event_t *const *)b;
    return x->user < y->user ? -1 : x->user > y->user;
}

/* The second level of the batch's prefetch, after the histories and
 * consumer lists are loaded: what rec_process_event will read for each
 * event, queued for one pipelined round trip instead of several synchronous
 * ones per event. Per user of the batch, H = its stored history plus the
 * items of its events in the batch (a superset of what each event sees);
 * per event item i: the pair counters (i, H), the statistics of H, i's
 * neighbour list; per consumer list of i: the dot products with the user,
 * the consumers' norms, the user's neighbour list. Reads only: the overlay
 * answers the same whether a key was fetched here or on demand. */
static int prefetch_events(rstate_t *st, size_t n) {
    const unsigned pf = rec_config_fields(&st->cfg);
    const int hcap = st->cfg.hist_cap + 1, ccap = st->cfg.cons_cap;
    rec_event_t **by = malloc((n + 1) * sizeof *by);
    rec_hist_t *h = malloc((size_t)hcap * sizeof *h);
    rec_cons_t *cs = malloc((size_t)ccap * sizeof *cs);
    uint32_t *ids = malloc(((size_t)hcap + n + (size_t)ccap + 1) * sizeof *ids);
    int rc = -1;
    if (!by || !h || !cs || !ids) {
        fail(st, "out of memory");
        goto done;
    }
    size_t m = 0;
    for (size_t k = 0; k < n; k++)
        if (st->evs[k].ok) by[m++] = &st->evs[k].ev;
    qsort(by, m, sizeof *by, cmp_ev_user);
    for (size_t a = 0; a < m && !st->failed;) {
        size_t b = a;
        const uint32_t u = by[a]->user;
        while (b < m && by[b]->user == u) b++;
        int nh = st->mr.history(st->mr.ctx, u, h, hcap);
        size_t nid = 0;
        for (int x = 0; x < nh; x++) ids[nid++] = h[x].item;
        for (size_t e = a; e < b; e++) ids[nid++] = by[e]->item;
        q_fields(st, K_ISTAT, 0, ids, (int)nid);
        q_topk(st, 1, u);
        for (size_t e = a; e < b; e++) {
            const uint32_t i = by[e]->item;
            if (pf & SYM_PF) q_fields(st, K_PAIR, i, ids, (int)nid);
            if (pf & ~SYM_PF) {
                q_fields(st, K_PAIRA, i, ids, (int)nid);
                for (size_t x = 0; x < nid; x++) q_fields(st, K_PAIRA, ids[x], &i, 1);
            }
            q_topk(st, 0, i);
            int nc = st->mr.consumers(st->mr.ctx, i, cs, ccap);
            uint32_t *vs = ids + nid;
            int nv = 0;
            for (int x = 0; x < nc; x++)
                if (cs[x].user != u) vs[nv++] = cs[x].user;
            vs[nv] = u;
            q_fields(st, K_UDOT, u, vs, nv);
            q_fields(st, K_UNORM, 0, vs, nv + 1);
        }
        a = b;
    }
    rc = st->failed ? -1 : 0;
done:
    free(by);
    free(h);
    free(cs);
    free(ids);
    return rc;
}

/* The third level, after the neighbour lists are loaded: what re-scoring a
 * list reads when its row's normaliser moved (rec_config.refresh_ratio):
 * the pair counters and statistics of each event item's list members, and
 * the dot products and norms of each user's list members. Speculative (a
 * row is re-scored at steps of its normaliser), so only for the lists
 * that are re-scored at nearly every event: items with fewer than
 * 1 / refresh_ratio consumers, and every user's list (user norms are small
 * sums). */
static int prefetch_rows(rstate_t *st, size_t n) {
    const int kcap = st->cfg.item_k > st->cfg.user_k ? st->cfg.item_k : st->cfg.user_k;
    rec_scored_t *top = malloc(((size_t)kcap + 1) * sizeof *top);
    uint32_t *ids = malloc(((size_t)kcap + 1) * sizeof *ids);
    const double rare = st->cfg.refresh_ratio > 0 ? 1.0 / st->cfg.refresh_ratio : 1e300;
    if (!top || !ids) {
        free(top);
        free(ids);
        fail(st, "out of memory");
        return -1;
    }
    for (size_t k = 0; k < n && !st->failed; k++) {
        const bev_t *e = &st->evs[k];
        if (!e->ok) continue;
        const uint32_t i = e->ev.item, u = e->ev.user;
        double si[REC_IS_N];
        st->mr.item_stats(st->mr.ctx, &i, 1, si);
        if (si[REC_IS_C] < rare) {
            int nk = topk_read(st, 0, i, top, st->cfg.item_k);
            for (int x = 0; x < nk; x++) ids[x] = top[x].id;
            q_fields(st, K_ISTAT, 0, ids, nk);
            if (rec_config_fields(&st->cfg) & SYM_PF) q_fields(st, K_PAIR, i, ids, nk);
        }
        int nu = topk_read(st, 1, u, top, st->cfg.user_k);
        for (int x = 0; x < nu; x++) ids[x] = top[x].id;
        q_fields(st, K_UDOT, u, ids, nu);
        q_fields(st, K_UNORM, 0, ids, nu);
    }
    free(top);
    free(ids);
    return st->failed ? -1 : 0;
}

/* Decodes and checks the batch's events into st->evs (ok = passed; the
 * others went to the DLQ) and maps their ids to dense ids. 0 or -1. */
static int decode_events(rstate_t *st, rt_ctx_t *ctx, const rt_batch_t *batch) {
    size_t n = batch->count;
    if (grow((void **)&st->evs, &st->capevs, n + 1, sizeof *st->evs) < 0) {
        fail(st, "out of memory");
        return -1;
    }
    const char **us = malloc((n + 1) * sizeof *us), **is = malloc((n + 1) * sizeof *is);
    size_t *ul = malloc((n + 1) * sizeof *ul), *il = malloc((n + 1) * sizeof *il);
    int rc = -1;
    size_t nv = 0;
    if (!us || !is || !ul || !il) {
        fail(st, "out of memory");
        goto done;
    }
    int64_t now = now_ms();
    for (size_t k = 0; k < n; k++) {
        const rt_record_t *r = &batch->records[k];
        bev_t *e = &st->evs[k];
        size_t lens[3];
        char reason[256];
        e->rec = k;
        e->ok = 0;
        if (decode_event(r->avro, &e->ev, lens) < 0) {
            rt_fail(ctx, r, "process", "malformed ViewingEvent");
            continue;
        }
        if (rec_event_check(&st->cfg, &e->ev, now, reason, sizeof reason) < 0) {
            rt_fail(ctx, r, "process", reason);
            continue;
        }
        if (strlen(e->ev.user_id) != lens[1] || strlen(e->ev.item_id) != lens[2]) {
            rt_fail(ctx, r, "process", "id contains a NUL byte");
            continue;
        }
        e->ok = 1;
        us[nv] = e->ev.user_id;
        ul[nv] = lens[1];
        is[nv] = e->ev.item_id;
        il[nv++] = lens[2];
    }
    if (map_ids(st, 0, us, ul, nv) < 0 || map_ids(st, 1, is, il, nv) < 0) goto done;
    for (size_t k = 0; k < n; k++) {
        bev_t *e = &st->evs[k];
        if (!e->ok) continue;
        e->ev.user = (uint32_t)idmap_find(&st->users, e->ev.user_id, strlen(e->ev.user_id));
        e->ev.item = (uint32_t)idmap_find(&st->items, e->ev.item_id, strlen(e->ev.item_id));
    }
    rc = 0;
done:
    free(us);
    free(is);
    free(ul);
    free(il);
    return rc;
}

static int publish(rstate_t *st, rt_ctx_t *ctx, const rt_batch_t *batch, const rec_reader_t *rd);

static int process_events(rstate_t *st, rt_ctx_t *ctx, const rt_batch_t *batch) {
    store_batch_t *b = rt_state(ctx);
    size_t n = batch->count;
    int rc = -1;
    double dups = 0;
    /* 1. Decode and check; map the string ids. */
    if (decode_events(st, ctx, batch) < 0) return -1;

    /* 2. Prefetch what every event reads first, in one round trip. */
    for (size_t k = 0; k < n; k++) {
        bev_t *e = &st->evs[k];
        if (!e->ok) continue;
        q_whole(st, K_SEEN, e->ev.user);
        q_whole(st, K_HIST, e->ev.user);
        q_whole(st, K_CONS, e->ev.item);
        q_fields(st, K_ISTAT, 0, &e->ev.item, 1);
    }
    if (flush(st) < 0) goto done;
    if (st->prefetch && (prefetch_events(st, n) < 0 || flush(st) < 0)) goto done;
    if (st->prefetch > 1 && (prefetch_rows(st, n) < 0 || flush(st) < 0)) goto done;

    /* 3. Each event in order: its deltas, applied to the overlay at once. */
    for (size_t k = 0; k < n; k++) {
        bev_t *e = &st->evs[k];
        if (!e->ok) continue;
        char reason[256];
        st->deltas.n = 0;
        int r = rec_process_event(&st->cfg, &st->rd, st->work, &e->ev, &st->deltas, reason,
                                  sizeof reason);
        if (st->failed) goto done;
        if (r < 0) {
            fail(st, "%s", reason);
            goto done;
        }
        if (r == 0) {
            dups++;
            continue;
        }
        for (size_t x = 0; x < st->deltas.n; x++)
            if (apply_delta(st, b, &st->deltas.d[x]) < 0) goto done;
        if (touch(st, e->ev.user, k) < 0) goto done;
    }
    if (dups > 0) metrics_add(st->metrics, DUP_METRIC, st->labels, dups);

    /* 4. Recommendations for every touched user, on the batch's state.
     * Prefetch the rows rec_recommend reads: the users' neighbour lists,
     * then their history items' neighbour lists and their neighbours'
     * histories. */
    for (size_t t = 0; t < st->ntouched; t++) q_topk(st, 1, st->touched[t].user);
    q_pop(st);
    if (flush(st) < 0) goto done;
    {
        rec_hist_t *h = malloc(((size_t)st->cfg.hist_cap + 1) * sizeof *h);
        rec_scored_t *nb = malloc(((size_t)st->cfg.user_k + 1) * sizeof *nb);
        if (!h || !nb) {
            free(h);
            free(nb);
            fail(st, "out of memory");
            goto done;
        }
        for (size_t t = 0; t < st->ntouched && !st->failed; t++) {
            uint32_t u = st->touched[t].user;
            int nh = st->mr.history(st->mr.ctx, u, h, st->cfg.hist_cap + 1);
            for (int x = 0; x < nh; x++) q_topk(st, 0, h[x].item);
            int nk = topk_read(st, 1, u, nb, st->cfg.user_k);
            for (int x = 0; x < nk; x++)
                if (nb[x].score > 0) q_whole(st, K_HIST, nb[x].id);
        }
        if (flush(st) < 0) {
            free(h);
            free(nb);
            goto done;
        }
        /* Item CF then reads the list of every candidate found in those
         * lists (its threshold) and, with the asymmetric cosine, the
         * candidates' statistics: queue them all for one round trip. */
        rec_scored_t *top = malloc(((size_t)st->cfg.item_k + 1) * sizeof *top);
        uint32_t *cand = malloc(((size_t)st->cfg.item_k + 1) * sizeof *cand);
        if (!top || !cand) fail(st, "out of memory");
        for (size_t t = 0; top && cand && t < st->ntouched && !st->failed; t++) {
            int nh = st->mr.history(st->mr.ctx, st->touched[t].user, h, st->cfg.hist_cap + 1);
            for (int x = 0; x < nh; x++) {
                int nk = topk_read(st, 0, h[x].item, top, st->cfg.item_k), nc = 0;
                for (int y = 0; y < nk; y++)
                    if (top[y].score > 0) {
                        q_topk(st, 0, top[y].id);
                        cand[nc++] = top[y].id;
                    }
                q_fields(st, K_ISTAT, 0, cand, nc);
            }
        }
        free(top);
        free(cand);
        free(h);
        free(nb);
        if (flush(st) < 0) goto done;
    }
    /* After the prefetch, so that most top-K rows written have their base. */
    if (emit_aggregates(st, b) < 0) goto done;
    rc = publish(st, ctx, batch, &st->rd);
done:
    return rc;
}

/* Computes and emits the Recommendations of every touched user, reading
 * through rd. 0 or -1. */
static int publish(rstate_t *st, rt_ctx_t *ctx, const rt_batch_t *batch, const rec_reader_t *rd) {
    size_t need = st->ntouched * (size_t)st->top_n + 1;
    if (grow((void **)&st->recs, &st->caprecs, need, sizeof *st->recs) < 0 ||
        !(st->nrecs = realloc(st->nrecs, (st->ntouched + 1) * sizeof *st->nrecs))) {
        fail(st, "out of memory");
        return -1;
    }
    uint32_t *names = malloc(need * sizeof *names);
    size_t nn = 0;
    if (!names) {
        fail(st, "out of memory");
        return -1;
    }
    for (size_t t = 0; t < st->ntouched; t++) {
        rec_rec_t *out = st->recs + t * (size_t)st->top_n;
        int got = rec_recommend(&st->cfg, rd, st->work, st->touched[t].user, REC_SRC_ALL, NULL, 0,
                                out, st->top_n);
        if (st->failed || got < 0) {
            if (got < 0) fail(st, "out of memory");
            free(names);
            return -1;
        }
        st->nrecs[t] = got;
        for (int x = 0; x < got; x++)
            if (!idmap_name(&st->items, out[x].item)) names[nn++] = out[x].item;
    }
    int nrc = nn ? fetch_item_names(st, names, nn) : 0;
    free(names);
    if (nrc < 0) return -1;
    for (size_t t = 0; t < st->ntouched; t++) {
        const rt_record_t *src = &batch->records[st->evs[st->touched[t].rec].rec];
        const char *user = st->evs[st->touched[t].rec].ev.user_id;
        char err[256];
        if (fill_output(st, ctx, user, src, st->recs + t * (size_t)st->top_n, st->nrecs[t]) < 0) {
            fail(st, "building Recommendations: %s", avro_strerror());
            return -1;
        }
        if (rt_emit(ctx, st->output, st->out_schema, &st->out, err, sizeof err) < 0) {
            fail(st, "%s", err);
            return -1;
        }
    }
    return 0;
}

/* recommend.state=memory: the batch's events applied to the state in
 * memory, in order, and logged as one entry in the batch's commit. The
 * state is first brought to Redis' head (rlog_sync), which also replaces
 * it when a previous batch's entry did not land. */
static int process_events_memory(rstate_t *st, rt_ctx_t *ctx, const rt_batch_t *batch) {
    char err[512];
    if (rlog_sync(st->log, st->store, err, sizeof err) < 0) {
        fail(st, "%s", err);
        return -1;
    }
    if (decode_events(st, ctx, batch) < 0) return -1;
    double dups = 0;
    for (size_t k = 0; k < batch->count; k++) {
        bev_t *e = &st->evs[k];
        if (!e->ok) continue;
        char reason[256];
        int r = rlog_apply(st->log, &e->ev, reason, sizeof reason);
        if (r < 0) {
            fail(st, "%s", reason);
            return -1;
        }
        if (r == 0) {
            dups++;
            continue;
        }
        if (touch(st, e->ev.user, k) < 0) return -1;
    }
    if (dups > 0) metrics_add(st->metrics, DUP_METRIC, st->labels, dups);
    if (publish(st, ctx, batch, &st->lrd) < 0) return -1;
    if (rlog_queue(st->log, rt_state(ctx)) < 0) {
        fail(st, "out of memory");
        return -1;
    }
    return 0;
}

static int recommend_process(void *opaque, rt_ctx_t *ctx, const rt_batch_t *batch, char *errstr,
                             size_t errstr_size) {
    rstate_t *st = opaque;
    char version[64];
    snprintf(version, sizeof version, "rec-%s-k%d", rec_sim_name(st->cfg.sim), st->cfg.item_k);
    if (strcmp(rt_model_version(ctx), version) != 0) rt_set_model_version(ctx, version);
    if (overlay_begin(st, ctx, errstr, errstr_size) < 0) return -1;
    st->ntouched = 0;
    int rc;
    if (batch->count > 0 && codec_schema_src(batch->records[0].schema) &&
        strcmp(codec_schema_src(batch->records[0].schema)->name, "Item") == 0)
        rc = process_items(st, ctx, batch);
    else if (st->log)
        rc = process_events_memory(st, ctx, batch);
    else
        rc = process_events(st, ctx, batch);
    if (rc < 0 || st->failed) {
        snprintf(errstr, errstr_size, "%s", st->err[0] ? st->err : "recommend failed");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Lifecycle                                                           */

static void recommend_destroy(void *opaque) {
    rstate_t *st = opaque;
    if (!st) return;
    if (st->out_made) avro_value_decref(&st->out);
    idmap_free(&st->items);
    idmap_free(&st->users);
    free(st->cat);
    free(st->cat_ids);
    free(st->cat_row);
    free(st->sent);
    rec_mem_destroy(st->mem);
    free(st->km.e);
    for (size_t r = 0; r < st->nrows; r++) {
        free(st->rows[r].base);
        free(st->rows[r].best);
    }
    free(st->topbuf);
    free(st->rows);
    free(st->pend);
    free(st->fq);
    free(st->fids);
    rec_work_destroy(st->work);
    rec_deltas_free(&st->deltas);
    rlog_destroy(st->log);
    free(st->evs);
    free(st->touched);
    free(st->recs);
    free(st->nrecs);
    free(st->av);
    free(st->al);
    free(st->num);
    free(st->scratch);
    free(st);
}

/* "name=value,..." over names[0..n): sets out[k]. Returns 0 or -1. */
static int parse_weights(const char *spec, const char *const *names, int n, float *out,
                         char *errstr, size_t errstr_size, const char *key) {
    char buf[512];
    snprintf(buf, sizeof buf, "%s", spec);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ') tok++;
        if (!*tok) continue;
        char *eq = strchr(tok, '=');
        if (!eq) goto bad;
        *eq = 0;
        int k = 0;
        while (k < n && strcmp(names[k], tok) != 0) k++;
        char *end;
        errno = 0;
        double v = strtod(eq + 1, &end);
        if (k == n || end == eq + 1 || *end || errno || !isfinite(v)) goto bad;
        out[k] = (float)v;
        continue;
    bad:
        snprintf(errstr, errstr_size, "%s: cannot read \"%s\" (want name=number,...)", key, tok);
        return -1;
    }
    return 0;
}

int recommend_config(const config_t *c, rec_config_t *cfg, int *top_n, char *errstr, size_t n) {
    static const char *const ev_names[REC_EV_N] = {"view",   "play", "progress", "complete",
                                                   "rating", "like", "dislike"};
    rec_config_defaults(cfg);
    const struct {
        const char *key;
        int *dst;
        int lo, hi;
    } ints[] = {
        {"recommend.top.n", top_n, 1, 1000},
        {"recommend.history.cap", &cfg->hist_cap, 1, 10000},
        {"recommend.seen.cap", &cfg->seen_cap, 1, 100000},
        {"recommend.consumers.cap", &cfg->cons_cap, 1, 10000},
        {"recommend.item.k", &cfg->item_k, 1, 10000},
        {"recommend.user.k", &cfg->user_k, 1, 10000},
        {"recommend.pop.candidates", &cfg->pop_candidates, 1, 100000},
    };
    for (size_t k = 0; k < sizeof ints / sizeof ints[0]; k++) {
        if (config_check_int(c, ints[k].key, ints[k].lo, ints[k].hi, errstr, n) < 0) return -1;
        *ints[k].dst = (int)config_get_int(c, ints[k].key, *ints[k].dst);
    }
    const char *sim = config_get(c, "recommend.similarity", "cosine");
    if (rec_sim_parse(sim, &cfg->sim) < 0) {
        snprintf(errstr, n, "recommend.similarity: unknown similarity %s", sim);
        return -1;
    }
    double hl = config_get_double(c, "recommend.half.life.days", 0);
    if (!(hl >= 0) || hl > 1e6) {
        snprintf(errstr, n, "recommend.half.life.days: %g out of range", hl);
        return -1;
    }
    cfg->half_life_ms = (int64_t)(hl * 86400000.0);
    cfg->epoch_ms = config_get_int(c, "recommend.decay.epoch.ms", 1577836800000LL);
    {
        const char *norm = config_get(c, "recommend.item.norm", "source");
        const char *ev = config_get(c, "recommend.history.evict", "weakest");
        cfg->item_norm = strcmp(norm, "none") == 0     ? 0
                         : strcmp(norm, "source") == 0 ? REC_NORM_SOURCE
                         : strcmp(norm, "target") == 0 ? REC_NORM_TARGET
                         : strcmp(norm, "both") == 0   ? REC_NORM_SOURCE | REC_NORM_TARGET
                                                       : -1;
        cfg->evict_weakest = strcmp(ev, "oldest") == 0 ? 0 : strcmp(ev, "weakest") == 0 ? 1 : -1;
        cfg->sim_power = (float)config_get_double(c, "recommend.similarity.power", cfg->sim_power);
        cfg->asym_alpha =
            (float)config_get_double(c, "recommend.similarity.alpha", cfg->asym_alpha);
        cfg->iuf_beta = (float)config_get_double(c, "recommend.iuf.beta", cfg->iuf_beta);
        cfg->user_sim_power =
            (float)config_get_double(c, "recommend.user.similarity.power", cfg->user_sim_power);
        cfg->user_aff_power =
            (float)config_get_double(c, "recommend.user.affinity.power", cfg->user_aff_power);
        if (cfg->item_norm < 0 || cfg->evict_weakest < 0 || !(cfg->sim_power > 0) ||
            cfg->sim_power > 10 || !(cfg->asym_alpha >= 0 && cfg->asym_alpha <= 1) ||
            !(cfg->iuf_beta >= 0 && cfg->iuf_beta <= 4) ||
            !(cfg->user_sim_power > 0 && cfg->user_sim_power <= 10) ||
            !(cfg->user_aff_power >= 0 && cfg->user_aff_power <= 10)) {
            snprintf(errstr, n,
                     "recommend.item.norm: none|source|target|both; recommend.history.evict: "
                     "oldest|weakest; recommend.similarity.power in (0, 10]; "
                     "recommend.similarity.alpha in [0, 1]; recommend.iuf.beta in [0, 4]; "
                     "recommend.user.similarity.power in (0, 10]; recommend.user.affinity.power "
                     "in [0, 10]");
            return -1;
        }
    }
    cfg->poster_weight = (float)config_get_double(c, "recommend.poster.weight", 0.5);
    cfg->sentiment_weight = (float)config_get_double(c, "recommend.sentiment.weight", 0.1);
    cfg->sentiment_prior_count = (float)config_get_double(c, "recommend.sentiment.prior.count", 2);
    if (!isfinite(cfg->poster_weight) || !(cfg->sentiment_weight >= 0) ||
        cfg->sentiment_weight > 1 || !(cfg->sentiment_prior_count >= 0) ||
        cfg->sentiment_prior_count > 1e6) {
        snprintf(errstr, n,
                 "recommend.poster.weight must be finite, recommend.sentiment.weight in [0, 1], "
                 "recommend.sentiment.prior.count >= 0");
        return -1;
    }
    cfg->shrink = (float)config_get_double(c, "recommend.shrink", 0);
    if (!(cfg->shrink >= 0)) {
        snprintf(errstr, n, "recommend.shrink must be >= 0");
        return -1;
    }
    if (parse_weights(config_get(c, "recommend.weights", ""), src_names, 4, cfg->src_weight, errstr,
                      n, "recommend.weights") < 0 ||
        parse_weights(config_get(c, "recommend.event.weights", ""), ev_names, REC_EV_N, cfg->weight,
                      errstr, n, "recommend.event.weights") < 0)
        return -1;
    return 0;
}

static int recommend_init(const rt_env_t *env, void **state, char *errstr, size_t errstr_size) {
    rstate_t *st = calloc(1, sizeof *st);
    if (!st) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    st->km.gen = 1;
    st->top_n = 10;
    if (recommend_config(env->config, &st->cfg, &st->top_n, errstr, errstr_size) < 0) goto fail;
    snprintf(st->output, sizeof st->output, "%s",
             config_get(env->config, "recommend.output", "recommendations"));
    rt_key_for(env->group_id, "", st->prefix, sizeof st->prefix);
    {
        const char *base = config_get(env->config, "group.id", "reel");
        const char *pg = config_get(env->config, "recommend.posters.group", "");
        const char *sg = config_get(env->config, "recommend.sentiment.group", "");
        char g[256];
        snprintf(g, sizeof g, "%s-tag", base);
        rt_key_for(*pg ? pg : g, "poster-embeddings", st->posters_key, sizeof st->posters_key);
        snprintf(st->sent_group, sizeof st->sent_group, "%s-sentiment", base);
        if (*sg) snprintf(st->sent_group, sizeof st->sent_group, "%s", sg);
        st->mm_interval_ms = config_get_int(env->config, "recommend.multimodal.refresh.ms", 30000);
        st->prefetch = (int)config_get_int(env->config, "recommend.prefetch", 2);
    }
    snprintf(st->labels, sizeof st->labels, "worker=\"%s\"", env->worker);
    st->metrics = env->metrics;
    metrics_declare(st->metrics, DUP_METRIC, METRIC_COUNTER,
                    "Viewing events dropped because their event_id was already applied.");
    st->out_schema = codec_by_name(env->codec, "Recommendations");
    if (!st->out_schema) {
        snprintf(errstr, errstr_size, "schema Recommendations missing");
        goto fail;
    }
    if (codec_value_new(st->out_schema, &st->out, errstr, errstr_size) < 0) goto fail;
    st->out_made = 1;
    st->work = rec_work_new(&st->cfg);
    if (!st->work) {
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }
    st->rd = (rec_reader_t){
        .ctx = st,
        .event_seen = o_event_seen,
        .history = o_history,
        .pairs = o_pairs,
        .item_stats = o_item_stats,
        .user_norms = o_user_norms,
        .user_dots = o_user_dots,
        .consumers = o_consumers,
        .item_topk = o_item_topk,
        .user_topk = o_user_topk,
        .features = o_features,
        .popular = o_popular,
        .catalogue = o_catalogue,
        .catalogue_version = o_catalogue_version,
        .n_items = o_n_items,
        .sentiment = o_sentiment,
    };
    {
        const char *mode = config_get(env->config, "recommend.state", "redis");
        if (strcmp(mode, "memory") == 0) {
            if (config_check_int(env->config, "recommend.snapshot.events", 0, 1000000000, errstr,
                                 errstr_size) < 0)
                goto fail;
            long every = (long)config_get_int(env->config, "recommend.snapshot.events", 500000);
            st->log = rlog_new(&st->cfg, st->prefix, every);
            if (!st->log) {
                snprintf(errstr, errstr_size, "out of memory");
                goto fail;
            }
            st->lrd = (rec_reader_t){
                .ctx = st,
                .event_seen = l_event_seen,
                .history = l_history,
                .history_view = l_history_view,
                .pairs = l_pairs,
                .item_stats = l_item_stats,
                .user_norms = l_user_norms,
                .user_dots = l_user_dots,
                .consumers = l_consumers,
                .item_topk = l_item_topk,
                .item_topk_head = l_item_topk_head,
                .user_topk = l_user_topk,
                .features = o_features,
                .popular = l_popular,
                .catalogue = o_catalogue,
                .catalogue_version = o_catalogue_version,
                .n_items = l_n_items,
                .sentiment = o_sentiment,
            };
        } else if (strcmp(mode, "redis") != 0) {
            snprintf(errstr, errstr_size, "recommend.state: %s is not redis or memory", mode);
            goto fail;
        }
    }
    /* Redis may be down at start: the cache fills at the next reload. */
    char err[256];
    if (cat_reload(st, env->store, err, sizeof err) < 0)
        log_warn("recommend_catalogue", "item features not loaded yet: %s", err);
    else if (st->mm_interval_ms > 0) {
        if (mm_refresh(st, env->store, err, sizeof err) < 0)
            log_warn("recommend_multimodal", "posters and sentiment not loaded yet: %s", err);
    }
    log_info("recommend_ready",
             "similarity=%s item.k=%d user.k=%d history.cap=%d items=%zu state=%s",
             rec_sim_name(st->cfg.sim), st->cfg.item_k, st->cfg.user_k, st->cfg.hist_cap, st->ncat,
             st->log ? "memory" : "redis");
    *state = st;
    return 0;
fail:
    recommend_destroy(st);
    return -1;
}

static int recommend_reload(void *opaque, rt_ctx_t *ctx, char *errstr, size_t errstr_size) {
    rstate_t *st = opaque;
    store_t *s = rt_store(ctx);
    if (store_ensure_connected(s, errstr, errstr_size) < 0) return -1;
    if (cat_reload(st, s, errstr, errstr_size) < 0) return -1;
    int done;
    return mm_step(st, s, &done, errstr, errstr_size);
}

const worker_def_t recommend_worker = {
    .name = "recommend",
    .description = "item/user CF, content and popularity recommendations from viewing events",
    .inputs = recommend_inputs,
    .config = recommend_keys,
    .init = recommend_init,
    .process = recommend_process,
    .reload = recommend_reload,
    .destroy = recommend_destroy,
};
