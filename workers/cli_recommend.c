/* cli_recommend.c: `reel recommend state`, the recommend worker's
 * memory-mode state (recommend.state=memory) as Redis holds it: the last
 * snapshot plus the log after it, rebuilt here exactly as a worker would. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/rec.h"
#include "pipeline/log.h"
#include "pipeline/store.h"
#include "workers/recommend_log.h"
#include "workers/workers.h"

static void state_usage(FILE *out) {
    fprintf(out,
            "usage: reel recommend state [-c FILE] [-X key=value]... [--out FILE] [--snapshot]\n"
            "                            [--drop-from N]\n"
            "Rebuilds the recommend worker's state (recommend.state=memory) of group\n"
            "<group.id>-recommend from Redis, its snapshot and the log after it, with the\n"
            "recommend.* settings given (they must be the worker's), and prints one JSON\n"
            "line: log entries covered, snapshot, users, items, pair counters, the size\n"
            "and an FNV-1a hash of the canonical state bytes (equal states, equal hash).\n"
            "  --out FILE   write those bytes (rec_mem_save) to FILE\n"
            "  --snapshot   write a snapshot to Redis now, trimming the log it covers\n"
            "  --drop-from N  first delete log entries N.. and move the head back to N-1\n"
            "               (repairs a log with a corrupt entry N; the events of the\n"
            "               dropped entries leave the state)\n");
}

int cmd_recommend_state(int argc, char **argv) {
    const char *overrides[256], *out_path = NULL;
    cli_opts_t opts = {NULL, overrides, 0};
    int snapshot = 0;
    unsigned long long drop_from = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-X") == 0 && i + 1 < argc) {
            if (opts.n_overrides < 256) overrides[opts.n_overrides++] = argv[++i];
        } else if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
            opts.config_file = argv[++i];
        } else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) {
            out_path = argv[++i];
        } else if (strcmp(argv[i], "--drop-from") == 0 && i + 1 < argc) {
            char *end;
            drop_from = strtoull(argv[++i], &end, 10);
            if (*end || drop_from == 0) {
                fprintf(stderr, "reel recommend state: --drop-from wants an entry number >= 1\n");
                return 2;
            }
        } else if (strcmp(argv[i], "--snapshot") == 0) {
            snapshot = 1;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            state_usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "reel recommend state: unknown option %s\n", argv[i]);
            state_usage(stderr);
            return 2;
        }
    }
    config_t *c = cli_config(&opts);
    if (!c) return 2;
    char err[512], group[300], prefix[400];
    rec_config_t cfg;
    int top_n = 10, rc = 1;
    store_t *s = NULL;
    rlog_t *l = NULL;
    rec_buf_t b = {0};
    if (recommend_config(c, &cfg, &top_n, err, sizeof err) < 0) {
        fprintf(stderr, "reel recommend state: %s\n", err);
        config_destroy(c);
        return 2;
    }
    snprintf(group, sizeof group, "%s-recommend", config_get(c, "group.id", "reel"));
    snprintf(prefix, sizeof prefix, "reel:{%s}:", group);
    s = store_new(config_get(c, "redis.url", "redis://127.0.0.1:6379"), err, sizeof err);
    if (!s) {
        fprintf(stderr, "reel recommend state: %s\n", err);
        goto done;
    }
    l = rlog_new(&cfg, prefix, 0);
    if (!l) {
        fprintf(stderr, "reel recommend state: out of memory\n");
        goto done;
    }
    if (drop_from > 0) {
        uint64_t dropped = 0;
        if (rlog_drop_from(l, s, drop_from, &dropped, err, sizeof err) < 0) {
            fprintf(stderr, "reel recommend state: %s\n", err);
            goto done;
        }
        fprintf(stderr, "reel recommend state: dropped %llu log entries from %llu\n",
                (unsigned long long)dropped, drop_from);
    }
    if (rlog_sync(l, s, err, sizeof err) < 0 ||
        (snapshot && rlog_snapshot(l, s, err, sizeof err) < 0)) {
        fprintf(stderr, "reel recommend state: %s\n", err);
        goto done;
    }
    if (rec_mem_save(rlog_mem(l), &b) < 0) {
        fprintf(stderr, "reel recommend state: out of memory\n");
        goto done;
    }
    if (out_path) {
        FILE *f = fopen(out_path, "wb");
        if (!f || fwrite(b.data, 1, b.len, f) != b.len || fclose(f) != 0) {
            fprintf(stderr, "reel recommend state: cannot write %s\n", out_path);
            goto done;
        }
    }
    rlog_info_t in;
    rlog_get_info(l, &in);
    printf("{\"group\":\"%s\",\"log_entries\":%llu,\"snapshot\":%llu,\"entries_replayed\":%llu,"
           "\"users\":%u,\"items\":%u,\"pairs\":%zu,\"bytes\":%zu,\"fnv64\":\"%016llx\"}\n",
           group, (unsigned long long)in.seq, (unsigned long long)in.snap_seq,
           (unsigned long long)in.replayed, rec_mem_user_count(rlog_mem(l)),
           rec_mem_item_count(rlog_mem(l)), rec_mem_pair_count(rlog_mem(l)), b.len,
           (unsigned long long)rlog_fnv64(b.data, b.len));
    rc = 0;
done:
    free(b.data);
    rlog_destroy(l);
    store_destroy(s);
    config_destroy(c);
    return rc;
}
