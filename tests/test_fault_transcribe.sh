#!/bin/bash
# Fault suite for the transcribe worker (tests/fault_suite.sh): 20k 60 ms
# 8-bit WAV clips (tones; 4 partitions keep each under the mock cluster's
# 5 MiB per partition) with poison (not audio, no samples, a 1 Hz rate,
# undecodable bytes), recognized by a GMM-HMM trained here on digits spoken
# by espeak-ng; 5 SIGKILLs, a broker outage, a Redis crash. Its only state
# in Redis is the applied offsets, which must equal a clean pass's.
W=transcribe
PARTS=4
IN_TOPICS=audio-clips
OUT_TOPIC=transcripts
OUT_MODE=record
W_ARGS="-X batch.max.records=500"
fault_prepare() {
    command -v espeak-ng >/dev/null || fail "espeak-ng is not installed (scripts/install-deps.sh)"
    "$REEL_SOURCE_DIR/tests/speech_synth.sh" "$WORK/wav" "$WORK/train.tsv" "en-us en-gb" \
        "zero one two three four five six seven eight nine" "150" "50"
    "$REEL" train speech --data "$WORK/train.tsv" --model hmm --out "$WORK/hmm.bin" \
        >"$WORK/train.json" 2>"$WORK/train.err" || fail "train speech failed"
    "$REEL" model push "$WORK/hmm.bin" -X redis.url="$REDIS_URL" >"$WORK/push.log" 2>&1 ||
        fail "model push failed"
}
# shellcheck source=tests/fault_suite.sh
source "$(dirname "$0")/fault_suite.sh"
fault_main
