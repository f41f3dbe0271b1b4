/* test_rec_state.c: rec_mem_save / rec_mem_load, the snapshot the recommend
 * worker's memory state mode writes to Redis. A state saved, loaded and fed
 * the rest of a stream must equal one that saw the whole stream without a
 * break, byte for byte, including events replayed by their id hash alone
 * (as the worker replays its log); corrupt or truncated bytes are refused. */
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
#define NEV 600
#define T0 1700000000000LL

static uint64_t rng(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static rec_event_t evs[NEV];
static char ids[NEV][16];

/* Every event type, skewed items, small caps below so that histories,
 * consumer lists, seen rings and top-K lists all evict. Event 7k+3 repeats
 * the id of event 7k (a re-sent event: applied once). */
static void make_stream(uint64_t seed) {
    uint64_t s = seed;
    int64_t ts = T0;
    for (int k = 0; k < NEV; k++) {
        rec_event_t *e = &evs[k];
        if (k % 7 == 3) {
            *e = evs[k - 3];
            continue;
        }
        memset(e, 0, sizeof *e);
        snprintf(ids[k], sizeof ids[k], "e%d", k);
        e->event_id = ids[k];
        e->user_id = "u";
        e->item_id = "i";
        e->user = (uint32_t)(rng(&s) % NU);
        uint32_t a = (uint32_t)(rng(&s) % NI), b = (uint32_t)(rng(&s) % NI);
        e->item = a < b ? a : b;
        e->type = (rec_event_type_t)(rng(&s) % REC_EV_N);
        ts += 1 + (int64_t)(rng(&s) % 600000);
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

static void small_config(rec_config_t *cfg) {
    rec_config_defaults(cfg);
    cfg->hist_cap = 5;
    cfg->seen_cap = 8;
    cfg->cons_cap = 4;
    cfg->item_k = 4;
    cfg->user_k = 3;
    cfg->half_life_ms = 2 * 86400000LL;
    cfg->epoch_ms = T0;
}

/* Feeds events [from, to) into m; by_hash: as a replayed log entry (the id
 * hash only, no strings). */
static void feed(const rec_config_t *cfg, rec_mem_t *m, int from, int to, int by_hash) {
    rec_work_t *w = rec_work_new(cfg);
    assert_non_null(w);
    rec_reader_t rd = rec_mem_reader(m);
    rec_deltas_t ds = {0};
    char reason[128];
    for (int k = from; k < to; k++) {
        rec_event_t e = evs[k];
        if (by_hash) {
            e.event_hash = rec_hash64(e.event_id, strlen(e.event_id));
            e.event_id = e.user_id = e.item_id = "";
        }
        ds.n = 0;
        int r = rec_process_event(cfg, &rd, w, &e, &ds, reason, sizeof reason);
        assert_true(r == 0 || r == 1);
        assert_int_equal(r, k % 7 == 3 ? 0 : 1);
        assert_int_equal(rec_mem_apply(m, ds.d, ds.n), 0);
    }
    rec_deltas_free(&ds);
    rec_work_destroy(w);
}

/* Feeds every event into m, with the deltas' once flags and the reader as
 * given; returns the number of deltas written. With once, no symmetric
 * counter's increment is written in its mirrored order. */
static size_t feed_with(const rec_config_t *cfg, rec_mem_t *m, unsigned once,
                        const rec_reader_t *rd) {
    rec_work_t *w = rec_work_new(cfg);
    assert_non_null(w);
    rec_deltas_t ds = {.once = once};
    char reason[128];
    size_t total = 0;
    for (int k = 0; k < NEV; k++) {
        ds.n = 0;
        assert_true(rec_process_event(cfg, rd, w, &evs[k], &ds, reason, sizeof reason) >= 0);
        for (size_t x = 0; x < ds.n; x++) {
            const rec_delta_t *d = &ds.d[x];
            if ((once & REC_ONCE_DOTS) && d->op == REC_OP_UDOT_ADD) assert_true(d->a < d->b);
            if ((once & REC_ONCE_PAIRS) && d->op == REC_OP_PAIR_ADD && d->f != REC_PF_RS &&
                d->f != REC_PF_RQ)
                assert_true(d->a < d->b);
        }
        total += ds.n;
        assert_int_equal(rec_mem_apply(m, ds.d, ds.n), 0);
    }
    rec_deltas_free(&ds);
    rec_work_destroy(w);
    return total;
}

static rec_buf_t save(const rec_mem_t *m) {
    rec_buf_t b = {0};
    assert_int_equal(rec_mem_save(m, &b), 0);
    assert_true(b.len > 0);
    return b;
}

static void assert_same_recs(const rec_config_t *cfg, rec_mem_t *a, rec_mem_t *b) {
    rec_work_t *w = rec_work_new(cfg);
    rec_reader_t ra = rec_mem_reader(a), rb = rec_mem_reader(b);
    rec_rec_t x[10], y[10];
    for (uint32_t u = 0; u < NU; u++) {
        int na = rec_recommend(cfg, &ra, w, u, REC_SRC_ALL, NULL, 0, x, 10);
        int nb = rec_recommend(cfg, &rb, w, u, REC_SRC_ALL, NULL, 0, y, 10);
        assert_int_equal(na, nb);
        assert_true(na > 0);
        for (int k = 0; k < na; k++) {
            assert_int_equal(x[k].item, y[k].item);
            assert_true(x[k].score == y[k].score);
        }
    }
    rec_work_destroy(w);
}

static void test_resume_equals_uninterrupted(void **state) {
    (void)state;
    rec_config_t cfg;
    small_config(&cfg);
    for (uint64_t seed = 1; seed <= 3; seed++) {
        make_stream(seed * 0x9e3779b97f4a7c15ULL);
        rec_mem_t *whole = rec_mem_new(&cfg);
        feed(&cfg, whole, 0, NEV, 0);

        /* Break at several points; after each, save, load and go on with
         * the rest replayed by hash. */
        for (int cut = 1; cut < NEV; cut += 149) {
            rec_mem_t *first = rec_mem_new(&cfg);
            feed(&cfg, first, 0, cut, 0);
            rec_buf_t b = save(first);
            char err[256];
            rec_mem_t *resumed = rec_mem_load(&cfg, b.data, b.len, err, sizeof err);
            if (!resumed) fail_msg("load: %s", err);
            rec_buf_t again = save(resumed);
            assert_int_equal(again.len, b.len);
            assert_memory_equal(again.data, b.data, b.len);
            feed(&cfg, resumed, cut, NEV, 1);
            rec_buf_t x = save(whole), y = save(resumed);
            assert_int_equal(x.len, y.len);
            assert_memory_equal(x.data, y.data, x.len);
            assert_same_recs(&cfg, whole, resumed);
            free(b.data);
            free(again.data);
            free(x.data);
            free(y.data);
            rec_mem_destroy(first);
            rec_mem_destroy(resumed);
        }
        assert_int_equal(rec_mem_user_count(whole), NU);
        assert_true(rec_mem_pair_count(whole) > 0);
        rec_mem_destroy(whole);
    }
}

/* A state that read its top-K lists (which sorts them in place) saves the
 * same bytes as one that did not. */
static void test_save_is_canonical(void **state) {
    (void)state;
    rec_config_t cfg;
    small_config(&cfg);
    make_stream(77);
    rec_mem_t *a = rec_mem_new(&cfg), *b = rec_mem_new(&cfg);
    feed(&cfg, a, 0, NEV, 0);
    feed(&cfg, b, 0, NEV, 0);
    rec_reader_t rb = rec_mem_reader(b);
    rec_scored_t top[8];
    for (uint32_t i = 0; i < NI; i++) rb.item_topk(rb.ctx, i, top, 8);
    for (uint32_t u = 0; u < NU; u++) rb.user_topk(rb.ctx, u, top, 8);
    rec_buf_t x = save(a), y = save(b);
    assert_int_equal(x.len, y.len);
    assert_memory_equal(x.data, y.data, x.len);
    free(x.data);
    free(y.data);
    rec_mem_destroy(a);
    rec_mem_destroy(b);
}

static void test_load_refuses_bad_bytes(void **state) {
    (void)state;
    rec_config_t cfg;
    small_config(&cfg);
    make_stream(5);
    rec_mem_t *m = rec_mem_new(&cfg);
    feed(&cfg, m, 0, NEV, 0);
    rec_buf_t b = save(m);
    char err[256];

    /* Every truncation. */
    for (size_t len = 0; len < b.len; len += 1 + len / 64) {
        err[0] = 0;
        assert_null(rec_mem_load(&cfg, b.data, len, err, sizeof err));
        assert_true(strstr(err, "truncated") || strstr(err, "corrupt") || strstr(err, "magic"));
    }
    /* Trailing bytes. */
    unsigned char *longer = malloc(b.len + 1);
    memcpy(longer, b.data, b.len);
    longer[b.len] = 0;
    assert_null(rec_mem_load(&cfg, longer, b.len + 1, err, sizeof err));
    assert_non_null(strstr(err, "corrupt"));
    free(longer);

    /* Random byte changes: refused or loaded, never a crash (ASan checks). */
    uint64_t s = 99;
    unsigned char *copy = malloc(b.len);
    for (int t = 0; t < 300; t++) {
        memcpy(copy, b.data, b.len);
        for (int f = 0; f < 3; f++) copy[rng(&s) % b.len] ^= (unsigned char)(1 + rng(&s) % 255);
        rec_mem_t *x = rec_mem_load(&cfg, copy, b.len, err, sizeof err);
        if (x) {
            rec_buf_t y = save(x);
            free(y.data);
        }
        rec_mem_destroy(x);
    }
    free(copy);

    /* Other settings. */
    rec_config_t other = cfg;
    other.hist_cap = 6;
    assert_null(rec_mem_load(&other, b.data, b.len, err, sizeof err));
    assert_non_null(strstr(err, "other settings"));
    other = cfg;
    other.iuf_beta = 0.5f;
    assert_null(rec_mem_load(&other, b.data, b.len, err, sizeof err));
    assert_non_null(strstr(err, "iuf.beta"));
    other = cfg;
    other.weight[REC_EV_LIKE] = 2.5f;
    assert_null(rec_mem_load(&other, b.data, b.len, err, sizeof err));
    assert_non_null(strstr(err, "event weight like"));
    other = cfg;
    other.src_weight[0] = 3; /* scoring only: loads */
    rec_mem_t *scoring = rec_mem_load(&other, b.data, b.len, err, sizeof err);
    assert_non_null(scoring);
    rec_mem_destroy(scoring);
    memcpy(b.data, "XMEM", 4);
    assert_null(rec_mem_load(&cfg, b.data, b.len, err, sizeof err));
    assert_non_null(strstr(err, "magic"));
    free(b.data);
    rec_mem_destroy(m);
}

/* What the worker's memory mode writes and reads to save work (symmetric
 * increments once, the event item's list unsorted, the lists' cached
 * heads, neighbours' histories in place) ends in the same state, byte for
 * byte, as both orders through a reader with only the required calls. */
static void test_shortcuts_change_nothing(void **state) {
    (void)state;
    for (int pearson = 0; pearson <= 1; pearson++) {
        rec_config_t cfg;
        small_config(&cfg);
        if (pearson) cfg.sim = REC_SIM_PEARSON;
        make_stream(57 + (uint64_t)pearson);
        rec_mem_t *fast = rec_mem_new(&cfg), *plain = rec_mem_new(&cfg);
        assert_non_null(fast);
        assert_non_null(plain);
        const unsigned once = rec_mem_once(fast);
        assert_int_equal(once, pearson ? REC_ONCE_DOTS : REC_ONCE_DOTS | REC_ONCE_PAIRS);
        rec_reader_t rf = rec_mem_reader(fast), rp = rec_mem_reader(plain);
        rp.item_topk_any = NULL;
        rp.item_topk_head = NULL;
        rp.history_view = NULL;
        size_t nf = feed_with(&cfg, fast, once, &rf);
        size_t np = feed_with(&cfg, plain, 0, &rp);
        assert_true(nf < np);
        rec_buf_t bf = save(fast), bp = save(plain);
        assert_int_equal(bf.len, bp.len);
        assert_memory_equal(bf.data, bp.data, bf.len);
        assert_same_recs(&cfg, fast, plain);
        free(bf.data);
        free(bp.data);
        rec_mem_destroy(fast);
        rec_mem_destroy(plain);
    }
}

/* rec_mem_new keeps each symmetric counter once, rec_mem_new_rowwise in
 * both rows: fed the same stream they answer every read the same (cosine,
 * where every pair field is symmetric, and Pearson, whose pair fields stay
 * in both rows). Each saves and loads in its own layout; a rowwise
 * snapshot labelled as the compact one is refused (its maps hold keys
 * below their row's id, which the compact layout never reads). */
static void test_compact_equals_rowwise(void **state) {
    (void)state;
    for (int pearson = 0; pearson <= 1; pearson++) {
        rec_config_t cfg;
        small_config(&cfg);
        if (pearson) cfg.sim = REC_SIM_PEARSON;
        make_stream(31 + (uint64_t)pearson);
        rec_mem_t *once = rec_mem_new(&cfg), *rows = rec_mem_new_rowwise(&cfg);
        feed(&cfg, once, 0, NEV, 0);
        feed(&cfg, rows, 0, NEV, 0);
        rec_reader_t ro = rec_mem_reader(once), rr = rec_mem_reader(rows);
        uint32_t all[NU > NI ? NU : NI];
        for (uint32_t x = 0; x < (NU > NI ? NU : NI); x++) all[x] = x;
        double po[NI * REC_PF_N], pr[NI * REC_PF_N], nonzero = 0;
        for (uint32_t i = 0; i < NI; i++) {
            ro.pairs(ro.ctx, i, all, NI, po);
            rr.pairs(rr.ctx, i, all, NI, pr);
            assert_memory_equal(po, pr, sizeof po);
            for (int k = 0; k < NI * REC_PF_N; k++) nonzero += po[k] != 0;
        }
        double dto[NU], dtr[NU];
        for (uint32_t u = 0; u < NU; u++) {
            ro.user_dots(ro.ctx, u, all, NU, dto);
            rr.user_dots(rr.ctx, u, all, NU, dtr);
            assert_memory_equal(dto, dtr, sizeof dto);
            for (int k = 0; k < NU; k++) nonzero += dto[k] != 0;
        }
        assert_true(nonzero > NI + NU);
        assert_int_equal(rec_mem_pair_count(once), rec_mem_pair_count(rows));
        assert_same_recs(&cfg, once, rows);

        rec_buf_t bo = save(once), br = save(rows);
        if (!pearson) assert_true(bo.len < br.len);
        char err[256];
        rec_mem_t *lo = rec_mem_load(&cfg, bo.data, bo.len, err, sizeof err);
        rec_mem_t *lr = rec_mem_load(&cfg, br.data, br.len, err, sizeof err);
        assert_non_null(lo);
        assert_non_null(lr);
        rec_buf_t ao = save(lo), ar = save(lr);
        assert_int_equal(ao.len, bo.len);
        assert_memory_equal(ao.data, bo.data, bo.len);
        assert_int_equal(ar.len, br.len);
        assert_memory_equal(ar.data, br.data, br.len);
        assert_same_recs(&cfg, lo, lr);

        uint32_t version;
        memcpy(&version, bo.data + 4, sizeof version);
        memcpy(br.data + 4, &version, sizeof version);
        err[0] = 0;
        assert_null(rec_mem_load(&cfg, br.data, br.len, err, sizeof err));
        assert_non_null(strstr(err, "corrupt"));
        free(bo.data);
        free(br.data);
        free(ao.data);
        free(ar.data);
        rec_mem_destroy(lo);
        rec_mem_destroy(lr);
        rec_mem_destroy(once);
        rec_mem_destroy(rows);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume_equals_uninterrupted),
        cmocka_unit_test(test_save_is_canonical),
        cmocka_unit_test(test_load_refuses_bad_bytes),
        cmocka_unit_test(test_compact_equals_rowwise),
        cmocka_unit_test(test_shortcuts_change_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
