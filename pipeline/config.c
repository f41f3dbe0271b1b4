/* config.c: an ordered string key/value store and its sources.
 *
 * Entries live in a small array kept in insertion order: a worker has tens of
 * keys, lookups happen at start-up, and `reel config` and the librdkafka
 * pass-through want the order the user wrote. A key set again keeps its
 * place and gets the new value. */
#include "pipeline/config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct entry {
    char *key;
    char *value;
} entry_t;

struct config {
    entry_t *entries;
    size_t n, cap;
};

config_t *config_new(void) {
    return calloc(1, sizeof(config_t));
}

void config_destroy(config_t *c) {
    if (!c) return;
    for (size_t i = 0; i < c->n; i++) {
        free(c->entries[i].key);
        free(c->entries[i].value);
    }
    free(c->entries);
    free(c);
}

static entry_t *find(const config_t *c, const char *key) {
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->entries[i].key, key) == 0) return &c->entries[i];
    return NULL;
}

int config_set(config_t *c, const char *key, const char *value) {
    char *v = strdup(value);
    if (!v) return -1;
    entry_t *e = find(c, key);
    if (e) {
        free(e->value);
        e->value = v;
        return 0;
    }
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        entry_t *grown = realloc(c->entries, cap * sizeof *grown);
        if (!grown) goto oom;
        c->entries = grown;
        c->cap = cap;
    }
    char *k = strdup(key);
    if (!k) goto oom;
    c->entries[c->n].key = k;
    c->entries[c->n].value = v;
    c->n++;
    return 0;
oom:
    free(v);
    return -1;
}

void config_apply_defaults(config_t *c, const config_key_t *keys) {
    /* Defaults may be applied after the other sources (a worker's table is
     * only known once the worker is chosen), so they never replace a value. */
    for (const config_key_t *k = keys; k && k->key; k++) {
        if (!k->default_value || find(c, k->key)) continue;
        (void)config_set(c, k->key, k->default_value);
    }
}

/* Trims ASCII whitespace at both ends of [s, s+len) in place and returns
 * the new start; *len is updated. */
static char *trim(char *s, size_t *len) {
    size_t n = *len;
    while (n > 0 && isspace((unsigned char)*s)) s++, n--;
    while (n > 0 && isspace((unsigned char)s[n - 1])) n--;
    s[n] = '\0';
    *len = n;
    return s;
}

/* Splits line at sep (a pointer into it) and stores the trimmed pair.
 * Returns 0, or -1 with a reason (without location) in errstr. */
static int set_split(config_t *c, char *line, char *sep, char *errstr, size_t errstr_size) {
    size_t klen = (size_t)(sep - line);
    size_t vlen = strlen(sep + 1);
    char *key = trim(line, &klen);
    char *value = trim(sep + 1, &vlen);
    if (klen == 0) {
        snprintf(errstr, errstr_size, "empty key");
        return -1;
    }
    if (config_set(c, key, value) < 0) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    return 0;
}

int config_set_pair(config_t *c, const char *pair, char *errstr, size_t errstr_size) {
    char *copy = strdup(pair);
    if (!copy) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    int rc = -1;
    char *eq = strchr(copy, '=');
    if (!eq) {
        snprintf(errstr, errstr_size, "'%s': expected key=value", pair);
        goto out;
    }
    char reason[128];
    if (set_split(c, copy, eq, reason, sizeof reason) < 0) {
        snprintf(errstr, errstr_size, "'%s': %s", pair, reason);
        goto out;
    }
    rc = 0;
out:
    free(copy);
    return rc;
}

/* Properties files are small; a larger one is a mistake (or not a
 * properties file), refused before it is read. */
#define CONFIG_MAX_FILE_BYTES (16u << 20)

int config_load_mem(config_t *c, const char *name, const char *data, size_t len, char *errstr,
                    size_t errstr_size) {
    int rc = -1;
    char *line = NULL;
    size_t line_cap = 0;
    unsigned lineno = 0;
    size_t pos = 0;
    /* Editors on some systems start a file with a UTF-8 byte order mark. */
    if (len >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0) pos = 3;
    while (pos < len) {
        lineno++;
        const char *nl = memchr(data + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - (data + pos)) : len - pos;
        /* A NUL cannot be part of a key or value (they are C strings): the
         * file is not text. */
        if (memchr(data + pos, '\0', n)) {
            snprintf(errstr, errstr_size, "%s:%u: NUL byte (not a text file)", name, lineno);
            goto out;
        }
        if (n + 1 > line_cap) {
            char *grown = realloc(line, n + 1);
            if (!grown) {
                snprintf(errstr, errstr_size, "out of memory");
                goto out;
            }
            line = grown;
            line_cap = n + 1;
        }
        memcpy(line, data + pos, n);
        line[n] = '\0';
        pos += n + (nl ? 1 : 0);
        char *s = trim(line, &n);
        if (n == 0 || *s == '#' || *s == '!') continue;
        /* The first '=' or ':' separates, so values may hold either
         * ("bootstrap.servers=host:9092", "url: redis://h:6379/0?x=1").
         * '#' after a value is part of it: passwords may contain one. */
        char *sep = strpbrk(s, "=:");
        if (!sep) {
            snprintf(errstr, errstr_size, "%s:%u: expected key=value", name, lineno);
            goto out;
        }
        char reason[128];
        if (set_split(c, s, sep, reason, sizeof reason) < 0) {
            snprintf(errstr, errstr_size, "%s:%u: %s", name, lineno, reason);
            goto out;
        }
    }
    rc = 0;
out:
    free(line);
    return rc;
}

int config_load_file(config_t *c, const char *path, char *errstr, size_t errstr_size) {
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
        return -1;
    }
    int rc = -1;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) {
            snprintf(errstr, errstr_size, "out of memory");
            goto out;
        }
        len += fread(buf + len, 1, cap - len, f);
        if (len < cap) break;
        if (cap >= CONFIG_MAX_FILE_BYTES) {
            snprintf(errstr, errstr_size, "%s: larger than %u MiB", path,
                     CONFIG_MAX_FILE_BYTES >> 20);
            goto out;
        }
        char *grown = realloc(buf, cap * 2);
        if (!grown) free(buf);
        buf = grown;
        cap *= 2;
    }
    if (ferror(f)) {
        snprintf(errstr, errstr_size, "%s: read error", path);
        goto out;
    }
    rc = config_load_mem(c, path, buf, len, errstr, errstr_size);
out:
    free(buf);
    fclose(f);
    return rc;
}

void config_load_env(config_t *c, char *const *envp) {
    static const char prefix[] = "REEL_";
    for (; envp && *envp; envp++) {
        const char *var = *envp;
        const char *eq = strchr(var, '=');
        if (!eq || strncmp(var, prefix, sizeof prefix - 1) != 0) continue;
        const char *name = var + sizeof prefix - 1;
        size_t name_len = (size_t)(eq - name);
        if (name_len == 0) continue;
        char *key = malloc(name_len + 1);
        if (!key) return;
        /* Environment names cannot hold '.', so '_' stands for it and "__"
         * for a literal '_' (REEL_GROUP__ID -> group_id). */
        size_t k = 0;
        for (size_t i = 0; i < name_len; i++) {
            char ch = name[i];
            if (ch == '_') {
                if (i + 1 < name_len && name[i + 1] == '_') {
                    key[k++] = '_';
                    i++;
                } else {
                    key[k++] = '.';
                }
            } else {
                key[k++] = (char)tolower((unsigned char)ch);
            }
        }
        key[k] = '\0';
        (void)config_set(c, key, eq + 1);
        free(key);
    }
}

const char *config_get(const config_t *c, const char *key, const char *fallback) {
    const entry_t *e = find(c, key);
    return e ? e->value : fallback;
}

/* Plain decimal or 0x hex, optional sign, nothing else (no whitespace, no
 * suffixes, no octal: "010" is ten). Returns 0 or -1. */
static int parse_int(const char *s, int64_t *out) {
    int neg = 0;
    if (*s == '+' || *s == '-') neg = *s++ == '-';
    int base = 10;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
    }
    /* strtoull would accept whitespace and a second sign here. */
    if (base == 16 ? !isxdigit((unsigned char)*s) : !isdigit((unsigned char)*s)) return -1;
    char *end;
    errno = 0;
    unsigned long long mag = strtoull(s, &end, base);
    if (errno || *end) return -1;
    if (neg) {
        if (mag > (unsigned long long)INT64_MAX + 1) return -1;
        *out = mag == (unsigned long long)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
    } else {
        if (mag > (unsigned long long)INT64_MAX) return -1;
        *out = (int64_t)mag;
    }
    return 0;
}

int64_t config_get_int(const config_t *c, const char *key, int64_t fallback) {
    const char *v = config_get(c, key, NULL);
    int64_t x;
    return v && parse_int(v, &x) == 0 ? x : fallback;
}

double config_get_double(const config_t *c, const char *key, double fallback) {
    const char *v = config_get(c, key, NULL);
    if (!v || !*v || isspace((unsigned char)*v)) return fallback;
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    /* A timeout of "nan" or "inf" is a typo, not a value. */
    if (errno || *end || !isfinite(x)) return fallback;
    return x;
}

int config_get_bool(const config_t *c, const char *key, int fallback) {
    const char *v = config_get(c, key, NULL);
    if (!v) return fallback;
    static const char *const yes[] = {"true", "1", "yes", "on"};
    static const char *const no[] = {"false", "0", "no", "off"};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++) {
        if (strcasecmp(v, yes[i]) == 0) return 1;
        if (strcasecmp(v, no[i]) == 0) return 0;
    }
    return fallback;
}

int config_check_int(const config_t *c, const char *key, int64_t min, int64_t max, char *errstr,
                     size_t errstr_size) {
    const char *v = config_get(c, key, NULL);
    if (!v) return 0;
    int64_t x;
    if (parse_int(v, &x) < 0) {
        snprintf(errstr, errstr_size, "%s: '%s' is not an integer", key, v);
        return -1;
    }
    if (x < min || x > max) {
        snprintf(errstr, errstr_size, "%s: %lld is not in [%lld, %lld]", key, (long long)x,
                 (long long)min, (long long)max);
        return -1;
    }
    return 0;
}

int config_foreach(const config_t *c, const char *prefix,
                   int (*fn)(const char *key, const char *value, void *opaque), void *opaque) {
    size_t plen = prefix ? strlen(prefix) : 0;
    /* fn must not set keys: that may move the array under this loop. */
    for (size_t i = 0; i < c->n; i++) {
        const entry_t *e = &c->entries[i];
        if (plen && strncmp(e->key, prefix, plen) != 0) continue;
        int rc = fn(e->key, e->value, opaque);
        if (rc) return rc;
    }
    return 0;
}

void config_print_keys(const config_key_t *keys, void *file) {
    FILE *f = file;
    for (const config_key_t *k = keys; k && k->key; k++) {
        if (k->default_value)
            fprintf(f, "%s (default: %s)\n", k->key, k->default_value);
        else
            fprintf(f, "%s\n", k->key);
        if (k->help) fprintf(f, "    %s\n", k->help);
    }
}
