/* services.c: services a command starts for itself (see services.h). */
#include "workers/services.h"

#include <errno.h>
#include <librdkafka/rdkafka_mock.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pipeline/store.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- a private redis-server ---- */

int svc_redis_start(svc_redis_t *r, char *errstr, size_t errstr_size) {
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(r->dir, sizeof r->dir, "%s/reel-redis.XXXXXX", tmp);
    if (!mkdtemp(r->dir)) {
        snprintf(errstr, errstr_size, "mkdtemp %s: %s", r->dir, strerror(errno));
        return -1;
    }
    char sock[PATH_MAX + 16], logf[PATH_MAX + 16];
    snprintf(sock, sizeof sock, "%s/redis.sock", r->dir);
    snprintf(logf, sizeof logf, "%s/redis.log", r->dir);
    snprintf(r->url, sizeof r->url, "unix://%s", sock);
    r->pid = fork();
    if (r->pid < 0) {
        snprintf(errstr, errstr_size, "fork: %s", strerror(errno));
        return -1;
    }
    if (r->pid == 0) {
        FILE *f = freopen(logf, "a", stdout);
        (void)f;
        dup2(1, 2);
        execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", sock,
               "--unixsocketperm", "700", "--dir", r->dir, "--save", "", "--appendonly", "no",
               (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 100; i++) {
        store_t *s = store_new(r->url, errstr, errstr_size);
        if (s) {
            store_destroy(s);
            return 0;
        }
        int st;
        if (waitpid(r->pid, &st, WNOHANG) == r->pid) {
            r->pid = 0;
            snprintf(errstr, errstr_size,
                     "redis-server exited at once (is it installed? scripts/install-deps.sh)");
            return -1;
        }
        usleep(100000);
    }
    snprintf(errstr, errstr_size, "redis-server did not answer within 10 s");
    return -1;
}

void svc_redis_stop(svc_redis_t *r) {
    if (r->pid > 0) {
        kill(r->pid, SIGTERM);
        waitpid(r->pid, NULL, 0);
        r->pid = 0;
    }
    if (r->dir[0]) {
        char path[PATH_MAX + 32];
        const char *files[] = {"redis.sock", "redis.log", "dump.rdb"};
        for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
            snprintf(path, sizeof path, "%s/%s", r->dir, files[i]);
            unlink(path);
        }
        rmdir(r->dir);
        r->dir[0] = 0;
    }
}

/* ---- an in-process Kafka-protocol cluster ---- */

int svc_kafka_start(svc_kafka_t *k, const char *const *topics, int partitions, char *errstr,
                    size_t errstr_size) {
    memset(k, 0, sizeof *k);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "3", errstr, errstr_size);
    k->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errstr_size);
    if (!k->rk) return -1;
    k->mc = rd_kafka_mock_cluster_new(k->rk, 3);
    if (!k->mc) {
        snprintf(errstr, errstr_size, "cannot create the mock cluster");
        svc_kafka_stop(k);
        return -1;
    }
    for (size_t i = 0; topics[i]; i++) {
        char dlq[256];
        snprintf(dlq, sizeof dlq, "%s.dlq", topics[i]);
        rd_kafka_mock_topic_create(k->mc, topics[i], partitions, 3);
        rd_kafka_mock_topic_create(k->mc, dlq, partitions, 3);
    }
    snprintf(k->bootstrap, sizeof k->bootstrap, "%s", rd_kafka_mock_cluster_bootstraps(k->mc));
    return 0;
}

void svc_kafka_stop(svc_kafka_t *k) {
    if (k->mc) rd_kafka_mock_cluster_destroy(k->mc);
    if (k->rk) rd_kafka_destroy(k->rk);
    k->mc = NULL;
    k->rk = NULL;
}

/* ---- reading a topic ---- */

long svc_read_topic(const char *bootstrap, codec_t *codec, const char *topic, svc_record_fn fn,
                    void *opaque) {
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof err);
    rd_kafka_conf_set(conf, "group.id", "reel-demo-reader", err, sizeof err);
    rd_kafka_conf_set(conf, "enable.partition.eof", "true", err, sizeof err);
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof err);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (!rk) return -1;
    rd_kafka_poll_set_consumer(rk);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    size_t tl = strlen(topic);
    int dlq = tl > 4 && strcmp(topic + tl - 4, ".dlq") == 0;
    long n = 0;
    if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) == 0 && md->topic_cnt == 1) {
        int parts = md->topics[0].partition_cnt, eofs = 0;
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(parts);
        for (int i = 0; i < parts; i++)
            rd_kafka_topic_partition_list_add(l, topic, md->topics[0].partitions[i].id)->offset =
                RD_KAFKA_OFFSET_BEGINNING;
        rd_kafka_assign(rk, l);
        rd_kafka_topic_partition_list_destroy(l);
        double deadline = now_s() + 30;
        while (eofs < parts && now_s() < deadline) {
            rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
            if (!m) continue;
            if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                eofs++;
            } else if (!m->err) {
                n++;
                json_t *value = NULL;
                int32_t id;
                const codec_schema_t *s;
                avro_value_t v;
                if (!dlq && codec_peek_id(m->payload, m->len, &id, err, sizeof err) == 0 &&
                    (s = codec_by_id(codec, id)) && codec_value_new(s, &v, err, sizeof err) == 0) {
                    if (codec_decode(codec, s, m->payload, m->len, &v, err, sizeof err) == 0) {
                        char *text = codec_value_to_json(&v);
                        if (text) value = json_loads(text, 0, NULL);
                        free(text);
                    }
                    avro_value_decref(&v);
                }
                if (fn) fn(value, m, opaque);
                json_decref(value);
            }
            rd_kafka_message_destroy(m);
        }
    }
    if (md) rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return n;
}
