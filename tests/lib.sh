# lib.sh: helpers for the integration and fault tests. Each test starts its
# own redis-server and `reel mock-kafka` in a private folder and stops them
# on exit; no test talks to a service it did not start.
set -euo pipefail

: "${REEL:?REEL must point at the reel binary}"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/reel-test.XXXXXX")
BG_PIDS=()
REDIS_PID=""
KAFKA_PID=""

log() { echo "[$(date +%H:%M:%S)] $*"; }
# has ARGS...: grep ARGS on stdin, quietly, reading all of it. `cmd | grep -q`
# exits at the first match, and under pipefail the SIGPIPE that cmd may then
# get fails the pipeline.
has() { grep "$@" >/dev/null; }
fail() {
    echo "FAIL: $*" >&2
    for f in "$WORK"/*.log "$WORK"/*.err; do
        [ -f "$f" ] || continue
        echo "---- tail $f" >&2
        tail -n 30 "$f" >&2
    done
    exit 1
}

cleanup() {
    set +e
    for p in "${BG_PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    [ -n "$KAFKA_PID" ] && kill "$KAFKA_PID" 2>/dev/null
    [ -n "$REDIS_PID" ] && kill -9 "$REDIS_PID" 2>/dev/null
    wait 2>/dev/null
    if [ "${KEEP_WORK:-0}" = 1 ]; then echo "work folder kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# Starts a private redis-server on a unix socket with an fsync'd AOF, so a
# restart keeps every acknowledged write.
# REDIS_PERSIST=rdb instead keeps only snapshots taken with `rcli SAVE`, so a
# test can make Redis lose its latest writes.
start_redis() {
    local persist=(--appendonly yes --appendfsync always --save "")
    [ "${REDIS_PERSIST:-aof}" = rdb ] && persist=(--appendonly no --save "")
    redis-server --port 0 --unixsocket "$WORK/redis.sock" --unixsocketperm 700 \
        --dir "$WORK" "${persist[@]}" --daemonize no >>"$WORK/redis.log" 2>&1 &
    REDIS_PID=$!
    REDIS_URL="unix://$WORK/redis.sock"
    for _ in $(seq 1 100); do
        if redis-cli -s "$WORK/redis.sock" ping >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    fail "redis-server did not start"
}

stop_redis() {
    kill -9 "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
    REDIS_PID=""
}

rcli() { redis-cli -s "$WORK/redis.sock" "$@"; }

# Starts `reel mock-kafka` with a control fifo on fd 7 (see kafka_ctl).
start_kafka() {
    local brokers=${1:-3} partitions=${2:-4} topics=${3:-}
    mkfifo "$WORK/kafka.ctl"
    local args=(--brokers "$brokers" --partitions "$partitions")
    [ -n "$topics" ] && args+=(--topics "$topics")
    "$REEL" mock-kafka "${args[@]}" <"$WORK/kafka.ctl" >"$WORK/kafka.out" 2>"$WORK/kafka.err" &
    KAFKA_PID=$!
    exec 7>"$WORK/kafka.ctl"
    for _ in $(seq 1 100); do
        if grep -q '^bootstrap.servers=' "$WORK/kafka.out" 2>/dev/null; then
            BOOTSTRAP=$(sed -n 's/^bootstrap.servers=//p' "$WORK/kafka.out" | head -1)
            return 0
        fi
        sleep 0.1
    done
    fail "reel mock-kafka did not start"
}

# kafka_ctl "down 1" | "up 1": broker failure injection.
kafka_ctl() { echo "$*" >&7; }

# Common -X options for every reel command of a test.
reel_opts() {
    # A short session timeout lets a SIGKILLed member's partitions move
    # within seconds instead of librdkafka's default 45 s.
    echo "-X kafka.bootstrap.servers=$BOOTSTRAP -X redis.url=$REDIS_URL -X metrics.port=-1" \
        "-X kafka.consumer.session.timeout.ms=6000 -X kafka.consumer.heartbeat.interval.ms=1000"
}

# metrics_port LOG [TRIES]: the port a worker started with metrics.port=0
# bound, read from its log. A port the test picks itself can collide with
# an ephemeral port the mock broker or Redis clients already hold.
metrics_port() {
    local port tries=${2:-100}
    for _ in $(seq 1 "$tries"); do
        port=$(sed -n 's/.*"event":"metrics_listening","msg":"port=\([0-9]*\).*/\1/p' "$1" | head -1)
        [ -n "$port" ] && { echo "$port"; return 0; }
        sleep 0.1
    done
    return 1
}

# gen_events N USERS SEED: N ViewingEvent JSON lines over USERS user ids.
gen_events() {
    awk -v n="$1" -v users="$2" -v seed="${3:-1}" 'BEGIN {
        srand(seed);
        split("view play progress complete rating like dislike", types, " ");
        for (i = 0; i < n; i++) {
            u = int(rand() * users); it = int(rand() * 500);
            printf("{\"event_id\":\"e%d\",\"user_id\":\"u%d\",\"item_id\":\"i%d\",\"type\":\"%s\",\"ts\":%d,\"watch_seconds\":%d,\"device\":\"tv\"}\n",
                   i, u, it, types[1 + i % 7], 1700000000000 + i, i % 300);
        }
    }'
}

# expected_counts FILE: "user count" lines, sorted, from generated events.
expected_counts() {
    sed 's/.*"user_id":"\([^"]*\)".*/\1/' "$1" | sort | uniq -c | awk '{print $2, $1}' | sort
}

# actual_counts GROUP: "key count" lines from the count worker's hash.
actual_counts() {
    rcli --raw HGETALL "reel:{$1}:counts" | paste - - | awk '{print $1, $2}' | sort
}

# wait_for_count GROUP N TIMEOUT_S: waits until the counts sum to N.
wait_for_count() {
    local group=$1 want=$2 timeout=${3:-120} sum=0
    for _ in $(seq 1 $((timeout * 2))); do
        sum=$(rcli --raw HVALS "reel:{$group}:counts" | awk '{s += $1} END {print s + 0}')
        if [ "$sum" -ge "$want" ]; then echo "$sum"; return 0; fi
        sleep 0.5
    done
    echo "$sum"
    return 1
}

# start_worker NAME [extra args]: starts `reel run count` in the background,
# logging to $WORK/NAME.log; sets WORKER_PID.
start_worker() {
    local name=$1
    shift
    # shellcheck disable=SC2046
    "$REEL" run count $(reel_opts) "$@" 2>>"$WORK/$name.log" &
    WORKER_PID=$!
    BG_PIDS+=("$WORKER_PID")
}

# distinct_sources TOPIC: number of distinct (partition, offset) sources in
# the outputs read back from TOPIC.
distinct_sources() {
    # shellcheck disable=SC2046
    "$REEL" consume --topic "$1" --from-beginning --timeout-ms "${2:-5000}" $(reel_opts) \
        2>"$WORK/consume.err" |
        jq -r '"\(.value.source.topic) \(.value.source.partition) \(.value.source.offset)"' |
        sort -u | wc -l
}
