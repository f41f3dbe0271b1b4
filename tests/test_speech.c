/* test_speech.c: kernels/speech: the audio decoder, the MFCC front end
 * against a numpy reference, and GMM-HMM / DNN-HMM training and decoding on
 * synthetic tone "words". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <sndfile.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/speech/audio.h"
#include "kernels/speech/mfcc.h"
#include "kernels/speech/mlp.h"
#include "kernels/speech/recognize.h"
#include "kernels/speech/speech.h"
#include "tests/fixtures/mfcc_fixture.h"

/* The C front end matches tests/fixtures/mfcc_reference.py (numpy,
 * float64) within 5e-4 absolute plus 5e-4 relative on every coefficient of
 * every frame: float32 rounding, nothing more. */
static void test_mfcc_matches_reference(void **state) {
    (void)state;
    char err[256];
    mfcc_t *m = mfcc_new(MFCC_FX_RATE, 0.0f, err, sizeof err);
    assert_non_null(m);
    assert_int_equal(mfcc_frames(m, MFCC_FX_N), MFCC_FX_T);
    float *f = malloc(MFCC_FX_T * MFCC_DIM * sizeof *f);
    assert_int_equal(mfcc_compute(m, mfcc_fx_x, MFCC_FX_N, f), MFCC_FX_T);
    double worst = 0.0;
    for (int i = 0; i < MFCC_FX_T * MFCC_DIM; i++) {
        double d = fabs(f[i] - mfcc_fx_feat[i]);
        double tol = 5e-4 + 5e-4 * fabs(mfcc_fx_feat[i]);
        if (d > tol)
            fail_msg("frame %d coefficient %d: %g, reference %g", i / MFCC_DIM, i % MFCC_DIM, f[i],
                     mfcc_fx_feat[i]);
        if (d > worst) worst = d;
    }
    print_message("mfcc: largest difference from the reference %.2g\n", worst);
    /* Fewer samples than a window: no frames, nothing written. */
    assert_int_equal(mfcc_frames(m, 199), 0);
    assert_int_equal(mfcc_compute(m, mfcc_fx_x, 199, f), 0);
    free(f);
    mfcc_destroy(m);
}

/* Writes a 0.5 s stereo 440 Hz tone (amplitude 0.5) at rate in format
 * through libsndfile and returns the file's bytes. */
static void *encode_tone(int format, int rate, size_t *len) {
    char path[] = "/tmp/reel-speech-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    SF_INFO info = {0};
    info.samplerate = rate;
    info.channels = 2;
    info.format = format;
    SNDFILE *sf = sf_open(path, SFM_WRITE, &info);
    if (!sf) fail_msg("sf_open write %x: %s", format, sf_strerror(NULL));
    int n = rate / 2;
    float *x = malloc(2 * n * sizeof *x);
    for (int i = 0; i < n; i++) x[2 * i] = x[2 * i + 1] = 0.5f * sinf(2 * M_PI * 440 * i / rate);
    assert_int_equal(sf_writef_float(sf, x, n), n);
    sf_close(sf);
    free(x);
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    rewind(f);
    void *b = malloc(*len);
    assert_int_equal(fread(b, 1, *len, f), *len);
    fclose(f);
    unlink(path);
    return b;
}

/* WAV (8/16/24/32-bit PCM, float), FLAC and OGG/Vorbis decode from memory,
 * stereo mixed down, 16 kHz resampled to 8 kHz: 0.5 s of a tone whose RMS
 * (0.354) survives within 10 %. */
static void test_decode_formats(void **state) {
    (void)state;
    const int formats[] = {SF_FORMAT_WAV | SF_FORMAT_PCM_U8, SF_FORMAT_WAV | SF_FORMAT_PCM_16,
                           SF_FORMAT_WAV | SF_FORMAT_PCM_24, SF_FORMAT_WAV | SF_FORMAT_PCM_32,
                           SF_FORMAT_WAV | SF_FORMAT_FLOAT,  SF_FORMAT_FLAC | SF_FORMAT_PCM_16,
                           SF_FORMAT_OGG | SF_FORMAT_VORBIS};
    for (size_t k = 0; k < sizeof formats / sizeof formats[0]; k++) {
        size_t len;
        void *b = encode_tone(formats[k], 16000, &len);
        float *x = NULL;
        size_t n = 0;
        int rate = 0;
        double sec = 0;
        char err[256];
        if (audio_decode(b, len, 8000, NULL, &x, &n, &rate, &sec, err, sizeof err) < 0)
            fail_msg("format %x: %s", formats[k], err);
        assert_int_equal(rate, 16000);
        assert_true(fabs(sec - 0.5) < 0.01);
        assert_true(n > 3950 && n < 4050);
        double ss = 0;
        for (size_t i = 400; i < n - 400; i++) ss += x[i] * x[i];
        double rms = sqrt(ss / (n - 800));
        if (fabs(rms - 0.3536) > 0.035) fail_msg("format %x: rms %.3f", formats[k], rms);
        free(x);
        free(b);
    }
}

static void *wav_bytes(int rate, int width, int fmt, const void *data, size_t data_len,
                       uint32_t claimed_len, size_t *len) {
    unsigned char *b = malloc(44 + data_len);
    memcpy(b, "RIFF", 4);
    uint32_t v = 36 + claimed_len;
    memcpy(b + 4, &v, 4);
    memcpy(b + 8, "WAVEfmt ", 8);
    v = 16;
    memcpy(b + 16, &v, 4);
    uint16_t h = (uint16_t)fmt;
    memcpy(b + 20, &h, 2);
    h = 1;
    memcpy(b + 22, &h, 2);
    v = (uint32_t)rate;
    memcpy(b + 24, &v, 4);
    v = (uint32_t)(rate * width);
    memcpy(b + 28, &v, 4);
    h = (uint16_t)width;
    memcpy(b + 32, &h, 2);
    h = (uint16_t)(8 * width);
    memcpy(b + 34, &h, 2);
    memcpy(b + 36, "data", 4);
    memcpy(b + 40, &claimed_len, 4);
    if (data_len) memcpy(b + 44, data, data_len);
    *len = 44 + data_len;
    return b;
}

static void expect_reject(const void *b, size_t len, const audio_limits_t *lim,
                          const char *reason) {
    float *x = NULL;
    size_t n = 0;
    int rate = 0;
    double sec = 0;
    char err[256] = "";
    assert_int_equal(audio_decode(b, len, 8000, lim, &x, &n, &rate, &sec, err, sizeof err), -1);
    assert_null(x);
    if (!strstr(err, reason)) fail_msg("reason '%s' lacks '%s'", err, reason);
}

/* Bad clips are refused with a reason and nothing allocated for them; a
 * header that claims 10 hours decodes only the samples that are there. */
static void test_decode_rejects_bad_input(void **state) {
    (void)state;
    size_t len;
    const char *text = "this is not audio, only text that goes on and on and on";
    expect_reject(text, strlen(text), NULL, "not a supported audio format");
    expect_reject(text, 0, NULL, "empty");
    void *b = wav_bytes(8000, 2, 1, NULL, 0, 0, &len);
    expect_reject(b, len, NULL, "no samples");
    free(b);
    int16_t pcm[800] = {0};
    for (int i = 0; i < 800; i++) pcm[i] = (int16_t)(1000 * sin(i * 0.3));
    b = wav_bytes(1, 2, 1, pcm, sizeof pcm, sizeof pcm, &len);
    expect_reject(b, len, NULL, "sample rate 1 Hz");
    free(b);
    float fl[400];
    for (int i = 0; i < 400; i++) fl[i] = i == 123 ? NAN : 0.1f;
    b = wav_bytes(8000, 4, 3, fl, sizeof fl, sizeof fl, &len);
    expect_reject(b, len, NULL, "non-finite");
    fl[123] = INFINITY;
    free(b);
    b = wav_bytes(8000, 4, 3, fl, sizeof fl, sizeof fl, &len);
    expect_reject(b, len, NULL, "non-finite");
    free(b);
    audio_limits_t lim;
    audio_default_limits(&lim);
    lim.max_bytes = 100;
    b = wav_bytes(8000, 2, 1, pcm, sizeof pcm, sizeof pcm, &len);
    expect_reject(b, len, &lim, "exceeds the limit");
    audio_default_limits(&lim);
    lim.max_seconds = 0.05;
    expect_reject(b, len, &lim, "exceeds the limit");
    free(b);
    /* 10 hours claimed over 0.1 s of samples. */
    b = wav_bytes(8000, 2, 1, pcm, sizeof pcm, 10u * 3600 * 8000 * 2, &len);
    float *x = NULL;
    size_t n = 0;
    int rate;
    double sec;
    char err[256];
    if (audio_decode(b, len, 8000, NULL, &x, &n, &rate, &sec, err, sizeof err) == 0) {
        assert_true(n <= 800);
        free(x);
    } else {
        assert_non_null(strstr(err, "duration"));
    }
    free(b);
}

/* Mean NLL of the batch with the current weights. */
static double batch_loss(const mlp_net_t *p, float *const *act, const int *y, int B) {
    mlp_forward(p, act, B);
    double l = 0.0;
    for (int r = 0; r < B; r++) l -= act[p->n_layers][(size_t)r * p->sizes[p->n_layers] + y[r]];
    return l / B;
}

/* mlp_backward()'s gradients of every weight and bias equal central finite
 * differences of the loss (double-checked in float: within 2e-3 absolute
 * or 2 % relative), for a 7-6-5-4 net with ReLU and log-softmax. */
static void test_mlp_gradients_match_finite_differences(void **state) {
    (void)state;
    const int sizes[] = {7, 6, 5, 4}, B = 5, NL = 3;
    mlp_net_t p;
    assert_int_equal(mlp_alloc(&p, NL, sizes, 3), 0);
    float *act[4], *grad[4], *gW[3], *gb[3];
    for (int l = 0; l <= NL; l++) {
        act[l] = malloc(B * sizes[l] * sizeof(float));
        grad[l] = malloc(B * sizes[l] * sizeof(float));
        if (l < NL) {
            gW[l] = malloc(sizes[l + 1] * sizes[l] * sizeof(float));
            gb[l] = malloc(sizes[l + 1] * sizeof(float));
            for (int k = 0; k < sizes[l + 1]; k++) p.b[l][k] = 0.1f * (k % 3) - 0.05f;
        }
    }
    int y[5] = {0, 3, 1, 2, 3};
    for (int i = 0; i < B * sizes[0]; i++) act[0][i] = (float)sin(i * 1.7) * 1.5f;
    float *x0 = malloc(B * sizes[0] * sizeof(float));
    memcpy(x0, act[0], B * sizes[0] * sizeof(float));
    mlp_forward(&p, act, B);
    mlp_backward(&p, act, grad, y, B, gW, gb, NULL);
    int checked = 0;
    const float h = 1e-2f;
    for (int l = 0; l < NL; l++) {
        int nw = sizes[l + 1] * sizes[l];
        for (int i = 0; i < nw + sizes[l + 1]; i++) {
            float *w = i < nw ? &p.W[l][i] : &p.b[l][i - nw];
            float an = i < nw ? gW[l][i] : gb[l][i - nw], keep = *w;
            *w = keep + h;
            memcpy(act[0], x0, B * sizes[0] * sizeof(float));
            double up = batch_loss(&p, act, y, B);
            *w = keep - h;
            double dn = batch_loss(&p, act, y, B);
            *w = keep;
            double fd = (up - dn) / (2 * h);
            if (fabs(fd - an) > 2e-3 && fabs(fd - an) > 0.02 * fabs(fd))
                fail_msg("layer %d parameter %d: backward %g, finite difference %g", l, i, an, fd);
            checked++;
        }
    }
    assert_int_equal(checked, 6 * 7 + 6 + 5 * 6 + 5 + 4 * 5 + 4);
    for (int l = 0; l <= NL; l++) {
        free(act[l]);
        free(grad[l]);
        if (l < NL) {
            free(gW[l]);
            free(gb[l]);
        }
    }
    free(x0);
    mlp_free(&p);
}

/* ---- synthetic words: tone sequences over quiet noise ---- */

#define RATE 8000
#define N_WORDS 4 /* plus silence */
static const float word_tones[N_WORDS][2] = {{400, 1500}, {1500, 400}, {800, 2500}, {2500, 900}};
static const char *const word_names[N_WORDS + 1] = {"<sil>", "alpha", "bravo", "charlie", "delta"};

static uint64_t rng_state = 12345;
static float urand(void) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng_state >> 40) / 16777216.0);
}

/* Appends silence of sec seconds to x at *n. */
static void put_silence(float *x, size_t *n, float sec) {
    size_t k = (size_t)(sec * RATE);
    for (size_t i = 0; i < k; i++) x[(*n)++] = 0.002f * (urand() - 0.5f);
}

/* Appends word w (1..N_WORDS): two tones of 120-200 ms each, gliding. */
static void put_word(float *x, size_t *n, int w) {
    double ph = 0.0;
    for (int part = 0; part < 2; part++) {
        size_t k = (size_t)((0.12f + 0.08f * urand()) * RATE);
        float f = word_tones[w - 1][part] * (0.95f + 0.1f * urand());
        for (size_t i = 0; i < k; i++) {
            ph += 2 * M_PI * f / RATE;
            float env = (float)sin(M_PI * (i + 0.5) / k);
            x[(*n)++] = 0.3f * env * (float)sin(ph) + 0.01f * (urand() - 0.5f);
        }
    }
}

typedef struct synth_set {
    sph_utt_t utts[64];
    int words[64][1];
    float *feat[64];
    int n;
} synth_set_t;

static void synth_train(synth_set_t *s, mfcc_t *fe, int per_word) {
    float *x = malloc(RATE * 2 * sizeof *x);
    s->n = 0;
    for (int w = 1; w <= N_WORDS; w++)
        for (int r = 0; r < per_word; r++) {
            size_t n = 0;
            put_silence(x, &n, 0.05f + 0.25f * urand());
            put_word(x, &n, w);
            put_silence(x, &n, 0.05f + 0.25f * urand());
            size_t T = mfcc_frames(fe, n);
            s->feat[s->n] = malloc(T * MFCC_DIM * sizeof(float));
            mfcc_compute(fe, x, n, s->feat[s->n]);
            s->words[s->n][0] = w;
            s->utts[s->n] = (sph_utt_t){s->feat[s->n], (int)T, s->words[s->n], 1};
            s->n++;
        }
    free(x);
}

/* Decodes a connected string of 5 words with the word loop and each word
 * alone with the one-word grammar; returns the number of errors. */
static int decode_errors(sph_rec_t *r, int verbose) {
    int errors = 0;
    float *x = malloc(RATE * 6 * sizeof *x);
    sph_word_t out[32];
    char err[256];
    for (int trial = 0; trial < 4; trial++) {
        int ref[5];
        size_t n = 0;
        put_silence(x, &n, 0.2f);
        for (int k = 0; k < 5; k++) {
            ref[k] = 1 + (int)(urand() * N_WORDS) % N_WORDS;
            put_word(x, &n, ref[k]);
            put_silence(x, &n, 0.1f + 0.3f * urand());
        }
        int nw = sph_rec_samples(r, x, n, SPH_GRAMMAR_LOOP, out, 32, err, sizeof err);
        assert_true(nw >= 0);
        int bad = nw != 5;
        for (int k = 0; k < 5 && k < nw; k++) {
            bad |= out[k].word != ref[k];
            assert_true(out[k].start >= 0 && out[k].end > out[k].start);
            assert_true(out[k].end <= (float)n / RATE + 1e-3f);
            assert_true(out[k].confidence >= 0 && out[k].confidence <= 1);
            if (k) assert_true(out[k].start >= out[k - 1].end - 0.03f);
        }
        if (bad && verbose) print_message("loop: got %d words\n", nw);
        errors += bad;
    }
    for (int w = 1; w <= N_WORDS; w++) {
        size_t n = 0;
        put_word(x, &n, w);
        int nw = sph_rec_samples(r, x, n, SPH_GRAMMAR_ONE_WORD, out, 32, err, sizeof err);
        errors += !(nw == 1 && out[0].word == w);
    }
    /* Silence alone: no word in the loop. */
    size_t n = 0;
    put_silence(x, &n, 1.0f);
    errors += sph_rec_samples(r, x, n, SPH_GRAMMAR_LOOP, out, 32, err, sizeof err) != 0;
    free(x);
    return errors;
}

/* A GMM-HMM trained on 12 examples of each of 4 tone words decodes
 * connected strings, isolated words and silence without an error; its
 * file round-trips byte for byte; the hybrid MLP trained on its alignments
 * decodes as well. */
static void test_train_decode_synthetic(void **state) {
    (void)state;
    char err[256];
    mfcc_t *fe = mfcc_new(RATE, SPH_DITHER, err, sizeof err);
    synth_set_t *s = calloc(1, sizeof *s);
    synth_train(s, fe, 12);
    sph_train_opts_t o;
    sph_default_train_opts(&o);
    o.states_per_word = 4;
    o.n_mix = 2;
    sph_model_t *m =
        sph_train_hmm(word_names, N_WORDS + 1, s->utts, s->n, MFCC_DIM, &o, err, sizeof err);
    if (!m) fail_msg("train: %s", err);
    assert_string_equal(sph_word_name(m, 2), "bravo");
    assert_int_equal(sph_word_id(m, "delta"), 4);

    size_t len, len2;
    void *blob = sph_serialize(m, &len);
    assert_non_null(blob);
    assert_memory_equal(blob, SPH_MAGIC, 4);
    sph_model_t *m2 = sph_load(blob, len, err, sizeof err);
    assert_non_null(m2);
    void *blob2 = sph_serialize(m2, &len2);
    assert_int_equal(len, len2);
    assert_memory_equal(blob, blob2, len);
    free(blob2);
    sph_destroy(m2);
    /* Truncated, bad magic, trailing bytes: refused with a reason. */
    assert_null(sph_load(blob, len - 3, err, sizeof err));
    assert_non_null(strstr(err, "truncated"));
    ((char *)blob)[0] = 'X';
    assert_null(sph_load(blob, len, err, sizeof err));
    assert_non_null(strstr(err, "magic"));
    free(blob);

    sph_rec_t *r = sph_rec_new(m, NULL, err, sizeof err);
    assert_non_null(r);
    int e = decode_errors(r, 1);
    print_message("GMM-HMM: %d errors in 9 decodes\n", e);
    assert_int_equal(e, 0);

    sph_mlp_opts_t mo;
    sph_default_mlp_opts(&mo);
    mo.hidden = 64;
    mo.epochs = 30;
    mo.batch = 64;
    assert_int_equal(sph_train_mlp(sph_rec_model(r), s->utts, s->n, &mo, err, sizeof err), 0);
    assert_true(sph_is_hybrid(sph_rec_model(r)));
    blob = sph_serialize(sph_rec_model(r), &len);
    m2 = sph_load(blob, len, err, sizeof err);
    assert_non_null(m2);
    assert_true(sph_is_hybrid(m2));
    sph_destroy(m2);
    free(blob);
    e = decode_errors(r, 1);
    print_message("DNN-HMM: %d errors in 9 decodes\n", e);
    assert_true(e <= 1);

    sph_rec_destroy(r);
    for (int i = 0; i < s->n; i++) free(s->feat[i]);
    free(s);
    mfcc_destroy(fe);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mfcc_matches_reference),
        cmocka_unit_test(test_decode_formats),
        cmocka_unit_test(test_decode_rejects_bad_input),
        cmocka_unit_test(test_mlp_gradients_match_finite_differences),
        cmocka_unit_test(test_train_decode_synthetic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
