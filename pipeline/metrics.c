/* metrics.c: a table of series under one mutex, rendered in the Prometheus
 * text format 0.0.4 and served by libmicrohttpd.
 *
 * Updates come once per batch from a few threads, and a scrape every few
 * seconds, so one mutex is enough; a hash on (name, labels) keeps an update
 * O(1) with hundreds of series. Families keep declaration order and series
 * creation order so the exposition is stable from scrape to scrape. */
#include "pipeline/metrics.h"

#include "pipeline/log.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct series series_t;

typedef struct family {
    char *name;
    char *help; /* NULL: no # HELP line */
    metric_kind_t kind;
    double *bounds; /* histogram upper bounds, ascending, without +Inf */
    size_t n_bounds;
    series_t *first, *last; /* creation order */
    struct family *next;    /* declaration order */
} family_t;

struct series {
    family_t *fam;
    char *labels; /* as inside the braces; "" for none */
    uint64_t hash;
    double value; /* counter, gauge */
    /* Histogram: per-bucket (not cumulative) counts, n_bounds + 1 of them,
     * the last for values above every bound. Cumulated when rendered. */
    uint64_t *counts;
    double sum;
    uint64_t count;
    series_t *next_in_family;
    series_t *next_in_slot;
};

struct metrics {
    pthread_mutex_t lock;
    family_t *families, *families_last;
    series_t **slots; /* hash table, chained; n_slots is a power of two */
    size_t n_slots, n_series;
    int healthy;
    char *health_reason;
    struct MHD_Daemon *daemon;
    double start_time; /* seconds since the epoch; < 0 when unknown */
};

/* Prometheus client libraries' defaults, in seconds: they span a fast
 * Redis round trip to a slow batch. */
static const double default_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

static double read_start_time(void);

metrics_t *metrics_new(void) {
    metrics_t *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->n_slots = 64;
    m->slots = calloc(m->n_slots, sizeof *m->slots);
    if (!m->slots) {
        free(m);
        return NULL;
    }
    pthread_mutex_init(&m->lock, NULL);
    m->healthy = 1;
    m->start_time = read_start_time();
    return m;
}

static void family_free(family_t *f) {
    if (!f) return;
    free(f->name);
    free(f->help);
    free(f->bounds);
    free(f);
}

void metrics_destroy(metrics_t *m) {
    if (!m) return;
    /* Stop the server first: its thread reads the table. */
    if (m->daemon) MHD_stop_daemon(m->daemon);
    for (family_t *f = m->families, *fn; f; f = fn) {
        fn = f->next;
        for (series_t *s = f->first, *sn; s; s = sn) {
            sn = s->next_in_family;
            free(s->labels);
            free(s->counts);
            free(s);
        }
        family_free(f);
    }
    free(m->slots);
    free(m->health_reason);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

/* A name outside [a-zA-Z_:][a-zA-Z0-9_:]* would make Prometheus reject the
 * whole scrape, so such a series is never created. */
static int valid_name(const char *s) {
    if (!*s) return 0;
    for (const char *p = s; *p; p++) {
        char c = *p;
        int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
        if (!alpha && !(p > s && c >= '0' && c <= '9')) return 0;
    }
    return 1;
}

static int set_bounds(family_t *f, const double *bounds, size_t n) {
    double *copy = malloc((n ? n : 1) * sizeof *copy);
    if (!copy) return -1;
    if (n) memcpy(copy, bounds, n * sizeof *copy);
    free(f->bounds);
    f->bounds = copy;
    f->n_bounds = n;
    return 0;
}

static family_t *find_family(metrics_t *m, const char *name) {
    for (family_t *f = m->families; f; f = f->next)
        if (strcmp(f->name, name) == 0) return f;
    return NULL;
}

/* Finds or creates the family; called with the lock held. */
static family_t *get_family(metrics_t *m, const char *name, metric_kind_t kind) {
    family_t *f = find_family(m, name);
    if (f) return f;
    if (!valid_name(name)) return NULL;
    f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->kind = kind;
    if (!(f->name = strdup(name))) goto fail;
    if (kind == METRIC_HISTOGRAM &&
        set_bounds(f, default_bounds, sizeof default_bounds / sizeof *default_bounds) < 0)
        goto fail;
    if (m->families_last)
        m->families_last->next = f;
    else
        m->families = f;
    m->families_last = f;
    return f;
fail:
    family_free(f);
    return NULL;
}

static void declare(metrics_t *m, const char *name, metric_kind_t kind, const char *help,
                    const double *bounds, size_t n_bounds) {
    pthread_mutex_lock(&m->lock);
    family_t *f = get_family(m, name, kind);
    if (!f) goto out;
    /* Kind and buckets are fixed once a series exists: changing them would
     * make the existing samples meaningless. */
    if (!f->first) {
        if (kind == METRIC_HISTOGRAM && !bounds && f->kind != METRIC_HISTOGRAM) {
            bounds = default_bounds;
            n_bounds = sizeof default_bounds / sizeof *default_bounds;
        }
        if (!bounds || set_bounds(f, bounds, n_bounds) == 0) f->kind = kind;
    }
    if (help) {
        char *h = strdup(help);
        if (h) {
            free(f->help);
            f->help = h;
        }
    }
out:
    pthread_mutex_unlock(&m->lock);
}

void metrics_declare(metrics_t *m, const char *name, metric_kind_t kind, const char *help) {
    declare(m, name, kind, help, NULL, 0);
}

void metrics_declare_histogram(metrics_t *m, const char *name, const char *help,
                               const double *buckets, size_t n_buckets) {
    /* Bounds must be finite and strictly ascending or the cumulative counts
     * would not be; a bad table falls back to the defaults. */
    for (size_t i = 0; i < n_buckets; i++) {
        if (!isfinite(buckets[i]) || (i > 0 && buckets[i] <= buckets[i - 1])) {
            log_warn("metrics_bad_buckets", "histogram %s: bucket bounds not ascending", name);
            buckets = default_bounds;
            n_buckets = sizeof default_bounds / sizeof *default_bounds;
            break;
        }
    }
    declare(m, name, METRIC_HISTOGRAM, help, buckets, n_buckets);
}

static uint64_t hash_key(const char *name, const char *labels) {
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    h = (h ^ 0xFF) * 1099511628211ULL; /* separator no name contains */
    for (const unsigned char *p = (const unsigned char *)labels; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return h;
}

static void grow_slots(metrics_t *m) {
    size_t n = m->n_slots * 2;
    series_t **slots = calloc(n, sizeof *slots);
    if (!slots) return; /* longer chains, still correct */
    for (size_t i = 0; i < m->n_slots; i++) {
        for (series_t *s = m->slots[i], *next; s; s = next) {
            next = s->next_in_slot;
            s->next_in_slot = slots[s->hash & (n - 1)];
            slots[s->hash & (n - 1)] = s;
        }
    }
    free(m->slots);
    m->slots = slots;
    m->n_slots = n;
}

static series_t *find_series(metrics_t *m, const char *name, const char *labels, uint64_t h) {
    for (series_t *s = m->slots[h & (m->n_slots - 1)]; s; s = s->next_in_slot)
        if (s->hash == h && strcmp(s->fam->name, name) == 0 && strcmp(s->labels, labels) == 0)
            return s;
    return NULL;
}

/* Finds or creates a series; an undeclared family gets kind. Called with the
 * lock held. NULL when the name is invalid or out of memory. */
static series_t *get_series(metrics_t *m, const char *name, const char *labels,
                            metric_kind_t kind) {
    if (!labels) labels = "";
    uint64_t h = hash_key(name, labels);
    series_t *s = find_series(m, name, labels, h);
    if (s) return s;
    family_t *f = get_family(m, name, kind);
    if (!f) return NULL;
    s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->fam = f;
    s->hash = h;
    if (!(s->labels = strdup(labels))) goto fail;
    if (f->kind == METRIC_HISTOGRAM && !(s->counts = calloc(f->n_bounds + 1, sizeof *s->counts)))
        goto fail;
    if (f->last)
        f->last->next_in_family = s;
    else
        f->first = s;
    f->last = s;
    size_t slot = h & (m->n_slots - 1);
    s->next_in_slot = m->slots[slot];
    m->slots[slot] = s;
    if (++m->n_series > m->n_slots) grow_slots(m);
    return s;
fail:
    free(s->labels);
    free(s);
    return NULL;
}

void metrics_add(metrics_t *m, const char *name, const char *labels, double delta) {
    pthread_mutex_lock(&m->lock);
    series_t *s = get_series(m, name, labels, METRIC_COUNTER);
    /* A counter that goes down reads as a process restart to rate(). */
    if (s && (s->fam->kind == METRIC_GAUGE || (s->fam->kind == METRIC_COUNTER && delta >= 0)))
        s->value += delta;
    pthread_mutex_unlock(&m->lock);
}

void metrics_set(metrics_t *m, const char *name, const char *labels, double value) {
    pthread_mutex_lock(&m->lock);
    /* Setting a counter is allowed: totals copied from librdkafka statistics
     * are counters kept elsewhere. */
    series_t *s = get_series(m, name, labels, METRIC_GAUGE);
    if (s && s->fam->kind != METRIC_HISTOGRAM) s->value = value;
    pthread_mutex_unlock(&m->lock);
}

void metrics_observe(metrics_t *m, const char *name, const char *labels, double value) {
    if (isnan(value)) return; /* it would poison _sum for good */
    pthread_mutex_lock(&m->lock);
    series_t *s = get_series(m, name, labels, METRIC_HISTOGRAM);
    if (s && s->fam->kind == METRIC_HISTOGRAM) {
        const family_t *f = s->fam;
        size_t i = 0;
        while (i < f->n_bounds && value > f->bounds[i]) i++; /* le: value <= bound */
        s->counts[i]++;
        s->sum += value;
        s->count++;
    }
    pthread_mutex_unlock(&m->lock);
}

double metrics_get(metrics_t *m, const char *name, const char *labels) {
    if (!labels) labels = "";
    pthread_mutex_lock(&m->lock);
    series_t *s = find_series(m, name, labels, hash_key(name, labels));
    /* For a histogram, the number of observations. */
    double v = !s ? 0 : s->fam->kind == METRIC_HISTOGRAM ? (double)s->count : s->value;
    pthread_mutex_unlock(&m->lock);
    return v;
}

void metrics_set_health(metrics_t *m, int healthy, const char *reason) {
    char *copy = reason ? strdup(reason) : NULL;
    pthread_mutex_lock(&m->lock);
    free(m->health_reason);
    m->health_reason = copy;
    m->healthy = healthy;
    pthread_mutex_unlock(&m->lock);
}

/* ---- rendering ---- */

typedef struct strbuf {
    char *p;
    size_t len, cap;
    int oom;
} strbuf_t;

static void sb_printf(strbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(strbuf_t *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap * 2;
        while (cap - b->len <= (size_t)n) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

/* Shortest of %.15g and %.17g that reads back as v ("0.1", not
 * "0.10000000000000001"), and the spellings Prometheus uses for the rest. */
static const char *fmt_value(char *buf, size_t n, double v) {
    if (isnan(v)) return "NaN";
    if (isinf(v)) return v > 0 ? "+Inf" : "-Inf";
    snprintf(buf, n, "%.15g", v);
    if (strtod(buf, NULL) != v) snprintf(buf, n, "%.17g", v);
    return buf;
}

static void render_help(strbuf_t *b, const family_t *f) {
    /* In HELP text only backslash and newline are escaped. */
    sb_printf(b, "# HELP %s ", f->name);
    for (const char *p = f->help; *p; p++) {
        if (*p == '\\')
            sb_printf(b, "\\\\");
        else if (*p == '\n')
            sb_printf(b, "\\n");
        else
            sb_printf(b, "%c", *p);
    }
    sb_printf(b, "\n");
}

/* name_suffix{labels[,extra]} value */
static void render_sample(strbuf_t *b, const char *name, const char *suffix, const char *labels,
                          const char *extra, const char *value) {
    sb_printf(b, "%s%s", name, suffix);
    if (*labels && extra)
        sb_printf(b, "{%s,%s}", labels, extra);
    else if (*labels || extra)
        sb_printf(b, "{%s}", *labels ? labels : extra);
    sb_printf(b, " %s\n", value);
}

static void render_series(strbuf_t *b, const family_t *f, const series_t *s) {
    char v[40];
    if (f->kind != METRIC_HISTOGRAM) {
        render_sample(b, f->name, "", s->labels, NULL, fmt_value(v, sizeof v, s->value));
        return;
    }
    uint64_t cum = 0;
    char le[64], bound[40];
    for (size_t i = 0; i <= f->n_bounds; i++) {
        cum += s->counts[i];
        if (i < f->n_bounds)
            snprintf(le, sizeof le, "le=\"%s\"", fmt_value(bound, sizeof bound, f->bounds[i]));
        else
            snprintf(le, sizeof le, "le=\"+Inf\"");
        snprintf(v, sizeof v, "%llu", (unsigned long long)cum);
        render_sample(b, f->name, "_bucket", s->labels, le, v);
    }
    render_sample(b, f->name, "_sum", s->labels, NULL, fmt_value(v, sizeof v, s->sum));
    snprintf(v, sizeof v, "%llu", (unsigned long long)s->count);
    render_sample(b, f->name, "_count", s->labels, NULL, v);
}

/* ---- process metrics, read from /proc at each scrape; lock held ---- */

/* Fields of /proc/self/stat after the command name (which may hold spaces
 * and parentheses, hence the last ')'). out[i] is field i + 3. */
static int read_proc_stat(unsigned long long *out, size_t n) {
    char buf[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    if (!f) return -1;
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = '\0';
    char *p = strrchr(buf, ')');
    if (!p) return -1;
    p++;
    for (size_t i = 0; i < n; i++) {
        while (*p == ' ') p++;
        if (!*p) return -1;
        if (i == 0) { /* state: a letter */
            p++;
            continue;
        }
        char *end;
        out[i] = strtoull(p, &end, 10);
        if (end == p) return -1;
        p = end;
    }
    return 0;
}

static double read_start_time(void) {
    unsigned long long f[20]; /* fields 3..22; starttime is 22 */
    long tck = sysconf(_SC_CLK_TCK);
    if (read_proc_stat(f, 20) < 0 || tck <= 0) return -1;
    FILE *st = fopen("/proc/stat", "r");
    if (!st) return -1;
    char line[256];
    unsigned long long btime = 0;
    int found = 0;
    while (!found && fgets(line, sizeof line, st)) found = sscanf(line, "btime %llu", &btime) == 1;
    fclose(st);
    return found ? (double)btime + (double)f[19] / (double)tck : -1;
}

static void render_process(strbuf_t *b, metrics_t *m) {
    char v[40];
    long page = sysconf(_SC_PAGESIZE);
    unsigned long long vm_pages, rss_pages;
    /* A family may appear only once in a scrape: a program that exports
     * its own process_* metric keeps it. */
    FILE *f =
        find_family(m, "process_resident_memory_bytes") ? NULL : fopen("/proc/self/statm", "r");
    if (f) {
        if (page > 0 && fscanf(f, "%llu %llu", &vm_pages, &rss_pages) == 2) {
            sb_printf(b,
                      "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
                      "# TYPE process_resident_memory_bytes gauge\n"
                      "process_resident_memory_bytes %llu\n"
                      "# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n"
                      "# TYPE process_virtual_memory_bytes gauge\n"
                      "process_virtual_memory_bytes %llu\n",
                      rss_pages * (unsigned long long)page, vm_pages * (unsigned long long)page);
        }
        fclose(f);
    }
    unsigned long long st[13]; /* fields 3..15: utime is 14, stime 15 */
    long tck = sysconf(_SC_CLK_TCK);
    if (!find_family(m, "process_cpu_seconds_total") && tck > 0 && read_proc_stat(st, 13) == 0) {
        double cpu = (double)(st[11] + st[12]) / (double)tck;
        sb_printf(b,
                  "# HELP process_cpu_seconds_total Total user and system CPU time spent in "
                  "seconds.\n"
                  "# TYPE process_cpu_seconds_total counter\n"
                  "process_cpu_seconds_total %s\n",
                  fmt_value(v, sizeof v, cpu));
    }
    DIR *d = find_family(m, "process_open_fds") ? NULL : opendir("/proc/self/fd");
    if (d) {
        long n = -1; /* the directory's own descriptor is not one of ours */
        while (readdir(d)) n++;
        closedir(d);
        n -= 2; /* "." and ".." */
        sb_printf(b,
                  "# HELP process_open_fds Number of open file descriptors.\n"
                  "# TYPE process_open_fds gauge\n"
                  "process_open_fds %ld\n",
                  n);
    }
    if (!find_family(m, "process_start_time_seconds") && m->start_time >= 0) {
        sb_printf(b,
                  "# HELP process_start_time_seconds Start time of the process since unix epoch "
                  "in seconds.\n"
                  "# TYPE process_start_time_seconds gauge\n"
                  "process_start_time_seconds %s\n",
                  fmt_value(v, sizeof v, m->start_time));
    }
}

char *metrics_render(metrics_t *m) {
    strbuf_t b = {.cap = 4096};
    if (!(b.p = malloc(b.cap))) return NULL;
    b.p[0] = '\0';
    pthread_mutex_lock(&m->lock);
    for (const family_t *f = m->families; f; f = f->next) {
        if (!f->first) continue; /* nothing to report yet */
        if (f->help) render_help(&b, f);
        static const char *const kinds[] = {"counter", "gauge", "histogram"};
        sb_printf(&b, "# TYPE %s %s\n", f->name, kinds[f->kind]);
        for (const series_t *s = f->first; s; s = s->next_in_family) render_series(&b, f, s);
    }
    render_process(&b, m); /* a few small /proc reads; under the lock for find_family */
    pthread_mutex_unlock(&m->lock);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

/* ---- HTTP ---- */

static enum MHD_Result respond(struct MHD_Connection *conn, unsigned status, char *body, size_t len,
                               const char *content_type) {
    /* MHD_RESPMEM_MUST_FREE: MHD owns body from here and free()s it. */
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED) MHD_add_response_header(r, "Allow", "GET, HEAD");
    enum MHD_Result rc = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result respond_text(struct MHD_Connection *conn, unsigned status,
                                    const char *text) {
    char *body = strdup(text);
    if (!body) return MHD_NO;
    return respond(conn, status, body, strlen(body), "text/plain; charset=utf-8");
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **con_cls) {
    metrics_t *m = cls;
    (void)version, (void)upload_data, (void)upload_data_size, (void)con_cls;
    int is_metrics = strcmp(url, "/metrics") == 0;
    int is_health = strcmp(url, "/healthz") == 0;
    if (!is_metrics && !is_health) return respond_text(conn, MHD_HTTP_NOT_FOUND, "not found\n");
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return respond_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");

    if (is_metrics) {
        char *text = metrics_render(m);
        if (!text) return respond_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
        return respond(conn, MHD_HTTP_OK, text, strlen(text), "text/plain; version=0.0.4");
    }

    pthread_mutex_lock(&m->lock);
    int healthy = m->healthy;
    size_t len = m->health_reason ? strlen(m->health_reason) : 0;
    char *body = malloc(len + 16);
    if (body) {
        if (healthy)
            strcpy(body, "ok\n");
        else
            snprintf(body, len + 16, "%s\n", m->health_reason ? m->health_reason : "unhealthy");
    }
    pthread_mutex_unlock(&m->lock);
    if (!body) return MHD_NO;
    return respond(conn, healthy ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, body, strlen(body),
                   "text/plain; charset=utf-8");
}

/* libmicrohttpd's own messages go to the JSON log instead of raw stderr. */
static void mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = '\0';
    log_warn("metrics_http", "%s", msg);
}

int metrics_serve(metrics_t *m, int port, char *errstr, size_t errstr_size) {
    if (port < 0 || port > 65535) {
        snprintf(errstr, errstr_size, "metrics port %d out of range", port);
        return -1;
    }
    if (m->daemon) {
        snprintf(errstr, errstr_size, "metrics server already running");
        return -1;
    }
    errno = 0;
    /* MHD_USE_AUTO picks epoll: select() breaks once a worker with many
     * broker connections has descriptors above FD_SETSIZE. The timeout and
     * limit keep a stuck or hostile client from holding the only thread. */
    m->daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG,
                                 (uint16_t)port, NULL, NULL, handle, m, MHD_OPTION_EXTERNAL_LOGGER,
                                 mhd_log, NULL, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)10,
                                 MHD_OPTION_CONNECTION_LIMIT, (unsigned int)64, MHD_OPTION_END);
    if (!m->daemon) {
        snprintf(errstr, errstr_size, "cannot serve metrics on 0.0.0.0:%d: %s", port,
                 errno ? strerror(errno) : "libmicrohttpd failed to start");
        return -1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(m->daemon, MHD_DAEMON_INFO_BIND_PORT);
    if (!info || info->port == 0) {
        snprintf(errstr, errstr_size, "metrics server: cannot read its port");
        MHD_stop_daemon(m->daemon);
        m->daemon = NULL;
        return -1;
    }
    return info->port;
}
