/* image.c: see image.h. */
#include "kernels/vision/image.h"

#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* jpeglib.h needs FILE and size_t first. */
#include <jpeglib.h>

/* A progressive JPEG can carry thousands of tiny scans that each cost a
 * pass over the coefficients; libjpeg-turbo's own tools stop at 500. */
#define IMG_MAX_SCANS 500

img_limits_t img_default_limits(void) {
    img_limits_t l = {32u << 20, 16777216ull, 16384};
    return l;
}

void img_free(img_t *im) {
    if (!im) return;
    free(im->rgb);
    free(im->row);
    free(im->rows);
    memset(im, 0, sizeof *im);
}

img_format_t img_sniff(const void *data, size_t len) {
    const unsigned char *p = data;
    if (len >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff) return IMG_JPEG;
    if (len >= 8 && memcmp(p, "\x89PNG\r\n\x1a\n", 8) == 0) return IMG_PNG;
    return IMG_UNKNOWN;
}

const char *img_format_name(img_format_t f) {
    return f == IMG_JPEG ? "jpeg" : f == IMG_PNG ? "png" : "unknown";
}

static int grow(unsigned char **buf, size_t *cap, size_t need) {
    if (need <= *cap) return 0;
    unsigned char *p = realloc(*buf, need);
    if (!p) return -1;
    *buf = p;
    *cap = need;
    return 0;
}

static int check_size(const img_limits_t *lim, uint64_t w, uint64_t h, char *errstr, size_t n) {
    if (w == 0 || h == 0) {
        snprintf(errstr, n, "image has zero size %llux%llu", (unsigned long long)w,
                 (unsigned long long)h);
        return -1;
    }
    if (w > (uint64_t)lim->max_side || h > (uint64_t)lim->max_side || w * h > lim->max_pixels) {
        snprintf(errstr, n,
                 "image of %llux%llu pixels exceeds the limits (%d per side, %llu pixels)",
                 (unsigned long long)w, (unsigned long long)h, lim->max_side,
                 (unsigned long long)lim->max_pixels);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* JPEG                                                                 */

typedef struct jerr {
    struct jpeg_error_mgr pub;
    jmp_buf jmp;
    char *errstr;
    size_t n;
} jerr_t;

static void jpeg_fail(j_common_ptr cinfo) {
    jerr_t *e = (jerr_t *)cinfo->err;
    char msg[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, msg);
    snprintf(e->errstr, e->n, "jpeg: %s", msg);
    longjmp(e->jmp, 1);
}

/* Warnings (level -1) are corrupt or truncated data: refuse them too. */
static void jpeg_message(j_common_ptr cinfo, int level) {
    if (level < 0) jpeg_fail(cinfo);
}

static void jpeg_progress(j_common_ptr cinfo) {
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    if (cinfo->is_decompressor && d->input_scan_number > IMG_MAX_SCANS) {
        jerr_t *e = (jerr_t *)cinfo->err;
        snprintf(e->errstr, e->n, "jpeg: more than %d scans", IMG_MAX_SCANS);
        longjmp(e->jmp, 1);
    }
}

static int decode_jpeg(const unsigned char *data, size_t len, const img_limits_t *lim, int min_w,
                       int min_h, img_t *im, char *errstr, size_t n) {
    struct jpeg_decompress_struct cinfo;
    jerr_t err;
    struct jpeg_progress_mgr progress;
    memset(&cinfo, 0, sizeof cinfo);
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = jpeg_fail;
    err.pub.emit_message = jpeg_message;
    err.errstr = errstr;
    err.n = n;
    if (setjmp(err.jmp)) {
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    jpeg_create_decompress(&cinfo);
    progress.progress_monitor = jpeg_progress;
    cinfo.progress = &progress;
    jpeg_mem_src(&cinfo, data, (unsigned long)len);
    jpeg_read_header(&cinfo, TRUE);
    im->src_w = (int)cinfo.image_width;
    im->src_h = (int)cinfo.image_height;
    if (check_size(lim, cinfo.image_width, cinfo.image_height, errstr, n) < 0) {
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    int cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
    cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    cinfo.scale_num = 1;
    cinfo.scale_denom = 1;
    for (unsigned d = 8; d > 1; d /= 2) {
        unsigned sw = (cinfo.image_width + d - 1) / d, sh = (cinfo.image_height + d - 1) / d;
        if (min_w > 0 && min_h > 0 && sw >= (unsigned)min_w && sh >= (unsigned)min_h) {
            cinfo.scale_denom = d;
            break;
        }
    }
    cinfo.dct_method = JDCT_ISLOW;
    jpeg_calc_output_dimensions(&cinfo);
    size_t w = cinfo.output_width, h = cinfo.output_height;
    if (grow(&im->rgb, &im->cap, w * h * 3) < 0 || (cmyk && grow(&im->row, &im->row_cap, w * 4))) {
        snprintf(errstr, n, "out of memory for %zux%zu pixels", w, h);
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    jpeg_start_decompress(&cinfo);
    /* Adobe's CMYK JPEGs store inverted ink values. */
    int inverted = cinfo.saw_Adobe_marker;
    while (cinfo.output_scanline < cinfo.output_height) {
        unsigned char *dst = im->rgb + (size_t)cinfo.output_scanline * w * 3;
        if (!cmyk) {
            JSAMPROW row = dst;
            jpeg_read_scanlines(&cinfo, &row, 1);
            continue;
        }
        JSAMPROW row = im->row;
        jpeg_read_scanlines(&cinfo, &row, 1);
        for (size_t x = 0; x < w; x++) {
            unsigned c = im->row[4 * x], m = im->row[4 * x + 1], y = im->row[4 * x + 2],
                     k = im->row[4 * x + 3];
            if (!inverted) c = 255 - c, m = 255 - m, y = 255 - y, k = 255 - k;
            dst[3 * x] = (unsigned char)((c * k + 127) / 255);
            dst[3 * x + 1] = (unsigned char)((m * k + 127) / 255);
            dst[3 * x + 2] = (unsigned char)((y * k + 127) / 255);
        }
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    im->w = (int)w;
    im->h = (int)h;
    return 0;
}

/* ------------------------------------------------------------------ */
/* PNG                                                                  */

typedef struct pngsrc {
    const unsigned char *p;
    size_t len, off;
    char *errstr;
    size_t n;
} pngsrc_t;

static void png_read_mem(png_structp png, png_bytep out, png_size_t want) {
    pngsrc_t *s = png_get_io_ptr(png);
    if (want > s->len - s->off) png_error(png, "truncated file");
    memcpy(out, s->p + s->off, want);
    s->off += want;
}

static void png_fail(png_structp png, png_const_charp msg) {
    pngsrc_t *s = png_get_error_ptr(png);
    snprintf(s->errstr, s->n, "png: %s", msg);
    png_longjmp(png, 1);
}

static void png_warn(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg;
}

static int decode_png(const unsigned char *data, size_t len, const img_limits_t *lim, img_t *im,
                      char *errstr, size_t n) {
    pngsrc_t src = {data, len, 0, errstr, n};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_fail, png_warn);
    if (!png) {
        snprintf(errstr, n, "png: out of memory");
        return -1;
    }
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        snprintf(errstr, n, "png: out of memory");
        return -1;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        return -1;
    }
    png_set_read_fn(png, &src, png_read_mem);
    /* libpng's own size limits would refuse a huge header with a vaguer
     * "Invalid IHDR data"; check_size() below gives the reason instead, still
     * before any pixel buffer exists. */
    png_set_user_limits(png, 0x7fffffffu, 0x7fffffffu);
    /* ancillary chunks (text, ICC profiles) are bounded too */
    png_set_chunk_malloc_max(png, 8u << 20);
    png_read_info(png, info);
    png_uint_32 w = 0, h = 0;
    int depth = 0, ctype = 0, interlace = 0;
    png_get_IHDR(png, info, &w, &h, &depth, &ctype, &interlace, NULL, NULL);
    im->src_w = (int)w;
    im->src_h = (int)h;
    if (check_size(lim, w, h, errstr, n) < 0) {
        png_destroy_read_struct(&png, &info, NULL);
        return -1;
    }
    png_set_expand(png); /* palette -> RGB, grey < 8 bits -> 8, tRNS -> alpha */
    png_set_strip_16(png);
    png_set_gray_to_rgb(png);
    png_set_add_alpha(png, 0xff, PNG_FILLER_AFTER);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    if (png_get_rowbytes(png, info) != (size_t)w * 4) png_error(png, "unexpected row layout");
    if (grow(&im->rgb, &im->cap, (size_t)w * h * 4) < 0 ||
        grow((unsigned char **)&im->rows, &im->rows_cap, (size_t)h * sizeof(unsigned char *)) < 0) {
        snprintf(errstr, n, "out of memory for %ux%u pixels", (unsigned)w, (unsigned)h);
        png_destroy_read_struct(&png, &info, NULL);
        return -1;
    }
    for (png_uint_32 y = 0; y < h; y++) im->rows[y] = im->rgb + (size_t)y * w * 4;
    png_read_image(png, im->rows);
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    /* RGBA -> RGB over white, in place (the write index never passes the
     * read index) */
    size_t np = (size_t)w * h;
    for (size_t i = 0; i < np; i++) {
        const unsigned char *s = im->rgb + 4 * i;
        unsigned a = s[3], r = s[0], g = s[1], b = s[2];
        unsigned char *d = im->rgb + 3 * i;
        d[0] = (unsigned char)((r * a + 255 * (255 - a) + 127) / 255);
        d[1] = (unsigned char)((g * a + 255 * (255 - a) + 127) / 255);
        d[2] = (unsigned char)((b * a + 255 * (255 - a) + 127) / 255);
    }
    im->w = (int)w;
    im->h = (int)h;
    return 0;
}

int img_decode(const void *data, size_t len, const img_limits_t *lim, int min_w, int min_h,
               img_t *im, char *errstr, size_t errstr_size) {
    im->w = im->h = im->src_w = im->src_h = 0;
    im->format = IMG_UNKNOWN;
    if (len == 0) {
        snprintf(errstr, errstr_size, "empty image");
        return -1;
    }
    if (len > lim->max_bytes) {
        snprintf(errstr, errstr_size, "image of %zu bytes exceeds the limit of %zu", len,
                 lim->max_bytes);
        return -1;
    }
    img_format_t f = img_sniff(data, len);
    im->format = f;
    if (f == IMG_JPEG) return decode_jpeg(data, len, lim, min_w, min_h, im, errstr, errstr_size);
    if (f == IMG_PNG) return decode_png(data, len, lim, im, errstr, errstr_size);
    snprintf(errstr, errstr_size, "not a JPEG or PNG image (starts with %02x %02x %02x %02x)",
             len > 0 ? ((const unsigned char *)data)[0] : 0,
             len > 1 ? ((const unsigned char *)data)[1] : 0,
             len > 2 ? ((const unsigned char *)data)[2] : 0,
             len > 3 ? ((const unsigned char *)data)[3] : 0);
    return -1;
}

/* ------------------------------------------------------------------ */
/* Pixels                                                               */

/* Value of output pixel (ox, oy), channel ch (0..2 RGB, 3 luma), in 0..255. */
static float sample(const img_t *im, int ch, int ox, int oy, int ow, int oh) {
    const float sx = (float)im->w / ow, sy = (float)im->h / oh;
    const unsigned char *p = im->rgb;
    const int W = im->w;
#define PIX(x, y)                                                                                  \
    (ch < 3 ? (float)p[((size_t)(y)*W + (x)) * 3 + ch]                                             \
            : 0.299f * p[((size_t)(y)*W + (x)) * 3] + 0.587f * p[((size_t)(y)*W + (x)) * 3 + 1] +  \
                  0.114f * p[((size_t)(y)*W + (x)) * 3 + 2])
    if (sx > 1.0f || sy > 1.0f) {
        /* area average over the source box (whole pixels) */
        int x0 = (int)(ox * sx), x1 = (int)((ox + 1) * sx), y0 = (int)(oy * sy),
            y1 = (int)((oy + 1) * sy);
        if (x1 <= x0) x1 = x0 + 1;
        if (y1 <= y0) y1 = y0 + 1;
        if (x1 > W) x1 = W;
        if (y1 > im->h) y1 = im->h;
        float s = 0.0f;
        for (int y = y0; y < y1; y++)
            for (int x = x0; x < x1; x++) s += PIX(x, y);
        return s / (float)((x1 - x0) * (y1 - y0));
    }
    float fx = (ox + 0.5f) * sx - 0.5f, fy = (oy + 0.5f) * sy - 0.5f;
    if (fx < 0) fx = 0;
    if (fy < 0) fy = 0;
    int x0 = (int)fx, y0 = (int)fy;
    int x1 = x0 + 1 < W ? x0 + 1 : x0, y1 = y0 + 1 < im->h ? y0 + 1 : y0;
    float ax = fx - x0, ay = fy - y0;
    float top = PIX(x0, y0) * (1 - ax) + PIX(x1, y0) * ax;
    float bot = PIX(x0, y1) * (1 - ax) + PIX(x1, y1) * ax;
    return top * (1 - ay) + bot * ay;
#undef PIX
}

void img_to_input(const img_t *im, int channels, int h, int w, float *out) {
    const float inv = 1.0f / 255.0f;
    for (int c = 0; c < channels; c++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                out[((size_t)c * h + y) * w + x] =
                    sample(im, channels == 1 ? 3 : c, x, y, w, h) * inv;
}

uint64_t img_phash(const img_t *im) {
    enum { N = 32, L = 8 };
    static double cosines[L][N];
    static int ready;
    if (!ready) { /* benign race: every thread writes the same values */
        for (int u = 0; u < L; u++)
            for (int x = 0; x < N; x++) cosines[u][x] = cos(M_PI * (2 * x + 1) * u / (2.0 * N));
        ready = 1;
    }
    double px[N][N], rows[N][L], coef[L * L];
    for (int y = 0; y < N; y++)
        for (int x = 0; x < N; x++) px[y][x] = sample(im, 3, x, y, N, N);
    for (int y = 0; y < N; y++)
        for (int u = 0; u < L; u++) {
            double s = 0;
            for (int x = 0; x < N; x++) s += px[y][x] * cosines[u][x];
            rows[y][u] = s;
        }
    for (int v = 0; v < L; v++)
        for (int u = 0; u < L; u++) {
            double s = 0;
            for (int y = 0; y < N; y++) s += rows[y][u] * cosines[v][y];
            coef[v * L + u] = s;
        }
    double sorted[L * L];
    memcpy(sorted, coef, sizeof sorted);
    for (int i = 1; i < L * L; i++) { /* insertion sort of 64 values */
        double v = sorted[i];
        int j = i - 1;
        while (j >= 0 && sorted[j] > v) sorted[j + 1] = sorted[j], j--;
        sorted[j + 1] = v;
    }
    double median = 0.5 * (sorted[L * L / 2 - 1] + sorted[L * L / 2]);
    uint64_t h = 0;
    for (int i = 0; i < L * L; i++) h = (h << 1) | (coef[i] > median ? 1u : 0u);
    return h;
}

int img_dominant_colors(const img_t *im, int k, uint32_t *rgb_out) {
    enum { BINS = 4096 };
    static _Thread_local uint32_t count[BINS];
    static _Thread_local uint64_t sum[BINS][3];
    memset(count, 0, sizeof count);
    memset(sum, 0, sizeof sum);
    size_t np = (size_t)im->w * im->h;
    /* a strided sample of at most ~64k pixels is plenty for a palette */
    size_t step = np / 65536 + 1;
    for (size_t i = 0; i < np; i += step) {
        const unsigned char *p = im->rgb + 3 * i;
        unsigned bin = (unsigned)(p[0] >> 4) << 8 | (unsigned)(p[1] >> 4) << 4 | (p[2] >> 4);
        count[bin]++;
        sum[bin][0] += p[0], sum[bin][1] += p[1], sum[bin][2] += p[2];
    }
    int got = 0;
    for (; got < k; got++) {
        unsigned best = 0;
        for (unsigned b = 1; b < BINS; b++)
            if (count[b] > count[best]) best = b;
        if (count[best] == 0) break;
        uint32_t c = count[best];
        rgb_out[got] = (uint32_t)((sum[best][0] + c / 2) / c) << 16 |
                       (uint32_t)((sum[best][1] + c / 2) / c) << 8 |
                       (uint32_t)((sum[best][2] + c / 2) / c);
        count[best] = 0;
    }
    return got;
}
