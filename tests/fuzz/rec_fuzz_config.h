/* rec_fuzz_config.h: the recommend settings of the RMEM (state snapshot)
 * fuzz seeds. A snapshot loads only under the settings it was made with, so
 * make_model_seeds.c and fuzz_model.c share them. */
#ifndef REEL_TESTS_FUZZ_REC_FUZZ_CONFIG_H
#define REEL_TESTS_FUZZ_REC_FUZZ_CONFIG_H

#include "kernels/rec.h"

static inline void rec_fuzz_config(rec_config_t *c) {
    rec_config_defaults(c);
    c->hist_cap = 5;
    c->seen_cap = 8;
    c->cons_cap = 4;
    c->item_k = 4;
    c->user_k = 3;
    c->half_life_ms = 2 * 86400000LL;
    c->epoch_ms = 1700000000000LL;
}

#endif
