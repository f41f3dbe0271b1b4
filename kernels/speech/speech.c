/* speech.c: GMM-HMM and hybrid DNN-HMM word models (see speech.h). */
#include "kernels/speech/speech.h"

#include "kernels/speech/mlp.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NEG_INF (-1e30f)
#define LOG_2PI 1.8378770664093453

typedef struct sph_word_def {
    char name[SPH_MAX_NAME];
    int n_states;
    int first; /* first global state */
} sph_word_def_t;

typedef struct sph_mlp {
    int ctx;
    float *in_mean, *in_std; /* net.sizes[0] */
    float *log_prior;        /* n_states */
    mlp_net_t net;
} sph_mlp_t;

/* Decoding token: best path into one HMM state. */
typedef struct token {
    float score;
    int link;  /* record of the previous word on the path, -1 none */
    int start; /* frame at which this word was entered */
} token_t;

/* A word ended on the best path into some node: node, frames, previous. */
typedef struct word_rec {
    int node, start, end, prev;
} word_rec_t;

struct sph_model {
    int rate, dim, n_mix, n_words, n_states;
    float ins_penalty, ac_scale;
    sph_word_def_t *words;
    float *log_self, *log_next; /* n_states */
    float *weight, *mean, *var; /* S*M, S*M*D, S*M*D */
    float *wz;                  /* S*M rows of 2D+1: -ivar/2, mean*ivar, gconst */
    int has_mlp, use_mlp;
    sph_mlp_t mlp;
    /* Grow-only run state. */
    int cap_T;
    float *z;                       /* T x (2D+1) */
    float *lmix;                    /* T x S*M */
    float *emis;                    /* T x S */
    float *norm;                    /* T x D: features normalized for the MLP */
    float *act[MLP_MAX_LAYERS + 1]; /* MLP activations, T x sizes[i] */
    token_t *tok;
    size_t tok_cap;
    word_rec_t *rec;
    size_t rec_cap, n_rec;
};

void sph_default_train_opts(sph_train_opts_t *o) {
    o->rate = 8000;
    o->states_per_word = 8;
    o->sil_states = 3;
    o->n_mix = 4;
    o->viterbi_iters = 3;
    o->bw_iters = 5;
    o->ins_penalty = -40.0f;
    o->seed = 1;
    o->verbose = 0;
}

void sph_default_mlp_opts(sph_mlp_opts_t *o) {
    o->hidden = 128;
    o->layers = 2;
    o->epochs = 6;
    o->batch = 256;
    o->lr = 1e-3f;
    o->seed = 1;
    o->verbose = 0;
}

int sph_rate(const sph_model_t *m) {
    return m->rate;
}
int sph_dim(const sph_model_t *m) {
    return m->dim;
}
int sph_n_words(const sph_model_t *m) {
    return m->n_words;
}
int sph_is_hybrid(const sph_model_t *m) {
    return m->has_mlp;
}
const char *sph_word_name(const sph_model_t *m, int i) {
    return i >= 0 && i < m->n_words ? m->words[i].name : "?";
}
int sph_word_id(const sph_model_t *m, const char *name) {
    for (int i = 0; i < m->n_words; i++)
        if (strcmp(m->words[i].name, name) == 0) return i;
    return -1;
}
void sph_set_ins_penalty(sph_model_t *m, float p) {
    m->ins_penalty = p;
}
float sph_ins_penalty(const sph_model_t *m) {
    return m->ins_penalty;
}
void sph_use_mlp(sph_model_t *m, int on) {
    m->use_mlp = on && m->has_mlp;
}

static void sph_mlp_free(sph_mlp_t *p) {
    free(p->in_mean);
    free(p->in_std);
    free(p->log_prior);
    mlp_free(&p->net);
    memset(p, 0, sizeof *p);
}

void sph_destroy(sph_model_t *m) {
    if (!m) return;
    free(m->words);
    free(m->log_self);
    free(m->log_next);
    free(m->weight);
    free(m->mean);
    free(m->var);
    free(m->wz);
    sph_mlp_free(&m->mlp);
    free(m->z);
    free(m->lmix);
    free(m->emis);
    free(m->norm);
    for (int l = 0; l <= MLP_MAX_LAYERS; l++) free(m->act[l]);
    free(m->tok);
    free(m->rec);
    free(m);
}

/* Allocates a model's parameter arrays for words with n_states each. */
static sph_model_t *model_alloc(int rate, int dim, int n_mix, int n_words, const int *n_states) {
    sph_model_t *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->rate = rate;
    m->dim = dim;
    m->n_mix = n_mix;
    m->n_words = n_words;
    m->ac_scale = 1.0f;
    m->words = calloc(n_words, sizeof *m->words);
    if (!m->words) goto fail;
    int s = 0;
    for (int w = 0; w < n_words; w++) {
        m->words[w].n_states = n_states[w];
        m->words[w].first = s;
        s += n_states[w];
    }
    m->n_states = s;
    size_t sm = (size_t)s * n_mix;
    m->log_self = calloc(s, sizeof *m->log_self);
    m->log_next = calloc(s, sizeof *m->log_next);
    m->weight = calloc(sm, sizeof *m->weight);
    m->mean = calloc(sm * dim, sizeof *m->mean);
    m->var = calloc(sm * dim, sizeof *m->var);
    m->wz = calloc(sm * (2 * dim + 1), sizeof *m->wz);
    if (!m->log_self || !m->log_next || !m->weight || !m->mean || !m->var || !m->wz) goto fail;
    return m;
fail:
    sph_destroy(m);
    return NULL;
}

/* Rows of wz from the GMM parameters, so that a frame's log-likelihood per
 * mixture is one dot product with [x^2, x, 1]. */
static void derive(sph_model_t *m) {
    int D = m->dim, K = 2 * D + 1;
    size_t sm = (size_t)m->n_states * m->n_mix;
    for (size_t r = 0; r < sm; r++) {
        const float *mu = m->mean + r * D, *v = m->var + r * D;
        float *w = m->wz + r * K;
        double g = m->weight[r] > 0 ? log(m->weight[r]) : -1e10;
        g -= 0.5 * D * LOG_2PI;
        for (int d = 0; d < D; d++) {
            double iv = 1.0 / v[d];
            w[d] = (float)(-0.5 * iv);
            w[D + d] = (float)(mu[d] * iv);
            g -= 0.5 * (log(v[d]) + mu[d] * mu[d] * iv);
        }
        w[2 * D] = (float)g;
    }
}

static int ensure_cap(sph_model_t *m, int T) {
    if (T <= m->cap_T) return 0;
    int cap = m->cap_T ? m->cap_T : 256;
    while (cap < T) cap *= 2;
    size_t sm = (size_t)m->n_states * m->n_mix;
    float *z = realloc(m->z, (size_t)cap * (2 * m->dim + 1) * sizeof *z);
    if (!z) return -1;
    m->z = z;
    float *l = realloc(m->lmix, (size_t)cap * sm * sizeof *l);
    if (!l) return -1;
    m->lmix = l;
    float *e = realloc(m->emis, (size_t)cap * m->n_states * sizeof *e);
    if (!e) return -1;
    m->emis = e;
    float *nz = realloc(m->norm, (size_t)cap * m->dim * sizeof *nz);
    if (!nz) return -1;
    m->norm = nz;
    if (m->has_mlp) {
        for (int i = 0; i <= m->mlp.net.n_layers; i++) {
            float *a = realloc(m->act[i], (size_t)cap * m->mlp.net.sizes[i] * sizeof *a);
            if (!a) return -1;
            m->act[i] = a;
        }
    }
    m->cap_T = cap;
    return 0;
}

/* GMM log-likelihoods of frames feat[0..T) for states [first, first+count)
 * into m->lmix (per mixture) and m->emis (per state). */
static void emis_gmm(sph_model_t *m, const float *feat, int T, int first, int count) {
    int D = m->dim, K = 2 * D + 1, M = m->n_mix, S = m->n_states;
    for (int t = 0; t < T; t++) {
        const float *x = feat + (size_t)t * D;
        float *z = m->z + (size_t)t * K;
        for (int d = 0; d < D; d++) {
            z[d] = x[d] * x[d];
            z[D + d] = x[d];
        }
        z[2 * D] = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, count * M, K, 1.0f, m->z, K,
                m->wz + (size_t)first * M * K, K, 0.0f, m->lmix + (size_t)first * M, S * M);
    for (int t = 0; t < T; t++) {
        for (int s = first; s < first + count; s++) {
            const float *l = m->lmix + (size_t)t * S * M + (size_t)s * M;
            float mx = l[0];
            for (int k = 1; k < M; k++) mx = l[k] > mx ? l[k] : mx;
            float acc = 0.0f;
            for (int k = 0; k < M; k++) acc += expf(l[k] - mx);
            m->emis[(size_t)t * S + s] = mx + logf(acc);
        }
    }
}

/* Builds the MLP input of frame t: frames t-ctx..t+ctx (edges repeated),
 * normalized. */
static void stack_frame(const sph_mlp_t *p, const float *feat, int T, int D, int t, float *out) {
    int i = 0;
    for (int c = -p->ctx; c <= p->ctx; c++) {
        int u = t + c < 0 ? 0 : t + c >= T ? T - 1 : t + c;
        const float *x = feat + (size_t)u * D;
        for (int d = 0; d < D; d++, i++) out[i] = (x[d] - p->in_mean[i]) / p->in_std[i];
    }
}

/* Emission scores of every state for every frame into m->emis. */
static int emis_all(sph_model_t *m, const float *feat, int T) {
    if (ensure_cap(m, T) < 0) return -1;
    if (!m->use_mlp) {
        emis_gmm(m, feat, T, 0, m->n_states);
        return 0;
    }
    const sph_mlp_t *p = &m->mlp;
    int D = m->dim, in = p->net.sizes[0];
    /* Normalize each frame once, then stack copies (every context block
     * shares the same statistics). */
    for (int t = 0; t < T; t++)
        for (int d = 0; d < D; d++)
            m->norm[(size_t)t * D + d] = (feat[(size_t)t * D + d] - p->in_mean[d]) / p->in_std[d];
    for (int t = 0; t < T; t++) {
        float *row = m->act[0] + (size_t)t * in;
        for (int c = -p->ctx; c <= p->ctx; c++) {
            int u = t + c < 0 ? 0 : t + c >= T ? T - 1 : t + c;
            memcpy(row + (size_t)(c + p->ctx) * D, m->norm + (size_t)u * D, D * sizeof *row);
        }
    }
    mlp_forward(&p->net, m->act, T);
    const float *lp = m->act[p->net.n_layers];
    for (size_t i = 0; i < (size_t)T * m->n_states; i++)
        m->emis[i] = m->ac_scale * (lp[i] - p->log_prior[i % m->n_states]);
    return 0;
}

/* ---- composite chains (one utterance's states in a row) ---- */

/* Global states of <sil> w1 .. wk <sil> into q; returns their count. */
static int chain_states(const sph_model_t *m, const sph_utt_t *u, int *q) {
    int L = 0;
    for (int i = -1; i <= u->n_words; i++) {
        int w = (i < 0 || i == u->n_words) ? 0 : u->words[i];
        for (int s = 0; s < m->words[w].n_states; s++) q[L++] = m->words[w].first + s;
    }
    return L;
}

static int chain_len(const sph_model_t *m, const sph_utt_t *u) {
    int L = 2 * m->words[0].n_states;
    for (int i = 0; i < u->n_words; i++) L += m->words[u->words[i]].n_states;
    return L;
}

/* Emissions of the words in u (and silence). */
static void emis_chain(sph_model_t *m, const sph_utt_t *u) {
    if (m->use_mlp) {
        emis_all(m, u->feat, u->T);
        return;
    }
    emis_gmm(m, u->feat, u->T, m->words[0].first, m->words[0].n_states);
    for (int i = 0; i < u->n_words; i++) {
        int w = u->words[i], seen = 0;
        for (int j = 0; j < i; j++) seen |= u->words[j] == w;
        if (!seen) emis_gmm(m, u->feat, u->T, m->words[w].first, m->words[w].n_states);
    }
}

/* Viterbi through the chain q[0..L): state of each frame into out. Uses
 * m->emis. Returns the log score, or NEG_INF when T < L. */
static float chain_viterbi(const sph_model_t *m, const int *q, int L, int T, int *out, float *delta,
                           unsigned char *from_prev) {
    if (T < L) return NEG_INF;
    int S = m->n_states;
    for (int j = 0; j < L; j++) delta[j] = NEG_INF;
    delta[0] = m->emis[q[0]];
    for (int t = 1; t < T; t++) {
        const float *e = m->emis + (size_t)t * S;
        float *dp = delta + (size_t)(t - 1) * L, *dc = delta + (size_t)t * L;
        unsigned char *fp = from_prev + (size_t)t * L;
        for (int j = 0; j < L; j++) {
            float stay = dp[j] + m->log_self[q[j]];
            float move = j ? dp[j - 1] + m->log_next[q[j - 1]] : NEG_INF;
            fp[j] = move > stay;
            dc[j] = (move > stay ? move : stay) + e[q[j]];
            if (dc[j] < NEG_INF) dc[j] = NEG_INF;
        }
    }
    float score = delta[(size_t)(T - 1) * L + L - 1];
    int j = L - 1;
    for (int t = T - 1; t >= 0; t--) {
        out[t] = q[j];
        if (t > 0 && from_prev[(size_t)t * L + j]) j--;
    }
    return score;
}

/* ---- training ---- */

typedef struct trainer {
    sph_model_t *m;
    const sph_utt_t *utts;
    int n;
    int *align;     /* state per frame, all utterances back to back */
    size_t *offset; /* first frame of each utterance in align */
    size_t total;
    float *var_floor; /* dim */
    float *gmean;     /* dim */
    int *q;
    float *delta;
    unsigned char *from_prev;
    double *alpha, *beta;
    size_t cap_TL;
    uint64_t rng;
} trainer_t;

static uint32_t rng_next(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(*s >> 33);
}

static int trainer_ensure(trainer_t *tr, int T, int L) {
    size_t need = (size_t)T * L;
    if (need <= tr->cap_TL) return 0;
    free(tr->delta);
    free(tr->from_prev);
    free(tr->alpha);
    free(tr->beta);
    tr->delta = malloc(need * sizeof *tr->delta);
    tr->from_prev = malloc(need);
    tr->alpha = malloc(need * sizeof *tr->alpha);
    tr->beta = malloc(need * sizeof *tr->beta);
    tr->cap_TL = need;
    return tr->delta && tr->from_prev && tr->alpha && tr->beta ? 0 : -1;
}

/* k-means over the frames aligned to each state gives its mixtures;
 * durations give its transitions. */
static int reestimate_viterbi(trainer_t *tr) {
    sph_model_t *m = tr->m;
    int S = m->n_states, M = m->n_mix, D = m->dim;
    size_t *cnt = calloc(S + 1, sizeof *cnt);
    double *visits = calloc(S, sizeof *visits);
    float *buf = malloc(tr->total * D * sizeof *buf);
    int *lab = malloc(tr->total * sizeof *lab);
    size_t *fill = calloc(S, sizeof *fill);
    float *cent = malloc((size_t)M * D * sizeof *cent);
    double *acc = malloc((size_t)M * D * 2 * sizeof *acc);
    double *nk = malloc(M * sizeof *nk);
    int rc = -1;
    if (!cnt || !visits || !buf || !lab || !fill || !cent || !acc || !nk) goto done;
    for (int u = 0; u < tr->n; u++) {
        const int *a = tr->align + tr->offset[u];
        for (int t = 0; t < tr->utts[u].T; t++) {
            cnt[a[t] + 1]++;
            if (t == 0 || a[t] != a[t - 1]) visits[a[t]] += 1.0;
        }
    }
    for (int s = 0; s < S; s++) cnt[s + 1] += cnt[s];
    for (int u = 0; u < tr->n; u++) {
        const int *a = tr->align + tr->offset[u];
        for (int t = 0; t < tr->utts[u].T; t++) {
            size_t at = cnt[a[t]] + fill[a[t]]++;
            memcpy(buf + at * D, tr->utts[u].feat + (size_t)t * D, D * sizeof *buf);
        }
    }
    for (int s = 0; s < S; s++) {
        size_t n = cnt[s + 1] - cnt[s];
        const float *X = buf + cnt[s] * D;
        float *mu = m->mean + (size_t)s * M * D, *var = m->var + (size_t)s * M * D;
        float *wt = m->weight + (size_t)s * M;
        if (n == 0) {
            for (int k = 0; k < M; k++) {
                wt[k] = 1.0f / M;
                for (int d = 0; d < D; d++) {
                    mu[k * D + d] = tr->gmean[d];
                    var[k * D + d] = tr->var_floor[d] * 100.0f;
                }
            }
            m->log_self[s] = logf(0.5f);
            m->log_next[s] = logf(0.5f);
            continue;
        }
        double p_next = visits[s] / (double)n;
        if (p_next < 0.01) p_next = 0.01;
        if (p_next > 0.99) p_next = 0.99;
        m->log_self[s] = (float)log(1.0 - p_next);
        m->log_next[s] = (float)log(p_next);
        /* Centres start at frames spread over the state's frames. */
        for (int k = 0; k < M; k++) {
            size_t pick = n <= (size_t)M ? (size_t)k % n : (rng_next(&tr->rng) % n);
            memcpy(cent + (size_t)k * D, X + pick * D, D * sizeof *cent);
        }
        int *lb = lab + cnt[s];
        for (int it = 0; it < 10; it++) {
            memset(acc, 0, (size_t)M * D * 2 * sizeof *acc);
            memset(nk, 0, M * sizeof *nk);
            for (size_t i = 0; i < n; i++) {
                const float *x = X + i * D;
                int best = 0;
                float bd = FLT_MAX;
                for (int k = 0; k < M; k++) {
                    const float *c = cent + (size_t)k * D;
                    float dd = 0.0f;
                    for (int d = 0; d < D; d++) {
                        float df = x[d] - c[d];
                        dd += df * df / tr->var_floor[d];
                    }
                    if (dd < bd) bd = dd, best = k;
                }
                lb[i] = best;
                nk[best] += 1.0;
                for (int d = 0; d < D; d++) {
                    acc[(size_t)best * D * 2 + d] += x[d];
                    acc[(size_t)best * D * 2 + D + d] += (double)x[d] * x[d];
                }
            }
            for (int k = 0; k < M; k++) {
                if (nk[k] > 0) {
                    for (int d = 0; d < D; d++)
                        cent[(size_t)k * D + d] = (float)(acc[(size_t)k * D * 2 + d] / nk[k]);
                } else { /* empty: restart at a random frame */
                    memcpy(cent + (size_t)k * D, X + (rng_next(&tr->rng) % n) * D,
                           D * sizeof *cent);
                }
            }
        }
        for (int k = 0; k < M; k++) {
            double nn = nk[k];
            wt[k] = (float)((nn + 0.01) / (n + 0.01 * M));
            for (int d = 0; d < D; d++) {
                double mean = nn > 0 ? acc[(size_t)k * D * 2 + d] / nn : cent[(size_t)k * D + d];
                double v = nn > 1 ? acc[(size_t)k * D * 2 + D + d] / nn - mean * mean : 0.0;
                mu[k * D + d] = (float)mean;
                var[k * D + d] = (float)(v > tr->var_floor[d] ? v : tr->var_floor[d]);
            }
        }
    }
    derive(m);
    rc = 0;
done:
    free(cnt);
    free(visits);
    free(buf);
    free(lab);
    free(fill);
    free(cent);
    free(acc);
    free(nk);
    return rc;
}

static double logaddd(double a, double b) {
    if (a < b) {
        double t = a;
        a = b;
        b = t;
    }
    if (b < -1e29) return a;
    return a + log1p(exp(b - a));
}

/* One Baum-Welch pass over every utterance; re-estimates the model.
 * Returns the average log-likelihood per frame, or NAN on failure. */
static double baum_welch(trainer_t *tr) {
    sph_model_t *m = tr->m;
    int S = m->n_states, M = m->n_mix, D = m->dim;
    size_t sm = (size_t)S * M;
    double *occ = calloc(sm, sizeof *occ);
    double *sx = calloc(sm * D, sizeof *sx);
    double *sxx = calloc(sm * D, sizeof *sxx);
    double *t_self = calloc(S, sizeof *t_self);
    double *t_next = calloc(S, sizeof *t_next);
    double total_ll = 0.0;
    size_t total_T = 0;
    if (!occ || !sx || !sxx || !t_self || !t_next) goto fail;
    for (int u = 0; u < tr->n; u++) {
        const sph_utt_t *ut = &tr->utts[u];
        int T = ut->T, L = chain_states(m, ut, tr->q);
        if (T < L) continue;
        if (trainer_ensure(tr, T, L) < 0 || ensure_cap(m, T) < 0) goto fail;
        emis_chain(m, ut);
        const int *q = tr->q;
        double *al = tr->alpha, *be = tr->beta;
        for (size_t i = 0; i < (size_t)T * L; i++) al[i] = be[i] = -1e30;
        al[0] = m->emis[q[0]];
        for (int t = 1; t < T; t++) {
            const float *e = m->emis + (size_t)t * S;
            for (int j = 0; j < L; j++) {
                double a = al[(size_t)(t - 1) * L + j] + m->log_self[q[j]];
                if (j) a = logaddd(a, al[(size_t)(t - 1) * L + j - 1] + m->log_next[q[j - 1]]);
                al[(size_t)t * L + j] = a + e[q[j]];
            }
        }
        double ll = al[(size_t)(T - 1) * L + L - 1];
        if (ll < -1e29) continue;
        be[(size_t)(T - 1) * L + L - 1] = 0.0;
        for (int t = T - 2; t >= 0; t--) {
            const float *e = m->emis + (size_t)(t + 1) * S;
            for (int j = 0; j < L; j++) {
                double b = m->log_self[q[j]] + e[q[j]] + be[(size_t)(t + 1) * L + j];
                if (j + 1 < L)
                    b = logaddd(b,
                                m->log_next[q[j]] + e[q[j + 1]] + be[(size_t)(t + 1) * L + j + 1]);
                be[(size_t)t * L + j] = b;
            }
        }
        total_ll += ll;
        total_T += T;
        for (int t = 0; t < T; t++) {
            const float *x = ut->feat + (size_t)t * D;
            for (int j = 0; j < L; j++) {
                double g = al[(size_t)t * L + j] + be[(size_t)t * L + j] - ll;
                if (g < -30.0) continue;
                double gamma = exp(g);
                int s = q[j];
                const float *lm = m->lmix + (size_t)t * sm + (size_t)s * M;
                float es = m->emis[(size_t)t * S + s];
                for (int k = 0; k < M; k++) {
                    double gk = gamma * exp((double)lm[k] - es);
                    if (gk < 1e-8) continue;
                    size_t r = (size_t)s * M + k;
                    occ[r] += gk;
                    for (int d = 0; d < D; d++) {
                        sx[r * D + d] += gk * x[d];
                        sxx[r * D + d] += gk * x[d] * x[d];
                    }
                }
                if (t + 1 < T) {
                    const float *e = m->emis + (size_t)(t + 1) * S;
                    double base = al[(size_t)t * L + j] - ll;
                    t_self[s] += exp(base + m->log_self[s] + e[s] + be[(size_t)(t + 1) * L + j]);
                    if (j + 1 < L)
                        t_next[s] += exp(base + m->log_next[s] + e[q[j + 1]] +
                                         be[(size_t)(t + 1) * L + j + 1]);
                }
            }
        }
    }
    for (int s = 0; s < S; s++) {
        double tot = 0.0;
        for (int k = 0; k < M; k++) tot += occ[(size_t)s * M + k];
        if (tot < 1.0) continue;
        for (int k = 0; k < M; k++) {
            size_t r = (size_t)s * M + k;
            double o = occ[r];
            m->weight[r] = (float)((o + 0.01) / (tot + 0.01 * M));
            if (o < 2.0) continue; /* too little evidence: keep the mixture */
            for (int d = 0; d < D; d++) {
                double mu = sx[r * D + d] / o, v = sxx[r * D + d] / o - mu * mu;
                m->mean[r * D + d] = (float)mu;
                m->var[r * D + d] = (float)(v > tr->var_floor[d] ? v : tr->var_floor[d]);
            }
        }
        double ts = t_self[s], tn = t_next[s];
        if (ts + tn > 0.5) {
            double p = tn / (ts + tn);
            p = p < 0.01 ? 0.01 : p > 0.99 ? 0.99 : p;
            m->log_self[s] = (float)log(1.0 - p);
            m->log_next[s] = (float)log(p);
        }
    }
    derive(m);
    free(occ);
    free(sx);
    free(sxx);
    free(t_self);
    free(t_next);
    return total_T ? total_ll / total_T : 0.0;
fail:
    free(occ);
    free(sx);
    free(sxx);
    free(t_self);
    free(t_next);
    return NAN;
}

static void trainer_free(trainer_t *tr) {
    free(tr->align);
    free(tr->offset);
    free(tr->var_floor);
    free(tr->gmean);
    free(tr->q);
    free(tr->delta);
    free(tr->from_prev);
    free(tr->alpha);
    free(tr->beta);
}

sph_model_t *sph_train_hmm(const char *const *names, int n_words, const sph_utt_t *utts, int n,
                           int dim, const sph_train_opts_t *o, char *errstr, size_t errstr_size) {
    trainer_t tr = {0};
    sph_model_t *m = NULL;
    if (n_words < 2 || n_words > SPH_MAX_WORDS || o->n_mix < 1 || o->n_mix > SPH_MAX_MIX ||
        o->states_per_word < 1 || o->states_per_word > SPH_MAX_STATES || o->sil_states < 1 ||
        o->sil_states > SPH_MAX_STATES || n < 1) {
        snprintf(errstr, errstr_size, "bad training options (%d words, %d utterances)", n_words, n);
        return NULL;
    }
    int ns[SPH_MAX_WORDS];
    ns[0] = o->sil_states;
    for (int w = 1; w < n_words; w++) ns[w] = o->states_per_word;
    m = model_alloc(o->rate, dim, o->n_mix, n_words, ns);
    if (!m) goto oom;
    snprintf(m->words[0].name, SPH_MAX_NAME, "<sil>");
    for (int w = 1; w < n_words; w++) snprintf(m->words[w].name, SPH_MAX_NAME, "%s", names[w]);
    m->ins_penalty = o->ins_penalty;
    tr.m = m;
    tr.utts = utts;
    tr.n = n;
    tr.rng = o->seed * 2654435761ull + 1;
    tr.offset = malloc(n * sizeof *tr.offset);
    int maxL = 0, maxT = 0;
    for (int u = 0; u < n; u++) {
        for (int i = 0; i < utts[u].n_words; i++) {
            if (utts[u].words[i] < 1 || utts[u].words[i] >= n_words) {
                snprintf(errstr, errstr_size, "utterance %d: word id %d out of range", u,
                         utts[u].words[i]);
                goto fail;
            }
        }
        if (!tr.offset) goto oom;
        tr.offset[u] = tr.total;
        tr.total += utts[u].T;
        int L = chain_len(m, &utts[u]);
        maxL = L > maxL ? L : maxL;
        maxT = utts[u].T > maxT ? utts[u].T : maxT;
    }
    tr.align = malloc(tr.total * sizeof *tr.align);
    tr.q = malloc(maxL * sizeof *tr.q);
    tr.var_floor = calloc(dim, sizeof *tr.var_floor);
    tr.gmean = calloc(dim, sizeof *tr.gmean);
    double *s1 = calloc(dim, sizeof *s1), *s2 = calloc(dim, sizeof *s2);
    if (!tr.align || !tr.q || !tr.var_floor || !tr.gmean || !s1 || !s2) {
        free(s1);
        free(s2);
        goto oom;
    }
    for (int u = 0; u < n; u++)
        for (int t = 0; t < utts[u].T; t++)
            for (int d = 0; d < dim; d++) {
                double x = utts[u].feat[(size_t)t * dim + d];
                s1[d] += x;
                s2[d] += x * x;
            }
    for (int d = 0; d < dim; d++) {
        double mu = s1[d] / tr.total, v = s2[d] / tr.total - mu * mu;
        tr.gmean[d] = (float)mu;
        tr.var_floor[d] = (float)(0.01 * (v > 1e-6 ? v : 1e-6));
    }
    free(s1);
    free(s2);
    /* Flat start: the frames within 30 dB of the utterance's loudest
     * (feature 0 is the log energy) are speech, spread evenly over the
     * words' states; the frames before and after go to the silences. */
    int skipped = 0, sil = m->words[0].n_states;
    for (int u = 0; u < n; u++) {
        int L = chain_states(m, &utts[u], tr.q), T = utts[u].T;
        int *a = tr.align + tr.offset[u];
        skipped += T < L;
        float emax = -1e30f;
        for (int t = 0; t < T; t++)
            if (utts[u].feat[(size_t)t * dim] > emax) emax = utts[u].feat[(size_t)t * dim];
        int s0 = 0, s1 = T;
        while (s0 < T && utts[u].feat[(size_t)s0 * dim] < emax - 6.9f) s0++;
        while (s1 > s0 && utts[u].feat[(size_t)(s1 - 1) * dim] < emax - 6.9f) s1--;
        int inner = L - 2 * sil;
        if (s0 < sil || T - s1 < sil || s1 - s0 < inner) {
            for (int t = 0; t < T; t++) a[t] = tr.q[(int)((long long)t * L / T)];
            continue;
        }
        for (int t = 0; t < s0; t++) a[t] = tr.q[(int)((long long)t * sil / s0)];
        for (int t = s0; t < s1; t++)
            a[t] = tr.q[sil + (int)((long long)(t - s0) * inner / (s1 - s0))];
        for (int t = s1; t < T; t++)
            a[t] = tr.q[sil + inner + (int)((long long)(t - s1) * sil / (T - s1))];
    }
    if (ensure_cap(m, maxT) < 0 || trainer_ensure(&tr, maxT, maxL) < 0) goto oom;
    for (int it = 0; it <= o->viterbi_iters; it++) {
        if (reestimate_viterbi(&tr) < 0) goto oom;
        if (it == o->viterbi_iters) break;
        double tot = 0.0;
        for (int u = 0; u < n; u++) {
            int L = chain_states(m, &utts[u], tr.q);
            if (utts[u].T < L) continue;
            emis_chain(m, &utts[u]);
            tot += chain_viterbi(m, tr.q, L, utts[u].T, tr.align + tr.offset[u], tr.delta,
                                 tr.from_prev);
        }
        if (o->verbose)
            fprintf(stderr, "speech: viterbi round %d: log-likelihood/frame %.3f\n", it + 1,
                    tot / tr.total);
    }
    for (int it = 0; it < o->bw_iters; it++) {
        double ll = baum_welch(&tr);
        if (isnan(ll)) goto oom;
        if (o->verbose)
            fprintf(stderr, "speech: baum-welch %d: log-likelihood/frame %.3f\n", it + 1, ll);
    }
    if (o->verbose && skipped)
        fprintf(stderr, "speech: %d utterances shorter than their models skipped\n", skipped);
    trainer_free(&tr);
    return m;
oom:
    snprintf(errstr, errstr_size, "out of memory");
fail:
    trainer_free(&tr);
    sph_destroy(m);
    return NULL;
}

int sph_align(sph_model_t *m, const sph_utt_t *u, int *state_out) {
    int L = chain_len(m, u);
    if (u->T < L) return -1;
    int *q = malloc(L * sizeof *q);
    float *delta = malloc((size_t)u->T * L * sizeof *delta);
    unsigned char *fp = malloc((size_t)u->T * L);
    int rc = -1;
    if (q && delta && fp && ensure_cap(m, u->T) == 0) {
        chain_states(m, u, q);
        emis_chain(m, u);
        rc = chain_viterbi(m, q, L, u->T, state_out, delta, fp) > NEG_INF ? 0 : -1;
    }
    free(q);
    free(delta);
    free(fp);
    return rc;
}

/* ---- the hybrid MLP ---- */

int sph_train_mlp(sph_model_t *m, const sph_utt_t *utts, int n, const sph_mlp_opts_t *o,
                  char *errstr, size_t errstr_size) {
    int D = m->dim, S = m->n_states, ctx = SPH_CONTEXT, in = D * (2 * ctx + 1);
    int B = o->batch, H = o->hidden, NL = o->layers + 1;
    if (o->layers < 1 || NL > MLP_MAX_LAYERS || H < 1 || B < 1 || D > 256) {
        snprintf(errstr, errstr_size, "bad MLP options");
        return -1;
    }
    int was = m->use_mlp;
    m->use_mlp = 0; /* align with the GMMs */
    size_t total = 0;
    for (int u = 0; u < n; u++) total += utts[u].T;
    int *lab = malloc(total * sizeof *lab);
    int *fu = malloc(total * sizeof *fu), *ft = malloc(total * sizeof *ft);
    int *blab = malloc(B * sizeof *blab);
    size_t *perm = malloc(total * sizeof *perm);
    double *cnt = calloc(S, sizeof *cnt);
    sph_mlp_t p = {0};
    mlp_adam_t adam = {0};
    float *act[MLP_MAX_LAYERS + 1] = {0}, *grad[MLP_MAX_LAYERS + 1] = {0};
    float *gW[MLP_MAX_LAYERS] = {0}, *gb[MLP_MAX_LAYERS] = {0};
    int rc = -1;
    if (!lab || !fu || !ft || !blab || !perm || !cnt) goto oom;
    size_t nf = 0;
    for (int u = 0; u < n; u++) {
        if (sph_align(m, &utts[u], lab + nf) < 0) continue;
        for (int t = 0; t < utts[u].T; t++) {
            fu[nf + t] = u;
            ft[nf + t] = t;
            cnt[lab[nf + t]] += 1.0;
        }
        nf += utts[u].T;
    }
    if (nf < (size_t)B) {
        snprintf(errstr, errstr_size, "too few aligned frames (%zu) for a batch of %d", nf, B);
        goto fail;
    }
    int sizes[MLP_MAX_LAYERS + 1];
    sizes[0] = in;
    for (int l = 1; l < NL; l++) sizes[l] = H;
    sizes[NL] = S;
    p.ctx = ctx;
    p.in_mean = calloc(in, sizeof *p.in_mean);
    p.in_std = calloc(in, sizeof *p.in_std);
    p.log_prior = malloc(S * sizeof *p.log_prior);
    if (!p.in_mean || !p.in_std || !p.log_prior || mlp_alloc(&p.net, NL, sizes, o->seed) < 0 ||
        mlp_adam_alloc(&adam, &p.net) < 0)
        goto oom;
    {
        double s1[256] = {0}, s2[256] = {0};
        for (int u = 0; u < n; u++)
            for (int t = 0; t < utts[u].T; t++)
                for (int d = 0; d < D; d++) {
                    double x = utts[u].feat[(size_t)t * D + d];
                    s1[d] += x;
                    s2[d] += x * x;
                }
        for (int d = 0; d < D; d++) {
            double mu = s1[d] / total, sd = sqrt(fmax(s2[d] / total - mu * mu, 1e-8));
            for (int c = 0; c < 2 * ctx + 1; c++) {
                p.in_mean[c * D + d] = (float)mu;
                p.in_std[c * D + d] = (float)sd;
            }
        }
    }
    /* Priors with add-one smoothing: hybrid scores are posteriors / priors. */
    for (int s = 0; s < S; s++) p.log_prior[s] = (float)log((cnt[s] + 1.0) / (nf + S));
    for (int l = 0; l <= NL; l++) {
        act[l] = malloc((size_t)B * sizes[l] * sizeof *act[l]);
        grad[l] = malloc((size_t)B * sizes[l] * sizeof *grad[l]);
        if (!act[l] || !grad[l]) goto oom;
        if (l < NL) {
            gW[l] = malloc((size_t)sizes[l + 1] * sizes[l] * sizeof *gW[l]);
            gb[l] = malloc(sizes[l + 1] * sizeof *gb[l]);
            if (!gW[l] || !gb[l]) goto oom;
        }
    }
    for (size_t i = 0; i < nf; i++) perm[i] = i;
    uint64_t rng = o->seed * 0x9E3779B97F4A7C15ull + 11;
    for (int ep = 0; ep < o->epochs; ep++) {
        for (size_t i = nf - 1; i > 0; i--) {
            size_t j = (((uint64_t)rng_next(&rng) << 32) | rng_next(&rng)) % (i + 1);
            size_t t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        double loss = 0.0;
        size_t correct = 0;
        /* Step size decays linearly to a tenth over the run. */
        float lr = o->lr * (1.0f - 0.9f * ep / (float)(o->epochs > 1 ? o->epochs - 1 : 1));
        for (size_t b0 = 0; b0 + B <= nf; b0 += B) {
            for (int r = 0; r < B; r++) {
                size_t f = perm[b0 + r];
                const sph_utt_t *u = &utts[fu[f]];
                stack_frame(&p, u->feat, u->T, D, ft[f], act[0] + (size_t)r * in);
                blab[r] = lab[f];
            }
            mlp_forward(&p.net, act, B);
            int ok = 0;
            loss += mlp_backward(&p.net, act, grad, blab, B, gW, gb, &ok);
            correct += ok;
            mlp_adam_step(&adam, &p.net, gW, gb, lr);
        }
        if (o->verbose)
            fprintf(stderr, "speech: mlp epoch %d: loss %.4f, frame accuracy %.4f\n", ep + 1,
                    loss / (nf - nf % B), (double)correct / (nf - nf % B));
    }
    sph_mlp_free(&m->mlp);
    m->mlp = p;
    memset(&p, 0, sizeof p);
    m->has_mlp = 1;
    was = 1;
    /* The run state must now hold MLP activations too. */
    m->cap_T = 0;
    rc = 0;
    goto fail;
oom:
    snprintf(errstr, errstr_size, "out of memory");
fail:
    m->use_mlp = was && m->has_mlp;
    sph_mlp_free(&p);
    mlp_adam_free(&adam);
    for (int l = 0; l <= MLP_MAX_LAYERS; l++) {
        free(act[l]);
        free(grad[l]);
        if (l < MLP_MAX_LAYERS) {
            free(gW[l]);
            free(gb[l]);
        }
    }
    free(lab);
    free(fu);
    free(ft);
    free(blab);
    free(perm);
    free(cnt);
    return rc;
}

/* ---- decoding ---- */

/* Viterbi score of word w alone over frames [s, e) of m->emis. */
static float segment_score(const sph_model_t *m, int w, int s, int e) {
    int n = m->words[w].n_states, f = m->words[w].first;
    if (e - s < n) return NEG_INF;
    float d[SPH_MAX_STATES];
    for (int j = 0; j < n; j++) d[j] = NEG_INF;
    d[0] = m->emis[(size_t)s * m->n_states + f];
    for (int t = s + 1; t < e; t++) {
        const float *em = m->emis + (size_t)t * m->n_states + f;
        for (int j = n - 1; j >= 0; j--) {
            float stay = d[j] + m->log_self[f + j];
            float move = j ? d[j - 1] + m->log_next[f + j - 1] : NEG_INF;
            d[j] = (stay > move ? stay : move) + em[j];
        }
    }
    return d[n - 1];
}

static int add_rec(sph_model_t *m, int node, int start, int end, int prev) {
    if (m->n_rec == m->rec_cap) {
        size_t cap = m->rec_cap ? m->rec_cap * 2 : 256;
        word_rec_t *r = realloc(m->rec, cap * sizeof *r);
        if (!r) return -1;
        m->rec = r;
        m->rec_cap = cap;
    }
    m->rec[m->n_rec] = (word_rec_t){node, start, end, prev};
    return (int)m->n_rec++;
}

int sph_decode(sph_model_t *m, const float *feat, int T, sph_grammar_t g, sph_hyp_t *out,
               int max_out, char *errstr, size_t errstr_size) {
    int W = m->n_words;
    /* Nodes: 0 is silence; 1..W-1 the words; in the one-word grammar node W
     * is the silence after the word. */
    int n_nodes = g == SPH_GRAMMAR_ONE_WORD ? W + 1 : W;
    if (T <= 0) return 0;
    if (emis_all(m, feat, T) < 0) goto oom;
    int node_off[SPH_MAX_WORDS + 2], node_word[SPH_MAX_WORDS + 2];
    size_t nt = 0;
    for (int k = 0; k < n_nodes; k++) {
        node_word[k] = k < W ? k : 0;
        node_off[k] = (int)nt;
        nt += m->words[node_word[k]].n_states;
    }
    if (nt > m->tok_cap) {
        token_t *tk = realloc(m->tok, nt * sizeof *tk);
        if (!tk) goto oom;
        m->tok = tk;
        m->tok_cap = nt;
    }
    for (size_t i = 0; i < nt; i++) m->tok[i] = (token_t){NEG_INF, -1, 0};
    m->n_rec = 0;
    float exit_sc[SPH_MAX_WORDS + 2];
    int exit_rec[SPH_MAX_WORDS + 2];
    token_t entries[SPH_MAX_WORDS + 2];
    for (int t = 0; t < T; t++) {
        const float *em = m->emis + (size_t)t * m->n_states;
        int best_all = -1, best_word = -1;
        for (int k = 0; k < n_nodes; k++) {
            int w = node_word[k], last = m->words[w].n_states - 1;
            token_t *tk = &m->tok[node_off[k] + last];
            exit_sc[k] = t ? tk->score + m->log_next[m->words[w].first + last] : NEG_INF;
            exit_rec[k] = -2; /* not made yet */
            if (exit_sc[k] <= NEG_INF) continue;
            if (best_all < 0 || exit_sc[k] > exit_sc[best_all]) best_all = k;
            if (w != 0 && (best_word < 0 || exit_sc[k] > exit_sc[best_word])) best_word = k;
        }
        /* Pass 1: the best way into each node at frame t, from the exits of
         * frame t-1 (records of ended words are made only when used). */
        for (int k = 0; k < n_nodes; k++) {
            int w = node_word[k], from = -1;
            float entry = NEG_INF;
            if (t == 0) {
                if (g == SPH_GRAMMAR_LOOP || k < W)
                    entry = (w && g == SPH_GRAMMAR_LOOP) ? m->ins_penalty : 0.0f;
            } else if (g == SPH_GRAMMAR_LOOP) {
                from = w ? best_all : best_word;
                if (from >= 0) entry = exit_sc[from] + (w ? m->ins_penalty : 0.0f);
            } else if (w && k < W) {
                from = 0; /* the word after the leading silence */
                entry = exit_sc[0];
            } else if (k == W) {
                from = best_word; /* the silence after the word */
                if (from >= 0) entry = exit_sc[from];
            }
            entries[k] = (token_t){entry, -1, t};
            if (from >= 0 && entry > NEG_INF) {
                if (exit_rec[from] == -2) {
                    const token_t *ft =
                        &m->tok[node_off[from] + m->words[node_word[from]].n_states - 1];
                    exit_rec[from] = add_rec(m, from, ft->start, t, ft->link);
                    if (exit_rec[from] < 0) goto oom;
                }
                entries[k].link = exit_rec[from];
            }
        }
        /* Pass 2: left-to-right states, last first so each reads its
         * predecessor's score of frame t-1. */
        for (int k = 0; k < n_nodes; k++) {
            int w = node_word[k], ns = m->words[w].n_states, f = m->words[w].first;
            token_t *tk = m->tok + node_off[k];
            for (int s = ns - 1; s >= 0; s--) {
                token_t best = tk[s];
                best.score = tk[s].score + m->log_self[f + s];
                if (s > 0) {
                    float move = tk[s - 1].score + m->log_next[f + s - 1];
                    if (move > best.score) {
                        best = tk[s - 1];
                        best.score = move;
                    }
                } else if (entries[k].score > best.score) {
                    best = entries[k];
                }
                best.score = best.score > NEG_INF ? best.score + em[f + s] : NEG_INF;
                if (best.score < NEG_INF) best.score = NEG_INF;
                tk[s] = best;
            }
        }
    }
    /* The best final token. */
    int best = -1;
    float bs = NEG_INF;
    for (int k = 0; k < n_nodes; k++) {
        int w = node_word[k];
        if (g == SPH_GRAMMAR_ONE_WORD && k == 0) continue; /* silence only: no word */
        const token_t *tk = &m->tok[node_off[k] + m->words[w].n_states - 1];
        if (tk->score > bs) bs = tk->score, best = k;
    }
    if (best < 0) return 0;
    const token_t *fin = &m->tok[node_off[best] + m->words[node_word[best]].n_states - 1];
    int r = add_rec(m, best, fin->start, T, fin->link);
    if (r < 0) goto oom;
    int n = 0;
    for (int i = r; i >= 0; i = m->rec[i].prev)
        if (node_word[m->rec[i].node] != 0) n++;
    int k = n;
    for (int i = r; i >= 0; i = m->rec[i].prev) {
        const word_rec_t *wr = &m->rec[i];
        int w = node_word[wr->node];
        if (w == 0) continue;
        k--;
        if (k >= max_out) continue;
        out[k].word = w;
        out[k].start = wr->start;
        out[k].end = wr->end;
        /* Confidence: the word's share among every word model of the
         * segment's likelihood, per frame and scaled by 1/2 (acoustic
         * likelihoods of neighbouring frames are far from independent). */
        float sc[SPH_MAX_WORDS], mx = NEG_INF;
        for (int v = 1; v < W; v++) {
            sc[v] = segment_score(m, v, wr->start, wr->end);
            if (sc[v] > mx) mx = sc[v];
        }
        double z = 0.0, beta = 0.5 / (wr->end - wr->start);
        for (int v = 1; v < W; v++)
            if (sc[v] > NEG_INF) z += exp(beta * (sc[v] - mx));
        out[k].confidence = sc[w] > NEG_INF && z > 0 ? (float)(exp(beta * (sc[w] - mx)) / z) : 0.0f;
    }
    return n;
oom:
    snprintf(errstr, errstr_size, "out of memory");
    return -1;
}

/* ---- file format ---- */

typedef struct wbuf {
    unsigned char *p;
    size_t len, cap;
    int failed;
} wbuf_t;

static void put(wbuf_t *b, const void *data, size_t n) {
    if (b->failed) return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) cap *= 2;
        unsigned char *g = realloc(b->p, cap);
        if (!g) {
            b->failed = 1;
            return;
        }
        b->p = g;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
}
static void put_i32(wbuf_t *b, int32_t v) {
    put(b, &v, 4);
}
static void put_f32(wbuf_t *b, float v) {
    put(b, &v, 4);
}

void *sph_serialize(const sph_model_t *m, size_t *len) {
    wbuf_t b = {0};
    int D = m->dim, M = m->n_mix;
    put(&b, SPH_MAGIC, 4);
    put_i32(&b, SPH_VERSION);
    put_i32(&b, m->has_mlp ? 1 : 0);
    put_i32(&b, m->rate);
    put_i32(&b, D);
    put_i32(&b, M);
    put_i32(&b, m->n_words);
    put_f32(&b, m->ins_penalty);
    put_f32(&b, m->ac_scale);
    for (int w = 0; w < m->n_words; w++) {
        unsigned char l = (unsigned char)strlen(m->words[w].name);
        put(&b, &l, 1);
        put(&b, m->words[w].name, l);
        put_i32(&b, m->words[w].n_states);
    }
    for (int s = 0; s < m->n_states; s++) {
        put_f32(&b, m->log_self[s]);
        put_f32(&b, m->log_next[s]);
        for (int k = 0; k < M; k++) {
            size_t r = (size_t)s * M + k;
            put_f32(&b, m->weight[r]);
            put(&b, m->mean + r * D, D * sizeof(float));
            put(&b, m->var + r * D, D * sizeof(float));
        }
    }
    if (m->has_mlp) {
        const sph_mlp_t *p = &m->mlp;
        put_i32(&b, p->ctx);
        const mlp_net_t *net = &p->net;
        put_i32(&b, net->n_layers);
        for (int l = 0; l <= net->n_layers; l++) put_i32(&b, net->sizes[l]);
        put(&b, p->in_mean, net->sizes[0] * sizeof(float));
        put(&b, p->in_std, net->sizes[0] * sizeof(float));
        for (int l = 0; l < net->n_layers; l++) {
            put(&b, net->W[l], (size_t)net->sizes[l + 1] * net->sizes[l] * sizeof(float));
            put(&b, net->b[l], net->sizes[l + 1] * sizeof(float));
        }
        put(&b, p->log_prior, m->n_states * sizeof(float));
    }
    if (b.failed) {
        free(b.p);
        return NULL;
    }
    *len = b.len;
    return b.p;
}

typedef struct rbuf {
    const unsigned char *p;
    size_t len, pos;
} rbuf_t;

static int get(rbuf_t *b, void *out, size_t n) {
    if (n > b->len - b->pos) return -1;
    memcpy(out, b->p + b->pos, n);
    b->pos += n;
    return 0;
}
static int get_i32(rbuf_t *b, int32_t *v) {
    return get(b, v, 4);
}

/* Reads n floats and refuses non-finite ones. */
static int get_floats(rbuf_t *b, float *out, size_t n) {
    if (n > (b->len - b->pos) / 4 || get(b, out, n * 4) < 0) return -1;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(out[i])) return -1;
    return 0;
}

sph_model_t *sph_load(const void *data, size_t len, char *errstr, size_t errstr_size) {
    rbuf_t b = {data, len, 0};
    int32_t ver = 0, flags = 0, rate = 0, D = 0, M = 0, W = 0;
    float pen, acs;
    char magic[4];
    sph_model_t *m = NULL;
    if (get(&b, magic, 4) < 0 || memcmp(magic, SPH_MAGIC, 4) != 0) {
        snprintf(errstr, errstr_size, "not a speech model (magic)");
        return NULL;
    }
    if (get_i32(&b, &ver) < 0 || ver != SPH_VERSION) {
        snprintf(errstr, errstr_size, "speech model version %d unsupported", (int)ver);
        return NULL;
    }
    if (get_i32(&b, &flags) < 0 || get_i32(&b, &rate) < 0 || get_i32(&b, &D) < 0 ||
        get_i32(&b, &M) < 0 || get_i32(&b, &W) < 0 || get_floats(&b, &pen, 1) < 0 ||
        get_floats(&b, &acs, 1) < 0)
        goto trunc;
    if (rate < 4000 || rate > 192000 || D < 1 || D > 256 || M < 1 || M > SPH_MAX_MIX || W < 2 ||
        W > SPH_MAX_WORDS || (flags & ~1)) {
        snprintf(errstr, errstr_size,
                 "speech model: bad shape (rate %d, dim %d, %d mixtures, %d words)", (int)rate,
                 (int)D, (int)M, (int)W);
        return NULL;
    }
    char names[SPH_MAX_WORDS][SPH_MAX_NAME];
    int ns[SPH_MAX_WORDS];
    for (int w = 0; w < W; w++) {
        unsigned char l;
        int32_t n;
        if (get(&b, &l, 1) < 0 || l >= SPH_MAX_NAME || get(&b, names[w], l) < 0 ||
            get_i32(&b, &n) < 0)
            goto trunc;
        names[w][l] = 0;
        /* a NUL inside would cut the name short (and not write back) */
        if (memchr(names[w], 0, l)) {
            snprintf(errstr, errstr_size, "speech model: word %d's name holds a NUL byte", w);
            return NULL;
        }
        if (n < 1 || n > SPH_MAX_STATES) {
            snprintf(errstr, errstr_size, "speech model: word %d has %d states", w, (int)n);
            return NULL;
        }
        ns[w] = n;
    }
    /* Every state's parameters must be in the file: checked before the
     * model is allocated, so a short blob cannot ask for hundreds of MB. */
    size_t need = 0;
    for (int w = 0; w < W; w++) need += (size_t)ns[w] * (2 + (size_t)M * (1 + 2 * (size_t)D)) * 4;
    if (need > b.len - b.pos) goto trunc;
    m = model_alloc(rate, D, M, W, ns);
    if (!m) goto oom;
    m->ins_penalty = pen;
    m->ac_scale = acs;
    for (int w = 0; w < W; w++) memcpy(m->words[w].name, names[w], SPH_MAX_NAME);
    for (int s = 0; s < m->n_states; s++) {
        if (get_floats(&b, &m->log_self[s], 1) < 0 || get_floats(&b, &m->log_next[s], 1) < 0)
            goto trunc;
        for (int k = 0; k < M; k++) {
            size_t r = (size_t)s * M + k;
            if (get_floats(&b, &m->weight[r], 1) < 0 || get_floats(&b, m->mean + r * D, D) < 0 ||
                get_floats(&b, m->var + r * D, D) < 0)
                goto trunc;
            for (int d = 0; d < D; d++)
                if (!(m->var[r * D + d] > 0.0f)) {
                    snprintf(errstr, errstr_size, "speech model: non-positive variance");
                    goto fail;
                }
        }
    }
    derive(m);
    if (flags & 1) {
        sph_mlp_t *p = &m->mlp;
        int32_t ctx, nl;
        if (get_i32(&b, &ctx) < 0 || get_i32(&b, &nl) < 0) goto trunc;
        if (ctx < 0 || ctx > 32 || nl < 1 || nl > MLP_MAX_LAYERS) {
            snprintf(errstr, errstr_size, "speech model: bad MLP shape");
            goto fail;
        }
        p->ctx = ctx;
        p->net.n_layers = nl;
        for (int l = 0; l <= nl; l++) {
            int32_t sz;
            if (get_i32(&b, &sz) < 0) goto trunc;
            if (sz < 1 || sz > 8192) {
                snprintf(errstr, errstr_size, "speech model: bad MLP layer size %d", (int)sz);
                goto fail;
            }
            p->net.sizes[l] = sz;
        }
        if (p->net.sizes[0] != D * (2 * ctx + 1) || p->net.sizes[nl] != m->n_states) {
            snprintf(errstr, errstr_size, "speech model: MLP does not match the HMM");
            goto fail;
        }
        p->in_mean = malloc(p->net.sizes[0] * sizeof(float));
        p->in_std = malloc(p->net.sizes[0] * sizeof(float));
        p->log_prior = malloc(m->n_states * sizeof(float));
        if (!p->in_mean || !p->in_std || !p->log_prior) goto oom;
        if (get_floats(&b, p->in_mean, p->net.sizes[0]) < 0 ||
            get_floats(&b, p->in_std, p->net.sizes[0]) < 0)
            goto trunc;
        for (int l = 0; l < nl; l++) {
            size_t nw = (size_t)p->net.sizes[l + 1] * p->net.sizes[l];
            if (nw > (b.len - b.pos) / 4) goto trunc;
            p->net.W[l] = malloc(nw * sizeof(float));
            p->net.b[l] = malloc(p->net.sizes[l + 1] * sizeof(float));
            if (!p->net.W[l] || !p->net.b[l]) goto oom;
            if (get_floats(&b, p->net.W[l], nw) < 0 ||
                get_floats(&b, p->net.b[l], p->net.sizes[l + 1]) < 0)
                goto trunc;
        }
        if (get_floats(&b, p->log_prior, m->n_states) < 0) goto trunc;
        for (int i = 0; i < p->net.sizes[0]; i++)
            if (!(p->in_std[i] > 0.0f)) {
                snprintf(errstr, errstr_size, "speech model: non-positive input scale");
                goto fail;
            }
        m->has_mlp = m->use_mlp = 1;
    }
    if (b.pos != b.len) {
        snprintf(errstr, errstr_size, "speech model: %zu trailing bytes", b.len - b.pos);
        goto fail;
    }
    return m;
trunc:
    snprintf(errstr, errstr_size, "speech model: truncated or corrupt");
    goto fail;
oom:
    snprintf(errstr, errstr_size, "out of memory");
fail:
    sph_destroy(m);
    return NULL;
}
