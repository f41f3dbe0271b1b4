#!/bin/sh
# Builds reel and runs every test: first a normal build, then the same tests
# under AddressSanitizer + UndefinedBehaviorSanitizer. Installs what it needs.
#   scripts/test.sh            both passes
#   REEL_TEST_PASSES=plain     only the normal build (faster local runs)
set -eu
cd "$(dirname "$0")/.."
scripts/install-deps.sh

JOBS=$(nproc 2>/dev/null || echo 2)
PASSES=${REEL_TEST_PASSES:-"plain asan"}
status=0
for pass in $PASSES; do
    case $pass in
    plain) dir=build; flags="-DREEL_SANITIZE=OFF" ;;
    asan) dir=build-asan; flags="-DREEL_SANITIZE=ON" ;;
    *) echo "unknown pass $pass" >&2; exit 2 ;;
    esac
    echo "==== $pass build ($dir)"
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo $flags >/dev/null
    cmake --build "$dir" -j "$JOBS"
    echo "==== $pass tests"
    # Leak checks on; ASan's own exit code makes a leak fail the test.
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    if ! (cd "$dir" && ctest --output-on-failure --timeout 900 -j 1); then
        status=1
    fi
done
exit $status
