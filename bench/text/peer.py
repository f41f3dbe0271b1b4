#!/usr/bin/python3
"""Peers of reel's text kernels for bench/text/run: gensim word2vec and a
PyTorch LSTM classifier with reel's architecture (embedding -> LSTM -> max
pooling over time -> dropout -> dense -> softmax; Adam, clipping 5, batch
32, input dropout 0.4, output dropout 0.5). env MEMBERS=K: the classifier
is K such networks whose probabilities are averaged (reel's --nets and
--snapshots ensembles): inference runs all K, training times one epoch of
each of the `TRAINED` (default K) networks. env BIDIR=1: a bidirectional
LSTM (both directions' max-pooled states into the dense layer, reel's
--bidir 1). Prints one JSON line."""
import os
import json
import random
import re
import sys
import time

TOKEN = re.compile(r"n't|'(?:s|m|d|ll|re|ve)\b|\d+(?:[.,]\d+)+|\w+(?:-\w+)*|[^\w\s\"`']")


def tokenize(text):
    """Close to reel's tokenizer (kernels/text/tokenize.c)."""
    out = []
    for t in TOKEN.findall(text.lower()):
        if t == "n't" and out and out[-1].endswith("n") and len(out[-1]) > 1:
            out[-1] = out[-1][:-1]
        out.append(t)
    return out


def w2v(corpus, arch, threads, epochs, dim):
    from gensim.models import Word2Vec
    from gensim.models.word2vec import LineSentence
    m = Word2Vec(vector_size=dim, window=5, negative=5, sample=1e-3, min_count=5, sg=arch == "sg",
                 workers=threads, epochs=epochs, seed=1)
    m.build_vocab(corpus_file=corpus)
    words = m.corpus_total_words
    t0 = time.perf_counter()
    m.train(corpus_file=corpus, total_words=words, epochs=epochs, total_examples=m.corpus_count)
    el = time.perf_counter() - t0
    print(json.dumps({"peer": "gensim", "arch": arch, "threads": threads, "words": words,
                      "seconds": round(el, 2), "words_per_s": round(words * epochs / el)}))


def read_data(pos, neg):
    ex = []
    for path, label in ((pos, 1), (neg, 0)):
        for line in open(path, "rb").read().split(b"\n"):
            if line.strip():
                ex.append((tokenize(line.decode("latin-1"))[:100], label))
    return ex


def lstm(pos, neg, mode, cell="lstm"):
    import torch
    import torch.nn as nn
    torch.set_num_threads(1)
    torch.manual_seed(1)
    random.seed(1)
    ex = read_data(pos, neg)
    vocab = {"<unk>": 0}
    for toks, _ in ex:
        for t in toks:
            vocab.setdefault(t, len(vocab))
    data = [([vocab[t] for t in toks] or [0], y) for toks, y in ex]

    class Net(nn.Module):
        def __init__(self, V, D=100, H=100):
            super().__init__()
            self.emb = nn.Embedding(V, D)
            bi = os.environ.get("BIDIR", "0") == "1"
            self.rnn = (nn.GRU if cell == "gru" else nn.LSTM)(D, H, batch_first=True, bidirectional=bi)
            self.drop_in, self.drop = nn.Dropout(0.4), nn.Dropout(0.5)
            self.out = nn.Linear(2 * H if bi else H, 2)

        def forward(self, ids, lens):
            x = self.drop_in(self.emb(ids))
            packed = nn.utils.rnn.pack_padded_sequence(x, lens, batch_first=True, enforce_sorted=False)
            h, _ = self.rnn(packed)
            h, _ = nn.utils.rnn.pad_packed_sequence(h, batch_first=True, padding_value=-1e9)
            return self.out(self.drop(h.max(1).values))

    members = int(os.environ.get("MEMBERS", "1"))
    trained = int(os.environ.get("TRAINED", str(members)))
    nets = [Net(len(vocab)) for _ in range(members)]
    if mode == "train":
        el = 0.0
        for net in nets[:trained]:
            opt = torch.optim.Adam(net.parameters(), lr=1e-3)
            random.shuffle(data)
            chunk = 32 * 50
            for s in range(0, len(data), chunk):
                data[s:s + chunk] = sorted(data[s:s + chunk], key=lambda e: len(e[0]))
            batches = [data[i:i + 32] for i in range(0, len(data), 32)]
            random.shuffle(batches)
            net.train()
            t0 = time.perf_counter()
            for b in batches:
                T = max(len(e[0]) for e in b)
                ids = torch.tensor([e[0] + [0] * (T - len(e[0])) for e in b])
                lens = torch.tensor([len(e[0]) for e in b])
                y = torch.tensor([e[1] for e in b])
                opt.zero_grad()
                loss = nn.functional.cross_entropy(net(ids, lens), y)
                loss.backward()
                nn.utils.clip_grad_norm_(net.parameters(), 5.0)
                opt.step()
            el += time.perf_counter() - t0
        print(json.dumps({"peer": "pytorch", "cell": cell, "examples": len(data), "networks": trained,
                          "epoch_seconds": round(el, 2)}))
    else:
        for net in nets:
            net.eval()
        n = min(len(data), 4000)
        sample = random.Random(2).sample(data, n)
        t0 = time.perf_counter()
        with torch.inference_mode():
            for ids, _ in sample:
                x, lens = torch.tensor([ids]), torch.tensor([len(ids)])
                p = sum(net(x, lens).softmax(-1) for net in nets) / len(nets)
        el = time.perf_counter() - t0
        print(json.dumps({"peer": "pytorch", "cell": cell, "members": members, "sentences": n,
                          "seconds": round(el, 2), "sentences_per_s": round(n / el)}))


if __name__ == "__main__":
    if sys.argv[1] == "w2v":
        w2v(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
    elif sys.argv[1] == "tokenize":
        for line in open(sys.argv[2], "rb"):
            print(" ".join(tokenize(line.decode("utf-8", "replace") if sys.argv[3:] == ["utf8"]
                                    else line.decode("latin-1"))))
    else:
        lstm(sys.argv[2], sys.argv[3], sys.argv[1].split("-")[1], sys.argv[4] if len(sys.argv) > 4 else "lstm")
