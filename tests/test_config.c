/* Tests for pipeline/config: properties files, environment mapping, source
 * precedence and typed lookups. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pipeline/config.h"

/* Writes text to a fresh temporary file; the caller unlinks path. */
static void write_temp(char *path, size_t n, const char *text) {
    snprintf(path, n, "/tmp/reel_test_config_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
}

static int setup(void **state) {
    *state = config_new();
    return *state ? 0 : -1;
}

static int teardown(void **state) {
    config_destroy(*state);
    return 0;
}

/* Comments, blank lines, both separators, whitespace and '=' or ':' inside
 * values all parse the way a Kafka user's client.properties does. */
static void test_file_parsing(void **state) {
    config_t *c = *state;
    char path[64], err[256] = "";
    write_temp(path, sizeof path,
               "# a comment\n"
               "! another comment\n"
               "\n"
               "   \t\n"
               "kafka.bootstrap.servers=localhost:9092\n"
               "  redis.url : redis://localhost:6379/0?a=b  \n"
               "kafka.sasl.jaas.config=user=\"x\" password=\"p#w=1\"\r\n"
               "empty.value=\n"
               "   # indented comment\n"
               "last.line.without.newline=yes");
    int rc = config_load_file(c, path, err, sizeof err);
    unlink(path);
    assert_int_equal(rc, 0);
    assert_string_equal(config_get(c, "kafka.bootstrap.servers", NULL), "localhost:9092");
    assert_string_equal(config_get(c, "redis.url", NULL), "redis://localhost:6379/0?a=b");
    assert_string_equal(config_get(c, "kafka.sasl.jaas.config", NULL),
                        "user=\"x\" password=\"p#w=1\"");
    assert_string_equal(config_get(c, "empty.value", NULL), "");
    assert_string_equal(config_get(c, "last.line.without.newline", NULL), "yes");
    assert_null(config_get(c, "# a comment", NULL));
    assert_string_equal(config_get(c, "absent", "fb"), "fb");
}

/* A line without a separator names the file and its line number. */
static void test_file_bad_line_reports_line_number(void **state) {
    config_t *c = *state;
    char path[64], err[256] = "";
    write_temp(path, sizeof path, "# header\na=1\n\nthis line is wrong\nb=2\n");
    int rc = config_load_file(c, path, err, sizeof err);
    char expected[128];
    snprintf(expected, sizeof expected, "%s:4: expected key=value", path);
    unlink(path);
    assert_int_equal(rc, -1);
    assert_string_equal(err, expected);
}

static void test_file_empty_key_and_missing_file(void **state) {
    config_t *c = *state;
    char path[64], err[256] = "";
    write_temp(path, sizeof path, "a=1\n  = value\n");
    int rc = config_load_file(c, path, err, sizeof err);
    char expected[128];
    snprintf(expected, sizeof expected, "%s:2: empty key", path);
    unlink(path);
    assert_int_equal(rc, -1);
    assert_string_equal(err, expected);

    rc = config_load_file(c, "/nonexistent/reel.properties", err, sizeof err);
    assert_int_equal(rc, -1);
    assert_string_equal(err, "/nonexistent/reel.properties: No such file or directory");
}

/* The same parser from memory (what the fuzzer drives): a NUL byte is not
 * text and is refused with its line; a byte order mark and a last line
 * without a newline are fine; a file over 16 MiB is refused. */
static void test_load_mem_and_limits(void **state) {
    config_t *c = *state;
    char err[256] = "";
    static const char text[] = "\xEF\xBB\xBF"
                               "a=1\r\nb : two\n\n# c\nlast=x";
    assert_int_equal(config_load_mem(c, "mem", text, sizeof text - 1, err, sizeof err), 0);
    assert_string_equal(config_get(c, "a", NULL), "1");
    assert_string_equal(config_get(c, "b", NULL), "two");
    assert_string_equal(config_get(c, "last", NULL), "x");
    static const char nul[] = "a=1\nb=x\0y\n";
    assert_int_equal(config_load_mem(c, "mem", nul, sizeof nul - 1, err, sizeof err), -1);
    assert_string_equal(err, "mem:2: NUL byte (not a text file)");
    assert_int_equal(config_load_mem(c, "mem", "", 0, err, sizeof err), 0);

    char path[64];
    write_temp(path, sizeof path, "");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    static char line[1 << 16];
    memset(line, '#', sizeof line - 1);
    line[sizeof line - 1] = '\n';
    for (int i = 0; i < 257; i++) assert_int_equal(fwrite(line, 1, sizeof line, f), sizeof line);
    fclose(f);
    int rc = config_load_file(c, path, err, sizeof err);
    unlink(path);
    assert_int_equal(rc, -1);
    assert_non_null(strstr(err, "larger than 16 MiB"));
}

static void test_set_pair(void **state) {
    config_t *c = *state;
    char err[256] = "";
    assert_int_equal(config_set_pair(c, "kafka.sasl.password=a=b:c", err, sizeof err), 0);
    assert_string_equal(config_get(c, "kafka.sasl.password", NULL), "a=b:c");
    assert_int_equal(config_set_pair(c, "novalue", err, sizeof err), -1);
    assert_non_null(strstr(err, "novalue"));
    assert_non_null(strstr(err, "expected key=value"));
    assert_int_equal(config_set_pair(c, "=x", err, sizeof err), -1);
    assert_non_null(strstr(err, "empty key"));
}

static const config_key_t keys[] = {
    {"batch.size", "500", "records per batch"},
    {"kafka.group.id", "reel", "consumer group"},
    {"redis.url", NULL, "Redis URL"},
    {"log.level", "info", NULL},
    {NULL, NULL, NULL},
};

/* defaults < file < env < -X: each later source replaces the value, and
 * defaults applied late never replace what a source set. */
static void test_precedence(void **state) {
    config_t *c = *state;
    char path[64], err[256] = "";
    config_apply_defaults(c, keys);
    assert_string_equal(config_get(c, "batch.size", NULL), "500");
    assert_null(config_get(c, "redis.url", NULL));

    write_temp(path, sizeof path, "batch.size=100\nkafka.group.id=file-group\nlog.level=warn\n");
    assert_int_equal(config_load_file(c, path, err, sizeof err), 0);
    unlink(path);
    assert_int_equal(config_get_int(c, "batch.size", 0), 100);

    char *envp[] = {"REEL_BATCH_SIZE=200", "REEL_KAFKA_GROUP_ID=env-group", "PATH=/bin", NULL};
    config_load_env(c, envp);
    assert_int_equal(config_get_int(c, "batch.size", 0), 200);
    assert_string_equal(config_get(c, "kafka.group.id", NULL), "env-group");

    assert_int_equal(config_set_pair(c, "batch.size=300", err, sizeof err), 0);
    assert_int_equal(config_get_int(c, "batch.size", 0), 300);

    /* Applying defaults again (a worker's table, known late) changes nothing
     * that a source set, and only fills what is missing. */
    config_apply_defaults(c, keys);
    assert_int_equal(config_get_int(c, "batch.size", 0), 300);
    assert_string_equal(config_get(c, "kafka.group.id", NULL), "env-group");
    assert_string_equal(config_get(c, "log.level", NULL), "warn");
    assert_null(config_get(c, "redis.url", NULL));
}

static int count_keys(const char *key, const char *value, void *opaque) {
    (void)key, (void)value;
    (*(int *)opaque)++;
    return 0;
}

/* REEL_A_B -> a.b, lowercased; "__" is a literal '_'; other variables and a
 * bare prefix are ignored. */
static void test_env_mapping(void **state) {
    config_t *c = *state;
    char *envp[] = {
        "REEL_KAFKA_BOOTSTRAP_SERVERS=broker:9092",
        "REEL_GROUP__ID=g1",
        "REEL_KAFKA_SASL__MECHANISM__X=PLAIN",
        "REEL_REDIS_URL=redis://h:1/0?x=y",
        "REEL_=ignored",
        "REEL=ignored",
        "HOME=/root",
        "REELX_A=ignored",
        "REEL_NOVALUE",
        NULL,
    };
    config_load_env(c, envp);
    assert_string_equal(config_get(c, "kafka.bootstrap.servers", NULL), "broker:9092");
    assert_string_equal(config_get(c, "group_id", NULL), "g1");
    assert_string_equal(config_get(c, "kafka.sasl_mechanism_x", NULL), "PLAIN");
    assert_string_equal(config_get(c, "redis.url", NULL), "redis://h:1/0?x=y");
    /* Exactly the four REEL_* variables with a name and a value. */
    int n = 0;
    assert_int_equal(config_foreach(c, NULL, count_keys, &n), 0);
    assert_int_equal(n, 4);
}

static void test_env_ignores_others(void **state) {
    config_t *c = *state;
    char *envp[] = {"REEL_=x",      "REEL=x",   "HOME=/root", "REELX_A=x",
                    "REEL_NOVALUE", "REEL_A=1", NULL};
    config_load_env(c, envp);
    int n = 0;
    assert_int_equal(config_foreach(c, "", count_keys, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(config_get(c, "a", NULL), "1");
}

static void test_int_getters(void **state) {
    config_t *c = *state;
    config_set(c, "dec", "42");
    config_set(c, "neg", "-17");
    config_set(c, "hex", "0x1F");
    config_set(c, "neghex", "-0x10");
    config_set(c, "leading.zero", "010");
    config_set(c, "max", "9223372036854775807");
    config_set(c, "min", "-9223372036854775808");
    config_set(c, "overflow", "9223372036854775808");
    config_set(c, "suffix", "10k");
    config_set(c, "float", "1.5");
    config_set(c, "space", " 5");
    config_set(c, "empty", "");
    config_set(c, "bare.hex", "0x");
    config_set(c, "double.sign", "--5");
    assert_int_equal(config_get_int(c, "dec", -1), 42);
    assert_int_equal(config_get_int(c, "neg", -1), -17);
    assert_int_equal(config_get_int(c, "hex", -1), 31);
    assert_int_equal(config_get_int(c, "neghex", -1), -16);
    assert_int_equal(config_get_int(c, "leading.zero", -1), 10);
    assert_true(config_get_int(c, "max", -1) == INT64_MAX);
    assert_true(config_get_int(c, "min", -1) == INT64_MIN);
    assert_int_equal(config_get_int(c, "overflow", -1), -1);
    assert_int_equal(config_get_int(c, "suffix", -1), -1);
    assert_int_equal(config_get_int(c, "float", -1), -1);
    assert_int_equal(config_get_int(c, "space", -1), -1);
    assert_int_equal(config_get_int(c, "empty", -1), -1);
    assert_int_equal(config_get_int(c, "bare.hex", -1), -1);
    assert_int_equal(config_get_int(c, "double.sign", -1), -1);
    assert_int_equal(config_get_int(c, "absent", 7), 7);
}

static void test_double_and_bool_getters(void **state) {
    config_t *c = *state;
    config_set(c, "d", "0.25");
    config_set(c, "e", "1e-3");
    config_set(c, "bad", "0.5s");
    config_set(c, "nan", "nan");
    assert_true(config_get_double(c, "d", -1) == 0.25);
    assert_true(config_get_double(c, "e", -1) == 1e-3);
    assert_true(config_get_double(c, "bad", -1) == -1);
    assert_true(config_get_double(c, "nan", -1) == -1);
    assert_true(config_get_double(c, "absent", 2.5) == 2.5);

    const char *truthy[] = {"true", "TRUE", "1", "yes", "on", "On"};
    const char *falsy[] = {"false", "False", "0", "no", "off", "OFF"};
    for (size_t i = 0; i < 6; i++) {
        config_set(c, "b", truthy[i]);
        assert_int_equal(config_get_bool(c, "b", -1), 1);
        config_set(c, "b", falsy[i]);
        assert_int_equal(config_get_bool(c, "b", -1), 0);
    }
    config_set(c, "b", "maybe");
    assert_int_equal(config_get_bool(c, "b", -1), -1);
    config_set(c, "b", "");
    assert_int_equal(config_get_bool(c, "b", 1), 1);
    assert_int_equal(config_get_bool(c, "absent", 0), 0);
}

static void test_check_int(void **state) {
    config_t *c = *state;
    char err[256] = "";
    assert_int_equal(config_check_int(c, "absent", 1, 10, err, sizeof err), 0);
    config_set(c, "batch.size", "500");
    assert_int_equal(config_check_int(c, "batch.size", 1, 1000, err, sizeof err), 0);
    assert_int_equal(config_check_int(c, "batch.size", 1, 100, err, sizeof err), -1);
    assert_string_equal(err, "batch.size: 500 is not in [1, 100]");
    config_set(c, "batch.size", "lots");
    assert_int_equal(config_check_int(c, "batch.size", 1, 100, err, sizeof err), -1);
    assert_string_equal(err, "batch.size: 'lots' is not an integer");
}

typedef struct {
    char seen[8][64];
    int n;
    int stop_at;
} collect_t;

static int collect(const char *key, const char *value, void *opaque) {
    collect_t *col = opaque;
    snprintf(col->seen[col->n], sizeof col->seen[0], "%s=%s", key, value);
    col->n++;
    return col->n == col->stop_at ? 99 : 0;
}

/* foreach keeps insertion order, keeps the prefix on the key, and a key set
 * again keeps its first place. */
static void test_foreach_prefix_order(void **state) {
    config_t *c = *state;
    config_set(c, "kafka.z", "1");
    config_set(c, "redis.url", "r");
    config_set(c, "kafka.a", "2");
    config_set(c, "kafkaesque", "no");
    config_set(c, "kafka.m", "3");
    config_set(c, "kafka.z", "4");

    collect_t col = {.stop_at = -1};
    assert_int_equal(config_foreach(c, "kafka.", collect, &col), 0);
    assert_int_equal(col.n, 3);
    assert_string_equal(col.seen[0], "kafka.z=4");
    assert_string_equal(col.seen[1], "kafka.a=2");
    assert_string_equal(col.seen[2], "kafka.m=3");

    collect_t all = {.stop_at = -1};
    assert_int_equal(config_foreach(c, NULL, collect, &all), 0);
    assert_int_equal(all.n, 5);
    assert_string_equal(all.seen[3], "kafkaesque=no");

    collect_t early = {.stop_at = 2};
    assert_int_equal(config_foreach(c, "kafka.", collect, &early), 99);
    assert_int_equal(early.n, 2);
}

static void test_print_keys(void **state) {
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    config_print_keys(keys, f);
    fclose(f);
    assert_string_equal(buf, "batch.size (default: 500)\n"
                             "    records per batch\n"
                             "kafka.group.id (default: reel)\n"
                             "    consumer group\n"
                             "redis.url\n"
                             "    Redis URL\n"
                             "log.level (default: info)\n");
    free(buf);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_file_parsing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_bad_line_reports_line_number, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_empty_key_and_missing_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_mem_and_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_pair, setup, teardown),
        cmocka_unit_test_setup_teardown(test_precedence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_env_mapping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_env_ignores_others, setup, teardown),
        cmocka_unit_test_setup_teardown(test_int_getters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_double_and_bool_getters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_int, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreach_prefix_order, setup, teardown),
        cmocka_unit_test(test_print_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
