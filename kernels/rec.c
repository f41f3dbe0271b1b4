/* rec.c: incremental recommenders over the abstract state of rec.h. */
#include "kernels/rec.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Configuration and names                                             */

static const char *const ev_names[REC_EV_N] = {"view",   "play", "progress", "complete",
                                               "rating", "like", "dislike"};
static const char *const sim_names[REC_SIM_N] = {"cosine", "jaccard", "lift", "pearson", "count"};
static const char *const op_names[REC_OP_N] = {"seen_add", "hist_set",  "hist_del", "pair_add",
                                               "item_add", "user_add",  "udot_add", "cons_set",
                                               "cons_del", "itopk_set", "utopk_set"};

void rec_config_defaults(rec_config_t *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->weight[REC_EV_VIEW] = 0.5f;
    cfg->weight[REC_EV_PLAY] = 1.0f;
    cfg->weight[REC_EV_PROGRESS] = 2.0f; /* times the watch ratio */
    cfg->weight[REC_EV_COMPLETE] = 3.0f;
    cfg->weight[REC_EV_RATING] = 0.4f; /* times the rating */
    cfg->weight[REC_EV_LIKE] = 2.0f;
    cfg->weight[REC_EV_DISLIKE] = -2.0f;
    cfg->half_life_ms = 0;
    cfg->epoch_ms = 0;
    cfg->max_future_ms = 5 * 60 * 1000;
    cfg->hist_cap = 100;
    cfg->evict_weakest = 1;
    cfg->seen_cap = 256;
    cfg->cons_cap = 100;
    cfg->item_k = 200;
    cfg->user_k = 50;
    cfg->sim = REC_SIM_COSINE;
    cfg->pair_fields = 0;
    cfg->refresh_topk = 1;
    cfg->src_weight[0] = 1.0f;
    cfg->src_weight[1] = 0.5f;
    cfg->src_weight[2] = 0.05f;
    cfg->src_weight[3] = 0.05f;
    cfg->pop_candidates = 200;
    cfg->shrink = 0.0f;
    cfg->item_score_k = 30;
    cfg->refresh_ratio = 0.05f;
    cfg->item_norm = REC_NORM_SOURCE;
    cfg->sim_power = 2.0f;
    cfg->aff_power = 1.0f;
    cfg->asym_alpha = 0.4f;
    cfg->iuf_beta = 0.4f;
    cfg->user_sim_power = 3.0f;
    cfg->user_aff_power = 0.3f;
    cfg->poster_weight = 0.5f;
    cfg->sentiment_weight = 0.1f;
    cfg->sentiment_prior_count = 2.0f;
}

unsigned rec_config_fields(const rec_config_t *cfg) {
    if (cfg->pair_fields) return cfg->pair_fields;
    switch (cfg->sim) {
    case REC_SIM_COSINE:
        /* Shrinkage counts co-consumers: C as well (without it every
         * shrunk similarity was 0). */
        return REC_PFM(REC_PF_D) | (cfg->shrink > 0 ? REC_PFM(REC_PF_C) : 0u);
    case REC_SIM_PEARSON:
        return REC_PFM(REC_PF_RN) | REC_PFM(REC_PF_RD) | REC_PFM(REC_PF_RS) | REC_PFM(REC_PF_RQ);
    default:
        return REC_PFM(REC_PF_C);
    }
}

const char *rec_sim_name(rec_sim_t s) {
    return (unsigned)s < REC_SIM_N ? sim_names[s] : "?";
}
int rec_sim_parse(const char *name, rec_sim_t *out) {
    for (int i = 0; i < REC_SIM_N; i++)
        if (strcmp(name, sim_names[i]) == 0) {
            *out = (rec_sim_t)i;
            return 0;
        }
    return -1;
}
const char *rec_event_type_name(rec_event_type_t t) {
    return (unsigned)t < REC_EV_N ? ev_names[t] : "?";
}
int rec_event_type_parse(const char *name, rec_event_type_t *out) {
    for (int i = 0; i < REC_EV_N; i++)
        if (strcmp(name, ev_names[i]) == 0) {
            *out = (rec_event_type_t)i;
            return 0;
        }
    return -1;
}
const char *rec_op_name(rec_op_t op) {
    return (unsigned)op < REC_OP_N ? op_names[op] : "?";
}

uint64_t rec_hash64(const char *s, size_t len) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a, then a final mix */
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

/* ------------------------------------------------------------------ */
/* Events                                                              */

#define REC_MAX_ID 256

static int check_id(const char *what, const char *s, char *reason, size_t n) {
    if (!s || !*s) {
        snprintf(reason, n, "empty %s", what);
        return -1;
    }
    if (strlen(s) > REC_MAX_ID) {
        snprintf(reason, n, "%s longer than %d bytes", what, REC_MAX_ID);
        return -1;
    }
    return 0;
}

int rec_event_check(const rec_config_t *cfg, const rec_event_t *ev, int64_t now_ms, char *reason,
                    size_t n) {
    if (check_id("event_id", ev->event_id, reason, n) < 0) return -1;
    if (check_id("user_id", ev->user_id, reason, n) < 0) return -1;
    if (check_id("item_id", ev->item_id, reason, n) < 0) return -1;
    if ((unsigned)ev->type >= REC_EV_N) {
        snprintf(reason, n, "unknown event type %d", (int)ev->type);
        return -1;
    }
    if (ev->ts_ms <= 0) {
        snprintf(reason, n, "missing or non-positive timestamp %lld", (long long)ev->ts_ms);
        return -1;
    }
    if (ev->ts_ms > now_ms + cfg->max_future_ms) {
        snprintf(reason, n, "timestamp %lld is %lld ms in the future", (long long)ev->ts_ms,
                 (long long)(ev->ts_ms - now_ms));
        return -1;
    }
    if (!isfinite(ev->watch_seconds) || ev->watch_seconds < 0) {
        snprintf(reason, n, "watch_seconds %g out of range", ev->watch_seconds);
        return -1;
    }
    if (!isfinite(ev->duration_seconds) || ev->duration_seconds < 0) {
        snprintf(reason, n, "duration_seconds %g out of range", ev->duration_seconds);
        return -1;
    }
    if (ev->type == REC_EV_RATING) {
        if (!ev->has_rating) {
            snprintf(reason, n, "rating event without a rating");
            return -1;
        }
        if (!isfinite(ev->rating) || ev->rating < 0.5 || ev->rating > 5.0) {
            snprintf(reason, n, "rating %g outside [0.5, 5]", ev->rating);
            return -1;
        }
    }
    return 0;
}

double rec_event_weight(const rec_config_t *cfg, const rec_event_t *ev) {
    double w = cfg->weight[ev->type];
    if (ev->type == REC_EV_PROGRESS) {
        if (ev->duration_seconds > 0) {
            double r = ev->watch_seconds / ev->duration_seconds;
            w *= r < 0 ? 0 : r > 1 ? 1 : r;
        } else {
            w = cfg->weight[REC_EV_PLAY];
        }
    } else if (ev->type == REC_EV_RATING) {
        w *= ev->rating;
    }
    return w;
}

static double decay_g(const rec_config_t *cfg, int64_t ts) {
    if (cfg->half_life_ms <= 0) return 1.0;
    return exp2((double)(ts - cfg->epoch_ms) / (double)cfg->half_life_ms);
}

/* ------------------------------------------------------------------ */
/* Deltas                                                              */

void rec_deltas_free(rec_deltas_t *ds) {
    free(ds->d);
    ds->d = NULL;
    ds->n = ds->cap = 0;
}

static rec_delta_t *push(rec_deltas_t *ds, rec_op_t op, uint32_t a, uint32_t b) {
    if (ds->n == ds->cap) {
        size_t cap = ds->cap ? ds->cap * 2 : 1024;
        rec_delta_t *d = realloc(ds->d, cap * sizeof *d);
        if (!d) return NULL;
        ds->d = d;
        ds->cap = cap;
    }
    rec_delta_t *d = &ds->d[ds->n++];
    /* Every field but hist, which only REC_OP_HIST_SET reads and sets
     * whole: half the record, written ~400 times per event. */
    d->op = (uint8_t)op;
    d->f = 0;
    d->a = a;
    d->b = b;
    d->v = 0;
    d->t = 0;
    d->key = 0;
    return d;
}

/* ------------------------------------------------------------------ */
/* Work space                                                          */

struct rec_work {
    int hcap, kcap, ccap, lcap;
    rec_hist_t *hist;     /* hcap + 1 */
    rec_hist_t *hist2;    /* hcap + 1, a neighbour's history */
    uint32_t *ids;        /* hcap + kcap + 1 */
    uint8_t *chg;         /* hcap + 1: the pair's counters changed */
    double *fij, *fji;    /* (hcap + kcap) * REC_PF_N */
    double *st;           /* (hcap + kcap + 1) * REC_IS_N */
    rec_scored_t *topk;   /* max(kcap, lcap, pop) */
    int *heap;            /* kcap: indexes of topk, the event item's full list, worst first */
    rec_cons_t *cons;     /* ccap */
    uint32_t *uids;       /* ccap + lcap + 1 */
    double *dots, *norms; /* ccap + lcap + 1 */
    /* Scoring, sized to the catalogue. */
    uint32_t ncap;
    float *acc[4];
    uint8_t *src, *ex;
    uint32_t *touched;
    uint32_t ntouched;
    float prof[REC_FEAT_DIM];
    float *cscore;
    size_t cscore_cap;
    /* Item CF credits waiting for their candidate's threshold. */
    float *thr;     /* ncap: the candidate's item_score_k-th score */
    float *csum;    /* ncap: 1 / the candidate's neighbourhood mass (or 1) */
    uint8_t *cmark; /* ncap: candidate seen in this request */
    /* ncap: 1 + an event item's list member's index in topk, KPOS_DONE
     * set once it is re-scored; 0 for the rest. */
    uint32_t *kpos;
    uint32_t *cands; /* ncap: the distinct candidates */
    struct cf_credit {
        uint32_t j;
        float as, s;
    } * cb;
    size_t ncb, cbcap;
    /* A sparse copy of the catalogue block by column (each column's rows,
     * ascending, and values), valid while the reader's catalogue_version,
     * the block and its row count are those it was made from. By column:
     * scoring then skips the features the user's profile lacks, and its
     * adds into different rows are independent, where a row's dot product
     * was one chain of dependent adds. */
    uint32_t csc_start[REC_FEAT_DIM + 1];
    uint32_t *csc_row;
    float *csc_val;
    size_t csc_n, csc_nzcap;
    const float *csc_of;
    uint64_t csc_version;
    int csc_ok;
};

rec_work_t *rec_work_new(const rec_config_t *cfg) {
    rec_work_t *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->hcap = cfg->hist_cap > 0 ? cfg->hist_cap : 1;
    w->kcap = cfg->item_k > 0 ? cfg->item_k : 1;
    w->ccap = cfg->cons_cap > 0 ? cfg->cons_cap : 1;
    w->lcap = cfg->user_k > 0 ? cfg->user_k : 1;
    size_t nr = (size_t)w->hcap + w->kcap + 1;
    size_t nu = (size_t)w->ccap + w->lcap + 1;
    size_t nt = (size_t)(w->kcap > w->lcap ? w->kcap : w->lcap);
    if (nt < (size_t)cfg->pop_candidates + w->hcap) nt = (size_t)cfg->pop_candidates + w->hcap;
    w->hist = calloc((size_t)w->hcap + 1, sizeof *w->hist);
    w->hist2 = calloc((size_t)w->hcap + 1, sizeof *w->hist2);
    w->ids = calloc(nr, sizeof *w->ids);
    w->chg = calloc(nr, 1);
    w->fij = calloc(nr * REC_PF_N, sizeof *w->fij);
    w->fji = calloc(nr * REC_PF_N, sizeof *w->fji);
    w->st = calloc(nr * REC_IS_N, sizeof *w->st);
    w->topk = calloc(nt, sizeof *w->topk);
    w->heap = calloc((size_t)w->kcap, sizeof *w->heap);
    w->cons = calloc((size_t)w->ccap, sizeof *w->cons);
    w->uids = calloc(nu, sizeof *w->uids);
    w->dots = calloc(nu, sizeof *w->dots);
    w->norms = calloc(nu, sizeof *w->norms);
    if (!w->hist || !w->hist2 || !w->ids || !w->chg || !w->fij || !w->fji || !w->st || !w->topk ||
        !w->heap || !w->cons || !w->uids || !w->dots || !w->norms) {
        rec_work_destroy(w);
        return NULL;
    }
    return w;
}

void rec_work_destroy(rec_work_t *w) {
    if (!w) return;
    free(w->hist);
    free(w->hist2);
    free(w->ids);
    free(w->chg);
    free(w->fij);
    free(w->fji);
    free(w->st);
    free(w->topk);
    free(w->heap);
    free(w->cons);
    free(w->uids);
    free(w->dots);
    free(w->norms);
    for (int s = 0; s < 4; s++) free(w->acc[s]);
    free(w->src);
    free(w->ex);
    free(w->touched);
    free(w->cscore);
    free(w->thr);
    free(w->csum);
    free(w->cmark);
    free(w->kpos);
    free(w->cands);
    free(w->cb);
    free(w->csc_row);
    free(w->csc_val);
    free(w);
}

/* Brings w's sparse copy of the catalogue block F (n rows) up to version.
 * 0, or -1 out of memory (the caller scores the dense block). */
static int csc_sync(rec_work_t *w, const float *F, size_t n, uint64_t version) {
    if (w->csc_ok && w->csc_of == F && w->csc_n == n && w->csc_version == version) return 0;
    w->csc_ok = 0;
    if (n > UINT32_MAX) return -1;
    uint32_t count[REC_FEAT_DIM] = {0};
    size_t nz = 0;
    for (size_t r = 0; r < n; r++)
        for (int c = 0; c < REC_FEAT_DIM; c++)
            if (F[r * REC_FEAT_DIM + c] != 0.0f) {
                count[c]++;
                nz++;
            }
    if (nz > UINT32_MAX) return -1;
    if (nz > w->csc_nzcap || !w->csc_row) {
        size_t cap = nz ? nz : 1;
        uint32_t *rows = realloc(w->csc_row, cap * sizeof *rows);
        if (rows) w->csc_row = rows;
        float *v = realloc(w->csc_val, cap * sizeof *v);
        if (v) w->csc_val = v;
        if (!rows || !v) return -1;
        w->csc_nzcap = cap;
    }
    uint32_t next[REC_FEAT_DIM];
    w->csc_start[0] = 0;
    for (int c = 0; c < REC_FEAT_DIM; c++) {
        next[c] = w->csc_start[c];
        w->csc_start[c + 1] = w->csc_start[c] + count[c];
    }
    for (size_t r = 0; r < n; r++)
        for (int c = 0; c < REC_FEAT_DIM; c++) {
            const float v = F[r * REC_FEAT_DIM + c];
            if (v != 0.0f) {
                w->csc_row[next[c]] = (uint32_t)r;
                w->csc_val[next[c]++] = v;
            }
        }
    w->csc_of = F;
    w->csc_n = n;
    w->csc_version = version;
    w->csc_ok = 1;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Similarity                                                          */

double rec_similarity(rec_sim_t sim, const double *fij, const double *fji, const double *si,
                      const double *sj) {
    double den;
    switch (sim) {
    case REC_SIM_COSINE:
        den = si[REC_IS_N2] * sj[REC_IS_N2];
        return den > 0 ? fij[REC_PF_D] / sqrt(den) : 0.0;
    case REC_SIM_JACCARD:
        den = si[REC_IS_C] + sj[REC_IS_C] - fij[REC_PF_C];
        return den > 0 ? fij[REC_PF_C] / den : 0.0;
    case REC_SIM_LIFT:
        den = si[REC_IS_C] * sj[REC_IS_C];
        return den > 0 ? fij[REC_PF_C] / den : 0.0;
    case REC_SIM_PEARSON: {
        double n = fij[REC_PF_RN];
        if (n <= 0) return 0.0;
        double si_ = fij[REC_PF_RS], sj_ = fji[REC_PF_RS];
        double num = fij[REC_PF_RD] - si_ * sj_ / n;
        double vi = fij[REC_PF_RQ] - si_ * si_ / n, vj = fji[REC_PF_RQ] - sj_ * sj_ / n;
        /* Relative threshold: constant ratings leave rounding noise. */
        if (vi <= 1e-9 * fij[REC_PF_RQ] || vj <= 1e-9 * fji[REC_PF_RQ]) return 0.0;
        return num / sqrt(vi * vj);
    }
    case REC_SIM_COUNT:
        return fij[REC_PF_C];
    default:
        return 0.0;
    }
}

static double sim_of(const rec_config_t *cfg, const double *fij, const double *fji,
                     const double *si, const double *sj) {
    double s = rec_similarity(cfg->sim, fij, fji, si, sj);
    if (cfg->shrink > 0) {
        double n = cfg->sim == REC_SIM_PEARSON ? fij[REC_PF_RN] : fij[REC_PF_C];
        if (cfg->sim == REC_SIM_COSINE) n = fij[REC_PF_C] > 0 ? fij[REC_PF_C] : n;
        s *= n / (n + cfg->shrink);
    }
    return s;
}

/* ------------------------------------------------------------------ */
/* The incremental update                                              */

#define PUSH(op, a, b)                                                                             \
    do {                                                                                           \
        if (!(d = push(out, (op), (a), (b)))) goto oom;                                            \
    } while (0)

/* Has a row normaliser moved from old to now across a point of the grid
 * (1 + r)^n (r > 0), or at all (r <= 0)? Rows are re-scored at those points
 * only: between two of them every similarity of the row is within a factor
 * (1 + r) of its value at the last re-score, and a popular item's row is
 * not rewritten for every one of its events. */
static int norm_moved(double old, double now, float r) {
    if (old == now) return 0;
    if (r <= 0 || !(old > 0) || !(now > 0)) return 1;
    const double l = log1p((double)r);
    return floor(log(old) / l) != floor(log(now) / l);
}

static int work_size(rec_work_t *w, uint32_t n);

/* The order of a top-K list ("best", rec.h), on the scores as stored. */
static inline int topk_better(float sa, uint32_t ia, float sb, uint32_t ib) {
    return sa > sb || (sa == sb && ia > ib);
}

#define KPOS_DONE 0x80000000u

/* heap[0..n) indexes e as a binary heap with the worst entry (topk_better
 * order) at its root; the entry at heap[x] may have got better. */
static void worst_heap_down(const rec_scored_t *e, int *heap, int n, int x) {
    const int at = heap[x];
    for (;;) {
        int c = 2 * x + 1;
        if (c >= n) break;
        if (c + 1 < n &&
            topk_better(e[heap[c]].score, e[heap[c]].id, e[heap[c + 1]].score, e[heap[c + 1]].id))
            c++;
        if (!topk_better(e[at].score, e[at].id, e[heap[c]].score, e[heap[c]].id)) break;
        heap[x] = heap[c];
        x = c;
    }
    heap[x] = at;
}

static int in_ids(const uint32_t *ids, int n, uint32_t x) {
    for (int k = 0; k < n; k++)
        if (ids[k] == x) return 1;
    return 0;
}

int rec_process_event(const rec_config_t *cfg, const rec_reader_t *rd, rec_work_t *w,
                      const rec_event_t *ev, rec_deltas_t *out, char *reason, size_t rn) {
    const unsigned pf = rec_config_fields(cfg);
    const uint32_t u = ev->user, i = ev->item;
    const int64_t ts = ev->ts_ms;
    const size_t mark = out->n;
    rec_delta_t *d;
    void *cx = rd->ctx;

    uint64_t h = ev->event_hash ? ev->event_hash : rec_hash64(ev->event_id, strlen(ev->event_id));
    if (rd->event_seen(cx, u, h)) return 0;
    PUSH(REC_OP_SEEN_ADD, u, 0);
    d->key = h;
    d->t = ts;

    const double g = decay_g(cfg, ts);
    const double delta = rec_event_weight(cfg, ev) * g;

    /* The user's history and the event's entry in it. */
    int nh = rd->history(cx, u, w->hist, w->hcap + 1);
    int k = -1;
    for (int x = 0; x < nh; x++)
        if (w->hist[x].item == i) k = x;
    rec_hist_t e;
    if (k >= 0) {
        e = w->hist[k];
    } else {
        memset(&e, 0, sizeof e);
        e.item = i;
        e.t_first = ts;
    }
    const int is_new = k < 0;
    const double old_a = e.a, new_a = old_a + delta;
    const double old_r = e.rating;
    double new_r = old_r;
    if (ev->type == REC_EV_RATING) {
        new_r = ev->rating;
        if (old_r == 0) e.t_rated = ts;
    }
    e.a = new_a;
    e.rating = (float)new_r;
    if (ts > e.t_last) e.t_last = ts;
    /* The other items of the history, in w->hist[0..no). */
    if (k >= 0) w->hist[k] = w->hist[--nh];
    const int no = nh;
    for (int x = 0; x < no; x++) w->ids[x] = w->hist[x].item;

    /* Current counters of the touched pairs and items. */
    const int pearson = (pf & (REC_PFM(REC_PF_RS) | REC_PFM(REC_PF_RQ))) != 0;
    const int pairs_once = (out->once & REC_ONCE_PAIRS) != 0;
    rd->pairs(cx, i, w->ids, no, w->fij);
    if (pearson) {
        for (int x = 0; x < no; x++) rd->pairs(cx, w->ids[x], &i, 1, w->fji + x * REC_PF_N);
    } else {
        memcpy(w->fji, w->fij, (size_t)no * REC_PF_N * sizeof *w->fij);
    }
    double si[REC_IS_N];
    rd->item_stats(cx, &i, 1, si);
    rd->item_stats(cx, w->ids, no, w->st);

    /* Inverse user frequency: the cosine counters' increments (D, n2) are
     * weighted by (1 + the user's other history items)^-iuf_beta, known
     * when the event is applied. */
    const double wu = cfg->iuf_beta != 0 ? pow(1.0 + no, -(double)cfg->iuf_beta) : 1.0;
    /* Pair counters. */
    for (int x = 0; x < no; x++) {
        const rec_hist_t *o = &w->hist[x];
        const uint32_t j = o->item;
        double *fij = w->fij + x * REC_PF_N, *fji = w->fji + x * REC_PF_N;
        double add_ij[REC_PF_N] = {0}, add_ji[REC_PF_N] = {0};
        if (is_new) {
            double wp = decay_g(cfg, e.t_first > o->t_first ? e.t_first : o->t_first);
            add_ij[REC_PF_C] = add_ji[REC_PF_C] = wp;
        }
        if (delta != 0 && o->a != 0) add_ij[REC_PF_D] = add_ji[REC_PF_D] = wu * delta * o->a;
        if (new_r > 0 && o->rating > 0 && new_r != old_r) {
            double wr = decay_g(cfg, e.t_rated > o->t_rated ? e.t_rated : o->t_rated);
            double rj = o->rating;
            if (old_r == 0) {
                add_ij[REC_PF_RN] = add_ji[REC_PF_RN] = wr;
                add_ij[REC_PF_RD] = add_ji[REC_PF_RD] = wr * new_r * rj;
                add_ij[REC_PF_RS] = wr * new_r;
                add_ji[REC_PF_RS] = wr * rj;
                add_ij[REC_PF_RQ] = wr * new_r * new_r;
                add_ji[REC_PF_RQ] = wr * rj * rj;
            } else {
                add_ij[REC_PF_RD] = add_ji[REC_PF_RD] = wr * (new_r - old_r) * rj;
                add_ij[REC_PF_RS] = wr * (new_r - old_r);
                add_ij[REC_PF_RQ] = wr * (new_r * new_r - old_r * old_r);
            }
        }
        unsigned changed = 0;
        for (int f = 0; f < REC_PF_N; f++) {
            if (!(pf & REC_PFM(f))) continue;
            if (pairs_once && f != REC_PF_RS && f != REC_PF_RQ) {
                if (add_ij[f] != 0) { /* symmetric: add_ji[f] is the same */
                    PUSH(REC_OP_PAIR_ADD, i < j ? i : j, i < j ? j : i);
                    d->f = (uint8_t)f;
                    d->v = add_ij[f];
                    fij[f] += add_ij[f];
                    fji[f] += add_ji[f];
                    changed = 1;
                }
                continue;
            }
            if (add_ij[f] != 0) {
                PUSH(REC_OP_PAIR_ADD, i, j);
                d->f = (uint8_t)f;
                d->v = add_ij[f];
                fij[f] += add_ij[f];
                changed = 1;
            }
            if (add_ji[f] != 0) {
                PUSH(REC_OP_PAIR_ADD, j, i);
                d->f = (uint8_t)f;
                d->v = add_ji[f];
                fji[f] += add_ji[f];
                changed = 1;
            }
        }
        /* Without Pearson's fields every add is symmetric, so fji still
         * mirrors fij (a copy here stalled on the stores just made). */
        w->chg[x] = (uint8_t)changed;
    }

    /* Item statistics. */
    double dst[REC_IS_N] = {0};
    if (is_new) dst[REC_IS_C] = g;
    dst[REC_IS_N2] = wu * (new_a * new_a - old_a * old_a);
    for (int f = 0; f < REC_IS_N; f++) {
        if (dst[f] == 0) continue;
        PUSH(REC_OP_ITEM_ADD, i, 0);
        d->f = (uint8_t)f;
        d->v = dst[f];
        si[f] += dst[f];
    }
    /* Does the row's normalisation depend on a statistic that changed
     * (by more than cfg.refresh_ratio since the last re-score)? */
    int row_changed = 0;
    switch (cfg->sim) {
    case REC_SIM_COSINE:
        row_changed = norm_moved(si[REC_IS_N2] - dst[REC_IS_N2], si[REC_IS_N2], cfg->refresh_ratio);
        break;
    case REC_SIM_JACCARD:
    case REC_SIM_LIFT:
        row_changed = norm_moved(si[REC_IS_C] - dst[REC_IS_C], si[REC_IS_C], cfg->refresh_ratio);
        break;
    default:
        break;
    }

    /* History: set the entry, evict the least recently used beyond the cap. */
    PUSH(REC_OP_HIST_SET, u, i);
    d->hist = e;
    if (is_new && no + 1 > cfg->hist_cap && no > 0) {
        int ev_x = 0;
        for (int x = 1; x < no; x++) {
            const rec_hist_t *a = &w->hist[x], *b = &w->hist[ev_x];
            if (cfg->evict_weakest && a->a != b->a) {
                if (a->a < b->a) ev_x = x;
            } else if (a->t_last < b->t_last || (a->t_last == b->t_last && a->item < b->item)) {
                ev_x = x;
            }
        }
        PUSH(REC_OP_HIST_DEL, u, w->hist[ev_x].item);
    }

    /* Item top-K. The event item's list is read and kept here as the store
     * will hold it after this event's writes (members re-scored first, then
     * new offers), so that an offer the store would reject at once (list
     * full, below its worst) is not written. A member is found through
     * w->kpos, which gets KPOS_DONE once the member is re-scored. */
    if (work_size(w, rd->n_items(cx)) < 0) goto oom;
    /* What follows depends on the list's members, not on their order. */
    int nk = rd->item_topk_any ? rd->item_topk_any(cx, i, w->topk, w->kcap)
                               : rd->item_topk(cx, i, w->topk, w->kcap);
    for (int y = 0; y < nk; y++)
        if (w->topk[y].id < w->ncap) w->kpos[w->topk[y].id] = (uint32_t)y + 1;
    int npend = 0;
    for (int x = 0; x < no; x++) {
        if (!w->chg[x] && !row_changed) continue;
        const uint32_t j = w->hist[x].item;
        double s =
            sim_of(cfg, w->fij + x * REC_PF_N, w->fji + x * REC_PF_N, si, w->st + x * REC_IS_N);
        PUSH(REC_OP_ITOPK_SET, j, i);
        d->v = s;
        if (j < w->ncap && w->kpos[j]) {
            PUSH(REC_OP_ITOPK_SET, i, j);
            d->v = s;
            w->topk[(w->kpos[j] & ~KPOS_DONE) - 1].score = (float)s;
            w->kpos[j] |= KPOS_DONE;
        } else {
            /* Offered below. The pair's counters are not needed any more:
             * keep its similarity in their first slot. */
            w->ids[npend] = (uint32_t)x;
            w->fij[(size_t)x * REC_PF_N] = s;
            npend++;
        }
    }
    if (cfg->refresh_topk && row_changed) {
        int nm = 0;
        uint32_t *mids = w->ids + no; /* after the pending offers */
        for (int y = 0; y < nk; y++) {
            uint32_t m = w->topk[y].id;
            if (m != i && !(m < w->ncap && (w->kpos[m] & KPOS_DONE))) mids[nm++] = m;
        }
        if (nm > 0) {
            double *fij = w->fij + (size_t)no * REC_PF_N, *fji = w->fji + (size_t)no * REC_PF_N;
            double *st = w->st + (size_t)no * REC_IS_N;
            rd->pairs(cx, i, mids, nm, fij);
            if (pearson) {
                for (int x = 0; x < nm; x++) rd->pairs(cx, mids[x], &i, 1, fji + x * REC_PF_N);
            } else {
                memcpy(fji, fij, (size_t)nm * REC_PF_N * sizeof *fij);
            }
            rd->item_stats(cx, mids, nm, st);
            for (int x = 0, y = 0; x < nm; x++, y++) {
                double s =
                    sim_of(cfg, fij + x * REC_PF_N, fji + x * REC_PF_N, si, st + x * REC_IS_N);
                PUSH(REC_OP_ITOPK_SET, i, mids[x]);
                d->v = s;
                PUSH(REC_OP_ITOPK_SET, mids[x], i);
                d->v = s;
                while (w->topk[y].id != mids[x]) y++; /* mids keep the list's order */
                w->topk[y].score = (float)s;
            }
        }
    }
    for (int y = 0; y < nk; y++)
        if (w->topk[y].id < w->ncap) w->kpos[w->topk[y].id] = 0;
    /* New offers to the event item's list: one that beats the worst entry
     * replaces it, as the store does; once the list is full its entries
     * are kept in a heap, worst first (a new item's list takes most of a
     * long history's offers, and a scan for the worst after each cost
     * more than the rest of the event). */
    int heaped = 0;
    for (int p = 0; p < npend; p++) {
        const int x = (int)w->ids[p];
        const uint32_t j = w->hist[x].item;
        const double s = w->fij[(size_t)x * REC_PF_N];
        const float sf = (float)s;
        int at;
        if (nk < w->kcap) {
            at = nk++;
        } else {
            if (!heaped) {
                for (int y = 0; y < nk; y++) w->heap[y] = y;
                for (int y = nk / 2 - 1; y >= 0; y--) worst_heap_down(w->topk, w->heap, nk, y);
                heaped = 1;
            }
            at = w->heap[0];
            if (!topk_better(sf, j, w->topk[at].score, w->topk[at].id)) continue;
        }
        w->topk[at].id = j;
        w->topk[at].score = sf;
        if (heaped) worst_heap_down(w->topk, w->heap, nk, 0);
        PUSH(REC_OP_ITOPK_SET, i, j);
        d->v = s;
    }

    /* User-based CF (Papagelis et al. 2005): dot products with the item's
     * other consumers, the user's norm, and their top-K. */
    const double dn2 = new_a * new_a - old_a * old_a; /* the user norm: not weighted */
    if (delta != 0 || is_new) {
        int nc = rd->consumers(cx, i, w->cons, w->ccap);
        int in_cons = -1, nv = 0;
        for (int x = 0; x < nc; x++) {
            if (w->cons[x].user == u) {
                in_cons = x;
                continue;
            }
            if (w->cons[x].a != 0) {
                w->uids[1 + nv] = w->cons[x].user;
                w->dots[1 + nv] = w->cons[x].a; /* a_vi for now */
                nv++;
            }
        }
        if (dn2 != 0) {
            PUSH(REC_OP_USER_ADD, u, 0);
            d->v = dn2;
        }
        if (delta != 0 && nv > 0) {
            double *dv = w->norms; /* scratch for the current dots */
            rd->user_dots(cx, u, w->uids + 1, nv, dv);
            for (int x = 0; x < nv; x++) {
                const double dd = delta * w->dots[1 + x];
                const uint32_t v = w->uids[1 + x];
                if (out->once & REC_ONCE_DOTS) {
                    PUSH(REC_OP_UDOT_ADD, u < v ? u : v, u < v ? v : u);
                    d->v = dd;
                } else {
                    PUSH(REC_OP_UDOT_ADD, u, v);
                    d->v = dd;
                    PUSH(REC_OP_UDOT_ADD, v, u);
                    d->v = dd;
                }
                w->dots[1 + x] = dv[x] + dd;
            }
        }
        /* Neighbours whose similarity changed: the touched users, plus the
         * user's current neighbours when its norm changed. */
        int nr = delta != 0 ? nv : 0;
        int norm_changed = dn2 != 0;
        if (norm_changed && cfg->refresh_ratio > 0) {
            double n_old;
            rd->user_norms(cx, &u, 1, &n_old);
            norm_changed = norm_moved(n_old, n_old + dn2, cfg->refresh_ratio);
        }
        if (cfg->refresh_topk && norm_changed) {
            int nk = rd->user_topk(cx, u, w->topk, w->lcap);
            int base = 1 + nr, nm = 0;
            for (int x = 0; x < nk; x++) {
                uint32_t v = w->topk[x].id;
                if (v == u || in_ids(w->uids + 1, nr, v)) continue;
                w->uids[base + nm++] = v;
            }
            if (nm > 0) rd->user_dots(cx, u, w->uids + base, nm, w->dots + base);
            nr += nm;
        }
        if (nr > 0) {
            w->uids[0] = u;
            rd->user_norms(cx, w->uids, nr + 1, w->norms);
            double nu = w->norms[0] + dn2;
            for (int x = 1; x <= nr; x++) {
                double den = nu * w->norms[x];
                double s = den > 0 ? w->dots[x] / sqrt(den) : 0.0;
                PUSH(REC_OP_UTOPK_SET, u, w->uids[x]);
                d->v = s;
                PUSH(REC_OP_UTOPK_SET, w->uids[x], u);
                d->v = s;
            }
        }
        if (is_new || in_cons >= 0) {
            PUSH(REC_OP_CONS_SET, i, u);
            d->v = new_a;
            d->t = in_cons >= 0 ? w->cons[in_cons].t : ts;
            if (in_cons < 0 && nc >= cfg->cons_cap && nc > 0) {
                int old = 0;
                for (int x = 1; x < nc; x++)
                    if (w->cons[x].t < w->cons[old].t ||
                        (w->cons[x].t == w->cons[old].t && w->cons[x].user < w->cons[old].user))
                        old = x;
                PUSH(REC_OP_CONS_DEL, i, w->cons[old].user);
            }
        }
    }
    return 1;
oom:
    out->n = mark;
    snprintf(reason, rn, "out of memory");
    return -1;
}

/* ------------------------------------------------------------------ */
/* Scoring                                                             */

static int work_size(rec_work_t *w, uint32_t n) {
    if (n <= w->ncap) return 0;
    uint32_t cap = w->ncap ? w->ncap : 1024;
    while (cap < n) cap *= 2;
    for (int s = 0; s < 4; s++) {
        float *a = realloc(w->acc[s], (size_t)cap * sizeof *a);
        if (!a) return -1;
        memset(a + w->ncap, 0, (size_t)(cap - w->ncap) * sizeof *a);
        w->acc[s] = a;
    }
    uint8_t *src = realloc(w->src, cap), *ex = realloc(w->ex, cap);
    if (src) w->src = src;
    if (ex) w->ex = ex;
    if (!src || !ex) return -1;
    memset(w->src + w->ncap, 0, cap - w->ncap);
    memset(w->ex + w->ncap, 0, cap - w->ncap);
    uint32_t *t = realloc(w->touched, (size_t)cap * sizeof *t);
    if (!t) return -1;
    w->touched = t;
    float *thr = realloc(w->thr, (size_t)cap * sizeof *thr);
    if (!thr) return -1;
    w->thr = thr;
    float *csum = realloc(w->csum, (size_t)cap * sizeof *csum);
    if (!csum) return -1;
    w->csum = csum;
    uint8_t *cm = realloc(w->cmark, cap);
    if (!cm) return -1;
    w->cmark = cm;
    memset(w->cmark + w->ncap, 0, cap - w->ncap);
    uint32_t *cands = realloc(w->cands, (size_t)cap * sizeof *cands);
    if (!cands) return -1;
    w->cands = cands;
    uint32_t *kpos = realloc(w->kpos, (size_t)cap * sizeof *kpos);
    if (!kpos) return -1;
    w->kpos = kpos;
    memset(w->kpos + w->ncap, 0, (size_t)(cap - w->ncap) * sizeof *kpos);
    w->ncap = cap;
    return 0;
}

static inline void credit(rec_work_t *w, int s, uint32_t c, float v) {
    if (c >= w->ncap || w->ex[c]) return;
    if (!w->src[c]) w->touched[w->ntouched++] = c;
    w->src[c] |= (uint8_t)(1u << s);
    w->acc[s][c] += v;
}

/* Min-heap on (score, id) for the top-N selection. */
static int rec_better(const rec_rec_t *a, const rec_rec_t *b) {
    return a->score > b->score || (a->score == b->score && a->item > b->item);
}
static void heap_down(rec_rec_t *h, int n, int x) {
    for (;;) {
        int l = 2 * x + 1, r = l + 1, m = x;
        if (l < n && rec_better(&h[m], &h[l])) m = l;
        if (r < n && rec_better(&h[m], &h[r])) m = r;
        if (m == x) return;
        rec_rec_t t = h[x];
        h[x] = h[m];
        h[m] = t;
        x = m;
    }
}
/* Offers r to the best n in out[0..nout), a min-heap once full. Returns
 * the new count. */
static int heap_offer(rec_rec_t *out, int nout, int n, rec_rec_t r) {
    if (nout < n) {
        out[nout++] = r;
        if (nout == n)
            for (int x = n / 2 - 1; x >= 0; x--) heap_down(out, n, x);
    } else if (n > 0 && rec_better(&r, &out[0])) {
        out[0] = r;
        heap_down(out, n, 0);
    }
    return nout;
}

static int cmp_rec(const void *a, const void *b) {
    return rec_better(a, b) ? -1 : rec_better(b, a) ? 1 : 0;
}

/* s^p for a vote, once per top-K entry read (tens of thousands per user):
 * the default p = 2 as a product, faster than powf and correctly rounded
 * (glibc's powf is within an ulp, not always the nearest float). */
static inline float pow_sim(float s, float p) {
    return p == 2.0f ? s * s : p == 1.0f ? s : powf(s, p);
}

int rec_recommend(const rec_config_t *cfg, const rec_reader_t *rd, rec_work_t *w, uint32_t user,
                  unsigned sources, const uint8_t *exclude, size_t n_exclude, rec_rec_t *out,
                  int n) {
    void *cx = rd->ctx;
    uint32_t ni = rd->n_items(cx);
    if (work_size(w, ni) < 0) return -1;
    w->ntouched = 0;
    int nh = rd->history(cx, user, w->hist, w->hcap + 1);
    for (int x = 0; x < nh; x++)
        if (w->hist[x].item < w->ncap) w->ex[w->hist[x].item] = 1;
    if (exclude) {
        size_t m = n_exclude < w->ncap ? n_exclude : w->ncap;
        for (size_t c = 0; c < m; c++) w->ex[c] |= exclude[c] ? 2 : 0;
    }

    /* Affinities are forward-decayed (huge or tiny in absolute terms): only
     * their ratios to the user's largest one matter. */
    double amax = 0;
    for (int x = 0; x < nh; x++)
        if (fabs(w->hist[x].a) > amax) amax = fabs(w->hist[x].a);
    const double ascale = amax > 0 ? 1.0 / amax : 0.0;
    if (sources & REC_SRC_ITEM_CF) {
        const int sk = cfg->item_score_k > 0 && cfg->item_score_k < w->kcap ? cfg->item_score_k : 0;
        /* Asymmetric cosine (Aiolli 2013): s_ij = D_ij / (n_j^(2 alpha) n_i^(2 - 2 alpha)),
         * i the history item, j the candidate, n = sqrt(n2): cosine times
         * (n_i / n_j)^(2 alpha - 1), so the vote s^p splits into a history
         * factor n_i^q and a candidate factor n_j^-q, q = (2 alpha - 1) p. */
        const double asym_q =
            cfg->asym_alpha != 0.5f ? (2.0 * cfg->asym_alpha - 1.0) * cfg->sim_power : 0.0;
        /* n2 is forward-decayed like the affinities: scaled by ascale^2 (a
         * factor common to both sides) it stays finite in a float. */
        const double a2scale = ascale * ascale;
        const int cand_f = cfg->pop_beta != 0 || asym_q != 0; /* candidate factors */
        uint32_t ncand = 0;
        w->ncb = 0;
        if (asym_q != 0) { /* the history side's n2, one read */
            for (int x = 0; x < nh; x++) w->ids[x] = w->hist[x].item;
            rd->item_stats(cx, w->ids, nh, w->st);
        }
        for (int x = 0; x < nh; x++) {
            float a = (float)(w->hist[x].a * ascale);
            if (a <= 0) continue;
            if (cfg->aff_power != 1.0f) a = powf(a, cfg->aff_power);
            if (asym_q != 0 && w->st[(size_t)x * REC_IS_N + REC_IS_N2] > 0)
                a *= (float)pow(w->st[(size_t)x * REC_IS_N + REC_IS_N2] * a2scale, 0.5 * asym_q);
            int nk = rd->item_topk(cx, w->hist[x].item, w->topk, w->kcap);
            if (cfg->item_norm & REC_NORM_SOURCE) {
                /* Divide by the history item's neighbourhood mass: an item
                 * similar to everything votes no louder than another. */
                int m = sk && sk < nk ? sk : nk;
                float rs = 0;
                for (int y = 0; y < m; y++)
                    if (w->topk[y].score > 0) rs += w->topk[y].score;
                if (rs > 0) a /= rs;
            }
            for (int y = 0; y < nk; y++) {
                const uint32_t j = w->topk[y].id;
                const float s = w->topk[y].score;
                if (s <= 0 || j >= w->ncap || w->ex[j]) continue;
                if (!sk && !cand_f) {
                    credit(w, 0, j, a * pow_sim(s, cfg->sim_power));
                    continue;
                }
                if (w->ncb == w->cbcap) {
                    size_t cap = w->cbcap ? w->cbcap * 2 : 4096;
                    struct cf_credit *cb = realloc(w->cb, cap * sizeof *cb);
                    if (!cb) goto oom;
                    w->cb = cb;
                    w->cbcap = cap;
                }
                w->cb[w->ncb].j = j;
                w->cb[w->ncb].as = a * pow_sim(s, cfg->sim_power);
                w->cb[w->ncb++].s = s;
                if (!w->cmark[j]) {
                    w->cmark[j] = 1;
                    w->cands[ncand++] = j;
                }
            }
        }
        /* Each candidate's threshold: its item_score_k-th neighbour. */
        for (uint32_t c = 0; c < ncand; c++) {
            const uint32_t j = w->cands[c];
            float cs = 0;
            w->cmark[j] = 0;
            if (sk && rd->item_topk_head) {
                rd->item_topk_head(cx, j, sk, &w->thr[j], &cs);
            } else {
                int nk = sk ? rd->item_topk(cx, j, w->topk, sk) : 0;
                w->thr[j] = sk && nk == sk ? w->topk[sk - 1].score : -INFINITY;
                for (int y = 0; y < nk; y++)
                    if (w->topk[y].score > 0) cs += w->topk[y].score;
            }
            if (!(cfg->item_norm & REC_NORM_TARGET)) cs = 0;
            w->csum[j] = cs > 0 ? 1.0f / cs : 1.0f;
        }
        /* Candidate factors from the item statistics, read in blocks of w->st. */
        if (cand_f) {
            const uint32_t blk = (uint32_t)w->hcap + (uint32_t)w->kcap + 1;
            for (uint32_t c0 = 0; c0 < ncand; c0 += blk) {
                const uint32_t nb = ncand - c0 < blk ? ncand - c0 : blk;
                rd->item_stats(cx, w->cands + c0, (int)nb, w->st);
                for (uint32_t c = 0; c < nb; c++) {
                    const double *stj = w->st + (size_t)c * REC_IS_N;
                    float *f = &w->csum[w->cands[c0 + c]];
                    if (cfg->pop_beta != 0 && stj[REC_IS_C] > 0)
                        *f *= (float)pow(stj[REC_IS_C], -cfg->pop_beta);
                    if (asym_q != 0 && stj[REC_IS_N2] > 0)
                        *f *= powf((float)(stj[REC_IS_N2] * a2scale), (float)(-0.5 * asym_q));
                }
            }
        }
        for (size_t y = 0; y < w->ncb; y++)
            if (w->cb[y].s >= w->thr[w->cb[y].j])
                credit(w, 0, w->cb[y].j, w->cb[y].as * w->csum[w->cb[y].j]);
        w->ncb = 0;
    }
    if (sources & REC_SRC_USER_CF) {
        int nk = rd->user_topk(cx, user, w->topk, w->lcap);
        rec_scored_t nb[256];
        if (nk > 256) nk = 256;
        memcpy(nb, w->topk, (size_t)nk * sizeof *nb);
        for (int y = 0; y < nk; y++) {
            if (nb[y].score <= 0) continue;
            int nv;
            const rec_hist_t *hv;
            if (rd->history_view) {
                hv = rd->history_view(cx, nb[y].id, &nv);
            } else {
                nv = rd->history(cx, nb[y].id, w->hist2, w->hcap + 1);
                hv = w->hist2;
            }
            const float sv =
                cfg->user_sim_power != 1.0f ? powf(nb[y].score, cfg->user_sim_power) : nb[y].score;
            double vmax = 0; /* the neighbour's affinities, relative to their largest */
            if (cfg->user_aff_power != 0)
                for (int x = 0; x < nv; x++)
                    if (hv[x].a > vmax) vmax = hv[x].a;
            for (int x = 0; x < nv; x++) {
                const uint32_t c = hv[x].item;
                /* What credit() would drop, before its powf. */
                if (!(hv[x].a > 0) || c >= w->ncap || w->ex[c]) continue;
                float v = sv;
                if (cfg->user_aff_power != 0)
                    v *= powf((float)(hv[x].a / vmax), cfg->user_aff_power);
                credit(w, 1, c, v);
            }
        }
    }
    if (sources & REC_SRC_POPULAR) {
        int cap = cfg->pop_candidates + nh;
        int np = rd->popular(cx, w->topk, cap);
        for (int y = 0; y < np; y++)
            if (w->topk[y].score > 0) credit(w, 3, w->topk[y].id, w->topk[y].score);
    }
    /* Content scores every catalogue row (most of them positive: items share
     * genres). Crediting each like the other sources' few thousand
     * candidates, then blending them, was a third of a recommendation's
     * cost; instead a row whose item another source credited joins it, and
     * the rest stay in cscore (0: not a candidate) for one dense pass after
     * the blend. Same candidates, same scores (catalogue ids are distinct). */
    size_t ncs = 0;
    const uint32_t *cids = NULL;
    float clo = INFINITY, chi = -INFINITY;
    if ((sources & REC_SRC_CONTENT) && nh > 0) {
        const float *F;
        const uint32_t *ids;
        size_t nc = 0;
        memset(w->prof, 0, sizeof w->prof);
        int any = 0;
        for (int x = 0; x < nh; x++) {
            const float *f = rd->features(cx, w->hist[x].item);
            if (!f) continue;
            cblas_saxpy(REC_FEAT_DIM, (float)(w->hist[x].a * ascale), f, 1, w->prof, 1);
            any = 1;
        }
        if (any && rd->catalogue(cx, &F, &ids, &nc) == 0 && nc > 0) {
            if (nc > w->cscore_cap) {
                float *c = realloc(w->cscore, nc * sizeof *c);
                if (!c) goto oom;
                w->cscore = c;
                w->cscore_cap = nc;
            }
            float *cs = w->cscore;
            if (rd->catalogue_version && csc_sync(w, F, nc, rd->catalogue_version(cx)) == 0) {
                /* Column by column, in the order a row's dot product adds
                 * them (a skipped column would add a zero): the same sums. */
                memset(cs, 0, nc * sizeof *cs);
                for (int f = 0; f < REC_FEAT_DIM; f++) {
                    const float p = w->prof[f];
                    if (p == 0) continue;
                    for (uint32_t q = w->csc_start[f]; q < w->csc_start[f + 1]; q++)
                        cs[w->csc_row[q]] += w->csc_val[q] * p;
                }
            } else {
                cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)nc, REC_FEAT_DIM, 1.0f, F,
                            REC_FEAT_DIM, w->prof, 1, 0.0f, cs, 1);
            }
            for (size_t r = 0; r < nc; r++) {
                const float v = cs[r];
                const uint32_t c = ids[r];
                if (!(v > 0) || c >= w->ncap || w->ex[c]) {
                    cs[r] = 0;
                    continue;
                }
                if (v < clo) clo = v;
                if (v > chi) chi = v;
                if (w->src[c]) {
                    credit(w, 2, c, v);
                    cs[r] = 0;
                }
            }
            ncs = nc;
            cids = ids;
        }
    }

    /* Normalise and blend. */
    float lo[4], hi[4];
    int used = 0;
    for (int s = 0; s < 4; s++) {
        lo[s] = INFINITY;
        hi[s] = -INFINITY;
    }
    for (uint32_t t = 0; t < w->ntouched; t++) {
        uint32_t c = w->touched[t];
        for (int s = 0; s < 4; s++)
            if (w->src[c] & (1u << s)) {
                float v = w->acc[s][c];
                if (v < lo[s]) lo[s] = v;
                if (v > hi[s]) hi[s] = v;
                used |= 1 << s;
            }
    }
    if (clo <= chi) { /* the content candidates: the credited ones and those in cscore */
        lo[2] = clo;
        hi[2] = chi;
        used |= 4;
    }
    int single = used == 1 || used == 2 || used == 4 || used == 8;
    const int prior = rd->sentiment && cfg->sentiment_weight != 0;
    int nout = 0;
    for (uint32_t t = 0; t < w->ntouched; t++) {
        uint32_t c = w->touched[t];
        float score = 0;
        for (int s = 0; s < 4; s++) {
            if (!(w->src[c] & (1u << s))) continue;
            float v = w->acc[s][c];
            if (single) {
                score += v;
            } else {
                float span = hi[s] - lo[s];
                score += cfg->src_weight[s] * (span > 0 ? (v - lo[s]) / span : 1.0f);
            }
        }
        if (prior) score *= 1.0f + cfg->sentiment_weight * rd->sentiment(cx, c);
        rec_rec_t r = {c, score, w->src[c]};
        nout = heap_offer(out, nout, n, r);
        w->src[c] = 0;
        for (int s = 0; s < 4; s++) w->acc[s][c] = 0;
    }
    /* Candidates of content alone. */
    for (size_t r = 0; r < ncs; r++) {
        const float v = w->cscore[r];
        if (!(v > 0)) continue;
        const uint32_t c = cids[r];
        float score = 0;
        if (single) {
            score += v;
        } else {
            float span = hi[2] - lo[2];
            score += cfg->src_weight[2] * (span > 0 ? (v - lo[2]) / span : 1.0f);
        }
        if (prior) score *= 1.0f + cfg->sentiment_weight * rd->sentiment(cx, c);
        rec_rec_t x = {c, score, REC_SRC_CONTENT};
        nout = heap_offer(out, nout, n, x);
    }
    qsort(out, (size_t)nout, sizeof *out, cmp_rec);
    /* Clear the exclusion marks. */
    for (int x = 0; x < nh; x++)
        if (w->hist[x].item < w->ncap) w->ex[w->hist[x].item] = 0;
    if (exclude) {
        size_t m = n_exclude < w->ncap ? n_exclude : w->ncap;
        for (size_t c = 0; c < m; c++) w->ex[c] = 0;
    }
    w->ntouched = 0;
    return nout;
oom:
    for (uint32_t t = 0; t < w->ntouched; t++) {
        uint32_t c = w->touched[t];
        w->src[c] = 0;
        for (int s = 0; s < 4; s++) w->acc[s][c] = 0;
    }
    memset(w->ex, 0, w->ncap);
    memset(w->cmark, 0, w->ncap);
    w->ntouched = 0;
    return -1;
}

/* ------------------------------------------------------------------ */
/* Content features                                                    */

static const char *const known_genres[] = {
    "Action", "Adventure",   "Animation", "Children", "Comedy",
    "Crime",  "Documentary", "Drama",     "Fantasy",  "Film-Noir",
    "Horror", "IMAX",        "Musical",   "Mystery",  "Romance",
    "Sci-Fi", "Thriller",    "War",       "Western",  "(no genres listed)"};
#define N_KNOWN_GENRES 20

static void l2_scale(float *v, int n, float scale) {
    float s = 0;
    for (int k = 0; k < n; k++) s += v[k] * v[k];
    if (s <= 0) return;
    s = scale / sqrtf(s);
    for (int k = 0; k < n; k++) v[k] *= s;
}

void rec_item_features(const char *const *genres, int n_genres, const char *const *tags, int n_tags,
                       int year, float out[REC_FEAT_DIM]) {
    memset(out, 0, REC_FEAT_DIM * sizeof *out);
    for (int g = 0; g < n_genres; g++) {
        if (!genres[g] || !*genres[g]) continue;
        int slot = -1;
        for (int k = 0; k < N_KNOWN_GENRES; k++)
            if (strcasecmp(genres[g], known_genres[k]) == 0) slot = k;
        if (slot < 0)
            slot = N_KNOWN_GENRES + (int)(rec_hash64(genres[g], strlen(genres[g])) %
                                          (REC_FEAT_GENRE - N_KNOWN_GENRES));
        out[slot] = 1.0f;
    }
    for (int t = 0; t < n_tags; t++) {
        if (!tags[t] || !*tags[t]) continue;
        char low[128];
        size_t n = strlen(tags[t]);
        if (n >= sizeof low) n = sizeof low - 1;
        for (size_t c = 0; c < n; c++) {
            char ch = tags[t][c];
            low[c] = (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
        }
        out[REC_FEAT_GENRE + rec_hash64(low, n) % REC_FEAT_TAGS] += 1.0f;
    }
    if (year > 0) {
        int b = year < 1930 ? 0 : 1 + (year - 1930) / 5;
        if (b >= REC_FEAT_YEAR) b = REC_FEAT_YEAR - 1;
        out[REC_FEAT_GENRE + REC_FEAT_TAGS + b] = 1.0f;
    }
    l2_scale(out, REC_FEAT_GENRE, 1.0f);
    l2_scale(out + REC_FEAT_GENRE, REC_FEAT_TAGS, 0.5f);
    l2_scale(out + REC_FEAT_GENRE + REC_FEAT_TAGS, REC_FEAT_YEAR, 0.5f);
}

_Static_assert(REC_FEAT_POSTER <= 64, "one 64-bit hash gives the signs of an input");

void rec_features_poster(float feat[REC_FEAT_DIM], const float *emb, size_t dim, float weight) {
    float *p = feat + REC_FEAT_META;
    memset(p, 0, REC_FEAT_POSTER * sizeof *p);
    if (!emb || dim == 0 || !(weight != 0) || !isfinite(weight)) return;
    for (size_t c = 0; c < dim; c++) {
        const float x = emb[c];
        if (!isfinite(x)) {
            memset(p, 0, REC_FEAT_POSTER * sizeof *p);
            return;
        }
        if (x == 0) continue;
        /* 64 random sign bits per input dimension, from its index alone:
         * bit r is the sign of the projection onto output r. */
        char le[8];
        for (int b = 0; b < 8; b++) le[b] = (char)((uint64_t)(c + 1) >> (8 * b));
        const uint64_t bits = rec_hash64(le, sizeof le);
        for (int r = 0; r < REC_FEAT_POSTER; r++) p[r] += (bits >> r) & 1 ? x : -x;
    }
    l2_scale(p, REC_FEAT_POSTER, weight);
}

float rec_sentiment_mean(double sum, double count, double prior_count) {
    if (!(count > 0) || !isfinite(sum) || !isfinite(count)) return 0.0f;
    double den = count + (prior_count > 0 && isfinite(prior_count) ? prior_count : 0.0);
    double m = sum / den;
    return (float)(m < -1 ? -1 : m > 1 ? 1 : m);
}

/* ------------------------------------------------------------------ */
/* Metrics                                                             */

static int has_id(const uint32_t *sorted, int n, uint32_t x) {
    int lo = 0, hi = n;
    while (lo < hi) {
        int m = (lo + hi) / 2;
        if (sorted[m] < x)
            lo = m + 1;
        else
            hi = m;
    }
    return lo < n && sorted[lo] == x;
}

void rec_metrics_user(const uint32_t *ranked, int k, const uint32_t *relevant, int n_rel,
                      rec_metrics_t *m) {
    memset(m, 0, sizeof *m);
    if (k <= 0 || n_rel <= 0) return;
    int hits = 0;
    double dcg = 0, ap = 0, idcg = 0;
    for (int r = 0; r < k; r++) {
        if (!has_id(relevant, n_rel, ranked[r])) continue;
        hits++;
        dcg += 1.0 / log2(r + 2.0);
        ap += (double)hits / (r + 1.0);
    }
    int ideal = n_rel < k ? n_rel : k;
    for (int r = 0; r < ideal; r++) idcg += 1.0 / log2(r + 2.0);
    m->precision = (double)hits / k;
    m->recall = (double)hits / n_rel;
    m->ndcg = idcg > 0 ? dcg / idcg : 0;
    m->map = ap / n_rel;
    m->hit = hits > 0;
}
