/* image.h: untrusted JPEG and PNG images from memory, and what the tag
 * worker computes from pixels (model input, perceptual hash, dominant
 * colours).
 *
 * Decoding refuses, before allocating anything sized by the image, inputs
 * over max_bytes, a header over max_pixels or max_side, and progressive
 * JPEGs with absurd scan counts (a CPU bomb). libjpeg warnings (a truncated
 * file, corrupt data) are errors here: a poster either decodes cleanly or
 * goes to the DLQ. Grey, RGB, CMYK/YCCK (Adobe inverted or not) JPEGs and
 * every PNG colour type, bit depth and interlace come out as 8-bit RGB;
 * PNG transparency is composited over white. */
#ifndef REEL_KERNELS_VISION_IMAGE_H
#define REEL_KERNELS_VISION_IMAGE_H

#include <stddef.h>
#include <stdint.h>

typedef struct img_limits {
    size_t max_bytes;    /* encoded size */
    uint64_t max_pixels; /* width * height in the header */
    int max_side;        /* width and height each */
} img_limits_t;

/* 32 MiB, 16.7 Mpixels, 16384 per side. */
img_limits_t img_default_limits(void);

typedef enum img_format { IMG_UNKNOWN, IMG_JPEG, IMG_PNG } img_format_t;

/* An RGB image. The struct and its buffers belong to the caller, who
 * reuses it across decodes (buffers only grow) and frees it with
 * img_free(). */
typedef struct img {
    int w, h;         /* decoded size (JPEGs may be DCT-scaled down) */
    int src_w, src_h; /* size the file declares */
    img_format_t format;
    unsigned char *rgb; /* w * h * 3 */
    size_t cap;
    unsigned char *row; /* scratch row (CMYK) */
    size_t row_cap;
    unsigned char **rows; /* PNG row pointers */
    size_t rows_cap;
} img_t;

void img_free(img_t *im);

/* The format from the first bytes ("\xff\xd8\xff", "\x89PNG\r\n\x1a\n"). */
img_format_t img_sniff(const void *data, size_t len);
const char *img_format_name(img_format_t f);

/* Decodes data into im. JPEGs are decoded at the smallest DCT scale
 * (1/8, 1/4, 1/2, 1) that keeps at least min_w x min_h pixels (0 for full
 * size). Returns 0, or -1 with a reason in errstr (im's pixels are then
 * undefined but its buffers still belong to it). */
int img_decode(const void *data, size_t len, const img_limits_t *lim, int min_w, int min_h,
               img_t *im, char *errstr, size_t errstr_size);

/* Resizes im (area average when shrinking, bilinear when growing) to
 * channels x h x w floats in [0, 1], planar (CHW); channels 1 is luma
 * (BT.601), 3 is RGB. out holds channels * h * w floats. */
void img_to_input(const img_t *im, int channels, int h, int w, float *out);

/* 64-bit perceptual hash: the 8x8 lowest frequencies of the DCT of the
 * 32x32 luma image, one bit per coefficient above their median (bit 63 is
 * coefficient (0,0)). Near-duplicates (re-encoded, resized, slightly
 * recoloured) differ in few bits. */
uint64_t img_phash(const img_t *im);
static inline int img_hamming(uint64_t a, uint64_t b) {
    return __builtin_popcountll(a ^ b);
}

/* Up to k most frequent colours (RGB quantized to 4 bits per channel, each
 * reported as the mean of its pixels) into rgb_out[] as 0xRRGGBB, most
 * frequent first. Returns the count written. */
int img_dominant_colors(const img_t *im, int k, uint32_t *rgb_out);

#endif
