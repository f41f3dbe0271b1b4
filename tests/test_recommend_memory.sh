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

NOW=$(($(date +%s) * 1000))
T0=$((NOW - 86400000))

awk -v t0="$T0" 'BEGIN {
    split("Action Comedy Drama Horror Romance Sci-Fi Thriller Western", g, " ");
    printf("{\"item_id\":\"A\",\"title\":\"Planted A\",\"genres\":[\"Drama\"],\"tags\":[],\"year\":1999,\"ts\":%d}\n", t0);
    printf("{\"item_id\":\"B\",\"title\":\"Planted B\",\"genres\":[\"Drama\"],\"tags\":[],\"year\":2001,\"ts\":%d}\n", t0);
    for (i = 0; i < 40; i++)
        printf("{\"item_id\":\"i%d\",\"title\":\"Item %d\",\"genres\":[\"%s\"],\"tags\":[],\"year\":%d,\"ts\":%d}\n",
               i, i, g[1 + i % 8], 1950 + i, t0);
}' >"$WORK/items.jsonl"

# 40 planted users (A then B), 160 others with 12 random events each, a
# re-sent event, and last a new user who watches A.
awk -v t0="$T0" 'BEGIN {
    srand(7);
    split("view play progress complete rating like dislike", types, " ");
    n = 0;
    for (u = 0; u < 200; u++) {
        if (u < 40) {
            printf("{\"event_id\":\"e%d\",\"user_id\":\"u%d\",\"item_id\":\"A\",\"type\":\"play\",\"ts\":%d,\"watch_seconds\":60}\n", n, u, t0 + n * 1000); n++;
            printf("{\"event_id\":\"e%d\",\"user_id\":\"u%d\",\"item_id\":\"B\",\"type\":\"complete\",\"ts\":%d,\"watch_seconds\":60}\n", n, u, t0 + n * 1000); n++;
        }
        for (k = 0; k < 12; k++) {
            t = types[1 + int(rand() * 7)];
            r = (t == "rating") ? sprintf(",\"rating\":%.1f", 0.5 + int(rand() * 10) / 2) : "";
            printf("{\"event_id\":\"e%d\",\"user_id\":\"u%d\",\"item_id\":\"i%d\",\"type\":\"%s\",\"ts\":%d,\"watch_seconds\":%d,\"duration_seconds\":100%s}\n",
                   n, (u * 7 + k) % 200, int(rand() * 40), t, t0 + n * 1000, int(rand() * 100), r); n++;
        }
        if (u == 100)
            printf("{\"event_id\":\"e1\",\"user_id\":\"u0\",\"item_id\":\"B\",\"type\":\"complete\",\"ts\":%d,\"watch_seconds\":60}\n", t0 + 1000);
    }
    printf("{\"event_id\":\"new1\",\"user_id\":\"newbie\",\"item_id\":\"A\",\"type\":\"play\",\"ts\":%d,\"watch_seconds\":10}\n", t0 + n * 1000);
}' >"$WORK/events.jsonl"
N=$(wc -l <"$WORK/events.jsonl")
NI=$(wc -l <"$WORK/items.jsonl")

produce() {
    # shellcheck disable=SC2046
    "$REEL" produce --topic "$1" $(reel_opts) <"$2" 2>>"$WORK/produce.err" || fail "produce to $1 failed"
}
applied() { # GROUP TOPIC
    rcli --raw HVALS "reel:{$1-recommend}:offsets:$2" | awk '{s += $1} END {print s + 0}'
}
wait_applied() { # GROUP TOPIC N
    local got=0
    for _ in $(seq 1 480); do
        got=$(applied "$1" "$2")
        [ "$got" -ge "$3" ] && return 0
        sleep 0.25
    done
    fail "$1: $got of $3 records of $2 applied"
}
start_rec() { # GROUP [args]
    local g=$1
    shift
    # shellcheck disable=SC2046
    "$REEL" run recommend $(reel_opts) -X group.id="$g" -X recommend.output="recs-$g" \
        -X recommend.state=memory -X recommend.snapshot.events=300 -X batch.max.records=40 \
        -X recommend.similarity=jaccard -X recommend.reload.interval.ms=200 "$@" \
        2>>"$WORK/worker-$g.log" &
    WORKER_PID=$!
    BG_PIDS+=("$WORKER_PID")
}
stop_rec() {
    kill -TERM "$WORKER_PID"
    wait "$WORKER_PID" || fail "worker exited with $? on SIGTERM"
}
kill_rec() {
    {
        kill -9 "$WORKER_PID"
        wait "$WORKER_PID" || true
    } 2>/dev/null
}

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
state() { # GROUP
    # shellcheck disable=SC2046
    "$REEL" recommend state $(reel_opts) -X group.id="$1" -X recommend.similarity=jaccard \
        --out "$WORK/state-$1.bin" 2>>"$WORK/state.err" || fail "reel recommend state $1 failed: $(tail -3 "$WORK/state.err")"
}
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
