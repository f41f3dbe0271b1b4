#!/bin/bash
# Brokers are taken down and brought back (mock cluster failure injection)
# while records flow. librdkafka reconnects; nothing is lost or doubled.
source "$(dirname "$0")/lib.sh"

N=${N:-40000}
start_redis
start_kafka 3 6
gen_events "$N" 300 9 >"$WORK/events.jsonl"
split -n l/4 "$WORK/events.jsonl" "$WORK/chunk."
start_worker worker -X batch.max.records=300
i=0
for c in "$WORK"/chunk.*; do
    i=$((i + 1))
    # shellcheck disable=SC2046
    "$REEL" produce --topic viewing-events $(reel_opts) <"$c" 2>>"$WORK/produce.err" ||
        fail "produce failed"
    if [ $i = 2 ]; then
        log "broker 1 down"
        kafka_ctl "down 1"
        sleep 4
        kafka_ctl "up 1"
        log "broker 1 up"
    elif [ $i = 3 ]; then
        log "broker 2 down"
        kafka_ctl "down 2"
        sleep 4
        kafka_ctl "up 2"
        log "broker 2 up"
    fi
done
got=$(wait_for_count reel-count "$N" 300) || fail "only $got of $N records counted"
sleep 2
kill -TERM "$WORKER_PID"
wait "$WORKER_PID" || fail "worker exited with $? on SIGTERM"
diff <(expected_counts "$WORK/events.jsonl") <(actual_counts reel-count) >"$WORK/diff.txt" ||
    fail "counts differ after broker outages: $(head "$WORK/diff.txt")"
outs=$(distinct_sources counts)
[ "$outs" = "$N" ] || fail "$outs distinct outputs for $N inputs"
log "PASS: $N records across two broker outages, counts exact"
