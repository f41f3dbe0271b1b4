/* sentiment.c: tokenizer + bag of words or RNN, training, files. */
#include "kernels/text/sentiment.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/text/bow.h"
#include "kernels/text/lstm.h"

struct sent_model {
    sent_params_t p;
    vocab_t *vocab; /* words (RNN) or n-grams (BOW) */
    /* bag of words */
    float *w;
    float b;
    /* RNN: nets[0..n_nets), probabilities averaged; rnn = nets[0] */
    rnn_t *nets[SENT_MAX_NETS];
    int n_nets;
    rnn_t *rnn;
    rnn_work_t *work;
    struct sent_model *bow; /* ensemble and lstm-nb: the NB-LR */
    float nb_scale;         /* lstm-nb: weight of the NB-LR log-odds in the logit */
    /* early stopping: the epoch kept (0: none), held-out accuracy per epoch */
    int best_epoch;
    float *es_acc;
    int es_n;
    /* prediction buffers, sized once */
    char *toks;
    int32_t *ids;
};

sent_params_t sent_defaults(int kind) {
    sent_params_t p = {0};
    p.kind = kind;
    p.dim = 100;
    p.hidden = 100;
    /* RNNs overfit 10k sentences within a few epochs (see docs/sentiment.md;
     * snapshot and seed ensembles and mean+max pooling measured there did
     * not beat one network). The lstm kind trains 8 epochs and keeps the
     * mean of its weights over every step of the last 3: on custrev, whose
     * 3,400 training sentences give 4 epochs only ~420 steps, 10-fold
     * accuracy over seeds 1-3 went from 79.12% to 80.67%; rt-polarity
     * stayed where it was (79.19% -> 79.18%, seeds 1-2). */
    p.epochs = kind == SENT_NBLR ? 10 : kind == SENT_LSTM ? 8 : 4;
    p.batch = 32;
    p.min_count = 1;
    p.max_tokens = 100;
    p.max_vocab = 30000;
    p.lr = 1e-3f;
    p.dropout = 0.5f;
    p.dropout_in = 0.4f;
    p.clip = 5.0f;
    p.l2 = 1e-4f;
    p.seed = 1;
    p.pool = RNN_POOL_MAX;
    p.nets = kind == SENT_BILSTM ? 2 : 1;
    p.average = kind == SENT_LSTM ? 3 : 0;
    p.lr_decay = 1.0f;
    p.snapshots = 1;
    p.nb_init = 0;
    p.dropout_word = 0;
    /* The lstm kind is bidirectional: +0.3 points on rt-polarity, +1.0 on
     * custrev (10-fold, docs/sentiment.md) for half the inference speed;
     * lstm+bow's LSTM too (+0.1, +0.2). */
    p.bidir = kind == SENT_LSTM || kind == SENT_ENSEMBLE;
    return p;
}

static const char *const kind_names[] = {"nb",       "bow",    "lstm",   "gru",
                                         "lstm+bow", "bilstm", "lstm-nb"};

int sent_kind_parse(const char *name) {
    for (int k = 0; k < SENT_KINDS; k++)
        if (strcmp(name, kind_names[k]) == 0) return k;
    if (strcmp(name, "nblr") == 0) return SENT_NBLR;
    return -1;
}

const char *sent_kind_name(int kind) {
    return kind >= 0 && kind < SENT_KINDS ? kind_names[kind] : "?";
}

const sent_params_t *sent_params(const sent_model_t *m) {
    return &m->p;
}

static int is_rnn(int kind) {
    return kind == SENT_LSTM || kind == SENT_GRU || kind == SENT_ENSEMBLE || kind == SENT_BILSTM ||
           kind == SENT_LSTMNB;
}

void sent_destroy(sent_model_t *m) {
    if (!m) return;
    vocab_destroy(m->vocab);
    free(m->w);
    for (int k = 0; k < SENT_MAX_NETS; k++) rnn_destroy(m->nets[k]);
    rnn_work_destroy(m->work);
    free(m->toks);
    free(m->ids);
    sent_destroy(m->bow);
    free(m->es_acc);
    free(m);
}

int sent_early_stop(const sent_model_t *m, int *epoch, float *acc, float *history, int max) {
    if (epoch) *epoch = m->best_epoch;
    if (acc) *acc = m->best_epoch > 0 ? m->es_acc[m->best_epoch - 1] : 0.0f;
    for (int i = 0; history && i < m->es_n && i < max; i++) history[i] = m->es_acc[i];
    return m->es_n;
}

/* Prediction buffers. Returns 0 or -1. */
static int alloc_buffers(sent_model_t *m) {
    size_t T = (size_t)m->p.max_tokens;
    m->toks = malloc(T * TOK_STRIDE);
    m->ids = malloc(2 * T * sizeof *m->ids + 1);
    if (!m->toks || !m->ids) return -1;
    if (m->rnn && !(m->work = rnn_work_new(m->rnn, 1, (int)T))) return -1;
    return 0;
}

/* The log-odds of a bag-of-words model (NB-LR or NB). */
static float bow_logit(sent_model_t *m, const char *text, size_t len) {
    size_t nt = tok_split(text, len, m->toks, (size_t)m->p.max_tokens, NULL);
    size_t nf = bow_features(m->vocab, m->toks, nt, m->ids);
    return bow_score(m->w, m->b, m->ids, nf);
}

float sent_predict(sent_model_t *m, const char *text, size_t len, unsigned *flags) {
    size_t nt = tok_split(text, len, m->toks, (size_t)m->p.max_tokens, flags);
    if (!m->rnn) {
        size_t nf = bow_features(m->vocab, m->toks, nt, m->ids);
        float s = bow_score(m->w, m->b, m->ids, nf);
        return 1.0f / (1.0f + expf(-s));
    }
    int n = (int)vocab_ids(m->vocab, m->toks, nt, 0, m->ids);
    int32_t *rev = m->ids + m->p.max_tokens;
    for (int i = 0; i < n; i++) rev[i] = m->ids[n - 1 - i];
    float pr[2], sum = 0, off[2] = {0, 0};
    int stacked = m->p.kind == SENT_LSTMNB && m->bow;
    if (stacked) off[1] = m->nb_scale * bow_logit(m->bow, text, len);
    for (int k = 0; k < m->n_nets; k++) {
        /* Member k is a snapshot of network k / snapshots. */
        int seed_net = k / (m->p.snapshots > 0 ? m->p.snapshots : 1);
        const int32_t *ids = (m->p.kind == SENT_BILSTM && (seed_net & 1)) ? rev : m->ids;
        rnn_forward_offset(m->nets[k], m->work, ids, &n, 1, n > 0 ? n : 1, NULL,
                           stacked ? off : NULL, 0, 0, NULL, pr);
        sum += pr[1];
    }
    float p1 = sum / (float)(m->n_nets > 0 ? m->n_nets : 1);
    if (m->bow && !stacked) return 0.5f * (p1 + sent_predict(m->bow, text, len, NULL));
    return p1;
}

/* ---- training ---- */

static uint64_t xorshift(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static sent_model_t *train_bow(sent_model_t *m, const sent_example_t *ex, size_t n, char *errstr,
                               size_t errstr_size) {
    size_t T = (size_t)m->p.max_tokens;
    char *toks = malloc(T * TOK_STRIDE);
    vocab_t *all = vocab_new();
    int32_t **feats = calloc(n, sizeof *feats);
    size_t *nf = calloc(n, sizeof *nf);
    int *labels = malloc(n * sizeof *labels);
    int32_t *tmp = malloc(2 * T * sizeof *tmp + 1);
    if (!toks || !all || !feats || !nf || !labels || !tmp) goto oom;
    for (size_t i = 0; i < n; i++) {
        size_t nt = tok_split(ex[i].text, ex[i].len, toks, T, NULL);
        if (bow_count(all, toks, nt) < 0) goto oom;
    }
    m->vocab = vocab_prune(all, (uint64_t)m->p.min_count, 0, 0);
    if (!m->vocab) goto oom;
    for (size_t i = 0; i < n; i++) {
        size_t nt = tok_split(ex[i].text, ex[i].len, toks, T, NULL);
        nf[i] = bow_features(m->vocab, toks, nt, tmp);
        feats[i] = malloc(nf[i] * sizeof(int32_t) + 1);
        if (!feats[i]) goto oom;
        memcpy(feats[i], tmp, nf[i] * sizeof(int32_t));
        labels[i] = ex[i].label;
    }
    m->w = malloc((size_t)m->vocab->n * sizeof *m->w + 1);
    if (!m->w) goto oom;
    if (bow_train((const int32_t *const *)feats, nf, labels, n, m->vocab->n, m->p.kind == SENT_NBLR,
                  m->p.epochs, m->p.l2, m->p.seed, m->w, &m->b) < 0)
        goto oom;
    goto done;
oom:
    snprintf(errstr, errstr_size, "out of memory");
    sent_destroy(m);
    m = NULL;
done:
    if (feats)
        for (size_t i = 0; i < n; i++) free(feats[i]);
    free(feats);
    free(nf);
    free(labels);
    free(tmp);
    free(toks);
    vocab_destroy(all);
    return m;
}

typedef struct seq {
    int32_t *ids;
    int len;
    int label;
    float nb; /* lstm-nb: the held-out NB-LR log-odds of the sentence */
} seq_t;

static int by_len(const void *a, const void *b) {
    return ((const seq_t *)a)->len - ((const seq_t *)b)->len;
}

/* The last embedding column of every word: its naive-Bayes log-count
 * ratio on the training sentences, log((a + pos_w) / |a + pos|) - log((a +
 * neg_w) / |a + neg|) with binarized counts and a = 1 (as NBSVM), scaled
 * to the RMS of the other columns (the first emb_dim; 0: the random init's
 * 0.1 / sqrt(3)). A sentiment prior for each word that training refines,
 * estimated from every training sentence at once. Returns 0 or -1 (out of
 * memory). */
#define NB_SHRINK 5.0
static int nb_column(rnn_t *net, const seq_t *seqs, size_t n, int emb_dim) {
    size_t V = (size_t)net->vocab, D = (size_t)net->dim;
    double *cnt = calloc(2 * V, sizeof *cnt);
    size_t *mark = calloc(V, sizeof *mark);
    if (!cnt || !mark) {
        free(cnt), free(mark);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        for (int t = 0; t < seqs[i].len; t++) {
            int32_t id = seqs[i].ids[t];
            if (mark[id] == i + 1) continue;
            mark[id] = i + 1;
            cnt[(size_t)(seqs[i].label ? V : 0) + (size_t)id] += 1;
        }
    double s0 = (double)V, s1 = (double)V, rr = 0, ee = 0;
    size_t nr = 0, ne = 0;
    for (size_t w = 0; w < V; w++) s0 += cnt[w], s1 += cnt[V + w];
    for (size_t w = 0; w < V; w++) {
        /* Shrunk by n / (n + NB_SHRINK) for a word in n sentences: a rare
         * word's ratio mostly restates its few training labels, which the
         * network would learn to trust and then meet unseen at test time. */
        double nw = cnt[w] + cnt[V + w];
        double r = (log((1 + cnt[V + w]) / s1) - log((1 + cnt[w]) / s0)) * nw / (nw + NB_SHRINK);
        cnt[w] = r; /* reused for the ratio */
        if (cnt[V + w] + mark[w] > 0) rr += r * r, nr++;
        for (size_t d = 0; d < (size_t)emb_dim && d + 1 < D; d++) {
            double x = net->emb[w * D + d];
            ee += x * x, ne++;
        }
    }
    double rms_r = nr ? sqrt(rr / (double)nr) : 1, rms_e = ne ? sqrt(ee / (double)ne) : 0.0577;
    if (rms_r <= 0) rms_r = 1;
    if (rms_e <= 0) rms_e = 0.0577;
    for (size_t w = 0; w < V; w++) net->emb[w * D + D - 1] = (float)(cnt[w] * rms_e / rms_r);
    free(cnt), free(mark);
    return 0;
}

/* Trains m's networks on ex[0..n); with ho (nho > 0, early stopping: one
 * network), measures the accuracy on ho after each epoch and keeps the
 * weights of the best one (the earliest on ties). */
static sent_model_t *train_rnn(sent_model_t *m, const sent_example_t *ex, size_t n,
                               const sent_example_t *ho, size_t nho, const w2v_t *emb,
                               const float *stack, sent_progress_fn progress, void *arg,
                               char *errstr, size_t errstr_size) {
    const sent_params_t *p = &m->p;
    size_t T = (size_t)p->max_tokens;
    char *toks = malloc(T * TOK_STRIDE);
    vocab_t *all = vocab_new();
    seq_t *seqs = calloc(n, sizeof *seqs);
    int32_t *bids = malloc((size_t)p->batch * T * sizeof *bids);
    int *blens = malloc((size_t)p->batch * sizeof *blens),
        *blab = malloc((size_t)p->batch * sizeof *blab);
    float *boff = calloc((size_t)p->batch * 2, sizeof *boff),
          *bprob = malloc((size_t)p->batch * 2 * sizeof *bprob);
    /* lstm-nb: Adam moments of the log-odds weight */
    float nb_m = 0, nb_v = 0;
    size_t nb = (n + (size_t)p->batch - 1) / (size_t)p->batch;
    size_t *border = malloc((nb + 1) * sizeof *border);
    float *grad = NULL, *avg = NULL, *best = NULL;
    adam_t *adam = NULL;
    int32_t *rows = NULL;
    uint32_t *seen = NULL, stamp = 0;
    rnn_work_t *work = NULL;
    if (!toks || !all || !seqs || !bids || !blens || !blab || !border || !boff || !bprob) goto oom;
    for (size_t i = 0; i < n; i++) {
        size_t nt = tok_split(ex[i].text, ex[i].len, toks, T, NULL);
        for (size_t k = 0; k < nt; k++)
            if (vocab_add(all, toks + k * TOK_STRIDE, 1) < 0) goto oom;
    }
    if (emb) {
        /* Words the embeddings know, so unseen test words keep a vector. */
        uint32_t lim =
            emb->vocab->n < (uint32_t)p->max_vocab ? emb->vocab->n : (uint32_t)p->max_vocab;
        for (uint32_t i = 0; i < lim; i++) {
            int64_t id = vocab_find(all, emb->vocab->words[i]);
            if (id < 0 && vocab_add(all, emb->vocab->words[i], (uint64_t)p->min_count) < 0)
                goto oom;
            if (id >= 0 && all->counts[id] < (uint64_t)p->min_count)
                all->counts[id] = (uint64_t)p->min_count;
        }
    }
    m->vocab = vocab_prune(all, (uint64_t)p->min_count, 0, 1);
    if (!m->vocab) goto oom;
    /* Every network starts from the same embeddings and its own seed (the
     * snapshots of one network are copies of it, made during training). */
    const int S = p->snapshots, members = p->nets * S;
    for (int k = 0; k < members; k++) {
        m->nets[k] = rnn_new(p->kind == SENT_GRU ? RNN_GRU : RNN_LSTM, p->pool, p->bidir ? 2 : 1,
                             (int)m->vocab->n, p->dim, p->hidden, 2, p->seed + (uint64_t)(k / S));
        if (!m->nets[k]) goto oom;
    }
    m->rnn = m->nets[0];
    m->n_nets = members;
    if (emb)
        for (uint32_t i = 1; i < m->vocab->n; i++) {
            int64_t e = vocab_find(emb->vocab, m->vocab->words[i]);
            if (e >= 0)
                memcpy(m->rnn->emb + (size_t)i * p->dim, emb->vec + (size_t)e * emb->dim,
                       (size_t)emb->dim * sizeof(float));
        }
    for (size_t i = 0; i < n; i++) {
        size_t nt = tok_split(ex[i].text, ex[i].len, toks, T, NULL);
        seqs[i].ids = malloc(nt * sizeof(int32_t) + 1);
        if (!seqs[i].ids) goto oom;
        seqs[i].len = (int)vocab_ids(m->vocab, toks, nt, 0, seqs[i].ids);
        seqs[i].label = ex[i].label;
        seqs[i].nb = stack ? stack[i] : 0.0f;
    }
    m->nb_scale = 1.0f;
    if (p->nb_init && nb_column(m->rnn, seqs, n, emb ? emb->dim : 0) < 0) goto oom;
    for (int k = 1; k < members; k++)
        memcpy(m->nets[k]->emb, m->rnn->emb, (size_t)m->vocab->n * (size_t)p->dim * sizeof(float));
    grad = calloc(m->rnn->n_params, sizeof *grad);
    if (p->average > 0 && !(avg = malloc(m->rnn->n_params * sizeof *avg))) goto oom;
    if (nho > 0) {
        best = malloc(m->rnn->n_params * sizeof *best);
        m->es_acc = calloc((size_t)p->epochs + 1, sizeof *m->es_acc);
        if (!best || !m->es_acc) goto oom;
    }
    /* Embedding rows are updated only where the batch has their words
     * (lazy Adam), the rest of the parameters densely. */
    size_t D = (size_t)p->dim, skip = (size_t)m->rnn->vocab * D, dense = m->rnn->n_params - skip;
    adam = adam_new(m->rnn->n_params);
    rows = malloc((size_t)p->batch * T * sizeof *rows);
    seen = calloc(m->vocab->n, sizeof *seen);
    if (!rows || !seen) goto oom;
    work = rnn_work_new(m->rnn, p->batch, (int)T);
    if (!grad || !adam || !work) goto oom;
    if (alloc_buffers(m) < 0) goto oom;
    uint64_t rng = p->seed * 0x2545F4914F6CDD1Dull + 7;
    int reversed = 0;
    for (int k = 0; k < p->nets; k++) {
        /* Network k trains in its last snapshot slot and is copied into the
         * earlier ones at the ends of epochs; before its last S epochs every
         * slot follows it, so predictions during training (progress) use the
         * networks so far. */
        rnn_t *net = m->nets[k * S + S - 1];
        m->n_nets = (k + 1) * S;
        if (reversed != (p->kind == SENT_BILSTM && (k & 1))) {
            for (size_t i = 0; i < n; i++)
                for (int a = 0, b = seqs[i].len - 1; a < b; a++, b--) {
                    int32_t t = seqs[i].ids[a];
                    seqs[i].ids[a] = seqs[i].ids[b];
                    seqs[i].ids[b] = t;
                }
            reversed = !reversed;
        }
        if (k) {
            memset(adam->m, 0, adam->n * sizeof *adam->m);
            memset(adam->v, 0, adam->n * sizeof *adam->v);
            adam->t = 0;
        }
        long n_avg = 0;
        float lr = p->lr;
        for (int ep = 1; ep <= p->epochs; ep++, lr *= p->lr_decay) {
            double t0 = now_s();
            int averaging = avg && ep > p->epochs - p->average;
            /* Shuffle, sort chunks of 50 batches by length (less padding),
             * then visit the batches in random order. */
            for (size_t i = n; i > 1; i--) {
                size_t j = xorshift(&rng) % i;
                seq_t t = seqs[i - 1];
                seqs[i - 1] = seqs[j];
                seqs[j] = t;
            }
            size_t chunk = (size_t)p->batch * 50;
            for (size_t s = 0; s < n; s += chunk)
                qsort(seqs + s, (n - s < chunk ? n - s : chunk), sizeof *seqs, by_len);
            for (size_t i = 0; i < nb; i++) border[i] = i;
            for (size_t i = nb; i > 1; i--) {
                size_t j = xorshift(&rng) % i, t = border[i - 1];
                border[i - 1] = border[j];
                border[j] = t;
            }
            double loss_sum = 0;
            for (size_t bi = 0; bi < nb; bi++) {
                size_t s = border[bi] * (size_t)p->batch;
                int B = (int)((n - s) < (size_t)p->batch ? n - s : (size_t)p->batch);
                int Tb = 1;
                for (int b = 0; b < B; b++)
                    if (seqs[s + b].len > Tb) Tb = seqs[s + b].len;
                for (int b = 0; b < B; b++) {
                    blens[b] = seqs[s + b].len;
                    blab[b] = seqs[s + b].label;
                    memcpy(bids + (size_t)b * Tb, seqs[s + b].ids,
                           (size_t)blens[b] * sizeof(int32_t));
                    boff[2 * b + 1] = m->nb_scale * seqs[s + b].nb;
                    if (p->dropout_word > 0) /* word dropout: the unknown word instead */
                        for (int t = 0; t < blens[b]; t++)
                            if ((float)(xorshift(&rng) >> 40) / (float)(1ull << 24) <
                                p->dropout_word)
                                bids[(size_t)b * Tb + t] = 0;
                }
                float loss =
                    rnn_forward_offset(net, work, bids, blens, B, Tb, blab, stack ? boff : NULL,
                                       p->dropout_in, p->dropout, &rng, bprob);
                memset(grad + (p->lazy ? skip : 0), 0,
                       (p->lazy ? dense : net->n_params) * sizeof *grad);
                rnn_backward(net, work, bids, blens, B, Tb, blab, grad);
                size_t nr = 0;
                stamp++;
                for (int b = 0; b < B; b++)
                    for (int t = 0; t < blens[b]; t++) {
                        int32_t id = bids[(size_t)b * Tb + t];
                        if (seen[id] != stamp) seen[id] = stamp, rows[nr++] = id;
                    }
                double ss = 0;
                for (size_t i = p->lazy ? skip : 0; i < net->n_params; i++)
                    ss += (double)grad[i] * grad[i];
                for (size_t r = 0; r < nr && p->lazy; r++)
                    for (size_t d = 0; d < D; d++)
                        ss += (double)grad[rows[r] * D + d] * grad[rows[r] * D + d];
                float norm = (float)sqrt(ss),
                      scale = p->clip > 0 && norm > p->clip ? p->clip / norm : 1.0f;
                adam->t++;
                if (!p->lazy) {
                    /* Dense Adam: every row moves with its moments, as in PyTorch. */
                    if (!p->freeze) adam_update(adam, net->params, grad, 0, skip, lr, scale);
                    nr = 0;
                }
                adam_update(adam, net->params, grad, skip, dense, lr, scale);
                if (stack) {
                    /* d loss / d scale = mean over the batch of (p1 - y) * log-odds;
                     * Adam with the network's step count (a scalar, unclipped). */
                    double g = 0;
                    for (int b = 0; b < B; b++)
                        g += (bprob[2 * b + 1] - (float)blab[b]) * seqs[s + b].nb;
                    g /= B;
                    nb_m = 0.9f * nb_m + 0.1f * (float)g;
                    nb_v = 0.999f * nb_v + 0.001f * (float)(g * g);
                    float c1 = 1.0f - powf(0.9f, (float)adam->t),
                          c2 = 1.0f - powf(0.999f, (float)adam->t);
                    m->nb_scale -= 10 * lr * sqrtf(c2) / c1 * nb_m / (sqrtf(nb_v) + 1e-8f);
                }
                for (size_t r = 0; r < nr; r++) {
                    if (!p->freeze) adam_update(adam, net->params, grad, rows[r] * D, D, lr, scale);
                    memset(grad + rows[r] * D, 0, D * sizeof *grad);
                }
                if (averaging) {
                    /* Running mean of the weights after each step. */
                    float f = 1.0f / (float)++n_avg;
                    if (n_avg == 1)
                        memcpy(avg, net->params, net->n_params * sizeof *avg);
                    else
                        for (size_t i = 0; i < net->n_params; i++)
                            avg[i] += (net->params[i] - avg[i]) * f;
                }
                loss_sum += loss * B;
            }
            if (averaging && ep == p->epochs) memcpy(net->params, avg, net->n_params * sizeof *avg);
            for (int j = S - 1 - (p->epochs - ep) > 0 ? S - 1 - (p->epochs - ep) : 0; j < S - 1;
                 j++)
                memcpy(m->nets[k * S + j]->params, net->params, net->n_params * sizeof(float));
            if (nho > 0) {
                size_t right = 0;
                for (size_t i = 0; i < nho; i++)
                    right += (sent_predict(m, ho[i].text, ho[i].len, NULL) >= 0.5f) ==
                             (ho[i].label == 1);
                float acc = (float)right / (float)nho;
                m->es_acc[m->es_n++] = acc;
                if (m->best_epoch == 0 || acc > m->es_acc[m->best_epoch - 1]) {
                    m->best_epoch = ep;
                    memcpy(best, net->params, net->n_params * sizeof *best);
                }
            }
            if (progress)
                progress(k * p->epochs + ep, (float)(loss_sum / (double)n), now_s() - t0, m, arg);
        }
        if (nho > 0 && m->best_epoch > 0) memcpy(net->params, best, net->n_params * sizeof *best);
    }
    goto done;
oom:
    snprintf(errstr, errstr_size, "out of memory");
    sent_destroy(m);
    m = NULL;
done:
    if (seqs)
        for (size_t i = 0; i < n; i++) free(seqs[i].ids);
    free(seqs);
    free(toks);
    vocab_destroy(all);
    free(bids);
    free(blens);
    free(blab);
    free(boff);
    free(bprob);
    free(border);
    free(grad);
    free(avg);
    free(best);
    free(rows);
    free(seen);
    adam_destroy(adam);
    rnn_work_destroy(work);
    return m;
}

#define STACK_FOLDS 5
/* lstm-nb: m->bow becomes an NB-LR on all n examples; returns the NB-LR
 * log-odds of each example from an NB-LR trained without it (STACK_FOLDS
 * inner folds, example i in fold i % STACK_FOLDS), malloc'd, the caller
 * frees it. NULL with errstr. */
static float *stack_scores(sent_model_t *m, const sent_example_t *ex, size_t n, char *errstr,
                           size_t errstr_size) {
    sent_params_t bp = sent_defaults(SENT_NBLR);
    bp.max_tokens = m->p.max_tokens;
    bp.seed = m->p.seed;
    float *nb = malloc(n * sizeof *nb + 1);
    sent_example_t *tr = malloc(n * sizeof *tr + 1);
    if (!nb || !tr) goto oom;
    if (!(m->bow = sent_train(&bp, ex, n, NULL, NULL, NULL, errstr, errstr_size))) goto fail;
    for (size_t i = 0; i < n; i++) nb[i] = 0;
    for (int f = 0; f < STACK_FOLDS && n >= STACK_FOLDS; f++) {
        size_t nt = 0;
        for (size_t i = 0; i < n; i++)
            if (i % STACK_FOLDS != (size_t)f) tr[nt++] = ex[i];
        sent_model_t *b = sent_train(&bp, tr, nt, NULL, NULL, NULL, errstr, errstr_size);
        if (!b) goto fail;
        for (size_t i = (size_t)f; i < n; i += STACK_FOLDS)
            nb[i] = bow_logit(b, ex[i].text, ex[i].len);
        sent_destroy(b);
    }
    free(tr);
    return nb;
oom:
    snprintf(errstr, errstr_size, "out of memory");
fail:
    free(nb);
    free(tr);
    return NULL;
}

size_t sent_holdout(const sent_example_t *ex, size_t n, float frac, uint64_t seed,
                    unsigned char *held) {
    size_t total = 0;
    memset(held, 0, n);
    for (int label = 0; label <= 1; label++) {
        /* A seeded pass choosing k of the c examples with this label
         * (selection sampling: each with probability need / left). */
        size_t c = 0, k;
        for (size_t i = 0; i < n; i++) c += (ex[i].label == 1) == (label == 1);
        k = (size_t)((double)frac * (double)c + 0.5);
        uint64_t rng = (seed + (uint64_t)label) * 0x9E3779B97F4A7C15ull + 11;
        for (size_t i = 0, left = c; i < n && k > 0; i++) {
            if ((ex[i].label == 1) != (label == 1)) continue;
            if (xorshift(&rng) % left < k) held[i] = 1, k--, total++;
            left--;
        }
    }
    return total;
}

sent_model_t *sent_train(const sent_params_t *p, const sent_example_t *ex, size_t n,
                         const w2v_t *emb, sent_progress_fn progress, void *arg, char *errstr,
                         size_t errstr_size) {
    if (n == 0) {
        snprintf(errstr, errstr_size, "no training examples");
        return NULL;
    }
    if (p->early_stop > 0 && ((p->kind != SENT_LSTM && p->kind != SENT_GRU) || p->nets != 1 ||
                              p->snapshots != 1 || p->average != 0)) {
        snprintf(errstr, errstr_size,
                 "early stopping needs an lstm or gru with one network, one snapshot and no "
                 "averaging");
        return NULL;
    }
    if (p->kind < 0 || p->kind >= SENT_KINDS || p->max_tokens <= 0 || p->batch <= 0 ||
        p->hidden <= 0 || p->dim <= 0 || p->epochs < 0 || p->nets < 1 || p->snapshots < 1 ||
        p->nets * p->snapshots > SENT_MAX_NETS || p->average < 0 || !(p->dropout_word >= 0) ||
        !(p->dropout_word < 1) || (p->pool != RNN_POOL_MAX && p->pool != RNN_POOL_MEANMAX) ||
        !(p->lr_decay > 0) || (p->bidir != 0 && p->bidir != 1) || !(p->early_stop >= 0) ||
        !(p->early_stop < 1) ||
        (p->early_stop > 0 && ((p->kind != SENT_LSTM && p->kind != SENT_GRU) || p->nets != 1 ||
                               p->snapshots != 1 || p->average != 0))) {
        snprintf(errstr, errstr_size, "bad training parameters");
        return NULL;
    }
    sent_model_t *m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    m->p = *p;
    if (is_rnn(p->kind)) {
        if (emb) m->p.dim = emb->dim;
        if (emb) m->p.dim = emb->dim + (p->nb_init ? 1 : 0);
        /* No more snapshots than epochs (e.g. a one-epoch run of a recipe). */
        if (m->p.snapshots > (p->epochs > 1 ? p->epochs : 1))
            m->p.snapshots = p->epochs > 1 ? p->epochs : 1;
        if (p->kind == SENT_ENSEMBLE) {
            sent_params_t bp = sent_defaults(SENT_NBLR);
            bp.max_tokens = p->max_tokens;
            bp.seed = p->seed;
            if (!(m->bow = sent_train(&bp, ex, n, NULL, NULL, NULL, errstr, errstr_size))) {
                sent_destroy(m);
                return NULL;
            }
        }
        float *nb = NULL;
        if (p->kind == SENT_LSTMNB && !(nb = stack_scores(m, ex, n, errstr, errstr_size))) {
            sent_destroy(m);
            return NULL;
        }
        if (p->early_stop > 0) {
            unsigned char *held = calloc(n, 1);
            sent_example_t *tr = malloc(n * sizeof *tr), *ho = malloc(n * sizeof *ho);
            size_t nt = 0, nh = 0;
            if (!held || !tr || !ho) {
                snprintf(errstr, errstr_size, "out of memory");
                m = NULL;
            } else {
                sent_holdout(ex, n, p->early_stop, p->seed, held);
                for (size_t i = 0; i < n; i++)
                    if (held[i])
                        ho[nh++] = ex[i];
                    else
                        tr[nt++] = ex[i];
                if (nh == 0 || nt == 0) {
                    snprintf(errstr, errstr_size, "early stopping: too few examples to hold out");
                    sent_destroy(m);
                    m = NULL;
                } else
                    m = train_rnn(m, tr, nt, ho, nh, emb, nb, progress, arg, errstr, errstr_size);
            }
            if (m && p->early_refit) {
                sent_params_t q = *p;
                q.early_stop = 0, q.early_refit = 0, q.epochs = m->best_epoch;
                sent_model_t *r = sent_train(&q, ex, n, emb, progress, arg, errstr, errstr_size);
                if (r) {
                    r->best_epoch = m->best_epoch, r->es_n = m->es_n;
                    r->es_acc = m->es_acc, m->es_acc = NULL;
                }
                sent_destroy(m);
                m = r;
            }
            free(held);
            free(tr);
            free(ho);
            free(nb);
            return m;
        }
        m = train_rnn(m, ex, n, NULL, 0, emb, nb, progress, arg, errstr, errstr_size);
        free(nb);
        return m;
    }
    m = train_bow(m, ex, n, errstr, errstr_size);
    if (m && alloc_buffers(m) < 0) {
        snprintf(errstr, errstr_size, "out of memory");
        sent_destroy(m);
        return NULL;
    }
    return m;
}

/* ---- files ---- */

#define SENT_VERSION 3u
/* Buffers one prediction may need (an RNN over max_tokens steps): 512 MiB. */
#define SENT_MAX_WORK_BYTES ((size_t)512u << 20)

static int put_u32(FILE *f, uint32_t x) {
    unsigned char b[4] = {(unsigned char)x, (unsigned char)(x >> 8), (unsigned char)(x >> 16),
                          (unsigned char)(x >> 24)};
    return fwrite(b, 1, 4, f) == 4 ? 0 : -1;
}
static int put_f32(FILE *f, float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return put_u32(f, u);
}
static int put_floats(FILE *f, const float *x, size_t n) {
    /* Little-endian hosts only write the array as is (x86-64, aarch64). */
    return fwrite(x, sizeof *x, n, f) == n ? 0 : -1;
}

int sent_write(const sent_model_t *m, FILE *f) {
    const sent_params_t *p = &m->p;
    int bad = fwrite("RSNT", 1, 4, f) != 4 || put_u32(f, SENT_VERSION) ||
              put_u32(f, (uint32_t)p->kind) || put_u32(f, (uint32_t)p->dim) ||
              put_u32(f, (uint32_t)p->hidden) || put_u32(f, (uint32_t)p->epochs) ||
              put_u32(f, (uint32_t)p->batch) || put_u32(f, (uint32_t)p->min_count) ||
              put_u32(f, (uint32_t)p->max_tokens) || put_u32(f, (uint32_t)p->max_vocab) ||
              put_f32(f, p->lr) || put_f32(f, p->dropout) || put_f32(f, p->dropout_in) ||
              put_f32(f, p->clip) || put_f32(f, p->l2) || put_u32(f, (uint32_t)p->seed) ||
              put_u32(f, (uint32_t)p->freeze) || put_u32(f, (uint32_t)p->lazy) ||
              put_u32(f, (uint32_t)p->pool) || put_u32(f, (uint32_t)p->nets) ||
              put_u32(f, (uint32_t)p->average) || put_f32(f, p->lr_decay) ||
              put_u32(f, (uint32_t)p->snapshots) || put_u32(f, (uint32_t)p->nb_init) ||
              put_f32(f, p->dropout_word) || put_u32(f, (uint32_t)p->bidir) ||
              vocab_write(m->vocab, f);
    if (!bad && !m->rnn) bad = put_f32(f, m->b) || put_floats(f, m->w, m->vocab->n);
    if (!bad && m->rnn)
        bad = put_u32(f, (uint32_t)m->rnn->vocab) || put_u32(f, (uint32_t)m->rnn->dim) ||
              put_u32(f, (uint32_t)m->rnn->hidden) || put_u32(f, (uint32_t)m->rnn->classes) ||
              put_floats(f, m->rnn->params, m->rnn->n_params);
    for (int k = 1; k < m->n_nets && !bad; k++)
        bad = put_floats(f, m->nets[k]->params, m->nets[k]->n_params);
    if (!bad && p->kind == SENT_LSTMNB) bad = put_f32(f, m->nb_scale);
    if (!bad && m->bow) bad = sent_write(m->bow, f);
    return bad ? -1 : 0;
}

int sent_save(const sent_model_t *m, const char *path, char *errstr, size_t errstr_size) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
        return -1;
    }
    int bad = sent_write(m, f) < 0;
    if (fclose(f) != 0) bad = 1;
    if (bad) {
        snprintf(errstr, errstr_size, "%s: write failed: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

typedef struct reader {
    const unsigned char *d;
    size_t len, pos;
    int bad;
} reader_t;

static uint32_t rd_u32(reader_t *r) {
    if (r->len - r->pos < 4) {
        r->bad = 1;
        return 0;
    }
    const unsigned char *p = r->d + r->pos;
    r->pos += 4;
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static float rd_f32(reader_t *r) {
    uint32_t u = rd_u32(r);
    float x;
    memcpy(&x, &u, 4);
    return x;
}
static int rd_floats(reader_t *r, float *x, size_t n) {
    if ((r->len - r->pos) / sizeof(float) < n) return r->bad = 1, -1;
    memcpy(x, r->d + r->pos, n * sizeof(float));
    r->pos += n * sizeof(float);
    return 0;
}

static int floats_finite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

sent_model_t *sent_load_mem(const void *data, size_t len, char *errstr, size_t errstr_size) {
    reader_t r = {data, len, 0, 0};
    if (len < 8 || memcmp(data, "RSNT", 4) != 0) {
        snprintf(errstr, errstr_size, "not a sentiment model (magic RSNT missing)");
        return NULL;
    }
    r.pos = 4;
    uint32_t ver = rd_u32(&r);
    if (ver < 1 || ver > SENT_VERSION) {
        snprintf(errstr, errstr_size, "sentiment model version %u, this reel reads 1 to %u", ver,
                 SENT_VERSION);
        return NULL;
    }
    sent_model_t *m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    sent_params_t *p = &m->p;
    p->kind = (int)rd_u32(&r);
    p->dim = (int)rd_u32(&r);
    p->hidden = (int)rd_u32(&r);
    p->epochs = (int)rd_u32(&r);
    p->batch = (int)rd_u32(&r);
    p->min_count = (int)rd_u32(&r);
    p->max_tokens = (int)rd_u32(&r);
    p->max_vocab = (int)rd_u32(&r);
    p->lr = rd_f32(&r);
    p->dropout = rd_f32(&r);
    p->dropout_in = rd_f32(&r);
    p->clip = rd_f32(&r);
    p->l2 = rd_f32(&r);
    p->seed = rd_u32(&r);
    p->freeze = (int)rd_u32(&r);
    p->lazy = (int)rd_u32(&r);
    if (ver >= 2) {
        p->pool = (int)rd_u32(&r);
        p->nets = (int)rd_u32(&r);
        p->average = (int)rd_u32(&r);
        p->lr_decay = rd_f32(&r);
        p->snapshots = (int)rd_u32(&r);
        p->nb_init = (int)rd_u32(&r);
        p->dropout_word = ver >= 3 ? rd_f32(&r) : 0.0f;
        p->bidir = ver >= 3 ? (int)rd_u32(&r) : 0;
    } else {
        /* Version 1: max pooling, one network (bilstm: two). */
        p->pool = RNN_POOL_MAX;
        p->nets = p->kind == SENT_BILSTM ? 2 : 1;
        p->average = 0;
        p->lr_decay = 1.0f;
        p->snapshots = 1;
        p->nb_init = 0;
        p->dropout_word = 0;
        p->bidir = 0;
    }
    if (r.bad || p->kind < 0 || p->kind >= SENT_KINDS || (p->kind == SENT_LSTMNB && ver < 3) ||
        p->max_tokens <= 0 || (p->bidir != 0 && p->bidir != 1) || p->max_tokens > 100000 ||
        p->nets < 1 || p->snapshots < 1 || p->nets > SENT_MAX_NETS ||
        p->snapshots > SENT_MAX_NETS || p->nets * p->snapshots > SENT_MAX_NETS ||
        (p->pool != RNN_POOL_MAX && p->pool != RNN_POOL_MEANMAX)) {
        snprintf(errstr, errstr_size, "sentiment model header truncated or invalid");
        goto fail;
    }
    m->vocab = vocab_read(r.d, r.len, &r.pos, errstr, errstr_size);
    if (!m->vocab) goto fail;
    if (!is_rnn(p->kind)) {
        m->b = rd_f32(&r);
        m->w = malloc((size_t)m->vocab->n * sizeof *m->w + 1);
        if (!m->w) goto oom;
        /* r.bad: the bias itself was missing (read as 0 by rd_f32) */
        if (rd_floats(&r, m->w, m->vocab->n) < 0 || r.bad) {
            snprintf(errstr, errstr_size, "sentiment model weights truncated");
            goto fail;
        }
    } else {
        uint32_t V = rd_u32(&r), D = rd_u32(&r), H = rd_u32(&r), C = rd_u32(&r);
        if (r.bad || V != m->vocab->n || D == 0 || H == 0 || C != 2 || D > 4096 || H > 4096) {
            snprintf(errstr, errstr_size, "sentiment model shapes invalid");
            goto fail;
        }
        /* Before anything is allocated: every network's parameters are in
         * the file, and the per-text buffers (max_tokens steps) stay within
         * bounds. */
        int cell = p->kind == SENT_GRU ? RNN_GRU : RNN_LSTM;
        size_t np =
            rnn_param_count(cell, p->pool, p->bidir ? 2 : 1, (int)V, (int)D, (int)H, (int)C);
        if (np > (r.len - r.pos) / sizeof(float) / (size_t)(p->nets * p->snapshots)) {
            snprintf(errstr, errstr_size, "sentiment model weights truncated");
            goto fail;
        }
        if ((size_t)p->max_tokens * (3 * (size_t)D + 22 * (size_t)H * (p->bidir ? 2 : 1)) *
                sizeof(float) >
            SENT_MAX_WORK_BYTES) {
            snprintf(errstr, errstr_size,
                     "sentiment model: %d tokens x %u dims x %u hidden is too large", p->max_tokens,
                     D, H);
            goto fail;
        }
        for (int k = 0; k < p->nets * p->snapshots; k++) {
            m->nets[k] =
                rnn_new(cell, p->pool, p->bidir ? 2 : 1, (int)V, (int)D, (int)H, (int)C, 0);
            if (!m->nets[k]) goto oom;
            m->n_nets = k + 1;
            if (rd_floats(&r, m->nets[k]->params, m->nets[k]->n_params) < 0) {
                snprintf(errstr, errstr_size, "sentiment model weights truncated");
                goto fail;
            }
        }
        m->rnn = m->nets[0];
        if (p->kind == SENT_LSTMNB) m->nb_scale = rd_f32(&r);
        if (p->kind == SENT_ENSEMBLE || p->kind == SENT_LSTMNB) {
            /* The rest is the NB-LR, a whole model file. */
            if (!(m->bow = sent_load_mem(r.d + r.pos, r.len - r.pos, errstr, errstr_size)))
                goto fail;
            if (sent_params(m->bow)->kind != SENT_NBLR) {
                snprintf(errstr, errstr_size, "ensemble's second model is not NB-LR");
                goto fail;
            }
            r.pos = r.len;
        }
    }
    if (r.bad) {
        snprintf(errstr, errstr_size, "sentiment model truncated");
        goto fail;
    }
    if (p->kind == SENT_LSTMNB && !isfinite(m->nb_scale)) {
        snprintf(errstr, errstr_size, "sentiment model: a weight is not finite");
        goto fail;
    }
    if (r.pos != r.len) {
        snprintf(errstr, errstr_size, "sentiment model has %zu trailing bytes", r.len - r.pos);
        goto fail;
    }
    int finite = (!m->w || floats_finite(m->w, m->vocab->n)) && isfinite(m->b);
    for (int k = 0; k < m->n_nets && finite; k++)
        finite = floats_finite(m->nets[k]->params, m->nets[k]->n_params);
    if (!finite) {
        snprintf(errstr, errstr_size, "sentiment model: a weight is not finite");
        goto fail;
    }
    if (alloc_buffers(m) < 0) goto oom;
    return m;
oom:
    snprintf(errstr, errstr_size, "out of memory");
fail:
    sent_destroy(m);
    return NULL;
}

void *sent_read_file(const char *path, size_t *len, char *errstr, size_t errstr_size) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) break;
        unsigned char *nb = realloc(buf, cap * 2);
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    int err = ferror(f);
    fclose(f);
    if (!buf || err) {
        snprintf(errstr, errstr_size, "%s: %s", path, buf ? "read error" : "out of memory");
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

sent_model_t *sent_load(const char *path, char *errstr, size_t errstr_size) {
    size_t len;
    void *d = sent_read_file(path, &len, errstr, errstr_size);
    if (!d) return NULL;
    char e[400];
    sent_model_t *m = sent_load_mem(d, len, e, sizeof e);
    if (!m) snprintf(errstr, errstr_size, "%s: %s", path, e);
    free(d);
    return m;
}
