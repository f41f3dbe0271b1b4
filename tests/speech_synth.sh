#!/bin/bash
# speech_synth.sh OUTDIR MANIFEST "VOICE..." "WORD..." "SPEED..." "PITCH..."
# Speaks every word with espeak-ng in every voice, speed (words/minute) and
# pitch (0-99) into OUTDIR/<voice>_<word>_<speed>_<pitch>.wav (22.05 kHz)
# and appends "path<TAB>word<TAB>voice" lines to MANIFEST (paths relative to
# the manifest's folder, which must be OUTDIR's parent or OUTDIR itself).
# Used by the speech tests and bench/speech; deterministic for a given
# espeak-ng version.
set -euo pipefail
out=$1 manifest=$2 voices=$3 words=$4 speeds=${5:-160} pitches=${6:-50}
mkdir -p "$out"
rel=$(realpath --relative-to="$(dirname "$manifest")" "$out")
for v in $voices; do
    for w in $words; do
        for s in $speeds; do
            for p in $pitches; do
                f="${v//+/-}_${w}_${s}_${p}.wav"
                espeak-ng -v "$v" -s "$s" -p "$p" -w "$out/$f" "$w"
                printf '%s\t%s\t%s\n' "$rel/$f" "$w" "${v//+/-}" >>"$manifest"
            done
        done
    done
done
