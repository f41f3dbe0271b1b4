#!/bin/sh
# Builds reel and runs every test: a normal build, the same tests under
# AddressSanitizer + UndefinedBehaviorSanitizer, and a libFuzzer run of every
# fuzz target (clang, ASan + UBSan: codec, audio, image, tokenize, config,
# model; 30 s each, REEL_FUZZ_SECONDS=N to change). Installs what it needs.
#   scripts/test.sh                 all passes
#   REEL_TEST_PASSES=plain          only the normal build (faster local runs)
set -eu
cd "$(dirname "$0")/.."
scripts/install-deps.sh

JOBS=$(nproc 2>/dev/null || echo 2)
PASSES=${REEL_TEST_PASSES:-"plain asan fuzz"}
status=0
summary=""
for pass in $PASSES; do
    target=""
    case $pass in
    plain) dir=build; flags="-DREEL_SANITIZE=OFF" ;;
    asan) dir=build-asan; flags="-DREEL_SANITIZE=ON" ;;
    fuzz) dir=build-fuzz; flags="-DREEL_FUZZ=ON -DCMAKE_C_COMPILER=clang -DREEL_FUZZ_SECONDS=${REEL_FUZZ_SECONDS:-30}"; target="--target fuzzers" ;;
    *) echo "unknown pass $pass" >&2; exit 2 ;;
    esac
    echo "==== $pass build ($dir)"
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo $flags >/dev/null
    # shellcheck disable=SC2086
    cmake --build "$dir" -j "$JOBS" $target
    echo "==== $pass tests"
    # Leak checks on; ASan's own exit code makes a leak fail the test.
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    label=""
    [ "$pass" = fuzz ] && label="-L fuzz"
    # shellcheck disable=SC2086
    if (cd "$dir" && ctest --output-on-failure --timeout 900 -j 1 $label); then
        summary="$summary\n  $pass: passed"
    else
        summary="$summary\n  $pass: FAILED"
        status=1
    fi
done
printf "==== summary$summary\n"
exit $status
