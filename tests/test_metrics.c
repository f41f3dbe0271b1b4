/* Tests for pipeline/metrics: the exact exposition text, the HTTP endpoints
 * over a real TCP socket, and exact sums under concurrent updates. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "pipeline/metrics.h"

static int setup(void **state) {
    *state = metrics_new();
    return *state ? 0 : -1;
}

static int teardown(void **state) {
    metrics_destroy(*state);
    return 0;
}

/* Fails unless text contains block verbatim (a run of whole lines). */
static void assert_has(const char *text, const char *block) {
    if (!strstr(text, block)) fail_msg("missing:\n%s\n--- in:\n%s", block, text);
}

static void test_counters_with_labels(void **state) {
    metrics_t *m = *state;
    metrics_declare(m, "reel_records_in_total", METRIC_COUNTER, "Records consumed.");
    metrics_add(m, "reel_records_in_total", "topic=\"a\",partition=\"0\"", 3);
    metrics_add(m, "reel_records_in_total", "topic=\"b\",partition=\"0\"", 1);
    metrics_add(m, "reel_records_in_total", "topic=\"a\",partition=\"0\"", 2);
    /* A counter never goes down. */
    metrics_add(m, "reel_records_in_total", "topic=\"a\",partition=\"0\"", -4);
    metrics_add(m, "reel_batches_total", "", 1); /* undeclared: a counter */
    metrics_add(m, "reel_batches_total", NULL, 1);

    assert_true(metrics_get(m, "reel_records_in_total", "topic=\"a\",partition=\"0\"") == 5);
    assert_true(metrics_get(m, "reel_batches_total", "") == 2);
    assert_true(metrics_get(m, "reel_absent", "") == 0);

    char *text = metrics_render(m);
    assert_non_null(text);
    assert_has(text, "# HELP reel_records_in_total Records consumed.\n"
                     "# TYPE reel_records_in_total counter\n"
                     "reel_records_in_total{topic=\"a\",partition=\"0\"} 5\n"
                     "reel_records_in_total{topic=\"b\",partition=\"0\"} 1\n"
                     "# TYPE reel_batches_total counter\n"
                     "reel_batches_total 2\n");
    assert_null(strstr(text, "# HELP reel_batches_total"));
    free(text);
}

static void test_gauges(void **state) {
    metrics_t *m = *state;
    metrics_declare(m, "reel_consumer_lag", METRIC_GAUGE, "Records behind the high watermark.");
    metrics_set(m, "reel_consumer_lag", "partition=\"1\"", 1000);
    metrics_set(m, "reel_consumer_lag", "partition=\"1\"", 12);
    metrics_add(m, "reel_consumer_lag", "partition=\"1\"", -2.5); /* gauges go both ways */
    metrics_set(m, "reel_model_version", "", 0.1);                /* undeclared: a gauge */
    metrics_set(m, "reel_ratio", "", 1.0 / 0.0);
    metrics_set(m, "reel_big", "", 1e21);
    assert_true(metrics_get(m, "reel_consumer_lag", "partition=\"1\"") == 9.5);

    char *text = metrics_render(m);
    assert_non_null(text);
    assert_has(text, "# HELP reel_consumer_lag Records behind the high watermark.\n"
                     "# TYPE reel_consumer_lag gauge\n"
                     "reel_consumer_lag{partition=\"1\"} 9.5\n"
                     "# TYPE reel_model_version gauge\n"
                     "reel_model_version 0.1\n"
                     "# TYPE reel_ratio gauge\n"
                     "reel_ratio +Inf\n"
                     "# TYPE reel_big gauge\n"
                     "reel_big 1e+21\n");
    free(text);
}

/* Buckets are cumulative, bounds are inclusive (le), +Inf equals _count, and
 * the series' own labels come before le. */
static void test_histogram(void **state) {
    metrics_t *m = *state;
    const double bounds[] = {0.125, 0.5, 1};
    metrics_declare_histogram(m, "reel_batch_seconds", "Batch latency.", bounds, 3);
    const double obs[] = {0.0625, 0.125, 0.25, 0.5, 2, 4};
    for (size_t i = 0; i < 6; i++) metrics_observe(m, "reel_batch_seconds", "topic=\"t\"", obs[i]);
    metrics_observe(m, "reel_batch_seconds", "", 0.75);
    assert_true(metrics_get(m, "reel_batch_seconds", "topic=\"t\"") == 6);

    char *text = metrics_render(m);
    assert_non_null(text);
    assert_has(text, "# HELP reel_batch_seconds Batch latency.\n"
                     "# TYPE reel_batch_seconds histogram\n"
                     "reel_batch_seconds_bucket{topic=\"t\",le=\"0.125\"} 2\n"
                     "reel_batch_seconds_bucket{topic=\"t\",le=\"0.5\"} 4\n"
                     "reel_batch_seconds_bucket{topic=\"t\",le=\"1\"} 4\n"
                     "reel_batch_seconds_bucket{topic=\"t\",le=\"+Inf\"} 6\n"
                     "reel_batch_seconds_sum{topic=\"t\"} 6.9375\n"
                     "reel_batch_seconds_count{topic=\"t\"} 6\n"
                     "reel_batch_seconds_bucket{le=\"0.125\"} 0\n"
                     "reel_batch_seconds_bucket{le=\"0.5\"} 0\n"
                     "reel_batch_seconds_bucket{le=\"1\"} 1\n"
                     "reel_batch_seconds_bucket{le=\"+Inf\"} 1\n"
                     "reel_batch_seconds_sum 0.75\n"
                     "reel_batch_seconds_count 1\n");
    free(text);
}

/* An undeclared histogram gets the usual default buckets, and they stay
 * cumulative with +Inf equal to _count. */
static void test_histogram_default_buckets(void **state) {
    metrics_t *m = *state;
    for (int i = 0; i < 100; i++) metrics_observe(m, "reel_redis_seconds", "", i * 0.13);
    char *text = metrics_render(m);
    assert_non_null(text);
    assert_has(text, "# TYPE reel_redis_seconds histogram\n"
                     "reel_redis_seconds_bucket{le=\"0.005\"} 1\n"
                     "reel_redis_seconds_bucket{le=\"0.01\"} 1\n");
    const char *les[] = {"0.005", "0.01", "0.025", "0.05", "0.1", "0.25",
                         "0.5",   "1",    "2.5",   "5",    "10",  "+Inf"};
    long prev = -1;
    for (size_t i = 0; i < 12; i++) {
        char key[64];
        snprintf(key, sizeof key, "reel_redis_seconds_bucket{le=\"%s\"} ", les[i]);
        const char *p = strstr(text, key);
        assert_non_null(p);
        long v = strtol(p + strlen(key), NULL, 10);
        assert_true(v >= prev);
        prev = v;
    }
    assert_int_equal(prev, 100);
    assert_has(text, "reel_redis_seconds_count 100\n");
    free(text);
}

/* Updates of the wrong kind and invalid names are dropped rather than
 * corrupting the scrape; HELP text is escaped. */
static void test_mismatch_and_escaping(void **state) {
    metrics_t *m = *state;
    metrics_add(m, "reel_c_total", "", 1);
    metrics_observe(m, "reel_c_total", "", 5);
    metrics_observe(m, "reel_h_seconds", "", 0.2);
    metrics_add(m, "reel_h_seconds", "", 7);
    metrics_set(m, "reel_h_seconds", "", 7);
    metrics_add(m, "bad name", "", 1);
    metrics_add(m, "9starts_with_digit", "", 1);
    metrics_declare(m, "reel_help", METRIC_GAUGE, "back\\slash\nnewline \"quoted\"");
    metrics_set(m, "reel_help", "", 1);
    assert_true(metrics_get(m, "reel_c_total", "") == 1);
    assert_true(metrics_get(m, "reel_h_seconds", "") == 1);

    char *text = metrics_render(m);
    assert_non_null(text);
    assert_has(text, "reel_c_total 1\n");
    assert_has(text, "reel_h_seconds_count 1\n");
    assert_has(text, "reel_h_seconds_sum 0.2\n");
    assert_null(strstr(text, "bad name"));
    assert_null(strstr(text, "9starts"));
    assert_has(text, "# HELP reel_help back\\\\slash\\nnewline \"quoted\"\n");
    free(text);
}

static void test_process_metrics(void **state) {
    metrics_t *m = *state;
    char *text = metrics_render(m);
    assert_non_null(text);
    assert_has(text, "# TYPE process_resident_memory_bytes gauge\n");
    const char *p = strstr(text, "\nprocess_resident_memory_bytes ");
    assert_non_null(p);
    assert_true(strtod(p + strlen("\nprocess_resident_memory_bytes "), NULL) > 1024 * 1024);
    p = strstr(text, "\nprocess_start_time_seconds ");
    assert_non_null(p);
    double start = strtod(p + strlen("\nprocess_start_time_seconds "), NULL);
    double now = (double)time(NULL);
    assert_true(start <= now + 1 && start > now - 3600);
    assert_non_null(strstr(text, "\nprocess_open_fds "));
    assert_non_null(strstr(text, "\nprocess_cpu_seconds_total "));
    free(text);
}

/* ---- HTTP over a real socket ---- */

typedef struct http_reply {
    int status;
    char headers[2048];
    char *body;
} http_reply_t;

/* One request on a fresh connection to 127.0.0.1:port; reads to EOF. */
static void http_request(int port, const char *method, const char *path, http_reply_t *r) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    char req[256];
    int n =
        snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
                 method, path);
    assert_int_equal(write(fd, req, (size_t)n), n);

    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    ssize_t got;
    while ((got = read(fd, buf + len, cap - len - 1)) > 0) {
        len += (size_t)got;
        if (cap - len < 1024) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
    }
    assert_true(got == 0); /* EOF, not a timeout */
    close(fd);
    buf[len] = '\0';

    assert_int_equal(sscanf(buf, "HTTP/1.%*d %d", &r->status), 1);
    char *end = strstr(buf, "\r\n\r\n");
    assert_non_null(end);
    snprintf(r->headers, sizeof r->headers, "%.*s", (int)(end - buf), buf);
    r->body = strdup(end + 4);
    free(buf);
}

static void test_http_endpoints(void **state) {
    metrics_t *m = *state;
    char err[256] = "";
    metrics_declare(m, "reel_records_out_total", METRIC_COUNTER, "Records produced.");
    metrics_add(m, "reel_records_out_total", "topic=\"recommendations\"", 42);
    int port = metrics_serve(m, 0, err, sizeof err);
    if (port <= 0) fail_msg("metrics_serve: %s", err);

    http_reply_t r;
    http_request(port, "GET", "/metrics", &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strcasestr(r.headers, "\r\nContent-Type: text/plain; version=0.0.4"));
    assert_has(r.body, "# TYPE reel_records_out_total counter\n"
                       "reel_records_out_total{topic=\"recommendations\"} 42\n");
    free(r.body);

    http_request(port, "GET", "/metrics?x=1", &r); /* Prometheus may add params */
    assert_int_equal(r.status, 200);
    free(r.body);

    http_request(port, "GET", "/healthz", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ok\n");
    free(r.body);

    metrics_set_health(m, 0, "redis unreachable: connection refused");
    http_request(port, "GET", "/healthz", &r);
    assert_int_equal(r.status, 503);
    assert_string_equal(r.body, "redis unreachable: connection refused\n");
    free(r.body);

    metrics_set_health(m, 1, NULL);
    http_request(port, "GET", "/healthz", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ok\n");
    free(r.body);

    http_request(port, "GET", "/", &r);
    assert_int_equal(r.status, 404);
    free(r.body);
    http_request(port, "GET", "/metricsx", &r);
    assert_int_equal(r.status, 404);
    free(r.body);
    http_request(port, "DELETE", "/metrics", &r);
    assert_int_equal(r.status, 405);
    free(r.body);

    /* A second server on the same metrics, or on a port in use, fails with
     * a reason. */
    assert_int_equal(metrics_serve(m, 0, err, sizeof err), -1);
    assert_non_null(strstr(err, "already"));
    metrics_t *other = metrics_new();
    assert_non_null(other);
    assert_int_equal(metrics_serve(other, port, err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot serve metrics"));
    assert_int_equal(metrics_serve(other, 70000, err, sizeof err), -1);
    metrics_destroy(other);
}

/* ---- concurrency ---- */

#define THREADS 4
#define ADDS 100000

static void *adder(void *arg) {
    metrics_t *m = arg;
    for (int i = 0; i < ADDS; i++) {
        metrics_add(m, "reel_shared_total", "topic=\"t\"", 1);
        if (i % 100 == 0) metrics_observe(m, "reel_lat_seconds", "", 0.001);
    }
    return NULL;
}

static void *scraper(void *arg) {
    metrics_t *m = arg;
    for (int i = 0; i < 50; i++) free(metrics_render(m));
    return NULL;
}

/* Four threads adding at once lose nothing, while a scrape runs. */
static void test_concurrent_adds_sum_exactly(void **state) {
    metrics_t *m = *state;
    pthread_t t[THREADS + 1];
    for (int i = 0; i < THREADS; i++) assert_int_equal(pthread_create(&t[i], NULL, adder, m), 0);
    assert_int_equal(pthread_create(&t[THREADS], NULL, scraper, m), 0);
    for (int i = 0; i <= THREADS; i++) pthread_join(t[i], NULL);
    assert_true(metrics_get(m, "reel_shared_total", "topic=\"t\"") == (double)THREADS * ADDS);
    assert_true(metrics_get(m, "reel_lat_seconds", "") == THREADS * (ADDS / 100));
    char *text = metrics_render(m);
    assert_has(text, "reel_shared_total{topic=\"t\"} 400000\n");
    assert_has(text, "reel_lat_seconds_bucket{le=\"+Inf\"} 4000\n");
    free(text);
}

/* Hundreds of series (the hash table grows) each keep their own value. */
static void test_many_series(void **state) {
    metrics_t *m = *state;
    char labels[64];
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 1000; i++) {
            snprintf(labels, sizeof labels, "partition=\"%d\"", i);
            metrics_add(m, "reel_per_partition_total", labels, i);
        }
    }
    for (int i = 0; i < 1000; i++) {
        snprintf(labels, sizeof labels, "partition=\"%d\"", i);
        assert_true(metrics_get(m, "reel_per_partition_total", labels) == 2.0 * i);
    }
    char *text = metrics_render(m);
    assert_has(text, "reel_per_partition_total{partition=\"0\"} 0\n"
                     "reel_per_partition_total{partition=\"1\"} 2\n");
    assert_has(text, "reel_per_partition_total{partition=\"999\"} 1998\n");
    free(text);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_counters_with_labels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gauges, setup, teardown),
        cmocka_unit_test_setup_teardown(test_histogram, setup, teardown),
        cmocka_unit_test_setup_teardown(test_histogram_default_buckets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mismatch_and_escaping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_process_metrics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_endpoints, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_adds_sum_exactly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_series, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
