/* audio.c: decoding clips from memory with libsndfile's virtual I/O. */
#include "kernels/speech/audio.h"

#include <math.h>
#include <samplerate.h>
#include <sndfile.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void audio_default_limits(audio_limits_t *lim) {
    lim->max_bytes = 16u << 20;
    lim->max_seconds = 120.0;
    lim->min_rate = 4000;
    lim->max_rate = 192000;
    lim->max_channels = 8;
}

/* A read-only cursor over the caller's bytes. */
typedef struct mem_cursor {
    const unsigned char *data;
    sf_count_t len;
    sf_count_t pos;
} mem_cursor_t;

static sf_count_t mem_get_filelen(void *user) {
    return ((mem_cursor_t *)user)->len;
}

static sf_count_t mem_seek(sf_count_t offset, int whence, void *user) {
    mem_cursor_t *c = user;
    sf_count_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? c->pos : c->len;
    sf_count_t p = base + offset;
    if (p < 0) p = 0;
    if (p > c->len) p = c->len;
    c->pos = p;
    return p;
}

static sf_count_t mem_read(void *ptr, sf_count_t count, void *user) {
    mem_cursor_t *c = user;
    if (count < 0) return 0;
    sf_count_t left = c->len - c->pos;
    if (count > left) count = left;
    memcpy(ptr, c->data + c->pos, (size_t)count);
    c->pos += count;
    return count;
}

static sf_count_t mem_write(const void *ptr, sf_count_t count, void *user) {
    (void)ptr, (void)count, (void)user;
    return 0;
}

static sf_count_t mem_tell(void *user) {
    return ((mem_cursor_t *)user)->pos;
}

int audio_resample(const float *in, size_t n, int from_rate, int to_rate, float **out,
                   size_t *n_out, char *errstr, size_t errstr_size) {
    double ratio = (double)to_rate / from_rate;
    size_t cap = (size_t)(n * ratio) + 16;
    float *y = malloc(cap * sizeof *y);
    if (!y) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    SRC_DATA d = {0};
    d.data_in = in;
    d.input_frames = (long)n;
    d.data_out = y;
    d.output_frames = (long)cap;
    d.src_ratio = ratio;
    d.end_of_input = 1;
    int rc = src_simple(&d, SRC_SINC_FASTEST, 1);
    if (rc) {
        snprintf(errstr, errstr_size, "resampling %d -> %d Hz: %s", from_rate, to_rate,
                 src_strerror(rc));
        free(y);
        return -1;
    }
    *out = y;
    *n_out = (size_t)d.output_frames_gen;
    return 0;
}

int audio_decode(const void *data, size_t len, int target_rate, const audio_limits_t *lim,
                 float **out, size_t *n_out, int *in_rate, double *seconds, char *errstr,
                 size_t errstr_size) {
    audio_limits_t def;
    if (!lim) {
        audio_default_limits(&def);
        lim = &def;
    }
    if (len == 0) {
        snprintf(errstr, errstr_size, "empty audio");
        return -1;
    }
    if (len > lim->max_bytes) {
        snprintf(errstr, errstr_size, "audio of %zu bytes exceeds the limit of %zu", len,
                 lim->max_bytes);
        return -1;
    }
    mem_cursor_t cur = {data, (sf_count_t)len, 0};
    SF_VIRTUAL_IO vio = {mem_get_filelen, mem_seek, mem_read, mem_write, mem_tell};
    SF_INFO info;
    memset(&info, 0, sizeof info);
    SNDFILE *sf = sf_open_virtual(&vio, SFM_READ, &info, &cur);
    if (!sf) {
        snprintf(errstr, errstr_size, "not a supported audio format: %s", sf_strerror(NULL));
        return -1;
    }
    float *mono = NULL, *frame = NULL;
    int rc = -1;
    if (info.samplerate < lim->min_rate || info.samplerate > lim->max_rate) {
        snprintf(errstr, errstr_size, "sample rate %d Hz outside %d..%d", info.samplerate,
                 lim->min_rate, lim->max_rate);
        goto done;
    }
    if (info.channels < 1 || info.channels > lim->max_channels) {
        snprintf(errstr, errstr_size, "%d channels (at most %d)", info.channels, lim->max_channels);
        goto done;
    }
    size_t max_frames = (size_t)(lim->max_seconds * info.samplerate);
    /* The header's frame count is a claim, not a fact: it is checked
     * against the limit, but memory grows only with what actually decodes. */
    if (info.frames > 0 && info.frames != SF_COUNT_MAX && (size_t)info.frames > max_frames) {
        snprintf(errstr, errstr_size, "duration %.1f s exceeds the limit of %.0f s",
                 (double)info.frames / info.samplerate, lim->max_seconds);
        goto done;
    }
    /* Floats are read as they are, so non-finite samples can be refused. */
    sf_command(sf, SFC_SET_NORM_FLOAT, NULL, SF_TRUE);
    const size_t chunk = 4096;
    int ch = info.channels;
    frame = malloc(chunk * ch * sizeof *frame);
    size_t cap = 0, n = 0;
    if (!frame) {
        snprintf(errstr, errstr_size, "out of memory");
        goto done;
    }
    for (;;) {
        sf_count_t got = sf_readf_float(sf, frame, (sf_count_t)chunk);
        if (got <= 0) break;
        if (n + (size_t)got > max_frames) {
            snprintf(errstr, errstr_size, "duration exceeds the limit of %.0f s", lim->max_seconds);
            goto done;
        }
        if (n + (size_t)got > cap) {
            size_t nc = cap ? cap * 2 : chunk * 4;
            while (nc < n + (size_t)got) nc *= 2;
            if (nc > max_frames) nc = max_frames;
            float *g = realloc(mono, nc * sizeof *g);
            if (!g) {
                snprintf(errstr, errstr_size, "out of memory");
                goto done;
            }
            mono = g;
            cap = nc;
        }
        for (sf_count_t i = 0; i < got; i++) {
            float s = 0.0f;
            for (int c = 0; c < ch; c++) {
                float v = frame[i * ch + c];
                if (!isfinite(v)) {
                    snprintf(errstr, errstr_size, "non-finite sample at frame %zu", n + (size_t)i);
                    goto done;
                }
                s += v;
            }
            s /= (float)ch;
            /* Float files may exceed full scale; clip so features stay sane. */
            mono[n + i] = s > 1.0f ? 1.0f : s < -1.0f ? -1.0f : s;
        }
        n += (size_t)got;
    }
    if (sf_error(sf) != SF_ERR_NO_ERROR && n == 0) {
        snprintf(errstr, errstr_size, "decoding failed: %s", sf_strerror(sf));
        goto done;
    }
    if (n == 0) {
        snprintf(errstr, errstr_size, "audio has no samples");
        goto done;
    }
    *in_rate = info.samplerate;
    *seconds = (double)n / info.samplerate;
    if (info.samplerate != target_rate) {
        float *y = NULL;
        size_t ny = 0;
        if (audio_resample(mono, n, info.samplerate, target_rate, &y, &ny, errstr, errstr_size) < 0)
            goto done;
        free(mono);
        mono = y;
        n = ny;
        /* The sinc filter rings past full scale on clipped input. */
        for (size_t i = 0; i < n; i++)
            mono[i] = mono[i] > 1.0f ? 1.0f : mono[i] < -1.0f ? -1.0f : mono[i];
    }
    *out = mono;
    *n_out = n;
    mono = NULL;
    rc = 0;
done:
    free(frame);
    free(mono);
    sf_close(sf);
    return rc;
}

static void put16(unsigned char *p, uint16_t v) {
    p[0] = v & 0xff;
    p[1] = v >> 8;
}
static void put32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (v >> (8 * i)) & 0xff;
}

void *audio_wav16(const float *x, size_t n, int rate, size_t *len) {
    size_t bytes = 44 + 2 * n;
    unsigned char *b = malloc(bytes);
    if (!b) return NULL;
    memcpy(b, "RIFF", 4);
    put32(b + 4, (uint32_t)(bytes - 8));
    memcpy(b + 8, "WAVEfmt ", 8);
    put32(b + 16, 16);
    put16(b + 20, 1);
    put16(b + 22, 1);
    put32(b + 24, (uint32_t)rate);
    put32(b + 28, (uint32_t)rate * 2);
    put16(b + 32, 2);
    put16(b + 34, 16);
    memcpy(b + 36, "data", 4);
    put32(b + 40, (uint32_t)(2 * n));
    for (size_t i = 0; i < n; i++) {
        float v = x[i] * 32767.0f;
        v = v > 32767.0f ? 32767.0f : v < -32768.0f ? -32768.0f : v;
        put16(b + 44 + 2 * i, (uint16_t)(int16_t)lrintf(v));
    }
    *len = bytes;
    return b;
}
