#!/bin/bash
# Fault suite for the tag worker (tests/fault_suite.sh): 20k 32x32 PNG
# posters with poison (a truncated PNG, text labelled image/png, a text/plain
# content type, undecodable bytes), tagged by a tiny CNN trained here on a
# slice of Debian's Fashion-MNIST; 5 SIGKILLs, a broker outage, a Redis
# crash. The stored embeddings must equal a clean pass's.
W=tag
PARTS=2
IN_TOPICS=posters
OUT_TOPIC=poster-tags
OUT_MODE=record
W_ARGS="-X batch.max.records=500"
fault_prepare() {
    local fm=/usr/share/datasets/fashion-mnist
    [ -f "$fm/t10k-images-idx3-ubyte.gz" ] ||
        fail "Fashion-MNIST missing: install dataset-fashion-mnist (scripts/install-deps.sh)"
    OPENBLAS_NUM_THREADS=1 "$REEL" train image --data "$fm" --limit 500 --test-limit 100 \
        --epochs 1 --out "$WORK/tiny.rcnn" >"$WORK/train.jsonl" 2>"$WORK/train.err" ||
        fail "train image failed"
    "$REEL" model push "$WORK/tiny.rcnn" -X redis.url="$REDIS_URL" >"$WORK/push.log" 2>&1 ||
        fail "model push failed"
}
# shellcheck source=tests/fault_suite.sh
source "$(dirname "$0")/fault_suite.sh"
fault_main
