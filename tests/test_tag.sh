#!/bin/bash
# The tag worker end to end through `reel mock-kafka` and Redis:
#  - a tiny CNN trained here by `reel train image` on a slice of Debian's
#    Fashion-MNIST reaches a stated accuracy and is pushed to the registry;
#  - posters (Fashion-MNIST test images at 500x750 as grey, RGB, CMYK and
#    progressive JPEG and RGBA, palette and 16-bit PNG) get the true class as
#    their top label for most of them, their real size, colours and a hash;
#  - a re-encoded, resized copy of a blocklisted image is blocked with the
#    blocklist's label, an unrelated image is not;
#  - broken images (truncated JPEG, PNG with a bad CRC, 100000x100000 and
#    60000x60000 headers, zero bytes, a GIF and text labelled as images, a
#    text/plain content type) go to posters.dlq with their reasons;
#  - the L2-normalized embedding of every tagged item is in Redis;
#  - a newly pushed model is picked up without a restart;
#  - with tag.classifier=svm a linear SVM on the CNN's embedding labels them.
source "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
FM=/usr/share/datasets/fashion-mnist
[ -f "$FM/t10k-images-idx3-ubyte.gz" ] ||
    fail "Fashion-MNIST missing: install dataset-fashion-mnist (scripts/install-deps.sh)"
GROUP=reel-tag

log "training a tiny CNN on 3000 Fashion-MNIST images"
OPENBLAS_NUM_THREADS=1 "$REEL" train image --data "$FM" --limit 3000 --test-limit 1000 --epochs 1 \
    --out "$WORK/tiny.rcnn" >"$WORK/train.jsonl" 2>"$WORK/train.log" || fail "train image failed"
acc=$(jq -r '.test_accuracy' "$WORK/train.jsonl" | tail -1)
log "tiny CNN test accuracy $acc"
awk -v a="$acc" 'BEGIN { exit !(a >= 0.70) }' || fail "tiny CNN test accuracy $acc < 0.70"
"$REEL" eval image --data "$FM" --model "$WORK/tiny.rcnn" --limit 1000 >"$WORK/eval.json" \
    2>"$WORK/eval.log" || fail "eval image failed"
jq -e --argjson a "$acc" '.accuracy == $a and (.per_class | length) == 10 and
    .per_class[1].label == "trouser"' "$WORK/eval.json" >/dev/null ||
    fail "eval disagrees with train: $(cat "$WORK/eval.json")"

start_redis
start_kafka 1 2
"$REEL" model push "$WORK/tiny.rcnn" -X redis.url="$REDIS_URL" >"$WORK/push.log" 2>&1 ||
    fail "model push failed"

"$PY" "$(dirname "$0")/tag_posters.py" "$WORK" --n 21 --bad || fail "poster generation failed"
"$REEL" moderation add "$WORK/block.jpg" --label spam -X redis.url="$REDIS_URL" >"$WORK/mod.log" ||
    fail "moderation add failed"
"$REEL" moderation list -X redis.url="$REDIS_URL" | has ' spam$' || fail "moderation list"

# shellcheck disable=SC2046
"$REEL" produce --topic posters $(reel_opts) <"$WORK/posters.jsonl" 2>"$WORK/produce.err" ||
    fail "produce failed"
# shellcheck disable=SC2046
"$REEL" run tag $(reel_opts) -X batch.max.ms=500 -X tag.reload.interval.ms=300 \
    -X tag.threshold=0.3 2>>"$WORK/worker.log" &
WORKER_PID=$!
BG_PIDS+=("$WORKER_PID")

NGOOD=$(($(wc -l <"$WORK/truth.tsv") + 2))
NBAD=$(wc -l <"$WORK/bad.tsv")
consume() {
    # shellcheck disable=SC2046
    "$REEL" consume --topic "$1" --from-beginning --timeout-ms 3000 $(reel_opts) 2>>"$WORK/consume.err"
}
for _ in $(seq 1 120); do
    n=$(consume poster-tags | wc -l)
    [ "$n" -ge "$NGOOD" ] && break
    sleep 1
done
consume poster-tags >"$WORK/tags.jsonl"
consume posters.dlq >"$WORK/dlq.jsonl"
[ "$(jq -r .value.poster_id "$WORK/tags.jsonl" | sort -u | wc -l)" = "$NGOOD" ] ||
    fail "$(wc -l <"$WORK/tags.jsonl") tagged posters, want $NGOOD"
[ "$(wc -l <"$WORK/dlq.jsonl")" = "$NBAD" ] || fail "$(wc -l <"$WORK/dlq.jsonl") DLQ records, want $NBAD"

# Labels: the true class first for most posters, confidences sorted and
# above the threshold; real size; colours; a 16-digit hash.
right=0
while IFS=$'\t' read -r pid cls layout; do
    want=$(jq -r ".per_class[$cls].label" "$WORK/eval.json")
    got=$(jq -r --arg p "$pid" 'select(.value.poster_id == $p) | .value.labels[0].label // "none"' \
        "$WORK/tags.jsonl" | head -1)
    [ "$got" = "$want" ] && right=$((right + 1))
    jq -e -s --arg p "$pid" 'map(select(.value.poster_id == $p)) | length == 1 and (.[0].value |
        .width == 500 and .height == 750
        and (.phash | test("^[0-9a-f]{16}$")) and (.dominant_colors | length) >= 1
        and all(.dominant_colors[]; test("^#[0-9a-f]{6}$"))
        and all(.labels[]; .confidence >= 0.3)
        and ([.labels[].confidence] == ([.labels[].confidence] | sort | reverse))
        and .model_version == "image-v1" and .moderation.blocked == false
        and .moderation.distance > 8)' "$WORK/tags.jsonl" >/dev/null ||
        fail "poster $pid ($layout): $(grep "\"$pid\"" "$WORK/tags.jsonl" | head -1)"
done <"$WORK/truth.tsv"
total=$(wc -l <"$WORK/truth.tsv")
log "top label right for $right of $total posters"
[ "$right" -ge $((total * 6 / 10)) ] || fail "top label right for only $right of $total posters"

jq -e -s 'map(select(.value.poster_id == "pb1"))[0].value.moderation | .blocked == true and
    .matched_label == "spam" and .distance <= 8' "$WORK/tags.jsonl" >/dev/null ||
    fail "the re-encoded blocklisted poster was not blocked: $(grep '"pb1"' "$WORK/tags.jsonl")"
jq -e -s 'map(select(.value.poster_id == "pb2"))[0].value.moderation | .blocked == false and
    .matched_label == null and .distance > 8' "$WORK/tags.jsonl" >/dev/null ||
    fail "an unrelated poster was blocked"

while IFS=$'\t' read -r pid why; do
    jq -e -s --arg p "$pid" --arg w "$why" 'map(select(.key == $p)) | length == 1 and
        (.[0].headers["reel.error.stage"] == "image") and (.[0].headers["reel.error.reason"] | contains($w))' \
        "$WORK/dlq.jsonl" >/dev/null ||
        fail "DLQ record for $pid lacks reason '$why': $(jq -c --arg p "$pid" 'select(.key == $p) | .headers' "$WORK/dlq.jsonl")"
done <"$WORK/bad.tsv"

# Embeddings: one per tagged item, 64 float32, unit length.
[ "$(rcli HLEN "reel:{$GROUP}:poster-embeddings")" = "$NGOOD" ] || fail "embeddings: $(rcli HLEN "reel:{$GROUP}:poster-embeddings")"
rcli --raw HGET "reel:{$GROUP}:poster-embeddings" p3 | head -c 256 >"$WORK/emb.bin"
"$PY" - "$WORK/emb.bin" <<'PY' || fail "embedding is not a unit vector of 64 floats"
import struct, sys
b = open(sys.argv[1], "rb").read()
assert len(b) == 256, len(b)
v = struct.unpack("<64f", b)
assert abs(sum(x * x for x in v) - 1) < 1e-4
PY

# Hot reload: v2 becomes current, later posters carry it.
"$REEL" model push "$WORK/tiny.rcnn" -X redis.url="$REDIS_URL" >>"$WORK/push.log" 2>&1 ||
    fail "model push v2 failed"
for _ in $(seq 1 50); do
    grep -q '"event":"model_loaded".*version=2' "$WORK/worker.log" && break
    sleep 0.2
done
grep -q '"event":"model_loaded".*version=2' "$WORK/worker.log" || fail "worker did not load v2"
mkdir -p "$WORK/q"
"$PY" "$(dirname "$0")/tag_posters.py" "$WORK/q" --n 2 --offset 100 --prefix q || fail "posters"
# shellcheck disable=SC2046
"$REEL" produce --topic posters $(reel_opts) <"$WORK/q/posters.jsonl" 2>>"$WORK/produce.err" ||
    fail "produce failed"
for _ in $(seq 1 60); do
    n=$(consume poster-tags | jq -r 'select(.value.poster_id | startswith("q")) | .value.model_version' |
        grep -c '^image-v2$' || true)
    [ "$n" -ge 2 ] && break
    sleep 0.5
done
[ "$n" -ge 2 ] || fail "posters after the push were not tagged by image-v2"

"$REEL" moderation remove "$WORK/block.jpg" -X redis.url="$REDIS_URL" | has '^removed' ||
    fail "moderation remove"
[ -z "$("$REEL" moderation list -X redis.url="$REDIS_URL")" ] || fail "blocklist not empty"

kill -TERM "$WORKER_PID"
wait "$WORKER_PID" || fail "worker exited with $? on SIGTERM"

# tag.classifier=svm: a linear SVM on the CNN's embedding labels the posters
# (a second consumer group reads them all again).
OPENBLAS_NUM_THREADS=1 "$REEL" train image --model svm-linear --embed "$WORK/tiny.rcnn" --data "$FM" \
    --limit 3000 --test-limit 1000 --out "$WORK/tiny.rsvm" >"$WORK/svm.json" 2>"$WORK/svm.log" ||
    fail "svm training failed"
"$REEL" model push "$WORK/tiny.rsvm" -X redis.url="$REDIS_URL" >>"$WORK/push.log" 2>&1 ||
    fail "svm push failed"
"$REEL" model list image-svm -X redis.url="$REDIS_URL" | has tiny.rsvm || fail "svm not listed"
# shellcheck disable=SC2046
"$REEL" run tag $(reel_opts) -X group.id=svm -X batch.max.ms=500 -X tag.classifier=svm \
    -X tag.threshold=0.05 2>>"$WORK/worker_svm.log" &
WORKER_PID=$!
BG_PIDS+=("$WORKER_PID")
for _ in $(seq 1 120); do
    n=$(consume poster-tags | jq -r 'select(.value.model_version == "image-v2+svm-v1") | .value.poster_id' |
        grep -c '^p' || true)
    [ "$n" -ge "$total" ] && break
    sleep 1
done
consume poster-tags | jq -c 'select(.value.model_version == "image-v2+svm-v1")' >"$WORK/svm_tags.jsonl"
right_svm=0
while IFS=$'\t' read -r pid cls layout; do
    want=$(jq -r ".per_class[$cls].label" "$WORK/eval.json")
    got=$(jq -r --arg p "$pid" 'select(.value.poster_id == $p) | .value.labels[0].label // "none"' \
        "$WORK/svm_tags.jsonl" | head -1)
    [ "$got" = "$want" ] && right_svm=$((right_svm + 1))
done <"$WORK/truth.tsv"
log "SVM: top label right for $right_svm of $total posters"
[ "$right_svm" -ge $((total * 6 / 10)) ] || fail "SVM top label right for only $right_svm of $total"
kill -TERM "$WORKER_PID"
wait "$WORKER_PID" || fail "svm worker exited with $? on SIGTERM"
log "PASS: $NGOOD posters tagged ($right/$total right, SVM $right_svm), $NBAD broken ones dead-lettered, moderation, embeddings, hot reload"
