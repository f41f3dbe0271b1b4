#!/bin/bash
# shellcheck disable=SC2046,SC2034
# (word splitting of $(reel_opts) is wanted; REDIS_PID is read by lib.sh)
# A corrupt model pushed through the registry as the *current* version is
# refused by the running worker before any use, with a log line that names
# the version and the reason, and the worker keeps serving its previous
# model; a good version pushed after that is served. For the sentiment
# worker (RSNT) and the tag worker (RCNN), with blobs that have a wrong
# magic, a wrong version, a truncated length, inconsistent shapes, a
# trailing byte and a NaN weight. The models are the fuzz seeds
# (tests/fuzz/model_seeds: tiny models made by reel's own training code).
source "$(dirname "$0")/lib.sh"

SEEDS="$REEL_SOURCE_DIR/tests/fuzz/model_seeds"
start_redis
start_kafka 1 2
log "kafka at $BOOTSTRAP"

push() { # push FILE KIND: the blob as the new current version of KIND
    # shellcheck disable=SC2046
    "$REEL" model push "$1" --kind "$2" $(reel_opts) >>"$WORK/push.log" 2>&1 || fail "push $1 failed"
}
consume() {
    # shellcheck disable=SC2046
    "$REEL" consume --topic "$1" --from-beginning --timeout-ms 1500 $(reel_opts) 2>>"$WORK/consume.err"
}
# corrupt KIND SRC OUT: the corruptions of SRC, one file each (OUT.1 ...),
# checksums recomputed for RCNN so each reaches the check it means.
corrupt() {
    python3 - "$1" "$2" "$3" <<'PY'
import struct, sys
kind, src, out = sys.argv[1], sys.argv[2], sys.argv[3]
d = bytearray(open(src, "rb").read())
def fnv(b):
    h = 1469598103934665603
    for x in b: h = ((h ^ x) * 1099511628211) & 0xffffffffffffffff
    return h
def fix(b):
    if b[:4] == b"RCNN": b[-8:] = struct.pack("<Q", fnv(b[:-8]))
    return bytes(b)
bad = []
m = bytearray(d); m[0:4] = b"XXXX"; bad.append(fix(m))                 # wrong magic
m = bytearray(d); m[4:8] = struct.pack("<I", 7); bad.append(fix(m))    # wrong version
bad.append(bytes(d[: len(d) * 2 // 3]))                                # truncated
m = bytearray(d)
if kind == "sentiment": m[8:12] = struct.pack("<I", 2)                 # bag of words read as an LSTM
else: m[20:24] = struct.pack("<I", 4)                                  # 4 classes, 3 labels
bad.append(fix(m))
m = bytearray(d[:-8] + b"\0" + d[-8:]) if kind == "image" else bytearray(d + b"\0")
bad.append(fix(m))                                                     # a trailing byte
m = bytearray(d); at = len(d) - (12 if kind == "image" else 4)
m[at:at + 4] = struct.pack("<f", float("nan")); bad.append(fix(m))    # a NaN weight
for i, b in enumerate(bad):
    open("%s.%d" % (out, i + 1), "wb").write(b)
print(len(bad))
PY
}

# ---- sentiment ----
push "$SEEDS/nblr.rsnt" sentiment # v1
review() { # review N TEXT
    printf '{"review_id":"r%s","item_id":"i1","user_id":"u","text":"%s","rating":null,"ts":1700000000000}\n' "$1" "$2"
}
"$REEL" run sentiment $(reel_opts) -X batch.max.ms=100 -X sentiment.reload.interval.ms=200 \
    -X metrics.port=0 2>>"$WORK/sentiment.log" &
SPID=$!
BG_PIDS+=("$SPID")
review 0 "a good film" | "$REEL" produce --topic reviews $(reel_opts) 2>>"$WORK/produce.err"
wait_outputs() { # wait_outputs TOPIC N
    for _ in $(seq 1 120); do
        [ "$(consume "$1" | wc -l)" -ge "$2" ] && return 0
        sleep 0.5
    done
    fail "fewer than $2 outputs on $1"
}
wait_outputs review-sentiment 1
NBAD=$(corrupt sentiment "$SEEDS/nblr.rsnt" "$WORK/bad.rsnt")
for i in $(seq 1 "$NBAD"); do
    push "$WORK/bad.rsnt.$i" sentiment # v2..v7, each current in turn
    v=$((i + 1))
    for _ in $(seq 1 40); do
        has "sentiment model v$v refused" "$WORK/sentiment.log" && break
        sleep 0.25
    done
    has "sentiment model v$v refused" "$WORK/sentiment.log" || fail "sentiment: corrupt v$v not refused"
    review "$i" "a good film" | "$REEL" produce --topic reviews $(reel_opts) 2>>"$WORK/produce.err"
    wait_outputs review-sentiment $((i + 1))
done
consume review-sentiment | jq -r '.value.model_version' | sort | uniq -c >"$WORK/s_versions.txt"
[ "$(awk '{print $1, $2}' "$WORK/s_versions.txt")" = "$((NBAD + 1)) sentiment-bow-v1" ] ||
    fail "sentiment outputs not all from v1: $(cat "$WORK/s_versions.txt")"
grep -o 'sentiment model v[0-9]* refused: [^"]*' "$WORK/sentiment.log" | sort -u >"$WORK/s_reasons.txt"
[ "$(wc -l <"$WORK/s_reasons.txt")" = "$NBAD" ] || fail "want $NBAD refusals, got $(cat "$WORK/s_reasons.txt")"
MPORT=$(metrics_port "$WORK/sentiment.log")
curl -fsS "http://127.0.0.1:$MPORT/metrics" | has 'reel_model_info{worker="sentiment",version="sentiment-bow-v1"} 1' ||
    fail "reel_model_info does not show v1"
# A good version after the refusals is served.
push "$SEEDS/nb.rsnt" sentiment # v8
for _ in $(seq 1 40); do has 'kind=sentiment version=8' "$WORK/sentiment.log" && break; sleep 0.25; done
review 99 "a good film" | "$REEL" produce --topic reviews $(reel_opts) 2>>"$WORK/produce.err"
wait_outputs review-sentiment $((NBAD + 2))
consume review-sentiment | has '"model_version":"sentiment-nb-v8"' || fail "sentiment: good v8 not served"
kill -0 "$SPID" || fail "sentiment worker died"
log "sentiment: $NBAD corrupt versions refused, v1 served meanwhile, v8 served after:"
sed 's/^/    /' "$WORK/s_reasons.txt"

# ---- tag (CNN) ----
push "$SEEDS/tiny.rcnn" image # v1
"$REEL" run tag $(reel_opts) -X batch.max.ms=100 -X tag.reload.interval.ms=200 \
    2>>"$WORK/tag.log" &
TPID=$!
BG_PIDS+=("$TPID")
poster() { # poster N: a small PNG poster
    printf '{"item_id":"p%s","poster_id":"p%s","content_type":"image/png","image":"%s","ts":1700000000000}\n' \
        "$1" "$1" "$(base64 -w0 "$REEL_SOURCE_DIR/tests/fuzz/image_seeds/rgb.png")"
}
poster 0 | "$REEL" produce --topic posters $(reel_opts) 2>>"$WORK/produce.err"
wait_outputs poster-tags 1
NBAD=$(corrupt image "$SEEDS/tiny.rcnn" "$WORK/bad.rcnn")
for i in $(seq 1 "$NBAD"); do
    push "$WORK/bad.rcnn.$i" image
    v=$((i + 1))
    for _ in $(seq 1 40); do
        has "image model v$v: " "$WORK/tag.log" && break
        sleep 0.25
    done
    has "image model v$v: " "$WORK/tag.log" || fail "tag: corrupt v$v not refused"
    poster "$i" | "$REEL" produce --topic posters $(reel_opts) 2>>"$WORK/produce.err"
    wait_outputs poster-tags $((i + 1))
done
consume poster-tags | jq -r '.value.model_version' | sort | uniq -c >"$WORK/t_versions.txt"
[ "$(awk '{print $1, $2}' "$WORK/t_versions.txt")" = "$((NBAD + 1)) image-v1" ] ||
    fail "tag outputs not all from v1: $(cat "$WORK/t_versions.txt")"
grep -o 'image model v[0-9]*: [^"]*' "$WORK/tag.log" | sort -u >"$WORK/t_reasons.txt"
[ "$(wc -l <"$WORK/t_reasons.txt")" = "$NBAD" ] || fail "want $NBAD refusals, got $(cat "$WORK/t_reasons.txt")"
kill -0 "$TPID" || fail "tag worker died"
log "tag: $NBAD corrupt versions refused, v1 served meanwhile:"
sed 's/^/    /' "$WORK/t_reasons.txt"
log "PASS: corrupt models refused with a reason by running workers, previous model kept"
