#!/bin/sh
# Builds reel and runs `reel demo` (an embedded Kafka and a private Redis).
set -eu
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc 2>/dev/null || echo 2)"
exec ./build/reel demo "$@"
