/* sentiment.c: the sentiment worker.
 *
 * reviews (Review) -> review-sentiment (ReviewSentiment): tokenize, score
 * with the current "sentiment" model (bag of words, LSTM or GRU; see
 * kernels/text/sentiment.h), label with a neutral band, and keep per-item
 * aggregates in Redis for the recommender's content features:
 *   reel:{<group>}:sentiment:item:<item_id>  hash count, sum (of scores),
 *                                            negative, neutral, positive
 * (mean score = sum / count). Models come from the registry
 * (pipeline/models.h) and are swapped in reload() without a restart.
 * When an "embeddings" model with output vectors is in Redis, the worker
 * keeps training it (skip-gram or CBOW updates) on the review text it sees
 * and pushes a new version every sentiment.embeddings.publish.interval.ms. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/text/sentiment.h"
#include "kernels/text/word2vec.h"
#include "pipeline/log.h"
#include "pipeline/models.h"
#include "workers/workers.h"

static const char *const sentiment_inputs[] = {"reviews", NULL};

static const config_key_t sentiment_keys[] = {
    {"sentiment.topics", "reviews", "Topics of Review records (comma-separated)."},
    {"sentiment.output", "review-sentiment", "Topic of the ReviewSentiment records."},
    {"sentiment.neutral.band", "0.2",
     "Scores (2 P(positive) - 1) within +-band are labelled neutral."},
    {"sentiment.model.file", "",
     "A model file to serve until a \"sentiment\" model is pushed to Redis (optional)."},
    {"sentiment.reload.interval.ms", "10000", "How often to look for new model versions."},
    {"sentiment.embeddings.learn", "1",
     "Keep training the current \"embeddings\" model on review text (1/0)."},
    {"sentiment.embeddings.alpha", "0.005", "Learning rate of the online embedding updates."},
    {"sentiment.embeddings.publish.interval.ms", "600000",
     "Push the updated embeddings as a new version this often (0: never)."},
    {NULL, NULL, NULL},
};

typedef struct sentiment_state {
    const codec_schema_t *out_schema;
    avro_value_t out;
    char output_topic[256];
    char group[256];
    double band;
    sent_model_t *model;
    int64_t model_version;  /* served; 0: none from Redis */
    int64_t polled_version; /* last version fetched, served or refused */
    char version_str[64];
    /* online embeddings */
    w2v_t *emb;
    int64_t emb_version;
    int learn;
    float alpha;
    int64_t publish_ms, last_publish_ms;
    uint64_t updates; /* sentences since the last publish */
    uint64_t rng;
    char *toks;
    int32_t *ids;
    char key[1024];
} sentiment_state_t;

#define EMB_MAX_TOKENS 256

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sentiment_destroy(void *opaque) {
    sentiment_state_t *st = opaque;
    if (!st) return;
    if (st->out_schema) avro_value_decref(&st->out);
    sent_destroy(st->model);
    w2v_destroy(st->emb);
    free(st->toks);
    free(st->ids);
    free(st);
}

static void set_version(sentiment_state_t *st, rt_ctx_t *ctx) {
    if (st->model_version > 0)
        snprintf(st->version_str, sizeof st->version_str, "sentiment-%s-v%lld",
                 sent_kind_name(sent_params(st->model)->kind), (long long)st->model_version);
    else
        snprintf(st->version_str, sizeof st->version_str, "sentiment-%s-file",
                 sent_kind_name(sent_params(st->model)->kind));
    if (ctx) rt_set_model_version(ctx, st->version_str);
}

/* Picks up new "sentiment" and "embeddings" versions. Returns 1 when the
 * sentiment model changed, 0 when not, -1 with errstr. */
static int poll_models(sentiment_state_t *st, store_t *store, char *errstr, size_t errstr_size) {
    void *data = NULL;
    size_t len = 0;
    int changed = 0;
    int64_t v = st->polled_version;
    int rc = models_poll(store, "sentiment", &v, &data, &len, errstr, errstr_size);
    if (rc < 0) return -1;
    if (rc == 1) {
        char err[256];
        sent_model_t *m = sent_load_mem(data, len, err, sizeof err);
        free(data);
        /* Not fetched again until another version is pushed. */
        st->polled_version = v;
        if (!m) {
            snprintf(errstr, errstr_size, "sentiment model v%lld refused: %s", (long long)v, err);
            return -1;
        }
        sent_destroy(st->model);
        st->model = m;
        st->model_version = v;
        changed = 1;
        log_info("model_loaded", "kind=sentiment version=%lld model=%s", (long long)v,
                 sent_kind_name(sent_params(m)->kind));
    }
    v = st->emb_version;
    rc = models_poll(store, "embeddings", &v, &data, &len, errstr, errstr_size);
    if (rc < 0) return -1;
    if (rc == 1) {
        char err[256];
        w2v_t *e = w2v_load_mem(data, len, err, sizeof err);
        free(data);
        if (!e) {
            /* A bad embeddings blob must not stop sentiment serving. */
            log_warn("model_rejected", "kind=embeddings version=%lld: %s", (long long)v, err);
            st->emb_version = v;
        } else {
            w2v_destroy(st->emb);
            st->emb = e;
            st->emb_version = v;
            st->updates = 0;
            log_info("model_loaded", "kind=embeddings version=%lld words=%u dim=%d trainable=%d",
                     (long long)v, e->vocab->n, e->dim, e->out != NULL);
        }
    }
    return changed;
}

static int sentiment_init(const rt_env_t *env, void **state, char *errstr, size_t errstr_size) {
    sentiment_state_t *st = calloc(1, sizeof *st);
    if (!st) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    snprintf(st->output_topic, sizeof st->output_topic, "%s",
             config_get(env->config, "sentiment.output", "review-sentiment"));
    snprintf(st->group, sizeof st->group, "%s", env->group_id);
    st->band = atof(config_get(env->config, "sentiment.neutral.band", "0.2"));
    if (st->band < 0 || st->band >= 1) {
        snprintf(errstr, errstr_size, "sentiment.neutral.band must be in [0, 1)");
        goto fail;
    }
    st->learn = (int)config_get_int(env->config, "sentiment.embeddings.learn", 1);
    st->alpha = (float)atof(config_get(env->config, "sentiment.embeddings.alpha", "0.005"));
    st->publish_ms =
        config_get_int(env->config, "sentiment.embeddings.publish.interval.ms", 600000);
    st->last_publish_ms = now_ms();
    st->rng = 0x9E3779B97F4A7C15ull;
    st->toks = malloc((size_t)EMB_MAX_TOKENS * TOK_STRIDE);
    st->ids = malloc(EMB_MAX_TOKENS * sizeof *st->ids);
    if (!st->toks || !st->ids) {
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }
    const codec_schema_t *s = codec_by_name(env->codec, "ReviewSentiment");
    if (!s) {
        snprintf(errstr, errstr_size, "schema ReviewSentiment missing");
        goto fail;
    }
    if (codec_value_new(s, &st->out, errstr, errstr_size) < 0) goto fail;
    st->out_schema = s;
    char err[512];
    if (poll_models(st, env->store, err, sizeof err) < 0)
        log_warn("model_poll_failed", "%s (retrying in process and reload)", err);
    const char *file = config_get(env->config, "sentiment.model.file", "");
    if (!st->model && file && *file) {
        st->model = sent_load(file, errstr, errstr_size);
        if (!st->model) goto fail;
        log_info("model_loaded", "kind=sentiment file=%s", file);
    }
    if (st->model) set_version(st, NULL);
    *state = st;
    return 0;
fail:
    sentiment_destroy(st);
    return -1;
}

static int sentiment_reload(void *opaque, rt_ctx_t *ctx, char *errstr, size_t errstr_size) {
    sentiment_state_t *st = opaque;
    int rc = poll_models(st, rt_store(ctx), errstr, errstr_size);
    if (rc < 0) return -1;
    if (st->model) set_version(st, ctx);
    return 0;
}

static int set_string(avro_value_t *rec, const char *name, const char *s, size_t len) {
    avro_value_t f;
    if (avro_value_get_by_name(rec, name, &f, NULL)) return -1;
    return avro_value_set_string_len(&f, s, len + 1);
}

static int get_string(avro_value_t *rec, const char *name, const char **s, size_t *len) {
    avro_value_t f;
    if (avro_value_get_by_name(rec, name, &f, NULL) || avro_value_get_string(&f, s, len)) return -1;
    if (*len > 0) (*len)--; /* Avro C counts the NUL */
    return 0;
}

/* Online embedding updates on one review, and a periodic publish. */
static void learn_embeddings(sentiment_state_t *st, const char *text, size_t len) {
    if (!st->learn || !st->emb || !st->emb->out) return;
    size_t nt = tok_split(text, len, st->toks, EMB_MAX_TOKENS, NULL);
    size_t n = vocab_ids(st->emb->vocab, st->toks, nt, -1, st->ids);
    w2v_params_t p = w2v_defaults(W2V_SKIPGRAM);
    p.dim = st->emb->dim;
    if (w2v_update(st->emb, &p, st->ids, n, st->alpha, &st->rng) == 0 && n > 1) st->updates++;
}

static void publish_embeddings(sentiment_state_t *st, rt_ctx_t *ctx) {
    if (!st->emb || !st->updates || st->publish_ms <= 0 ||
        now_ms() - st->last_publish_ms < st->publish_ms)
        return;
    st->last_publish_ms = now_ms();
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return;
    int bad = w2v_write(st->emb, f, 0, 1) < 0;
    fclose(f);
    char err[512];
    int64_t v = 0;
    if (!bad && models_push(rt_store(ctx), "embeddings", buf, len, "sentiment-online", 1, &v, err,
                            sizeof err) == 0) {
        /* Our own push: nothing to reload. */
        st->emb_version = v;
        log_info("embeddings_published", "version=%lld sentences=%llu", (long long)v,
                 (unsigned long long)st->updates);
        st->updates = 0;
    } else {
        log_warn("embeddings_publish_failed", "%s", bad ? "serialization failed" : err);
    }
    free(buf);
}

static int sentiment_process(void *opaque, rt_ctx_t *ctx, const rt_batch_t *batch, char *errstr,
                             size_t errstr_size) {
    sentiment_state_t *st = opaque;
    if (!st->model) {
        /* Maybe one was pushed since: look now rather than at the next reload. */
        if (poll_models(st, rt_store(ctx), errstr, errstr_size) < 0) return -1;
        if (!st->model) {
            snprintf(errstr, errstr_size,
                     "no sentiment model yet: push one with `reel model push FILE` (waiting)");
            return -1;
        }
    }
    set_version(st, ctx);
    avro_value_t f, src;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (set_string(&st->out, "model_version", st->version_str, strlen(st->version_str)) ||
        avro_value_get_by_name(&st->out, "source", &src, NULL) ||
        set_string(&src, "topic", batch->topic, strlen(batch->topic)) ||
        avro_value_get_by_name(&src, "partition", &f, NULL) ||
        avro_value_set_int(&f, batch->partition) ||
        avro_value_get_by_name(&st->out, "ts", &f, NULL) ||
        avro_value_set_long(&f, (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000)) {
        snprintf(errstr, errstr_size, "building ReviewSentiment: %s", avro_strerror());
        return -1;
    }
    for (size_t i = 0; i < batch->count; i++) {
        const rt_record_t *r = &batch->records[i];
        const char *review_id, *item_id, *text;
        size_t rl, il, tl;
        if (get_string(r->avro, "review_id", &review_id, &rl) ||
            get_string(r->avro, "item_id", &item_id, &il) ||
            get_string(r->avro, "text", &text, &tl)) {
            rt_fail(ctx, r, "process", "Review lacks review_id, item_id or text");
            continue;
        }
        if (il == 0 || memchr(item_id, 0, il)) {
            rt_fail(ctx, r, "process", "item_id is empty or has a NUL byte");
            continue;
        }
        /* A text with no token (empty, only spaces or quotes) has no
         * sentiment to report: the model would answer its prior. */
        if (tok_split(text, tl, st->toks, 1, NULL) == 0) {
            rt_fail(ctx, r, "process", "review text has no words");
            continue;
        }
        unsigned flags = 0;
        float p = sent_predict(st->model, text, tl, &flags);
        float score = 2 * p - 1;
        int label = score > st->band ? 2 : score < -st->band ? 0 : 1;
        float prob = label == 2 ? p : label == 0 ? 1 - p : 1 - (score < 0 ? -score : score);
        if (set_string(&st->out, "review_id", review_id, rl) ||
            set_string(&st->out, "item_id", item_id, il) ||
            avro_value_get_by_name(&st->out, "label", &f, NULL) || avro_value_set_enum(&f, label) ||
            avro_value_get_by_name(&st->out, "score", &f, NULL) ||
            avro_value_set_float(&f, score) ||
            avro_value_get_by_name(&st->out, "probability", &f, NULL) ||
            avro_value_set_float(&f, prob) ||
            avro_value_get_by_name(&st->out, "source", &src, NULL) ||
            avro_value_get_by_name(&src, "offset", &f, NULL) ||
            avro_value_set_long(&f, r->offset)) {
            rt_fail(ctx, r, "process", avro_strerror());
            continue;
        }
        if (rt_emit(ctx, st->output_topic, st->out_schema, &st->out, errstr, errstr_size) < 0) {
            rt_fail(ctx, r, "process", errstr);
            continue;
        }
        char suffix[600], num[32];
        snprintf(suffix, sizeof suffix, "sentiment:item:%.*s", (int)(il > 500 ? 500 : il), item_id);
        rt_key(ctx, suffix, st->key, sizeof st->key);
        snprintf(num, sizeof num, "%.6f", score);
        static const char *const label_names[] = {"negative", "neutral", "positive"};
        store_batch_t *b = rt_state(ctx);
        if (store_batch_addv(b, 4, "HINCRBY", st->key, "count", "1") < 0 ||
            store_batch_addv(b, 4, "HINCRBYFLOAT", st->key, "sum", num) < 0 ||
            store_batch_addv(b, 4, "HINCRBY", st->key, label_names[label], "1") < 0) {
            snprintf(errstr, errstr_size, "out of memory");
            return -1;
        }
        if (flags & TOK_LATIN1)
            log_debug("review_latin1", "review_id=%.*s read as Latin-1", (int)(rl > 64 ? 64 : rl),
                      review_id);
        learn_embeddings(st, text, tl);
    }
    publish_embeddings(st, ctx);
    return 0;
}

const worker_def_t sentiment_worker = {
    .name = "sentiment",
    .description = "review sentiment (bag of words, LSTM, GRU), per-item aggregates, embeddings",
    .inputs = sentiment_inputs,
    .config = sentiment_keys,
    .init = sentiment_init,
    .process = sentiment_process,
    .reload = sentiment_reload,
    .destroy = sentiment_destroy,
};
