#!/usr/bin/env python3
"""Writes the small seed corpora of the IDX, CIFAR, PNG and structured
data.h5 (h5s) fuzz targets (the raw data.h5 seed is made by `ofa-data
prepare` on a three-image IDX folder; see README.md). Run from tests/fuzz/."""
import gzip, os, struct, zlib

def w(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)

# IDX: 3 images of 4x5, their labels, a 4-D image file; plain and gzip.
img = bytes([0, 0, 8, 3]) + struct.pack(">III", 3, 4, 5) + bytes(range(60))
lab = bytes([0, 0, 8, 1]) + struct.pack(">I", 3) + bytes([0, 9, 4])
img4 = bytes([0, 0, 8, 4]) + struct.pack(">IIII", 2, 2, 2, 3) + bytes(range(24))
w("corpus/idx/images3", img)
w("corpus/idx/labels", lab)
w("corpus/idx/images4", img4)
w("corpus/idx/images3.gz", gzip.compress(img, mtime=0))
w("corpus/idx/labels.gz", gzip.compress(lab, mtime=0))

# CIFAR: one CIFAR-10 record, two CIFAR-100 records.
px = bytes((i * 7) & 255 for i in range(3072))
w("corpus/cifar/c10_one", bytes([3]) + px)
w("corpus/cifar/c100_two", bytes([1, 42]) + px + bytes([19, 99]) + px)

# PNG: every colour type, bit depths 1..16, palette with tRNS, interlaced.
def chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)

def png(wd, ht, depth, ctype, rowbytes, plte=None, trns=None, interlace=0):
    raw = b"".join(b"\0" + bytes(((y * 31 + x * 7) & 255) for x in range(rowbytes))
                   for y in range(ht))
    if interlace:  # Adam7 for a 1x1 image is a single pass
        assert wd == 1 and ht == 1
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", wd, ht, depth, ctype, 0, 0, interlace))
    if plte:
        out += chunk(b"PLTE", plte)
    if trns:
        out += chunk(b"tRNS", trns)
    return out + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")

w("corpus/png/grey8", png(4, 3, 8, 0, 4))
w("corpus/png/grey1", png(9, 2, 1, 0, 2))
w("corpus/png/grey16", png(2, 2, 16, 0, 4))
w("corpus/png/greyalpha", png(3, 2, 8, 4, 6))
w("corpus/png/rgb", png(3, 3, 8, 2, 9))
w("corpus/png/rgba16", png(2, 2, 16, 6, 16))
w("corpus/png/palette", png(4, 2, 4, 3, 2, plte=bytes(range(48)), trns=bytes([0, 128])))
w("corpus/png/interlaced", png(1, 1, 8, 2, 3, interlace=1))

# h5s: decisions that make a valid file (see fuzz_h5s.c): N=6, NT=2, 2x2x1,
# K=3, V=1, then every attribute and dataset "as our writer would".
le = lambda v, n: v.to_bytes(n, "little")
h5s = bytes([5, 2, 1, 1, 0, 2, 1]) + bytes([1])
h5s += bytes([1]) + le(1, 4) + bytes([1]) + b"tinyseed" + bytes([1]) + le(3, 4)
h5s += bytes([1]) + le(0, 8) + bytes([1]) + le(1, 4)
h5s += bytes([1]) + b"".join(n.ljust(64, b"\0") for n in (b"a", b"b", b"c"))
h5s += bytes([1]) + bytes([1]) + bytes(range(0, 240, 10)) + bytes([1]) + b"".join(le(i % 3, 4) for i in range(6))
h5s += bytes([1]) + bytes([1]) + bytes(range(8)) + bytes([1]) + le(0, 4) + le(1, 4)
h5s += bytes([1]) + bytes([1]) + b"".join(le(i, 4) for i in range(5)) + bytes([1]) + le(5, 4)
w("corpus/h5s/valid", h5s)
w("corpus/h5s/ones", bytes([1]) * 64)
