/* bow.c: naive Bayes and NB-LR on uni+bigram presence features. */
#include "kernels/text/bow.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void bigram(char *out, const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    memcpy(out, a, la);
    out[la] = ' ';
    memcpy(out + la + 1, b, lb + 1);
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Sorts and removes repeats; returns the new length. */
static size_t uniq(int32_t *f, size_t n) {
    if (n == 0) return 0;
    qsort(f, n, sizeof *f, cmp_i32);
    size_t k = 1;
    for (size_t i = 1; i < n; i++)
        if (f[i] != f[k - 1]) f[k++] = f[i];
    return k;
}

int bow_count(vocab_t *grams, const char *toks, size_t n_tokens) {
    /* Presence: count each n-gram once per text, through a temporary vocab
     * of the text's own n-grams. */
    char bg[2 * TOK_STRIDE + 1];
    vocab_t *seen = vocab_new();
    if (!seen) return -1;
    int rc = 0;
    for (size_t i = 0; i < n_tokens && rc == 0; i++) {
        const char *t = toks + i * TOK_STRIDE;
        if (vocab_find(seen, t) < 0 && (vocab_add(seen, t, 1) < 0 || vocab_add(grams, t, 1) < 0))
            rc = -1;
        if (i + 1 < n_tokens) {
            bigram(bg, t, toks + (i + 1) * TOK_STRIDE);
            if (vocab_find(seen, bg) < 0 &&
                (vocab_add(seen, bg, 1) < 0 || vocab_add(grams, bg, 1) < 0))
                rc = -1;
        }
    }
    vocab_destroy(seen);
    return rc;
}

size_t bow_features(const vocab_t *grams, const char *toks, size_t n_tokens, int32_t *feat) {
    char bg[2 * TOK_STRIDE + 1];
    size_t n = 0;
    for (size_t i = 0; i < n_tokens; i++) {
        const char *t = toks + i * TOK_STRIDE;
        int64_t id = vocab_find(grams, t);
        if (id >= 0) feat[n++] = (int32_t)id;
        if (i + 1 < n_tokens) {
            bigram(bg, t, toks + (i + 1) * TOK_STRIDE);
            id = vocab_find(grams, bg);
            if (id >= 0) feat[n++] = (int32_t)id;
        }
    }
    return uniq(feat, n);
}

float bow_score(const float *w, float b, const int32_t *feat, size_t n) {
    float s = b;
    for (size_t i = 0; i < n; i++) s += w[feat[i]];
    return s;
}

static uint64_t next_rand(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

int bow_train(const int32_t *const *feats, const size_t *n_feats, const int *labels, size_t n,
              size_t n_grams, int nblr, int epochs, float l2, uint64_t seed, float *w, float *b) {
    double *pc = calloc(n_grams, sizeof *pc), *nc = calloc(n_grams, sizeof *nc);
    float *r = NULL, *v = NULL, *g2 = NULL;
    size_t *order = NULL;
    int rc = -1;
    if (!pc || !nc) goto done;
    double npos = 0, nneg = 0, spos = 0, sneg = 0;
    for (size_t i = 0; i < n; i++) {
        double *c = labels[i] ? pc : nc;
        for (size_t k = 0; k < n_feats[i]; k++) c[feats[i][k]] += 1;
        if (labels[i])
            npos++, spos += (double)n_feats[i];
        else
            nneg++, sneg += (double)n_feats[i];
    }
    /* Naive Bayes with add-one smoothing: r = log p(f|+) - log p(f|-). */
    double zp = spos + (double)n_grams, zn = sneg + (double)n_grams;
    for (size_t f = 0; f < n_grams; f++)
        w[f] = (float)(log((pc[f] + 1) / zp) - log((nc[f] + 1) / zn));
    *b = (float)log((npos + 1) / (nneg + 1));
    if (!nblr) {
        rc = 0;
        goto done;
    }
    r = malloc(n_grams * sizeof *r);
    v = calloc(n_grams, sizeof *v);
    g2 = calloc(n_grams + 1, sizeof *g2);
    order = malloc(n * sizeof *order);
    if (!r || !v || !g2 || !order) goto done;
    memcpy(r, w, n_grams * sizeof *r);
    for (size_t i = 0; i < n; i++) order[i] = i;
    uint64_t rng = seed * 2654435761u + 88172645463325252ull;
    float bias = 0, lr = 0.1f;
    for (int ep = 0; ep < epochs; ep++) {
        for (size_t i = n; i > 1; i--) {
            size_t j = next_rand(&rng) % i;
            size_t t = order[i - 1];
            order[i - 1] = order[j];
            order[j] = t;
        }
        for (size_t oi = 0; oi < n; oi++) {
            size_t i = order[oi];
            const int32_t *fi = feats[i];
            float s = bias;
            for (size_t k = 0; k < n_feats[i]; k++) s += v[fi[k]] * r[fi[k]];
            float p = 1.0f / (1.0f + expf(-s));
            float d = p - (float)labels[i];
            for (size_t k = 0; k < n_feats[i]; k++) {
                int32_t f = fi[k];
                /* Lazy L2: applied where a feature is seen. */
                float g = d * r[f] + l2 * v[f];
                g2[f] += g * g;
                v[f] -= lr * g / (sqrtf(g2[f]) + 1e-6f);
            }
            g2[n_grams] += d * d;
            bias -= lr * d / (sqrtf(g2[n_grams]) + 1e-6f);
        }
    }
    for (size_t f = 0; f < n_grams; f++) w[f] = v[f] * r[f];
    *b = bias;
    rc = 0;
done:
    free(pc);
    free(nc);
    free(r);
    free(v);
    free(g2);
    free(order);
    return rc;
}
