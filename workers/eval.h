/* eval.h: `reel eval ...` subcommands. */
#ifndef REEL_WORKERS_EVAL_H
#define REEL_WORKERS_EVAL_H

/* `reel eval recommend --ratings FILE [--items FILE] [--split random|temporal]
 * [--algo item_cf|user_cf|content|hybrid|popular|all] [--k 10] [--seed N]
 * [--min-rating R] ...`: replays the training split through the incremental
 * recommenders of kernels/rec.h and prints one JSON line per algorithm.
 * argv[0] is "recommend". Returns the process exit status. */
int cmd_eval_recommend(int argc, char **argv);

#endif
