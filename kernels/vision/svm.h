/* svm.h: multi-class SVMs (one-vs-rest) with Platt-calibrated confidences.
 *
 * Linear: hinge loss, solved in the dual by coordinate descent (Hsieh et
 * al., ICML 2008), the bias learned as the weight of a constant feature.
 * RBF: exp(-gamma |x - z|^2), solved by SMO with second-order working set
 * selection (Fan, Chen, Lin, JMLR 2005) over a precomputed kernel matrix
 * (so for small training sets: n <= SVM_RBF_MAX_N). Each class's decision
 * values are mapped to probabilities by a sigmoid fitted with Platt's
 * method (the Newton variant of Lin, Lin and Weng 2007).
 *
 * Model file (little-endian):
 *   "RSVM" u32 version=1
 *   u32 kind (0 linear, 1 rbf), n_classes, dim, features (0 pixels,
 *       1 CNN embedding), channels, height, width; f32 gamma
 *   n_classes x (u16 len, label bytes)
 *   linear: f32 w[n_classes][dim], b[n_classes]
 *   rbf:    u32 n_sv, f32 sv[n_sv][dim], coef[n_classes][n_sv], b[n_classes]
 *   f32 platt_a[n_classes], platt_b[n_classes]
 *   u64 FNV-1a of every byte before it */
#ifndef REEL_KERNELS_VISION_SVM_H
#define REEL_KERNELS_VISION_SVM_H

#include <stddef.h>
#include <stdint.h>

#define SVM_RBF_MAX_N 20000

typedef enum svm_kind { SVM_LINEAR = 0, SVM_RBF = 1 } svm_kind_t;
typedef enum svm_features { SVM_PIXELS = 0, SVM_EMBEDDING = 1 } svm_features_t;

typedef struct svm {
    svm_kind_t kind;
    int n_classes, dim;
    svm_features_t features;
    int in_c, in_h, in_w; /* the input image shape (pixels or the CNN's) */
    float gamma;
    char **labels;
    float *w;    /* linear: [n_classes][dim] */
    float *b;    /* [n_classes] */
    int n_sv;    /* rbf */
    float *sv;   /* [n_sv][dim] */
    float *coef; /* [n_classes][n_sv]: alpha * y per class */
    float *platt_a, *platt_b;
    float *sv_norm; /* rbf: squared norms of the support vectors */
    float *kbuf;    /* rbf scratch: n_sv kernel values */
} svm_t;

typedef struct svm_params {
    float c;        /* box constraint, default 1 */
    float gamma;    /* rbf; <= 0: 1 / (dim * variance of x) */
    int max_epochs; /* linear: passes over the data (default 50) */
    float tol;      /* stopping tolerance (default 0.1 linear, 1e-3 rbf) */
    uint64_t seed;
} svm_params_t;

svm_params_t svm_defaults(svm_kind_t kind);

/* Trains on n samples x [n][dim] with classes y in [0, k). labels may be
 * NULL. progress, when not NULL, is called after each class. Returns a
 * model the caller frees with svm_free(), or NULL with errstr. */
svm_t *svm_train(svm_kind_t kind, const float *x, const int *y, int n, int dim, int k,
                 const char *const *labels, const svm_params_t *p,
                 void (*progress)(int cls, int k, void *arg), void *arg, char *errstr,
                 size_t errstr_size);
void svm_free(svm_t *m);

/* Decision values (one per class) for one sample x [dim]. */
void svm_decision(svm_t *m, const float *x, float *scores);
/* Platt probabilities per class, normalized to sum 1; returns the argmax. */
int svm_predict(svm_t *m, const float *x, float *probs);

int svm_save(const svm_t *m, const char *path, char *errstr, size_t errstr_size);
/* Parses a whole model file. Returns a model the caller frees, or NULL with
 * errstr. */
svm_t *svm_load_mem(const void *data, size_t len, char *errstr, size_t errstr_size);

#endif
