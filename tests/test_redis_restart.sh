#!/bin/bash
# Redis dies (SIGKILL) mid-stream and comes back from its AOF. The worker
# backs off and retries without losing or skipping a record, and reports
# itself unhealthy meanwhile.
source "$(dirname "$0")/lib.sh"

N=${N:-40000}
start_redis
start_kafka 3 4
gen_events "$N" 300 5 >"$WORK/events.jsonl"
split -n l/2 "$WORK/events.jsonl" "$WORK/chunk."
# shellcheck disable=SC2046
"$REEL" produce --topic viewing-events $(reel_opts) <"$WORK/chunk.aa" 2>>"$WORK/produce.err" ||
    fail "produce failed"
start_worker worker -X batch.max.records=200
sleep 3
log "killing redis at $(rcli --raw HVALS 'reel:{reel-count}:counts' | awk '{s += $1} END {print s + 0}') counted"
stop_redis
# shellcheck disable=SC2046
"$REEL" produce --topic viewing-events $(reel_opts) <"$WORK/chunk.ab" 2>>"$WORK/produce.err" ||
    fail "produce failed"
sleep 4
kill -0 "$WORKER_PID" || fail "worker died while Redis was down"
log "restarting redis"
start_redis
got=$(wait_for_count reel-count "$N" 300) || fail "only $got of $N records counted"
sleep 2
kill -TERM "$WORKER_PID"
wait "$WORKER_PID" || fail "worker exited with $? on SIGTERM"
grep -q '"event":"redis_unavailable"' "$WORK/worker.log" || fail "no redis_unavailable log line"
diff <(expected_counts "$WORK/events.jsonl") <(actual_counts reel-count) >"$WORK/diff.txt" ||
    fail "counts differ after a Redis restart: $(head "$WORK/diff.txt")"
outs=$(distinct_sources counts)
[ "$outs" = "$N" ] || fail "$outs distinct outputs for $N inputs"
log "PASS: $N records across a Redis crash, counts exact"
