/* runtime.c: consumer group, batching, DLQ, producing and exactly-once
 * commits for every worker. See runtime.h for the delivery contract. */
#include "pipeline/runtime.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pipeline/log.h"

const config_key_t rt_config_keys[] = {
    {"kafka.bootstrap.servers", "localhost:9092",
     "Kafka brokers. Every kafka.* key is passed to librdkafka without the prefix; "
     "kafka.consumer.* and kafka.producer.* reach only that client."},
    {"group.id", "reel", "Consumer group prefix: worker W joins group <group.id>-W."},
    {"redis.url", "redis://127.0.0.1:6379",
     "redis://[user:password@]host[:port][/db] or unix:///path/to/socket."},
    {"metrics.port", "9464", "Port of /metrics and /healthz (0: any free port, -1: off)."},
    {"batch.max.records", "2000", "Most records collected into one batch."},
    {"batch.max.ms", "100", "Longest time spent collecting one batch."},
    {"max.record.bytes", "8388608", "Larger records go to the DLQ without being decoded."},
    {"auto.offset.reset", "earliest",
     "Where a partition starts when Redis holds no offset for it: earliest or latest."},
    {"batch.delivery.timeout.ms", "120000",
     "How long outputs may wait for the brokers before a batch is retried."},
    {"stats.interval.ms", "5000", "How often consumer lag is read from librdkafka statistics."},
    {"log.level", "info", "debug, info, warn, error or off."},
    {NULL, NULL, NULL},
};

static volatile sig_atomic_t rt_stop_flag;

void rt_stop(void) {
    rt_stop_flag = 1;
}
int rt_stopping(void) {
    return rt_stop_flag != 0;
}
void rt_stop_reset(void) {
    rt_stop_flag = 0;
}

static void rt_on_signal(int sig) {
    (void)sig;
    rt_stop_flag = 1;
}

void rt_install_signal_handlers(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = rt_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR && !rt_stopping()) {
    }
}

/* Position of one assigned partition: the next offset Redis has applied,
 * so messages below it (already applied) are dropped on arrival. */
typedef struct rt_partition {
    char *topic;
    int32_t partition;
    int64_t next_offset; /* -1: unknown (Redis held none) */
    int active;
} rt_partition_t;

struct rt_ctx {
    const worker_def_t *def;
    void *wstate;
    config_t *config;
    metrics_t *metrics;
    codec_t *codec;
    store_t *store;
    store_batch_t *state;
    rd_kafka_t *consumer;
    rd_kafka_t *producer;
    char group_id[256];
    char model_version[128];
    char labels[300]; /* worker="..." */

    const char **inputs;
    size_t n_inputs;
    const codec_schema_t **input_schemas;

    /* Collected messages, in arrival order. */
    rd_kafka_message_t **msgs;
    size_t n_msgs;
    size_t batch_max;
    int batch_ms;
    size_t max_record_bytes;
    int64_t delivery_timeout_ms;
    int reset_latest;

    /* The batch being processed: one decoded value per slot and input. */
    avro_value_t *slot_values; /* [batch_max * n_inputs] */
    unsigned char *slot_ready;
    rt_record_t *records;
    rd_kafka_message_t **record_msgs;
    unsigned char *record_failed;
    size_t n_records;

    rt_partition_t *parts;
    size_t n_parts;
    size_t cap_parts;

    codec_buf_t enc;
    /* Delivery reports of the current batch. */
    int64_t delivery_errors;
    char delivery_error[256];
    rd_kafka_resp_err_t produce_err; /* of the last produce() */
    /* Sources whose DLQ copy the producer or a broker refused as too large
     * (a ring): their next copy is truncated, so that the batch can finish
     * instead of being retried forever. */
    struct {
        char topic[200];
        int32_t partition;
        int64_t offset;
    } too_large[16];
    size_t n_too_large;
    int64_t emitted;
    /* Outputs per topic since the last flush into the metrics: counting
     * here keeps label formatting out of the per-record path. */
    struct {
        char topic[200];
        int64_t n;
    } out_counts[8];
    size_t n_out_counts;

    int64_t last_reload_ms;
    int64_t reload_interval_ms;
    int fatal;
    char fatal_reason[512];
};

/* ---- small helpers ---- */

const char *rt_key_for(const char *group_id, const char *suffix, char *buf, size_t buf_size) {
    snprintf(buf, buf_size, "reel:{%s}:%s", group_id, suffix);
    return buf;
}

const char *rt_key(const rt_ctx_t *ctx, const char *suffix, char *buf, size_t buf_size) {
    return rt_key_for(ctx->group_id, suffix, buf, buf_size);
}

store_batch_t *rt_state(rt_ctx_t *ctx) {
    return ctx->state;
}
store_t *rt_store(rt_ctx_t *ctx) {
    return ctx->store;
}
codec_t *rt_codec(rt_ctx_t *ctx) {
    return ctx->codec;
}
config_t *rt_config(rt_ctx_t *ctx) {
    return ctx->config;
}
metrics_t *rt_metrics(rt_ctx_t *ctx) {
    return ctx->metrics;
}
const char *rt_model_version(const rt_ctx_t *ctx) {
    return ctx->model_version;
}

void rt_set_model_version(rt_ctx_t *ctx, const char *version) {
    char labels[512];
    snprintf(labels, sizeof labels, "%s,version=\"%s\"", ctx->labels, ctx->model_version);
    metrics_set(ctx->metrics, "reel_model_info", labels, 0);
    snprintf(ctx->model_version, sizeof ctx->model_version, "%s", version);
    snprintf(labels, sizeof labels, "%s,version=\"%s\"", ctx->labels, ctx->model_version);
    metrics_set(ctx->metrics, "reel_model_info", labels, 1);
}

static void topic_labels(const rt_ctx_t *ctx, const char *topic, char *buf, size_t n) {
    snprintf(buf, n, "%s,topic=\"%s\"", ctx->labels, topic);
}

static rt_partition_t *part_find(rt_ctx_t *ctx, const char *topic, int32_t partition) {
    for (size_t i = 0; i < ctx->n_parts; i++)
        if (ctx->parts[i].partition == partition && strcmp(ctx->parts[i].topic, topic) == 0)
            return &ctx->parts[i];
    return NULL;
}

static rt_partition_t *part_get(rt_ctx_t *ctx, const char *topic, int32_t partition) {
    rt_partition_t *p = part_find(ctx, topic, partition);
    if (p) return p;
    if (ctx->n_parts == ctx->cap_parts) {
        size_t cap = ctx->cap_parts ? ctx->cap_parts * 2 : 16;
        rt_partition_t *np = realloc(ctx->parts, cap * sizeof *np);
        if (!np) return NULL;
        ctx->parts = np;
        ctx->cap_parts = cap;
    }
    p = &ctx->parts[ctx->n_parts];
    p->topic = strdup(topic);
    if (!p->topic) return NULL;
    p->partition = partition;
    p->next_offset = -1;
    p->active = 0;
    ctx->n_parts++;
    return p;
}

/* State of one rt_kafka_conf() walk over the kafka.* keys. */
typedef struct kafka_conf_walk {
    rd_kafka_conf_t *conf;
    const char *role;
    char *errstr;
    size_t errstr_size;
} kafka_conf_walk_t;

static int kafka_conf_pass(const char *key, const char *value, void *opaque) {
    kafka_conf_walk_t *st = opaque;
    const char *k = key + strlen("kafka.");
    if (strncmp(k, "consumer.", 9) == 0) {
        if (strcmp(st->role, "consumer") != 0) return 0;
        k += 9;
    } else if (strncmp(k, "producer.", 9) == 0) {
        if (strcmp(st->role, "producer") != 0) return 0;
        k += 9;
    }
    char err[256];
    if (rd_kafka_conf_set(st->conf, k, value, err, sizeof err) != RD_KAFKA_CONF_OK) {
        snprintf(st->errstr, st->errstr_size, "%s: %s", key, err);
        return -1;
    }
    return 0;
}

/* librdkafka's own log lines join ours as JSON (it calls this from its
 * internal threads; log_write() is thread safe). */
static void on_kafka_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    log_level_t l = level <= 3   ? LOG_ERROR
                    : level == 4 ? LOG_WARN
                    : level <= 6 ? LOG_INFO
                                 : LOG_DEBUG;
    log_write(l, "librdkafka", "%s: %s: %s", rk ? rd_kafka_name(rk) : "-", fac, buf);
}

rd_kafka_conf_t *rt_kafka_conf(const config_t *config, const char *role, char *errstr,
                               size_t errstr_size) {
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, on_kafka_log);
    kafka_conf_walk_t st = {conf, role, errstr, errstr_size};
    if (config_foreach(config, "kafka.", kafka_conf_pass, &st) != 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    return conf;
}

int rt_kafka_conf_default(rd_kafka_conf_t *conf, const config_t *config, const char *role,
                          const char *name, const char *value, char *errstr, size_t errstr_size) {
    char key[256];
    snprintf(key, sizeof key, "kafka.%s", name);
    if (config_get(config, key, NULL)) return 0;
    snprintf(key, sizeof key, "kafka.%s.%s", role, name);
    if (config_get(config, key, NULL)) return 0;
    return rd_kafka_conf_set(conf, name, value, errstr, errstr_size) == RD_KAFKA_CONF_OK ? 0 : -1;
}

/* ---- producing: outputs and the DLQ ---- */

/* Marks DLQ messages (their msg_opaque) for on_delivery(). */
static char dlq_marker;

/* Remembers that the DLQ copy of topic[partition]@offset was too large. */
static void too_large_add(rt_ctx_t *ctx, const char *topic, int32_t partition, int64_t offset) {
    size_t n = sizeof ctx->too_large / sizeof ctx->too_large[0];
    size_t i = ctx->n_too_large++ % n;
    snprintf(ctx->too_large[i].topic, sizeof ctx->too_large[i].topic, "%s", topic);
    ctx->too_large[i].partition = partition;
    ctx->too_large[i].offset = offset;
}

static int too_large_has(const rt_ctx_t *ctx, const char *topic, int32_t partition,
                         int64_t offset) {
    size_t n = sizeof ctx->too_large / sizeof ctx->too_large[0];
    if (ctx->n_too_large < n) n = ctx->n_too_large;
    for (size_t i = 0; i < n; i++)
        if (ctx->too_large[i].offset == offset && ctx->too_large[i].partition == partition &&
            strcmp(ctx->too_large[i].topic, topic) == 0)
            return 1;
    return 0;
}

/* A header's value as a NUL-terminated string in buf ("" when absent). */
static const char *header_str(const rd_kafka_message_t *m, const char *name, char *buf, size_t n) {
    rd_kafka_headers_t *h = NULL;
    const void *v = NULL;
    size_t len = 0;
    buf[0] = 0;
    if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        rd_kafka_header_get_last(h, name, &v, &len) == RD_KAFKA_RESP_ERR_NO_ERROR && v) {
        if (len >= n) len = n - 1;
        memcpy(buf, v, len);
        buf[len] = 0;
    }
    return buf;
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    rt_ctx_t *ctx = opaque;
    if (m->err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE && m->_private == &dlq_marker) {
        /* A broker refused a DLQ copy for its size (message.max.bytes of
         * the broker or topic): the retried batch sends a truncated one. */
        char t[200], p[32], o[32];
        header_str(m, "reel.source.topic", t, sizeof t);
        header_str(m, "reel.source.partition", p, sizeof p);
        header_str(m, "reel.source.offset", o, sizeof o);
        if (t[0] && p[0] && o[0])
            too_large_add(ctx, t, (int32_t)strtol(p, NULL, 10), strtoll(o, NULL, 10));
    }
    if (m->err) {
        ctx->delivery_errors++;
        snprintf(ctx->delivery_error, sizeof ctx->delivery_error, "%s: %s",
                 rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err));
    }
}

/* Produces one message, waiting while the local queue is full. The payload,
 * key and (on success) headers are taken over by librdkafka. */
static int produce(rt_ctx_t *ctx, const char *topic, const void *key, size_t key_len,
                   const void *value, size_t value_len, rd_kafka_headers_t *hdrs, char *errstr,
                   size_t errstr_size) {
    for (;;) {
        rd_kafka_resp_err_t err;
        if (hdrs)
            err = rd_kafka_producev(
                ctx->producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY((void *)key, key_len),
                RD_KAFKA_V_VALUE((void *)value, value_len),
                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs),
                RD_KAFKA_V_OPAQUE(&dlq_marker), RD_KAFKA_V_END);
        else
            err = rd_kafka_producev(ctx->producer, RD_KAFKA_V_TOPIC(topic),
                                    RD_KAFKA_V_KEY((void *)key, key_len),
                                    RD_KAFKA_V_VALUE((void *)value, value_len),
                                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        ctx->produce_err = err;
        if (!err) return 0;
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(ctx->producer, 10);
            continue;
        }
        snprintf(errstr, errstr_size, "produce to %s: %s", topic, rd_kafka_err2str(err));
        return -1;
    }
}

int rt_emit(rt_ctx_t *ctx, const char *topic, const codec_schema_t *s, const avro_value_t *value,
            char *errstr, size_t errstr_size) {
    ctx->enc.len = 0;
    if (codec_encode(ctx->codec, s, value, &ctx->enc, errstr, errstr_size) < 0) return -1;
    const char *key = NULL;
    size_t key_len = 0;
    if (codec_value_key(value, codec_schema_src(s)->key_field, &key, &key_len) < 0) {
        key = NULL;
        key_len = 0;
    }
    if (produce(ctx, topic, key, key_len, ctx->enc.data, ctx->enc.len, NULL, errstr, errstr_size) <
        0)
        return -1;
    ctx->emitted++;
    size_t i = 0;
    while (i < ctx->n_out_counts && strcmp(ctx->out_counts[i].topic, topic) != 0) i++;
    if (i == ctx->n_out_counts && i < sizeof ctx->out_counts / sizeof ctx->out_counts[0]) {
        snprintf(ctx->out_counts[i].topic, sizeof ctx->out_counts[i].topic, "%s", topic);
        ctx->out_counts[i].n = 0;
        ctx->n_out_counts++;
    }
    if (i < ctx->n_out_counts) ctx->out_counts[i].n++;
    return 0;
}

static void flush_out_counts(rt_ctx_t *ctx) {
    char labels[512];
    for (size_t i = 0; i < ctx->n_out_counts; i++) {
        topic_labels(ctx, ctx->out_counts[i].topic, labels, sizeof labels);
        metrics_add(ctx->metrics, "reel_records_out_total", labels, (double)ctx->out_counts[i].n);
    }
    ctx->n_out_counts = 0;
}

#define DLQ_TRUNCATED_BYTES 65536

/* Sends the original message to <topic>.dlq with its key, value and headers
 * plus headers saying where and why it failed. */
static void dlq_send(rt_ctx_t *ctx, rd_kafka_message_t *m, const char *stage, const char *reason) {
    const char *topic = rd_kafka_topic_name(m->rkt);
    char dlq[512], num[32], labels[512];
    snprintf(dlq, sizeof dlq, "%s.dlq", topic);
    rd_kafka_headers_t *orig = NULL;
    rd_kafka_headers_t *hdrs = NULL;
    if (rd_kafka_message_headers(m, &orig) == RD_KAFKA_RESP_ERR_NO_ERROR && orig)
        hdrs = rd_kafka_headers_copy(orig);
    else
        hdrs = rd_kafka_headers_new(8);
    rd_kafka_header_add(hdrs, "reel.error.stage", -1, stage, -1);
    rd_kafka_header_add(hdrs, "reel.error.reason", -1, reason, -1);
    rd_kafka_header_add(hdrs, "reel.error.worker", -1, ctx->def->name, -1);
    rd_kafka_header_add(hdrs, "reel.source.topic", -1, topic, -1);
    snprintf(num, sizeof num, "%" PRId32, m->partition);
    rd_kafka_header_add(hdrs, "reel.source.partition", -1, num, -1);
    snprintf(num, sizeof num, "%" PRId64, m->offset);
    rd_kafka_header_add(hdrs, "reel.source.offset", -1, num, -1);
    snprintf(num, sizeof num, "%" PRId64, wall_ms());
    rd_kafka_header_add(hdrs, "reel.error.ts", -1, num, -1);

    log_warn("record_dead_lettered",
             "topic=%s partition=%" PRId32 " offset=%" PRId64 " stage=%s reason=%s dlq=%s", topic,
             m->partition, m->offset, stage, reason, dlq);
    char err[256];
    /* A record too large to be produced (over the producer's or a broker's
     * message.max.bytes) would fail its batch on every retry and stall the
     * partition: its DLQ copy then keeps only the first DLQ_TRUNCATED_BYTES
     * bytes, and says so in reel.error.truncated (the original length). */
    size_t len = m->len;
    int truncate = too_large_has(ctx, topic, m->partition, m->offset);
    for (;;) {
        if (truncate && len > DLQ_TRUNCATED_BYTES) {
            len = DLQ_TRUNCATED_BYTES;
            snprintf(num, sizeof num, "%zu", m->len);
            rd_kafka_header_add(hdrs, "reel.error.truncated", -1, num, -1);
            log_error("dlq_record_truncated",
                      "topic=%s partition=%" PRId32 " offset=%" PRId64
                      ": %zu bytes are too large to produce; the DLQ copy keeps the first %zu",
                      topic, m->partition, m->offset, m->len, len);
        }
        if (produce(ctx, dlq, m->key, m->key_len, m->payload, len, hdrs, err, sizeof err) == 0)
            break;
        if (ctx->produce_err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE && len > DLQ_TRUNCATED_BYTES) {
            truncate = 1;
            continue;
        }
        rd_kafka_headers_destroy(hdrs);
        /* A DLQ record that cannot even be queued fails the batch's delivery
         * check, so the batch is retried rather than the record lost. */
        ctx->delivery_errors++;
        snprintf(ctx->delivery_error, sizeof ctx->delivery_error, "%s", err);
        return;
    }
    snprintf(labels, sizeof labels, "%s,topic=\"%s\",stage=\"%s\"", ctx->labels, topic, stage);
    metrics_add(ctx->metrics, "reel_records_failed_total", labels, 1);
}

void rt_fail(rt_ctx_t *ctx, const rt_record_t *rec, const char *stage, const char *reason) {
    if (rec < ctx->records || rec >= ctx->records + ctx->n_records) return;
    size_t i = (size_t)(rec - ctx->records);
    if (ctx->record_failed[i]) return;
    ctx->record_failed[i] = 1;
    dlq_send(ctx, ctx->record_msgs[i], stage, reason);
}

/* ---- consumer callbacks ---- */

/* Drops collected messages of a partition that is no longer ours: the new
 * owner reads them again from the offset in Redis. */
static void drop_collected(rt_ctx_t *ctx, const char *topic, int32_t partition) {
    size_t w = 0;
    for (size_t i = 0; i < ctx->n_msgs; i++) {
        rd_kafka_message_t *m = ctx->msgs[i];
        if (m->partition == partition && strcmp(rd_kafka_topic_name(m->rkt), topic) == 0)
            rd_kafka_message_destroy(m);
        else
            ctx->msgs[w++] = m;
    }
    ctx->n_msgs = w;
}

/* After a failed Redis operation: when Redis refused the credentials or
 * the ACL user's permissions, retrying cannot help, so the worker stops
 * with the reason (non-zero exit) instead of backing off for ever. Nothing
 * of the batch in hand was committed, so stopping loses nothing. Returns 1
 * when the worker must stop. */
static int redis_refused(rt_ctx_t *ctx, const char *err) {
    if (!store_refused(ctx->store)) return 0;
    if (!ctx->fatal) {
        snprintf(ctx->fatal_reason, sizeof ctx->fatal_reason, "%s", err);
        ctx->fatal = 1;
        metrics_set_health(ctx->metrics, 0, "redis refused the credentials");
        log_error("redis_auth_failed",
                  "%s (not retrying: check the credentials in redis.url and the user's ACL)", err);
    }
    return 1;
}

/* Reads a partition's offset from Redis, retrying with backoff: assigning
 * a partition from a guessed offset could skip or repeat state. */
static int64_t offset_from_redis(rt_ctx_t *ctx, const char *topic, int32_t partition, int *ok) {
    char key[640], suffix[256], err[512];
    snprintf(suffix, sizeof suffix, "offsets:%.200s", topic);
    rt_key(ctx, suffix, key, sizeof key);
    for (unsigned attempt = 0;; attempt++) {
        int64_t off = -1;
        if (store_ensure_connected(ctx->store, err, sizeof err) == 0 &&
            store_get_offset(ctx->store, key, partition, &off, err, sizeof err) == 0) {
            *ok = 1;
            return off;
        }
        metrics_add(ctx->metrics, "reel_redis_errors_total", ctx->labels, 1);
        if (redis_refused(ctx, err)) {
            *ok = 0;
            return -1;
        }
        log_warn("redis_unavailable", "reading offset of %s[%" PRId32 "]: %s (retrying)", topic,
                 partition, err);
        if (rt_stopping()) {
            *ok = 0;
            return -1;
        }
        sleep_ms(store_backoff_ms(attempt));
    }
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque) {
    rt_ctx_t *ctx = opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        for (int i = 0; i < parts->cnt; i++) {
            rd_kafka_topic_partition_t *tp = &parts->elems[i];
            int ok = 0;
            int64_t off = offset_from_redis(ctx, tp->topic, tp->partition, &ok);
            rt_partition_t *p = part_get(ctx, tp->topic, tp->partition);
            if (p) {
                p->active = 1;
                p->next_offset = off;
            }
            if (off >= 0)
                tp->offset = off;
            else
                tp->offset = ctx->reset_latest ? RD_KAFKA_OFFSET_END : RD_KAFKA_OFFSET_BEGINNING;
            log_info("partition_assigned",
                     "topic=%s partition=%" PRId32 " offset=%" PRId64 " from=%s", tp->topic,
                     tp->partition, off,
                     off >= 0 ? "redis" : (ctx->reset_latest ? "latest" : "earliest"));
        }
        rd_kafka_assign(rk, parts);
    } else {
        for (int i = 0; i < parts->cnt; i++) {
            rd_kafka_topic_partition_t *tp = &parts->elems[i];
            rt_partition_t *p = part_find(ctx, tp->topic, tp->partition);
            if (p) p->active = 0;
            drop_collected(ctx, tp->topic, tp->partition);
            log_info("partition_revoked", "topic=%s partition=%" PRId32, tp->topic, tp->partition);
        }
        rd_kafka_assign(rk, NULL);
    }
}

/* Consumer lag per partition from librdkafka's statistics JSON. */
static int on_stats(rd_kafka_t *rk, char *json, size_t json_len, void *opaque) {
    (void)rk;
    rt_ctx_t *ctx = opaque;
    json_error_t jerr;
    json_t *root = json_loadb(json, json_len, 0, &jerr);
    if (!root) return 0;
    json_t *topics = json_object_get(root, "topics");
    const char *tname;
    json_t *t;
    json_object_foreach(topics, tname, t) {
        const char *pname;
        json_t *pj;
        json_object_foreach(json_object_get(t, "partitions"), pname, pj) {
            if (strcmp(pname, "-1") == 0) continue;
            json_t *lag = json_object_get(pj, "consumer_lag");
            if (!json_is_integer(lag) || json_integer_value(lag) < 0) continue;
            char labels[512];
            snprintf(labels, sizeof labels, "%s,topic=\"%s\",partition=\"%s\"", ctx->labels, tname,
                     pname);
            metrics_set(ctx->metrics, "reel_consumer_lag", labels, (double)json_integer_value(lag));
        }
    }
    json_decref(root);
    return 0; /* librdkafka frees json */
}

static void on_kafka_error(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    rt_ctx_t *ctx = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char buf[256];
        rd_kafka_fatal_error(rk, buf, sizeof buf);
        snprintf(ctx->fatal_reason, sizeof ctx->fatal_reason, "%s: %s", rd_kafka_name(rk), buf);
        ctx->fatal = 1;
        log_error("kafka_fatal", "%s", ctx->fatal_reason);
        return;
    }
    /* Broker transports come and go; librdkafka reconnects by itself. */
    log_warn("kafka_error", "%s: %s: %s", rd_kafka_name(rk),
             rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

/* ---- one partition's batch ---- */

static int input_index(const rt_ctx_t *ctx, const char *topic) {
    for (size_t i = 0; i < ctx->n_inputs; i++)
        if (strcmp(ctx->inputs[i], topic) == 0) return (int)i;
    return -1;
}

/* Decodes msgs into ctx->records; failures go to the DLQ. */
static void decode_batch(rt_ctx_t *ctx, rd_kafka_message_t **msgs, size_t n) {
    char err[512];
    ctx->n_records = 0;
    for (size_t i = 0; i < n; i++) {
        rd_kafka_message_t *m = msgs[i];
        const char *topic = rd_kafka_topic_name(m->rkt);
        int in = input_index(ctx, topic);
        if (in < 0 || !ctx->input_schemas[in]) {
            dlq_send(ctx, m, "decode", "no schema for topic");
            continue;
        }
        if (m->len > ctx->max_record_bytes) {
            snprintf(err, sizeof err, "record of %zu bytes exceeds max.record.bytes=%zu", m->len,
                     ctx->max_record_bytes);
            dlq_send(ctx, m, "decode", err);
            continue;
        }
        size_t slot = ctx->n_records * ctx->n_inputs + (size_t)in;
        avro_value_t *v = &ctx->slot_values[slot];
        if (!ctx->slot_ready[slot]) {
            if (codec_value_new(ctx->input_schemas[in], v, err, sizeof err) < 0) {
                dlq_send(ctx, m, "decode", err);
                continue;
            }
            ctx->slot_ready[slot] = 1;
        }
        if (codec_decode(ctx->codec, ctx->input_schemas[in], m->payload, m->len, v, err,
                         sizeof err) < 0) {
            dlq_send(ctx, m, "decode", err);
            continue;
        }
        rt_record_t *r = &ctx->records[ctx->n_records];
        rd_kafka_timestamp_type_t tstype;
        r->topic = topic;
        r->partition = m->partition;
        r->offset = m->offset;
        r->timestamp_ms = rd_kafka_message_timestamp(m, &tstype);
        r->key = m->key;
        r->key_len = m->key_len;
        r->value = m->payload;
        r->value_len = m->len;
        r->schema = ctx->input_schemas[in];
        r->avro = v;
        ctx->record_msgs[ctx->n_records] = m;
        ctx->record_failed[ctx->n_records] = 0;
        ctx->n_records++;
    }
}

/* Waits until every queued output is delivered or delivery.timeout.ms has
 * passed. Returns 0 when all were delivered without error. */
static int wait_deliveries(rt_ctx_t *ctx) {
    int64_t start = now_ms(), deadline = start + ctx->delivery_timeout_ms;
    while (rd_kafka_outq_len(ctx->producer) > 0) {
        /* On shutdown a batch whose brokers are away is abandoned after a
         * while: it is not committed, so its records are read again. */
        if (now_ms() > deadline || (rt_stopping() && now_ms() - start > 10000)) {
            snprintf(ctx->delivery_error, sizeof ctx->delivery_error,
                     "%d outputs undelivered after %" PRId64 " ms",
                     rd_kafka_outq_len(ctx->producer), ctx->delivery_timeout_ms);
            return -1;
        }
        rd_kafka_flush(ctx->producer, 100);
    }
    return ctx->delivery_errors ? -1 : 0;
}

static void seek_partition(rt_ctx_t *ctx, const char *topic, int32_t partition, int64_t offset) {
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, partition)->offset = offset;
    rd_kafka_error_t *e = rd_kafka_seek_partitions(ctx->consumer, l, 5000);
    if (e) {
        log_warn("seek_failed", "topic=%s partition=%" PRId32 " offset=%" PRId64 ": %s", topic,
                 partition, offset, rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    }
    rd_kafka_topic_partition_list_destroy(l);
}

static void commit_to_kafka(rt_ctx_t *ctx, const char *topic, int32_t partition, int64_t next) {
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, partition)->offset = next;
    /* Async: Kafka's offsets serve lag tools only; Redis holds the truth. */
    rd_kafka_commit(ctx->consumer, l, 1);
    rd_kafka_topic_partition_list_destroy(l);
}

/* Processes, produces and commits the messages of one partition. Returns 0
 * when done (committed, or dropped because the partition moved), -1 when
 * the batch was abandoned because the runtime is stopping. */
static int run_partition_batch(rt_ctx_t *ctx, rd_kafka_message_t **msgs, size_t n) {
    const char *topic = rd_kafka_topic_name(msgs[0]->rkt);
    int32_t partition = msgs[0]->partition;
    rt_partition_t *p = part_find(ctx, topic, partition);
    if (ctx->fatal) return -1;
    if (!p || !p->active) return 0;

    /* Messages below the applied offset were already applied (they can
     * arrive after a seek); a jump above it means records were skipped. */
    size_t first = 0;
    while (first < n && p->next_offset >= 0 && msgs[first]->offset < p->next_offset) first++;
    if (first == n) return 0;
    msgs += first;
    n -= first;
    char labels[512];
    topic_labels(ctx, topic, labels, sizeof labels);
    if (p->next_offset >= 0 && msgs[0]->offset > p->next_offset) {
        log_error("records_skipped",
                  "topic=%s partition=%" PRId32 " expected offset %" PRId64 " but got %" PRId64
                  ": %" PRId64 " records were deleted by retention before they were processed",
                  topic, partition, p->next_offset, msgs[0]->offset,
                  msgs[0]->offset - p->next_offset);
        metrics_add(ctx->metrics, "reel_records_skipped_total", labels,
                    (double)(msgs[0]->offset - p->next_offset));
    }
    /* The batch continues from what Redis applied, bridging offsets Kafka
     * skipped; Redis refuses it if it is behind that (lost writes). */
    int64_t first_offset = p->next_offset >= 0 ? p->next_offset : msgs[0]->offset;
    int64_t next_offset = msgs[n - 1]->offset + 1;
    int64_t t0 = now_ms();
    char err[512];
    char offsets_key[640], suffix[256];
    snprintf(suffix, sizeof suffix, "offsets:%.200s", topic);
    rt_key(ctx, suffix, offsets_key, sizeof offsets_key);

    for (unsigned attempt = 0;; attempt++) {
        if (attempt > 0) {
            if (rt_stopping() || ctx->fatal) return -1;
            sleep_ms(store_backoff_ms(attempt - 1));
        }
        store_batch_reset(ctx->state);
        ctx->delivery_errors = 0;
        ctx->delivery_error[0] = 0;
        decode_batch(ctx, msgs, n);
        rt_batch_t batch = {topic, partition, ctx->records, ctx->n_records};
        if (ctx->n_records > 0) {
            err[0] = 0;
            if (ctx->def->process(ctx->wstate, ctx, &batch, err, sizeof err) < 0) {
                if (redis_refused(ctx, err)) {
                    wait_deliveries(ctx);
                    return -1;
                }
                log_warn("batch_retry",
                         "worker %s failed on %s[%" PRId32 "] at %" PRId64 ": %s (retrying)",
                         ctx->def->name, topic, partition, first_offset, err);
                metrics_add(ctx->metrics, "reel_batch_retries_total", ctx->labels, 1);
                wait_deliveries(ctx);
                continue;
            }
        }
        int delivered = wait_deliveries(ctx);
        flush_out_counts(ctx);
        if (delivered < 0) {
            metrics_add(ctx->metrics, "reel_produce_errors_total", ctx->labels, 1);
            log_warn("delivery_failed", "%s[%" PRId32 "] at %" PRId64 ": %s (retrying batch)",
                     topic, partition, first_offset, ctx->delivery_error);
            continue;
        }
        /* Outputs are durable in Kafka: now the state and the offsets. */
        int64_t stored = -1;
        int rc;
        for (unsigned r = 0;; r++) {
            if (store_ensure_connected(ctx->store, err, sizeof err) == 0) {
                rc = store_commit(ctx->store, ctx->state, offsets_key, partition, first_offset,
                                  next_offset, &stored, err, sizeof err);
                if (rc >= 0) break;
            }
            metrics_add(ctx->metrics, "reel_redis_errors_total", ctx->labels, 1);
            if (redis_refused(ctx, err)) return -1;
            metrics_set_health(ctx->metrics, 0, "redis unavailable");
            log_warn("redis_unavailable",
                     "commit of %s[%" PRId32 "] %" PRId64 "..%" PRId64 ": %s (retrying)", topic,
                     partition, first_offset, next_offset, err);
            if (rt_stopping()) return -1;
            sleep_ms(store_backoff_ms(r));
        }
        metrics_set_health(ctx->metrics, 1, NULL);
        metrics_set(ctx->metrics, "reel_redis_round_trips_total", ctx->labels,
                    (double)store_round_trips(ctx->store));
        if (rc == 4) {
            /* The worker's guard refused the commit: state it holds in
             * memory was overtaken in Redis. Its process() resynchronises
             * on the next attempt. */
            metrics_add(ctx->metrics, "reel_commit_conflicts_total", ctx->labels, 1);
            log_warn("state_conflict",
                     "%s[%" PRId32 "] %" PRId64 "..%" PRId64
                     ": the worker's state moved on in Redis; processing the batch again",
                     topic, partition, first_offset, next_offset);
            continue;
        }
        if (rc == 3) {
            /* Redis lost commits it had acknowledged (a crash with
             * appendfsync everysec, a failover to a lagging replica): state
             * and offsets went back together, so processing again from the
             * stored offset rebuilds exactly what was lost. */
            metrics_add(ctx->metrics, "reel_redis_regressions_total", ctx->labels, 1);
            log_error("redis_offset_regressed",
                      "%s[%" PRId32 "] Redis holds offset %" PRId64 " but %" PRId64
                      " was applied: Redis lost writes; processing again from %" PRId64,
                      topic, partition, stored, first_offset, stored);
            p->next_offset = stored;
            seek_partition(ctx, topic, partition, stored);
            return 0;
        }
        if (rc == 2 || (rc == 0 && stored > next_offset)) {
            /* Another consumer applied part of this range: read on from
             * where Redis says, never apply the overlap twice. */
            metrics_add(ctx->metrics, "reel_commit_conflicts_total", ctx->labels, 1);
            log_warn("commit_conflict",
                     "%s[%" PRId32 "] batch %" PRId64 "..%" PRId64
                     " overlaps applied offset %" PRId64 "; seeking there",
                     topic, partition, first_offset, next_offset, stored);
            p->next_offset = stored;
            seek_partition(ctx, topic, partition, stored);
            return 0;
        }
        if (rc == 0)
            log_info("batch_replayed",
                     "%s[%" PRId32 "] %" PRId64 "..%" PRId64
                     " was already applied; state unchanged",
                     topic, partition, first_offset, next_offset);
        p->next_offset = next_offset;
        commit_to_kafka(ctx, topic, partition, next_offset);
        metrics_add(ctx->metrics, "reel_records_in_total", labels, (double)n);
        metrics_observe(ctx->metrics, "reel_batch_seconds", ctx->labels,
                        (double)(now_ms() - t0) / 1000.0);
        return 0;
    }
}

/* Splits the collected messages by partition and runs each. */
static void run_collected(rt_ctx_t *ctx) {
    size_t n = ctx->n_msgs;
    rd_kafka_message_t **group = malloc((n ? n : 1) * sizeof *group);
    unsigned char *done = calloc(n ? n : 1, 1);
    if (!group || !done) {
        log_error("out_of_memory", "grouping %zu messages", n);
    } else {
        for (size_t i = 0; i < n; i++) {
            if (done[i]) continue;
            const rd_kafka_message_t *a = ctx->msgs[i];
            size_t k = 0;
            for (size_t j = i; j < n; j++) {
                const rd_kafka_message_t *b = ctx->msgs[j];
                if (!done[j] && b->partition == a->partition && b->rkt == a->rkt) {
                    group[k++] = ctx->msgs[j];
                    done[j] = 1;
                }
            }
            if (run_partition_batch(ctx, group, k) < 0) break;
        }
    }
    free(group);
    free(done);
    for (size_t i = 0; i < ctx->n_msgs; i++) rd_kafka_message_destroy(ctx->msgs[i]);
    ctx->n_msgs = 0;
}

/* Polls single messages until the batch is full or batch.max.ms passed.
 * (librdkafka 2.0.2's batch-consume API can skip offsets across a pause or
 * rebalance, so batches are built here from single polls.) */
static void collect(rt_ctx_t *ctx) {
    int64_t deadline = now_ms() + ctx->batch_ms;
    while (ctx->n_msgs < ctx->batch_max && !rt_stopping() && !ctx->fatal) {
        int64_t left = deadline - now_ms();
        if (left <= 0) break;
        rd_kafka_message_t *m = rd_kafka_consumer_poll(ctx->consumer, (int)left);
        if (!m) continue;
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                char labels[512];
                snprintf(labels, sizeof labels, "%s,error=\"%s\"", ctx->labels,
                         rd_kafka_err2name(m->err));
                metrics_add(ctx->metrics, "reel_consumer_errors_total", labels, 1);
                if (m->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE ||
                    m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET)
                    log_error("offset_out_of_range", "%s[%" PRId32 "]: %s",
                              m->rkt ? rd_kafka_topic_name(m->rkt) : "?", m->partition,
                              rd_kafka_message_errstr(m));
                else
                    log_warn("consumer_error", "%s", rd_kafka_message_errstr(m));
            }
            rd_kafka_message_destroy(m);
            continue;
        }
        ctx->msgs[ctx->n_msgs++] = m;
    }
}

/* ---- a worker thread's life ---- */

static void ctx_destroy(rt_ctx_t *ctx) {
    if (!ctx) return;
    if (ctx->wstate && ctx->def->destroy) ctx->def->destroy(ctx->wstate);
    for (size_t i = 0; i < ctx->n_msgs; i++) rd_kafka_message_destroy(ctx->msgs[i]);
    if (ctx->consumer) rd_kafka_destroy(ctx->consumer);
    if (ctx->producer) {
        rd_kafka_flush(ctx->producer, 10000);
        rd_kafka_destroy(ctx->producer);
    }
    if (ctx->slot_values) {
        for (size_t i = 0; i < ctx->batch_max * ctx->n_inputs; i++)
            if (ctx->slot_ready[i]) avro_value_decref(&ctx->slot_values[i]);
    }
    free(ctx->slot_values);
    free(ctx->slot_ready);
    free(ctx->records);
    free(ctx->record_msgs);
    free(ctx->record_failed);
    free(ctx->msgs);
    for (size_t i = 0; i < ctx->n_parts; i++) free(ctx->parts[i].topic);
    free(ctx->parts);
    for (size_t i = 0; i < ctx->n_inputs; i++) free((char *)ctx->inputs[i]);
    free(ctx->inputs);
    free(ctx->input_schemas);
    codec_buf_free(&ctx->enc);
    if (ctx->state) store_batch_destroy(ctx->state);
    if (ctx->store) store_destroy(ctx->store);
    if (ctx->codec) codec_destroy(ctx->codec);
    free(ctx);
}

/* Splits "a,b,c" (or the worker's defaults) into ctx->inputs. */
static int ctx_inputs(rt_ctx_t *ctx, char *errstr, size_t errstr_size) {
    char key[256];
    snprintf(key, sizeof key, "%s.topics", ctx->def->name);
    const char *list = config_get(ctx->config, key, NULL);
    size_t cap = 8;
    ctx->inputs = calloc(cap, sizeof *ctx->inputs);
    if (!ctx->inputs) goto oom;
    if (list) {
        char *copy = strdup(list), *save = NULL;
        if (!copy) goto oom;
        for (char *t = strtok_r(copy, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
            if (ctx->n_inputs == cap) break;
            ctx->inputs[ctx->n_inputs++] = strdup(t);
        }
        free(copy);
    } else {
        for (size_t i = 0; ctx->def->inputs[i] && ctx->n_inputs < cap; i++)
            ctx->inputs[ctx->n_inputs++] = strdup(ctx->def->inputs[i]);
    }
    if (ctx->n_inputs == 0) {
        snprintf(errstr, errstr_size, "worker %s has no input topics", ctx->def->name);
        return -1;
    }
    ctx->input_schemas = calloc(ctx->n_inputs, sizeof *ctx->input_schemas);
    if (!ctx->input_schemas) goto oom;
    for (size_t i = 0; i < ctx->n_inputs; i++) {
        if (!ctx->inputs[i]) goto oom;
        ctx->input_schemas[i] = codec_by_topic(ctx->codec, ctx->inputs[i]);
        if (!ctx->input_schemas[i]) {
            snprintf(errstr, errstr_size, "topic %s has no schema in schemas/schemas.tsv",
                     ctx->inputs[i]);
            return -1;
        }
    }
    return 0;
oom:
    snprintf(errstr, errstr_size, "out of memory");
    return -1;
}

static rt_ctx_t *ctx_new(const worker_def_t *def, config_t *config, metrics_t *metrics,
                         char *errstr, size_t errstr_size) {
    rt_ctx_t *ctx = calloc(1, sizeof *ctx);
    if (!ctx) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    ctx->def = def;
    ctx->config = config;
    ctx->metrics = metrics;
    snprintf(ctx->group_id, sizeof ctx->group_id, "%s-%s", config_get(config, "group.id", "reel"),
             def->name);
    snprintf(ctx->labels, sizeof ctx->labels, "worker=\"%s\"", def->name);
    snprintf(ctx->model_version, sizeof ctx->model_version, "none");
    ctx->batch_max = (size_t)config_get_int(config, "batch.max.records", 2000);
    ctx->batch_ms = (int)config_get_int(config, "batch.max.ms", 100);
    ctx->max_record_bytes = (size_t)config_get_int(config, "max.record.bytes", 8388608);
    ctx->delivery_timeout_ms = config_get_int(config, "batch.delivery.timeout.ms", 120000);
    ctx->reset_latest = strcmp(config_get(config, "auto.offset.reset", "earliest"), "latest") == 0;
    char key[256];
    snprintf(key, sizeof key, "%s.reload.interval.ms", def->name);
    ctx->reload_interval_ms = config_get_int(config, key, 10000);

    if (config_check_int(config, "batch.max.records", 1, 1000000, errstr, errstr_size) < 0 ||
        config_check_int(config, "batch.max.ms", 1, 600000, errstr, errstr_size) < 0 ||
        config_check_int(config, "max.record.bytes", 64, 1 << 30, errstr, errstr_size) < 0)
        goto fail;

    ctx->codec = codec_new(errstr, errstr_size);
    if (!ctx->codec) goto fail;
    codec_set_max_record_bytes(ctx->codec, ctx->max_record_bytes);
    if (ctx_inputs(ctx, errstr, errstr_size) < 0) goto fail;

    ctx->msgs = calloc(ctx->batch_max, sizeof *ctx->msgs);
    ctx->records = calloc(ctx->batch_max, sizeof *ctx->records);
    ctx->record_msgs = calloc(ctx->batch_max, sizeof *ctx->record_msgs);
    ctx->record_failed = calloc(ctx->batch_max, 1);
    ctx->slot_values = calloc(ctx->batch_max * ctx->n_inputs, sizeof *ctx->slot_values);
    ctx->slot_ready = calloc(ctx->batch_max * ctx->n_inputs, 1);
    ctx->state = store_batch_new();
    if (!ctx->msgs || !ctx->records || !ctx->record_msgs || !ctx->record_failed ||
        !ctx->slot_values || !ctx->slot_ready || !ctx->state) {
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }

    /* Redis first: a worker without its state must not consume. */
    const char *url = config_get(config, "redis.url", "redis://127.0.0.1:6379");
    for (unsigned attempt = 0; !ctx->store; attempt++) {
        int permanent = 0;
        ctx->store = store_open(url, &permanent, errstr, errstr_size);
        if (ctx->store) break;
        /* A bad url or refused credentials: retrying cannot help. */
        if (permanent || rt_stopping()) goto fail;
        log_warn("redis_unavailable", "%s (retrying)", errstr);
        sleep_ms(store_backoff_ms(attempt));
    }

    rd_kafka_conf_t *pconf = rt_kafka_conf(config, "producer", errstr, errstr_size);
    if (!pconf) goto fail;
    char err[256];
    rd_kafka_conf_set(pconf, "enable.idempotence", "true", err, sizeof err);
    /* Every record up to max.record.bytes must fit into a DLQ record (with
     * its key and headers): librdkafka's default message.max.bytes (1 MB)
     * is below max.record.bytes' default (8 MiB). An explicit setting wins. */
    char mmb[32];
    size_t want = ctx->max_record_bytes + 65536;
    snprintf(mmb, sizeof mmb, "%zu", want < 1000000 ? (size_t)1000000 : want);
    if (rt_kafka_conf_default(pconf, config, "producer", "message.max.bytes", mmb, err,
                              sizeof err) < 0) {
        rd_kafka_conf_destroy(pconf);
        snprintf(errstr, errstr_size, "producer message.max.bytes=%s: %s", mmb, err);
        goto fail;
    }
    rt_kafka_conf_default(pconf, config, "producer", "linger.ms", "5", err, sizeof err);
    rd_kafka_conf_set_dr_msg_cb(pconf, on_delivery);
    rd_kafka_conf_set_error_cb(pconf, on_kafka_error);
    rd_kafka_conf_set_opaque(pconf, ctx);
    ctx->producer = rd_kafka_new(RD_KAFKA_PRODUCER, pconf, err, sizeof err);
    if (!ctx->producer) {
        snprintf(errstr, errstr_size, "producer: %s", err);
        goto fail;
    }
    /* librdkafka learns a topic's partitions only at its once-a-second scan
     * of unknown topics, so the first output to each topic (the first DLQ
     * record, say) waited up to a second, and its batch with it. One
     * metadata request now fills the cache for every topic that exists.
     * Best effort: with the brokers away it only costs its timeout. */
    const struct rd_kafka_metadata *md = NULL;
    if (rd_kafka_metadata(ctx->producer, 1, NULL, &md, 2000) == RD_KAFKA_RESP_ERR_NO_ERROR)
        rd_kafka_metadata_destroy(md);

    rd_kafka_conf_t *cconf = rt_kafka_conf(config, "consumer", errstr, errstr_size);
    if (!cconf) goto fail;
    if (rd_kafka_conf_set(cconf, "group.id", ctx->group_id, err, sizeof err) ||
        rd_kafka_conf_set(cconf, "enable.auto.commit", "false", err, sizeof err) ||
        rd_kafka_conf_set(cconf, "enable.auto.offset.store", "false", err, sizeof err) ||
        rd_kafka_conf_set(cconf, "statistics.interval.ms",
                          config_get(config, "stats.interval.ms", "5000"), err, sizeof err)) {
        rd_kafka_conf_destroy(cconf);
        snprintf(errstr, errstr_size, "consumer: %s", err);
        goto fail;
    }
    rd_kafka_conf_set_rebalance_cb(cconf, on_rebalance);
    rd_kafka_conf_set_stats_cb(cconf, on_stats);
    rd_kafka_conf_set_error_cb(cconf, on_kafka_error);
    rd_kafka_conf_set_opaque(cconf, ctx);
    ctx->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, cconf, err, sizeof err);
    if (!ctx->consumer) {
        snprintf(errstr, errstr_size, "consumer: %s", err);
        goto fail;
    }
    rd_kafka_poll_set_consumer(ctx->consumer);

    rt_env_t env = {def->name, ctx->group_id, config, ctx->store, ctx->codec, metrics};
    if (def->init && def->init(&env, &ctx->wstate, errstr, errstr_size) < 0) goto fail;

    rd_kafka_topic_partition_list_t *subs = rd_kafka_topic_partition_list_new((int)ctx->n_inputs);
    for (size_t i = 0; i < ctx->n_inputs; i++)
        rd_kafka_topic_partition_list_add(subs, ctx->inputs[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t serr = rd_kafka_subscribe(ctx->consumer, subs);
    rd_kafka_topic_partition_list_destroy(subs);
    if (serr) {
        snprintf(errstr, errstr_size, "subscribe: %s", rd_kafka_err2str(serr));
        goto fail;
    }
    return ctx;
fail:
    ctx_destroy(ctx);
    return NULL;
}

typedef struct rt_thread {
    const worker_def_t *def;
    config_t *config;
    metrics_t *metrics;
    pthread_t tid;
    int started;
    int rc;
    char errstr[512];
} rt_thread_t;

static void *worker_thread(void *arg) {
    rt_thread_t *t = arg;
    rt_ctx_t *ctx = ctx_new(t->def, t->config, t->metrics, t->errstr, sizeof t->errstr);
    if (!ctx) {
        t->rc = -1;
        rt_stop();
        return NULL;
    }
    log_info("worker_started", "worker=%s group=%s inputs=%zu batch.max.records=%zu", t->def->name,
             ctx->group_id, ctx->n_inputs, ctx->batch_max);
    ctx->last_reload_ms = now_ms();
    while (!rt_stopping() && !ctx->fatal) {
        collect(ctx);
        if (ctx->n_msgs && !ctx->fatal) run_collected(ctx);
        rd_kafka_poll(ctx->producer, 0);
        if (ctx->def->reload && now_ms() - ctx->last_reload_ms >= ctx->reload_interval_ms) {
            char err[512];
            if (ctx->def->reload(ctx->wstate, ctx, err, sizeof err) < 0 && !redis_refused(ctx, err))
                log_warn("reload_failed", "worker=%s: %s (keeping the current model)",
                         ctx->def->name, err);
            ctx->last_reload_ms = now_ms();
        }
    }
    if (ctx->fatal) {
        snprintf(t->errstr, sizeof t->errstr, "%s", ctx->fatal_reason);
        t->rc = -1;
        rt_stop();
    }
    /* Graceful stop: the last batch was committed above; leave the group so
     * partitions move at once, then deliver whatever is still queued. */
    log_info("worker_stopping", "worker=%s", t->def->name);
    rd_kafka_consumer_close(ctx->consumer);
    ctx_destroy(ctx);
    log_info("worker_stopped", "worker=%s", t->def->name);
    return NULL;
}

static void declare_metrics(metrics_t *m) {
    static const double buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                     0.1,   0.25,   0.5,   1,    2.5,   5};
    metrics_declare(m, "reel_records_in_total", METRIC_COUNTER,
                    "Input records processed and committed.");
    metrics_declare(m, "reel_records_out_total", METRIC_COUNTER, "Output records produced.");
    metrics_declare(m, "reel_records_failed_total", METRIC_COUNTER,
                    "Records sent to the dead-letter topic, by stage.");
    metrics_declare(m, "reel_records_skipped_total", METRIC_COUNTER,
                    "Records deleted by retention before they were processed.");
    metrics_declare_histogram(m, "reel_batch_seconds",
                              "Time from a batch's first decode to its commit.", buckets,
                              sizeof buckets / sizeof buckets[0]);
    metrics_declare(m, "reel_consumer_lag", METRIC_GAUGE, "Consumer lag per partition.");
    metrics_declare(m, "reel_redis_round_trips_total", METRIC_COUNTER, "Redis round trips.");
    metrics_declare(m, "reel_redis_errors_total", METRIC_COUNTER,
                    "Failed Redis attempts (each is retried).");
    metrics_declare(m, "reel_produce_errors_total", METRIC_COUNTER,
                    "Batches whose outputs were not all delivered (each is retried).");
    metrics_declare(m, "reel_commit_conflicts_total", METRIC_COUNTER,
                    "Batches refused because their offsets were already applied.");
    metrics_declare(m, "reel_redis_regressions_total", METRIC_COUNTER,
                    "Batches refused because Redis had lost applied offsets (reprocessed).");
    metrics_declare(m, "reel_batch_retries_total", METRIC_COUNTER,
                    "Batches a worker failed transiently and retried.");
    metrics_declare(m, "reel_consumer_errors_total", METRIC_COUNTER, "Consumer errors.");
    metrics_declare(m, "reel_model_info", METRIC_GAUGE,
                    "1 for the model version each worker serves.");
}

/* Is key's value a secret? librdkafka's own: sasl.password,
 * ssl.key.password, ssl.keystore.password, sasl.oauthbearer.client.secret,
 * sasl.oauthbearer.config, ssl.key.pem, ssl_key (and the same under
 * kafka.consumer. and kafka.producer.); and any other key naming a password
 * or secret. */
static int secret_key(const char *key) {
    static const char *const words[] = {"password", "secret",  "oauthbearer.config",
                                        "key.pem",  "ssl_key", "jaas"};
    for (size_t i = 0; i < sizeof words / sizeof *words; i++)
        if (strstr(key, words[i])) return 1;
    return 0;
}

static int protect_secret(const char *key, const char *value, void *opaque) {
    (void)opaque;
    if (secret_key(key)) log_add_secret(value);
    return 0;
}

/* Registers the raw text [p, p+n) as a secret (a password as written in a
 * url, percent-encoded or not). */
static void protect_span(const char *p, size_t n) {
    char buf[512];
    if (n == 0 || n >= sizeof buf) return;
    memcpy(buf, p, n);
    buf[n] = '\0';
    log_add_secret(buf);
    memset(buf, 0, sizeof buf);
}

void rt_protect_secrets(const config_t *config) {
    config_foreach(config, NULL, protect_secret, NULL);
    char pw[512];
    const char *url = config_get(config, "redis.url", NULL);
    if (!url || !store_url_password(url, pw, sizeof pw)) return;
    log_add_secret(pw);
    memset(pw, 0, sizeof pw);
    /* As written in the url too: the userinfo's password (up to the last
     * '@' before the query, as the parser reads it) and password= options. */
    const char *sch = strstr(url, "://");
    const char *p = sch ? sch + 3 : url, *q = strchr(p, '?');
    const char *lim = q ? q : p + strlen(p), *at = NULL;
    for (const char *x = p; x < lim; x++)
        if (*x == '@') at = x;
    const char *colon = at ? memchr(p, ':', (size_t)(at - p)) : NULL;
    if (colon) protect_span(colon + 1, (size_t)(at - colon - 1));
    for (const char *o = q; o && *o; o = strchr(o + 1, '&')) {
        if (strncmp(o + 1, "password=", 9) != 0) continue;
        const char *v = o + 10, *amp = strchr(v, '&');
        protect_span(v, amp ? (size_t)(amp - v) : strlen(v));
    }
}

int rt_run(const worker_def_t *const *workers, size_t n_workers, config_t *config, char *errstr,
           size_t errstr_size) {
    rt_protect_secrets(config);
    metrics_t *metrics = metrics_new();
    rt_thread_t *threads = calloc(n_workers, sizeof *threads);
    int rc = 0;
    if (!metrics || !threads) {
        snprintf(errstr, errstr_size, "out of memory");
        rc = -1;
        goto done;
    }
    declare_metrics(metrics);
    int64_t port = config_get_int(config, "metrics.port", 9464);
    if (port >= 0) {
        int bound = metrics_serve(metrics, (int)port, errstr, errstr_size);
        if (bound < 0) {
            rc = -1;
            goto done;
        }
        log_info("metrics_listening", "port=%d paths=/metrics,/healthz", bound);
    }
    for (size_t i = 0; i < n_workers; i++) {
        threads[i].def = workers[i];
        threads[i].config = config;
        threads[i].metrics = metrics;
        if (pthread_create(&threads[i].tid, NULL, worker_thread, &threads[i]) != 0) {
            snprintf(errstr, errstr_size, "cannot start a thread for %s", workers[i]->name);
            rt_stop();
            rc = -1;
            break;
        }
        threads[i].started = 1;
    }
    for (size_t i = 0; i < n_workers; i++) {
        if (!threads[i].started) continue;
        pthread_join(threads[i].tid, NULL);
        if (threads[i].rc < 0 && rc == 0) {
            snprintf(errstr, errstr_size, "worker %s: %s", threads[i].def->name, threads[i].errstr);
            rc = -1;
        }
    }
done:
    free(threads);
    if (metrics) metrics_destroy(metrics);
    return rc;
}
