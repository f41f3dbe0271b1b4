#!/bin/bash
# The recommend worker with recommend.state=memory end to end through
# `reel mock-kafka` and Redis. One run is SIGKILLed four times while it
# processes (and Redis is SIGKILLed and restarted from its AOF once), with
# snapshots every 300 events; a clean run of another group sees the same
# input without a break. Then:
#  - the state each group's Redis log and snapshot rebuild (`reel recommend
#    state`) is the same, byte for byte;
#  - the faulty run wrote snapshots and trimmed its log, and restarted
#    workers replayed log entries;
#  - every user got Recommendations in both runs, and a new user who
#    watches the planted item A gets B from item CF in both. (A user's
#    outputs are computed after each batch, and a restarted run cuts its
#    batches elsewhere, so outputs are compared through the state.)
# One partition: the state depends on the order of events across users.
source "$(dirname "$0")/lib.sh"

start_redis
start_kafka 1 1
log "kafka at $BOOTSTRAP"

# shellcheck source=tests/recommend_memory_lib.sh
source "$(dirname "$0")/recommend_memory_lib.sh"

produce items "$WORK/items.jsonl"
produce viewing-events "$WORK/events.jsonl"

# The catalogue first in both groups, so that dense item ids match.
for g in faulty clean; do
    start_rec "$g" -X recommend.topics=items
    wait_applied "$g" items "$NI"
    stop_rec
done

# ---- the faulty run ------------------------------------------------------
start_rec faulty
for k in 1 2 3 4; do
    want=$((N * k / 5))
    for _ in $(seq 1 1200); do
        [ "$(applied faulty viewing-events)" -ge "$want" ] && break
        sleep 0.01
    done
    if [ "$k" = 2 ]; then
        at=$(applied faulty viewing-events)
        stop_redis
        log "redis killed at $at"
        start_redis
    fi
    kill_rec
    log "worker killed at $(applied faulty viewing-events) of $N"
    start_rec faulty
done
wait_applied faulty viewing-events "$N"
stop_rec

# ---- the clean run -------------------------------------------------------
start_rec clean
wait_applied clean viewing-events "$N"
stop_rec

# ---- the state -----------------------------------------------------------
sf=$(state faulty)
sc=$(state clean)
log "faulty: $sf"
log "clean:  $sc"
cmp -s "$WORK/state-faulty.bin" "$WORK/state-clean.bin" ||
    fail "the faulty run's state differs from the clean run's"
[ "$(jq .users <<<"$sf")" = 201 ] || fail "users: $(jq .users <<<"$sf"), want 201"
[ "$(jq .snapshot <<<"$sf")" -gt 0 ] || fail "the faulty run wrote no snapshot"
[ "$(rcli XLEN "reel:{faulty-recommend}:mlog")" -lt "$(jq .log_entries <<<"$sf")" ] ||
    fail "the log was not trimmed by the snapshots"
grep -q recommend_snapshot "$WORK/worker-faulty.log" || fail "no snapshot logged"
replays=$(grep -c '"recommend_state_reload"\|entries_replayed' "$WORK/worker-faulty.log" || true)
restarts=$(grep -c recommend_ready "$WORK/worker-faulty.log")
[ "$restarts" -ge 6 ] || fail "the faulty worker started $restarts times"

# ---- the outputs ---------------------------------------------------------
last_recs() { # GROUP: each user's output with the highest source offset
    # shellcheck disable=SC2046
    "$REEL" consume --topic "recs-$1" --from-beginning --timeout-ms 5000 $(reel_opts) 2>>"$WORK/consume.err" |
        jq -s -c 'map(.value) | group_by(.user_id) | map(max_by(.source.offset))
                  | map({user_id, items: [.items[] | [.item_id, .score, (.sources | join("+"))]]})
                  | sort_by(.user_id) | .[]'
}
for g in faulty clean; do
    last_recs "$g" >"$WORK/recs-$g.jsonl"
    [ "$(wc -l <"$WORK/recs-$g.jsonl")" = 201 ] ||
        fail "$g run: $(wc -l <"$WORK/recs-$g.jsonl") users with outputs, want 201"
    jq -s -e 'map(select(.user_id == "newbie"))[0].items | map(select(.[0] == "B" and (.[2] | contains("item_cf")))) | length == 1' \
        "$WORK/recs-$g.jsonl" >/dev/null || fail "$g run: newbie was not recommended B by item CF: $(grep newbie "$WORK/recs-$g.jsonl")"
done
log "PASS: $N events, $restarts worker starts, one Redis restart; state $(jq -r .fnv64 <<<"$sc") equal in both runs ($(jq .log_entries <<<"$sf") log entries, snapshot at $(jq .snapshot <<<"$sf")); all 201 users served, newbie gets B (reload lines: $replays)"
