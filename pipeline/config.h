/* config.h: configuration as string key/value pairs.
 *
 * Sources, later ones winning: built-in defaults, a properties file
 * (key=value lines, '#' or '!' comments), environment variables
 * (REEL_KAFKA_BOOTSTRAP_SERVERS -> kafka.bootstrap.servers: prefix dropped,
 * lowercased, '_' -> '.'; "__" gives a literal '_'), and -X key=value. */
#ifndef REEL_PIPELINE_CONFIG_H
#define REEL_PIPELINE_CONFIG_H

#include <stddef.h>
#include <stdint.h>

typedef struct config config_t;

/* A documented key: the runtime and each worker declare a table of these
 * (terminated by a NULL key) for defaults and `reel config`/--help output. */
typedef struct config_key {
    const char *key;
    const char *default_value; /* NULL: no default */
    const char *help;
} config_key_t;

/* The caller owns the result and frees it with config_destroy(). NULL only
 * when out of memory. */
config_t *config_new(void);
void config_destroy(config_t *c);

/* Sets the defaults of a key table (does not override values already set
 * from a source). */
void config_apply_defaults(config_t *c, const config_key_t *keys);

/* Sets key to value (copied). Returns 0 or -1 when out of memory. */
int config_set(config_t *c, const char *key, const char *value);
/* Parses "key=value". Returns 0, or -1 with a reason in errstr. */
int config_set_pair(config_t *c, const char *pair, char *errstr, size_t errstr_size);
/* Reads a properties file (at most 16 MiB). Returns 0, or -1 with
 * "path:line: reason". */
int config_load_file(config_t *c, const char *path, char *errstr, size_t errstr_size);
/* The same from data[0..len) (any bytes; a NUL byte is an error); name
 * stands for the path in messages. */
int config_load_mem(config_t *c, const char *name, const char *data, size_t len, char *errstr,
                    size_t errstr_size);
/* Applies REEL_* variables from envp (NULL-terminated, like environ). */
void config_load_env(config_t *c, char *const *envp);

/* Lookups. The returned string is owned by the config and valid until the
 * key is set again or the config is destroyed. */
const char *config_get(const config_t *c, const char *key, const char *fallback);
/* Integer and boolean lookups; a value that does not parse yields fallback
 * (config_check_int() reports such values). */
int64_t config_get_int(const config_t *c, const char *key, int64_t fallback);
double config_get_double(const config_t *c, const char *key, double fallback);
int config_get_bool(const config_t *c, const char *key, int fallback);
/* Returns 0 if key is absent or an integer in [min, max], else -1 with a
 * reason in errstr naming the key. */
int config_check_int(const config_t *c, const char *key, int64_t min, int64_t max, char *errstr,
                     size_t errstr_size);

/* Calls fn for every key starting with prefix, in insertion order, with the
 * prefix still on the key. Stops early and returns fn's value if non-zero. */
int config_foreach(const config_t *c, const char *prefix,
                   int (*fn)(const char *key, const char *value, void *opaque), void *opaque);

/* Prints a key table as "key (default: v)\n    help" lines. */
void config_print_keys(const config_key_t *keys, void *file /* FILE * */);

#endif
