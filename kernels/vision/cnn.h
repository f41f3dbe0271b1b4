/* cnn.h: a small convolutional network on OpenBLAS, trained in C.
 *
 * Layers: conv2d (im2col + cblas_sgemm over the whole batch), max and
 * average pooling, global average pooling, dense, ReLU (as the activation
 * of conv and dense), dropout and a final softmax with cross-entropy loss.
 * Each has its backward pass; SGD with momentum and Adam update the
 * parameters. Activations are NCHW, float32, one flat array per layer sized
 * for the largest batch when cnn_set_batch() is called; nothing is
 * allocated in forward or backward.
 *
 * The architecture is a small text in the spirit of darknet's cfg files:
 *
 *   # comments with '#' or ';'
 *   [conv]       filters=32 size=3 stride=1 pad=0 activation=relu
 *   [maxpool]    size=2 stride=2
 *   [avgpool]    size=2 stride=2
 *   [gap]        (global average pooling)
 *   [dense]      output=64 activation=relu     (output=classes: the class count)
 *   [dropout]    probability=0.5
 *   [softmax]    (must be last)
 *
 * one key=value per line under its section. An optional [input] section
 * (width, height, channels) must then match the data. A dense layer
 * flattens whatever comes before it.
 *
 * Model file (little-endian):
 *   "RCNN" u32 version=1
 *   u32 channels, height, width, n_classes
 *   u32 arch_len, arch text (arch_len bytes)
 *   n_classes x (u16 len, label bytes)
 *   u64 n_params, n_params x float32 (layer by layer: weights then biases)
 *   u64 FNV-1a of every byte before it
 */
#ifndef REEL_KERNELS_VISION_CNN_H
#define REEL_KERNELS_VISION_CNN_H

#include <stddef.h>
#include <stdint.h>

#define CNN_MAX_LAYERS 32
#define CNN_MAX_DIM 1024
#define CNN_MAX_CLASSES 4096
#define CNN_MAX_PARAMS (64u * 1024u * 1024u)
/* Floats of the buffers a network needs for one sample (outputs, their
 * gradients, unfolded conv inputs): 256 MiB. */
#define CNN_MAX_ACTIVATIONS ((size_t)64u * 1024u * 1024u)

/* Convolutions unfold their input (im2col) in blocks of samples of about
 * this many bytes, so that sgemm finds them in cache (default 256 KiB).
 * Tests lower it to exercise the block boundaries. */
extern size_t cnn_block_bytes;

/* The seed architecture, used when no --arch is given. */
extern const char cnn_seed_arch[];

typedef enum cnn_kind {
    CNN_CONV,
    CNN_MAXPOOL,
    CNN_AVGPOOL,
    CNN_GAP,
    CNN_DENSE,
    CNN_DROPOUT,
    CNN_SOFTMAX
} cnn_kind_t;

typedef struct cnn_layer {
    cnn_kind_t kind;
    int relu; /* conv, dense: ReLU after the affine map */
    int filters, size, stride, pad;
    float prob;               /* dropout probability */
    int in_c, in_h, in_w;     /* input shape per sample */
    int out_c, out_h, out_w;  /* output shape per sample */
    size_t in_size, out_size; /* per sample */
    size_t n_w, n_b;          /* parameter counts */
    float *w, *b, *dw, *db;   /* views into the net's params and grads */
    float *out;               /* [batch][out_size] */
    float *delta;             /* gradient of the loss wrt out */
    int *idx;                 /* maxpool: argmax per output */
    float *mask;              /* dropout: 0 or 1/(1-p) per output */
    float *col;               /* conv: the forward im2col, reused by backward */
} cnn_layer_t;

typedef struct cnn {
    int n_layers;
    cnn_layer_t layers[CNN_MAX_LAYERS];
    int in_c, in_h, in_w, n_classes;
    char *arch;    /* the architecture text */
    char **labels; /* n_classes names */
    float *params, *grads;
    size_t n_params;
    int max_batch;
    float *col, *tmp; /* conv scratch (backward's dcol; sgemm output) */
    size_t col_size, tmp_size;
    float *opt_m, *opt_v; /* optimizer state, allocated on first step */
    int64_t step;
    uint64_t seed; /* dropout masks are a function of (seed, step) */
} cnn_t;

typedef enum cnn_opt_kind { CNN_SGD, CNN_ADAM } cnn_opt_kind_t;
typedef struct cnn_opt {
    cnn_opt_kind_t kind;
    float lr, momentum;      /* SGD */
    float beta1, beta2, eps; /* Adam */
    float weight_decay;      /* L2, both */
} cnn_opt_t;

/* Adam with lr 1e-3, betas 0.9/0.999, eps 1e-8. */
cnn_opt_t cnn_opt_adam(float lr);
cnn_opt_t cnn_opt_sgd(float lr, float momentum);

/* Builds a network from arch for inputs of c x h x w and n_classes classes.
 * labels may be NULL (classes are then named "0", "1", ...); it is copied.
 * Parameters are zero until cnn_init(); buffers hold batch 1 until
 * cnn_set_batch(). Returns a net the caller frees with cnn_free(), or NULL
 * with errstr. */
cnn_t *cnn_new(const char *arch, int c, int h, int w, int n_classes, const char *const *labels,
               char *errstr, size_t errstr_size);
void cnn_free(cnn_t *net);

/* Sizes the activation buffers for batches of up to max_batch. 0 or -1. */
int cnn_set_batch(cnn_t *net, int max_batch, char *errstr, size_t errstr_size);

/* He-uniform weights for ReLU layers (Glorot for linear ones), zero biases. */
void cnn_init(cnn_t *net, uint64_t seed);

/* Forward pass of n <= max_batch samples x ([n][c*h*w]). train turns
 * dropout on. Returns the class probabilities [n][n_classes], owned by the
 * net and valid until the next call. */
const float *cnn_forward(cnn_t *net, const float *x, int n, int train);

/* Backward pass after cnn_forward(net, x, n, 1) with the true classes y:
 * gradients of the mean cross-entropy are accumulated into net->grads
 * (zeroed first). Returns the mean loss. */
float cnn_backward(cnn_t *net, const float *x, const int *y, int n);

/* One optimizer step with net->grads; advances net->step. 0 or -1 (OOM). */
int cnn_step(cnn_t *net, const cnn_opt_t *opt);

/* The embedding after the last forward pass: the input of the last dense
 * layer ([n][*dim], owned by the net). NULL when there is no dense layer. */
const float *cnn_embedding(const cnn_t *net, size_t *dim);

/* Writes the model file. 0, or -1 with errstr. */
int cnn_save(const cnn_t *net, const char *path, char *errstr, size_t errstr_size);
/* Reads a model file from memory (the whole file). Returns a net the
 * caller frees with cnn_free() (batch 1 until cnn_set_batch), or NULL with
 * errstr when it is malformed. */
cnn_t *cnn_load_mem(const void *data, size_t len, char *errstr, size_t errstr_size);
cnn_t *cnn_load(const char *path, char *errstr, size_t errstr_size);

#endif
