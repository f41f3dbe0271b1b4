#!/bin/bash
# recommend.state=memory with two workers in one group (2 partitions), each
# appending to the group's log while the other does: commits refused by the
# guard are processed again, each worker replays the other's entries, and
# after one of them is SIGKILLed the other takes over its partition. The
# order of the log then depends on timing, so the state is checked through
# what does not depend on it: users, items and co-occurrence pairs (Jaccard,
# no decay, no history eviction) equal one worker's run over the same input,
# a second rebuild gives the same bytes, and the planted pair is found.
source "$(dirname "$0")/lib.sh"

start_redis
start_kafka 1 2
log "kafka at $BOOTSTRAP"
# shellcheck source=tests/recommend_memory_lib.sh
source "$(dirname "$0")/recommend_memory_lib.sh"

produce items "$WORK/items.jsonl"
produce viewing-events "$WORK/events.jsonl"
for g in solo pair; do
    start_rec "$g" -X recommend.topics=items
    wait_applied "$g" items "$NI"
    stop_rec
done

start_rec solo
wait_applied solo viewing-events "$N"
stop_rec
solo=$(state solo)
log "solo: $solo"

start_rec pair
FIRST=$WORKER_PID
start_rec pair
SECOND=$WORKER_PID
for _ in $(seq 1 2400); do
    [ "$(applied pair viewing-events)" -ge $((N / 2)) ] && break
    sleep 0.01
done
WORKER_PID=$FIRST
kill_rec
log "first worker killed at $(applied pair viewing-events) of $N"
WORKER_PID=$SECOND
wait_applied pair viewing-events "$N"
stop_rec
pair=$(state pair)
again=$(state pair)
log "pair: $pair"
for f in users items pairs; do
    [ "$(jq ".$f" <<<"$pair")" = "$(jq ".$f" <<<"$solo")" ] ||
        fail "$f: $(jq ".$f" <<<"$pair") with two workers, $(jq ".$f" <<<"$solo") with one"
done
[ "$(jq -r .fnv64 <<<"$pair")" = "$(jq -r .fnv64 <<<"$again")" ] || fail "two rebuilds differ"
conflicts=$(grep -c '"state_conflict"' "$WORK/worker-pair.log" || true)
reloads=$(grep -c '"recommend_state_reload"' "$WORK/worker-pair.log" || true)
grep -q '"level":"error"' "$WORK/worker-pair.log" && fail "a worker logged an error: $(grep '"level":"error"' "$WORK/worker-pair.log" | head -2)"

# shellcheck disable=SC2046
"$REEL" consume --topic recs-pair --from-beginning --timeout-ms 5000 $(reel_opts) 2>>"$WORK/consume.err" |
    jq -s -e 'map(.value | select(.user_id == "newbie")) | max_by(.source.offset).items
              | map(select(.item_id == "B" and (.sources | index("item_cf")))) | length == 1' >/dev/null ||
    fail "newbie was not recommended B by item CF"
log "PASS: two workers, one killed: users/items/pairs equal one worker's ($(jq .pairs <<<"$pair") pairs); $conflicts guarded commits refused, $reloads reloads"
