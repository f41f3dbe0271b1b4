/* lstm.c: LSTM/GRU sentence classifier, forward and backward. */
#include "kernels/text/lstm.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Per direction d (the buffers hold dirs blocks, direction d's at block
 * d): zx and dzx are indexed by position in the text (row t * B + b), the
 * rest by step: the backward direction's step s reads position
 * len - 1 - s. */
struct rnn_work {
    int max_b, max_t;
    float *x;             /* T*B x D: input embeddings after dropout */
    float *xmask;         /* T*B x D: dropout scale per input */
    float *zx;            /* dirs x T*B x G: X Wx + bx */
    float *gates;         /* dirs x T*B x G: activated gates */
    float *zh;            /* dirs x T*B x G: GRU only: h Wh + bh */
    float *c;             /* dirs x (T+1)*B x H: LSTM cell states */
    float *h;             /* dirs x (T+1)*B x H: hidden states, h[0] = 0 */
    float *pool;          /* B x P */
    int *argmax;          /* dirs x B x H: the step each maximum came from, -1: none */
    float *pmask;         /* B x P */
    float *pd;            /* B x P: pooled after dropout */
    float *probs;         /* B x C */
    float *dzx;           /* dirs x T*B x G */
    float *dzh;           /* dirs x T*B x G */
    float *dh, *dc, *dhn; /* B x H */
    float *dpool;         /* B x P */
    float *dx;            /* T*B x D */
    float *dlog;          /* B x C */
};

static uint64_t xorshift(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}
static float uniform01(uint64_t *s) {
    return (float)(xorshift(s) >> 40) / (float)(1ull << 24);
}
static float sigm(float x) {
    return 1.0f / (1.0f + expf(-x));
}

size_t rnn_param_count(int cell, int pool, int dirs, int vocab, int dim, int hidden, int classes) {
    size_t G = (size_t)(cell == RNN_GRU ? 3 : 4) * (size_t)hidden, H = (size_t)hidden,
           D = (size_t)dim, C = (size_t)classes, R = (size_t)(dirs == 2 ? 2 : 1),
           P = (size_t)(pool == RNN_POOL_MEANMAX ? 2 : 1) * H * R;
    return (size_t)vocab * D + R * (D * G + H * G + 2 * G) + P * C + C;
}

rnn_t *rnn_new(int cell, int pool, int dirs, int vocab, int dim, int hidden, int classes,
               uint64_t seed) {
    if (vocab <= 0 || dim <= 0 || hidden <= 0 || classes <= 0) return NULL;
    if (pool != RNN_POOL_MAX && pool != RNN_POOL_MEANMAX) return NULL;
    if (dirs != 1 && dirs != 2) return NULL;
    rnn_t *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->cell = cell;
    m->pool = pool;
    m->dirs = dirs;
    m->vocab = vocab, m->dim = dim, m->hidden = hidden, m->classes = classes;
    m->gates = (cell == RNN_GRU ? 3 : 4) * hidden;
    m->pooled = (pool == RNN_POOL_MEANMAX ? 2 : 1) * hidden * dirs;
    size_t G = (size_t)m->gates, H = (size_t)hidden, D = (size_t)dim, C = (size_t)classes,
           P = (size_t)m->pooled;
    m->n_params = rnn_param_count(cell, pool, dirs, vocab, dim, hidden, classes);
    m->params = malloc(m->n_params * sizeof *m->params);
    if (!m->params) {
        free(m);
        return NULL;
    }
    float *p = m->params;
    m->emb = p, p += (size_t)vocab * D;
    m->wx = p, p += D * G;
    m->wh = p, p += H * G;
    m->bx = p, p += G;
    m->bh = p, p += G;
    if (dirs == 2) {
        m->wx2 = p, p += D * G;
        m->wh2 = p, p += H * G;
        m->bx2 = p, p += G;
        m->bh2 = p, p += G;
    }
    m->wo = p, p += P * C;
    m->bo = p;
    uint64_t rng = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < (size_t)vocab * D; i++) m->emb[i] = (uniform01(&rng) * 2 - 1) * 0.1f;
    float k = 1.0f / sqrtf((float)H);
    for (int d = 0; d < dirs; d++) {
        float *wx = d ? m->wx2 : m->wx, *wh = d ? m->wh2 : m->wh, *bx = d ? m->bx2 : m->bx;
        for (size_t i = 0; i < D * G; i++) wx[i] = (uniform01(&rng) * 2 - 1) * k;
        for (size_t i = 0; i < H * G; i++) wh[i] = (uniform01(&rng) * 2 - 1) * k;
        memset(bx, 0, 2 * G * sizeof *bx); /* bx and bh */
        if (cell == RNN_LSTM)
            for (size_t j = H; j < 2 * H; j++) bx[j] = 1.0f;
    }
    for (size_t i = 0; i < P * C; i++) m->wo[i] = (uniform01(&rng) * 2 - 1) * k;
    memset(m->bo, 0, C * sizeof *m->bo);
    return m;
}

void rnn_destroy(rnn_t *m) {
    if (!m) return;
    free(m->params);
    free(m);
}

void rnn_work_destroy(rnn_work_t *w) {
    if (!w) return;
    float *bufs[] = {w->x,    w->xmask, w->zx,    w->gates, w->zh,  w->c,   w->h,
                     w->pool, w->pmask, w->pd,    w->probs, w->dzx, w->dzh, w->dh,
                     w->dc,   w->dhn,   w->dpool, w->dx,    w->dlog};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(w->argmax);
    free(w);
}

rnn_work_t *rnn_work_new(const rnn_t *m, int max_batch, int max_len) {
    if (max_batch <= 0 || max_len <= 0) return NULL;
    rnn_work_t *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    size_t B = (size_t)max_batch, T = (size_t)max_len, D = (size_t)m->dim, H = (size_t)m->hidden,
           G = (size_t)m->gates, C = (size_t)m->classes, P = (size_t)m->pooled, R = (size_t)m->dirs;
    w->max_b = max_batch, w->max_t = max_len;
    int ok =
        (w->x = malloc(T * B * D * sizeof(float))) &&
        (w->xmask = malloc(T * B * D * sizeof(float))) &&
        (w->zx = malloc(R * T * B * G * sizeof(float))) &&
        (w->gates = malloc(R * T * B * G * sizeof(float))) &&
        (w->zh = malloc(R * T * B * G * sizeof(float))) &&
        (w->c = malloc(R * (T + 1) * B * H * sizeof(float))) &&
        (w->h = malloc(R * (T + 1) * B * H * sizeof(float))) &&
        (w->pool = malloc(B * P * sizeof(float))) &&
        (w->argmax = malloc(R * B * H * sizeof(int))) &&
        (w->pmask = malloc(B * P * sizeof(float))) && (w->pd = malloc(B * P * sizeof(float))) &&
        (w->probs = malloc(B * C * sizeof(float))) &&
        (w->dzx = malloc(R * T * B * G * sizeof(float))) &&
        (w->dzh = malloc(R * T * B * G * sizeof(float))) &&
        (w->dh = malloc(B * H * sizeof(float))) && (w->dc = malloc(B * H * sizeof(float))) &&
        (w->dhn = malloc(B * H * sizeof(float))) && (w->dpool = malloc(B * P * sizeof(float))) &&
        (w->dx = malloc(T * B * D * sizeof(float))) && (w->dlog = malloc(B * C * sizeof(float)));
    if (!ok) {
        rnn_work_destroy(w);
        return NULL;
    }
    return w;
}

float rnn_forward(const rnn_t *m, rnn_work_t *w, const int32_t *ids, const int *lens, int B, int T,
                  const int *labels, float p_in, float p_out, uint64_t *rng, float *probs) {
    return rnn_forward_offset(m, w, ids, lens, B, T, labels, NULL, p_in, p_out, rng, probs);
}

/* The position in the text of direction d's step s of sequence b (s < len). */
static inline int step_pos(int d, int s, int len) {
    return d ? len - 1 - s : s;
}

/* The recurrence of direction d over the embeddings in w->x, its states
 * into d's blocks of the work buffers, then its pooled block (max; mean
 * after it) into w->pool at column offset d * P / dirs. */
static void forward_dir(const rnn_t *m, rnn_work_t *w, int d, const int *lens, int B, int T) {
    const int D = m->dim, H = m->hidden, G = m->gates, P = m->pooled, Q = P / m->dirs;
    const float *wx = d ? m->wx2 : m->wx, *wh = d ? m->wh2 : m->wh, *bx = d ? m->bx2 : m->bx,
                *bh = d ? m->bh2 : m->bh;
    size_t TBG = (size_t)T * B * G, TBH = (size_t)(T + 1) * B * H;
    float *zxd = w->zx + d * TBG, *gates = w->gates + d * TBG, *zhd = w->zh + d * TBG;
    float *hd = w->h + d * TBH, *cd = w->c + d * TBH;
    int *argmax = w->argmax + (size_t)d * B * H;
    /* Every position's input projection in one sgemm. */
    for (int r = 0; r < T * B; r++) memcpy(zxd + (size_t)r * G, bx, G * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T * B, G, D, 1.0f, w->x, D, wx, G, 1.0f,
                zxd, G);
    memset(hd, 0, (size_t)B * H * sizeof(float));
    memset(cd, 0, (size_t)B * H * sizeof(float));
    for (int t = 0; t < T; t++) {
        const float *hp = hd + (size_t)t * B * H, *cp = cd + (size_t)t * B * H;
        float *hn = hd + (size_t)(t + 1) * B * H, *cn = cd + (size_t)(t + 1) * B * H;
        float *zh = zhd + (size_t)t * B * G, *gt = gates + (size_t)t * B * G;
        for (int b = 0; b < B; b++) memcpy(zh + (size_t)b * G, bh, G * sizeof(float));
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, G, H, 1.0f, hp, H, wh, G, 1.0f,
                    zh, G);
        for (int b = 0; b < B; b++) {
            const float *hpb = hp + (size_t)b * H, *cpb = cp + (size_t)b * H;
            float *hnb = hn + (size_t)b * H, *cnb = cn + (size_t)b * H, *g = gt + (size_t)b * G;
            const float *u = zh + (size_t)b * G;
            if (t >= lens[b]) {
                memcpy(hnb, hpb, H * sizeof(float));
                memcpy(cnb, cpb, H * sizeof(float));
                memset(g, 0, G * sizeof(float));
                continue;
            }
            const float *a = zxd + ((size_t)step_pos(d, t, lens[b]) * B + b) * G;
            if (m->cell == RNN_LSTM) {
                for (int j = 0; j < H; j++) {
                    float i = sigm(a[j] + u[j]), f = sigm(a[H + j] + u[H + j]);
                    float gg = tanhf(a[2 * H + j] + u[2 * H + j]),
                          o = sigm(a[3 * H + j] + u[3 * H + j]);
                    g[j] = i, g[H + j] = f, g[2 * H + j] = gg, g[3 * H + j] = o;
                    cnb[j] = f * cpb[j] + i * gg;
                    hnb[j] = o * tanhf(cnb[j]);
                }
            } else {
                for (int j = 0; j < H; j++) {
                    float r = sigm(a[j] + u[j]), z = sigm(a[H + j] + u[H + j]);
                    float n = tanhf(a[2 * H + j] + r * u[2 * H + j]);
                    g[j] = r, g[H + j] = z, g[2 * H + j] = n;
                    hnb[j] = (1 - z) * n + z * hpb[j];
                    cnb[j] = 0;
                }
            }
        }
    }
    for (int b = 0; b < B; b++) {
        float *pl = w->pool + (size_t)b * P + (size_t)d * Q;
        int *am = argmax + (size_t)b * H, n = lens[b] < T ? lens[b] : T;
        for (int j = 0; j < H; j++) {
            pl[j] = 0, am[j] = -1;
            for (int t = 0; t < n; t++) {
                float v = hd[((size_t)(t + 1) * B + b) * H + j];
                if (am[j] < 0 || v > pl[j]) pl[j] = v, am[j] = t;
            }
        }
        if (m->pool == RNN_POOL_MEANMAX) {
            float *mean = pl + H;
            memset(mean, 0, (size_t)H * sizeof *mean);
            for (int t = 0; t < n; t++) {
                const float *ht = hd + ((size_t)(t + 1) * B + b) * H;
                for (int j = 0; j < H; j++) mean[j] += ht[j];
            }
            for (int j = 0; j < H && n > 0; j++) mean[j] /= (float)n;
        }
    }
}

float rnn_forward_offset(const rnn_t *m, rnn_work_t *w, const int32_t *ids, const int *lens, int B,
                         int T, const int *labels, const float *offset, float p_in, float p_out,
                         uint64_t *rng, float *probs) {
    const int D = m->dim, C = m->classes, P = m->pooled;
    if (B > w->max_b) B = w->max_b;
    if (T > w->max_t) T = w->max_t;
    /* Gather embeddings, time-major, with input dropout. */
    float keep_in = 1.0f - p_in, keep_out = 1.0f - p_out;
    for (int t = 0; t < T; t++)
        for (int b = 0; b < B; b++) {
            float *x = w->x + ((size_t)t * B + b) * D, *mk = w->xmask + ((size_t)t * B + b) * D;
            if (t >= lens[b]) {
                memset(x, 0, D * sizeof *x);
                memset(mk, 0, D * sizeof *mk);
                continue;
            }
            const float *e = m->emb + (size_t)ids[(size_t)b * T + t] * D;
            for (int d = 0; d < D; d++) {
                mk[d] =
                    (rng && p_in > 0) ? (uniform01(rng) < keep_in ? 1.0f / keep_in : 0.0f) : 1.0f;
                x[d] = e[d] * mk[d];
            }
        }
    for (int d = 0; d < m->dirs; d++) forward_dir(m, w, d, lens, B, T);
    /* Dropout on the pooled states, dense, softmax. */
    float loss = 0;
    for (int b = 0; b < B; b++) {
        float *pl = w->pool + (size_t)b * P, *pd = w->pd + (size_t)b * P,
              *pm = w->pmask + (size_t)b * P;
        for (int j = 0; j < P; j++) {
            pm[j] =
                (rng && p_out > 0) ? (uniform01(rng) < keep_out ? 1.0f / keep_out : 0.0f) : 1.0f;
            pd[j] = pl[j] * pm[j];
        }
        float *pr = w->probs + (size_t)b * C;
        float mx = -INFINITY;
        for (int c = 0; c < C; c++) {
            float s = m->bo[c] + (offset ? offset[(size_t)b * C + c] : 0.0f);
            for (int j = 0; j < P; j++) s += pd[j] * m->wo[(size_t)j * C + c];
            pr[c] = s;
            if (s > mx) mx = s;
        }
        float z = 0;
        for (int c = 0; c < C; c++) z += pr[c] = expf(pr[c] - mx);
        for (int c = 0; c < C; c++) pr[c] /= z;
        if (labels) loss -= logf(pr[labels[b]] > 1e-30f ? pr[labels[b]] : 1e-30f);
        if (probs) memcpy(probs + (size_t)b * C, pr, C * sizeof(float));
    }
    return labels ? loss / (float)B : 0.0f;
}

/* BPTT of direction d from w->dpool (its column block), ADDING into its
 * weight gradients; leaves d's dzx block (by position) for the caller. */
static void backward_dir(const rnn_t *m, rnn_work_t *w, int d, const int *lens, int B, int T,
                         float *g_wh, float *g_bx, float *g_bh) {
    const int H = m->hidden, G = m->gates, P = m->pooled, Q = P / m->dirs;
    const float *wh = d ? m->wh2 : m->wh;
    size_t TBG = (size_t)T * B * G, TBH = (size_t)(T + 1) * B * H;
    const float *gates = w->gates + d * TBG, *zhd = w->zh + d * TBG, *hd = w->h + d * TBH,
                *cd = w->c + d * TBH;
    float *dzxd = w->dzx + d * TBG, *dzhd = w->dzh + d * TBG;
    const int *argmax = w->argmax + (size_t)d * B * H;
    memset(dzxd, 0, TBG * sizeof(float)); /* padding positions stay 0 */
    memset(w->dhn, 0, (size_t)B * H * sizeof(float));
    memset(w->dc, 0, (size_t)B * H * sizeof(float));
    for (int t = T - 1; t >= 0; t--) {
        const float *hp = hd + (size_t)t * B * H, *cp = cd + (size_t)t * B * H;
        const float *cn = cd + (size_t)(t + 1) * B * H, *gt = gates + (size_t)t * B * G;
        const float *zh = zhd + (size_t)t * B * G;
        float *dzh = dzhd + (size_t)t * B * G;
        for (int b = 0; b < B; b++) {
            float *dh = w->dh + (size_t)b * H, *dc = w->dc + (size_t)b * H;
            const float *dhn = w->dhn + (size_t)b * H;
            float *ah = dzh + (size_t)b * G;
            const float *g = gt + (size_t)b * G;
            const float *dp = w->dpool + (size_t)b * P + (size_t)d * Q;
            for (int j = 0; j < H; j++)
                dh[j] = dhn[j] + (argmax[(size_t)b * H + j] == t ? dp[j] : 0.0f);
            if (m->pool == RNN_POOL_MEANMAX && t < lens[b])
                for (int j = 0; j < H; j++) dh[j] += dp[H + j];
            if (t >= lens[b]) {
                /* A padding step copies the state: gradients pass through. */
                memset(ah, 0, G * sizeof(float));
                continue;
            }
            float *ax = dzxd + ((size_t)step_pos(d, t, lens[b]) * B + b) * G;
            if (m->cell == RNN_LSTM) {
                const float *cpb = cp + (size_t)b * H, *cnb = cn + (size_t)b * H;
                for (int j = 0; j < H; j++) {
                    float i = g[j], f = g[H + j], gg = g[2 * H + j], o = g[3 * H + j];
                    float tc = tanhf(cnb[j]);
                    float dcj = dc[j] + dh[j] * o * (1 - tc * tc);
                    ax[j] = dcj * gg * i * (1 - i);
                    ax[H + j] = dcj * cpb[j] * f * (1 - f);
                    ax[2 * H + j] = dcj * i * (1 - gg * gg);
                    ax[3 * H + j] = dh[j] * tc * o * (1 - o);
                    dc[j] = dcj * f;
                }
                memcpy(ah, ax, G * sizeof(float));
            } else {
                const float *hpb = hp + (size_t)b * H, *u = zh + (size_t)b * G;
                for (int j = 0; j < H; j++) {
                    float r = g[j], z = g[H + j], n = g[2 * H + j];
                    float dn = dh[j] * (1 - z), dz = dh[j] * (hpb[j] - n);
                    float an = dn * (1 - n * n);
                    float dr = an * u[2 * H + j];
                    ax[j] = ah[j] = dr * r * (1 - r);
                    ax[H + j] = ah[H + j] = dz * z * (1 - z);
                    ax[2 * H + j] = an;
                    ah[2 * H + j] = an * r;
                    dh[j] *= z; /* the direct path, before Wh is added below */
                }
            }
        }
        /* dh_prev = direct path (GRU) or 0 (LSTM) + dzh Wh^T; padding rows keep dh. */
        for (int b = 0; b < B; b++) {
            float *dhn = w->dhn + (size_t)b * H;
            const float *dh = w->dh + (size_t)b * H;
            if (t >= lens[b] || m->cell == RNN_GRU)
                memcpy(dhn, dh, H * sizeof(float));
            else
                memset(dhn, 0, H * sizeof(float));
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, H, G, 1.0f, dzh, G, wh, G, 1.0f,
                    w->dhn, H);
    }
    /* Recurrent weight gradients over all steps at once. */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, H, G, T * B, 1.0f, hd, H, dzhd, G, 1.0f,
                g_wh, G);
    for (int r = 0; r < T * B; r++)
        for (int k = 0; k < G; k++) {
            g_bx[k] += dzxd[(size_t)r * G + k];
            g_bh[k] += dzhd[(size_t)r * G + k];
        }
}

void rnn_backward(const rnn_t *m, rnn_work_t *w, const int32_t *ids, const int *lens, int B, int T,
                  const int *labels, float *grad) {
    const int D = m->dim, H = m->hidden, G = m->gates, C = m->classes, P = m->pooled,
              Q = P / m->dirs;
    if (B > w->max_b) B = w->max_b;
    if (T > w->max_t) T = w->max_t;
    /* The gradient has the layout of m->params. */
    float *g_emb = grad, *g_wo = grad + (m->wo - m->params), *g_bo = grad + (m->bo - m->params);
    /* Softmax cross-entropy, mean over the batch. */
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++)
            w->dlog[(size_t)b * C + c] =
                (w->probs[(size_t)b * C + c] - (labels[b] == c)) / (float)B;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, P, C, B, 1.0f, w->pd, P, w->dlog, C, 1.0f,
                g_wo, C);
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++) g_bo[c] += w->dlog[(size_t)b * C + c];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, P, C, 1.0f, w->dlog, C, m->wo, C, 0.0f,
                w->dpool, P);
    for (int i = 0; i < B * P; i++) w->dpool[i] *= w->pmask[i];
    if (m->pool == RNN_POOL_MEANMAX) /* the mean's share of each step: dmean / len */
        for (int b = 0; b < B; b++) {
            int n = lens[b] < T ? lens[b] : T;
            for (int d = 0; d < m->dirs; d++)
                for (int j = 0; j < H && n > 0; j++)
                    w->dpool[(size_t)b * P + (size_t)d * Q + H + j] /= (float)n;
        }
    for (int d = 0; d < m->dirs; d++) {
        const float *wx = d ? m->wx2 : m->wx;
        float *g_wx = grad + (wx - m->params), *g_wh = grad + ((d ? m->wh2 : m->wh) - m->params),
              *g_bx = grad + ((d ? m->bx2 : m->bx) - m->params),
              *g_bh = grad + ((d ? m->bh2 : m->bh) - m->params);
        backward_dir(m, w, d, lens, B, T, g_wh, g_bx, g_bh);
        const float *dzxd = w->dzx + (size_t)d * T * B * G;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, D, G, T * B, 1.0f, w->x, D, dzxd, G,
                    1.0f, g_wx, G);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T * B, D, G, 1.0f, dzxd, G, wx, G,
                    d ? 1.0f : 0.0f, w->dx, D);
    }
    for (int t = 0; t < T; t++)
        for (int b = 0; b < B; b++) {
            if (t >= lens[b]) continue;
            const float *dx = w->dx + ((size_t)t * B + b) * D,
                        *mk = w->xmask + ((size_t)t * B + b) * D;
            float *ge = g_emb + (size_t)ids[(size_t)b * T + t] * D;
            for (int d = 0; d < D; d++) ge[d] += dx[d] * mk[d];
        }
}

adam_t *adam_new(size_t n) {
    adam_t *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    a->m = calloc(n, sizeof *a->m);
    a->v = calloc(n, sizeof *a->v);
    a->n = n;
    if (!a->m || !a->v) {
        adam_destroy(a);
        return NULL;
    }
    return a;
}

void adam_destroy(adam_t *a) {
    if (!a) return;
    free(a->m);
    free(a->v);
    free(a);
}

void adam_update(adam_t *a, float *params, const float *grad, size_t begin, size_t n, float lr,
                 float scale) {
    const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    float c1 = 1.0f - powf(b1, (float)a->t), c2 = 1.0f - powf(b2, (float)a->t);
    float step = lr * sqrtf(c2) / c1;
    float *m = a->m + begin, *v = a->v + begin, *p = params + begin;
    const float *gr = grad + begin;
    for (size_t i = 0; i < n; i++) {
        float g = gr[i] * scale;
        m[i] = b1 * m[i] + (1 - b1) * g;
        v[i] = b2 * v[i] + (1 - b2) * g * g;
        p[i] -= step * m[i] / (sqrtf(v[i]) + eps);
    }
}

float adam_step(adam_t *a, float *params, float *grad, float lr, float clip) {
    double ss = 0;
    for (size_t i = 0; i < a->n; i++) ss += (double)grad[i] * grad[i];
    float norm = (float)sqrt(ss), scale = 1.0f;
    if (clip > 0 && norm > clip) scale = clip / norm;
    a->t++;
    adam_update(a, params, grad, 0, a->n, lr, scale);
    return norm;
}
