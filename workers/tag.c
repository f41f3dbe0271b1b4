/* tag.c: the tag worker (posters -> poster-tags) and `reel moderation`.
 *
 * Per poster: decode the image from memory under byte and pixel limits
 * (kernels/vision/image.h; JPEGs DCT-scaled close to the size needed),
 * classify it with the current CNN (or an SVM on the CNN's embedding or on
 * pixels), keep the labels whose confidence reaches tag.threshold, measure
 * width, height and dominant colours, compute a 64-bit perceptual hash and
 * compare it with the moderation blocklist, and store the L2-normalized
 * embedding for content-based recommendation. A poster that cannot be
 * decoded goes to posters.dlq with the reason.
 *
 * Redis keys:
 *   reel:{moderation}:blocklist        hash phash (16 hex) -> label
 *   reel:{moderation}:version          bumped on every change; workers
 *                                      reload the list when it moves
 *   reel:{<group>}:poster-embeddings   hash item_id -> float32[dim] (host
 *                                      order), through the exactly-once
 *                                      commit
 * Models: kind "image" (RCNN) and, with tag.classifier=svm, "image-svm"
 * (RSVM), polled from reload(). */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "kernels/vision/cnn.h"
#include "kernels/vision/image.h"
#include "kernels/vision/svm.h"
#include "pipeline/log.h"
#include "pipeline/models.h"
#include "workers/workers.h"

#define TAG_BLOCKLIST_KEY "reel:{moderation}:blocklist"
#define TAG_BLOCKLIST_VERSION_KEY "reel:{moderation}:version"
#define TAG_MAX_LABELS 16

static const char *const tag_inputs[] = {"posters", NULL};

static const config_key_t tag_keys[] = {
    {"tag.output", "poster-tags", "Topic of the PosterTags records."},
    {"tag.threshold", "0.5", "Labels whose confidence reaches this are reported."},
    {"tag.max.labels", "5", "At most this many labels per poster (1-16)."},
    {"tag.colors", "3", "Dominant colours reported (0-8)."},
    {"tag.classifier", "cnn",
     "cnn: the CNN's softmax; svm: the current image-svm model (on the CNN's embedding or "
     "pixels)."},
    {"tag.moderation.distance", "8",
     "A poster whose hash is within this Hamming distance of a blocklisted one is blocked."},
    {"tag.embeddings", "true", "Store the L2-normalized embedding per item in Redis."},
    {"tag.max.bytes", "33554432", "Largest encoded image accepted."},
    {"tag.max.pixels", "16777216", "Largest width x height accepted (checked before decoding)."},
    {"tag.max.side", "16384", "Largest width or height accepted."},
    {"tag.reload.interval.ms", "5000", "How often the model registry is polled."},
    {NULL, NULL, NULL},
};

typedef struct block_entry {
    uint64_t hash;
    char *label;
} block_entry_t;

typedef struct tag_state {
    const codec_schema_t *out_schema;
    avro_value_t out;
    char output_topic[256];
    char emb_key[512];
    double threshold;
    int max_labels, n_colors, distance, use_svm, store_embeddings;
    img_limits_t limits;
    img_t im;
    /* models */
    cnn_t *net;
    svm_t *svm;
    int64_t net_version, svm_version; /* served */
    int64_t net_polled, svm_polled;   /* last fetched, refused ones included */
    char version[64];
    int version_dirty;
    float *input;  /* model input, c*h*w */
    float *probs;  /* n_classes */
    float *emb;    /* normalized embedding */
    int probs_svm; /* the last classify() used the SVM (labels come from it) */
    size_t input_cap, probs_cap, emb_cap;
    /* moderation */
    block_entry_t *block;
    size_t n_block;
    long long block_version;
    /* scratch */
    char *str;
    size_t str_cap;
} tag_state_t;

static void block_clear(tag_state_t *st) {
    for (size_t i = 0; i < st->n_block; i++) free(st->block[i].label);
    free(st->block);
    st->block = NULL;
    st->n_block = 0;
}

static void tag_destroy(void *opaque) {
    tag_state_t *st = opaque;
    if (!st) return;
    if (st->out_schema) avro_value_decref(&st->out);
    img_free(&st->im);
    cnn_free(st->net);
    svm_free(st->svm);
    free(st->input);
    free(st->probs);
    free(st->emb);
    block_clear(st);
    free(st->str);
    free(st);
}

static int parse_hex64(const char *s, size_t len, uint64_t *out) {
    if (len != 16) return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < 16; i++) {
        int c = tolower((unsigned char)s[i]);
        if (c >= '0' && c <= '9')
            v = v << 4 | (uint64_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v = v << 4 | (uint64_t)(c - 'a' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

static int grow_floats(float **p, size_t *cap, size_t need) {
    if (need <= *cap) return 0;
    float *q = realloc(*p, need * sizeof(float));
    if (!q) return -1;
    *p = q;
    *cap = need;
    return 0;
}

static void update_version(tag_state_t *st) {
    if (!st->net && !st->svm)
        snprintf(st->version, sizeof st->version, "none");
    else if (st->use_svm && st->svm)
        snprintf(st->version, sizeof st->version, "image-v%lld+svm-v%lld",
                 (long long)st->net_version, (long long)st->svm_version);
    else
        snprintf(st->version, sizeof st->version, "image-v%lld", (long long)st->net_version);
    st->version_dirty = 1;
}

/* Polls the registry; swaps in a new CNN or SVM when current moved. A
 * model that does not parse is refused and the old one kept. */
static int poll_models(tag_state_t *st, store_t *s, char *errstr, size_t n) {
    void *data = NULL;
    size_t len = 0;
    int64_t v = st->net_polled;
    int r = models_poll(s, "image", &v, &data, &len, errstr, n);
    if (r < 0) return -1;
    if (r == 1) {
        char err[256];
        cnn_t *net = cnn_load_mem(data, len, err, sizeof err);
        free(data);
        if (!net) {
            snprintf(errstr, n, "image model v%lld: %s", (long long)v, err);
            st->net_polled = v; /* do not retry a broken blob every poll */
            return -1;
        }
        if (grow_floats(&st->input, &st->input_cap, (size_t)net->in_c * net->in_h * net->in_w) <
                0 ||
            grow_floats(&st->probs, &st->probs_cap, (size_t)net->n_classes) < 0) {
            cnn_free(net);
            snprintf(errstr, n, "out of memory");
            return -1;
        }
        cnn_free(st->net);
        st->net = net;
        st->net_version = st->net_polled = v;
        size_t dim = 0;
        cnn_forward(net, st->input, 1, 0);
        cnn_embedding(net, &dim);
        if (grow_floats(&st->emb, &st->emb_cap, dim ? dim : 1) < 0) return -1;
        log_info("model_loaded", "kind=image version=%lld classes=%d input=%dx%dx%d params=%zu",
                 (long long)v, net->n_classes, net->in_c, net->in_h, net->in_w, net->n_params);
        update_version(st);
    }
    if (!st->use_svm) return 0;
    v = st->svm_polled;
    r = models_poll(s, "image-svm", &v, &data, &len, errstr, n);
    if (r < 0) return -1;
    if (r == 1) {
        char err[256];
        svm_t *m = svm_load_mem(data, len, err, sizeof err);
        free(data);
        st->svm_polled = v;
        if (!m) {
            snprintf(errstr, n, "image-svm model v%lld: %s", (long long)v, err);
            return -1;
        }
        if (grow_floats(&st->probs, &st->probs_cap, (size_t)m->n_classes) < 0 ||
            (m->features == SVM_PIXELS &&
             grow_floats(&st->input, &st->input_cap, (size_t)m->in_c * m->in_h * m->in_w) < 0)) {
            svm_free(m);
            snprintf(errstr, n, "out of memory");
            return -1;
        }
        svm_free(st->svm);
        st->svm = m;
        st->svm_version = v;
        log_info("model_loaded", "kind=image-svm version=%lld classes=%d dim=%d", (long long)v,
                 m->n_classes, m->dim);
        update_version(st);
    }
    return 0;
}

/* Reloads the blocklist when its version moved. One round trip when not. */
static int poll_blocklist(tag_state_t *st, store_t *s, char *errstr, size_t n) {
    redisReply *r = store_command(s, errstr, n, "GET %s", TAG_BLOCKLIST_VERSION_KEY);
    if (!r) return -1;
    long long v = r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : 0;
    freeReplyObject(r);
    if (v == st->block_version && (v != 0 || st->n_block == 0)) return 0;
    r = store_command(s, errstr, n, "HGETALL %s", TAG_BLOCKLIST_KEY);
    if (!r) return -1;
    if (r->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        snprintf(errstr, n, "blocklist: unexpected reply");
        return -1;
    }
    block_clear(st);
    st->block = calloc(r->elements / 2 + 1, sizeof *st->block);
    if (!st->block) {
        freeReplyObject(r);
        snprintf(errstr, n, "out of memory");
        return -1;
    }
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        uint64_t h;
        redisReply *f = r->element[i], *l = r->element[i + 1];
        if (f->type != REDIS_REPLY_STRING || parse_hex64(f->str, f->len, &h) < 0) continue;
        st->block[st->n_block].hash = h;
        st->block[st->n_block].label = strdup(l->type == REDIS_REPLY_STRING ? l->str : "blocked");
        if (st->block[st->n_block].label) st->n_block++;
    }
    freeReplyObject(r);
    st->block_version = v;
    log_info("blocklist_loaded", "version=%lld hashes=%zu", v, st->n_block);
    return 0;
}

static int tag_init(const rt_env_t *env, void **state, char *errstr, size_t errstr_size) {
    tag_state_t *st = calloc(1, sizeof *st);
    if (!st) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    const config_t *c = env->config;
    snprintf(st->output_topic, sizeof st->output_topic, "%s",
             config_get(c, "tag.output", "poster-tags"));
    rt_key_for(env->group_id, "poster-embeddings", st->emb_key, sizeof st->emb_key);
    st->threshold = config_get_double(c, "tag.threshold", 0.5);
    st->max_labels = (int)config_get_int(c, "tag.max.labels", 5);
    st->n_colors = (int)config_get_int(c, "tag.colors", 3);
    st->distance = (int)config_get_int(c, "tag.moderation.distance", 8);
    st->store_embeddings = config_get_bool(c, "tag.embeddings", 1);
    const char *cls = config_get(c, "tag.classifier", "cnn");
    if (strcmp(cls, "cnn") != 0 && strcmp(cls, "svm") != 0) {
        snprintf(errstr, errstr_size, "tag.classifier must be cnn or svm, not %s", cls);
        tag_destroy(st);
        return -1;
    }
    st->use_svm = strcmp(cls, "svm") == 0;
    if (st->max_labels < 1) st->max_labels = 1;
    if (st->max_labels > TAG_MAX_LABELS) st->max_labels = TAG_MAX_LABELS;
    if (st->n_colors < 0) st->n_colors = 0;
    if (st->n_colors > 8) st->n_colors = 8;
    st->limits.max_bytes = (size_t)config_get_int(c, "tag.max.bytes", 33554432);
    st->limits.max_pixels = (uint64_t)config_get_int(c, "tag.max.pixels", 16777216);
    st->limits.max_side = (int)config_get_int(c, "tag.max.side", 16384);
    const codec_schema_t *s = codec_by_name(env->codec, "PosterTags");
    if (!s || codec_value_new(s, &st->out, errstr, errstr_size) < 0) {
        if (!s) snprintf(errstr, errstr_size, "schema PosterTags missing");
        tag_destroy(st);
        return -1;
    }
    st->out_schema = s;
    update_version(st);
    char err[256];
    /* Redis may be down at start: models and the blocklist come at the
     * next reload or batch. */
    if (poll_models(st, env->store, err, sizeof err) < 0)
        log_warn("tag_models", "not loaded yet: %s", err);
    if (!st->net) log_warn("tag_models", "no image model in Redis yet: posters get no labels");
    *state = st;
    return 0;
}

static int tag_reload(void *opaque, rt_ctx_t *ctx, char *errstr, size_t errstr_size) {
    tag_state_t *st = opaque;
    return poll_models(st, rt_store(ctx), errstr, errstr_size);
}

static int get_field(avro_value_t *rec, const char *name, const char **s, size_t *len) {
    avro_value_t f;
    if (avro_value_get_by_name(rec, name, &f, NULL) || avro_value_get_string(&f, s, len)) return -1;
    if (*len > 0 && (*s)[*len - 1] == 0) (*len)--; /* Avro C counts the NUL */
    return 0;
}

static int set_str(avro_value_t *rec, const char *name, const char *s) {
    avro_value_t f;
    if (avro_value_get_by_name(rec, name, &f, NULL)) return -1;
    return avro_value_set_string(&f, s);
}

/* "image/jpeg" or "image/png", ignoring case and parameters. */
static int content_type_ok(const char *ct, size_t len) {
    while (len && isspace((unsigned char)*ct)) ct++, len--;
    const char *semi = memchr(ct, ';', len);
    size_t n = semi ? (size_t)(semi - ct) : len;
    while (n && (isspace((unsigned char)ct[n - 1]) || ct[n - 1] == 0)) n--;
    return (n == 10 && strncasecmp(ct, "image/jpeg", 10) == 0) ||
           (n == 9 && strncasecmp(ct, "image/jpg", 9) == 0) ||
           (n == 9 && strncasecmp(ct, "image/png", 9) == 0);
}

typedef struct label_score {
    int cls;
    float p;
} label_score_t;

static int cmp_score(const void *a, const void *b) {
    float x = ((const label_score_t *)a)->p, y = ((const label_score_t *)b)->p;
    return x < y ? 1 : x > y ? -1 : 0;
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Classifies st->im; fills probs and, when a CNN ran, emb (normalized).
 * Returns the class count, 0 without a model, -1 with errstr. */
static int classify(tag_state_t *st, size_t *emb_dim) {
    *emb_dim = 0;
    st->probs_svm = 0;
    cnn_t *net = st->net;
    int svm_pixels = st->use_svm && st->svm && st->svm->features == SVM_PIXELS;
    if (net && !svm_pixels) {
        img_to_input(&st->im, net->in_c, net->in_h, net->in_w, st->input);
        const float *p = cnn_forward(net, st->input, 1, 0);
        memcpy(st->probs, p, (size_t)net->n_classes * sizeof(float));
        size_t dim = 0;
        const float *e = cnn_embedding(net, &dim);
        if (e) {
            double ss = 0;
            for (size_t i = 0; i < dim; i++) ss += (double)e[i] * e[i];
            float inv = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
            for (size_t i = 0; i < dim; i++) st->emb[i] = e[i] * inv;
            *emb_dim = dim;
        }
        if (!(st->use_svm && st->svm)) return net->n_classes;
        if ((size_t)st->svm->dim != dim || !e) return net->n_classes; /* mismatch: CNN labels */
        /* the SVM was trained on L2-normalized embeddings (cli_image.c) */
        svm_predict(st->svm, st->emb, st->probs);
        st->probs_svm = 1;
        return st->svm->n_classes;
    }
    if (svm_pixels) {
        svm_t *m = st->svm;
        if ((size_t)m->in_c * m->in_h * m->in_w != (size_t)m->dim) return 0;
        img_to_input(&st->im, m->in_c, m->in_h, m->in_w, st->input);
        svm_predict(m, st->input, st->probs);
        st->probs_svm = 1;
        return m->n_classes;
    }
    return 0;
}

static const char *class_label(const tag_state_t *st, int c) {
    if (st->probs_svm) return st->svm->labels[c];
    return st->net->labels[c];
}

static int tag_process(void *opaque, rt_ctx_t *ctx, const rt_batch_t *batch, char *errstr,
                       size_t errstr_size) {
    tag_state_t *st = opaque;
    if (poll_blocklist(st, rt_store(ctx), errstr, errstr_size) < 0) return -1;
    if (st->version_dirty) {
        rt_set_model_version(ctx, st->version);
        st->version_dirty = 0;
    }
    int min_side = 32;
    if (st->net && st->net->in_h > min_side) min_side = st->net->in_h;
    if (st->net && st->net->in_w > min_side) min_side = st->net->in_w;
    for (size_t ri = 0; ri < batch->count; ri++) {
        const rt_record_t *r = &batch->records[ri];
        avro_value_t *v = r->avro, *o = &st->out, f, arr, el, mod, br, src;
        const char *item, *poster, *ct;
        size_t item_len, poster_len, ct_len;
        const void *bytes;
        size_t n_bytes;
        if (get_field(v, "item_id", &item, &item_len) ||
            get_field(v, "poster_id", &poster, &poster_len) ||
            get_field(v, "content_type", &ct, &ct_len) ||
            avro_value_get_by_name(v, "image", &f, NULL) ||
            avro_value_get_bytes(&f, &bytes, &n_bytes)) {
            rt_fail(ctx, r, "process", "Poster record lacks a field");
            continue;
        }
        if (!content_type_ok(ct, ct_len)) {
            char why[160];
            snprintf(why, sizeof why, "unsupported content type '%.64s' (image/jpeg or image/png)",
                     ct);
            rt_fail(ctx, r, "image", why);
            continue;
        }
        char why[256];
        if (img_decode(bytes, n_bytes, &st->limits, min_side, min_side, &st->im, why, sizeof why) <
            0) {
            rt_fail(ctx, r, "image", why);
            continue;
        }
        uint32_t colors[8];
        int nc = img_dominant_colors(&st->im, st->n_colors, colors);
        uint64_t ph = img_phash(&st->im);
        int best_d = -1;
        const char *match = NULL;
        for (size_t b = 0; b < st->n_block; b++) {
            int d = img_hamming(ph, st->block[b].hash);
            if (best_d < 0 || d < best_d) best_d = d, match = st->block[b].label;
        }
        int blocked = best_d >= 0 && best_d <= st->distance;
        size_t emb_dim = 0;
        int k = classify(st, &emb_dim);
        label_score_t ls[TAG_MAX_LABELS];
        int nl = 0;
        for (int c = 0; c < k; c++) {
            if (st->probs[c] < st->threshold) continue;
            label_score_t cand = {c, st->probs[c]};
            if (nl < st->max_labels)
                ls[nl++] = cand;
            else if (cand.p > ls[nl - 1].p)
                ls[nl - 1] = cand;
            qsort(ls, (size_t)nl, sizeof ls[0], cmp_score);
        }
        char hex[17], col[8];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)ph);
        int bad = avro_value_reset(o) || set_str(o, "item_id", item) ||
                  set_str(o, "poster_id", poster) ||
                  avro_value_get_by_name(o, "labels", &arr, NULL);
        for (int i = 0; !bad && i < nl; i++)
            bad = avro_value_append(&arr, &el, NULL) ||
                  set_str(&el, "label", class_label(st, ls[i].cls)) ||
                  avro_value_get_by_name(&el, "confidence", &f, NULL) ||
                  avro_value_set_float(&f, ls[i].p);
        bad = bad || avro_value_get_by_name(o, "width", &f, NULL) ||
              avro_value_set_int(&f, st->im.src_w) ||
              avro_value_get_by_name(o, "height", &f, NULL) ||
              avro_value_set_int(&f, st->im.src_h) ||
              avro_value_get_by_name(o, "dominant_colors", &arr, NULL);
        for (int i = 0; !bad && i < nc; i++) {
            snprintf(col, sizeof col, "#%06x", (unsigned)colors[i]);
            bad = avro_value_append(&arr, &el, NULL) || avro_value_set_string(&el, col);
        }
        bad = bad || set_str(o, "phash", hex) ||
              avro_value_get_by_name(o, "moderation", &mod, NULL) ||
              avro_value_get_by_name(&mod, "blocked", &f, NULL) ||
              avro_value_set_boolean(&f, blocked) ||
              avro_value_get_by_name(&mod, "matched_label", &f, NULL) ||
              (blocked ? avro_value_set_branch(&f, 1, &br) || avro_value_set_string(&br, match)
                       : avro_value_set_branch(&f, 0, &br) || avro_value_set_null(&br)) ||
              avro_value_get_by_name(&mod, "distance", &f, NULL) ||
              avro_value_set_int(&f, best_d) ||
              set_str(o, "model_version", rt_model_version(ctx)) ||
              avro_value_get_by_name(o, "source", &src, NULL) || set_str(&src, "topic", r->topic) ||
              avro_value_get_by_name(&src, "partition", &f, NULL) ||
              avro_value_set_int(&f, r->partition) ||
              avro_value_get_by_name(&src, "offset", &f, NULL) ||
              avro_value_set_long(&f, r->offset) || avro_value_get_by_name(o, "ts", &f, NULL) ||
              avro_value_set_long(&f, now_ms());
        if (bad) {
            rt_fail(ctx, r, "process", avro_strerror());
            continue;
        }
        if (rt_emit(ctx, st->output_topic, st->out_schema, o, errstr, errstr_size) < 0) {
            rt_fail(ctx, r, "process", errstr);
            continue;
        }
        if (st->store_embeddings && emb_dim > 0) {
            const char *av[4] = {"HSET", st->emb_key, item, (const char *)st->emb};
            size_t al[4] = {4, strlen(st->emb_key), item_len, emb_dim * sizeof(float)};
            if (store_batch_add(rt_state(ctx), 4, av, al) < 0) {
                snprintf(errstr, errstr_size, "out of memory");
                return -1;
            }
        }
    }
    return 0;
}

const worker_def_t tag_worker = {
    .name = "tag",
    .description = "poster labels (CNN/SVM), colours, perceptual hash, moderation, embeddings",
    .inputs = tag_inputs,
    .config = tag_keys,
    .init = tag_init,
    .process = tag_process,
    .reload = tag_reload,
    .destroy = tag_destroy,
};

/* ------------------------------------------------------------------ */
/* reel moderation                                                      */

static void moderation_usage(FILE *f) {
    fprintf(f, "usage: reel moderation add FILE... --label L   block images like FILE\n"
               "       reel moderation list                   hash and label per line\n"
               "       reel moderation remove HASH|FILE...\n"
               "       reel moderation hash FILE...           print the perceptual hash\n"
               "options: -c FILE, -X key=value (redis.url selects the Redis)\n"
               "Running tag workers pick up changes at their next batch.\n");
}

static int file_phash(const char *path, uint64_t *h, char *err, size_t n) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, n, "%s: %s", path, strerror(errno));
        return -1;
    }
    img_limits_t lim = img_default_limits();
    unsigned char *buf = malloc(lim.max_bytes + 1);
    size_t len = buf ? fread(buf, 1, lim.max_bytes + 1, f) : 0;
    fclose(f);
    img_t im = {0};
    char why[256];
    int rc = -1;
    if (!buf)
        snprintf(err, n, "out of memory");
    else if (img_decode(buf, len, &lim, 32, 32, &im, why, sizeof why) < 0)
        snprintf(err, n, "%s: %s", path, why);
    else {
        *h = img_phash(&im);
        rc = 0;
    }
    img_free(&im);
    free(buf);
    return rc;
}

int cmd_moderation(int argc, char **argv) {
    const char *overrides[64], *files[256];
    int n_files = 0;
    cli_opts_t opts = {NULL, overrides, 0};
    const char *label = NULL, *verb = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
            opts.config_file = argv[++i];
        else if (strcmp(argv[i], "-X") == 0 && i + 1 < argc) {
            if (opts.n_overrides < 64) overrides[opts.n_overrides++] = argv[++i];
        } else if (strcmp(argv[i], "--label") == 0 && i + 1 < argc)
            label = argv[++i];
        else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            moderation_usage(stdout);
            return 0;
        } else if (!verb)
            verb = argv[i];
        else if (n_files < 256)
            files[n_files++] = argv[i];
    }
    if (!verb || (strcmp(verb, "add") && strcmp(verb, "list") && strcmp(verb, "remove") &&
                  strcmp(verb, "hash"))) {
        moderation_usage(stderr);
        return 2;
    }
    char err[512];
    if (strcmp(verb, "hash") == 0) {
        int rc = 0;
        for (int i = 0; i < n_files; i++) {
            uint64_t h;
            if (file_phash(files[i], &h, err, sizeof err) < 0) {
                fprintf(stderr, "reel moderation: %s\n", err);
                rc = 1;
            } else {
                printf("%016llx %s\n", (unsigned long long)h, files[i]);
            }
        }
        return rc;
    }
    if (strcmp(verb, "add") == 0 && (!label || !*label || n_files == 0)) {
        fprintf(stderr, "reel moderation add: FILE... --label L\n");
        return 2;
    }
    config_t *config = cli_config(&opts);
    if (!config) return 2;
    store_t *s =
        store_new(config_get(config, "redis.url", "redis://127.0.0.1:6379"), err, sizeof err);
    config_destroy(config);
    if (!s) {
        fprintf(stderr, "reel moderation: %s\n", err);
        return 1;
    }
    int rc = 0;
    if (strcmp(verb, "list") == 0) {
        redisReply *r = store_command(s, err, sizeof err, "HGETALL %s", TAG_BLOCKLIST_KEY);
        if (!r) {
            fprintf(stderr, "reel moderation: %s\n", err);
            rc = 1;
        } else {
            for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2)
                printf("%s %s\n", r->element[i]->str, r->element[i + 1]->str);
            freeReplyObject(r);
        }
    }
    for (int i = 0; rc == 0 && i < n_files; i++) {
        uint64_t h;
        const char *a = files[i];
        if (strcmp(verb, "remove") == 0 && parse_hex64(a, strlen(a), &h) == 0) {
            /* a hash as printed by list */
        } else if (file_phash(a, &h, err, sizeof err) < 0) {
            fprintf(stderr, "reel moderation: %s\n", err);
            rc = 1;
            break;
        }
        char hex[17];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
        redisReply *r =
            strcmp(verb, "add") == 0
                ? store_command(s, err, sizeof err, "HSET %s %s %s", TAG_BLOCKLIST_KEY, hex, label)
                : store_command(s, err, sizeof err, "HDEL %s %s", TAG_BLOCKLIST_KEY, hex);
        if (!r) {
            fprintf(stderr, "reel moderation: %s\n", err);
            rc = 1;
            break;
        }
        long long changed = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
        freeReplyObject(r);
        r = store_command(s, err, sizeof err, "INCR %s", TAG_BLOCKLIST_VERSION_KEY);
        if (r) freeReplyObject(r);
        if (strcmp(verb, "add") == 0)
            printf("added %s %s (%s)\n", hex, label, a);
        else
            printf("%s %s\n", changed ? "removed" : "not listed", hex);
    }
    store_destroy(s);
    return rc;
}
