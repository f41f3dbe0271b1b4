/* test_svm.c: linear (dual coordinate descent) and RBF (SMO) SVMs on
 * synthetic problems with known answers, Platt calibration, the file. */
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

#include "kernels/vision/svm.h"

static double gauss(uint64_t *s) {
    double u = 0, v = 0;
    do {
        *s = *s * 6364136223846793005ull + 1442695040888963407ull;
        u = ((*s >> 11) + 0.5) / 9007199254740992.0;
        *s = *s * 6364136223846793005ull + 1442695040888963407ull;
        v = ((*s >> 11) + 0.5) / 9007199254740992.0;
    } while (u <= 0);
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

/* k Gaussian blobs in dim dimensions, centres 4 apart on the axes. */
static void blobs(float *x, int *y, int n, int dim, int k, uint64_t seed) {
    uint64_t s = seed;
    for (int i = 0; i < n; i++) {
        y[i] = i % k;
        for (int d = 0; d < dim; d++) x[i * dim + d] = (float)(gauss(&s) + (d == y[i] ? 4.0 : 0.0));
    }
}

/* Two rings: class 0 inside radius 1, class 1 between 2 and 3. No line
 * separates them. */
static void rings(float *x, int *y, int n, uint64_t seed) {
    uint64_t s = seed;
    for (int i = 0; i < n; i++) {
        y[i] = i % 2;
        double a = gauss(&s) * 3, r = y[i] ? 2.0 + fabs(gauss(&s)) * 0.3 : fabs(gauss(&s)) * 0.5;
        x[2 * i] = (float)(r * cos(a));
        x[2 * i + 1] = (float)(r * sin(a));
    }
}

static double accuracy(svm_t *m, const float *x, const int *y, int n) {
    float probs[16];
    int ok = 0;
    for (int i = 0; i < n; i++) ok += svm_predict(m, x + (size_t)i * m->dim, probs) == y[i];
    return (double)ok / n;
}

static void test_linear_separates_blobs(void **state) {
    (void)state;
    enum { N = 600, D = 8, K = 4 };
    float *x = malloc(sizeof(float) * N * D), *xt = malloc(sizeof(float) * N * D);
    int y[N], yt[N];
    blobs(x, y, N, D, K, 1);
    blobs(xt, yt, N, D, K, 2);
    char err[256];
    svm_params_t p = svm_defaults(SVM_LINEAR);
    svm_t *m = svm_train(SVM_LINEAR, x, y, N, D, K, NULL, &p, NULL, NULL, err, sizeof err);
    assert_non_null(m);
    double acc = accuracy(m, xt, yt, N);
    print_message("linear on blobs: %.3f\n", acc);
    assert_true(acc >= 0.95);
    /* the weight of class c points along axis c */
    for (int c = 0; c < K; c++)
        for (int d = 0; d < D; d++)
            if (d != c) assert_true(m->w[c * D + c] > fabsf(m->w[c * D + d]));
    /* Platt: a larger decision value means a larger probability, and the
     * probabilities sum to 1 */
    for (int c = 0; c < K; c++) assert_true(m->platt_a[c] < 0);
    float probs[K], scores[K];
    /* the predicted class is the largest decision value, for every sample */
    for (int i = 0; i < N; i++) {
        svm_decision(m, xt + i * D, scores);
        int best = 0;
        for (int c = 1; c < K; c++)
            if (scores[c] > scores[best]) best = c;
        assert_int_equal(svm_predict(m, xt + i * D, probs), best);
    }
    svm_predict(m, xt, probs);
    assert_true(fabsf(probs[0] + probs[1] + probs[2] + probs[3] - 1.0f) < 1e-5f);
    svm_free(m);
    free(x);
    free(xt);
}

static void test_rbf_separates_rings_linear_cannot(void **state) {
    (void)state;
    enum { N = 400 };
    float x[2 * N], xt[2 * N];
    int y[N], yt[N];
    rings(x, y, N, 3);
    rings(xt, yt, N, 4);
    char err[256];
    svm_params_t p = svm_defaults(SVM_RBF);
    p.gamma = 1.0f;
    svm_t *rbf = svm_train(SVM_RBF, x, y, N, 2, 2, NULL, &p, NULL, NULL, err, sizeof err);
    assert_non_null(rbf);
    svm_params_t pl = svm_defaults(SVM_LINEAR);
    svm_t *lin = svm_train(SVM_LINEAR, x, y, N, 2, 2, NULL, &pl, NULL, NULL, err, sizeof err);
    assert_non_null(lin);
    double a_rbf = accuracy(rbf, xt, yt, N), a_lin = accuracy(lin, xt, yt, N);
    print_message("rings: rbf %.3f (%d SVs), linear %.3f\n", a_rbf, rbf->n_sv, a_lin);
    assert_true(a_rbf >= 0.98);
    assert_true(a_lin <= 0.75);
    assert_true(rbf->n_sv < N / 2); /* sparse solution */
    /* Platt on the calibrated side: the mean confidence of the right class on
     * well-separated data is high */
    float probs[2];
    double conf = 0;
    for (int i = 0; i < N; i++) {
        svm_predict(rbf, xt + 2 * i, probs);
        conf += probs[yt[i]];
    }
    assert_true(conf / N > 0.8);
    svm_free(rbf);
    svm_free(lin);
}

/* SMO's solution satisfies the dual constraint sum(alpha * y) = 0 and the
 * box 0 <= alpha <= C for every class. */
static void test_rbf_dual_constraints(void **state) {
    (void)state;
    enum { N = 300, D = 3, K = 3 };
    float x[N * D];
    int y[N];
    blobs(x, y, N, D, K, 5);
    char err[256];
    svm_params_t p = svm_defaults(SVM_RBF);
    p.c = 2.0f;
    svm_t *m = svm_train(SVM_RBF, x, y, N, D, K, NULL, &p, NULL, NULL, err, sizeof err);
    assert_non_null(m);
    for (int c = 0; c < K; c++) {
        double sum = 0;
        for (int s = 0; s < m->n_sv; s++) {
            float a = m->coef[c * m->n_sv + s];
            assert_true(fabsf(a) <= p.c + 1e-4f);
            sum += a;
        }
        assert_true(fabs(sum) < 1e-3);
    }
    svm_free(m);
}

static void test_save_load(void **state) {
    (void)state;
    enum { N = 200, D = 4, K = 3 };
    float x[N * D];
    int y[N];
    blobs(x, y, N, D, K, 9);
    const char *labels[] = {"a", "b", "c"};
    char err[256], path[] = "/tmp/test_svm_XXXXXX";
    for (int kind = 0; kind < 2; kind++) {
        svm_params_t p = svm_defaults((svm_kind_t)kind);
        svm_t *m =
            svm_train((svm_kind_t)kind, x, y, N, D, K, labels, &p, NULL, NULL, err, sizeof err);
        assert_non_null(m);
        m->features = SVM_EMBEDDING;
        strcpy(path, "/tmp/test_svm_XXXXXX");
        int fd = mkstemp(path);
        close(fd);
        assert_int_equal(svm_save(m, path, err, sizeof err), 0);
        FILE *f = fopen(path, "rb");
        unsigned char buf[1 << 16];
        size_t len = fread(buf, 1, sizeof buf, f);
        fclose(f);
        unlink(path);
        svm_t *back = svm_load_mem(buf, len, err, sizeof err);
        if (!back) fail_msg("%s", err);
        assert_int_equal(back->features, SVM_EMBEDDING);
        assert_string_equal(back->labels[2], "c");
        float s1[K], s2[K];
        for (int i = 0; i < 20; i++) {
            svm_decision(m, x + i * D, s1);
            svm_decision(back, x + i * D, s2);
            for (int c = 0; c < K; c++) assert_true(fabsf(s1[c] - s2[c]) < 1e-5f);
        }
        assert_null(svm_load_mem(buf, len - 9, err, sizeof err));
        buf[60] ^= 4;
        assert_null(svm_load_mem(buf, len, err, sizeof err));
        svm_free(back);
        svm_free(m);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear_separates_blobs),
        cmocka_unit_test(test_rbf_separates_rings_linear_cannot),
        cmocka_unit_test(test_rbf_dual_constraints),
        cmocka_unit_test(test_save_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
