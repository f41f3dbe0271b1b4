#!/bin/bash
# Fault suite for the sentiment worker (tests/fault_suite.sh): 20k short
# reviews (the first words of the committed sample's sentences) with poison
# (no words, an empty item id, undecodable bytes), scored by a bag-of-words
# model trained here; 5 SIGKILLs, a broker outage, a Redis crash. The
# per-item aggregates in Redis must equal a clean pass's.
W=sentiment
PARTS=2
IN_TOPICS=reviews
OUT_TOPIC=review-sentiment
OUT_MODE=record
W_ARGS="-X batch.max.records=500"
fault_prepare() {
    "$REEL" train sentiment --data "$REEL_SOURCE_DIR/examples/reviews-sample/reviews.tsv" \
        --model bow --out "$WORK/bow.rsnt" >"$WORK/train.json" 2>"$WORK/train.err" ||
        fail "train sentiment failed"
    "$REEL" model push "$WORK/bow.rsnt" -X redis.url="$REDIS_URL" >"$WORK/push.log" 2>&1 ||
        fail "model push failed"
}
# shellcheck source=tests/fault_suite.sh
source "$(dirname "$0")/fault_suite.sh"
fault_main
