/* svm.c: see svm.h. */
#include "kernels/vision/svm.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

svm_params_t svm_defaults(svm_kind_t kind) {
    svm_params_t p = {1.0f, 0.0f, 50, kind == SVM_LINEAR ? 0.1f : 1e-3f, 1};
    return p;
}

void svm_free(svm_t *m) {
    if (!m) return;
    if (m->labels)
        for (int i = 0; i < m->n_classes; i++) free(m->labels[i]);
    free(m->labels);
    free(m->w);
    free(m->b);
    free(m->sv);
    free(m->coef);
    free(m->sv_norm);
    free(m->kbuf);
    free(m->platt_a);
    free(m->platt_b);
    free(m);
}

static svm_t *svm_alloc(svm_kind_t kind, int k, int dim, const char *const *labels) {
    svm_t *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->kind = kind, m->n_classes = k, m->dim = dim;
    m->labels = calloc((size_t)k, sizeof *m->labels);
    m->b = calloc((size_t)k, sizeof(float));
    m->platt_a = calloc((size_t)k, sizeof(float));
    m->platt_b = calloc((size_t)k, sizeof(float));
    if (!m->labels || !m->b || !m->platt_a || !m->platt_b) goto fail;
    for (int i = 0; i < k; i++) {
        char num[16];
        snprintf(num, sizeof num, "%d", i);
        if (!(m->labels[i] = strdup(labels && labels[i] ? labels[i] : num))) goto fail;
    }
    if (kind == SVM_LINEAR && !(m->w = calloc((size_t)k * dim, sizeof(float)))) goto fail;
    return m;
fail:
    svm_free(m);
    return NULL;
}

static uint64_t xorshift(uint64_t *s) {
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return *s;
}

/* Platt's sigmoid P(y=1|f) = 1 / (1 + exp(a f + b)) fitted to decision
 * values f[i] of samples whose class is (t[i] != 0). */
static void platt_fit(const float *f, const unsigned char *t, int n, float *a_out, float *b_out) {
    double prior1 = 0, prior0 = 0;
    for (int i = 0; i < n; i++) t[i] ? prior1++ : prior0++;
    double hi = (prior1 + 1) / (prior1 + 2), lo = 1 / (prior0 + 2);
    double A = 0, B = log((prior0 + 1) / (prior1 + 1)), fval = 0;
#define TGT(i) (t[i] ? hi : lo)
    for (int i = 0; i < n; i++) {
        double z = f[i] * A + B;
        fval += z >= 0 ? TGT(i) * z + log1p(exp(-z)) : (TGT(i) - 1) * z + log1p(exp(z));
    }
    for (int it = 0; it < 100; it++) {
        double h11 = 1e-12, h22 = 1e-12, h21 = 0, g1 = 0, g2 = 0;
        for (int i = 0; i < n; i++) {
            double z = f[i] * A + B, p, q;
            if (z >= 0)
                p = exp(-z) / (1 + exp(-z)), q = 1 / (1 + exp(-z));
            else
                p = 1 / (1 + exp(z)), q = exp(z) / (1 + exp(z));
            double d2 = p * q, d1 = TGT(i) - p;
            h11 += (double)f[i] * f[i] * d2, h22 += d2, h21 += f[i] * d2;
            g1 += f[i] * d1, g2 += d1;
        }
        if (fabs(g1) < 1e-5 && fabs(g2) < 1e-5) break;
        double det = h11 * h22 - h21 * h21;
        double dA = -(h22 * g1 - h21 * g2) / det, dB = -(-h21 * g1 + h11 * g2) / det;
        double gd = g1 * dA + g2 * dB, step = 1;
        while (step >= 1e-10) {
            double nA = A + step * dA, nB = B + step * dB, nf = 0;
            for (int i = 0; i < n; i++) {
                double z = f[i] * nA + nB;
                nf += z >= 0 ? TGT(i) * z + log1p(exp(-z)) : (TGT(i) - 1) * z + log1p(exp(z));
            }
            if (nf < fval + 1e-4 * step * gd) {
                A = nA, B = nB, fval = nf;
                break;
            }
            step /= 2;
        }
        if (step < 1e-10) break;
    }
#undef TGT
    *a_out = (float)A;
    *b_out = (float)B;
}

/* One class against the rest by dual coordinate descent; the bias is the
 * weight of a constant feature 1. */
static void linear_one(const float *x, const int *y, int n, int dim, int cls, const float *qd,
                       const svm_params_t *p, float *alpha, int *order, float *w, float *b) {
    const float C = p->c;
    memset(alpha, 0, (size_t)n * sizeof *alpha);
    memset(w, 0, (size_t)dim * sizeof *w);
    float bias = 0;
    uint64_t rng = p->seed * 0x9e3779b97f4a7c15ull + (uint64_t)cls + 1;
    for (int i = 0; i < n; i++) order[i] = i;
    for (int ep = 0; ep < p->max_epochs; ep++) {
        for (int i = n - 1; i > 0; i--) {
            int j = (int)(xorshift(&rng) % (uint64_t)(i + 1)), t = order[i];
            order[i] = order[j], order[j] = t;
        }
        float maxpg = -INFINITY, minpg = INFINITY;
        for (int s = 0; s < n; s++) {
            int i = order[s];
            const float *xi = x + (size_t)i * dim;
            float yi = y[i] == cls ? 1.0f : -1.0f;
            float g = yi * (cblas_sdot(dim, w, 1, xi, 1) + bias) - 1.0f, pg = g;
            if (alpha[i] == 0.0f)
                pg = g < 0 ? g : 0;
            else if (alpha[i] == C)
                pg = g > 0 ? g : 0;
            if (pg > maxpg) maxpg = pg;
            if (pg < minpg) minpg = pg;
            if (fabsf(pg) < 1e-12f) continue;
            float old = alpha[i], a = old - g / qd[i];
            alpha[i] = a < 0 ? 0 : a > C ? C : a;
            float d = (alpha[i] - old) * yi;
            cblas_saxpy(dim, d, xi, 1, w, 1);
            bias += d;
        }
        if (maxpg - minpg < p->tol) break;
    }
    *b = bias;
}

/* SMO for one class against the rest over the kernel matrix K [n][n];
 * alpha receives the multipliers, *rho the offset (f = sum a y K - rho). */
static int smo_one(const float *K, const int *y, int n, int cls, float C, float eps, double *alpha,
                   double *G, float *rho) {
    const double TAU = 1e-12;
    for (int i = 0; i < n; i++) alpha[i] = 0, G[i] = -1;
#define YY(t) (y[t] == cls ? 1.0 : -1.0)
    long max_iter = 100L * n + 100000;
    long it = 0;
    for (; it < max_iter; it++) {
        double gmax = -INFINITY, gmin = INFINITY;
        int i = -1, j = -1;
        for (int t = 0; t < n; t++) {
            double yt = YY(t);
            if ((yt > 0 && alpha[t] < C) || (yt < 0 && alpha[t] > 0)) {
                double v = -yt * G[t];
                if (v > gmax) gmax = v, i = t;
            }
        }
        if (i < 0) break;
        const float *Ki = K + (size_t)i * n;
        double yi = YY(i), best = INFINITY;
        for (int t = 0; t < n; t++) {
            double yt = YY(t);
            if (!((yt > 0 && alpha[t] > 0) || (yt < 0 && alpha[t] < C))) continue;
            double v = -yt * G[t];
            if (v < gmin) gmin = v;
            double bb = gmax - v;
            if (bb <= 0) continue;
            double a = (double)K[(size_t)i * n + i] + K[(size_t)t * n + t] - 2.0 * Ki[t];
            if (a <= 0) a = TAU;
            double obj = -(bb * bb) / a;
            if (obj < best) best = obj, j = t;
        }
        if (j < 0 || gmax - gmin < eps) break;
        const float *Kj = K + (size_t)j * n;
        double yj = YY(j), ai = alpha[i], aj = alpha[j];
        double Qij = yi * yj * Ki[j], Qii = Ki[i], Qjj = Kj[j];
        if (yi != yj) {
            double quad = Qii + Qjj + 2 * Qij;
            if (quad <= 0) quad = TAU;
            double delta = (-G[i] - G[j]) / quad, diff = ai - aj;
            ai += delta, aj += delta;
            if (diff > 0) {
                if (aj < 0) aj = 0, ai = diff;
            } else if (ai < 0) {
                ai = 0, aj = -diff;
            }
            if (diff > 0) {
                if (ai > C) ai = C, aj = C - diff;
            } else if (aj > C) {
                aj = C, ai = C + diff;
            }
        } else {
            double quad = Qii + Qjj - 2 * Qij;
            if (quad <= 0) quad = TAU;
            double delta = (G[i] - G[j]) / quad, sum = ai + aj;
            ai -= delta, aj += delta;
            if (sum > C) {
                if (ai > C) ai = C, aj = sum - C;
            } else if (aj < 0) {
                aj = 0, ai = sum;
            }
            if (sum > C) {
                if (aj > C) aj = C, ai = sum - C;
            } else if (ai < 0) {
                ai = 0, aj = sum;
            }
        }
        double dai = ai - alpha[i], daj = aj - alpha[j];
        alpha[i] = ai, alpha[j] = aj;
        for (int t = 0; t < n; t++) {
            double yt = YY(t);
            G[t] += yt * (yi * Ki[t] * dai + yj * Kj[t] * daj);
        }
    }
    double ub = INFINITY, lb = -INFINITY, sum = 0;
    int nfree = 0;
    for (int t = 0; t < n; t++) {
        double yt = YY(t), yg = yt * G[t];
        if (alpha[t] >= C) {
            if (yt < 0)
                ub = fmin(ub, yg);
            else
                lb = fmax(lb, yg);
        } else if (alpha[t] <= 0) {
            if (yt > 0)
                ub = fmin(ub, yg);
            else
                lb = fmax(lb, yg);
        } else {
            nfree++, sum += yg;
        }
    }
    *rho = (float)(nfree ? sum / nfree : (ub + lb) / 2);
#undef YY
    return it >= max_iter ? -1 : 0;
}

svm_t *svm_train(svm_kind_t kind, const float *x, const int *y, int n, int dim, int k,
                 const char *const *labels, const svm_params_t *p,
                 void (*progress)(int cls, int k, void *arg), void *arg, char *errstr,
                 size_t errstr_size) {
    if (n < 2 || dim <= 0 || k < 2) {
        snprintf(errstr, errstr_size, "svm: need samples of at least two classes");
        return NULL;
    }
    if (kind == SVM_RBF && n > SVM_RBF_MAX_N) {
        snprintf(errstr, errstr_size,
                 "svm-rbf keeps the %dx%d kernel matrix in memory: at most %d samples (--limit)", n,
                 n, SVM_RBF_MAX_N);
        return NULL;
    }
    svm_t *m = svm_alloc(kind, k, dim, labels);
    float *qd = malloc((size_t)n * sizeof(float)), *fvals = malloc((size_t)n * sizeof(float));
    float *alpha = malloc((size_t)n * sizeof(float)), *K = NULL;
    int *order = malloc((size_t)n * sizeof(int));
    unsigned char *t = malloc((size_t)n);
    double *da = NULL, *dg = NULL;
    unsigned char *is_sv = NULL;
    if (!m || !qd || !fvals || !alpha || !order || !t) goto oom;
    for (int i = 0; i < n; i++)
        qd[i] = cblas_sdot(dim, x + (size_t)i * dim, 1, x + (size_t)i * dim, 1);
    if (kind == SVM_LINEAR) {
        for (int i = 0; i < n; i++) qd[i] += 1.0f; /* the bias feature */
        for (int c = 0; c < k; c++) {
            float *w = m->w + (size_t)c * dim;
            linear_one(x, y, n, dim, c, qd, p, alpha, order, w, &m->b[c]);
            cblas_sgemv(CblasRowMajor, CblasNoTrans, n, dim, 1.0f, x, dim, w, 1, 0.0f, fvals, 1);
            for (int i = 0; i < n; i++) fvals[i] += m->b[c], t[i] = y[i] == c;
            platt_fit(fvals, t, n, &m->platt_a[c], &m->platt_b[c]);
            if (progress) progress(c, k, arg);
        }
    } else {
        float gamma = p->gamma;
        if (gamma <= 0) {
            double s = 0, s2 = 0;
            size_t nx = (size_t)n * dim;
            for (size_t i = 0; i < nx; i++) s += x[i], s2 += (double)x[i] * x[i];
            double var = s2 / nx - (s / nx) * (s / nx);
            gamma = (float)(1.0 / (dim * (var > 0 ? var : 1.0)));
        }
        m->gamma = gamma;
        K = malloc((size_t)n * n * sizeof(float));
        da = malloc((size_t)n * k * sizeof(double));
        dg = malloc((size_t)n * sizeof(double));
        is_sv = calloc((size_t)n, 1);
        if (!K || !da || !dg || !is_sv) goto oom;
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, n, dim, -2.0f, x, dim, 0.0f, K, n);
        for (int i = 0; i < n; i++)
            for (int j = i; j < n; j++) {
                float v = expf(-gamma * fmaxf(qd[i] + qd[j] + K[(size_t)i * n + j], 0.0f));
                K[(size_t)i * n + j] = K[(size_t)j * n + i] = v;
            }
        for (int c = 0; c < k; c++) {
            double *a = da + (size_t)c * n;
            if (smo_one(K, y, n, c, p->c, p->tol, a, dg, &m->b[c]) < 0)
                fprintf(stderr, "svm: class %d stopped at the iteration limit\n", c);
            m->b[c] = -m->b[c];
            for (int i = 0; i < n; i++)
                if (a[i] > 0) is_sv[i] = 1;
            /* training decision values for Platt: -(G + 1) * y ... computed
             * directly for clarity */
            for (int i = 0; i < n; i++) {
                double f = m->b[c];
                const float *Ki = K + (size_t)i * n;
                for (int j = 0; j < n; j++)
                    if (a[j] > 0) f += a[j] * (y[j] == c ? 1.0 : -1.0) * Ki[j];
                fvals[i] = (float)f;
                t[i] = y[i] == c;
            }
            platt_fit(fvals, t, n, &m->platt_a[c], &m->platt_b[c]);
            if (progress) progress(c, k, arg);
        }
        int nsv = 0;
        for (int i = 0; i < n; i++) nsv += is_sv[i];
        m->n_sv = nsv;
        m->sv = malloc((size_t)(nsv ? nsv : 1) * dim * sizeof(float));
        m->coef = malloc((size_t)(nsv ? nsv : 1) * k * sizeof(float));
        m->sv_norm = malloc((size_t)(nsv ? nsv : 1) * sizeof(float));
        m->kbuf = malloc((size_t)(nsv ? nsv : 1) * sizeof(float));
        if (!m->sv || !m->coef || !m->sv_norm || !m->kbuf) goto oom;
        int s = 0;
        for (int i = 0; i < n; i++) {
            if (!is_sv[i]) continue;
            memcpy(m->sv + (size_t)s * dim, x + (size_t)i * dim, (size_t)dim * sizeof(float));
            m->sv_norm[s] = qd[i];
            for (int c = 0; c < k; c++)
                m->coef[(size_t)c * nsv + s] =
                    (float)(da[(size_t)c * n + i] * (y[i] == c ? 1 : -1));
            s++;
        }
    }
    free(qd), free(fvals), free(alpha), free(order), free(t), free(K), free(da), free(dg);
    free(is_sv);
    return m;
oom:
    snprintf(errstr, errstr_size, "svm: out of memory");
    free(qd), free(fvals), free(alpha), free(order), free(t), free(K), free(da), free(dg);
    free(is_sv);
    svm_free(m);
    return NULL;
}

void svm_decision(svm_t *m, const float *x, float *scores) {
    if (m->kind == SVM_LINEAR) {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, m->n_classes, m->dim, 1.0f, m->w, m->dim, x, 1,
                    0.0f, scores, 1);
        for (int c = 0; c < m->n_classes; c++) scores[c] += m->b[c];
        return;
    }
    float xn = cblas_sdot(m->dim, x, 1, x, 1);
    cblas_sgemv(CblasRowMajor, CblasNoTrans, m->n_sv, m->dim, -2.0f, m->sv, m->dim, x, 1, 0.0f,
                m->kbuf, 1);
    for (int s = 0; s < m->n_sv; s++)
        m->kbuf[s] = expf(-m->gamma * fmaxf(m->kbuf[s] + xn + m->sv_norm[s], 0.0f));
    cblas_sgemv(CblasRowMajor, CblasNoTrans, m->n_classes, m->n_sv, 1.0f, m->coef, m->n_sv, m->kbuf,
                1, 0.0f, scores, 1);
    for (int c = 0; c < m->n_classes; c++) scores[c] += m->b[c];
}

int svm_predict(svm_t *m, const float *x, float *probs) {
    svm_decision(m, x, probs);
    int best = 0;
    double sum = 0;
    for (int c = 1; c < m->n_classes; c++)
        if (probs[c] > probs[best]) best = c;
    for (int c = 0; c < m->n_classes; c++) {
        probs[c] = 1.0f / (1.0f + expf(m->platt_a[c] * probs[c] + m->platt_b[c]));
        sum += probs[c];
    }
    for (int c = 0; c < m->n_classes; c++) probs[c] = (float)(probs[c] / (sum > 0 ? sum : 1));
    return best;
}

/* ------------------------------------------------------------------ */
/* Model file                                                           */

static uint64_t fnv1a(const unsigned char *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

int svm_save(const svm_t *m, const char *path, char *errstr, size_t errstr_size) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
        return -1;
    }
    uint64_t h = 1469598103934665603ull;
    int ok = 1;
#define PUT(ptr, len)                                                                              \
    do {                                                                                           \
        size_t l_ = (len);                                                                         \
        const unsigned char *p_ = (const unsigned char *)(ptr);                                    \
        for (size_t i_ = 0; i_ < l_; i_++) h = (h ^ p_[i_]) * 1099511628211ull;                    \
        if (l_ && fwrite(p_, 1, l_, f) != l_) ok = 0;                                              \
    } while (0)
    uint32_t hdr[8] = {1,
                       (uint32_t)m->kind,
                       (uint32_t)m->n_classes,
                       (uint32_t)m->dim,
                       (uint32_t)m->features,
                       (uint32_t)m->in_c,
                       (uint32_t)m->in_h,
                       (uint32_t)m->in_w};
    PUT("RSVM", 4);
    PUT(hdr, sizeof hdr);
    PUT(&m->gamma, 4);
    for (int c = 0; c < m->n_classes; c++) {
        size_t ln = strlen(m->labels[c]);
        uint16_t l16 = (uint16_t)(ln > 255 ? 255 : ln);
        PUT(&l16, 2);
        PUT(m->labels[c], l16);
    }
    size_t k = (size_t)m->n_classes, d = (size_t)m->dim;
    if (m->kind == SVM_LINEAR) {
        PUT(m->w, k * d * 4);
    } else {
        uint32_t nsv = (uint32_t)m->n_sv;
        PUT(&nsv, 4);
        PUT(m->sv, (size_t)nsv * d * 4);
        PUT(m->coef, (size_t)nsv * k * 4);
    }
    PUT(m->b, k * 4);
    PUT(m->platt_a, k * 4);
    PUT(m->platt_b, k * 4);
#undef PUT
    if (fwrite(&h, 8, 1, f) != 1) ok = 0;
    if (fclose(f) != 0) ok = 0;
    if (!ok) snprintf(errstr, errstr_size, "%s: write failed", path);
    return ok ? 0 : -1;
}

typedef struct rd {
    const unsigned char *p;
    size_t len, off;
} rd_t;

static int get(rd_t *r, void *out, size_t n) {
    if (n > r->len - r->off) return -1;
    memcpy(out, r->p + r->off, n);
    r->off += n;
    return 0;
}

static int all_finite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

svm_t *svm_load_mem(const void *data, size_t len, char *errstr, size_t errstr_size) {
    rd_t r = {data, len, 0};
    uint32_t hdr[8];
    float gamma;
    svm_t *m = NULL;
    if (len < 48 || memcmp(data, "RSVM", 4) != 0) {
        snprintf(errstr, errstr_size, "not a reel SVM model (magic RSVM)");
        return NULL;
    }
    uint64_t want;
    memcpy(&want, (const unsigned char *)data + len - 8, 8);
    if (fnv1a(data, len - 8) != want) {
        snprintf(errstr, errstr_size, "SVM model: checksum mismatch (truncated or corrupt file)");
        return NULL;
    }
    r.len = len - 8;
    r.off = 4;
    if (get(&r, hdr, sizeof hdr) || get(&r, &gamma, 4)) {
        snprintf(errstr, errstr_size, "SVM model: header truncated");
        return NULL;
    }
    if (hdr[0] != 1) {
        snprintf(errstr, errstr_size, "SVM model version %u unsupported", hdr[0]);
        return NULL;
    }
    if (hdr[1] > 1 || hdr[2] < 2 || hdr[2] > 4096 || hdr[3] == 0 || hdr[3] > (1u << 20) ||
        hdr[4] > 1 || hdr[5] > 16 || hdr[6] > 4096 || hdr[7] > 4096) {
        snprintf(errstr, errstr_size,
                 "SVM model: bad shape (kind %u, %u classes, dim %u, features %u, input %ux%ux%u)",
                 hdr[1], hdr[2], hdr[3], hdr[4], hdr[5], hdr[6], hdr[7]);
        return NULL;
    }
    int k = (int)hdr[2], d = (int)hdr[3];
    if (hdr[4] == SVM_PIXELS && (size_t)hdr[5] * hdr[6] * hdr[7] != hdr[3]) {
        snprintf(errstr, errstr_size, "SVM model: pixels of %ux%ux%u are not %u features", hdr[5],
                 hdr[6], hdr[7], hdr[3]);
        return NULL;
    }
    char *labels[4096] = {0};
    for (int c = 0; c < k; c++) {
        uint16_t ln;
        if (get(&r, &ln, 2) || ln > 255 || !(labels[c] = calloc(ln + 1u, 1)) ||
            get(&r, labels[c], ln))
            goto bad;
    }
    /* The weights fill the rest of the file exactly: checked before the
     * model is allocated, so a short file cannot ask for gigabytes. */
    size_t left = r.len - r.off, kk = (size_t)k, dd = (size_t)d;
    if (hdr[1] == SVM_LINEAR ? left != (kk * dd + 3 * kk) * 4 : left < 4 + 3 * kk * 4) goto bad;
    if (hdr[1] == SVM_RBF) {
        uint32_t nsv;
        memcpy(&nsv, r.p + r.off, 4);
        if (nsv == 0 || left - 4 - 3 * kk * 4 != (size_t)nsv * (dd + kk) * 4) goto bad;
    }
    m = svm_alloc((svm_kind_t)hdr[1], k, d, (const char *const *)labels);
    if (!m) goto bad;
    m->features = (svm_features_t)hdr[4];
    m->in_c = (int)hdr[5], m->in_h = (int)hdr[6], m->in_w = (int)hdr[7];
    m->gamma = gamma;
    if (m->kind == SVM_LINEAR) {
        if (get(&r, m->w, (size_t)k * d * 4)) goto bad;
    } else {
        uint32_t nsv;
        if (get(&r, &nsv, 4) || nsv == 0 || (size_t)nsv * d * 4 > r.len - r.off) goto bad;
        m->n_sv = (int)nsv;
        m->sv = malloc((size_t)nsv * d * 4);
        m->coef = malloc((size_t)nsv * k * 4);
        m->sv_norm = malloc((size_t)nsv * 4);
        m->kbuf = malloc((size_t)nsv * 4);
        if (!m->sv || !m->coef || !m->sv_norm || !m->kbuf || get(&r, m->sv, (size_t)nsv * d * 4) ||
            get(&r, m->coef, (size_t)nsv * k * 4))
            goto bad;
        for (uint32_t s = 0; s < nsv; s++)
            m->sv_norm[s] = cblas_sdot(d, m->sv + (size_t)s * d, 1, m->sv + (size_t)s * d, 1);
    }
    if (get(&r, m->b, (size_t)k * 4) || get(&r, m->platt_a, (size_t)k * 4) ||
        get(&r, m->platt_b, (size_t)k * 4) || r.off != r.len)
        goto bad;
    if (!all_finite(m->w, m->kind == SVM_LINEAR ? kk * dd : 0) ||
        !all_finite(m->sv, m->kind == SVM_RBF ? (size_t)m->n_sv * dd : 0) ||
        !all_finite(m->coef, m->kind == SVM_RBF ? (size_t)m->n_sv * kk : 0) ||
        !all_finite(m->b, kk) || !all_finite(m->platt_a, kk) || !all_finite(m->platt_b, kk) ||
        !isfinite(m->gamma)) {
        snprintf(errstr, errstr_size, "SVM model: a parameter is not finite");
        for (int c = 0; c < k; c++) free(labels[c]);
        svm_free(m);
        return NULL;
    }
    for (int c = 0; c < k; c++) free(labels[c]);
    return m;
bad:
    snprintf(errstr, errstr_size, "SVM model: truncated or inconsistent file");
    for (int c = 0; c < k; c++) free(labels[c]);
    svm_free(m);
    return NULL;
}
