#!/bin/bash
# `reel train image` and `reel eval image` on folder-per-class colour data
# (made here: 32x32 JPEG and PNG pictures of three kinds of coloured shapes,
# DIR/train/<label>/ and DIR/test/<label>/, plus a flat DIR/<label>/ copy
# for the 4:1 split) and on a slice of Debian's Fashion-MNIST:
#  - the CNN learns the shapes (test accuracy >= 0.85 after 12 epochs);
#  - a linear SVM on the CNN's embedding and an RBF SVM on raw pixels learn
#    them too, and `eval image` reproduces the accuracy `train` reported;
#  - a linear SVM on the embedding of a tiny Fashion-MNIST CNN is within a
#    few points of that CNN;
#  - bad options and data fail with a message, not a crash.
source "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
FM=/usr/share/datasets/fashion-mnist
[ -f "$FM/t10k-images-idx3-ubyte.gz" ] ||
    fail "Fashion-MNIST missing: install dataset-fashion-mnist (scripts/install-deps.sh)"
export OPENBLAS_NUM_THREADS=1

"$PY" - "$WORK/shapes" <<'PY' || fail "could not make the shapes data"
import os, sys
import numpy as np
from PIL import Image, ImageDraw
root = sys.argv[1]
rng = np.random.default_rng(3)
for split, n in (("train", 90), ("test", 30)):
    for label in ("circle", "square", "stripes"):
        d = os.path.join(root, split, label)
        os.makedirs(d, exist_ok=True)
        flat = os.path.join(root + "-flat", label)
        os.makedirs(flat, exist_ok=True)
        for i in range(n):
            bg = tuple(int(v) for v in rng.integers(0, 120, 3))
            fg = tuple(int(v) for v in rng.integers(120, 256, 3))
            im = Image.new("RGB", (48, 48), bg)
            dr = ImageDraw.Draw(im)
            cx, cy, r = rng.integers(14, 34), rng.integers(14, 34), rng.integers(8, 13)
            if label == "circle":
                dr.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
            elif label == "square":
                dr.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fg)
            else:
                for x in range(int(rng.integers(0, 6)), 48, 8):
                    dr.rectangle([x, 0, x + 3, 47], fill=fg)
            ext = "png" if i % 2 else "jpg"
            im.save(os.path.join(d, "%d.%s" % (i, ext)))
            im.save(os.path.join(flat, "%s%d.%s" % (split, i, ext)))
PY

log "CNN on the shapes (folder data, 32x32 RGB)"
"$REEL" train image --data "$WORK/shapes" --size 32 --epochs 12 --batch 16 --out "$WORK/shapes.rcnn" \
    >"$WORK/cnn.jsonl" 2>"$WORK/cnn.log" || fail "train image (folder) failed"
acc=$(jq -s 'last.test_accuracy' "$WORK/cnn.jsonl")
log "CNN test accuracy $acc"
awk -v a="$acc" 'BEGIN { exit !(a >= 0.85) }' || fail "shapes CNN accuracy $acc < 0.85"
[ "$(jq -s length "$WORK/cnn.jsonl")" = 12 ] || fail "expected one JSON line per epoch"
grep -q 'epoch 12/12 \[=*\] 100%' "$WORK/cnn.log" || fail "no progress bar"
"$REEL" eval image --data "$WORK/shapes" --model "$WORK/shapes.rcnn" >"$WORK/eval.json" \
    2>"$WORK/eval.log" || fail "eval image failed"
jq -e --argjson a "$acc" '.accuracy == $a and .n == 90 and ([.per_class[].label] ==
    ["circle", "square", "stripes"]) and all(.per_class[]; .n == 30 and .f1 > 0.7)' \
    "$WORK/eval.json" >/dev/null || fail "eval: $(cat "$WORK/eval.json")"

log "the flat layout: every 5th file of each class is held out"
"$REEL" train image --data "$WORK/shapes-flat" --size 32 --epochs 1 --batch 16 \
    --out "$WORK/flat.rcnn" >"$WORK/flat.jsonl" 2>"$WORK/flat.log" || fail "flat folder failed"
grep -q 'loaded 288 training and 72 test images' "$WORK/flat.log" || fail "split: $(grep loaded "$WORK/flat.log")"

log "linear SVM on the CNN's embedding, RBF SVM on raw pixels"
"$REEL" train image --model svm-linear --embed "$WORK/shapes.rcnn" --data "$WORK/shapes" \
    --out "$WORK/lin.rsvm" >"$WORK/lin.json" 2>"$WORK/lin.log" || fail "svm-linear failed"
"$REEL" train image --model svm-rbf --data "$WORK/shapes" --size 32 \
    --out "$WORK/rbf.rsvm" >"$WORK/rbf.json" 2>"$WORK/rbf.log" || fail "svm-rbf failed"
# raw pixels of randomly coloured shapes are a hard input for an RBF kernel
# (chance is 0.33); the embedding makes the classes linearly separable
for m in lin:0.85 rbf:0.6; do
    a=$(jq .accuracy "$WORK/${m%:*}.json")
    log "${m%:*} SVM test accuracy $a"
    awk -v a="$a" -v t="${m#*:}" 'BEGIN { exit !(a >= t) }' || fail "${m%:*} SVM accuracy $a < ${m#*:}"
done
"$REEL" eval image --data "$WORK/shapes" --model "$WORK/lin.rsvm" --embed "$WORK/shapes.rcnn" \
    >"$WORK/lin_eval.json" 2>>"$WORK/lin.log" || fail "eval of the linear SVM failed"
[ "$(jq .accuracy "$WORK/lin_eval.json")" = "$(jq .accuracy "$WORK/lin.json")" ] ||
    fail "eval disagrees with train for the linear SVM"
"$REEL" eval image --data "$WORK/shapes" --model "$WORK/lin.rsvm" >/dev/null 2>"$WORK/noembed.err" &&
    fail "an embedding SVM evaluated without --embed"
grep -q -- '--embed' "$WORK/noembed.err" || fail "no hint about --embed"

log "Fashion-MNIST slice: CNN, then a linear SVM on its embedding"
"$REEL" train image --data "$FM" --limit 3000 --test-limit 1000 --epochs 2 \
    --out "$WORK/fm.rcnn" >"$WORK/fm.jsonl" 2>"$WORK/fm.log" || fail "fashion CNN failed"
cnn=$(jq -s 'last.test_accuracy' "$WORK/fm.jsonl")
"$REEL" train image --model svm-linear --embed "$WORK/fm.rcnn" --data "$FM" --limit 3000 \
    --test-limit 1000 --out "$WORK/fm.rsvm" >"$WORK/fm_svm.json" 2>"$WORK/fm_svm.log" ||
    fail "fashion svm failed"
svm=$(jq .accuracy "$WORK/fm_svm.json")
log "Fashion slice: CNN $cnn, linear SVM on its embedding $svm"
awk -v c="$cnn" -v s="$svm" 'BEGIN { exit !(c >= 0.75 && s >= c - 0.05) }' ||
    fail "CNN $cnn / SVM $svm below 0.75 / CNN - 0.05"

log "bad options and data"
"$REEL" train image --data "$WORK/nowhere" --out "$WORK/x" 2>"$WORK/bad.err" && fail "missing data accepted"
grep -q 'not a folder' "$WORK/bad.err" || fail "no reason for missing data"
printf '[conv]\nfilters=4\n[bogus]\n' >"$WORK/bad.arch"
"$REEL" train image --data "$WORK/shapes" --arch "$WORK/bad.arch" --out "$WORK/x" 2>"$WORK/bad.err" &&
    fail "bad arch accepted"
grep -q 'unknown layer \[bogus\]' "$WORK/bad.err" || fail "no reason for the bad arch"
"$REEL" eval image --data "$FM" --model "$WORK/shapes.rcnn" 2>"$WORK/bad.err" && fail "shape mismatch accepted"
grep -q 'the model takes 3x32x32 inputs' "$WORK/bad.err" || fail "no reason for the shape mismatch: $(cat "$WORK/bad.err")"
"$REEL" train image --model svm-rbf --data "$FM" --out "$WORK/x" 2>"$WORK/bad.err" && fail "60k RBF accepted"
grep -q 'at most 20000 samples' "$WORK/bad.err" || fail "no reason for the RBF size"
log "PASS: folder and IDX data, CNN and SVMs train and evaluate"
