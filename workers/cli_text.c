/* cli_text.c: `reel train sentiment`, `reel eval sentiment`,
 * `reel train embeddings` and `reel similar`: the offline side of the
 * sentiment worker (kernels/text). */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/text/lstm.h"
#include "kernels/text/sentiment.h"
#include "kernels/text/word2vec.h"
#include "pipeline/models.h"
#include "workers/workers.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- labelled data ---- */

typedef struct dataset {
    char **texts; /* owned lines */
    sent_example_t *ex;
    size_t n, cap;
} dataset_t;

static void dataset_free(dataset_t *d) {
    for (size_t i = 0; i < d->n; i++) free(d->texts[i]);
    free(d->texts);
    free(d->ex);
    memset(d, 0, sizeof *d);
}

static int dataset_push(dataset_t *d, const char *text, size_t len, int label) {
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 1024;
        char **t = realloc(d->texts, cap * sizeof *t);
        if (!t) return -1;
        d->texts = t;
        sent_example_t *e = realloc(d->ex, cap * sizeof *e);
        if (!e) return -1;
        d->ex = e;
        d->cap = cap;
    }
    char *c = malloc(len + 1);
    if (!c) return -1;
    memcpy(c, text, len);
    c[len] = 0;
    d->texts[d->n] = c;
    d->ex[d->n] = (sent_example_t){c, len, label};
    d->n++;
    return 0;
}

/* label < 0: "label<TAB>text" lines (0/1, negative/positive, neg/pos). */
static int dataset_read(dataset_t *d, const char *path, int label) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long lineno = 0;
    int rc = 0;
    while ((n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
        const char *text = line;
        int lab = label;
        if (label < 0) {
            char *tab = memchr(line, '\t', (size_t)n);
            if (!tab) {
                fprintf(stderr, "%s:%ld: no TAB between label and text\n", path, lineno);
                rc = -1;
                break;
            }
            *tab = 0;
            if (!strcmp(line, "1") || !strcmp(line, "positive") || !strcmp(line, "pos"))
                lab = 1;
            else if (!strcmp(line, "0") || !strcmp(line, "negative") || !strcmp(line, "neg"))
                lab = 0;
            else {
                fprintf(stderr, "%s:%ld: label %s is not 0/1/negative/positive\n", path, lineno,
                        line);
                rc = -1;
                break;
            }
            text = tab + 1;
            n -= (ssize_t)(text - line);
        }
        if (n == 0) continue;
        if (dataset_push(d, text, (size_t)n, lab) < 0) {
            fprintf(stderr, "out of memory\n");
            rc = -1;
            break;
        }
    }
    free(line);
    fclose(f);
    return rc;
}

/* ---- options shared by train and eval ---- */

typedef struct text_opts {
    const char *pos, *neg, *data, *model, *out, *embeddings;
    int folds, max_folds, threads, quiet;
    sent_params_t p;
    int set_epochs, set_min_count, set_pool, set_nets, set_average, set_lr_decay, set_snapshots,
        set_nb_init, set_bidir, bad_pool;
} text_opts_t;

static int parse_common(text_opts_t *o, int argc, char **argv, int *i) {
    const char *a = argv[*i];
#define NEXT() (*i + 1 < argc ? argv[++*i] : NULL)
    const char *v;
    if (!strcmp(a, "--pos") && (v = NEXT())) return o->pos = v, 1;
    if (!strcmp(a, "--neg") && (v = NEXT())) return o->neg = v, 1;
    if (!strcmp(a, "--data") && (v = NEXT())) return o->data = v, 1;
    if (!strcmp(a, "--model") && (v = NEXT())) return o->model = v, 1;
    if (!strcmp(a, "--out") && (v = NEXT())) return o->out = v, 1;
    if (!strcmp(a, "--embeddings") && (v = NEXT())) return o->embeddings = v, 1;
    if (!strcmp(a, "--folds") && (v = NEXT())) return o->folds = atoi(v), 1;
    if (!strcmp(a, "--threads") && (v = NEXT())) return o->threads = atoi(v), 1;
    if (!strcmp(a, "--max-folds") && (v = NEXT())) return o->max_folds = atoi(v), 1;
    if (!strcmp(a, "--epochs") && (v = NEXT())) return o->p.epochs = atoi(v), o->set_epochs = 1, 1;
    if (!strcmp(a, "--dim") && (v = NEXT())) return o->p.dim = atoi(v), 1;
    if (!strcmp(a, "--hidden") && (v = NEXT())) return o->p.hidden = atoi(v), 1;
    if (!strcmp(a, "--batch") && (v = NEXT())) return o->p.batch = atoi(v), 1;
    if (!strcmp(a, "--min-count") && (v = NEXT()))
        return o->p.min_count = atoi(v), o->set_min_count = 1, 1;
    if (!strcmp(a, "--max-tokens") && (v = NEXT())) return o->p.max_tokens = atoi(v), 1;
    if (!strcmp(a, "--lr") && (v = NEXT())) return o->p.lr = (float)atof(v), 1;
    if (!strcmp(a, "--dropout") && (v = NEXT())) return o->p.dropout = (float)atof(v), 1;
    if (!strcmp(a, "--dropout-in") && (v = NEXT())) return o->p.dropout_in = (float)atof(v), 1;
    if (!strcmp(a, "--bidir") && (v = NEXT())) return o->p.bidir = atoi(v), o->set_bidir = 1, 1;
    if (!strcmp(a, "--dropout-word") && (v = NEXT())) return o->p.dropout_word = (float)atof(v), 1;
    if (!strcmp(a, "--l2") && (v = NEXT())) return o->p.l2 = (float)atof(v), 1;
    if (!strcmp(a, "--seed") && (v = NEXT())) return o->p.seed = strtoull(v, NULL, 10), 1;
    if (!strcmp(a, "--max-vocab") && (v = NEXT())) return o->p.max_vocab = atoi(v), 1;
    if (!strcmp(a, "--freeze")) return o->p.freeze = 1, 1;
    if (!strcmp(a, "--lazy-adam")) return o->p.lazy = 1, 1;
    if (!strcmp(a, "--quiet")) return o->quiet = 1, 1;
    if (!strcmp(a, "--early-stop") && (v = NEXT())) return o->p.early_stop = (float)atof(v), 1;
    if (!strcmp(a, "--early-refit") && (v = NEXT())) return o->p.early_refit = atoi(v), 1;
    if (!strcmp(a, "--pool") && (v = NEXT())) {
        o->set_pool = 1;
        if (!strcmp(v, "max")) return o->p.pool = RNN_POOL_MAX, 1;
        if (!strcmp(v, "meanmax")) return o->p.pool = RNN_POOL_MEANMAX, 1;
        return o->bad_pool = 1, 1;
    }
    if (!strcmp(a, "--nets") && (v = NEXT())) return o->p.nets = atoi(v), o->set_nets = 1, 1;
    if (!strcmp(a, "--average") && (v = NEXT()))
        return o->p.average = atoi(v), o->set_average = 1, 1;
    if (!strcmp(a, "--nb-init") && (v = NEXT()))
        return o->p.nb_init = atoi(v), o->set_nb_init = 1, 1;
    if (!strcmp(a, "--snapshots") && (v = NEXT()))
        return o->p.snapshots = atoi(v), o->set_snapshots = 1, 1;
    if (!strcmp(a, "--lr-decay") && (v = NEXT()))
        return o->p.lr_decay = (float)atof(v), o->set_lr_decay = 1, 1;
#undef NEXT
    return 0;
}

/* Defaults of kind, then what the command line changed (o->p started as
 * *dflt). */
static sent_params_t kind_params(int kind, const text_opts_t *o, const sent_params_t *dflt) {
    sent_params_t p = sent_defaults(kind), given = o->p;
#define KEEP(f)                                                                                    \
    if (memcmp(&given.f, &dflt->f, sizeof given.f)) p.f = given.f
    KEEP(dim);
    KEEP(hidden);
    KEEP(batch);
    KEEP(max_tokens);
    KEEP(lr);
    KEEP(dropout);
    KEEP(dropout_in);
    KEEP(dropout_word);
    KEEP(l2);
    KEEP(seed);
    KEEP(max_vocab);
    KEEP(freeze);
    KEEP(lazy);
    KEEP(early_stop);
    KEEP(early_refit);
#undef KEEP
    if (o->set_epochs) p.epochs = given.epochs;
    if (o->set_min_count) p.min_count = given.min_count;
    if (o->set_pool) p.pool = given.pool;
    if (o->set_nets) p.nets = given.nets;
    if (o->set_average) p.average = given.average;
    if (o->set_lr_decay) p.lr_decay = given.lr_decay;
    if (o->set_snapshots) p.snapshots = given.snapshots;
    if (o->set_nb_init) p.nb_init = given.nb_init;
    if (o->set_bidir) p.bidir = given.bidir;
    /* Early stopping keeps the weights of one epoch, which averaging over
     * epochs would blur: the lstm's default averaging yields to it. */
    if (p.early_stop > 0 && !o->set_average) p.average = 0;
    return p;
}

static int load_data(const text_opts_t *o, dataset_t *d, const char *cmd) {
    if (o->data) return dataset_read(d, o->data, -1);
    if (!o->pos || !o->neg) {
        fprintf(stderr, "reel %s: give --pos FILE --neg FILE or --data FILE\n", cmd);
        return -1;
    }
    if (dataset_read(d, o->pos, 1) < 0 || dataset_read(d, o->neg, 0) < 0) return -1;
    return 0;
}

static void print_epoch(int epoch, float loss, double seconds, sent_model_t *m, void *arg) {
    (void)m;
    if (*(int *)arg) return;
    fprintf(stderr, "epoch %d: loss %.4f (%.1f s)\n", epoch, loss, seconds);
}

static const char text_usage[] =
    "usage: reel train sentiment (--pos FILE --neg FILE | --data FILE)\n"
    "                            [--model nb|bow|lstm|gru|bilstm|lstm+bow|lstm-nb]\n"
    "                            [--embeddings FILE] --out FILE [options]\n"
    "       reel eval sentiment (--pos FILE --neg FILE | --data FILE) --model FILE|KIND\n"
    "                           [--folds K [--max-folds M]] [--threads N] [--embeddings FILE]\n"
    "                           [options]\n"
    "options: --epochs N --dim N --hidden N --batch N --lr X --dropout X --dropout-in X\n"
    "         --min-count N --max-tokens N --max-vocab N --freeze --lazy-adam --l2 X --seed N "
    "--quiet\n"
    "         RNNs: --pool max|meanmax --nets N --snapshots N --average EPOCHS --lr-decay X\n"
    "         --nb-init 0|1 --dropout-word X --bidir 0|1\n"
    "         lstm/gru: --early-stop F (hold out F of the training data, keep the\n"
    "         best of --epochs epochs on it; --early-refit 1: then train on all of it\n"
    "         for that many epochs)\n"
    "--data lines are label<TAB>text, label 0/1 or negative/positive. bow is\n"
    "logistic regression on naive-Bayes-scaled uni+bigrams, nb naive Bayes.\n"
    "With --folds, eval trains a model per fold (the kind and settings of the\n"
    "--model file, or the named kind) and tests it on the fold.\n";

int cmd_train_sentiment(int argc, char **argv) {
    text_opts_t o = {0};
    const char *kind = "bow";
    sent_params_t dflt = sent_defaults(SENT_NBLR);
    o.p = dflt;
    for (int i = 1; i < argc; i++) {
        if (parse_common(&o, argc, argv, &i)) continue;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(text_usage, stdout);
            return 0;
        }
        fprintf(stderr, "reel train sentiment: unknown option %s\n%s", argv[i], text_usage);
        return 2;
    }
    if (o.model) kind = o.model;
    int k = sent_kind_parse(kind);
    if (k < 0 || !o.out) {
        fprintf(stderr, "reel train sentiment: %s\n%s",
                k < 0 ? "unknown --model kind" : "--out missing", text_usage);
        return 2;
    }
    if (o.bad_pool) {
        fprintf(stderr, "reel train sentiment: --pool max or meanmax\n");
        return 2;
    }
    sent_params_t p = kind_params(k, &o, &dflt);
    dataset_t d = {0};
    char err[512];
    if (load_data(&o, &d, "train sentiment") < 0) {
        dataset_free(&d);
        return 1;
    }
    w2v_t *emb = NULL;
    if (o.embeddings && !(emb = w2v_load(o.embeddings, err, sizeof err))) {
        fprintf(stderr, "reel train sentiment: %s\n", err);
        dataset_free(&d);
        return 1;
    }
    double t0 = now_s();
    sent_model_t *m = sent_train(&p, d.ex, d.n, emb, print_epoch, &o.quiet, err, sizeof err);
    int rc = 0, es_epoch = 0;
    float es_acc = 0;
    if (m && (sent_early_stop(m, &es_epoch, &es_acc, NULL, 0), es_epoch > 0))
        fprintf(stderr, "early stopping: kept epoch %d of %d (held-out accuracy %.4f)\n", es_epoch,
                p.epochs, (double)es_acc);
    if (!m || sent_save(m, o.out, err, sizeof err) < 0) {
        fprintf(stderr, "reel train sentiment: %s\n", err);
        rc = 1;
    } else {
        size_t correct = 0;
        for (size_t i = 0; i < d.n; i++)
            correct += (sent_predict(m, d.ex[i].text, d.ex[i].len, NULL) >= 0.5f) == d.ex[i].label;
        printf("{\"model\":\"%s\",\"out\":\"%s\",\"examples\":%zu,\"train_accuracy\":%.4f,"
               "\"seconds\":%.2f}\n",
               sent_kind_name(k), o.out, d.n, (double)correct / (double)d.n, now_s() - t0);
    }
    sent_destroy(m);
    w2v_destroy(emb);
    dataset_free(&d);
    return rc;
}

/* ---- eval ---- */

typedef struct fold_job {
    const dataset_t *d;
    const size_t *perm;
    int fold, folds;
    const sent_params_t *p;
    const w2v_t *emb;
    int quiet;
    long tp, fp, tn, fn;
    char err[256];
    int failed;
} fold_job_t;

/* Per epoch: the loss and the held-out fold's accuracy so far. */
static void fold_epoch(int epoch, float loss, double seconds, sent_model_t *m, void *arg) {
    fold_job_t *j = arg;
    if (j->quiet) return;
    size_t n = j->d->n, lo = n * (size_t)j->fold / (size_t)j->folds,
           hi = n * (size_t)(j->fold + 1) / (size_t)j->folds, right = 0;
    for (size_t i = lo; i < hi; i++) {
        const sent_example_t *e = &j->d->ex[j->perm[i]];
        right += (sent_predict(m, e->text, e->len, NULL) >= 0.5f) == e->label;
    }
    fprintf(stderr, "fold %d epoch %d: loss %.4f, held-out accuracy %.4f (%.1f s)\n", j->fold + 1,
            epoch, loss, (double)right / (double)(hi - lo), seconds);
}

static void fold_run(fold_job_t *j) {
    size_t n = j->d->n, lo = n * (size_t)j->fold / (size_t)j->folds,
           hi = n * (size_t)(j->fold + 1) / (size_t)j->folds;
    sent_example_t *train = malloc(n * sizeof *train);
    if (!train) {
        snprintf(j->err, sizeof j->err, "out of memory");
        j->failed = 1;
        return;
    }
    size_t nt = 0;
    for (size_t i = 0; i < n; i++)
        if (i < lo || i >= hi) train[nt++] = j->d->ex[j->perm[i]];
    sent_model_t *m = sent_train(j->p, train, nt, j->emb, fold_epoch, j, j->err, sizeof j->err);
    free(train);
    if (!m) {
        j->failed = 1;
        return;
    }
    int es_epoch = 0;
    float es_acc = 0;
    sent_early_stop(m, &es_epoch, &es_acc, NULL, 0);
    if (es_epoch > 0)
        fprintf(stderr, "fold %d: early stopping kept epoch %d of %d (held-out accuracy %.4f)\n",
                j->fold + 1, es_epoch, j->p->epochs, (double)es_acc);
    for (size_t i = lo; i < hi; i++) {
        const sent_example_t *e = &j->d->ex[j->perm[i]];
        int pred = sent_predict(m, e->text, e->len, NULL) >= 0.5f;
        if (pred && e->label)
            j->tp++;
        else if (pred)
            j->fp++;
        else if (e->label)
            j->fn++;
        else
            j->tn++;
    }
    sent_destroy(m);
    if (!j->quiet)
        fprintf(stderr, "fold %d: accuracy %.4f\n", j->fold + 1,
                (double)(j->tp + j->tn) / (double)(hi - lo));
}

typedef struct fold_pool {
    fold_job_t *jobs;
    int n;
    int next;
    pthread_mutex_t lock;
} fold_pool_t;

static void *fold_thread(void *arg) {
    fold_pool_t *pool = arg;
    for (;;) {
        pthread_mutex_lock(&pool->lock);
        int k = pool->next++;
        pthread_mutex_unlock(&pool->lock);
        if (k >= pool->n) return NULL;
        fold_run(&pool->jobs[k]);
    }
}

static void print_report(const char *kind, int folds, size_t n, long tp, long fp, long tn, long fn,
                         const double *fold_acc, int nf, double seconds) {
    double acc = (double)(tp + tn) / (double)(n ? n : 1);
    double pp = tp + fp ? (double)tp / (double)(tp + fp) : 0,
           pr = tp + fn ? (double)tp / (double)(tp + fn) : 0;
    double np = tn + fn ? (double)tn / (double)(tn + fn) : 0,
           nr = tn + fp ? (double)tn / (double)(tn + fp) : 0;
    double pf = pp + pr > 0 ? 2 * pp * pr / (pp + pr) : 0,
           nfs = np + nr > 0 ? 2 * np * nr / (np + nr) : 0;
    double mean = 0, sd = 0;
    for (int i = 0; i < nf; i++) mean += fold_acc[i] / nf;
    for (int i = 0; i < nf; i++)
        sd += (fold_acc[i] - mean) * (fold_acc[i] - mean) / (nf > 1 ? nf - 1 : 1);
    printf("{\"model\":\"%s\",\"folds\":%d,\"examples\":%zu,\"accuracy\":%.4f,", kind, folds, n,
           acc);
    if (nf > 1) printf("\"accuracy_std\":%.4f,", sqrt(sd));
    printf(
        "\"f1\":%.4f,\"negative\":{\"precision\":%.4f,\"recall\":%.4f,\"f1\":%.4f,\"support\":%ld},"
        "\"positive\":{\"precision\":%.4f,\"recall\":%.4f,\"f1\":%.4f,\"support\":%ld},"
        "\"seconds\":%.3f}\n",
        (pf + nfs) / 2, np, nr, nfs, tn + fp, pp, pr, pf, tp + fn, seconds);
}

int cmd_eval_sentiment(int argc, char **argv) {
    text_opts_t o = {0};
    sent_params_t dflt = sent_defaults(SENT_NBLR);
    o.p = dflt;
    o.threads = 1;
    for (int i = 1; i < argc; i++) {
        if (parse_common(&o, argc, argv, &i)) continue;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(text_usage, stdout);
            return 0;
        }
        fprintf(stderr, "reel eval sentiment: unknown option %s\n%s", argv[i], text_usage);
        return 2;
    }
    if (!o.model || o.bad_pool) {
        fprintf(stderr, "reel eval sentiment: %s\n%s",
                o.bad_pool ? "--pool max or meanmax" : "--model FILE|KIND missing", text_usage);
        return 2;
    }
    char err[512];
    dataset_t d = {0};
    sent_model_t *m = NULL;
    w2v_t *emb = NULL;
    int rc = 1;
    double t0 = now_s();
    int k = sent_kind_parse(o.model);
    if (k < 0 && !(m = sent_load(o.model, err, sizeof err))) {
        fprintf(stderr, "reel eval sentiment: %s\n", err);
        return 1;
    }
    if (load_data(&o, &d, "eval sentiment") < 0) goto done;
    if (o.folds <= 1) {
        if (!m) {
            fprintf(stderr, "reel eval sentiment: without --folds, --model must be a model file\n");
            goto done;
        }
        long tp = 0, fp = 0, tn = 0, fn = 0;
        for (size_t i = 0; i < d.n; i++) {
            int pred = sent_predict(m, d.ex[i].text, d.ex[i].len, NULL) >= 0.5f;
            if (pred && d.ex[i].label)
                tp++;
            else if (pred)
                fp++;
            else if (d.ex[i].label)
                fn++;
            else
                tn++;
        }
        print_report(sent_kind_name(sent_params(m)->kind), 1, d.n, tp, fp, tn, fn, NULL, 0,
                     now_s() - t0);
        rc = 0;
        goto done;
    }
    /* Cross-validation: the recipe of the model file, or the kind's defaults
     * with the command line's changes. */
    sent_params_t p;
    if (m) {
        p = *sent_params(m);
    } else {
        p = kind_params(k, &o, &dflt);
    }
    if (o.embeddings && !(emb = w2v_load(o.embeddings, err, sizeof err))) {
        fprintf(stderr, "reel eval sentiment: %s\n", err);
        goto done;
    }
    size_t *perm = malloc(d.n * sizeof *perm);
    fold_job_t *jobs = calloc((size_t)o.folds, sizeof *jobs);
    double *acc = calloc((size_t)o.folds, sizeof *acc);
    if (!perm || !jobs || !acc) {
        free(perm), free(jobs), free(acc);
        goto done;
    }
    uint64_t s = p.seed * 0x9E3779B97F4A7C15ull + 12345;
    for (size_t i = 0; i < d.n; i++) perm[i] = i;
    for (size_t i = d.n; i > 1; i--) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        size_t j = s % i, t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
    for (int f = 0; f < o.folds; f++)
        jobs[f] = (fold_job_t){.d = &d,
                               .perm = perm,
                               .fold = f,
                               .folds = o.folds,
                               .p = &p,
                               .emb = emb,
                               .quiet = o.quiet};
    /* --max-folds runs only the first folds (quick experiments). */
    int run_folds = o.max_folds > 0 && o.max_folds < o.folds ? o.max_folds : o.folds;
    fold_pool_t pool = {jobs, run_folds, 0, PTHREAD_MUTEX_INITIALIZER};
    int nth = o.threads < 1 ? 1 : o.threads > o.folds ? o.folds : o.threads;
    pthread_t th[64];
    if (nth > 64) nth = 64;
    int started = 0;
    for (int t = 1; t < nth; t++)
        if (pthread_create(&th[started], NULL, fold_thread, &pool) == 0) started++;
    fold_thread(&pool);
    for (int t = 0; t < started; t++) pthread_join(th[t], NULL);
    long tp = 0, fp = 0, tn = 0, fn = 0;
    int failed = 0;
    for (int f = 0; f < run_folds; f++) {
        if (jobs[f].failed) {
            fprintf(stderr, "reel eval sentiment: fold %d: %s\n", f + 1, jobs[f].err);
            failed = 1;
        }
        tp += jobs[f].tp, fp += jobs[f].fp, tn += jobs[f].tn, fn += jobs[f].fn;
        long nfold = jobs[f].tp + jobs[f].fp + jobs[f].tn + jobs[f].fn;
        acc[f] = nfold ? (double)(jobs[f].tp + jobs[f].tn) / (double)nfold : 0;
    }
    if (!failed) {
        print_report(sent_kind_name(p.kind), o.folds, (size_t)(tp + fp + tn + fn), tp, fp, tn, fn,
                     acc, run_folds, now_s() - t0);
        rc = 0;
    }
    free(perm), free(jobs), free(acc);
done:
    sent_destroy(m);
    w2v_destroy(emb);
    dataset_free(&d);
    return rc;
}

/* ---- embeddings ---- */

static void print_w2v(uint64_t done, uint64_t total, double wps, float alpha, void *arg) {
    double *last = arg, t = now_s();
    if (t - *last < 1.0) return;
    *last = t;
    fprintf(stderr, "\rprogress %5.1f%%  %.0f words/s  alpha %.5f",
            100.0 * (double)done / (double)total, wps, alpha);
}

int cmd_train_embeddings(int argc, char **argv) {
    const char *corpora[64], *out = NULL, *format = "reel";
    int nc = 0, quiet = 0, max_vocab = 0;
    w2v_params_t p = w2v_defaults(W2V_SKIPGRAM);
    int arch_given = 0, alpha_given = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--corpus") && v) {
            while (i + 1 < argc && argv[i + 1][0] != '-' && nc < 64) corpora[nc++] = argv[++i];
            continue;
        }
        if (!strcmp(a, "--quiet")) {
            quiet = 1;
            continue;
        }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: reel train embeddings --corpus FILE... --out FILE [--arch sg|cbow]\n"
                   "       [--dim 100] [--window 5] [--negative 5] [--epochs 5] [--threads 1]\n"
                   "       [--min-count 5] [--max-vocab N] [--sample 1e-3] [--alpha A]\n"
                   "       [--format reel|word2vec] [--seed N] [--quiet]\n"
                   "Corpus lines are sentences (UTF-8 or Latin-1), tokenized as the\n"
                   "sentiment worker does. The reel format keeps the output vectors so the\n"
                   "worker can keep training; word2vec is the original binary format.\n");
            return 0;
        }
        if (!v) {
            fprintf(stderr, "reel train embeddings: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--out"))
            out = v;
        else if (!strcmp(a, "--arch")) {
            if (strcmp(v, "sg") && strcmp(v, "cbow")) {
                fprintf(stderr, "reel train embeddings: --arch sg or cbow\n");
                return 2;
            }
            p.arch = strcmp(v, "cbow") ? W2V_SKIPGRAM : W2V_CBOW;
            arch_given = 1;
        } else if (!strcmp(a, "--dim"))
            p.dim = atoi(v);
        else if (!strcmp(a, "--window"))
            p.window = atoi(v);
        else if (!strcmp(a, "--negative"))
            p.negative = atoi(v);
        else if (!strcmp(a, "--epochs"))
            p.epochs = atoi(v);
        else if (!strcmp(a, "--threads"))
            p.threads = atoi(v);
        else if (!strcmp(a, "--min-count"))
            p.min_count = atoi(v);
        else if (!strcmp(a, "--max-vocab"))
            max_vocab = atoi(v);
        else if (!strcmp(a, "--sample"))
            p.sample = (float)atof(v);
        else if (!strcmp(a, "--alpha"))
            p.alpha = (float)atof(v), alpha_given = 1;
        else if (!strcmp(a, "--seed"))
            p.seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--format"))
            format = v;
        else {
            fprintf(stderr, "reel train embeddings: unknown option %s\n", a);
            return 2;
        }
    }
    if (arch_given && !alpha_given) p.alpha = w2v_defaults(p.arch).alpha;
    if (!nc || !out || (strcmp(format, "reel") && strcmp(format, "word2vec"))) {
        fprintf(stderr, "reel train embeddings: --corpus FILE... and --out FILE needed; --format "
                        "reel|word2vec\n");
        return 2;
    }
    /* Two passes: count words, then ids of the kept ones. */
    enum { MAXT = 10000 };
    char *toks = malloc((size_t)MAXT * TOK_STRIDE);
    vocab_t *all = vocab_new(), *vocab = NULL;
    w2v_corpus_t corpus = {0};
    w2v_t *m = NULL;
    char *line = NULL, err[512];
    size_t cap = 0;
    int rc = 1;
    double t0 = now_s();
    uint64_t raw_words = 0; /* every token, as gensim counts words */
    if (!toks || !all) goto done;
    for (int pass = 0; pass < 2; pass++) {
        for (int c = 0; c < nc; c++) {
            FILE *f = fopen(corpora[c], "rb");
            if (!f) {
                perror(corpora[c]);
                goto done;
            }
            ssize_t n;
            while ((n = getline(&line, &cap, f)) >= 0) {
                size_t nt = tok_split(line, (size_t)n, toks, MAXT, NULL);
                if (pass == 0) {
                    for (size_t k = 0; k < nt; k++)
                        if (vocab_add(all, toks + k * TOK_STRIDE, 1) < 0) goto oom;
                } else if (nt && (raw_words += nt, w2v_corpus_add(&corpus, vocab, toks, nt) < 0)) {
                    fclose(f);
                    goto oom;
                }
            }
            fclose(f);
        }
        if (pass == 0 && !(vocab = vocab_prune(all, (uint64_t)p.min_count, (uint32_t)max_vocab, 0)))
            goto oom;
    }
    if (!quiet)
        fprintf(stderr, "corpus: %llu words, vocabulary %u (min count %d), read in %.1f s\n",
                (unsigned long long)corpus.words, vocab->n, p.min_count, now_s() - t0);
    double last = 0, wps = 0;
    t0 = now_s();
    m = w2v_train(&p, vocab, &corpus, quiet ? NULL : print_w2v, &last, &wps, err, sizeof err);
    if (!m) {
        fprintf(stderr, "reel train embeddings: %s\n", err);
        goto done;
    }
    double secs = now_s() - t0;
    if (!quiet) fprintf(stderr, "\n");
    if (w2v_save(m, out, !strcmp(format, "word2vec"), 1, err, sizeof err) < 0) {
        fprintf(stderr, "reel train embeddings: %s\n", err);
        goto done;
    }
    /* words_per_s counts every corpus word, dropped rare ones included, as
     * gensim and word2vec report it; trained_words_per_s only the kept. */
    printf("{\"arch\":\"%s\",\"dim\":%d,\"threads\":%d,\"epochs\":%d,\"vocab\":%u,\"words\":%llu,"
           "\"seconds\":%.2f,\"words_per_s\":%.0f,\"trained_words_per_s\":%.0f,\"out\":\"%s\"}\n",
           p.arch == W2V_CBOW ? "cbow" : "sg", p.dim, p.threads, p.epochs, vocab->n,
           (unsigned long long)raw_words, secs, (double)raw_words * p.epochs / secs, wps, out);
    rc = 0;
    goto done;
oom:
    fprintf(stderr, "reel train embeddings: out of memory\n");
done:
    free(line);
    free(toks);
    vocab_destroy(all);
    vocab_destroy(vocab);
    w2v_corpus_free(&corpus);
    w2v_destroy(m);
    return rc;
}

int cmd_similar(int argc, char **argv) {
    const char *word = NULL, *path = NULL, *overrides[64];
    cli_opts_t opts = {NULL, overrides, 0};
    int k = 10;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--embeddings") && i + 1 < argc)
            path = argv[++i];
        else if (!strcmp(argv[i], "--k") && i + 1 < argc)
            k = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-c") && i + 1 < argc)
            opts.config_file = argv[++i];
        else if (!strcmp(argv[i], "-X") && i + 1 < argc) {
            if (opts.n_overrides < 64) overrides[opts.n_overrides++] = argv[++i];
        } else if (argv[i][0] != '-' && !word)
            word = argv[i];
        else {
            fprintf(stderr,
                    "usage: reel similar WORD [--embeddings FILE] [--k 10] [-X redis.url=U]\n"
                    "Without --embeddings, the current \"embeddings\" model in Redis.\n");
            return 2;
        }
    }
    if (!word || k <= 0 || k > 1000) {
        fprintf(stderr, "usage: reel similar WORD [--embeddings FILE] [--k 10] [-X redis.url=U]\n");
        return 2;
    }
    char err[512];
    w2v_t *m = NULL;
    if (path) {
        m = w2v_load(path, err, sizeof err);
    } else {
        config_t *config = cli_config(&opts);
        if (!config) return 2;
        store_t *s =
            store_new(config_get(config, "redis.url", "redis://127.0.0.1:6379"), err, sizeof err);
        int64_t version = 0;
        void *data = NULL;
        size_t len = 0;
        if (s && models_poll(s, "embeddings", &version, &data, &len, err, sizeof err) == 1) {
            m = w2v_load_mem(data, len, err, sizeof err);
        } else if (s && version == 0) {
            snprintf(err, sizeof err, "no embeddings model in Redis (reel model push FILE)");
        }
        free(data);
        store_destroy(s);
        config_destroy(config);
    }
    if (!m) {
        fprintf(stderr, "reel similar: %s\n", err);
        return 1;
    }
    /* The query goes through the tokenizer, as the training text did. */
    char tok[TOK_STRIDE * 4];
    size_t nt = tok_split(word, strlen(word), tok, 4, NULL);
    int32_t ids[1000];
    float sims[1000];
    int n = nt == 1 ? w2v_nearest(m, tok, k, ids, sims) : -1;
    if (n < 0) {
        fprintf(stderr, "reel similar: %s is not in the vocabulary\n", word);
        w2v_destroy(m);
        return 1;
    }
    for (int i = 0; i < n; i++) printf("%s\t%.4f\n", m->vocab->words[ids[i]], sims[i]);
    w2v_destroy(m);
    return 0;
}
