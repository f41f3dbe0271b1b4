#!/usr/bin/python3
"""latency.py EVENTS.jsonl RECS.jsonl FIRST_OFFSETS.json

Joins `reel consume` output of viewing-events and recommendations on the
recommendation's source (partition, offset) and prints p50/p99 of the time
from an event's produce (its Kafka CreateTime) to the production of the
recommendation it caused, for events at or after FIRST_OFFSETS (the paced
part of the run: {"partition": first offset})."""
import json
import sys

first = {int(k): v for k, v in json.load(open(sys.argv[3])).items()}
produced = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["offset"] >= first.get(r["partition"], 1 << 62):
        produced[(r["partition"], r["offset"])] = r["timestamp"]
lat = []
for line in open(sys.argv[2]):
    r = json.loads(line)
    src = r["value"]["source"]
    key = (src["partition"], src["offset"])
    if key in produced:
        lat.append(r["timestamp"] - produced.pop(key))
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else None
print(json.dumps({"samples": len(lat), "p50_ms": q(0.5), "p99_ms": q(0.99),
                  "max_ms": lat[-1] if lat else None}))
