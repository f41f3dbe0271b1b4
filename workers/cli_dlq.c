/* cli_dlq.c: `reel dlq replay`, putting dead-lettered records back on
 * their topic once their cause is fixed (a new model, a schema, a bug).
 *
 * The DLQ is read by a consumer group ("reel-dlq-replay" by default) whose
 * offsets are committed only after every replayed record was delivered, so
 * a replay can be stopped and resumed and never sends a record twice unless
 * it dies between the delivery and the commit. A record goes back with its
 * original key, value and headers; the reel.error.* and reel.source.*
 * headers are dropped and reel.replayed.from ("<dlq>:<partition>:<offset>")
 * is added. */
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/log.h"
#include "workers/workers.h"

static void dlq_usage(FILE *out) {
    fprintf(out,
            "usage: reel dlq replay --topic T [--reason TEXT] [--group G] [--dry-run]\n"
            "                       [--timeout-ms MS] [-c FILE] [-X key=value]...\n"
            "Reads T.dlq and produces each record back to its source topic (the\n"
            "reel.source.topic header, else T) with its original key, value and headers.\n"
            "  --reason TEXT   only records whose reel.error.reason contains TEXT\n"
            "  --group G       the consumer group that remembers what was replayed\n"
            "                  (default reel-dlq-replay); a new group starts at the beginning\n"
            "  --dry-run       print what would be replayed, produce and commit nothing\n"
            "  --timeout-ms    stop after this long without a new DLQ record (5000)\n");
}

typedef struct replay_stats {
    long long delivered, failed;
} replay_stats_t;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    replay_stats_t *st = opaque;
    if (m->err) {
        st->failed++;
        fprintf(stderr, "reel dlq replay: delivery failed: %s\n", rd_kafka_err2str(m->err));
    } else {
        st->delivered++;
    }
}

static const char *header_str(rd_kafka_headers_t *h, const char *name, char *buf, size_t n) {
    const void *val = NULL;
    size_t size = 0;
    if (!h || rd_kafka_header_get_last(h, name, &val, &size) != RD_KAFKA_RESP_ERR_NO_ERROR || !val)
        return NULL;
    if (size >= n) size = n - 1;
    memcpy(buf, val, size);
    buf[size] = '\0';
    return buf;
}

int cmd_dlq(int argc, char **argv) {
    const char *overrides[256], *topic = NULL, *reason = NULL, *group = "reel-dlq-replay";
    cli_opts_t opts = {NULL, overrides, 0};
    int dry_run = 0, timeout_ms = 5000;
    if (argc < 2 || strcmp(argv[1], "replay") != 0) {
        dlq_usage(argc > 1 && strcmp(argv[1], "--help") == 0 ? stdout : stderr);
        return argc > 1 && strcmp(argv[1], "--help") == 0 ? 0 : 2;
    }
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
            opts.config_file = argv[++i];
        else if (strcmp(argv[i], "-X") == 0 && i + 1 < argc) {
            if (opts.n_overrides < 256) overrides[opts.n_overrides++] = argv[++i];
        } else if (strcmp(argv[i], "--topic") == 0 && i + 1 < argc)
            topic = argv[++i];
        else if (strcmp(argv[i], "--reason") == 0 && i + 1 < argc)
            reason = argv[++i];
        else if (strcmp(argv[i], "--group") == 0 && i + 1 < argc)
            group = argv[++i];
        else if (strcmp(argv[i], "--timeout-ms") == 0 && i + 1 < argc)
            timeout_ms = atoi(argv[++i]);
        else if (strcmp(argv[i], "--dry-run") == 0)
            dry_run = 1;
        else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            dlq_usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "reel dlq replay: unknown or incomplete option %s\n", argv[i]);
            dlq_usage(stderr);
            return 2;
        }
    }
    if (!topic || timeout_ms <= 0) {
        dlq_usage(stderr);
        return 2;
    }
    size_t tl = strlen(topic);
    char dlq[512];
    if (tl > 4 && strcmp(topic + tl - 4, ".dlq") == 0)
        snprintf(dlq, sizeof dlq, "%s", topic);
    else
        snprintf(dlq, sizeof dlq, "%s.dlq", topic);
    char home[512];
    snprintf(home, sizeof home, "%.*s", (int)(strlen(dlq) - 4), dlq);

    config_t *config = cli_config(&opts);
    if (!config) return 2;
    char err[512];
    int status = 1;
    rd_kafka_t *consumer = NULL, *producer = NULL;
    rd_kafka_topic_partition_list_t *sub = NULL;
    replay_stats_t stats = {0, 0};
    long long seen = 0, selected = 0, idle_unassigned = 0;

    rd_kafka_conf_t *cconf = rt_kafka_conf(config, "consumer", err, sizeof err);
    if (!cconf) goto conf_fail;
    if (rd_kafka_conf_set(cconf, "group.id", group, err, sizeof err) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(cconf, "enable.auto.commit", "false", err, sizeof err) ||
        rd_kafka_conf_set(cconf, "auto.offset.reset", "earliest", err, sizeof err)) {
        rd_kafka_conf_destroy(cconf);
        goto conf_fail;
    }
    consumer = rd_kafka_new(RD_KAFKA_CONSUMER, cconf, err, sizeof err);
    if (!consumer) goto conf_fail;
    rd_kafka_poll_set_consumer(consumer);
    if (!dry_run) {
        rd_kafka_conf_t *pconf = rt_kafka_conf(config, "producer", err, sizeof err);
        if (!pconf) goto conf_fail;
        rd_kafka_conf_set(pconf, "enable.idempotence", "true", err, sizeof err);
        rd_kafka_conf_set_dr_msg_cb(pconf, on_delivery);
        rd_kafka_conf_set_opaque(pconf, &stats);
        producer = rd_kafka_new(RD_KAFKA_PRODUCER, pconf, err, sizeof err);
        if (!producer) goto conf_fail;
    }
    sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, dlq, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(consumer, sub);
    if (e) {
        fprintf(stderr, "reel dlq replay: subscribe %s: %s\n", dlq, rd_kafka_err2str(e));
        goto done;
    }
    rt_install_signal_handlers();
    fprintf(stderr, "reel dlq replay: reading %s as group %s%s\n", dlq, group,
            dry_run ? " (dry run)" : "");
    for (;;) {
        if (rt_stopping()) break;
        rd_kafka_message_t *m = rd_kafka_consumer_poll(consumer, timeout_ms);
        if (!m) {
            /* Idle for timeout_ms: caught up, unless the group has not
             * assigned the partitions yet (a join takes seconds). */
            rd_kafka_topic_partition_list_t *asg = NULL;
            int assigned = !rd_kafka_assignment(consumer, &asg) && asg && asg->cnt > 0;
            if (asg) rd_kafka_topic_partition_list_destroy(asg);
            if (assigned || ++idle_unassigned * (long long)timeout_ms >= 60000) break;
            continue;
        }
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                fprintf(stderr, "reel dlq replay: %s\n", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        seen++;
        rd_kafka_headers_t *hdrs = NULL;
        rd_kafka_message_headers(m, &hdrs);
        char why[1024], src[512];
        const char *r = header_str(hdrs, "reel.error.reason", why, sizeof why);
        const char *to = header_str(hdrs, "reel.source.topic", src, sizeof src);
        if (!to) to = home;
        if (reason && (!r || !strstr(r, reason))) {
            rd_kafka_message_destroy(m);
            continue;
        }
        selected++;
        if (dry_run) {
            printf("%s[%" PRId32 "]@%" PRId64 " -> %s: %s\n", dlq, m->partition, m->offset, to,
                   r ? r : "(no reason)");
            rd_kafka_message_destroy(m);
            continue;
        }
        /* The original headers, without reel's error and source ones. */
        rd_kafka_headers_t *out = rd_kafka_headers_new(8);
        const char *name;
        const void *val;
        size_t size;
        for (size_t i = 0; hdrs && !rd_kafka_header_get_all(hdrs, i, &name, &val, &size); i++)
            if (strncmp(name, "reel.error.", 11) != 0 && strncmp(name, "reel.source.", 12) != 0 &&
                strcmp(name, "reel.replayed.from") != 0)
                rd_kafka_header_add(out, name, -1, val, (ssize_t)size);
        char from[600];
        snprintf(from, sizeof from, "%s:%" PRId32 ":%" PRId64, dlq, m->partition, m->offset);
        rd_kafka_header_add(out, "reel.replayed.from", -1, from, -1);
        e = rd_kafka_producev(producer, RD_KAFKA_V_TOPIC(to), RD_KAFKA_V_KEY(m->key, m->key_len),
                              RD_KAFKA_V_VALUE(m->payload, m->len),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(out),
                              RD_KAFKA_V_END);
        if (e) {
            rd_kafka_headers_destroy(out);
            fprintf(stderr, "reel dlq replay: produce to %s: %s\n", to, rd_kafka_err2str(e));
            rd_kafka_message_destroy(m);
            goto done; /* nothing committed: the next run resumes here */
        }
        rd_kafka_poll(producer, 0);
        rd_kafka_message_destroy(m);
    }
    if (!dry_run) {
        rd_kafka_flush(producer, 30000);
        if (stats.failed || stats.delivered != selected) {
            fprintf(stderr,
                    "reel dlq replay: %lld of %lld records delivered; offsets not committed, "
                    "run it again to resume\n",
                    stats.delivered, selected);
            goto done;
        }
        if (seen > 0 && (e = rd_kafka_commit(consumer, NULL, 0)) != RD_KAFKA_RESP_ERR_NO_ERROR) {
            fprintf(stderr, "reel dlq replay: commit: %s (the next run may repeat records)\n",
                    rd_kafka_err2str(e));
            goto done;
        }
    }
    fprintf(stderr, "reel dlq replay: %lld DLQ records read, %lld %s\n", seen, selected,
            dry_run ? "would be replayed" : "replayed");
    status = 0;
    goto done;
conf_fail:
    fprintf(stderr, "reel dlq replay: %s\n", err);
    status = 2;
done:
    if (sub) rd_kafka_topic_partition_list_destroy(sub);
    if (consumer) {
        rd_kafka_consumer_close(consumer);
        rd_kafka_destroy(consumer);
    }
    if (producer) rd_kafka_destroy(producer);
    config_destroy(config);
    return status;
}
