/* count.c: the runtime's built-in counting pipeline.
 *
 * Counts input records per key in the Redis hash reel:{<group>}:counts and
 * emits one CountUpdate per input record, so tests and the demo can check
 * end to end that no record is lost and none is counted twice. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pipeline/log.h"
#include "workers/workers.h"

static const char *const count_inputs[] = {"viewing-events", NULL};

static const config_key_t count_keys[] = {
    {"count.topics", "viewing-events", "Topics to count (comma-separated)."},
    {"count.output", "counts", "Topic of the CountUpdate records."},
    {NULL, NULL, NULL},
};

typedef struct count_agg {
    char *key; /* NULL: empty slot */
    size_t key_len;
    long long n;
} count_agg_t;

typedef struct count_state {
    const codec_schema_t *out_schema;
    avro_value_t out;
    char output_topic[256];
    char counts_key[512];
    /* Batch-local aggregation so one batch sends one HINCRBY per key. */
    count_agg_t *agg;
    size_t agg_cap;
    char *key_buf; /* the current record's key, NUL-terminated for Avro C */
    size_t key_cap;
} count_state_t;

static void count_destroy(void *opaque) {
    count_state_t *st = opaque;
    if (!st) return;
    if (st->out_schema) avro_value_decref(&st->out);
    for (size_t i = 0; i < st->agg_cap; i++) free(st->agg[i].key);
    free(st->agg);
    free(st->key_buf);
    free(st);
}

static int count_init(const rt_env_t *env, void **state, char *errstr, size_t errstr_size) {
    count_state_t *st = calloc(1, sizeof *st);
    if (!st) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    snprintf(st->output_topic, sizeof st->output_topic, "%s",
             config_get(env->config, "count.output", "counts"));
    rt_key_for(env->group_id, "counts", st->counts_key, sizeof st->counts_key);
    const codec_schema_t *s = codec_by_name(env->codec, "CountUpdate");
    if (!s) {
        snprintf(errstr, errstr_size, "schema CountUpdate missing");
        count_destroy(st);
        return -1;
    }
    if (codec_value_new(s, &st->out, errstr, errstr_size) < 0) {
        count_destroy(st);
        return -1;
    }
    st->out_schema = s;
    *state = st;
    return 0;
}

static uint64_t hash_bytes(const void *p, size_t n) {
    const unsigned char *b = p;
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static int agg_add(count_state_t *st, const void *key, size_t key_len) {
    size_t i = hash_bytes(key, key_len) & (st->agg_cap - 1);
    while (st->agg[i].key) {
        if (st->agg[i].key_len == key_len && memcmp(st->agg[i].key, key, key_len) == 0) {
            st->agg[i].n++;
            return 0;
        }
        i = (i + 1) & (st->agg_cap - 1);
    }
    st->agg[i].key = malloc(key_len + 1);
    if (!st->agg[i].key) return -1;
    memcpy(st->agg[i].key, key, key_len);
    st->agg[i].key[key_len] = 0;
    st->agg[i].key_len = key_len;
    st->agg[i].n = 1;
    return 0;
}

static int set_field_string(avro_value_t *rec, const char *name, const char *s, size_t len) {
    avro_value_t f;
    if (avro_value_get_by_name(rec, name, &f, NULL)) return -1;
    return avro_value_set_string_len(&f, s, len + 1);
}

/* Fields shared by every output of a batch (one partition, one moment):
 * set once, since the output value is reused record after record. */
static int fill_batch_fields(count_state_t *st, rt_ctx_t *ctx, const rt_batch_t *batch) {
    avro_value_t f, src;
    const char *ver = rt_model_version(ctx);
    if (avro_value_get_by_name(&st->out, "increment", &f, NULL) || avro_value_set_long(&f, 1))
        return -1;
    if (set_field_string(&st->out, "model_version", ver, strlen(ver))) return -1;
    if (avro_value_get_by_name(&st->out, "source", &src, NULL)) return -1;
    if (set_field_string(&src, "topic", batch->topic, strlen(batch->topic))) return -1;
    if (avro_value_get_by_name(&src, "partition", &f, NULL) ||
        avro_value_set_int(&f, batch->partition))
        return -1;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (avro_value_get_by_name(&st->out, "ts", &f, NULL) ||
        avro_value_set_long(&f, (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000))
        return -1;
    return 0;
}

/* The fields of one record's output: its key and source offset. Avro C
 * wants NUL-terminated strings, so the key is copied into a reused buffer
 * (keeping any byte, NUL included, that the HINCRBY field keeps). */
static int fill_record_fields(count_state_t *st, const rt_record_t *r) {
    avro_value_t f, src;
    if (r->key_len + 1 > st->key_cap) {
        char *k = realloc(st->key_buf, r->key_len + 1);
        if (!k) return -1;
        st->key_buf = k;
        st->key_cap = r->key_len + 1;
    }
    memcpy(st->key_buf, r->key, r->key_len);
    st->key_buf[r->key_len] = 0;
    if (set_field_string(&st->out, "key", st->key_buf, r->key_len)) return -1;
    if (avro_value_get_by_name(&st->out, "source", &src, NULL) ||
        avro_value_get_by_name(&src, "offset", &f, NULL) || avro_value_set_long(&f, r->offset))
        return -1;
    return 0;
}

static int count_process(void *opaque, rt_ctx_t *ctx, const rt_batch_t *batch, char *errstr,
                         size_t errstr_size) {
    count_state_t *st = opaque;
    size_t need = 16;
    while (need < batch->count * 2) need *= 2;
    if (need > st->agg_cap) {
        count_agg_t *a = calloc(need, sizeof *a);
        if (!a) {
            snprintf(errstr, errstr_size, "out of memory");
            return -1;
        }
        free(st->agg);
        st->agg = a;
        st->agg_cap = need;
    }
    if (strcmp(rt_model_version(ctx), "none") == 0)
        rt_set_model_version(ctx, "count-" REEL_VERSION);

    if (fill_batch_fields(st, ctx, batch) < 0) {
        snprintf(errstr, errstr_size, "building CountUpdate: %s", avro_strerror());
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; i < batch->count; i++) {
        const rt_record_t *r = &batch->records[i];
        if (!r->key || r->key_len == 0) {
            rt_fail(ctx, r, "process", "record has no key to count by");
            continue;
        }
        if (fill_record_fields(st, r) < 0) {
            rt_fail(ctx, r, "process", avro_strerror());
            continue;
        }
        /* An output that cannot be encoded or queued (a key that is not
         * UTF-8, say) would fail the same way on every retry: the record
         * goes to the DLQ instead of stalling its partition. */
        if (rt_emit(ctx, st->output_topic, st->out_schema, &st->out, errstr, errstr_size) < 0) {
            rt_fail(ctx, r, "process", errstr);
            continue;
        }
        if (agg_add(st, r->key, r->key_len) < 0) {
            snprintf(errstr, errstr_size, "out of memory");
            rc = -1;
            break;
        }
    }
    char num[32];
    for (size_t i = 0; i < st->agg_cap; i++) {
        if (!st->agg[i].key) continue;
        if (rc == 0) {
            snprintf(num, sizeof num, "%lld", st->agg[i].n);
            if (store_batch_addv(rt_state(ctx), 4, "HINCRBY", st->counts_key, st->agg[i].key, num) <
                0) {
                snprintf(errstr, errstr_size, "out of memory");
                rc = -1;
            }
        }
        free(st->agg[i].key);
        st->agg[i].key = NULL;
    }
    return rc;
}

const worker_def_t count_worker = {
    .name = "count",
    .description = "built-in counting pipeline: records per key in Redis, one CountUpdate each",
    .inputs = count_inputs,
    .config = count_keys,
    .init = count_init,
    .process = count_process,
    .reload = NULL,
    .destroy = count_destroy,
};
