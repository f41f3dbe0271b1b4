#!/usr/bin/python3
"""recommend_reference.py RATINGS [--seed N ...] [--k 10] [--check-split FILE]

A batch reference for `reel eval recommend --split random` on MovieLens
ratings: the same per-user stratified 75/25 split (a port of split() in
workers/eval_recommend.c: same RNG, same order, so the same test set), then

  sar_jaccard   SAR (Microsoft Recommenders): item co-occurrence over the
                training users, Jaccard similarity, user affinity = rating,
                score = affinity x similarity over the FULL similarity row,
                seen items removed, top-k
  sar_count     the same with affinity = 1 (counts)
  item_knn_cos  item-kNN: cosine over the rating matrix, score = ratings x
                similarity over the full rows
  *_topK        the same through neighbourhoods: candidate j is scored
                from the user's items among j's K nearest (the classic
                item-kNN; what reel's item_score_k does)
  *_histK       through the history items' K-lists instead (what reel did
                before: rare items' lists of perfect similarities dominate)
  user_knn_cos  user-kNN: cosine over the rating matrix, 50 neighbours
  popular       training popularity

with the same metric definitions as rec_metrics_user (map divided by the
number of relevant items, ndcg normalised over min(k, n_rel)).

Needs python3-numpy and python3-scipy (Debian packages).
--check-split FILE compares with `reel eval recommend --dump-split FILE`
(lines "rating_index test").
"""
import argparse
import json
import math
import sys

import numpy as np
import scipy.sparse as sp

M64 = (1 << 64) - 1


def splitmix(state):
    state = (state + 0x9E3779B97F4A7C15) & M64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return state, z ^ (z >> 31)


def load(path):
    users, items, rows = {}, {}, []
    with open(path) as f:
        for n, line in enumerate(f):
            line = line.rstrip("\r\n")
            if not line or (n == 0 and line.startswith("userId")):
                continue
            sep = "\t" if "\t" in line else "," if "," in line else " "
            u, i, r, t = line.split(sep)[:4]
            uid = users.setdefault(u, len(users))
            iid = items.setdefault(i, len(items))
            rows.append((uid, iid, float(r), int(t), len(rows)))
    return rows, len(users), len(items)


def split(rows, seed):
    """Returns test[idx] = 1 for the test ratings (as eval_recommend.c)."""
    order = sorted(rows, key=lambda r: (r[0], r[3], r[4]))
    test = np.zeros(len(rows), dtype=bool)
    s = (seed * 0x2545F4914F6CDD1D + 1) & M64
    a = 0
    while a < len(order):
        b = a
        while b < len(order) and order[b][0] == order[a][0]:
            b += 1
        n = b - a
        ntrain = int(math.floor(0.75 * n + 0.5))
        perm = list(range(n))
        for k in range(n, 1, -1):
            s, z = splitmix(s)
            j = z % k
            perm[k - 1], perm[j] = perm[j], perm[k - 1]
        for k in range(ntrain, n):
            test[order[a + perm[k]][4]] = True
        a = b
    return test


def metrics(top, rel, k):
    hits, dcg, ap = 0, 0.0, 0.0
    for r, it in enumerate(top[:k]):
        if it in rel:
            hits += 1
            dcg += 1.0 / math.log2(r + 2)
            ap += hits / (r + 1)
    ideal = min(len(rel), k)
    idcg = sum(1.0 / math.log2(r + 2) for r in range(ideal))
    return hits / k, hits / len(rel), dcg / idcg, ap / len(rel), float(hits > 0)


def evaluate(scores, train, test_sets, k):
    """scores: dense users x items; seen (train) items are removed."""
    scores = scores.copy()
    tr = train.tocoo()
    scores[tr.row, tr.col] = -np.inf
    acc = np.zeros(5)
    n = 0
    for u, rel in test_sets.items():
        s = scores[u]
        cand = np.argpartition(-s, k)[: k + 1]
        # best first; ties broken by the higher item id (as reel does)
        cand = sorted(cand, key=lambda i: (-s[i], -i))[:k]
        top = [int(i) for i in cand if np.isfinite(s[i])]
        acc += metrics(top, rel, k)
        n += 1
    acc /= n
    return dict(zip(["precision", "recall", "ndcg", "map", "hit_rate"], acc))


def topk_rows(S, K):
    """Keeps each row's K largest entries of a dense matrix (others 0)."""
    if K >= S.shape[1]:
        return S
    out = np.zeros_like(S)
    idx = np.argpartition(-S, K, axis=1)[:, :K]
    r = np.arange(S.shape[0])[:, None]
    out[r, idx] = S[r, idx]
    return out


def run(rows, nu, ni, seed, k):
    test = split(rows, seed)
    arr = np.array([(r[0], r[1], r[2]) for r in rows])
    u, i, r = arr[:, 0].astype(int), arr[:, 1].astype(int), arr[:, 2]
    tr = ~test
    R = sp.csr_matrix((r[tr], (u[tr], i[tr])), shape=(nu, ni))
    B = (R > 0).astype(np.float64)
    test_sets = {}
    for uu, ii in zip(u[test], i[test]):
        test_sets.setdefault(int(uu), set()).add(int(ii))

    res = {}
    # SAR: co-occurrence and Jaccard over the full rows.
    C = (B.T @ B).toarray()
    c = np.diag(C).copy()
    den = c[:, None] + c[None, :] - C
    with np.errstate(divide="ignore", invalid="ignore"):
        J = np.where(den > 0, C / den, 0.0)
    res["sar_jaccard"] = evaluate(R @ J, R, test_sets, k)
    res["sar_count"] = evaluate(B @ J, R, test_sets, k)
    res["sar_jaccard_top50"] = evaluate(R @ topk_rows(J, 50).T, R, test_sets, k)
    res["sar_jaccard_hist50"] = evaluate(R @ topk_rows(J, 50), R, test_sets, k)
    # item-kNN cosine over ratings.
    D = (R.T @ R).toarray()
    n2 = np.sqrt(np.diag(D))
    with np.errstate(divide="ignore", invalid="ignore"):
        S = np.where(np.outer(n2, n2) > 0, D / np.outer(n2, n2), 0.0)
    np.fill_diagonal(S, 0.0)
    res["item_knn_cos"] = evaluate(R @ S, R, test_sets, k)
    res["item_knn_cos_top30"] = evaluate(R @ topk_rows(S, 30).T, R, test_sets, k)
    res["item_knn_cos_top50"] = evaluate(R @ topk_rows(S, 50).T, R, test_sets, k)
    res["item_knn_cos_hist50"] = evaluate(R @ topk_rows(S, 50), R, test_sets, k)
    # user-kNN cosine, 50 neighbours, binary votes weighted by similarity.
    U = (R @ R.T).toarray()
    un = np.sqrt(np.diag(U))
    with np.errstate(divide="ignore", invalid="ignore"):
        US = np.where(np.outer(un, un) > 0, U / np.outer(un, un), 0.0)
    np.fill_diagonal(US, 0.0)
    res["user_knn_cos50"] = evaluate(topk_rows(US, 50) @ B.toarray(), R, test_sets, k)
    pop = np.asarray(B.sum(axis=0)).ravel()
    res["popular"] = evaluate(np.tile(pop, (nu, 1)), R, test_sets, k)
    return res, test


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ratings")
    ap.add_argument("--seed", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--check-split", help="file from reel eval recommend --dump-split")
    a = ap.parse_args()
    rows, nu, ni = load(a.ratings)
    print("%d ratings, %d users, %d items" % (len(rows), nu, ni), file=sys.stderr)
    total = {}
    for seed in a.seed:
        res, test = run(rows, nu, ni, seed, a.k)
        if a.check_split:
            ref = np.zeros(len(rows), dtype=bool)
            with open(a.check_split) as f:
                for line in f:
                    idx, t = line.split()
                    ref[int(idx)] = t == "1"
            diff = int((ref != test).sum())
            print("seed %d: split differs from reel's in %d ratings" % (seed, diff), file=sys.stderr)
        for name, m in res.items():
            print(json.dumps({"seed": seed, "algo": name, **{x + "@%d" % a.k: round(v, 6) for x, v in m.items()}}))
            t = total.setdefault(name, np.zeros(5))
            t += np.array(list(m.values()))
    for name, t in total.items():
        t = t / len(a.seed)
        keys = ["precision", "recall", "ndcg", "map", "hit_rate"]
        print(json.dumps({"seeds": a.seed, "algo": name, **{x + "@%d" % a.k: round(v, 6) for x, v in zip(keys, t)}}))


if __name__ == "__main__":
    main()
