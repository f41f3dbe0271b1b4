/* test_model_files.c: every model loader refuses, with a clear reason and
 * before any use, a file or Redis blob whose magic, version, shapes or
 * length are wrong. The models are the fuzz seeds (tests/fuzz/model_seeds,
 * tiny models made by reel's training code, make_model_seeds.c); the
 * regress-* files there are inputs the fuzzer found. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/speech/speech.h"
#include "kernels/text/sentiment.h"
#include "kernels/text/word2vec.h"
#include "kernels/vision/cnn.h"
#include "kernels/vision/svm.h"

static const char *const seeds[] = {
    "tiny.rcnn",        "gap_rgb.rcnn", "linear.rsvm",     "rbf.rsvm",    "hmm.rsph",
    "hybrid.rsph",      "nb.rsnt",      "nblr.rsnt",       "lstm.rsnt",   "gru.rsnt",
    "ensemble.rsnt",    "bilstm.rsnt",  "lstm-bidir.rsnt", "lstmnb.rsnt", "skipgram.rw2v",
    "inputs_only.rw2v", "word2vec.bin",
};
#define N_SEEDS (sizeof seeds / sizeof seeds[0])

static unsigned char *slurp(const char *name, size_t *len) {
    const char *src = getenv("REEL_SOURCE_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/fuzz/model_seeds/%s", src ? src : ".", name);
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s (REEL_SOURCE_DIR)", path);
    unsigned char *buf = malloc(1 << 20);
    assert_non_null(buf);
    *len = fread(buf, 1, 1 << 20, f);
    fclose(f);
    return buf;
}

static uint64_t fnv1a(const unsigned char *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* RCNN and RSVM end with a checksum: recomputed after an edit, so the test
 * reaches the check it means (a corrupt copy alone fails the checksum). */
static void fix_checksum(unsigned char *d, size_t n) {
    if (n >= 16 && (memcmp(d, "RCNN", 4) == 0 || memcmp(d, "RSVM", 4) == 0)) {
        uint64_t h = fnv1a(d, n - 8);
        memcpy(d + n - 8, &h, 8);
    }
}

/* Loads d with the loader its name's extension names (what the registry's
 * magic would pick). Returns 1 when it loaded (and frees it), 0 with err. */
static int loads(const char *name, const unsigned char *d, size_t n, char *err, size_t en) {
    err[0] = 0;
    const char *ext = strrchr(name, '.');
    void *m = NULL;
    if (strcmp(ext, ".rcnn") == 0) {
        cnn_free(m = cnn_load_mem(d, n, err, en));
    } else if (strcmp(ext, ".rsvm") == 0) {
        svm_free(m = svm_load_mem(d, n, err, en));
    } else if (strcmp(ext, ".rsph") == 0) {
        sph_destroy(m = sph_load(d, n, err, en));
    } else if (strcmp(ext, ".rsnt") == 0) {
        sent_destroy(m = sent_load_mem(d, n, err, en));
    } else {
        w2v_destroy(m = w2v_load_mem(d, n, err, en));
    }
    if (!m && !err[0]) fail_msg("%s refused without a reason", name);
    return m != NULL;
}

static void put_u32(unsigned char *p, uint32_t v) {
    memcpy(p, &v, 4);
}

/* Every seed, as reel's code wrote it, loads. */
static void test_seeds_load(void **state) {
    (void)state;
    char err[512];
    for (size_t i = 0; i < N_SEEDS; i++) {
        size_t n;
        unsigned char *d = slurp(seeds[i], &n);
        if (!loads(seeds[i], d, n, err, sizeof err)) fail_msg("%s: %s", seeds[i], err);
        free(d);
    }
}

/* A file cut short anywhere, or with a byte added, is refused. */
static void test_every_truncation_and_extension_is_refused(void **state) {
    (void)state;
    char err[512];
    for (size_t i = 0; i < N_SEEDS; i++) {
        size_t n;
        unsigned char *d = slurp(seeds[i], &n);
        /* the word2vec format ends each vector with a newline, which is
         * optional on reading */
        int w2v_text = strcmp(seeds[i], "word2vec.bin") == 0;
        for (size_t k = 0; k < n - (w2v_text && d[n - 1] == '\n'); k++) {
            unsigned char *cut = malloc(k + 1);
            memcpy(cut, d, k);
            fix_checksum(cut, k);
            if (loads(seeds[i], cut, k, err, sizeof err))
                fail_msg("%s cut to %zu of %zu bytes loaded", seeds[i], k, n);
            free(cut);
        }
        /* the word2vec text header format has no length to check against */
        if (!w2v_text) {
            unsigned char *more = malloc(n + 1);
            memcpy(more, d, n);
            more[n] = 0;
            if (memcmp(more, "RCNN", 4) == 0 || memcmp(more, "RSVM", 4) == 0) {
                /* one more byte before the checksum */
                memmove(more + n - 7, more + n - 8, 8);
                more[n - 8] = 0;
            }
            fix_checksum(more, n + 1);
            if (loads(seeds[i], more, n + 1, err, sizeof err))
                fail_msg("%s with a byte added loaded", seeds[i]);
            free(more);
        }
        free(d);
    }
}

/* Wrong magic, an unknown version: refused, and the reason says which. */
static void test_wrong_magic_and_version(void **state) {
    (void)state;
    char err[512];
    for (size_t i = 0; i < N_SEEDS; i++) {
        if (strcmp(seeds[i], "word2vec.bin") == 0) continue;
        size_t n;
        unsigned char *d = slurp(seeds[i], &n);
        d[0] ^= 0x20; /* RCNN -> rCNN */
        fix_checksum(d, n);
        assert_false(loads(seeds[i], d, n, err, sizeof err));
        if (!strstr(err, "magic") && !strstr(err, "not an RW2V"))
            fail_msg("%s wrong magic: '%s'", seeds[i], err);
        d[0] ^= 0x20;
        put_u32(d + 4, 99); /* no format has reached it */
        fix_checksum(d, n);
        assert_false(loads(seeds[i], d, n, err, sizeof err));
        if (!strstr(err, "version")) fail_msg("%s version 99: '%s'", seeds[i], err);
        free(d);
    }
}

/* Shapes that do not match the data (or are out of range) are refused. */
static void test_wrong_shapes(void **state) {
    (void)state;
    char err[512];
    size_t n;
    unsigned char *d;
    /* RCNN: u32 channels, height, width, classes at 8, 12, 16, 20 */
    static const struct {
        size_t off;
        uint32_t v;
    } cnn_edits[] = {{8, 0}, {8, 3}, {12, 12}, {16, 100000}, {20, 4}, {20, 1}, {24, 1 << 30}};
    for (size_t e = 0; e < sizeof cnn_edits / sizeof *cnn_edits; e++) {
        d = slurp("tiny.rcnn", &n);
        put_u32(d + cnn_edits[e].off, cnn_edits[e].v);
        fix_checksum(d, n);
        if (loads("tiny.rcnn", d, n, err, sizeof err))
            fail_msg("RCNN with %u at %zu loaded", cnn_edits[e].v, cnn_edits[e].off);
        free(d);
    }
    /* A bigger architecture than the parameters in the file: refused before
     * the network is built. */
    d = slurp("tiny.rcnn", &n);
    char *arch = memchr(d + 28, 'f', n - 28); /* "filters=2" */
    assert_non_null(arch);
    assert_memory_equal(arch, "filters=2", 9);
    arch[8] = '9';
    fix_checksum(d, n);
    assert_false(loads("tiny.rcnn", d, n, err, sizeof err));
    assert_non_null(strstr(err, "parameters"));
    free(d);

    /* RSVM: u32 version, kind, classes, dim, features, c, h, w from 4 */
    static const struct {
        size_t off;
        uint32_t v;
    } svm_edits[] = {{8, 2}, {12, 1}, {12, 5000}, {16, 7}, {16, 0}, {20, 3}, {24, 2}};
    for (size_t e = 0; e < sizeof svm_edits / sizeof *svm_edits; e++) {
        d = slurp("linear.rsvm", &n);
        put_u32(d + svm_edits[e].off, svm_edits[e].v);
        fix_checksum(d, n);
        if (loads("linear.rsvm", d, n, err, sizeof err))
            fail_msg("RSVM with %u at %zu loaded", svm_edits[e].v, svm_edits[e].off);
        free(d);
    }

    /* RSPH: i32 rate, dim, mixtures, words at 12, 16, 20, 24 */
    static const struct {
        size_t off;
        uint32_t v;
    } sph_edits[] = {{12, 100}, {16, 0}, {16, 5}, {16, 256}, {20, 32}, {24, 1}, {24, 256}};
    for (size_t e = 0; e < sizeof sph_edits / sizeof *sph_edits; e++) {
        d = slurp("hmm.rsph", &n);
        put_u32(d + sph_edits[e].off, sph_edits[e].v);
        if (loads("hmm.rsph", d, n, err, sizeof err))
            fail_msg("RSPH with %u at %zu loaded", sph_edits[e].v, sph_edits[e].off);
        free(d);
    }

    /* RSNT: u32 kind at 8 (a bag of words read as an LSTM), max_tokens */
    d = slurp("nblr.rsnt", &n);
    put_u32(d + 8, SENT_LSTM);
    assert_false(loads("nblr.rsnt", d, n, err, sizeof err));
    free(d);
    d = slurp("lstm.rsnt", &n);
    put_u32(d + 76, 2); /* version 2's nets: a second network that is not in the file */
    assert_false(loads("lstm.rsnt", d, n, err, sizeof err));
    assert_non_null(strstr(err, "truncated"));
    put_u32(d + 76, 1);
    put_u32(d + 8, 99);
    assert_false(loads("lstm.rsnt", d, n, err, sizeof err));
    free(d);

    /* RW2V: u32 dim at 8, flags at 12 */
    d = slurp("skipgram.rw2v", &n);
    put_u32(d + 8, 6);
    assert_false(loads("skipgram.rw2v", d, n, err, sizeof err));
    assert_non_null(strstr(err, "bytes of vectors"));
    put_u32(d + 8, 3);
    put_u32(d + 12, 0); /* no output vectors: the file is then too long */
    assert_false(loads("skipgram.rw2v", d, n, err, sizeof err));
    free(d);
}

/* Non-finite weights are refused: a NaN would make every output NaN. */
static void test_non_finite_weights(void **state) {
    (void)state;
    char err[512];
    const float nan = NAN;
    for (size_t i = 0; i < N_SEEDS; i++) {
        if (strcmp(seeds[i], "word2vec.bin") == 0) continue;
        size_t n;
        unsigned char *d = slurp(seeds[i], &n);
        /* the last float of the weights: before the checksum, or the end */
        size_t at = (memcmp(d, "RCNN", 4) == 0 || memcmp(d, "RSVM", 4) == 0) ? n - 12 : n - 4;
        memcpy(d + at, &nan, 4);
        fix_checksum(d, n);
        if (loads(seeds[i], d, n, err, sizeof err)) fail_msg("%s with a NaN loaded", seeds[i]);
        free(d);
    }
}

/* Inputs the fuzzer found (tests/fuzz/model_seeds/regress-*). */
static void test_fuzzer_regressions(void **state) {
    (void)state;
    static const char *const found[] = {"regress-sph-nul-name.rsph",
                                        "regress-rsnt-missing-bias.rsnt"};
    char err[512];
    for (size_t i = 0; i < sizeof found / sizeof found[0]; i++) {
        size_t n;
        unsigned char *d = slurp(found[i], &n);
        assert_false(loads(found[i], d, n, err, sizeof err));
        free(d);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seeds_load),
        cmocka_unit_test(test_every_truncation_and_extension_is_refused),
        cmocka_unit_test(test_wrong_magic_and_version),
        cmocka_unit_test(test_wrong_shapes),
        cmocka_unit_test(test_non_finite_weights),
        cmocka_unit_test(test_fuzzer_regressions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
