#!/bin/bash
# The transcribe worker end to end, with digits spoken by espeak-ng (no
# downloaded data). `reel train speech` / `reel eval speech`: a GMM-HMM
# trained on 6 voices (an FSDD-style folder with --split fsdd) reaches 0.9
# word accuracy on 2 voices it never heard, a DNN-HMM 0.85; --split
# speaker:NAME on a manifest holds out exactly that speaker. The GMM-HMM is
# pushed to Redis; clips of the 2 unseen voices, a connected string and
# silence go through `reel mock-kafka` and the worker:
#  - every good clip yields one Transcript with the right words, word times
#    inside the clip and confidences in [0, 1];
#  - a connected string of three digits is recognized word by word, in order;
#  - silence gives an empty transcript;
#  - bad audio (not audio, a WAV with zero samples, a 1 Hz sample rate, NaN
#    float samples) goes to audio-clips.dlq with its reason; a header that
#    claims 10 hours never allocates for 10 hours;
#  - a new model version (a DNN-HMM) pushed while the worker runs is served
#    without a restart; a corrupt one is refused once, with a log line, and
#    the worker goes on with the model it has.
source "$(dirname "$0")/lib.sh"
command -v espeak-ng >/dev/null || fail "espeak-ng is not installed (scripts/install-deps.sh)"
SYNTH="$REEL_SOURCE_DIR/tests/speech_synth.sh"
DIG="zero one two three four five six seven eight nine"

log "synthesizing digits"
"$SYNTH" "$WORK/wav" "$WORK/train.tsv" "en-us en-gb en-gb-scotland en-gb-x-rp en-029 en-us+f3" \
    "$DIG" "130 170" "35 65"
"$SYNTH" "$WORK/wav" "$WORK/test.tsv" "en-gb-x-gbclan en-us+f2" "$DIG" "150" "50"

# The same clips as an FSDD-style folder ({digit}_{speaker}_{take}.wav):
# training voices get takes 5.., test voices takes 0-4, so --split fsdd
# trains on the 6 voices and evaluates on the 2 others.
python3 - "$WORK" <<'PY'
import os, sys
work = sys.argv[1]
os.mkdir(work + "/fsddlike")
digits = "zero one two three four five six seven eight nine".split()
for name, first in (("train.tsv", 5), ("test.tsv", 0)):
    takes = {}
    for line in open(work + "/" + name):
        path, word, voice = line.rstrip("\n").split("\t")
        k = (word, voice)
        takes[k] = takes.get(k, first - 1) + 1
        os.symlink(os.path.join(work, path), "%s/fsddlike/%d_%s_%d.wav"
                   % (work, digits.index(word), voice, takes[k]))
PY

log "training"
"$REEL" train speech --data "$WORK/fsddlike" --split fsdd --model hmm --out "$WORK/hmm.bin" \
    >"$WORK/train.json" || fail "train hmm"
jq -e '.clips == 240 and .words == 10' "$WORK/train.json" >/dev/null ||
    fail "--split fsdd did not train on takes 5..: $(cat "$WORK/train.json")"
"$REEL" eval speech --data "$WORK/fsddlike" --split fsdd --model "$WORK/hmm.bin" \
    >"$WORK/eval.json" || fail "eval hmm"
acc=$(jq -r .word_accuracy "$WORK/eval.json")
log "GMM-HMM on unseen voices: word accuracy $acc"
jq -e '.word_accuracy >= 0.9 and .utterances == 20 and (.per_speaker | length) == 2' \
    "$WORK/eval.json" >/dev/null ||
    fail "GMM-HMM accuracy on unseen voices below 0.9: $(cat "$WORK/eval.json")"
# A manifest with a speaker column and --split speaker:NAME.
cat "$WORK/train.tsv" "$WORK/test.tsv" >"$WORK/all.tsv"
"$REEL" train speech --data "$WORK/all.tsv" --split speaker:en-us-f2 --model hmm \
    --out "$WORK/lo.bin" >"$WORK/train_lo.json" || fail "train --split speaker"
"$REEL" eval speech --data "$WORK/all.tsv" --split speaker:en-us-f2 --model "$WORK/lo.bin" \
    >"$WORK/eval_lo.json" || fail "eval --split speaker"
jq -e '.clips == 250' "$WORK/train_lo.json" >/dev/null || fail "speaker split: training part"
jq -e '.utterances == 10 and (.per_speaker | keys) == ["en-us-f2"] and .word_accuracy >= 0.7' \
    "$WORK/eval_lo.json" >/dev/null || fail "speaker split: $(cat "$WORK/eval_lo.json")"
"$REEL" train speech --data "$WORK/train.tsv" --model dnn --epochs 4 --hidden 128 \
    --out "$WORK/dnn.bin" >"$WORK/train_dnn.json" || fail "train dnn"
"$REEL" eval speech --data "$WORK/test.tsv" --model "$WORK/dnn.bin" >"$WORK/eval_dnn.json" ||
    fail "eval dnn"
log "DNN-HMM on unseen voices: word accuracy $(jq -r .word_accuracy "$WORK/eval_dnn.json")"
jq -e '.word_accuracy >= 0.85 and .acoustic == "dnn"' "$WORK/eval_dnn.json" >/dev/null ||
    fail "DNN-HMM accuracy on unseen voices below 0.85: $(cat "$WORK/eval_dnn.json")"

start_redis
start_kafka 1 2
"$REEL" model push "$WORK/hmm.bin" -X redis.url="$REDIS_URL" | has 'speech version 1' ||
    fail "model push"

# AudioClip JSON lines: the test voices' clips, a connected string, silence
# and the bad clips; expected.tsv lists clip_id and the expected text.
python3 - "$WORK" <<'PY' >"$WORK/clips.jsonl"
import base64, json, math, struct, sys, wave
work = sys.argv[1]
exp = open(work + "/expected.tsv", "w")
bad = open(work + "/bad.tsv", "w")

def clip(cid, data, ctype="audio/wav"):
    print(json.dumps({"clip_id": cid, "item_id": "item-" + cid, "content_type": ctype,
                      "audio": base64.b64encode(data).decode(), "ts": 1700000000000}))

def wav(frames, rate=22050, width=2, fmt=1, nframes=None, channels=1):
    data = bytes(frames)
    size = len(data) if nframes is None else nframes * width * channels
    hdr = b"RIFF" + struct.pack("<I", 36 + size) + b"WAVEfmt " + struct.pack(
        "<IHHIIHH", 16, fmt, channels, rate, rate * width * channels, width * channels, 8 * width)
    return hdr + b"data" + struct.pack("<I", size) + data

def pcm(path):
    w = wave.open(path)
    return w.readframes(w.getnframes()), w.getframerate()

for line in open(work + "/test.tsv"):
    path, word, voice = line.rstrip("\n").split("\t")
    cid = voice + "-" + word
    clip(cid, open(work + "/" + path, "rb").read())
    exp.write(cid + "\t" + word + "\n")
# Three digits of one unseen voice joined with 0.3 s of silence.
parts = []
for w in ("three", "one", "four"):
    data, rate = pcm(work + "/wav/en-gb-x-gbclan_%s_150_50.wav" % w)
    parts.append(data + b"\0\0" * int(0.3 * rate))
clip("connected", wav(b"".join(parts)))
exp.write("connected\tthree one four\n")
clip("silence", wav(b"\0\0" * 22050))
exp.write("silence\t\n")
# A header that claims 10 hours over 0.1 s of samples.
clip("ten-hours", wav(b"\0\1" * 800, rate=8000, nframes=10 * 3600 * 8000))
bad.write("not-audio\tnot a supported audio format\n")
clip("not-audio", b"this is not audio at all, just text" * 10)
bad.write("empty\tno samples\n")
clip("empty", wav(b""))
bad.write("one-hertz\tsample rate 1 Hz\n")
clip("one-hertz", wav(b"\0\1" * 100, rate=1))
bad.write("nan\tnon-finite sample\n")
clip("nan", wav(struct.pack("<4f", 0.1, float("nan"), float("inf"), 0.2) * 100, width=4, fmt=3,
                rate=8000))
PY
NGOOD=$(wc -l <"$WORK/expected.tsv")
NBAD=$(wc -l <"$WORK/bad.tsv")
# shellcheck disable=SC2046
"$REEL" produce --topic audio-clips $(reel_opts) <"$WORK/clips.jsonl" 2>"$WORK/produce.err" ||
    fail "produce failed"

# shellcheck disable=SC2046
"$REEL" run transcribe $(reel_opts) -X transcribe.reload.interval.ms=500 2>>"$WORK/worker.log" &
WORKER_PID=$!
BG_PIDS+=("$WORKER_PID")

# consume_until N FILE: reads transcripts until N are there.
consume_until() {
    local want=$1 out=$2
    for _ in $(seq 1 60); do
        # shellcheck disable=SC2046
        "$REEL" consume --topic transcripts --from-beginning --timeout-ms 2000 $(reel_opts) \
            >"$out" 2>/dev/null || true
        [ "$(wc -l <"$out")" -ge "$want" ] && return 0
        sleep 1
    done
    fail "only $(wc -l <"$out") of $want transcripts"
}
consume_until $((NGOOD + 1)) "$WORK/out.jsonl"
for _ in $(seq 1 20); do
    # shellcheck disable=SC2046
    "$REEL" consume --topic audio-clips.dlq --from-beginning --timeout-ms 3000 $(reel_opts) \
        >"$WORK/dlq.jsonl" 2>/dev/null || true
    [ "$(wc -l <"$WORK/dlq.jsonl")" -ge "$(wc -l <"$WORK/bad.tsv")" ] && break
    sleep 1
done

# Every good clip: its words, in order; times inside the clip; confidences.
wrong=0
while IFS=$'\t' read -r cid text; do
    got=$(jq -r --arg c "$cid" 'select(.key == $c) | .value.text' "$WORK/out.jsonl" | head -1)
    if [ "$got" != "$text" ]; then
        echo "clip $cid: got '$got', want '$text'" >&2
        wrong=$((wrong + 1))
    fi
done <"$WORK/expected.tsv"
[ "$wrong" -le 2 ] || fail "$wrong of $NGOOD clips misrecognized"
[ "$(jq -r 'select(.key == "connected") | .value.text' "$WORK/out.jsonl")" = "three one four" ] ||
    fail "connected string: $(jq -c 'select(.key == "connected") | .value.words' "$WORK/out.jsonl")"
[ "$(jq -r 'select(.key == "silence") | .value.text' "$WORK/out.jsonl")" = "" ] ||
    fail "silence was not an empty transcript"
jq -e -s 'all(.[]; .value.duration_seconds as $d | .value.duration_seconds > 0
    and .value.model_version == "speech-v1-hmm" and (.value.item_id | startswith("item-"))
    and all(.value.words[]; .start >= 0 and .end > .start and .end <= $d + 0.001
            and .confidence >= 0 and .confidence <= 1))' "$WORK/out.jsonl" >/dev/null ||
    fail "a transcript has bad times, confidences or version"
# Words of the connected string are in time order, one per digit.
jq -e -s 'map(select(.key == "connected"))[0].value.words | length == 3
    and .[0].end <= .[1].start and .[1].end <= .[2].start' "$WORK/out.jsonl" >/dev/null ||
    fail "connected word times"

# Bad clips: dead-lettered with their reasons. The 10-hour header is either
# a transcript of its 0.1 s or a DLQ record, never a crash.
while IFS=$'\t' read -r cid reason; do
    jq -e -s --arg c "$cid" --arg r "$reason" 'any(.[]; .key == $c
        and (.headers["reel.error.reason"] | contains($r)))' "$WORK/dlq.jsonl" >/dev/null ||
        fail "clip $cid: no DLQ record with reason '$reason'"
done <"$WORK/bad.tsv"
ten=$(( $(jq -r 'select(.key == "ten-hours") | .key' "$WORK/out.jsonl" "$WORK/dlq.jsonl" | wc -l) ))
[ "$ten" = 1 ] || fail "the 10-hour header gave $ten outputs"
ndlq=$(wc -l <"$WORK/dlq.jsonl")
[ $((ndlq)) -ge "$NBAD" ] || fail "$ndlq DLQ records, want $NBAD"
log "first model: $((NGOOD - wrong))/$NGOOD clips right, $ndlq bad clips dead-lettered"

# A new version, pushed while the worker runs, serves the next clips.
"$REEL" model push "$WORK/dnn.bin" -X redis.url="$REDIS_URL" | has 'speech version 2' ||
    fail "second model push"
sleep 2
grep -q '"model_loaded".*version=2' "$WORK/worker.log" || sleep 3
grep -q '"model_loaded".*version=2' "$WORK/worker.log" || fail "the worker did not load version 2"
head -5 "$WORK/clips.jsonl" | sed 's/"clip_id": "/"clip_id": "again-/' >"$WORK/again.jsonl"
# shellcheck disable=SC2046
"$REEL" produce --topic audio-clips $(reel_opts) <"$WORK/again.jsonl" 2>>"$WORK/produce.err" ||
    fail "produce failed"
consume_until $((NGOOD + 1 + 5)) "$WORK/out2.jsonl"
n2=$(jq -r 'select(.key | startswith("again-")) | .value.model_version' "$WORK/out2.jsonl" |
    grep -c '^speech-v2-dnn$' || true)
[ "$n2" = 5 ] || fail "only $n2 of 5 later transcripts came from model version 2"
# A corrupt version 3 is refused; the worker keeps serving version 2.
printf 'RSPH\001\000\000\000corrupt' >"$WORK/bad.bin"
"$REEL" model push "$WORK/bad.bin" -X redis.url="$REDIS_URL" | has 'speech version 3' ||
    fail "third model push"
for _ in $(seq 1 20); do
    grep -q '"reload_failed"' "$WORK/worker.log" && break
    sleep 0.5
done
grep -q '"reload_failed".*speech model' "$WORK/worker.log" || fail "no reload_failed log line"
head -2 "$WORK/clips.jsonl" | sed 's/"clip_id": "/"clip_id": "third-/' >"$WORK/third.jsonl"
# shellcheck disable=SC2046
"$REEL" produce --topic audio-clips $(reel_opts) <"$WORK/third.jsonl" 2>>"$WORK/produce.err" ||
    fail "produce failed"
consume_until $((NGOOD + 1 + 5 + 2)) "$WORK/out3.jsonl"
n3=$(jq -r 'select(.key | startswith("third-")) | .value.model_version' "$WORK/out3.jsonl" |
    grep -c '^speech-v2-dnn$' || true)
[ "$n3" = 2 ] || fail "after a corrupt push, $n3 of 2 transcripts came from version 2"
[ "$(grep -c '"reload_failed"' "$WORK/worker.log")" = 1 ] ||
    fail "the corrupt version was fetched more than once"
kill -TERM "$WORKER_PID"
wait "$WORKER_PID" || fail "worker exited with $? on SIGTERM"
log "PASS: transcripts right, bad audio dead-lettered, model v2 served without a restart," \
    "corrupt v3 refused"
