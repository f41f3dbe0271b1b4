#!/usr/bin/env python3
"""PyTorch reference for bench/image/run: the seed architecture
(Conv32-MaxPool-Conv64-MaxPool-Conv64-Dense64-Dense10, ReLU, valid
convolutions), Adam lr 1e-3, batch 64, the same Fashion-MNIST files and
scaling to [0, 1] as `reel train image`, on one thread.

Prints one JSON line per epoch and one with inference images/s at batch 1
and 32 over the test set."""
import argparse
import gzip
import json
import time

import numpy as np
import torch
import torch.nn as nn

ap = argparse.ArgumentParser()
ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
ap.add_argument("--epochs", type=int, default=1)
ap.add_argument("--limit", type=int, default=0)
ap.add_argument("--lr-decay", type=float, default=1.0)
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--infer-n", type=int, default=10000)
ap.add_argument("--folder", default="", help="folder-per-class data (DIR/train, DIR/test) of 32x32 RGB images")
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(1)


def idx(prefix):
    with gzip.open("%s/%s-images-idx3-ubyte.gz" % (a.data, prefix)) as f:
        x = np.frombuffer(f.read()[16:], np.uint8).reshape(-1, 1, 28, 28).astype(np.float32) / 255
    with gzip.open("%s/%s-labels-idx1-ubyte.gz" % (a.data, prefix)) as f:
        y = np.frombuffer(f.read()[8:], np.uint8).astype(np.int64)
    return torch.from_numpy(x), torch.from_numpy(y)


def folder(split):
    import os
    from PIL import Image
    root = os.path.join(a.folder, split)
    classes = sorted(os.listdir(root))
    xs, ys = [], []
    for k, c in enumerate(classes):
        for f in sorted(os.listdir(os.path.join(root, c))):
            im = Image.open(os.path.join(root, c, f)).convert("RGB")
            xs.append(np.asarray(im, np.float32).transpose(2, 0, 1) / 255)
            ys.append(k)
    return torch.from_numpy(np.stack(xs)), torch.tensor(ys)


if a.folder:
    xtr, ytr = folder("train")
    xte, yte = folder("test")
else:
    xtr, ytr = idx("train")
    xte, yte = idx("t10k")
C, H = xtr.shape[1], xtr.shape[2]
flat = 64 * ((((H - 2) // 2 - 2) // 2) - 2) ** 2
if a.limit:
    xtr, ytr = xtr[: a.limit], ytr[: a.limit]

net = nn.Sequential(
    nn.Conv2d(C, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(64, 64, 3), nn.ReLU(), nn.Flatten(),
    nn.Linear(flat, 64), nn.ReLU(), nn.Linear(64, int(ytr.max()) + 1))
opt = torch.optim.Adam(net.parameters(), lr=1e-3)
sched = torch.optim.lr_scheduler.ExponentialLR(opt, a.lr_decay)
lossf = nn.CrossEntropyLoss()


def test_acc():
    net.eval()
    with torch.no_grad():
        ok = sum((net(xte[i:i + 256]).argmax(1) == yte[i:i + 256]).sum().item()
                 for i in range(0, len(xte), 256))
    net.train()
    return ok / len(xte)


for ep in range(1, a.epochs + 1):
    perm = torch.randperm(len(xtr))
    t0, c0 = time.perf_counter(), time.process_time()
    tot, correct, n = 0.0, 0, 0
    for i in range(0, len(xtr), 64):
        b = perm[i:i + 64]
        xb, yb = xtr[b], ytr[b]
        opt.zero_grad()
        out = net(xb)
        loss = lossf(out, yb)
        loss.backward()
        opt.step()
        tot += loss.item() * len(b)
        correct += (out.argmax(1) == yb).sum().item()
        n += len(b)
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    sched.step()
    print(json.dumps({"epoch": ep, "loss": round(tot / n, 4), "train_accuracy": round(correct / n, 4),
                      "test_accuracy": round(test_acc(), 4), "seconds": round(secs, 2),
                      "cpu_seconds": round(cpu, 2)}), flush=True)

net.eval()
res = {}
with torch.no_grad():
    for bs in (1, 32):
        n = min(a.infer_n, len(xte)) if bs == 32 else min(a.infer_n, 2000)
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(0, n, bs):
            net(xte[i:i + bs])
        res["images_per_s_batch%d" % bs] = round(n / (time.perf_counter() - t0), 1)
        res["images_per_cpu_s_batch%d" % bs] = round(n / (time.process_time() - c0), 1)
print(json.dumps(res), flush=True)
