#!/bin/bash
# shellcheck disable=SC2046,SC2034
# (word splitting of $(reel_opts) is wanted; REDIS_PID is read by lib.sh)
# Security of a worker's connections and logs, against a redis-server that
# requires a password and has ACL users, and `reel mock-kafka`:
#  - Redis AUTH: a worker with the password (redis://:pw@host) and one with
#    an ACL user (unix socket, ?user=&password=) count every record exactly;
#    `reel model push/list` work with the credentials;
#  - wrong credentials (no password, a wrong one, a wrong ACL password, a
#    disabled user, a user without the rights the store needs) stop
#    `reel run` at once with a clear error and exit status 1, and
#    `reel model` with status 1: never a retry loop;
#  - a running worker whose ACL password is changed under it (its connection
#    killed) stops with redis_auth_failed and status 1 when it reconnects;
#  - every kafka.* setting reaches librdkafka (security.protocol,
#    sasl.mechanism, ssl.ca.location, ssl.key.location + ssl.key.password,
#    kafka.consumer.*): a bad value gets librdkafka's own error and status 1,
#    and SASL PLAIN is attempted against the broker;
#  - secrets never appear in the logs (librdkafka's debug output included)
#    or in /metrics: the Redis passwords, kafka.sasl.password and
#    kafka.ssl.key.password.
source "$(dirname "$0")/lib.sh"

PW='Redis-Pa55word-7f3a'    # requirepass (the default user)
APW='Alice-Pa55word-91c2'   # ACL user alice
SASL_PW='Sasl-Secret-5e81d0'   # kafka.sasl.password
KEY_PW='Key-Secret-0b7c44'     # kafka.ssl.key.password
WRONG='Wrong-Guess-4242aa'
SECRETS=("$PW" "$APW" "$SASL_PW" "$KEY_PW" "$WRONG")

# A private redis-server on a TCP port and a unix socket, requiring a
# password, with an ACL user alice (the rights docs/security.md gives a worker:
# every command but the dangerous ones, on reel:* keys) and reader (reads only).
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$PORT" --bind 127.0.0.1 --unixsocket "$WORK/redis.sock" --unixsocketperm 700 \
    --dir "$WORK" --save "" --appendonly no --requirepass "$PW" \
    --user alice on ">$APW" '~reel:*' +@all -@dangerous '+script|load' +eval +evalsha --user reader on '>reader-pw-123' '~*' +get +ping +hget \
    --daemonize no >>"$WORK/redis.log" 2>&1 &
REDIS_PID=$!
rcli() { redis-cli -s "$WORK/redis.sock" --no-auth-warning -a "$PW" "$@"; }
for _ in $(seq 1 100); do rcli ping >/dev/null 2>&1 && break; sleep 0.1; done
[ "$(rcli ping)" = PONG ] || fail "redis-server did not start"
URL_PW="redis://:$PW@127.0.0.1:$PORT"
URL_ACL="unix://$WORK/redis.sock?user=alice&password=$APW"
start_kafka 1 4
log "kafka at $BOOTSTRAP, redis on port $PORT"

kopts() { echo "-X kafka.bootstrap.servers=$BOOTSTRAP -X metrics.port=-1"; }
# no_secrets FILE...: none of the secrets in any of the files.
no_secrets() {
    for s in "${SECRETS[@]}"; do
        if grep -F -l -- "$s" "$@"; then fail "a secret appears in the file(s) above"; fi
    done
}
# refused NAME TEXT ARGS...: `reel run count ARGS` exits 1 within 15 s (not
# by the timeout) and its log says TEXT.
refused() {
    local name=$1 text=$2
    shift 2
    local t0 rc=0
    t0=$(date +%s)
    # shellcheck disable=SC2046
    timeout 60 "$REEL" run count $(kopts) "$@" 2>"$WORK/$name.log" || rc=$?
    local dt=$(($(date +%s) - t0))
    [ "$rc" = 1 ] || fail "$name: exit status $rc, want 1"
    [ "$dt" -le 15 ] || fail "$name: took $dt s to give up"
    has -F -- "$text" "$WORK/$name.log" || fail "$name: no '$text' in the log"
    no_secrets "$WORK/$name.log"
    log "$name: refused in $dt s: $(grep -o '"msg":"[^"]*' "$WORK/$name.log" | tail -1 | cut -c8-200)"
}

# ---- (a) Redis AUTH: wrong credentials stop at once ----
refused no_password "requires a password" -X redis.url="redis://127.0.0.1:$PORT"
refused wrong_password "authentication failed" -X redis.url="redis://:$WRONG@127.0.0.1:$PORT"
has WRONGPASS "$WORK/wrong_password.log" || fail "wrong_password: Redis's reason missing"
refused wrong_acl_password "authentication failed for user 'alice'" \
    -X redis.url="unix://$WORK/redis.sock?user=alice&password=$WRONG"
refused no_script_right "permission denied for user 'reader'" \
    -X redis.url="redis://reader:reader-pw-123@127.0.0.1:$PORT"
rcli ACL SETUSER bob off ">$WRONG" '~*' '+@all' >/dev/null
refused disabled_user "authentication failed for user 'bob'" \
    -X redis.url="redis://bob:$WRONG@127.0.0.1:$PORT"

# Commands: the same credentials rules, exit status 1 and the reason.
printf 'RSNT-not-really-a-model' >"$WORK/blob.bin"
# shellcheck disable=SC2046
"$REEL" model push "$WORK/blob.bin" --kind sentiment --no-current $(kopts) \
    -X redis.url="redis://:$WRONG@127.0.0.1:$PORT" >"$WORK/cmd_wrong.log" 2>&1 && fail "model push with a wrong password succeeded"
has "authentication failed" "$WORK/cmd_wrong.log" || fail "model push: no reason"
# shellcheck disable=SC2046
"$REEL" model push "$WORK/blob.bin" --kind sentiment --no-current $(kopts) -X redis.url="$URL_ACL" \
    >"$WORK/cmd_ok.log" 2>&1 || fail "model push as alice failed"
# shellcheck disable=SC2046
"$REEL" model list sentiment $(kopts) -X redis.url="$URL_PW" >>"$WORK/cmd_ok.log" 2>&1 ||
    fail "model list with the password failed"
has blob.bin "$WORK/cmd_ok.log" || fail "model list does not show the pushed blob"
no_secrets "$WORK/cmd_wrong.log" "$WORK/cmd_ok.log"

# ---- (a) + (c): right credentials work; no secret in logs or metrics ----
N=400
gen_events "$N" 50 7 >"$WORK/events.jsonl"
# shellcheck disable=SC2046
"$REEL" produce --topic viewing-events $(kopts) <"$WORK/events.jsonl" 2>"$WORK/produce.err" ||
    fail "produce failed"
# The password worker with every secret configured, librdkafka debugging
# its configuration, security and broker code, and /metrics on.
"$REEL" run count -X kafka.bootstrap.servers="$BOOTSTRAP" -X redis.url="$URL_PW" -X metrics.port=0 \
    -X group.id=pw -X kafka.sasl.password="$SASL_PW" -X kafka.sasl.username=reel \
    -X kafka.ssl.key.password="$KEY_PW" -X kafka.debug=conf,security,broker,generic -X log.level=debug \
    2>"$WORK/worker_pw.log" &
PW_PID=$!
BG_PIDS+=("$PW_PID")
"$REEL" run count -X kafka.bootstrap.servers="$BOOTSTRAP" -X redis.url="$URL_ACL" -X metrics.port=-1 \
    -X group.id=acl 2>"$WORK/worker_acl.log" &
ACL_PID=$!
BG_PIDS+=("$ACL_PID")
got=$(wait_for_count pw-count "$N" 90) || fail "password worker counted $got of $N"
got=$(wait_for_count acl-count "$N" 90) || fail "ACL worker counted $got of $N"
expected_counts "$WORK/events.jsonl" >"$WORK/expected.txt"
actual_counts pw-count >"$WORK/actual_pw.txt"
actual_counts acl-count >"$WORK/actual_acl.txt"
cmp -s "$WORK/expected.txt" "$WORK/actual_pw.txt" || fail "password worker's counts differ"
cmp -s "$WORK/expected.txt" "$WORK/actual_acl.txt" || fail "ACL worker's counts differ"
[ "$(rcli CLIENT LIST | grep -c 'user=alice')" -ge 1 ] || fail "no connection as alice"
MPORT=$(metrics_port "$WORK/worker_pw.log")
[ -n "$MPORT" ] || fail "no metrics port in the log"
curl -fsS "http://127.0.0.1:$MPORT/metrics" >"$WORK/metrics.txt" || fail "no /metrics"
curl -fsS "http://127.0.0.1:$MPORT/healthz" >"$WORK/healthz.txt" || fail "no /healthz"
has -F 'reel_records_in_total{worker="count"' "$WORK/metrics.txt" || fail "metrics without counts"
has -F 'sasl.password' "$WORK/worker_pw.log" || fail "librdkafka's configuration dump is missing"
kill -TERM "$PW_PID" "$ACL_PID"
wait "$PW_PID" || fail "password worker exited $?"
wait "$ACL_PID" || fail "ACL worker exited $?"
no_secrets "$WORK/worker_pw.log" "$WORK/worker_acl.log" "$WORK/metrics.txt" "$WORK/healthz.txt"
log "right credentials: both workers counted $N exactly; $(wc -l <"$WORK/worker_pw.log") log lines (librdkafka debug on) and /metrics hold no secret"

# ---- (a) a password changed under a running worker: it stops ----
"$REEL" run count -X kafka.bootstrap.servers="$BOOTSTRAP" -X redis.url="$URL_ACL" -X metrics.port=-1 \
    -X group.id=acl2 -X batch.max.ms=50 2>"$WORK/worker_rotate.log" &
ROT_PID=$!
BG_PIDS+=("$ROT_PID")
got=$(wait_for_count acl2-count "$N" 90) || fail "worker counted $got of $N before the change"
rcli ACL SETUSER alice resetpass ">$WRONG" >/dev/null
rcli CLIENT KILL USER alice >/dev/null
t0=$(date +%s)
gen_events 50 5 8 | "$REEL" produce --topic viewing-events $(kopts) 2>>"$WORK/produce.err" || fail "produce failed"
rc=0
for _ in $(seq 1 60); do kill -0 "$ROT_PID" 2>/dev/null || break; sleep 0.5; done
kill -0 "$ROT_PID" 2>/dev/null && fail "the worker still runs 30 s after its password changed"
wait "$ROT_PID" || rc=$?
[ "$rc" = 1 ] || fail "worker exited $rc after its password changed, want 1"
has '"event":"redis_auth_failed"' "$WORK/worker_rotate.log" || fail "no redis_auth_failed log line"
no_secrets "$WORK/worker_rotate.log"
log "password changed under a running worker: stopped in $(($(date +%s) - t0)) s with status 1"
rcli ACL SETUSER alice resetpass ">$APW" >/dev/null

# ---- (b) kafka.* reaches librdkafka ----
refused kafka_protocol 'kafka.security.protocol: Invalid value \"bogus\" for configuration property \"security.protocol\"' \
    -X redis.url="$URL_PW" -X kafka.security.protocol=bogus
refused kafka_consumer_only 'kafka.consumer.security.protocol: Invalid value' \
    -X redis.url="$URL_PW" -X kafka.consumer.security.protocol=bogus
refused kafka_mechanism 'Unsupported SASL mechanism: NOPE' -X redis.url="$URL_PW" \
    -X kafka.security.protocol=sasl_ssl -X kafka.sasl.mechanism=NOPE \
    -X kafka.sasl.username=reel -X kafka.sasl.password="$SASL_PW"
refused kafka_ca 'ssl.ca.location failed' -X redis.url="$URL_PW" \
    -X kafka.security.protocol=ssl -X kafka.ssl.ca.location="$WORK/no-such-ca.pem"
# A client key encrypted with KEY_PW: the wrong password is librdkafka's error.
openssl genrsa -aes256 -passout "pass:$KEY_PW" -out "$WORK/client.key" 2048 2>/dev/null ||
    fail "openssl genrsa failed"
openssl req -x509 -new -key "$WORK/client.key" -passin "pass:$KEY_PW" -subj /CN=reel -days 1 \
    -out "$WORK/client.pem" 2>/dev/null || fail "openssl req failed"
refused kafka_key_password 'ssl.key.location failed' -X redis.url="$URL_PW" \
    -X kafka.security.protocol=ssl -X kafka.ssl.key.location="$WORK/client.key" \
    -X kafka.ssl.certificate.location="$WORK/client.pem" -X kafka.ssl.key.password="$WRONG"
# With the right key password librdkafka loads the key and goes on to
# connect (the mock cluster speaks no TLS: it keeps retrying, as it would
# for a broker that is down); SASL PLAIN is attempted against the broker.
for mode in ssl sasl; do
    if [ $mode = ssl ]; then
        extra=(-X kafka.security.protocol=ssl -X kafka.ssl.key.location="$WORK/client.key"
            -X kafka.ssl.certificate.location="$WORK/client.pem" -X kafka.ssl.key.password="$KEY_PW")
    else
        extra=(-X kafka.security.protocol=sasl_plaintext -X kafka.sasl.mechanisms=PLAIN
            -X kafka.sasl.username=reel -X kafka.sasl.password="$SASL_PW")
    fi
    "$REEL" run count -X kafka.bootstrap.servers="$BOOTSTRAP" -X redis.url="$URL_PW" -X metrics.port=-1 \
        -X group.id=$mode -X kafka.debug=all -X log.level=debug "${extra[@]}" 2>"$WORK/kafka_$mode.log" &
    pid=$!
    BG_PIDS+=("$pid")
    sleep 4
    kill -0 "$pid" 2>/dev/null || fail "$mode: the worker exited with a right key password"
    kill -TERM "$pid"
    wait "$pid" || true
    no_secrets "$WORK/kafka_$mode.log"
done
has -F 'SASL Handshake not supported by broker (required by mechanism PLAIN)' "$WORK/kafka_sasl.log" ||
    fail "librdkafka did not attempt SASL PLAIN"
has -E 'SSL handshake failed|SSL_read|ssl://' "$WORK/kafka_ssl.log" || fail "librdkafka did not attempt TLS"
log "PASS: Redis password and ACL user served exactly; 5 kinds of refused credentials and 5 bad kafka settings exit 1 at once; no secret in logs or metrics"
