/* mfcc.h: HTK-style MFCC front end, 39 dimensions per 10 ms frame.
 *
 * Per utterance x[0..n) (floats in [-1, 1]):
 *   dither (optional, deterministic), pre-emphasis y[i] = x[i] - 0.97 x[i-1]
 *   (y[0] = x[0]) over the whole signal; frames of 25 ms every 10 ms
 *   (T = 1 + (n - len) / hop frames, none when n < len); log energy
 *   log(max(sum y^2, 1e-10)) of the frame; Hamming window; power spectrum
 *   |FFT|^2 with the FFT size the next power of two; 26 triangular filters
 *   equally spaced on the HTK mel scale 2595 log10(1 + f/700) from 0 Hz to
 *   rate/2 (weights computed in mel from each bin's frequency); natural log
 *   floored at 1e-10; orthonormal DCT-II (sqrt(2/26) scaling), 13 cepstra
 *   c0..c12; liftering c_i *= 1 + 11 sin(pi i / 22); c0 replaced by the log
 *   energy. Cepstral mean normalization subtracts each static coefficient's
 *   mean over the utterance; then deltas and delta-deltas by regression over
 *   +-2 frames (edges repeated): d_t = sum_k k (c_{t+k} - c_{t-k}) / 10.
 * Layout of a frame: 13 statics, 13 deltas, 13 delta-deltas.
 * tests/fixtures/mfcc_reference.py implements the same in numpy. */
#ifndef REEL_KERNELS_SPEECH_MFCC_H
#define REEL_KERNELS_SPEECH_MFCC_H

#include <stddef.h>

#define MFCC_DIM 39
#define MFCC_CEPS 13
#define MFCC_FILTERS 26

typedef struct mfcc mfcc_t;

/* A front end for sample rate rate (4000..192000). dither is the amplitude
 * of deterministic noise added before pre-emphasis (0 for none; a small
 * value such as 1e-4 keeps digital silence from collapsing to the log
 * floor). Returns NULL with errstr. The caller owns it: mfcc_destroy(). */
mfcc_t *mfcc_new(int rate, float dither, char *errstr, size_t errstr_size);
void mfcc_destroy(mfcc_t *m);

/* Frames an utterance of n samples yields. */
size_t mfcc_frames(const mfcc_t *m, size_t n);

/* Features of x[0..n) into out (mfcc_frames(n) x MFCC_DIM floats, row per
 * frame, caller's memory). Returns the frame count. No allocation. */
size_t mfcc_compute(mfcc_t *m, const float *x, size_t n, float *out);

#endif
