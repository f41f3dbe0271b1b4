#!/usr/bin/python3
"""movielens_events.py DIR N OUT_EVENTS OUT_ITEMS

MovieLens ratings.csv/movies.csv -> JSON lines for `reel produce`: the first
N ratings in timestamp order as ViewingEvents (type rating, event_id from the
row) and the whole catalogue as Items (genres, year from the title)."""
import csv
import json
import re
import sys

d, n, out_events, out_items = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
with open(f"{d}/ratings.csv", newline="") as f:
    rows = list(csv.DictReader(f))
rows.sort(key=lambda r: int(r["timestamp"]))
with open(out_events, "w") as out:
    for k, r in enumerate(rows[:n]):
        out.write(json.dumps({"event_id": f"ml{k}", "user_id": r["userId"], "item_id": r["movieId"],
                              "type": "rating", "ts": int(r["timestamp"]) * 1000,
                              "rating": float(r["rating"])}) + "\n")
with open(f"{d}/movies.csv", newline="") as f, open(out_items, "w") as out:
    for r in csv.DictReader(f):
        m = re.search(r"\((\d{4})\)\s*$", r["title"])
        genres = [] if r["genres"] == "(no genres listed)" else r["genres"].split("|")
        out.write(json.dumps({"item_id": r["movieId"], "title": r["title"], "genres": genres,
                              "tags": [], "year": int(m.group(1)) if m else 0, "ts": 0}) + "\n")
