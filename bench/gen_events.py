#!/usr/bin/env python3
"""gen_events.py N USERS [SEED] [TARGET_BYTES] [COUNTS_FILE]

Writes N ViewingEvent JSON lines (for `reel produce --topic viewing-events`)
over USERS user ids. The `device` string is padded so that each record's
Confluent-framed Avro encoding (5-byte header + Avro binary) is
TARGET_BYTES long (default 200); the exact size of every record is computed
here with the same encoding rules and checked by bench/runtime against the
records read back with kcat. COUNTS_FILE, when given, receives the expected
"user_id count" lines (sorted) for checking the count worker key by key.
Standard library only.
"""
import random
import sys


def zigzag_len(v):
    """Bytes of an Avro long (zigzag varint)."""
    u = (v << 1) ^ (v >> 63)
    n = 1
    while u >= 0x80:
        u >>= 7
        n += 1
    return n


def str_len(s):
    b = len(s.encode())
    return zigzag_len(b) + b


def avro_size(ev):
    # Confluent header, then the fields in schema order.
    n = 5
    n += str_len(ev["event_id"]) + str_len(ev["user_id"]) + str_len(ev["item_id"])
    n += 1  # enum index < 64
    n += zigzag_len(ev["ts"])
    n += 8  # watch_seconds double
    n += 1 + 8  # duration_seconds: union index + double
    n += 1 + 4  # rating: union index + float
    n += 1 + str_len(ev["device"])  # device: union index + string
    return n


TYPES = ["view", "play", "progress", "complete", "rating", "like", "dislike"]
DEVICE = ("Mozilla/5.0 (SMART-TV; Linux; Tizen 6.5) AppleWebKit/537.36 (KHTML, like Gecko) "
          "SamsungBrowser/4.0 Chrome/85.0.4183.93 TV Safari/537.36 reel-bench-padding-"
          "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")


def main():
    n = int(sys.argv[1])
    users = int(sys.argv[2])
    rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
    target = int(sys.argv[4]) if len(sys.argv) > 4 else 200
    counts_file = sys.argv[5] if len(sys.argv) > 5 else None
    counts = {}
    out = sys.stdout
    buf = []
    total = 0
    for i in range(n):
        ev = {
            "event_id": "%08x-%04x-4%03x-8%03x-%012x" % (
                i, rng.getrandbits(16), rng.getrandbits(12), rng.getrandbits(12),
                rng.getrandbits(48)),
            "user_id": "u%06d" % rng.randrange(users),
            "item_id": "i%05d" % rng.randrange(20000),
            "type": TYPES[i % 7],
            "ts": 1700000000000 + i,
            "watch_seconds": float(i % 300),
            "duration_seconds": 1800.0,
            "rating": 4.5,
            "device": "",
        }
        base = avro_size(ev)
        pad = target - base
        # The length prefix grows by a byte at 64 chars; adjust once.
        dev = DEVICE[:max(pad - 1, 0)]
        ev["device"] = dev
        if avro_size(ev) > target and dev:
            ev["device"] = dev[:-1]
        size = avro_size(ev)
        total += size
        counts[ev["user_id"]] = counts.get(ev["user_id"], 0) + 1
        buf.append(
            '{"event_id":"%s","user_id":"%s","item_id":"%s","type":"%s","ts":%d,'
            '"watch_seconds":%.1f,"duration_seconds":%.1f,"rating":%.1f,"device":"%s"}\n'
            % (ev["event_id"], ev["user_id"], ev["item_id"], ev["type"], ev["ts"],
               ev["watch_seconds"], ev["duration_seconds"], ev["rating"], ev["device"]))
        if len(buf) >= 10000:
            out.write("".join(buf))
            buf = []
    out.write("".join(buf))
    out.flush()
    if counts_file:
        with open(counts_file, "w") as f:
            for k in sorted(counts):
                f.write("%s %d\n" % (k, counts[k]))
    sys.stderr.write("gen_events: %d records, %.1f bytes each on average (Avro, framed)\n"
                     % (n, total / max(n, 1)))


if __name__ == "__main__":
    main()
