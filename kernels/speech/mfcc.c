/* mfcc.c: the MFCC front end (see mfcc.h for the exact definition). */
#include "kernels/speech/mfcc.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

struct mfcc {
    int rate, frame_len, hop, n_fft, n_bins;
    float dither;
    float *window; /* frame_len */
    float *fb;     /* MFCC_FILTERS x n_bins */
    float *dct;    /* MFCC_CEPS x MFCC_FILTERS, liftering folded in */
    float *cos_tw; /* n_fft / 2 twiddles */
    float *sin_tw;
    int *bitrev;        /* n_fft / 2 */
    float *re, *im;     /* n_fft / 2: the frame packed as complex pairs */
    float *power;       /* n_bins */
    int *fb_lo, *fb_hi; /* each filter's non-zero bins [lo, hi) */
};

void mfcc_destroy(mfcc_t *m) {
    if (!m) return;
    free(m->window);
    free(m->fb);
    free(m->dct);
    free(m->cos_tw);
    free(m->sin_tw);
    free(m->bitrev);
    free(m->re);
    free(m->im);
    free(m->power);
    free(m->fb_lo);
    free(m->fb_hi);
    free(m);
}

static double hz_to_mel(double f) {
    return 2595.0 * log10(1.0 + f / 700.0);
}

mfcc_t *mfcc_new(int rate, float dither, char *errstr, size_t errstr_size) {
    if (rate < 4000 || rate > 192000) {
        snprintf(errstr, errstr_size, "mfcc: sample rate %d outside 4000..192000", rate);
        return NULL;
    }
    mfcc_t *m = calloc(1, sizeof *m);
    if (!m) goto oom;
    m->rate = rate;
    m->dither = dither;
    m->frame_len = (int)lround(0.025 * rate);
    m->hop = (int)lround(0.010 * rate);
    m->n_fft = 1;
    int log2n = 0;
    while (m->n_fft < m->frame_len) m->n_fft *= 2, log2n++;
    m->n_bins = m->n_fft / 2 + 1;
    m->window = malloc(m->frame_len * sizeof *m->window);
    m->fb = calloc((size_t)MFCC_FILTERS * m->n_bins, sizeof *m->fb);
    m->dct = malloc(MFCC_CEPS * MFCC_FILTERS * sizeof *m->dct);
    m->cos_tw = malloc(m->n_fft / 2 * sizeof *m->cos_tw);
    m->sin_tw = malloc(m->n_fft / 2 * sizeof *m->sin_tw);
    m->bitrev = malloc(m->n_fft / 2 * sizeof *m->bitrev);
    m->re = malloc(m->n_fft / 2 * sizeof *m->re);
    m->im = malloc(m->n_fft / 2 * sizeof *m->im);
    m->power = malloc(m->n_bins * sizeof *m->power);
    m->fb_lo = malloc(MFCC_FILTERS * sizeof *m->fb_lo);
    m->fb_hi = malloc(MFCC_FILTERS * sizeof *m->fb_hi);
    if (!m->window || !m->fb || !m->dct || !m->cos_tw || !m->sin_tw || !m->bitrev || !m->re ||
        !m->im || !m->power || !m->fb_lo || !m->fb_hi)
        goto oom;
    for (int i = 0; i < m->frame_len; i++)
        m->window[i] = (float)(0.54 - 0.46 * cos(2.0 * M_PI * i / (m->frame_len - 1)));
    for (int i = 0; i < m->n_fft / 2; i++) {
        m->cos_tw[i] = (float)cos(2.0 * M_PI * i / m->n_fft);
        m->sin_tw[i] = (float)-sin(2.0 * M_PI * i / m->n_fft);
    }
    /* A real frame of n_fft samples is transformed as n_fft/2 complex
     * pairs; the bit reversal is for that half size. */
    for (int i = 0; i < m->n_fft / 2; i++) {
        int r = 0;
        for (int b = 0; b < log2n - 1; b++)
            if (i & (1 << b)) r |= 1 << (log2n - 2 - b);
        m->bitrev[i] = r;
    }
    double mlo = hz_to_mel(0.0), mhi = hz_to_mel(rate / 2.0);
    double edge[MFCC_FILTERS + 2];
    for (int j = 0; j < MFCC_FILTERS + 2; j++) edge[j] = mlo + (mhi - mlo) * j / (MFCC_FILTERS + 1);
    for (int k = 0; k < m->n_bins; k++) {
        double mk = hz_to_mel((double)k * rate / m->n_fft);
        for (int j = 0; j < MFCC_FILTERS; j++) {
            double l = edge[j], c = edge[j + 1], r = edge[j + 2], w = 0.0;
            if (mk > l && mk <= c)
                w = (mk - l) / (c - l);
            else if (mk > c && mk < r)
                w = (r - mk) / (r - c);
            m->fb[j * m->n_bins + k] = (float)w;
        }
    }
    for (int j = 0; j < MFCC_FILTERS; j++) {
        int lo = 0, hi = 0;
        while (lo < m->n_bins && m->fb[j * m->n_bins + lo] == 0.0f) lo++;
        for (int k = lo; k < m->n_bins; k++)
            if (m->fb[j * m->n_bins + k] != 0.0f) hi = k + 1;
        m->fb_lo[j] = lo;
        m->fb_hi[j] = hi > lo ? hi : lo;
    }
    for (int i = 0; i < MFCC_CEPS; i++) {
        double lift = 1.0 + 11.0 * sin(M_PI * i / 22.0);
        for (int j = 0; j < MFCC_FILTERS; j++)
            m->dct[i * MFCC_FILTERS + j] =
                (float)(lift * sqrt(2.0 / MFCC_FILTERS) * cos(M_PI * i * (j + 0.5) / MFCC_FILTERS));
    }
    return m;
oom:
    snprintf(errstr, errstr_size, "out of memory");
    mfcc_destroy(m);
    return NULL;
}

size_t mfcc_frames(const mfcc_t *m, size_t n) {
    if (n < (size_t)m->frame_len) return 0;
    return 1 + (n - m->frame_len) / m->hop;
}

/* Power spectrum |X_k|^2, k = 0..n_fft/2, of the real frame packed in re/im
 * as z_i = x_{2i} + j x_{2i+1}: an n_fft/2-point complex FFT (iterative
 * radix-2, in place) and the usual split into even and odd halves. */
static void power_spectrum(mfcc_t *m) {
    int N = m->n_fft, h = N / 2;
    float *re = m->re, *im = m->im;
    for (int i = 0; i < h; i++) {
        int j = m->bitrev[i];
        if (j > i) {
            float t = re[i];
            re[i] = re[j];
            re[j] = t;
            t = im[i];
            im[i] = im[j];
            im[j] = t;
        }
    }
    for (int len = 2; len <= h; len *= 2) {
        int half = len / 2, step = N / len;
        for (int s = 0; s < h; s += len) {
            for (int k = 0; k < half; k++) {
                float wr = m->cos_tw[k * step], wi = m->sin_tw[k * step];
                int a = s + k, b = a + half;
                float tr = re[b] * wr - im[b] * wi;
                float ti = re[b] * wi + im[b] * wr;
                re[b] = re[a] - tr;
                im[b] = im[a] - ti;
                re[a] += tr;
                im[a] += ti;
            }
        }
    }
    for (int k = 0; k <= h; k++) {
        int a = k % h, b = (h - k) % h;
        float zr = re[a], zi = im[a], cr = re[b], ci = -im[b];
        float er = 0.5f * (zr + cr), ei = 0.5f * (zi + ci);
        float orr = 0.5f * (zi - ci), oi = -0.5f * (zr - cr);
        float wr = k < h ? m->cos_tw[k] : -1.0f, wi = k < h ? m->sin_tw[k] : 0.0f;
        float xr = er + wr * orr - wi * oi, xi = ei + wr * oi + wi * orr;
        m->power[k] = xr * xr + xi * xi;
    }
}

/* Deltas of src columns [src_col, src_col + MFCC_CEPS) into dst_col. */
static void deltas(float *f, size_t T, int src_col, int dst_col) {
    for (size_t t = 0; t < T; t++) {
        for (int i = 0; i < MFCC_CEPS; i++) {
            float d = 0.0f;
            for (int k = 1; k <= 2; k++) {
                size_t up = t + k < T ? t + k : T - 1;
                size_t dn = t >= (size_t)k ? t - k : 0;
                d += k * (f[up * MFCC_DIM + src_col + i] - f[dn * MFCC_DIM + src_col + i]);
            }
            f[t * MFCC_DIM + dst_col + i] = d / 10.0f;
        }
    }
}

/* The dither of sample p: a hash of its index, so a sample gets the same
 * value in every frame that holds it. */
static inline float dither_at(const mfcc_t *m, size_t p) {
    uint32_t h = (uint32_t)p * 2654435761u + 12345u;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    return m->dither * ((float)(h & 0xffff) / 32768.0f - 1.0f);
}

size_t mfcc_compute(mfcc_t *m, const float *x, size_t n, float *out) {
    size_t T = mfcc_frames(m, n);
    if (T == 0) return 0;
    float mel[MFCC_FILTERS];
    int dith = m->dither > 0.0f;
    for (size_t t = 0; t < T; t++) {
        size_t start = t * m->hop;
        float energy = 0.0f;
        /* Pre-emphasis over the whole signal, computed per frame from the
         * samples themselves so no copy of x is needed. */
        float prev = start ? x[start - 1] + (dith ? dither_at(m, start - 1) : 0.0f) : 0.0f;
        for (int i = 0; i < m->frame_len; i++) {
            size_t p = start + i;
            float cur = x[p] + (dith ? dither_at(m, p) : 0.0f);
            float y = cur - 0.97f * prev;
            prev = cur;
            energy += y * y;
            if (i & 1)
                m->im[i >> 1] = y * m->window[i];
            else
                m->re[i >> 1] = y * m->window[i];
        }
        for (int i = m->frame_len; i < m->n_fft; i++) {
            if (i & 1)
                m->im[i >> 1] = 0.0f;
            else
                m->re[i >> 1] = 0.0f;
        }
        power_spectrum(m);
        for (int j = 0; j < MFCC_FILTERS; j++) {
            const float *w = m->fb + (size_t)j * m->n_bins;
            float e = 0.0f;
            for (int k = m->fb_lo[j]; k < m->fb_hi[j]; k++) e += w[k] * m->power[k];
            mel[j] = logf(e > 1e-10f ? e : 1e-10f);
        }
        float *o = out + t * MFCC_DIM;
        for (int i = 0; i < MFCC_CEPS; i++) {
            const float *d = m->dct + i * MFCC_FILTERS;
            float c = 0.0f;
            for (int j = 0; j < MFCC_FILTERS; j++) c += d[j] * mel[j];
            o[i] = c;
        }
        o[0] = logf(energy > 1e-10f ? energy : 1e-10f);
    }
    for (int i = 0; i < MFCC_CEPS; i++) {
        double mean = 0.0;
        for (size_t t = 0; t < T; t++) mean += out[t * MFCC_DIM + i];
        mean /= (double)T;
        for (size_t t = 0; t < T; t++) out[t * MFCC_DIM + i] -= (float)mean;
    }
    deltas(out, T, 0, MFCC_CEPS);
    deltas(out, T, MFCC_CEPS, 2 * MFCC_CEPS);
    return T;
}
