#!/bin/bash
# `reel demo` (the README's first command) runs end to end on its embedded
# cluster and private redis-server: every worker built into the binary
# trains its model into a fresh state folder, gets its sample data, runs to
# the end and is summarized from its output topic; every broken record
# reaches its dead-letter topic; the demo exits 0 and stops its
# redis-server. A second run loads the cached models instead of training.
source "$(dirname "$0")/lib.sh"

cd "$REEL_SOURCE_DIR"
"$REEL" demo --quick --state "$WORK/state" --events 2000 ${DEMO_ARGS:-} >"$WORK/demo.out" 2>"$WORK/demo.err" ||
    fail "reel demo exited $?: $(tail -20 "$WORK/demo.out")"
cat "$WORK/demo.out"
grep -q '^OK: every worker ran to the end' "$WORK/demo.out" || fail "no OK line"
grep -q 'viewing-events.dlq *3 records (3 broken ones sent)' "$WORK/demo.out" ||
    fail "viewing-events DLQ summary"
grep -q 'recommend: [1-9][0-9]* Recommendations records' "$WORK/demo.out" ||
    fail "no recommendations read back"
grep -Eq '^      1\. .*\((item_cf|user_cf|content|popular)' "$WORK/demo.out" ||
    fail "no recommended title with its sources"
if "$REEL" --help | has '^  tag '; then
    grep -q 'posters.dlq *2 records (2 broken' "$WORK/demo.out" || fail "posters DLQ summary"
    grep -q 'truth .* -> ' "$WORK/demo.out" || fail "no poster tags beside the truth"
fi
if "$REEL" --help | has '^  transcribe '; then
    grep -q 'audio-clips.dlq *1 records' "$WORK/demo.out" || fail "audio-clips DLQ summary"
fi
if "$REEL" --help | has '^  sentiment '; then
    grep -q 'reviews.dlq *1 records' "$WORK/demo.out" || fail "reviews DLQ summary"
fi
# The demo stops the redis-server it started.
sock=$(sed -n 's|.*redis: unix://\([^ ]*\) (private redis-server).*|\1|p' "$WORK/demo.out")
[ -n "$sock" ] || fail "the demo did not say where its redis-server listens"
if pgrep -f "$sock" >/dev/null; then fail "the demo left its redis-server running"; fi
log "PASS: reel demo"
