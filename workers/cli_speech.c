/* cli_speech.c: `reel train speech` and `reel eval speech`.
 *
 * Data: a folder of clips named {word}_{speaker}_{take}.wav (the Free
 * Spoken Digit Dataset's naming; a single digit becomes its English name),
 * or a TSV manifest "path<TAB>transcript[<TAB>speaker]" with paths relative
 * to the manifest. --split means the same to both commands: train uses the
 * training part, eval the test part. fsdd: takes 0-4 are test, 5-49 train;
 * speaker:NAME: that speaker is the test part. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "kernels/speech/audio.h"
#include "kernels/speech/mfcc.h"
#include "kernels/speech/recognize.h"
#include "kernels/speech/speech.h"
#include "workers/workers.h"

#define MAX_UTT_WORDS 64

typedef struct clip {
    char *path;
    char *speaker;
    int take; /* -1 when unknown */
    char *words[MAX_UTT_WORDS];
    int n_words;
    float *x; /* samples at the model rate */
    size_t n;
} clip_t;

typedef struct corpus {
    clip_t *c;
    int n, cap;
    double decode_s, decode_cpu_s; /* time spent decoding the clips' bytes */
} corpus_t;

static const char *const digit_names[] = {"zero", "one", "two",   "three", "four",
                                          "five", "six", "seven", "eight", "nine"};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* CPU time of the process: reel runs OpenBLAS with one thread, so this is
 * one core's time, unaffected by other processes on a shared machine. */
static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void corpus_free(corpus_t *c) {
    for (int i = 0; i < c->n; i++) {
        free(c->c[i].path);
        free(c->c[i].speaker);
        for (int w = 0; w < c->c[i].n_words; w++) free(c->c[i].words[w]);
        free(c->c[i].x);
    }
    free(c->c);
    memset(c, 0, sizeof *c);
}

static clip_t *corpus_add(corpus_t *c) {
    if (c->n == c->cap) {
        int cap = c->cap ? c->cap * 2 : 256;
        clip_t *g = realloc(c->c, cap * sizeof *g);
        if (!g) return NULL;
        c->c = g;
        c->cap = cap;
    }
    clip_t *k = &c->c[c->n++];
    memset(k, 0, sizeof *k);
    k->take = -1;
    return k;
}

/* Splits text on blanks into k->words. */
static int set_words(clip_t *k, const char *text) {
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", text);
    for (char *save = NULL, *w = strtok_r(buf, " \t\r\n", &save); w;
         w = strtok_r(NULL, " \t\r\n", &save)) {
        if (k->n_words == MAX_UTT_WORDS) return -1;
        if (strlen(w) >= SPH_MAX_NAME) return -1;
        k->words[k->n_words++] = strdup(w);
    }
    return 0;
}

static int cmp_clip(const void *a, const void *b) {
    return strcmp(((const clip_t *)a)->path, ((const clip_t *)b)->path);
}

/* {word}_{speaker}_{take}.wav */
static int parse_fsdd_name(const char *name, char *word, char *speaker, int *take) {
    const char *dot = strrchr(name, '.');
    if (!dot || strcmp(dot, ".wav") != 0) return -1;
    const char *u1 = strchr(name, '_');
    const char *u2 = u1 ? strchr(u1 + 1, '_') : NULL;
    if (!u1 || !u2 || u1 == name || u2 == u1 + 1 || u1 - name >= SPH_MAX_NAME || u2 - u1 - 1 >= 64)
        return -1;
    char *end = NULL;
    long t = strtol(u2 + 1, &end, 10);
    if (end != dot || t < 0) return -1;
    memcpy(word, name, u1 - name);
    word[u1 - name] = 0;
    memcpy(speaker, u1 + 1, u2 - u1 - 1);
    speaker[u2 - u1 - 1] = 0;
    *take = (int)t;
    if (strlen(word) == 1 && word[0] >= '0' && word[0] <= '9')
        snprintf(word, SPH_MAX_NAME, "%s", digit_names[word[0] - '0']);
    return 0;
}

static int list_dir(corpus_t *c, const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/recordings", dir);
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) dir = path;
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "reel: %s: %s\n", dir, strerror(errno));
        return -1;
    }
    char base[4096];
    snprintf(base, sizeof base, "%s", dir);
    struct dirent *e;
    while ((e = readdir(d))) {
        char word[SPH_MAX_NAME], speaker[64];
        int take;
        if (parse_fsdd_name(e->d_name, word, speaker, &take) < 0) continue;
        clip_t *k = corpus_add(c);
        char full[8192];
        snprintf(full, sizeof full, "%s/%s", base, e->d_name);
        if (!k || !(k->path = strdup(full)) || !(k->speaker = strdup(speaker)) ||
            set_words(k, word) < 0) {
            closedir(d);
            return -1;
        }
        k->take = take;
    }
    closedir(d);
    qsort(c->c, c->n, sizeof *c->c, cmp_clip);
    return 0;
}

static int read_manifest(corpus_t *c, const char *file) {
    FILE *f = fopen(file, "r");
    if (!f) {
        fprintf(stderr, "reel: %s: %s\n", file, strerror(errno));
        return -1;
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", file);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = 0;
    else
        snprintf(dir, sizeof dir, ".");
    char line[4096];
    int lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0] || line[0] == '#') continue;
        char *p = line, *t1 = strchr(p, '\t');
        if (!t1) {
            fprintf(stderr, "reel: %s:%d: want path<TAB>transcript\n", file, lineno);
            fclose(f);
            return -1;
        }
        *t1 = 0;
        char *text = t1 + 1, *t2 = strchr(text, '\t'), *spk = NULL;
        if (t2) *t2 = 0, spk = t2 + 1;
        clip_t *k = corpus_add(c);
        char full[8192];
        if (p[0] == '/')
            snprintf(full, sizeof full, "%s", p);
        else
            snprintf(full, sizeof full, "%s/%s", dir, p);
        if (!k || !(k->path = strdup(full)) || !(k->speaker = strdup(spk ? spk : "all")) ||
            set_words(k, text) < 0) {
            fprintf(stderr, "reel: %s:%d: bad transcript\n", file, lineno);
            fclose(f);
            return -1;
        }
        /* The FSDD take, when the file is named that way. */
        const char *b = strrchr(p, '/');
        char w[SPH_MAX_NAME], s[64];
        int take;
        if (parse_fsdd_name(b ? b + 1 : p, w, s, &take) == 0) k->take = take;
    }
    fclose(f);
    return 0;
}

/* Keeps the part of the corpus that split assigns to test (want_test) or
 * training. */
static int apply_split(corpus_t *c, const char *split, int want_test) {
    if (!split) return 0;
    int fsdd = strcmp(split, "fsdd") == 0;
    const char *spk = strncmp(split, "speaker:", 8) == 0 ? split + 8 : NULL;
    if (!fsdd && !spk) {
        fprintf(stderr, "reel: --split must be fsdd or speaker:NAME\n");
        return -1;
    }
    int kept = 0;
    for (int i = 0; i < c->n; i++) {
        clip_t *k = &c->c[i];
        int is_test = fsdd ? (k->take >= 0 && k->take <= 4) : strcmp(k->speaker, spk) == 0;
        if (is_test == want_test) {
            c->c[kept++] = *k;
        } else {
            free(k->path);
            free(k->speaker);
            for (int w = 0; w < k->n_words; w++) free(k->words[w]);
        }
    }
    c->n = kept;
    return 0;
}

static void *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return NULL;
    }
    long sz = ftell(f);
    rewind(f);
    void *b = sz >= 0 ? malloc(sz ? sz : 1) : NULL;
    if (b && fread(b, 1, sz, f) != (size_t)sz) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)sz;
    return b;
}

static int load_audio(corpus_t *c, int rate) {
    char err[256];
    for (int i = 0; i < c->n; i++) {
        size_t len = 0;
        void *b = slurp(c->c[i].path, &len);
        if (!b) {
            fprintf(stderr, "reel: %s: %s\n", c->c[i].path, strerror(errno));
            return -1;
        }
        int in_rate;
        double sec, t0 = now_s(), c0 = cpu_s();
        int rc = audio_decode(b, len, rate, NULL, &c->c[i].x, &c->c[i].n, &in_rate, &sec, err,
                              sizeof err);
        c->decode_s += now_s() - t0;
        c->decode_cpu_s += cpu_s() - c0;
        free(b);
        if (rc < 0) {
            fprintf(stderr, "reel: %s: %s\n", c->c[i].path, err);
            return -1;
        }
    }
    return 0;
}

static int load_corpus(corpus_t *c, const char *data, const char *split, int want_test, int rate) {
    struct stat st;
    if (stat(data, &st) < 0) {
        fprintf(stderr, "reel: %s: %s\n", data, strerror(errno));
        return -1;
    }
    if ((S_ISDIR(st.st_mode) ? list_dir(c, data) : read_manifest(c, data)) < 0) return -1;
    if (apply_split(c, split, want_test) < 0) return -1;
    if (c->n == 0) {
        fprintf(stderr, "reel: no clips in %s%s%s\n", data, split ? " for split " : "",
                split ? split : "");
        return -1;
    }
    return load_audio(c, rate);
}

static uint32_t lcg(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(*s >> 33);
}

/* ---- train ---- */

static void train_usage(FILE *out) {
    fprintf(out,
            "usage: reel train speech --data DIR|MANIFEST --model hmm|dnn --out FILE\n"
            "                         [--split fsdd|speaker:NAME] [--rate 8000] [--states 8]\n"
            "                         [--mix 4] [--viterbi-iters 3] [--bw-iters 5]\n"
            "                         [--penalty -40] [--hidden 128] [--layers 2] [--epochs 6]\n"
            "                         [--seed 1] [-v]\n");
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int cmd_train_speech(int argc, char **argv) {
    const char *data = NULL, *kind = "hmm", *out = NULL, *split = NULL;
    sph_train_opts_t o;
    sph_mlp_opts_t mo;
    sph_default_train_opts(&o);
    sph_default_mlp_opts(&mo);
    for (int a = 1; a < argc; a++) {
        const char *k = argv[a], *v = a + 1 < argc ? argv[a + 1] : NULL;
        if (strcmp(k, "-h") == 0 || strcmp(k, "--help") == 0) {
            train_usage(stdout);
            return 0;
        }
        if (strcmp(k, "-v") == 0) {
            o.verbose = mo.verbose = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "reel train speech: %s needs a value\n", k);
            return 2;
        }
        a++;
        if (strcmp(k, "--data") == 0)
            data = v;
        else if (strcmp(k, "--model") == 0)
            kind = v;
        else if (strcmp(k, "--out") == 0)
            out = v;
        else if (strcmp(k, "--split") == 0)
            split = v;
        else if (strcmp(k, "--rate") == 0)
            o.rate = atoi(v);
        else if (strcmp(k, "--states") == 0)
            o.states_per_word = atoi(v);
        else if (strcmp(k, "--mix") == 0)
            o.n_mix = atoi(v);
        else if (strcmp(k, "--viterbi-iters") == 0)
            o.viterbi_iters = atoi(v);
        else if (strcmp(k, "--bw-iters") == 0)
            o.bw_iters = atoi(v);
        else if (strcmp(k, "--penalty") == 0)
            o.ins_penalty = (float)atof(v);
        else if (strcmp(k, "--hidden") == 0)
            mo.hidden = atoi(v);
        else if (strcmp(k, "--layers") == 0)
            mo.layers = atoi(v);
        else if (strcmp(k, "--epochs") == 0)
            mo.epochs = atoi(v);
        else if (strcmp(k, "--lr") == 0)
            mo.lr = (float)atof(v);
        else if (strcmp(k, "--seed") == 0)
            o.seed = mo.seed = (unsigned)atoi(v);
        else {
            fprintf(stderr, "reel train speech: unknown option %s\n", k);
            train_usage(stderr);
            return 2;
        }
    }
    if (!data || !out || (strcmp(kind, "hmm") != 0 && strcmp(kind, "dnn") != 0)) {
        train_usage(stderr);
        return 2;
    }
    double t0 = now_s();
    corpus_t c = {0};
    char err[512];
    int rc = 1;
    const char *names[SPH_MAX_WORDS] = {"<sil>"};
    int n_names = 1;
    sph_utt_t *utts = NULL;
    float **feats = NULL;
    int *word_ids = NULL;
    sph_model_t *m = NULL;
    mfcc_t *fe = NULL;
    if (load_corpus(&c, data, split, 0, o.rate) < 0) goto done;
    /* The vocabulary, sorted. */
    char **all = malloc(sizeof(char *) * c.n * MAX_UTT_WORDS);
    int n_all = 0;
    if (!all) goto done;
    for (int i = 0; i < c.n; i++)
        for (int w = 0; w < c.c[i].n_words; w++) all[n_all++] = c.c[i].words[w];
    qsort(all, n_all, sizeof *all, cmp_str);
    for (int i = 0; i < n_all; i++) {
        if (i && strcmp(all[i], all[i - 1]) == 0) continue;
        if (n_names == SPH_MAX_WORDS) {
            fprintf(stderr, "reel: more than %d words\n", SPH_MAX_WORDS - 1);
            free(all);
            goto done;
        }
        names[n_names++] = all[i];
    }
    free(all);
    fe = mfcc_new(o.rate, SPH_DITHER, err, sizeof err);
    utts = calloc(c.n, sizeof *utts);
    feats = calloc(c.n, sizeof *feats);
    word_ids = malloc(sizeof(int) * c.n * MAX_UTT_WORDS);
    if (!fe || !utts || !feats || !word_ids) goto done;
    /* Each clip is padded with 0-300 ms of silence (random, seeded) on both
     * sides: the silence model learns quiet stretches like those between
     * words, and the models see the range of cepstral means that the
     * recognizer's own 150 ms padding (SPH_PAD_SECONDS) falls in. */
    uint64_t rng = o.seed * 7919ull + 3;
    double audio_s = 0.0;
    for (int i = 0; i < c.n; i++) {
        size_t pre = (size_t)(o.rate * (0.3 * (lcg(&rng) % 1000) / 1000.0));
        size_t post = (size_t)(o.rate * (0.3 * (lcg(&rng) % 1000) / 1000.0));
        size_t n = pre + c.c[i].n + post;
        float *x = calloc(n, sizeof *x);
        if (!x) goto done;
        memcpy(x + pre, c.c[i].x, c.c[i].n * sizeof *x);
        audio_s += (double)c.c[i].n / o.rate;
        size_t T = mfcc_frames(fe, n);
        feats[i] = malloc((T ? T : 1) * MFCC_DIM * sizeof(float));
        if (!feats[i]) {
            free(x);
            goto done;
        }
        mfcc_compute(fe, x, n, feats[i]);
        free(x);
        int *ids = word_ids + (size_t)i * MAX_UTT_WORDS;
        for (int w = 0; w < c.c[i].n_words; w++) {
            const char *key = c.c[i].words[w];
            const char **hit = bsearch(&key, names + 1, n_names - 1, sizeof *names, cmp_str);
            ids[w] = (int)(hit - names);
        }
        utts[i] = (sph_utt_t){feats[i], (int)T, ids, c.c[i].n_words};
    }
    double t_load = now_s();
    m = sph_train_hmm(names, n_names, utts, c.n, MFCC_DIM, &o, err, sizeof err);
    if (!m) {
        fprintf(stderr, "reel: training failed: %s\n", err);
        goto done;
    }
    double t_hmm = now_s();
    if (strcmp(kind, "dnn") == 0 && sph_train_mlp(m, utts, c.n, &mo, err, sizeof err) < 0) {
        fprintf(stderr, "reel: MLP training failed: %s\n", err);
        goto done;
    }
    double t_dnn = now_s();
    size_t len = 0;
    void *blob = sph_serialize(m, &len);
    FILE *f = blob ? fopen(out, "wb") : NULL;
    if (!f || fwrite(blob, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "reel: %s: cannot write\n", out);
        free(blob);
        goto done;
    }
    free(blob);
    printf("{\"model\":\"%s\",\"out\":\"%s\",\"clips\":%d,\"audio_seconds\":%.1f,\"words\":%d,"
           "\"states\":%d,\"mixtures\":%d,\"bytes\":%zu,\"load_seconds\":%.2f,"
           "\"hmm_seconds\":%.2f,\"dnn_seconds\":%.2f,\"train_seconds\":%.2f}\n",
           kind, out, c.n, audio_s, n_names - 1, o.states_per_word, o.n_mix, len, t_load - t0,
           t_hmm - t_load, t_dnn - t_hmm, t_dnn - t_load);
    rc = 0;
done:
    if (feats)
        for (int i = 0; i < c.n; i++) free(feats[i]);
    free(feats);
    free(utts);
    free(word_ids);
    mfcc_destroy(fe);
    sph_destroy(m);
    corpus_free(&c);
    return rc;
}

/* ---- eval ---- */

static void eval_usage(FILE *out) {
    fprintf(out, "usage: reel eval speech --data DIR|MANIFEST --model FILE\n"
                 "                        [--split fsdd|speaker:NAME] [--grammar one|loop]\n"
                 "                        [--connected N] [--penalty P] [--gmm] [--seed 1] [-v]\n"
                 "--connected N: N strings of 3-7 test clips joined with 100-500 ms of\n"
                 "silence, decoded with the word loop (connected-word WER).\n");
}

/* Levenshtein alignment counts of hyp against ref. */
static void align_counts(const int *ref, int nr, const int *hyp, int nh, int *sub, int *del,
                         int *ins) {
    int d[MAX_UTT_WORDS * 4 + 1][MAX_UTT_WORDS * 4 + 1];
    for (int i = 0; i <= nr; i++) d[i][0] = i;
    for (int j = 0; j <= nh; j++) d[0][j] = j;
    for (int i = 1; i <= nr; i++)
        for (int j = 1; j <= nh; j++) {
            int s = d[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]);
            int dl = d[i - 1][j] + 1, in = d[i][j - 1] + 1;
            d[i][j] = s < dl ? (s < in ? s : in) : (dl < in ? dl : in);
        }
    *sub = *del = *ins = 0;
    int i = nr, j = nh;
    while (i > 0 || j > 0) {
        if (i > 0 && j > 0 && d[i][j] == d[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1])) {
            *sub += ref[i - 1] != hyp[j - 1];
            i--, j--;
        } else if (i > 0 && d[i][j] == d[i - 1][j] + 1) {
            (*del)++, i--;
        } else {
            (*ins)++, j--;
        }
    }
}

typedef struct spk_stat {
    char name[64];
    long n, err, utt, utt_ok;
} spk_stat_t;

int cmd_eval_speech(int argc, char **argv) {
    const char *data = NULL, *model = NULL, *split = NULL, *grammar = NULL;
    int connected = 0, use_gmm = 0, have_pen = 0, verbose = 0;
    float penalty = 0;
    unsigned seed = 1;
    for (int a = 1; a < argc; a++) {
        const char *k = argv[a], *v = a + 1 < argc ? argv[a + 1] : NULL;
        if (strcmp(k, "-h") == 0 || strcmp(k, "--help") == 0) {
            eval_usage(stdout);
            return 0;
        }
        if (strcmp(k, "--gmm") == 0) {
            use_gmm = 1;
            continue;
        }
        if (strcmp(k, "-v") == 0) {
            verbose = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "reel eval speech: %s needs a value\n", k);
            return 2;
        }
        a++;
        if (strcmp(k, "--data") == 0)
            data = v;
        else if (strcmp(k, "--model") == 0)
            model = v;
        else if (strcmp(k, "--split") == 0)
            split = v;
        else if (strcmp(k, "--grammar") == 0)
            grammar = v;
        else if (strcmp(k, "--connected") == 0)
            connected = atoi(v);
        else if (strcmp(k, "--penalty") == 0)
            penalty = (float)atof(v), have_pen = 1;
        else if (strcmp(k, "--seed") == 0)
            seed = (unsigned)atoi(v);
        else {
            fprintf(stderr, "reel eval speech: unknown option %s\n", k);
            eval_usage(stderr);
            return 2;
        }
    }
    if (!data || !model) {
        eval_usage(stderr);
        return 2;
    }
    char err[512];
    size_t len = 0;
    void *blob = slurp(model, &len);
    if (!blob) {
        fprintf(stderr, "reel: %s: %s\n", model, strerror(errno));
        return 1;
    }
    sph_model_t *m = sph_load(blob, len, err, sizeof err);
    free(blob);
    if (!m) {
        fprintf(stderr, "reel: %s: %s\n", model, err);
        return 1;
    }
    if (use_gmm) sph_use_mlp(m, 0);
    if (have_pen) sph_set_ins_penalty(m, penalty);
    int rate = sph_rate(m), hybrid = sph_is_hybrid(m) && !use_gmm;
    sph_rec_t *r = sph_rec_new(m, NULL, err, sizeof err);
    if (!r) {
        fprintf(stderr, "reel: %s\n", err);
        return 1;
    }
    corpus_t c = {0};
    int rc = 1;
    spk_stat_t spk[64];
    int n_spk = 0;
    long tot_n = 0, tot_err = 0, tot_sub = 0, tot_del = 0, tot_ins = 0, utt_ok = 0, n_utt = 0;
    double audio_s = 0.0, proc_s = 0.0, proc_cpu_s = 0.0;
    sph_word_t hyp[MAX_UTT_WORDS * 4];
    int all_single = 1;
    if (load_corpus(&c, data, split, 1, rate) < 0) goto done;
    for (int i = 0; i < c.n; i++) all_single &= c.c[i].n_words == 1;
    sph_grammar_t g = SPH_GRAMMAR_LOOP;
    if (grammar ? strcmp(grammar, "one") == 0 : (all_single && !connected))
        g = SPH_GRAMMAR_ONE_WORD;
    uint64_t rng = seed * 104729ull + 11;
    int n_tests = connected > 0 ? connected : c.n;
    for (int i = 0; i < n_tests; i++) {
        int ref[MAX_UTT_WORDS * 4], nr = 0, unknown = 0;
        const char *speaker;
        float *x = NULL;
        size_t n = 0;
        int own = 0;
        if (connected > 0) {
            /* 3-7 clips of one speaker joined with 100-500 ms of silence. */
            int first = (int)(lcg(&rng) % c.n), k = 3 + (int)(lcg(&rng) % 5);
            speaker = c.c[first].speaker;
            int picks[8], np = 0;
            size_t total = 0;
            for (int tries = 0; np < k && tries < 10000; tries++) {
                int j = tries == 0 ? first : (int)(lcg(&rng) % c.n);
                if (strcmp(c.c[j].speaker, speaker) != 0 || c.c[j].n_words != 1) continue;
                picks[np++] = j;
                total += c.c[j].n + (size_t)(0.5 * rate);
            }
            x = calloc(total + rate, sizeof *x);
            if (!x) goto done;
            own = 1;
            size_t at = (size_t)(rate * (0.1 + 0.4 * (lcg(&rng) % 1000) / 1000.0));
            for (int p = 0; p < np; p++) {
                const clip_t *cl = &c.c[picks[p]];
                memcpy(x + at, cl->x, cl->n * sizeof *x);
                at += cl->n + (size_t)(rate * (0.1 + 0.4 * (lcg(&rng) % 1000) / 1000.0));
                int id = sph_word_id(m, cl->words[0]);
                unknown |= id < 0;
                ref[nr++] = id;
            }
            n = at;
        } else {
            speaker = c.c[i].speaker;
            x = c.c[i].x;
            n = c.c[i].n;
            for (int w = 0; w < c.c[i].n_words; w++) {
                int id = sph_word_id(m, c.c[i].words[w]);
                unknown |= id < 0;
                ref[nr++] = id;
            }
        }
        double t0 = now_s(), c0 = cpu_s();
        int nh = sph_rec_samples(r, x, n, g, hyp, MAX_UTT_WORDS * 4, err, sizeof err);
        proc_s += now_s() - t0;
        proc_cpu_s += cpu_s() - c0;
        audio_s += (double)n / rate;
        if (own) free(x);
        if (nh < 0) {
            fprintf(stderr, "reel: %s\n", err);
            goto done;
        }
        if (nh > MAX_UTT_WORDS * 4) nh = MAX_UTT_WORDS * 4;
        if (unknown) fprintf(stderr, "reel: clip %d has words outside the model\n", i);
        int h[MAX_UTT_WORDS * 4], sub, del, ins;
        for (int j = 0; j < nh; j++) h[j] = hyp[j].word;
        align_counts(ref, nr, h, nh, &sub, &del, &ins);
        int e = sub + del + ins;
        if (verbose) {
            fprintf(stderr, "%s %s ref:", e ? "ERR" : "ok ", speaker);
            for (int j = 0; j < nr; j++) fprintf(stderr, " %s", sph_word_name(m, ref[j]));
            fprintf(stderr, " | hyp:");
            for (int j = 0; j < nh; j++)
                fprintf(stderr, " %s[%.2f-%.2f %.2f]", sph_word_name(m, hyp[j].word), hyp[j].start,
                        hyp[j].end, hyp[j].confidence);
            fprintf(stderr, "\n");
        }
        tot_n += nr, tot_err += e, tot_sub += sub, tot_del += del, tot_ins += ins;
        n_utt++, utt_ok += e == 0;
        int s = 0;
        while (s < n_spk && strcmp(spk[s].name, speaker) != 0) s++;
        if (s == n_spk && n_spk < 64)
            snprintf(spk[n_spk++].name, 64, "%s", speaker),
                spk[s].n = spk[s].err = spk[s].utt = spk[s].utt_ok = 0;
        if (s < n_spk) spk[s].n += nr, spk[s].err += e, spk[s].utt++, spk[s].utt_ok += e == 0;
    }
    /* Real-time factor of the whole path: decoding the bytes (isolated
     * clips; joined strings reuse decoded clips), MFCC and recognition. */
    if (!connected) proc_s += c.decode_s, proc_cpu_s += c.decode_cpu_s;
    double wer = tot_n ? (double)tot_err / tot_n : 0.0;
    printf("{\"model\":\"%s\",\"acoustic\":\"%s\",\"grammar\":\"%s\",\"split\":\"%s\","
           "\"utterances\":%ld,\"words\":%ld,\"word_accuracy\":%.4f,\"wer\":%.4f,"
           "\"substitutions\":%ld,\"deletions\":%ld,\"insertions\":%ld,"
           "\"utterance_accuracy\":%.4f,\"audio_seconds\":%.2f,\"rtf\":%.6f,\"rtf_wall\":%.6f,"
           "\"per_speaker\":{",
           model, hybrid ? "dnn" : "gmm", g == SPH_GRAMMAR_LOOP ? "loop" : "one",
           split ? split : "all", n_utt, tot_n, 1.0 - wer, wer, tot_sub, tot_del, tot_ins,
           n_utt ? (double)utt_ok / n_utt : 0.0, audio_s, audio_s > 0 ? proc_cpu_s / audio_s : 0.0,
           audio_s > 0 ? proc_s / audio_s : 0.0);
    for (int s = 0; s < n_spk; s++)
        printf("%s\"%s\":{\"words\":%ld,\"word_accuracy\":%.4f,\"wer\":%.4f}", s ? "," : "",
               spk[s].name, spk[s].n, spk[s].n ? 1.0 - (double)spk[s].err / spk[s].n : 0.0,
               spk[s].n ? (double)spk[s].err / spk[s].n : 0.0);
    printf("}}\n");
    rc = 0;
done:
    sph_rec_destroy(r);
    corpus_free(&c);
    return rc;
}
