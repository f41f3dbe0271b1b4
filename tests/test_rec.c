/* test_rec.c: the incremental recommenders of kernels/rec.h against
 * from-scratch batch computations, top-K maintenance, metrics, dedupe and
 * bad input. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kernels/rec.h"

#define NU 14
#define NI 12
#define NEV 400
#define T0 1700000000000LL
#define DAY 86400000LL

typedef struct stream {
    rec_event_t ev[NEV];
    char ids[NEV][16];
} stream_t;

static uint64_t rng(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* A random stream over NU users and NI items, every event type, strictly
 * increasing timestamps over about three days. */
static void make_stream(stream_t *st, uint64_t seed, int positive_only) {
    uint64_t s = seed;
    int64_t ts = T0;
    for (int k = 0; k < NEV; k++) {
        rec_event_t *e = &st->ev[k];
        memset(e, 0, sizeof *e);
        snprintf(st->ids[k], sizeof st->ids[k], "e%d", k);
        e->event_id = st->ids[k];
        e->user_id = "u";
        e->item_id = "i";
        e->user = (uint32_t)(rng(&s) % NU);
        /* Skewed items so that some pairs are frequent. */
        uint32_t a = (uint32_t)(rng(&s) % NI), b = (uint32_t)(rng(&s) % NI);
        e->item = a < b ? a : b;
        int t = (int)(rng(&s) % (positive_only ? REC_EV_DISLIKE : REC_EV_N));
        e->type = (rec_event_type_t)t;
        ts += 1 + (int64_t)(rng(&s) % (DAY / 120));
        e->ts_ms = ts;
        if (e->type == REC_EV_PROGRESS) {
            e->duration_seconds = 100;
            e->watch_seconds = (double)(rng(&s) % 150);
        }
        if (e->type == REC_EV_RATING) {
            e->has_rating = 1;
            e->rating = 0.5 * (double)(1 + rng(&s) % 10);
        }
    }
}

static void big_config(rec_config_t *cfg, int64_t half_life) {
    rec_config_defaults(cfg);
    cfg->hist_cap = 1000;
    cfg->cons_cap = 1000;
    cfg->item_k = 1000;
    cfg->user_k = 1000;
    cfg->half_life_ms = half_life;
    cfg->epoch_ms = T0;
    cfg->pair_fields = (1u << REC_PF_N) - 1;
}

/* Replays the stream into a new state; returns it. */
static rec_mem_t *replay(const rec_config_t *cfg, const stream_t *st, int n) {
    rec_mem_t *m = rec_mem_new(cfg);
    rec_work_t *w = rec_work_new(cfg);
    assert_non_null(m);
    assert_non_null(w);
    rec_reader_t rd = rec_mem_reader(m);
    rec_deltas_t ds = {0};
    char reason[128];
    for (int k = 0; k < n; k++) {
        assert_int_equal(rec_event_check(cfg, &st->ev[k], st->ev[k].ts_ms, reason, sizeof reason),
                         0);
        ds.n = 0;
        assert_int_equal(rec_process_event(cfg, &rd, w, &st->ev[k], &ds, reason, sizeof reason), 1);
        assert_int_equal(rec_mem_apply(m, ds.d, ds.n), 0);
    }
    rec_deltas_free(&ds);
    rec_work_destroy(w);
    return m;
}

/* The batch answer, computed from the event log alone. */
typedef struct batch {
    double a[NU][NI], r[NU][NI];
    int64_t tf[NU][NI], tr[NU][NI];
    int has[NU][NI];
    double f[NI][NI][REC_PF_N];
    double st[NI][REC_IS_N];
    double udot[NU][NU], un2[NU];
} batch_t;

static double g_at(const rec_config_t *cfg, int64_t t) {
    return cfg->half_life_ms > 0 ? exp2((double)(t - cfg->epoch_ms) / cfg->half_life_ms) : 1.0;
}

static void batch_compute(const rec_config_t *cfg, const stream_t *st, batch_t *b) {
    memset(b, 0, sizeof *b);
    for (int k = 0; k < NEV; k++) {
        const rec_event_t *e = &st->ev[k];
        uint32_t u = e->user, i = e->item;
        if (!b->has[u][i]) b->tf[u][i] = e->ts_ms;
        b->has[u][i] = 1;
        b->a[u][i] += rec_event_weight(cfg, e) * g_at(cfg, e->ts_ms);
        if (e->type == REC_EV_RATING) {
            if (b->r[u][i] == 0) b->tr[u][i] = e->ts_ms;
            b->r[u][i] = e->rating;
        }
    }
    for (int u = 0; u < NU; u++)
        for (int i = 0; i < NI; i++) {
            if (!b->has[u][i]) continue;
            b->st[i][REC_IS_C] += g_at(cfg, b->tf[u][i]);
            b->st[i][REC_IS_N2] += b->a[u][i] * b->a[u][i];
            b->un2[u] += b->a[u][i] * b->a[u][i];
            for (int j = 0; j < NI; j++) {
                if (j == i || !b->has[u][j]) continue;
                double *f = b->f[i][j];
                int64_t t = b->tf[u][i] > b->tf[u][j] ? b->tf[u][i] : b->tf[u][j];
                f[REC_PF_C] += g_at(cfg, t);
                f[REC_PF_D] += b->a[u][i] * b->a[u][j];
                if (b->r[u][i] > 0 && b->r[u][j] > 0) {
                    int64_t tr = b->tr[u][i] > b->tr[u][j] ? b->tr[u][i] : b->tr[u][j];
                    double w = g_at(cfg, tr);
                    f[REC_PF_RN] += w;
                    f[REC_PF_RD] += w * b->r[u][i] * b->r[u][j];
                    f[REC_PF_RS] += w * b->r[u][i];
                    f[REC_PF_RQ] += w * b->r[u][i] * b->r[u][i];
                }
            }
            for (int v = 0; v < NU; v++)
                if (v != u && b->has[v][i]) b->udot[u][v] += b->a[u][i] * b->a[v][i];
        }
    if (cfg->iuf_beta != 0) {
        /* Inverse user frequency: D and n2 are sums over events, each event
         * e (user u, item i, weight delta) adding w_e delta a_uj(t_e) to D_ij
         * and D_ji for every other item j u had consumed before it, and
         * w_e ((a_ui + delta)^2 - a_ui^2) to n2_i, with w_e = (1 + the number
         * of those items)^-iuf_beta. Replayed here over dense arrays. */
        static double acur[NU][NI];
        static int hcur[NU][NI];
        memset(acur, 0, sizeof acur);
        memset(hcur, 0, sizeof hcur);
        for (int i = 0; i < NI; i++) {
            b->st[i][REC_IS_N2] = 0;
            for (int j = 0; j < NI; j++) b->f[i][j][REC_PF_D] = 0;
        }
        for (int k = 0; k < NEV; k++) {
            const rec_event_t *e = &st->ev[k];
            int u = (int)e->user, i = (int)e->item, n = 0;
            for (int j = 0; j < NI; j++) n += j != i && hcur[u][j];
            const double w = pow(1.0 + n, -(double)cfg->iuf_beta);
            const double delta = rec_event_weight(cfg, e) * g_at(cfg, e->ts_ms);
            for (int j = 0; j < NI; j++) {
                if (j == i || !hcur[u][j]) continue;
                b->f[i][j][REC_PF_D] += w * delta * acur[u][j];
                b->f[j][i][REC_PF_D] += w * delta * acur[u][j];
            }
            const double na = acur[u][i] + delta;
            b->st[i][REC_IS_N2] += w * (na * na - acur[u][i] * acur[u][i]);
            acur[u][i] = na;
            hcur[u][i] = 1;
        }
    }
}

/* The similarities written out directly from their definitions (weighted
 * means for Pearson), independently of rec_similarity's formulas. */
static double batch_sim(const rec_config_t *cfg, const stream_t *st, const batch_t *b, int i, int j,
                        rec_sim_t sim) {
    (void)st;
    double c = b->f[i][j][REC_PF_C];
    switch (sim) {
    case REC_SIM_COSINE: {
        if (cfg->iuf_beta != 0) { /* over the weighted sums above */
            double den = b->st[i][REC_IS_N2] * b->st[j][REC_IS_N2];
            return den > 0 ? b->f[i][j][REC_PF_D] / sqrt(den) : 0;
        }
        double dot = 0, ni = 0, nj = 0;
        for (int u = 0; u < NU; u++) {
            dot += b->a[u][i] * b->a[u][j];
            ni += b->a[u][i] * b->a[u][i];
            nj += b->a[u][j] * b->a[u][j];
        }
        return ni * nj > 0 ? dot / sqrt(ni * nj) : 0;
    }
    case REC_SIM_JACCARD:
        return c / (b->st[i][REC_IS_C] + b->st[j][REC_IS_C] - c);
    case REC_SIM_LIFT:
        return c / (b->st[i][REC_IS_C] * b->st[j][REC_IS_C]);
    case REC_SIM_COUNT:
        return c;
    case REC_SIM_PEARSON: {
        double W = 0, mi = 0, mj = 0;
        for (int u = 0; u < NU; u++) {
            if (!(b->r[u][i] > 0 && b->r[u][j] > 0)) continue;
            int64_t tr = b->tr[u][i] > b->tr[u][j] ? b->tr[u][i] : b->tr[u][j];
            double w = g_at(cfg, tr);
            W += w;
            mi += w * b->r[u][i];
            mj += w * b->r[u][j];
        }
        if (W <= 0) return 0;
        mi /= W;
        mj /= W;
        double num = 0, vi = 0, vj = 0;
        for (int u = 0; u < NU; u++) {
            if (!(b->r[u][i] > 0 && b->r[u][j] > 0)) continue;
            int64_t tr = b->tr[u][i] > b->tr[u][j] ? b->tr[u][i] : b->tr[u][j];
            double w = g_at(cfg, tr);
            num += w * (b->r[u][i] - mi) * (b->r[u][j] - mj);
            vi += w * (b->r[u][i] - mi) * (b->r[u][i] - mi);
            vj += w * (b->r[u][j] - mj) * (b->r[u][j] - mj);
        }
        if (vi <= 1e-9 * W || vj <= 1e-9 * W) return 0;
        return num / sqrt(vi * vj);
    }
    default:
        return 0;
    }
}

static void assert_close(double got, double want, double tol, const char *what, int i, int j) {
    double scale = fabs(want) > 1 ? fabs(want) : 1;
    if (fabs(got - want) > tol * scale) {
        print_error("%s(%d,%d): got %.12g want %.12g\n", what, i, j, got, want);
        fail();
    }
}

/* Every pair counter, item statistic, user dot and norm, and every
 * similarity measure equals the batch computation over the same events. */
static void check_incremental_equals_batch(int64_t half_life, float iuf_beta) {
    rec_config_t cfg;
    big_config(&cfg, half_life);
    cfg.iuf_beta = iuf_beta;
    stream_t *st = malloc(sizeof *st);
    batch_t *b = malloc(sizeof *b);
    assert_non_null(st);
    assert_non_null(b);
    make_stream(st, 0x9e3779b97f4a7c15ull + (uint64_t)half_life, 0);
    rec_mem_t *m = replay(&cfg, st, NEV);
    rec_reader_t rd = rec_mem_reader(m);
    batch_compute(&cfg, st, b);
    int checked_pearson = 0;
    for (uint32_t i = 0; i < NI; i++) {
        double si[REC_IS_N];
        rd.item_stats(rd.ctx, &i, 1, si);
        assert_close(si[REC_IS_C], b->st[i][REC_IS_C], 1e-9, "c", (int)i, 0);
        assert_close(si[REC_IS_N2], b->st[i][REC_IS_N2], 1e-9, "n2", (int)i, 0);
        for (uint32_t j = 0; j < NI; j++) {
            if (j == i) continue;
            double fij[REC_PF_N], fji[REC_PF_N], sj[REC_IS_N];
            rd.pairs(rd.ctx, i, &j, 1, fij);
            rd.pairs(rd.ctx, j, &i, 1, fji);
            rd.item_stats(rd.ctx, &j, 1, sj);
            for (int f = 0; f < REC_PF_N; f++)
                assert_close(fij[f], b->f[i][j][f], 1e-9, "pair", (int)i, (int)j);
            for (int s = 0; s < REC_SIM_N; s++) {
                if (b->f[i][j][REC_PF_C] <= 0) continue;
                double want = batch_sim(&cfg, st, b, (int)i, (int)j, (rec_sim_t)s);
                double got = rec_similarity((rec_sim_t)s, fij, fji, si, sj);
                assert_close(got, want, 1e-6, rec_sim_name((rec_sim_t)s), (int)i, (int)j);
                if (s == REC_SIM_PEARSON && want != 0) checked_pearson++;
            }
        }
    }
    assert_true(checked_pearson > 10);
    for (uint32_t u = 0; u < NU; u++) {
        double n2;
        rd.user_norms(rd.ctx, &u, 1, &n2);
        assert_close(n2, b->un2[u], 1e-9, "unorm", (int)u, 0);
        for (uint32_t v = 0; v < NU; v++) {
            if (v == u) continue;
            double dot;
            rd.user_dots(rd.ctx, u, &v, 1, &dot);
            assert_close(dot, b->udot[u][v], 1e-9, "udot", (int)u, (int)v);
        }
    }
    rec_mem_destroy(m);
    free(st);
    free(b);
}

static void test_incremental_equals_batch_no_decay(void **state) {
    (void)state;
    check_incremental_equals_batch(0, 0);
}

static void test_incremental_equals_batch_with_decay(void **state) {
    (void)state;
    check_incremental_equals_batch(DAY / 2, 0);
}

static void test_incremental_equals_batch_iuf(void **state) {
    (void)state;
    check_incremental_equals_batch(0, 0.4f);
    check_incremental_equals_batch(DAY / 2, 0.7f);
}

/* True top-K of row i by (score, id), from the state's full counters. */
static int true_topk(const rec_config_t *cfg, const rec_reader_t *rd, uint32_t i, int K,
                     rec_scored_t *out) {
    rec_scored_t all[NI];
    int n = 0;
    double si[REC_IS_N];
    rd->item_stats(rd->ctx, &i, 1, si);
    for (uint32_t j = 0; j < NI; j++) {
        if (j == i) continue;
        double fij[REC_PF_N], fji[REC_PF_N], sj[REC_IS_N];
        rd->pairs(rd->ctx, i, &j, 1, fij);
        if (fij[REC_PF_C] <= 0 && fij[REC_PF_D] == 0) continue;
        rd->pairs(rd->ctx, j, &i, 1, fji);
        rd->item_stats(rd->ctx, &j, 1, sj);
        all[n].id = j;
        all[n++].score = (float)rec_similarity(cfg->sim, fij, fji, si, sj);
    }
    /* selection sort, best first */
    for (int a = 0; a < n; a++)
        for (int c = a + 1; c < n; c++)
            if (all[c].score > all[a].score ||
                (all[c].score == all[a].score && all[c].id > all[a].id)) {
                rec_scored_t t = all[a];
                all[a] = all[c];
                all[c] = t;
            }
    if (n > K) n = K;
    memcpy(out, all, (size_t)n * sizeof *out);
    return n;
}

/* Raw co-occurrence only grows, and every pair that grows is offered to
 * both rows: the bounded lists are exactly the true top-K, after every
 * prefix of the stream, with decay off and on. */
static void test_topk_exact_for_monotone_counts(void **state) {
    (void)state;
    stream_t *st = malloc(sizeof *st);
    assert_non_null(st);
    make_stream(st, 42, 0);
    for (int decay = 0; decay < 2; decay++) {
        rec_config_t cfg;
        big_config(&cfg, decay ? DAY : 0);
        cfg.item_k = 3;
        cfg.sim = REC_SIM_COUNT;
        cfg.pair_fields = 0;
        for (int n = 50; n <= NEV; n += 175) {
            rec_mem_t *m = replay(&cfg, st, n);
            rec_reader_t rd = rec_mem_reader(m);
            for (uint32_t i = 0; i < NI; i++) {
                rec_scored_t got[8], want[8];
                int ng = rd.item_topk(rd.ctx, i, got, 8);
                int nw = true_topk(&cfg, &rd, i, 3, want);
                assert_int_equal(ng, nw);
                for (int x = 0; x < ng; x++) {
                    assert_int_equal(got[x].id, want[x].id);
                    assert_true(fabsf(got[x].score - want[x].score) <= 1e-5f * want[x].score);
                }
            }
            rec_mem_destroy(m);
        }
    }
    free(st);
}

/* The top-K list itself (an index from id to slot, entries re-sorted on
 * read) against a plain model of "ZADD, then keep the best k": random
 * offers from a small id range (updates, replacements, entries evicted and
 * offered again), scores from a few values (ties broken by id), reads
 * between offers at random, for a small and the default k. */
typedef struct ref_list {
    uint32_t id[256];
    float sc[256];
    int n;
} ref_list_t;

static int ref_better(float sa, uint32_t ia, float sb, uint32_t ib) {
    return sa > sb || (sa == sb && ia > ib);
}

static void ref_set(ref_list_t *r, int k, uint32_t id, float sc) {
    for (int x = 0; x < r->n; x++)
        if (r->id[x] == id) {
            r->sc[x] = sc;
            return;
        }
    if (r->n < k) {
        r->id[r->n] = id;
        r->sc[r->n++] = sc;
        return;
    }
    int w = 0;
    for (int x = 1; x < r->n; x++)
        if (ref_better(r->sc[w], r->id[w], r->sc[x], r->id[x])) w = x;
    if (ref_better(sc, id, r->sc[w], r->id[w])) {
        r->id[w] = id;
        r->sc[w] = sc;
    }
}

static int cmp_ref(const void *a, const void *b) {
    const rec_scored_t *x = a, *y = b;
    return ref_better(x->score, x->id, y->score, y->id)
               ? -1
               : ref_better(y->score, y->id, x->score, x->id);
}

/* got[0..n) holds exactly want[0..n), ids and scores, in order. */
static void assert_same_scored(const rec_scored_t *got, const rec_scored_t *want, int n) {
    for (int x = 0; x < n; x++) {
        assert_int_equal(got[x].id, want[x].id);
        assert_true(got[x].score == want[x].score);
    }
}

static void test_topk_list_matches_model(void **state) {
    (void)state;
    const int ks[2] = {5, 200};
    for (int kk = 0; kk < 2; kk++) {
        const int k = ks[kk];
        rec_config_t cfg;
        rec_config_defaults(&cfg);
        cfg.item_k = k;
        rec_mem_t *m = rec_mem_new(&cfg);
        assert_non_null(m);
        rec_reader_t rd = rec_mem_reader(m);
        ref_list_t *ref = calloc(3, sizeof *ref);
        rec_scored_t *got = malloc(256 * sizeof *got), *want = malloc(256 * sizeof *want);
        assert_non_null(ref);
        assert_non_null(got);
        assert_non_null(want);
        uint64_t s = 7 + (uint64_t)k;
        const uint32_t span = (uint32_t)k * 3; /* ids 0..span: most offers miss a full list */
        const int head_k = k / 2 + 1; /* item CF's usual question, cached between changes */
        for (int step = 0; step < 30000; step++) {
            uint32_t row = (uint32_t)(rng(&s) % 3), id = (uint32_t)(rng(&s) % span);
            float sc = (float)((int)(rng(&s) % 40) - 6) / 8.0f; /* ties, and some <= 0 */
            rec_delta_t d = {.op = REC_OP_ITOPK_SET, .a = row, .b = id, .v = sc};
            assert_int_equal(rec_mem_apply(m, &d, 1), 0);
            ref_set(&ref[row], k, id, sc);
            if (rng(&s) % 2 == 0) {
                /* The head (k-th score, sum of the positive ones) against the
                 * model's sorted list, asked often so that the answer
                 * cached by the list is kept through the changes after. */
                int hk = rng(&s) % 8 == 0 ? 1 + (int)(rng(&s) % (uint64_t)k) : head_k;
                int nw = ref[row].n;
                for (int x = 0; x < nw; x++)
                    want[x] = (rec_scored_t){.id = ref[row].id[x], .score = ref[row].sc[x]};
                qsort(want, (size_t)nw, sizeof *want, cmp_ref);
                float kth, sum, want_sum = 0;
                for (int x = 0; x < hk && x < nw; x++)
                    if (want[x].score > 0) want_sum += want[x].score;
                rd.item_topk_head(rd.ctx, row, hk, &kth, &sum);
                assert_true(kth == (nw >= hk ? want[hk - 1].score : -INFINITY));
                assert_true(sum == want_sum);
                /* The unordered read: the same entries. */
                int na = rd.item_topk_any(rd.ctx, row, got, k);
                assert_int_equal(na, nw);
                qsort(got, (size_t)na, sizeof *got, cmp_ref);
                assert_same_scored(got, want, na);
            }
            if (rng(&s) % 8 != 0) continue;
            int cap = 1 + (int)(rng(&s) % (uint64_t)k);
            int ng = rd.item_topk(rd.ctx, row, got, cap);
            int nw = ref[row].n;
            for (int x = 0; x < nw; x++)
                want[x] = (rec_scored_t){.id = ref[row].id[x], .score = ref[row].sc[x]};
            qsort(want, (size_t)nw, sizeof *want, cmp_ref);
            assert_int_equal(ng, nw < cap ? nw : cap);
            assert_same_scored(got, want, ng);
        }
        free(ref);
        free(got);
        free(want);
        rec_mem_destroy(m);
    }
}

/* The popularity list, kept in order as counts change, against a sort of
 * the counts from scratch: increments of a few sizes (ties broken by id),
 * new items appearing, reads at random. */
static void test_popularity_kept_in_order(void **state) {
    (void)state;
    rec_config_t cfg;
    rec_config_defaults(&cfg);
    rec_mem_t *m = rec_mem_new(&cfg);
    assert_non_null(m);
    rec_reader_t rd = rec_mem_reader(m);
    enum { NPOP = 3000 };
    double *count = calloc(NPOP, sizeof *count);
    rec_scored_t *got = malloc(NPOP * sizeof *got), *want = malloc(NPOP * sizeof *want);
    assert_non_null(count);
    assert_non_null(got);
    assert_non_null(want);
    uint64_t s = 99;
    uint32_t span = 50; /* items seen so far grow from 50 to NPOP */
    for (int step = 0; step < 20000; step++) {
        if (span < NPOP && step % 8 == 0) span++;
        uint32_t i = (uint32_t)(rng(&s) % span);
        double v = (double)(1 + rng(&s) % 3) / 2.0;
        rec_delta_t d = {.op = REC_OP_ITEM_ADD, .a = i, .f = REC_IS_C, .v = v};
        assert_int_equal(rec_mem_apply(m, &d, 1), 0);
        count[i] += v;
        if (rng(&s) % 16 != 0) continue;
        int nw = 0;
        for (uint32_t j = 0; j < NPOP; j++)
            if (count[j] > 0) want[nw++] = (rec_scored_t){.id = j, .score = (float)count[j]};
        qsort(want, (size_t)nw, sizeof *want, cmp_ref);
        int ng = rd.popular(rd.ctx, got, NPOP);
        assert_int_equal(ng, nw);
        assert_same_scored(got, want, ng);
    }
    free(count);
    free(got);
    free(want);
    rec_mem_destroy(m);
}

/* Normalised similarities also fall when an item's norm grows, without the
 * pair being touched, so a bounded list can keep a stale member: it is
 * approximate. What holds: an unbounded list holds every co-occurring item,
 * the event item's row is re-scored, and the bounded lists agree with the
 * true top-K on most rows of this stream. */
static void test_topk_normalised_is_close(void **state) {
    (void)state;
    stream_t *st = malloc(sizeof *st);
    assert_non_null(st);
    make_stream(st, 7, 1);
    const rec_sim_t sims[] = {REC_SIM_COSINE, REC_SIM_JACCARD, REC_SIM_LIFT};
    for (size_t s = 0; s < sizeof sims / sizeof *sims; s++) {
        rec_config_t cfg;
        big_config(&cfg, 0);
        cfg.sim = sims[s];
        cfg.pair_fields = 0;
        /* Unbounded: every co-occurring item is a member. */
        rec_mem_t *m = replay(&cfg, st, NEV);
        rec_reader_t rd = rec_mem_reader(m);
        for (uint32_t i = 0; i < NI; i++) {
            rec_scored_t got[NI], want[NI];
            int ng = rd.item_topk(rd.ctx, i, got, NI);
            int nw = true_topk(&cfg, &rd, i, NI, want);
            assert_int_equal(ng, nw);
        }
        rec_mem_destroy(m);
        /* Bounded. */
        cfg.item_k = 3;
        m = replay(&cfg, st, NEV);
        rd = rec_mem_reader(m);
        int agree = 0;
        {
            for (uint32_t i = 0; i < NI; i++) {
                rec_scored_t got[8], want[8];
                int ng = rd.item_topk(rd.ctx, i, got, 8);
                int nw = true_topk(&cfg, &rd, i, 3, want);
                int same = ng == nw;
                for (int x = 0; same && x < ng; x++) {
                    int found = 0;
                    for (int y = 0; y < nw; y++) found |= got[x].id == want[y].id;
                    same = found;
                }
                agree += same;
            }
            print_message("%s: bounded top-3 equals the true top-3 on %d of %d rows\n",
                          rec_sim_name(sims[s]), agree, NI);
            /* Lift falls fastest as an item's count grows (1 / c_i), so its
             * lists go stale most. */
            int need = sims[s] == REC_SIM_LIFT ? NI / 3 : NI * 2 / 3;
            if (agree < need) {
                print_error("%s: %d of %d rows agree\n", rec_sim_name(sims[s]), agree, NI);
                fail();
            }
        }
        rec_mem_destroy(m);
    }
    free(st);
}

/* Hand-computed: ranking [5 1 9 3 7], relevant {1 3 4}: hits at ranks 2, 4. */
static void test_metrics_hand_example(void **state) {
    (void)state;
    const uint32_t ranked[5] = {5, 1, 9, 3, 7}, rel[3] = {1, 3, 4};
    rec_metrics_t m;
    rec_metrics_user(ranked, 5, rel, 3, &m);
    assert_true(fabs(m.precision - 0.4) < 1e-12);
    assert_true(fabs(m.recall - 2.0 / 3.0) < 1e-12);
    double dcg = 1 / log2(3.0) + 1 / log2(5.0), idcg = 1 + 1 / log2(3.0) + 0.5;
    assert_true(fabs(m.ndcg - dcg / idcg) < 1e-12);
    assert_true(fabs(m.ndcg - 0.4981893) < 1e-6);
    assert_true(fabs(m.map - (1.0 / 2 + 2.0 / 4) / 3) < 1e-12);
    assert_true(m.hit == 1.0);
    /* Fewer recommendations than k: padded, still divided by k. */
    const uint32_t short_list[4] = {4, UINT32_MAX, UINT32_MAX, UINT32_MAX};
    rec_metrics_user(short_list, 4, rel, 3, &m);
    assert_true(fabs(m.precision - 0.25) < 1e-12);
    assert_true(fabs(m.map - 1.0 / 3) < 1e-12);
    assert_true(fabs(m.ndcg - 1.0 / (1 + 1 / log2(3.0) + 0.5)) < 1e-12);
    /* No hit. */
    const uint32_t miss[2] = {8, 9};
    rec_metrics_user(miss, 2, rel, 3, &m);
    assert_true(m.precision == 0 && m.recall == 0 && m.ndcg == 0 && m.map == 0 && m.hit == 0);
}

/* A re-sent event id is applied once: the second time no deltas, same state. */
static void test_duplicate_event_applied_once(void **state) {
    (void)state;
    rec_config_t cfg;
    rec_config_defaults(&cfg);
    cfg.sim = REC_SIM_JACCARD; /* keeps the co-occurrence count C checked below */
    rec_mem_t *m = rec_mem_new(&cfg);
    rec_work_t *w = rec_work_new(&cfg);
    rec_reader_t rd = rec_mem_reader(m);
    rec_deltas_t ds = {0};
    char reason[128];
    rec_event_t a = {.event_id = "x1",
                     .user_id = "u",
                     .item_id = "i",
                     .user = 0,
                     .item = 1,
                     .type = REC_EV_PLAY,
                     .ts_ms = T0};
    rec_event_t b = a;
    b.event_id = "x2";
    b.item = 2;
    b.ts_ms = T0 + 1;
    assert_int_equal(rec_process_event(&cfg, &rd, w, &a, &ds, reason, sizeof reason), 1);
    assert_int_equal(rec_mem_apply(m, ds.d, ds.n), 0);
    ds.n = 0;
    assert_int_equal(rec_process_event(&cfg, &rd, w, &b, &ds, reason, sizeof reason), 1);
    assert_int_equal(rec_mem_apply(m, ds.d, ds.n), 0);
    for (int rep = 0; rep < 3; rep++) {
        ds.n = 0;
        assert_int_equal(rec_process_event(&cfg, &rd, w, &b, &ds, reason, sizeof reason), 0);
        assert_int_equal(ds.n, 0);
    }
    rec_hist_t h[4];
    assert_int_equal(rd.history(rd.ctx, 0, h, 4), 2);
    for (int x = 0; x < 2; x++) assert_true(h[x].a == 1.0);
    uint32_t j = 2;
    double f[REC_PF_N];
    rd.pairs(rd.ctx, 1, &j, 1, f);
    assert_true(f[REC_PF_C] == 1.0);
    double st[REC_IS_N];
    rd.item_stats(rd.ctx, &j, 1, st);
    assert_true(st[REC_IS_C] == 1.0);
    rec_deltas_free(&ds);
    rec_work_destroy(w);
    rec_mem_destroy(m);
}

static void expect_reject(const rec_event_t *ev, const char *want) {
    rec_config_t cfg;
    rec_config_defaults(&cfg);
    char reason[128] = "";
    assert_int_equal(rec_event_check(&cfg, ev, T0, reason, sizeof reason), -1);
    if (!strstr(reason, want)) {
        print_error("reason \"%s\" lacks \"%s\"\n", reason, want);
        fail();
    }
}

/* Bad input is rejected with a reason for the DLQ; unknown ids are fine. */
static void test_bad_input_rejected(void **state) {
    (void)state;
    const rec_event_t ok = {.event_id = "e",
                            .user_id = "never-seen",
                            .item_id = "new-item",
                            .type = REC_EV_RATING,
                            .ts_ms = T0,
                            .has_rating = 1,
                            .rating = 4.5};
    rec_config_t cfg;
    rec_config_defaults(&cfg);
    char reason[128];
    assert_int_equal(rec_event_check(&cfg, &ok, T0, reason, sizeof reason), 0);
    rec_event_t e = ok;
    e.event_id = "";
    expect_reject(&e, "empty event_id");
    e = ok;
    e.user_id = "";
    expect_reject(&e, "empty user_id");
    e = ok;
    e.item_id = NULL;
    expect_reject(&e, "empty item_id");
    e = ok;
    e.rating = 5.5;
    expect_reject(&e, "rating 5.5 outside");
    e = ok;
    e.rating = 0;
    expect_reject(&e, "outside [0.5, 5]");
    e = ok;
    e.rating = NAN;
    expect_reject(&e, "rating");
    e = ok;
    e.has_rating = 0;
    expect_reject(&e, "without a rating");
    e = ok;
    e.ts_ms = T0 + DAY;
    expect_reject(&e, "in the future");
    e = ok;
    e.ts_ms = 0;
    expect_reject(&e, "timestamp");
    e = ok;
    e.type = REC_EV_PROGRESS;
    e.watch_seconds = -1;
    expect_reject(&e, "watch_seconds");
    e = ok;
    e.type = (rec_event_type_t)42;
    expect_reject(&e, "unknown event type");
}

/* History is bounded (least recently used out), seen items are filtered, a
 * new user gets popular items, a new item is reached through content. */
static void test_history_cap_cold_start_and_sources(void **state) {
    (void)state;
    rec_config_t cfg;
    rec_config_defaults(&cfg);
    cfg.hist_cap = 3;
    rec_mem_t *m = rec_mem_new(&cfg);
    rec_work_t *w = rec_work_new(&cfg);
    rec_reader_t rd = rec_mem_reader(m);
    rec_deltas_t ds = {0};
    char reason[128], id[16];
    const char *g_action[] = {"Action"}, *g_drama[] = {"Drama"};
    float f[REC_FEAT_DIM];
    for (uint32_t i = 0; i < 8; i++) {
        rec_item_features(i % 2 ? g_action : g_drama, 1, NULL, 0, 1990, f);
        assert_int_equal(rec_mem_set_features(m, i, f), 0);
    }
    int n = 0;
    /* Users 0..4 play items 0..4; user 0 also 5 and 6 (evicting 0..). */
    for (uint32_t u = 0; u < 5; u++)
        for (uint32_t i = 0; i < (u == 0 ? 7u : 3u); i++) {
            snprintf(id, sizeof id, "e%d", n);
            rec_event_t e = {.event_id = id,
                             .user_id = "u",
                             .item_id = "i",
                             .user = u,
                             .item = (i + u) % 7,
                             .type = REC_EV_PLAY,
                             .ts_ms = T0 + n++};
            ds.n = 0;
            assert_int_equal(rec_process_event(&cfg, &rd, w, &e, &ds, reason, sizeof reason), 1);
            assert_int_equal(rec_mem_apply(m, ds.d, ds.n), 0);
        }
    rec_hist_t h[8];
    int nh = rd.history(rd.ctx, 0, h, 8);
    assert_int_equal(nh, 3);
    for (int x = 0; x < nh; x++) assert_true(h[x].item >= 4); /* 4, 5, 6 kept */
    /* Seen items never come back; sources are reported. */
    rec_rec_t out[10];
    int no = rec_recommend(&cfg, &rd, w, 1, REC_SRC_ALL, NULL, 0, out, 10);
    assert_true(no > 0);
    rd.history(rd.ctx, 1, h, 8);
    for (int x = 0; x < no; x++) {
        for (int y = 0; y < 3; y++) assert_int_not_equal(out[x].item, h[y].item);
        assert_true(out[x].sources != 0 && (out[x].sources & ~REC_SRC_ALL) == 0);
        if (x) assert_true(out[x - 1].score >= out[x].score);
    }
    /* New user: popularity only. */
    no = rec_recommend(&cfg, &rd, w, 99, REC_SRC_ALL, NULL, 0, out, 3);
    assert_int_equal(no, 3);
    for (int x = 0; x < no; x++) assert_int_equal(out[x].sources, REC_SRC_POPULAR);
    /* New item 7 (no events) reached through content only. */
    no = rec_recommend(&cfg, &rd, w, 2, REC_SRC_ALL, NULL, 0, out, 10);
    int found = 0;
    for (int x = 0; x < no; x++)
        if (out[x].item == 7) found = out[x].sources == REC_SRC_CONTENT;
    assert_true(found);
    rec_deltas_free(&ds);
    rec_work_destroy(w);
    rec_mem_destroy(m);
}

/* The poster block: any embedding size maps onto REC_FEAT_POSTER floats of
 * norm poster_weight; equal posters give dot weight^2, the metadata part is
 * left alone, and an empty or non-finite embedding zeroes the block. */
static void test_poster_block(void **state) {
    (void)state;
    const char *g[] = {"Drama"};
    float a[REC_FEAT_DIM], b[REC_FEAT_DIM], meta[REC_FEAT_DIM];
    rec_item_features(g, 1, NULL, 0, 1999, meta);
    for (int k = REC_FEAT_META; k < REC_FEAT_DIM; k++) assert_true(meta[k] == 0.0f);
    float e1[100], e2[100];
    uint64_t s = 7;
    for (int c = 0; c < 100; c++) {
        e1[c] = (float)(rng(&s) % 1000) / 1000.0f;
        e2[c] = (float)(rng(&s) % 1000) / 1000.0f - 0.5f;
    }
    memcpy(a, meta, sizeof a);
    memcpy(b, meta, sizeof b);
    rec_features_poster(a, e1, 100, 0.5f);
    rec_features_poster(b, e1, 100, 0.5f);
    assert_memory_equal(a, meta, REC_FEAT_META * sizeof(float));
    double aa = 0, ab = 0;
    for (int k = REC_FEAT_META; k < REC_FEAT_DIM; k++) {
        aa += (double)a[k] * a[k];
        ab += (double)a[k] * b[k];
    }
    assert_true(fabs(aa - 0.25) < 1e-5 && fabs(ab - 0.25) < 1e-5);
    /* A different poster is further away; a different size works too. */
    rec_features_poster(b, e2, 37, 0.5f);
    double ab2 = 0, bb = 0;
    for (int k = REC_FEAT_META; k < REC_FEAT_DIM; k++) {
        ab2 += (double)a[k] * b[k];
        bb += (double)b[k] * b[k];
    }
    assert_true(fabs(bb - 0.25) < 1e-5 && ab2 < 0.2);
    /* Zero, NaN, weight 0: no block. */
    float zero[8] = {0}, nan8[8] = {1, 2, NAN, 4, 5, 6, 7, 8};
    rec_features_poster(a, zero, 8, 0.5f);
    for (int k = REC_FEAT_META; k < REC_FEAT_DIM; k++) assert_true(a[k] == 0.0f);
    rec_features_poster(a, nan8, 8, 0.5f);
    for (int k = REC_FEAT_META; k < REC_FEAT_DIM; k++) assert_true(a[k] == 0.0f);
    rec_features_poster(a, e1, 100, 0.0f);
    for (int k = REC_FEAT_META; k < REC_FEAT_DIM; k++) assert_true(a[k] == 0.0f);
    /* The shrunk mean. */
    assert_true(fabsf(rec_sentiment_mean(3, 3, 0) - 1.0f) < 1e-6);
    assert_true(fabsf(rec_sentiment_mean(-4, 4, 4) + 0.5f) < 1e-6);
    assert_true(rec_sentiment_mean(5, 0, 2) == 0.0f);
    assert_true(rec_sentiment_mean(NAN, 3, 2) == 0.0f);
    assert_true(rec_sentiment_mean(100, 3, 0) == 1.0f);
}

/* Poster embeddings enter the content vectors and review sentiment the
 * blend: among candidates with the same metadata, the one whose poster is
 * like the watched item's comes first; strongly negative reviews push it
 * down (score times 1 + w s), positive ones lift another; weight 0 turns the
 * prior off. */
static void test_multimodal_content_and_prior(void **state) {
    (void)state;
    rec_config_t cfg;
    rec_config_defaults(&cfg);
    cfg.sentiment_weight = 0.5f;
    rec_mem_t *m = rec_mem_new(&cfg);
    rec_work_t *w = rec_work_new(&cfg);
    rec_reader_t rd = rec_mem_reader(m);
    rec_deltas_t ds = {0};
    char reason[128];
    const char *g[] = {"Drama"};
    float f[REC_FEAT_DIM], emb[6][16];
    uint64_t s = 11;
    for (int p = 0; p < 6; p++)
        for (int c = 0; c < 16; c++) emb[p][c] = (float)(rng(&s) % 1000) / 1000.0f - 0.5f;
    /* Item 0 is watched; 1..5 are candidates with equal metadata; item 3
     * has item 0's poster. */
    for (uint32_t i = 0; i < 6; i++) {
        rec_item_features(g, 1, NULL, 0, 1999, f);
        assert_int_equal(rec_mem_set_features(m, i, f), 0);
    }
    rec_event_t e = {.event_id = "e1",
                     .user_id = "u",
                     .item_id = "i",
                     .user = 0,
                     .item = 0,
                     .type = REC_EV_PLAY,
                     .ts_ms = T0};
    assert_int_equal(rec_process_event(&cfg, &rd, w, &e, &ds, reason, sizeof reason), 1);
    assert_int_equal(rec_mem_apply(m, ds.d, ds.n), 0);
    rec_rec_t out[5];
    /* Metadata alone: a tie, broken by the higher id. */
    int no = rec_recommend(&cfg, &rd, w, 0, REC_SRC_CONTENT, NULL, 0, out, 5);
    assert_int_equal(no, 5);
    assert_int_equal(out[0].item, 5);
    assert_true(fabsf(out[0].score - out[4].score) < 1e-6f);
    for (uint32_t i = 0; i < 6; i++) {
        memcpy(f, rd.features(rd.ctx, i), sizeof f);
        rec_features_poster(f, emb[i == 3 ? 0 : i], 16, cfg.poster_weight);
        assert_int_equal(rec_mem_set_features(m, i, f), 0);
    }
    no = rec_recommend(&cfg, &rd, w, 0, REC_SRC_CONTENT, NULL, 0, out, 5);
    assert_int_equal(out[0].item, 3);
    float top = out[0].score;
    assert_true(top > out[1].score + 0.1f);
    /* In the hybrid too (popular adds item... none: only item 0 was seen). */
    no = rec_recommend(&cfg, &rd, w, 0, REC_SRC_ALL, NULL, 0, out, 5);
    assert_int_equal(out[0].item, 3);
    /* Review sentiment: item 3 panned, item 2 praised. */
    assert_int_equal(rec_mem_set_sentiment(m, 3, -1.0f), 0);
    assert_int_equal(rec_mem_set_sentiment(m, 2, 1.0f), 0);
    no = rec_recommend(&cfg, &rd, w, 0, REC_SRC_CONTENT, NULL, 0, out, 5);
    assert_int_equal(out[0].item, 2);
    assert_int_equal(out[4].item, 3);
    for (int x = 0; x < no; x++)
        if (out[x].item == 3) assert_true(fabsf(out[x].score - top * 0.5f) < 1e-5f);
    cfg.sentiment_weight = 0;
    no = rec_recommend(&cfg, &rd, w, 0, REC_SRC_CONTENT, NULL, 0, out, 5);
    assert_int_equal(out[0].item, 3);
    assert_true(fabsf(out[0].score - top) < 1e-6f);
    rec_deltas_free(&ds);
    rec_work_destroy(w);
    rec_mem_destroy(m);
}

/* Best first, ties to the higher id: the order rec_recommend returns. */
static int rec_best_first(const void *pa, const void *pb) {
    const rec_rec_t *a = pa, *b = pb;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    return a->item > b->item ? -1 : a->item < b->item;
}

/* The hybrid blend against a reference computed here from each source's
 * own scores: min-max normalised per source over its candidates, weighted,
 * times the sentiment prior, ranked by (score, id). Items 50..59 have no
 * events (content is their only source) and some items have sentiment. The
 * same answer without the reader's optional calls (the dense product for
 * content, full list reads for item CF's thresholds, copied histories for
 * user CF). */
static void test_blend_matches_reference(void **state) {
    (void)state;
    enum { BU = 30, BI = 60, BEV = 700 };
    rec_config_t cfg;
    rec_config_defaults(&cfg);
    cfg.hist_cap = 8;
    cfg.item_score_k = 5;
    cfg.sentiment_weight = 0.3f;
    rec_mem_t *m = rec_mem_new(&cfg);
    rec_work_t *w = rec_work_new(&cfg);
    rec_reader_t rd = rec_mem_reader(m);
    rec_deltas_t ds = {0};
    char reason[128], id[16];
    const char *genres[] = {"Action", "Drama", "Comedy", "Horror", "Romance"};
    float f[REC_FEAT_DIM];
    uint64_t s = 2024;
    for (uint32_t i = 0; i < BI; i++) {
        const char *g[2] = {genres[i % 5], genres[(i / 5) % 5]};
        rec_item_features(g, 1 + (int)(i % 2), NULL, 0, 1960 + (int)(i % 50), f);
        assert_int_equal(rec_mem_set_features(m, i, f), 0);
        if (i % 3 == 0) assert_int_equal(rec_mem_set_sentiment(m, i, (float)(i % 7) / 3 - 1), 0);
    }
    for (int k = 0; k < BEV; k++) {
        snprintf(id, sizeof id, "b%d", k);
        uint32_t a = (uint32_t)(rng(&s) % 50), b = (uint32_t)(rng(&s) % 50);
        rec_event_t e = {.event_id = id,
                         .user_id = "u",
                         .item_id = "i",
                         .user = (uint32_t)(rng(&s) % BU),
                         .item = a < b ? a : b,
                         .type = k % 4 ? REC_EV_PLAY : REC_EV_COMPLETE,
                         .ts_ms = T0 + k * 1000LL};
        ds.n = 0;
        assert_int_equal(rec_process_event(&cfg, &rd, w, &e, &ds, reason, sizeof reason), 1);
        assert_int_equal(rec_mem_apply(m, ds.d, ds.n), 0);
    }
    rec_config_t raw = cfg;
    raw.sentiment_weight = 0;
    rec_reader_t plain = rd;
    plain.catalogue_version = NULL;
    plain.item_topk_head = NULL;
    plain.history_view = NULL;
    rec_rec_t all[BI], out[BI], out2[BI];
    int content_only = 0;
    for (uint32_t u = 0; u < BU; u++) {
        /* Each source's raw scores (one source: not normalised). */
        float v[4][BI];
        uint8_t has[BI] = {0};
        float lo[4], hi[4];
        int used = 0;
        for (int src = 0; src < 4; src++) {
            lo[src] = INFINITY;
            hi[src] = -INFINITY;
            int n = rec_recommend(&raw, &rd, w, u, 1u << src, NULL, 0, all, BI);
            assert_true(n >= 0);
            for (int x = 0; x < n; x++) {
                v[src][all[x].item] = all[x].score;
                has[all[x].item] |= (uint8_t)(1u << src);
                if (all[x].score < lo[src]) lo[src] = all[x].score;
                if (all[x].score > hi[src]) hi[src] = all[x].score;
                used |= 1 << src;
            }
        }
        const int single = used == 1 || used == 2 || used == 4 || used == 8;
        rec_rec_t ref[BI];
        int nref = 0;
        for (uint32_t c = 0; c < BI; c++) {
            if (!has[c]) continue;
            float score = 0;
            for (int src = 0; src < 4; src++) {
                if (!(has[c] & (1u << src))) continue;
                if (single) {
                    score += v[src][c];
                } else {
                    float span = hi[src] - lo[src];
                    score += cfg.src_weight[src] * (span > 0 ? (v[src][c] - lo[src]) / span : 1.0f);
                }
            }
            score *= 1.0f + cfg.sentiment_weight * rd.sentiment(rd.ctx, c);
            ref[nref++] = (rec_rec_t){c, score, has[c]};
        }
        qsort(ref, (size_t)nref, sizeof *ref, rec_best_first);
        /* The whole ranking, and the best 10 alone (the heap). */
        int no = rec_recommend(&cfg, &rd, w, u, REC_SRC_ALL, NULL, 0, out, BI);
        int no2 = rec_recommend(&cfg, &plain, w, u, REC_SRC_ALL, NULL, 0, out2, BI);
        assert_int_equal(no, nref);
        assert_int_equal(no2, no);
        for (int x = 0; x < no; x++) {
            assert_int_equal(out[x].item, ref[x].item);
            assert_int_equal(out[x].sources, ref[x].sources);
            assert_true(fabsf(out[x].score - ref[x].score) <= 1e-6f * fabsf(ref[x].score));
            assert_int_equal(out2[x].item, out[x].item);
            assert_true(out2[x].score == out[x].score);
            content_only += out[x].sources == REC_SRC_CONTENT;
        }
        assert_int_equal(rec_recommend(&cfg, &rd, w, u, REC_SRC_ALL, NULL, 0, out2, 10),
                         no < 10 ? no : 10);
        for (int x = 0; x < no && x < 10; x++) {
            assert_int_equal(out2[x].item, out[x].item);
            assert_true(out2[x].score == out[x].score);
        }
    }
    assert_true(content_only > BU); /* the dense pass's candidates were ranked */
    rec_deltas_free(&ds);
    rec_work_destroy(w);
    rec_mem_destroy(m);
}

/* Shrinkage on cosine counts co-consumers, so the C counter is kept and a
 * pair's similarity is cos * n / (n + shrink), not 0. */
static void test_cosine_shrinkage(void **state) {
    (void)state;
    rec_config_t cfg;
    rec_config_defaults(&cfg);
    cfg.iuf_beta = 0; /* plain counts in the hand computation */
    cfg.shrink = 2.0f;
    assert_true(rec_config_fields(&cfg) & REC_PFM(REC_PF_C));
    rec_mem_t *m = rec_mem_new(&cfg);
    rec_work_t *w = rec_work_new(&cfg);
    rec_reader_t rd = rec_mem_reader(m);
    rec_deltas_t ds = {0};
    char reason[128], id[16];
    /* Users 0..2 play items 0 and 1; user 3 plays item 0 only. */
    int n = 0;
    for (uint32_t u = 0; u < 4; u++)
        for (uint32_t i = 0; i < (u < 3 ? 2u : 1u); i++) {
            snprintf(id, sizeof id, "s%d", n);
            rec_event_t e = {.event_id = id,
                             .user_id = "u",
                             .item_id = "i",
                             .user = u,
                             .item = i,
                             .type = REC_EV_PLAY,
                             .ts_ms = T0 + n++};
            ds.n = 0;
            assert_int_equal(rec_process_event(&cfg, &rd, w, &e, &ds, reason, sizeof reason), 1);
            assert_int_equal(rec_mem_apply(m, ds.d, ds.n), 0);
        }
    rec_scored_t top[4];
    int nk = rd.item_topk(rd.ctx, 1, top, 4);
    assert_int_equal(nk, 1);
    assert_int_equal(top[0].id, 0);
    /* cos = 3 / sqrt(4 * 3), n = 3 co-consumers. */
    double want = 3.0 / sqrt(12.0) * 3.0 / (3.0 + 2.0);
    assert_true(fabs(top[0].score - want) < 1e-5);
    rec_deltas_free(&ds);
    rec_work_destroy(w);
    rec_mem_destroy(m);
}

/* Asymmetric cosine in the item CF votes, by hand. Plays (a = 1) by users
 * 1, 2: items 0, 1, 2; user 3: 0, 2; user 4: 0; users 5..9: 2; user 0: 0.
 * n2 = 5, 2, 8 for items 0, 1, 2; D_01 = 2, D_02 = 3. User 0's only
 * history item is 0, whose list is {1, 2}; a vote is
 * s_0j^2 / (cos_01 + cos_02) (source normalisation by item 0's mass), with
 * s_0j = D_0j / (n2_j^alpha n2_0^(1 - alpha)). alpha 0.5 is the cosine
 * (item 1 first); alpha 0.1 puts the popular item 2 first. */
static void test_asymmetric_cosine(void **state) {
    (void)state;
    rec_config_t cfg;
    rec_config_defaults(&cfg);
    cfg.refresh_ratio = 0;
    cfg.iuf_beta = 0; /* plain counts in the hand computation */
    rec_mem_t *m = rec_mem_new(&cfg);
    rec_work_t *w = rec_work_new(&cfg);
    rec_reader_t rd = rec_mem_reader(m);
    rec_deltas_t ds = {0};
    char reason[128], id[16];
    static const uint32_t plays[][2] = {{5, 2}, {6, 2}, {7, 2}, {8, 2}, {9, 2},
                                        {1, 0}, {1, 1}, {1, 2}, {2, 0}, {2, 1},
                                        {2, 2}, {3, 0}, {3, 2}, {4, 0}, {0, 0}};
    for (int n = 0; n < (int)(sizeof plays / sizeof plays[0]); n++) {
        snprintf(id, sizeof id, "a%d", n);
        rec_event_t e = {.event_id = id,
                         .user_id = "u",
                         .item_id = "i",
                         .user = plays[n][0],
                         .item = plays[n][1],
                         .type = REC_EV_PLAY,
                         .ts_ms = T0 + n};
        ds.n = 0;
        assert_int_equal(rec_process_event(&cfg, &rd, w, &e, &ds, reason, sizeof reason), 1);
        assert_int_equal(rec_mem_apply(m, ds.d, ds.n), 0);
    }
    const double n2[3] = {5, 2, 8}, D[3] = {0, 2, 3};
    const double rs = D[1] / sqrt(n2[0] * n2[1]) + D[2] / sqrt(n2[0] * n2[2]);
    const float alphas[] = {0.5f, 0.4f, 0.1f, 0.9f};
    for (int t = 0; t < 4; t++) {
        const double al = alphas[t];
        cfg.asym_alpha = alphas[t];
        rec_rec_t out[4];
        int no = rec_recommend(&cfg, &rd, w, 0, REC_SRC_ITEM_CF, NULL, 0, out, 4);
        assert_int_equal(no, 2);
        double want[3];
        for (int j = 1; j < 3; j++) {
            double sa = D[j] / (pow(n2[j], al) * pow(n2[0], 1 - al));
            want[j] = sa * sa / rs;
        }
        const uint32_t first = want[1] > want[2] ? 1 : 2;
        assert_int_equal(out[0].item, first);
        assert_int_equal(out[1].item, 3 - first);
        for (int x = 0; x < 2; x++) {
            double got = out[x].score, wj = want[out[x].item];
            if (fabs(got - wj) > 1e-5 * wj)
                fail_msg("alpha %g item %u: %g, want %g", al, out[x].item, got, wj);
        }
        if (t == 0) assert_int_equal(first, 1);
        if (t == 2) assert_int_equal(first, 2);
    }
    rec_deltas_free(&ds);
    rec_work_destroy(w);
    rec_mem_destroy(m);
}

/* Inverse user frequency, by hand (beta 0.5, plays: a = 1 each): user 0
 * plays items 0, 1, 2, then 0 again. Weights (1 + other history items)^-0.5:
 * 1, 1/sqrt2, 1/sqrt3, 1/sqrt3. D_01 = 1/sqrt2 + 1/sqrt3 (the replay of 0
 * takes a_0 from 1 to 2: + w * 1 * a_1), D_02 = 2/sqrt3, D_12 = 1/sqrt3;
 * n2_0 = 1 + 3/sqrt3, n2_1 = 1/sqrt2, n2_2 = 1/sqrt3. The user's norm
 * (user CF) and the counts C are not weighted. */
static void test_inverse_user_frequency(void **state) {
    (void)state;
    rec_config_t cfg;
    rec_config_defaults(&cfg);
    cfg.refresh_ratio = 0;
    cfg.iuf_beta = 0.5f;
    cfg.pair_fields = REC_PFM(REC_PF_C) | REC_PFM(REC_PF_D);
    rec_mem_t *m = rec_mem_new(&cfg);
    rec_work_t *w = rec_work_new(&cfg);
    rec_reader_t rd = rec_mem_reader(m);
    rec_deltas_t ds = {0};
    char reason[128], id[16];
    static const uint32_t items[] = {0, 1, 2, 0};
    for (int n = 0; n < 4; n++) {
        snprintf(id, sizeof id, "f%d", n);
        rec_event_t e = {.event_id = id,
                         .user_id = "u",
                         .item_id = "i",
                         .user = 0,
                         .item = items[n],
                         .type = REC_EV_PLAY,
                         .ts_ms = T0 + n};
        ds.n = 0;
        assert_int_equal(rec_process_event(&cfg, &rd, w, &e, &ds, reason, sizeof reason), 1);
        assert_int_equal(rec_mem_apply(m, ds.d, ds.n), 0);
    }
    const double r2 = 1 / sqrt(2.0), r3 = 1 / sqrt(3.0);
    const double D[3][3] = {{0, r2 + r3, 2 * r3}, {r2 + r3, 0, r3}, {2 * r3, r3, 0}};
    const double n2[3] = {1 + 3 * r3, r2, r3};
    for (uint32_t i = 0; i < 3; i++) {
        double st[REC_IS_N];
        rd.item_stats(rd.ctx, &i, 1, st);
        assert_close(st[REC_IS_N2], n2[i], 1e-12, "n2", (int)i, 0);
        assert_close(st[REC_IS_C], 1, 1e-12, "c", (int)i, 0);
        for (uint32_t j = 0; j < 3; j++) {
            if (j == i) continue;
            double f[REC_PF_N];
            rd.pairs(rd.ctx, i, &j, 1, f);
            assert_close(f[REC_PF_D], D[i][j], 1e-12, "D", (int)i, (int)j);
            assert_close(f[REC_PF_C], 1, 1e-12, "C", (int)i, (int)j);
        }
    }
    uint32_t u = 0;
    double un;
    rd.user_norms(rd.ctx, &u, 1, &un);
    assert_close(un, 4 + 1 + 1, 1e-12, "unorm", 0, 0);
    /* The stored list holds the cosine of the weighted sums. */
    rec_scored_t top[4];
    int nk = rd.item_topk(rd.ctx, 1, top, 4);
    assert_int_equal(nk, 2);
    assert_int_equal(top[0].id, 0);
    assert_close(top[0].score, D[1][0] / sqrt(n2[0] * n2[1]), 1e-6, "cos", 1, 0);
    assert_close(top[1].score, D[1][2] / sqrt(n2[1] * n2[2]), 1e-6, "cos", 1, 2);
    rec_deltas_free(&ds);
    rec_work_destroy(w);
    rec_mem_destroy(m);
}

/* User CF votes, by hand. Ratings (a = 0.4 r): user 0 rates items 0, 1
 * 5 stars (a 2, 2); user 1 rates 0, 1, 2 with 5, 2.5, 5 (a 2, 1, 2); user
 * 2 rates 0, 3, 2 with 2.5, 5, 2.5 (a 1, 2, 1). cos(0, 1) = 6 / sqrt(8 * 9),
 * cos(0, 2) = 2 / sqrt(8 * 6). Each neighbour v votes for its items with
 * cos^p * (a_vi / max a_v)^q. */
static void test_user_cf_votes(void **state) {
    (void)state;
    rec_config_t cfg;
    rec_config_defaults(&cfg);
    cfg.refresh_ratio = 0;
    rec_mem_t *m = rec_mem_new(&cfg);
    rec_work_t *w = rec_work_new(&cfg);
    rec_reader_t rd = rec_mem_reader(m);
    rec_deltas_t ds = {0};
    char reason[128], id[16];
    static const struct {
        uint32_t u, i;
        double r;
    } ev[] = {{0, 0, 5}, {0, 1, 5},   {1, 0, 5}, {1, 1, 2.5},
              {1, 2, 5}, {2, 0, 2.5}, {2, 3, 5}, {2, 2, 2.5}};
    for (int n = 0; n < (int)(sizeof ev / sizeof ev[0]); n++) {
        snprintf(id, sizeof id, "v%d", n);
        rec_event_t e = {.event_id = id,
                         .user_id = "u",
                         .item_id = "i",
                         .user = ev[n].u,
                         .item = ev[n].i,
                         .type = REC_EV_RATING,
                         .ts_ms = T0 + n,
                         .has_rating = 1,
                         .rating = ev[n].r};
        ds.n = 0;
        assert_int_equal(rec_process_event(&cfg, &rd, w, &e, &ds, reason, sizeof reason), 1);
        assert_int_equal(rec_mem_apply(m, ds.d, ds.n), 0);
    }
    const double s1 = 6 / sqrt(72.0), s2 = 2 / sqrt(48.0);
    static const float pq[][2] = {{1, 0}, {3, 0.3f}, {2, 1}};
    assert_true(cfg.user_sim_power == pq[1][0] && cfg.user_aff_power == pq[1][1]); /* defaults */
    for (int t = 0; t < 3; t++) {
        const double p = pq[t][0], q = pq[t][1];
        cfg.user_sim_power = pq[t][0];
        cfg.user_aff_power = pq[t][1];
        double want[4] = {0, 0, pow(s1, p) + pow(s2, p) * pow(0.5, q), pow(s2, p)};
        rec_rec_t out[4];
        int no = rec_recommend(&cfg, &rd, w, 0, REC_SRC_USER_CF, NULL, 0, out, 4);
        assert_int_equal(no, 2);
        assert_int_equal(out[0].item, 2);
        assert_int_equal(out[1].item, 3);
        for (int x = 0; x < 2; x++)
            assert_close(out[x].score, want[out[x].item], 1e-5, "user_cf", t, (int)out[x].item);
    }
    rec_deltas_free(&ds);
    rec_work_destroy(w);
    rec_mem_destroy(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_incremental_equals_batch_no_decay),
        cmocka_unit_test(test_incremental_equals_batch_with_decay),
        cmocka_unit_test(test_incremental_equals_batch_iuf),
        cmocka_unit_test(test_topk_exact_for_monotone_counts),
        cmocka_unit_test(test_topk_list_matches_model),
        cmocka_unit_test(test_popularity_kept_in_order),
        cmocka_unit_test(test_topk_normalised_is_close),
        cmocka_unit_test(test_metrics_hand_example),
        cmocka_unit_test(test_duplicate_event_applied_once),
        cmocka_unit_test(test_bad_input_rejected),
        cmocka_unit_test(test_history_cap_cold_start_and_sources),
        cmocka_unit_test(test_poster_block),
        cmocka_unit_test(test_multimodal_content_and_prior),
        cmocka_unit_test(test_blend_matches_reference),
        cmocka_unit_test(test_cosine_shrinkage),
        cmocka_unit_test(test_asymmetric_cosine),
        cmocka_unit_test(test_inverse_user_frequency),
        cmocka_unit_test(test_user_cf_votes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
