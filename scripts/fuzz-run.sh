#!/bin/sh
# Runs each libFuzzer target for a while, one after another, on a corpus
# that grows from run to run (BUILD/corpus/<name>, first filled from
# tests/fuzz/<name>_seeds), and prints one summary line per target.
#   scripts/fuzz-run.sh BUILD_DIR [SECONDS] [TARGET...]
#   make -C build-fuzz fuzz-run FUZZ_SECONDS=600 FUZZ_TARGETS="model config"
# A crash leaves its input as BUILD/crash-<name>-*; the exit status is then 1.
# Targets: codec audio image tokenize config model.
set -u
build=$(cd "${1:?usage: fuzz-run.sh BUILD_DIR [SECONDS] [TARGET...]}" && pwd)
shift
seconds=${1:-${FUZZ_SECONDS:-30}}
[ $# -gt 0 ] && shift
targets=${*:-${FUZZ_TARGETS:-codec audio image tokenize config model}}
src=$(cd "$(dirname "$0")/.." && pwd)
status=0
for t in $targets; do
    exe=$build/fuzz_$t
    [ -x "$exe" ] || { echo "fuzz-run: $exe not built" >&2; status=1; continue; }
    corpus=$build/corpus/$t
    if [ ! -d "$corpus" ]; then
        mkdir -p "$corpus"
        cp "$src/tests/fuzz/${t}_seeds/"* "$corpus/" 2>/dev/null || true
    fi
    log=$build/fuzz-$t.log
    start=$(date +%s)
    # CPU seconds (user + system) as well as wall time: on a shared machine
    # a niced fuzzer gets a fraction of a core.
    timer=""
    [ -x /usr/bin/time ] && timer="/usr/bin/time -o $build/fuzz-$t.cpu -f %U+%S"
    # shellcheck disable=SC2086
    (cd "$build" && $timer "$exe" -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 \
        -malloc_limit_mb=1024 -timeout=20 -print_final_stats=1 \
        -artifact_prefix="$build/crash-$t-" "$corpus" >"$log" 2>&1)
    rc=$?
    end=$(date +%s)
    cpu="?"
    [ -s "$build/fuzz-$t.cpu" ] && cpu=$(tail -1 "$build/fuzz-$t.cpu" | awk -F+ '{print $1 + $2}')
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
    files=$(find "$corpus" -type f | wc -l)
    if [ $rc -eq 0 ]; then verdict=ok; else verdict="FAILED (rc $rc, see $log)"; status=1; fi
    echo "fuzz_$t: $((end - start)) s wall, $cpu s CPU, ${execs:-?} runs, ${cov:-cov: ?}, corpus $files files: $verdict"
done
exit $status
