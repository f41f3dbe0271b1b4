#!/bin/bash
# `reel eval recommend --via-kafka` replays the training ratings through an
# embedded cluster, the recommend worker and a private redis-server, and
# scores the last Recommendations each test user was published: the
# popularity baseline lands within half of the in-process figure (only
# each user's list is older), item CF finds relevant items, and every test
# user got a list.
source "$(dirname "$0")/lib.sh"
cd "$REEL_SOURCE_DIR"
R=examples/movielens-sample/ratings.csv
I=examples/movielens-sample/movies.csv
"$REEL" eval recommend --ratings "$R" --items "$I" --algo all >"$WORK/inproc.jsonl" 2>"$WORK/inproc.err" ||
    fail "in-process eval failed"
"$REEL" eval recommend --ratings "$R" --items "$I" --algo item_cf --via-kafka \
    >"$WORK/kafka.jsonl" 2>"$WORK/kafka.err" || fail "eval --via-kafka (item_cf) failed"
"$REEL" eval recommend --ratings "$R" --items "$I" --algo popular --via-kafka \
    >>"$WORK/kafka.jsonl" 2>>"$WORK/kafka.err" || fail "eval --via-kafka (popular) failed"
cat "$WORK/kafka.jsonl"
jq -e -s 'length == 2 and all(.[]; .via == "kafka" and .events_per_sec > 0)' "$WORK/kafka.jsonl" \
    >/dev/null || fail "unexpected --via-kafka output"
users=$(sed -n 's/.*item_cf: \([0-9]*\) test users.*/\1/p' "$WORK/inproc.err")
grep -q "item_cf via kafka: 3754 events in .*, $users test users" "$WORK/kafka.err" ||
    fail "not every training event or test user went through: $(grep 'via kafka:' "$WORK/kafka.err")"
# Which events share a batch varies from run to run, and with it how old
# each user's last list is: only a loose bound holds.
jq -e -s --slurpfile in "$WORK/inproc.jsonl" '
    (map(select(.algo == "popular"))[0]."precision@10") as $kp |
    ($in | map(select(.algo == "popular"))[0]."precision@10") as $ip |
    $kp > 0.5 * $ip and $kp < 1.5 * $ip' "$WORK/kafka.jsonl" >/dev/null ||
    fail "popular via kafka is far from the in-process figure"
jq -e -s 'map(select(.algo == "item_cf"))[0] | ."precision@10" > 0.05 and ."hit_rate@10" > 0.3' \
    "$WORK/kafka.jsonl" >/dev/null || fail "item_cf via kafka recommends nothing relevant"
log "PASS: eval --via-kafka"
