/* fuzz_model.c: libFuzzer target for every model-file loader, the code that
 * parses model blobs from Redis (`reel model push` of any bytes) and model
 * files: the first four bytes pick the loader as the registry does
 * (pipeline/models.c): RCNN cnn_load_mem, RSVM svm_load_mem, RSPH sph_load,
 * RSNT sent_load_mem, RW2V w2v_load_mem, RMEM rec_mem_load (the recommend
 * worker's state snapshot, under tests/fuzz/rec_fuzz_config.h's settings;
 * anything else: the word2vec binary format, which w2v_load_mem also
 * reads).
 *
 *   CC=clang cmake -S . -B build-fuzz -DREEL_FUZZ=ON && make -C build-fuzz fuzz_model
 *   cp -r tests/fuzz/model_seeds corpus && build-fuzz/fuzz_model -max_total_time=600 corpus
 *
 * RCNN and RSVM files end with an FNV-1a checksum of everything before it,
 * which random mutations almost never match: each such input is also tried
 * with its checksum recomputed, so the fuzzer reaches the parser behind it.
 * A model that loads is then used once the way its worker uses it (a
 * forward pass, a prediction, a decode, a nearest-word query), so a loader
 * that accepts inconsistent shapes shows up as an out-of-bounds access
 * under ASan, and the formats that can be written back are round-tripped
 * byte for byte. Seeds: tests/fuzz/model_seeds (make_model_seeds.c). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/rec.h"
#include "kernels/speech/speech.h"
#include "kernels/text/sentiment.h"
#include "kernels/text/word2vec.h"
#include "kernels/vision/cnn.h"
#include "kernels/vision/svm.h"
#include "tests/fuzz/rec_fuzz_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t fnv1a(const unsigned char *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static void use_cnn(const uint8_t *data, size_t size) {
    char err[256];
    cnn_t *net = cnn_load_mem(data, size, err, sizeof err);
    if (!net) return;
    size_t in = (size_t)net->in_c * net->in_h * net->in_w;
    float *x = calloc(in ? in : 1, sizeof *x);
    if (!x) abort();
    for (size_t i = 0; i < in; i++) x[i] = (float)(i % 7) * 0.1f;
    (void)cnn_forward(net, x, 1, 0);
    size_t dim = 0;
    (void)cnn_embedding(net, &dim);
    free(x);
    cnn_free(net);
}

static void use_svm(const uint8_t *data, size_t size) {
    char err[256];
    svm_t *m = svm_load_mem(data, size, err, sizeof err);
    if (!m) return;
    float *x = calloc((size_t)m->dim, sizeof *x);
    float *p = calloc((size_t)m->n_classes, sizeof *p);
    if (!x || !p) abort();
    int best = svm_predict(m, x, p);
    if (best < 0 || best >= m->n_classes) abort();
    free(x);
    free(p);
    svm_free(m);
}

static void use_sph(const uint8_t *data, size_t size) {
    char err[256];
    sph_model_t *m = sph_load(data, size, err, sizeof err);
    if (!m) return;
    /* what loads is what was written */
    size_t len = 0;
    void *again = sph_serialize(m, &len);
    if (!again || len != size || memcmp(again, data, size) != 0) abort();
    free(again);
    int D = sph_dim(m), T = 24;
    float *feat = calloc((size_t)T * D, sizeof *feat);
    if (!feat) abort();
    for (int i = 0; i < T * D; i++) feat[i] = (float)((i * 37) % 11) * 0.3f - 1.5f;
    sph_hyp_t out[8];
    if (sph_decode(m, feat, T, SPH_GRAMMAR_LOOP, out, 8, err, sizeof err) > 0)
        for (int i = 0; i < 8 && i < T; i++)
            if (out[i].word < 0 || out[i].word >= sph_n_words(m)) break;
    (void)sph_decode(m, feat, T, SPH_GRAMMAR_ONE_WORD, out, 8, err, sizeof err);
    free(feat);
    sph_destroy(m);
}

/* Writes through write() into memory and compares with the input. */
#define ROUND_TRIP(write_call, data, size)                                                         \
    do {                                                                                           \
        char *buf_ = NULL;                                                                         \
        size_t len_ = 0;                                                                           \
        FILE *f_ = open_memstream(&buf_, &len_);                                                   \
        if (!f_) abort();                                                                          \
        int rc_ = (write_call);                                                                    \
        fclose(f_);                                                                                \
        if (rc_ != 0 || len_ != (size) || memcmp(buf_, (data), (size)) != 0) abort();              \
        free(buf_);                                                                                \
    } while (0)

static void use_sent(const uint8_t *data, size_t size) {
    char err[256];
    sent_model_t *m = sent_load_mem(data, size, err, sizeof err);
    if (!m) return;
    /* Older versions load but are written back as the current one: a file
     * of the version sent_write writes must come back byte for byte. */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) abort();
    int rc = sent_write(m, f);
    fclose(f);
    if (rc != 0 || len < 8) abort();
    if (memcmp(buf + 4, data + 4, 4) == 0 && (len != size || memcmp(buf, data, size) != 0)) abort();
    free(buf);
    static const char text[] = "a good film , not a bad one :) but the plot ... 10/10";
    float p = sent_predict(m, text, sizeof text - 1, NULL);
    (void)p;
    (void)sent_predict(m, (const char *)data, size > 200 ? 200 : size, NULL);
    sent_destroy(m);
}

static void use_w2v(const uint8_t *data, size_t size) {
    char err[256];
    w2v_t *m = w2v_load_mem(data, size, err, sizeof err);
    if (!m) return;
    if (size >= 4 && memcmp(data, "RW2V", 4) == 0) ROUND_TRIP(w2v_write(m, f_, 0, 1), data, size);
    if (m->vocab->n > 0) {
        int32_t ids[4];
        float sims[4];
        int n = w2v_nearest(m, m->vocab->words[0], 4, ids, sims);
        for (int i = 0; i < n; i++)
            if (ids[i] < 0 || (uint32_t)ids[i] >= m->vocab->n) abort();
    }
    w2v_destroy(m);
}

/* A state that loads is saved again and used as the worker uses it: one
 * event applied, recommendations for a user. */
static void use_rec(const uint8_t *data, size_t size) {
    rec_config_t cfg;
    rec_fuzz_config(&cfg);
    char err[256];
    rec_mem_t *m = rec_mem_load(&cfg, data, size, err, sizeof err);
    if (!m) return;
    rec_buf_t b = {0};
    if (rec_mem_save(m, &b) < 0) abort();
    free(b.data);
    rec_work_t *w = rec_work_new(&cfg);
    rec_reader_t rd = rec_mem_reader(m);
    rec_deltas_t ds = {0};
    rec_event_t e = {0};
    e.event_id = "fuzz";
    e.user_id = e.item_id = "x";
    e.user = 1;
    e.item = 2;
    e.type = REC_EV_PLAY;
    e.ts_ms = cfg.epoch_ms + 1000;
    char reason[128];
    rec_rec_t out[10];
    if (!w || rec_process_event(&cfg, &rd, w, &e, &ds, reason, sizeof reason) < 0 ||
        rec_mem_apply(m, ds.d, ds.n) < 0 ||
        rec_recommend(&cfg, &rd, w, 1, REC_SRC_ALL, NULL, 0, out, 10) < 0)
        abort();
    rec_deltas_free(&ds);
    rec_work_destroy(w);
    rec_mem_destroy(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int cnn = size >= 4 && memcmp(data, "RCNN", 4) == 0;
    int svm = size >= 4 && memcmp(data, "RSVM", 4) == 0;
    if (cnn || svm) {
        if (cnn)
            use_cnn(data, size);
        else
            use_svm(data, size);
        if (size >= 16) {
            uint8_t *fixed = malloc(size);
            if (!fixed) abort();
            memcpy(fixed, data, size);
            uint64_t h = fnv1a(fixed, size - 8);
            memcpy(fixed + size - 8, &h, 8);
            if (cnn)
                use_cnn(fixed, size);
            else
                use_svm(fixed, size);
            free(fixed);
        }
    } else if (size >= 4 && memcmp(data, SPH_MAGIC, 4) == 0) {
        use_sph(data, size);
    } else if (size >= 4 && memcmp(data, "RSNT", 4) == 0) {
        use_sent(data, size);
    } else if (size >= 4 && memcmp(data, "RMEM", 4) == 0) {
        use_rec(data, size);
    } else {
        use_w2v(data, size);
    }
    return 0;
}
