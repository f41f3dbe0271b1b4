/* Unit tests of the runtime's pure parts: librdkafka configuration routing
 * and Redis key naming. The delivery behaviour itself is covered by the
 * integration and fault tests (tests/test_*.sh). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <librdkafka/rdkafka.h>
#include <string.h>

#include "pipeline/runtime.h"

static void conf_value(rd_kafka_conf_t *conf, const char *key, char *out, size_t n) {
    size_t size = n;
    assert_int_equal(rd_kafka_conf_get(conf, key, out, &size), RD_KAFKA_CONF_OK);
}

/* kafka.* reaches both clients; kafka.consumer.* and kafka.producer.* only
 * their own, so a consumer-only setting never warns in the producer. */
static void test_kafka_keys_are_routed_by_role(void **state) {
    (void)state;
    config_t *c = config_new();
    config_set(c, "kafka.bootstrap.servers", "broker-a:9092");
    config_set(c, "kafka.consumer.fetch.min.bytes", "4096");
    config_set(c, "kafka.producer.linger.ms", "17");
    config_set(c, "redis.url", "redis://ignored");
    char err[256], v[256];

    rd_kafka_conf_t *cons = rt_kafka_conf(c, "consumer", err, sizeof err);
    assert_non_null(cons);
    conf_value(cons, "bootstrap.servers", v, sizeof v);
    assert_string_equal(v, "broker-a:9092");
    conf_value(cons, "fetch.min.bytes", v, sizeof v);
    assert_string_equal(v, "4096");
    conf_value(cons, "linger.ms", v, sizeof v);
    assert_string_not_equal(v, "17");
    rd_kafka_conf_destroy(cons);

    rd_kafka_conf_t *prod = rt_kafka_conf(c, "producer", err, sizeof err);
    assert_non_null(prod);
    conf_value(prod, "linger.ms", v, sizeof v);
    assert_string_equal(v, "17");
    conf_value(prod, "fetch.min.bytes", v, sizeof v);
    assert_string_not_equal(v, "4096");
    rd_kafka_conf_destroy(prod);
    config_destroy(c);
}

/* A key librdkafka does not know is an error naming the reel key. */
static void test_unknown_kafka_key_is_reported(void **state) {
    (void)state;
    config_t *c = config_new();
    config_set(c, "kafka.no.such.property", "1");
    char err[256] = "";
    assert_null(rt_kafka_conf(c, "consumer", err, sizeof err));
    assert_non_null(strstr(err, "kafka.no.such.property"));
    config_destroy(c);
}

/* reel's own client defaults (linger.ms, idempotence) give way to the
 * user's, set for all clients or for the role. */
static void test_defaults_never_override_the_user(void **state) {
    (void)state;
    char err[256], v[256];
    const char *set[][2] = {{NULL, NULL},
                            {"kafka.linger.ms", "0"},
                            {"kafka.producer.linger.ms", "3"},
                            {"kafka.consumer.linger.ms", "7"}};
    const char *want[] = {"20", "0", "3", "20"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        config_t *c = config_new();
        if (set[i][0]) config_set(c, set[i][0], set[i][1]);
        rd_kafka_conf_t *prod = rt_kafka_conf(c, "producer", err, sizeof err);
        assert_non_null(prod);
        assert_int_equal(
            rt_kafka_conf_default(prod, c, "producer", "linger.ms", "20", err, sizeof err), 0);
        conf_value(prod, "linger.ms", v, sizeof v);
        assert_string_equal(v, want[i]);
        rd_kafka_conf_destroy(prod);
        config_destroy(c);
    }
}

/* Every key of a worker carries its group as a hash tag. */
static void test_keys_carry_the_group_hash_tag(void **state) {
    (void)state;
    char buf[128];
    assert_string_equal(rt_key_for("reel-count", "offsets:viewing-events", buf, sizeof buf),
                        "reel:{reel-count}:offsets:viewing-events");
    /* Truncation never overflows the buffer. */
    char small[12];
    rt_key_for("reel-count", "counts", small, sizeof small);
    assert_int_equal(strlen(small), sizeof small - 1);
}

/* The documented defaults are the ones the runtime uses. */
static void test_runtime_defaults_are_declared(void **state) {
    (void)state;
    config_t *c = config_new();
    config_apply_defaults(c, rt_config_keys);
    assert_string_equal(config_get(c, "group.id", NULL), "reel");
    assert_int_equal(config_get_int(c, "batch.max.records", 0), 2000);
    assert_int_equal(config_get_int(c, "metrics.port", 0), 9464);
    assert_string_equal(config_get(c, "auto.offset.reset", NULL), "earliest");
    config_destroy(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kafka_keys_are_routed_by_role),
        cmocka_unit_test(test_unknown_kafka_key_is_reported),
        cmocka_unit_test(test_defaults_never_override_the_user),
        cmocka_unit_test(test_keys_carry_the_group_hash_tag),
        cmocka_unit_test(test_runtime_defaults_are_declared),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
