/* LeakSanitizer is really on in the sanitizer build. The ASan pass of
 * scripts/test.sh relies on it: every worker a test stops with SIGTERM
 * exits through main(), where LeakSanitizer checks the heap and turns a
 * leak into a non-zero exit status, which fails the test. This test leaks
 * blocks on purpose, asks LeakSanitizer for a recoverable check and
 * expects it to find them; it fails when detection is off (for example
 * ASAN_OPTIONS=detect_leaks=0). In a build without AddressSanitizer there
 * is no leak checker to test: it says so and skips. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#define REEL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define REEL_ASAN 1
#endif
#endif

#ifdef REEL_ASAN
#include <sanitizer/lsan_interface.h>

#define N_LEAKS 16
#define HIDE ((uintptr_t)0x5a5a5a5a5a5a5a5aULL)
/* The blocks, stored so that no word in memory points at them. */
static volatile uintptr_t hidden[N_LEAKS];

static __attribute__((noinline)) void leak_blocks(void) {
    for (int i = 0; i < N_LEAKS; i++) {
        char *p = malloc(100 + (size_t)i);
        if (!p) abort();
        memset(p, i, 100 + (size_t)i);
        hidden[i] = (uintptr_t)p ^ HIDE;
    }
}

static __attribute__((noinline)) void clobber_stack(void) {
    volatile char junk[4096];
    memset((char *)junk, 0, sizeof junk);
}

static void test_leaks_are_detected(void **state) {
    (void)state;
    leak_blocks();
    clobber_stack();
    int found = __lsan_do_recoverable_leak_check();
    for (int i = 0; i < N_LEAKS; i++) free((void *)(hidden[i] ^ HIDE));
    const char *opts = getenv("ASAN_OPTIONS");
    if (!found)
        fprintf(stderr, "LeakSanitizer found no leak: detection is off (ASAN_OPTIONS=%s)\n",
                opts ? opts : "(unset)");
    assert_int_not_equal(found, 0);
}
#else
static void test_leaks_are_detected(void **state) {
    (void)state;
    fprintf(stderr, "not built with AddressSanitizer: no leak checker to test\n");
    skip();
}
#endif

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_leaks_are_detected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
