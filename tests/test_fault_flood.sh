#!/bin/bash
# Floods do not stall a partition (one partition, the count worker, with
# max.record.bytes=1 MiB): valid records of exactly the configured maximum
# are counted, one a byte larger goes to the DLQ with its original bytes, and
# a burst of 5000 undecodable records between good ones goes to the DLQ
# while the good records after it are counted. Everything must be done
# within a generous bound (a stalled partition never finishes); the worker
# exits 0 on SIGTERM (under ASan: no leaks). When the producer cannot send the
# oversized record's DLQ copy (its message.max.bytes, or a broker's, is
# smaller), a truncated copy marked reel.error.truncated goes instead.
source "$(dirname "$0")/lib.sh"

MAX=1048576
NBURST=${NBURST:-5000}
start_redis
start_kafka 1 1
# The producers here may send records of any size up to 2 MB.
popts() { echo "$(reel_opts) -X kafka.message.max.bytes=2100000"; }
produce() {
    # shellcheck disable=SC2046
    "$REEL" produce --topic viewing-events $(popts) "$@" 2>>"$WORK/produce.err" ||
        fail "produce failed"
}
gen_events 1000 50 1 >"$WORK/a.jsonl"
produce <"$WORK/a.jsonl"

# A probe with a 100-byte device string gives the record's size without it;
# a device of L bytes (3-byte length prefix) then gives exactly MAX bytes.
big() { # big ID LEN
    python3 -c 'import json, sys; print(json.dumps({"event_id": sys.argv[1], "user_id": "big",
        "item_id": "i1", "type": "play", "ts": 1700000000000, "watch_seconds": 1,
        "device": "x" * int(sys.argv[2])}))' "$1" "$2"
}
big prb0 100 | produce
s100=$(kcat -C -b "$BOOTSTRAP" -t viewing-events -p 0 -o 1000 -c 1 -e -q -f '%S')
L=$((MAX - s100 + 99))
{ big max1 "$L"; big max2 "$L"; big over "$((L + 1))"; } | produce
kcat -C -b "$BOOTSTRAP" -t viewing-events -p 0 -o 1001 -c 3 -e -q -f '%S\n' >"$WORK/sizes.txt"
[ "$(paste -sd' ' "$WORK/sizes.txt")" = "$MAX $MAX $((MAX + 1))" ] ||
    fail "big records are $(paste -sd' ' "$WORK/sizes.txt") bytes, want $MAX $MAX $((MAX + 1))"

# The burst: undecodable records of every kind.
python3 - "$NBURST" >"$WORK/burst.b64" <<'PY'
import base64, struct, sys
for i in range(int(sys.argv[1])):
    tag = b"burst-%d" % i
    b = [b"\x00" + struct.pack(">I", 1001) + b"\xfe\xff\xff\xff\x0f" + tag,
         b"\x07" + struct.pack(">I", 1001) + tag, b"\x00" + struct.pack(">I", 9999) + tag,
         b'{"burst":%d}' % i][i % 4]
    print(base64.b64encode(b).decode())
PY
produce --raw-base64 <"$WORK/burst.b64"
gen_events 1000 50 2 | sed 's/"event_id":"e/"event_id":"f/' >"$WORK/b.jsonl"
produce <"$WORK/b.jsonl"
NGOOD=$((1000 + 1 + 2 + 1000))
NDLQ=$((1 + NBURST))

t0=$SECONDS
start_worker worker -X max.record.bytes=$MAX
got=$(wait_for_count reel-count "$NGOOD" 180) ||
    fail "partition stalled: $got of $NGOOD good records counted after $((SECONDS - t0)) s"
log "$got good records counted in $((SECONDS - t0)) s"
# shellcheck disable=SC2046
"$REEL" consume --topic viewing-events.dlq --from-beginning --timeout-ms 3000 $(reel_opts) \
    >"$WORK/dlq.jsonl" 2>>"$WORK/consume.err" || fail "consume failed"
kill -TERM "$WORKER_PID"
wait "$WORKER_PID" || fail "worker exited with $? on SIGTERM"
sleep 1
[ "$(rcli --raw HVALS 'reel:{reel-count}:counts' | awk '{s += $1} END {print s}')" = "$NGOOD" ] ||
    fail "counts do not sum to $NGOOD"
[ "$(rcli --raw HGET 'reel:{reel-count}:counts' big)" = 3 ] || fail "the MAX-sized records were not counted"
ndlq=$(jq -r '.headers["reel.source.offset"]' "$WORK/dlq.jsonl" | sort -u | wc -l)
[ "$ndlq" = "$NDLQ" ] || fail "$ndlq records dead-lettered, want $NDLQ"
# The oversized record is in the DLQ whole, with its reason.
jq -r 'select(.headers["reel.error.reason"] | test("exceeds max.record.bytes")) | .value_base64' \
    "$WORK/dlq.jsonl" | head -1 | base64 -d >"$WORK/over.bin"
kcat -C -b "$BOOTSTRAP" -t viewing-events -p 0 -o 1003 -c 1 -e -q -f '%s' >"$WORK/over.orig"
cmp -s "$WORK/over.bin" "$WORK/over.orig" || fail "the oversized record's DLQ copy differs from it"
jq -r .value_base64 "$WORK/dlq.jsonl" | grep -v '^$' | sort -u >"$WORK/dlq.b64"
[ "$(comm -23 <(sort -u "$WORK/burst.b64") "$WORK/dlq.b64" | wc -l)" = 0 ] ||
    fail "burst records missing from the DLQ or changed"

# A producer (or broker) that refuses the oversized record's DLQ copy must
# not stall the partition either: a second group whose producer allows only
# 1,000,000 bytes dead-letters a truncated copy, marked as such.
t0=$SECONDS
start_worker small -X group.id=small -X max.record.bytes=$MAX -X kafka.producer.message.max.bytes=1000000
got=$(wait_for_count small-count "$NGOOD" 180) ||
    fail "partition stalled with a small producer limit: $got of $NGOOD counted after $((SECONDS - t0)) s"
kill -TERM "$WORKER_PID"
wait "$WORKER_PID" || fail "worker exited with $? on SIGTERM"
# shellcheck disable=SC2046
"$REEL" consume --topic viewing-events.dlq --from-beginning --timeout-ms 3000 $(reel_opts) \
    >"$WORK/dlq2.jsonl" 2>>"$WORK/consume.err" || fail "consume failed"
jq -r 'select(.headers["reel.error.truncated"] == "'$((MAX + 1))'") | .value_base64' \
    "$WORK/dlq2.jsonl" | head -1 | base64 -d >"$WORK/trunc.bin"
cmp -s "$WORK/trunc.bin" <(head -c 65536 "$WORK/over.orig") ||
    fail "no truncated DLQ copy of the oversized record ($(wc -c <"$WORK/trunc.bin") bytes)"
grep -q '"event":"dlq_record_truncated"' "$WORK/small.log" || fail "no dlq_record_truncated log line"
log "PASS: records of max.record.bytes counted, a larger one and $NBURST poison records dead-lettered with their bytes (truncated, and marked, when the producer refuses it), no stall"
