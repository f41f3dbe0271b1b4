/* speech.h: word-level speech recognition models over MFCC features.
 *
 * A model holds one left-to-right HMM per word plus a silence model (word 0,
 * "<sil>"); every state emits through a diagonal-covariance GMM. A hybrid
 * model adds an MLP over +-5 stacked frames that predicts the HMM states;
 * its posteriors divided by the state priors replace the GMM likelihoods.
 *
 * Training (GMM-HMM): flat start (each utterance <sil> w1 .. wk <sil>
 * segmented uniformly), k-means per state for the mixtures, segmental
 * k-means (Viterbi realignment) rounds, then Baum-Welch re-estimation in log
 * space. Decoding is token-passing Viterbi over a grammar of word models:
 * one word with optional silence around it, or a word loop with a word
 * insertion penalty; it gives words with start/end times and confidences.
 *
 * File format (little-endian), kind "speech" for the model registry:
 *   "RSPH", u32 version (1), u32 flags (1: has MLP), i32 rate, i32 dim,
 *   i32 n_mix, i32 n_words, f32 insertion penalty, f32 acoustic scale;
 *   per word: u8 name length, name bytes, i32 n_states;
 *   per state: f32 log self-loop, f32 log next; then per state and mixture
 *   f32 weight, dim f32 means, dim f32 variances;
 *   when flagged: i32 context, i32 n_layers, i32 sizes[n_layers + 1],
 *   f32 input mean[in], input std[in], per layer W[out x in] and b[out],
 *   f32 log prior per state. */
#ifndef REEL_KERNELS_SPEECH_SPEECH_H
#define REEL_KERNELS_SPEECH_SPEECH_H

#include <stddef.h>

#define SPH_MAGIC "RSPH"
#define SPH_VERSION 1
#define SPH_MAX_WORDS 256
#define SPH_MAX_NAME 48
#define SPH_MAX_STATES 32
#define SPH_MAX_MIX 32
#define SPH_CONTEXT 5 /* frames each side of the MLP's input */

typedef struct sph_model sph_model_t;

/* One training utterance: T frames of dim features (borrowed) and the
 * word ids it says (1..n_words-1; 0 is silence, never listed). */
typedef struct sph_utt {
    const float *feat;
    int T;
    const int *words;
    int n_words;
} sph_utt_t;

typedef struct sph_train_opts {
    int rate;            /* sample rate of the features' front end */
    int states_per_word; /* emitting states per word model */
    int sil_states;
    int n_mix;
    int viterbi_iters; /* segmental k-means rounds after the flat start */
    int bw_iters;      /* Baum-Welch iterations */
    float ins_penalty; /* log-probability added per word in loop decoding */
    unsigned seed;
    int verbose; /* progress on stderr */
} sph_train_opts_t;

void sph_default_train_opts(sph_train_opts_t *o);

typedef struct sph_mlp_opts {
    int hidden; /* units per hidden layer */
    int layers; /* hidden layers */
    int epochs;
    int batch;
    float lr;
    unsigned seed;
    int verbose;
} sph_mlp_opts_t;

void sph_default_mlp_opts(sph_mlp_opts_t *o);

/* Trains a GMM-HMM with words names[1..n_words) (names[0] is ignored: word
 * 0 is "<sil>"). Returns a model the caller frees with sph_destroy(), or
 * NULL with errstr. */
sph_model_t *sph_train_hmm(const char *const *names, int n_words, const sph_utt_t *utts, int n,
                           int dim, const sph_train_opts_t *o, char *errstr, size_t errstr_size);

/* Forced alignment of one utterance (<sil> words <sil>) with the model's
 * current acoustic model: state_out[t] receives the global state of frame t.
 * Returns 0, or -1 when the utterance is shorter than its states. */
int sph_align(sph_model_t *m, const sph_utt_t *u, int *state_out);

/* Trains the hybrid MLP from the GMM-HMM's forced alignments of utts and
 * switches the model to hybrid decoding. Returns 0, or -1 with errstr. */
int sph_train_mlp(sph_model_t *m, const sph_utt_t *utts, int n, const sph_mlp_opts_t *o,
                  char *errstr, size_t errstr_size);

/* Loads a model from a file's bytes (copied). Returns NULL with errstr on a
 * bad magic, version or shape. The caller frees it with sph_destroy(). */
sph_model_t *sph_load(const void *data, size_t len, char *errstr, size_t errstr_size);
/* Serializes into a malloc'd buffer (*len bytes) the caller frees; NULL
 * when out of memory. */
void *sph_serialize(const sph_model_t *m, size_t *len);
void sph_destroy(sph_model_t *m);

int sph_rate(const sph_model_t *m);
int sph_dim(const sph_model_t *m);
int sph_n_words(const sph_model_t *m);
int sph_is_hybrid(const sph_model_t *m);
/* Name of word i (0 is "<sil>"); owned by the model. */
const char *sph_word_name(const sph_model_t *m, int i);
/* Word id of name, or -1. */
int sph_word_id(const sph_model_t *m, const char *name);
void sph_set_ins_penalty(sph_model_t *m, float p);
float sph_ins_penalty(const sph_model_t *m);
/* Uses the GMM (0) or, when the model has one, the MLP (1) for decoding. */
void sph_use_mlp(sph_model_t *m, int on);

typedef enum { SPH_GRAMMAR_ONE_WORD = 0, SPH_GRAMMAR_LOOP = 1 } sph_grammar_t;

typedef struct sph_hyp {
    int word;
    int start, end;   /* frames, end exclusive */
    float confidence; /* 0..1 */
} sph_hyp_t;

/* Decodes T frames (T x dim). Writes up to max_out words (silence left
 * out) into out and returns how many the best path has (it may exceed
 * max_out; only max_out are written), 0 for silence or too few frames, -1
 * with errstr when out of memory. The model keeps grow-only decoding
 * buffers, so one model serves one thread at a time. */
int sph_decode(sph_model_t *m, const float *feat, int T, sph_grammar_t g, sph_hyp_t *out,
               int max_out, char *errstr, size_t errstr_size);

#endif
