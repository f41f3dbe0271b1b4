/* workers.h: the workers and subcommands linked into the `reel` binary. */
#ifndef REEL_WORKERS_H
#define REEL_WORKERS_H

#include "pipeline/config.h"
#include "pipeline/runtime.h"

/* The runtime's built-in counting pipeline: counts records per key in Redis
 * and emits one CountUpdate per input record. */
extern const worker_def_t count_worker;

/* Incremental item/user CF, content and popularity recommendations from
 * viewing events and the catalogue, state in Redis (workers/recommend.c). */
extern const worker_def_t recommend_worker;
/* The recommend.* keys of c as a rec_config_t (and recommend.top.n into
 * *top_n). 0, or -1 with errstr naming the bad key. */
struct rec_config;
int recommend_config(const config_t *c, struct rec_config *cfg, int *top_n, char *errstr,
                     size_t errstr_size);
/* `reel recommend state`: the memory-mode state in Redis (workers/cli_recommend.c). */
int cmd_recommend_state(int argc, char **argv);

/* Poster labels, colours, perceptual hash, moderation and embeddings
 * (workers/tag.c). */
extern const worker_def_t tag_worker;
/* Review sentiment (bag of words, LSTM/GRU), per-item aggregates in Redis,
 * online word embeddings (workers/sentiment.c). */
extern const worker_def_t sentiment_worker;

/* Every worker `reel run` knows, NULL-terminated. */
extern const worker_def_t *const reel_workers[];
const worker_def_t *reel_worker_find(const char *name);

/* Command-line options shared by the subcommands: -c FILE, -X key=value,
 * applied over defaults and the environment in that order. */
typedef struct cli_opts {
    const char *config_file;
    const char **overrides; /* "key=value" */
    int n_overrides;
} cli_opts_t;

/* Builds the configuration: runtime defaults, every worker's defaults, the
 * file, REEL_* variables, then -X. Returns a config the caller frees with
 * config_destroy(), or NULL after printing the reason on stderr. */
config_t *cli_config(const cli_opts_t *opts);

/* Reads path whole into a malloc'd buffer the caller frees, its size in
 * *len. NULL with errstr when it cannot be read or holds more than max
 * bytes (workers/cli_util.c). */
void *cli_read_file(const char *path, size_t max, size_t *len, char *errstr, size_t errstr_size);

/* Subcommands; each returns the process exit status. argv[0] is the
 * subcommand name. */
int cmd_mock_kafka(int argc, char **argv);
int cmd_produce(int argc, char **argv);
int cmd_consume(int argc, char **argv);
int cmd_demo(int argc, char **argv);
/* `reel model push|list|rollback|remove|get`: the model registry (pipeline/models.h). */
int cmd_model(int argc, char **argv);
/* `reel dlq replay --topic T`: dead-lettered records back to their topic. */
int cmd_dlq(int argc, char **argv);
/* `reel health`: GET /healthz from a worker, for container healthchecks. */
int cmd_health(int argc, char **argv);
/* `reel train speech` / `reel eval speech` (workers/cli_speech.c). */
int cmd_train_speech(int argc, char **argv);
int cmd_eval_speech(int argc, char **argv);

/* Speech recognition of audio clips: GMM-HMM / DNN-HMM words
 * (workers/transcribe.c). */
extern const worker_def_t transcribe_worker;
/* `reel train image` and `reel eval image` (workers/cli_image.c). */
int cmd_train_image(int argc, char **argv);
int cmd_eval_image(int argc, char **argv);
/* `reel moderation add|list|remove|hash`: the tag worker's blocklist. */
int cmd_moderation(int argc, char **argv);
/* `reel train sentiment`, `reel eval sentiment`, `reel train embeddings`,
 * `reel similar` (workers/cli_text.c). */
int cmd_train_sentiment(int argc, char **argv);
int cmd_eval_sentiment(int argc, char **argv);
int cmd_train_embeddings(int argc, char **argv);
int cmd_similar(int argc, char **argv);

#endif
