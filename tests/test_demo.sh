#!/bin/bash
# `reel demo` (the README's first command) runs end to end on its embedded
# cluster and private redis-server, reports nothing lost, and exits 0.
source "$(dirname "$0")/lib.sh"

cd "$REEL_SOURCE_DIR"
"$REEL" demo --events 2000 >"$WORK/demo.out" 2>"$WORK/demo.err" ||
    fail "reel demo exited $?: $(tail -5 "$WORK/demo.out")"
grep -q '^OK: nothing lost, nothing counted twice' "$WORK/demo.out" || fail "no OK line"
grep -q 'counted 2000 of 2000 events' "$WORK/demo.out" || fail "not every event counted"
grep -q '3 records dead-lettered (3 broken records sent)' "$WORK/demo.out" || fail "DLQ summary"
# The demo stops the redis-server it started.
if pgrep -f "reel-demo-redis" >/dev/null; then fail "the demo left its redis-server running"; fi
log "PASS: reel demo"
