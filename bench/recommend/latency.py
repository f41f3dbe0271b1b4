#!/usr/bin/python3
"""latency.py EVENTS.jsonl RECS.jsonl FIRST_OFFSETS.json

Joins `reel consume` output of viewing-events and recommendations and prints
the latency of every event at or after FIRST_OFFSETS (the paced part of the
run: {"partition": first offset}): from its produce (its Kafka CreateTime)
to the arrival at a reader of the first recommendation that took it into
account (the reader's `received`, from `reel consume --receive-time`; the
recommendation's CreateTime where RECS has none).

The worker publishes one record per user per batch, whose source is that
user's last event in the batch. So the recommendation that covers an event
is its user's first one whose source, in the event's partition (events are
keyed by user), is at or after the event's offset.

Prints p50/p99/max over every paced event, and partial measures:
"event_arrival", from an event's produce to its arrival at a reader (where
EVENTS has `received`: the transport's share, what the worker's consumer
waits before it sees the event);
"to_produce", the same events up to the recommendation's CreateTime (the
worker's produce call), and "source_only", only the events named as a
source (the last of their user in their batch, so the ones that waited
least) up to that CreateTime, as bench/recommend measured before
2026-11-29."""
import bisect
import json
import sys

first = {int(k): v for k, v in json.load(open(sys.argv[3])).items()}
events = []
arrival = []
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["offset"] >= first.get(r["partition"], 1 << 62):
        events.append((r["partition"], r["value"]["user_id"], r["offset"], r["timestamp"]))
        if "received" in r:
            arrival.append(r["received"] - r["timestamp"])
produced = {(p, o): t for p, _, o, t in events}

# (partition, user) -> sorted [(source offset, CreateTime, arrival)]
recs = {}
source_only = []
for line in open(sys.argv[2]):
    r = json.loads(line)
    src = r["value"]["source"]
    key = (src["partition"], r["value"]["user_id"])
    recs.setdefault(key, []).append((src["offset"], r["timestamp"], r.get("received", r["timestamp"])))
    t = produced.get((src["partition"], src["offset"]))
    if t is not None:
        source_only.append(r["timestamp"] - t)
for v in recs.values():
    v.sort()

to_consume, to_produce = [], []
unmatched = 0
for p, user, off, t in events:
    v = recs.get((p, user), [])
    i = bisect.bisect_left(v, (off,))
    if i < len(v):
        to_produce.append(v[i][1] - t)
        to_consume.append(v[i][2] - t)
    else:
        unmatched += 1


def summary(xs):
    xs = sorted(xs)
    q = lambda p: xs[min(len(xs) - 1, int(p * len(xs)))] if xs else None
    return {"samples": len(xs), "p50_ms": q(0.5), "p99_ms": q(0.99),
            "max_ms": xs[-1] if xs else None}


out = summary(to_consume)
out["unmatched"] = unmatched
if arrival:
    out["event_arrival"] = summary(arrival)
out["to_produce"] = summary(to_produce)
out["source_only"] = summary(source_only)
print(json.dumps(out))
