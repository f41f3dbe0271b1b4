# fault_recommend_setup.sh: fault_setup for the recommend worker's fault
# tests (sourced by tests/test_fault_recommend*.sh).
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
