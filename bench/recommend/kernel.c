/* bench/recommend/kernel.c: the recommend worker's in-memory work alone (no
 * Kafka, no Redis), for measuring and profiling the collaborative kernel.
 *
 *   build/rec_kernel_bench DIR [N] [BATCH]
 *
 * Replays the first N (80000) MovieLens ratings of DIR/ratings.csv in
 * timestamp order as the worker does with recommend.state=memory and its
 * defaults (history cap 100, 50 neighbours per item; ITEM_K=K in the
 * environment keeps K): each event through rec_process_event and
 * rec_mem_apply, and after every BATCH (200) events the top 10 of each
 * user the batch touched (rec_recommend, every source, the catalogue of
 * DIR/movies.csv loaded). Prints one JSON line: cpu seconds and events per
 * cpu-second for the updates and for the recommendations, deltas per event,
 * and two fnv64 hashes, of the final state's bytes (rec_mem_save) and of
 * every recommendation made: a change that only makes the kernel faster
 * must leave both alone. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kernels/rec.h"

typedef struct rating {
    char uid[16], iid[16];
    uint32_t user, item;
    double stars;
    int64_t ts;
    uint32_t row;
} rating_t;

static double cpu_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t k = 0; k < n; k++) h = (h ^ b[k]) * 0x100000001b3ULL;
    return h;
}

static int cmp_ts(const void *a, const void *b) {
    const rating_t *x = a, *y = b;
    if (x->ts != y->ts) return x->ts < y->ts ? -1 : 1;
    return x->row < y->row ? -1 : x->row > y->row;
}

/* movies.csv: movieId,title,genres; the title may be quoted and hold
 * commas. Only items the ratings name get features. */
static int load_items(const char *path, rec_dict_t *items, rec_mem_t *mem) {
    FILE *f = fopen(path, "r");
    if (!f) return 0; /* content scoring then has no catalogue */
    char *line = NULL;
    size_t cap = 0;
    float feat[REC_FEAT_DIM];
    while (getline(&line, &cap, f) > 0) {
        line[strcspn(line, "\r\n")] = '\0';
        char *c1 = strchr(line, ',');
        char *c2 = strrchr(line, ',');
        if (!c1 || c2 == c1 || strncmp(line, "movieId", 7) == 0) continue;
        uint32_t id = rec_dict_find(items, line, (size_t)(c1 - line));
        if (id == UINT32_MAX) continue;
        int year = 0;
        char *paren = NULL;
        for (char *p = c1; p < c2; p++)
            if (*p == '(') paren = p;
        if (paren) year = atoi(paren + 1);
        const char *genres[32];
        int ng = 0;
        for (char *g = c2 + 1; g && *g && ng < 32;) {
            char *bar = strchr(g, '|');
            if (bar) *bar = '\0';
            genres[ng++] = g;
            g = bar ? bar + 1 : NULL;
        }
        rec_item_features(genres, ng, NULL, 0, year, feat);
        if (rec_mem_set_features(mem, id, feat) < 0) {
            free(line);
            fclose(f);
            return -1;
        }
    }
    free(line);
    fclose(f);
    return 0;
}

/* As the worker runs (workers/reel.c, choose_process_env): OpenBLAS on one
 * thread with the core type named, since it does not recognise every
 * virtual cpu, and malloc on transparent huge pages (unless REEL_HUGEPAGES
 * is 0). All are read when the process starts, hence the exec. */
static void like_the_worker(char **argv) {
    if (getenv("REC_KERNEL_BENCH_EXEC")) return;
    setenv("REC_KERNEL_BENCH_EXEC", "1", 1);
    if (!getenv("OPENBLAS_NUM_THREADS")) setenv("OPENBLAS_NUM_THREADS", "1", 1);
    const char *huge = getenv("REEL_HUGEPAGES");
    if (!getenv("GLIBC_TUNABLES") && !(huge && strcmp(huge, "0") == 0))
        setenv("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1", 1);
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        setenv("OPENBLAS_CORETYPE", "SkylakeX", 1);
    else if (__builtin_cpu_supports("avx2"))
        setenv("OPENBLAS_CORETYPE", "Haswell", 1);
    execv("/proc/self/exe", argv);
}

int main(int argc, char **argv) {
    like_the_worker(argv);
    if (argc < 2) {
        fprintf(stderr, "usage: rec_kernel_bench MOVIELENS_DIR [N] [BATCH]\n");
        return 2;
    }
    size_t want = argc > 2 ? strtoul(argv[2], NULL, 10) : 80000;
    size_t batch = argc > 3 ? strtoul(argv[3], NULL, 10) : 200;
    if (batch == 0) batch = 1;
    char path[4096];
    snprintf(path, sizeof path, "%s/ratings.csv", argv[1]);
    FILE *f = fopen(path, "r");
    if (!f) {
        perror(path);
        return 1;
    }
    rec_dict_t *users = rec_dict_new(), *items = rec_dict_new();
    rating_t *r = NULL;
    size_t n = 0, cap = 0;
    char *line = NULL;
    size_t lcap = 0;
    while (getline(&line, &lcap, f) > 0) {
        char *u = strtok(line, ","), *i = strtok(NULL, ","), *s = strtok(NULL, ","),
             *t = strtok(NULL, ",\r\n");
        if (!t || strcmp(u, "userId") == 0) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 65536;
            rating_t *p = realloc(r, cap * sizeof *r);
            if (!p) return 1;
            r = p;
        }
        r[n] = (rating_t){.stars = atof(s), .ts = atoll(t) * 1000, .row = (uint32_t)n};
        snprintf(r[n].uid, sizeof r[n].uid, "%s", u);
        snprintf(r[n].iid, sizeof r[n].iid, "%s", i);
        n++;
    }
    free(line);
    fclose(f);
    qsort(r, n, sizeof *r, cmp_ts);
    if (want > n) want = n;
    /* Dense ids in order of first appearance, as the worker assigns them
     * (evictions break ties on them). */
    for (size_t x = 0; x < want; x++) {
        r[x].user = rec_dict_intern(users, r[x].uid, strlen(r[x].uid));
        r[x].item = rec_dict_intern(items, r[x].iid, strlen(r[x].iid));
    }

    rec_config_t cfg;
    rec_config_defaults(&cfg);
    cfg.epoch_ms = 1577836800000LL; /* the worker's recommend.decay.epoch.ms */
    cfg.item_k = 50;                /* the worker's recommend.item.k */
    if (getenv("ITEM_K")) cfg.item_k = atoi(getenv("ITEM_K"));
    if (getenv("RR")) cfg.refresh_ratio = (float)atof(getenv("RR"));
    rec_mem_t *mem = rec_mem_new(&cfg);
    rec_work_t *w = rec_work_new(&cfg);
    rec_deltas_t ds = {0};
    rec_rec_t out[10];
    uint32_t *touched = malloc(batch * sizeof *touched);
    if (!mem || !w || !touched) return 1;
    ds.once = rec_mem_once(mem);
    snprintf(path, sizeof path, "%s/movies.csv", argv[1]);
    if (load_items(path, items, mem) < 0) return 1;
    rec_reader_t rd = rec_mem_reader(mem);

    double t_update = 0, t_rec = 0;
    size_t ndeltas = 0, nrecs = 0;
    uint64_t rec_hash = 0xcbf29ce484222325ULL;
    char evid[32], reason[256];
    for (size_t b0 = 0; b0 < want; b0 += batch) {
        size_t b1 = b0 + batch < want ? b0 + batch : want, nt = 0;
        double t0 = cpu_s();
        for (size_t x = b0; x < b1; x++) {
            snprintf(evid, sizeof evid, "ml%zu", x);
            rec_event_t ev = {.event_id = evid,
                              .user_id = "u",
                              .item_id = "i",
                              .user = r[x].user,
                              .item = r[x].item,
                              .type = REC_EV_RATING,
                              .ts_ms = r[x].ts,
                              .has_rating = 1,
                              .rating = r[x].stars};
            ds.n = 0;
            if (rec_process_event(&cfg, &rd, w, &ev, &ds, reason, sizeof reason) < 0 ||
                rec_mem_apply(mem, ds.d, ds.n) < 0) {
                fprintf(stderr, "rec_kernel_bench: %s\n", reason);
                return 1;
            }
            ndeltas += ds.n;
            size_t y = 0;
            while (y < nt && touched[y] != r[x].user) y++;
            if (y == nt) touched[nt++] = r[x].user;
        }
        double t1 = cpu_s();
        for (size_t y = 0; y < nt; y++) {
            int got = rec_recommend(&cfg, &rd, w, touched[y], REC_SRC_ALL, NULL, 0, out, 10);
            if (got < 0) return 1;
            rec_hash = fnv(rec_hash, &touched[y], sizeof touched[y]);
            for (int k = 0; k < got; k++) {
                rec_hash = fnv(rec_hash, &out[k].item, sizeof out[k].item);
                rec_hash = fnv(rec_hash, &out[k].score, sizeof out[k].score);
            }
            nrecs++;
        }
        t_update += t1 - t0;
        t_rec += cpu_s() - t1;
    }
    rec_buf_t sb = {0};
    if (rec_mem_save(mem, &sb) < 0) return 1;
    printf("{\"events\":%zu,\"batch\":%zu,\"update_cpu_s\":%.3f,\"recommend_cpu_s\":%.3f,"
           "\"events_per_cpu_s\":%.0f,\"updates_per_cpu_s\":%.0f,\"recommendations\":%zu,"
           "\"deltas_per_event\":%.1f,\"users\":%u,\"items\":%u,\"pairs\":%zu,\"state_bytes\":%zu,"
           "\"state_fnv64\":\"%016llx\",\"recs_fnv64\":\"%016llx\"}\n",
           want, batch, t_update, t_rec, want / (t_update + t_rec), want / t_update, nrecs,
           (double)ndeltas / (want ? want : 1), rec_mem_user_count(mem), rec_mem_item_count(mem),
           rec_mem_pair_count(mem), sb.len,
           (unsigned long long)fnv(0xcbf29ce484222325ULL, sb.data, sb.len),
           (unsigned long long)rec_hash);
    free(sb.data);
    free(touched);
    free(r);
    rec_deltas_free(&ds);
    rec_work_destroy(w);
    rec_mem_destroy(mem);
    rec_dict_destroy(users);
    rec_dict_destroy(items);
    return 0;
}
