/* rec_mem.c: the in-memory state of rec.h (hash maps and flat arrays) and the
 * string-id dictionary. Used by `reel eval recommend` and the tests; the
 * recommend worker keeps the same keys in Redis. */
#include "kernels/rec.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* uint32 -> double[stride], open addressing, linear probing, no delete */

#define EMPTY UINT32_MAX

typedef struct u32map {
    uint32_t *keys;
    double *vals;
    uint32_t cap, n;
} u32map_t;

static inline uint32_t mix32(uint32_t x) {
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

static const double *map_get(const u32map_t *m, uint32_t key, int stride) {
    if (!m->cap) return NULL;
    uint32_t mask = m->cap - 1;
    for (uint32_t p = mix32(key) & mask;; p = (p + 1) & mask) {
        if (m->keys[p] == key) return m->vals + (size_t)p * stride;
        if (m->keys[p] == EMPTY) return NULL;
    }
}

static int map_grow(u32map_t *m, int stride) {
    uint32_t cap = m->cap ? m->cap * 2 : 8;
    uint32_t *keys = malloc((size_t)cap * sizeof *keys);
    double *vals = calloc((size_t)cap * stride, sizeof *vals);
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return -1;
    }
    memset(keys, 0xff, (size_t)cap * sizeof *keys);
    for (uint32_t q = 0; q < m->cap; q++) {
        if (m->keys[q] == EMPTY) continue;
        uint32_t p = mix32(m->keys[q]) & (cap - 1);
        while (keys[p] != EMPTY) p = (p + 1) & (cap - 1);
        keys[p] = m->keys[q];
        memcpy(vals + (size_t)p * stride, m->vals + (size_t)q * stride, stride * sizeof *vals);
    }
    free(m->keys);
    free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
    return 0;
}

/* The values of key, inserted as zeros when absent; NULL on OOM. */
static double *map_put(u32map_t *m, uint32_t key, int stride) {
    if ((m->n + 1) * 4 > m->cap * 3 && map_grow(m, stride) < 0) return NULL;
    uint32_t mask = m->cap - 1;
    uint32_t p = mix32(key) & mask;
    while (m->keys[p] != key) {
        if (m->keys[p] == EMPTY) {
            m->keys[p] = key;
            m->n++;
            /* Already zero, but written: the caller's += then reads the
             * stores back instead of waiting on a line nothing has read
             * (most of an event's ~70 pair adds are new pairs). */
            double *v = m->vals + (size_t)p * stride;
            for (int f = 0; f < stride; f++) v[f] = 0.0;
            return v;
        }
        p = (p + 1) & mask;
    }
    return m->vals + (size_t)p * stride;
}

static void map_free(u32map_t *m) {
    free(m->keys);
    free(m->vals);
}

/* ------------------------------------------------------------------ */
/* Bounded top-K list                                                  */

/* Entries live in stable slots (ids[s], sc[s], s < n): an offer finds its
 * entry, or learns it has none, through idx, an open-addressing index from
 * id to slot, in one or two cache lines whatever k is (a scan of the ids
 * touched k / 16 lines and was most of an offer's cost). ord holds the
 * slots best first and srt the entries in that order; both are re-sorted
 * on read when the list changed (few moves: the last read sorted them), so
 * reading an unchanged list is one memcpy. The worst entry's slot, score
 * and id are cached (slot -1: unknown), so that an offer below it costs
 * the index probe only. */
typedef struct topk {
    /* srt first: in an item row it shares the first cache line with the
     * statistics, and only reads use it; offers use the rest. */
    rec_scored_t *srt; /* the entries in order, best first: what a read copies */
    uint16_t *ord;     /* their slots, as of the last read */
    uint32_t *ids;
    float *sc;
    /* From here on, what refusing an offer reads (in one cache line of an
     * item row, mitem_t). One allocation: idx[imask + 1], srt[k], ids[k],
     * sc[k], ord[k]; NULL until the first offer. */
    uint64_t *idx; /* id << 16 | (slot + 1); 0 free */
    uint32_t imask;
    int n;
    int worst;
    float wsc;    /* the worst entry's score and id, when worst >= 0: an offer */
    uint32_t wid; /* below it is refused without touching the arrays */
    /* topk_head's answer for head_k (0: none), kept through changes that
     * cannot move it (head_touch): item CF asks it of a thousand
     * candidates per user, and most changes are at a list's tail. */
    uint16_t head_k;
    uint8_t sorted;
    float head_kth, head_sum;
} topk_t;

static inline int sc_better(float sa, uint32_t ia, float sb, uint32_t ib) {
    return sa > sb || (sa == sb && ia > ib);
}

/* The min in 8 independent lanes (a compiler vectorises them; one chain of
 * dependent comparisons costs k latencies), then the lowest id at it. */
static void topk_find_worst(topk_t *t) {
    const int n = t->n;
    const float *sc = t->sc;
    if (n == 0) {
        t->worst = -1;
        return;
    }
    float lane[8];
    for (int j = 0; j < 8; j++) lane[j] = sc[0];
    int x = 0;
    for (; x + 8 <= n; x += 8)
        for (int j = 0; j < 8; j++) lane[j] = sc[x + j] < lane[j] ? sc[x + j] : lane[j];
    float lo = lane[0];
    for (int j = 1; j < 8; j++) lo = lane[j] < lo ? lane[j] : lo;
    for (; x < n; x++) lo = sc[x] < lo ? sc[x] : lo;
    int w = -1;
    for (x = 0; x < n; x++)
        if (sc[x] == lo && (w < 0 || t->ids[x] < t->ids[w])) w = x;
    if (w < 0) { /* no entry equals the min: a NaN score; compare one by one */
        w = 0;
        for (x = 1; x < n; x++)
            if (sc_better(sc[w], t->ids[w], sc[x], t->ids[x])) w = x;
    }
    t->worst = w;
    t->wsc = sc[w];
    t->wid = t->ids[w];
}

static void topk_free(topk_t *t) {
    free(t->idx);
}

static void topk_clear(topk_t *t) {
    t->n = 0;
    t->worst = -1;
    t->sorted = 1;
    t->head_k = 0;
    if (t->idx) memset(t->idx, 0, ((size_t)t->imask + 1) * sizeof *t->idx);
}

/* The index position holding id (hash h), or -1. */
static inline int idx_find(const topk_t *t, uint32_t id, uint32_t h) {
    const uint64_t key = (uint64_t)id << 16;
    for (uint32_t p = h & t->imask;; p = (p + 1) & t->imask) {
        uint64_t e = t->idx[p];
        if (e == 0) return -1;
        if ((e & ~(uint64_t)0xffff) == key) return (int)p;
    }
}

static inline void idx_insert(topk_t *t, uint32_t id, uint32_t h, int slot) {
    uint32_t p = h & t->imask;
    while (t->idx[p]) p = (p + 1) & t->imask;
    t->idx[p] = (uint64_t)id << 16 | (uint32_t)(slot + 1);
}

/* Frees position p, moving back later entries of its probe run whose home
 * is not after the hole (backward-shift deletion: no tombstones). */
static void idx_delete(topk_t *t, uint32_t p) {
    const uint32_t mask = t->imask;
    for (uint32_t q = (p + 1) & mask;; q = (q + 1) & mask) {
        uint64_t e = t->idx[q];
        if (e == 0) break;
        uint32_t home = mix32((uint32_t)(e >> 16)) & mask;
        /* e may fill the hole unless its home lies cyclically in (p, q]. */
        if (((q - home) & mask) >= ((q - p) & mask)) {
            t->idx[p] = e;
            p = q;
        }
    }
    t->idx[p] = 0;
}

/* A change from score a to score b (either may be an entry's absence,
 * -INFINITY) leaves topk_head's cached answer alone when both lie strictly
 * below its k-th score: the best head_k entries and their scores stay. Most
 * changes of a full list are at its tail. A NaN fails the test. */
static inline void head_touch(topk_t *t, float a, float b) {
    if (t->head_k && !(a < t->head_kth && b < t->head_kth)) t->head_k = 0;
}

/* ZADD row member score, then keep the best k. -1: out of memory, or k
 * beyond what a 16-bit slot holds (the settings allow 10000). */
static int topk_set(topk_t *t, int k, uint32_t id, float score) {
    if (k <= 0) return 0;
    if (k > 65535) return -1;
    if (!t->idx) {
        uint32_t icap = 8;
        while (icap < 2 * (uint32_t)k) icap *= 2; /* load <= 1/2 */
        char *b = calloc(1, icap * sizeof(uint64_t) + (size_t)k * 18);
        if (!b) return -1;
        t->idx = (uint64_t *)b;
        t->srt = (rec_scored_t *)(t->idx + icap);
        t->ids = (uint32_t *)(t->srt + k);
        t->sc = (float *)(t->ids + k);
        t->ord = (uint16_t *)(t->sc + k);
        t->imask = icap - 1;
        t->n = 0; /* the index is already zero (calloc) */
        t->worst = -1;
        t->sorted = 1;
    }
    const uint32_t h = mix32(id);
    const int p = idx_find(t, id, h);
    if (p >= 0) {
        /* A member's new score. Its old one is read only when the cached
         * head needs it: otherwise sc[x] is only written, and a store that
         * misses the cache does not hold up the next offer the way a load
         * does (offers to ~150 lists per event, most not cached). */
        const int x = (int)(t->idx[p] & 0xffff) - 1;
        if (t->head_k && !(score < t->head_kth && t->sc[x] < t->head_kth)) t->head_k = 0;
        t->sc[x] = score;
        t->sorted = 0;
        if (t->worst >= 0) {
            if (x == t->worst) { /* its old score is wsc */
                if (score > t->wsc)
                    t->worst = -1;
                else
                    t->wsc = score;
            } else if (sc_better(t->wsc, t->wid, score, id)) {
                t->worst = x;
                t->wsc = score;
                t->wid = id;
            }
        }
        return 0;
    }
    const int n = t->n;
    if (n < k) {
        t->ids[n] = id;
        t->sc[n] = score;
        t->ord[n] = (uint16_t)n;
        idx_insert(t, id, h, n);
        t->n = n + 1;
        t->sorted = 0;
        head_touch(t, -INFINITY, score);
        if (n == 0 || (t->worst >= 0 && sc_better(t->wsc, t->wid, score, id))) {
            t->worst = n;
            t->wsc = score;
            t->wid = id;
        }
        return 0;
    }
    if (t->worst < 0) topk_find_worst(t);
    const int w = t->worst;
    if (sc_better(score, id, t->wsc, t->wid)) {
        idx_delete(t, (uint32_t)idx_find(t, t->wid, mix32(t->wid))); /* wid: ids[w], not re-read */
        t->ids[w] = id;
        t->sc[w] = score;
        idx_insert(t, id, h, w);
        t->sorted = 0;
        head_touch(t, t->wsc, score);
        t->worst = -1;
    }
    return 0;
}

static int cmp_scored(const void *a, const void *b) {
    const rec_scored_t *x = a, *y = b;
    return sc_better(x->score, x->id, y->score, y->id)   ? -1
           : sc_better(y->score, y->id, x->score, x->id) ? 1
                                                         : 0;
}

/* Brings srt (and ord) to the entries' order, best first. */
static void topk_sort(topk_t *t) {
    const int n = t->n;
    if (!t->sorted && n > 0) {
        /* The entries in the last read's order, then an insertion sort
         * (with their slots): only a few moved since, so close to one pass. */
        rec_scored_t *srt = t->srt;
        uint16_t *ord = t->ord;
        for (int x = 0; x < n; x++) {
            srt[x].id = t->ids[ord[x]];
            srt[x].score = t->sc[ord[x]];
        }
        for (int x = 1; x < n; x++) {
            const rec_scored_t e = srt[x];
            const uint16_t slot = ord[x];
            int y = x - 1;
            while (y >= 0 && sc_better(e.score, e.id, srt[y].score, srt[y].id)) {
                srt[y + 1] = srt[y];
                ord[y + 1] = ord[y];
                y--;
            }
            srt[y + 1] = e;
            ord[y + 1] = slot;
        }
        t->worst = ord[n - 1];
        t->wsc = srt[n - 1].score;
        t->wid = srt[n - 1].id;
    }
    t->sorted = 1;
}

static int topk_read(topk_t *t, rec_scored_t *out, int cap) {
    int n = t->n;
    if (n == 0 || cap <= 0) return 0;
    if (!t->sorted) topk_sort(t);
    if (n > cap) n = cap;
    memcpy(out, t->srt, (size_t)n * sizeof *out);
    return n;
}

/* The reader's item_topk_any (rec.h) of t: slot order, unless sorted. */
static int topk_read_any(topk_t *t, rec_scored_t *out, int cap) {
    const int n = t->n;
    if (t->sorted || n > cap) return topk_read(t, out, cap);
    for (int x = 0; x < n; x++) {
        out[x].id = t->ids[x];
        out[x].score = t->sc[x];
    }
    return n;
}

/* The reader's item_topk_head (rec.h) of t. */
static void topk_head(topk_t *t, int k, float *kth, float *pos_sum) {
    if (k <= 0 || k > UINT16_MAX) {
        *kth = -INFINITY;
        *pos_sum = 0;
        return;
    }
    if (t->head_k != k) { /* kept through changes below it (head_touch) */
        if (!t->sorted) topk_sort(t);
        const int n = t->n < k ? t->n : k;
        float sum = 0;
        for (int y = 0; y < n; y++)
            if (t->srt[y].score > 0) sum += t->srt[y].score;
        t->head_kth = n == k ? t->srt[k - 1].score : -INFINITY;
        t->head_sum = sum;
        t->head_k = (uint16_t)k;
    }
    *kth = t->head_kth;
    *pos_sum = t->head_sum;
}

/* ------------------------------------------------------------------ */
/* The state                                                           */

typedef struct muser {
    rec_hist_t *hist;
    int nh;
    uint64_t *seen; /* ring of seen_cap */
    int nseen, seen_head;
    double n2;
    u32map_t dots; /* stride 1 */
    topk_t topk;
} muser_t;

/* Two cache lines, the rows 64-byte aligned (rows_reserve): an event reads
 * the statistics and pair map header of about a hundred items (the first
 * line) and offers to their top-K lists (the header's offer fields, the
 * second line). */
typedef struct mitem {
    double st[REC_IS_N];
    u32map_t pairs; /* stride = number of maintained fields */
    rec_cons_t *cons;
    int ncons;
    int32_t cat_row; /* row in the catalogue block, -1 none */
    topk_t topk;
} mitem_t;

_Static_assert(sizeof(void *) != 8 || sizeof(mitem_t) == 128, "an item row is two cache lines");
_Static_assert(sizeof(void *) != 8 || offsetof(mitem_t, topk) + offsetof(topk_t, ord) == 64,
               "what an offer reads of an item row is in its second cache line");

struct rec_mem {
    rec_config_t cfg;
    int stride;
    int slot[REC_PF_N]; /* field -> slot in a pair's values, -1 not kept */
    /* Counters kept once per unordered pair, in the lower id's map under
     * the higher id (rec_mem_new), instead of in both rows: the kernel
     * emits a symmetric counter's increment in both orders, and writing
     * the second row's map was a cache miss per history item. pairs_once
     * only when every kept pair field is symmetric (not Pearson's). */
    int pairs_once, dots_once;
    muser_t *users;
    uint32_t nu, capu;
    mitem_t *items;
    uint32_t ni, capi;
    float *cat;  /* catalogue block, ncat x REC_FEAT_DIM */
    float *sent; /* item -> review sentiment, nsent entries (0 beyond) */
    uint32_t nsent;
    uint32_t *cat_ids;
    size_t ncat, capcat;
    uint64_t cat_version; /* moves with every write to cat */
    rec_scored_t *pop;    /* items by popularity, best first; rebuilt when dirty */
    uint32_t npop, cappop;
    uint32_t *pop_at; /* item -> its index in pop, UINT32_MAX none (cappop entries) */
    int pop_dirty;
    size_t npairs;
};

static rec_mem_t *mem_new(const rec_config_t *cfg, int once) {
    rec_mem_t *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->cfg = *cfg;
    unsigned pf = rec_config_fields(cfg);
    for (int f = 0; f < REC_PF_N; f++) m->slot[f] = (pf & REC_PFM(f)) ? m->stride++ : -1;
    if (m->stride == 0) m->stride = 1;
    m->dots_once = once;
    m->pairs_once = once && !(pf & (REC_PFM(REC_PF_RS) | REC_PFM(REC_PF_RQ)));
    m->pop_dirty = 1;
    return m;
}

rec_mem_t *rec_mem_new(const rec_config_t *cfg) {
    return mem_new(cfg, 1);
}

unsigned rec_mem_once(const rec_mem_t *m) {
    return (m->pairs_once ? REC_ONCE_PAIRS : 0u) | (m->dots_once ? REC_ONCE_DOTS : 0u);
}

rec_mem_t *rec_mem_new_rowwise(const rec_config_t *cfg) {
    return mem_new(cfg, 0);
}

void rec_mem_destroy(rec_mem_t *m) {
    if (!m) return;
    for (uint32_t u = 0; u < m->nu; u++) {
        free(m->users[u].hist);
        free(m->users[u].seen);
        map_free(&m->users[u].dots);
        topk_free(&m->users[u].topk);
    }
    for (uint32_t i = 0; i < m->ni; i++) {
        map_free(&m->items[i].pairs);
        free(m->items[i].cons);
        topk_free(&m->items[i].topk);
    }
    free(m->users);
    free(m->items);
    free(m->cat);
    free(m->sent);
    free(m->cat_ids);
    free(m->pop);
    free(m->pop_at);
    free(m);
}

/* rows (of size bytes each, *cap of them, the first `used` in use) made to
 * hold row `need`, doubling from 256, 64-byte aligned so that a row's
 * fields sit in the cache lines its layout intends: the same pointer, a new
 * one (the rows in use moved, the old freed, *cap updated), or NULL on OOM
 * with rows and *cap unchanged. */
static void *rows_reserve(void *rows, uint32_t *cap, uint32_t used, uint32_t need, size_t size) {
    if (need < *cap) return rows;
    uint32_t c = *cap ? *cap : 256;
    while (c <= need) c *= 2;
    size_t bytes = ((size_t)c * size + 63) / 64 * 64;
    void *p = aligned_alloc(64, bytes);
    if (!p) return NULL;
    if (used > 0) memcpy(p, rows, (size_t)used * size);
    free(rows);
    *cap = c;
    return p;
}

static muser_t *user_grow(rec_mem_t *m, uint32_t u) {
    muser_t *users = rows_reserve(m->users, &m->capu, m->nu, u, sizeof *users);
    if (!users) return NULL;
    m->users = users;
    memset(m->users + m->nu, 0, (size_t)(u + 1 - m->nu) * sizeof *m->users);
    m->nu = u + 1;
    return &m->users[u];
}

static mitem_t *item_grow(rec_mem_t *m, uint32_t i) {
    mitem_t *items = rows_reserve(m->items, &m->capi, m->ni, i, sizeof *items);
    if (!items) return NULL;
    m->items = items;
    memset(m->items + m->ni, 0, (size_t)(i + 1 - m->ni) * sizeof *m->items);
    for (uint32_t x = m->ni; x <= i; x++) m->items[x].cat_row = -1;
    m->ni = i + 1;
    return &m->items[i];
}

/* The popularity list: every item with a count, best first (as
 * cmp_scored orders). Sorted from scratch only when dirty (a new or loaded
 * state, or out of memory); otherwise each count change moves its item to
 * its new place, a few steps, where sorting thousands of items for every
 * batch that recommends cost a tenth of the worker's time. */
static int pop_rebuild(rec_mem_t *m) {
    size_t cap = (size_t)m->ni + m->ni / 2 + 1024; /* room for new items */
    rec_scored_t *p = realloc(m->pop, cap * sizeof *p);
    if (p) m->pop = p;
    uint32_t *at = realloc(m->pop_at, cap * sizeof *at);
    if (at) m->pop_at = at;
    if (!p || !at) return -1;
    m->cappop = (uint32_t)cap;
    m->npop = 0;
    for (uint32_t i = 0; i < m->ni; i++)
        if (m->items[i].st[REC_IS_C] > 0) {
            p[m->npop].id = i;
            p[m->npop++].score = (float)m->items[i].st[REC_IS_C];
        }
    qsort(p, m->npop, sizeof *p, cmp_scored);
    memset(at, 0xff, cap * sizeof *at);
    for (uint32_t x = 0; x < m->npop; x++) at[p[x].id] = x;
    m->pop_dirty = 0;
    return 0;
}

static void pop_moved(rec_mem_t *m, uint32_t i) {
    if (m->pop_dirty) return;
    const float sc = (float)m->items[i].st[REC_IS_C];
    if (i >= m->cappop || !(sc > 0) || (m->pop_at[i] == UINT32_MAX && m->npop >= m->cappop)) {
        m->pop_dirty = 1; /* a new item beyond the arrays: rebuilt at the next read */
        return;
    }
    rec_scored_t *p = m->pop;
    uint32_t x = m->pop_at[i];
    if (x == UINT32_MAX) x = m->npop++;
    p[x].id = i;
    p[x].score = sc;
    const rec_scored_t e = p[x];
    while (x > 0 && sc_better(e.score, e.id, p[x - 1].score, p[x - 1].id)) {
        p[x] = p[x - 1];
        m->pop_at[p[x].id] = x;
        x--;
    }
    while (x + 1 < m->npop && sc_better(p[x + 1].score, p[x + 1].id, e.score, e.id)) {
        p[x] = p[x + 1];
        m->pop_at[p[x].id] = x;
        x++;
    }
    p[x] = e;
    m->pop_at[i] = x;
}

/* The row of user u / item i, grown to hold it (zeroed); NULL on OOM. The
 * common case, a row that exists, inline: apply_one asks several times per
 * delta. */
static inline muser_t *user_at(rec_mem_t *m, uint32_t u) {
    return u < m->nu ? &m->users[u] : user_grow(m, u);
}

static inline mitem_t *item_at(rec_mem_t *m, uint32_t i) {
    return i < m->ni ? &m->items[i] : item_grow(m, i);
}

static int apply_one(rec_mem_t *m, const rec_delta_t *d) {
    const rec_config_t *cfg = &m->cfg;
    muser_t *us;
    mitem_t *it;
    double *v;
    switch ((rec_op_t)d->op) {
    case REC_OP_SEEN_ADD:
        if (!(us = user_at(m, d->a)) || cfg->seen_cap <= 0) return us ? 0 : -1;
        if (!us->seen && !(us->seen = malloc((size_t)cfg->seen_cap * sizeof *us->seen))) return -1;
        us->seen[us->seen_head] = d->key;
        us->seen_head = (us->seen_head + 1) % cfg->seen_cap;
        if (us->nseen < cfg->seen_cap) us->nseen++;
        return 0;
    case REC_OP_HIST_SET:
        if (!(us = user_at(m, d->a))) return -1;
        if (!us->hist && !(us->hist = malloc(((size_t)cfg->hist_cap + 1) * sizeof *us->hist)))
            return -1;
        for (int x = 0; x < us->nh; x++)
            if (us->hist[x].item == d->hist.item) {
                us->hist[x] = d->hist;
                return 0;
            }
        if (us->nh > cfg->hist_cap) return 0; /* a HIST_DEL follows; never happens */
        us->hist[us->nh++] = d->hist;
        return 0;
    case REC_OP_HIST_DEL:
        if (d->a >= m->nu) return 0;
        us = &m->users[d->a];
        for (int x = 0; x < us->nh; x++)
            if (us->hist[x].item == d->b) {
                us->hist[x] = us->hist[--us->nh];
                break;
            }
        return 0;
    case REC_OP_PAIR_ADD:
        if (d->f >= REC_PF_N || m->slot[d->f] < 0) return 0;
        if (!(it = item_at(m, d->a)) || !item_at(m, d->b)) return -1;
        if (m->pairs_once && d->a > d->b) return 0; /* its mirror (b, a) adds the same */
        it = &m->items[d->a];
        {
            uint32_t before = it->pairs.n;
            if (!(v = map_put(&it->pairs, d->b, m->stride))) return -1;
            m->npairs += it->pairs.n - before;
        }
        v[m->slot[d->f]] += d->v;
        return 0;
    case REC_OP_ITEM_ADD:
        if (d->f >= REC_IS_N || !(it = item_at(m, d->a))) return d->f >= REC_IS_N ? 0 : -1;
        it->st[d->f] += d->v;
        if (d->f == REC_IS_C) pop_moved(m, d->a);
        return 0;
    case REC_OP_USER_ADD:
        if (!(us = user_at(m, d->a))) return -1;
        us->n2 += d->v;
        return 0;
    case REC_OP_UDOT_ADD:
        if (!user_at(m, d->b) || !(us = user_at(m, d->a))) return -1;
        if (m->dots_once && d->a > d->b) return 0; /* its mirror (b, a) adds the same */
        if (!(v = map_put(&us->dots, d->b, 1))) return -1;
        v[0] += d->v;
        return 0;
    case REC_OP_CONS_SET:
        if (!(it = item_at(m, d->a))) return -1;
        for (int x = 0; x < it->ncons; x++)
            if (it->cons[x].user == d->b) {
                it->cons[x].a = d->v;
                return 0;
            }
        if (!it->cons && !(it->cons = malloc(((size_t)cfg->cons_cap + 1) * sizeof *it->cons)))
            return -1;
        if (it->ncons > cfg->cons_cap) return 0;
        it->cons[it->ncons].user = d->b;
        it->cons[it->ncons].a = d->v;
        it->cons[it->ncons++].t = d->t;
        return 0;
    case REC_OP_CONS_DEL:
        if (d->a >= m->ni) return 0;
        it = &m->items[d->a];
        for (int x = 0; x < it->ncons; x++)
            if (it->cons[x].user == d->b) {
                it->cons[x] = it->cons[--it->ncons];
                break;
            }
        return 0;
    case REC_OP_ITOPK_SET:
        if (!item_at(m, d->b) || !(it = item_at(m, d->a))) return -1;
        return topk_set(&it->topk, cfg->item_k, d->b, (float)d->v);
    case REC_OP_UTOPK_SET:
        if (!user_at(m, d->b) || !(us = user_at(m, d->a))) return -1;
        return topk_set(&us->topk, cfg->user_k, d->b, (float)d->v);
    default:
        return 0;
    }
}

/* The top-K list delta d offers to, or NULL. */
static inline const topk_t *offer_list(const rec_mem_t *m, const rec_delta_t *d) {
    if (d->op == REC_OP_ITOPK_SET && d->a < m->ni) return &m->items[d->a].topk;
    if (d->op == REC_OP_UTOPK_SET && d->a < m->nu) return &m->users[d->a].topk;
    return NULL;
}

/* Each offer is two dependent misses, to a list of its own: the list's
 * header, then its index slot. They are fetched PREFETCH_HEAD and
 * PREFETCH_SLOT deltas ahead of the one applied (the slot's address needs
 * the header). A window measured ~6% faster than fetching every delta's
 * lists before the first is applied, in one process alternating the two
 * per event. */
#define PREFETCH_HEAD 16
#define PREFETCH_SLOT 8

static inline void prefetch_head(const rec_mem_t *m, const rec_delta_t *d) {
    const topk_t *t = offer_list(m, d);
    if (t) __builtin_prefetch(&t->idx);
}

static inline void prefetch_slot(const rec_mem_t *m, const rec_delta_t *d) {
    const topk_t *t = offer_list(m, d);
    if (t && t->idx) __builtin_prefetch(&t->idx[mix32(d->b) & t->imask]);
}

int rec_mem_apply(rec_mem_t *m, const rec_delta_t *d, size_t n) {
    for (size_t k = 0; k < n && k < PREFETCH_HEAD; k++) prefetch_head(m, &d[k]);
    for (size_t k = 0; k < n && k < PREFETCH_SLOT; k++) prefetch_slot(m, &d[k]);
    for (size_t k = 0; k < n; k++) {
        if (k + PREFETCH_HEAD < n) prefetch_head(m, &d[k + PREFETCH_HEAD]);
        if (k + PREFETCH_SLOT < n) prefetch_slot(m, &d[k + PREFETCH_SLOT]);
        if (apply_one(m, &d[k]) < 0) return -1;
    }
    return 0;
}

size_t rec_mem_pair_count(const rec_mem_t *m) {
    return m->pairs_once ? 2 * m->npairs : m->npairs;
}

int rec_mem_set_features(rec_mem_t *m, uint32_t item, const float *f) {
    mitem_t *it = item_at(m, item);
    if (!it) return -1;
    if (it->cat_row < 0) {
        if (m->ncat >= INT32_MAX) return -1;
        if (m->ncat == m->capcat) {
            size_t cap = m->capcat ? m->capcat * 2 : 1024;
            float *c = realloc(m->cat, cap * REC_FEAT_DIM * sizeof *c);
            if (!c) return -1;
            m->cat = c;
            uint32_t *ids = realloc(m->cat_ids, cap * sizeof *ids);
            if (!ids) return -1;
            m->cat_ids = ids;
            m->capcat = cap;
        }
        it->cat_row = (int32_t)m->ncat;
        m->cat_ids[m->ncat++] = item;
    }
    memcpy(m->cat + (size_t)it->cat_row * REC_FEAT_DIM, f, REC_FEAT_DIM * sizeof *f);
    m->cat_version++;
    return 0;
}

int rec_mem_set_sentiment(rec_mem_t *m, uint32_t item, float s) {
    if (item >= m->nsent) {
        uint32_t cap = m->nsent ? m->nsent : 1024;
        while (cap <= item) cap *= 2;
        float *p = realloc(m->sent, (size_t)cap * sizeof *p);
        if (!p) return -1;
        memset(p + m->nsent, 0, (size_t)(cap - m->nsent) * sizeof *p);
        m->sent = p;
        m->nsent = cap;
    }
    m->sent[item] = s;
    return 0;
}

/* ------------------------------------------------------------------ */
/* The reader                                                          */

static int r_event_seen(void *ctx, uint32_t u, uint64_t h) {
    rec_mem_t *m = ctx;
    if (u >= m->nu) return 0;
    const muser_t *us = &m->users[u];
    for (int x = 0; x < us->nseen; x++)
        if (us->seen[x] == h) return 1;
    return 0;
}

static int r_history(void *ctx, uint32_t u, rec_hist_t *out, int cap) {
    rec_mem_t *m = ctx;
    if (u >= m->nu) return 0;
    int n = m->users[u].nh < cap ? m->users[u].nh : cap;
    if (n > 0) memcpy(out, m->users[u].hist, (size_t)n * sizeof *out);
    return n;
}

static const rec_hist_t *r_history_view(void *ctx, uint32_t u, int *n) {
    rec_mem_t *m = ctx;
    *n = u < m->nu ? m->users[u].nh : 0;
    return *n > 0 ? m->users[u].hist : NULL;
}

/* The counters of pair (row, col) as the reader returns them; NULL none. */
static const double *pair_get(const rec_mem_t *m, uint32_t row, uint32_t col) {
    if (m->pairs_once && row > col) {
        uint32_t t = row;
        row = col;
        col = t;
    }
    return row < m->ni ? map_get(&m->items[row].pairs, col, m->stride) : NULL;
}

static void r_pairs(void *ctx, uint32_t row, const uint32_t *cols, int n, double *out) {
    rec_mem_t *m = ctx;
    memset(out, 0, (size_t)n * REC_PF_N * sizeof *out);
    /* The lookups go to up to n maps (the lower id's): fetch their headers,
     * then their first probe slots, for all of them before probing one,
     * so that the misses overlap instead of following each other. */
    if (m->pairs_once) {
        for (int k = 0; k < n; k++) {
            uint32_t lo = row < cols[k] ? row : cols[k];
            if (lo < m->ni) __builtin_prefetch(&m->items[lo].pairs);
        }
        for (int k = 0; k < n; k++) {
            uint32_t lo = row < cols[k] ? row : cols[k], hi = row ^ cols[k] ^ lo;
            if (lo >= m->ni) continue;
            const u32map_t *p = &m->items[lo].pairs;
            if (!p->cap) continue;
            uint32_t q = mix32(hi) & (p->cap - 1);
            __builtin_prefetch(&p->keys[q]);
            __builtin_prefetch(&p->vals[(size_t)q * m->stride]);
        }
    }
    for (int k = 0; k < n; k++) {
        const double *v = pair_get(m, row, cols[k]);
        if (!v) continue;
        for (int f = 0; f < REC_PF_N; f++)
            if (m->slot[f] >= 0) out[k * REC_PF_N + f] = v[m->slot[f]];
    }
}

static void r_item_stats(void *ctx, const uint32_t *items, int n, double *out) {
    rec_mem_t *m = ctx;
    for (int k = 0; k < n; k++)
        for (int f = 0; f < REC_IS_N; f++)
            out[k * REC_IS_N + f] = items[k] < m->ni ? m->items[items[k]].st[f] : 0.0;
}

static void r_user_norms(void *ctx, const uint32_t *users, int n, double *out) {
    rec_mem_t *m = ctx;
    for (int k = 0; k < n; k++) out[k] = users[k] < m->nu ? m->users[users[k]].n2 : 0.0;
}

static void r_user_dots(void *ctx, uint32_t u, const uint32_t *others, int n, double *out) {
    rec_mem_t *m = ctx;
    for (int k = 0; k < n; k++) {
        uint32_t a = u, b = others[k];
        if (m->dots_once && a > b) {
            a = others[k];
            b = u;
        }
        const double *v = a < m->nu ? map_get(&m->users[a].dots, b, 1) : NULL;
        out[k] = v ? v[0] : 0.0;
    }
}

static int r_consumers(void *ctx, uint32_t i, rec_cons_t *out, int cap) {
    rec_mem_t *m = ctx;
    if (i >= m->ni) return 0;
    int n = m->items[i].ncons < cap ? m->items[i].ncons : cap;
    if (n > 0) memcpy(out, m->items[i].cons, (size_t)n * sizeof *out);
    return n;
}

static int r_item_topk(void *ctx, uint32_t i, rec_scored_t *out, int cap) {
    rec_mem_t *m = ctx;
    return i < m->ni ? topk_read(&m->items[i].topk, out, cap) : 0;
}

static int r_item_topk_any(void *ctx, uint32_t i, rec_scored_t *out, int cap) {
    rec_mem_t *m = ctx;
    return i < m->ni ? topk_read_any(&m->items[i].topk, out, cap) : 0;
}

static void r_item_topk_head(void *ctx, uint32_t i, int k, float *kth, float *pos_sum) {
    rec_mem_t *m = ctx;
    if (i < m->ni) {
        topk_head(&m->items[i].topk, k, kth, pos_sum);
    } else {
        *kth = -INFINITY;
        *pos_sum = 0;
    }
}

static int r_user_topk(void *ctx, uint32_t u, rec_scored_t *out, int cap) {
    rec_mem_t *m = ctx;
    return u < m->nu ? topk_read(&m->users[u].topk, out, cap) : 0;
}

static const float *r_features(void *ctx, uint32_t i) {
    rec_mem_t *m = ctx;
    if (i >= m->ni || m->items[i].cat_row < 0) return NULL;
    return m->cat + (size_t)m->items[i].cat_row * REC_FEAT_DIM;
}

static int r_popular(void *ctx, rec_scored_t *out, int cap) {
    rec_mem_t *m = ctx;
    if (m->pop_dirty && pop_rebuild(m) < 0) return 0;
    int n = (int)m->npop < cap ? (int)m->npop : cap;
    if (n > 0) memcpy(out, m->pop, (size_t)n * sizeof *out);
    return n;
}

static int r_catalogue(void *ctx, const float **feat, const uint32_t **ids, size_t *n) {
    rec_mem_t *m = ctx;
    *feat = m->cat;
    *ids = m->cat_ids;
    *n = m->ncat;
    return 0;
}

static uint64_t r_catalogue_version(void *ctx) {
    return ((rec_mem_t *)ctx)->cat_version;
}

static float r_sentiment(void *ctx, uint32_t i) {
    rec_mem_t *m = ctx;
    return i < m->nsent ? m->sent[i] : 0.0f;
}

static uint32_t r_n_items(void *ctx) {
    return ((rec_mem_t *)ctx)->ni;
}

rec_reader_t rec_mem_reader(rec_mem_t *m) {
    rec_reader_t r = {
        .ctx = m,
        .event_seen = r_event_seen,
        .history = r_history,
        .history_view = r_history_view,
        .pairs = r_pairs,
        .item_stats = r_item_stats,
        .user_norms = r_user_norms,
        .user_dots = r_user_dots,
        .consumers = r_consumers,
        .item_topk = r_item_topk,
        .item_topk_head = r_item_topk_head,
        .item_topk_any = r_item_topk_any,
        .user_topk = r_user_topk,
        .features = r_features,
        .popular = r_popular,
        .catalogue = r_catalogue,
        .catalogue_version = r_catalogue_version,
        .n_items = r_n_items,
        .sentiment = r_sentiment,
    };
    return r;
}

/* Offers j to i's list with the batch similarity of the counters fij, fji. */
static int rebuild_offer(rec_mem_t *m, uint32_t i, uint32_t j, const double *fij,
                         const double *fji) {
    double s = rec_similarity(m->cfg.sim, fij, fji, m->items[i].st, m->items[j].st);
    if (m->cfg.shrink > 0) {
        double n = m->cfg.sim == REC_SIM_PEARSON ? fij[REC_PF_RN] : fij[REC_PF_C];
        if (m->cfg.sim == REC_SIM_COSINE && fij[REC_PF_C] > 0) n = fij[REC_PF_C];
        s *= n / (n + m->cfg.shrink);
    }
    return topk_set(&m->items[i].topk, m->cfg.item_k, j, (float)s);
}

int rec_mem_rebuild_item_topk(rec_mem_t *m) {
    double fij[REC_PF_N], fji[REC_PF_N];
    for (uint32_t i = 0; i < m->ni; i++) topk_clear(&m->items[i].topk);
    for (uint32_t i = 0; i < m->ni; i++) {
        const u32map_t *p = &m->items[i].pairs;
        for (uint32_t q = 0; q < p->cap; q++) {
            uint32_t j = p->keys[q];
            if (j == EMPTY || j >= m->ni) continue;
            const double *v = p->vals + (size_t)q * m->stride;
            /* Kept once: this entry is both orders' (every field symmetric). */
            const double *w = m->pairs_once ? v : map_get(&m->items[j].pairs, i, m->stride);
            for (int f = 0; f < REC_PF_N; f++) {
                fij[f] = m->slot[f] >= 0 ? v[m->slot[f]] : 0.0;
                fji[f] = m->slot[f] >= 0 && w ? w[m->slot[f]] : 0.0;
            }
            if (rebuild_offer(m, i, j, fij, fji) < 0) return -1;
            if (m->pairs_once && rebuild_offer(m, j, i, fji, fij) < 0) return -1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Dictionary                                                          */

struct rec_dict {
    char **names;
    uint32_t n, capn;
    uint32_t *slots; /* id + 1, 0 empty */
    uint32_t caps;
};

rec_dict_t *rec_dict_new(void) {
    return calloc(1, sizeof(rec_dict_t));
}

void rec_dict_destroy(rec_dict_t *d) {
    if (!d) return;
    for (uint32_t k = 0; k < d->n; k++) free(d->names[k]);
    free(d->names);
    free(d->slots);
    free(d);
}

static int dict_eq(const char *a, const char *s, size_t len) {
    return strncmp(a, s, len) == 0 && a[len] == '\0';
}

uint32_t rec_dict_find(const rec_dict_t *d, const char *s, size_t len) {
    if (!d->caps) return UINT32_MAX;
    uint32_t mask = d->caps - 1;
    for (uint32_t p = (uint32_t)rec_hash64(s, len) & mask;; p = (p + 1) & mask) {
        if (!d->slots[p]) return UINT32_MAX;
        if (dict_eq(d->names[d->slots[p] - 1], s, len)) return d->slots[p] - 1;
    }
}

uint32_t rec_dict_intern(rec_dict_t *d, const char *s, size_t len) {
    uint32_t id = rec_dict_find(d, s, len);
    if (id != UINT32_MAX) return id;
    if ((d->n + 1) * 2 > d->caps) {
        uint32_t caps = d->caps ? d->caps * 2 : 1024;
        uint32_t *slots = calloc(caps, sizeof *slots);
        if (!slots) return UINT32_MAX;
        for (uint32_t k = 0; k < d->n; k++) {
            uint32_t p = (uint32_t)rec_hash64(d->names[k], strlen(d->names[k])) & (caps - 1);
            while (slots[p]) p = (p + 1) & (caps - 1);
            slots[p] = k + 1;
        }
        free(d->slots);
        d->slots = slots;
        d->caps = caps;
    }
    if (d->n == d->capn) {
        uint32_t cap = d->capn ? d->capn * 2 : 1024;
        char **names = realloc(d->names, (size_t)cap * sizeof *names);
        if (!names) return UINT32_MAX;
        d->names = names;
        d->capn = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy) return UINT32_MAX;
    memcpy(copy, s, len);
    copy[len] = '\0';
    d->names[d->n] = copy;
    uint32_t p = (uint32_t)rec_hash64(s, len) & (d->caps - 1);
    while (d->slots[p]) p = (p + 1) & (d->caps - 1);
    d->slots[p] = d->n + 1;
    return d->n++;
}

uint32_t rec_dict_size(const rec_dict_t *d) {
    return d->n;
}
const char *rec_dict_name(const rec_dict_t *d, uint32_t id) {
    return id < d->n ? d->names[id] : NULL;
}

/* ------------------------------------------------------------------ */
/* Snapshot                                                            */

uint32_t rec_mem_user_count(const rec_mem_t *m) {
    return m->nu;
}

uint32_t rec_mem_item_count(const rec_mem_t *m) {
    return m->ni;
}

#define SNAP_MAGIC "RMEM"
/* Version 1: pair and dot counters in both rows (rec_mem_new_rowwise's
 * layout, and every state's before 2026-11-29); 2: kept once (rec_mem_new). */
#define SNAP_VERSION_ROWWISE 1u
#define SNAP_VERSION_ONCE 2u
#define SNAP_BYTE_ORDER 0x01020304u

static int buf_put(rec_buf_t *b, const void *p, size_t n) {
    if (b->cap - b->len < n) {
        size_t cap = b->cap ? b->cap : 1 << 16;
        while (cap - b->len < n) {
            if (cap > SIZE_MAX / 2) return -1;
            cap *= 2;
        }
        unsigned char *d = realloc(b->data, cap);
        if (!d) return -1;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

#define PUT(b, v)                                                                                  \
    do {                                                                                           \
        if (buf_put((b), &(v), sizeof(v)) < 0) goto oom;                                           \
    } while (0)

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* The keys of map m, sorted, into *keys (grown as needed). */
static int map_sorted_keys(const u32map_t *m, uint32_t **keys, uint32_t *cap) {
    if (m->n > *cap) {
        uint32_t *k = realloc(*keys, (size_t)m->n * sizeof *k);
        if (!k) return -1;
        *keys = k;
        *cap = m->n;
    }
    uint32_t n = 0;
    for (uint32_t q = 0; q < m->cap; q++)
        if (m->keys[q] != EMPTY) (*keys)[n++] = m->keys[q];
    if (n > 1) qsort(*keys, n, sizeof **keys, cmp_u32);
    return 0;
}

static int put_map(rec_buf_t *b, const u32map_t *m, int stride, uint32_t **keys, uint32_t *cap) {
    if (map_sorted_keys(m, keys, cap) < 0) return -1;
    uint32_t n = m->n;
    if (buf_put(b, &n, sizeof n) < 0) return -1;
    for (uint32_t k = 0; k < n; k++) {
        uint32_t key = (*keys)[k];
        if (buf_put(b, &key, sizeof key) < 0 ||
            buf_put(b, map_get(m, key, stride), (size_t)stride * sizeof(double)) < 0)
            return -1;
    }
    return 0;
}

/* Best first, whatever order the list holds its entries in. */
static int put_topk(rec_buf_t *b, const topk_t *t) {
    rec_scored_t tmp[512], *s = tmp;
    int32_t n = t->n;
    if (n > 512 && !(s = malloc((size_t)n * sizeof *s))) return -1;
    for (int x = 0; x < n; x++) {
        s[x].id = t->ids[x];
        s[x].score = t->sc[x];
    }
    qsort(s, (size_t)n, sizeof *s, cmp_scored);
    int rc = buf_put(b, &n, sizeof n);
    for (int x = 0; rc == 0 && x < n; x++)
        if (buf_put(b, &s[x].id, sizeof s[x].id) < 0 ||
            buf_put(b, &s[x].score, sizeof s[x].score) < 0)
            rc = -1;
    if (s != tmp) free(s);
    return rc;
}

/* The settings besides the caps that change what processing writes: a
 * state replayed under others would not be the one its log describes. */
#define SNAP_N_SETTINGS (8 + REC_EV_N)
static const char *const snap_setting_names[SNAP_N_SETTINGS] = {
    "similarity",          "history.evict",     "refresh_topk",          "half.life",
    "decay.epoch",         "iuf.beta",          "refresh_ratio",         "shrink",
    "event weight view",   "event weight play", "event weight progress", "event weight complete",
    "event weight rating", "event weight like", "event weight dislike"};

static void snap_settings(const rec_config_t *c, double out[SNAP_N_SETTINGS]) {
    double v[8] = {(double)c->sim,           (double)c->evict_weakest, (double)c->refresh_topk,
                   (double)c->half_life_ms,  (double)c->epoch_ms,      (double)c->iuf_beta,
                   (double)c->refresh_ratio, (double)c->shrink};
    memcpy(out, v, sizeof v);
    for (int e = 0; e < REC_EV_N; e++) out[8 + e] = c->weight[e];
}

int rec_mem_save(const rec_mem_t *m, rec_buf_t *out) {
    const rec_config_t *c = &m->cfg;
    uint32_t version = m->dots_once ? SNAP_VERSION_ONCE : SNAP_VERSION_ROWWISE;
    uint32_t order = SNAP_BYTE_ORDER;
    int32_t caps[6] = {c->hist_cap, c->seen_cap, c->cons_cap, c->item_k, c->user_k, m->stride};
    uint32_t *keys = NULL, kcap = 0;
    if (buf_put(out, SNAP_MAGIC, 4) < 0) goto oom;
    PUT(out, version);
    PUT(out, order);
    double settings[SNAP_N_SETTINGS];
    snap_settings(c, settings);
    PUT(out, caps);
    PUT(out, m->slot);
    PUT(out, settings);
    PUT(out, m->nu);
    PUT(out, m->ni);
    for (uint32_t u = 0; u < m->nu; u++) {
        const muser_t *us = &m->users[u];
        int32_t nh = us->nh, nseen = us->nseen, head = us->seen_head;
        PUT(out, nh);
        for (int x = 0; x < nh; x++) {
            const rec_hist_t *h = &us->hist[x];
            PUT(out, h->item);
            PUT(out, h->rating);
            PUT(out, h->a);
            PUT(out, h->t_first);
            PUT(out, h->t_rated);
            PUT(out, h->t_last);
        }
        PUT(out, nseen);
        PUT(out, head);
        if (nseen > 0 && buf_put(out, us->seen, (size_t)nseen * sizeof *us->seen) < 0) goto oom;
        PUT(out, us->n2);
        if (put_map(out, &us->dots, 1, &keys, &kcap) < 0 || put_topk(out, &us->topk) < 0) goto oom;
    }
    for (uint32_t i = 0; i < m->ni; i++) {
        const mitem_t *it = &m->items[i];
        int32_t nc = it->ncons;
        PUT(out, it->st);
        if (put_map(out, &it->pairs, m->stride, &keys, &kcap) < 0) goto oom;
        PUT(out, nc);
        for (int x = 0; x < nc; x++) {
            PUT(out, it->cons[x].user);
            PUT(out, it->cons[x].a);
            PUT(out, it->cons[x].t);
        }
        if (put_topk(out, &it->topk) < 0) goto oom;
    }
    free(keys);
    return 0;
oom:
    free(keys);
    return -1;
}

/* A bounds-checked reader over the snapshot bytes. */
typedef struct snap_in {
    const unsigned char *p, *end;
    int bad;
} snap_in_t;

static int take(snap_in_t *in, void *dst, size_t n) {
    if (in->bad || (size_t)(in->end - in->p) < n) {
        in->bad = 1;
        return -1;
    }
    memcpy(dst, in->p, n);
    in->p += n;
    return 0;
}

#define TAKE(in, v)                                                                                \
    do {                                                                                           \
        if (take((in), &(v), sizeof(v)) < 0) goto truncated;                                       \
    } while (0)

/* Entries of n * each bytes must fit in what is left: checked before any
 * allocation, so a corrupt count cannot ask for gigabytes. */
static int fits(const snap_in_t *in, uint64_t n, size_t each) {
    return n <= (uint64_t)(in->end - in->p) / each;
}

/* Keys are ascending, and above `floor` when the map holds each pair once
 * (its owner's id; -1 none): a key at or below it would never be read. */
static int load_map(snap_in_t *in, u32map_t *m, int stride, int64_t floor) {
    uint32_t n;
    if (take(in, &n, sizeof n) < 0 || !fits(in, n, 4 + (size_t)stride * 8)) return -1;
    uint32_t last = 0;
    for (uint32_t k = 0; k < n; k++) {
        uint32_t key;
        if (take(in, &key, sizeof key) < 0 || key == EMPTY || (k > 0 && key <= last) ||
            (int64_t)key <= floor)
            return -1;
        last = key;
        double *v = map_put(m, key, stride);
        if (!v || take(in, v, (size_t)stride * sizeof *v) < 0) return -1;
    }
    return 0;
}

static int load_topk(snap_in_t *in, topk_t *t, int k, uint32_t id_limit) {
    int32_t n;
    if (take(in, &n, sizeof n) < 0 || n < 0 || n > k || !fits(in, (uint64_t)n, 8)) return -1;
    for (int x = 0; x < n; x++) {
        uint32_t id;
        float sc;
        if (take(in, &id, sizeof id) < 0 || take(in, &sc, sizeof sc) < 0 || id >= id_limit ||
            sc != sc)
            return -1;
        if (topk_set(t, k, id, sc) < 0) return -1;
    }
    return 0;
}

rec_mem_t *rec_mem_load(const rec_config_t *cfg, const void *data, size_t len, char *errstr,
                        size_t errstr_size) {
    snap_in_t in = {data, (const unsigned char *)data + len, 0};
    char magic[4];
    uint32_t version, order, nu, ni;
    if (len < sizeof magic + sizeof version + sizeof order) {
        snprintf(errstr, errstr_size, "snapshot truncated at byte %zu of %zu", len, len);
        return NULL;
    }
    take(&in, magic, sizeof magic);
    take(&in, &version, sizeof version);
    take(&in, &order, sizeof order);
    if (memcmp(magic, SNAP_MAGIC, 4) != 0) {
        snprintf(errstr, errstr_size, "not a recommend state snapshot (bad magic)");
        return NULL;
    }
    if ((version != SNAP_VERSION_ONCE && version != SNAP_VERSION_ROWWISE) ||
        order != SNAP_BYTE_ORDER) {
        snprintf(errstr, errstr_size, "snapshot version %u / byte order %#x not supported", version,
                 order);
        return NULL;
    }
    rec_mem_t *m = mem_new(cfg, version == SNAP_VERSION_ONCE);
    if (!m) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    const rec_config_t *c = &m->cfg;
    int32_t caps[6];
    int slot[REC_PF_N];
    TAKE(&in, caps);
    TAKE(&in, slot);
    int32_t want[6] = {c->hist_cap, c->seen_cap, c->cons_cap, c->item_k, c->user_k, m->stride};
    if (memcmp(caps, want, sizeof want) != 0 || memcmp(slot, m->slot, sizeof slot) != 0) {
        snprintf(errstr, errstr_size,
                 "the state was built with other settings (history.cap %d, seen.cap %d, "
                 "consumers.cap %d, item.k %d, user.k %d, %d pair fields; these are %d, %d, %d, "
                 "%d, %d, %d)",
                 caps[0], caps[1], caps[2], caps[3], caps[4], caps[5], want[0], want[1], want[2],
                 want[3], want[4], want[5]);
        goto fail;
    }
    double settings[SNAP_N_SETTINGS], mine[SNAP_N_SETTINGS];
    TAKE(&in, settings);
    snap_settings(c, mine);
    for (int k = 0; k < SNAP_N_SETTINGS; k++)
        if (memcmp(&settings[k], &mine[k], sizeof mine[k]) != 0) {
            snprintf(errstr, errstr_size,
                     "the state was built with other settings (%s %.17g; this worker has %.17g)",
                     snap_setting_names[k], settings[k], mine[k]);
            goto fail;
        }
    TAKE(&in, nu);
    TAKE(&in, ni);
    /* Each row takes at least 24 bytes: refuse counts the bytes cannot hold. */
    if (!fits(&in, (uint64_t)nu + ni, 24) || (nu && !user_at(m, nu - 1)) ||
        (ni && !item_at(m, ni - 1)))
        goto corrupt;
    for (uint32_t u = 0; u < nu; u++) {
        muser_t *us = &m->users[u];
        int32_t nh, nseen, head;
        TAKE(&in, nh);
        if (nh < 0 || nh > c->hist_cap + 1 || !fits(&in, (uint64_t)nh, 40)) goto corrupt;
        if (nh > 0 && !(us->hist = malloc(((size_t)c->hist_cap + 1) * sizeof *us->hist))) goto oom;
        for (int x = 0; x < nh; x++) {
            rec_hist_t *h = &us->hist[x];
            memset(h, 0, sizeof *h);
            TAKE(&in, h->item);
            TAKE(&in, h->rating);
            TAKE(&in, h->a);
            TAKE(&in, h->t_first);
            TAKE(&in, h->t_rated);
            TAKE(&in, h->t_last);
            /* Every event's item has a row (its statistics): a history
             * entry without one is corrupt, and would index past the
             * scoring buffers, which are sized by the rows. */
            if (h->item >= ni) goto corrupt;
        }
        us->nh = nh;
        TAKE(&in, nseen);
        TAKE(&in, head);
        if (nseen < 0 || nseen > c->seen_cap || head < 0 ||
            head >= (c->seen_cap > 0 ? c->seen_cap : 1) ||
            (nseen < c->seen_cap && head != nseen % (c->seen_cap > 0 ? c->seen_cap : 1)) ||
            !fits(&in, (uint64_t)nseen, 8))
            goto corrupt;
        if (nseen > 0) {
            if (!(us->seen = malloc((size_t)c->seen_cap * sizeof *us->seen))) goto oom;
            if (take(&in, us->seen, (size_t)nseen * sizeof *us->seen) < 0) goto truncated;
        }
        us->nseen = nseen;
        us->seen_head = head;
        TAKE(&in, us->n2);
        if (load_map(&in, &us->dots, 1, m->dots_once ? (int64_t)u : -1) < 0 ||
            load_topk(&in, &us->topk, c->user_k, nu) < 0)
            goto corrupt;
    }
    for (uint32_t i = 0; i < ni; i++) {
        mitem_t *it = &m->items[i];
        int32_t nc;
        TAKE(&in, it->st);
        uint32_t before = it->pairs.n;
        if (load_map(&in, &it->pairs, m->stride, m->pairs_once ? (int64_t)i : -1) < 0) goto corrupt;
        m->npairs += it->pairs.n - before;
        TAKE(&in, nc);
        if (nc < 0 || nc > c->cons_cap || !fits(&in, (uint64_t)nc, 20)) goto corrupt;
        if (nc > 0 && !(it->cons = malloc(((size_t)c->cons_cap + 1) * sizeof *it->cons))) goto oom;
        for (int x = 0; x < nc; x++) {
            TAKE(&in, it->cons[x].user);
            TAKE(&in, it->cons[x].a);
            TAKE(&in, it->cons[x].t);
            if (it->cons[x].user >= nu) goto corrupt;
        }
        it->ncons = nc;
        if (load_topk(&in, &it->topk, c->item_k, ni) < 0) goto corrupt;
    }
    if (in.p != in.end) goto corrupt;
    m->pop_dirty = 1;
    return m;
truncated:
    snprintf(errstr, errstr_size, "snapshot truncated at byte %zu of %zu",
             (size_t)(in.p - (const unsigned char *)data), len);
    goto fail;
corrupt:
    if (in.bad) goto truncated;
    snprintf(errstr, errstr_size, "snapshot corrupt near byte %zu of %zu",
             (size_t)(in.p - (const unsigned char *)data), len);
    goto fail;
oom:
    snprintf(errstr, errstr_size, "out of memory");
fail:
    rec_mem_destroy(m);
    return NULL;
}
