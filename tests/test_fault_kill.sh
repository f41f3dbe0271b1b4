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
split -n l/$((KILLS + 1)) -d "$WORK/events.jsonl" "$WORK/chunk."
chunks=("$WORK"/chunk.*)
produce_chunk() {
    # shellcheck disable=SC2046
    "$REEL" produce --topic viewing-events $(reel_opts) <"$1" 2>>"$WORK/produce.err" ||
        fail "produce failed"
}
counted() { rcli --raw HVALS 'reel:{reel-count}:counts' | awk '{s += $1} END {print s + 0}'; }
for k in $(seq 1 "$KILLS"); do
    produce_chunk "${chunks[$((k - 1))]}"
    before=$(counted)
    start_worker worker -X batch.max.records=100
    # Kill mid-stream: once this incarnation has committed something, at a
    # random moment within the next 0-0.3 s (inside a batch, between
    # produce and commit, or between commits).
    for _ in $(seq 1 300); do [ "$(counted)" -gt "$before" ] && break; sleep 0.05; done
    sleep "$(awk -v r=$RANDOM 'BEGIN {printf "%.3f", 0.3 * r / 32767}')"
    kill -9 "$WORKER_PID"
    wait "$WORKER_PID" 2>/dev/null || true
    log "kill $k: worker killed with $(counted) counted (was $before)"
done
produce_chunk "${chunks[$KILLS]}"
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
