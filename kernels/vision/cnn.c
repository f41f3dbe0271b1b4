/* cnn.c: see cnn.h. */
/* The element-wise loops here (ReLU gates, bias, col2im, pooling) are most
 * of a training step besides sgemm; -O2 leaves them scalar. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3", "no-trapping-math")
#endif
#include "kernels/vision/cnn.h"

#include <cblas.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char cnn_seed_arch[] = "# reel seed architecture\n"
                             "[conv]\nfilters=32\nsize=3\nactivation=relu\n"
                             "[maxpool]\nsize=2\nstride=2\n"
                             "[conv]\nfilters=64\nsize=3\nactivation=relu\n"
                             "[maxpool]\nsize=2\nstride=2\n"
                             "[conv]\nfilters=64\nsize=3\nactivation=relu\n"
                             "[dense]\noutput=64\nactivation=relu\n"
                             "[dense]\noutput=classes\n"
                             "[softmax]\n";

cnn_opt_t cnn_opt_adam(float lr) {
    cnn_opt_t o = {CNN_ADAM, lr, 0.0f, 0.9f, 0.999f, 1e-8f, 0.0f};
    return o;
}

cnn_opt_t cnn_opt_sgd(float lr, float momentum) {
    cnn_opt_t o = {CNN_SGD, lr, momentum, 0.0f, 0.0f, 0.0f, 0.0f};
    return o;
}

/* ------------------------------------------------------------------ */
/* Architecture text                                                   */

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = 0;
    return s;
}

static int parse_int(const char *v, int *out) {
    char *end = NULL;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || !end || *end || x < 0 || x > 1000000) return -1;
    *out = (int)x;
    return 0;
}

/* Parses arch into net->layers (kinds and hyper-parameters only). */
static int parse_arch(cnn_t *net, const char *arch, int *in_c, int *in_h, int *in_w, char *errstr,
                      size_t n) {
    char *copy = strdup(arch);
    if (!copy) {
        snprintf(errstr, n, "out of memory");
        return -1;
    }
    int rc = -1, lineno = 0, in_input = 0;
    cnn_layer_t *cur = NULL;
    char *save = NULL;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        char *hash = strpbrk(line, "#;");
        if (hash) *hash = 0;
        char *s = trim(line);
        if (!*s) continue;
        if (*s == '[') {
            char *end = strchr(s, ']');
            if (!end) {
                snprintf(errstr, n, "arch line %d: unclosed section", lineno);
                goto out;
            }
            *end = 0;
            const char *name = s + 1;
            in_input = 0;
            cur = NULL;
            if (strcmp(name, "input") == 0 || strcmp(name, "net") == 0) {
                in_input = 1;
                continue;
            }
            if (net->n_layers >= CNN_MAX_LAYERS) {
                snprintf(errstr, n, "arch: more than %d layers", CNN_MAX_LAYERS);
                goto out;
            }
            cur = &net->layers[net->n_layers++];
            memset(cur, 0, sizeof *cur);
            if (strcmp(name, "conv") == 0 || strcmp(name, "convolutional") == 0) {
                cur->kind = CNN_CONV;
                cur->size = 3;
                cur->stride = 1;
            } else if (strcmp(name, "maxpool") == 0) {
                cur->kind = CNN_MAXPOOL;
                cur->size = 2;
            } else if (strcmp(name, "avgpool") == 0) {
                cur->kind = CNN_AVGPOOL;
                cur->size = 2;
            } else if (strcmp(name, "gap") == 0 || strcmp(name, "global_avgpool") == 0) {
                cur->kind = CNN_GAP;
            } else if (strcmp(name, "dense") == 0 || strcmp(name, "connected") == 0) {
                cur->kind = CNN_DENSE;
            } else if (strcmp(name, "dropout") == 0) {
                cur->kind = CNN_DROPOUT;
                cur->prob = 0.5f;
            } else if (strcmp(name, "softmax") == 0) {
                cur->kind = CNN_SOFTMAX;
            } else {
                snprintf(errstr, n, "arch line %d: unknown layer [%s]", lineno, name);
                goto out;
            }
            continue;
        }
        char *eq = strchr(s, '=');
        if (!eq) {
            snprintf(errstr, n, "arch line %d: expected key=value", lineno);
            goto out;
        }
        *eq = 0;
        char *key = trim(s), *val = trim(eq + 1);
        int iv = 0, bad = 0;
        if (in_input) {
            if (parse_int(val, &iv) < 0)
                bad = 1;
            else if (strcmp(key, "width") == 0)
                *in_w = iv;
            else if (strcmp(key, "height") == 0)
                *in_h = iv;
            else if (strcmp(key, "channels") == 0)
                *in_c = iv;
            /* other [net] keys (batch, learning_rate...) are training
             * options of darknet's format and ignored here */
        } else if (!cur) {
            snprintf(errstr, n, "arch line %d: %s outside a section", lineno, key);
            goto out;
        } else if (strcmp(key, "activation") == 0) {
            if (strcmp(val, "relu") == 0)
                cur->relu = 1;
            else if (strcmp(val, "linear") == 0)
                cur->relu = 0;
            else
                bad = 1;
        } else if (strcmp(key, "probability") == 0) {
            char *end = NULL;
            double p = strtod(val, &end);
            if (!end || *end || !(p >= 0.0 && p < 1.0))
                bad = 1;
            else
                cur->prob = (float)p;
        } else if (strcmp(key, "output") == 0 && strcmp(val, "classes") == 0) {
            cur->filters = -1; /* resolved to n_classes */
        } else if (parse_int(val, &iv) < 0) {
            bad = 1;
        } else if (strcmp(key, "filters") == 0 || strcmp(key, "output") == 0) {
            cur->filters = iv;
        } else if (strcmp(key, "size") == 0) {
            cur->size = iv;
        } else if (strcmp(key, "stride") == 0) {
            cur->stride = iv;
        } else if (strcmp(key, "pad") == 0 || strcmp(key, "padding") == 0) {
            cur->pad = iv;
        } else {
            snprintf(errstr, n, "arch line %d: unknown key %s", lineno, key);
            goto out;
        }
        if (bad) {
            snprintf(errstr, n, "arch line %d: bad value for %s: %s", lineno, key, val);
            goto out;
        }
    }
    rc = 0;
out:
    free(copy);
    return rc;
}

/* Fills in shapes and parameter counts layer by layer. */
static int plan(cnn_t *net, char *errstr, size_t n) {
    int c = net->in_c, h = net->in_h, w = net->in_w;
    size_t total = 0, acts = 0;
    if (net->n_layers == 0 || net->layers[net->n_layers - 1].kind != CNN_SOFTMAX) {
        snprintf(errstr, n, "arch: the last layer must be [softmax]");
        return -1;
    }
    for (int i = 0; i < net->n_layers; i++) {
        cnn_layer_t *l = &net->layers[i];
        l->in_c = c, l->in_h = h, l->in_w = w;
        l->in_size = (size_t)c * h * w;
        switch (l->kind) {
        case CNN_CONV:
            if (l->filters <= 0 || l->size <= 0 || l->stride <= 0 || l->size > 15 || l->pad > 15 ||
                l->filters > 4096) {
                snprintf(errstr, n, "arch layer %d: conv needs filters, size and stride", i + 1);
                return -1;
            }
            if (h + 2 * l->pad < l->size || w + 2 * l->pad < l->size) {
                snprintf(errstr, n, "arch layer %d: input %dx%d smaller than the kernel", i + 1, h,
                         w);
                return -1;
            }
            l->out_c = l->filters;
            l->out_h = (h + 2 * l->pad - l->size) / l->stride + 1;
            l->out_w = (w + 2 * l->pad - l->size) / l->stride + 1;
            l->n_w = (size_t)l->filters * c * l->size * l->size;
            l->n_b = (size_t)l->filters;
            break;
        case CNN_MAXPOOL:
        case CNN_AVGPOOL:
            if (l->stride == 0) l->stride = l->size;
            if (l->size <= 0 || l->stride <= 0 || h < l->size || w < l->size) {
                snprintf(errstr, n, "arch layer %d: pool of %d on %dx%d", i + 1, l->size, h, w);
                return -1;
            }
            l->out_c = c;
            l->out_h = (h - l->size) / l->stride + 1;
            l->out_w = (w - l->size) / l->stride + 1;
            break;
        case CNN_GAP:
            l->out_c = c, l->out_h = 1, l->out_w = 1;
            break;
        case CNN_DENSE:
            if (l->filters == -1) l->filters = net->n_classes;
            if (l->filters <= 0 || l->filters > 65536) {
                snprintf(errstr, n, "arch layer %d: dense needs output=N", i + 1);
                return -1;
            }
            l->out_c = l->filters, l->out_h = 1, l->out_w = 1;
            l->n_w = (size_t)l->filters * l->in_size;
            l->n_b = (size_t)l->filters;
            break;
        case CNN_DROPOUT:
        case CNN_SOFTMAX:
            l->out_c = c, l->out_h = h, l->out_w = w;
            break;
        }
        if (l->kind == CNN_SOFTMAX && i != net->n_layers - 1) {
            snprintf(errstr, n, "arch: [softmax] must be the last layer");
            return -1;
        }
        c = l->out_c, h = l->out_h, w = l->out_w;
        l->out_size = (size_t)c * h * w;
        total += l->n_w + l->n_b;
        /* Buffers for batch 1: each layer's output and gradient, and a
         * conv's unfolded input. */
        acts += 2 * l->out_size;
        if (l->kind == CNN_CONV)
            acts += (size_t)l->in_c * l->size * l->size * (size_t)l->out_h * l->out_w;
        if (total > CNN_MAX_PARAMS || l->out_size > (size_t)1 << 24 || acts > CNN_MAX_ACTIVATIONS) {
            snprintf(errstr, n, "arch: network too large");
            return -1;
        }
    }
    if ((int)net->layers[net->n_layers - 1].out_size != net->n_classes) {
        snprintf(errstr, n, "arch: the network outputs %zu values for %d classes",
                 net->layers[net->n_layers - 1].out_size, net->n_classes);
        return -1;
    }
    net->n_params = total;
    return 0;
}

void cnn_free(cnn_t *net) {
    if (!net) return;
    for (int i = 0; i < net->n_layers; i++) {
        free(net->layers[i].out);
        free(net->layers[i].delta);
        free(net->layers[i].idx);
        free(net->layers[i].mask);
        free(net->layers[i].col);
    }
    if (net->labels)
        for (int i = 0; i < net->n_classes; i++) free(net->labels[i]);
    free(net->labels);
    free(net->arch);
    free(net->params);
    free(net->grads);
    free(net->col);
    free(net->tmp);
    free(net->opt_m);
    free(net->opt_v);
    free(net);
}

/* cnn_new() for a model file: want_params (SIZE_MAX: any) is the parameter count
 * the file holds, checked before anything is allocated, so a small file
 * cannot make the loader allocate a large network. */
static cnn_t *cnn_new_sized(const char *arch, int c, int h, int w, int n_classes,
                            const char *const *labels, size_t want_params, char *errstr,
                            size_t errstr_size);

cnn_t *cnn_new(const char *arch, int c, int h, int w, int n_classes, const char *const *labels,
               char *errstr, size_t errstr_size) {
    return cnn_new_sized(arch, c, h, w, n_classes, labels, SIZE_MAX, errstr, errstr_size);
}

static cnn_t *cnn_new_sized(const char *arch, int c, int h, int w, int n_classes,
                            const char *const *labels, size_t want_params, char *errstr,
                            size_t errstr_size) {
    if (c <= 0 || h <= 0 || w <= 0 || c > 16 || h > CNN_MAX_DIM || w > CNN_MAX_DIM ||
        n_classes < 2 || n_classes > CNN_MAX_CLASSES) {
        snprintf(errstr, errstr_size, "bad input shape %dx%dx%d or class count %d", c, h, w,
                 n_classes);
        return NULL;
    }
    cnn_t *net = calloc(1, sizeof *net);
    if (!net) goto oom;
    net->in_c = c, net->in_h = h, net->in_w = w, net->n_classes = n_classes;
    int ac = c, ah = h, aw = w;
    if (parse_arch(net, arch, &ac, &ah, &aw, errstr, errstr_size) < 0) goto fail;
    if (ac != c || ah != h || aw != w) {
        snprintf(errstr, errstr_size, "arch [input] is %dx%dx%d, the data %dx%dx%d", ac, ah, aw, c,
                 h, w);
        goto fail;
    }
    if (plan(net, errstr, errstr_size) < 0) goto fail;
    if (want_params != SIZE_MAX && net->n_params != want_params) {
        snprintf(errstr, errstr_size, "the architecture has %zu parameters, the file %zu",
                 net->n_params, want_params);
        goto fail;
    }
    net->arch = strdup(arch);
    net->labels = calloc((size_t)n_classes, sizeof *net->labels);
    net->params = calloc(net->n_params ? net->n_params : 1, sizeof(float));
    net->grads = calloc(net->n_params ? net->n_params : 1, sizeof(float));
    if (!net->arch || !net->labels || !net->params || !net->grads) goto oom;
    for (int i = 0; i < n_classes; i++) {
        char num[16];
        snprintf(num, sizeof num, "%d", i);
        net->labels[i] = strdup(labels && labels[i] ? labels[i] : num);
        if (!net->labels[i]) goto oom;
    }
    size_t off = 0;
    for (int i = 0; i < net->n_layers; i++) {
        cnn_layer_t *l = &net->layers[i];
        l->w = net->params + off, l->dw = net->grads + off;
        off += l->n_w;
        l->b = net->params + off, l->db = net->grads + off;
        off += l->n_b;
    }
    net->seed = 0x9e3779b97f4a7c15ull;
    if (cnn_set_batch(net, 1, errstr, errstr_size) < 0) goto fail;
    return net;
oom:
    snprintf(errstr, errstr_size, "out of memory");
fail:
    cnn_free(net);
    return NULL;
}

static int conv_block(const cnn_layer_t *l);

int cnn_set_batch(cnn_t *net, int max_batch, char *errstr, size_t errstr_size) {
    if (max_batch <= 0 || max_batch > 65536) {
        snprintf(errstr, errstr_size, "bad batch size %d", max_batch);
        return -1;
    }
    if (max_batch == net->max_batch) return 0;
    size_t col = 0, tmp = 0;
    for (int i = 0; i < net->n_layers; i++) {
        cnn_layer_t *l = &net->layers[i];
        size_t n = l->out_size * (size_t)max_batch;
        free(l->out), free(l->delta), free(l->idx), free(l->mask), free(l->col);
        l->idx = NULL, l->mask = NULL, l->col = NULL;
        l->out = malloc(n * sizeof(float));
        l->delta = malloc(n * sizeof(float));
        if (!l->out || !l->delta) goto oom;
        if (l->kind == CNN_MAXPOOL && !(l->idx = malloc(n * sizeof(int)))) goto oom;
        if (l->kind == CNN_DROPOUT && !(l->mask = malloc(n * sizeof(float)))) goto oom;
        if (l->kind == CNN_CONV) {
            size_t P = (size_t)l->out_h * l->out_w;
            size_t blk = (size_t)(conv_block(l) < max_batch ? conv_block(l) : max_batch) * P;
            size_t ckk = (size_t)l->in_c * l->size * l->size;
            if (ckk * blk > col) col = ckk * blk;
            if ((size_t)l->out_c * blk > tmp) tmp = (size_t)l->out_c * blk;
            if (!(l->col = malloc(ckk * P * max_batch * sizeof(float)))) goto oom;
        }
    }
    free(net->col), free(net->tmp);
    net->col = malloc((col ? col : 1) * sizeof(float));
    net->tmp = malloc((tmp ? tmp : 1) * sizeof(float));
    if (!net->col || !net->tmp) goto oom;
    net->col_size = col, net->tmp_size = tmp;
    net->max_batch = max_batch;
    return 0;
oom:
    net->max_batch = 0;
    snprintf(errstr, errstr_size, "out of memory for batch %d", max_batch);
    return -1;
}

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float uniform01(uint64_t *s) {
    return (float)((splitmix(s) >> 40) * (1.0 / 16777216.0));
}

void cnn_init(cnn_t *net, uint64_t seed) {
    uint64_t s = seed;
    net->seed = splitmix(&s);
    for (int i = 0; i < net->n_layers; i++) {
        cnn_layer_t *l = &net->layers[i];
        if (!l->n_w) continue;
        size_t fan_in = l->n_w / l->n_b, fan_out = l->n_b;
        float limit =
            l->relu ? sqrtf(6.0f / (float)fan_in) : sqrtf(6.0f / (float)(fan_in + fan_out));
        for (size_t k = 0; k < l->n_w; k++) l->w[k] = (2.0f * uniform01(&s) - 1.0f) * limit;
        memset(l->b, 0, l->n_b * sizeof(float));
    }
}

/* ------------------------------------------------------------------ */
/* Kernels                                                              */

/* Unfolds one sample x [C][H][W] into col rows (c, ki, kj), each of
 * OH*OW values, rows ld floats apart. */
#if defined(__GNUC__) && !defined(__clang__)
/* rows are a few dozen floats: inline moves beat a memcpy call per row */
__attribute__((optimize("no-tree-loop-distribute-patterns")))
#endif
static void
im2col(const float *restrict x, const cnn_layer_t *l, float *restrict col, size_t ld) {
    const int C = l->in_c, H = l->in_h, W = l->in_w, K = l->size, S = l->stride, P = l->pad;
    const int OH = l->out_h, OW = l->out_w;
    for (int c = 0; c < C; c++)
        for (int ki = 0; ki < K; ki++)
            for (int kj = 0; kj < K; kj++) {
                float *dst = col + (size_t)((c * K + ki) * K + kj) * ld;
                for (int oy = 0; oy < OH; oy++) {
                    int iy = oy * S - P + ki;
                    float *d = dst + oy * OW;
                    if (iy < 0 || iy >= H) {
                        memset(d, 0, (size_t)OW * sizeof(float));
                        continue;
                    }
                    const float *src = x + ((size_t)c * H + iy) * W;
                    if (S == 1 && P == 0) {
                        const float *s = src + kj;
                        for (int ox = 0; ox < OW; ox++) d[ox] = s[ox];
                        continue;
                    }
                    for (int ox = 0; ox < OW; ox++) {
                        int ix = ox * S - P + kj;
                        d[ox] = (ix >= 0 && ix < W) ? src[ix] : 0.0f;
                    }
                }
            }
}

/* The adjoint of im2col: adds col rows back into dx [C][H][W]. */
static void col2im(const float *restrict col, const cnn_layer_t *l, size_t ld, float *restrict dx) {
    const int C = l->in_c, H = l->in_h, W = l->in_w, K = l->size, S = l->stride, P = l->pad;
    const int OH = l->out_h, OW = l->out_w;
    for (int c = 0; c < C; c++)
        for (int ki = 0; ki < K; ki++)
            for (int kj = 0; kj < K; kj++) {
                const float *src = col + (size_t)((c * K + ki) * K + kj) * ld;
                for (int oy = 0; oy < OH; oy++) {
                    int iy = oy * S - P + ki;
                    if (iy < 0 || iy >= H) continue;
                    float *restrict d = dx + ((size_t)c * H + iy) * W;
                    const float *restrict s = src + oy * OW;
                    if (S == 1 && P == 0) {
                        for (int ox = 0; ox < OW; ox++) d[ox + kj] += s[ox];
                        continue;
                    }
                    for (int ox = 0; ox < OW; ox++) {
                        int ix = ox * S - P + kj;
                        if (ix >= 0 && ix < W) d[ix] += s[ox];
                    }
                }
            }
}

/* Samples per im2col block: a block's columns (ckk x samples x P floats)
 * stay within a quarter of a 1 MiB L2, so sgemm reads them from cache (64 KiB
 * to 1 MiB measured within noise of each other; 2 MiB slower). A
 * whole batch in one block was slower at batch 32 than one sample at a
 * time. */
size_t cnn_block_bytes = 256u * 1024u;

static int conv_block(const cnn_layer_t *l) {
    size_t per = (size_t)l->in_c * l->size * l->size * l->out_h * l->out_w * sizeof(float);
    size_t nb = cnn_block_bytes / (per ? per : 1);
    return nb < 1 ? 1 : nb > 4096 ? 4096 : (int)nb;
}

/* The im2col of samples [b0, b0 + nb) lives at l->col + b0 * ckk * P as a
 * ckk x (nb * P) matrix; backward reuses it block by block. */
static void conv_forward(cnn_t *net, cnn_layer_t *l, const float *x, int n) {
    const size_t P = (size_t)l->out_h * l->out_w;
    const int ckk = l->in_c * l->size * l->size, bs = conv_block(l);
    for (int b0 = 0; b0 < n; b0 += bs) {
        const int nb = n - b0 < bs ? n - b0 : bs;
        const size_t ld = P * nb;
        float *col = l->col + (size_t)b0 * ckk * P;
        for (int b = 0; b < nb; b++) im2col(x + (b0 + b) * l->in_size, l, col + b * P, ld);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, l->out_c, (int)ld, ckk, 1.0f, l->w,
                    ckk, col, (int)ld, 0.0f, net->tmp, (int)ld);
        for (int b = 0; b < nb; b++)
            for (int oc = 0; oc < l->out_c; oc++) {
                const float *restrict t = net->tmp + oc * ld + b * P;
                float *restrict o = l->out + (b0 + b) * l->out_size + oc * P;
                const float bias = l->b[oc];
                if (l->relu)
                    for (size_t p = 0; p < P; p++) {
                        float v = t[p] + bias;
                        o[p] = v > 0.0f ? v : 0.0f;
                    }
                else
                    for (size_t p = 0; p < P; p++) o[p] = t[p] + bias;
            }
    }
}

static void conv_backward(cnn_t *net, cnn_layer_t *l, float *dx, int n) {
    const size_t P = (size_t)l->out_h * l->out_w;
    const int ckk = l->in_c * l->size * l->size, bs = conv_block(l);
    if (dx) memset(dx, 0, (size_t)n * l->in_size * sizeof(float));
    for (int b0 = 0; b0 < n; b0 += bs) {
        const int nb = n - b0 < bs ? n - b0 : bs;
        const size_t ld = P * nb;
        const float *col = l->col + (size_t)b0 * ckk * P;
        for (int b = 0; b < nb; b++)
            for (int oc = 0; oc < l->out_c; oc++) {
                const float *restrict d = l->delta + (b0 + b) * l->out_size + oc * P;
                const float *restrict o = l->out + (b0 + b) * l->out_size + oc * P;
                float *restrict t = net->tmp + oc * ld + b * P;
                if (l->relu)
                    for (size_t p = 0; p < P; p++) /* branch-free, so it vectorizes */
                        t[p] = d[p] * (float)(o[p] > 0.0f);
                else
                    for (size_t p = 0; p < P; p++) t[p] = d[p];
                /* eight partial sums, so the reduction vectorizes */
                float s8[8] = {0};
                size_t p = 0;
                for (; p + 8 <= P; p += 8)
                    for (int j = 0; j < 8; j++) s8[j] += t[p + j];
                for (; p < P; p++) s8[0] += t[p];
                l->db[oc] +=
                    ((s8[0] + s8[1]) + (s8[2] + s8[3])) + ((s8[4] + s8[5]) + (s8[6] + s8[7]));
            }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, l->out_c, ckk, (int)ld, 1.0f, net->tmp,
                    (int)ld, col, (int)ld, 1.0f, l->dw, ckk);
        if (!dx) continue;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ckk, (int)ld, l->out_c, 1.0f, l->w,
                    ckk, net->tmp, (int)ld, 0.0f, net->col, (int)ld);
        for (int b = 0; b < nb; b++) col2im(net->col + b * P, l, ld, dx + (b0 + b) * l->in_size);
    }
}

/* 2x2 max pooling with stride 2, the common case, without the generic
 * window loops; argmax indices only when training needs them. Ties keep
 * the first in scan order, as the generic loop does. */
static void maxpool2(cnn_layer_t *l, const float *x, int n, int train) {
    const int H = l->in_h, W = l->in_w, OH = l->out_h, OW = l->out_w;
    for (int b = 0; b < n; b++)
        for (int c = 0; c < l->out_c; c++) {
            const float *xc = x + b * l->in_size + (size_t)c * H * W;
            float *o = l->out + b * l->out_size + (size_t)c * OH * OW;
            int *idx = train ? l->idx + b * l->out_size + (size_t)c * OH * OW : NULL;
            for (int oy = 0; oy < OH; oy++) {
                const float *restrict r0 = xc + 2 * oy * W, *restrict r1 = r0 + W;
                float *restrict orow = o + oy * OW;
                if (!idx) {
                    /* plain compares: fmaxf is a libm call here */
                    for (int ox = 0; ox < OW; ox++) {
                        float a = r0[2 * ox], a1 = r0[2 * ox + 1], d = r1[2 * ox],
                              d1 = r1[2 * ox + 1];
                        a = a1 > a ? a1 : a;
                        d = d1 > d ? d1 : d;
                        orow[ox] = d > a ? d : a;
                    }
                    continue;
                }
                int *irow = idx + oy * OW, base = c * H * W + 2 * oy * W;
                for (int ox = 0; ox < OW; ox++) {
                    int k = 2 * ox;
                    float m = r0[k];
                    int best = base + k;
                    if (r0[k + 1] > m) m = r0[k + 1], best = base + k + 1;
                    if (r1[k] > m) m = r1[k], best = base + W + k;
                    if (r1[k + 1] > m) m = r1[k + 1], best = base + W + k + 1;
                    orow[ox] = m;
                    irow[ox] = best;
                }
            }
        }
}

static void pool_forward(cnn_layer_t *l, const float *x, int n, int train) {
    const int K = l->size, S = l->stride, H = l->in_h, W = l->in_w;
    const float inv = 1.0f / (float)(K * K);
    if (l->kind == CNN_MAXPOOL && K == 2 && S == 2) {
        maxpool2(l, x, n, train);
        return;
    }
    for (int b = 0; b < n; b++)
        for (int c = 0; c < l->out_c; c++) {
            const float *xc = x + b * l->in_size + (size_t)c * H * W;
            size_t obase = b * l->out_size + (size_t)c * l->out_h * l->out_w;
            for (int oy = 0; oy < l->out_h; oy++)
                for (int ox = 0; ox < l->out_w; ox++) {
                    size_t o = obase + (size_t)oy * l->out_w + ox;
                    int y0 = oy * S, x0 = ox * S;
                    if (l->kind == CNN_MAXPOOL) {
                        int best = y0 * W + x0;
                        float m = xc[best];
                        for (int i = 0; i < K; i++)
                            for (int j = 0; j < K; j++) {
                                int k = (y0 + i) * W + x0 + j;
                                if (xc[k] > m) m = xc[k], best = k;
                            }
                        l->out[o] = m;
                        l->idx[o] = c * H * W + best;
                    } else {
                        float s = 0.0f;
                        for (int i = 0; i < K; i++)
                            for (int j = 0; j < K; j++) s += xc[(y0 + i) * W + x0 + j];
                        l->out[o] = s * inv;
                    }
                }
        }
}

/* The adjoint of maxpool2(): each 2x2 window is written whole (its max
 * gets the gradient, the rest 0), so only an odd last row or column needs
 * clearing beforehand. */
static void maxpool2_backward(const cnn_layer_t *l, float *dx, int n) {
    const int H = l->in_h, W = l->in_w, OH = l->out_h, OW = l->out_w;
    const int odd = H != 2 * OH || W != 2 * OW;
    for (int b = 0; b < n; b++)
        for (int c = 0; c < l->out_c; c++) {
            float *d = dx + b * l->in_size + (size_t)c * H * W;
            const float *g = l->delta + b * l->out_size + (size_t)c * OH * OW;
            const int *idx = l->idx + b * l->out_size + (size_t)c * OH * OW;
            const int base = c * H * W;
            if (odd) memset(d, 0, (size_t)H * W * sizeof(float));
            for (int oy = 0; oy < OH; oy++) {
                float *r0 = d + 2 * oy * W, *r1 = r0 + W;
                for (int ox = 0; ox < OW; ox++) {
                    r0[2 * ox] = r0[2 * ox + 1] = r1[2 * ox] = r1[2 * ox + 1] = 0.0f;
                    d[idx[oy * OW + ox] - base] = g[oy * OW + ox];
                }
            }
        }
}

static void pool_backward(const cnn_layer_t *l, float *dx, int n) {
    const int K = l->size, S = l->stride, H = l->in_h, W = l->in_w;
    const float inv = 1.0f / (float)(K * K);
    if (l->kind == CNN_MAXPOOL && K == 2 && S == 2) {
        maxpool2_backward(l, dx, n);
        return;
    }
    memset(dx, 0, (size_t)n * l->in_size * sizeof(float));
    for (int b = 0; b < n; b++) {
        float *d = dx + b * l->in_size;
        const float *g = l->delta + b * l->out_size;
        if (l->kind == CNN_MAXPOOL) {
            for (size_t o = 0; o < l->out_size; o++) d[l->idx[b * l->out_size + o]] += g[o];
            continue;
        }
        for (int c = 0; c < l->out_c; c++)
            for (int oy = 0; oy < l->out_h; oy++)
                for (int ox = 0; ox < l->out_w; ox++) {
                    float v = g[((size_t)c * l->out_h + oy) * l->out_w + ox] * inv;
                    for (int i = 0; i < K; i++)
                        for (int j = 0; j < K; j++)
                            d[(size_t)c * H * W + (oy * S + i) * W + ox * S + j] += v;
                }
    }
}

static void dense_forward(cnn_layer_t *l, const float *x, int n) {
    const int ni = (int)l->in_size, no = l->out_c;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, no, ni, 1.0f, x, ni, l->w, ni, 0.0f,
                l->out, no);
    for (int b = 0; b < n; b++) {
        float *o = l->out + (size_t)b * no;
        for (int k = 0; k < no; k++) {
            float v = o[k] + l->b[k];
            o[k] = (l->relu && v < 0.0f) ? 0.0f : v;
        }
    }
}

static void dense_backward(cnn_layer_t *l, const float *x, float *dx, int n) {
    const int ni = (int)l->in_size, no = l->out_c;
    for (int b = 0; b < n; b++) {
        float *d = l->delta + (size_t)b * no;
        const float *o = l->out + (size_t)b * no;
        for (int k = 0; k < no; k++) {
            if (l->relu && o[k] <= 0.0f) d[k] = 0.0f;
            l->db[k] += d[k];
        }
    }
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, no, ni, n, 1.0f, l->delta, no, x, ni, 1.0f,
                l->dw, ni);
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, ni, no, 1.0f, l->delta, no, l->w,
                    ni, 0.0f, dx, ni);
}

static void softmax_rows(const float *x, float *p, int n, int k) {
    for (int b = 0; b < n; b++) {
        const float *r = x + (size_t)b * k;
        float *q = p + (size_t)b * k;
        float m = r[0], s = 0.0f;
        for (int j = 1; j < k; j++)
            if (r[j] > m) m = r[j];
        for (int j = 0; j < k; j++) s += (q[j] = expf(r[j] - m));
        for (int j = 0; j < k; j++) q[j] /= s;
    }
}

const float *cnn_forward(cnn_t *net, const float *x, int n, int train) {
    if (n <= 0 || n > net->max_batch) return NULL;
    const float *in = x;
    for (int i = 0; i < net->n_layers; i++) {
        cnn_layer_t *l = &net->layers[i];
        size_t total = (size_t)n * l->out_size;
        switch (l->kind) {
        case CNN_CONV:
            conv_forward(net, l, in, n);
            break;
        case CNN_MAXPOOL:
        case CNN_AVGPOOL:
            pool_forward(l, in, n, train);
            break;
        case CNN_GAP: {
            size_t hw = (size_t)l->in_h * l->in_w;
            for (size_t k = 0; k < total; k++) {
                float s = 0.0f;
                for (size_t j = 0; j < hw; j++) s += in[k * hw + j];
                l->out[k] = s / (float)hw;
            }
            break;
        }
        case CNN_DENSE:
            dense_forward(l, in, n);
            break;
        case CNN_DROPOUT:
            if (!train || l->prob <= 0.0f) {
                memcpy(l->out, in, total * sizeof(float));
                if (l->mask)
                    for (size_t k = 0; k < total; k++) l->mask[k] = 1.0f;
                break;
            }
            {
                uint64_t s = net->seed ^ ((uint64_t)net->step * 0x100000001b3ull) ^ (uint64_t)i;
                float keep = 1.0f / (1.0f - l->prob);
                for (size_t k = 0; k < total; k++) {
                    l->mask[k] = uniform01(&s) < l->prob ? 0.0f : keep;
                    l->out[k] = in[k] * l->mask[k];
                }
            }
            break;
        case CNN_SOFTMAX:
            softmax_rows(in, l->out, n, (int)l->out_size);
            break;
        }
        in = l->out;
    }
    return in;
}

float cnn_backward(cnn_t *net, const float *x, const int *y, int n) {
    memset(net->grads, 0, net->n_params * sizeof(float));
    int last = net->n_layers - 1;
    const int k = net->n_classes;
    const float *p = net->layers[last].out;
    double loss = 0.0;
    /* softmax + cross-entropy: the gradient wrt the logits is (p - y) / n */
    float *dlogits = last > 0 ? net->layers[last - 1].delta : NULL;
    for (int b = 0; b < n; b++) {
        float py = p[(size_t)b * k + y[b]];
        loss -= log(py > 1e-30f ? py : 1e-30f);
        if (!dlogits) continue;
        for (int j = 0; j < k; j++)
            dlogits[(size_t)b * k + j] = (p[(size_t)b * k + j] - (j == y[b] ? 1.0f : 0.0f)) / n;
    }
    for (int i = last - 1; i >= 0; i--) {
        cnn_layer_t *l = &net->layers[i];
        const float *in = i > 0 ? net->layers[i - 1].out : x;
        float *din = i > 0 ? net->layers[i - 1].delta : NULL;
        size_t total = (size_t)n * l->out_size;
        switch (l->kind) {
        case CNN_CONV:
            conv_backward(net, l, din, n);
            break;
        case CNN_MAXPOOL:
        case CNN_AVGPOOL:
            if (din) pool_backward(l, din, n);
            break;
        case CNN_GAP:
            if (din) {
                size_t hw = (size_t)l->in_h * l->in_w;
                for (size_t q = 0; q < total; q++)
                    for (size_t j = 0; j < hw; j++) din[q * hw + j] = l->delta[q] / (float)hw;
            }
            break;
        case CNN_DENSE:
            dense_backward(l, in, din, n);
            break;
        case CNN_DROPOUT:
            if (din)
                for (size_t q = 0; q < total; q++) din[q] = l->delta[q] * l->mask[q];
            break;
        case CNN_SOFTMAX:
            break;
        }
    }
    return (float)(loss / n);
}

int cnn_step(cnn_t *net, const cnn_opt_t *opt) {
    if (!net->opt_m) {
        net->opt_m = calloc(net->n_params ? net->n_params : 1, sizeof(float));
        net->opt_v = calloc(net->n_params ? net->n_params : 1, sizeof(float));
        if (!net->opt_m || !net->opt_v) return -1;
    }
    net->step++;
    float *p = net->params, *g = net->grads, *m = net->opt_m, *v = net->opt_v;
    const size_t np = net->n_params;
    const float wd = opt->weight_decay, lr = opt->lr;
    if (opt->kind == CNN_SGD) {
        const float mu = opt->momentum;
        for (size_t i = 0; i < np; i++) {
            m[i] = mu * m[i] + g[i] + wd * p[i];
            p[i] -= lr * m[i];
        }
        return 0;
    }
    const float b1 = opt->beta1, b2 = opt->beta2;
    const float c1 = 1.0f / (1.0f - powf(b1, (float)net->step));
    const float c2 = 1.0f / (1.0f - powf(b2, (float)net->step));
    for (size_t i = 0; i < np; i++) {
        float gi = g[i] + wd * p[i];
        m[i] = b1 * m[i] + (1.0f - b1) * gi;
        v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
        p[i] -= lr * (m[i] * c1) / (sqrtf(v[i] * c2) + opt->eps);
    }
    return 0;
}

const float *cnn_embedding(const cnn_t *net, size_t *dim) {
    for (int i = net->n_layers - 1; i > 0; i--)
        if (net->layers[i].kind == CNN_DENSE) {
            *dim = net->layers[i].in_size;
            return net->layers[i - 1].out;
        }
    *dim = 0;
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Model file                                                           */

static uint64_t fnv1a(const unsigned char *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

typedef struct wbuf {
    unsigned char *p;
    size_t len, cap;
    int oom;
} wbuf_t;

static void put(wbuf_t *b, const void *data, size_t n) {
    if (b->oom) return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) cap *= 2;
        unsigned char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q, b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void put_u32(wbuf_t *b, uint32_t v) {
    put(b, &v, 4);
}

int cnn_save(const cnn_t *net, const char *path, char *errstr, size_t errstr_size) {
    wbuf_t b = {0};
    put(&b, "RCNN", 4);
    put_u32(&b, 1);
    put_u32(&b, (uint32_t)net->in_c);
    put_u32(&b, (uint32_t)net->in_h);
    put_u32(&b, (uint32_t)net->in_w);
    put_u32(&b, (uint32_t)net->n_classes);
    uint32_t alen = (uint32_t)strlen(net->arch);
    put_u32(&b, alen);
    put(&b, net->arch, alen);
    for (int i = 0; i < net->n_classes; i++) {
        size_t ln = strlen(net->labels[i]);
        uint16_t l16 = (uint16_t)(ln > 255 ? 255 : ln);
        put(&b, &l16, 2);
        put(&b, net->labels[i], l16);
    }
    uint64_t np = net->n_params;
    put(&b, &np, 8);
    put(&b, net->params, net->n_params * sizeof(float));
    uint64_t h = b.oom ? 0 : fnv1a(b.p, b.len);
    put(&b, &h, 8);
    if (b.oom) {
        free(b.p);
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    FILE *f = fopen(path, "wb");
    int rc = -1;
    if (!f) {
        snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
    } else if (fwrite(b.p, 1, b.len, f) != b.len) {
        snprintf(errstr, errstr_size, "%s: write failed", path);
        fclose(f);
    } else if (fclose(f) != 0) {
        snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
    } else {
        rc = 0;
    }
    free(b.p);
    return rc;
}

typedef struct rbuf {
    const unsigned char *p;
    size_t len, off;
} rbuf_t;

static int get(rbuf_t *r, void *out, size_t n) {
    if (n > r->len - r->off) return -1;
    memcpy(out, r->p + r->off, n);
    r->off += n;
    return 0;
}

cnn_t *cnn_load_mem(const void *data, size_t len, char *errstr, size_t errstr_size) {
    rbuf_t r = {data, len, 0};
    char magic[4];
    uint32_t ver = 0, c = 0, h = 0, w = 0, k = 0, alen = 0;
    char *arch = NULL, **labels = NULL;
    cnn_t *net = NULL;
    if (len < 16 || get(&r, magic, 4) || memcmp(magic, "RCNN", 4) != 0) {
        snprintf(errstr, errstr_size, "not a reel CNN model (magic RCNN)");
        return NULL;
    }
    if (get(&r, &ver, 4) || ver != 1) {
        snprintf(errstr, errstr_size, "CNN model version %u unsupported", ver);
        return NULL;
    }
    if (get(&r, &c, 4) || get(&r, &h, 4) || get(&r, &w, 4) || get(&r, &k, 4) || get(&r, &alen, 4) ||
        k < 2 || k > CNN_MAX_CLASSES || alen > 65536) {
        snprintf(errstr, errstr_size,
                 "CNN model: bad header (input %ux%ux%u, %u classes, architecture of %u bytes)", c,
                 h, w, k, alen);
        return NULL;
    }
    uint64_t want_h;
    memcpy(&want_h, (const char *)data + len - 8, 8);
    if (fnv1a(data, len - 8) != want_h) {
        snprintf(errstr, errstr_size, "CNN model: checksum mismatch (truncated or corrupt file)");
        return NULL;
    }
    arch = calloc(alen + 1, 1);
    labels = calloc(k, sizeof *labels);
    if (!arch || !labels) {
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }
    if (get(&r, arch, alen)) goto bad;
    for (uint32_t i = 0; i < k; i++) {
        uint16_t ln;
        if (get(&r, &ln, 2) || ln > 255) goto bad;
        labels[i] = calloc(ln + 1u, 1);
        if (!labels[i] || get(&r, labels[i], ln)) goto bad;
    }
    uint64_t np = 0;
    /* The parameters fill the file up to its checksum exactly: known before
     * the network (and its buffers) is built. */
    if (get(&r, &np, 8) || np > CNN_MAX_PARAMS || np * sizeof(float) != r.len - r.off - 8) {
        snprintf(errstr, errstr_size, "CNN model: %llu parameters do not fill the file's %zu bytes",
                 (unsigned long long)np, r.len - r.off >= 8 ? r.len - r.off - 8 : 0);
        goto fail;
    }
    net = cnn_new_sized(arch, (int)c, (int)h, (int)w, (int)k, (const char *const *)labels,
                        (size_t)np, errstr, errstr_size);
    if (!net) goto fail;
    if (get(&r, net->params, net->n_params * sizeof(float)) || r.len - r.off != 8) goto bad;
    for (size_t i = 0; i < net->n_params; i++)
        if (!isfinite(net->params[i])) {
            snprintf(errstr, errstr_size, "CNN model: parameter %zu is not finite", i);
            goto fail;
        }
    for (uint32_t i = 0; i < k; i++) free(labels[i]);
    free(labels);
    free(arch);
    return net;
bad:
    snprintf(errstr, errstr_size, "CNN model: truncated or inconsistent file");
fail:
    if (labels)
        for (uint32_t i = 0; i < k; i++) free(labels[i]);
    free(labels);
    free(arch);
    cnn_free(net);
    return NULL;
}

cnn_t *cnn_load(const char *path, char *errstr, size_t errstr_size) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
        return NULL;
    }
    cnn_t *net = NULL;
    unsigned char *buf = NULL;
    long sz = -1;
    if (fseek(f, 0, SEEK_END) == 0) sz = ftell(f);
    if (sz < 0 || sz > (long)CNN_MAX_PARAMS * 4 + (1 << 20) || fseek(f, 0, SEEK_SET) != 0) {
        snprintf(errstr, errstr_size, "%s: cannot size the file", path);
    } else if (!(buf = malloc((size_t)sz + 1))) {
        snprintf(errstr, errstr_size, "out of memory");
    } else if (fread(buf, 1, (size_t)sz, f) != (size_t)sz) {
        snprintf(errstr, errstr_size, "%s: read failed", path);
    } else {
        net = cnn_load_mem(buf, (size_t)sz, errstr, errstr_size);
    }
    free(buf);
    fclose(f);
    return net;
}
