#!/bin/bash
# Fault suite for the recommend worker (tests/fault_suite.sh): a catalogue of
# 40 items, then 20k ViewingEvents of 400 users with poison (an empty user
# id, a rating of 9, a timestamp in 2100, undecodable bytes); 5 SIGKILLs, a
# broker outage, a Redis crash. Every key of the worker's group (histories,
# co-occurrences, neighbour lists, popularity, ids, ...) must equal a clean
# pass's, compared generically so that it survives changes to the layout.
# One partition: the worker's float sums and top-K lists over items depend
# on the order in which events of different users arrive, which only one
# partition fixes (a clean pass over 2 partitions is not reproducible
# either). The catalogue goes first (fault_setup).
W=recommend
PARTS=1
IN_TOPICS="viewing-events items"
OUT_TOPIC=recommendations
OUT_MODE=key
W_ARGS="-X batch.max.records=500"
fault_prepare() { :; }
# The catalogue is applied before any event, in both runs: dense item ids are
# allocated in order of first sight, and which of the two topics an item is
# first seen in is otherwise up to the consumer's interleaving of them (two
# clean passes would differ).
fault_setup() {
    local args=()
    [ "$1" = clean ] && args=(-X group.id=clean)
    run_worker "$1-items" "${args[@]}" -X recommend.topics=items
    local n=0
    for _ in $(seq 1 240); do
        n=$(rcli --raw HVALS "reel:{$1-recommend}:offsets:items" | awk '{s += $1} END {print s + 0}')
        [ "$n" -ge "$(wc -l <"$FEED/items.jsonl")" ] && break
        sleep 0.25
    done
    [ "$n" -ge "$(wc -l <"$FEED/items.jsonl")" ] || fail "hang: $n items applied"
    stop_worker
}
# shellcheck source=tests/fault_suite.sh
source "$(dirname "$0")/fault_suite.sh"
fault_main
