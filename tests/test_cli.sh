#!/bin/bash
# The command-line contracts scripts rely on: mock-kafka's first line,
# produce's line-numbered errors and exit status, consume's JSON lines,
# configuration precedence and errors, version and help.
source "$(dirname "$0")/lib.sh"

"$REEL" version | has -E '^reel [0-9]+\.[0-9]+\.[0-9]+$' || fail "reel version"
"$REEL" --help | has 'mock-kafka' || fail "reel --help lacks mock-kafka"
"$REEL" config | has '^redis.url' || fail "reel config lacks redis.url"
set +e
"$REEL" run nosuchworker 2>"$WORK/err.txt"; rc=$?
set -e
[ $rc = 2 ] && grep -q 'unknown worker nosuchworker' "$WORK/err.txt" || fail "unknown worker: rc=$rc"
set +e
"$REEL" run count -X nokeyvalue 2>"$WORK/err.txt"; rc=$?
set -e
[ $rc = 2 ] && grep -q 'nokeyvalue' "$WORK/err.txt" || fail "bad -X accepted: rc=$rc"
printf 'redis.url = redis://example:1\nbadline\n' >"$WORK/bad.properties"
set +e
"$REEL" run count -c "$WORK/bad.properties" 2>"$WORK/err.txt"; rc=$?
set -e
[ $rc = 2 ] && grep -q 'bad.properties:2' "$WORK/err.txt" || fail "bad config line not reported"

start_redis
start_kafka 1 3 "viewing-events,items,counts"
head -1 "$WORK/kafka.out" | has '^bootstrap.servers=127.0.0.1:' || fail "mock-kafka first line"

# Precedence: file < environment < -X. The file names a broker that does
# not exist; the environment fixes it; -X then sets the linger.
printf 'kafka.bootstrap.servers=127.0.0.1:1\n' >"$WORK/reel.properties"
cat >"$WORK/items.jsonl" <<'JSON'
{"item_id":"1","title":"Toy Story (1995)","genres":["Adventure","Animation"],"tags":["pixar"],"year":1995,"ts":1700000000000}
{"item_id":"2","title":"Jumanji (1995)","genres":["Adventure"],"tags":[],"year":null,"ts":1700000000001}
{"item_id":"3","title":"missing ts"}
{"item_id":"4","title":"unknown field","genres":[],"tags":[],"ts":1,"colour":"red"}
not json at all
{"item_id":"5","title":"Heat (1995)","genres":["Action"],"ts":1700000000002}
JSON
set +e
REEL_KAFKA_BOOTSTRAP_SERVERS=$BOOTSTRAP "$REEL" produce --topic items -c "$WORK/reel.properties" \
    -X kafka.linger.ms=1 <"$WORK/items.jsonl" 2>"$WORK/produce.err"
rc=$?
set -e
[ $rc = 1 ] || fail "produce with bad lines exited $rc, want 1"
grep -q 'line 3: .*ts' "$WORK/produce.err" || fail "line 3 (missing ts) not reported"
grep -q 'line 4: .*colour' "$WORK/produce.err" || fail "line 4 (unknown field) not reported"
grep -q 'line 5:' "$WORK/produce.err" || fail "line 5 (not JSON) not reported"
grep -q '3 records to items' "$WORK/produce.err" || fail "produce summary: $(cat "$WORK/produce.err")"

# shellcheck disable=SC2046
"$REEL" consume --topic items --from-beginning --max 3 --timeout-ms 10000 $(reel_opts) \
    >"$WORK/items.out" 2>/dev/null || fail "consume failed"
[ "$(wc -l <"$WORK/items.out")" = 3 ] || fail "consume printed $(wc -l <"$WORK/items.out") lines"
jq -e -s 'map(.value.item_id) | sort == ["1","2","5"]' "$WORK/items.out" >/dev/null ||
    fail "consumed item ids differ"
jq -e -s 'all(.[]; .schema == "Item" and .topic == "items" and .key == .value.item_id)' \
    "$WORK/items.out" >/dev/null || fail "records not keyed by item_id"
jq -e -s 'map(select(.value.item_id == "1"))[0].value == {"item_id":"1","title":"Toy Story (1995)","genres":["Adventure","Animation"],"tags":["pixar"],"year":1995,"ts":1700000000000}' \
    "$WORK/items.out" >/dev/null || fail "item 1 did not round-trip: $(head -1 "$WORK/items.out")"
jq -e -s 'map(select(.value.item_id == "5"))[0].value.tags == []' "$WORK/items.out" >/dev/null ||
    fail "a missing array field did not take its default"

# --receive-time: the wall clock at receipt, after the record was produced.
before=$(date +%s%3N)
# shellcheck disable=SC2046
"$REEL" consume --topic items --from-beginning --max 3 --timeout-ms 10000 --receive-time \
    $(reel_opts) >"$WORK/items-rt.out" 2>/dev/null || fail "consume --receive-time failed"
after=$(date +%s%3N)
jq -e -s --argjson b "$before" --argjson a "$after" \
    'length == 3 and all(.[]; (.received | type) == "number" and .received >= .timestamp
        and .received >= $b and .received <= $a)' "$WORK/items-rt.out" >/dev/null ||
    fail "--receive-time: $(head -1 "$WORK/items-rt.out")"
jq -e -s 'all(.[]; has("received") | not)' "$WORK/items.out" >/dev/null ||
    fail "received printed without --receive-time"

# consume without --from-beginning starts at the end: nothing old shows.
# shellcheck disable=SC2046
n=$("$REEL" consume --topic items --timeout-ms 2000 $(reel_opts) 2>/dev/null | wc -l)
[ "$n" = 0 ] || fail "consume without --from-beginning printed $n old records"

# The model registry: push by magic, list, get back byte for byte, roll back.
printf 'RSNT\001binary\000model' >"$WORK/m1.bin"
printf 'RSNT\002second' >"$WORK/m2.bin"
printf 'not a model' >"$WORK/junk.bin"
"$REEL" model push "$WORK/m1.bin" -X redis.url="$REDIS_URL" | has 'sentiment version 1' ||
    fail "model push by magic"
"$REEL" model push "$WORK/m2.bin" -X redis.url="$REDIS_URL" >/dev/null || fail "second push"
if "$REEL" model push "$WORK/junk.bin" -X redis.url="$REDIS_URL" 2>"$WORK/model.err"; then
    fail "a file with no known magic was pushed without --kind"
fi
grep -q -- '--kind' "$WORK/model.err" || fail "unknown magic: no hint at --kind"
"$REEL" model list sentiment -X redis.url="$REDIS_URL" >"$WORK/model.list"
grep -q '^\* {"version":2' "$WORK/model.list" || fail "version 2 not current: $(cat "$WORK/model.list")"
"$REEL" model rollback sentiment 1 -X redis.url="$REDIS_URL" >/dev/null || fail "rollback"
"$REEL" model get sentiment --out "$WORK/m1.out" -X redis.url="$REDIS_URL" >/dev/null ||
    fail "model get"
cmp -s "$WORK/m1.bin" "$WORK/m1.out" || fail "model get after rollback is not version 1"
if "$REEL" model remove sentiment 1 -X redis.url="$REDIS_URL" 2>/dev/null; then
    fail "the current model version was removed"
fi

# reel health: exit 0 while a worker serves /healthz, 1 once it is gone.
# shellcheck disable=SC2046
"$REEL" run count $(reel_opts | sed 's/-X metrics.port=-1//') -X metrics.port=0 2>"$WORK/health-worker.log" &
HW=$!
BG_PIDS+=("$HW")
PORT=$(metrics_port "$WORK/health-worker.log") || fail "the worker logged no metrics port"
ok=0
for _ in $(seq 1 100); do
    if "$REEL" health --port "$PORT" >"$WORK/health.out" 2>&1; then ok=1; break; fi
    sleep 0.1
done
[ $ok = 1 ] || fail "reel health never succeeded: $(cat "$WORK/health.out")"
grep -q ' 200' "$WORK/health.out" || fail "reel health printed $(cat "$WORK/health.out")"
kill -TERM "$HW"
wait "$HW" || fail "worker exited with $? on SIGTERM"
if "$REEL" health --port "$PORT" 2>/dev/null; then fail "reel health succeeded with no worker"; fi
log "PASS: command-line contracts"
