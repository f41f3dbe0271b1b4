#!/usr/bin/env python3
"""A synthetic colour image set in the folder-per-class layout, for lack of
CIFAR-10 on this machine: 10 classes of shapes drawn at 32x32 in random
colours, sizes and positions over textured backgrounds, with noise.

usage: make_colour_set.py OUT [--train 500] [--test 100] [--seed 1]
writes OUT/train/<class>/*.png and OUT/test/<class>/*.png"""
import argparse
import os

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ["circle", "square", "triangle", "hstripes", "vstripes", "cross", "ring", "diamond",
           "checker", "dots"]


def draw(cls, rng):
    bg = rng.integers(0, 256, 3)
    fg = rng.integers(0, 256, 3)
    while np.abs(fg.astype(int) - bg.astype(int)).sum() < 150:
        fg = rng.integers(0, 256, 3)
    im = Image.new("RGB", (32, 32), tuple(int(v) for v in bg))
    d = ImageDraw.Draw(im)
    cx, cy, r = rng.integers(10, 22), rng.integers(10, 22), int(rng.integers(5, 10))
    f = tuple(int(v) for v in fg)
    if cls == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=f)
    elif cls == "square":
        d.rectangle([cx - r, cy - r, cx + r, cy + r], fill=f)
    elif cls == "triangle":
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=f)
    elif cls == "hstripes":
        for y in range(int(rng.integers(0, 4)), 32, int(rng.integers(5, 8))):
            d.rectangle([0, y, 31, y + 1], fill=f)
    elif cls == "vstripes":
        for x in range(int(rng.integers(0, 4)), 32, int(rng.integers(5, 8))):
            d.rectangle([x, 0, x + 1, 31], fill=f)
    elif cls == "cross":
        d.rectangle([cx - r, cy - 1, cx + r, cy + 1], fill=f)
        d.rectangle([cx - 1, cy - r, cx + 1, cy + r], fill=f)
    elif cls == "ring":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=f, width=2)
    elif cls == "diamond":
        d.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=f)
    elif cls == "checker":
        s = int(rng.integers(3, 6))
        for y in range(0, 32, s):
            for x in range(0, 32, s):
                if (x // s + y // s) % 2 == 0:
                    d.rectangle([x, y, x + s - 1, y + s - 1], fill=f)
    else:
        for _ in range(int(rng.integers(5, 12))):
            x, y = rng.integers(2, 30, 2)
            d.ellipse([x - 1, y - 1, x + 1, y + 1], fill=f)
    a = np.asarray(im).astype(np.float32) + rng.normal(0, 18, (32, 32, 3))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--train", type=int, default=500)
    ap.add_argument("--test", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    for split, n in (("train", a.train), ("test", a.test)):
        for cls in CLASSES:
            d = os.path.join(a.out, split, cls)
            os.makedirs(d, exist_ok=True)
            for i in range(n):
                draw(cls, rng).save(os.path.join(d, "%04d.png" % i))


if __name__ == "__main__":
    main()
