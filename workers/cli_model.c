/* cli_model.c: `reel model ...`, the operator's side of the model registry
 * (pipeline/models.h): push a trained file, list versions, roll back. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/models.h"
#include "workers/workers.h"

static void model_usage(FILE *out) {
    fprintf(out, "usage: reel model push FILE [--kind KIND] [--no-current]\n"
                 "       reel model list KIND\n"
                 "       reel model rollback KIND VERSION   (make VERSION current)\n"
                 "       reel model remove KIND VERSION\n"
                 "       reel model get KIND [VERSION] --out FILE\n"
                 "options: -c FILE, -X key=value (redis.url selects the Redis)\n"
                 "The kind of a pushed file comes from its magic (image, image-svm, speech,\n"
                 "sentiment, embeddings) unless --kind names it. Running workers pick up a\n"
                 "new current version within their reload interval.\n");
}

static int parse_version(const char *s, int64_t *v) {
    char *end = NULL;
    long long x = strtoll(s, &end, 10);
    if (!end || *end || x <= 0) return -1;
    *v = x;
    return 0;
}

int cmd_model(int argc, char **argv) {
    const char *overrides[64], *pos[4] = {0};
    cli_opts_t opts = {NULL, overrides, 0};
    const char *kind = NULL, *out_path = NULL;
    int n_pos = 0, make_current = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
            opts.config_file = argv[++i];
        } else if (strcmp(argv[i], "-X") == 0 && i + 1 < argc) {
            if (opts.n_overrides < 64) overrides[opts.n_overrides++] = argv[++i];
        } else if (strcmp(argv[i], "--kind") == 0 && i + 1 < argc) {
            kind = argv[++i];
        } else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) {
            out_path = argv[++i];
        } else if (strcmp(argv[i], "--no-current") == 0) {
            make_current = 0;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            model_usage(stdout);
            return 0;
        } else if (argv[i][0] == '-' || n_pos == 4) {
            fprintf(stderr, "reel model: unexpected argument %s\n", argv[i]);
            model_usage(stderr);
            return 2;
        } else {
            pos[n_pos++] = argv[i];
        }
    }
    const char *action = pos[0];
    int need = !action                           ? -1
               : strcmp(action, "push") == 0     ? 2
               : strcmp(action, "list") == 0     ? 2
               : strcmp(action, "rollback") == 0 ? 3
               : strcmp(action, "remove") == 0   ? 3
               : strcmp(action, "get") == 0      ? (n_pos == 3 ? 3 : 2)
                                                 : -1;
    if (need < 0 || n_pos != need || (strcmp(action, "get") == 0 && !out_path)) {
        model_usage(stderr);
        return 2;
    }
    int64_t version = 0;
    if (need == 3 && parse_version(pos[2], &version) < 0) {
        fprintf(stderr, "reel model %s: bad version '%s'\n", action, pos[2]);
        return 2;
    }
    config_t *config = cli_config(&opts);
    if (!config) return 2;
    char err[512];
    int rc = 1;
    void *data = NULL;
    size_t len = 0;
    store_t *st =
        store_new(config_get(config, "redis.url", "redis://127.0.0.1:6379"), err, sizeof err);
    if (!st) {
        fprintf(stderr, "reel model: %s\n", err);
        goto done;
    }
    if (strcmp(action, "push") == 0) {
        data = cli_read_file(pos[1], 512u << 20, &len, err, sizeof err);
        if (!data) goto fail;
        if (!kind) kind = models_kind_of(data, len);
        if (!kind) {
            fprintf(stderr,
                    "reel model push: %s is not a model file reel knows; name its kind "
                    "with --kind\n",
                    pos[1]);
            goto done;
        }
        const char *base = strrchr(pos[1], '/');
        if (models_push(st, kind, data, len, base ? base + 1 : pos[1], make_current, &version, err,
                        sizeof err) < 0)
            goto fail;
        printf("pushed %s as %s version %lld (%zu bytes)%s\n", pos[1], kind, (long long)version,
               len, make_current ? ", now current" : "");
    } else if (strcmp(action, "list") == 0) {
        models_info_t *list = NULL;
        int64_t current = 0;
        if (models_current(st, pos[1], &current, err, sizeof err) < 0) goto fail;
        int n = models_list(st, pos[1], &list, err, sizeof err);
        if (n < 0) goto fail;
        for (int i = 0; i < n; i++)
            printf("%s %s\n", list[i].version == current ? "*" : " ", list[i].json);
        if (n == 0) printf("no %s models pushed\n", pos[1]);
        models_info_free(list, n);
    } else if (strcmp(action, "rollback") == 0) {
        if (models_set_current(st, pos[1], version, err, sizeof err) < 0) goto fail;
        printf("%s version %lld is current\n", pos[1], (long long)version);
    } else if (strcmp(action, "remove") == 0) {
        if (models_remove(st, pos[1], version, err, sizeof err) < 0) goto fail;
        printf("removed %s version %lld\n", pos[1], (long long)version);
    } else { /* get */
        if (n_pos == 2) {
            int cur = models_current(st, pos[1], &version, err, sizeof err);
            if (cur == 0) snprintf(err, sizeof err, "no %s model is current", pos[1]);
            if (cur <= 0) goto fail;
        }
        if (models_fetch(st, pos[1], version, &data, &len, err, sizeof err) < 0) goto fail;
        FILE *f = fopen(out_path, "wb");
        if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
            snprintf(err, sizeof err, "%s: %s", out_path, strerror(errno));
            goto fail;
        }
        printf("wrote %s version %lld to %s (%zu bytes)\n", pos[1], (long long)version, out_path,
               len);
    }
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "reel model %s: %s\n", action, err);
done:
    free(data);
    store_destroy(st);
    config_destroy(config);
    return rc;
}
