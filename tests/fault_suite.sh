# fault_suite.sh: the fault suite's driver, sourced by tests/test_fault_<worker>.sh
# (one ctest per worker, label `fault`). For one worker:
#
#  1. A stream of FAULT_N records (20000 by default; 1% schema-valid but
#     semantically bad records, 1% undecodable bytes, in 10 chunks; see
#     tests/fault_tool.py feed) is produced while the worker runs, and
#     - the worker is SIGKILLed at KILLS (5) random points and restarted,
#     - the leader of the input partition 0 is taken down for 5 s (mock
#       cluster failure injection) while a chunk is produced and consumed,
#     - redis-server is SIGKILLed mid-stream and restarted on the same data
#       directory (AOF, appendfsync always) while a chunk is produced.
#     Then the worker must finish everything and exit 0 on SIGTERM.
#  2. A clean pass: the same worker in another consumer group (group.id
#     clean, so its keys are reel:{clean-W}:*) reads the same topics once
#     with no faults.
#  3. The Redis state of the two groups must be equal, entry by entry
#     (fault_tool.py dump/compare: every key of the group, with the group
#     name normalized); every poison record must be in <topic>.dlq, once per
#     source, carrying its original bytes, and be exactly the records the
#     clean pass dead-lettered; every valid record must have its output
#     (per input record for count, tag, transcribe and sentiment, whose
#     outputs carry their source; per user for recommend, which emits one
#     Recommendations per user touched by a batch).
#  4. One summary line: records, restarts, lost and duplicated state
#     updates, dead letters, outputs.
#
# The worker's file defines:
#   W            worker name
#   PARTS        partitions of the input topic
#   IN_TOPICS    input topics (space separated; state offsets are summed)
#   OUT_TOPIC    output topic; OUT_MODE record|key (see 3.)
#   W_ARGS       extra -X options for `reel run`
#   FAULT_LABEL  name in the SUMMARY line (default: W)
#   fault_prepare  trains and pushes the worker's model (after Redis is up)
#   fault_state GROUP  (optional) prints more "key\tvalue" lines of GROUP's
#                  state to compare (see FAULT_EXCLUDE in fault_tool.py)
#   fault_setup GROUP  (optional) runs before each run of group GROUP (reel
#                  for the faulty run, clean for the clean pass)
#
# SEED makes a run reproducible (it is logged).
# shellcheck source=tests/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TOOL="$(dirname "${BASH_SOURCE[0]}")/fault_tool.py"
# Under AddressSanitizer (CI's second pass; detected by the binary's link to
# libasan) the stream is FAULT_N_ASAN (5000) records long: the same faults,
# a quarter of the records, to keep CI's time in check. The plain build runs
# the full 20000. FAULT_N overrides both.
if [ -z "${FAULT_N:-}" ] && ldd "$REEL" 2>/dev/null | grep -q libasan; then
    FAULT_N=${FAULT_N_ASAN:-5000}
fi
FAULT_N=${FAULT_N:-20000}
KILLS=${KILLS:-5}
CHUNKS=10
SEED=${SEED:-$RANDOM}
RANDOM=$SEED
FEED="$WORK/feed"

# A short session timeout: a SIGKILLed member's partitions move to its
# restarted successor within ~3 s. A short reconnect backoff: clients find
# the broker that comes back within a second, not librdkafka's 10 s.
fault_opts() {
    echo "$(reel_opts) -X kafka.consumer.session.timeout.ms=3000" \
        "-X kafka.consumer.heartbeat.interval.ms=500 -X kafka.reconnect.backoff.max.ms=1000 $W_ARGS"
}

produce_chunk() {
    local k=$1
    # shellcheck disable=SC2046
    "$REEL" produce --topic "${IN_TOPICS%% *}" $(reel_opts) -X kafka.reconnect.backoff.max.ms=1000 \
        <"$FEED/chunk.$k.jsonl" 2>>"$WORK/produce.err" || fail "produce of chunk $k failed"
    # shellcheck disable=SC2046
    "$REEL" produce --topic "${IN_TOPICS%% *}" --raw-base64 $(reel_opts) \
        -X kafka.reconnect.backoff.max.ms=1000 <"$FEED/chunk.$k.b64" 2>>"$WORK/produce.err" ||
        fail "raw produce of chunk $k failed"
}

# applied GROUP: records the group has applied in Redis, over its inputs.
applied() {
    local t sum=0 n
    for t in $IN_TOPICS; do
        n=$(rcli --raw HVALS "reel:{$1-$W}:offsets:$t" 2>/dev/null | awk '{s += $1} END {print s + 0}')
        sum=$((sum + n))
    done
    echo "$sum"
}

# wait_applied GROUP WANT TIMEOUT_S: fails (a hang) if not reached in time.
wait_applied() {
    local got=0
    for _ in $(seq 1 $(($3 * 4))); do
        got=$(applied "$1")
        [ "$got" -ge "$2" ] && return 0
        [ -n "$WORKER_PID" ] && ! kill -0 "$WORKER_PID" 2>/dev/null &&
            fail "worker died (applied $got of $2)"
        sleep 0.25
    done
    fail "hang: $1 applied $got of $2 records in $3 s"
}

run_worker() {
    local name=$1
    shift
    # shellcheck disable=SC2046
    "$REEL" run "$W" $(fault_opts) "$@" 2>>"$WORK/$name.log" &
    WORKER_PID=$!
    BG_PIDS+=("$WORKER_PID")
}

stop_worker() {
    kill -TERM "$WORKER_PID"
    local rc=0
    wait "$WORKER_PID" || rc=$?
    [ "$rc" = 0 ] || fail "worker exited with $rc on SIGTERM (a crash, or leaks under ASan)"
    WORKER_PID=""
}

# consume_all TOPIC OUT: every record of TOPIC as `reel consume` JSON lines.
consume_all() {
    # shellcheck disable=SC2046
    "$REEL" consume --topic "$1" --from-beginning --timeout-ms 2500 $(reel_opts) >"$2" \
        2>>"$WORK/consume.err" || fail "consume $1 failed"
}

# consume_both PREFIX: the output topic and the DLQ into PREFIX_out.jsonl and
# PREFIX_dlq.jsonl, both at once.
consume_both() {
    consume_all "$OUT_TOPIC" "$WORK/$1_out.jsonl" &
    local p=$!
    consume_all "${IN_TOPICS%% *}.dlq" "$WORK/$1_dlq.jsonl"
    wait "$p" || fail "consume $OUT_TOPIC failed"
}

# partition_leader TOPIC PARTITION: the broker id leading it.
partition_leader() {
    kcat -L -b "$BOOTSTRAP" -t "$1" 2>/dev/null |
        sed -n "s/.*partition $2, leader \([0-9]*\),.*/\1/p" | head -1
}

fault_main() {
    local t0=$SECONDS
    log "fault suite: worker $W, $FAULT_N records, $KILLS kills, seed $SEED"
    start_redis
    start_kafka 3 "$PARTS"
    fault_prepare
    mkdir -p "$FEED"
    read -r NREC NPOISON < <(python3 "$TOOL" feed "$W" "$FEED" "$FAULT_N" "$SEED" "$CHUNKS") ||
        fail "feed failed"
    local total=$NREC
    if [ -f "$FEED/items.jsonl" ]; then
        # shellcheck disable=SC2046
        "$REEL" produce --topic items $(reel_opts) <"$FEED/items.jsonl" 2>>"$WORK/produce.err" ||
            fail "produce items failed"
        total=$((total + $(wc -l <"$FEED/items.jsonl")))
    fi

    # ---- the faulty run ----
    local k=0 kills=0 before
    if declare -F fault_setup >/dev/null; then fault_setup reel; fi
    produce_chunk $k
    k=$((k + 1))
    run_worker worker
    for _ in $(seq 1 "$KILLS"); do
        produce_chunk $k
        k=$((k + 1))
        # Kill mid-stream: once this incarnation has applied something, at a
        # random moment in the next 0-0.5 s.
        before=$(applied reel)
        for _ in $(seq 1 600); do
            [ "$(applied reel)" -gt "$before" ] && break
            kill -0 "$WORKER_PID" 2>/dev/null || fail "worker died before kill $((kills + 1))"
            sleep 0.05
        done
        [ "$(applied reel)" -gt "$before" ] || fail "hang: no progress in 30 s before a kill"
        sleep "$(awk -v r="$RANDOM" 'BEGIN {printf "%.3f", 0.5 * r / 32767}')"
        kill -9 "$WORKER_PID"
        wait "$WORKER_PID" 2>/dev/null || true
        kills=$((kills + 1))
        log "kill $kills: SIGKILL at $(applied reel) applied (was $before)"
        run_worker worker
    done

    # A broker down for 5 s: the leader of partition 0 of the input, while a
    # chunk is produced to it and consumed.
    local leader
    leader=$(partition_leader "${IN_TOPICS%% *}" 0)
    [ -n "$leader" ] || fail "no leader found for ${IN_TOPICS%% *}[0]"
    log "broker $leader (leader of ${IN_TOPICS%% *}[0]) down for 5 s"
    kafka_ctl "down $leader"
    produce_chunk $k &
    local ppid=$!
    k=$((k + 1))
    sleep 5
    kafka_ctl "up $leader"
    wait "$ppid" || fail "produce across the broker outage failed"
    log "broker $leader up"

    # Redis killed mid-stream and restarted on its AOF.
    before=$(applied reel)
    produce_chunk $k
    k=$((k + 1))
    for _ in $(seq 1 600); do
        [ "$(applied reel)" -gt "$before" ] && break
        sleep 0.05
    done
    log "redis SIGKILL at $(applied reel) applied"
    stop_redis
    produce_chunk $k
    k=$((k + 1))
    sleep 2
    kill -0 "$WORKER_PID" 2>/dev/null || fail "worker died while Redis was down"
    start_redis
    log "redis restarted on its AOF"
    while [ $k -lt $CHUNKS ]; do
        produce_chunk $k
        k=$((k + 1))
    done
    wait_applied reel "$total" 300
    stop_worker
    kill -0 "$KAFKA_PID" || fail "reel mock-kafka died"
    consume_both fault
    local faulty_s=$((SECONDS - t0))

    # ---- the clean pass ----
    if declare -F fault_setup >/dev/null; then fault_setup clean; fi
    run_worker clean -X group.id=clean
    wait_applied clean "$total" 300
    stop_worker
    consume_both all

    # ---- the checks ----
    : >"$WORK/inputs.raw"
    for t in $IN_TOPICS; do
        kcat -C -b "$BOOTSTRAP" -t "$t" -e -q -f '%t %p %o %S\n%s\n' >>"$WORK/inputs.raw" ||
            fail "kcat could not read $t"
    done
    python3 "$TOOL" dump "$WORK/redis.sock" "clean-$W" "$WORK/clean.dump" >"$WORK/clean.keys" ||
        fail "dump of the clean state failed"
    python3 "$TOOL" dump "$WORK/redis.sock" "reel-$W" "$WORK/fault.dump" >"$WORK/fault.keys" ||
        fail "dump of the faulty state failed"
    if declare -F fault_state >/dev/null; then
        fault_state clean >>"$WORK/clean.dump" || fail "fault_state clean failed"
        fault_state reel >>"$WORK/fault.dump" || fail "fault_state reel failed"
    fi
    local state rc=0
    state=$(python3 "$TOOL" compare "$WORK/clean.dump" "$WORK/fault.dump" 2>"$WORK/compare.err") ||
        rc=1
    local io orc=0
    io=$(python3 "$TOOL" check "$OUT_MODE" "$WORK/inputs.raw" "$WORK/fault_dlq.jsonl" \
        "$WORK/all_dlq.jsonl" "$WORK/fault_out.jsonl" "$WORK/all_out.jsonl" "$NPOISON" \
        2>"$WORK/check.err") || orc=1
    echo "SUMMARY fault[${FAULT_LABEL:-$W}]: $io restarts=$kills broker_outages=1 redis_restarts=1" \
        "keys=$(cut -d' ' -f1 "$WORK/fault.keys") $state faulty_run=${faulty_s}s seed=$SEED"
    [ $rc = 0 ] || fail "Redis state differs from a clean pass: $(cat "$WORK/compare.err")"
    [ $orc = 0 ] || fail "outputs or dead letters wrong: $(cat "$WORK/check.err")"
    [ "$(cut -d' ' -f1 "$WORK/clean.keys")" -gt 0 ] || fail "the clean pass left no state"
    log "PASS: fault suite for $W"
}
