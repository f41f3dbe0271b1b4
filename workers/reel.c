/* reel.c: the `reel` command line. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pipeline/log.h"
#include "workers/eval.h"
#include "workers/workers.h"

extern char **environ;

const worker_def_t *const reel_workers[] = {&count_worker,      &recommend_worker, &tag_worker,
                                            &transcribe_worker, &sentiment_worker, NULL};

const worker_def_t *reel_worker_find(const char *name) {
    for (size_t i = 0; reel_workers[i]; i++)
        if (strcmp(reel_workers[i]->name, name) == 0) return reel_workers[i];
    return NULL;
}

/* Subcommands other than run and config. sub is the second word of
 * two-word commands ("eval recommend"), NULL for one-word ones; the
 * function receives argv from that last word on. */
typedef struct subcommand {
    const char *command;
    const char *sub;
    int (*fn)(int argc, char **argv);
} subcommand_t;

/* clang-format off */
static const subcommand_t subcommands[] = {
    {"produce", NULL, cmd_produce},
    {"consume", NULL, cmd_consume},
    {"mock-kafka", NULL, cmd_mock_kafka},
    {"demo", NULL, cmd_demo},
    {"model", NULL, cmd_model},
    {"dlq", NULL, cmd_dlq},
    {"health", NULL, cmd_health},
    {"eval", "recommend", cmd_eval_recommend},
    {"recommend", "state", cmd_recommend_state},
    {"train", "speech", cmd_train_speech},
    {"eval", "speech", cmd_eval_speech},
    {"train", "image", cmd_train_image},
    {"eval", "image", cmd_eval_image},
    {"moderation", NULL, cmd_moderation},
    {"train", "sentiment", cmd_train_sentiment},
    {"eval", "sentiment", cmd_eval_sentiment},
    {"train", "embeddings", cmd_train_embeddings},
    {"similar", NULL, cmd_similar},
};
/* clang-format on */

config_t *cli_config(const cli_opts_t *opts) {
    char err[512];
    config_t *c = config_new();
    if (!c) {
        fprintf(stderr, "reel: out of memory\n");
        return NULL;
    }
    if (opts->config_file && config_load_file(c, opts->config_file, err, sizeof err) < 0) {
        fprintf(stderr, "reel: %s\n", err);
        config_destroy(c);
        return NULL;
    }
    config_load_env(c, environ);
    for (int i = 0; i < opts->n_overrides; i++) {
        if (config_set_pair(c, opts->overrides[i], err, sizeof err) < 0) {
            fprintf(stderr, "reel: -X %s: %s\n", opts->overrides[i], err);
            config_destroy(c);
            return NULL;
        }
    }
    /* Defaults last: config_apply_defaults never overrides a set key. */
    config_apply_defaults(c, rt_config_keys);
    for (size_t i = 0; reel_workers[i]; i++)
        if (reel_workers[i]->config) config_apply_defaults(c, reel_workers[i]->config);
    if (log_set_level_name(config_get(c, "log.level", "info")) < 0) {
        fprintf(stderr, "reel: log.level: unknown level %s\n", config_get(c, "log.level", ""));
        config_destroy(c);
        return NULL;
    }
    rt_protect_secrets(c);
    return c;
}

static void usage(FILE *out) {
    fprintf(
        out,
        "reel %s: machine learning workers on a Kafka event bus, state in Redis\n"
        "\n"
        "usage: reel COMMAND [options]\n"
        "\n"
        "commands:\n"
        "  run WORKER... [-c FILE] [-X key=value]...   run workers until SIGINT/SIGTERM\n"
        "  demo [--bootstrap-servers B] [--redis-url U] [--state DIR] [--retrain]\n"
        "                                              the four workers end to end\n"
        "  produce --topic T [-c FILE] [-X k=v]...     JSON lines on stdin -> Avro records\n"
        "  consume --topic T [--from-beginning] [--max N] [--timeout-ms MS]\n"
        "                                              records -> JSON lines on stdout\n"
        "  mock-kafka [--brokers N] [--partitions P] [--topics a,b,...]\n"
        "                                              an in-process Kafka-protocol cluster\n"
        "  eval recommend --ratings FILE [--items FILE] [--split random|temporal]\n"
        "                 [--algo NAME|all] [--k 10] [--seed N]\n"
        "                                              offline quality of the recommenders\n"
        "  recommend state [-X k=v]... [--out FILE] [--snapshot]\n"
        "                                              the recommend worker's memory state\n"
        "  train speech --data DIR|TSV --model hmm|dnn --out FILE [--split fsdd|speaker:NAME]\n"
        "  eval speech --data DIR|TSV --model FILE [--split S] [--connected N]\n"
        "                                              speech models (docs/transcribe.md)\n"
        "  model push FILE [--kind K] | list KIND | rollback KIND VERSION | remove KIND VERSION\n"
        "        | get KIND [VERSION] --out FILE       versioned models in Redis\n"
        "  train image --data SRC [--arch F] [--epochs N] [--model cnn|svm-linear|svm-rbf]\n"
        "              --out FILE                      train an image classifier\n"
        "  eval image --data SRC --model FILE [--embed CNN]  image classifiers (docs/tag.md)\n"
        "  moderation add FILE --label L | list | remove HASH|FILE | hash FILE\n"
        "                                              the tag worker's blocklist\n"
        "  dlq replay --topic T [--reason TEXT] [--dry-run]\n"
        "                                              put dead-lettered records back\n"
        "  health [--host H] [--port P]                a worker's /healthz (exit 0 on 200)\n"
        "  train sentiment|embeddings, eval sentiment, similar WORD\n"
        "                                              sentiment models (docs/sentiment.md)\n"
        "  config                                      every configuration key\n"
        "  version                                     the version\n"
        "\n"
        "workers:\n",
        REEL_VERSION);
    for (size_t i = 0; reel_workers[i]; i++)
        fprintf(out, "  %-10s %s\n", reel_workers[i]->name, reel_workers[i]->description);
    fprintf(out, "\nConfiguration: built-in defaults < -c FILE < REEL_* environment < -X.\n"
                 "`reel config` lists the keys.\n");
}

static int cmd_config(void) {
    printf("# runtime\n");
    config_print_keys(rt_config_keys, stdout);
    for (size_t i = 0; reel_workers[i]; i++) {
        printf("\n# worker %s\n", reel_workers[i]->name);
        if (reel_workers[i]->config) config_print_keys(reel_workers[i]->config, stdout);
    }
    return 0;
}

static int cmd_run(int argc, char **argv) {
    const worker_def_t *workers[16];
    size_t n = 0;
    const char *overrides[256];
    cli_opts_t opts = {NULL, overrides, 0};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
            opts.config_file = argv[++i];
        } else if (strcmp(argv[i], "-X") == 0 && i + 1 < argc) {
            if (opts.n_overrides < 256) overrides[opts.n_overrides++] = argv[++i];
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: reel run WORKER... [-c FILE] [-X key=value]...\n\n");
            return cmd_config();
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "reel run: unknown option %s\n", argv[i]);
            return 2;
        } else {
            const worker_def_t *w = reel_worker_find(argv[i]);
            if (!w) {
                fprintf(stderr, "reel run: unknown worker %s (see reel --help)\n", argv[i]);
                return 2;
            }
            if (n < 16) workers[n++] = w;
        }
    }
    if (n == 0) {
        fprintf(stderr, "reel run: name at least one worker (see reel --help)\n");
        return 2;
    }
    config_t *config = cli_config(&opts);
    if (!config) return 2;
    log_set_component("run");
    log_info("openblas", "core=%s OPENBLAS_CORETYPE=%s", openblas_get_corename(),
             getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "(unset)");
    log_info("malloc", "GLIBC_TUNABLES=%s",
             getenv("GLIBC_TUNABLES") ? getenv("GLIBC_TUNABLES") : "(unset)");
    rt_install_signal_handlers();
    char err[512];
    int rc = rt_run(workers, n, config, err, sizeof err);
    if (rc < 0) log_error("run_failed", "%s", err);
    config_destroy(config);
    return rc < 0 ? 1 : 0;
}

/* Settings two libraries read before main(), so reel sets them and
 * re-executes itself once (REEL_ENV_CHOSEN marks the second run):
 *  - Debian's OpenBLAS 0.3.21 does not recognise recent Xeons and falls
 *    back to slow generic kernels; it reads OPENBLAS_CORETYPE in its
 *    constructor. When unset, reel names the best core type the CPU
 *    supports, and one BLAS thread per worker thread (parallelism comes
 *    from partitions).
 *  - glibc's malloc backs its heap with transparent huge pages when
 *    GLIBC_TUNABLES holds glibc.malloc.hugetlb=1 (kernels in THP "madvise"
 *    mode, Debian's default). The recommend state is hundreds of MB read at
 *    random: with 4 KB pages most reads also miss the TLB. Measured on the
 *    recommend kernel (build/rec_kernel_bench): 11% less cpu (median of 5).
 *    REEL_HUGEPAGES=0, or a GLIBC_TUNABLES that names malloc.hugetlb,
 *    leaves malloc alone.
 * An explicit value is always respected. */
static void choose_process_env(char **argv) {
    if (getenv("REEL_ENV_CHOSEN")) return;
    int changed = 0;
    if (!getenv("OPENBLAS_CORETYPE")) {
        const char *core = NULL;
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f"))
            core = "SkylakeX";
        else if (__builtin_cpu_supports("avx2"))
            core = "Haswell";
        if (core) {
            setenv("OPENBLAS_CORETYPE", core, 1);
            if (!getenv("OPENBLAS_NUM_THREADS")) setenv("OPENBLAS_NUM_THREADS", "1", 1);
            changed = 1;
        }
    }
    const char *tun = getenv("GLIBC_TUNABLES"), *huge = getenv("REEL_HUGEPAGES");
    if (!(huge && strcmp(huge, "0") == 0) && !(tun && strstr(tun, "malloc.hugetlb"))) {
        char buf[1024];
        int n = snprintf(buf, sizeof buf, "%s%sglibc.malloc.hugetlb=1", tun ? tun : "",
                         tun && *tun ? ":" : "");
        if (n > 0 && (size_t)n < sizeof buf) {
            setenv("GLIBC_TUNABLES", buf, 1);
            changed = 1;
        }
    }
    if (!changed) return;
    setenv("REEL_ENV_CHOSEN", "1", 1);
    execv("/proc/self/exe", argv);
    /* exec failed: go on with what the libraries chose. */
}

int main(int argc, char **argv) {
    choose_process_env(argv);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("reel %s\n", REEL_VERSION);
        return 0;
    }
    if (strcmp(cmd, "run") == 0) return cmd_run(argc - 1, argv + 1);
    if (strcmp(cmd, "config") == 0) return cmd_config();
    /* Two-word commands ("eval recommend") first, then one-word ones. */
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++) {
        const subcommand_t *sc = &subcommands[i];
        if (strcmp(cmd, sc->command) != 0) continue;
        if (!sc->sub) return sc->fn(argc - 1, argv + 1);
        if (argc > 2 && strcmp(argv[2], sc->sub) == 0) return sc->fn(argc - 2, argv + 2);
    }
    int known = 0;
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++) {
        if (strcmp(cmd, subcommands[i].command) != 0) continue;
        if (!known) fprintf(stderr, "reel %s: one of:\n", cmd);
        fprintf(stderr, "  reel %s %s\n", cmd, subcommands[i].sub);
        known = 1;
    }
    if (known) return 2;
    fprintf(stderr, "reel: unknown command %s\n\n", cmd);
    usage(stderr);
    return 2;
}
