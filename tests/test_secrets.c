/* test_secrets.c: rt_protect_secrets() finds every secret a configuration
 * holds (kafka.* passwords and keys, the password of redis.url as decoded
 * and as written) and no log line written afterwards shows one, while
 * values of ordinary keys stay readable. */
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
#include "pipeline/log.h"
#include "pipeline/runtime.h"

/* Runs log_info(msg) with stderr sent to a file; returns what was written
 * (the caller frees it). */
static char *logged(const char *msg) {
    char path[] = "/tmp/reel_test_secrets_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    log_info("test", "%s", msg);
    dup2(saved, STDERR_FILENO);
    close(saved);
    char *out = calloc(1, 8192);
    assert_non_null(out);
    assert_true(pread(fd, out, 8191, 0) > 0);
    close(fd);
    unlink(path);
    return out;
}

static void test_config_secrets_never_logged(void **state) {
    (void)state;
    config_t *c = config_new();
    assert_non_null(c);
    assert_int_equal(config_set(c, "redis.url", "redis://alice:p%40ss-w0rd-x@redis:6379/0"), 0);
    assert_int_equal(config_set(c, "kafka.sasl.password", "sasl-pw-1234"), 0);
    assert_int_equal(config_set(c, "kafka.producer.ssl.key.password", "key-pw-5678"), 0);
    assert_int_equal(config_set(c, "kafka.sasl.oauthbearer.client.secret", "oidc-secret-9"), 0);
    assert_int_equal(config_set(c, "kafka.sasl.oauthbearer.config", "principal=bob extra=zz99"), 0);
    assert_int_equal(config_set(c, "kafka.sasl.username", "reel-user"), 0);
    assert_int_equal(config_set(c, "sentiment.max.tokens", "1000"), 0);
    rt_protect_secrets(c);
    config_t *u = config_new();
    assert_int_equal(config_set(u, "redis.url", "unix:///run/r.sock?db=1&password=q%23pw-4444"), 0);
    rt_protect_secrets(u);
    config_destroy(u);
    char *out = logged("url redis://alice:p%40ss-w0rd-x@redis decoded p@ss-w0rd-x sasl-pw-1234 "
                       "key-pw-5678 oidc-secret-9 [principal=bob extra=zz99] reel-user 1000 "
                       "unix:///run/r.sock?db=1&password=q%23pw-4444 q#pw-4444");
    static const char *const secrets[] = {"p%40ss-w0rd-x", "p@ss-w0rd-x",   "sasl-pw-1234",
                                          "key-pw-5678",   "oidc-secret-9", "extra=zz99"};
    for (size_t i = 0; i < sizeof secrets / sizeof *secrets; i++)
        if (strstr(out, secrets[i])) fail_msg("'%s' logged: %s", secrets[i], out);
    assert_non_null(strstr(out, "redis://alice:***@redis"));
    assert_non_null(strstr(out, "reel-user 1000 ")); /* not secrets */
    if (!strstr(out, "?db=1&password=*** ***")) fail_msg("%s", out);
    free(out);
    config_destroy(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_secrets_never_logged),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
