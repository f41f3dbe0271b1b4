/* bow.h: bag-of-n-grams sentiment models on uni+bigram presence features:
 * multinomial naive Bayes (binarized counts, Laplace smoothing) and
 * logistic regression on naive-Bayes-scaled features (NB-LR, after Wang
 * and Manning's NBSVM, ACL 2012). */
#ifndef REEL_KERNELS_TEXT_BOW_H
#define REEL_KERNELS_TEXT_BOW_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/text/tokenize.h"

/* Adds the unigrams and bigrams of tokens (as tok_split() wrote them) to
 * grams with count 1 each per text (presence). Returns 0 or -1 (memory). */
int bow_count(vocab_t *grams, const char *toks, size_t n_tokens);

/* The distinct n-gram ids of tokens found in grams, ascending, into feat
 * (room for 2 * n_tokens). Returns their number. */
size_t bow_features(const vocab_t *grams, const char *toks, size_t n_tokens, int32_t *feat);

/* Trains on n texts given as feature lists (feats[i][0..n_feats[i]),
 * labels 0/1) over n_grams features. Writes the weights of every feature
 * into w (n_grams, the caller's) and the bias into *b; score = b + sum of
 * w over present features, P(positive) = sigmoid(score).
 * With nblr = 0: naive Bayes. With nblr = 1: naive Bayes log-count ratios r,
 * then `epochs` epochs of AdaGrad logistic regression on r-scaled features
 * with L2 penalty l2; w is then r * v. Returns 0 or -1 (memory). */
int bow_train(const int32_t *const *feats, const size_t *n_feats, const int *labels, size_t n,
              size_t n_grams, int nblr, int epochs, float l2, uint64_t seed, float *w, float *b);

/* b + sum of w[feat[i]]. */
float bow_score(const float *w, float b, const int32_t *feat, size_t n);

#endif
