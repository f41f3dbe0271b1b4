/* rec.h: incremental recommenders (item-based CF, user-based CF, content,
 * popularity, hybrid) over an abstract keyed state.
 *
 * The algorithms never own state. They read it through rec_reader_t (a few
 * keyed lookups that map onto Redis HMGET/HGETALL/ZREVRANGE) and write it as
 * a list of deltas (rec_delta_t) that the caller applies: rec_mem_t applies
 * them to hash maps in process (eval, tests); the recommend worker applies
 * them to Redis. No Kafka or Redis in here.
 *
 * Ids are dense uint32 (users and items separately); the caller maps string
 * ids onto them (rec_dict_t does it in memory).
 *
 * The state, as keyed counters and maps (suggested Redis keys in brackets):
 *
 *   seen[u]      recent event-id hashes, at most cfg.seen_cap  [zset or list]
 *   hist[u]      item -> rec_hist_t, at most cfg.hist_cap     [hash]
 *   unorm[u]     sum over items of a_ui^2                     [hash field]
 *   udot[u][v]   sum over co-consumed items of a_ui * a_vi    [hash udot:{u}]
 *   utopk[u]     v -> cosine(u, v), the best cfg.user_k       [zset]
 *   istat[i]     c: decayed count of users, n2: sum of a_ui^2 [hash]
 *                (c is also the popularity [zset pop])
 *   pair[i][j]   REC_PF_* counters of the pair, row i         [hash per field]
 *   cons[i]      u -> (a_ui, t): the latest cfg.cons_cap consumers [hash+zset]
 *   itopk[i]     j -> sim(i, j), the best cfg.item_k          [zset]
 *   feat[i]      REC_FEAT_DIM floats from the item's metadata [string]
 *
 * Time decay is forward decay: a contribution made at time t is stored
 * multiplied by g(t) = 2^((t - epoch) / half_life), so stored counters never
 * need rewriting as time passes; the value "now" is stored * 2^(-(now -
 * epoch)/half_life), a factor common to all counters of the same degree.
 * Cosine, Jaccard and Pearson are ratios of equal degree and use the stored
 * values as they are; lift and raw counts are off by that common factor,
 * which changes no ranking. With half_life 0 decay is off (g = 1). g must
 * stay finite: with double counters, (now - epoch) / half_life < ~500
 * (e.g. 10 years at a 7-day half-life); past that, move the epoch and
 * rescale (an offline job).
 */
#ifndef REEL_KERNELS_REC_H
#define REEL_KERNELS_REC_H

#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------ */
/* Events and implicit feedback                                        */

/* Same order as the symbols of the Avro enum reel.EventType. */
typedef enum rec_event_type {
    REC_EV_VIEW,
    REC_EV_PLAY,
    REC_EV_PROGRESS,
    REC_EV_COMPLETE,
    REC_EV_RATING,
    REC_EV_LIKE,
    REC_EV_DISLIKE,
    REC_EV_N
} rec_event_type_t;

/* Implicit feedback weight per event type (rec_config_defaults):
 *
 *   type      weight
 *   view      0.5                       opened the detail page
 *   play      1.0                       started playback
 *   progress  2.0 * watch_ratio         watch_seconds / duration_seconds,
 *                                       clamped to [0, 1]; without a
 *                                       duration, the play weight
 *   complete  3.0                       watched to the end
 *   rating    rating / 2.5              0.5 stars -> 0.2, 5 stars -> 2.0
 *   like      2.0
 *   dislike  -2.0                       lowers the item's affinity
 *
 * Every event on an item also puts it into the user's history, so an item
 * the user saw is never recommended back. */
typedef struct rec_event {
    const char *event_id; /* dedupe key; must be non-empty */
    uint64_t event_hash;  /* rec_hash64(event_id), or 0: computed from event_id (a
                           * replayed event carries only the hash) */
    const char *user_id;  /* string ids, checked by rec_event_check */
    const char *item_id;
    uint32_t user, item; /* dense ids, set by the caller after the check */
    rec_event_type_t type;
    int64_t ts_ms;
    double watch_seconds;
    double duration_seconds; /* <= 0: unknown */
    int has_rating;
    double rating; /* 0.5 .. 5 when type == REC_EV_RATING */
} rec_event_t;

/* ------------------------------------------------------------------ */
/* Configuration                                                       */

typedef enum rec_sim {
    REC_SIM_COSINE,  /* D_ij / sqrt(n2_i n2_j), over affinities */
    REC_SIM_JACCARD, /* C_ij / (c_i + c_j - C_ij), over co-consumption */
    REC_SIM_LIFT,    /* C_ij / (c_i c_j) */
    REC_SIM_PEARSON, /* Pearson over co-rating users, on explicit ratings */
    REC_SIM_COUNT,   /* C_ij: raw co-occurrence */
    REC_SIM_N
} rec_sim_t;

/* Pair counters, row i, column j (all forward-decayed):
 *   C  sum over users u who consumed both: g(max(t_first_ui, t_first_uj))
 *   D  sum over u: a_ui * a_uj                           (symmetric; with
 *      cfg.iuf_beta each event's increment is weighted, as is istat n2's)
 *   RN sum over u who rated both: w = g(max(t_rated_ui, t_rated_uj))
 *   RD sum over those: w r_ui r_uj                        (symmetric)
 *   RS sum over those: w r_ui   (the row item's ratings; not symmetric)
 *   RQ sum over those: w r_ui^2 (not symmetric)
 * Only the fields the similarity needs are maintained (rec_config.pair_fields). */
enum { REC_PF_C, REC_PF_D, REC_PF_RN, REC_PF_RD, REC_PF_RS, REC_PF_RQ, REC_PF_N };
#define REC_PFM(f) (1u << (f))

/* Item statistics. */
enum { REC_IS_C, REC_IS_N2, REC_IS_N };

enum { REC_NORM_SOURCE = 1, REC_NORM_TARGET = 2 };

/* Recommendation sources (bit mask). */
enum {
    REC_SRC_ITEM_CF = 1,
    REC_SRC_USER_CF = 2,
    REC_SRC_CONTENT = 4,
    REC_SRC_POPULAR = 8,
    REC_SRC_ALL = 15
};

typedef struct rec_config {
    float weight[REC_EV_N]; /* implicit feedback table above */
    int64_t half_life_ms;   /* 0: no decay */
    int64_t epoch_ms;       /* forward-decay reference time */
    int64_t max_future_ms;  /* reject ts > now + this (default 5 min) */
    int hist_cap;           /* items per user history (default 100) */
    /* Which history entry leaves beyond hist_cap: 0 the least recently
     * used; 1 the weakest (lowest affinity a, which with decay on is
     * forward-decayed, so old and weak go first; the least recent on
     * ties). Default 1: on MovieLens with a cap of 100 it keeps item CF at
     * P@10 0.30 instead of 0.26 (docs/recommend.md). The event's own item
     * always stays. */
    int evict_weakest;
    int seen_cap;         /* event ids remembered per user (256) */
    int cons_cap;         /* consumers kept per item for user CF (100) */
    int item_k;           /* item neighbours kept per item (200) */
    int user_k;           /* user neighbours kept per user (50) */
    rec_sim_t sim;        /* item-item similarity (cosine) */
    unsigned pair_fields; /* REC_PFM mask; 0 = what sim needs */
    int refresh_topk;     /* re-score the event item's neighbours (1) */
    /* Inverse user frequency for the cosine counters (0.4): an event's
     * increments of D (pair) and n2 (istat) are multiplied by
     * (1 + n)^-iuf_beta, n the user's other history items when the event is
     * applied (so at most hist_cap), so that a heavy user's later items tie
     * items together less. Other counters (C, the rating fields, user CF)
     * are not weighted. 0: off. A state setting: changing it needs a new
     * state. Default 0.4: item CF P@10 / nDCG@10 0.3362 / 0.3815 -> 0.3421 /
     * 0.3929 on MovieLens, seeds 1-3 (docs/recommend.md). */
    float iuf_beta;
    /* Scoring. */
    float src_weight[4]; /* hybrid blend: item_cf, user_cf, content, popular */
    int pop_candidates;  /* popular items considered per request (200) */
    float shrink;        /* similarity shrinkage: s * n / (n + shrink) (0) */
    /* Item CF neighbourhood (30): a history item i credits a candidate j
     * only when i is among j's best item_score_k neighbours (the classic
     * item-kNN: j is scored from its own nearest items), read as "s_ij >=
     * the item_score_k-th score in itopk[j]". The candidates still come
     * from the history items' lists (item_k long, so that they hold most
     * pairs where i is near j). 0, or >= item_k: every member of a history
     * item's list credits (the rarest items' lists are full of spurious
     * perfect similarities, which then dominate). */
    int item_score_k;
    /* Item CF score normalisation (REC_NORM_* bits, 0): SOURCE divides a
     * history item's credits by the sum of its first item_score_k scores,
     * TARGET divides a candidate's credits by the sum of its own first
     * item_score_k scores (Deshpande and Karypis' normalised item-kNN).
     * Default SOURCE (measured in docs/recommend.md). */
    int item_norm;
    float sim_power; /* item CF credits a_ui^aff_power * s_ij^sim_power (2) */
    float aff_power; /* (1): > 1 trusts the user's strongest items more */
    float pop_beta; /* item CF scores divided by c_j^pop_beta (0: off; < 0 favours popular items) */
    /* Asymmetric cosine (Aiolli 2013), item CF votes only: a history item i
     * votes for candidate j with D_ij / (n_j^(2 alpha) n_i^(2 - 2 alpha))
     * instead of the cosine (n = sqrt(istat n2)), i.e. cosine times
     * (n_i / n_j)^(2 alpha - 1); read at scoring time, the stored lists stay
     * cosine. 0.5: the cosine (off); < 0.5 favours popular candidates and
     * quiets popular history items. Default 0.4:
     * item CF P@10 / nDCG@10 0.3336 / 0.3770 -> 0.3362 / 0.3815 on
     * MovieLens, seeds 1-3 (docs/recommend.md). */
    float asym_alpha;
    /* User CF: a neighbour v votes for each item i of its history with
     * sim(u, v)^user_sim_power * (a_vi / max_i a_vi)^user_aff_power (1, 0:
     * the similarity, whatever v's affinity). Defaults 3 and 0.3: user CF
     * P@10 / nDCG@10 0.3097 / 0.3514 -> 0.3170 / 0.3587 on MovieLens,
     * seeds 1-3 (docs/recommend.md). */
    float user_sim_power;
    float user_aff_power;
    /* refresh_topk re-scores a row's list members only when the row's
     * normaliser (istat c or n2, unorm) crossed a point of the grid
     * (1 + refresh_ratio)^n since the last event (0.05): list scores stay
     * within that factor of the truth, and the ~2 item_k writes per event
     * are paid about every refresh_ratio * c events of a popular item
     * instead of every event. 0: on every change. */
    float refresh_ratio;
    /* Multimodal content (other workers' outputs, read from Redis by the
     * worker; given as files to the eval). */
    float poster_weight; /* weight of the poster block (rec_features_poster) (0.5) */
    /* Review sentiment prior: every candidate's final score is multiplied by
     * 1 + sentiment_weight * s_i, s_i the item's shrunk mean review
     * sentiment in [-1, 1] (rec_sentiment_mean; 0 without reviews). A
     * factor, so it works on blended and on single-source scores alike
     * (0.1). 0: off. */
    float sentiment_weight;
    float sentiment_prior_count; /* pseudo-reviews of score 0 in the mean (2) */
} rec_config_t;

void rec_config_defaults(rec_config_t *cfg);
/* The pair fields cfg needs (its pair_fields, or what its sim needs). */
unsigned rec_config_fields(const rec_config_t *cfg);
const char *rec_sim_name(rec_sim_t s);
int rec_sim_parse(const char *name, rec_sim_t *out); /* 0 ok, -1 unknown */
const char *rec_event_type_name(rec_event_type_t t);
int rec_event_type_parse(const char *name, rec_event_type_t *out);

/* ------------------------------------------------------------------ */
/* The state: what the algorithms read                                 */

/* One history entry: hist[u][item]. */
typedef struct rec_hist {
    uint32_t item;
    float rating;    /* latest explicit rating, 0 = none */
    double a;        /* affinity: sum of weight * g(ts) over the events */
    int64_t t_first; /* first event on the item */
    int64_t t_rated; /* first rating (0 = none) */
    int64_t t_last;  /* latest event; the oldest t_last is evicted first */
} rec_hist_t;

typedef struct rec_scored {
    uint32_t id;
    float score;
} rec_scored_t;

/* One consumer of an item: cons[i][user]. */
typedef struct rec_cons {
    uint32_t user;
    double a;  /* a_ui */
    int64_t t; /* when u joined the list; the oldest leaves first */
} rec_cons_t;

/* Read interface. Every callback is required. Arrays are caller-owned and
 * sized by the caller (history up to cfg.hist_cap, consumers up to
 * cfg.cons_cap, top-K lists up to cap). Missing keys read as zero or empty.
 * The Redis-backed reader serves each call with one HMGET, HGETALL or
 * ZREVRANGE (pipelined where the call has several rows). */
typedef struct rec_reader {
    void *ctx;
    /* 1 if hash h is in seen[u]. */
    int (*event_seen)(void *ctx, uint32_t u, uint64_t h);
    /* hist[u], any order; returns the count (<= cap). */
    int (*history)(void *ctx, uint32_t u, rec_hist_t *out, int cap);
    /* Optional (may be NULL): hist[u] in place, *n entries, valid until the
     * next write to the state; user CF reads fifty neighbours' histories
     * per user, and copying them cost more than reading them. */
    const rec_hist_t *(*history_view)(void *ctx, uint32_t u, int *n);
    /* pair[row][cols[k]] -> out[k * REC_PF_N + f] for every f. */
    void (*pairs)(void *ctx, uint32_t row, const uint32_t *cols, int n, double *out);
    /* istat[items[k]] -> out[k * REC_IS_N + f]. */
    void (*item_stats)(void *ctx, const uint32_t *items, int n, double *out);
    /* unorm[users[k]] -> out[k]. */
    void (*user_norms)(void *ctx, const uint32_t *users, int n, double *out);
    /* udot[u][others[k]] -> out[k]. */
    void (*user_dots)(void *ctx, uint32_t u, const uint32_t *others, int n, double *out);
    /* cons[i]; returns the count (<= cap). */
    int (*consumers)(void *ctx, uint32_t i, rec_cons_t *out, int cap);
    /* itopk[i] / utopk[u], best first; returns the count (<= cap). */
    int (*item_topk)(void *ctx, uint32_t i, rec_scored_t *out, int cap);
    /* Optional (may be NULL): of itopk[i]'s best k, the k-th score
     * (-INFINITY when the list holds fewer) and the sum of the positive
     * scores, as item_topk's copy would give them; item CF reads no more of
     * each candidate's list. */
    void (*item_topk_head)(void *ctx, uint32_t i, int k, float *kth, float *pos_sum);
    /* Optional (may be NULL): itopk[i] in any order when it holds at most
     * cap entries (else as item_topk). An event's update reads the whole
     * list of its item and needs no order, and a list that other events'
     * offers changed since its last read would be sorted for nothing. */
    int (*item_topk_any)(void *ctx, uint32_t i, rec_scored_t *out, int cap);
    int (*user_topk)(void *ctx, uint32_t u, rec_scored_t *out, int cap);
    /* feat[i], REC_FEAT_DIM floats, or NULL when the item has none. */
    const float *(*features)(void *ctx, uint32_t i);
    /* The most popular items (by istat c), best first. */
    int (*popular)(void *ctx, rec_scored_t *out, int cap);
    /* The content candidate block: *n rows of REC_FEAT_DIM floats (row-major)
     * and their item ids, distinct. The in-memory state returns every item with
     * features; a worker with a large catalogue returns a subset (recent
     * items, so that new items get recommended). 0 ok. */
    int (*catalogue)(void *ctx, const float **feat, const uint32_t **ids, size_t *n);
    /* Optional (may be NULL): a number that changes whenever the block that
     * catalogue() returns is written (rows added or rewritten). With it,
     * rec_recommend keeps a sparse copy of the block between calls (item
     * features are mostly zeros: a few genres, a year bucket) rather than
     * a dense product over every row for every user. */
    uint64_t (*catalogue_version)(void *ctx);
    /* One past the largest item id (sizes the scoring buffers). */
    uint32_t (*n_items)(void *ctx);
    /* Optional (may be NULL): item i's mean review sentiment in [-1, 1],
     * already shrunk (rec_sentiment_mean); 0 when it has no reviews. */
    float (*sentiment)(void *ctx, uint32_t i);
} rec_reader_t;

/* ------------------------------------------------------------------ */
/* The state: what the algorithms write                                */

typedef enum rec_op {
    REC_OP_SEEN_ADD,  /* a=user, key: add to seen[a]; drop the oldest beyond seen_cap */
    REC_OP_HIST_SET,  /* a=user, hist: hist[a][hist.item] = hist (insert or replace) */
    REC_OP_HIST_DEL,  /* a=user, b=item: delete hist[a][b] (eviction) */
    REC_OP_PAIR_ADD,  /* a=row, b=col, f=REC_PF_*: pair[a][b].f += v (symmetric f: both orders,
                       * or once with rec_deltas_t.once) */
    REC_OP_ITEM_ADD,  /* a=item, f=REC_IS_*: istat[a].f += v (f=C: also pop[a] += v) */
    REC_OP_USER_ADD,  /* a=user: unorm[a] += v */
    REC_OP_UDOT_ADD,  /* a=user, b=user: udot[a][b] += v (both orders, or once: .once) */
    REC_OP_CONS_SET,  /* a=item, b=user, v=a_ui, t: cons[a][b] = (v, t) (t kept if present) */
    REC_OP_CONS_DEL,  /* a=item, b=user: delete cons[a][b] (eviction) */
    REC_OP_ITOPK_SET, /* a=row, b=member, v=score: itopk[a][b] = v, then keep the best item_k */
    REC_OP_UTOPK_SET, /* a=user, b=member, v=score: utopk[a][b] = v, keep the best user_k */
    REC_OP_N
} rec_op_t;

/* "Best" in a top-K list: higher score; on equal scores the higher id (what
 * a Redis zset keeps after ZADD + ZREMRANGEBYRANK 0 -(K+1) when members are
 * fixed-width hex, so that lexicographic order is numeric order). */
typedef struct rec_delta {
    uint8_t op; /* rec_op_t */
    uint8_t f;
    uint32_t a, b;
    double v;
    int64_t t;
    uint64_t key;
    rec_hist_t hist;
} rec_delta_t;

/* rec_deltas_t.once: for a consumer that keeps a symmetric counter once
 * per unordered pair (rec_mem_new; rec_mem_once says which), the increment
 * is written once, in the order (lower id, higher id), instead of in both:
 * REC_ONCE_PAIRS the symmetric pair fields (not Pearson's REC_PF_RS and
 * REC_PF_RQ), REC_ONCE_DOTS the user dot products. 0, both orders, is
 * what a store with a row per id (Redis) needs. */
enum { REC_ONCE_PAIRS = 1, REC_ONCE_DOTS = 2 };

typedef struct rec_deltas {
    rec_delta_t *d;
    size_t n, cap;
    unsigned once; /* REC_ONCE_* */
} rec_deltas_t;

void rec_deltas_free(rec_deltas_t *ds);
const char *rec_op_name(rec_op_t op);

/* ------------------------------------------------------------------ */
/* Processing                                                          */

/* Scratch buffers sized from cfg once and reused for every event. */
typedef struct rec_work rec_work_t;
rec_work_t *rec_work_new(const rec_config_t *cfg);
void rec_work_destroy(rec_work_t *w);

/* Checks an event before its ids are mapped. Returns 0, or -1 with the
 * reason (for the DLQ) in reason: empty or over-long ids, an unknown type,
 * a missing or non-positive timestamp, a timestamp beyond now_ms +
 * max_future_ms, a rating event without a rating or outside [0.5, 5],
 * negative or non-finite watch time or duration. Unknown users and items
 * are fine (cold start). */
int rec_event_check(const rec_config_t *cfg, const rec_event_t *ev, int64_t now_ms, char *reason,
                    size_t reason_size);

/* The implicit feedback weight of an event (table above). */
double rec_event_weight(const rec_config_t *cfg, const rec_event_t *ev);

/* Incremental update for one checked event: reads the state through rd and
 * appends the deltas to out. Returns 1 (deltas appended), 0 (event_id
 * already in seen[user]: a duplicate, nothing appended) or -1 (out of
 * memory; reason set). The deltas must be applied before the next event is
 * processed, or the reader must show them (a worker aggregating a batch reads
 * through its own overlay of the batch's pending deltas).
 *
 * Per event, with H = history size, C = consumers of the item, K = item_k,
 * L = user_k: reads 1 seen, 1 history, pairs of 1 + H rows (Pearson; 1 row
 * otherwise), stats of H+K items, 1 consumer list, 1 dot row, C+L user
 * norms, 1 item and 1 user top-K row; writes up to (2 fields x 2 H) pair
 * deltas, 2 C dot deltas, 2 (H + K) item and 2 (C + L) user top-K sets.
 * The event item's own list is followed as the store will hold it, so an
 * offer to it that the store would reject at once is not written; its
 * members are re-scored only at refresh_ratio steps of its normaliser. */
int rec_process_event(const rec_config_t *cfg, const rec_reader_t *rd, rec_work_t *w,
                      const rec_event_t *ev, rec_deltas_t *out, char *reason, size_t reason_size);

/* The similarity of a pair from its counters: fij = pair[i][j], fji =
 * pair[j][i] (REC_PF_N doubles each), si, sj = istat of i and j. */
double rec_similarity(rec_sim_t sim, const double *fij, const double *fji, const double *si,
                      const double *sj);

/* Top-N for a user from the sources in `sources`. Each source's scores are
 * min-max normalised over its candidates to [0, 1] and blended with
 * cfg.src_weight (a single source keeps its own order). Items in hist[u],
 * and items with exclude[item] != 0 (exclude may be NULL; n_exclude
 * entries), are filtered out. Cold start: a user with no history gets
 * popularity; a new item is reached through content (the catalogue block).
 * out[k].sources says which sources scored the item. Item CF reads itopk
 * of each history item (item_k), then the first item_score_k entries of
 * itopk of each distinct candidate found there (its threshold), and, with
 * asym_alpha != 0.5 or pop_beta != 0, the item statistics of the history
 * (one call) and of the candidates (calls of up to hist_cap + item_k + 1
 * items). Returns the count (<= n), or -1 out of memory. */
typedef struct rec_rec {
    uint32_t item;
    float score;
    unsigned sources;
} rec_rec_t;
int rec_recommend(const rec_config_t *cfg, const rec_reader_t *rd, rec_work_t *w, uint32_t user,
                  unsigned sources, const uint8_t *exclude, size_t n_exclude, rec_rec_t *out,
                  int n);

/* ------------------------------------------------------------------ */
/* Content features                                                    */

/* Layout: the metadata part (REC_FEAT_META floats, what the worker stores
 * per item): 20 known genres one-hot (MovieLens' 19 + "other"), 12 hashed
 * buckets for other genres, 64 hashed tag buckets, 16 year buckets (before
 * 1930, then 5-year steps, 2000-2004 is bucket 15... clamped). Then the
 * poster block (REC_FEAT_POSTER floats): the tag worker's poster embedding,
 * projected (rec_features_poster). Each block is L2-normalised, then
 * weighted (genres 1.0, tags 0.5, year 0.5, poster cfg.poster_weight). */
#define REC_FEAT_GENRE 32
#define REC_FEAT_TAGS 64
#define REC_FEAT_YEAR 16
#define REC_FEAT_META (REC_FEAT_GENRE + REC_FEAT_TAGS + REC_FEAT_YEAR)
#define REC_FEAT_POSTER 32
#define REC_FEAT_DIM (REC_FEAT_META + REC_FEAT_POSTER)
/* Writes the metadata part of out and zeroes its poster block. */
void rec_item_features(const char *const *genres, int n_genres, const char *const *tags, int n_tags,
                       int year, float out[REC_FEAT_DIM]);

/* Sets the poster block of feat from an embedding of any dimension: a fixed
 * pseudo-random +-1 projection onto REC_FEAT_POSTER dimensions (the same on
 * every machine, so that dot products between posters are kept up to the
 * projection's noise, whatever the CNN's embedding size), then
 * L2-normalised and scaled by weight. emb NULL, dim 0, an all-zero or
 * non-finite embedding or weight 0: the block is zeroed. The metadata part
 * is left alone. */
void rec_features_poster(float feat[REC_FEAT_DIM], const float *emb, size_t dim, float weight);

/* An item's mean review sentiment, shrunk towards neutral: sum / (count +
 * prior_count), clamped to [-1, 1]; 0 when count <= 0 or the inputs are not
 * finite. sum is the sum of per-review scores in [-1, 1] (the sentiment
 * worker's hash fields sum and count). */
float rec_sentiment_mean(double sum, double count, double prior_count);

/* ------------------------------------------------------------------ */
/* In-memory state                                                     */

typedef struct rec_mem rec_mem_t;
/* A new empty state the caller owns (rec_mem_destroy); NULL out of memory.
 * It keeps each symmetric counter (user dot products, and the pair counters
 * unless the Pearson fields are kept) once per unordered pair, and so
 * relies on rec_process_event's deltas, which add such a counter in both
 * orders (of which it applies the lower id's), or only in that one when
 * written with rec_mem_once's flags. */
rec_mem_t *rec_mem_new(const rec_config_t *cfg);
/* The same, but every counter is kept in the row a delta names, both
 * orders apart: for a cache filled row by row (the recommend worker's
 * overlay of the Redis keys, which are per row). */
rec_mem_t *rec_mem_new_rowwise(const rec_config_t *cfg);
/* The REC_ONCE_* flags m's layout allows in rec_deltas_t.once: a delta
 * list written with them is applied to m as the one with both orders. */
unsigned rec_mem_once(const rec_mem_t *m);
void rec_mem_destroy(rec_mem_t *m);
/* Applies deltas in order. Returns 0, -1 out of memory. */
int rec_mem_apply(rec_mem_t *m, const rec_delta_t *d, size_t n);
/* A reader over m (valid while m lives). */
rec_reader_t rec_mem_reader(rec_mem_t *m);
/* Sets item i's content features (REC_FEAT_DIM floats). 0 ok, -1 OOM. */
int rec_mem_set_features(rec_mem_t *m, uint32_t item, const float *f);
/* Sets item i's review sentiment (as the reader's sentiment() returns it).
 * 0 ok, -1 OOM. */
int rec_mem_set_sentiment(rec_mem_t *m, uint32_t item, float s);
/* Recomputes every item's top-K list from the full pair counters (the batch
 * answer the incremental lists approximate; see rec_process_event). */
int rec_mem_rebuild_item_topk(rec_mem_t *m);
/* Number of item pairs with counters, each order counted (as if every row
 * kept its own), for reporting. */
size_t rec_mem_pair_count(const rec_mem_t *m);
/* Users and items the state has rows for (one past the largest id). */
uint32_t rec_mem_user_count(const rec_mem_t *m);
uint32_t rec_mem_item_count(const rec_mem_t *m);

/* A growable byte buffer (rec_mem_save's output). The caller owns data and
 * frees it with free(). */
typedef struct rec_buf {
    unsigned char *data;
    size_t len, cap;
} rec_buf_t;

/* Serialises the collaborative state (seen ids, histories, consumers, pair
 * counters, statistics, dot products, top-K lists; not the content
 * features or sentiment) and appends it to out. The form is canonical: two
 * states that behave the same give the same bytes (hash maps by key, top-K
 * lists best first; histories, consumer lists and seen rings keep their
 * order, which later updates depend on). Host byte order, marked in the
 * header. 0 ok, -1 out of memory. */
int rec_mem_save(const rec_mem_t *m, rec_buf_t *out);
/* Builds a state from rec_mem_save's bytes, in the layout it was saved in
 * (rec_mem_new's or rec_mem_new_rowwise's). The caps that size its rows
 * (history, seen, consumers, item_k, user_k) and the pair fields must
 * match cfg. Returns a new state the caller owns (rec_mem_destroy), or NULL
 * with errstr (corrupt, truncated, other settings, out of memory). */
rec_mem_t *rec_mem_load(const rec_config_t *cfg, const void *data, size_t len, char *errstr,
                        size_t errstr_size);

/* ------------------------------------------------------------------ */
/* String ids -> dense ids                                             */

typedef struct rec_dict rec_dict_t;
rec_dict_t *rec_dict_new(void);
void rec_dict_destroy(rec_dict_t *d);
/* The id of s (len bytes), adding it if new. Returns UINT32_MAX on OOM. */
uint32_t rec_dict_intern(rec_dict_t *d, const char *s, size_t len);
/* The id of s, or UINT32_MAX when absent. */
uint32_t rec_dict_find(const rec_dict_t *d, const char *s, size_t len);
uint32_t rec_dict_size(const rec_dict_t *d);
const char *rec_dict_name(const rec_dict_t *d, uint32_t id);

/* ------------------------------------------------------------------ */
/* Ranking metrics (one user)                                          */

/* ranked: k recommended ids (best first); relevant: n_rel ids (sorted
 * ascending). Definitions (Microsoft Recommenders):
 *   precision = hits / k, recall = hits / n_rel, hit = hits > 0,
 *   ndcg = sum over hit ranks r (1-based) of 1/log2(r+1), divided by the
 *          same sum over ranks 1..min(k, n_rel),
 *   map  = sum over hit ranks r of (hits within ranks 1..r) / r, divided
 *          by n_rel. */
typedef struct rec_metrics {
    double precision, recall, ndcg, map, hit;
} rec_metrics_t;
void rec_metrics_user(const uint32_t *ranked, int k, const uint32_t *relevant, int n_rel,
                      rec_metrics_t *m);

uint64_t rec_hash64(const char *s, size_t len);

#endif
