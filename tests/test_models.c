/* test_models.c: pipeline/models.c, the versioned model registry, against a
 * private redis-server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/models.h"
#include "tests/support/redis_fixture.h"

typedef struct ctx {
    redis_fixture_t f;
    store_t *s;
    char err[512];
} ctx_t;

static int setup(void **state) {
    ctx_t *c = calloc(1, sizeof *c);
    assert_non_null(c);
    if (redis_fixture_start(&c->f, 0, c->err, sizeof c->err) < 0) {
        print_error("redis fixture: %s\n", c->err);
        free(c);
        return -1;
    }
    c->s = store_new(c->f.url, c->err, sizeof c->err);
    if (!c->s) {
        redis_fixture_cleanup(&c->f);
        free(c);
        return -1;
    }
    *state = c;
    return 0;
}

static int teardown(void **state) {
    ctx_t *c = *state;
    store_destroy(c->s);
    redis_fixture_cleanup(&c->f);
    free(c);
    return 0;
}

/* Pushed bytes come back byte for byte (binary, with NULs), versions count
 * up and the latest push becomes current. */
static void test_push_fetch_and_versions(void **state) {
    ctx_t *c = *state;
    int64_t v = 0;
    assert_int_equal(models_current(c->s, "image", &v, c->err, sizeof c->err), 0);
    unsigned char a[300], b[5] = {'R', 'C', 'N', 'N', 0};
    for (size_t i = 0; i < sizeof a; i++) a[i] = (unsigned char)(i * 7);
    assert_int_equal(models_push(c->s, "image", a, sizeof a, "a.bin", 1, &v, c->err, sizeof c->err),
                     0);
    assert_int_equal(v, 1);
    assert_int_equal(
        models_push(c->s, "image", b, sizeof b, "b\"q.bin", 1, &v, c->err, sizeof c->err), 0);
    assert_int_equal(v, 2);
    int64_t cur = 0;
    assert_int_equal(models_current(c->s, "image", &cur, c->err, sizeof c->err), 1);
    assert_int_equal(cur, 2);
    void *data = NULL;
    size_t len = 0;
    assert_int_equal(models_fetch(c->s, "image", 1, &data, &len, c->err, sizeof c->err), 0);
    assert_int_equal(len, sizeof a);
    assert_memory_equal(data, a, sizeof a);
    free(data);
    models_info_t *list = NULL;
    int n = models_list(c->s, "image", &list, c->err, sizeof c->err);
    assert_int_equal(n, 2);
    assert_int_equal(list[0].version, 1);
    assert_non_null(strstr(list[0].json, "\"size\":300"));
    assert_non_null(strstr(list[1].json, "\"name\":\"b\\\"q.bin\""));
    models_info_free(list, n);
    assert_string_equal(models_kind_of(b, sizeof b), "image");
    assert_null(models_kind_of(a, 3));
}

/* A worker polling sees a new version once, and a rollback as a change. */
static void test_poll_and_rollback(void **state) {
    ctx_t *c = *state;
    int64_t loaded = 0, v = 0;
    void *data = NULL;
    size_t len = 0;
    assert_int_equal(models_poll(c->s, "speech", &loaded, &data, &len, c->err, sizeof c->err), 0);
    assert_int_equal(models_push(c->s, "speech", "one", 3, NULL, 1, &v, c->err, sizeof c->err), 0);
    assert_int_equal(models_push(c->s, "speech", "two!", 4, NULL, 1, &v, c->err, sizeof c->err), 0);
    assert_int_equal(models_poll(c->s, "speech", &loaded, &data, &len, c->err, sizeof c->err), 1);
    assert_int_equal(loaded, 2);
    assert_int_equal(len, 4);
    free(data);
    assert_int_equal(models_poll(c->s, "speech", &loaded, &data, &len, c->err, sizeof c->err), 0);
    assert_int_equal(models_set_current(c->s, "speech", 1, c->err, sizeof c->err), 0);
    assert_int_equal(models_poll(c->s, "speech", &loaded, &data, &len, c->err, sizeof c->err), 1);
    assert_int_equal(loaded, 1);
    assert_memory_equal(data, "one", 3);
    free(data);
    /* A version that does not exist cannot become current; the current one
     * cannot be removed; another can. */
    assert_int_equal(models_set_current(c->s, "speech", 9, c->err, sizeof c->err), -1);
    assert_non_null(strstr(c->err, "does not exist"));
    assert_int_equal(models_remove(c->s, "speech", 1, c->err, sizeof c->err), -1);
    assert_non_null(strstr(c->err, "current"));
    assert_int_equal(models_remove(c->s, "speech", 2, c->err, sizeof c->err), 0);
    assert_int_equal(models_fetch(c->s, "speech", 2, &data, &len, c->err, sizeof c->err), -1);
    /* A push that is not made current leaves current alone. */
    assert_int_equal(models_push(c->s, "speech", "three", 5, NULL, 0, &v, c->err, sizeof c->err),
                     0);
    assert_int_equal(v, 3);
    int64_t cur = 0;
    assert_int_equal(models_current(c->s, "speech", &cur, c->err, sizeof c->err), 1);
    assert_int_equal(cur, 1);
}

static void test_bad_kinds_and_empty_models_are_refused(void **state) {
    ctx_t *c = *state;
    int64_t v = 0;
    assert_int_equal(models_push(c->s, "", "x", 1, NULL, 1, &v, c->err, sizeof c->err), -1);
    assert_int_equal(models_push(c->s, "a}b", "x", 1, NULL, 1, &v, c->err, sizeof c->err), -1);
    assert_non_null(strstr(c->err, "a-z"));
    assert_int_equal(models_push(c->s, "image", "", 0, NULL, 1, &v, c->err, sizeof c->err), -1);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_push_fetch_and_versions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_poll_and_rollback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_kinds_and_empty_models_are_refused, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
