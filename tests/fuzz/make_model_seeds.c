/* make_model_seeds.c: writes the seed corpus of fuzz_model, one tiny model
 * of each format made by reel's own training code (a few KB each), so the
 * fuzzer starts from files that load and reaches deep into each parser.
 *
 *   make -C build-fuzz make_model_seeds && build-fuzz/make_model_seeds tests/fuzz/model_seeds
 *
 * The data are synthetic and the seeds fixed, so the files are the same on
 * every run on the same machine (little-endian x86-64 or aarch64). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/rec.h"
#include "kernels/speech/speech.h"
#include "kernels/text/sentiment.h"
#include "kernels/text/tokenize.h"
#include "kernels/text/word2vec.h"
#include "kernels/vision/cnn.h"
#include "kernels/vision/svm.h"
#include "tests/fuzz/rec_fuzz_config.h"

static const char *dir;
static char err[512];

static void die(const char *what) {
    fprintf(stderr, "make_model_seeds: %s: %s\n", what, err);
    exit(1);
}

static const char *path(const char *name) {
    static char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return p;
}

static uint64_t rng = 88172645463325252ull;
static float frand(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 40) & 0xffff) / 65536.0f;
}

static void cnn_seeds(void) {
    static const char arch[] = "[conv]\nfilters=2\nsize=3\nactivation=relu\n"
                               "[maxpool]\nsize=2\nstride=2\n"
                               "[dense]\noutput=4\nactivation=relu\n"
                               "[dropout]\nprobability=0.5\n"
                               "[dense]\noutput=classes\n[softmax]\n";
    static const char *labels[] = {"shirt", "shoe", "bag"};
    cnn_t *net = cnn_new(arch, 1, 8, 8, 3, labels, err, sizeof err);
    if (!net) die("cnn_new");
    cnn_init(net, 1);
    if (cnn_save(net, path("tiny.rcnn"), err, sizeof err) < 0) die("cnn_save");
    cnn_free(net);
    static const char arch2[] = "[conv]\nfilters=2\nsize=3\npad=1\nstride=2\nactivation=relu\n"
                                "[avgpool]\nsize=2\nstride=2\n[gap]\n"
                                "[dense]\noutput=classes\n[softmax]\n";
    net = cnn_new(arch2, 3, 6, 6, 2, NULL, err, sizeof err);
    if (!net) die("cnn_new 2");
    cnn_init(net, 2);
    if (cnn_save(net, path("gap_rgb.rcnn"), err, sizeof err) < 0) die("cnn_save 2");
    cnn_free(net);
}

static void svm_seeds(void) {
    enum { N = 24, D = 6, K = 3 };
    float x[N * D];
    int y[N];
    for (int i = 0; i < N; i++) {
        y[i] = i % K;
        for (int d = 0; d < D; d++) x[i * D + d] = frand() + (d % K == y[i] ? 1.5f : 0.0f);
    }
    static const char *labels[] = {"a", "b", "c"};
    svm_params_t p = svm_defaults(SVM_LINEAR);
    svm_t *m = svm_train(SVM_LINEAR, x, y, N, D, K, labels, &p, NULL, NULL, err, sizeof err);
    if (!m) die("svm linear");
    m->in_c = 1, m->in_h = 2, m->in_w = 3; /* pixels of a 2x3 grey image */
    if (svm_save(m, path("linear.rsvm"), err, sizeof err) < 0) die("svm_save");
    svm_free(m);
    p = svm_defaults(SVM_RBF);
    m = svm_train(SVM_RBF, x, y, N, D, K, labels, &p, NULL, NULL, err, sizeof err);
    if (!m) die("svm rbf");
    m->in_c = 1, m->in_h = 2, m->in_w = 3;
    if (svm_save(m, path("rbf.rsvm"), err, sizeof err) < 0) die("svm_save rbf");
    svm_free(m);
}

static void write_bytes(const char *name, const void *data, size_t len) {
    FILE *f = fopen(path(name), "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        snprintf(err, sizeof err, "write failed");
        die(name);
    }
}

/* Two words of synthetic 4-dimensional "features": each word a different
 * mean, silence around it. */
static void speech_seeds(void) {
    enum { D = 4, U = 8, T = 30 };
    static float feat[U][T * D];
    static int words[U];
    sph_utt_t utts[U];
    for (int u = 0; u < U; u++) {
        words[u] = 1 + u % 2;
        for (int t = 0; t < T; t++)
            for (int d = 0; d < D; d++) {
                float mean = (t >= 8 && t < 22) ? (words[u] == 1 ? 2.0f : -2.0f) * (d + 1) : 0.0f;
                feat[u][t * D + d] = mean + frand() - 0.5f;
            }
        utts[u] = (sph_utt_t){feat[u], T, &words[u], 1};
    }
    static const char *names[] = {"<sil>", "yes", "no"};
    sph_train_opts_t o;
    sph_default_train_opts(&o);
    o.rate = 8000;
    o.states_per_word = 2;
    o.sil_states = 1;
    o.n_mix = 1;
    o.viterbi_iters = 2;
    o.bw_iters = 1;
    o.seed = 1;
    o.verbose = 0;
    sph_model_t *m = sph_train_hmm(names, 3, utts, U, D, &o, err, sizeof err);
    if (!m) die("sph_train_hmm");
    size_t len;
    void *b = sph_serialize(m, &len);
    if (!b) die("sph_serialize");
    write_bytes("hmm.rsph", b, len);
    free(b);
    sph_mlp_opts_t mo;
    sph_default_mlp_opts(&mo);
    mo.hidden = 3;
    mo.layers = 1;
    mo.epochs = 1;
    mo.batch = 64;
    mo.seed = 1;
    mo.verbose = 0;
    if (sph_train_mlp(m, utts, U, &mo, err, sizeof err) < 0) die("sph_train_mlp");
    b = sph_serialize(m, &len);
    if (!b) die("sph_serialize mlp");
    write_bytes("hybrid.rsph", b, len);
    free(b);
    sph_destroy(m);
}

static const char *reviews[] = {
    "a good film", "great acting and a good plot", "bad , boring film", "not good at all",
    "good fun :)", "awful plot , bad acting",      "great film",        "boring and bad",
};

static void text_seeds(void) {
    size_t n = sizeof reviews / sizeof *reviews;
    sent_example_t ex[8];
    for (size_t i = 0; i < n; i++)
        ex[i] = (sent_example_t){reviews[i], strlen(reviews[i]), 1 - (int)(i / 2 % 2)};
    /* embeddings first: the RNNs start from them */
    vocab_t *all = vocab_new();
    char toks[64 * TOK_STRIDE];
    for (size_t i = 0; i < n; i++) {
        size_t nt = tok_split(reviews[i], strlen(reviews[i]), toks, 64, NULL);
        for (size_t t = 0; t < nt; t++) vocab_add(all, toks + t * TOK_STRIDE, 1);
    }
    vocab_t *v = vocab_prune(all, 1, 0, 0);
    w2v_corpus_t corpus = {0};
    for (size_t i = 0; i < n; i++) {
        size_t nt = tok_split(reviews[i], strlen(reviews[i]), toks, 64, NULL);
        w2v_corpus_add(&corpus, v, toks, nt);
    }
    w2v_params_t wp = w2v_defaults(W2V_SKIPGRAM);
    wp.dim = 3;
    wp.epochs = 1;
    wp.min_count = 1;
    wp.threads = 1;
    wp.seed = 1;
    w2v_t *emb = w2v_train(&wp, v, &corpus, NULL, NULL, NULL, err, sizeof err);
    if (!emb) die("w2v_train");
    if (w2v_save(emb, path("skipgram.rw2v"), 0, 1, err, sizeof err) < 0) die("w2v_save");
    if (w2v_save(emb, path("inputs_only.rw2v"), 0, 0, err, sizeof err) < 0) die("w2v_save 2");
    if (w2v_save(emb, path("word2vec.bin"), 1, 0, err, sizeof err) < 0) die("w2v_save bin");
    static const struct {
        int kind;
        const char *name;
    } kinds[] = {{SENT_NB, "nb.rsnt"},
                 {SENT_NBLR, "nblr.rsnt"},
                 {SENT_LSTM, "lstm.rsnt"},
                 {SENT_GRU, "gru.rsnt"},
                 {SENT_ENSEMBLE, "ensemble.rsnt"},
                 {SENT_BILSTM, "bilstm.rsnt"},
                 /* file version 3: a bidirectional LSTM (--bidir 1), lstm-nb */
                 {SENT_LSTM, "lstm-bidir.rsnt"},
                 {SENT_LSTMNB, "lstmnb.rsnt"}};
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
        sent_params_t p = sent_defaults(kinds[k].kind);
        p.dim = 3;
        p.hidden = 2;
        p.epochs = 1;
        p.batch = 4;
        p.min_count = 1;
        p.max_tokens = 16;
        p.max_vocab = 16;
        p.seed = 1;
        p.bidir = 0;
        if (strcmp(kinds[k].name, "lstm-bidir.rsnt") == 0) p.bidir = 1, p.dropout_word = 0.1f;
        sent_model_t *m = sent_train(
            &p, ex, n, kinds[k].kind == SENT_NB || kinds[k].kind == SENT_NBLR ? NULL : emb, NULL,
            NULL, err, sizeof err);
        if (!m) die(kinds[k].name);
        if (sent_save(m, path(kinds[k].name), err, sizeof err) < 0) die("sent_save");
        sent_destroy(m);
    }
    w2v_destroy(emb);
    w2v_corpus_free(&corpus);
    vocab_destroy(v);
    vocab_destroy(all);
}

/* A recommend state snapshot (RMEM, what recommend.state=memory keeps in
 * Redis): 12 users, 8 items, small caps so that every list evicts. In each
 * layout: counters kept once (rec_mem_new) and in both rows. */
static void rec_seed(int rowwise, const char *name) {
    rec_config_t cfg;
    rec_fuzz_config(&cfg);
    rec_mem_t *m = rowwise ? rec_mem_new_rowwise(&cfg) : rec_mem_new(&cfg);
    rec_work_t *w = rec_work_new(&cfg);
    if (!m || !w) die("rec_mem_new");
    rec_reader_t rd = rec_mem_reader(m);
    rec_deltas_t ds = {0};
    char reason[128], id[16];
    uint64_t s = 7;
    for (int k = 0; k < 120; k++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        rec_event_t e = {0};
        snprintf(id, sizeof id, "e%d", k);
        e.event_id = id;
        e.user_id = e.item_id = "x";
        e.user = (uint32_t)(s % 12);
        e.item = (uint32_t)(s >> 8) % 8;
        e.type = (rec_event_type_t)((s >> 16) % REC_EV_RATING);
        e.ts_ms = cfg.epoch_ms + k * 60000LL;
        ds.n = 0;
        if (rec_process_event(&cfg, &rd, w, &e, &ds, reason, sizeof reason) < 0 ||
            rec_mem_apply(m, ds.d, ds.n) < 0)
            die("rec_process_event");
    }
    rec_buf_t b = {0};
    if (rec_mem_save(m, &b) < 0) die("rec_mem_save");
    write_bytes(name, b.data, b.len);
    free(b.data);
    rec_deltas_free(&ds);
    rec_work_destroy(w);
    rec_mem_destroy(m);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: make_model_seeds DIR\n");
        return 2;
    }
    dir = argv[1];
    cnn_seeds();
    svm_seeds();
    speech_seeds();
    text_seeds();
    rec_seed(0, "state.rmem");
    rec_seed(1, "state-rowwise.rmem");
    return 0;
}
