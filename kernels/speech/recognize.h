/* recognize.h: audio bytes or samples -> words, the path shared by the
 * transcribe worker, `reel eval speech` and the bench: decode (audio.h),
 * MFCC (mfcc.h), then the model's decoder (speech.h). */
#ifndef REEL_KERNELS_SPEECH_RECOGNIZE_H
#define REEL_KERNELS_SPEECH_RECOGNIZE_H

#include <stddef.h>

#include "kernels/speech/audio.h"
#include "kernels/speech/speech.h"

/* Dither added by the front end: about 3 LSB of 16-bit audio, so digital
 * silence looks like a quiet room rather than the log floor. */
#define SPH_DITHER 1e-4f
#define SPH_FRAME_SECONDS 0.010
#define SPH_WINDOW_SECONDS 0.025
/* Silence added before and after every clip, in training and recognition
 * alike: clips trimmed to the word and clips with pauses then look the same
 * to cepstral mean normalization and both start and end in silence. */
#define SPH_PAD_SECONDS 0.15

typedef struct sph_rec sph_rec_t;

/* A recognizer over model m, which it takes ownership of (also on
 * failure). Returns NULL with errstr. Free with sph_rec_destroy(). */
sph_rec_t *sph_rec_new(sph_model_t *m, const audio_limits_t *lim, char *errstr, size_t errstr_size);
void sph_rec_destroy(sph_rec_t *r);
/* The model (borrowed). */
sph_model_t *sph_rec_model(sph_rec_t *r);

/* A recognized word with times in seconds. */
typedef struct sph_word {
    int word;
    float start, end, confidence;
} sph_word_t;

/* Recognizes mono samples x[0..n) at the model's rate (padded with
 * SPH_PAD_SECONDS of silence each side; times refer to x). Writes up to
 * max_out words and returns the best path's word count (0 for silence or a
 * clip too short for any word), or -1 with errstr. */
int sph_rec_samples(sph_rec_t *r, const float *x, size_t n, sph_grammar_t g, sph_word_t *out,
                    int max_out, char *errstr, size_t errstr_size);

/* Same from an encoded clip (any format audio_decode() reads); *seconds
 * receives its duration. Returns -1 with errstr for bad audio. */
int sph_rec_audio(sph_rec_t *r, const void *data, size_t len, sph_grammar_t g, sph_word_t *out,
                  int max_out, double *seconds, char *errstr, size_t errstr_size);

#endif
