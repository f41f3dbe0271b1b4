/* metrics.h: Prometheus text exposition on an HTTP port (/metrics) and a
 * health check (/healthz: 200 "ok" or 503 with the reason), served by
 * libmicrohttpd on its own thread. All update functions are thread safe and
 * cheap enough to call once per batch (not meant per record).
 *
 * A series is identified by its name and a label string written as it
 * appears inside the braces, e.g. "topic=\"viewing-events\"" (or "" for
 * none). Series are created on first use. */
#ifndef REEL_PIPELINE_METRICS_H
#define REEL_PIPELINE_METRICS_H

#include <stddef.h>

typedef struct metrics metrics_t;

typedef enum { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM } metric_kind_t;

/* The caller owns the result and frees it with metrics_destroy() (which
 * stops the server). NULL when out of memory. */
metrics_t *metrics_new(void);
void metrics_destroy(metrics_t *m);

/* Declares a metric family's kind and help text (optional but gives # HELP
 * and # TYPE lines). Histogram buckets are fixed at declaration: upper
 * bounds in seconds, ascending, n_buckets of them (+Inf is added). */
void metrics_declare(metrics_t *m, const char *name, metric_kind_t kind, const char *help);
void metrics_declare_histogram(metrics_t *m, const char *name, const char *help,
                               const double *buckets, size_t n_buckets);

void metrics_add(metrics_t *m, const char *name, const char *labels, double delta);
void metrics_set(metrics_t *m, const char *name, const char *labels, double value);
void metrics_observe(metrics_t *m, const char *name, const char *labels, double value);
/* Current value of a counter or gauge (0 when absent); for tests. */
double metrics_get(metrics_t *m, const char *name, const char *labels);

/* Health: unhealthy with a reason (copied) or healthy (reason NULL). */
void metrics_set_health(metrics_t *m, int healthy, const char *reason);

/* Starts serving on 0.0.0.0:port (port 0: pick a free one). Returns the
 * port, or -1 with errstr. */
int metrics_serve(metrics_t *m, int port, char *errstr, size_t errstr_size);

/* The exposition text. The caller frees it with free(). */
char *metrics_render(metrics_t *m);

#endif
