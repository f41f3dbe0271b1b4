# recommend_memory_lib.sh: data and helpers of the recommend worker's
# memory-mode tests (sourced by tests/test_recommend_memory*.sh after
# lib.sh and the services): $WORK/items.jsonl and events.jsonl (N, NI).
NOW=$(($(date +%s) * 1000))
T0=$((NOW - 86400000))

awk -v t0="$T0" 'BEGIN {
    split("Action Comedy Drama Horror Romance Sci-Fi Thriller Western", g, " ");
    printf("{\"item_id\":\"A\",\"title\":\"Planted A\",\"genres\":[\"Drama\"],\"tags\":[],\"year\":1999,\"ts\":%d}\n", t0);
    printf("{\"item_id\":\"B\",\"title\":\"Planted B\",\"genres\":[\"Drama\"],\"tags\":[],\"year\":2001,\"ts\":%d}\n", t0);
    for (i = 0; i < 40; i++)
        printf("{\"item_id\":\"i%d\",\"title\":\"Item %d\",\"genres\":[\"%s\"],\"tags\":[],\"year\":%d,\"ts\":%d}\n",
               i, i, g[1 + i % 8], 1950 + i, t0);
}' >"$WORK/items.jsonl"

# 40 planted users (A then B), 160 others with 12 random events each, a
# re-sent event, and last a new user who watches A.
awk -v t0="$T0" 'BEGIN {
    srand(7);
    split("view play progress complete rating like dislike", types, " ");
    n = 0;
    for (u = 0; u < 200; u++) {
        if (u < 40) {
            printf("{\"event_id\":\"e%d\",\"user_id\":\"u%d\",\"item_id\":\"A\",\"type\":\"play\",\"ts\":%d,\"watch_seconds\":60}\n", n, u, t0 + n * 1000); n++;
            printf("{\"event_id\":\"e%d\",\"user_id\":\"u%d\",\"item_id\":\"B\",\"type\":\"complete\",\"ts\":%d,\"watch_seconds\":60}\n", n, u, t0 + n * 1000); n++;
        }
        for (k = 0; k < 12; k++) {
            t = types[1 + int(rand() * 7)];
            r = (t == "rating") ? sprintf(",\"rating\":%.1f", 0.5 + int(rand() * 10) / 2) : "";
            printf("{\"event_id\":\"e%d\",\"user_id\":\"u%d\",\"item_id\":\"i%d\",\"type\":\"%s\",\"ts\":%d,\"watch_seconds\":%d,\"duration_seconds\":100%s}\n",
                   n, (u * 7 + k) % 200, int(rand() * 40), t, t0 + n * 1000, int(rand() * 100), r); n++;
        }
        if (u == 100)
            printf("{\"event_id\":\"e1\",\"user_id\":\"u0\",\"item_id\":\"B\",\"type\":\"complete\",\"ts\":%d,\"watch_seconds\":60}\n", t0 + 1000);
    }
    printf("{\"event_id\":\"new1\",\"user_id\":\"newbie\",\"item_id\":\"A\",\"type\":\"play\",\"ts\":%d,\"watch_seconds\":10}\n", t0 + n * 1000);
}' >"$WORK/events.jsonl"
N=$(wc -l <"$WORK/events.jsonl")
NI=$(wc -l <"$WORK/items.jsonl")

produce() {
    # shellcheck disable=SC2046
    "$REEL" produce --topic "$1" $(reel_opts) <"$2" 2>>"$WORK/produce.err" || fail "produce to $1 failed"
}
applied() { # GROUP TOPIC
    rcli --raw HVALS "reel:{$1-recommend}:offsets:$2" | awk '{s += $1} END {print s + 0}'
}
wait_applied() { # GROUP TOPIC N
    local got=0
    for _ in $(seq 1 480); do
        got=$(applied "$1" "$2")
        [ "$got" -ge "$3" ] && return 0
        sleep 0.25
    done
    fail "$1: $got of $3 records of $2 applied"
}
start_rec() { # GROUP [args]
    local g=$1
    shift
    # shellcheck disable=SC2046
    "$REEL" run recommend $(reel_opts) -X group.id="$g" -X recommend.output="recs-$g" \
        -X recommend.state=memory -X recommend.snapshot.events=300 -X batch.max.records=40 \
        -X recommend.similarity=jaccard -X recommend.reload.interval.ms=200 "$@" \
        2>>"$WORK/worker-$g.log" &
    WORKER_PID=$!
    BG_PIDS+=("$WORKER_PID")
}
stop_rec() {
    kill -TERM "$WORKER_PID"
    wait "$WORKER_PID" || fail "worker exited with $? on SIGTERM"
}
kill_rec() {
    {
        kill -9 "$WORKER_PID"
        wait "$WORKER_PID" || true
    } 2>/dev/null
}

state() { # GROUP
    # shellcheck disable=SC2046
    "$REEL" recommend state $(reel_opts) -X group.id="$1" -X recommend.similarity=jaccard \
        --out "$WORK/state-$1.bin" 2>>"$WORK/state.err" || fail "reel recommend state $1 failed: $(tail -3 "$WORK/state.err")"
}
