/* runtime.h: the streaming runtime every worker shares.
 *
 * A worker declares its topics and configuration and processes batches of
 * decoded records into outputs and state changes; the runtime does the rest:
 * consumer group, batching, decoding, the dead-letter topic, producing,
 * exactly-once state in Redis, offsets, metrics, reloads and shutdown.
 *
 * Delivery, per batch of one partition:
 *   1. records are decoded; a record that fails goes to <topic>.dlq;
 *   2. the worker's process() emits outputs and queues state commands;
 *   3. outputs and DLQ records are produced (idempotent producer) and the
 *      runtime waits for every delivery report;
 *   4. the state commands and the partition's next offset are applied in
 *      Redis in one atomic step that refuses offsets already applied;
 *   5. the offset is committed to Kafka too, for lag tools.
 * A crash between 3 and 4 repeats outputs (each carries its source topic,
 * partition and offset) but never applies state twice. */
#ifndef REEL_PIPELINE_RUNTIME_H
#define REEL_PIPELINE_RUNTIME_H

#include <avro.h>
#include <stddef.h>
#include <stdint.h>

#include "pipeline/codec.h"
#include "pipeline/config.h"
#include "pipeline/metrics.h"
#include "pipeline/store.h"

/* One input record. Everything is borrowed from the runtime and valid only
 * during the process() call that received it. */
typedef struct rt_record {
    const char *topic;
    int32_t partition;
    int64_t offset;
    int64_t timestamp_ms; /* Kafka message timestamp, -1 if none */
    const void *key;
    size_t key_len;
    const void *value; /* the raw wire-format bytes */
    size_t value_len;
    const codec_schema_t *schema;
    avro_value_t *avro; /* the decoded value */
} rt_record_t;

/* Records of one partition, in offset order. Records that failed to decode
 * are not in it (they already went to the DLQ). */
typedef struct rt_batch {
    const char *topic;
    int32_t partition;
    rt_record_t *records;
    size_t count;
} rt_batch_t;

typedef struct rt_ctx rt_ctx_t;

/* What init() receives. Everything is borrowed for the worker's lifetime. */
typedef struct rt_env {
    const char *worker;   /* the worker's name */
    const char *group_id; /* its consumer group */
    config_t *config;
    store_t *store; /* for loading models and state at start */
    codec_t *codec;
    metrics_t *metrics;
} rt_env_t;

typedef struct worker_def {
    const char *name;
    const char *description;
    /* Input topics, NULL-terminated. "<name>.topics" (comma-separated)
     * overrides them. */
    const char *const *inputs;
    const config_key_t *config; /* the worker's keys, NULL-key terminated */

    /* Builds the worker's state into *state. Returns 0, or -1 with errstr. */
    int (*init)(const rt_env_t *env, void **state, char *errstr, size_t errstr_size);
    /* Processes one batch: emit outputs with rt_emit(), queue state changes
     * on rt_state(), send bad records to the DLQ with rt_fail(). Returns 0,
     * or -1 for a transient failure (e.g. Redis down while reading): nothing
     * of the batch is kept and the runtime retries it after a backoff. */
    int (*process)(void *state, rt_ctx_t *ctx, const rt_batch_t *batch, char *errstr,
                   size_t errstr_size);
    /* Called every "<name>.reload.interval.ms" between batches to pick up a
     * new model version from Redis; may be NULL. Returns 0 or -1 (the worker
     * keeps its current model). */
    int (*reload)(void *state, rt_ctx_t *ctx, char *errstr, size_t errstr_size);
    void (*destroy)(void *state);
} worker_def_t;

/* Emits value (of schema s) to topic, keyed by the schema's key field.
 * source is the input record it came from (NULL when it came from several).
 * The runtime produces it before the batch is committed. Returns 0, or -1
 * with errstr (encode failure; the caller may rt_fail() the record). */
int rt_emit(rt_ctx_t *ctx, const char *topic, const codec_schema_t *s, const avro_value_t *value,
            char *errstr, size_t errstr_size);

/* Sends rec to <topic>.dlq with stage and reason headers; it is not passed
 * on. Safe to call once per record. */
void rt_fail(rt_ctx_t *ctx, const rt_record_t *rec, const char *stage, const char *reason);

/* The batch's state commands, applied atomically with its offsets. */
store_batch_t *rt_state(rt_ctx_t *ctx);
/* A store for reads during process(); borrowed. */
store_t *rt_store(rt_ctx_t *ctx);
codec_t *rt_codec(rt_ctx_t *ctx);
config_t *rt_config(rt_ctx_t *ctx);
metrics_t *rt_metrics(rt_ctx_t *ctx);

/* Writes "reel:{<group>}:<suffix>" into buf: every key of a worker carries
 * its group as a hash tag, so the keyspace can move to Redis Cluster. */
const char *rt_key(const rt_ctx_t *ctx, const char *suffix, char *buf, size_t buf_size);
/* Same, from the group id (for commands and tests outside a worker). */
const char *rt_key_for(const char *group_id, const char *suffix, char *buf, size_t buf_size);

/* The model version the worker serves, written into outputs and exported
 * as the reel_model_info metric. Copied. */
void rt_set_model_version(rt_ctx_t *ctx, const char *version);
const char *rt_model_version(const rt_ctx_t *ctx);

/* The runtime's own configuration keys (NULL-key terminated). */
extern const config_key_t rt_config_keys[];

/* Runs the workers, one thread each, until SIGINT/SIGTERM or rt_stop().
 * Returns 0 on a clean stop, or -1 with errstr if a worker could not start
 * or failed fatally. */
int rt_run(const worker_def_t *const *workers, size_t n_workers, config_t *config, char *errstr,
           size_t errstr_size);

/* Asks rt_run() to finish its batches and return (async-signal-safe). */
void rt_stop(void);
/* Installs SIGINT/SIGTERM handlers that call rt_stop(). */
void rt_install_signal_handlers(void);
int rt_stopping(void);
/* Clears a stop request, so that a command can call rt_run() again after
 * stopping it (not while it runs). */
void rt_stop_reset(void);

/* Registers every secret of config with log_add_secret(): values of keys
 * naming a password, secret or private key (kafka.sasl.password,
 * kafka.ssl.key.password, ...) and the password in redis.url, so no log
 * line shows them. rt_run() calls it; commands that log call it too. */
void rt_protect_secrets(const config_t *config);

/* Builds librdkafka configuration from every "kafka.*" key (prefix
 * stripped) plus role-specific "kafka.consumer.*" / "kafka.producer.*".
 * Returns a conf the caller owns (or passes to rd_kafka_new()), or NULL
 * with errstr. */
struct rd_kafka_conf_s *rt_kafka_conf(const config_t *config, const char *role, char *errstr,
                                      size_t errstr_size);

/* Sets librdkafka property `name` to `value` in conf (from rt_kafka_conf()
 * for role) unless the configuration sets it, as kafka.<name> or
 * kafka.<role>.<name>: reel's defaults never override the user's. Returns 0
 * (set, or left to the user's value), or -1 with librdkafka's reason in
 * errstr. */
int rt_kafka_conf_default(struct rd_kafka_conf_s *conf, const config_t *config, const char *role,
                          const char *name, const char *value, char *errstr, size_t errstr_size);

#endif
