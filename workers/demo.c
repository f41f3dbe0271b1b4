/* demo.c: `reel demo`, the whole pipeline end to end in one command.
 *
 * With no options it owns everything it uses: a Kafka-protocol cluster in
 * process (librdkafka's mock cluster) and a private redis-server in a
 * temporary folder, both stopped at the end. With --bootstrap-servers and
 * --redis-url it runs the same against real services.
 *
 * Until the ML workers land, the demo runs the runtime's built-in counting
 * pipeline: MovieLens ratings become viewing events, a few deliberately
 * broken records show the dead-letter topic, and the summary is read back
 * from Redis and the output topics. */
#include <errno.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pipeline/codec.h"
#include "pipeline/log.h"
#include "pipeline/store.h"
#include "workers/workers.h"

typedef struct demo_opts {
    const char *bootstrap;
    const char *redis_url;
    long events;
    int verbose;
} demo_opts_t;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- a private redis-server ---- */

typedef struct demo_redis {
    pid_t pid;
    char dir[PATH_MAX];
    char url[PATH_MAX + 16];
} demo_redis_t;

static int redis_start(demo_redis_t *r, char *errstr, size_t errstr_size) {
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(r->dir, sizeof r->dir, "%s/reel-demo-redis.XXXXXX", tmp);
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

static void redis_stop(demo_redis_t *r) {
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

/* ---- sample data ---- */

/* Finds the MovieLens ratings: $REEL_DATA_DIR, ../shared/data next to the
 * checkout, or the sample committed under examples/. */
static int find_ratings(char *path, size_t n) {
    char exe[PATH_MAX] = "";
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0; /* the build folder */
    }
    const char *env = getenv("REEL_DATA_DIR");
    char candidates[6][PATH_MAX + 64];
    int k = 0;
    if (env) snprintf(candidates[k++], sizeof candidates[0], "%s/movielens-small/ratings.csv", env);
    snprintf(candidates[k++], sizeof candidates[0], "../shared/data/movielens-small/ratings.csv");
    if (exe[0]) {
        snprintf(candidates[k++], sizeof candidates[0],
                 "%s/../../shared/data/movielens-small/ratings.csv", exe);
        snprintf(candidates[k++], sizeof candidates[0],
                 "%s/../examples/movielens-sample/ratings.csv", exe);
    }
    snprintf(candidates[k++], sizeof candidates[0], "examples/movielens-sample/ratings.csv");
    for (int i = 0; i < k; i++) {
        if (access(candidates[i], R_OK) == 0) {
            snprintf(path, n, "%s", candidates[i]);
            return 0;
        }
    }
    return -1;
}

static void on_demo_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    if (m->err) (*(long *)opaque)++;
}

/* Produces up to max MovieLens ratings as ViewingEvents, and a few broken
 * records. Returns the number of good events produced, or -1. */
static long produce_events(const char *bootstrap, const char *ratings, long max, long *bad_sent,
                           char *errstr, size_t errstr_size) {
    long failed = 0, sent = 0;
    char err[512];
    codec_t *codec = codec_new(errstr, errstr_size);
    if (!codec) return -1;
    const codec_schema_t *s = codec_by_topic(codec, "viewing-events");
    avro_value_t v;
    if (codec_value_new(s, &v, errstr, errstr_size) < 0) {
        codec_destroy(codec);
        return -1;
    }
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof err);
    rd_kafka_conf_set(conf, "enable.idempotence", "true", err, sizeof err);
    rd_kafka_conf_set(conf, "linger.ms", "20", err, sizeof err);
    rd_kafka_conf_set_dr_msg_cb(conf, on_demo_delivery);
    rd_kafka_conf_set_opaque(conf, &failed);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    FILE *f = fopen(ratings, "r");
    codec_buf_t buf = {0};
    if (!rk || !f) {
        snprintf(errstr, errstr_size, "%s", !rk ? err : strerror(errno));
        sent = -1;
        goto done;
    }
    char line[512], json[1024];
    long n = 0;
    while (sent < max && fgets(line, sizeof line, f)) {
        long user, item, ts;
        double rating;
        if (sscanf(line, "%ld,%ld,%lf,%ld", &user, &item, &rating, &ts) != 4) continue;
        snprintf(json, sizeof json,
                 "{\"event_id\":\"ml-%ld\",\"user_id\":\"%ld\",\"item_id\":\"%ld\","
                 "\"type\":\"rating\",\"ts\":%ld000,\"watch_seconds\":0,\"rating\":%.1f}",
                 n++, user, item, ts, rating);
        buf.len = 0;
        if (codec_value_from_json(s, json, strlen(json), &v, err, sizeof err) < 0 ||
            codec_encode(codec, s, &v, &buf, err, sizeof err) < 0) {
            snprintf(errstr, errstr_size, "encoding a rating: %s", err);
            sent = -1;
            goto done;
        }
        const char *key;
        size_t key_len;
        codec_value_key(&v, "user_id", &key, &key_len);
        while (rd_kafka_producev(
                   rk, RD_KAFKA_V_TOPIC("viewing-events"), RD_KAFKA_V_KEY((void *)key, key_len),
                   RD_KAFKA_V_VALUE(buf.data, buf.len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                   RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(rk, 10);
        sent++;
    }
    /* Poison records: not Avro, an unknown schema id, and a truncated one. */
    const unsigned char junk[] = "{\"user_id\": \"not avro\"}";
    const unsigned char unknown_id[] = {0, 0, 0, 0x27, 0x0f, 2, 'x'};
    unsigned char truncated[8] = {0};
    size_t tlen = buf.len < sizeof truncated ? buf.len : sizeof truncated;
    memcpy(truncated, buf.data, tlen);
    const void *bad[] = {junk, unknown_id, truncated};
    const size_t bad_len[] = {sizeof junk - 1, sizeof unknown_id, tlen};
    for (int i = 0; i < 3; i++)
        rd_kafka_producev(rk, RD_KAFKA_V_TOPIC("viewing-events"), RD_KAFKA_V_KEY("demo-bad", 8),
                          RD_KAFKA_V_VALUE((void *)bad[i], bad_len[i]),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    *bad_sent = 3;
    rd_kafka_flush(rk, 30000);
    if (failed) {
        snprintf(errstr, errstr_size, "%ld events were not delivered", failed);
        sent = -1;
    }
done:
    if (f) fclose(f);
    if (rk) rd_kafka_destroy(rk);
    codec_buf_free(&buf);
    avro_value_decref(&v);
    codec_destroy(codec);
    return sent;
}

/* ---- running the workers ---- */

typedef struct demo_run {
    config_t *config;
    int rc;
    char err[512];
} demo_run_t;

static void *run_workers(void *arg) {
    demo_run_t *d = arg;
    const worker_def_t *workers[] = {&count_worker};
    d->rc = rt_run(workers, 1, d->config, d->err, sizeof d->err);
    return NULL;
}

static long long redis_sum(store_t *s, const char *key) {
    char err[256];
    redisReply *r = store_command(s, err, sizeof err, "HVALS %s", key);
    long long sum = 0;
    if (!r) return -1;
    for (size_t i = 0; i < r->elements; i++) sum += atoll(r->element[i]->str);
    freeReplyObject(r);
    return sum;
}

static int cmp_desc(const void *a, const void *b) {
    long long x = ((const long long *)a)[0], y = ((const long long *)b)[0];
    return (x < y) - (x > y);
}

/* Counts the records of a topic from the beginning; for DLQ topics also
 * prints each record's error reason. */
static long count_topic(const char *bootstrap, const char *topic, int show_reasons) {
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof err);
    rd_kafka_conf_set(conf, "group.id", "reel-demo-reader", err, sizeof err);
    rd_kafka_conf_set(conf, "enable.partition.eof", "true", err, sizeof err);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (!rk) return -1;
    rd_kafka_poll_set_consumer(rk);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    long n = 0;
    if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) == 0 && md->topic_cnt == 1) {
        int parts = md->topics[0].partition_cnt, eofs = 0;
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(parts);
        for (int i = 0; i < parts; i++)
            rd_kafka_topic_partition_list_add(l, topic, md->topics[0].partitions[i].id)->offset =
                RD_KAFKA_OFFSET_BEGINNING;
        rd_kafka_assign(rk, l);
        rd_kafka_topic_partition_list_destroy(l);
        double deadline = now_s() + 20;
        while (eofs < parts && now_s() < deadline) {
            rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
            if (!m) continue;
            if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                eofs++;
            } else if (!m->err) {
                n++;
                rd_kafka_headers_t *h;
                const void *val;
                size_t size;
                if (show_reasons && rd_kafka_message_headers(m, &h) == 0 &&
                    rd_kafka_header_get_last(h, "reel.error.reason", &val, &size) == 0)
                    printf("    offset %" PRId64 ": %.*s\n", m->offset, (int)size,
                           (const char *)val);
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

static void print_top_users(store_t *s, const char *key) {
    char err[256];
    redisReply *r = store_command(s, err, sizeof err, "HGETALL %s", key);
    if (!r) return;
    size_t n = r->elements / 2;
    long long *rows = calloc(n ? n * 2 : 2, sizeof *rows);
    if (rows) {
        for (size_t i = 0; i < n; i++) {
            rows[2 * i] = atoll(r->element[2 * i + 1]->str);
            rows[2 * i + 1] = (long long)i;
        }
        qsort(rows, n, 2 * sizeof *rows, cmp_desc);
        printf("  most active users (events counted in Redis, %s):\n", key);
        for (size_t i = 0; i < n && i < 5; i++)
            printf("    user %-6s %lld events\n", r->element[2 * rows[2 * i + 1]]->str,
                   rows[2 * i]);
        free(rows);
    }
    freeReplyObject(r);
}

int cmd_demo(int argc, char **argv) {
    demo_opts_t o = {NULL, NULL, 5000, 0};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--bootstrap-servers") == 0 && i + 1 < argc)
            o.bootstrap = argv[++i];
        else if (strcmp(argv[i], "--redis-url") == 0 && i + 1 < argc)
            o.redis_url = argv[++i];
        else if (strcmp(argv[i], "--events") == 0 && i + 1 < argc)
            o.events = atol(argv[++i]);
        else if (strcmp(argv[i], "-v") == 0)
            o.verbose = 1;
        else {
            fprintf(stderr, "usage: reel demo [--bootstrap-servers B] [--redis-url U] "
                            "[--events N] [-v]\n");
            return 2;
        }
    }
    if (o.events < 1) o.events = 1;
    /* The summary reports DLQ reasons itself; -v shows the workers' logs. */
    log_set_level(o.verbose ? LOG_INFO : LOG_ERROR);
    setvbuf(stdout, NULL, _IOLBF, 0);
    int tty = isatty(2);
    log_set_component("demo");
    rt_install_signal_handlers();

    int status = 1;
    char err[512], ratings[PATH_MAX];
    rd_kafka_t *mock_rk = NULL;
    rd_kafka_mock_cluster_t *mc = NULL;
    demo_redis_t redis = {0};
    config_t *config = NULL;
    store_t *store = NULL;
    char bootstrap[1024];
    double t_start = now_s();

    printf("reel demo: the streaming runtime end to end with its built-in counting pipeline\n"
           "(the ML workers join the demo once they are complete: see README, Status)\n\n");
    if (find_ratings(ratings, sizeof ratings) < 0) {
        fprintf(stderr, "reel demo: no MovieLens ratings found (set REEL_DATA_DIR or run from "
                        "the checkout, which carries examples/movielens-sample)\n");
        return 1;
    }

    if (o.bootstrap) {
        snprintf(bootstrap, sizeof bootstrap, "%s", o.bootstrap);
    } else {
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err);
        mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
        if (mock_rk) mc = rd_kafka_mock_cluster_new(mock_rk, 3);
        if (!mc) {
            fprintf(stderr, "reel demo: cannot start the embedded Kafka cluster: %s\n", err);
            goto done;
        }
        const char *topics[] = {"viewing-events", "viewing-events.dlq", "counts", "counts.dlq"};
        for (size_t i = 0; i < 4; i++) rd_kafka_mock_topic_create(mc, topics[i], 4, 3);
        snprintf(bootstrap, sizeof bootstrap, "%s", rd_kafka_mock_cluster_bootstraps(mc));
    }
    printf("[1/4] kafka: %s (%s)\n", bootstrap, o.bootstrap ? "given" : "embedded mock cluster");

    const char *redis_url = o.redis_url;
    if (!redis_url) {
        if (redis_start(&redis, err, sizeof err) < 0) {
            fprintf(stderr, "reel demo: %s\n", err);
            goto done;
        }
        redis_url = redis.url;
    }
    printf("      redis: %s (%s)\n", redis_url, o.redis_url ? "given" : "private redis-server");

    char group[64];
    snprintf(group, sizeof group, "reel-demo-%ld", (long)time(NULL));
    config = config_new();
    config_set(config, "kafka.bootstrap.servers", bootstrap);
    config_set(config, "redis.url", redis_url);
    config_set(config, "group.id", group);
    config_set(config, "metrics.port", "-1");
    config_set(config, "batch.max.ms", "50");
    config_apply_defaults(config, rt_config_keys);
    config_apply_defaults(config, count_worker.config);
    store = store_new(redis_url, err, sizeof err);
    if (!store) {
        fprintf(stderr, "reel demo: %s\n", err);
        goto done;
    }

    printf("[2/4] producing %ld MovieLens ratings as viewing events from %s,\n"
           "      plus 3 broken records for the dead-letter topic\n",
           o.events, ratings);
    long bad = 0;
    double t0 = now_s();
    long good = produce_events(bootstrap, ratings, o.events, &bad, err, sizeof err);
    if (good < 0) {
        fprintf(stderr, "reel demo: %s\n", err);
        goto done;
    }
    printf("      %ld events in %.2f s\n", good, now_s() - t0);

    printf("[3/4] running the count worker (group %s-count)\n", group);
    demo_run_t run = {config, 0, ""};
    pthread_t tid;
    t0 = now_s();
    if (pthread_create(&tid, NULL, run_workers, &run) != 0) {
        fprintf(stderr, "reel demo: cannot start the worker thread\n");
        goto done;
    }
    char counts_key[256];
    char worker_group[128];
    snprintf(worker_group, sizeof worker_group, "%s-count", group);
    rt_key_for(worker_group, "counts", counts_key, sizeof counts_key);
    long long counted = 0;
    double deadline = now_s() + 120;
    while (!rt_stopping() && now_s() < deadline) {
        counted = redis_sum(store, counts_key);
        int width = 40, filled = (int)(width * (counted < 0 ? 0 : counted) / good);
        if (tty)
            fprintf(stderr, "\r      [%.*s%*s] %lld/%ld", filled,
                    "########################################", width - filled, "", counted, good);
        if (counted >= good) break;
        usleep(200000);
    }
    double elapsed = now_s() - t0;
    if (tty) fprintf(stderr, "\n");
    rt_stop();
    pthread_join(tid, NULL);
    if (run.rc < 0) {
        fprintf(stderr, "reel demo: worker failed: %s\n", run.err);
        goto done;
    }

    printf("[4/4] summary\n");
    long outputs = count_topic(bootstrap, "counts", 0);
    printf("  counted %lld of %ld events in %.2f s (%.0f events/s end to end)\n", counted, good,
           elapsed, (double)counted / elapsed);
    printf("  outputs on topic counts: %ld (one CountUpdate per event)\n", outputs);
    print_top_users(store, counts_key);
    printf("  dead-letter topic viewing-events.dlq:\n");
    long dlq = count_topic(bootstrap, "viewing-events.dlq", 1);
    printf("  %ld records dead-lettered (%ld broken records sent)\n", dlq, bad);
    if ((o.bootstrap ? counted >= good : counted == good) && outputs >= good && dlq >= bad) {
        printf("\nOK: nothing lost, nothing counted twice (%.1f s in all)\n", now_s() - t_start);
        status = 0;
    } else {
        printf("\nFAILED: counted %lld of %ld, %ld outputs, %ld of %ld in the DLQ\n", counted, good,
               outputs, dlq, bad);
    }
done:
    if (store) store_destroy(store);
    if (config) config_destroy(config);
    redis_stop(&redis);
    if (mc) rd_kafka_mock_cluster_destroy(mc);
    if (mock_rk) rd_kafka_destroy(mock_rk);
    return status;
}
