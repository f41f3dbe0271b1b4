#!/usr/bin/env python3
"""Helpers of the fault suite (tests/fault_suite.sh).

  fault_tool.py feed WORKER DIR N SEED CHUNKS
      Writes the input stream of one worker as CHUNKS chunk files:
      DIR/chunk.K.jsonl (valid records and schema-valid but semantically bad
      ones, shuffled; for `reel produce`) and DIR/chunk.K.b64 (undecodable
      bytes; for `reel produce --raw-base64`), K = 0..CHUNKS-1, plus
      DIR/items.jsonl for recommend (its catalogue). Prints
      "<records> <poison>": how many records the chunks hold and how many of
      them are poison. Payloads are tiny (32x32 PNG posters, 60 ms clips,
      short reviews) so that 20k of them stay cheap; deterministic per SEED.

  fault_tool.py dump SOCKET GROUP OUT
      Writes a canonical dump of every key "reel:{GROUP}:*" in the Redis at
      unix SOCKET: one line per entry (a string, a hash field, a set or zset
      member, a list element), the group replaced by "G", bytes escaped,
      sorted. Keys that are by design not state are left out (see EXCLUDE).

  fault_tool.py compare CLEAN FAULTY
      Compares two dumps; prints "entries=E lost=L duplicated=D differing=X"
      and exits 1 unless they are equal. An integer entry lower in FAULTY
      counts its difference as lost updates, higher as duplicated ones; an
      entry only in CLEAN is lost (its value, if an integer count, else 1),
      only in FAULTY duplicated (likewise); decimal floats within 1e-9
      (relative) count as float_rounding and pass (see close_floats); two
      neighbour lists (recommend's itop/utop) that differ only at their
      tail count as topk_tail and pass (see close_topk); any other
      difference counts as differing.

  fault_tool.py check MODE RAW_INPUTS FAULT_DLQ ALL_DLQ FAULT_OUT ALL_OUT NPOISON
      Checks outputs and dead letters of the faulty run against the inputs
      (RAW_INPUTS: `kcat -f '%t %p %o %S\\n%s\\n'` of every input topic) and
      the clean run (ALL_*: everything after both runs; the clean run's part
      is what is not in FAULT_*), `reel consume` JSON lines. MODE "record":
      one output per valid input record (its source); "key": every key that
      has an output in the clean run has one in the faulty run.
      Prints "records=R poison=P dlq=D outputs=O missing_outputs=M" and exits
      1 on any failure, saying which.
"""
import base64
import json
import os
import random
import re
import socket
import struct
import sys
import zlib

# ---- feeders ----

SCHEMA_IDS = {"viewing-events": 1001, "items": 1002, "posters": 1003, "audio-clips": 1004,
              "reviews": 1005}
T0 = 1700000000000


def raw_poison(rng, schema_id, i):
    """Undecodable bytes, unique per i (so they can be told apart)."""
    tag = b"poison-%d" % i
    kind = i % 5
    if kind == 0:  # a string length prefix of ~2 GB
        return b"\x00" + struct.pack(">I", schema_id) + b"\xfe\xff\xff\xff\x0f" + tag
    if kind == 1:  # wrong magic byte
        return b"\x07" + struct.pack(">I", schema_id) + tag
    if kind == 2:  # unknown schema id
        return b"\x00" + struct.pack(">I", 9999) + tag
    if kind == 3:  # JSON text
        return b'{"poison":%d}' % i
    # the header alone, then a truncated string
    return b"\x00" + struct.pack(">I", schema_id) + b"\x7f" + tag


def png(w, h, pixels):
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    rows = b"".join(b"\x00" + bytes(pixels[y * w:(y + 1) * w]) for y in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))


def poster_png(i):
    """A 32x32 grey image: a bright rectangle whose place and size vary."""
    x0, y0 = i % 13, (i // 13) % 11
    w, h = 6 + i % 15, 8 + (i // 7) % 13
    px = [20] * (32 * 32)
    for y in range(y0, min(32, y0 + h)):
        for x in range(x0, min(32, x0 + w)):
            px[y * 32 + x] = 230 - (i % 50)
    return png(32, 32, px)


def wav(samples, rate=8000):
    """8-bit unsigned mono WAV."""
    data = bytes(samples)
    return (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " +
            struct.pack("<IHHIIHH", 16, 1, 1, rate, rate, 1, 8) + b"data" +
            struct.pack("<I", len(data)) + data)


_TONES = {}


def clip_wav(i):
    """60 ms of a tone at a frequency that varies with i, plus a little noise."""
    import math
    f = 200 + 37 * (i % 50)
    if f not in _TONES:
        _TONES[f] = [int(128 + 90 * math.sin(2 * math.pi * f * t / 8000)) for t in range(480)]
    noise = random.Random(i).randbytes(480)
    return wav([max(0, min(255, a + n % 17 - 8)) for a, n in zip(_TONES[f], noise)])


def b64(b):
    return base64.b64encode(b).decode()


def feed(worker, out, n, seed, chunks):
    rng = random.Random(seed)
    here = os.path.dirname(os.path.abspath(__file__))
    good, bad = [], []
    topic = {"count": "viewing-events", "recommend": "viewing-events", "tag": "posters",
             "transcribe": "audio-clips", "sentiment": "reviews"}[worker]
    n_bad = n // 100  # 1% semantically bad, 1% undecodable
    n_good = n - 2 * n_bad
    if worker in ("count", "recommend"):
        types = ["view", "play", "progress", "complete", "rating", "like"]
        for i in range(n_good):
            t = types[rng.randrange(len(types))]
            ev = {"event_id": "e%d" % i, "user_id": "u%d" % rng.randrange(400),
                  "item_id": "i%d" % rng.randrange(40), "type": t, "ts": T0 + i * 1000,
                  "watch_seconds": rng.randrange(100), "duration_seconds": 100.0,
                  "device": "tv"}
            if t == "rating":
                ev["rating"] = 0.5 + rng.randrange(10) / 2
            good.append(ev)
        for i in range(n_bad):
            if worker == "count":  # no key to count by
                bad.append({"event_id": "b%d" % i, "user_id": "", "item_id": "i1", "type": "play",
                            "ts": T0})
            else:
                bad.append([{"event_id": "b%d" % i, "user_id": "", "item_id": "i1",
                             "type": "play", "ts": T0},
                            {"event_id": "b%d" % i, "user_id": "u%d" % (i % 400), "item_id": "i1",
                             "type": "rating", "ts": T0, "rating": 9.0},
                            {"event_id": "b%d" % i, "user_id": "u%d" % (i % 400), "item_id": "i1",
                             "type": "play", "ts": 4102444800000}][i % 3])
        if worker == "recommend":
            with open(os.path.join(out, "items.jsonl"), "w") as f:
                genres = "Action Comedy Drama Horror Romance Sci-Fi Thriller Western".split()
                for i in range(40):
                    f.write(json.dumps({"item_id": "i%d" % i, "title": "Item %d" % i,
                                        "genres": [genres[i % 8], genres[i * 3 % 8]], "tags": [],
                                        "year": 1950 + i, "ts": T0}) + "\n")
    elif worker == "tag":
        for i in range(n_good):
            good.append({"item_id": "it%d" % (i % 5000), "poster_id": "p%d" % i,
                         "content_type": "image/png", "image": b64(poster_png(i)), "ts": T0 + i})
        for i in range(n_bad):
            img, ct = [(poster_png(i)[:40], "image/png"), (b"not an image %d" % i, "image/png"),
                       (poster_png(i), "text/plain")][i % 3]
            bad.append({"item_id": "bad%d" % i, "poster_id": "bad%d" % i, "content_type": ct,
                        "image": b64(img), "ts": T0})
    elif worker == "transcribe":
        for i in range(n_good):
            good.append({"clip_id": "c%d" % i, "item_id": "it%d" % (i % 100),
                         "content_type": "audio/wav", "audio": b64(clip_wav(i)), "ts": T0 + i})
        for i in range(n_bad):
            audio = [b"this is not audio %d" % i, wav([]), wav([128, 129] * 50, rate=1)][i % 3]
            bad.append({"clip_id": "bad%d" % i, "item_id": None, "content_type": "audio/wav",
                        "audio": b64(audio), "ts": T0})
    elif worker == "sentiment":
        sents = []
        with open(os.path.join(here, "..", "examples", "reviews-sample", "reviews.tsv"),
                  "rb") as f:
            for line in f.read().split(b"\n"):
                if b"\t" in line:
                    words = line.decode("latin-1").split("\t", 1)[1].split()
                    sents.append(" ".join(words[:10]))
        for i in range(n_good):
            good.append({"review_id": "r%d" % i, "item_id": "i%d" % rng.randrange(300),
                         "user_id": "u%d" % (i % 1000), "text": sents[rng.randrange(len(sents))],
                         "rating": None, "ts": T0 + i})
        for i in range(n_bad):
            r = {"review_id": "bad%d" % i, "item_id": "i%d" % (i % 300), "user_id": "u",
                 "text": "a fine film", "rating": None, "ts": T0}
            if i % 3 == 0:
                r["text"] = ""
            elif i % 3 == 1:
                r["text"] = "   \t  \" ' "
            else:
                r["item_id"] = ""
            bad.append(r)
    else:
        sys.exit("unknown worker " + worker)
    # Semantically bad records at random places among the valid ones (which
    # keep their order); undecodable ones after each chunk's records.
    recs = list(good)
    for b in bad:
        recs.insert(rng.randrange(len(recs) + 1), b)
    sid = SCHEMA_IDS[topic]
    raws = [raw_poison(rng, sid, i) for i in range(n_bad)]
    for k in range(chunks):
        part = recs[k * len(recs) // chunks:(k + 1) * len(recs) // chunks]
        with open(os.path.join(out, "chunk.%d.jsonl" % k), "w") as f:
            for r in part:
                f.write(json.dumps(r) + "\n")
        with open(os.path.join(out, "chunk.%d.b64" % k), "w") as f:
            for r in raws[k * len(raws) // chunks:(k + 1) * len(raws) // chunks]:
                f.write(b64(r) + "\n")
    print(len(recs) + len(raws), len(bad) + len(raws))


# ---- a minimal Redis client (RESP over a unix socket) ----

class Redis:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(path)
        self.f = self.s.makefile("rb")

    def send(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.s.sendall(b"".join(out))

    def read(self):
        line = self.f.readline()
        if not line:
            raise IOError("connection closed")
        t, rest = line[:1], line[1:-2]
        if t == b"+":
            return rest
        if t == b"-":
            raise IOError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            d = self.f.read(n + 2)
            return d[:-2]
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise IOError("bad reply " + repr(line))

    def cmd(self, *args):
        self.send(*args)
        return self.read()

    def pipeline(self, cmds):
        for c in cmds:
            self.send(*c)
        return [self.read() for _ in cmds]


def esc(b):
    if isinstance(b, int):
        return str(b)
    return "".join(chr(c) if 0x21 <= c < 0x7F and c != 0x5C else "\\x%02x" % c for c in b)


# Keys that are by design not state: none of the workers writes metrics or
# heartbeats to Redis today (metrics are served over HTTP), so the list is
# empty; a key added for liveness or statistics (which a crash may leave
# different without any state being wrong) belongs here, with its reason.
EXCLUDE = []
# A worker file may exclude more (FAULT_EXCLUDE, regexes joined by ","),
# when it compares those keys another way: the recommend worker's memory
# mode logs batches, whose cuts differ between two runs, and compares the
# state the log rebuilds instead (fault_state in the suite).
EXCLUDE += [p for p in os.environ.get("FAULT_EXCLUDE", "").split(",") if p]


def dump(sock, group, out):
    r = Redis(sock)
    prefix = "reel:{%s}:" % group
    keys, cursor = [], b"0"
    while True:
        cursor, batch = r.cmd("SCAN", cursor, "MATCH", prefix.replace("{", "\\{").replace(
            "}", "\\}").replace("[", "\\[") + "*", "COUNT", 1000)
        keys += batch
        if cursor == b"0":
            break
    keys = sorted(set(keys))
    types = r.pipeline([("TYPE", k) for k in keys])
    fetch = {b"string": ("GET",), b"hash": ("HGETALL",), b"set": ("SMEMBERS",),
             b"zset": ("ZRANGE", 0, -1, "WITHSCORES"), b"list": ("LRANGE", 0, -1)}
    lines = []
    kept = [(k, t) for k, t in zip(keys, types)
            if not any(re.search(p, k.decode("latin-1")) for p in EXCLUDE)]
    for i in range(0, len(kept), 200):
        part = kept[i:i + 200]
        vals = r.pipeline([fetch[t][:1] + (k,) + fetch[t][1:] for k, t in part])
        for (k, t), v in zip(part, vals):
            name = "reel:{G}:" + esc(k[len(prefix):])
            if t == b"string":
                lines.append("%s string\t%s" % (name, esc(v)))
            elif t in (b"hash", b"zset"):
                for j in range(0, len(v), 2):
                    lines.append("%s %s %s\t%s" % (name, t.decode(), esc(v[j]), esc(v[j + 1])))
            elif t == b"set":
                lines += ["%s set %s\t1" % (name, esc(m)) for m in v]
            elif t == b"list":
                lines += ["%s list [%d]\t%s" % (name, j, esc(m)) for j, m in enumerate(v)]
    lines.sort()
    with open(out, "w") as f:
        f.write("".join(l + "\n" for l in lines))
    print(len(keys), len(lines))


def entries(path):
    d = {}
    for line in open(path):
        k, _, v = line.rstrip("\n").partition("\t")
        d[k] = v
    return d


def compare(clean, faulty):
    a, b = entries(clean), entries(faulty)
    lost = dup = diff = rounding = tail = 0
    shown = 0
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if va == vb:
            continue
        if va is not None and vb is not None and close_floats(va, vb):
            rounding += 1
            continue
        if va is not None and vb is not None and TOPK_KEY.search(k) and close_topk(va, vb):
            tail += 1
            continue
        if shown < 10:
            print("  %s: clean %s, faulty %s" % (k, va, vb), file=sys.stderr)
            shown += 1
        if vb is None:
            lost += int(va) if re.fullmatch(r"\d+", va) else 1
        elif va is None:
            dup += int(vb) if re.fullmatch(r"\d+", vb) else 1
        elif re.fullmatch(r"-?\d+", va) and re.fullmatch(r"-?\d+", vb):
            d = int(vb) - int(va)
            if d < 0:
                lost -= d
            else:
                dup += d
        else:
            diff += 1
    print("entries=%d lost=%d duplicated=%d differing=%d float_rounding=%d topk_tail=%d" %
          (len(a), lost, dup, diff, rounding, tail))
    return 0 if lost == dup == diff == 0 else 1


def unesc(s):
    """The bytes esc() escaped."""
    out, i = bytearray(), 0
    while i < len(s):
        if s[i] == "\\" and s[i + 1:i + 2] == "x":
            out.append(int(s[i + 2:i + 4], 16))
            i += 4
        else:
            out.append(ord(s[i]))
            i += 1
    return bytes(out)


TOPK_KEY = re.compile(r":(utop|itop):\d+ string$")
# recommend.refresh.ratio's default: how stale a list member's score may be.
TOPK_TAIL = 0.05


def close_topk(va, vb):
    """Two neighbour lists (id uint32 + score float32 per entry) that agree
    on every common member and differ only in members scored within
    TOPK_TAIL of the other list's lowest score. The lists are re-scored
    when a norm moves by more than refresh.ratio (rec.c norm_moved), and a
    norm summed in other batches rounds differently (close_floats): near a
    bucket boundary one run re-scores a list and the other does not, and
    which near-tied members sit at the tail differs. The counters the lists
    are computed from are compared exactly; a lost or repeated update shows
    there."""
    x, y = unesc(va), unesc(vb)
    if len(x) % 8 or len(y) % 8 or not x or not y:
        return False
    la = dict(struct.unpack("<If", x[i:i + 8]) for i in range(0, len(x), 8))
    lb = dict(struct.unpack("<If", y[i:i + 8]) for i in range(0, len(y), 8))
    for m in set(la) & set(lb):
        if abs(la[m] - lb[m]) > 1e-6 * max(abs(la[m]), abs(lb[m])):
            return False
    lo_a, lo_b = min(la.values()), min(lb.values())
    only_a = [la[m] for m in set(la) - set(lb)]
    only_b = [lb[m] for m in set(lb) - set(la)]
    return (all(v <= lo_b + TOPK_TAIL * abs(lo_b) for v in only_a) and
            all(v <= lo_a + TOPK_TAIL * abs(lo_a) for v in only_b))


FLOAT = re.compile(r"-?(\d+\.\d*|\d*\.\d+|\d+)([eE][-+]?\d+)?")


def close_floats(va, vb):
    """Two decimal floats (not both integers) within 1e-9 of each other,
    relatively. A worker that sums a batch's deltas per key before one
    HINCRBYFLOAT (recommend) rounds differently when batches are cut
    differently (a kill, a retry, timing): a + (b + c) is not (a + b) + c in
    floating point, and Redis keeps 17 digits. Two clean passes differ the
    same way. One lost or repeated update is many orders of magnitude
    larger than this bound."""
    if not (FLOAT.fullmatch(va) and FLOAT.fullmatch(vb)):
        return False
    if re.fullmatch(r"-?\d+", va) and re.fullmatch(r"-?\d+", vb):
        return False
    x, y = float(va), float(vb)
    return abs(x - y) <= 1e-9 * max(abs(x), abs(y), 1e-300)


# ---- outputs and dead letters ----

def read_raw(path):
    """(topic, partition, offset) -> value bytes from kcat's '%t %p %o %S\\n%s\\n'."""
    recs = {}
    with open(path, "rb") as f:
        data = f.read()
    i = 0
    while i < len(data):
        nl = data.index(b"\n", i)
        t, p, o, s = data[i:nl].split(b" ")
        s = int(s)
        i = nl + 1
        v = data[i:i + max(s, 0)]
        i += max(s, 0) + 1
        recs[(t.decode(), int(p), int(o))] = v
    return recs


def read_json(path):
    out = []
    for line in open(path):
        if line.strip():
            out.append(json.loads(line))
    return out


def check(mode, raw_inputs, fault_dlq, all_dlq, fault_out, all_out, npoison):
    inputs = read_raw(raw_inputs)
    fd, ad = read_json(fault_dlq), read_json(all_dlq)
    fo, ao = read_json(fault_out), read_json(all_out)
    fd_pos = {(d["partition"], d["offset"]) for d in fd}
    fo_pos = {(o["partition"], o["offset"]) for o in fo}
    cd = [d for d in ad if (d["partition"], d["offset"]) not in fd_pos]
    co = [o for o in ao if (o["partition"], o["offset"]) not in fo_pos]
    errors = []

    def src(d):
        h = d["headers"]
        return (h["reel.source.topic"], int(h["reel.source.partition"]),
                int(h["reel.source.offset"]))
    dead = {}
    for d in fd:
        s = src(d)
        v = base64.b64decode(d.get("value_base64") or "")
        if s not in inputs:
            errors.append("DLQ record of unknown source %s" % (s,))
        elif inputs[s] != v:
            errors.append("DLQ record of %s does not carry the original bytes" % (s,))
        dead[s] = d["headers"].get("reel.error.reason")
    clean_dead = {src(d) for d in cd}
    if len(dead) != npoison:
        errors.append("%d distinct records dead-lettered, %d poison records sent" %
                      (len(dead), npoison))
    if set(dead) != clean_dead:
        only_f = sorted(set(dead) - clean_dead)[:5]
        only_c = sorted(clean_dead - set(dead))[:5]
        errors.append("dead letters differ from the clean run's: only faulty %s (%s), only "
                      "clean %s" % (only_f, [dead[s] for s in only_f], only_c))
    valid = set(inputs) - set(dead)
    if mode == "record":
        seen = {(o["value"]["source"]["topic"], o["value"]["source"]["partition"],
                 o["value"]["source"]["offset"]) for o in fo}
        missing = valid - seen
        extra = seen - valid
        if extra:
            errors.append("%d outputs for inputs that are not valid, e.g. %s" %
                          (len(extra), sorted(extra)[:3]))
    else:
        seen = {o["key"] for o in fo}
        want = {o["key"] for o in co}
        missing = want - seen
    if missing:
        errors.append("%d valid inputs without an output, e.g. %s" %
                      (len(missing), sorted(missing)[:3]))
    print("records=%d poison=%d dlq=%d outputs=%d (%d distinct) missing_outputs=%d" %
          (len(inputs), npoison, len(dead), len(fo), len(seen), len(missing)))
    for e in errors:
        print("FAIL: " + e, file=sys.stderr)
    return 1 if errors else 0


def main():
    a = sys.argv[1:]
    if a and a[0] == "feed" and len(a) == 6:
        feed(a[1], a[2], int(a[3]), int(a[4]), int(a[5]))
    elif a and a[0] == "dump" and len(a) == 4:
        dump(a[1], a[2], a[3])
    elif a and a[0] == "compare" and len(a) == 3:
        sys.exit(compare(a[1], a[2]))
    elif a and a[0] == "check" and len(a) == 8:
        sys.exit(check(a[1], a[2], a[3], a[4], a[5], a[6], int(a[7])))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
