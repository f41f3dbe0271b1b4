/* recognize.c: decode -> MFCC -> word decoder. */
#include "kernels/speech/recognize.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/speech/mfcc.h"

struct sph_rec {
    sph_model_t *m;
    mfcc_t *fe;
    audio_limits_t lim;
    float *feat;
    size_t feat_cap; /* frames */
    sph_hyp_t *hyp;
    int hyp_cap;
    float *padded;
    size_t padded_cap;
};

sph_rec_t *sph_rec_new(sph_model_t *m, const audio_limits_t *lim, char *errstr,
                       size_t errstr_size) {
    sph_rec_t *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(errstr, errstr_size, "out of memory");
        sph_destroy(m);
        return NULL;
    }
    r->m = m;
    if (lim)
        r->lim = *lim;
    else
        audio_default_limits(&r->lim);
    if (sph_dim(m) != MFCC_DIM) {
        snprintf(errstr, errstr_size, "model features have %d dimensions, the front end %d",
                 sph_dim(m), MFCC_DIM);
        sph_rec_destroy(r);
        return NULL;
    }
    r->fe = mfcc_new(sph_rate(m), SPH_DITHER, errstr, errstr_size);
    if (!r->fe) {
        sph_rec_destroy(r);
        return NULL;
    }
    return r;
}

void sph_rec_destroy(sph_rec_t *r) {
    if (!r) return;
    sph_destroy(r->m);
    mfcc_destroy(r->fe);
    free(r->feat);
    free(r->hyp);
    free(r->padded);
    free(r);
}

sph_model_t *sph_rec_model(sph_rec_t *r) {
    return r->m;
}

int sph_rec_samples(sph_rec_t *r, const float *x, size_t n, sph_grammar_t g, sph_word_t *out,
                    int max_out, char *errstr, size_t errstr_size) {
    size_t pad = (size_t)(SPH_PAD_SECONDS * sph_rate(r->m));
    if (n + 2 * pad > r->padded_cap) {
        float *p = realloc(r->padded, (n + 2 * pad) * sizeof *p);
        if (!p) {
            snprintf(errstr, errstr_size, "out of memory");
            return -1;
        }
        r->padded = p;
        r->padded_cap = n + 2 * pad;
    }
    memset(r->padded, 0, pad * sizeof *r->padded);
    memcpy(r->padded + pad, x, n * sizeof *x);
    memset(r->padded + pad + n, 0, pad * sizeof *r->padded);
    x = r->padded;
    double dur = (double)n / sph_rate(r->m), off = SPH_PAD_SECONDS;
    n += 2 * pad;
    size_t T = mfcc_frames(r->fe, n);
    if (T == 0) return 0;
    if (T > r->feat_cap) {
        float *f = realloc(r->feat, T * MFCC_DIM * sizeof *f);
        if (!f) {
            snprintf(errstr, errstr_size, "out of memory");
            return -1;
        }
        r->feat = f;
        r->feat_cap = T;
    }
    if (max_out > r->hyp_cap) {
        sph_hyp_t *h = realloc(r->hyp, max_out * sizeof *h);
        if (!h) {
            snprintf(errstr, errstr_size, "out of memory");
            return -1;
        }
        r->hyp = h;
        r->hyp_cap = max_out;
    }
    mfcc_compute(r->fe, x, n, r->feat);
    int nw = sph_decode(r->m, r->feat, (int)T, g, r->hyp, max_out, errstr, errstr_size);
    for (int i = 0; i < nw && i < max_out; i++) {
        out[i].word = r->hyp[i].word;
        double st = r->hyp[i].start * SPH_FRAME_SECONDS - off;
        double en = (r->hyp[i].end - 1) * SPH_FRAME_SECONDS + SPH_WINDOW_SECONDS - off;
        out[i].start = (float)(st < 0 ? 0 : st > dur ? dur : st);
        out[i].end = (float)(en < 0 ? 0 : en > dur ? dur : en);
        out[i].confidence = r->hyp[i].confidence;
    }
    return nw;
}

int sph_rec_audio(sph_rec_t *r, const void *data, size_t len, sph_grammar_t g, sph_word_t *out,
                  int max_out, double *seconds, char *errstr, size_t errstr_size) {
    float *x = NULL;
    size_t n = 0;
    int in_rate = 0;
    if (audio_decode(data, len, sph_rate(r->m), &r->lim, &x, &n, &in_rate, seconds, errstr,
                     errstr_size) < 0)
        return -1;
    int rc = sph_rec_samples(r, x, n, g, out, max_out, errstr, errstr_size);
    free(x);
    return rc;
}
