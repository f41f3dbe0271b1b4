/* sentiment.h: sentence polarity models behind one interface: naive Bayes
 * and NB-LR on uni+bigrams (bow.h), LSTM and GRU (lstm.h), with the
 * tokenizer in front.
 *
 * File format (little endian): "RSNT", u32 version (3; 1 and 2 are read
 * too), u32 kind, the training parameters (sent_params_t as u32/float
 * fields; version 1 stops after `lazy`, version 2 after `nb_init`), the vocabulary (words for the
 * RNNs, n-grams for the bag of words, vocab_write()), then bag of words: float bias, float weight
 * per n-gram; RNN: u32 vocab, dim, hidden, classes, then every parameter of
 * each of the nets x snapshots networks as float32 (lstm.h layout; version 1: max
 * pooling, one network, two for bilstm); ensemble: the LSTM's part, then a
 * whole NB-LR model file; lstm-nb (version 3): the LSTM's part, float
 * weight of the NB-LR log-odds, then a whole NB-LR model file. */
#ifndef REEL_KERNELS_TEXT_SENTIMENT_H
#define REEL_KERNELS_TEXT_SENTIMENT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kernels/text/word2vec.h"

/* SENT_ENSEMBLE: an LSTM and an NB-LR trained on the same data, whose
 * probabilities are averaged (they err on different sentences).
 * SENT_BILSTM: two LSTMs, one reading left to right, one right to left,
 * probabilities averaged (late fusion).
 * SENT_LSTMNB ("lstm-nb"): one LSTM whose positive-class logit gets an
 * NB-LR's log-odds added, scaled by a weight learned with the network
 * (stacking: during training the log-odds of each sentence come from an
 * NB-LR that did not see it, 5 inner folds, so the network learns what the
 * bag of words misses; at prediction time from an NB-LR on all the
 * training data). Not a pure LSTM: the NB-LR is part of the model. With
 * nets > 1 the networks share one weight, which each trains on in turn. */
enum {
    SENT_NB = 0,
    SENT_NBLR = 1,
    SENT_LSTM = 2,
    SENT_GRU = 3,
    SENT_ENSEMBLE = 4,
    SENT_BILSTM = 5,
    SENT_LSTMNB = 6,
    SENT_KINDS = 7
};

typedef struct sent_params {
    int kind;
    int dim;          /* RNN embedding size (100; the embeddings' size when given) */
    int hidden;       /* RNN state size */
    int epochs;       /* training passes */
    int batch;        /* RNN minibatch */
    int min_count;    /* a word (RNN) or n-gram (BOW) must be seen this often */
    int max_tokens;   /* tokens per text, the rest ignored */
    int max_vocab;    /* RNN: words taken from the embeddings' vocabulary too */
    float lr;         /* Adam learning rate */
    float dropout;    /* on the pooled state */
    float dropout_in; /* on the input embeddings */
    float clip;       /* gradient norm clipping */
    float l2;         /* NB-LR L2 penalty */
    uint64_t seed;
    int freeze; /* RNN: keep the embeddings as given (1) or train them (0) */
    int lazy;   /* RNN: Adam on the batch's embedding rows only (about 2x faster
                 * epochs, ~1% less accurate on rt-polarity) or on all rows (0) */
    /* File version 2: */
    int pool;       /* RNN: RNN_POOL_MAX or RNN_POOL_MEANMAX (lstm.h) */
    int nets;       /* RNN: networks trained from different seeds, probabilities
                     * averaged (bilstm: even ones read left to right, odd ones
                     * right to left), 1..SENT_MAX_NETS */
    int average;    /* RNN: the weights kept are the mean over every step of the
                     * last `average` epochs (0: the last step's) */
    float lr_decay; /* RNN: the learning rate is multiplied by this each epoch */
    int snapshots;  /* RNN: each network's weights at the end of its last
                     * `snapshots` epochs are all kept, probabilities averaged
                     * (a snapshot ensemble); nets x snapshots <= SENT_MAX_NETS */
    int nb_init;    /* RNN: the embeddings' last column starts as each word's
                     * naive-Bayes log-count ratio on the training data (with
                     * given embeddings, one column is added for it) */
    /* File version 3: */
    float dropout_word; /* RNN: each training token is replaced by the
                         * unknown word with this probability (word dropout) */
    int bidir;          /* RNN: 1: bidirectional (lstm.h, dirs 2), one network
                         * whose two directions' pooled states feed one dense
                         * layer; 0: left to right only */
    /* Not saved in the file: */
    float early_stop; /* lstm/gru, one network: 0 off; else this fraction of
                       * the training examples (stratified, seeded) is held
                       * out, accuracy on it measured after each epoch, and
                       * the best epoch's weights kept (sent_early_stop()) */
    int early_refit;  /* with early_stop: then train again from scratch on all
                       * the examples for the epochs early stopping chose */
} sent_params_t;

#define SENT_MAX_NETS 16

/* Defaults for kind. */
sent_params_t sent_defaults(int kind);
/* Kind from "nb", "bow" (NB-LR), "lstm", "gru", "lstm+bow", "bilstm", "lstm-nb"; -1
 * when unknown. */
int sent_kind_parse(const char *name);
const char *sent_kind_name(int kind);

typedef struct sent_example {
    const char *text;
    size_t len;
    int label; /* 0 negative, 1 positive */
} sent_example_t;

typedef struct sent_model sent_model_t;

/* Progress of RNN training: epoch (1-based), its mean loss and the model
 * so far (borrowed; sent_predict() may be called on it, e.g. to watch a
 * held-out set). */
typedef void (*sent_progress_fn)(int epoch, float loss, double seconds, sent_model_t *m, void *arg);

/* Trains a model of p->kind on n examples. emb (may be NULL) initializes
 * the RNN's embeddings and adds its vocabulary. Returns a model the caller
 * owns (sent_destroy()) or NULL with errstr. */
sent_model_t *sent_train(const sent_params_t *p, const sent_example_t *ex, size_t n,
                         const w2v_t *emb, sent_progress_fn progress, void *arg, char *errstr,
                         size_t errstr_size);

/* P(positive) of text[0..len) (any bytes). *flags (may be NULL) gets the
 * tokenizer's flags (tokenize.h). Uses buffers inside the model: one model
 * per thread. */
float sent_predict(sent_model_t *m, const char *text, size_t len, unsigned *flags);

/* Early stopping's split: marks held[i] = 1 for the examples held out
 * (round(frac x count) of each label, chosen by a shuffle seeded with seed),
 * 0 for the rest. Returns the number held out. */
size_t sent_holdout(const sent_example_t *ex, size_t n, float frac, uint64_t seed,
                    unsigned char *held);

/* Early stopping's outcome: the epoch whose weights were kept (1-based; 0
 * when the model was trained without early stopping) and, when acc is not
 * NULL, that epoch's held-out accuracy; history (may be NULL) gets
 * min(max, epochs) held-out accuracies, one per epoch. Returns the number
 * of epochs recorded. */
int sent_early_stop(const sent_model_t *m, int *epoch, float *acc, float *history, int max);

/* The parameters the model was trained with. Borrowed. */
const sent_params_t *sent_params(const sent_model_t *m);

int sent_save(const sent_model_t *m, const char *path, char *errstr, size_t errstr_size);
/* Writes the file format to f. Returns 0 or -1 on a write error. */
int sent_write(const sent_model_t *m, FILE *f);
/* Parses a model from data[0..len); the caller owns the result. NULL with
 * errstr on malformed data. */
sent_model_t *sent_load_mem(const void *data, size_t len, char *errstr, size_t errstr_size);
sent_model_t *sent_load(const char *path, char *errstr, size_t errstr_size);
void sent_destroy(sent_model_t *m);

/* Reads a whole file into a malloc'd buffer the caller frees. NULL with
 * errstr. */
void *sent_read_file(const char *path, size_t *len, char *errstr, size_t errstr_size);

#endif
