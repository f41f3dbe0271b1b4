/* word2vec.h: word embeddings by skip-gram or CBOW with negative sampling
 * (Mikolov et al. 2013): subsampling of frequent words, a linearly decaying
 * learning rate, and lock-free (Hogwild) training on several threads.
 *
 * File format (little endian): "RW2V", u32 version (1), u32 dim, u32 flags
 * (1: output vectors follow), then the vocabulary (vocab_write()), then
 * n x dim float32 input vectors, then the output vectors when flagged (so
 * training can continue). The original word2vec binary format can be
 * written and read too. */
#ifndef REEL_KERNELS_TEXT_WORD2VEC_H
#define REEL_KERNELS_TEXT_WORD2VEC_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kernels/text/tokenize.h"

enum { W2V_SKIPGRAM = 0, W2V_CBOW = 1 };

typedef struct w2v_params {
    int arch;      /* W2V_SKIPGRAM or W2V_CBOW */
    int dim;       /* vector size (100) */
    int window;    /* max context on each side (5) */
    int negative;  /* negative samples (5) */
    int epochs;    /* passes over the corpus (5) */
    int threads;   /* training threads (1) */
    int min_count; /* words seen fewer times are dropped (5) */
    float sample;  /* subsampling threshold (1e-3) */
    float alpha;   /* starting learning rate (0.025 sg, 0.05 cbow) */
    uint64_t seed;
} w2v_params_t;

/* The defaults above for arch. */
w2v_params_t w2v_defaults(int arch);

typedef struct w2v {
    vocab_t *vocab; /* owned */
    int dim;
    float *vec;         /* vocab->n x dim input vectors, owned */
    float *out;         /* vocab->n x dim output vectors, or NULL (cannot train on) */
    int32_t *neg_table; /* negative-sampling table, built when training */
    size_t neg_size;
} w2v_t;

/* A tokenized corpus: word ids of the vocabulary, sentences ended by -1. */
typedef struct w2v_corpus {
    int32_t *ids;
    size_t n; /* ids, separators included */
    size_t cap;
    uint64_t words; /* word ids (separators excluded) */
} w2v_corpus_t;

/* Progress callback: words processed so far of total, words/s. */
typedef void (*w2v_progress_fn)(uint64_t done, uint64_t total, double words_per_s, float alpha,
                                void *arg);

/* Trains vectors for the words of vocab over corpus (ids of vocab). vocab
 * is copied. Returns a model the caller owns (w2v_destroy()) or NULL with
 * errstr. *words_per_s receives the training speed when non-NULL. */
w2v_t *w2v_train(const w2v_params_t *p, const vocab_t *vocab, const w2v_corpus_t *corpus,
                 w2v_progress_fn progress, void *arg, double *words_per_s, char *errstr,
                 size_t errstr_size);

/* Continues training m on one more sentence of ids (online updates by the
 * sentiment worker) with learning rate alpha; needs m->out (the model was
 * saved with its output vectors). Builds the negative-sampling table on
 * first use. Returns 0, or -1 when m cannot be trained (no output vectors,
 * out of memory). Single-threaded. */
int w2v_update(w2v_t *m, const w2v_params_t *p, const int32_t *ids, size_t n, float alpha,
               uint64_t *rng);

void w2v_destroy(w2v_t *m);

/* Saves m to path in the RW2V format (with the output vectors when
 * with_out and m->out) or, when word2vec_format, in the original word2vec
 * binary format. Returns 0 or -1 with errstr. */
int w2v_save(const w2v_t *m, const char *path, int word2vec_format, int with_out, char *errstr,
             size_t errstr_size);

/* Writes m to f as w2v_save() does. Returns 0 or -1 on a write error. */
int w2v_write(const w2v_t *m, FILE *f, int word2vec_format, int with_out);

/* Parses an RW2V model from data[0..len). Returns a model the caller owns
 * or NULL with errstr. */
w2v_t *w2v_load_mem(const void *data, size_t len, char *errstr, size_t errstr_size);
/* Reads path (either format) and parses it. Same ownership. */
w2v_t *w2v_load(const char *path, char *errstr, size_t errstr_size);

/* The k nearest words of word by cosine similarity (word itself
 * excluded): ids into ids[], similarities into sims[]. Returns how many
 * (< k when the vocabulary is small), -1 when word is not in it. */
int w2v_nearest(const w2v_t *m, const char *word, int k, int32_t *ids, float *sims);

/* Appends sentence tokens (as tok_split() wrote them) to corpus as ids of
 * vocab (unknown words dropped) followed by -1. Returns 0 or -1 (memory). */
int w2v_corpus_add(w2v_corpus_t *c, const vocab_t *vocab, const char *toks, size_t n_tokens);
void w2v_corpus_free(w2v_corpus_t *c);

#endif
