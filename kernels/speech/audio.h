/* audio.h: audio clips decoded from memory (libsndfile virtual I/O: WAV
 * 8/16/24/32-bit PCM and float, FLAC, OGG/Vorbis, ...), mixed down to mono
 * and resampled (libsamplerate) to the rate a model wants.
 *
 * Clips come from the network, so every size is bounded before anything is
 * allocated: the input bytes, the channel count, the sample rate and the
 * decoded duration. */
#ifndef REEL_KERNELS_SPEECH_AUDIO_H
#define REEL_KERNELS_SPEECH_AUDIO_H

#include <stddef.h>

typedef struct audio_limits {
    size_t max_bytes;   /* encoded input */
    double max_seconds; /* decoded duration */
    int min_rate;       /* accepted input sample rates, Hz */
    int max_rate;
    int max_channels;
} audio_limits_t;

/* 16 MiB, 120 s, 4 kHz .. 192 kHz, 8 channels. */
void audio_default_limits(audio_limits_t *lim);

/* Decodes the clip in data (len bytes) to mono float samples in [-1, 1] at
 * target_rate. On success returns 0, *out (malloc'd, the caller frees it),
 * *n_out samples (may be 0 only if the clip decodes to fewer samples than
 * resampling yields one), clipped to [-1, 1]; *in_rate the clip's own rate and *seconds its
 * duration. Returns -1 with a reason in errstr for input that is not audio,
 * has no samples, exceeds a limit, has NaN or infinite samples, or an
 * unsupported rate or channel count; nothing is allocated then. */
int audio_decode(const void *data, size_t len, int target_rate, const audio_limits_t *lim,
                 float **out, size_t *n_out, int *in_rate, double *seconds, char *errstr,
                 size_t errstr_size);

/* Resamples in (n samples at from_rate) to to_rate with libsamplerate's
 * sinc converter. Returns 0 with *out (malloc'd, caller frees) and *n_out,
 * or -1 with errstr. */
int audio_resample(const float *in, size_t n, int from_rate, int to_rate, float **out,
                   size_t *n_out, char *errstr, size_t errstr_size);

/* Encodes mono samples as a 16-bit PCM WAV in memory (for tests, the bench
 * and joining clips). Returns a malloc'd buffer (caller frees) and *len, or
 * NULL when out of memory. */
void *audio_wav16(const float *x, size_t n, int rate, size_t *len);

#endif
