/* mlp.h: a multilayer perceptron classifier over flat arrays: dense layers
 * with ReLU between them and log-softmax at the end, forward and backward
 * passes for minibatches through cblas_sgemm, and Adam. Used by the hybrid
 * DNN-HMM (speech.h); no allocation in forward/backward. */
#ifndef REEL_KERNELS_SPEECH_MLP_H
#define REEL_KERNELS_SPEECH_MLP_H

#include <stddef.h>
#include <stdint.h>

#define MLP_MAX_LAYERS 4

/* Weight layer l maps sizes[l] inputs to sizes[l + 1] outputs:
 * y = x W[l]^T + b[l], W[l] row-major sizes[l+1] x sizes[l]. The owner
 * allocates W and b (mlp_alloc) and frees them (mlp_free). */
typedef struct mlp_net {
    int n_layers;
    int sizes[MLP_MAX_LAYERS + 1];
    float *W[MLP_MAX_LAYERS];
    float *b[MLP_MAX_LAYERS];
} mlp_net_t;

/* Allocates the layers of sizes[0..n_layers], biases zero, weights He-
 * initialized (uniform with variance 2/fan_in) from seed. Returns 0, or -1
 * when out of memory (nothing left allocated). */
int mlp_alloc(mlp_net_t *p, int n_layers, const int *sizes, uint64_t seed);
void mlp_free(mlp_net_t *p);

/* Forward pass over rows [0, B) of act[0] (B x sizes[0]); act[l] receives
 * layer l's output (B x sizes[l]): ReLU for hidden layers, log-softmax for
 * the last. act[] is caller's memory. */
void mlp_forward(const mlp_net_t *p, float *const *act, int B);

/* Backward pass after mlp_forward() on the same act: gradients of the mean
 * negative log-likelihood of labels[0..B) into gW and gb (shaped as W and
 * b), using grad[1..n_layers] (B x sizes[l]) as scratch. Returns the summed
 * negative log-likelihood; *correct (may be NULL) receives how many rows'
 * argmax equals the label. */
double mlp_backward(const mlp_net_t *p, float *const *act, float *const *grad, const int *labels,
                    int B, float *const *gW, float *const *gb, int *correct);

/* Adam moments for p's parameters. */
typedef struct mlp_adam {
    float *mW[MLP_MAX_LAYERS], *vW[MLP_MAX_LAYERS];
    float *mb[MLP_MAX_LAYERS], *vb[MLP_MAX_LAYERS];
    long step;
} mlp_adam_t;

int mlp_adam_alloc(mlp_adam_t *a, const mlp_net_t *p);
void mlp_adam_free(mlp_adam_t *a);
/* One Adam step (beta1 0.9, beta2 0.999, eps 1e-8) with learning rate lr. */
void mlp_adam_step(mlp_adam_t *a, mlp_net_t *p, float *const *gW, float *const *gb, float lr);

#endif
