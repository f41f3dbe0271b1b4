#!/bin/bash
# The worker is SIGKILLed at random points while records arrive, and
# restarted each time. Afterwards every key's count equals the number of its
# records (nothing lost, nothing counted twice) and every input record has at
# least one output.
source "$(dirname "$0")/lib.sh"

N=${N:-60000}
KILLS=${KILLS:-5}
SEED=${SEED:-$RANDOM}
log "seed $SEED"
RANDOM=$SEED
start_redis
start_kafka 3 6

gen_events "$N" 500 "$SEED" >"$WORK/events.jsonl"
# Records keep arriving while the worker dies and comes back.
(
    split -n l/4 "$WORK/events.jsonl" "$WORK/chunk."
    for c in "$WORK"/chunk.*; do
        # shellcheck disable=SC2046
        "$REEL" produce --topic viewing-events $(reel_opts) <"$c" 2>>"$WORK/produce.err" || exit 1
        sleep 1
    done
) &
PRODUCER=$!

for k in $(seq 1 "$KILLS"); do
    start_worker worker -X batch.max.records=500
    # Between 0.5 and 3 s: during start-up, group join, or mid-batch.
    sleep "$(awk -v r=$RANDOM 'BEGIN {printf "%.2f", 0.5 + 2.5 * r / 32767}')"
    kill -9 "$WORKER_PID"
    wait "$WORKER_PID" 2>/dev/null || true
    log "kill $k: worker killed at $(rcli --raw HVALS 'reel:{reel-count}:counts' | awk '{s += $1} END {print s + 0}') counted"
done
wait "$PRODUCER" || fail "producer failed"

start_worker worker
got=$(wait_for_count reel-count "$N" 300) || fail "only $got of $N records counted"
sleep 2 # a double count would show up as more than N
kill -TERM "$WORKER_PID"
wait "$WORKER_PID" || fail "worker exited with $? on SIGTERM"

diff <(expected_counts "$WORK/events.jsonl") <(actual_counts reel-count) >"$WORK/diff.txt" ||
    fail "counts differ after $KILLS kills: $(head "$WORK/diff.txt")"
outs=$(distinct_sources counts)
[ "$outs" = "$N" ] || fail "$outs distinct outputs for $N inputs"
log "PASS: $N records over $KILLS SIGKILLs, counts exact, every input has an output"
