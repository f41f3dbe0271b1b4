/* lstm.h: a recurrent sentence classifier: embedding -> LSTM or GRU ->
 * pooling over time (max, or max and mean side by side) -> dense -> softmax, with backpropagation
 * through time, dropout and Adam. Minibatches are time-major and go through BLAS (one sgemm for
 * every step's input projection, one per step for the recurrence). Not thread-safe per work buffer:
 * one rnn_work_t per thread. */
#ifndef REEL_KERNELS_TEXT_LSTM_H
#define REEL_KERNELS_TEXT_LSTM_H

#include <stddef.h>
#include <stdint.h>

enum { RNN_LSTM = 0, RNN_GRU = 1 };
/* Pooling of the hidden states over a sequence's steps: the elementwise
 * maximum (H values), or the maximum and the mean (2H values). */
enum { RNN_POOL_MAX = 0, RNN_POOL_MEANMAX = 1 };

typedef struct rnn {
    int cell;      /* RNN_LSTM or RNN_GRU */
    int vocab;     /* rows of the embedding table */
    int dim;       /* embedding size D */
    int hidden;    /* state size H */
    int classes;   /* output classes C */
    int gates;     /* G: 4H (LSTM: i f g o) or 3H (GRU: r z n) */
    int pool;      /* RNN_POOL_MAX or RNN_POOL_MEANMAX */
    int dirs;      /* 1, or 2: a second LSTM reads each text right to left */
    int pooled;    /* P: H (max) or 2H (max, then mean), times dirs (the
                    * left-to-right block, then the right-to-left one) */
    float *params; /* every parameter, owned; the pointers below are views */
    size_t n_params;
    float *emb;                   /* vocab x D */
    float *wx;                    /* D x G */
    float *wh;                    /* H x G */
    float *bx;                    /* G */
    float *bh;                    /* G */
    float *wx2, *wh2, *bx2, *bh2; /* dirs 2: the right-to-left LSTM's, else NULL */
    float *wo;                    /* P x C */
    float *bo;                    /* C */
} rnn_t;

/* A model with uniform(-1/sqrt(H), 1/sqrt(H)) weights, uniform(-0.1, 0.1)
 * embeddings, forget-gate bias 1; dirs 2: bidirectional (two recurrences
 * over the same embeddings, their pooled states side by side into the
 * dense layer). Parameter layout: emb, wx, wh, bx, bh, [wx2, wh2, bx2,
 * bh2], wo, bo. NULL when out of memory, a size is not positive, pool is
 * unknown or dirs is not 1 or 2. The caller frees it with rnn_destroy(). */
rnn_t *rnn_new(int cell, int pool, int dirs, int vocab, int dim, int hidden, int classes,
               uint64_t seed);
/* The number of floats rnn_new() allocates for these shapes (loaders check
 * a file holds them before allocating). */
size_t rnn_param_count(int cell, int pool, int dirs, int vocab, int dim, int hidden, int classes);
void rnn_destroy(rnn_t *m);

/* Buffers for batches of up to max_batch sequences of up to max_len ids.
 * The caller owns it (rnn_work_destroy()). NULL when out of memory. */
typedef struct rnn_work rnn_work_t;
rnn_work_t *rnn_work_new(const rnn_t *m, int max_batch, int max_len);
void rnn_work_destroy(rnn_work_t *w);

/* Forward pass over B sequences: ids[b * T + t] for t < lens[b] (lens[b]
 * <= T; 0 is allowed). With rng non-NULL, dropout: input embeddings with
 * rate p_in, the pooled vector with p_out (inverted dropout). Writes class
 * probabilities into probs (B x C) when non-NULL. Returns the mean
 * cross-entropy when labels is non-NULL, else 0. Keeps what the backward
 * pass needs in w. */
float rnn_forward(const rnn_t *m, rnn_work_t *w, const int32_t *ids, const int *lens, int B, int T,
                  const int *labels, float p_in, float p_out, uint64_t *rng, float *probs);

/* rnn_forward() with offset (B x C, may be NULL) added to each sequence's
 * logits before the softmax: a fixed score from another model that the
 * network learns to correct (rnn_backward() is unchanged: the gradient
 * of the logits is probs - labels either way; that of the offset, the
 * caller's, is the same). */
float rnn_forward_offset(const rnn_t *m, rnn_work_t *w, const int32_t *ids, const int *lens, int B,
                         int T, const int *labels, const float *offset, float p_in, float p_out,
                         uint64_t *rng, float *probs);

/* Gradient of the mean cross-entropy of the last rnn_forward() (same
 * arguments) with respect to every parameter, ADDED into grad (n_params,
 * the layout of m->params). */
void rnn_backward(const rnn_t *m, rnn_work_t *w, const int32_t *ids, const int *lens, int B, int T,
                  const int *labels, float *grad);

/* Adam state for n parameters; the caller owns it (adam_destroy()). */
typedef struct adam {
    float *m, *v;
    size_t n;
    long t;
} adam_t;
adam_t *adam_new(size_t n);
void adam_destroy(adam_t *a);
/* Scales grad to global L2 norm at most clip (clip <= 0: no clipping),
 * then one Adam step on params. Returns the norm before clipping. */
float adam_step(adam_t *a, float *params, float *grad, float lr, float clip);
/* The update of elements [begin, begin + n) only, with gradients scaled by
 * scale, at step a->t (the caller increments a->t once per step). For
 * sparse rows, such as the embeddings of one batch's words ("lazy Adam":
 * rows not in the batch keep their moments and values). */
void adam_update(adam_t *a, float *params, const float *grad, size_t begin, size_t n, float lr,
                 float scale);

#endif
