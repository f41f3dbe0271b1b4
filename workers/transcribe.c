/* transcribe.c: the speech recognition worker.
 *
 * audio-clips (AudioClip) -> transcripts (Transcript). Each clip is decoded
 * from memory (WAV, FLAC, OGG/Vorbis; mixed down, resampled to the model's
 * rate), turned into MFCC features and decoded by the current speech model
 * (GMM-HMM or hybrid DNN-HMM, kernels/speech/) over a word loop. The model
 * lives in Redis under kind "speech" (`reel model push FILE`); reload()
 * polls its current version and swaps models without a restart. A clip that
 * is not audio, or breaks a limit, goes to the DLQ with the reason; silence
 * gives an empty transcript. The worker keeps no state in Redis. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/speech/recognize.h"
#include "pipeline/log.h"
#include "pipeline/models.h"
#include "workers/workers.h"

#define TRANSCRIBE_MAX_WORDS 1024

static const char *const transcribe_inputs[] = {"audio-clips", NULL};

static const config_key_t transcribe_keys[] = {
    {"transcribe.output", "transcripts", "Topic of the Transcript records."},
    {"transcribe.model.kind", "speech", "Model registry kind the worker serves."},
    {"transcribe.reload.interval.ms", "5000", "How often the current model version is polled."},
    {"transcribe.grammar", "loop",
     "loop: any number of words (insertion penalty from the model); one: exactly one word."},
    {"transcribe.max.audio.bytes", "16777216", "Largest encoded clip accepted."},
    {"transcribe.max.seconds", "120", "Longest decoded clip accepted."},
    {"transcribe.min.confidence", "0", "Words below this confidence are left out."},
    {NULL, NULL, NULL},
};

typedef struct tstate {
    const codec_schema_t *out_schema;
    avro_value_t out;
    char output_topic[256];
    char kind[MODELS_KIND_MAX];
    sph_grammar_t grammar;
    audio_limits_t lim;
    float min_conf;
    sph_rec_t *rec;
    int64_t version; /* loaded model version, 0 none */
    char version_label[64];
    sph_word_t *words;
    char *text;
    size_t text_cap;
    metrics_t *metrics;
} tstate_t;

#define M_AUDIO "reel_transcribe_audio_seconds_total"
#define M_PROC "reel_transcribe_processing_seconds_total"
#define M_WORDS "reel_transcribe_words_total"

static void transcribe_destroy(void *opaque) {
    tstate_t *st = opaque;
    if (!st) return;
    if (st->out_schema) avro_value_decref(&st->out);
    sph_rec_destroy(st->rec);
    free(st->words);
    free(st->text);
    free(st);
}

/* Loads a new current model from Redis when there is one. Returns 1 when
 * swapped, 0 when unchanged, -1 with errstr (the old model stays). */
static int poll_model(tstate_t *st, store_t *store, char *errstr, size_t errstr_size) {
    void *data = NULL;
    size_t len = 0;
    int64_t v = st->version;
    int rc = models_poll(store, st->kind, &v, &data, &len, errstr, errstr_size);
    if (rc <= 0) return rc;
    sph_model_t *m = sph_load(data, len, errstr, errstr_size);
    free(data);
    /* A version that does not load is not fetched again (the current model
     * stays); pushing or rolling back to another version moves on. */
    if (!m) {
        st->version = v;
        return -1;
    }
    int hybrid = sph_is_hybrid(m);
    sph_rec_t *r = sph_rec_new(m, &st->lim, errstr, errstr_size);
    if (!r) {
        st->version = v;
        return -1;
    }
    sph_rec_destroy(st->rec);
    st->rec = r;
    st->version = v;
    snprintf(st->version_label, sizeof st->version_label, "%s-v%lld-%s", st->kind, (long long)v,
             hybrid ? "dnn" : "hmm");
    log_info("model_loaded", "worker=transcribe kind=%s version=%lld acoustic=%s words=%d",
             st->kind, (long long)v, hybrid ? "dnn" : "hmm", sph_n_words(sph_rec_model(r)) - 1);
    return 1;
}

static int transcribe_init(const rt_env_t *env, void **state, char *errstr, size_t errstr_size) {
    tstate_t *st = calloc(1, sizeof *st);
    if (!st) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    config_t *c = env->config;
    snprintf(st->output_topic, sizeof st->output_topic, "%s",
             config_get(c, "transcribe.output", "transcripts"));
    snprintf(st->kind, sizeof st->kind, "%s", config_get(c, "transcribe.model.kind", "speech"));
    const char *g = config_get(c, "transcribe.grammar", "loop");
    if (strcmp(g, "loop") == 0)
        st->grammar = SPH_GRAMMAR_LOOP;
    else if (strcmp(g, "one") == 0)
        st->grammar = SPH_GRAMMAR_ONE_WORD;
    else {
        snprintf(errstr, errstr_size, "transcribe.grammar: %s is neither loop nor one", g);
        goto fail;
    }
    audio_default_limits(&st->lim);
    long long mb = config_get_int(c, "transcribe.max.audio.bytes", 16 << 20);
    double ms = atof(config_get(c, "transcribe.max.seconds", "120"));
    if (mb <= 0 || ms <= 0) {
        snprintf(errstr, errstr_size, "transcribe.max.audio.bytes and .max.seconds must be > 0");
        goto fail;
    }
    st->lim.max_bytes = (size_t)mb;
    st->lim.max_seconds = ms;
    st->min_conf = (float)atof(config_get(c, "transcribe.min.confidence", "0"));
    st->words = malloc(TRANSCRIBE_MAX_WORDS * sizeof *st->words);
    if (!st->words) {
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }
    st->metrics = env->metrics;
    if (st->metrics) {
        metrics_declare(st->metrics, M_AUDIO, METRIC_COUNTER,
                        "Seconds of audio transcribed (rate(processing) / rate(audio) is the "
                        "real-time factor).");
        metrics_declare(st->metrics, M_PROC, METRIC_COUNTER,
                        "Seconds spent decoding, computing features and recognizing clips.");
        metrics_declare(st->metrics, M_WORDS, METRIC_COUNTER, "Words recognized.");
    }
    const codec_schema_t *s = codec_by_name(env->codec, "Transcript");
    if (!s) {
        snprintf(errstr, errstr_size, "schema Transcript missing");
        goto fail;
    }
    if (codec_value_new(s, &st->out, errstr, errstr_size) < 0) goto fail;
    st->out_schema = s;
    /* A model may not be pushed yet: the worker starts anyway and waits. */
    char err[512];
    if (poll_model(st, env->store, err, sizeof err) < 0)
        log_warn("model_load_failed", "worker=transcribe kind=%s: %s", st->kind, err);
    else if (!st->rec)
        log_warn("no_model", "worker=transcribe kind=%s: none pushed yet (reel model push FILE)",
                 st->kind);
    *state = st;
    return 0;
fail:
    transcribe_destroy(st);
    return -1;
}

static int transcribe_reload(void *opaque, rt_ctx_t *ctx, char *errstr, size_t errstr_size) {
    tstate_t *st = opaque;
    if (poll_model(st, rt_store(ctx), errstr, errstr_size) < 0) return -1;
    if (st->rec) rt_set_model_version(ctx, st->version_label);
    return 0;
}

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int set_str(avro_value_t *rec, const char *name, const char *s) {
    avro_value_t f;
    if (avro_value_get_by_name(rec, name, &f, NULL)) return -1;
    return avro_value_set_string(&f, s);
}

/* The words as one space-separated string in st->text. */
static int join_words(tstate_t *st, const sph_model_t *m, int n) {
    size_t need = 1;
    for (int i = 0; i < n; i++) need += strlen(sph_word_name(m, st->words[i].word)) + 1;
    if (need > st->text_cap) {
        char *t = realloc(st->text, need);
        if (!t) return -1;
        st->text = t;
        st->text_cap = need;
    }
    size_t at = 0;
    st->text[0] = 0;
    for (int i = 0; i < n; i++) {
        const char *w = sph_word_name(m, st->words[i].word);
        size_t l = strlen(w);
        if (at) st->text[at++] = ' ';
        memcpy(st->text + at, w, l);
        at += l;
        st->text[at] = 0;
    }
    return 0;
}

static int fill_output(tstate_t *st, rt_ctx_t *ctx, const rt_record_t *r, const char *clip_id,
                       const char *item_id, int n, double seconds) {
    avro_value_t *o = &st->out, f, b, arr, el;
    const sph_model_t *m = sph_rec_model(st->rec);
    if (avro_value_reset(o) || set_str(o, "clip_id", clip_id)) return -1;
    if (avro_value_get_by_name(o, "item_id", &f, NULL)) return -1;
    if (item_id) {
        if (avro_value_set_branch(&f, 1, &b) || avro_value_set_string(&b, item_id)) return -1;
    } else if (avro_value_set_branch(&f, 0, &b) || avro_value_set_null(&b)) {
        return -1;
    }
    if (join_words(st, m, n) < 0 || set_str(o, "text", st->text)) return -1;
    if (avro_value_get_by_name(o, "words", &arr, NULL)) return -1;
    for (int i = 0; i < n; i++) {
        if (avro_value_append(&arr, &el, NULL) ||
            set_str(&el, "word", sph_word_name(m, st->words[i].word)) ||
            avro_value_get_by_name(&el, "start", &f, NULL) ||
            avro_value_set_float(&f, st->words[i].start) ||
            avro_value_get_by_name(&el, "end", &f, NULL) ||
            avro_value_set_float(&f, st->words[i].end) ||
            avro_value_get_by_name(&el, "confidence", &f, NULL) ||
            avro_value_set_float(&f, st->words[i].confidence))
            return -1;
    }
    if (avro_value_get_by_name(o, "duration_seconds", &f, NULL) ||
        avro_value_set_double(&f, seconds))
        return -1;
    if (set_str(o, "model_version", rt_model_version(ctx))) return -1;
    avro_value_t src;
    if (avro_value_get_by_name(o, "source", &src, NULL) || set_str(&src, "topic", r->topic) ||
        avro_value_get_by_name(&src, "partition", &f, NULL) ||
        avro_value_set_int(&f, r->partition) || avro_value_get_by_name(&src, "offset", &f, NULL) ||
        avro_value_set_long(&f, r->offset))
        return -1;
    if (avro_value_get_by_name(o, "ts", &f, NULL) || avro_value_set_long(&f, now_ms())) return -1;
    return 0;
}

static int transcribe_process(void *opaque, rt_ctx_t *ctx, const rt_batch_t *batch, char *errstr,
                              size_t errstr_size) {
    tstate_t *st = opaque;
    if (!st->rec) {
        /* No model yet: look again now rather than at the next reload, and
         * hold the batch (retried after a backoff) until one is pushed. */
        if (poll_model(st, rt_store(ctx), errstr, errstr_size) < 0) return -1;
        if (!st->rec) {
            snprintf(errstr, errstr_size,
                     "no %s model in Redis yet (reel model push FILE); holding the batch",
                     st->kind);
            return -1;
        }
    }
    if (strcmp(rt_model_version(ctx), st->version_label) != 0)
        rt_set_model_version(ctx, st->version_label);
    char err[512];
    double audio_s = 0.0, t0 = mono_s();
    long words = 0;
    for (size_t i = 0; i < batch->count; i++) {
        const rt_record_t *r = &batch->records[i];
        avro_value_t f, b;
        const char *clip_id = NULL, *item_id = NULL;
        const void *audio = NULL;
        size_t len = 0, slen = 0;
        int disc = 0;
        if (avro_value_get_by_name(r->avro, "clip_id", &f, NULL) ||
            avro_value_get_string(&f, &clip_id, &slen) ||
            avro_value_get_by_name(r->avro, "audio", &f, NULL) ||
            avro_value_get_bytes(&f, &audio, &len)) {
            rt_fail(ctx, r, "process", "AudioClip without clip_id or audio");
            continue;
        }
        if (avro_value_get_by_name(r->avro, "item_id", &f, NULL) == 0 &&
            avro_value_get_discriminant(&f, &disc) == 0 && disc == 1 &&
            avro_value_get_current_branch(&f, &b) == 0)
            avro_value_get_string(&b, &item_id, &slen);
        double seconds = 0.0;
        int n = sph_rec_audio(st->rec, audio, len, st->grammar, st->words, TRANSCRIBE_MAX_WORDS,
                              &seconds, err, sizeof err);
        if (n < 0) {
            rt_fail(ctx, r, "decode", err);
            continue;
        }
        if (n > TRANSCRIBE_MAX_WORDS) n = TRANSCRIBE_MAX_WORDS;
        audio_s += seconds;
        int kept = 0;
        for (int k = 0; k < n; k++)
            if (st->words[k].confidence >= st->min_conf) st->words[kept++] = st->words[k];
        words += kept;
        if (fill_output(st, ctx, r, clip_id, item_id, kept, seconds) < 0) {
            rt_fail(ctx, r, "process", avro_strerror());
            continue;
        }
        if (rt_emit(ctx, st->output_topic, st->out_schema, &st->out, err, sizeof err) < 0) {
            rt_fail(ctx, r, "process", err);
            continue;
        }
    }
    if (st->metrics) {
        metrics_add(st->metrics, M_AUDIO, "", audio_s);
        metrics_add(st->metrics, M_PROC, "", mono_s() - t0);
        metrics_add(st->metrics, M_WORDS, "", (double)words);
    }
    return 0;
}

const worker_def_t transcribe_worker = {
    .name = "transcribe",
    .description = "speech recognition of audio clips (GMM-HMM / DNN-HMM), model from Redis",
    .inputs = transcribe_inputs,
    .config = transcribe_keys,
    .init = transcribe_init,
    .process = transcribe_process,
    .reload = transcribe_reload,
    .destroy = transcribe_destroy,
};
