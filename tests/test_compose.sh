#!/bin/bash
# docker-compose.yml against the code (Docker cannot run here): every topic
# of schemas/schemas.tsv and its .dlq is created; every worker the binary
# knows runs as a service with `reel run <worker>`, its own metrics port
# published and health-checked with `reel health` on that port, a models
# volume, and configuration the binary accepts (REEL_* variables and -X keys
# that `reel config` lists, or kafka.* pass-through); Kafka is the official
# apache/kafka image in KRaft mode with a healthcheck; Redis is redis:7 with
# AOF and a healthcheck; the Dockerfile is a multi-stage Debian 12 build.
source "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
"$PY" -c 'import yaml' 2>/dev/null || fail "python3-yaml is missing (scripts/install-deps.sh installs it)"

"$REEL" --help >"$WORK/help.txt" 2>&1 || true
sed -n '/^workers:/,/^$/p' "$WORK/help.txt" | awk 'NF > 1 {print $1}' | grep -v '^workers:' >"$WORK/workers.txt"
[ -s "$WORK/workers.txt" ] || fail "no workers listed by reel --help"
"$REEL" config | sed -n 's/^\([a-z][a-z0-9._-]*\) (default:.*/\1/p' >"$WORK/keys.txt"
[ -s "$WORK/keys.txt" ] || fail "reel config listed no keys"

"$PY" - "$REEL_SOURCE_DIR" "$WORK/workers.txt" "$WORK/keys.txt" >"$WORK/compose.out" 2>&1 <<'PY' ||
import re, sys, yaml
src, workers_file, keys_file = sys.argv[1:4]
workers = {l.strip() for l in open(workers_file) if l.strip()}
keys = {l.strip() for l in open(keys_file) if l.strip()}
compose = yaml.safe_load(open(f"{src}/docker-compose.yml"))
services = compose["services"]
errors = []
def err(msg):
    errors.append(msg)

# Topics: every topic of schemas.tsv and its dead-letter topic.
topics = set()
for line in open(f"{src}/schemas/schemas.tsv"):
    f = line.rstrip("\n").split("\t")
    if len(f) >= 3 and f[0].isdigit() and f[2] not in ("", "-"):
        topics.add(f[2])
init = " ".join(str(x) for x in (services.get("topics", {}).get("command") or []))
m = re.search(r"for t in ([^;]*);", init)
created = set(m.group(1).split()) if m else set()
for t in sorted(topics - created):
    err(f"topic {t} is not created by the topics service")
if "$$t.dlq" not in init:
    err("the topics service does not create the .dlq topics")

# Kafka and Redis.
kafka = services.get("kafka", {})
if not str(kafka.get("image", "")).startswith("apache/kafka"):
    err("kafka is not the official apache/kafka image")
if "controller" not in str(kafka.get("environment", {}).get("KAFKA_PROCESS_ROLES", "")):
    err("kafka is not in KRaft mode (KAFKA_PROCESS_ROLES)")
redis = services.get("redis", {})
if not str(redis.get("image", "")).startswith("redis:7"):
    err("redis is not redis:7")
if "appendonly" not in " ".join(redis.get("command", [])) or "yes" not in redis.get("command", []):
    err("redis runs without AOF")
for name in ("kafka", "redis"):
    if "healthcheck" not in services.get(name, {}):
        err(f"{name} has no healthcheck")

# Workers.
run_services = {}
for name, svc in services.items():
    cmd = svc.get("command") or []
    if isinstance(cmd, list) and len(cmd) >= 2 and cmd[0] == "run":
        run_services[name] = svc
for w in sorted(workers):
    if not any(s["command"][1] == w for s in run_services.values()):
        err(f"worker {w} has no service")
ports = set()
for name, svc in run_services.items():
    cmd = svc["command"]
    if cmd[1] not in workers:
        err(f"service {name} runs unknown worker {cmd[1]}")
    xs = [cmd[i + 1] for i, a in enumerate(cmd) if a == "-X" and i + 1 < len(cmd)]
    port = None
    for kv in xs:
        k, _, v = kv.partition("=")
        if k not in keys and not k.startswith("kafka."):
            err(f"service {name}: -X {k} is not a configuration key")
        if k == "metrics.port":
            port = v
    if not port:
        err(f"service {name} sets no metrics.port")
        continue
    if port in ports:
        err(f"service {name}: metrics port {port} used twice")
    ports.add(port)
    if f"{port}:{port}" not in [str(p) for p in svc.get("ports", [])]:
        err(f"service {name}: metrics port {port} is not published")
    hc = svc.get("healthcheck", {}).get("test", [])
    if hc[1:4] != ["reel", "health", "--port"] or hc[4] != port:
        err(f"service {name}: healthcheck is not `reel health --port {port}`")
    for var in (svc.get("environment") or {}):
        if not var.startswith("REEL_"):
            err(f"service {name}: variable {var} is not a REEL_* setting")
            continue
        key = var[5:].lower().replace("__", "\0").replace("_", ".").replace("\0", "_")
        if key not in keys and not key.startswith("kafka."):
            err(f"service {name}: {var} maps to unknown key {key}")
    if not any(str(v).startswith("models:") for v in svc.get("volumes", [])):
        err(f"service {name} has no models volume")
    if svc.get("build") not in (".", {"context": "."}):
        err(f"service {name} is not built from the Dockerfile")
if "models" not in (compose.get("volumes") or {}):
    err("no models volume declared")

dockerfile = open(f"{src}/Dockerfile").read()
froms = re.findall(r"^FROM\s+(\S+)", dockerfile, re.M)
if len(froms) < 2 or not all(f.startswith("debian:12") for f in froms):
    err(f"Dockerfile is not a multi-stage Debian 12 build: {froms}")
if "install-deps.sh" not in dockerfile:
    err("Dockerfile does not install the build dependencies with scripts/install-deps.sh")

for e in errors:
    print("compose:", e)
print(f"checked {len(run_services)} worker services, {len(topics)} topics, {len(ports)} ports")
sys.exit(1 if errors else 0)
PY
    fail "docker-compose.yml disagrees with the code: $(cat "$WORK/compose.out")"
cat "$WORK/compose.out"
log "PASS: docker-compose.yml matches the binary's workers, topics and keys"
