/* fuzz_config.c: libFuzzer target for the configuration sources a user
 * (or a hostile environment) controls: the properties file
 * (config_load_mem, what config_load_file reads), -X key=value overrides,
 * REEL_* environment variables, the typed lookups, the redis.url parser and
 * its redaction for logs, and the kafka.* pass-through to librdkafka.
 *
 *   CC=clang cmake -S . -B build-fuzz -DREEL_FUZZ=ON && make -C build-fuzz fuzz_config
 *   build-fuzz/fuzz_config -max_total_time=600 corpus/ tests/fuzz/config_seeds/
 *
 * Input: the properties file, then after a NUL byte the -X pairs, one per
 * NUL-separated string (a pair starting with REEL_ goes through the
 * environment mapping instead).
 * Checks beyond "no crash": a -X pair that is accepted reads back trimmed;
 * every key seen by config_foreach() is found by config_get(); a url that
 * parses still parses once redacted, and redaction removes the password. */
#include <ctype.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "pipeline/config.h"
#include "pipeline/runtime.h"
#include "pipeline/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const config_key_t keys[] = {
    {"batch.max.records", "2000", NULL},
    {"metrics.port", "9464", NULL},
    {"redis.url", "redis://127.0.0.1:6379", NULL},
    {"log.level", "info", NULL},
    {NULL, NULL, NULL},
};

static int visit(const char *key, const char *value, void *opaque) {
    const config_t *c = opaque;
    const char *got = config_get(c, key, NULL);
    /* foreach and get agree: one entry per key, the latest value */
    if (!got || strcmp(got, value) != 0) abort();
    (void)config_get_int(c, key, 0);
    (void)config_get_double(c, key, 0);
    (void)config_get_bool(c, key, 0);
    char err[256];
    (void)config_check_int(c, key, -5, 1 << 20, err, sizeof err);
    return 0;
}

/* Trimmed copy of [s, s+n) as set_split() stores it. */
static char *trimmed(const char *s, size_t n) {
    while (n && isspace((unsigned char)*s)) s++, n--;
    while (n && isspace((unsigned char)s[n - 1])) n--;
    char *t = malloc(n + 1);
    if (!t) abort();
    memcpy(t, s, n);
    t[n] = 0;
    return t;
}

static void check_pair(config_t *c, const char *pair) {
    char err[256];
    if (config_set_pair(c, pair, err, sizeof err) != 0) return;
    const char *eq = strchr(pair, '=');
    if (!eq) abort(); /* accepted without a separator */
    char *k = trimmed(pair, (size_t)(eq - pair));
    char *v = trimmed(eq + 1, strlen(eq + 1));
    const char *got = config_get(c, k, NULL);
    if (!*k || !got || strcmp(got, v) != 0) abort();
    free(k);
    free(v);
}

static void check_url(const char *url) {
    char err[256], red[1024], red2[1024];
    store_url_redact(url, red, sizeof red);
    if (strlen(url) + 64 < sizeof red && store_url_check(url, err, sizeof err) == 0 &&
        store_url_check(red, err, sizeof err) != 0)
        abort();
    /* The raw password of the userinfo (between the first ':' after the
     * scheme and the last '@' before the query) is gone, when it is long
     * enough not to occur by chance elsewhere and occurs once. */
    const char *sch = strstr(url, "://");
    if (sch && strlen(url) + 64 < sizeof red) {
        const char *p = sch + 3, *q = strchr(p, '?'), *at = NULL;
        const char *lim = q ? q : p + strlen(p);
        for (const char *x = p; x < lim; x++)
            if (*x == '@') at = x;
        const char *colon = at ? memchr(p, ':', (size_t)(at - p)) : NULL;
        if (colon && at - colon - 1 >= 8) {
            size_t n = (size_t)(at - colon - 1);
            char *pw = malloc(n + 1);
            if (!pw) abort();
            memcpy(pw, colon + 1, n);
            pw[n] = 0;
            const char *first = strstr(url, pw);
            if (first && !strstr(first + 1, pw) && strstr(red, pw)) abort();
            free(pw);
        }
    }
    /* redaction is idempotent */
    store_url_redact(red, red2, sizeof red2);
    if (strlen(url) + 64 < sizeof red && strcmp(red, red2) != 0) abort();
}

static int has_plugin(const char *key, const char *value, void *opaque) {
    (void)value, (void)opaque;
    return strstr(key, "plugin") != NULL;
}

static void check_kafka(const config_t *c) {
    char err[512];
    /* librdkafka dlopen()s plugin.library.paths as soon as it is set: not
     * something to do with fuzzed paths. */
    if (config_foreach(c, "kafka.", has_plugin, NULL)) return;
    rd_kafka_conf_t *conf = rt_kafka_conf(c, "consumer", err, sizeof err);
    if (conf) rd_kafka_conf_destroy(conf);
    conf = rt_kafka_conf(c, "producer", err, sizeof err);
    if (conf) rd_kafka_conf_destroy(conf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *d = (const char *)data;
    const char *nul = memchr(d, 0, size);
    size_t file_len = nul ? (size_t)(nul - d) : size;
    config_t *c = config_new();
    if (!c) abort();
    char err[512];
    (void)config_load_mem(c, "fuzz.properties", d, file_len, err, sizeof err);
    /* the overrides: NUL-separated strings after the file */
    if (nul) {
        size_t pos = file_len + 1;
        while (pos < size) {
            const char *s = d + pos;
            const char *end = memchr(s, 0, size - pos);
            size_t n = end ? (size_t)(end - s) : size - pos;
            char *pair = malloc(n + 1);
            if (!pair) abort();
            memcpy(pair, s, n);
            pair[n] = 0;
            if (strncmp(pair, "REEL_", 5) == 0) {
                char *envp[2] = {pair, NULL};
                config_load_env(c, envp);
            } else {
                check_pair(c, pair);
            }
            free(pair);
            pos += n + 1;
        }
    }
    config_apply_defaults(c, keys);
    (void)config_foreach(c, NULL, visit, c);
    check_url(config_get(c, "redis.url", ""));
    check_kafka(c);
    config_destroy(c);
    return 0;
}
