/* test_cnn.c: the CNN kernels against naive references and finite
 * differences, training on a synthetic task, the model file. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "kernels/vision/cnn.h"

static float frand(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((*s >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

static cnn_t *make(const char *arch, int c, int h, int w, int k) {
    char err[256];
    cnn_t *net = cnn_new(arch, c, h, w, k, NULL, err, sizeof err);
    if (!net) fail_msg("cnn_new: %s", err);
    return net;
}

/* A conv layer with padding and stride must equal the textbook loop. */
static void test_conv_matches_naive(void **state) {
    (void)state;
    const char *arch = "[conv]\nfilters=4\nsize=3\nstride=2\npad=1\n"
                       "[dense]\noutput=classes\n[softmax]\n";
    cnn_t *net = make(arch, 2, 7, 6, 3);
    char err[128];
    assert_int_equal(cnn_set_batch(net, 3, err, sizeof err), 0);
    cnn_init(net, 7);
    uint64_t s = 11;
    cnn_layer_t *l = &net->layers[0];
    for (size_t i = 0; i < l->n_b; i++) l->b[i] = frand(&s);
    float x[3 * 2 * 7 * 6];
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++) x[i] = frand(&s);
    cnn_forward(net, x, 3, 0);
    assert_int_equal(l->out_h, 4);
    assert_int_equal(l->out_w, 3);
    for (int b = 0; b < 3; b++)
        for (int oc = 0; oc < 4; oc++)
            for (int oy = 0; oy < 4; oy++)
                for (int ox = 0; ox < 3; ox++) {
                    double sum = l->b[oc];
                    for (int c = 0; c < 2; c++)
                        for (int i = 0; i < 3; i++)
                            for (int j = 0; j < 3; j++) {
                                int iy = oy * 2 - 1 + i, ix = ox * 2 - 1 + j;
                                if (iy < 0 || iy >= 7 || ix < 0 || ix >= 6) continue;
                                sum += (double)l->w[((oc * 2 + c) * 3 + i) * 3 + j] *
                                       x[((b * 2 + c) * 7 + iy) * 6 + ix];
                            }
                    float got = l->out[b * l->out_size + (oc * 4 + oy) * 3 + ox];
                    assert_true(fabs(got - sum) < 1e-5);
                }
    cnn_free(net);
}

/* A batch gives the same outputs as its samples one by one, whatever the
 * im2col block size, and the 2x2 max-pool fast path (train or not) agrees
 * with the generic loop (a 2x2 window with stride 1 never takes it). */
static void test_batch_equals_single(void **state) {
    (void)state;
    char err[128];
    cnn_t *net = make(cnn_seed_arch, 1, 28, 28, 10);
    assert_int_equal(cnn_set_batch(net, 7, err, sizeof err), 0);
    cnn_init(net, 5);
    static float x[7 * 784], p1[7 * 10];
    uint64_t s = 3;
    for (int i = 0; i < 7 * 784; i++) x[i] = (frand(&s) + 1.0f) / 2.0f;
    for (int b = 0; b < 7; b++)
        memcpy(p1 + b * 10, cnn_forward(net, x + b * 784, 1, 0), sizeof(float) * 10);
    size_t saved = cnn_block_bytes;
    size_t sizes[] = {saved, 3 * 9 * 676 * sizeof(float), 1};
    for (int k = 0; k < 3; k++) {
        cnn_block_bytes = sizes[k];
        for (int train = 0; train < 2; train++) {
            const float *p = cnn_forward(net, x, 7, train);
            for (int i = 0; i < 70; i++) assert_true(fabsf(p[i] - p1[i]) < 1e-5f);
        }
    }
    cnn_block_bytes = saved;
    cnn_free(net);
}

/* Pooling and dense layers against direct formulas. */
static void test_pool_dense_match_naive(void **state) {
    (void)state;
    const char *arch =
        "[maxpool]\n[avgpool]\nsize=2\nstride=1\n[dense]\noutput=classes\n[softmax]\n";
    cnn_t *net = make(arch, 1, 6, 6, 4);
    cnn_init(net, 3);
    float x[36];
    uint64_t s = 5;
    for (int i = 0; i < 36; i++) x[i] = frand(&s);
    const float *p = cnn_forward(net, x, 1, 0);
    float mp[9], ap[4], logits[4];
    for (int y = 0; y < 3; y++)
        for (int xx = 0; xx < 3; xx++) {
            float m = -1e9f;
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < 2; j++) m = fmaxf(m, x[(2 * y + i) * 6 + 2 * xx + j]);
            mp[y * 3 + xx] = m;
        }
    for (int y = 0; y < 2; y++)
        for (int xx = 0; xx < 2; xx++)
            ap[y * 2 + xx] = (mp[y * 3 + xx] + mp[y * 3 + xx + 1] + mp[(y + 1) * 3 + xx] +
                              mp[(y + 1) * 3 + xx + 1]) /
                             4.0f;
    const cnn_layer_t *d = &net->layers[2];
    double z = 0.0;
    for (int k = 0; k < 4; k++) {
        logits[k] = d->b[k];
        for (int i = 0; i < 4; i++) logits[k] += d->w[k * 4 + i] * ap[i];
        z += exp(logits[k]);
    }
    for (int k = 0; k < 4; k++) assert_true(fabs(p[k] - exp(logits[k]) / z) < 1e-5);
    cnn_free(net);
}

static float loss_at(cnn_t *net, const float *x, const int *y, int n) {
    const float *p = cnn_forward(net, x, n, 1);
    double l = 0;
    for (int b = 0; b < n; b++) l -= log(p[b * net->n_classes + y[b]]);
    return (float)(l / n);
}

/* Every parameter's analytic gradient equals the central finite difference
 * of the loss (dropout masks are fixed for a given step). */
static void gradcheck(const char *arch, int c, int h, int w, int k, int n) {
    cnn_t *net = make(arch, c, h, w, k);
    char err[128];
    assert_int_equal(cnn_set_batch(net, n, err, sizeof err), 0);
    cnn_init(net, 42);
    uint64_t s = 99;
    for (size_t i = 0; i < net->n_params; i++) net->params[i] += 0.05f * frand(&s);
    size_t nx = (size_t)n * c * h * w;
    float *x = malloc(nx * sizeof *x);
    int *y = malloc((size_t)n * sizeof *y);
    for (size_t i = 0; i < nx; i++) x[i] = frand(&s);
    for (int b = 0; b < n; b++) y[b] = b % k;
    cnn_forward(net, x, n, 1);
    cnn_backward(net, x, y, n);
    float *g = malloc(net->n_params * sizeof *g);
    memcpy(g, net->grads, net->n_params * sizeof *g);
    int bad = 0;
    double worst = 0;
    for (size_t i = 0; i < net->n_params; i++) {
        const float eps = 5e-4f, p0 = net->params[i];
        net->params[i] = p0 + eps;
        float lp = loss_at(net, x, y, n);
        net->params[i] = p0 - eps;
        float lm = loss_at(net, x, y, n);
        net->params[i] = p0;
        double num = ((double)lp - lm) / (2.0 * eps);
        double diff = fabs(num - g[i]);
        double tol = 2e-3 + 2e-2 * fmax(fabs(num), fabs(g[i]));
        if (diff > worst) worst = diff;
        if (diff > tol) {
            /* a ReLU or max-pool kink inside [p-eps, p+eps] can make one
             * difference meaningless: allow a handful */
            if (++bad <= 3) print_message("param %zu: analytic %g numeric %g\n", i, g[i], num);
        }
    }
    print_message("gradcheck %zu params, worst abs diff %.2e, %d off\n", net->n_params, worst, bad);
    assert_true(bad <= (int)(net->n_params / 100));
    free(g);
    free(x);
    free(y);
    cnn_free(net);
}

static void test_gradcheck_conv_pools_dense_dropout(void **state) {
    (void)state;
    gradcheck("[conv]\nfilters=3\nsize=3\npad=1\nactivation=relu\n"
              "[maxpool]\nsize=2\n"
              "[conv]\nfilters=4\nsize=3\nstride=2\npad=1\n"
              "[avgpool]\nsize=2\n"
              "[dense]\noutput=6\nactivation=relu\n"
              "[dropout]\nprobability=0.3\n"
              "[dense]\noutput=classes\n[softmax]\n",
              2, 8, 8, 3, 4);
}

/* The same with convolutions unfolded one or two samples per block, so the
 * block boundaries in forward and backward are crossed. */
static void test_gradcheck_small_blocks(void **state) {
    (void)state;
    size_t saved = cnn_block_bytes;
    cnn_block_bytes = 2 * 18 * 64 * sizeof(float); /* 2 samples of the first conv */
    gradcheck("[conv]\nfilters=3\nsize=3\npad=1\nactivation=relu\n"
              "[maxpool]\nsize=2\n"
              "[conv]\nfilters=4\nsize=3\nstride=2\npad=1\n"
              "[dense]\noutput=classes\n[softmax]\n",
              2, 8, 8, 3, 5);
    /* odd sizes: max-pool windows leave a last row and column out */
    gradcheck("[conv]\nfilters=3\nsize=3\npad=1\nactivation=relu\n"
              "[maxpool]\nsize=2\n"
              "[dense]\noutput=classes\n[softmax]\n",
              2, 9, 7, 3, 3);
    cnn_block_bytes = saved;
}

static void test_gradcheck_gap(void **state) {
    (void)state;
    gradcheck("[conv]\nfilters=5\nsize=2\nactivation=relu\n[conv]\nfilters=4\nsize=3\n"
              "[gap]\n[dense]\noutput=classes\n[softmax]\n",
              3, 6, 5, 4, 3);
}

/* Synthetic task: horizontal vs vertical vs diagonal bars at random
 * positions with noise. Both optimizers must learn it. */
static void make_bars(float *x, int *y, int n, uint64_t seed) {
    uint64_t s = seed;
    for (int i = 0; i < n; i++) {
        int cls = i % 3;
        int pos = (int)((frand(&s) + 1.0f) * 4.0f) % 8 + 2;
        float *img = x + (size_t)i * 144;
        for (int p = 0; p < 144; p++) img[p] = 0.2f * frand(&s);
        for (int t = 0; t < 12; t++) {
            int r = cls == 0 ? pos : t, c = cls == 1 ? pos : t;
            if (cls == 2) r = t, c = (t + pos) % 12;
            img[r * 12 + c] += 1.0f;
        }
        y[i] = cls;
    }
}

static double train_bars(cnn_opt_t opt, int epochs) {
    const char *arch = "[conv]\nfilters=8\nsize=3\nactivation=relu\n[maxpool]\n"
                       "[dense]\noutput=16\nactivation=relu\n[dense]\noutput=classes\n[softmax]\n";
    cnn_t *net = make(arch, 1, 12, 12, 3);
    char err[128];
    assert_int_equal(cnn_set_batch(net, 16, err, sizeof err), 0);
    cnn_init(net, 1);
    enum { N = 480, T = 150 };
    float *x = malloc(sizeof(float) * 144 * N), *xt = malloc(sizeof(float) * 144 * T);
    int y[N], yt[T];
    make_bars(x, y, N, 3);
    make_bars(xt, yt, T, 4);
    for (int e = 0; e < epochs; e++)
        for (int b = 0; b < N; b += 16) {
            cnn_forward(net, x + (size_t)b * 144, 16, 1);
            cnn_backward(net, x + (size_t)b * 144, y + b, 16);
            assert_int_equal(cnn_step(net, &opt), 0);
        }
    int ok = 0;
    for (int i = 0; i < T; i++) {
        const float *p = cnn_forward(net, xt + (size_t)i * 144, 1, 0);
        int best = 0;
        for (int k = 1; k < 3; k++)
            if (p[k] > p[best]) best = k;
        ok += best == yt[i];
    }
    free(x);
    free(xt);
    cnn_free(net);
    return (double)ok / T;
}

static void test_training_learns_bars(void **state) {
    (void)state;
    double adam = train_bars(cnn_opt_adam(3e-3f), 4);
    double sgd = train_bars(cnn_opt_sgd(0.05f, 0.9f), 4);
    print_message("bars accuracy: adam %.3f, sgd+momentum %.3f\n", adam, sgd);
    assert_true(adam >= 0.95);
    assert_true(sgd >= 0.95);
}

/* A saved model loads with the same outputs and labels; damage is refused. */
static void test_save_load_round_trip(void **state) {
    (void)state;
    const char *labels[] = {"cat", "dog", "bird"};
    char err[256];
    cnn_t *net = cnn_new(cnn_seed_arch, 1, 28, 28, 3, labels, err, sizeof err);
    assert_non_null(net);
    cnn_init(net, 9);
    float x[784];
    uint64_t s = 1;
    for (int i = 0; i < 784; i++) x[i] = frand(&s);
    float p0[3];
    memcpy(p0, cnn_forward(net, x, 1, 0), sizeof p0);
    char path[] = "/tmp/test_cnn_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(cnn_save(net, path, err, sizeof err), 0);
    cnn_t *back = cnn_load(path, err, sizeof err);
    if (!back) fail_msg("%s", err);
    const float *p1 = cnn_forward(back, x, 1, 0);
    for (int k = 0; k < 3; k++) assert_true(p0[k] == p1[k]);
    assert_string_equal(back->labels[1], "dog");
    /* the seed architecture: 26-13-11-5-3 -> 576 -> 64 */
    size_t dim = 0;
    assert_non_null(cnn_embedding(back, &dim));
    assert_int_equal(dim, 64);
    assert_int_equal(back->layers[5].in_size, 576);

    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)sz);
    assert_int_equal(fread(buf, 1, (size_t)sz, f), (size_t)sz);
    fclose(f);
    unlink(path);
    assert_null(cnn_load_mem(buf, (size_t)sz / 2, err, sizeof err));
    buf[100] ^= 1;
    assert_null(cnn_load_mem(buf, (size_t)sz, err, sizeof err));
    assert_non_null(strstr(err, "checksum"));
    memcpy(buf, "XXXX", 4);
    assert_null(cnn_load_mem(buf, (size_t)sz, err, sizeof err));
    free(buf);
    cnn_free(back);
    cnn_free(net);
}

static void test_bad_arch_is_refused(void **state) {
    (void)state;
    char err[256];
    assert_null(
        cnn_new("[conv]\nfilters=4\n[dense]\noutput=classes\n", 1, 8, 8, 3, NULL, err, sizeof err));
    assert_non_null(strstr(err, "softmax"));
    assert_null(cnn_new("[bogus]\n[softmax]\n", 1, 8, 8, 3, NULL, err, sizeof err));
    assert_null(cnn_new("[conv]\nfilters=4\nsize=9\n[dense]\noutput=classes\n[softmax]\n", 1, 8, 8,
                        3, NULL, err, sizeof err));
    assert_null(cnn_new("[input]\nwidth=32\nheight=32\nchannels=3\n[dense]\noutput=classes\n"
                        "[softmax]\n",
                        1, 28, 28, 3, NULL, err, sizeof err));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_matches_naive),
        cmocka_unit_test(test_pool_dense_match_naive),
        cmocka_unit_test(test_batch_equals_single),
        cmocka_unit_test(test_gradcheck_conv_pools_dense_dropout),
        cmocka_unit_test(test_gradcheck_small_blocks),
        cmocka_unit_test(test_gradcheck_gap),
        cmocka_unit_test(test_training_learns_bars),
        cmocka_unit_test(test_save_load_round_trip),
        cmocka_unit_test(test_bad_arch_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
