/* models.c: versioned model blobs in Redis (see models.h). */
#include "pipeline/models.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* First four bytes of each model family's file -> kind. */
static const struct {
    const char magic[5];
    const char *kind;
} known_magics[] = {
    {"RCNN", "image"},     /* kernels/cnn.h */
    {"RSVM", "image-svm"}, /* kernels/svm.h */
    {"RSPH", "speech"},    /* kernels/speech (GMM-HMM / DNN-HMM) */
    {"RSNT", "sentiment"}, /* kernels/sentiment (LSTM / GRU / bag of words) */
    {"RW2V", "embeddings"} /* kernels/word2vec */
};

const char *models_kind_of(const void *data, size_t len) {
    if (!data || len < 4) return NULL;
    for (size_t i = 0; i < sizeof known_magics / sizeof known_magics[0]; i++)
        if (memcmp(data, known_magics[i].magic, 4) == 0) return known_magics[i].kind;
    return NULL;
}

static int valid_kind(const char *kind, char *errstr, size_t errstr_size) {
    size_t n = kind ? strlen(kind) : 0;
    if (n == 0 || n > MODELS_KIND_MAX) {
        snprintf(errstr, errstr_size, "model kind must be 1-%d characters", MODELS_KIND_MAX);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        char c = kind[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_')) {
            snprintf(errstr, errstr_size, "model kind '%s': use a-z, 0-9, '-' and '_'", kind);
            return -1;
        }
    }
    return 0;
}

static uint32_t fnv1a(const unsigned char *p, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 16777619u;
    return h;
}

static int64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The blob, its info and (optionally) current in one script so a reader
 * never sees a current version without its blob. */
static const char push_script[] =
    "local v = redis.call('INCR', KEYS[1])\n"
    "redis.call('SET', KEYS[2] .. v, ARGV[1])\n"
    "local info = string.format('{\"version\":%d,' , v) .. ARGV[2]\n"
    "redis.call('HSET', KEYS[3], tostring(v), info)\n"
    "if ARGV[3] == '1' then redis.call('SET', KEYS[4], tostring(v)) end\n"
    "return v\n";

static void json_escape_into(char *out, size_t out_size, const char *s) {
    size_t o = 0;
    for (; s && *s && o + 7 < out_size; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20) {
            o += (size_t)snprintf(out + o, out_size - o, "\\u%04x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
}

int models_push(store_t *s, const char *kind, const void *data, size_t len, const char *name,
                int make_current, int64_t *version, char *errstr, size_t errstr_size) {
    if (valid_kind(kind, errstr, errstr_size) < 0) return -1;
    if (!data || len == 0) {
        snprintf(errstr, errstr_size, "empty model");
        return -1;
    }
    if (len > 512u * 1024 * 1024) {
        snprintf(errstr, errstr_size, "model of %zu bytes is over Redis's 512 MiB string limit",
                 len);
        return -1;
    }
    char next_key[96], blob_prefix[96], info_key[96], cur_key[96], esc[512], info[768];
    snprintf(next_key, sizeof next_key, "reel:models:{%s}:next", kind);
    snprintf(blob_prefix, sizeof blob_prefix, "reel:models:{%s}:blob:", kind);
    snprintf(info_key, sizeof info_key, "reel:models:{%s}:info", kind);
    snprintf(cur_key, sizeof cur_key, "reel:models:{%s}:current", kind);
    json_escape_into(esc, sizeof esc, name ? name : "");
    snprintf(info, sizeof info,
             "\"name\":\"%s\",\"size\":%zu,\"fnv1a\":\"%08x\",\"pushed_ms\":%lld}", esc, len,
             fnv1a(data, len), (long long)wall_ms());
    redisReply *r = store_command(s, errstr, errstr_size, "EVAL %s 4 %s %s %s %s %b %s %s",
                                  push_script, next_key, blob_prefix, info_key, cur_key, data, len,
                                  info, make_current ? "1" : "0");
    if (!r) return -1;
    int rc = -1;
    if (r->type == REDIS_REPLY_INTEGER) {
        if (version) *version = r->integer;
        rc = 0;
    } else {
        snprintf(errstr, errstr_size, "unexpected reply to the push script");
    }
    freeReplyObject(r);
    return rc;
}

int models_current(store_t *s, const char *kind, int64_t *version, char *errstr,
                   size_t errstr_size) {
    if (valid_kind(kind, errstr, errstr_size) < 0) return -1;
    redisReply *r = store_command(s, errstr, errstr_size, "GET reel:models:{%s}:current", kind);
    if (!r) return -1;
    int rc = 0;
    if (r->type == REDIS_REPLY_STRING) {
        char *end = NULL;
        long long v = strtoll(r->str, &end, 10);
        if (end && *end == '\0' && v > 0) {
            *version = v;
            rc = 1;
        } else {
            snprintf(errstr, errstr_size, "reel:models:{%s}:current holds '%.32s'", kind, r->str);
            rc = -1;
        }
    }
    freeReplyObject(r);
    return rc;
}

int models_fetch(store_t *s, const char *kind, int64_t version, void **data, size_t *len,
                 char *errstr, size_t errstr_size) {
    if (valid_kind(kind, errstr, errstr_size) < 0) return -1;
    redisReply *r = store_command(s, errstr, errstr_size, "GET reel:models:{%s}:blob:%lld", kind,
                                  (long long)version);
    if (!r) return -1;
    if (r->type != REDIS_REPLY_STRING) {
        snprintf(errstr, errstr_size, "model %s version %lld does not exist", kind,
                 (long long)version);
        freeReplyObject(r);
        return -1;
    }
    void *copy = malloc(r->len ? r->len : 1);
    if (!copy) {
        snprintf(errstr, errstr_size, "out of memory for a model of %zu bytes", (size_t)r->len);
        freeReplyObject(r);
        return -1;
    }
    memcpy(copy, r->str, r->len);
    *data = copy;
    *len = r->len;
    freeReplyObject(r);
    return 0;
}

int models_set_current(store_t *s, const char *kind, int64_t version, char *errstr,
                       size_t errstr_size) {
    if (valid_kind(kind, errstr, errstr_size) < 0) return -1;
    static const char script[] = "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"
                                 "redis.call('SET', KEYS[2], ARGV[1])\n"
                                 "return 1\n";
    char blob_key[96], cur_key[96], v[32];
    snprintf(blob_key, sizeof blob_key, "reel:models:{%s}:blob:%lld", kind, (long long)version);
    snprintf(cur_key, sizeof cur_key, "reel:models:{%s}:current", kind);
    snprintf(v, sizeof v, "%lld", (long long)version);
    redisReply *r =
        store_command(s, errstr, errstr_size, "EVAL %s 2 %s %s %s", script, blob_key, cur_key, v);
    if (!r) return -1;
    int ok = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    if (!ok) {
        snprintf(errstr, errstr_size, "model %s version %lld does not exist", kind,
                 (long long)version);
        return -1;
    }
    return 0;
}

int models_remove(store_t *s, const char *kind, int64_t version, char *errstr, size_t errstr_size) {
    if (valid_kind(kind, errstr, errstr_size) < 0) return -1;
    static const char script[] = "if redis.call('GET', KEYS[3]) == ARGV[1] then return -1 end\n"
                                 "local n = redis.call('DEL', KEYS[1])\n"
                                 "redis.call('HDEL', KEYS[2], ARGV[1])\n"
                                 "return n\n";
    char blob_key[96], info_key[96], cur_key[96], v[32];
    snprintf(blob_key, sizeof blob_key, "reel:models:{%s}:blob:%lld", kind, (long long)version);
    snprintf(info_key, sizeof info_key, "reel:models:{%s}:info", kind);
    snprintf(cur_key, sizeof cur_key, "reel:models:{%s}:current", kind);
    snprintf(v, sizeof v, "%lld", (long long)version);
    redisReply *r = store_command(s, errstr, errstr_size, "EVAL %s 3 %s %s %s %s", script, blob_key,
                                  info_key, cur_key, v);
    if (!r) return -1;
    long long n = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
    freeReplyObject(r);
    if (n < 0) {
        snprintf(errstr, errstr_size,
                 "model %s version %lld is current: roll back to another version first", kind,
                 (long long)version);
        return -1;
    }
    if (n == 0) {
        snprintf(errstr, errstr_size, "model %s version %lld does not exist", kind,
                 (long long)version);
        return -1;
    }
    return 0;
}

static int cmp_info(const void *a, const void *b) {
    int64_t x = ((const models_info_t *)a)->version, y = ((const models_info_t *)b)->version;
    return (x > y) - (x < y);
}

int models_list(store_t *s, const char *kind, models_info_t **out, char *errstr,
                size_t errstr_size) {
    *out = NULL;
    if (valid_kind(kind, errstr, errstr_size) < 0) return -1;
    redisReply *r = store_command(s, errstr, errstr_size, "HGETALL reel:models:{%s}:info", kind);
    if (!r) return -1;
    if (r->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        snprintf(errstr, errstr_size, "unexpected reply to HGETALL");
        return -1;
    }
    int n = (int)(r->elements / 2);
    models_info_t *list = calloc((size_t)n + 1, sizeof *list);
    if (!list) {
        freeReplyObject(r);
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        list[i].version = strtoll(r->element[2 * i]->str, NULL, 10);
        list[i].json = strdup(r->element[2 * i + 1]->str ? r->element[2 * i + 1]->str : "{}");
        if (!list[i].json) {
            models_info_free(list, i);
            freeReplyObject(r);
            snprintf(errstr, errstr_size, "out of memory");
            return -1;
        }
    }
    freeReplyObject(r);
    qsort(list, (size_t)n, sizeof *list, cmp_info);
    *out = list;
    return n;
}

void models_info_free(models_info_t *list, int n) {
    if (!list) return;
    for (int i = 0; i < n; i++) free(list[i].json);
    free(list);
}

int models_poll(store_t *s, const char *kind, int64_t *loaded_version, void **data, size_t *len,
                char *errstr, size_t errstr_size) {
    int64_t current = 0;
    int rc = models_current(s, kind, &current, errstr, errstr_size);
    if (rc <= 0) return rc;
    if (current == *loaded_version) return 0;
    if (models_fetch(s, kind, current, data, len, errstr, errstr_size) < 0) return -1;
    *loaded_version = current;
    return 1;
}
