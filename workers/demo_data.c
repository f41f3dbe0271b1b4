/* demo_data.c: sample data for `reel demo` (see demo_data.h). */
#include "workers/demo_data.h"

#include <errno.h>
#include <stdio.h>
/* jpeglib.h needs stdio.h first. */
#include <jpeglib.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

const char *const demo_fashion_classes[10] = {"t-shirt", "trouser", "pullover", "dress", "coat",
                                              "sandal",  "shirt",   "sneaker",  "bag",   "boot"};

/* The folder holding the binary's checkout (the binary lives in
 * <checkout>/build), or "" when unknown. */
static void checkout_dir(char *out, size_t n) {
    char exe[PATH_MAX] = "";
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    out[0] = '\0';
    if (len <= 0) return;
    exe[len] = '\0';
    for (int up = 0; up < 2; up++) {
        char *slash = strrchr(exe, '/');
        if (!slash) return;
        *slash = '\0';
    }
    snprintf(out, n, "%s", exe);
}

int demo_find(const char *shared_rel, const char *example_rel, char *out, size_t out_size) {
    char root[PATH_MAX], cand[6][PATH_MAX + 128];
    int k = 0;
    checkout_dir(root, sizeof root);
    const char *env = getenv("REEL_DATA_DIR");
    if (shared_rel) {
        if (env) snprintf(cand[k++], sizeof cand[0], "%s/%s", env, shared_rel);
        snprintf(cand[k++], sizeof cand[0], "../shared/data/%s", shared_rel);
        if (root[0]) snprintf(cand[k++], sizeof cand[0], "%s/../shared/data/%s", root, shared_rel);
    }
    if (example_rel) {
        if (root[0]) snprintf(cand[k++], sizeof cand[0], "%s/examples/%s", root, example_rel);
        snprintf(cand[k++], sizeof cand[0], "examples/%s", example_rel);
    }
    for (int i = 0; i < k; i++) {
        if (access(cand[i], R_OK) == 0) {
            snprintf(out, out_size, "%s", cand[i]);
            return 0;
        }
    }
    return -1;
}

/* Reads an IDX file (gzip or plain: gzread handles both) header and skips
 * to item first. Returns the open file or NULL. */
static gzFile idx_open(const char *path, unsigned magic, int first, size_t item_bytes, char *errstr,
                       size_t errstr_size) {
    gzFile f = gzopen(path, "rb");
    if (!f) {
        snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
        return NULL;
    }
    unsigned char hdr[16];
    size_t hdr_len = magic == 0x803 ? 16 : 8;
    if (gzread(f, hdr, (unsigned)hdr_len) != (int)hdr_len ||
        ((unsigned)hdr[2] << 8 | hdr[3]) != magic) {
        snprintf(errstr, errstr_size, "%s: not an IDX file of the expected kind", path);
        gzclose(f);
        return NULL;
    }
    if (gzseek(f, (z_off_t)(hdr_len + (size_t)first * item_bytes), SEEK_SET) < 0) {
        snprintf(errstr, errstr_size, "%s: cannot seek to item %d", path, first);
        gzclose(f);
        return NULL;
    }
    return f;
}

int demo_fashion_read(const char *dir, int first, int n, unsigned char *pixels,
                      unsigned char *labels, char *errstr, size_t errstr_size) {
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/t10k-images-idx3-ubyte.gz", dir);
    gzFile f = idx_open(path, 0x803, first, 784, errstr, errstr_size);
    if (!f) return -1;
    int ok = gzread(f, pixels, (unsigned)(n * 784)) == n * 784;
    gzclose(f);
    snprintf(path, sizeof path, "%s/t10k-labels-idx1-ubyte.gz", dir);
    if (ok && (f = idx_open(path, 0x801, first, 1, errstr, errstr_size)) != NULL) {
        ok = gzread(f, labels, (unsigned)n) == n;
        gzclose(f);
    } else {
        return -1;
    }
    if (!ok) {
        snprintf(errstr, errstr_size, "%s: short read", path);
        return -1;
    }
    return 0;
}

unsigned char *demo_poster_jpeg(const unsigned char *grey28, int width, int height, unsigned seed,
                                size_t *len) {
    static const unsigned char tints[6][3] = {{255, 210, 120}, {140, 200, 255}, {255, 150, 160},
                                              {170, 255, 170}, {230, 180, 255}, {255, 255, 255}};
    const unsigned char *tint = tints[seed % 6];
    unsigned char *rgb = malloc((size_t)width * height * 3);
    if (!rgb) return NULL;
    unsigned rng = seed * 2654435761u + 1;
    for (int y = 0; y < height; y++) {
        /* Bilinear sampling of the 28x28 image over the whole frame. */
        float fy = ((float)y + 0.5f) * 28.0f / (float)height - 0.5f;
        int y0 = fy < 0 ? 0 : (int)fy, y1 = y0 + 1 > 27 ? 27 : y0 + 1;
        float wy = fy - (float)y0;
        if (wy < 0) wy = 0;
        for (int x = 0; x < width; x++) {
            float fx = ((float)x + 0.5f) * 28.0f / (float)width - 0.5f;
            int x0 = fx < 0 ? 0 : (int)fx, x1 = x0 + 1 > 27 ? 27 : x0 + 1;
            float wx = fx - (float)x0;
            if (wx < 0) wx = 0;
            float g = (1 - wy) * ((1 - wx) * grey28[y0 * 28 + x0] + wx * grey28[y0 * 28 + x1]) +
                      wy * ((1 - wx) * grey28[y1 * 28 + x0] + wx * grey28[y1 * 28 + x1]);
            rng = rng * 1103515245u + 12345u;
            float grain = (float)((rng >> 16) % 9) - 4.0f;
            unsigned char *p = rgb + ((size_t)y * width + x) * 3;
            for (int c = 0; c < 3; c++) {
                float v = g * (float)tint[c] / 255.0f + grain;
                p[c] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
    }
    struct jpeg_compress_struct cinfo;
    struct jpeg_error_mgr jerr;
    unsigned char *out = NULL;
    unsigned long out_len = 0;
    cinfo.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&cinfo);
    jpeg_mem_dest(&cinfo, &out, &out_len);
    cinfo.image_width = (JDIMENSION)width;
    cinfo.image_height = (JDIMENSION)height;
    cinfo.input_components = 3;
    cinfo.in_color_space = JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, 85, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = rgb + (size_t)cinfo.next_scanline * width * 3;
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    free(rgb);
    *len = out_len;
    return out;
}

int demo_espeak(const char *text, const char *voice, int speed, int pitch, const char *wav_path) {
    char s[16], p[16];
    snprintf(s, sizeof s, "%d", speed);
    snprintf(p, sizeof p, "%d", pitch);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        FILE *devnull = freopen("/dev/null", "w", stderr);
        (void)devnull;
        execlp("espeak-ng", "espeak-ng", "-v", voice, "-s", s, "-p", p, "-w", wav_path, text,
               (char *)NULL);
        _exit(127);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) < 0) return -1;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

void demo_to_utf8(const char *in, char *out, size_t out_size) {
    /* Valid UTF-8 passes through; any other byte >= 0x80 is Latin-1. */
    size_t o = 0;
    const unsigned char *p = (const unsigned char *)in;
    while (*p && o + 4 < out_size) {
        int n = *p < 0x80 ? 1 : (*p >> 5) == 6 ? 2 : (*p >> 4) == 14 ? 3 : (*p >> 3) == 30 ? 4 : 0;
        int valid = n > 0;
        for (int k = 1; valid && k < n; k++) valid = (p[k] & 0xC0) == 0x80;
        if (valid) {
            memcpy(out + o, p, (size_t)n);
            o += (size_t)n;
            p += n;
        } else {
            out[o++] = (char)(0xC0 | (*p >> 6));
            out[o++] = (char)(0x80 | (*p & 0x3F));
            p++;
        }
    }
    out[o] = '\0';
}
