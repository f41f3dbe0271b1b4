#!/bin/bash
# recommend.state=memory with a corrupt log or snapshot in Redis. Entries
# are crafted in the real format (recommend_log.c: "RLG1", a u32 count, 50
# bytes per event) and a valid one is accepted first, so each refusal below
# is for the corruption it names:
#  - `reel recommend state` exits non-zero and names the entry or snapshot
#    for: a truncated `e`, an unknown event type, a user id >= 2^28, a user
#    id below 2^28 but beyond what the dictionary allocated (it used to grow
#    the state to hold it: ~30 GB), a NaN watch time, an entry without its
#    fields, a flipped byte in a snapshot chunk, a truncated chunk, and a
#    pointer claiming 800 GB;
#  - a running worker that must replay a corrupt entry (its first event
#    valid, its second not) retries the batch with `batch_retry` logged,
#    commits no offset and publishes nothing; once the operator removes the
#    entry (`reel recommend state --drop-from N`) it goes on, and the state it
#    leaves equals, byte for byte, a clean run's over the same input (a state
#    that kept the entry's first event would not).
source "$(dirname "$0")/lib.sh"

start_redis
start_kafka 1 1
# shellcheck source=tests/recommend_memory_lib.sh
source "$(dirname "$0")/recommend_memory_lib.sh"
head -n 400 "$WORK/events.jsonl" >"$WORK/part1.jsonl"
sed -n 401,440p "$WORK/events.jsonl" >"$WORK/part2.jsonl"
sed -n 441,700p "$WORK/events.jsonl" >"$WORK/part3.jsonl"
P1=400 P2=440 P3=700

G=bad
K="reel:{$G-recommend}"
produce items "$WORK/items.jsonl"
produce viewing-events "$WORK/part1.jsonl"
for g in ref $G; do
    start_rec "$g" -X recommend.topics=items
    wait_applied "$g" items "$NI"
    stop_rec
done
start_rec $G -X recommend.snapshot.events=100
wait_applied $G viewing-events $P1
stop_rec
good=$(state $G)
S=$(jq .log_entries <<<"$good")
S0=$(jq .snapshot <<<"$good")
log "state after part 1: $good"
if [ "$S0" -eq 0 ] || [ "$S" -le "$S0" ]; then
    fail "want a snapshot and entries after it (snapshot $S0, head $S)"
fi
HEAD=$(rcli --raw GET "$K:mlog:head")

# entry CASE: the bytes of a crafted `e` field on stdout. Events are
# "<IIBBqdddQ": user, item, type, has_rating, ts, watch, duration, rating,
# event hash; user 0 and item 0 exist (items are allocated first).
entry() {
    python3 - "$1" "$T0" <<'EOF'
import struct, sys
case, t0 = sys.argv[1], int(sys.argv[2])
def ev(user=0, item=0, typ=1, ts=t0, watch=10.0, h=0x5eed0000 + 1):
    return struct.pack("<IIBBqdddQ", user, item, typ, 0, ts, watch, 100.0, 0.0, h)
evs = {"valid": [ev()], "type": [ev(typ=99)], "bigid": [ev(user=(1 << 28) + 5)],
       "farid": [ev(user=200000000)], "nan": [ev(watch=float("nan"))],
       "partial": [ev(h=0x5eed0002), ev(typ=99, h=0x5eed0003)],
       "trunc": [ev(), ev()]}[case]
data = b"RLG1" + struct.pack("<I", len(evs)) + b"".join(evs)
if case == "trunc":
    data = data[:8 + 75]
sys.stdout.buffer.write(data)
EOF
}
# put CASE SEQ: appends the crafted entry as log entry SEQ and moves the head to it.
put() {
    if [ "$1" = nofields ]; then
        rcli XADD "$K:mlog" "$2-0" x y >/dev/null
    else
        entry "$1" | rcli -x XADD "$K:mlog" "$2-0" n c0ffee e >/dev/null
    fi
    rcli SET "$K:mlog:head" "$2:c0ffee" >/dev/null
}
# refused WHAT PATTERN...: `reel recommend state` must fail cleanly, saying
# each PATTERN.
refused() {
    local rc=0
    # shellcheck disable=SC2046
    "$REEL" recommend state $(reel_opts) -X group.id=$G -X recommend.similarity=jaccard \
        >"$WORK/refused.out" 2>"$WORK/refused.txt" || rc=$?
    [ "$rc" = 1 ] || fail "$1: reel recommend state exited $rc: $(head -c 600 "$WORK/refused.txt")"
    has -E 'AddressSanitizer|LeakSanitizer|runtime error' "$WORK/refused.txt" && fail "$1: $(head -c 600 "$WORK/refused.txt")"
    local what=$1 p
    shift
    for p in "$@"; do
        grep -qF "$p" "$WORK/refused.txt" || fail "$what: want '$p', got: $(head -c 600 "$WORK/refused.txt")"
    done
    set -- "$what"
    log "$1: $(tail -n 1 "$WORK/refused.txt" | head -c 300)"
}

# The log as it was, put back after each case (a stream refuses an id at
# or below the last it gave, deleted or not).
rcli COPY "$K:mlog" "$K:aside:mlog" >/dev/null
put_back() {
    rcli COPY "$K:aside:mlog" "$K:mlog" REPLACE >/dev/null
    rcli SET "$K:mlog:head" "$HEAD" >/dev/null
}

# The crafted format is the real one: a valid entry is replayed.
put valid $((S + 1))
[ "$(state $G | jq .log_entries)" = $((S + 1)) ] || fail "a valid crafted entry was not replayed"
# Deleting it by hand without moving the head back is refused by name (the
# commit's guard would otherwise refuse every batch forever).
rcli XDEL "$K:mlog" "$((S + 1))-0" >/dev/null
refused "head beyond the log" "mlog:head is at log entry $((S + 1)) but the log ends at $S"
put_back

for c in trunc type bigid farid nan partial nofields; do
    put $c $((S + 1))
    want="log entry $((S + 1)) is corrupt"
    [ $c = nofields ] && want="log entry $((S + 1)) lacks its fields"
    why=$want
    [ $c = farid ] && why="user 200000000 beyond the"
    [ $c = partial ] && why="unknown event type 99"
    refused "entry $c" "$want" "$why"
    put_back
done

# Snapshots: the chunk is kept aside and put back after each case.
CH="$K:msnap:$S0:0"
PTR=$(rcli --raw GET "$K:msnap")
rcli COPY "$CH" "$K:aside" >/dev/null
rcli SETRANGE "$CH" 1000 "X" >/dev/null
refused "snapshot byte flipped" "snapshot $S0 is corrupt"
rcli EVAL "redis.call('SET', KEYS[1], string.sub(redis.call('GET', KEYS[1]), 1, 1000))" 1 "$CH" >/dev/null
refused "snapshot chunk truncated" "snapshot $S0 has 1000 of"
rcli COPY "$K:aside" "$CH" REPLACE >/dev/null
rcli SET "$K:msnap" "$S0 100000 800000000000" >/dev/null
refused "snapshot pointer of 800 GB" "snapshot chunk $K:msnap:$S0:1 is missing"
rcli SET "$K:msnap" "$PTR" >/dev/null
[ "$(state $G | jq -r .fnv64)" = "$(jq -r .fnv64 <<<"$good")" ] || fail "the state changed after the snapshot was put back"

# --drop-from refuses to cut into the snapshot, and changes nothing.
# shellcheck disable=SC2046
if "$REEL" recommend state $(reel_opts) -X group.id=$G -X recommend.similarity=jaccard \
    --drop-from "$S0" >/dev/null 2>"$WORK/refused.txt" ||
    ! grep -qF "entry $S0 is covered by snapshot $S0" "$WORK/refused.txt"; then
    fail "--drop-from $S0: $(head -c 600 "$WORK/refused.txt")"
fi
[ "$(rcli XLEN "$K:mlog")" = $((S - S0)) ] || fail "--drop-from $S0 changed the log"

# A running worker: one batch so that it holds the state, then a corrupt
# entry another writer appended, then more events.
start_rec $G -X recommend.snapshot.events=100
produce viewing-events "$WORK/part2.jsonl"
wait_applied $G viewing-events $P2
HEAD=$(rcli --raw GET "$K:mlog:head")
S=${HEAD%%:*}
put partial $((S + 1))
produce viewing-events "$WORK/part3.jsonl"
for _ in $(seq 1 120); do
    grep -q "\"batch_retry\".*log entry $((S + 1)) is corrupt" "$WORK/worker-$G.log" && break
    sleep 0.25
done
grep -q "\"batch_retry\".*log entry $((S + 1)) is corrupt" "$WORK/worker-$G.log" ||
    fail "the worker did not report the corrupt entry $((S + 1))"
sleep 2
kill -0 "$WORKER_PID" 2>/dev/null || fail "the worker exited on a corrupt entry"
[ "$(applied $G viewing-events)" = $P2 ] || fail "offsets moved past a corrupt entry: $(applied $G viewing-events)"
# shellcheck disable=SC2046
"$REEL" consume --topic "recs-$G" --from-beginning --timeout-ms 3000 $(reel_opts) 2>>"$WORK/consume.err" |
    jq -s -e --argjson p2 $P2 'length > 0 and (map(select(.value.source.offset >= $p2)) | length == 0)' >/dev/null ||
    fail "the worker published for events after the corrupt entry"
retries=$(grep -c '"batch_retry"' "$WORK/worker-$G.log" || true)

# The operator's recovery (docs/recommend.md): drop the entry, the stream's
# last id and the head going back to the entry before it.
# shellcheck disable=SC2046
cut=$("$REEL" recommend state $(reel_opts) -X group.id=$G -X recommend.similarity=jaccard \
    --drop-from $((S + 1)) 2>>"$WORK/state.err") || fail "--drop-from failed: $(tail -3 "$WORK/state.err")"
[ "$(jq .log_entries <<<"$cut")" = "$S" ] || fail "after --drop-from $((S + 1)): $cut"
wait_applied $G viewing-events $P3
stop_rec
grep -q '"level":"error"' "$WORK/worker-$G.log" && fail "the worker logged an error"

start_rec ref
wait_applied ref viewing-events $P3
stop_rec
ref=$(state ref)
after=$(state $G)
log "clean run: $ref"
log "recovered: $after"
[ "$(jq -r .fnv64 <<<"$after")" = "$(jq -r .fnv64 <<<"$ref")" ] ||
    fail "the recovered state differs from a clean run's"
[ "$(jq .snapshot <<<"$after")" -gt "$S" ] || fail "no snapshot after the recovery (the check needs one)"
# A corrupt snapshot, with no backup: starting over empty (docs) is read
# as an empty state, not refused.
snap=$(rcli --raw GET "$K:msnap")
rcli SETRANGE "$K:msnap:${snap%% *}:0" 100 "X" >/dev/null
refused "recovered snapshot flipped" "snapshot ${snap%% *} is corrupt"
rcli DEL "$K:msnap" "$K:msnap:${snap%% *}:0" "$K:mlog" "$K:mlog:head" >/dev/null
empty=$(state $G)
[ "$(jq '[.log_entries, .users, .pairs]' -c <<<"$empty")" = "[0,0,0]" ] || fail "starting over: $empty"
log "PASS: 7 corrupt entries, a head beyond the log and 3 corrupt snapshots refused by name; the worker retried $retries times at entry $((S + 1)) without committing or publishing, and after --drop-from its state equals a clean run's"
