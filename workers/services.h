/* services.h: the services a command can start for itself (a private
 * redis-server, librdkafka's mock cluster in process) and a reader of a
 * topic's decoded records. Used by `reel demo` and `reel eval recommend
 * --via-kafka`. */
#ifndef REEL_WORKERS_SERVICES_H
#define REEL_WORKERS_SERVICES_H

#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <limits.h>
#include <sys/types.h>

#include "pipeline/codec.h"

typedef struct svc_redis {
    pid_t pid;
    char dir[PATH_MAX];
    char url[PATH_MAX + 16];
} svc_redis_t;

/* Starts redis-server (no persistence) on a unix socket in a new temporary
 * folder and waits until it answers. Returns 0 with r->url set, or -1 with
 * errstr. Stop it with svc_redis_stop(), which also removes the folder. */
int svc_redis_start(svc_redis_t *r, char *errstr, size_t errstr_size);
void svc_redis_stop(svc_redis_t *r);

typedef struct svc_kafka {
    rd_kafka_t *rk;
    struct rd_kafka_mock_cluster_s *mc;
    char bootstrap[1024];
} svc_kafka_t;

/* Starts a mock cluster of 3 brokers in process with every topic of
 * topics (NULL-terminated) and its .dlq, partitions each. Returns 0 with
 * k->bootstrap set, or -1 with errstr. */
int svc_kafka_start(svc_kafka_t *k, const char *const *topics, int partitions, char *errstr,
                    size_t errstr_size);
void svc_kafka_stop(svc_kafka_t *k);

/* Called per record of a topic: value is the decoded record as JSON (NULL
 * for a DLQ topic or a record that does not decode), borrowed. */
typedef void (*svc_record_fn)(json_t *value, const rd_kafka_message_t *m, void *opaque);

/* Reads topic from the beginning to its end (at most 30 s) and calls fn
 * for each record. Returns the number of records, or -1. */
long svc_read_topic(const char *bootstrap, codec_t *codec, const char *topic, svc_record_fn fn,
                    void *opaque);

#endif
