#!/bin/bash
# The recommend worker end to end through `reel mock-kafka` and Redis:
#  - one Recommendations per user touched by a batch, whose source is one of
#    that user's events, never recommending an item the user already saw;
#  - a planted pattern (users who watch A also watch B) makes a new user who
#    watches A get B;
#  - bad events (empty user id, rating 9, a future timestamp) go to the DLQ
#    with their reasons;
#  - a re-sent event_id changes no state;
#  - after a SIGKILL and a restart the counters in Redis are exact: the
#    popularity zset equals the number of distinct users per item, and the
#    co-occurrence counters sum to what the events imply.
source "$(dirname "$0")/lib.sh"

GROUP=reel-recommend
K="reel:{$GROUP}"
start_redis
start_kafka 1 2
log "kafka at $BOOTSTRAP"

NOW=$(($(date +%s) * 1000))
T0=$((NOW - 86400000))

# The catalogue: A, B and 40 others.
awk -v t0="$T0" 'BEGIN {
    split("Action Comedy Drama Horror Romance Sci-Fi Thriller Western", g, " ");
    printf("{\"item_id\":\"A\",\"title\":\"Planted A\",\"genres\":[\"Drama\"],\"tags\":[\"planted\"],\"year\":1999,\"ts\":%d}\n", t0);
    printf("{\"item_id\":\"B\",\"title\":\"Planted B\",\"genres\":[\"Drama\"],\"tags\":[\"planted\"],\"year\":2001,\"ts\":%d}\n", t0);
    for (i = 0; i < 40; i++)
        printf("{\"item_id\":\"i%d\",\"title\":\"Item %d\",\"genres\":[\"%s\",\"%s\"],\"tags\":[],\"year\":%d,\"ts\":%d}\n",
               i, i, g[1 + i % 8], g[1 + (i * 3) % 8], 1950 + i, t0);
}' >"$WORK/items.jsonl"

# gen USERS_PREFIX N_USERS PER_USER PLANTED SEED EVENT_PREFIX: events.
gen() {
    awk -v pre="$1" -v nu="$2" -v per="$3" -v planted="$4" -v seed="$5" -v ep="$6" -v t0="$T0" 'BEGIN {
        srand(seed);
        split("view play progress complete rating like", types, " ");
        n = 0;
        for (u = 0; u < nu; u++) {
            if (planted) {
                printf("{\"event_id\":\"%s%d\",\"user_id\":\"%s%d\",\"item_id\":\"A\",\"type\":\"play\",\"ts\":%d,\"watch_seconds\":60}\n", ep, n, pre, u, t0 + n * 1000); n++;
                printf("{\"event_id\":\"%s%d\",\"user_id\":\"%s%d\",\"item_id\":\"B\",\"type\":\"complete\",\"ts\":%d,\"watch_seconds\":60}\n", ep, n, pre, u, t0 + n * 1000); n++;
            }
            for (k = 0; k < per; k++) {
                t = types[1 + int(rand() * 6)];
                r = (t == "rating") ? sprintf(",\"rating\":%.1f", 0.5 + int(rand() * 10) / 2) : "";
                printf("{\"event_id\":\"%s%d\",\"user_id\":\"%s%d\",\"item_id\":\"i%d\",\"type\":\"%s\",\"ts\":%d,\"watch_seconds\":%d,\"duration_seconds\":100%s}\n",
                       ep, n, pre, u, int(rand() * 40), t, t0 + n * 1000, int(rand() * 100), r); n++;
            }
        }
    }'
}

gen p 30 2 1 1 pa >"$WORK/ev1.jsonl"
gen b 60 5 0 2 ba >>"$WORK/ev1.jsonl"
cp "$WORK/ev1.jsonl" "$WORK/valid.jsonl"
{
    echo "{\"event_id\":\"bad1\",\"user_id\":\"\",\"item_id\":\"i1\",\"type\":\"play\",\"ts\":$T0}"
    echo "{\"event_id\":\"bad2\",\"user_id\":\"b1\",\"item_id\":\"i1\",\"type\":\"rating\",\"ts\":$T0,\"rating\":9}"
    echo "{\"event_id\":\"bad3\",\"user_id\":\"b2\",\"item_id\":\"i1\",\"type\":\"play\",\"ts\":$((NOW + 86400000))}"
} >>"$WORK/ev1.jsonl"
N1=$(wc -l <"$WORK/ev1.jsonl")
NI=$(wc -l <"$WORK/items.jsonl")

produce() {
    # shellcheck disable=SC2046
    "$REEL" produce --topic "$1" $(reel_opts) <"$2" 2>>"$WORK/produce.err" || fail "produce to $1 failed"
}

# applied TOPIC: records applied in Redis (the sum of the next offsets).
applied() {
    rcli --raw HVALS "$K:offsets:$1" | awk '{s += $1} END {print s + 0}'
}

wait_applied() {
    local topic=$1 want=$2 got=0
    for _ in $(seq 1 ${WAIT_TICKS:-240}); do
        got=$(applied "$topic")
        [ "$got" -ge "$want" ] && return 0
        sleep 0.25
    done
    fail "$topic: $got of $want records applied"
}

WORKERS=0
start_rec() {
    WORKERS=$((WORKERS + 1))
    # Jaccard keeps plain co-occurrence counts, which the end checks exactly.
    # shellcheck disable=SC2046
    "$REEL" run recommend $(reel_opts) -X batch.max.ms=1000 -X recommend.reload.interval.ms=500 \
        -X recommend.similarity=jaccard \
        2>>"$WORK/worker$WORKERS.log" &
    WORKER_PID=$!
    BG_PIDS+=("$WORKER_PID")
}

stop_rec() {
    kill -TERM "$WORKER_PID"
    wait "$WORKER_PID" || fail "worker exited with $? on SIGTERM"
}

consume() {
    # shellcheck disable=SC2046
    "$REEL" consume --topic "$1" --from-beginning --timeout-ms 5000 $(reel_opts) 2>>"$WORK/consume.err"
}

# ---- phase 1: catalogue, planted pattern, background, bad events ----------
produce items "$WORK/items.jsonl"
produce viewing-events "$WORK/ev1.jsonl"
start_rec
wait_applied items "$NI"
wait_applied viewing-events "$N1"
log "phase 1 applied: $NI items, $N1 events"

[ "$(rcli HLEN "$K:feat")" = "$NI" ] || fail "feature hash has $(rcli HLEN "$K:feat") items, want $NI"

consume viewing-events.dlq >"$WORK/dlq.jsonl"
[ "$(wc -l <"$WORK/dlq.jsonl")" = 3 ] || fail "DLQ has $(wc -l <"$WORK/dlq.jsonl") records, want 3"
for want in "empty user_id" "rating 9 outside" "in the future"; do
    jq -r '.headers["reel.error.reason"]' "$WORK/dlq.jsonl" | has "$want" ||
        fail "no DLQ record with reason \"$want\": $(jq -c .headers "$WORK/dlq.jsonl")"
done
jq -r '.headers["reel.error.stage"]' "$WORK/dlq.jsonl" | sort -u | has -x process ||
    fail "DLQ stage is not process"

# ---- phase 2: a new user who watches A; a re-sent event -------------------
dup=$(grep '"event_id":"pa1"' "$WORK/ev1.jsonl") # p0 completes B
hn2_before=$(rcli HGET "$K:istat:n2" "$(rcli HGET "$K:ids:item" B)")
seen_before=$(rcli LLEN "$K:seen:$(rcli HGET "$K:ids:user" p0)")
{
    echo "{\"event_id\":\"new1\",\"user_id\":\"newbie\",\"item_id\":\"A\",\"type\":\"play\",\"ts\":$((T0 + 5000000)),\"watch_seconds\":10}"
    echo "$dup"
} >"$WORK/ev2.jsonl"
head -1 "$WORK/ev2.jsonl" >>"$WORK/valid.jsonl"
produce viewing-events "$WORK/ev2.jsonl"
wait_applied viewing-events $((N1 + 2))
[ "$(rcli HGET "$K:istat:n2" "$(rcli HGET "$K:ids:item" B)")" = "$hn2_before" ] ||
    fail "the re-sent event changed istat n2 of B"
[ "$(rcli LLEN "$K:seen:$(rcli HGET "$K:ids:user" p0)")" = "$seen_before" ] ||
    fail "the re-sent event changed p0's seen list"
stop_rec
log "phase 2: duplicate dropped"

consume recommendations >"$WORK/recs.jsonl"
consume viewing-events >"$WORK/inputs.jsonl"
jq -c 'select(.value.user_id == "newbie") | .value' "$WORK/recs.jsonl" >"$WORK/newbie.json"
[ "$(wc -l <"$WORK/newbie.json")" = 1 ] || fail "newbie got $(wc -l <"$WORK/newbie.json") outputs"
jq -e '.items | map(.item_id) | index("B") != null' "$WORK/newbie.json" >/dev/null ||
    fail "planted item B not recommended to newbie: $(cat "$WORK/newbie.json")"
jq -e '.items | map(.item_id) | index("A") == null' "$WORK/newbie.json" >/dev/null ||
    fail "newbie got back the item it watched"
jq -e '.items[] | select(.item_id == "B") | .sources | index("item_cf") != null' \
    "$WORK/newbie.json" >/dev/null || fail "B is not from item_cf: $(cat "$WORK/newbie.json")"
jq -e '.model_version == "rec-jaccard-k50"' "$WORK/newbie.json" >/dev/null ||
    fail "model_version: $(jq -r .model_version "$WORK/newbie.json")"
log "newbie gets B: $(jq -c '[.items[] | [.item_id, .score, (.sources | join("+"))]] | .[0:3]' "$WORK/newbie.json")"

# Every output's source is an event of its user; it never names an item the
# user had watched up to that event; a user's several events in one batch
# gave one output (fewer outputs than valid events, every user has one).
jq -s -r --slurpfile recs "$WORK/recs.jsonl" '
    (map(select(.value.user_id != null)) | map({key: "\(.partition):\(.offset)", value: .value})
     | from_entries) as $ev
    | [ $recs[] | .value as $r
        | ($ev["\($r.source.partition):\($r.source.offset)"]) as $src
        | if $src == null or $src.user_id != $r.user_id then "bad source \($r.source)"
          else ([ $ev | to_entries[]
                  | select(.value.user_id == $r.user_id)
                  | select((.key | split(":") | .[0] | tonumber) == $r.source.partition)
                  | select((.key | split(":") | .[1] | tonumber) <= $r.source.offset)
                  | .value.item_id ]) as $seen
            | [ $r.items[].item_id | select(. as $i | $seen | index($i)) ] as $bad
            | if ($bad | length) > 0 then "\($r.user_id) got seen items \($bad)" else empty end
          end ] | .[]' "$WORK/inputs.jsonl" >"$WORK/rec_errors.txt"
[ -s "$WORK/rec_errors.txt" ] && fail "outputs wrong: $(head -5 "$WORK/rec_errors.txt")"
users=$(jq -r .user_id "$WORK/valid.jsonl" | sort -u | wc -l)
out_users=$(jq -r .value.user_id "$WORK/recs.jsonl" | sort -u | wc -l)
outs=$(wc -l <"$WORK/recs.jsonl")
valid=$(wc -l <"$WORK/valid.jsonl")
[ "$out_users" = "$users" ] || fail "$out_users users got outputs, want $users"
[ "$outs" -lt "$valid" ] || fail "$outs outputs for $valid events: not one per user and batch"
jq -e 'select((.value.items | length) != 10)' "$WORK/recs.jsonl" >/dev/null &&
    fail "an output without 10 items"
log "phase 2 outputs: $outs outputs for $valid valid events of $users users, sources and filters ok"

# ---- phase 3: SIGKILL during processing, restart, exact counters ---------
gen c 150 12 0 3 ca >"$WORK/ev3.jsonl"
cat "$WORK/ev3.jsonl" >>"$WORK/valid.jsonl"
N3=$(wc -l <"$WORK/ev3.jsonl")
TOTAL=$((N1 + 2 + N3))
produce viewing-events "$WORK/ev3.jsonl"
start_rec
for _ in $(seq 1 400); do
    [ "$(applied viewing-events)" -gt $((N1 + 2)) ] && break
    sleep 0.02
done
{
    kill -9 "$WORKER_PID"
    wait "$WORKER_PID" || true
} 2>/dev/null
log "killed the worker at $(applied viewing-events) of $TOTAL"
start_rec
wait_applied viewing-events "$TOTAL"
stop_rec

# Expected: pop[item] = distinct users of the item; sum of pair:c = sum over
# users of k (k - 1) / 2 for k distinct items (each unordered pair is stored
# once; no decay, no history eviction).
jq -r '"\(.user_id) \(.item_id)"' "$WORK/valid.jsonl" | sort -u >"$WORK/ui.txt"
awk '{print $2}' "$WORK/ui.txt" | sort | uniq -c | awk '{print $2, $1}' | sort >"$WORK/pop_want.txt"
rcli --raw HGETALL "$K:ids:item:rev" | paste - - >"$WORK/rev.txt"
rcli --raw ZRANGE "$K:pop" 0 -1 WITHSCORES | paste - - |
    while read -r hex score; do echo "$((16#$hex)) $score"; done |
    awk 'NR == FNR {name[$1] = $2; next} {print name[$1], $2}' "$WORK/rev.txt" - |
    sort >"$WORK/pop_got.txt"
diff "$WORK/pop_want.txt" "$WORK/pop_got.txt" >"$WORK/pop_diff.txt" ||
    fail "popularity differs after kill and restart: $(head "$WORK/pop_diff.txt")"
want_pairs=$(awk '{print $1}' "$WORK/ui.txt" | uniq -c | awk '{s += $1 * ($1 - 1) / 2} END {print s}')
got_pairs=$(rcli --raw HVALS "$K:pair:c" | awk '{s += $1} END {print s}')
[ "$got_pairs" = "$want_pairs" ] || fail "pair counters sum to $got_pairs, want $want_pairs"
log "PASS: $TOTAL events; pop of $(wc -l <"$WORK/pop_got.txt") items and $want_pairs pair counts exact after SIGKILL"
