#!/bin/bash
# Fault suite for the recommend worker with recommend.state=memory
# (tests/fault_suite.sh, as test_fault_recommend.sh: a catalogue of 40
# items, then 20k ViewingEvents with poison; 5 SIGKILLs, a broker outage, a
# Redis crash). The worker keeps its state in memory and logs each batch to
# Redis, with a snapshot every 3,000 events. Every key of the group outside
# the log must equal a clean pass's; the log and snapshots differ by design
# (batches are cut elsewhere after a restart), so instead the state they
# rebuild (`reel recommend state`) must be the same bytes.
W=recommend
FAULT_LABEL=recommend-memory
PARTS=1
IN_TOPICS="viewing-events items"
OUT_TOPIC=recommendations
OUT_MODE=key
W_ARGS="-X batch.max.records=500 -X recommend.state=memory -X recommend.snapshot.events=3000"
export FAULT_EXCLUDE='^reel:\{[^}]*\}:(mlog|msnap)'
fault_prepare() { :; }
# shellcheck source=tests/fault_recommend_setup.sh
source "$(dirname "$0")/fault_recommend_setup.sh"
# One line: the hash of the state the group's snapshot and log rebuild.
fault_state() {
    local out
    # shellcheck disable=SC2046
    out=$("$REEL" recommend state $(fault_opts) -X group.id="$1" 2>>"$WORK/state.err") || return 1
    echo "$out" >&2
    printf 'reel:{G}:memory-state string\t%s users=%s pairs=%s bytes=%s\n' "$(jq -r .fnv64 <<<"$out")" \
        "$(jq .users <<<"$out")" "$(jq .pairs <<<"$out")" "$(jq .bytes <<<"$out")"
}
# shellcheck source=tests/fault_suite.sh
source "$(dirname "$0")/fault_suite.sh"
fault_main
