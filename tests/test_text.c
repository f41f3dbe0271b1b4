/* test_text.c: the text kernels: tokenizer, vocabulary, bag of words,
 * LSTM/GRU gradients against finite differences, small trainings that must
 * reach a stated accuracy, word2vec neighbours, and model files. */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "kernels/text/bow.h"
#include "kernels/text/lstm.h"
#include "kernels/text/sentiment.h"
#include "kernels/text/tokenize.h"
#include "kernels/text/word2vec.h"

/* Tokens of s joined by '|'. */
static const char *toks(const char *s, size_t len, size_t max, unsigned *flags) {
    static char buf[64 * TOK_STRIDE], out[4096];
    size_t n = tok_split(s, len, buf, max, flags);
    out[0] = 0;
    for (size_t i = 0; i < n; i++) {
        if (i) strcat(out, "|");
        strcat(out, buf + i * TOK_STRIDE);
    }
    return out;
}
#define TOKS(s) toks(s, strlen(s), 64, NULL)

/* Clitics split the Penn Treebank way, whether the text was tokenized
 * already (custrev) or not (rt-polarity), so both corpora agree. */
static void test_tokenizer_clitics(void **state) {
    (void)state;
    assert_string_equal(TOKS("It's GOOD, doesn't it? I'm sure."),
                        "it|'s|good|,|does|n't|it|?|i|'m|sure|.");
    assert_string_equal(TOKS("it 's good , does n't it ? i 'm sure ."),
                        "it|'s|good|,|does|n't|it|?|i|'m|sure|.");
    assert_string_equal(TOKS("can't won't they're we've o'clock"),
                        "ca|n't|wo|n't|they|'re|we|'ve|o'clock");
    assert_string_equal(TOKS("\"quoted\" `words' here"), "quoted|words|here");
}

/* Numbers and hyphenated words stay whole; punctuation is one token each. */
static void test_tokenizer_numbers_punct(void **state) {
    (void)state;
    assert_string_equal(TOKS("3.5 stars, 1,000 times -- too-tepid!!"),
                        "3.5|stars|,|1,000|times|-|-|too-tepid|!|!");
    assert_string_equal(TOKS("end. 21st-century"), "end|.|21st-century");
}

/* Latin-1 input (not valid UTF-8) is decoded and re-encoded as UTF-8. */
static void test_tokenizer_latin1(void **state) {
    (void)state;
    unsigned fl = 0;
    const char lat[] = "Caf\xe9 na\xefve R\xc9SUM\xc9";
    assert_string_equal(toks(lat, strlen(lat), 64, &fl),
                        "caf\xc3\xa9|na\xc3\xafve|r\xc3\xa9sum\xc3\xa9");
    assert_true(fl & TOK_LATIN1);
    const char utf[] = "Caf\xc3\xa9 \xc3\x89T\xc3\x89";
    assert_string_equal(toks(utf, strlen(utf), 64, &fl), "caf\xc3\xa9|\xc3\xa9t\xc3\xa9");
    assert_false(fl & TOK_LATIN1);
    assert_false(tok_utf8_valid("\xc0\xaf", 2));         /* overlong */
    assert_false(tok_utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
    assert_false(tok_utf8_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
    assert_true(tok_utf8_valid("\xf0\x9f\x98\x80", 4));
}

/* Emoji and CJK characters are tokens of their own; NUL, joiners and
 * variation selectors are spaces. */
static void test_tokenizer_emoji_cjk_nul(void **state) {
    (void)state;
    const char s[] = "great\xf0\x9f\x98\x80\xf0\x9f\x91\x8d\xef\xb8\x8f \xe5\xa5\xbd\xe7\x9c\x8b";
    assert_string_equal(TOKS(s),
                        "great|\xf0\x9f\x98\x80|\xf0\x9f\x91\x8d|\xe5\xa5\xbd|\xe7\x9c\x8b");
    const char nul[] = "a\0b\0\0c";
    assert_string_equal(toks(nul, sizeof nul - 1, 64, NULL), "a|b|c");
    assert_string_equal(TOKS(""), "");
    assert_string_equal(TOKS(" \t\" ' "), "");
}

/* At most max tokens, flagged when more were cut; a long word is cut at a
 * character boundary to TOK_MAX_BYTES. */
static void test_tokenizer_limits(void **state) {
    (void)state;
    unsigned fl = 0;
    assert_string_equal(toks("a b c d e", 9, 3, &fl), "a|b|c");
    assert_true(fl & TOK_TRUNCATED);
    assert_string_equal(toks("a b c   ", 8, 3, &fl), "a|b|c");
    assert_false(fl & TOK_TRUNCATED);
    assert_string_equal(toks("don't", 5, 1, &fl), "do");
    assert_true(fl & TOK_TRUNCATED);
    char longw[400];
    for (int i = 0; i < 100; i++) memcpy(longw + 2 * i, "\xc3\xa9", 2); /* 100 x é */
    longw[200] = 0;
    const char *t = TOKS(longw);
    assert_true(strlen(t) <= TOK_MAX_BYTES && strlen(t) % 2 == 0);
    assert_true(tok_utf8_valid(t, strlen(t)));
}

static void test_vocab_roundtrip(void **state) {
    (void)state;
    vocab_t *v = vocab_new();
    const char *words[] = {"b", "a", "c", "a", "b", "a", "d"};
    for (int i = 0; i < 7; i++) assert_true(vocab_add(v, words[i], 1) >= 0);
    for (int i = 0; i < 5000; i++) {
        char w[16];
        snprintf(w, sizeof w, "w%d", i);
        assert_int_equal(vocab_add(v, w, 1), 4 + i);
    }
    assert_int_equal(vocab_find(v, "w4321"), 4 + 4321);
    vocab_t *p = vocab_prune(v, 2, 0, 1);
    assert_int_equal(p->n, 3);
    assert_string_equal(p->words[0], VOCAB_UNK);
    assert_string_equal(p->words[1], "a"); /* most frequent first */
    assert_string_equal(p->words[2], "b");
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_int_equal(vocab_write(p, f), 0);
    fclose(f);
    char err[200];
    size_t pos = 0;
    vocab_t *r = vocab_read((unsigned char *)buf, len, &pos, err, sizeof err);
    assert_non_null(r);
    assert_int_equal(pos, len);
    assert_int_equal(r->n, 3);
    assert_int_equal(r->counts[1], 3);
    assert_int_equal(vocab_find(r, "b"), 2);
    for (size_t cut = 0; cut < len; cut++) {
        pos = 0;
        assert_null(vocab_read((unsigned char *)buf, cut, &pos, err, sizeof err));
    }
    vocab_destroy(r);
    free(buf);
    vocab_destroy(p);
    vocab_destroy(v);
}

/* Threads pruning their own vocabularies at once (eval --threads trains
 * folds in parallel) each get their own words in count order. */
typedef struct prune_job {
    int id, bad;
} prune_job_t;

static void *prune_thread(void *arg) {
    prune_job_t *j = arg;
    vocab_t *v = vocab_new();
    char w[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(w, sizeof w, "t%d-w%04d", j->id, i);
        vocab_add(v, w, (uint64_t)(1 + (i * 7919) % 5000));
    }
    for (int round = 0; round < 30; round++) {
        vocab_t *p = vocab_prune(v, 2, 0, 1);
        if (!p || p->n != 5000) { /* counts 1..5000 once each: 4999 kept + unknown */
            j->bad++;
            vocab_destroy(p);
            continue;
        }
        for (uint32_t i = 2; i < p->n; i++)
            if (p->counts[i] > p->counts[i - 1] || strncmp(p->words[i], w, 3) != 0) j->bad++;
        vocab_destroy(p);
    }
    vocab_destroy(v);
    return NULL;
}

static void test_vocab_prune_threads(void **state) {
    (void)state;
    pthread_t th[4];
    prune_job_t jobs[4] = {{0, 0}, {1, 0}, {2, 0}, {3, 0}};
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, prune_thread, &jobs[i]), 0);
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(jobs[i].bad, 0);
    }
}

/* ---- gradient checks ---- */

/* dirs 2: bidirectional; with_offset: logits shifted by a fixed offset
 * (lstm-nb's log-odds). */
static void gradcheck(int cell, int pool, int dirs, int with_offset) {
    const int V = 6, D = 3, H = 4, B = 3, T = 5;
    rnn_t *m = rnn_new(cell, pool, dirs, V, D, H, 2, 7);
    assert_non_null(m);
    /* Larger weights than the init, so the gates are away from 0.5. */
    for (size_t i = 0; i < m->n_params; i++) m->params[i] *= 2.0f;
    rnn_work_t *w = rnn_work_new(m, B, T);
    int32_t ids[3 * 5] = {1, 2, 3, 4, 5, 5, 0, 2, 0, 0, 3, 1, 1, 4, 2};
    int lens[3] = {5, 3, 0}; /* padding and an empty sequence */
    int labels[3] = {1, 0, 1};
    float *grad = calloc(m->n_params, sizeof *grad);
    const float offs[3 * 2] = {0, 1.5f, 0, -2.0f, 0, 0.7f}, *off = with_offset ? offs : NULL;
    rnn_forward_offset(m, w, ids, lens, B, T, labels, off, 0, 0, NULL, NULL);
    rnn_backward(m, w, ids, lens, B, T, labels, grad);
    double max_err = 0;
    int checked = 0;
    for (size_t i = 0; i < m->n_params; i++) {
        float keep = m->params[i];
        const double eps = 2e-3;
        m->params[i] = keep + (float)eps;
        double lp = rnn_forward_offset(m, w, ids, lens, B, T, labels, off, 0, 0, NULL, NULL);
        m->params[i] = keep - (float)eps;
        double lm = rnn_forward_offset(m, w, ids, lens, B, T, labels, off, 0, 0, NULL, NULL);
        m->params[i] = keep;
        double num = (lp - lm) / (2 * eps);
        double err = fabs(num - grad[i]) / fmax(1e-2, fabs(num) + fabs(grad[i]));
        if (err > max_err) max_err = err;
        if (err > 1e-2) print_message("param %zu: numeric %g analytic %g\n", i, num, grad[i]);
        checked++;
    }
    /* Max pooling is piecewise: a step of eps that switches an argmax (a
     * near tie, likely when gates saturate) breaks the finite difference, so
     * the weights are only doubled. A wrong gradient gives errors near 1. */
    print_message("%s%s, %s pooling%s: %d parameters, max relative error %.2e\n",
                  dirs == 2 ? "bidirectional " : "", cell == RNN_GRU ? "GRU" : "LSTM",
                  pool == RNN_POOL_MAX ? "max" : "mean+max", with_offset ? ", logit offset" : "",
                  checked, max_err);
    assert_true(max_err < 1e-2);
    /* The padding id 0 of a real step gets a gradient too. */
    for (int d = 0; d < D; d++) assert_true(grad[0 * D + d] != 0.0f); /* id 0 is used */
    free(grad);
    rnn_work_destroy(w);
    rnn_destroy(m);
}

static void test_lstm_gradients(void **state) {
    (void)state;
    gradcheck(RNN_LSTM, RNN_POOL_MAX, 1, 0);
    gradcheck(RNN_LSTM, RNN_POOL_MEANMAX, 1, 0);
    gradcheck(RNN_LSTM, RNN_POOL_MAX, 1, 1);
}
static void test_bilstm_gradients(void **state) {
    (void)state;
    gradcheck(RNN_LSTM, RNN_POOL_MAX, 2, 0);
    gradcheck(RNN_LSTM, RNN_POOL_MEANMAX, 2, 1);
    gradcheck(RNN_GRU, RNN_POOL_MAX, 2, 0);
}
static void test_gru_gradients(void **state) {
    (void)state;
    gradcheck(RNN_GRU, RNN_POOL_MAX, 1, 0);
    gradcheck(RNN_GRU, RNN_POOL_MEANMAX, 1, 0);
}

/* ---- small trainings ---- */

/* Sentences of filler words with "good" or "bad", negated by "not" half of
 * the time: the label depends on order, which a bag of unigrams cannot get. */
static sent_example_t *synthetic(size_t n, uint64_t seed, char **store) {
    static const char *fill[] = {"the", "movie", "was",  "plot", "actors", "and",
                                 "a",   "very",  "film", "it",   "story",  "really"};
    sent_example_t *ex = calloc(n, sizeof *ex);
    *store = malloc(n * 128);
    for (size_t i = 0; i < n; i++) {
        char *s = *store + i * 128;
        s[0] = 0;
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        int good = (seed >> 33) & 1, neg = (seed >> 34) & 1, len = 3 + (int)((seed >> 40) % 6);
        int at = (int)((seed >> 50) % (uint64_t)len);
        for (int k = 0; k < len; k++) {
            if (k == at) {
                if (neg) strcat(s, "not ");
                strcat(s, good ? "good " : "bad ");
            }
            strcat(s, fill[(seed >> (k * 3 % 30)) % 12]);
            strcat(s, " ");
        }
        ex[i] = (sent_example_t){s, strlen(s), good ^ neg};
    }
    return ex;
}

static double accuracy(sent_model_t *m, const sent_example_t *ex, size_t n) {
    size_t right = 0;
    for (size_t i = 0; i < n; i++)
        right += (sent_predict(m, ex[i].text, ex[i].len, NULL) >= 0.5f) == ex[i].label;
    return (double)right / (double)n;
}

static void train_synthetic_bidir(int kind, int bidir, double want) {
    char *s1, *s2, err[256];
    sent_example_t *tr = synthetic(1200, 1, &s1), *te = synthetic(300, 99, &s2);
    sent_params_t p = sent_defaults(kind);
    p.dim = 16, p.hidden = 16, p.epochs = 8, p.lr = 1e-2f, p.dropout = 0.1f, p.dropout_in = 0;
    p.bidir = bidir;
    sent_model_t *m = sent_train(&p, tr, 1200, NULL, NULL, NULL, err, sizeof err);
    assert_non_null(m);
    double acc = accuracy(m, te, 300);
    print_message("%s%s on negated good/bad: held-out accuracy %.3f (want >= %.2f)\n",
                  sent_kind_name(kind), bidir ? " --bidir 1" : "", acc, want);
    assert_true(acc >= want);
    sent_destroy(m);
    free(tr), free(te), free(s1), free(s2);
}

static void train_synthetic(int kind, double want) {
    train_synthetic_bidir(kind, 0, want);
}

static void test_lstm_learns_negation(void **state) {
    (void)state;
    train_synthetic(SENT_LSTM, 0.95);
}
/* Bidirectional; and lstm-nb, whose NB-LR gets the bigrams "not good"
 * and "not bad" and whose LSTM the rest. */
static void test_bilstm_lstmnb_learn_negation(void **state) {
    (void)state;
    train_synthetic_bidir(SENT_LSTM, 1, 0.95);
    train_synthetic(SENT_LSTMNB, 0.95);
}
static void test_gru_learns_negation(void **state) {
    (void)state;
    train_synthetic(SENT_GRU, 0.95);
}
/* Bigrams ("not good") let the bag of words get it too. */
static void test_bow_learns_negation(void **state) {
    (void)state;
    train_synthetic(SENT_NBLR, 0.95);
    train_synthetic(SENT_NB, 0.9);
}

/* Early stopping: the trainer's held-out split (sent_holdout(), stratified),
 * the accuracy it records each epoch (checked against one computed here from
 * the progress callback's model), and the weights it returns are the best
 * epoch's: their held-out accuracy is the highest recorded, at the epoch
 * reported. Labels 30% flipped and a high learning rate so the held-out
 * accuracy moves between epochs. */
typedef struct es_watch {
    const sent_example_t *ho;
    size_t nho;
    double acc[16];
    int n;
} es_watch_t;

static void es_progress(int epoch, float loss, double seconds, sent_model_t *m, void *arg) {
    (void)loss, (void)seconds;
    es_watch_t *w = arg;
    assert_int_equal(epoch, w->n + 1);
    w->acc[w->n++] = accuracy(m, w->ho, w->nho);
}

static void test_early_stop_keeps_best(void **state) {
    (void)state;
    char *s1, err[256];
    const size_t n = 400;
    sent_example_t *ex = synthetic(n, 7, &s1), *ho = calloc(n, sizeof *ho);
    uint64_t r = 3;
    for (size_t i = 0; i < n; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        if ((r >> 33) % 10 < 3) ex[i].label ^= 1;
    }
    unsigned char held[400];
    sent_params_t p = sent_defaults(SENT_LSTM);
    p.dim = 8, p.hidden = 8, p.epochs = 8, p.lr = 3e-2f, p.dropout = 0, p.dropout_in = 0;
    p.early_stop = 0.25f, p.seed = 5, p.average = 0; /* early stopping keeps one epoch's weights */
    size_t nho = sent_holdout(ex, n, p.early_stop, p.seed, held), pos = 0, hpos = 0;
    for (size_t i = 0; i < n; i++) {
        pos += ex[i].label == 1;
        if (held[i]) hpos += ex[i].label == 1;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (held[i]) ho[k++] = ex[i];
    assert_int_equal(k, nho);
    /* Stratified: a quarter of each label, rounded. */
    assert_int_equal(hpos, (size_t)(0.25 * (double)pos + 0.5));
    assert_int_equal(nho - hpos, (size_t)(0.25 * (double)(n - pos) + 0.5));
    es_watch_t w = {ho, nho, {0}, 0};
    sent_model_t *m = sent_train(&p, ex, n, NULL, es_progress, &w, err, sizeof err);
    assert_non_null(m);
    float hist[16], best_acc;
    int best = 0;
    assert_int_equal(sent_early_stop(m, &best, &best_acc, hist, 16), p.epochs);
    assert_int_equal(w.n, p.epochs);
    int argmax = 0;
    for (int e = 0; e < p.epochs; e++) {
        assert_true(fabs(hist[e] - w.acc[e]) < 1e-6);
        if (w.acc[e] > w.acc[argmax]) argmax = e;
    }
    double final = accuracy(m, ho, nho);
    print_message("early stopping: held-out accuracy by epoch");
    for (int e = 0; e < p.epochs; e++) print_message(" %.3f", w.acc[e]);
    print_message("; kept epoch %d, returned model %.3f\n", best, final);
    assert_int_equal(best, argmax + 1);
    assert_true(fabs(final - w.acc[argmax]) < 1e-6);
    assert_true(fabs(best_acc - w.acc[argmax]) < 1e-6);
    sent_destroy(m);
    /* --early-refit: the same choice, then a model trained on all the
     * examples for that many epochs, carrying the record. */
    p.early_refit = 1;
    m = sent_train(&p, ex, n, NULL, NULL, NULL, err, sizeof err);
    assert_non_null(m);
    int best2 = 0;
    assert_int_equal(sent_early_stop(m, &best2, NULL, hist, 16), p.epochs);
    assert_int_equal(best2, best);
    assert_int_equal(sent_params(m)->epochs, best);
    assert_true(fabs(hist[argmax] - w.acc[argmax]) < 1e-6);
    sent_destroy(m);
    p.early_refit = 0;
    /* Without it: nothing recorded; with a kind it does not apply to: refused. */
    p.early_stop = 0, p.epochs = 1;
    m = sent_train(&p, ex, n, NULL, NULL, NULL, err, sizeof err);
    assert_non_null(m);
    assert_int_equal(sent_early_stop(m, &best, NULL, NULL, 0), 0);
    assert_int_equal(best, 0);
    sent_destroy(m);
    p = sent_defaults(SENT_NBLR), p.early_stop = 0.1f;
    assert_null(sent_train(&p, ex, n, NULL, NULL, NULL, err, sizeof err));
    free(ex), free(ho), free(s1);
}

/* Real sentences: the committed movie-review sample (Latin-1), trained on
 * 700, tested on 120. Small, so the bar is modest (chance is 0.5). */
static void test_bow_on_review_sample(void **state) {
    (void)state;
    const char *src = getenv("REEL_SOURCE_DIR");
    char path[1024], err[256];
    snprintf(path, sizeof path, "%s/examples/reviews-sample/reviews.tsv", src ? src : ".");
    size_t len = 0;
    char *data = sent_read_file(path, &len, err, sizeof err);
    assert_non_null(data);
    sent_example_t ex[1000];
    size_t n = 0;
    for (char *line = data; line < data + len && n < 1000;) {
        char *nl = memchr(line, '\n', (size_t)(data + len - line));
        if (!nl) nl = data + len;
        *nl = 0;
        ex[n++] = (sent_example_t){line + 2, strlen(line + 2), line[0] == '1'};
        line = nl + 1;
    }
    assert_int_equal(n, 820);
    for (int kind = SENT_NB; kind <= SENT_NBLR; kind++) {
        sent_params_t p = sent_defaults(kind);
        sent_model_t *m = sent_train(&p, ex, 700, NULL, NULL, NULL, err, sizeof err);
        assert_non_null(m);
        double acc = accuracy(m, ex + 700, 120);
        print_message("%s on the review sample: held-out accuracy %.3f\n", sent_kind_name(kind),
                      acc);
        assert_true(acc >= 0.62);
        assert_true(accuracy(m, ex, 700) >= 0.95);
        sent_destroy(m);
    }
    free(data);
}

/* Saved and loaded models predict the same; every truncation of a file is
 * refused cleanly. */
static void test_model_files(void **state) {
    (void)state;
    char *s1, err[256];
    sent_example_t *tr = synthetic(200, 5, &s1);
    char path[] = "/tmp/test_text_model.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    for (int kind = SENT_NB; kind < SENT_KINDS; kind++) {
        sent_params_t p = sent_defaults(kind);
        p.dim = 8, p.hidden = 8, p.epochs = 2;
        sent_model_t *m = sent_train(&p, tr, 200, NULL, NULL, NULL, err, sizeof err);
        assert_non_null(m);
        assert_int_equal(sent_save(m, path, err, sizeof err), 0);
        size_t len;
        unsigned char *d = sent_read_file(path, &len, err, sizeof err);
        assert_non_null(d);
        assert_memory_equal(d, "RSNT", 4);
        sent_model_t *l = sent_load_mem(d, len, err, sizeof err);
        assert_non_null(l);
        for (int i = 0; i < 50; i++)
            assert_true(sent_predict(m, tr[i].text, tr[i].len, NULL) ==
                        sent_predict(l, tr[i].text, tr[i].len, NULL));
        sent_destroy(l);
        size_t step = len > 4000 ? len / 997 : 1;
        for (size_t cut = 0; cut < len; cut += step)
            assert_null(sent_load_mem(d, cut, err, sizeof err));
        free(d);
        sent_destroy(m);
    }
    unlink(path);
    free(tr), free(s1);
}

/* Ensembles of RNNs (seeds x snapshots, mean+max pooling, averaged
 * weights, the naive-Bayes embedding column) round trip through files;
 * version-1 files (before these fields) still load; bad values in the
 * header are refused. */
static void test_rnn_ensemble_files(void **state) {
    (void)state;
    char *s1, err[256];
    sent_example_t *tr = synthetic(200, 5, &s1);
    char path[] = "/tmp/test_text_ens.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    size_t single_len = 0;
    for (int variant = 0; variant < 4; variant++) {
        sent_params_t p = sent_defaults(variant == 2 ? SENT_BILSTM : SENT_LSTM);
        p.dim = 8, p.hidden = 8, p.epochs = 3, p.nets = 1, p.snapshots = 1, p.average = 0;
        p.pool = RNN_POOL_MAX, p.bidir = 0; /* variant 0 can be written as version 1 */
        if (variant == 1 || variant == 2)
            p.nets = 2, p.snapshots = 2, p.average = 1, p.pool = RNN_POOL_MEANMAX, p.nb_init = 1;
        if (variant == 3) /* one bidirectional network, word dropout */
            p.bidir = 1, p.dropout_word = 0.2f, p.pool = RNN_POOL_MEANMAX;
        sent_model_t *m = sent_train(&p, tr, 200, NULL, NULL, NULL, err, sizeof err);
        assert_non_null(m);
        assert_int_equal(sent_save(m, path, err, sizeof err), 0);
        size_t len;
        unsigned char *d = sent_read_file(path, &len, err, sizeof err);
        assert_non_null(d);
        sent_model_t *l = sent_load_mem(d, len, err, sizeof err);
        assert_non_null(l);
        assert_int_equal(sent_params(l)->nets, p.nets);
        assert_int_equal(sent_params(l)->snapshots, p.snapshots);
        assert_int_equal(sent_params(l)->pool, p.pool);
        assert_int_equal(sent_params(l)->bidir, p.bidir);
        assert_true(sent_params(l)->dropout_word == p.dropout_word);
        for (int i = 0; i < 50; i++)
            assert_true(sent_predict(m, tr[i].text, tr[i].len, NULL) ==
                        sent_predict(l, tr[i].text, tr[i].len, NULL));
        sent_destroy(l);
        if (variant == 0) {
            single_len = len;
            /* The same file in the version-1 layout (no pool, nets, average,
             * lr_decay, snapshots, nb_init after `lazy`, at byte 72) and in the
             * version-2 layout (no dropout_word, bidir after nb_init, at byte
             * 96) loads and predicts the same. */
            for (int ver = 1; ver <= 2; ver++) {
                size_t keep = ver == 1 ? 72 : 96, cut = 104 - keep;
                unsigned char *old = malloc(len);
                memcpy(old, d, keep);
                memcpy(old + keep, d + 104, len - 104);
                old[4] = (unsigned char)ver;
                l = sent_load_mem(old, len - cut, err, sizeof err);
                assert_non_null(l);
                assert_int_equal(sent_params(l)->nets, 1);
                assert_int_equal(sent_params(l)->bidir, 0);
                for (int i = 0; i < 50; i++)
                    assert_true(sent_predict(m, tr[i].text, tr[i].len, NULL) ==
                                sent_predict(l, tr[i].text, tr[i].len, NULL));
                sent_destroy(l);
                free(old);
            }
            /* Bad header values: pool 2, nets 0, 17 members, bidir 2, version 4. */
            const struct {
                size_t off;
                unsigned char byte;
            } bad[] = {{72, 2}, {76, 0}, {76, 17}, {100, 2}, {4, 4}};
            for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
                unsigned char keep = d[bad[b].off];
                d[bad[b].off] = bad[b].byte;
                assert_null(sent_load_mem(d, len, err, sizeof err));
                d[bad[b].off] = keep;
            }
        } else if (variant == 3) {
            /* The second direction's weights: more than one network's,
             * less than two. */
            assert_true(len > single_len && len < 2 * single_len);
            size_t step = len / 499;
            for (size_t cut = 0; cut < len; cut += step)
                assert_null(sent_load_mem(d, cut, err, sizeof err));
        } else {
            /* Four networks of the same shape; mean+max doubles the dense
             * layer, which is small next to the embeddings. */
            assert_true(len > 3 * single_len);
            size_t step = len / 499;
            for (size_t cut = 0; cut < len; cut += step)
                assert_null(sent_load_mem(d, cut, err, sizeof err));
        }
        free(d);
        sent_destroy(m);
    }
    /* Training refuses impossible ensembles. */
    sent_params_t p = sent_defaults(SENT_LSTM);
    p.nets = 0;
    assert_null(sent_train(&p, tr, 200, NULL, NULL, NULL, err, sizeof err));
    p.nets = 4, p.snapshots = 5;
    assert_null(sent_train(&p, tr, 200, NULL, NULL, NULL, err, sizeof err));
    unlink(path);
    free(tr), free(s1);
}

/* Two topics whose words never meet: each word's nearest neighbours come
 * from its own topic, for skip-gram and CBOW, on two threads; the file
 * round trip keeps the vectors. */
static void test_word2vec_topics(void **state) {
    (void)state;
    for (int arch = 0; arch < 2; arch++) {
        vocab_t *v = vocab_new();
        char w[16], tok[8 * TOK_STRIDE];
        for (int i = 0; i < 20; i++) {
            snprintf(w, sizeof w, "%c%d", i < 10 ? 'a' : 'b', i % 10);
            vocab_add(v, w, 1000);
        }
        w2v_corpus_t c = {0};
        uint64_t s = 42;
        for (int sent = 0; sent < 4000; sent++) {
            int topic = sent & 1;
            for (int k = 0; k < 8; k++) {
                s = s * 6364136223846793005ull + 1;
                snprintf(tok + k * TOK_STRIDE, TOK_STRIDE, "%c%d", topic ? 'b' : 'a',
                         (int)((s >> 33) % 10));
            }
            assert_int_equal(w2v_corpus_add(&c, v, tok, 8), 0);
        }
        w2v_params_t p = w2v_defaults(arch);
        p.dim = 20, p.threads = 2, p.min_count = 1, p.sample = 0, p.epochs = 3;
        char err[256];
        w2v_t *m = w2v_train(&p, v, &c, NULL, NULL, NULL, err, sizeof err);
        assert_non_null(m);
        int32_t ids[5];
        float sims[5];
        int same = 0;
        for (int q = 0; q < 20; q++) {
            int n = w2v_nearest(m, v->words[q], 5, ids, sims);
            assert_int_equal(n, 5);
            for (int k = 0; k < 5; k++) same += m->vocab->words[ids[k]][0] == v->words[q][0];
        }
        print_message("%s: %d of 100 nearest neighbours in the same topic\n", arch ? "cbow" : "sg",
                      same);
        assert_true(same >= 95);
        char path[] = "/tmp/test_text_w2v.XXXXXX";
        int fd = mkstemp(path);
        close(fd);
        for (int fmt = 0; fmt < 2; fmt++) {
            assert_int_equal(w2v_save(m, path, fmt, 1, err, sizeof err), 0);
            w2v_t *l = w2v_load(path, err, sizeof err);
            assert_non_null(l);
            assert_int_equal(l->vocab->n, 20);
            assert_memory_equal(l->vec, m->vec, 20 * 20 * sizeof(float));
            assert_true(fmt ? l->out == NULL : l->out != NULL);
            w2v_destroy(l);
        }
        unlink(path);
        /* Online updates move the vectors of the sentence's words only. */
        float before = m->vec[0], other = m->vec[19 * 20];
        int32_t sent[4] = {0, 1, 2, 3};
        uint64_t rng = 1;
        for (int i = 0; i < 10; i++) assert_int_equal(w2v_update(m, &p, sent, 4, 0.05f, &rng), 0);
        assert_true(m->vec[0] != before);
        assert_true(m->vec[19 * 20] == other);
        w2v_destroy(m);
        w2v_corpus_free(&c);
        vocab_destroy(v);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokenizer_clitics),
        cmocka_unit_test(test_tokenizer_numbers_punct),
        cmocka_unit_test(test_tokenizer_latin1),
        cmocka_unit_test(test_tokenizer_emoji_cjk_nul),
        cmocka_unit_test(test_tokenizer_limits),
        cmocka_unit_test(test_vocab_roundtrip),
        cmocka_unit_test(test_vocab_prune_threads),
        cmocka_unit_test(test_lstm_gradients),
        cmocka_unit_test(test_gru_gradients),
        cmocka_unit_test(test_lstm_learns_negation),
        cmocka_unit_test(test_gru_learns_negation),
        cmocka_unit_test(test_bow_learns_negation),
        cmocka_unit_test(test_bow_on_review_sample),
        cmocka_unit_test(test_model_files),
        cmocka_unit_test(test_word2vec_topics),
        cmocka_unit_test(test_rnn_ensemble_files),
        cmocka_unit_test(test_bilstm_gradients),
        cmocka_unit_test(test_bilstm_lstmnb_learn_negation),
        cmocka_unit_test(test_early_stop_keeps_best),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
