#!/usr/bin/python3
"""batch_cosine.py DIR N REPEATS

The batch way of keeping item-item similarities current: after each new
event, recompute scikit-learn's cosine_similarity over the whole item-user
matrix (sparse, ratings as values) of the first N MovieLens ratings, then
recommend for the event's user. Prints one JSON line with the seconds per
event (median of REPEATS) and the events/s that implies."""
import csv
import json
import statistics
import sys
import time

import numpy as np
from scipy.sparse import csr_matrix
from sklearn.metrics.pairwise import cosine_similarity

d, n, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(f"{d}/ratings.csv", newline="") as f:
    rows = sorted(csv.DictReader(f), key=lambda r: int(r["timestamp"]))[:n]
users = {u: k for k, u in enumerate(sorted({r["userId"] for r in rows}))}
items = {i: k for k, i in enumerate(sorted({r["movieId"] for r in rows}))}
u = np.array([users[r["userId"]] for r in rows])
i = np.array([items[r["movieId"]] for r in rows])
v = np.array([float(r["rating"]) for r in rows], dtype=np.float32)
times = []
for rep in range(repeats):
    t0 = time.perf_counter()
    m = csr_matrix((v, (i, u)), shape=(len(items), len(users)))  # item x user
    sim = cosine_similarity(m, dense_output=False)  # one new event: recompute all
    user = u[-1 - rep]
    hist = m[:, user].toarray().ravel()
    scores = sim @ hist
    scores[hist > 0] = -np.inf
    top = np.argsort(-scores)[:10]
    times.append(time.perf_counter() - t0)
s = statistics.median(times)
print(json.dumps({"peer": "sklearn cosine_similarity (batch recompute)", "events": n,
                  "items": len(items), "users": len(users), "seconds_per_event": round(s, 4),
                  "events_per_sec": round(1 / s, 3), "top": [int(x) for x in top[:3]]}))
