#!/bin/bash
# 100k records through the counting worker: every key's count in Redis is
# exact, every input has an output, /metrics and /healthz answer, and
# SIGTERM stops the worker cleanly with everything committed.
source "$(dirname "$0")/lib.sh"

N=${N:-100000}
start_redis
start_kafka 3 4
log "kafka at $BOOTSTRAP"

gen_events "$N" 1000 7 >"$WORK/events.jsonl"
# shellcheck disable=SC2046
"$REEL" produce --topic viewing-events $(reel_opts) <"$WORK/events.jsonl" 2>"$WORK/produce.err" ||
    fail "produce failed"

# shellcheck disable=SC2046
"$REEL" run count $(reel_opts) -X metrics.port=0 2>"$WORK/worker.log" &
WORKER_PID=$!
BG_PIDS+=("$WORKER_PID")
PORT=$(metrics_port "$WORK/worker.log") || fail "the worker logged no metrics port"

got=$(wait_for_count reel-count "$N" 300) || fail "only $got of $N records counted"
log "counted $got records"

metrics=$(curl -fsS "http://127.0.0.1:$PORT/metrics") || fail "no /metrics"
echo "$metrics" | has 'reel_records_in_total{worker="count",topic="viewing-events"}' ||
    fail "metrics lack reel_records_in_total"
in_total=$(echo "$metrics" | awk '/^reel_records_in_total\{worker="count",topic="viewing-events"\}/ {print $2}')
[ "${in_total%.*}" = "$N" ] || fail "reel_records_in_total=$in_total, want $N"
health=$(curl -fsS "http://127.0.0.1:$PORT/healthz") || fail "no /healthz"
[ "$health" = ok ] || fail "healthz said $health"

kill -TERM "$WORKER_PID"
wait "$WORKER_PID" || fail "worker exited with $? on SIGTERM"
grep -q '"event":"worker_stopped"' "$WORK/worker.log" || fail "no worker_stopped log line"

diff <(expected_counts "$WORK/events.jsonl") <(actual_counts reel-count) >"$WORK/diff.txt" ||
    fail "counts differ: $(head "$WORK/diff.txt")"
outs=$(distinct_sources counts)
[ "$outs" = "$N" ] || fail "$outs distinct outputs for $N inputs"
# The applied offsets cover every input record.
applied=$(rcli --raw HVALS "reel:{reel-count}:offsets:viewing-events" | awk '{s += $1} END {print s}')
[ "$applied" = "$N" ] || fail "applied offsets sum to $applied, want $N"
log "PASS: $N records, counts exact, $outs outputs"
