#!/usr/bin/env python3
"""gen_events.py N USERS [SEED] [TARGET_BYTES] [COUNTS_FILE] [PARTITIONS]

Writes N ViewingEvent JSON lines (for `reel produce --topic viewing-events`)
over USERS user ids. The `device` string is padded so that each record's
Confluent-framed Avro encoding (5-byte header + Avro binary) is
TARGET_BYTES long (default 200): every field is fixed-width, so the size is
computed once here with Avro's encoding rules, and bench/runtime checks it
on every record it reads back with kcat. COUNTS_FILE, when given, receives the expected
"user_id count" lines (sorted) for checking the count worker key by key.
PARTITIONS, when given and above 0, writes the records grouped by the
partition librdkafka's default partitioner (consistent_random: CRC-32 of the
key modulo the partition count) will put them in, each partition's records
in their original order; the producer then writes large message sets, and a
consumer reading the backlog gets long runs of one partition, as it would
from a real broker (the mock cluster answers a fetch with one message set
per partition). Standard library only.
"""
import random
import sys
import zlib


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
    counts_file = sys.argv[5] if len(sys.argv) > 5 and sys.argv[5] != "-" else None
    partitions = int(sys.argv[6]) if len(sys.argv) > 6 else 0
    if not 0 < users <= 1000000 or not 0 <= n < 1 << 32:
        sys.exit("gen_events: USERS must be 1..1000000 and N below 2^32")
    # Every field is fixed-width (ids zero-padded, ts within one varint
    # length), so one padding fits all records.
    proto = {"event_id": "0" * 36, "user_id": "u%06d" % 0, "item_id": "i%05d" % 0,
             "ts": 1700000000000, "device": ""}
    pad = target - avro_size(proto)
    proto["device"] = DEVICE[:max(pad - 1, 0)]
    if avro_size(proto) > target and proto["device"]:
        proto["device"] = proto["device"][:-1]
    size = avro_size(proto)
    if avro_size(dict(proto, ts=1700000000000 + n)) != size:
        sys.exit("gen_events: ts range changes the record size")
    tail = ',"duration_seconds":1800.0,"rating":4.5,"device":"%s"}\n' % proto["device"]
    counts = [0] * users
    out = sys.stdout
    buf = []
    getrandbits, randrange = rng.getrandbits, rng.randrange
    if partitions > 0:
        part_of = [zlib.crc32(b"u%06d" % u) % partitions for u in range(users)]
        groups = [[] for _ in range(partitions)]
    for i in range(n):
        r = getrandbits(88)
        u = randrange(users)
        counts[u] += 1
        if partitions > 0:
            buf = groups[part_of[u]]
        buf.append(
            '{"event_id":"%08x-%04x-4%03x-8%03x-%012x","user_id":"u%06d","item_id":"i%05d",'
            '"type":"%s","ts":%d,"watch_seconds":%d.0'
            % (i, r & 0xFFFF, (r >> 16) & 0xFFF, (r >> 28) & 0xFFF, r >> 40, u,
               randrange(20000), TYPES[i % 7], 1700000000000 + i, i % 300))
        buf.append(tail)
        if partitions <= 0 and len(buf) >= 20000:
            out.write("".join(buf))
            buf = []
    if partitions > 0:
        for g in groups:
            out.write("".join(g))
    else:
        out.write("".join(buf))
    out.flush()
    if counts_file:
        with open(counts_file, "w") as f:
            for u in range(users):
                if counts[u]:
                    f.write("u%06d %d\n" % (u, counts[u]))
    sys.stderr.write("gen_events: %d records, %d bytes each (Avro, framed)\n" % (n, size))


if __name__ == "__main__":
    main()
