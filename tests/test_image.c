/* test_image.c: the poster decoder (every colour layout, DCT scaling,
 * limits, truncation) and the pixel features (resize, perceptual hash,
 * dominant colours). Images are encoded here with libjpeg and libpng from
 * known pixels, so the expected values need no fixture files. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jpeglib.h>
#include <png.h>

#include "kernels/vision/image.h"

/* A smooth test picture: r, g, b at (x, y). */
static unsigned char pix(int x, int y, int c, int w, int h, int seed) {
    double v = 127.5 + 100 * sin((x + seed * 13) * (c + 1) * 6.2832 / w) *
                           cos((y + seed * 7) * (3 - c) * 3.1416 / h);
    if (((x / 40) + (y / 40) + seed) % 5 == 0) v = 40.0 * c + 30;
    return (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
}

static unsigned char *picture(int w, int h, int seed) {
    unsigned char *p = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) p[((size_t)y * w + x) * 3 + c] = pix(x, y, c, w, h, seed);
    return p;
}

/* Encodes rgb (w x h) as JPEG: space 1 grey, 3 RGB, 4 CMYK (Adobe,
 * inverted, no black ink). The caller frees *out. */
static size_t jpeg_encode(const unsigned char *rgb, int w, int h, int space, int quality,
                          int progressive, unsigned char **out) {
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr err;
    c.err = jpeg_std_error(&err);
    jpeg_create_compress(&c);
    unsigned long len = 0;
    *out = NULL;
    jpeg_mem_dest(&c, out, &len);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = space;
    c.in_color_space = space == 1 ? JCS_GRAYSCALE : space == 3 ? JCS_RGB : JCS_CMYK;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, quality, TRUE);
    if (progressive) jpeg_simple_progression(&c);
    jpeg_start_compress(&c, TRUE);
    unsigned char *row = malloc((size_t)w * 4);
    while (c.next_scanline < c.image_height) {
        const unsigned char *s = rgb + (size_t)c.next_scanline * w * 3;
        for (int x = 0; x < w; x++) {
            if (space == 1)
                row[x] = s[3 * x + 1];
            else if (space == 3)
                memcpy(row + 3 * x, s + 3 * x, 3);
            else
                row[4 * x] = s[3 * x], row[4 * x + 1] = s[3 * x + 1], row[4 * x + 2] = s[3 * x + 2],
                        row[4 * x + 3] = 255;
        }
        JSAMPROW r = row;
        jpeg_write_scanlines(&c, &r, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    free(row);
    return len;
}

typedef struct membuf {
    unsigned char *p;
    size_t len;
} membuf_t;

static void png_write_mem(png_structp png, png_bytep data, png_size_t n) {
    membuf_t *m = png_get_io_ptr(png);
    m->p = realloc(m->p, m->len + n);
    memcpy(m->p + m->len, data, n);
    m->len += n;
}

static void png_flush_mem(png_structp png) {
    (void)png;
}

/* Encodes rgb as PNG of the given libpng colour type and depth; alpha
 * (RGBA) is a, and grey uses the green channel. */
static size_t png_encode(const unsigned char *rgb, int w, int h, int ctype, int depth,
                         int interlace, int alpha, unsigned char **out) {
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    membuf_t m = {NULL, 0};
    png_set_write_fn(png, &m, png_write_mem, png_flush_mem);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, ctype,
                 interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    png_color palette[8];
    if (ctype == PNG_COLOR_TYPE_PALETTE) {
        for (int i = 0; i < 8; i++)
            palette[i].red = (png_byte)(i * 36), palette[i].green = (png_byte)(255 - i * 30),
            palette[i].blue = (png_byte)(i * 20);
        png_set_PLTE(png, info, palette, 8);
    }
    png_write_info(png, info);
    int bpp = ctype == PNG_COLOR_TYPE_RGB_ALPHA ? 4 : ctype == PNG_COLOR_TYPE_RGB ? 3 : 1;
    size_t rowbytes = (size_t)w * bpp * (depth == 16 ? 2 : 1);
    unsigned char *img = malloc(rowbytes * h);
    png_bytep *rows = malloc(sizeof(png_bytep) * (size_t)h);
    for (int y = 0; y < h; y++) {
        rows[y] = img + (size_t)y * rowbytes;
        for (int x = 0; x < w; x++) {
            const unsigned char *s = rgb + ((size_t)y * w + x) * 3;
            unsigned char *d = rows[y] + (size_t)x * bpp * (depth == 16 ? 2 : 1);
            if (ctype == PNG_COLOR_TYPE_PALETTE)
                d[0] = (unsigned char)((x / 10 + y / 10) % 8);
            else if (ctype == PNG_COLOR_TYPE_GRAY && depth == 16)
                d[0] = s[1], d[1] = s[1];
            else if (ctype == PNG_COLOR_TYPE_GRAY)
                d[0] = s[1];
            else {
                memcpy(d, s, 3);
                if (bpp == 4) d[3] = (unsigned char)alpha;
            }
        }
    }
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    free(img);
    *out = m.p;
    return m.len;
}

static double mean_abs_diff(const img_t *im, const unsigned char *rgb, int grey) {
    double s = 0;
    size_t n = (size_t)im->w * im->h;
    for (size_t i = 0; i < n; i++)
        for (int c = 0; c < 3; c++)
            s += fabs((double)im->rgb[3 * i + c] - rgb[3 * i + (grey ? 1 : c)]);
    return s / (3.0 * n);
}

/* Grey, RGB, progressive and CMYK JPEGs decode to the pixels encoded. */
static void test_jpeg_layouts(void **state) {
    (void)state;
    const int w = 96, h = 64;
    unsigned char *rgb = picture(w, h, 1), *jpg;
    img_limits_t lim = img_default_limits();
    img_t im = {0};
    char err[256];
    struct {
        int space, progressive;
    } cases[] = {{1, 0}, {3, 0}, {3, 1}, {4, 0}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = jpeg_encode(rgb, w, h, cases[i].space, 95, cases[i].progressive, &jpg);
        assert_int_equal(img_sniff(jpg, len), IMG_JPEG);
        if (img_decode(jpg, len, &lim, 0, 0, &im, err, sizeof err) < 0) fail_msg("%s", err);
        assert_int_equal(im.w, w);
        assert_int_equal(im.h, h);
        double d = mean_abs_diff(&im, rgb, cases[i].space == 1);
        print_message("jpeg space %d progressive %d: mean abs diff %.2f\n", cases[i].space,
                      cases[i].progressive, d);
        assert_true(d < 4.0);
        free(jpg);
    }
    img_free(&im);
    free(rgb);
}

/* DCT scaling picks the smallest scale that keeps the size asked for and
 * still reports the size in the file. */
static void test_jpeg_dct_scaling(void **state) {
    (void)state;
    unsigned char *rgb = picture(512, 768, 2), *jpg;
    size_t len = jpeg_encode(rgb, 512, 768, 3, 90, 0, &jpg);
    img_limits_t lim = img_default_limits();
    img_t im = {0};
    char err[256];
    assert_int_equal(img_decode(jpg, len, &lim, 28, 28, &im, err, sizeof err), 0);
    assert_int_equal(im.w, 64);
    assert_int_equal(im.h, 96);
    assert_int_equal(im.src_w, 512);
    assert_int_equal(im.src_h, 768);
    assert_int_equal(img_decode(jpg, len, &lim, 100, 100, &im, err, sizeof err), 0);
    assert_int_equal(im.w, 128);
    assert_int_equal(img_decode(jpg, len, &lim, 0, 0, &im, err, sizeof err), 0);
    assert_int_equal(im.w, 512);
    free(jpg);
    img_free(&im);
    free(rgb);
}

/* RGB, RGBA (composited over white), palette, 16-bit grey and interlaced
 * PNGs. */
static void test_png_layouts(void **state) {
    (void)state;
    const int w = 50, h = 30;
    unsigned char *rgb = picture(w, h, 3), *png;
    img_limits_t lim = img_default_limits();
    img_t im = {0};
    char err[256];
    size_t len = png_encode(rgb, w, h, PNG_COLOR_TYPE_RGB, 8, 0, 255, &png);
    assert_int_equal(img_decode(png, len, &lim, 0, 0, &im, err, sizeof err), 0);
    assert_true(mean_abs_diff(&im, rgb, 0) == 0.0);
    free(png);
    len = png_encode(rgb, w, h, PNG_COLOR_TYPE_RGB, 8, 1, 255, &png);
    assert_int_equal(img_decode(png, len, &lim, 0, 0, &im, err, sizeof err), 0);
    assert_true(mean_abs_diff(&im, rgb, 0) == 0.0);
    free(png);
    len = png_encode(rgb, w, h, PNG_COLOR_TYPE_GRAY, 16, 0, 255, &png);
    assert_int_equal(img_decode(png, len, &lim, 0, 0, &im, err, sizeof err), 0);
    assert_true(mean_abs_diff(&im, rgb, 1) == 0.0);
    free(png);
    len = png_encode(rgb, w, h, PNG_COLOR_TYPE_RGB_ALPHA, 8, 0, 0, &png);
    assert_int_equal(img_decode(png, len, &lim, 0, 0, &im, err, sizeof err), 0);
    for (int i = 0; i < w * h * 3; i++) assert_int_equal(im.rgb[i], 255); /* transparent: white */
    free(png);
    len = png_encode(rgb, w, h, PNG_COLOR_TYPE_RGB_ALPHA, 8, 0, 128, &png);
    assert_int_equal(img_decode(png, len, &lim, 0, 0, &im, err, sizeof err), 0);
    assert_int_equal(im.rgb[0], (rgb[0] * 128 + 255 * 127 + 127) / 255);
    free(png);
    len = png_encode(rgb, w, h, PNG_COLOR_TYPE_PALETTE, 8, 0, 255, &png);
    assert_int_equal(img_decode(png, len, &lim, 0, 0, &im, err, sizeof err), 0);
    int idx = (12 / 10 + 25 / 10) % 8; /* pixel (12, 25) */
    assert_int_equal(im.rgb[(25 * w + 12) * 3], idx * 36);
    assert_int_equal(im.rgb[(25 * w + 12) * 3 + 1], 255 - idx * 30);
    free(png);
    img_free(&im);
    free(rgb);
}

/* Limits are checked on the header, before pixels are allocated; broken
 * and truncated files fail cleanly at every length. */
static void test_limits_and_broken_input(void **state) {
    (void)state;
    unsigned char *rgb = picture(80, 60, 4), *jpg, *png;
    size_t jl = jpeg_encode(rgb, 80, 60, 3, 90, 1, &jpg);
    size_t pl = png_encode(rgb, 80, 60, PNG_COLOR_TYPE_RGB, 8, 1, 255, &png);
    img_limits_t lim = img_default_limits();
    img_t im = {0};
    char err[256];
    img_limits_t small = lim;
    small.max_pixels = 1000;
    assert_int_equal(img_decode(jpg, jl, &small, 0, 0, &im, err, sizeof err), -1);
    assert_non_null(strstr(err, "exceeds the limits"));
    assert_null(im.rgb); /* nothing was allocated for it */
    assert_int_equal(img_decode(png, pl, &small, 0, 0, &im, err, sizeof err), -1);
    assert_non_null(strstr(err, "exceeds the limits"));
    assert_null(im.rgb);
    small = lim;
    small.max_bytes = 100;
    assert_int_equal(img_decode(jpg, jl, &small, 0, 0, &im, err, sizeof err), -1);
    assert_non_null(strstr(err, "bytes"));
    assert_int_equal(img_decode(jpg, 0, &lim, 0, 0, &im, err, sizeof err), -1);
    assert_int_equal(img_decode("GIF89a....", 10, &lim, 0, 0, &im, err, sizeof err), -1);
    assert_non_null(strstr(err, "not a JPEG or PNG"));
    for (size_t n = 1; n < jl; n += 3)
        assert_int_equal(img_decode(jpg, n, &lim, 0, 0, &im, err, sizeof err), -1);
    for (size_t n = 1; n < pl; n += 3)
        assert_int_equal(img_decode(png, n, &lim, 0, 0, &im, err, sizeof err), -1);
    /* flipped bits anywhere either decode or fail, never crash */
    for (size_t i = 0; i < jl; i += 7) {
        jpg[i] ^= 0x55;
        (void)img_decode(jpg, jl, &lim, 0, 0, &im, err, sizeof err);
        jpg[i] ^= 0x55;
    }
    png[40] ^= 1; /* inside IHDR or the first chunk: CRC */
    assert_int_equal(img_decode(png, pl, &lim, 0, 0, &im, err, sizeof err), -1);
    assert_non_null(strstr(err, "png:"));
    free(jpg);
    free(png);
    img_free(&im);
    free(rgb);
}

/* Area-average resize: a 2x2 checkerboard shrinks to grey; luma weights. */
static void test_resize(void **state) {
    (void)state;
    img_t im = {0};
    im.w = 64, im.h = 64;
    im.rgb = malloc(64 * 64 * 3);
    for (int y = 0; y < 64; y++)
        for (int x = 0; x < 64; x++) memset(im.rgb + (y * 64 + x) * 3, ((x + y) & 1) ? 255 : 0, 3);
    static float out[100 * 90];
    img_to_input(&im, 3, 16, 16, out);
    for (int i = 0; i < 3 * 16 * 16; i++) assert_true(fabsf(out[i] - 0.5f) < 1e-6f);
    for (int i = 0; i < 64 * 64; i++)
        im.rgb[3 * i] = 255, im.rgb[3 * i + 1] = 0, im.rgb[3 * i + 2] = 0;
    img_to_input(&im, 1, 28, 28, out);
    assert_true(fabsf(out[0] - 0.299f) < 1e-4f);
    img_to_input(&im, 1, 100, 90, out); /* growing: bilinear of a constant */
    assert_true(fabsf(out[5] - 0.299f) < 1e-4f);
    img_free(&im);
}

/* A re-encoded, resized copy is near; a different picture is far. */
static void test_phash(void **state) {
    (void)state;
    unsigned char *a = picture(300, 450, 5), *b = picture(300, 450, 6), *jpg;
    img_limits_t lim = img_default_limits();
    img_t im = {0};
    char err[256];
    im.w = 300, im.h = 450, im.rgb = a;
    uint64_t ha = img_phash(&im);
    im.rgb = b;
    uint64_t hb = img_phash(&im);
    im.rgb = NULL;
    unsigned char *small = malloc(150 * 225 * 3);
    for (int y = 0; y < 225; y++)
        for (int x = 0; x < 150; x++)
            for (int c = 0; c < 3; c++)
                small[(y * 150 + x) * 3 + c] = a[((2 * y) * 300 + 2 * x) * 3 + c];
    size_t len = jpeg_encode(small, 150, 225, 3, 40, 0, &jpg);
    assert_int_equal(img_decode(jpg, len, &lim, 32, 32, &im, err, sizeof err), 0);
    uint64_t hc = img_phash(&im);
    print_message("phash a %016llx, copy %016llx (%d bits), other %016llx (%d bits)\n",
                  (unsigned long long)ha, (unsigned long long)hc, img_hamming(ha, hc),
                  (unsigned long long)hb, img_hamming(ha, hb));
    assert_true(img_hamming(ha, hc) <= 6);
    assert_true(img_hamming(ha, hb) >= 16);
    free(jpg);
    free(small);
    free(a);
    free(b);
    img_free(&im);
}

static void test_dominant_colors(void **state) {
    (void)state;
    img_t im = {0};
    im.w = 40, im.h = 10;
    im.rgb = malloc(40 * 10 * 3);
    for (int y = 0; y < 10; y++)
        for (int x = 0; x < 40; x++) {
            unsigned char *p = im.rgb + (y * 40 + x) * 3;
            p[0] = x < 20 ? 250 : 0, p[1] = x >= 20 && x < 30 ? 200 : 0, p[2] = x >= 30 ? 100 : 0;
        }
    uint32_t c[4];
    assert_int_equal(img_dominant_colors(&im, 4, c), 3);
    assert_int_equal(c[0], 0xfa0000);
    assert_true(c[1] == 0x00c800 || c[1] == 0x000064);
    img_free(&im);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jpeg_layouts),    cmocka_unit_test(test_jpeg_dct_scaling),
        cmocka_unit_test(test_png_layouts),     cmocka_unit_test(test_limits_and_broken_input),
        cmocka_unit_test(test_resize),          cmocka_unit_test(test_phash),
        cmocka_unit_test(test_dominant_colors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
