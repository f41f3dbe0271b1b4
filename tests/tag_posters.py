#!/usr/bin/env python3
"""Posters for tests/test_tag.sh and bench/image: Poster JSON lines for
`reel produce --topic posters`, made from Fashion-MNIST test images (Debian's
dataset-fashion-mnist) upscaled to 500x750 and encoded in every colour layout
the decoder handles, plus moderation probes and broken images.

usage: tag_posters.py OUT_DIR [--n N] [--bad] [--offset K] [--prefix P]
Writes OUT_DIR/posters.jsonl, OUT_DIR/truth.tsv (poster_id, class index),
OUT_DIR/block.jpg (the image to blocklist) and OUT_DIR/bad.tsv (poster_id,
expected reason fragment)."""
import argparse
import base64
import gzip
import io
import json
import struct
import zlib

import numpy as np
from PIL import Image

FM = "/usr/share/datasets/fashion-mnist/"


def fashion_test(n, offset):
    with gzip.open(FM + "t10k-images-idx3-ubyte.gz") as f:
        data = f.read()
    with gzip.open(FM + "t10k-labels-idx1-ubyte.gz") as f:
        labels = f.read()[8:]
    imgs = np.frombuffer(data[16:], dtype=np.uint8).reshape(-1, 28, 28)
    return imgs[offset:offset + n], labels[offset:offset + n]


def encode(img, layout):
    buf = io.BytesIO()
    if layout == "grey-jpeg":
        img.convert("L").save(buf, "JPEG", quality=90)
        return buf.getvalue(), "image/jpeg"
    if layout == "rgb-jpeg":
        img.convert("RGB").save(buf, "JPEG", quality=90)
        return buf.getvalue(), "image/jpeg"
    if layout == "cmyk-jpeg":
        img.convert("CMYK").save(buf, "JPEG", quality=90)
        return buf.getvalue(), "image/jpeg"
    if layout == "progressive-jpeg":
        img.convert("RGB").save(buf, "JPEG", quality=90, progressive=True)
        return buf.getvalue(), "image/jpeg"
    if layout == "rgba-png":
        rgba = img.convert("RGBA")
        rgba.save(buf, "PNG")
        return buf.getvalue(), "image/png"
    if layout == "palette-png":
        img.convert("RGB").convert("P", palette=Image.ADAPTIVE, colors=64).save(buf, "PNG")
        return buf.getvalue(), "image/png"
    if layout == "grey16-png":
        arr = np.asarray(img.convert("L"), dtype=np.uint16) * 257
        Image.fromarray(arr).save(buf, "PNG")
        return buf.getvalue(), "image/png"
    raise ValueError(layout)


LAYOUTS = ["grey-jpeg", "rgb-jpeg", "cmyk-jpeg", "progressive-jpeg", "rgba-png", "palette-png",
           "grey16-png"]


def png_chunk(kind, payload):
    return (struct.pack(">I", len(payload)) + kind + payload +
            struct.pack(">I", zlib.crc32(kind + payload) & 0xffffffff))


def synthetic(seed, w=500, h=750):
    """A poster-like picture: smooth colour fields and blocks."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    for c in range(3):
        fx, fy, ph = rng.uniform(1, 4), rng.uniform(1, 4), rng.uniform(0, 6)
        img[..., c] = 128 + 100 * np.sin(fx * x / w * 6.28 + ph) * np.cos(fy * y / h * 6.28)
    for _ in range(6):
        x0, y0 = int(rng.uniform(0, w - 100)), int(rng.uniform(0, h - 100))
        img[y0:y0 + int(rng.uniform(40, 200)), x0:x0 + int(rng.uniform(40, 200))] = rng.uniform(0, 255, 3)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def poster(pid, data, ctype, ts=1700000000000):
    return json.dumps({"item_id": pid, "poster_id": pid, "content_type": ctype,
                       "image": base64.b64encode(data).decode(), "ts": ts})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--offset", type=int, default=0)
    ap.add_argument("--prefix", default="p")
    ap.add_argument("--bad", action="store_true")
    ap.add_argument("--layout", default="", help="one layout for all (default: rotate)")
    ap.add_argument("--synthetic", type=int, default=0,
                    help="instead: N synthetic 500x750 colour JPEG posters (bench)")
    a = ap.parse_args()
    if a.synthetic:
        with open(a.out + "/posters.jsonl", "w") as f:
            for i in range(a.synthetic):
                buf = io.BytesIO()
                synthetic(1000 + i).save(buf, "JPEG", quality=85)
                f.write(poster("%s%d" % (a.prefix, i), buf.getvalue(), "image/jpeg") + "\n")
        return
    imgs, labels = fashion_test(a.n, a.offset)
    lines, truth, bad = [], [], []
    for i, (arr, lab) in enumerate(zip(imgs, labels)):
        img = Image.fromarray(arr, "L").resize((500, 750), Image.BILINEAR)
        layout = a.layout or LAYOUTS[i % len(LAYOUTS)]
        data, ctype = encode(img, layout)
        pid = "%s%d" % (a.prefix, i)
        lines.append(poster(pid, data, ctype))
        truth.append("%s\t%d\t%s" % (pid, lab, layout))
    if a.bad:
        block = synthetic(7)
        block.save(a.out + "/block.jpg", "JPEG", quality=92)
        # a re-encoded, resized copy of the blocklisted image, and a stranger
        buf = io.BytesIO()
        block.resize((480, 720), Image.BILINEAR).save(buf, "JPEG", quality=60)
        lines.append(poster("pb1", buf.getvalue(), "image/jpeg"))
        buf = io.BytesIO()
        synthetic(8).save(buf, "PNG")
        lines.append(poster("pb2", buf.getvalue(), "image/png"))
        good_jpeg = io.BytesIO()
        synthetic(9).save(good_jpeg, "JPEG", quality=90)
        good_jpeg = good_jpeg.getvalue()
        good_png = io.BytesIO()
        synthetic(10).resize((64, 96)).save(good_png, "PNG")
        good_png = good_png.getvalue()
        # PNG with a bad CRC on its first IDAT chunk
        idat = good_png.index(b"IDAT")
        length = struct.unpack(">I", good_png[idat - 4:idat])[0]
        crc_at = idat + 4 + length
        bad_crc = good_png[:crc_at] + bytes([good_png[crc_at] ^ 0xff]) + good_png[crc_at + 1:]
        # a PNG header claiming 100000 x 100000 pixels
        huge_png = (b"\x89PNG\r\n\x1a\n" +
                    png_chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)) +
                    png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + png_chunk(b"IEND", b""))
        # a JPEG whose frame header claims 60000 x 60000
        sof = good_jpeg.index(b"\xff\xc0")
        huge_jpeg = good_jpeg[:sof + 5] + struct.pack(">HH", 60000, 60000) + good_jpeg[sof + 9:]
        gif = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
        cases = [
            ("x1", good_jpeg[: len(good_jpeg) // 2], "image/jpeg", "jpeg:"),
            ("x2", bad_crc, "image/png", "CRC"),
            ("x3", huge_png, "image/png", "exceeds the limits"),
            ("x4", b"", "image/jpeg", "empty image"),
            ("x5", gif, "image/jpeg", "not a JPEG or PNG"),
            ("x6", b"hello, I am text, not an image\n", "image/png", "not a JPEG or PNG"),
            ("x7", good_jpeg, "text/plain", "unsupported content type"),
            ("x8", huge_jpeg, "image/jpeg", "exceeds the limits"),
        ]
        for pid, data, ctype, why in cases:
            lines.append(poster(pid, data, ctype))
            bad.append("%s\t%s" % (pid, why))
    with open(a.out + "/posters.jsonl", "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(a.out + "/truth.tsv", "w") as f:
        f.write("\n".join(truth) + "\n")
    with open(a.out + "/bad.tsv", "w") as f:
        f.write("\n".join(bad) + ("\n" if bad else ""))


if __name__ == "__main__":
    main()
