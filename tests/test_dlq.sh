#!/bin/bash
# Bad records (empty, too short, wrong magic byte, unknown schema id, a
# truncated record, a huge length prefix, random bytes, an oversized record,
# a record without a key, one whose key is not UTF-8) each become one DLQ
# record carrying the original bytes and error headers; the worker goes on
# and counts the good ones.
source "$(dirname "$0")/lib.sh"

start_redis
start_kafka 1 2
gen_events 1000 50 3 >"$WORK/events.jsonl"
# shellcheck disable=SC2046
"$REEL" produce --topic viewing-events $(reel_opts) <"$WORK/events.jsonl" 2>"$WORK/produce.err" ||
    fail "produce failed"

# A valid record's raw bytes, to derive broken ones from.
good=$(kcat -C -b "$BOOTSTRAP" -t viewing-events -p 0 -o 0 -c 1 -e -q -f '%s' | base64 -w0)
[ -n "$good" ] || fail "could not read a valid record"
python3 - "$good" >"$WORK/bad.b64" <<'PY'
import base64, os, random, sys
good = base64.b64decode(sys.argv[1])
random.seed(42)
bad = [
    b"\x00",                                  # too short
    b"\x00\x00\x00",                          # too short
    b"{\"user_id\":\"x\"}",                   # JSON, wrong magic byte
    b"\x00\x00\x00\x27\x0f" + good[5:],       # schema id 9999
    b"\x00\x00\x00\x07\xd1" + good[5:],       # schema id 2001: a Recommendations, not a ViewingEvent
    good[: len(good) // 2],                   # truncated
    good + b"\x01\x02",                       # trailing bytes
    good[:5] + b"\xfe\xff\xff\xff\x0f" + b"a" * 10,  # string length prefix of ~2 GB
    good[:5] + bytes(random.randrange(256) for _ in range(40)),
    good[:5] + b"\x02" + b"z" * 5000,         # larger than max.record.bytes below
]
for b in bad:
    print(base64.b64encode(b).decode())
PY
NBAD=$(wc -l <"$WORK/bad.b64")
# shellcheck disable=SC2046
"$REEL" produce --topic viewing-events --raw-base64 $(reel_opts) <"$WORK/bad.b64" \
    2>>"$WORK/produce.err" || fail "raw produce failed"
# A valid record with no key cannot be counted: the worker itself rejects it.
printf '%s\n' "$good" | base64 -d | kcat -P -b "$BOOTSTRAP" -t viewing-events -p 1 ||
    fail "kcat produce failed"
# A valid record whose key is not UTF-8: its output cannot be encoded, so
# the worker dead-letters it rather than retrying it forever.
printf '%s' "$good" | base64 -d | kcat -P -b "$BOOTSTRAP" -t viewing-events -p 1 -k $'\xff\xfeuser' ||
    fail "kcat produce failed"
# More good records after the bad ones: the worker must go on.
gen_events 500 50 4 | sed 's/"event_id":"e/"event_id":"f/' >"$WORK/more.jsonl"
# shellcheck disable=SC2046
"$REEL" produce --topic viewing-events $(reel_opts) <"$WORK/more.jsonl" 2>>"$WORK/produce.err" ||
    fail "produce failed"

start_worker worker -X max.record.bytes=4096
got=$(wait_for_count reel-count 1500 120) || fail "only $got of 1500 good records counted"
# shellcheck disable=SC2046
"$REEL" consume --topic viewing-events.dlq --from-beginning --timeout-ms 5000 $(reel_opts) \
    >"$WORK/dlq.jsonl" 2>/dev/null
kill -TERM "$WORKER_PID"
wait "$WORKER_PID" || fail "worker exited with $? on SIGTERM"

ndlq=$(wc -l <"$WORK/dlq.jsonl")
[ "$ndlq" = $((NBAD + 2)) ] || fail "$ndlq DLQ records, want $((NBAD + 2))"
# Each DLQ record has the error headers and the original bytes.
jq -e -s 'all(.[]; .headers["reel.error.stage"] != null and .headers["reel.error.reason"] != null
    and .headers["reel.source.topic"] == "viewing-events" and .headers["reel.source.offset"] != null
    and .value_base64 != null)' "$WORK/dlq.jsonl" >/dev/null || fail "a DLQ record lacks headers"
sort "$WORK/bad.b64" >"$WORK/bad.sorted"
jq -r 'select(.headers["reel.error.stage"] == "decode") | .value_base64' "$WORK/dlq.jsonl" |
    sort >"$WORK/dlq.sorted"
diff "$WORK/bad.sorted" "$WORK/dlq.sorted" >/dev/null || fail "DLQ values differ from the bad records"
jq -e -s 'map(select(.headers["reel.error.stage"] == "process")) | length == 2' "$WORK/dlq.jsonl" \
    >/dev/null || fail "the keyless and the non-UTF-8-keyed records were not dead-lettered"
grep -q 'UTF-8' "$WORK/dlq.jsonl" || fail "no DLQ reason mentions the invalid UTF-8 key"
for reason in "wrong magic byte" "schema id 9999 unknown" "exceeds max.record.bytes" "trailing"; do
    grep -q "$reason" "$WORK/dlq.jsonl" || fail "no DLQ reason mentions '$reason'"
done
grep -q '"event":"record_dead_lettered"' "$WORK/worker.log" || fail "no log line per DLQ record"
cat "$WORK/events.jsonl" "$WORK/more.jsonl" >"$WORK/all.jsonl"
diff <(expected_counts "$WORK/all.jsonl") <(actual_counts reel-count) >"$WORK/diff.txt" ||
    fail "counts differ: $(head "$WORK/diff.txt")"
# Replay: a dry run lists without producing; a replay filtered by reason
# puts exactly those records back on viewing-events with their original
# bytes and a reel.replayed.from header; run again, the same group replays
# nothing (its offsets were committed after delivery).
# shellcheck disable=SC2046
"$REEL" dlq replay --topic viewing-events --reason trailing --dry-run --timeout-ms 3000 \
    $(reel_opts) >"$WORK/dry.txt" 2>"$WORK/replay.err" || fail "dlq replay --dry-run failed"
[ "$(wc -l <"$WORK/dry.txt")" = 1 ] || fail "dry run listed $(wc -l <"$WORK/dry.txt") records, want 1"
before=$(kcat -C -b "$BOOTSTRAP" -t viewing-events -e -q -f '%o\n' | wc -l)
# shellcheck disable=SC2046
"$REEL" dlq replay --topic viewing-events --reason "schema id" --timeout-ms 3000 $(reel_opts) \
    2>>"$WORK/replay.err" || fail "dlq replay failed"
grep -q ', 2 replayed' "$WORK/replay.err" || fail "replay summary: $(tail -1 "$WORK/replay.err")"
after=$(kcat -C -b "$BOOTSTRAP" -t viewing-events -e -q -f '%o\n' | wc -l)
[ $((after - before)) = 2 ] || fail "replay added $((after - before)) records, want 2"
kcat -C -b "$BOOTSTRAP" -t viewing-events -e -q -f '%h %s\n' | grep -a 'reel.replayed.from=viewing-events.dlq:' |
    wc -l | has -x 2 || fail "replayed records lack reel.replayed.from"
# shellcheck disable=SC2046
"$REEL" dlq replay --topic viewing-events --reason "schema id" --timeout-ms 3000 $(reel_opts) \
    2>>"$WORK/replay.err" || fail "second dlq replay failed"
grep -q ', 0 replayed' "$WORK/replay.err" || fail "a second replay repeated records"
log "PASS: $ndlq bad records dead-lettered with reasons, 1500 good records counted exactly, replay"
jq -r '.headers["reel.error.reason"]' "$WORK/dlq.jsonl" | sort | uniq -c
