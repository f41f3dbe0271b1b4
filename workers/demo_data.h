/* demo_data.h: the sample data `reel demo` produces, from ../shared/data
 * when present, else from samples under examples/ and Debian's packaged
 * data (Fashion-MNIST, espeak-ng). Internal to the demo. */
#ifndef REEL_WORKERS_DEMO_DATA_H
#define REEL_WORKERS_DEMO_DATA_H

#include <limits.h>
#include <stddef.h>

/* Finds a data file or folder: $REEL_DATA_DIR/<shared_rel>,
 * ../shared/data/<shared_rel>, the same next to the binary's checkout, then
 * <checkout>/examples/<example_rel> (example_rel may be NULL). Writes the
 * first readable path into out and returns 0, or -1 when none exists. */
int demo_find(const char *shared_rel, const char *example_rel, char *out, size_t out_size);

/* Fashion-MNIST class names, index = label. */
extern const char *const demo_fashion_classes[10];

/* Reads n images (28x28 grey, row-major) and their labels from the
 * Fashion-MNIST test set Debian installs, starting at image first. pixels
 * receives n * 784 bytes, labels n bytes (caller's buffers). Returns 0 or
 * -1 with errstr. */
int demo_fashion_read(const char *dir, int first, int n, unsigned char *pixels,
                      unsigned char *labels, char *errstr, size_t errstr_size);

/* Composes a width x height poster from a 28x28 grey image: the garment
 * fills the frame (so a model that resizes the poster back sees it),
 * tinted with a colour chosen by seed, with some grain. Encodes it as a
 * baseline JPEG. Returns a malloc'd buffer (the caller frees it) and its
 * size in *len, or NULL. */
unsigned char *demo_poster_jpeg(const unsigned char *grey28, int width, int height, unsigned seed,
                                size_t *len);

/* Synthesizes text with espeak-ng into wav_path (8 kHz is not required:
 * the worker resamples). voice e.g. "en-us+m3". Returns 0, or -1 when
 * espeak-ng is missing or failed. */
int demo_espeak(const char *text, const char *voice, int speed, int pitch, const char *wav_path);

/* Converts Latin-1 (or already valid UTF-8) text to UTF-8 in out. */
void demo_to_utf8(const char *in, char *out, size_t out_size);

#endif
