/* demo.c: `reel demo`, the whole product in one command.
 *
 * With no options it owns everything it uses: a Kafka-protocol cluster in
 * process (librdkafka's mock cluster) and a private redis-server in a
 * temporary folder, both stopped at the end. With --bootstrap-servers and
 * --redis-url it runs the same against real services.
 *
 * 1. models: trains what the workers serve on the first run (`reel train
 *    ...` as a child process, its progress on the terminal) and caches the
 *    files in a state folder; later runs load them. Each is pushed to Redis
 *    (pipeline/models.h), where the workers find it.
 * 2. data: the MovieLens catalogue and ratings as items and viewing events;
 *    Fashion-MNIST test images composed into 500x750 JPEG posters;
 *    spoken-digit clips (FSDD test takes, or espeak-ng when FSDD is not
 *    there); review sentences held out of the sentiment training; plus
 *    broken records of each kind for the dead-letter topics.
 * 3. the four workers run in this process, one thread each, until every
 *    input record is applied in Redis;
 * 4. a summary read back from the output topics: recommendations with
 *    titles, poster tags, transcripts and sentiment beside the truth, DLQ
 *    counts and reasons, throughput per worker.
 * A worker whose model cannot be trained or whose data is missing is
 * skipped with the reason; the demo fails when nothing it ran worked. */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pipeline/codec.h"
#include "pipeline/log.h"
#include "pipeline/models.h"
#include "pipeline/store.h"
#include "workers/demo_data.h"
#include "workers/services.h"
#include "workers/workers.h"

typedef struct demo_opts {
    const char *bootstrap;
    const char *redis_url;
    const char *state_dir;
    long events;
    int posters, clips, reviews;
    int retrain;
    int quick; /* small trainings, for tests */
    int verbose;
} demo_opts_t;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- the workers and what they need ---- */

enum { W_RECOMMEND, W_TAG, W_TRANSCRIBE, W_SENTIMENT, W_N };

typedef struct demo_worker {
    const char *name, *input, *output;
    const worker_def_t *def; /* NULL: not in this binary */
    int enabled;
    char why[256]; /* why it is skipped */
    char model[PATH_MAX];
    long produced, bad;          /* records sent to input (bad ones included) */
    long items;                  /* recommend: the catalogue records, on topic items */
    double started, first, done; /* first: when its first record was applied */
} demo_worker_t;

typedef struct demo {
    demo_opts_t o;
    demo_worker_t w[W_N];
    char bootstrap[1024];
    char group[64];
    char state[PATH_MAX];
    codec_t *codec;
    store_t *store;
    rd_kafka_t *producer;
    long delivery_failed;
    codec_buf_t buf;
    /* Truth, by record index. */
    unsigned char *poster_labels;
    int *clip_digits;
    char (*clip_names)[64];
    signed char *review_labels;
    char (*review_texts)[96];
    char **titles; /* movie id -> title, up to max_movie */
    long max_movie;
} demo_t;

static void on_demo_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    if (m->err) (*(long *)opaque)++;
}

static int mkdir_p(const char *path) {
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(tmp, 0755) < 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    return mkdir(tmp, 0755) < 0 && errno != EEXIST ? -1 : 0;
}

/* Runs `reel ARGS...` (this binary) with its output on the terminal, so
 * training shows its own progress. Returns its exit status, or -1. */
static int run_reel(char *const args[]) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        execv("/proc/self/exe", args);
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* ---- producing ---- */

static int send_raw(demo_t *d, const char *topic, const char *key, const void *val, size_t len) {
    rd_kafka_resp_err_t e;
    while ((e = rd_kafka_producev(d->producer, RD_KAFKA_V_TOPIC(topic),
                                  RD_KAFKA_V_KEY((void *)key, key ? strlen(key) : 0),
                                  RD_KAFKA_V_VALUE((void *)val, len),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)) ==
           RD_KAFKA_RESP_ERR__QUEUE_FULL)
        rd_kafka_poll(d->producer, 10);
    rd_kafka_poll(d->producer, 0);
    return e ? -1 : 0;
}

/* Encodes v (schema of topic) and produces it keyed by key_field. */
static int send_value(demo_t *d, const char *topic, avro_value_t *v, const char *key_field,
                      char *errstr, size_t errstr_size) {
    const codec_schema_t *s = codec_by_topic(d->codec, topic);
    d->buf.len = 0;
    if (codec_encode(d->codec, s, v, &d->buf, errstr, errstr_size) < 0) return -1;
    const char *key;
    size_t key_len;
    char keybuf[256];
    if (codec_value_key(v, key_field, &key, &key_len) < 0) return -1;
    snprintf(keybuf, sizeof keybuf, "%.*s", (int)key_len, key);
    return send_raw(d, topic, keybuf, d->buf.data, d->buf.len);
}

static int send_json(demo_t *d, const char *topic, const char *json, const char *key_field,
                     char *errstr, size_t errstr_size) {
    const codec_schema_t *s = codec_by_topic(d->codec, topic);
    avro_value_t v;
    if (codec_value_new(s, &v, errstr, errstr_size) < 0) return -1;
    int rc = codec_value_from_json(s, json, strlen(json), &v, errstr, errstr_size);
    if (rc == 0) rc = send_value(d, topic, &v, key_field, errstr, errstr_size);
    avro_value_decref(&v);
    return rc;
}

/* A value of topic's schema with string, bytes and long fields set by
 * name; a union field takes its non-null branch. */
static int set_field(avro_value_t *rec, const char *name, const char *str, const void *bytes,
                     size_t len, int64_t num) {
    avro_value_t f, branch;
    if (avro_value_get_by_name(rec, name, &f, NULL) != 0) return -1;
    if (avro_value_get_type(&f) == AVRO_UNION) {
        if (avro_value_set_branch(&f, 1, &branch) != 0) return -1;
        f = branch;
    }
    switch (avro_value_get_type(&f)) {
    case AVRO_STRING:
        return avro_value_set_string(&f, str);
    case AVRO_BYTES:
        return avro_value_set_bytes(&f, (void *)bytes, len);
    case AVRO_INT64:
        return avro_value_set_long(&f, num);
    case AVRO_FLOAT:
        return avro_value_set_float(&f, (float)num);
    default:
        return -1;
    }
}

/* Sets the union field name to its null branch. */
static int set_null(avro_value_t *rec, const char *name) {
    avro_value_t f, branch;
    if (avro_value_get_by_name(rec, name, &f, NULL) != 0 ||
        avro_value_set_branch(&f, 0, &branch) != 0)
        return -1;
    return avro_value_set_null(&branch);
}

static int64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Splits one line of movies.csv: id,title (quoted when it has a comma,
 * "" inside quotes),genres. Edits line in place. */
static int parse_movie(char *line, long *id, char **title, char **genres) {
    char *p = line, *end;
    *id = strtol(p, &end, 10);
    if (end == p || *end != ',') return -1;
    p = end + 1;
    if (*p == '"') {
        char *w = ++p;
        *title = p;
        for (;;) {
            if (*p == '\0') return -1;
            if (*p == '"') {
                if (p[1] == '"') {
                    *w++ = '"';
                    p += 2;
                    continue;
                }
                p++;
                break;
            }
            *w++ = *p++;
        }
        *w = '\0';
        if (*p != ',') return -1;
        p++;
    } else {
        *title = p;
        p = strchr(p, ',');
        if (!p) return -1;
        *p++ = '\0';
    }
    *genres = p;
    p[strcspn(p, "\r\n")] = '\0';
    return 0;
}

static int produce_catalogue(demo_t *d, const char *movies, char *err, size_t n) {
    FILE *f = fopen(movies, "r");
    if (!f) {
        snprintf(err, n, "%s: %s", movies, strerror(errno));
        return -1;
    }
    char line[1024], json[4096];
    long count = 0;
    d->max_movie = 300000;
    d->titles = calloc((size_t)d->max_movie, sizeof *d->titles);
    if (!d->titles) {
        fclose(f);
        return -1;
    }
    while (fgets(line, sizeof line, f)) {
        long id;
        char *title, *genres;
        if (parse_movie(line, &id, &title, &genres) < 0 || id <= 0 || id >= d->max_movie) continue;
        d->titles[id] = strdup(title);
        json_t *o = json_object(), *g = json_array();
        if (strcmp(genres, "(no genres listed)") != 0)
            for (char *t = strtok(genres, "|"); t; t = strtok(NULL, "|"))
                json_array_append_new(g, json_string(t));
        char idbuf[32];
        snprintf(idbuf, sizeof idbuf, "%ld", id);
        const char *paren = strrchr(title, '(');
        json_object_set_new(o, "item_id", json_string(idbuf));
        json_object_set_new(o, "title", json_string(title));
        json_object_set_new(o, "genres", g);
        json_object_set_new(o, "tags", json_array());
        json_object_set_new(o, "year", json_integer(paren ? atoi(paren + 1) : 0));
        json_object_set_new(o, "ts", json_integer(0));
        char *text = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        if (!text) continue;
        snprintf(json, sizeof json, "%s", text);
        free(text);
        if (send_json(d, "items", json, "item_id", err, n) < 0) {
            fclose(f);
            return -1;
        }
        count++;
    }
    fclose(f);
    d->w[W_RECOMMEND].items = count;
    return 0;
}

static int produce_events(demo_t *d, const char *ratings, char *err, size_t n) {
    FILE *f = fopen(ratings, "r");
    if (!f) {
        snprintf(err, n, "%s: %s", ratings, strerror(errno));
        return -1;
    }
    char line[512], json[1024];
    long sent = 0;
    while (sent < d->o.events && fgets(line, sizeof line, f)) {
        long user, item, ts;
        double rating;
        if (sscanf(line, "%ld,%ld,%lf,%ld", &user, &item, &rating, &ts) != 4) continue;
        snprintf(json, sizeof json,
                 "{\"event_id\":\"ml-%ld\",\"user_id\":\"%ld\",\"item_id\":\"%ld\","
                 "\"type\":\"rating\",\"ts\":%ld000,\"watch_seconds\":0,\"rating\":%.1f}",
                 sent, user, item, ts, rating);
        if (send_json(d, "viewing-events", json, "user_id", err, n) < 0) {
            fclose(f);
            return -1;
        }
        sent++;
    }
    fclose(f);
    /* Poison: not Avro, an unknown schema id, a truncated record. */
    const unsigned char junk[] = "{\"user_id\": \"not avro\"}";
    const unsigned char unknown_id[] = {0, 0, 0, 0x27, 0x0f, 2, 'x'};
    unsigned char truncated[8] = {0};
    size_t tlen = d->buf.len < sizeof truncated ? d->buf.len : sizeof truncated;
    memcpy(truncated, d->buf.data, tlen);
    send_raw(d, "viewing-events", "demo-bad", junk, sizeof junk - 1);
    send_raw(d, "viewing-events", "demo-bad", unknown_id, sizeof unknown_id);
    send_raw(d, "viewing-events", "demo-bad", truncated, tlen);
    d->w[W_RECOMMEND].produced = sent + 3;
    d->w[W_RECOMMEND].bad = 3;
    return 0;
}

static int produce_posters(demo_t *d, const char *fashion, char *err, size_t n) {
    int np = d->o.posters;
    unsigned char *pixels = malloc((size_t)np * 784);
    d->poster_labels = calloc((size_t)np + 1, 1);
    if (!pixels || !d->poster_labels) {
        free(pixels);
        snprintf(err, n, "out of memory");
        return -1;
    }
    if (demo_fashion_read(fashion, 0, np, pixels, d->poster_labels, err, n) < 0) {
        free(pixels);
        return -1;
    }
    const codec_schema_t *s = codec_by_topic(d->codec, "posters");
    avro_value_t v;
    if (codec_value_new(s, &v, err, n) < 0) {
        free(pixels);
        return -1;
    }
    int rc = 0;
    unsigned char *last = NULL;
    size_t last_len = 0;
    for (int i = 0; i < np && rc == 0; i++) {
        size_t len = 0;
        unsigned char *jpg =
            demo_poster_jpeg(pixels + (size_t)i * 784, 500, 750, (unsigned)i, &len);
        if (!jpg) {
            snprintf(err, n, "could not encode a poster");
            rc = -1;
            break;
        }
        char item[32], poster[32];
        snprintf(item, sizeof item, "%d", i + 1);
        snprintf(poster, sizeof poster, "poster-%d", i);
        if (set_field(&v, "item_id", item, NULL, 0, 0) ||
            set_field(&v, "poster_id", poster, NULL, 0, 0) ||
            set_field(&v, "content_type", "image/jpeg", NULL, 0, 0) ||
            set_field(&v, "image", NULL, jpg, len, 0) ||
            set_field(&v, "ts", NULL, NULL, 0, wall_ms())) {
            snprintf(err, n, "building a Poster: %s", avro_strerror());
            rc = -1;
        } else {
            rc = send_value(d, "posters", &v, "item_id", err, n);
        }
        free(last);
        last = jpg;
        last_len = len;
    }
    /* Poison: a truncated JPEG, and text that claims to be a PNG. */
    if (rc == 0 && last) {
        const char *text = "this is not an image";
        int ok = set_field(&v, "poster_id", "poster-truncated", NULL, 0, 0) == 0 &&
                 set_field(&v, "image", NULL, last, last_len / 3, 0) == 0 &&
                 send_value(d, "posters", &v, "item_id", err, n) == 0 &&
                 set_field(&v, "poster_id", "poster-text", NULL, 0, 0) == 0 &&
                 set_field(&v, "content_type", "image/png", NULL, 0, 0) == 0 &&
                 set_field(&v, "image", NULL, text, strlen(text), 0) == 0 &&
                 send_value(d, "posters", &v, "item_id", err, n) == 0;
        if (!ok) rc = -1;
    }
    free(last);
    avro_value_decref(&v);
    free(pixels);
    d->w[W_TAG].produced = np + 2;
    d->w[W_TAG].bad = 2;
    return rc;
}

static const char *const fsdd_speakers[] = {"george", "jackson", "nicolas", "theo", "yweweler"};
static const char *const espeak_voices_test[] = {"en-us+m1", "en-us+f4", "en+m5", "en+f3"};

/* Clip k: FSDD test takes (0-4) spread over digits and speakers, or the
 * same digits spoken by espeak-ng voices the model was not trained on. */
static int clip_path(demo_t *d, const char *fsdd, int k, char *path, size_t n) {
    int digit = k % 10;
    d->clip_digits[k] = digit;
    if (fsdd) {
        snprintf(d->clip_names[k], sizeof d->clip_names[0], "%d_%s_%d.wav", digit,
                 fsdd_speakers[(k / 10) % 5], (k / 50) % 5);
        snprintf(path, n, "%s/%s", fsdd, d->clip_names[k]);
        return 0;
    }
    static const char *const words[] = {"zero", "one", "two",   "three", "four",
                                        "five", "six", "seven", "eight", "nine"};
    const char *voice = espeak_voices_test[(k / 10) % 4];
    snprintf(d->clip_names[k], sizeof d->clip_names[0], "espeak %s", voice);
    snprintf(path, n, "%s/clip-%d.wav", d->state, k);
    return demo_espeak(words[digit], voice, 150 + 10 * (k % 3), 50, path);
}

static int produce_clips(demo_t *d, const char *fsdd, char *err, size_t n) {
    int nc = d->o.clips;
    d->clip_digits = calloc((size_t)nc + 1, sizeof *d->clip_digits);
    d->clip_names = calloc((size_t)nc + 1, sizeof *d->clip_names);
    const codec_schema_t *s = codec_by_topic(d->codec, "audio-clips");
    avro_value_t v;
    if (!d->clip_digits || !d->clip_names || codec_value_new(s, &v, err, n) < 0) return -1;
    int rc = 0;
    for (int k = 0; k < nc && rc == 0; k++) {
        char path[PATH_MAX + 64], id[32], item[32];
        size_t len = 0;
        unsigned char *wav = NULL;
        if (clip_path(d, fsdd, k, path, sizeof path) == 0)
            wav = cli_read_file(path, 8u << 20, &len, err, n);
        else
            snprintf(err, n, "cannot synthesize %s", path);
        if (!wav) {
            rc = -1;
            break;
        }
        snprintf(id, sizeof id, "clip-%d", k);
        snprintf(item, sizeof item, "%d", k + 1);
        if (set_field(&v, "clip_id", id, NULL, 0, 0) ||
            set_field(&v, "item_id", item, NULL, 0, 0) ||
            set_field(&v, "content_type", "audio/wav", NULL, 0, 0) ||
            set_field(&v, "audio", NULL, wav, len, 0) ||
            set_field(&v, "language", "en", NULL, 0, 0) ||
            set_field(&v, "ts", NULL, NULL, 0, wall_ms())) {
            snprintf(err, n, "building an AudioClip: %s", avro_strerror());
            rc = -1;
        } else {
            rc = send_value(d, "audio-clips", &v, "clip_id", err, n);
        }
        free(wav);
    }
    /* Poison: bytes that are not audio. */
    const char *junk = "RIFF....WAVEnot really audio";
    if (rc == 0 && (set_field(&v, "clip_id", "clip-junk", NULL, 0, 0) ||
                    set_field(&v, "audio", NULL, junk, strlen(junk), 0) ||
                    send_value(d, "audio-clips", &v, "clip_id", err, n) < 0))
        rc = -1;
    avro_value_decref(&v);
    d->w[W_TRANSCRIBE].produced = nc + 1;
    d->w[W_TRANSCRIBE].bad = 1;
    return rc;
}

/* Reads the lines of path into a malloc'd array (caller frees each and
 * the array). Returns the count or -1. */
static int read_lines(const char *path, char ***out) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int n = 0, cap = 1024;
    char **lines = malloc((size_t)cap * sizeof *lines), buf[8192];
    while (lines && fgets(buf, sizeof buf, f)) {
        buf[strcspn(buf, "\r\n")] = '\0';
        if (n == cap) {
            char **g = realloc(lines, (size_t)(cap *= 2) * sizeof *lines);
            if (!g) break;
            lines = g;
        }
        lines[n++] = strdup(buf);
    }
    fclose(f);
    *out = lines;
    return lines ? n : -1;
}

/* The texts of "label<TAB>text" lines whose label is want (0 or 1), as
 * read_lines does. */
static int read_labelled(const char *path, int want, char ***out) {
    char **lines = NULL;
    int n = read_lines(path, &lines), m = 0;
    for (int i = 0; i < n; i++) {
        char *tab = strchr(lines[i], '\t');
        if (tab && tab - lines[i] == 1 && lines[i][0] - '0' == want) {
            memmove(lines[i], tab + 1, strlen(tab + 1) + 1);
            lines[m++] = lines[i];
        } else {
            free(lines[i]);
        }
    }
    *out = lines;
    return n < 0 ? -1 : m;
}

static void free_lines(char **lines, int n) {
    for (int i = 0; i < n; i++) free(lines[i]);
    free(lines);
}

/* Writes all but the last `hold` lines of src to dst (the training part). */
static int write_head(char **lines, int n, int hold, const char *dst) {
    FILE *f = fopen(dst, "w");
    if (!f) return -1;
    for (int i = 0; i < n - hold; i++) fprintf(f, "%s\n", lines[i]);
    return fclose(f);
}

static int produce_reviews(demo_t *d, char **pos, int npos, char **neg, int nneg, char *err,
                           size_t n) {
    int nr = d->o.reviews;
    d->review_labels = calloc((size_t)nr + 1, 1);
    d->review_texts = calloc((size_t)nr + 1, sizeof *d->review_texts);
    const codec_schema_t *s = codec_by_topic(d->codec, "reviews");
    avro_value_t v;
    if (!d->review_labels || !d->review_texts || codec_value_new(s, &v, err, n) < 0) return -1;
    int rc = 0;
    char text[8192 * 2];
    for (int k = 0; k < nr && rc == 0; k++) {
        int positive = k % 2 == 0;
        /* Held-out sentences: the last lines of each file. */
        int idx = positive ? npos - 1 - k / 2 : nneg - 1 - k / 2;
        if (idx < 0) break;
        demo_to_utf8(positive ? pos[idx] : neg[idx], text, sizeof text);
        d->review_labels[k] = (signed char)positive;
        snprintf(d->review_texts[k], sizeof d->review_texts[0], "%.90s", text);
        char id[32], item[32], user[32];
        snprintf(id, sizeof id, "review-%d", k);
        snprintf(item, sizeof item, "%d", 1 + k % 50);
        snprintf(user, sizeof user, "%d", 1 + k % 30);
        if (set_field(&v, "review_id", id, NULL, 0, 0) ||
            set_field(&v, "item_id", item, NULL, 0, 0) ||
            set_field(&v, "user_id", user, NULL, 0, 0) || set_field(&v, "text", text, NULL, 0, 0) ||
            set_null(&v, "rating") || set_field(&v, "ts", NULL, NULL, 0, wall_ms())) {
            snprintf(err, n, "building a Review: %s", avro_strerror());
            rc = -1;
        } else {
            rc = send_value(d, "reviews", &v, "item_id", err, n);
        }
    }
    /* Poison: a review cut in half (an Avro string longer than the bytes). */
    if (rc == 0 && d->buf.len > 8) send_raw(d, "reviews", "1", d->buf.data, d->buf.len / 2);
    avro_value_decref(&v);
    d->w[W_SENTIMENT].produced = nr + 1;
    d->w[W_SENTIMENT].bad = 1;
    return rc;
}

/* ---- models ---- */

/* Trains (unless cached) and pushes the model worker w serves. On failure
 * the worker is disabled with the reason. */
static void prepare_model(demo_t *d, demo_worker_t *w, char *const train_args[], const char *file) {
    snprintf(w->model, sizeof w->model, "%s/%s", d->state, file);
    if (d->o.retrain || access(w->model, R_OK) != 0) {
        printf("      training the %s model (first run; cached in %s)\n", w->name, w->model);
        double t0 = now_s();
        int rc = run_reel(train_args);
        if (rc != 0 || access(w->model, R_OK) != 0) {
            snprintf(w->why, sizeof w->why, "`reel %s %s` failed (exit %d)", train_args[1],
                     train_args[2], rc);
            w->enabled = 0;
            unlink(w->model);
            return;
        }
        printf("      trained in %.1f s\n", now_s() - t0);
    } else {
        printf("      %s model: %s (cached; --retrain to train again)\n", w->name, w->model);
    }
    size_t len = 0;
    int64_t version = 0;
    char err[512];
    unsigned char *blob = cli_read_file(w->model, 1u << 30, &len, err, sizeof err);
    const char *kind = blob ? models_kind_of(blob, len) : NULL;
    if (!kind || models_push(d->store, kind, blob, len, file, 1, &version, err, sizeof err) < 0) {
        snprintf(w->why, sizeof w->why, "cannot push %s: %s", w->model,
                 kind || !blob ? err : "unknown model format");
        w->enabled = 0;
    } else {
        printf("      pushed to Redis as %s version %lld\n", kind, (long long)version);
    }
    free(blob);
}

/* ---- reading outputs ---- */

/* What the summary callbacks get. */
typedef struct summary_ctx {
    demo_t *d;
    void *tally;
} summary_ctx_t;

static long read_topic(demo_t *d, const char *topic, svc_record_fn fn, void *tally) {
    summary_ctx_t c = {d, tally};
    return svc_read_topic(d->bootstrap, d->codec, topic, fn, &c);
}

static long index_of(const char *id, const char *prefix) {
    size_t n = strlen(prefix);
    return id && strncmp(id, prefix, n) == 0 ? strtol(id + n, NULL, 10) : -1;
}

static const char *jstr(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    if (json_is_object(v)) v = json_object_get(v, "string"); /* a union's JSON form */
    return json_is_string(v) ? json_string_value(v) : "";
}

/* recommend: the latest Recommendations of each user. */
typedef struct rec_seen {
    char user[32][16];
    json_t *items[32];
    long events[32];
    int n;
} rec_seen_t;

static void on_recommendation(json_t *v, const rd_kafka_message_t *m, void *opaque) {
    demo_t *d = ((summary_ctx_t *)opaque)->d;
    opaque = ((summary_ctx_t *)opaque)->tally;
    (void)d;
    (void)m;
    rec_seen_t *r = opaque;
    if (!v) return;
    const char *user = jstr(v, "user_id");
    int k = 0;
    while (k < r->n && strcmp(r->user[k], user) != 0) k++;
    if (k == r->n) {
        if (r->n == 32) return;
        snprintf(r->user[r->n++], sizeof r->user[0], "%s", user);
        r->items[k] = NULL;
        r->events[k] = 0;
    }
    json_decref(r->items[k]);
    r->items[k] = json_incref(json_object_get(v, "items"));
    r->events[k]++;
}

typedef struct tally {
    long n, right;
    int shown;
} tally_t;

static void on_poster_tags(json_t *v, const rd_kafka_message_t *m, void *opaque) {
    demo_t *d = ((summary_ctx_t *)opaque)->d;
    opaque = ((summary_ctx_t *)opaque)->tally;
    (void)m;
    tally_t *t = opaque;
    long i = v ? index_of(jstr(v, "poster_id"), "poster-") : -1;
    if (i < 0 || i >= d->o.posters) return;
    json_t *labels = json_object_get(v, "labels"), *top = json_array_get(labels, 0);
    const char *label = top ? jstr(top, "label") : "(none above the threshold)";
    double conf = top ? json_number_value(json_object_get(top, "confidence")) : 0;
    const char *truth = demo_fashion_classes[d->poster_labels[i]];
    int right = top && (strcasecmp(label, truth) == 0 || strcasestr(label, truth) ||
                        strcasestr(truth, label));
    t->n++;
    t->right += right;
    json_t *colors = json_object_get(v, "dominant_colors");
    if (t->shown++ < 6)
        printf("    %-10s truth %-9s -> %-12s %.2f  %4lldx%-4lld colours %s %s  phash %s%s\n",
               jstr(v, "poster_id"), truth, label, conf,
               (long long)json_integer_value(json_object_get(v, "width")),
               (long long)json_integer_value(json_object_get(v, "height")),
               json_string_value(json_array_get(colors, 0))
                   ? json_string_value(json_array_get(colors, 0))
                   : "",
               json_string_value(json_array_get(colors, 1))
                   ? json_string_value(json_array_get(colors, 1))
                   : "",
               jstr(v, "phash"), right ? "" : "  (wrong)");
}

static int digit_of(const char *text) {
    static const char *const words[] = {"zero", "one", "two",   "three", "four",
                                        "five", "six", "seven", "eight", "nine"};
    for (int k = 0; k < 10; k++)
        if (strcasecmp(text, words[k]) == 0) return k;
    return strlen(text) == 1 && text[0] >= '0' && text[0] <= '9' ? text[0] - '0' : -1;
}

static void on_transcript(json_t *v, const rd_kafka_message_t *m, void *opaque) {
    demo_t *d = ((summary_ctx_t *)opaque)->d;
    opaque = ((summary_ctx_t *)opaque)->tally;
    (void)m;
    tally_t *t = opaque;
    long i = v ? index_of(jstr(v, "clip_id"), "clip-") : -1;
    if (i < 0 || i >= d->o.clips) return;
    const char *text = jstr(v, "text");
    int right = digit_of(text) == d->clip_digits[i];
    t->n++;
    t->right += right;
    json_t *w0 = json_array_get(json_object_get(v, "words"), 0);
    if (t->shown++ < 6)
        printf("    %-8s %-22s truth %d -> \"%s\"  %.2f s%s%s\n", jstr(v, "clip_id"),
               d->clip_names[i], d->clip_digits[i], text,
               json_number_value(json_object_get(v, "duration_seconds")), w0 ? "" : "",
               right ? "" : "  (wrong)");
}

static void on_sentiment(json_t *v, const rd_kafka_message_t *m, void *opaque) {
    demo_t *d = ((summary_ctx_t *)opaque)->d;
    opaque = ((summary_ctx_t *)opaque)->tally;
    (void)m;
    tally_t *t = opaque;
    long i = v ? index_of(jstr(v, "review_id"), "review-") : -1;
    if (i < 0 || i >= d->o.reviews) return;
    const char *label = jstr(v, "label");
    const char *truth = d->review_labels[i] ? "positive" : "negative";
    int right = strcmp(label, truth) == 0;
    t->n++;
    t->right += right;
    if (t->shown++ < 6)
        printf("    %-9s truth %-8s -> %-8s score %+.2f  \"%.60s\"\n", jstr(v, "review_id"), truth,
               label, json_number_value(json_object_get(v, "score")), d->review_texts[i]);
}

typedef struct dlq_tally {
    char reasons[8][160];
    int counts[8], n;
} dlq_tally_t;

static void on_dlq(json_t *v, const rd_kafka_message_t *m, void *opaque) {
    demo_t *d = ((summary_ctx_t *)opaque)->d;
    opaque = ((summary_ctx_t *)opaque)->tally;
    (void)d;
    (void)v;
    dlq_tally_t *t = opaque;
    rd_kafka_headers_t *h;
    const void *val;
    size_t size;
    char reason[160] = "(no reason)";
    if (rd_kafka_message_headers(m, &h) == 0 &&
        rd_kafka_header_get_last(h, "reel.error.reason", &val, &size) == 0)
        snprintf(reason, sizeof reason, "%.*s", (int)(size < 150 ? size : 150), (const char *)val);
    for (int k = 0; k < t->n; k++)
        if (strcmp(t->reasons[k], reason) == 0) {
            t->counts[k]++;
            return;
        }
    if (t->n < 8) {
        snprintf(t->reasons[t->n], sizeof t->reasons[0], "%s", reason);
        t->counts[t->n++] = 1;
    }
}

/* ---- running ---- */

typedef struct demo_run {
    const worker_def_t *defs[W_N];
    size_t n;
    config_t *config;
    int rc;
    char err[512];
} demo_run_t;

static void *run_workers(void *arg) {
    demo_run_t *r = arg;
    r->rc = rt_run(r->defs, r->n, r->config, r->err, sizeof r->err);
    return NULL;
}

/* Records of topic that worker w applied in Redis (its offsets). */
static long long applied(demo_t *d, const demo_worker_t *w, const char *topic) {
    char group[128], key[256], suffix[160], err[256];
    snprintf(group, sizeof group, "%s-%s", d->group, w->name);
    snprintf(suffix, sizeof suffix, "offsets:%s", topic);
    rt_key_for(group, suffix, key, sizeof key);
    redisReply *r = store_command(d->store, err, sizeof err, "HVALS %s", key);
    long long sum = 0;
    if (!r) return 0;
    for (size_t i = 0; i < r->elements; i++) sum += atoll(r->element[i]->str);
    freeReplyObject(r);
    return sum;
}

static void summary_recommend(demo_t *d) {
    rec_seen_t r = {.n = 0};
    long outs = read_topic(d, "recommendations", on_recommendation, &r);
    printf("  recommend: %ld Recommendations records for %d users; the latest of a few:\n", outs,
           r.n);
    for (int k = 0; k < r.n && k < 3; k++) {
        printf("    user %s:\n", r.user[k]);
        size_t i;
        json_t *it;
        json_array_foreach(r.items[k], i, it) {
            if (i >= 5) break;
            long id = atol(jstr(it, "item_id"));
            const char *title = id > 0 && id < d->max_movie && d->titles && d->titles[id]
                                    ? d->titles[id]
                                    : jstr(it, "item_id");
            json_t *src = json_object_get(it, "sources");
            char srcs[128] = "";
            size_t j;
            json_t *sv;
            json_array_foreach(src, j, sv) {
                size_t l = strlen(srcs);
                snprintf(srcs + l, sizeof srcs - l, "%s%s", j ? "+" : "", json_string_value(sv));
            }
            printf("      %zu. %-48.48s %.3f  (%s)\n", i + 1, title,
                   json_number_value(json_object_get(it, "score")), srcs);
        }
    }
    for (int k = 0; k < r.n; k++) json_decref(r.items[k]);
}

static void summary_tally(const char *what, const tally_t *t, long expected) {
    printf("    %ld of %ld right (%.0f%%); %ld outputs for %ld inputs\n", t->right, t->n,
           t->n ? 100.0 * (double)t->right / (double)t->n : 0.0, t->n, expected);
    (void)what;
}

int cmd_demo(int argc, char **argv) {
    demo_t d;
    memset(&d, 0, sizeof d);
    d.o = (demo_opts_t){NULL, NULL, NULL, 5000, 40, 40, 60, 0, 0, 0};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--bootstrap-servers") == 0 && i + 1 < argc)
            d.o.bootstrap = argv[++i];
        else if (strcmp(argv[i], "--redis-url") == 0 && i + 1 < argc)
            d.o.redis_url = argv[++i];
        else if (strcmp(argv[i], "--state") == 0 && i + 1 < argc)
            d.o.state_dir = argv[++i];
        else if (strcmp(argv[i], "--events") == 0 && i + 1 < argc)
            d.o.events = atol(argv[++i]);
        else if (strcmp(argv[i], "--posters") == 0 && i + 1 < argc)
            d.o.posters = atoi(argv[++i]);
        else if (strcmp(argv[i], "--clips") == 0 && i + 1 < argc)
            d.o.clips = atoi(argv[++i]);
        else if (strcmp(argv[i], "--reviews") == 0 && i + 1 < argc)
            d.o.reviews = atoi(argv[++i]);
        else if (strcmp(argv[i], "--retrain") == 0)
            d.o.retrain = 1;
        else if (strcmp(argv[i], "--quick") == 0)
            d.o.quick = 1;
        else if (strcmp(argv[i], "-v") == 0)
            d.o.verbose = 1;
        else {
            fprintf(stderr,
                    "usage: reel demo [--bootstrap-servers B] [--redis-url U] [--state DIR]\n"
                    "                 [--events N] [--posters N] [--clips N] [--reviews N]\n"
                    "                 [--retrain] [--quick] [-v]\n"
                    "  --quick      small trainings (seconds, lower accuracy), for tests\n"
                    "  --state DIR  where trained models are cached (default\n"
                    "               $XDG_CACHE_HOME/reel-demo or ~/.cache/reel-demo)\n");
            return 2;
        }
    }
    if (d.o.events < 1) d.o.events = 1;
    if (d.o.posters < 1) d.o.posters = 1;
    if (d.o.clips < 1) d.o.clips = 1;
    if (d.o.reviews < 2) d.o.reviews = 2;
    log_set_level(d.o.verbose ? LOG_INFO : LOG_ERROR);
    setvbuf(stdout, NULL, _IOLBF, 0);
    int tty = isatty(1);
    log_set_component("demo");
    rt_install_signal_handlers();

    static const struct {
        const char *name, *input, *output;
    } layout[W_N] = {{"recommend", "viewing-events", "recommendations"},
                     {"tag", "posters", "poster-tags"},
                     {"transcribe", "audio-clips", "transcripts"},
                     {"sentiment", "reviews", "review-sentiment"}};
    for (int k = 0; k < W_N; k++) {
        d.w[k].name = layout[k].name;
        d.w[k].input = layout[k].input;
        d.w[k].output = layout[k].output;
        d.w[k].def = reel_worker_find(layout[k].name);
        d.w[k].enabled = d.w[k].def != NULL;
        if (!d.w[k].def) snprintf(d.w[k].why, sizeof d.w[k].why, "not built into this binary");
    }

    int status = 1;
    char err[512], path[PATH_MAX], path2[PATH_MAX];
    svc_kafka_t kafka = {0};
    svc_redis_t redis = {0};
    config_t *config = NULL;
    char **pos = NULL, **neg = NULL;
    int npos = 0, nneg = 0;
    double t_start = now_s();

    if (d.o.state_dir) {
        snprintf(d.state, sizeof d.state, "%s", d.o.state_dir);
    } else if (getenv("XDG_CACHE_HOME")) {
        snprintf(d.state, sizeof d.state, "%s/reel-demo", getenv("XDG_CACHE_HOME"));
    } else {
        snprintf(d.state, sizeof d.state, "%s/.cache/reel-demo",
                 getenv("HOME") ? getenv("HOME") : "/tmp");
    }
    if (mkdir_p(d.state) < 0) {
        fprintf(stderr, "reel demo: cannot create %s: %s\n", d.state, strerror(errno));
        return 1;
    }
    printf("reel demo: recommendations, poster tags, transcripts and review sentiment,\n"
           "end to end through Kafka and Redis\n\n");

    /* ---- 1. services ---- */
    if (d.o.bootstrap) {
        snprintf(d.bootstrap, sizeof d.bootstrap, "%s", d.o.bootstrap);
    } else {
        static const char *const topics[] = {
            "viewing-events",  "items",       "posters",     "audio-clips",      "reviews",
            "recommendations", "poster-tags", "transcripts", "review-sentiment", NULL};
        if (svc_kafka_start(&kafka, topics, 4, err, sizeof err) < 0) {
            fprintf(stderr, "reel demo: cannot start the embedded Kafka cluster: %s\n", err);
            goto done;
        }
        snprintf(d.bootstrap, sizeof d.bootstrap, "%s", kafka.bootstrap);
    }
    printf("[1/5] kafka: %s (%s)\n", d.bootstrap,
           d.o.bootstrap ? "given" : "embedded mock cluster");
    const char *redis_url = d.o.redis_url;
    if (!redis_url) {
        if (svc_redis_start(&redis, err, sizeof err) < 0) {
            fprintf(stderr, "reel demo: %s\n", err);
            goto done;
        }
        redis_url = redis.url;
    }
    char shown[512];
    store_url_redact(redis_url, shown, sizeof shown); /* never the password */
    printf("      redis: %s (%s)\n", shown, d.o.redis_url ? "given" : "private redis-server");
    d.store = store_new(redis_url, err, sizeof err);
    d.codec = codec_new(err, sizeof err);
    if (!d.store || !d.codec) {
        fprintf(stderr, "reel demo: %s\n", err);
        goto done;
    }
    snprintf(d.group, sizeof d.group, "reel-demo-%ld", (long)time(NULL));

    /* ---- 2. models ---- */
    printf("[2/5] models (state folder %s)\n", d.state);
    char fashion[] = "/usr/share/datasets/fashion-mnist";
    if (d.w[W_TAG].enabled) {
        snprintf(path, sizeof path, "%s/t10k-images-idx3-ubyte.gz", fashion);
        if (access(path, R_OK) != 0) {
            snprintf(d.w[W_TAG].why, sizeof d.w[W_TAG].why,
                     "Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)");
            d.w[W_TAG].enabled = 0;
        } else {
            snprintf(path2, sizeof path2, "%s/fashion.rcnn", d.state);
            char *args[] = {"reel",     "train", "image", "--data", fashion,
                            "--epochs", "2",     "--out", path2,    NULL};
            char *quick[] = {"reel",     "train", "image",   "--data", fashion,
                             "--epochs", "1",     "--limit", "3000",   "--test-limit",
                             "500",      "--out", path2,     NULL};
            prepare_model(&d, &d.w[W_TAG], d.o.quick ? quick : args, "fashion.rcnn");
        }
    }
    char fsdd[PATH_MAX] = "";
    int have_fsdd = demo_find("fsdd/recordings", NULL, fsdd, sizeof fsdd) == 0;
    if (d.w[W_TRANSCRIBE].enabled) {
        char speech_dir[PATH_MAX + 32];
        if (have_fsdd) {
            snprintf(speech_dir, sizeof speech_dir, "%s", fsdd);
        } else {
            /* Digits spoken by espeak-ng voices other than the demo's. */
            static const char *const voices[] = {"en-us", "en-us+m3", "en+f2",
                                                 "en+m2", "en-us+f2", "en+m4"};
            static const char *const words[] = {"zero", "one", "two",   "three", "four",
                                                "five", "six", "seven", "eight", "nine"};
            snprintf(speech_dir, sizeof speech_dir, "%s/espeak-digits", d.state);
            mkdir_p(speech_dir);
            int made = 0;
            for (int v = 0; v < 6; v++)
                for (int digit = 0; digit < 10; digit++)
                    for (int take = 0; take < 3; take++) {
                        char wav[PATH_MAX + 96];
                        snprintf(wav, sizeof wav, "%s/%d_voice%d_%d.wav", speech_dir, digit, v,
                                 take);
                        if (access(wav, R_OK) == 0 ||
                            demo_espeak(words[digit], voices[v], 140 + 20 * take, 40 + 10 * take,
                                        wav) == 0)
                            made++;
                    }
            if (made < 60) {
                snprintf(d.w[W_TRANSCRIBE].why, sizeof d.w[W_TRANSCRIBE].why,
                         "no spoken digits: FSDD is not there and espeak-ng failed");
                d.w[W_TRANSCRIBE].enabled = 0;
            }
        }
        if (d.w[W_TRANSCRIBE].enabled) {
            snprintf(path2, sizeof path2, "%s/%s", d.state,
                     have_fsdd ? "digits.rsph" : "digits-espeak.rsph");
            char *args_fsdd[] = {"reel", "train",   "speech", "--data", speech_dir, "--model",
                                 "hmm",  "--split", "fsdd",   "--out",  path2,      NULL};
            char *args_all[] = {"reel",    "train", "speech", "--data", speech_dir,
                                "--model", "hmm",   "--out",  path2,    NULL};
            prepare_model(&d, &d.w[W_TRANSCRIBE], have_fsdd ? args_fsdd : args_all,
                          have_fsdd ? "digits.rsph" : "digits-espeak.rsph");
        }
    }
    if (d.w[W_SENTIMENT].enabled) {
        if (demo_find("reviews/rt-polarity.pos", NULL, path, sizeof path) == 0) {
            snprintf(path2, sizeof path2, "%.*sneg", (int)strlen(path) - 3, path);
            npos = read_lines(path, &pos);
            nneg = read_lines(path2, &neg);
        } else if (demo_find(NULL, "reviews-sample/reviews.tsv", path, sizeof path) == 0) {
            npos = read_labelled(path, 1, &pos);
            nneg = read_labelled(path, 0, &neg);
        } else {
            snprintf(d.w[W_SENTIMENT].why, sizeof d.w[W_SENTIMENT].why, "no review sentences");
            d.w[W_SENTIMENT].enabled = 0;
        }
        if (d.w[W_SENTIMENT].enabled) {
            int hold = (d.o.reviews + 1) / 2;
            char tp[PATH_MAX + 32], tn[PATH_MAX + 32], out[PATH_MAX + 32];
            snprintf(tp, sizeof tp, "%s/sentiment-train.pos", d.state);
            snprintf(tn, sizeof tn, "%s/sentiment-train.neg", d.state);
            snprintf(out, sizeof out, "%s/reviews.rsnt", d.state);
            if (npos <= hold * 2 || nneg <= hold * 2 || write_head(pos, npos, hold, tp) < 0 ||
                write_head(neg, nneg, hold, tn) < 0) {
                snprintf(d.w[W_SENTIMENT].why, sizeof d.w[W_SENTIMENT].why,
                         "too few review sentences in %s", path);
                d.w[W_SENTIMENT].enabled = 0;
            } else {
                char *args[] = {"reel", "train",   "sentiment", "--pos", tp,  "--neg",
                                tn,     "--model", "bow",       "--out", out, NULL};
                prepare_model(&d, &d.w[W_SENTIMENT], args, "reviews.rsnt");
            }
        }
    }

    /* ---- 3. data ---- */
    printf("[3/5] producing sample data\n");
    rd_kafka_conf_t *pconf = rd_kafka_conf_new();
    rd_kafka_conf_set(pconf, "bootstrap.servers", d.bootstrap, err, sizeof err);
    rd_kafka_conf_set(pconf, "enable.idempotence", "true", err, sizeof err);
    rd_kafka_conf_set(pconf, "linger.ms", "20", err, sizeof err);
    rd_kafka_conf_set(pconf, "message.max.bytes", "4000000", err, sizeof err);
    rd_kafka_conf_set_dr_msg_cb(pconf, on_demo_delivery);
    rd_kafka_conf_set_opaque(pconf, &d.delivery_failed);
    d.producer = rd_kafka_new(RD_KAFKA_PRODUCER, pconf, err, sizeof err);
    if (!d.producer) {
        fprintf(stderr, "reel demo: %s\n", err);
        goto done;
    }
    char ratings[PATH_MAX], movies[PATH_MAX];
    if (demo_find("movielens-small/ratings.csv", "movielens-sample/ratings.csv", ratings,
                  sizeof ratings) < 0 ||
        demo_find("movielens-small/movies.csv", "movielens-sample/movies.csv", movies,
                  sizeof movies) < 0) {
        snprintf(d.w[W_RECOMMEND].why, sizeof d.w[W_RECOMMEND].why, "no MovieLens data");
        d.w[W_RECOMMEND].enabled = 0;
    }
    double t0 = now_s();
    if (d.w[W_RECOMMEND].enabled) {
        if (produce_catalogue(&d, movies, err, sizeof err) < 0 ||
            produce_events(&d, ratings, err, sizeof err) < 0) {
            fprintf(stderr, "reel demo: %s\n", err);
            goto done;
        }
        printf("      items: %ld movies from %s\n", d.w[W_RECOMMEND].items, movies);
        printf("      viewing-events: %ld ratings from %s, 3 broken records\n",
               d.w[W_RECOMMEND].produced - 3, ratings);
    }
    if (d.w[W_TAG].enabled) {
        if (produce_posters(&d, fashion, err, sizeof err) < 0) {
            fprintf(stderr, "reel demo: posters: %s\n", err);
            goto done;
        }
        printf("      posters: %d 500x750 JPEGs composed from Fashion-MNIST test images, "
               "2 broken\n",
               d.o.posters);
    }
    if (d.w[W_TRANSCRIBE].enabled) {
        if (produce_clips(&d, have_fsdd ? fsdd : NULL, err, sizeof err) < 0) {
            fprintf(stderr, "reel demo: clips: %s\n", err);
            goto done;
        }
        printf("      audio-clips: %d spoken digits (%s), 1 broken\n", d.o.clips,
               have_fsdd ? "FSDD test takes 0-4" : "espeak-ng voices not used in training");
    }
    if (d.w[W_SENTIMENT].enabled) {
        if (produce_reviews(&d, pos, npos, neg, nneg, err, sizeof err) < 0) {
            fprintf(stderr, "reel demo: reviews: %s\n", err);
            goto done;
        }
        printf("      reviews: %d sentences held out of the sentiment training, 1 broken\n",
               d.o.reviews);
    }
    rd_kafka_flush(d.producer, 60000);
    if (d.delivery_failed) {
        fprintf(stderr, "reel demo: %ld records were not delivered\n", d.delivery_failed);
        goto done;
    }
    printf("      produced in %.1f s\n", now_s() - t0);

    /* ---- 4. workers ---- */
    config = config_new();
    config_set(config, "kafka.bootstrap.servers", d.bootstrap);
    config_set(config, "redis.url", redis_url);
    config_set(config, "group.id", d.group);
    config_set(config, "metrics.port", "-1");
    config_set(config, "batch.max.ms", "50");
    /* Posters are tagged and reviews scored while events arrive: the
     * recommender looks for their embeddings and sentiment often enough to
     * use them within the demo's few seconds. */
    config_set(config, "recommend.reload.interval.ms", "500");
    config_set(config, "recommend.multimodal.refresh.ms", "500");
    config_apply_defaults(config, rt_config_keys);
    demo_run_t run = {.n = 0, .config = config};
    printf("[4/5] running the workers:");
    for (int k = 0; k < W_N; k++) {
        if (d.w[k].def && d.w[k].def->config) config_apply_defaults(config, d.w[k].def->config);
        if (d.w[k].enabled) {
            run.defs[run.n++] = d.w[k].def;
            printf(" %s", d.w[k].name);
        }
    }
    printf("\n");
    for (int k = 0; k < W_N; k++)
        if (!d.w[k].enabled) printf("      skipped %s: %s\n", d.w[k].name, d.w[k].why);
    if (run.n == 0) {
        fprintf(stderr, "reel demo: no worker can run\n");
        goto done;
    }
    pthread_t tid;
    t0 = now_s();
    for (int k = 0; k < W_N; k++) d.w[k].started = t0;
    if (pthread_create(&tid, NULL, run_workers, &run) != 0) {
        fprintf(stderr, "reel demo: cannot start the workers\n");
        goto done;
    }
    double deadline = now_s() + 300, last_print = 0;
    int pending = 1;
    while (pending && !rt_stopping() && now_s() < deadline) {
        pending = 0;
        char line[512] = "";
        for (int k = 0; k < W_N; k++) {
            demo_worker_t *w = &d.w[k];
            if (!w->enabled) continue;
            long long got = applied(&d, w, w->input);
            long long want = w->produced;
            if (k == W_RECOMMEND) {
                got += applied(&d, w, "items");
                want += w->items;
            }
            if (got > 0 && w->first == 0) w->first = now_s();
            if (got >= want && w->done == 0) w->done = now_s();
            if (got < want) pending = 1;
            size_t l = strlen(line);
            snprintf(line + l, sizeof line - l, "  %s %lld/%lld", w->name, got, want);
        }
        if (tty) {
            printf("\r     %s", line);
            fflush(stdout);
        } else if (now_s() - last_print >= 5 || !pending) {
            printf("     %s\n", line);
            last_print = now_s();
        }
        if (pending) usleep(250000);
    }
    if (tty) printf("\n");
    double elapsed = now_s() - t0;
    rt_stop();
    pthread_join(tid, NULL);
    if (run.rc < 0) {
        fprintf(stderr, "reel demo: the workers failed: %s\n", run.err);
        goto done;
    }
    if (pending) {
        fprintf(stderr, "reel demo: the workers did not finish within %.0f s\n", elapsed);
        goto done;
    }

    /* ---- 5. summary ---- */
    printf("[5/5] summary, read back from the output topics\n");
    int ok = 1;
    for (int k = 0; k < W_N; k++) {
        demo_worker_t *w = &d.w[k];
        if (!w->enabled) continue;
        tally_t t = {0, 0, 0};
        if (k == W_RECOMMEND) {
            summary_recommend(&d);
        } else if (k == W_TAG) {
            printf("  tag: poster labels beside the truth\n");
            read_topic(&d, w->output, on_poster_tags, &t);
            summary_tally("posters", &t, d.o.posters);
        } else if (k == W_TRANSCRIBE) {
            printf("  transcribe: transcripts beside the spoken digit\n");
            read_topic(&d, w->output, on_transcript, &t);
            summary_tally("clips", &t, d.o.clips);
        } else {
            printf("  sentiment: review sentiment beside the label\n");
            read_topic(&d, w->output, on_sentiment, &t);
            summary_tally("reviews", &t, d.o.reviews);
        }
        if (k != W_RECOMMEND && t.n == 0) ok = 0;
    }
    printf("  dead-letter topics:\n");
    for (int k = 0; k < W_N; k++) {
        demo_worker_t *w = &d.w[k];
        if (!w->enabled) continue;
        char dlq[64];
        snprintf(dlq, sizeof dlq, "%s.dlq", w->input);
        dlq_tally_t t = {.n = 0};
        long n = read_topic(&d, dlq, on_dlq, &t);
        printf("    %-22s %ld records (%ld broken ones sent)\n", dlq, n, w->bad);
        for (int r = 0; r < t.n; r++) printf("      %dx %s\n", t.counts[r], t.reasons[r]);
        if (n < w->bad) ok = 0;
    }
    printf("  throughput (all workers sharing the cpus; from the group join to the\n"
           "  first record applied, then to the last, polled every 250 ms):\n");
    for (int k = 0; k < W_N; k++) {
        demo_worker_t *w = &d.w[k];
        if (!w->enabled) continue;
        double join = w->first - w->started, s = w->done - w->first;
        long n = w->produced + w->items;
        int coarse = s < 0.25; /* within one poll: a lower bound */
        if (coarse) s = 0.25;
        printf("    %-11s %6ld records: started in %4.1f s, then %s%5.2f s, %s%7.0f records/s\n",
               w->name, n, join, coarse ? "<" : " ", s, coarse ? ">" : " ", (double)n / s);
    }
    if (ok) {
        printf("\nOK: every worker ran to the end (%.1f s in all)\n", now_s() - t_start);
        status = 0;
    } else {
        printf("\nFAILED: a worker produced no outputs or lost a broken record\n");
    }
done:
    if (pos) free_lines(pos, npos);
    if (neg) free_lines(neg, nneg);
    if (d.producer) rd_kafka_destroy(d.producer);
    if (d.titles) {
        for (long i = 0; i < d.max_movie; i++) free(d.titles[i]);
        free(d.titles);
    }
    free(d.poster_labels);
    free(d.clip_digits);
    free(d.clip_names);
    free(d.review_labels);
    free(d.review_texts);
    codec_buf_free(&d.buf);
    if (d.codec) codec_destroy(d.codec);
    if (d.store) store_destroy(d.store);
    if (config) config_destroy(config);
    svc_redis_stop(&redis);
    svc_kafka_stop(&kafka);
    return status;
}
