/* cli_kafka.c: the operations commands: mock-kafka, produce, consume. */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>

#include "pipeline/codec.h"
#include "pipeline/log.h"
#include "workers/workers.h"

/* Parses -c/-X into opts and hands every other argument to on_arg, which
 * returns how many arguments it consumed (0: unknown option). */
typedef int (*arg_fn)(int argc, char **argv, int i, void *opaque);

static int parse_args(int argc, char **argv, cli_opts_t *opts, const char **overrides,
                      int max_overrides, arg_fn on_arg, void *opaque) {
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
            opts->config_file = argv[++i];
            continue;
        }
        if (strcmp(argv[i], "-X") == 0 && i + 1 < argc) {
            if (opts->n_overrides < max_overrides) overrides[opts->n_overrides++] = argv[++i];
            continue;
        }
        int used = on_arg(argc, argv, i, opaque);
        if (used <= 0) {
            fprintf(stderr, "reel %s: unknown or incomplete option %s\n", argv[0], argv[i]);
            return -1;
        }
        i += used - 1;
    }
    return 0;
}

static int64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- mock-kafka ---- */

typedef struct mock_args {
    int brokers;
    int partitions;
    const char *topics;
} mock_args_t;

static int mock_arg(int argc, char **argv, int i, void *opaque) {
    mock_args_t *a = opaque;
    if (i + 1 >= argc) return 0;
    if (strcmp(argv[i], "--brokers") == 0)
        a->brokers = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--partitions") == 0)
        a->partitions = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--topics") == 0)
        a->topics = argv[i + 1];
    else
        return 0;
    return 2;
}

static int mock_create_topic(rd_kafka_mock_cluster_t *mc, const char *topic, int partitions,
                             int replication) {
    rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(mc, topic, partitions, replication);
    if (err) {
        fprintf(stderr, "reel mock-kafka: topic %s: %s\n", topic, rd_kafka_err2str(err));
        return -1;
    }
    return 0;
}

/* Control lines on stdin, for fault tests:
 *   down ID | up ID       take broker ID down or bring it back
 *   rtt ID MS             add round-trip latency to broker ID
 *   topic NAME PARTITIONS create a topic */
static void mock_control(rd_kafka_mock_cluster_t *mc, char *line, int replication) {
    char cmd[32], name[256];
    int id = 0, ms = 0;
    if (sscanf(line, "%31s", cmd) != 1) return;
    if (strcmp(cmd, "down") == 0 && sscanf(line, "%*s %d", &id) == 1) {
        rd_kafka_mock_broker_set_down(mc, id);
        fprintf(stderr, "reel mock-kafka: broker %d down\n", id);
    } else if (strcmp(cmd, "up") == 0 && sscanf(line, "%*s %d", &id) == 1) {
        rd_kafka_mock_broker_set_up(mc, id);
        fprintf(stderr, "reel mock-kafka: broker %d up\n", id);
    } else if (strcmp(cmd, "rtt") == 0 && sscanf(line, "%*s %d %d", &id, &ms) == 2) {
        rd_kafka_mock_broker_set_rtt(mc, id, ms);
    } else if (strcmp(cmd, "topic") == 0 && sscanf(line, "%*s %255s %d", name, &id) == 2) {
        mock_create_topic(mc, name, id, replication);
    } else {
        fprintf(stderr, "reel mock-kafka: unknown control line: %s\n", line);
    }
}

int cmd_mock_kafka(int argc, char **argv) {
    mock_args_t a = {3, 4, NULL};
    const char *overrides[64];
    cli_opts_t opts = {NULL, overrides, 0};
    if (parse_args(argc, argv, &opts, overrides, 64, mock_arg, &a) < 0) return 2;
    if (a.brokers < 1 || a.brokers > 32 || a.partitions < 1 || a.partitions > 1000) {
        fprintf(stderr, "reel mock-kafka: --brokers 1..32 and --partitions 1..1000\n");
        return 2;
    }
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk) {
        fprintf(stderr, "reel mock-kafka: %s\n", err);
        return 1;
    }
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, a.brokers);
    if (!mc) {
        fprintf(stderr, "reel mock-kafka: cannot create the mock cluster\n");
        rd_kafka_destroy(rk);
        return 1;
    }
    int replication = a.brokers < 3 ? a.brokers : 3;
    int rc = 0;
    if (a.topics) {
        char *copy = strdup(a.topics), *save = NULL;
        for (char *t = strtok_r(copy, ",", &save); t && rc == 0; t = strtok_r(NULL, ",", &save))
            rc = mock_create_topic(mc, t, a.partitions, replication);
        free(copy);
    } else {
        for (size_t i = 0; i < reel_schema_source_count && rc == 0; i++) {
            char dlq[300];
            snprintf(dlq, sizeof dlq, "%s.dlq", reel_schema_sources[i].topic);
            rc = mock_create_topic(mc, reel_schema_sources[i].topic, a.partitions, replication);
            if (rc == 0) rc = mock_create_topic(mc, dlq, a.partitions, replication);
        }
    }
    if (rc == 0) {
        printf("bootstrap.servers=%s\n", rd_kafka_mock_cluster_bootstraps(mc));
        fflush(stdout);
        rt_install_signal_handlers();
        int stdin_open = 1;
        char line[512];
        size_t used = 0;
        while (!rt_stopping()) {
            if (!stdin_open) {
                usleep(100000);
                continue;
            }
            struct pollfd pfd = {0, POLLIN, 0};
            int pr = poll(&pfd, 1, 100);
            if (pr <= 0) continue;
            ssize_t got = read(0, line + used, sizeof line - 1 - used);
            if (got <= 0) {
                stdin_open = 0;
                continue;
            }
            used += (size_t)got;
            line[used] = 0;
            char *nl;
            while ((nl = strchr(line, '\n'))) {
                *nl = 0;
                mock_control(mc, line, replication);
                size_t rest = used - (size_t)(nl + 1 - line);
                memmove(line, nl + 1, rest + 1);
                used = rest;
            }
            if (used == sizeof line - 1) used = 0; /* an overlong line is dropped */
        }
    }
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return rc == 0 ? 0 : 1;
}

/* ---- produce ---- */

typedef struct topic_args {
    const char *topic;
    int from_beginning;
    long long max;
    long long timeout_ms;
    int raw;
    int receive_time; /* consume: add "received", the wall clock at receipt */
} topic_args_t;

static int topic_arg(int argc, char **argv, int i, void *opaque) {
    topic_args_t *a = opaque;
    if (strcmp(argv[i], "--from-beginning") == 0) {
        a->from_beginning = 1;
        return 1;
    }
    if (strcmp(argv[i], "--raw-base64") == 0) {
        a->raw = 1;
        return 1;
    }
    if (strcmp(argv[i], "--receive-time") == 0) {
        a->receive_time = 1;
        return 1;
    }
    if (i + 1 >= argc) return 0;
    if (strcmp(argv[i], "--topic") == 0 || strcmp(argv[i], "-t") == 0)
        a->topic = argv[i + 1];
    else if (strcmp(argv[i], "--max") == 0)
        a->max = atoll(argv[i + 1]);
    else if (strcmp(argv[i], "--timeout-ms") == 0)
        a->timeout_ms = atoll(argv[i + 1]);
    else
        return 0;
    return 2;
}

static void on_produced(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    long long *failed = opaque;
    if (m->err) {
        (*failed)++;
        fprintf(stderr, "reel produce: delivery failed: %s\n", rd_kafka_err2str(m->err));
    }
}

int cmd_produce(int argc, char **argv) {
    topic_args_t a = {NULL, 0, -1, -1, 0, 0};
    const char *overrides[256];
    cli_opts_t opts = {NULL, overrides, 0};
    if (parse_args(argc, argv, &opts, overrides, 256, topic_arg, &a) < 0) return 2;
    if (!a.topic) {
        fprintf(stderr, "usage: reel produce --topic T [--raw-base64] [-c FILE] [-X k=v]...\n"
                        "  reads one JSON object per line on stdin (--raw-base64: one base64\n"
                        "  value per line, produced as is, for testing decoders)\n");
        return 2;
    }
    config_t *config = cli_config(&opts);
    if (!config) return 2;
    char err[512];
    int status = 0;
    codec_t *codec = codec_new(err, sizeof err);
    rd_kafka_t *rk = NULL;
    rd_kafka_topic_t *rkt = NULL;
    const codec_schema_t *s = NULL;
    avro_value_t value;
    int have_value = 0;
    codec_buf_t buf = {0};
    char *line = NULL;
    size_t line_cap = 0;
    long long failed = 0, sent = 0, bad = 0, lineno = 0;
    if (!codec) {
        fprintf(stderr, "reel produce: %s\n", err);
        status = 1;
        goto done;
    }
    if (!a.raw) {
        s = codec_by_topic(codec, a.topic);
        if (!s) {
            fprintf(stderr, "reel produce: topic %s has no schema (see schemas/schemas.tsv)\n",
                    a.topic);
            status = 2;
            goto done;
        }
        if (codec_value_new(s, &value, err, sizeof err) < 0) {
            fprintf(stderr, "reel produce: %s\n", err);
            status = 1;
            goto done;
        }
        have_value = 1;
    }
    rd_kafka_conf_t *conf = rt_kafka_conf(config, "producer", err, sizeof err);
    if (!conf) {
        fprintf(stderr, "reel produce: %s\n", err);
        status = 2;
        goto done;
    }
    rt_kafka_conf_default(conf, config, "producer", "enable.idempotence", "true", err, sizeof err);
    rt_kafka_conf_default(conf, config, "producer", "linger.ms", "20", err, sizeof err);
    rd_kafka_conf_set_dr_msg_cb(conf, on_produced);
    rd_kafka_conf_set_opaque(conf, &failed);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk) {
        fprintf(stderr, "reel produce: %s\n", err);
        status = 1;
        goto done;
    }
    /* A new producer learns a topic's partitions only at librdkafka's
     * once-a-second scan of unknown topics, after the first record: the
     * first records waited up to a second. Asking now avoids that. Best
     * effort: a topic the cluster creates on first use still works. */
    rkt = rd_kafka_topic_new(rk, a.topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    if (rkt && rd_kafka_metadata(rk, 0, rkt, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR)
        rd_kafka_metadata_destroy(md);
    ssize_t got;
    while ((got = getline(&line, &line_cap, stdin)) >= 0) {
        lineno++;
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r')) line[--got] = 0;
        if (got == 0) continue;
        const void *payload;
        size_t payload_len;
        const char *key = NULL;
        size_t key_len = 0;
        unsigned char *raw = NULL;
        if (a.raw) {
            raw = codec_base64_decode(line, (size_t)got, &payload_len);
            if (!raw) {
                fprintf(stderr, "reel produce: line %lld: not base64\n", lineno);
                bad++;
                continue;
            }
            payload = raw;
        } else {
            if (codec_value_from_json(s, line, (size_t)got, &value, err, sizeof err) < 0 ||
                (buf.len = 0, codec_encode(codec, s, &value, &buf, err, sizeof err) < 0)) {
                fprintf(stderr, "reel produce: line %lld: %s\n", lineno, err);
                bad++;
                continue;
            }
            codec_value_key(&value, codec_schema_src(s)->key_field, &key, &key_len);
            payload = buf.data;
            payload_len = buf.len;
        }
        for (;;) {
            rd_kafka_resp_err_t e = rd_kafka_producev(
                rk, RD_KAFKA_V_TOPIC(a.topic), RD_KAFKA_V_KEY((void *)key, key_len),
                RD_KAFKA_V_VALUE((void *)payload, payload_len),
                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
            if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                rd_kafka_poll(rk, 10);
                continue;
            }
            if (e) {
                fprintf(stderr, "reel produce: line %lld: %s\n", lineno, rd_kafka_err2str(e));
                failed++;
            } else {
                sent++;
            }
            break;
        }
        free(raw);
        rd_kafka_poll(rk, 0);
    }
    while (rd_kafka_outq_len(rk) > 0) {
        if (rd_kafka_flush(rk, 1000) == RD_KAFKA_RESP_ERR__TIMED_OUT)
            fprintf(stderr, "reel produce: waiting for %d deliveries\n", rd_kafka_outq_len(rk));
    }
    fprintf(stderr, "reel produce: %lld records to %s, %lld bad lines, %lld failed\n",
            sent - failed, a.topic, bad, failed);
    if (bad || failed) status = 1;
done:
    free(line);
    codec_buf_free(&buf);
    if (have_value) avro_value_decref(&value);
    if (rkt) rd_kafka_topic_destroy(rkt);
    if (rk) rd_kafka_destroy(rk);
    if (codec) codec_destroy(codec);
    config_destroy(config);
    return status;
}

/* ---- consume ---- */

static json_t *json_bytes(const void *p, size_t n) {
    char *b64 = codec_base64_encode(p ? p : "", p ? n : 0);
    json_t *j = json_string(b64 ? b64 : "");
    free(b64);
    return j;
}

/* A key or header value as a JSON string when it is valid UTF-8 text, else
 * as {"base64": ...}. */
static json_t *json_text_or_bytes(const void *p, size_t n) {
    if (!p) return json_null();
    json_t *j = json_stringn((const char *)p, n);
    if (j) return j;
    return json_pack("{s:o}", "base64", json_bytes(p, n));
}

static json_t *record_json(codec_t *codec, const rd_kafka_message_t *m, int is_dlq) {
    rd_kafka_timestamp_type_t tt;
    json_t *o = json_object();
    json_object_set_new(o, "topic", json_string(rd_kafka_topic_name(m->rkt)));
    json_object_set_new(o, "partition", json_integer(m->partition));
    json_object_set_new(o, "offset", json_integer(m->offset));
    json_object_set_new(o, "timestamp", json_integer(rd_kafka_message_timestamp(m, &tt)));
    json_object_set_new(o, "key", json_text_or_bytes(m->key, m->key_len));
    rd_kafka_headers_t *hdrs = NULL;
    if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR && hdrs) {
        json_t *h = json_object();
        const char *name;
        const void *val;
        size_t size;
        for (size_t i = 0; !rd_kafka_header_get_all(hdrs, i, &name, &val, &size); i++)
            json_object_set_new(h, name, json_text_or_bytes(val, size));
        json_object_set_new(o, "headers", h);
    }
    char err[512];
    int32_t id;
    const codec_schema_t *s = NULL;
    if (!is_dlq && codec_peek_id(m->payload, m->len, &id, err, sizeof err) == 0)
        s = codec_by_id(codec, id);
    if (s) {
        avro_value_t v;
        if (codec_value_new(s, &v, err, sizeof err) == 0) {
            if (codec_decode(codec, s, m->payload, m->len, &v, err, sizeof err) == 0) {
                char *text = codec_value_to_json(&v);
                json_t *val = text ? json_loads(text, 0, NULL) : NULL;
                free(text);
                if (val) {
                    json_object_set_new(o, "schema", json_string(codec_schema_src(s)->name));
                    json_object_set_new(o, "value", val);
                    avro_value_decref(&v);
                    return o;
                }
            }
            avro_value_decref(&v);
        }
    }
    if (!is_dlq) json_object_set_new(o, "error", json_string(s ? err : "not a reel record"));
    json_object_set_new(o, "value_base64", json_bytes(m->payload, m->len));
    return o;
}

int cmd_consume(int argc, char **argv) {
    topic_args_t a = {NULL, 0, -1, -1, 0, 0};
    const char *overrides[256];
    cli_opts_t opts = {NULL, overrides, 0};
    if (parse_args(argc, argv, &opts, overrides, 256, topic_arg, &a) < 0) return 2;
    if (!a.topic) {
        fprintf(stderr, "usage: reel consume --topic T [--from-beginning] [--max N] "
                        "[--timeout-ms MS] [--receive-time] [-c FILE] [-X k=v]...\n"
                        "  --timeout-ms: stop after this long without a new record\n"
                        "  --receive-time: add \"received\", epoch ms when the record "
                        "arrived here\n");
        return 2;
    }
    config_t *config = cli_config(&opts);
    if (!config) return 2;
    char err[512];
    int status = 0;
    rd_kafka_t *rk = NULL;
    rd_kafka_topic_partition_list_t *parts = NULL;
    const struct rd_kafka_metadata *md = NULL;
    size_t tlen = strlen(a.topic);
    int is_dlq = tlen > 4 && strcmp(a.topic + tlen - 4, ".dlq") == 0;
    codec_t *codec = codec_new(err, sizeof err);
    if (!codec) {
        fprintf(stderr, "reel consume: %s\n", err);
        status = 1;
        goto done;
    }
    rd_kafka_conf_t *conf = rt_kafka_conf(config, "consumer", err, sizeof err);
    if (!conf) {
        fprintf(stderr, "reel consume: %s\n", err);
        status = 2;
        goto done;
    }
    /* A plain reader: partitions are assigned here, no group, no commits. */
    rd_kafka_conf_set(conf, "group.id", "reel-consume-cli", err, sizeof err);
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof err);
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (!rk) {
        fprintf(stderr, "reel consume: %s\n", err);
        status = 1;
        goto done;
    }
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, a.topic, NULL);
    rd_kafka_resp_err_t merr = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
    rd_kafka_topic_destroy(rkt);
    if (merr || md->topic_cnt != 1 || md->topics[0].err) {
        fprintf(stderr, "reel consume: topic %s: %s\n", a.topic,
                rd_kafka_err2str(merr ? merr
                                 : md ? md->topics[0].err
                                      : merr));
        status = 1;
        goto done;
    }
    parts = rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
    for (int i = 0; i < md->topics[0].partition_cnt; i++)
        rd_kafka_topic_partition_list_add(parts, a.topic, md->topics[0].partitions[i].id)->offset =
            a.from_beginning ? RD_KAFKA_OFFSET_BEGINNING : RD_KAFKA_OFFSET_END;
    rd_kafka_assign(rk, parts);
    rt_install_signal_handlers();
    long long count = 0;
    int64_t last = wall_ms();
    while (!rt_stopping() && (a.max < 0 || count < a.max)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m) {
            if (a.timeout_ms >= 0 && wall_ms() - last >= a.timeout_ms) break;
            continue;
        }
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                fprintf(stderr, "reel consume: %s\n", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        last = wall_ms();
        json_t *o = record_json(codec, m, is_dlq);
        /* Beside the producer's CreateTime, this gives produce-to-consume
         * latency on one machine's clock (bench/recommend). */
        if (a.receive_time) json_object_set_new(o, "received", json_integer(last));
        char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (text) {
            fputs(text, stdout);
            fputc('\n', stdout);
            /* A live reader's lines are read as they come. */
            if (a.receive_time) fflush(stdout);
            free(text);
        }
        json_decref(o);
        rd_kafka_message_destroy(m);
        count++;
    }
    fflush(stdout);
    fprintf(stderr, "reel consume: %lld records from %s\n", count, a.topic);
done:
    if (parts) rd_kafka_topic_partition_list_destroy(parts);
    if (md) rd_kafka_metadata_destroy(md);
    if (rk) {
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
    if (codec) codec_destroy(codec);
    config_destroy(config);
    return status;
}
