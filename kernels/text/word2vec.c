/* word2vec.c: skip-gram and CBOW with negative sampling, Hogwild threads.
 *
 * Threads update the shared vectors without locks, as the original
 * word2vec and gensim do: collisions are rare with sparse updates and only
 * add noise. The vector operations of the hot loop are BLAS level-1 calls
 * (sdot, saxpy) on dim floats: OpenBLAS's kernels for the CPU (AVX2,
 * AVX-512) beat what the compiler makes of a float reduction without
 * -ffast-math, and gensim does the same. */
#include "kernels/text/word2vec.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EXP_TABLE 1024
#define MAX_EXP 6.0f
#define MAX_SENT 1000

w2v_params_t w2v_defaults(int arch) {
    w2v_params_t p = {arch, 100, 5, 5, 5, 1, 5, 1e-3f, arch == W2V_CBOW ? 0.05f : 0.025f, 1};
    return p;
}

static uint64_t xorshift(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

void w2v_destroy(w2v_t *m) {
    if (!m) return;
    vocab_destroy(m->vocab);
    free(m->vec);
    free(m->out);
    free(m->neg_table);
    free(m);
}

static float exp_table[EXP_TABLE];
static pthread_once_t exp_once = PTHREAD_ONCE_INIT;
static void exp_init(void) {
    for (int i = 0; i < EXP_TABLE; i++) {
        float x = ((float)i / EXP_TABLE * 2 - 1) * MAX_EXP;
        exp_table[i] = 1.0f / (1.0f + expf(-x));
    }
}

/* Unigram^0.75 table for negative samples. Returns 0 or -1. */
static int build_neg_table(w2v_t *m) {
    uint32_t n = m->vocab->n;
    size_t size = (size_t)n * 50;
    if (size < 1000000) size = 1000000;
    if (size > 10000000) size = 10000000;
    m->neg_table = malloc(size * sizeof *m->neg_table);
    if (!m->neg_table) return -1;
    m->neg_size = size;
    double total = 0;
    for (uint32_t i = 0; i < n; i++) total += pow((double)m->vocab->counts[i] + 1e-9, 0.75);
    uint32_t w = 0;
    double acc = n ? pow((double)m->vocab->counts[0] + 1e-9, 0.75) / total : 1;
    for (size_t a = 0; a < size; a++) {
        m->neg_table[a] = (int32_t)w;
        if ((double)(a + 1) / (double)size > acc && w + 1 < n) {
            w++;
            acc += pow((double)m->vocab->counts[w] + 1e-9, 0.75) / total;
        }
    }
    return 0;
}

static inline float sigmoid_fast(float f) {
    if (f >= MAX_EXP) return 1.0f;
    if (f <= -MAX_EXP) return 0.0f;
    return exp_table[(int)((f + MAX_EXP) * (EXP_TABLE / MAX_EXP / 2))];
}

/* One sentence (already subsampled) of skip-gram or CBOW updates. neu1 and
 * neu1e are dim floats of scratch. */
static void train_sentence(float *restrict syn0, float *restrict syn1, int dim, const int32_t *sent,
                           int len, int arch, int window, int negative, const int32_t *table,
                           size_t table_size, float alpha, uint64_t *rng, float *restrict neu1,
                           float *restrict neu1e) {
    for (int pos = 0; pos < len; pos++) {
        int word = sent[pos];
        int b = (int)(xorshift(rng) % (uint64_t)window);
        int lo = pos - window + b, hi = pos + window - b;
        if (lo < 0) lo = 0;
        if (hi >= len) hi = len - 1;
        if (arch == W2V_CBOW) {
            int cw = 0;
            for (int d = 0; d < dim; d++) neu1[d] = 0, neu1e[d] = 0;
            for (int c = lo; c <= hi; c++) {
                if (c == pos) continue;
                const float *v = syn0 + (size_t)sent[c] * dim;
                for (int d = 0; d < dim; d++) neu1[d] += v[d];
                cw++;
            }
            if (!cw) continue;
            float inv = 1.0f / (float)cw;
            for (int d = 0; d < dim; d++) neu1[d] *= inv;
            for (int k = 0; k <= negative; k++) {
                int target, label;
                if (k == 0) {
                    target = word, label = 1;
                } else {
                    target = table[xorshift(rng) % table_size];
                    if (target == word) continue;
                    label = 0;
                }
                float *o = syn1 + (size_t)target * dim;
                float f = cblas_sdot(dim, neu1, 1, o, 1);
                float g = ((float)label - sigmoid_fast(f)) * alpha;
                cblas_saxpy(dim, g, o, 1, neu1e, 1);
                cblas_saxpy(dim, g, neu1, 1, o, 1);
            }
            for (int c = lo; c <= hi; c++) {
                if (c == pos) continue;
                cblas_saxpy(dim, 1.0f, neu1e, 1, syn0 + (size_t)sent[c] * dim, 1);
            }
        } else {
            for (int c = lo; c <= hi; c++) {
                if (c == pos) continue;
                float *v = syn0 + (size_t)sent[c] * dim;
                for (int d = 0; d < dim; d++) neu1e[d] = 0;
                for (int k = 0; k <= negative; k++) {
                    int target, label;
                    if (k == 0) {
                        target = word, label = 1;
                    } else {
                        target = table[xorshift(rng) % table_size];
                        if (target == word) continue;
                        label = 0;
                    }
                    float *o = syn1 + (size_t)target * dim;
                    float f = cblas_sdot(dim, v, 1, o, 1);
                    float g = ((float)label - sigmoid_fast(f)) * alpha;
                    cblas_saxpy(dim, g, o, 1, neu1e, 1);
                    cblas_saxpy(dim, g, v, 1, o, 1);
                }
                cblas_saxpy(dim, 1.0f, neu1e, 1, v, 1);
            }
        }
    }
}

typedef struct shared {
    w2v_t *m;
    const w2v_params_t *p;
    const w2v_corpus_t *c;
    const float *keep; /* subsampling keep probability per word */
    _Atomic uint64_t done;
    uint64_t total;
    double t0;
    w2v_progress_fn progress;
    void *arg;
    pthread_mutex_t progress_lock;
} shared_t;

typedef struct thread_arg {
    shared_t *s;
    int index;
    int failed;
} thread_arg_t;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void *train_thread(void *argp) {
    thread_arg_t *ta = argp;
    shared_t *s = ta->s;
    const w2v_params_t *p = s->p;
    w2v_t *m = s->m;
    int dim = m->dim;
    float *neu1 = malloc((size_t)dim * 2 * sizeof(float));
    int32_t *sent = malloc(MAX_SENT * sizeof *sent);
    if (!neu1 || !sent) {
        ta->failed = 1;
        free(neu1);
        free(sent);
        return NULL;
    }
    uint64_t rng = p->seed * 0x9E3779B97F4A7C15ull + (uint64_t)ta->index * 7919 + 1;
    /* Each thread takes one contiguous slice, starting at a sentence. */
    size_t n = s->c->n, T = (size_t)p->threads;
    size_t begin = n * (size_t)ta->index / T, end = n * (size_t)(ta->index + 1) / T;
    while (begin > 0 && begin < n && s->c->ids[begin - 1] != -1) begin++;
    while (end < n && end > 0 && s->c->ids[end - 1] != -1) end++;
    uint64_t local = 0;
    for (int ep = 0; ep < p->epochs; ep++) {
        size_t i = begin;
        while (i < end) {
            int len = 0;
            while (i < end && s->c->ids[i] != -1) {
                int32_t w = s->c->ids[i++];
                local++;
                if ((float)(xorshift(&rng) >> 40) / (float)(1 << 24) >= s->keep[w]) continue;
                if (len < MAX_SENT) sent[len++] = w;
            }
            i++; /* the separator */
            uint64_t done = atomic_load_explicit(&s->done, memory_order_relaxed);
            float alpha = p->alpha * (1.0f - (float)done / (float)(s->total + 1));
            if (alpha < p->alpha * 1e-4f) alpha = p->alpha * 1e-4f;
            if (len > 1)
                train_sentence(m->vec, m->out, dim, sent, len, p->arch, p->window, p->negative,
                               m->neg_table, m->neg_size, alpha, &rng, neu1, neu1 + dim);
            if (local >= 10000) {
                uint64_t d = atomic_fetch_add(&s->done, local) + local;
                local = 0;
                if (s->progress && ta->index == 0 &&
                    pthread_mutex_trylock(&s->progress_lock) == 0) {
                    double el = now_s() - s->t0;
                    s->progress(d, s->total, el > 0 ? (double)d / el : 0, alpha, s->arg);
                    pthread_mutex_unlock(&s->progress_lock);
                }
            }
        }
    }
    atomic_fetch_add(&s->done, local);
    free(neu1);
    free(sent);
    return NULL;
}

w2v_t *w2v_train(const w2v_params_t *p, const vocab_t *vocab, const w2v_corpus_t *corpus,
                 w2v_progress_fn progress, void *arg, double *words_per_s, char *errstr,
                 size_t errstr_size) {
    pthread_once(&exp_once, exp_init);
    if (p->dim <= 0 || p->window <= 0 || p->negative < 0 || p->threads <= 0 || p->threads > 256 ||
        p->epochs <= 0 || vocab->n == 0) {
        snprintf(errstr, errstr_size, "bad word2vec parameters or an empty vocabulary");
        return NULL;
    }
    w2v_t *m = calloc(1, sizeof *m);
    float *keep = NULL;
    thread_arg_t *ta = NULL;
    pthread_t *th = NULL;
    if (!m) goto oom;
    m->dim = p->dim;
    /* A copy in vocab's order: the corpus holds ids of vocab. */
    m->vocab = vocab_new();
    if (!m->vocab) goto oom;
    for (uint32_t i = 0; i < vocab->n; i++)
        if (vocab_add(m->vocab, vocab->words[i], vocab->counts[i]) < 0) goto oom;
    size_t nv = (size_t)vocab->n * (size_t)p->dim;
    m->vec = malloc(nv * sizeof *m->vec);
    m->out = calloc(nv, sizeof *m->out);
    keep = malloc(vocab->n * sizeof *keep);
    if (!m->vec || !m->out || !keep || build_neg_table(m) < 0) goto oom;
    uint64_t rng = p->seed * 0x2545F4914F6CDD1Dull + 3;
    for (size_t i = 0; i < nv; i++)
        m->vec[i] = ((float)(xorshift(&rng) >> 40) / (float)(1 << 24) - 0.5f) / (float)p->dim;
    uint64_t total_count = 0;
    for (uint32_t i = 0; i < vocab->n; i++) total_count += vocab->counts[i];
    for (uint32_t i = 0; i < vocab->n; i++) {
        double f = (double)vocab->counts[i], t = p->sample * (double)total_count;
        keep[i] = p->sample > 0 && f > 0 ? (float)((sqrt(f / t) + 1) * t / f) : 1.0f;
    }
    shared_t s = {.m = m,
                  .p = p,
                  .c = corpus,
                  .keep = keep,
                  .total = corpus->words * (uint64_t)p->epochs,
                  .t0 = now_s(),
                  .progress = progress,
                  .arg = arg};
    atomic_init(&s.done, 0);
    pthread_mutex_init(&s.progress_lock, NULL);
    ta = calloc((size_t)p->threads, sizeof *ta);
    th = calloc((size_t)p->threads, sizeof *th);
    if (!ta || !th) goto oom_locked;
    int started = 0;
    for (int t = 0; t < p->threads; t++) {
        ta[t].s = &s, ta[t].index = t;
        if (pthread_create(&th[t], NULL, train_thread, &ta[t]) != 0) break;
        started++;
    }
    int failed = started < p->threads;
    for (int t = 0; t < started; t++) {
        pthread_join(th[t], NULL);
        failed |= ta[t].failed;
    }
    double el = now_s() - s.t0;
    pthread_mutex_destroy(&s.progress_lock);
    if (failed) {
        snprintf(errstr, errstr_size, "a training thread failed to start or ran out of memory");
        goto fail;
    }
    if (words_per_s) *words_per_s = el > 0 ? (double)s.total / el : 0;
    free(keep);
    free(ta);
    free(th);
    return m;
oom_locked:
    pthread_mutex_destroy(&s.progress_lock);
oom:
    snprintf(errstr, errstr_size, "out of memory");
fail:
    free(keep);
    free(ta);
    free(th);
    w2v_destroy(m);
    return NULL;
}

int w2v_update(w2v_t *m, const w2v_params_t *p, const int32_t *ids, size_t n, float alpha,
               uint64_t *rng) {
    pthread_once(&exp_once, exp_init);
    if (!m->out) return -1;
    if (!m->neg_table && build_neg_table(m) < 0) return -1;
    float scratch[2 * 1024];
    if (m->dim > 1024) return -1;
    int32_t sent[MAX_SENT];
    int len = 0;
    for (size_t i = 0; i < n && len < MAX_SENT; i++)
        if (ids[i] >= 0 && (uint32_t)ids[i] < m->vocab->n) sent[len++] = ids[i];
    if (len > 1)
        train_sentence(m->vec, m->out, m->dim, sent, len, p->arch, p->window, p->negative,
                       m->neg_table, m->neg_size, alpha, rng, scratch, scratch + m->dim);
    return 0;
}

/* ---- files ---- */

static int put_u32(FILE *f, uint32_t x) {
    unsigned char b[4] = {(unsigned char)x, (unsigned char)(x >> 8), (unsigned char)(x >> 16),
                          (unsigned char)(x >> 24)};
    return fwrite(b, 1, 4, f) == 4 ? 0 : -1;
}

int w2v_write(const w2v_t *m, FILE *f, int word2vec_format, int with_out) {
    size_t nv = (size_t)m->vocab->n * (size_t)m->dim;
    if (word2vec_format) {
        if (fprintf(f, "%u %d\n", m->vocab->n, m->dim) < 0) return -1;
        for (uint32_t i = 0; i < m->vocab->n; i++)
            if (fprintf(f, "%s ", m->vocab->words[i]) < 0 ||
                fwrite(m->vec + (size_t)i * m->dim, sizeof(float), (size_t)m->dim, f) !=
                    (size_t)m->dim ||
                fputc('\n', f) == EOF)
                return -1;
        return 0;
    }
    int out = with_out && m->out;
    if (fwrite("RW2V", 1, 4, f) != 4 || put_u32(f, 1) || put_u32(f, (uint32_t)m->dim) ||
        put_u32(f, out ? 1u : 0u) || vocab_write(m->vocab, f) ||
        fwrite(m->vec, sizeof(float), nv, f) != nv ||
        (out && fwrite(m->out, sizeof(float), nv, f) != nv))
        return -1;
    return 0;
}

int w2v_save(const w2v_t *m, const char *path, int word2vec_format, int with_out, char *errstr,
             size_t errstr_size) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
        return -1;
    }
    int bad = w2v_write(m, f, word2vec_format, with_out) < 0;
    if (fclose(f) != 0) bad = 1;
    if (bad) {
        snprintf(errstr, errstr_size, "%s: write failed: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static uint32_t get_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The original binary format: "n dim\n" then per word "word " + floats. */
static w2v_t *load_word2vec(const unsigned char *d, size_t len, char *errstr, size_t errstr_size) {
    unsigned n = 0;
    int dim = 0, used = 0;
    char head[64];
    size_t hl = len < sizeof head - 1 ? len : sizeof head - 1;
    memcpy(head, d, hl);
    head[hl] = 0;
    if (sscanf(head, "%u %d\n%n", &n, &dim, &used) != 2 || used == 0 || dim <= 0 || dim > 4096 ||
        n > len / (size_t)dim) {
        snprintf(errstr, errstr_size, "not an RW2V or word2vec binary file");
        return NULL;
    }
    w2v_t *m = calloc(1, sizeof *m);
    if (!m || !(m->vocab = vocab_new()) ||
        !(m->vec = malloc((size_t)n * dim * sizeof(float) + 1))) {
        snprintf(errstr, errstr_size, "out of memory");
        w2v_destroy(m);
        return NULL;
    }
    m->dim = dim;
    size_t pos = (size_t)used;
    char w[256];
    for (unsigned i = 0; i < n; i++) {
        size_t l = 0;
        while (pos < len && (d[pos] == '\n' || d[pos] == ' ')) pos++;
        while (pos < len && d[pos] != ' ' && l < sizeof w - 1) w[l++] = (char)d[pos++];
        w[l] = 0;
        pos++;
        if (l == 0 || pos > len || (len - pos) / sizeof(float) < (size_t)dim ||
            vocab_find(m->vocab, w) >= 0 || vocab_add(m->vocab, w, n - i) < 0) {
            snprintf(errstr, errstr_size, "word2vec file truncated or malformed at word %u", i);
            w2v_destroy(m);
            return NULL;
        }
        memcpy(m->vec + (size_t)i * dim, d + pos, (size_t)dim * sizeof(float));
        pos += (size_t)dim * sizeof(float);
        for (int j = 0; j < dim; j++)
            if (!isfinite(m->vec[(size_t)i * dim + j])) {
                snprintf(errstr, errstr_size, "word2vec file: vector of word %u is not finite", i);
                w2v_destroy(m);
                return NULL;
            }
    }
    return m;
}

w2v_t *w2v_load_mem(const void *data, size_t len, char *errstr, size_t errstr_size) {
    const unsigned char *d = data;
    if (len < 4 || memcmp(d, "RW2V", 4) != 0) return load_word2vec(d, len, errstr, errstr_size);
    if (len < 16 || get_u32(d + 4) != 1) {
        snprintf(errstr, errstr_size, "RW2V header truncated or unknown version");
        return NULL;
    }
    uint32_t dim = get_u32(d + 8), flags = get_u32(d + 12);
    if (dim == 0 || dim > 4096 || flags > 1) {
        snprintf(errstr, errstr_size, "RW2V dim %u / flags %u invalid", dim, flags);
        return NULL;
    }
    size_t pos = 16;
    w2v_t *m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    m->dim = (int)dim;
    m->vocab = vocab_read(d, len, &pos, errstr, errstr_size);
    if (!m->vocab) goto fail;
    size_t nv = (size_t)m->vocab->n * dim, need = nv * sizeof(float) * (flags ? 2 : 1);
    if (len - pos != need) {
        snprintf(errstr, errstr_size, "RW2V: %zu bytes of vectors, want %zu", len - pos, need);
        goto fail;
    }
    m->vec = malloc(nv * sizeof(float) + 1);
    if (!m->vec || (flags && !(m->out = malloc(nv * sizeof(float) + 1)))) {
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }
    memcpy(m->vec, d + pos, nv * sizeof(float));
    if (flags) memcpy(m->out, d + pos + nv * sizeof(float), nv * sizeof(float));
    for (size_t i = 0; i < nv; i++)
        if (!isfinite(m->vec[i]) || (flags && !isfinite(m->out[i]))) {
            snprintf(errstr, errstr_size, "RW2V: vector value %zu is not finite", i);
            goto fail;
        }
    return m;
fail:
    w2v_destroy(m);
    return NULL;
}

w2v_t *w2v_load(const char *path, char *errstr, size_t errstr_size) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *d = sz >= 0 ? malloc((size_t)sz + 1) : NULL;
    if (!d || fread(d, 1, (size_t)sz, f) != (size_t)sz) {
        snprintf(errstr, errstr_size, "%s: read failed", path);
        free(d);
        fclose(f);
        return NULL;
    }
    fclose(f);
    char e[300];
    w2v_t *m = w2v_load_mem(d, (size_t)sz, e, sizeof e);
    if (!m) snprintf(errstr, errstr_size, "%s: %s", path, e);
    free(d);
    return m;
}

int w2v_nearest(const w2v_t *m, const char *word, int k, int32_t *ids, float *sims) {
    int64_t q = vocab_find(m->vocab, word);
    if (q < 0) return -1;
    int dim = m->dim, found = 0;
    const float *qv = m->vec + (size_t)q * dim;
    float qn = 0;
    for (int d = 0; d < dim; d++) qn += qv[d] * qv[d];
    qn = sqrtf(qn) + 1e-12f;
    for (uint32_t i = 0; i < m->vocab->n; i++) {
        if ((int64_t)i == q) continue;
        const float *v = m->vec + (size_t)i * dim;
        float dot = 0, nn = 0;
        for (int d = 0; d < dim; d++) dot += qv[d] * v[d], nn += v[d] * v[d];
        float s = dot / (qn * (sqrtf(nn) + 1e-12f));
        if (found == k && s <= sims[k - 1]) continue;
        int j = found < k ? found++ : k - 1;
        while (j > 0 && sims[j - 1] < s) {
            sims[j] = sims[j - 1], ids[j] = ids[j - 1];
            j--;
        }
        sims[j] = s, ids[j] = (int32_t)i;
    }
    return found;
}

int w2v_corpus_add(w2v_corpus_t *c, const vocab_t *vocab, const char *toks, size_t n_tokens) {
    if (c->n + n_tokens + 1 > c->cap) {
        size_t cap = c->cap ? c->cap : 1 << 16;
        while (cap < c->n + n_tokens + 1) cap *= 2;
        int32_t *ids = realloc(c->ids, cap * sizeof *ids);
        if (!ids) return -1;
        c->ids = ids;
        c->cap = cap;
    }
    size_t k = vocab_ids(vocab, toks, n_tokens, -1, c->ids + c->n);
    c->n += k;
    c->words += k;
    c->ids[c->n++] = -1;
    return 0;
}

void w2v_corpus_free(w2v_corpus_t *c) {
    free(c->ids);
    memset(c, 0, sizeof *c);
}
