/* fuzz_audio.c: libFuzzer target for the speech worker's readers of
 * untrusted bytes: audio_decode() (libsndfile virtual I/O, mixdown,
 * resampling, limits) followed by the MFCC front end, and sph_load() for
 * model files.
 *
 *   CC=clang cmake -S . -B build-fuzz -DREEL_FUZZ=ON && make -C build-fuzz fuzz_audio
 *   cp -r tests/fuzz/audio_seeds corpus
 *   build-fuzz/fuzz_audio -max_total_time=600 corpus
 *
 * Limits are small (1 MiB, 5 s) so each run is fast; the bound logic is the
 * same as in the worker. Whatever decodes must stay within its limits and
 * yield samples in [-1, 1] and finite features. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/speech/audio.h"
#include "kernels/speech/mfcc.h"
#include "kernels/speech/speech.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static mfcc_t *fe;
static float *feat;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[256];
    if (!fe) {
        fe = mfcc_new(8000, 1e-4f, err, sizeof err);
        feat = malloc((5 * 100 + 10) * MFCC_DIM * sizeof *feat);
        if (!fe || !feat) abort();
    }
    if (size >= 4 && memcmp(data, SPH_MAGIC, 4) == 0) {
        sph_model_t *m = sph_load(data, size, err, sizeof err);
        sph_destroy(m);
        return 0;
    }
    audio_limits_t lim;
    audio_default_limits(&lim);
    lim.max_bytes = 1u << 20;
    lim.max_seconds = 5.0;
    float *x = NULL;
    size_t n = 0;
    int rate = 0;
    double sec = 0;
    if (audio_decode(data, size, 8000, &lim, &x, &n, &rate, &sec, err, sizeof err) == 0) {
        if (sec > lim.max_seconds + 1e-9 || n > 5 * 8000 + 64) abort();
        for (size_t i = 0; i < n; i++)
            if (!(x[i] >= -1.0f && x[i] <= 1.0f)) abort();
        size_t T = mfcc_frames(fe, n);
        if (mfcc_compute(fe, x, n, feat) != T) abort();
        for (size_t i = 0; i < T * MFCC_DIM; i++)
            if (!isfinite(feat[i])) abort();
        free(x);
    }
    return 0;
}
