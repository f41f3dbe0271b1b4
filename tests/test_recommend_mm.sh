#!/bin/bash
# The recommend worker picks up the other workers' multimodal outputs from
# Redis, end to end through `reel mock-kafka`:
#  - poster embeddings written (as the tag worker writes them) into
#    reel:{reel-tag}:poster-embeddings enter the content vectors: among
#    candidates with the same metadata, the one whose poster matches the
#    watched item's comes first; before the posters exist it does not;
#  - per-item review sentiment written (as the sentiment worker writes it)
#    into reel:{reel-sentiment}:sentiment:item:<id> enters the blend: the
#    poster match, panned by its reviews, falls to last place and a praised
#    item comes first.
# The only user watches one item, so content is the only source that scores
# the candidates and the order is the one the features and the prior give.
source "$(dirname "$0")/lib.sh"

GROUP=reel-recommend
K="reel:{$GROUP}"
start_redis
start_kafka 1 1
log "kafka at $BOOTSTRAP"

NOW=$(($(date +%s) * 1000))
T0=$((NOW - 86400000))

# X (watched), then the candidates C1..C6: the same genre and year, no tags.
{
    echo "{\"item_id\":\"X\",\"title\":\"Watched\",\"genres\":[\"Drama\"],\"tags\":[],\"year\":1999,\"ts\":$T0}"
    for i in 1 2 3 4 5 6; do
        echo "{\"item_id\":\"C$i\",\"title\":\"Candidate $i\",\"genres\":[\"Drama\"],\"tags\":[],\"year\":1999,\"ts\":$T0}"
    done
} >"$WORK/items.jsonl"

produce() {
    # shellcheck disable=SC2046
    "$REEL" produce --topic "$1" $(reel_opts) <"$2" 2>>"$WORK/produce.err" || fail "produce to $1 failed"
}
applied() {
    rcli --raw HVALS "$K:offsets:$1" | awk '{s += $1} END {print s + 0}'
}
wait_applied() {
    local got=0
    for _ in $(seq 1 240); do
        got=$(applied "$1")
        [ "$got" -ge "$2" ] && return 0
        sleep 0.25
    done
    fail "$1: $got of $2 records applied"
}
# wait_log PATTERN: the worker logged a line matching PATTERN.
wait_log() {
    for _ in $(seq 1 120); do
        grep -q "$1" "$WORK/worker.log" && return 0
        sleep 0.25
    done
    fail "the worker never logged $1: $(grep recommend_multimodal "$WORK/worker.log" | tail -2)"
}
EV=0
# watch: one more event of user u on X; returns once applied, then the
# first item of u's latest Recommendations is in $FIRST and the order in $ORDER.
watch() {
    EV=$((EV + 1))
    echo "{\"event_id\":\"e$EV\",\"user_id\":\"u\",\"item_id\":\"X\",\"type\":\"play\",\"ts\":$((T0 + EV * 1000))}" >"$WORK/ev.jsonl"
    produce viewing-events "$WORK/ev.jsonl"
    wait_applied viewing-events "$EV"
    local got=0
    for _ in $(seq 1 40); do
        # shellcheck disable=SC2046
        "$REEL" consume --topic recommendations --from-beginning --timeout-ms 2000 $(reel_opts) \
            2>>"$WORK/consume.err" >"$WORK/recs.jsonl"
        got=$(wc -l <"$WORK/recs.jsonl")
        [ "$got" -ge "$EV" ] && break
        sleep 0.25
    done
    [ "$got" -ge "$EV" ] || fail "$got recommendations for $EV events"
    ORDER=$(tail -1 "$WORK/recs.jsonl" | jq -r '[.value.items[].item_id] | join(",")')
    FIRST=${ORDER%%,*}
}

produce items "$WORK/items.jsonl"
# shellcheck disable=SC2046
"$REEL" run recommend $(reel_opts) -X batch.max.ms=200 -X recommend.reload.interval.ms=300 \
    -X recommend.multimodal.refresh.ms=300 -X recommend.sentiment.weight=0.5 \
    2>>"$WORK/worker.log" &
WORKER_PID=$!
BG_PIDS+=("$WORKER_PID")
wait_applied items 7

# ---- without posters: a tie among the candidates, C1 is not first --------
watch
log "no posters: $ORDER"
[ "$FIRST" != C1 ] || fail "C1 first before any poster was written: $ORDER"
jq -e '.value.items[0].sources == ["content"]' <(tail -1 "$WORK/recs.jsonl") >/dev/null ||
    fail "content is not the only source: $(tail -1 "$WORK/recs.jsonl")"

# ---- posters: C1 has X's poster, the others their own ---------------------
# embedding SEED: 48 float32, host order, as the tag worker stores them.
embedding() {
    python3 -c 'import random, struct, sys
r = random.Random(int(sys.argv[1]))
v = [max(0.0, r.gauss(0, 1)) for _ in range(48)]
n = sum(x * x for x in v) ** 0.5
sys.stdout.buffer.write(struct.pack("=48f", *[x / n for x in v]))' "$1"
}
PK="reel:{reel-tag}:poster-embeddings"
embedding 1 | rcli -x HSET "$PK" X >/dev/null
embedding 1 | rcli -x HSET "$PK" C1 >/dev/null
for i in 2 3 4 5 6; do embedding $((i + 10)) | rcli -x HSET "$PK" "C$i" >/dev/null; done
embedding 99 | rcli -x HSET "$PK" unknown-item >/dev/null
wait_log '"posters=7 '
watch
log "posters: $ORDER"
[ "$FIRST" = C1 ] || fail "C1 (X's poster) is not first with posters: $ORDER"

# ---- review sentiment: C1 panned, C4 praised -------------------------------
SK="reel:{reel-sentiment}:sentiment:item"
rcli HSET "$SK:C1" count 20 sum -19.5 negative 20 >/dev/null
rcli HSET "$SK:C4" count 8 sum 7.6 positive 8 >/dev/null
wait_log 'sentiment=2 '
watch
log "posters and sentiment: $ORDER"
[ "$FIRST" = C4 ] || fail "C4 (praised) is not first: $ORDER"
[ "${ORDER##*,}" = C1 ] || fail "C1 (panned) is not last: $ORDER"

kill -TERM "$WORKER_PID"
wait "$WORKER_PID" || fail "worker exited with $? on SIGTERM"
log "PASS: poster embeddings and review sentiment from Redis change the recommendations"
