/* eval_recommend.c: `reel eval recommend`, offline quality of the incremental
 * recommenders on MovieLens files. The training split is replayed in
 * timestamp order through rec_process_event and the in-memory state, the
 * same code path the recommend worker drives against Redis. */
#include "workers/eval.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <unistd.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/rec.h"
#include "pipeline/codec.h"
#include "pipeline/log.h"
#include "pipeline/runtime.h"
#include "workers/services.h"
#include "workers/workers.h"

typedef struct rating {
    uint32_t user, item;
    float rating;
    int64_t ts; /* seconds */
    uint32_t idx;
    uint8_t test;
} rating_t;

typedef struct data {
    rating_t *r;
    size_t n, cap;
    rec_dict_t *users, *items;
} data_t;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static uint64_t rng_next(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Splits a line on sep into at most max fields (in place). CSV quoting with
 * '"' is honoured when quotes is set. */
static int split_fields(char *line, char sep, int quotes, char **f, int max) {
    int n = 0;
    char *p = line;
    while (n < max) {
        if (quotes && *p == '"') {
            char *w = ++p;
            f[n++] = w;
            while (*p) {
                if (*p == '"' && p[1] == '"') {
                    *w++ = '"';
                    p += 2;
                } else if (*p == '"') {
                    p++;
                    break;
                } else {
                    *w++ = *p++;
                }
            }
            *w = '\0';
            while (*p && *p != sep) p++;
        } else {
            f[n++] = p;
            while (*p && *p != sep) p++;
        }
        if (*p != sep) {
            if (*p) *p = '\0';
            break;
        }
        *p++ = '\0';
    }
    return n;
}

static void chomp(char *s) {
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r')) s[--n] = '\0';
}

static int load_ratings(const char *path, data_t *d) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "reel eval: %s: %s\n", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    long lineno = 0;
    int rc = -1;
    while (getline(&line, &cap, f) > 0) {
        lineno++;
        chomp(line);
        if (!*line) continue;
        if (lineno == 1 && strncmp(line, "userId", 6) == 0) continue;
        char sep = strchr(line, '\t') ? '\t' : strchr(line, ',') ? ',' : ' ';
        char *fl[4];
        if (split_fields(line, sep, 0, fl, 4) < 4) {
            fprintf(stderr, "reel eval: %s:%ld: expected 4 fields\n", path, lineno);
            goto out;
        }
        if (d->n == d->cap) {
            size_t c = d->cap ? d->cap * 2 : 65536;
            rating_t *r = realloc(d->r, c * sizeof *r);
            if (!r) goto oom;
            d->r = r;
            d->cap = c;
        }
        rating_t *r = &d->r[d->n];
        r->user = rec_dict_intern(d->users, fl[0], strlen(fl[0]));
        r->item = rec_dict_intern(d->items, fl[1], strlen(fl[1]));
        if (r->user == UINT32_MAX || r->item == UINT32_MAX) goto oom;
        r->rating = strtof(fl[2], NULL);
        r->ts = strtoll(fl[3], NULL, 10);
        r->idx = (uint32_t)d->n;
        r->test = 0;
        d->n++;
    }
    rc = 0;
    goto out;
oom:
    fprintf(stderr, "reel eval: out of memory\n");
out:
    free(line);
    fclose(f);
    return rc;
}

static int year_of_title(const char *t) {
    const char *p = strrchr(t, '(');
    while (p) {
        int y;
        if (sscanf(p, "(%4d)", &y) == 1 && y > 1800 && y < 2100) return y;
        if (p == t) break;
        const char *q = p - 1;
        while (q > t && *q != '(') q--;
        p = *q == '(' ? q : NULL;
    }
    return 0;
}

/* movies.csv (movieId,title,genres with '|') or u.item ('|' fields, 19 genre
 * flags). Only items that appear in the ratings get features. */
static int load_items(const char *path, data_t *d, rec_mem_t *mem) {
    static const char *const uitem_genres[19] = {
        "unknown",     "Action", "Adventure", "Animation", "Children", "Comedy",  "Crime",
        "Documentary", "Drama",  "Fantasy",   "Film-Noir", "Horror",   "Musical", "Mystery",
        "Romance",     "Sci-Fi", "Thriller",  "War",       "Western"};
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "reel eval: %s: %s\n", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    long lineno = 0, nfeat = 0;
    while (getline(&line, &cap, f) > 0) {
        lineno++;
        chomp(line);
        if (!*line) continue;
        if (lineno == 1 && strncmp(line, "movieId", 7) == 0) continue;
        const char *genres[32];
        int ng = 0, year = 0;
        char *fl[32];
        uint32_t id;
        char *bar1 = strchr(line, '|'), *comma = strchr(line, ',');
        if (bar1 && (!comma || bar1 < comma)) {
            /* u.item: id|title|release|video|url|19 genre flags */
            int nf = split_fields(line, '|', 0, fl, 24);
            if (nf < 24) continue;
            id = rec_dict_find(d->items, fl[0], strlen(fl[0]));
            year = year_of_title(fl[1]);
            if (!year && strlen(fl[2]) >= 4) year = atoi(fl[2] + strlen(fl[2]) - 4);
            for (int k = 0; k < 19; k++)
                if (fl[5 + k][0] == '1') genres[ng++] = uitem_genres[k];
        } else {
            if (split_fields(line, ',', 1, fl, 3) < 3) continue;
            id = rec_dict_find(d->items, fl[0], strlen(fl[0]));
            year = year_of_title(fl[1]);
            char *g = fl[2];
            while (g && *g && ng < 32) {
                char *bar = strchr(g, '|');
                if (bar) *bar = '\0';
                genres[ng++] = g;
                g = bar ? bar + 1 : NULL;
            }
        }
        if (id == UINT32_MAX) continue;
        float feat[REC_FEAT_DIM];
        rec_item_features(genres, ng, NULL, 0, year, feat);
        if (rec_mem_set_features(mem, id, feat) < 0) {
            fprintf(stderr, "reel eval: out of memory\n");
            free(line);
            fclose(f);
            return -1;
        }
        nfeat++;
    }
    free(line);
    fclose(f);
    fprintf(stderr, "reel eval: %ld items with features from %s\n", nfeat, path);
    return 0;
}

/* ---- multimodal ablation ------------------------------------------ */

/* Poster blocks for the items with features. path: a file of lines
 * "item_id v1 v2 ... vd" (spaces, tabs or commas; d the same on every line;
 * the L2-normalised embeddings `tag` stores), or "random": each item gets one
 * of 10 seeded non-negative prototypes plus noise, which is what posters
 * composed from arbitrary Fashion-MNIST images (as the demo makes them) are
 * for MovieLens items: a control, not a signal. Returns the count or -1. */
static long set_posters(const char *path, data_t *d, rec_mem_t *mem, float weight, uint64_t seed) {
    rec_reader_t rd = rec_mem_reader(mem);
    uint32_t ni = rec_dict_size(d->items);
    long n = 0;
    float feat[REC_FEAT_DIM];
    if (strcmp(path, "random") == 0) {
        enum { DIM = 64, PROTOS = 10 };
        static float proto[PROTOS][DIM];
        uint64_t s = seed * 0x9e3779b97f4a7c15ull + 7;
        for (int p = 0; p < PROTOS; p++)
            for (int c = 0; c < DIM; c++) {
                double u = (double)(rng_next(&s) >> 11) / 9007199254740992.0;
                proto[p][c] = u < 0.5 ? 0.0f : (float)(2 * (u - 0.5));
            }
        for (uint32_t i = 0; i < ni; i++) {
            const float *f = rd.features(rd.ctx, i);
            if (!f) continue;
            float emb[DIM];
            int p = (int)(rng_next(&s) % PROTOS);
            for (int c = 0; c < DIM; c++) {
                double u = (double)(rng_next(&s) >> 11) / 9007199254740992.0;
                emb[c] = proto[p][c] + 0.2f * (float)u;
            }
            memcpy(feat, f, sizeof feat);
            rec_features_poster(feat, emb, DIM, weight);
            if (rec_mem_set_features(mem, i, feat) < 0) return -1;
            n++;
        }
        return n;
    }
    FILE *fp = fopen(path, "r");
    if (!fp) {
        fprintf(stderr, "reel eval: %s: %s\n", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    float *emb = NULL;
    size_t ecap = 0;
    while (getline(&line, &cap, fp) > 0) {
        chomp(line);
        char *save = NULL, *id = strtok_r(line, " \t,", &save);
        if (!id) continue;
        size_t dim = 0;
        for (char *t; (t = strtok_r(NULL, " \t,", &save));) {
            if (dim == ecap) {
                ecap = ecap ? ecap * 2 : 256;
                float *e = realloc(emb, ecap * sizeof *e);
                if (!e) {
                    n = -1;
                    goto out;
                }
                emb = e;
            }
            emb[dim++] = strtof(t, NULL);
        }
        uint32_t i = rec_dict_find(d->items, id, strlen(id));
        const float *f = i == UINT32_MAX ? NULL : rd.features(rd.ctx, i);
        if (dim == 0 || i == UINT32_MAX) continue;
        if (f)
            memcpy(feat, f, sizeof feat);
        else
            memset(feat, 0, sizeof feat);
        rec_features_poster(feat, emb, dim, weight);
        if (rec_mem_set_features(mem, i, feat) < 0) {
            n = -1;
            goto out;
        }
        n++;
    }
out:
    free(line);
    free(emb);
    fclose(fp);
    return n;
}

/* Per-item review sentiment. path: lines "item_id,count,sum" (the sentiment
 * worker's hash fields; other separators as above), or "train-ratings": each
 * item's training ratings read as reviews, score (r - 3) / 2 in [-1, 1]
 * (training part only: the test part never leaks in). Returns the number of
 * items or -1. */
static long set_sentiment(const char *path, const data_t *d, rec_mem_t *mem, float prior) {
    uint32_t ni = rec_dict_size(d->items);
    long n = 0;
    if (strcmp(path, "train-ratings") == 0) {
        double *sum = calloc(ni, sizeof *sum), *cnt = calloc(ni, sizeof *cnt);
        if (!sum || !cnt) {
            free(sum);
            free(cnt);
            return -1;
        }
        for (size_t x = 0; x < d->n; x++)
            if (!d->r[x].test) {
                double v = (d->r[x].rating - 3.0) / 2.0;
                sum[d->r[x].item] += v < -1 ? -1 : v > 1 ? 1 : v;
                cnt[d->r[x].item] += 1;
            }
        for (uint32_t i = 0; i < ni && n >= 0; i++)
            if (cnt[i] > 0) {
                if (rec_mem_set_sentiment(mem, i, rec_sentiment_mean(sum[i], cnt[i], prior)) < 0)
                    n = -1;
                else
                    n++;
            }
        free(sum);
        free(cnt);
        return n;
    }
    FILE *fp = fopen(path, "r");
    if (!fp) {
        fprintf(stderr, "reel eval: %s: %s\n", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, fp) > 0) {
        chomp(line);
        char *save = NULL, *id = strtok_r(line, " \t,", &save);
        char *c = id ? strtok_r(NULL, " \t,", &save) : NULL;
        char *sm = c ? strtok_r(NULL, " \t,", &save) : NULL;
        if (!sm) continue;
        char *e1, *e2;
        double count = strtod(c, &e1), sum = strtod(sm, &e2);
        if (*e1 || *e2) continue; /* a header */
        uint32_t i = rec_dict_find(d->items, id, strlen(id));
        if (i == UINT32_MAX) continue;
        if (rec_mem_set_sentiment(mem, i, rec_sentiment_mean(sum, count, prior)) < 0) {
            n = -1;
            break;
        }
        n++;
    }
    free(line);
    fclose(fp);
    return n;
}

static int cmp_user_ts(const void *a, const void *b) {
    const rating_t *x = a, *y = b;
    if (x->user != y->user) return x->user < y->user ? -1 : 1;
    if (x->ts != y->ts) return x->ts < y->ts ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}
static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}
static int cmp_ts(const void *a, const void *b) {
    const rating_t *x = a, *y = b;
    if (x->ts != y->ts) return x->ts < y->ts ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Marks each user's test ratings: random = a seeded 25% per user
 * (stratified: round(0.75 n) stay in training), temporal = the last 25%. */
static void split(data_t *d, int temporal, uint64_t seed) {
    qsort(d->r, d->n, sizeof *d->r, cmp_user_ts);
    uint64_t s = seed * 0x2545f4914f6cdd1dull + 1;
    size_t *perm = NULL;
    for (size_t a = 0; a < d->n;) {
        size_t b = a;
        while (b < d->n && d->r[b].user == d->r[a].user) b++;
        size_t n = b - a, ntrain = (size_t)floor(0.75 * (double)n + 0.5);
        if (temporal) {
            for (size_t k = ntrain; k < n; k++) d->r[a + k].test = 1;
        } else {
            size_t *p = realloc(perm, n * sizeof *p);
            if (!p) break;
            perm = p;
            for (size_t k = 0; k < n; k++) perm[k] = k;
            for (size_t k = n; k > 1; k--) {
                size_t j = (size_t)(rng_next(&s) % k);
                size_t t = perm[k - 1];
                perm[k - 1] = perm[j];
                perm[j] = t;
            }
            for (size_t k = ntrain; k < n; k++) d->r[a + perm[k]].test = 1;
        }
        a = b;
    }
    free(perm);
}

static const struct {
    const char *name;
    unsigned sources;
} algos[] = {{"item_cf", REC_SRC_ITEM_CF},
             {"user_cf", REC_SRC_USER_CF},
             {"content", REC_SRC_CONTENT},
             {"popular", REC_SRC_POPULAR},
             {"hybrid", REC_SRC_ALL}};
#define N_ALGOS 5

/* Adds one test user's metrics of the ranked list to sum. */
static void add_user_metrics(rec_metrics_t *sum, const uint32_t *ranked, int k, const uint32_t *rel,
                             int nrel) {
    rec_metrics_t m;
    rec_metrics_user(ranked, k, rel, nrel, &m);
    sum->precision += m.precision;
    sum->recall += m.recall;
    sum->ndcg += m.ndcg;
    sum->map += m.map;
    sum->hit += m.hit;
}

/* One algorithm's JSON line: means over nusers test users. */
static void print_metrics(const char *algo, const char *via, int k, const rec_metrics_t *sum,
                          size_t nusers, size_t ncovered, uint32_t ni, double eps) {
    double nn = nusers ? (double)nusers : 1.0;
    printf("{\"algo\":\"%s\",%s%s%s\"precision@%d\":%.6f,\"recall@%d\":%.6f,\"ndcg@%d\":%.6f,"
           "\"map@%d\":%.6f,\"hit_rate@%d\":%.6f,\"coverage\":%.6f,\"events_per_sec\":%.0f}\n",
           algo, via ? "\"via\":\"" : "", via ? via : "", via ? "\"," : "", k, sum->precision / nn,
           k, sum->recall / nn, k, sum->ndcg / nn, k, sum->map / nn, k, sum->hit / nn,
           ni ? (double)ncovered / ni : 0.0, eps);
    fflush(stdout);
}

/* ---- --via-kafka ---------------------------------------------------- */

/* The training part goes through a cluster and the recommend worker, once
 * per algorithm (a group of its own, the blend weights selecting the one
 * source); each test user is scored on the last Recommendations the worker
 * published for them: what the user would have been shown at the end of
 * the replay. Unlike the in-process run, a user's list was computed when
 * their own last event arrived, not after everyone's. */

typedef struct vk_run {
    const worker_def_t *def;
    config_t *config;
    int rc;
    char err[512];
} vk_run_t;

static void *vk_thread(void *arg) {
    vk_run_t *r = arg;
    const worker_def_t *defs[1] = {r->def};
    r->rc = rt_run(defs, 1, r->config, r->err, sizeof r->err);
    return NULL;
}

typedef struct vk_latest {
    const rec_dict_t *users, *items;
    uint32_t (*list)[64]; /* per user: the latest list, dense item ids */
    int *len;
    int k;
} vk_latest_t;

static void vk_on_recommendation(json_t *v, const rd_kafka_message_t *m, void *opaque) {
    (void)m;
    vk_latest_t *l = opaque;
    json_t *user = v ? json_object_get(v, "user_id") : NULL;
    if (!json_is_string(user)) return;
    const char *name = json_string_value(user);
    uint32_t u = rec_dict_find(l->users, name, strlen(name));
    if (u == UINT32_MAX) return;
    size_t i;
    json_t *it;
    int n = 0;
    json_array_foreach(json_object_get(v, "items"), i, it) {
        json_t *id = json_object_get(it, "item_id");
        if (!json_is_string(id) || n >= l->k) continue;
        const char *s = json_string_value(id);
        uint32_t x = rec_dict_find(l->items, s, strlen(s));
        if (x != UINT32_MAX) l->list[u][n++] = x;
    }
    l->len[u] = n;
}

static long long vk_applied(store_t *st, const char *group, const char *topic) {
    char key[256], suffix[160], err[256];
    snprintf(suffix, sizeof suffix, "offsets:%s", topic);
    rt_key_for(group, suffix, key, sizeof key);
    redisReply *r = store_command(st, err, sizeof err, "HVALS %s", key);
    long long sum = 0;
    if (!r) return -1;
    for (size_t i = 0; i < r->elements; i++) sum += atoll(r->element[i]->str);
    freeReplyObject(r);
    return sum;
}

/* Produces the catalogue (movies.csv) as Items; returns the count or -1. */
static long vk_produce_items(rd_kafka_t *rk, codec_t *codec, const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "reel eval: %s: %s\n", path, strerror(errno));
        return -1;
    }
    const codec_schema_t *s = codec_by_topic(codec, "items");
    avro_value_t v;
    char err[512];
    codec_buf_t buf = {0};
    if (codec_value_new(s, &v, err, sizeof err) < 0) {
        fclose(f);
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    long n = 0, lineno = 0;
    while (getline(&line, &cap, f) > 0) {
        char *fl[3];
        chomp(line);
        if (++lineno == 1 && strncmp(line, "movieId", 7) == 0) continue;
        if (strchr(line, '|') && (!strchr(line, ',') || strchr(line, '|') < strchr(line, ','))) {
            fprintf(stderr, "reel eval: --via-kafka reads movies.csv items, not u.item\n");
            break;
        }
        if (split_fields(line, ',', 1, fl, 3) < 3) continue;
        json_t *o = json_object(), *g = json_array();
        for (char *t = strtok(fl[2], "|"); t; t = strtok(NULL, "|"))
            if (strcmp(t, "(no genres listed)") != 0) json_array_append_new(g, json_string(t));
        json_object_set_new(o, "item_id", json_string(fl[0]));
        json_object_set_new(o, "title", json_string(fl[1]));
        json_object_set_new(o, "genres", g);
        json_object_set_new(o, "tags", json_array());
        json_object_set_new(o, "year", json_integer(year_of_title(fl[1])));
        json_object_set_new(o, "ts", json_integer(0));
        char *text = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        buf.len = 0;
        if (!text || codec_value_from_json(s, text, strlen(text), &v, err, sizeof err) < 0 ||
            codec_encode(codec, s, &v, &buf, err, sizeof err) < 0) {
            free(text);
            continue;
        }
        free(text);
        while (rd_kafka_producev(
                   rk, RD_KAFKA_V_TOPIC("items"), RD_KAFKA_V_KEY(fl[0], strlen(fl[0])),
                   RD_KAFKA_V_VALUE(buf.data, buf.len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                   RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(rk, 10);
        n++;
    }
    free(line);
    fclose(f);
    codec_buf_free(&buf);
    avro_value_decref(&v);
    return n;
}

static int via_kafka(data_t *d, const rec_config_t *cfg, unsigned want, int k, double min_rating,
                     const char *items, const char *bootstrap, const char *redis_url) {
    int rc = 1;
    char err[512];
    svc_kafka_t kafka = {0};
    svc_redis_t redis = {0};
    codec_t *codec = NULL;
    store_t *st = NULL;
    rd_kafka_t *rk = NULL;
    uint32_t nu = rec_dict_size(d->users), ni = rec_dict_size(d->items);
    vk_latest_t latest = {d->users, d->items, calloc(nu, sizeof *latest.list),
                          calloc(nu, sizeof *latest.len), k < 64 ? k : 64};
    uint8_t *ex = calloc(ni, 1), *recd = calloc(ni, 1);
    uint32_t *rel = malloc((d->n + 1) * sizeof *rel), ranked[64];
    if (!latest.list || !latest.len || !ex || !recd || !rel) goto oom;
    log_set_level(LOG_ERROR);
    if (!bootstrap) {
        static const char *const topics[] = {"viewing-events", "items", "recommendations", NULL};
        if (svc_kafka_start(&kafka, topics, 4, err, sizeof err) < 0) goto fail;
        bootstrap = kafka.bootstrap;
    }
    if (!redis_url) {
        if (svc_redis_start(&redis, err, sizeof err) < 0) goto fail;
        redis_url = redis.url;
    }
    char shown[512];
    store_url_redact(redis_url, shown, sizeof shown); /* never the password */
    fprintf(stderr, "reel eval: via kafka %s and redis %s\n", bootstrap, shown);
    codec = codec_new(err, sizeof err);
    st = codec ? store_new(redis_url, err, sizeof err) : NULL;
    if (!st) goto fail;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof err);
    rd_kafka_conf_set(conf, "enable.idempotence", "true", err, sizeof err);
    rd_kafka_conf_set(conf, "linger.ms", "20", err, sizeof err);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk) goto fail;
    long nitems = items ? vk_produce_items(rk, codec, items) : 0;
    if (nitems < 0) goto done;
    /* The training ratings, in timestamp order (d->r is sorted so). */
    const codec_schema_t *es = codec_by_topic(codec, "viewing-events");
    avro_value_t v;
    codec_buf_t buf = {0};
    if (codec_value_new(es, &v, err, sizeof err) < 0) goto fail;
    long ntrain = 0;
    for (size_t x = 0; x < d->n; x++) {
        const rating_t *r = &d->r[x];
        if (r->test) continue;
        char json[512];
        const char *user = rec_dict_name(d->users, r->user);
        snprintf(json, sizeof json,
                 "{\"event_id\":\"r%u\",\"user_id\":\"%s\",\"item_id\":\"%s\",\"type\":"
                 "\"rating\",\"ts\":%lld,\"rating\":%.1f}",
                 r->idx, user, rec_dict_name(d->items, r->item), (long long)r->ts * 1000,
                 (double)r->rating);
        buf.len = 0;
        if (codec_value_from_json(es, json, strlen(json), &v, err, sizeof err) < 0 ||
            codec_encode(codec, es, &v, &buf, err, sizeof err) < 0) {
            fprintf(stderr, "reel eval: rating %u: %s\n", r->idx, err);
            continue;
        }
        while (rd_kafka_producev(rk, RD_KAFKA_V_TOPIC("viewing-events"),
                                 RD_KAFKA_V_KEY((void *)user, strlen(user)),
                                 RD_KAFKA_V_VALUE(buf.data, buf.len),
                                 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                 RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(rk, 10);
        ntrain++;
    }
    avro_value_decref(&v);
    codec_buf_free(&buf);
    if (rd_kafka_flush(rk, 60000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, sizeof err, "producing the training events timed out");
        goto fail;
    }
    fprintf(stderr, "reel eval: produced %ld training events and %ld items\n", ntrain, nitems);

    qsort(d->r, d->n, sizeof *d->r, cmp_user_ts);
    for (int x = 0; x < N_ALGOS; x++) {
        if (!(want & (1u << x))) continue;
        static const char *const sources[4] = {"item_cf", "user_cf", "content", "popular"};
        char group[96], weights[160], num[64];
        snprintf(group, sizeof group, "reel-eval-%ld-%s", (long)getpid(), algos[x].name);
        if (strcmp(algos[x].name, "hybrid") == 0)
            snprintf(weights, sizeof weights, "item_cf=%g,user_cf=%g,content=%g,popular=%g",
                     cfg->src_weight[0], cfg->src_weight[1], cfg->src_weight[2],
                     cfg->src_weight[3]);
        else
            for (int s = 0, o = 0; s < 4; s++)
                o += snprintf(weights + o, sizeof weights - (size_t)o, "%s%s=%d", s ? "," : "",
                              sources[s], strcmp(sources[s], algos[x].name) == 0);
        config_t *c = config_new();
        config_set(c, "kafka.bootstrap.servers", bootstrap);
        config_set(c, "redis.url", redis_url);
        config_set(c, "group.id", group);
        config_set(c, "metrics.port", "-1");
        config_set(c, "recommend.weights", weights);
        config_set(c, "recommend.similarity", rec_sim_name(cfg->sim));
        snprintf(num, sizeof num, "%d", k);
        config_set(c, "recommend.top.n", num);
        snprintf(num, sizeof num, "%d", cfg->hist_cap);
        config_set(c, "recommend.history.cap", num);
        snprintf(num, sizeof num, "%d", cfg->item_k);
        config_set(c, "recommend.item.k", num);
        snprintf(num, sizeof num, "%d", cfg->user_k);
        config_set(c, "recommend.user.k", num);
        snprintf(num, sizeof num, "%d", cfg->cons_cap);
        config_set(c, "recommend.consumers.cap", num);
        snprintf(num, sizeof num, "%g", cfg->half_life_ms / 86400e3);
        config_set(c, "recommend.half.life.days", num);
        config_apply_defaults(c, rt_config_keys);
        config_apply_defaults(c, recommend_worker.config);
        char wgroup[160];
        snprintf(wgroup, sizeof wgroup, "%s-recommend", group);
        vk_run_t run = {&recommend_worker, c, 0, ""};
        pthread_t tid;
        double t0 = now_s(), t_last = t0;
        if (pthread_create(&tid, NULL, vk_thread, &run) != 0) {
            config_destroy(c);
            goto oom;
        }
        long long got = 0;
        while (!rt_stopping()) {
            got = vk_applied(st, wgroup, "viewing-events");
            long long gi = vk_applied(st, wgroup, "items");
            if (got >= ntrain && gi >= nitems) break;
            if (now_s() - t_last > 5) {
                fprintf(stderr, "reel eval: %s: %lld of %ld events applied (%.0f/s)\n",
                        algos[x].name, got, ntrain, (double)got / (now_s() - t0));
                t_last = now_s();
            }
            usleep(200000);
        }
        double secs = now_s() - t0;
        int interrupted = rt_stopping();
        rt_stop();
        pthread_join(tid, NULL);
        if (interrupted) {
            config_destroy(c);
            snprintf(err, sizeof err, "interrupted");
            goto fail;
        }
        rt_stop_reset();
        config_destroy(c);
        if (run.rc < 0) {
            snprintf(err, sizeof err, "the recommend worker failed: %s", run.err);
            goto fail;
        }
        memset(latest.len, 0, nu * sizeof *latest.len);
        svc_read_topic(bootstrap, codec, "recommendations", vk_on_recommendation, &latest);
        rec_metrics_t sum = {0};
        size_t nusers = 0, ncovered = 0;
        memset(recd, 0, ni);
        for (size_t a = 0; a < d->n;) {
            size_t b = a;
            int nrel = 0;
            while (b < d->n && d->r[b].user == d->r[a].user) b++;
            for (size_t y = a; y < b; y++)
                if (d->r[y].test && d->r[y].rating >= min_rating) rel[nrel++] = d->r[y].item;
            if (nrel > 0) {
                uint32_t u = d->r[a].user;
                qsort(rel, (size_t)nrel, sizeof *rel, cmp_u32);
                for (int y = 0; y < latest.k; y++) {
                    ranked[y] = y < latest.len[u] ? latest.list[u][y] : UINT32_MAX;
                    if (y < latest.len[u] && !recd[ranked[y]]) {
                        recd[ranked[y]] = 1;
                        ncovered++;
                    }
                }
                add_user_metrics(&sum, ranked, latest.k, rel, nrel);
                nusers++;
            }
            a = b;
        }
        fprintf(stderr, "reel eval: %s via kafka: %lld events in %.1f s, %zu test users\n",
                algos[x].name, got, secs, nusers);
        print_metrics(algos[x].name, "kafka", latest.k, &sum, nusers, ncovered, ni,
                      secs > 0 ? (double)got / secs : 0.0);
    }
    rc = 0;
    goto done;
oom:
    snprintf(err, sizeof err, "out of memory");
fail:
    fprintf(stderr, "reel eval: --via-kafka: %s\n", err);
done:
    if (rk) rd_kafka_destroy(rk);
    if (st) store_destroy(st);
    if (codec) codec_destroy(codec);
    svc_redis_stop(&redis);
    svc_kafka_stop(&kafka);
    free(latest.list);
    free(latest.len);
    free(ex);
    free(recd);
    free(rel);
    return rc;
}

/* Is name one of the comma-separated entries of list? */
static int in_list(const char *list, const char *name) {
    size_t n = strlen(name);
    for (const char *p = list; p && *p;) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0) return 1;
        p = c ? c + 1 : NULL;
    }
    return 0;
}

static void usage(FILE *o) {
    fprintf(o,
            "usage: reel eval recommend --ratings FILE [--items FILE] [--split random|temporal]\n"
            "         [--algo item_cf|user_cf|content|hybrid|popular|all (or a,b,...)] [--k 10] "
            "[--seed N]\n"
            "         [--events ratings|implicit] [--min-rating R] [--sim "
            "jaccard|cosine|lift|pearson|count] [--item-k K]\n"
            "         [--item-score-k K] [--item-norm 0-3]\n"
            "         [--sim-power P] [--aff-power P] [--pop-beta B] [--user-k K] [--hist-cap N] "
            "[--evict "
            "oldest|weakest]\n"
            "         [--cons-cap N] "
            "[--half-life-days D]\n"
            "         [--weights ITEM,USER,CONTENT,POPULAR]\n"
            "         [--sweep PARAM=v1,v2,...]\n"
            "         [--posters FILE|random] [--review-sentiment FILE|train-ratings]\n"
            "         [--poster-weight W] [--sentiment-weight W]\n"
            "         [--via-kafka [--bootstrap-servers B] [--redis-url U]]\n"
            "ratings: MovieLens ratings.csv (userId,movieId,rating,timestamp) or u.data (TSV)\n"
            "items:   movies.csv (movieId,title,genres) or u.item, for content features\n"
            "Prints one JSON line per algorithm; progress on stderr.\n"
            "--via-kafka: the training events go through a cluster (an embedded one unless\n"
            "  --bootstrap-servers) and the recommend worker with its state in Redis (a\n"
            "  private redis-server unless --redis-url), once per algorithm; each test user\n"
            "  is scored on the last Recommendations published for them (k <= 64).\n"
            "--posters, --review-sentiment: an ablation; every algorithm is ranked again with\n"
            "  the poster block in the content vectors and the review-sentiment prior, as\n"
            "  rows named <algo>+mm. posters: lines \"item_id v1 ... vd\" (or random: arbitrary\n"
            "  per-item embeddings, a control); review sentiment: lines \"item_id,count,sum\"\n"
            "  (the sentiment worker's fields) or train-ratings (the training ratings as\n"
            "  reviews, (r - 3) / 2).\n");
}

int cmd_eval_recommend(int argc, char **argv) {
    const char *ratings = NULL, *items = NULL, *algo = "all";
    int temporal = 0, k = 10, exact_topk = 0;
    const char *dump_split = NULL, *bootstrap = NULL, *redis_url = NULL;
    const char *posters = NULL, *review_sentiment = NULL, *sweep = NULL;
    int implicit = 0;
    int via = 0;
    uint64_t seed = 1;
    double min_rating = 0, half_life_days = 0;
    rec_config_t cfg;
    rec_config_defaults(&cfg);
    cfg.hist_cap = 0; /* 0: each user's whole training history */
    for (int a = 1; a < argc; a++) {
        const char *o = argv[a];
        const char *v = a + 1 < argc ? argv[a + 1] : NULL;
        if (strcmp(o, "-h") == 0 || strcmp(o, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(o, "--via-kafka") == 0) {
            via = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "reel eval recommend: %s needs a value\n", o);
            usage(stderr);
            return 2;
        }
        a++;
        if (strcmp(o, "--ratings") == 0)
            ratings = v;
        else if (strcmp(o, "--items") == 0)
            items = v;
        else if (strcmp(o, "--algo") == 0)
            algo = v;
        else if (strcmp(o, "--k") == 0)
            k = atoi(v);
        else if (strcmp(o, "--seed") == 0)
            seed = strtoull(v, NULL, 10);
        else if (strcmp(o, "--min-rating") == 0)
            min_rating = atof(v);
        else if (strcmp(o, "--bootstrap-servers") == 0)
            bootstrap = v;
        else if (strcmp(o, "--redis-url") == 0)
            redis_url = v;
        else if (strcmp(o, "--events") == 0)
            implicit = strcmp(v, "implicit") == 0 ? 1 : strcmp(v, "ratings") == 0 ? 0 : -1;
        else if (strcmp(o, "--posters") == 0)
            posters = v;
        else if (strcmp(o, "--review-sentiment") == 0)
            review_sentiment = v;
        else if (strcmp(o, "--poster-weight") == 0)
            cfg.poster_weight = (float)atof(v);
        else if (strcmp(o, "--sentiment-weight") == 0)
            cfg.sentiment_weight = (float)atof(v);
        else if (strcmp(o, "--dump-split") == 0)
            dump_split = v;
        else if (strcmp(o, "--exact-topk") == 0)
            exact_topk = atoi(v);
        else if (strcmp(o, "--shrink") == 0)
            cfg.shrink = (float)atof(v);
        else if (strcmp(o, "--item-k") == 0)
            cfg.item_k = atoi(v);
        else if (strcmp(o, "--evict") == 0)
            cfg.evict_weakest = strcmp(v, "weakest") == 0 ? 1 : strcmp(v, "oldest") == 0 ? 0 : -1;
        else if (strcmp(o, "--sweep") == 0)
            sweep = v;
        else if (strcmp(o, "--sim-power") == 0)
            cfg.sim_power = (float)atof(v);
        else if (strcmp(o, "--aff-power") == 0)
            cfg.aff_power = (float)atof(v);
        else if (strcmp(o, "--pop-beta") == 0)
            cfg.pop_beta = (float)atof(v);
        else if (strcmp(o, "--asym-alpha") == 0)
            cfg.asym_alpha = (float)atof(v);
        else if (strcmp(o, "--iuf-beta") == 0)
            cfg.iuf_beta = (float)atof(v);
        else if (strcmp(o, "--user-sim-power") == 0)
            cfg.user_sim_power = (float)atof(v);
        else if (strcmp(o, "--user-aff-power") == 0)
            cfg.user_aff_power = (float)atof(v);
        else if (strcmp(o, "--item-norm") == 0)
            cfg.item_norm = atoi(v);
        else if (strcmp(o, "--item-score-k") == 0)
            cfg.item_score_k = atoi(v);
        else if (strcmp(o, "--user-k") == 0)
            cfg.user_k = atoi(v);
        else if (strcmp(o, "--hist-cap") == 0)
            cfg.hist_cap = atoi(v);
        else if (strcmp(o, "--refresh-ratio") == 0)
            cfg.refresh_ratio = (float)atof(v);
        else if (strcmp(o, "--cons-cap") == 0)
            cfg.cons_cap = atoi(v);
        else if (strcmp(o, "--half-life-days") == 0)
            half_life_days = atof(v);
        else if (strcmp(o, "--weights") == 0) {
            if (sscanf(v, "%f,%f,%f,%f", &cfg.src_weight[0], &cfg.src_weight[1], &cfg.src_weight[2],
                       &cfg.src_weight[3]) != 4) {
                fprintf(stderr, "reel eval recommend: --weights needs 4 numbers\n");
                return 2;
            }
        } else if (strcmp(o, "--sim") == 0) {
            if (rec_sim_parse(v, &cfg.sim) < 0) {
                fprintf(stderr, "reel eval recommend: unknown similarity %s\n", v);
                return 2;
            }
        } else if (strcmp(o, "--split") == 0) {
            if (strcmp(v, "random") == 0)
                temporal = 0;
            else if (strcmp(v, "temporal") == 0)
                temporal = 1;
            else {
                fprintf(stderr, "reel eval recommend: --split random|temporal\n");
                return 2;
            }
        } else {
            fprintf(stderr, "reel eval recommend: unknown option %s\n", o);
            usage(stderr);
            return 2;
        }
    }
    unsigned want = 0;
    for (int x = 0; x < N_ALGOS; x++)
        if (strcmp(algo, "all") == 0 || in_list(algo, algos[x].name)) want |= 1u << x;
    if (!ratings || !want || implicit < 0 || cfg.evict_weakest < 0 || k <= 0 || k > 1000 ||
        cfg.hist_cap < 0 || cfg.item_k <= 0 || cfg.user_k <= 0 || cfg.item_k > 10000 ||
        cfg.user_k > 10000 || cfg.cons_cap <= 0) {
        usage(stderr);
        return 2;
    }
    if (half_life_days > 0) cfg.half_life_ms = (int64_t)(half_life_days * 86400e3);

    int rc = 1;
    data_t d = {0};
    rec_mem_t *mem = NULL;
    rec_work_t *w = NULL;
    rec_deltas_t ds = {0};
    uint8_t *ex = NULL, *recd = NULL;
    uint32_t *rel = NULL;
    rec_rec_t *out = NULL;
    uint32_t *ranked = NULL;
    d.users = rec_dict_new();
    d.items = rec_dict_new();
    if (!d.users || !d.items) goto oom;
    if (load_ratings(ratings, &d) < 0) goto done;
    uint32_t nu = rec_dict_size(d.users), ni = rec_dict_size(d.items);
    fprintf(stderr, "reel eval: %zu ratings, %u users, %u items from %s\n", d.n, nu, ni, ratings);
    if (d.n == 0) {
        fprintf(stderr, "reel eval: no ratings\n");
        goto done;
    }

    split(&d, temporal, seed);
    if (cfg.hist_cap == 0) { /* the largest training history (d.r is by user) */
        for (size_t a = 0, n = 0; a < d.n; a++) {
            n = a > 0 && d.r[a].user == d.r[a - 1].user ? n : 0;
            if (!d.r[a].test && (int)++n > cfg.hist_cap) cfg.hist_cap = (int)n;
        }
        if (cfg.hist_cap == 0) cfg.hist_cap = 1;
    }
    fprintf(stderr, "reel eval: hist_cap %d, item_k %d, item_score_k %d, user_k %d, cons_cap %d\n",
            cfg.hist_cap, cfg.item_k, cfg.item_score_k, cfg.user_k, cfg.cons_cap);
    if (dump_split) { /* "rating_index test" per rating, file order */
        FILE *f = fopen(dump_split, "w");
        if (!f) {
            fprintf(stderr, "reel eval: %s: %s\n", dump_split, strerror(errno));
            goto done;
        }
        uint8_t *t = calloc(d.n, 1);
        if (!t) {
            fclose(f);
            goto oom;
        }
        for (size_t x = 0; x < d.n; x++) t[d.r[x].idx] = d.r[x].test;
        for (size_t x = 0; x < d.n; x++) fprintf(f, "%zu %d\n", x, t[x]);
        free(t);
        fclose(f);
    }
    if (via) {
        qsort(d.r, d.n, sizeof *d.r, cmp_ts);
        rc = via_kafka(&d, &cfg, want, k, min_rating, items, bootstrap, redis_url);
        goto done;
    }
    mem = rec_mem_new(&cfg);
    w = rec_work_new(&cfg);
    if (!mem || !w) goto oom;
    ds.once = rec_mem_once(mem);
    if (items && load_items(items, &d, mem) < 0) goto done;

    /* Training replay, in timestamp order, through the incremental code. */
    qsort(d.r, d.n, sizeof *d.r, cmp_ts);
    /* Decay epoch: the first training event. */
    cfg.epoch_ms = d.r[0].ts * 1000;
    rec_reader_t rd = rec_mem_reader(mem);
    size_t ntrain = 0, ndeltas = 0, dups = 0;
    char evid[32], reason[256];
    double t0 = now_s(), t_last = t0;
    for (size_t x = 0; x < d.n; x++) {
        const rating_t *r = &d.r[x];
        if (r->test) continue;
        snprintf(evid, sizeof evid, "r%u", r->idx);
        rec_event_t ev = {.event_id = evid,
                          .user_id = rec_dict_name(d.users, r->user),
                          .item_id = rec_dict_name(d.items, r->item),
                          .user = r->user,
                          .item = r->item,
                          .type = implicit ? REC_EV_COMPLETE : REC_EV_RATING,
                          .ts_ms = r->ts * 1000,
                          .has_rating = 1,
                          .rating = r->rating};
        if (rec_event_check(&cfg, &ev, INT64_MAX / 2, reason, sizeof reason) < 0) {
            fprintf(stderr, "reel eval: skipping rating %u: %s\n", r->idx, reason);
            continue;
        }
        ds.n = 0;
        int pr = rec_process_event(&cfg, &rd, w, &ev, &ds, reason, sizeof reason);
        if (pr < 0) goto oom;
        if (pr == 0) dups++;
        if (rec_mem_apply(mem, ds.d, ds.n) < 0) goto oom;
        ntrain++;
        ndeltas += ds.n;
        double t = now_s();
        if (t - t_last > 2.0) {
            fprintf(stderr, "reel eval: replayed %zu events (%.0f/s)\n", ntrain, ntrain / (t - t0));
            t_last = t;
        }
    }
    double replay_s = now_s() - t0;
    double eps = replay_s > 0 ? ntrain / replay_s : 0;
    fprintf(stderr,
            "reel eval: replayed %zu training events in %.2f s (%.0f events/s, %.1f us/event), "
            "%.1f deltas/event, %zu pair entries, %zu duplicates\n",
            ntrain, replay_s, eps, replay_s * 1e6 / (ntrain ? ntrain : 1),
            (double)ndeltas / (ntrain ? ntrain : 1), rec_mem_pair_count(mem), dups);

    if (exact_topk) {
        double t2 = now_s();
        if (rec_mem_rebuild_item_topk(mem) < 0) goto oom;
        fprintf(stderr, "reel eval: rebuilt item top-K lists in %.2f s\n", now_s() - t2);
    }
    /* Test sets per user, from the ratings sorted by user. */
    qsort(d.r, d.n, sizeof *d.r, cmp_user_ts);
    ex = calloc(ni, 1);
    recd = calloc(ni, 1);
    rel = malloc(d.n * sizeof *rel);
    out = malloc((size_t)k * sizeof *out);
    ranked = malloc((size_t)k * sizeof *ranked);
    if (!ex || !recd || !rel || !out || !ranked) goto oom;
    const int mm = posters || review_sentiment;
    /* --sweep PARAM=v1,v2,...: the ranking again for each value of a
     * scoring parameter (the replayed state does not depend on them). */
    char sweep_name[32] = "";
    float sweep_vals[16];
    int nsweep = 0;
    if (sweep) {
        const char *eq = strchr(sweep, '=');
        if (!eq || eq - sweep >= (long)sizeof sweep_name) {
            fprintf(stderr, "reel eval: --sweep PARAM=v1,v2,...\n");
            goto done;
        }
        memcpy(sweep_name, sweep, (size_t)(eq - sweep));
        for (const char *p = eq + 1; p && *p && nsweep < 16;) {
            sweep_vals[nsweep++] = strtof(p, NULL);
            p = strchr(p, ',');
            if (p) p++;
        }
    }
    for (int sw = 0; sw < (nsweep ? nsweep : 1); sw++) {
        char sw_suffix[64] = "";
        if (nsweep) {
            float v = sweep_vals[sw];
            if (strcmp(sweep_name, "sim_power") == 0)
                cfg.sim_power = v;
            else if (strcmp(sweep_name, "aff_power") == 0)
                cfg.aff_power = v;
            else if (strcmp(sweep_name, "pop_beta") == 0)
                cfg.pop_beta = v;
            else if (strcmp(sweep_name, "asym_alpha") == 0)
                cfg.asym_alpha = v;
            else if (strcmp(sweep_name, "user_sim_power") == 0)
                cfg.user_sim_power = v;
            else if (strcmp(sweep_name, "user_aff_power") == 0)
                cfg.user_aff_power = v;
            else if (strcmp(sweep_name, "item_norm") == 0)
                cfg.item_norm = (int)v;
            else if (strcmp(sweep_name, "item_score_k") == 0)
                cfg.item_score_k = (int)v;
            else if (strcmp(sweep_name, "sentiment_weight") == 0)
                cfg.sentiment_weight = v;
            else if (strcmp(sweep_name, "w_user") == 0)
                cfg.src_weight[1] = v;
            else if (strcmp(sweep_name, "w_content") == 0)
                cfg.src_weight[2] = v;
            else if (strcmp(sweep_name, "w_popular") == 0)
                cfg.src_weight[3] = v;
            else {
                fprintf(stderr, "reel eval: --sweep: unknown parameter %s\n", sweep_name);
                goto done;
            }
            snprintf(sw_suffix, sizeof sw_suffix, "@%s=%g", sweep_name, v);
        }
        for (int pass = 0; pass < (mm ? 2 : 1); pass++) {
            if (pass == 0 && sw > 0 && mm) continue; /* the state has the mm parts now */
            if (pass == 1 && sw == 0) {
                /* The ablation: the same state, plus the multimodal parts. */
                long np = posters ? set_posters(posters, &d, mem, cfg.poster_weight, seed) : 0;
                long ns = review_sentiment
                              ? set_sentiment(review_sentiment, &d, mem, cfg.sentiment_prior_count)
                              : 0;
                if (np < 0 || ns < 0) goto done;
                fprintf(stderr,
                        "reel eval: +mm: %ld items with a poster (weight %g), %ld with review "
                        "sentiment "
                        "(weight %g)\n",
                        np, cfg.poster_weight, ns, cfg.sentiment_weight);
            }
            for (int x = 0; x < N_ALGOS; x++) {
                if (!(want & (1u << x))) continue;
                double t1 = now_s();
                char name[96];
                snprintf(name, sizeof name, "%s%s%s", algos[x].name, pass ? "+mm" : "", sw_suffix);
                rec_metrics_t sum = {0};
                size_t nusers = 0, ncovered = 0;
                memset(recd, 0, ni);
                for (size_t a = 0; a < d.n;) {
                    size_t b = a;
                    int nrel = 0;
                    while (b < d.n && d.r[b].user == d.r[a].user) b++;
                    for (size_t y = a; y < b; y++) {
                        if (!d.r[y].test)
                            ex[d.r[y].item] = 1;
                        else if (d.r[y].rating >= min_rating)
                            rel[nrel++] = d.r[y].item;
                    }
                    if (nrel > 0) {
                        qsort(rel, (size_t)nrel, sizeof *rel, cmp_u32);
                        int n = rec_recommend(&cfg, &rd, w, d.r[a].user, algos[x].sources, ex, ni,
                                              out, k);
                        if (n < 0) goto oom;
                        for (int y = 0; y < k; y++) ranked[y] = y < n ? out[y].item : UINT32_MAX;
                        for (int y = 0; y < n; y++) {
                            if (!recd[out[y].item]) ncovered++;
                            recd[out[y].item] = 1;
                        }
                        add_user_metrics(&sum, ranked, k, rel, nrel);
                        nusers++;
                    }
                    for (size_t y = a; y < b; y++) ex[d.r[y].item] = 0;
                    a = b;
                }
                fprintf(stderr, "reel eval: %s: %zu test users in %.2f s\n", name, nusers,
                        now_s() - t1);
                print_metrics(name, NULL, k, &sum, nusers, ncovered, ni, eps);
            }
        }
    }
    rc = 0;
    goto done;
oom:
    fprintf(stderr, "reel eval: out of memory\n");
done:
    free(ex);
    free(recd);
    free(rel);
    free(out);
    free(ranked);
    rec_deltas_free(&ds);
    rec_work_destroy(w);
    rec_mem_destroy(mem);
    rec_dict_destroy(d.users);
    rec_dict_destroy(d.items);
    free(d.r);
    return rc;
}
