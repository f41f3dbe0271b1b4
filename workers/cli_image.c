/* cli_image.c: `reel train image` and `reel eval image`: the CNN and SVMs
 * of kernels/vision on IDX files (MNIST, Fashion-MNIST) or a folder per
 * class. */
#include <cblas.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "kernels/vision/cnn.h"
#include "kernels/vision/image.h"
#include "kernels/vision/svm.h"
#include "workers/workers.h"

static const char *const fashion_labels[10] = {"t-shirt/top", "trouser",   "pullover", "dress",
                                               "coat",        "sandal",    "shirt",    "sneaker",
                                               "bag",         "ankle boot"};

typedef struct dataset {
    int n, c, h, w, k;
    float *x; /* [n][c*h*w] in [0, 1] */
    int *y;
    char **labels; /* k */
} dataset_t;

static void dataset_free(dataset_t *d) {
    free(d->x);
    free(d->y);
    if (d->labels)
        for (int i = 0; i < d->k; i++) free(d->labels[i]);
    free(d->labels);
    memset(d, 0, sizeof *d);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* CPU seconds of this process: on a shared machine a fairer clock than
 * the wall for single-threaded work. */
static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* ------------------------------------------------------------------ */
/* IDX files (plain or gzip'd, read through zlib either way)           */

static int read_be32(gzFile f, uint32_t *v) {
    unsigned char b[4];
    if (gzread(f, b, 4) != 4) return -1;
    *v = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    return 0;
}

static int idx_path(const char *dir, const char *prefix, const char *kind, char *out, size_t n) {
    const char *suffix[] = {"", ".gz"};
    for (int i = 0; i < 2; i++) {
        snprintf(out, n, "%s/%s-%s%s", dir, prefix, kind, suffix[i]);
        if (is_file(out)) return 0;
    }
    return -1;
}

static int load_idx(const char *dir, int test, int limit, dataset_t *d, char *err, size_t errn) {
    const char *prefix = test ? "t10k" : "train";
    char ip[4096], lp[4096];
    if (idx_path(dir, prefix, "images-idx3-ubyte", ip, sizeof ip) < 0 ||
        idx_path(dir, prefix, "labels-idx1-ubyte", lp, sizeof lp) < 0) {
        snprintf(err, errn, "%s: no %s-images-idx3-ubyte[.gz] / %s-labels-idx1-ubyte[.gz]", dir,
                 prefix, prefix);
        return -1;
    }
    gzFile fi = gzopen(ip, "rb"), fl = gzopen(lp, "rb");
    uint32_t mi, ni, rows, cols, ml, nl;
    unsigned char *buf = NULL;
    int rc = -1;
    if (!fi || !fl) {
        snprintf(err, errn, "%s: cannot open", !fi ? ip : lp);
        goto out;
    }
    if (read_be32(fi, &mi) || read_be32(fi, &ni) || read_be32(fi, &rows) || read_be32(fi, &cols) ||
        mi != 0x803 || rows == 0 || cols == 0 || rows > 1024 || cols > 1024) {
        snprintf(err, errn, "%s: not an IDX image file", ip);
        goto out;
    }
    if (read_be32(fl, &ml) || read_be32(fl, &nl) || ml != 0x801 || nl != ni) {
        snprintf(err, errn, "%s: not an IDX label file for %u images", lp, ni);
        goto out;
    }
    uint32_t n = ni;
    if (limit > 0 && (uint32_t)limit < n) n = (uint32_t)limit;
    size_t px = (size_t)rows * cols;
    d->n = (int)n, d->c = 1, d->h = (int)rows, d->w = (int)cols, d->k = 10;
    d->x = malloc((size_t)n * px * sizeof(float));
    d->y = malloc((size_t)n * sizeof(int));
    d->labels = calloc(10, sizeof(char *));
    buf = malloc(px > n ? px : n);
    if (!d->x || !d->y || !d->labels || !buf) {
        snprintf(err, errn, "out of memory");
        goto out;
    }
    int fashion = strstr(dir, "fashion") != NULL;
    for (int i = 0; i < 10; i++) {
        char num[4];
        snprintf(num, sizeof num, "%d", i);
        d->labels[i] = strdup(fashion ? fashion_labels[i] : num);
    }
    for (uint32_t i = 0; i < n; i++) {
        if (gzread(fi, buf, (unsigned)px) != (int)px) {
            snprintf(err, errn, "%s: truncated", ip);
            goto out;
        }
        for (size_t j = 0; j < px; j++) d->x[i * px + j] = buf[j] * (1.0f / 255.0f);
    }
    if (gzread(fl, buf, n) != (int)n) {
        snprintf(err, errn, "%s: truncated", lp);
        goto out;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (buf[i] > 9) {
            snprintf(err, errn, "%s: label %u out of range", lp, buf[i]);
            goto out;
        }
        d->y[i] = buf[i];
    }
    rc = 0;
out:
    free(buf);
    if (fi) gzclose(fi);
    if (fl) gzclose(fl);
    if (rc < 0) dataset_free(d);
    return rc;
}

/* ------------------------------------------------------------------ */
/* A folder per class                                                   */

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted entry names of dir (directories when dirs, else files); the
 * caller frees each and the array. Returns the count or -1. */
static int list_dir(const char *dir, int dirs, char ***out) {
    DIR *dp = opendir(dir);
    if (!dp) return -1;
    char **names = NULL;
    int n = 0, cap = 0;
    struct dirent *e;
    char path[4096];
    while ((e = readdir(dp))) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (dirs ? !is_dir(path) : !is_file(path)) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **g = realloc(names, (size_t)cap * sizeof *g);
            if (!g) break;
            names = g;
        }
        names[n++] = strdup(e->d_name);
    }
    closedir(dp);
    if (n) qsort(names, (size_t)n, sizeof *names, cmp_str);
    *out = names;
    return n;
}

/* split: 0 all, 1 train part (4 of 5 files), 2 test part (every 5th). */
static int load_folder(const char *root, int split, int c, int h, int w, int limit, dataset_t *d,
                       char *err, size_t errn) {
    char **classes = NULL;
    int k = list_dir(root, 1, &classes);
    if (k < 2) {
        snprintf(err, errn, "%s: needs a sub-folder per class (found %d)", root, k < 0 ? 0 : k);
        if (k > 0) free(classes[0]);
        free(classes);
        return -1;
    }
    d->c = c, d->h = h, d->w = w, d->k = k;
    d->labels = classes;
    size_t dim = (size_t)c * h * w, cap = 0;
    img_t im = {0};
    img_limits_t lim = img_default_limits();
    int rc = -1;
    for (int cls = 0; cls < k; cls++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/%s", root, classes[cls]);
        char **files = NULL;
        int nf = list_dir(dir, 0, &files);
        for (int i = 0; i < nf; i++) {
            int keep = split == 0 || (split == 1 && i % 5 != 4) || (split == 2 && i % 5 == 4);
            if (keep && (limit <= 0 || d->n < limit)) {
                char path[8192];
                snprintf(path, sizeof path, "%s/%s", dir, files[i]);
                FILE *f = fopen(path, "rb");
                unsigned char *buf = NULL;
                long sz = -1;
                if (f && fseek(f, 0, SEEK_END) == 0) sz = ftell(f);
                if (f && sz > 0 && (size_t)sz <= lim.max_bytes && fseek(f, 0, SEEK_SET) == 0 &&
                    (buf = malloc((size_t)sz)) && fread(buf, 1, (size_t)sz, f) == (size_t)sz) {
                    char why[256];
                    if (img_decode(buf, (size_t)sz, &lim, w, h, &im, why, sizeof why) == 0) {
                        if ((size_t)d->n == cap) {
                            cap = cap ? cap * 2 : 1024;
                            float *gx = realloc(d->x, cap * dim * sizeof(float));
                            if (gx) d->x = gx;
                            int *gy = realloc(d->y, cap * sizeof(int));
                            if (gy) d->y = gy;
                            if (!gx || !gy) {
                                snprintf(err, errn, "out of memory");
                                free(buf);
                                fclose(f);
                                for (int j = i; j < nf; j++) free(files[j]);
                                free(files);
                                goto out;
                            }
                        }
                        img_to_input(&im, c, h, w, d->x + (size_t)d->n * dim);
                        d->y[d->n++] = cls;
                    } else {
                        fprintf(stderr, "reel: skipping %s: %s\n", path, why);
                    }
                }
                free(buf);
                if (f) fclose(f);
            }
            free(files[i]);
        }
        free(files);
    }
    if (d->n == 0) {
        snprintf(err, errn, "%s: no decodable images", root);
        goto out;
    }
    rc = 0;
out:
    img_free(&im);
    if (rc < 0) dataset_free(d);
    return rc;
}

typedef struct data_opts {
    const char *src;
    int channels, height, width; /* folder data; 0: defaults (3, 32, 32) */
    int limit;
} data_opts_t;

/* Loads the train (test = 0) or test (test = 1) part of src. */
static int load_data(const data_opts_t *o, int test, int limit, dataset_t *d, char *err,
                     size_t errn) {
    memset(d, 0, sizeof *d);
    char p[4096];
    if (idx_path(o->src, "train", "images-idx3-ubyte", p, sizeof p) == 0 ||
        idx_path(o->src, "t10k", "images-idx3-ubyte", p, sizeof p) == 0)
        return load_idx(o->src, test, limit, d, err, errn);
    if (!is_dir(o->src)) {
        snprintf(err, errn, "%s: not a folder", o->src);
        return -1;
    }
    int c = o->channels ? o->channels : 3, h = o->height ? o->height : 32,
        w = o->width ? o->width : 32;
    snprintf(p, sizeof p, "%s/%s", o->src, test ? "test" : "train");
    if (is_dir(p)) return load_folder(p, 0, c, h, w, limit, d, err, errn);
    return load_folder(o->src, test ? 2 : 1, c, h, w, limit, d, err, errn);
}

/* ------------------------------------------------------------------ */
/* Reports                                                              */

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

/* Prints accuracy and per-class precision, recall and F1 for predictions
 * pred of d's labels as one JSON line; returns the accuracy. */
static double report(const char *model, const dataset_t *d, const int *pred, double seconds,
                     double cpu_seconds) {
    int k = d->k, ok = 0;
    int *tp = calloc((size_t)k, sizeof(int)), *np = calloc((size_t)k, sizeof(int)),
        *nt = calloc((size_t)k, sizeof(int));
    for (int i = 0; i < d->n; i++) {
        ok += pred[i] == d->y[i];
        nt[d->y[i]]++;
        if (pred[i] >= 0 && pred[i] < k) np[pred[i]]++;
        if (pred[i] == d->y[i]) tp[d->y[i]]++;
    }
    double acc = d->n ? (double)ok / d->n : 0.0;
    printf("{\"model\":");
    json_str(stdout, model);
    printf(",\"n\":%d,\"accuracy\":%.4f,\"images_per_s\":%.1f,\"images_per_cpu_s\":%.1f,"
           "\"per_class\":[",
           d->n, acc, seconds > 0 ? d->n / seconds : 0.0,
           cpu_seconds > 0 ? d->n / cpu_seconds : 0.0);
    for (int c = 0; c < k; c++) {
        double p = np[c] ? (double)tp[c] / np[c] : 0.0, r = nt[c] ? (double)tp[c] / nt[c] : 0.0;
        printf("%s{\"label\":", c ? "," : "");
        json_str(stdout, d->labels[c]);
        printf(",\"n\":%d,\"precision\":%.4f,\"recall\":%.4f,\"f1\":%.4f}", nt[c], p, r,
               p + r > 0 ? 2 * p * r / (p + r) : 0.0);
    }
    printf("]}\n");
    fflush(stdout);
    free(tp), free(np), free(nt);
    return acc;
}

static void progress_bar(int epoch, int epochs, size_t done, size_t total, double loss, double acc,
                         double rate) {
    static double last;
    double t = now_s();
    int tty = isatty(2);
    if (done < total && t - last < (tty ? 0.2 : 10.0)) return;
    last = t;
    char bar[31];
    int fill = (int)(30.0 * done / total);
    for (int i = 0; i < 30; i++) bar[i] = i < fill ? '=' : ' ';
    bar[30] = 0;
    fprintf(stderr, "%sepoch %d/%d [%s] %3d%% loss %.4f acc %.4f %.0f img/s%s", tty ? "\r" : "",
            epoch, epochs, bar, (int)(100.0 * done / total), loss, acc, rate, tty ? "" : "\n");
    if (tty && done == total) fputc('\n', stderr);
}

/* Predicted classes of every sample of d, batched. */
static int cnn_predict_all(cnn_t *net, const dataset_t *d, int *pred, int batch) {
    size_t dim = (size_t)d->c * d->h * d->w;
    char err[128];
    if (cnn_set_batch(net, batch, err, sizeof err) < 0) return -1;
    for (int i = 0; i < d->n; i += batch) {
        int nb = d->n - i < batch ? d->n - i : batch;
        const float *p = cnn_forward(net, d->x + (size_t)i * dim, nb, 0);
        for (int b = 0; b < nb; b++) {
            int best = 0;
            for (int c = 1; c < net->n_classes; c++)
                if (p[b * net->n_classes + c] > p[b * net->n_classes + best]) best = c;
            pred[i + b] = best;
        }
    }
    return 0;
}

/* The CNN's embeddings of every sample of d into a new [n][dim] array. */
static float *embed_all(cnn_t *net, const dataset_t *d, size_t *dim_out) {
    size_t in = (size_t)d->c * d->h * d->w, dim = 0;
    char err[128];
    if (cnn_set_batch(net, 256, err, sizeof err) < 0) return NULL;
    cnn_forward(net, d->x, 1, 0);
    cnn_embedding(net, &dim);
    float *e = dim ? malloc((size_t)d->n * dim * sizeof(float)) : NULL;
    if (!e) return NULL;
    for (int i = 0; i < d->n; i += 256) {
        int nb = d->n - i < 256 ? d->n - i : 256;
        cnn_forward(net, d->x + (size_t)i * in, nb, 0);
        memcpy(e + (size_t)i * dim, cnn_embedding(net, &dim), (size_t)nb * dim * sizeof(float));
    }
    /* L2-normalized, as the tag worker stores and classifies them */
    for (int i = 0; i < d->n; i++) {
        float *r = e + (size_t)i * dim;
        double ss = 0;
        for (size_t j = 0; j < dim; j++) ss += (double)r[j] * r[j];
        float inv = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
        for (size_t j = 0; j < dim; j++) r[j] *= inv;
    }
    *dim_out = dim;
    return e;
}

static char *slurp(const char *path, size_t *len, char *err, size_t errn) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errn, "%s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    long sz = -1;
    if (fseek(f, 0, SEEK_END) == 0) sz = ftell(f);
    if (sz >= 0 && sz < (1L << 30) && fseek(f, 0, SEEK_SET) == 0 &&
        (buf = malloc((size_t)sz + 1)) && fread(buf, 1, (size_t)sz, f) == (size_t)sz) {
        buf[sz] = 0;
        *len = (size_t)sz;
    } else {
        snprintf(err, errn, "%s: read failed", path);
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

/* Checks that the model's input fits the data. */
static int check_shape(int c, int h, int w, const dataset_t *d, char *err, size_t errn) {
    if (c == d->c && h == d->h && w == d->w) return 0;
    snprintf(err, errn, "the model takes %dx%dx%d inputs, the data is %dx%dx%d", c, h, w, d->c,
             d->h, d->w);
    return -1;
}

/* ------------------------------------------------------------------ */
/* Commands                                                             */

typedef struct image_opts {
    data_opts_t data;
    const char *arch, *out, *model, *embed, *optimizer;
    int epochs, batch, threads, test_limit;
    float lr, lr_decay, c, gamma;
    uint64_t seed;
} image_opts_t;

static void image_usage(FILE *f) {
    fprintf(f, "usage: reel train image --data SRC [--arch FILE] [--epochs N] --out FILE\n"
               "           [--model cnn|svm-linear|svm-rbf] [--embed CNN_FILE] [--limit N]\n"
               "           [--batch 64] [--lr 0.001] [--lr-decay 1] [--optimizer adam|sgd]\n"
               "           [--size WxH] [--channels 1|3] [--C C] [--gamma G] [--seed N]\n"
               "           [--threads 1] [--test-limit N]\n"
               "       reel eval image --data SRC --model FILE [--embed CNN_FILE] [--limit N]\n"
               "SRC: a folder with IDX files (train-images-idx3-ubyte[.gz], t10k-...), or a\n"
               "folder per class (SRC/train/<label>/ and SRC/test/<label>/, or SRC/<label>/\n"
               "with every 5th file held out for testing). train reads the training part and\n"
               "reports test accuracy per epoch; eval reads the test part.\n");
}

static int parse_opts(int argc, char **argv, image_opts_t *o) {
    memset(o, 0, sizeof *o);
    o->epochs = 10, o->batch = 64, o->threads = 1, o->lr = 1e-3f, o->lr_decay = 1.0f;
    o->c = 0.0f, o->seed = 1, o->optimizer = "adam";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            image_usage(stdout);
            exit(0);
        }
        if (!v) {
            fprintf(stderr, "reel: %s needs a value (or is unknown)\n", a);
            return -1;
        }
        i++;
        if (strcmp(a, "--data") == 0)
            o->data.src = v;
        else if (strcmp(a, "--arch") == 0)
            o->arch = v;
        else if (strcmp(a, "--out") == 0)
            o->out = v;
        else if (strcmp(a, "--model") == 0)
            o->model = v;
        else if (strcmp(a, "--embed") == 0)
            o->embed = v;
        else if (strcmp(a, "--optimizer") == 0)
            o->optimizer = v;
        else if (strcmp(a, "--epochs") == 0)
            o->epochs = atoi(v);
        else if (strcmp(a, "--batch") == 0)
            o->batch = atoi(v);
        else if (strcmp(a, "--threads") == 0)
            o->threads = atoi(v);
        else if (strcmp(a, "--limit") == 0)
            o->data.limit = atoi(v);
        else if (strcmp(a, "--test-limit") == 0)
            o->test_limit = atoi(v);
        else if (strcmp(a, "--channels") == 0)
            o->data.channels = atoi(v);
        else if (strcmp(a, "--lr") == 0)
            o->lr = strtof(v, NULL);
        else if (strcmp(a, "--lr-decay") == 0)
            o->lr_decay = strtof(v, NULL);
        else if (strcmp(a, "--C") == 0)
            o->c = strtof(v, NULL);
        else if (strcmp(a, "--gamma") == 0)
            o->gamma = strtof(v, NULL);
        else if (strcmp(a, "--seed") == 0)
            o->seed = strtoull(v, NULL, 10);
        else if (strcmp(a, "--size") == 0) {
            if (sscanf(v, "%dx%d", &o->data.width, &o->data.height) != 2) {
                if (sscanf(v, "%d", &o->data.width) != 1) return -1;
                o->data.height = o->data.width;
            }
        } else {
            fprintf(stderr, "reel: unknown option %s\n", a);
            return -1;
        }
    }
    if (!o->data.src) {
        fprintf(stderr, "reel: --data SRC is required\n");
        return -1;
    }
    if (o->epochs <= 0 || o->batch <= 0 || o->batch > 4096 || o->threads <= 0 ||
        (o->data.channels && o->data.channels != 1 && o->data.channels != 3) || o->data.width < 0 ||
        o->data.height < 0 || o->data.width > 1024 || o->data.height > 1024) {
        fprintf(stderr, "reel: bad option value\n");
        return -1;
    }
    openblas_set_num_threads(o->threads);
    return 0;
}

static int train_cnn(const image_opts_t *o, dataset_t *tr, dataset_t *te) {
    char err[512];
    size_t alen = 0;
    char *arch = o->arch ? slurp(o->arch, &alen, err, sizeof err) : strdup(cnn_seed_arch);
    if (!arch) {
        fprintf(stderr, "reel: %s\n", o->arch ? err : "out of memory");
        return 1;
    }
    cnn_t *net =
        cnn_new(arch, tr->c, tr->h, tr->w, tr->k, (const char *const *)tr->labels, err, sizeof err);
    free(arch);
    if (!net || cnn_set_batch(net, o->batch, err, sizeof err) < 0) {
        fprintf(stderr, "reel: %s\n", err);
        cnn_free(net);
        return 1;
    }
    cnn_init(net, o->seed);
    cnn_opt_t opt =
        strcmp(o->optimizer, "sgd") == 0 ? cnn_opt_sgd(o->lr, 0.9f) : cnn_opt_adam(o->lr);
    size_t dim = (size_t)tr->c * tr->h * tr->w;
    int *perm = malloc((size_t)tr->n * sizeof(int)), *yb = malloc((size_t)o->batch * sizeof(int));
    float *xb = malloc((size_t)o->batch * dim * sizeof(float));
    int *pred = te->n ? malloc((size_t)te->n * sizeof(int)) : NULL;
    if (!perm || !yb || !xb || (te->n && !pred)) {
        fprintf(stderr, "reel: out of memory\n");
        return 1;
    }
    for (int i = 0; i < tr->n; i++) perm[i] = i;
    uint64_t rng = o->seed * 0x9e3779b97f4a7c15ull + 1;
    fprintf(stderr, "reel: training %zu parameters on %d images %dx%dx%d, %d classes\n",
            net->n_params, tr->n, tr->c, tr->h, tr->w, tr->k);
    double total_train = 0;
    int rc = 0;
    for (int e = 1; e <= o->epochs; e++) {
        for (int i = tr->n - 1; i > 0; i--) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            int j = (int)(rng % (uint64_t)(i + 1)), t = perm[i];
            perm[i] = perm[j], perm[j] = t;
        }
        double t0 = now_s(), c0 = cpu_s(), loss_sum = 0;
        size_t seen = 0, correct = 0;
        for (int i = 0; i < tr->n; i += o->batch) {
            int nb = tr->n - i < o->batch ? tr->n - i : o->batch;
            for (int b = 0; b < nb; b++) {
                memcpy(xb + (size_t)b * dim, tr->x + (size_t)perm[i + b] * dim,
                       dim * sizeof(float));
                yb[b] = tr->y[perm[i + b]];
            }
            const float *p = cnn_forward(net, xb, nb, 1);
            for (int b = 0; b < nb; b++) {
                int best = 0;
                for (int c = 1; c < tr->k; c++)
                    if (p[b * tr->k + c] > p[b * tr->k + best]) best = c;
                correct += best == yb[b];
            }
            loss_sum += (double)cnn_backward(net, xb, yb, nb) * nb;
            if (cnn_step(net, &opt) < 0) {
                fprintf(stderr, "reel: out of memory\n");
                rc = 1;
                goto out;
            }
            seen += (size_t)nb;
            progress_bar(e, o->epochs, seen, (size_t)tr->n, loss_sum / seen, (double)correct / seen,
                         seen / (now_s() - t0));
        }
        double secs = now_s() - t0, cpu = cpu_s() - c0;
        total_train += secs;
        double test_acc = -1;
        if (te->n) {
            cnn_predict_all(net, te, pred, 256);
            int ok = 0;
            for (int i = 0; i < te->n; i++) ok += pred[i] == te->y[i];
            test_acc = (double)ok / te->n;
            cnn_set_batch(net, o->batch, err, sizeof err);
        }
        printf("{\"epoch\":%d,\"loss\":%.4f,\"train_accuracy\":%.4f,\"test_accuracy\":%.4f,"
               "\"seconds\":%.2f,\"cpu_seconds\":%.2f}\n",
               e, loss_sum / tr->n, (double)correct / tr->n, test_acc, secs, cpu);
        fflush(stdout);
        opt.lr *= o->lr_decay;
    }
    if (cnn_save(net, o->out, err, sizeof err) < 0) {
        fprintf(stderr, "reel: %s\n", err);
        rc = 1;
    } else {
        fprintf(stderr, "reel: wrote %s (%.1f s of training, %.2f s per epoch)\n", o->out,
                total_train, total_train / o->epochs);
    }
out:
    free(perm), free(yb), free(xb), free(pred);
    cnn_free(net);
    return rc;
}

static void svm_progress(int cls, int k, void *arg) {
    (void)arg;
    fprintf(stderr, "reel: svm class %d/%d done\n", cls + 1, k);
}

/* Features for an SVM: the CNN's embeddings when net, else the pixels. */
static float *features(cnn_t *net, const dataset_t *d, size_t *dim) {
    if (net) return embed_all(net, d, dim);
    *dim = (size_t)d->c * d->h * d->w;
    return d->x;
}

static int train_svm(const image_opts_t *o, dataset_t *tr, dataset_t *te, svm_kind_t kind) {
    char err[512];
    cnn_t *net = NULL;
    if (o->embed) {
        size_t len;
        char *buf = slurp(o->embed, &len, err, sizeof err);
        net = buf ? cnn_load_mem(buf, len, err, sizeof err) : NULL;
        free(buf);
        if (!net || check_shape(net->in_c, net->in_h, net->in_w, tr, err, sizeof err) < 0) {
            fprintf(stderr, "reel: --embed %s: %s\n", o->embed, err);
            cnn_free(net);
            return 1;
        }
    }
    size_t dim = 0;
    double t0 = now_s();
    float *x = features(net, tr, &dim);
    if (!x) {
        fprintf(stderr, "reel: out of memory\n");
        cnn_free(net);
        return 1;
    }
    svm_params_t p = svm_defaults(kind);
    /* defaults measured on Fashion-MNIST (docs/tag.md): embeddings are unit
     * vectors and fit a looser box */
    p.c = o->c > 0 ? o->c : net ? 10.0f : kind == SVM_RBF ? 5.0f : 1.0f;
    if (o->gamma > 0) p.gamma = o->gamma;
    p.seed = o->seed;
    svm_t *m = svm_train(kind, x, tr->y, tr->n, (int)dim, tr->k, (const char *const *)tr->labels,
                         &p, svm_progress, NULL, err, sizeof err);
    if (x != tr->x) free(x);
    int rc = 1;
    if (!m) {
        fprintf(stderr, "reel: %s\n", err);
        goto out;
    }
    double secs = now_s() - t0;
    m->features = net ? SVM_EMBEDDING : SVM_PIXELS;
    m->in_c = tr->c, m->in_h = tr->h, m->in_w = tr->w;
    fprintf(stderr, "reel: trained %s SVM on %d x %zu features in %.1f s (%d support vectors)\n",
            kind == SVM_LINEAR ? "linear" : "RBF", tr->n, dim, secs, m->n_sv);
    if (svm_save(m, o->out, err, sizeof err) < 0) {
        fprintf(stderr, "reel: %s\n", err);
        goto out;
    }
    if (te->n) {
        float *xt = features(net, te, &dim);
        int *pred = malloc((size_t)te->n * sizeof(int));
        float *probs = malloc((size_t)te->k * sizeof(float));
        if (xt && pred && probs) {
            double t1 = now_s(), c1 = cpu_s();
            for (int i = 0; i < te->n; i++) pred[i] = svm_predict(m, xt + (size_t)i * dim, probs);
            report(kind == SVM_LINEAR ? "svm-linear" : "svm-rbf", te, pred, now_s() - t1,
                   cpu_s() - c1);
        }
        if (xt != te->x) free(xt);
        free(pred);
        free(probs);
    }
    rc = 0;
out:
    svm_free(m);
    cnn_free(net);
    return rc;
}

int cmd_train_image(int argc, char **argv) {
    image_opts_t o;
    if (parse_opts(argc, argv, &o) < 0) {
        image_usage(stderr);
        return 2;
    }
    const char *model = o.model ? o.model : "cnn";
    svm_kind_t kind = SVM_LINEAR;
    if (strcmp(model, "svm-linear") == 0)
        kind = SVM_LINEAR;
    else if (strcmp(model, "svm-rbf") == 0)
        kind = SVM_RBF;
    else if (strcmp(model, "cnn") != 0) {
        fprintf(stderr, "reel train image: --model cnn|svm-linear|svm-rbf\n");
        return 2;
    }
    if (!o.out) {
        fprintf(stderr, "reel train image: --out FILE is required\n");
        return 2;
    }
    if (o.embed && strcmp(model, "cnn") != 0) {
        /* the embedding CNN fixes the input shape of folder data */
        char err[512];
        size_t len;
        char *buf = slurp(o.embed, &len, err, sizeof err);
        cnn_t *net = buf ? cnn_load_mem(buf, len, err, sizeof err) : NULL;
        free(buf);
        if (!net) {
            fprintf(stderr, "reel: --embed %s: %s\n", o.embed, err);
            return 1;
        }
        o.data.channels = net->in_c, o.data.height = net->in_h, o.data.width = net->in_w;
        cnn_free(net);
    }
    dataset_t tr, te;
    char err[512];
    double t0 = now_s();
    if (load_data(&o.data, 0, o.data.limit, &tr, err, sizeof err) < 0) {
        fprintf(stderr, "reel: %s\n", err);
        return 1;
    }
    if (load_data(&o.data, 1, o.test_limit, &te, err, sizeof err) < 0) {
        fprintf(stderr, "reel: no test data (%s)\n", err);
        memset(&te, 0, sizeof te);
    }
    fprintf(stderr, "reel: loaded %d training and %d test images in %.1f s\n", tr.n, te.n,
            now_s() - t0);
    int rc = strcmp(model, "cnn") == 0 ? train_cnn(&o, &tr, &te) : train_svm(&o, &tr, &te, kind);
    dataset_free(&tr);
    dataset_free(&te);
    return rc;
}

int cmd_eval_image(int argc, char **argv) {
    image_opts_t o;
    if (parse_opts(argc, argv, &o) < 0) {
        image_usage(stderr);
        return 2;
    }
    if (!o.model) {
        fprintf(stderr, "reel eval image: --model FILE is required\n");
        return 2;
    }
    char err[512];
    size_t len = 0;
    char *buf = slurp(o.model, &len, err, sizeof err);
    if (!buf) {
        fprintf(stderr, "reel: %s\n", err);
        return 1;
    }
    cnn_t *net = NULL, *embed = NULL;
    svm_t *svm = NULL;
    int rc = 1;
    dataset_t te = {0};
    if (len >= 4 && memcmp(buf, "RCNN", 4) == 0) {
        net = cnn_load_mem(buf, len, err, sizeof err);
    } else if (len >= 4 && memcmp(buf, "RSVM", 4) == 0) {
        svm = svm_load_mem(buf, len, err, sizeof err);
        if (svm && svm->features == SVM_EMBEDDING) {
            size_t el;
            char *eb = o.embed ? slurp(o.embed, &el, err, sizeof err) : NULL;
            if (!o.embed)
                snprintf(err, sizeof err, "this SVM works on CNN embeddings: --embed FILE");
            embed = eb ? cnn_load_mem(eb, el, err, sizeof err) : NULL;
            free(eb);
            if (!embed) {
                svm_free(svm);
                svm = NULL;
            }
        }
    } else {
        snprintf(err, sizeof err, "%s: neither a CNN (RCNN) nor an SVM (RSVM) model", o.model);
    }
    free(buf);
    if (!net && !svm) {
        fprintf(stderr, "reel: %s\n", err);
        goto out;
    }
    o.data.channels = net ? net->in_c : svm->in_c;
    o.data.height = net ? net->in_h : svm->in_h;
    o.data.width = net ? net->in_w : svm->in_w;
    if (load_data(&o.data, 1, o.data.limit, &te, err, sizeof err) < 0) {
        fprintf(stderr, "reel: %s\n", err);
        goto out;
    }
    if (check_shape(o.data.channels, o.data.height, o.data.width, &te, err, sizeof err) < 0) {
        fprintf(stderr, "reel: %s\n", err);
        goto out;
    }
    int k = net ? net->n_classes : svm->n_classes;
    if (k != te.k) {
        fprintf(stderr, "reel: the model has %d classes, the data %d\n", k, te.k);
        goto out;
    }
    char *const *mlabels = net ? net->labels : svm->labels;
    for (int c = 0; c < k; c++)
        if (strcmp(mlabels[c], te.labels[c]) != 0) {
            fprintf(stderr, "reel: warning: class %d is '%s' in the model, '%s' in the data\n", c,
                    mlabels[c], te.labels[c]);
            break;
        }
    int *pred = malloc((size_t)te.n * sizeof(int));
    if (!pred) goto out;
    double t0 = now_s(), c0 = cpu_s();
    if (net) {
        cnn_predict_all(net, &te, pred, o.batch);
    } else {
        size_t dim;
        float *x = features(embed, &te, &dim);
        float *probs = malloc((size_t)k * sizeof(float));
        if (!x || !probs || (int)dim != svm->dim) {
            fprintf(stderr, "reel: features of %zu values, the SVM wants %d\n", dim, svm->dim);
            free(pred);
            free(probs);
            if (x != te.x) free(x);
            goto out;
        }
        for (int i = 0; i < te.n; i++) pred[i] = svm_predict(svm, x + (size_t)i * dim, probs);
        free(probs);
        if (x != te.x) free(x);
    }
    const char *mname = net ? "cnn" : svm->kind == SVM_LINEAR ? "svm-linear" : "svm-rbf";
    report(mname, &te, pred, now_s() - t0, cpu_s() - c0);
    free(pred);
    rc = 0;
out:
    dataset_free(&te);
    cnn_free(net);
    cnn_free(embed);
    svm_free(svm);
    return rc;
}
