/* mlp.c: the MLP classifier (see mlp.h). */
#include "kernels/speech/mlp.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint32_t rng_next(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(*s >> 33);
}

void mlp_free(mlp_net_t *p) {
    for (int l = 0; l < MLP_MAX_LAYERS; l++) {
        free(p->W[l]);
        free(p->b[l]);
        p->W[l] = p->b[l] = NULL;
    }
}

int mlp_alloc(mlp_net_t *p, int n_layers, const int *sizes, uint64_t seed) {
    memset(p, 0, sizeof *p);
    if (n_layers < 1 || n_layers > MLP_MAX_LAYERS) return -1;
    p->n_layers = n_layers;
    for (int l = 0; l <= n_layers; l++) p->sizes[l] = sizes[l];
    uint64_t rng = seed * 0x9E3779B97F4A7C15ull + 7;
    for (int l = 0; l < n_layers; l++) {
        size_t nw = (size_t)sizes[l + 1] * sizes[l];
        p->W[l] = malloc(nw * sizeof *p->W[l]);
        p->b[l] = calloc(sizes[l + 1], sizeof *p->b[l]);
        if (!p->W[l] || !p->b[l]) {
            mlp_free(p);
            return -1;
        }
        float r = sqrtf(6.0f / sizes[l]);
        for (size_t i = 0; i < nw; i++)
            p->W[l][i] = r * (2.0f * (rng_next(&rng) / 2147483648.0f) - 1.0f);
    }
    return 0;
}

void mlp_forward(const mlp_net_t *p, float *const *act, int B) {
    for (int l = 0; l < p->n_layers; l++) {
        int in = p->sizes[l], out = p->sizes[l + 1];
        float *y = act[l + 1];
        for (int r = 0; r < B; r++) memcpy(y + (size_t)r * out, p->b[l], out * sizeof *y);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, out, in, 1.0f, act[l], in, p->W[l],
                    in, 1.0f, y, out);
        if (l < p->n_layers - 1) {
            for (size_t i = 0; i < (size_t)B * out; i++) y[i] = y[i] > 0.0f ? y[i] : 0.0f;
        } else {
            for (int r = 0; r < B; r++) {
                float *o = y + (size_t)r * out, mx = o[0], acc = 0.0f;
                for (int k = 1; k < out; k++) mx = o[k] > mx ? o[k] : mx;
                for (int k = 0; k < out; k++) acc += expf(o[k] - mx);
                float lz = mx + logf(acc);
                for (int k = 0; k < out; k++) o[k] -= lz;
            }
        }
    }
}

double mlp_backward(const mlp_net_t *p, float *const *act, float *const *grad, const int *labels,
                    int B, float *const *gW, float *const *gb, int *correct) {
    int NL = p->n_layers, S = p->sizes[NL], ok = 0;
    double loss = 0.0;
    const float *out = act[NL];
    float *g = grad[NL];
    /* d(mean NLL)/d(logits) = (softmax - onehot) / B. */
    for (int r = 0; r < B; r++) {
        int y = labels[r], am = 0;
        const float *o = out + (size_t)r * S;
        float *gr = g + (size_t)r * S;
        loss -= o[y];
        for (int k = 0; k < S; k++) {
            gr[k] = expf(o[k]) / B;
            if (o[k] > o[am]) am = k;
        }
        gr[y] -= 1.0f / B;
        ok += am == y;
    }
    for (int l = NL - 1; l >= 0; l--) {
        int li = p->sizes[l], lo = p->sizes[l + 1];
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, lo, li, B, 1.0f, grad[l + 1], lo,
                    act[l], li, 0.0f, gW[l], li);
        for (int k = 0; k < lo; k++) gb[l][k] = 0.0f;
        for (int r = 0; r < B; r++)
            for (int k = 0; k < lo; k++) gb[l][k] += grad[l + 1][(size_t)r * lo + k];
        if (l > 0) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, li, lo, 1.0f, grad[l + 1], lo,
                        p->W[l], li, 0.0f, grad[l], li);
            /* ReLU: no gradient where the unit was off. */
            for (size_t i = 0; i < (size_t)B * li; i++)
                if (act[l][i] <= 0.0f) grad[l][i] = 0.0f;
        }
    }
    if (correct) *correct = ok;
    return loss;
}

void mlp_adam_free(mlp_adam_t *a) {
    for (int l = 0; l < MLP_MAX_LAYERS; l++) {
        free(a->mW[l]);
        free(a->vW[l]);
        free(a->mb[l]);
        free(a->vb[l]);
    }
    memset(a, 0, sizeof *a);
}

int mlp_adam_alloc(mlp_adam_t *a, const mlp_net_t *p) {
    memset(a, 0, sizeof *a);
    for (int l = 0; l < p->n_layers; l++) {
        size_t nw = (size_t)p->sizes[l + 1] * p->sizes[l];
        a->mW[l] = calloc(nw, sizeof(float));
        a->vW[l] = calloc(nw, sizeof(float));
        a->mb[l] = calloc(p->sizes[l + 1], sizeof(float));
        a->vb[l] = calloc(p->sizes[l + 1], sizeof(float));
        if (!a->mW[l] || !a->vW[l] || !a->mb[l] || !a->vb[l]) {
            mlp_adam_free(a);
            return -1;
        }
    }
    return 0;
}

static void adam(float *w, float *m, float *v, const float *g, size_t n, float lr, float c1,
                 float c2) {
    const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    for (size_t i = 0; i < n; i++) {
        m[i] = b1 * m[i] + (1 - b1) * g[i];
        v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
        w[i] -= lr * (m[i] / c1) / (sqrtf(v[i] / c2) + eps);
    }
}

void mlp_adam_step(mlp_adam_t *a, mlp_net_t *p, float *const *gW, float *const *gb, float lr) {
    a->step++;
    float c1 = 1.0f - powf(0.9f, (float)a->step), c2 = 1.0f - powf(0.999f, (float)a->step);
    for (int l = 0; l < p->n_layers; l++) {
        adam(p->W[l], a->mW[l], a->vW[l], gW[l], (size_t)p->sizes[l + 1] * p->sizes[l], lr, c1, c2);
        adam(p->b[l], a->mb[l], a->vb[l], gb[l], p->sizes[l + 1], lr, c1, c2);
    }
}
