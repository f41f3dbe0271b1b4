#!/bin/bash
# Three worker processes share one group on 12 partitions; members leave
# (SIGTERM), crash (SIGKILL) and join while records arrive. Every partition
# resumes from the offset in Redis, so the counts stay exact.
source "$(dirname "$0")/lib.sh"

N=${N:-60000}
start_redis
start_kafka 3 12

gen_events "$N" 800 11 >"$WORK/events.jsonl"
(
    split -n l/6 "$WORK/events.jsonl" "$WORK/chunk."
    for c in "$WORK"/chunk.*; do
        # shellcheck disable=SC2046
        "$REEL" produce --topic viewing-events $(reel_opts) <"$c" 2>>"$WORK/produce.err" || exit 1
        sleep 1
    done
) &
PRODUCER=$!

start_worker w1 -X batch.max.records=300
W1=$WORKER_PID
start_worker w2 -X batch.max.records=300
W2=$WORKER_PID
start_worker w3 -X batch.max.records=300
W3=$WORKER_PID
# Let the group settle with all three members holding partitions.
for _ in $(seq 1 120); do
    n=0
    for w in w1 w2 w3; do grep -q '"event":"partition_assigned"' "$WORK/$w.log" && n=$((n + 1)); done
    [ $n = 3 ] && break
    sleep 0.5
done
[ $n = 3 ] || fail "only $n of 3 members were assigned partitions within 60 s"
sleep 1
log "w2 leaves gracefully"
kill -TERM "$W2"
wait "$W2" || fail "w2 exited with $? on SIGTERM"
sleep 2
log "w3 crashes"
kill -9 "$W3"
wait "$W3" 2>/dev/null || true
start_worker w4 -X batch.max.records=300
W4=$WORKER_PID
start_worker w5 -X batch.max.records=300
W5=$WORKER_PID
wait "$PRODUCER" || fail "producer failed"

got=$(wait_for_count reel-count "$N" 300) || fail "only $got of $N records counted"
sleep 2
for p in "$W1" "$W4" "$W5"; do kill -TERM "$p"; done
for p in "$W1" "$W4" "$W5"; do wait "$p" || fail "a worker exited with $? on SIGTERM"; done

diff <(expected_counts "$WORK/events.jsonl") <(actual_counts reel-count) >"$WORK/diff.txt" ||
    fail "counts differ after rebalances: $(head "$WORK/diff.txt")"
outs=$(distinct_sources counts)
[ "$outs" = "$N" ] || fail "$outs distinct outputs for $N inputs"
assigned=$(cat "$WORK"/w*.log | grep -c '"event":"partition_assigned"')
log "PASS: $N records, $assigned partition assignments over 5 members, counts exact"
