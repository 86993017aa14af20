#!/usr/bin/env python3
"""Writes the small seed corpora of the IDX, CIFAR, PNG, structured data.h5
(h5s), subnet.h5 and model.h5 decision lists, and command-line (cli) fuzz
targets (the raw data.h5 seed is made by `ofa-data prepare` on a three-image
IDX folder; see README.md). Run from tests/fuzz/.

With the build folder of a fuzzing configuration as argument, also writes
the seeds that need our writers: subnet.h5 and model.h5 files written by
ofa_subnet_record_save / ofa_model_save, and model decision lists that load
(OFA_FUZZ_SEED_DIR of fuzz_subnet and fuzz_model), and, when
tests/check_ckpt has been built there, the checkpoints of fuzz_ckpt's table
(OFA_CKPT_SEED_DIR)."""
import gzip, os, struct, subprocess, sys, zlib

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

# subnet (decision lists; see fuzz_subnet.c): all zero is a valid file of
# the default space's smallest subnet; 0x07 first sets damage on (flags & 3)
# and the newest file format (flags & 4).
w("corpus/subnet/zeros", bytes(16))
w("corpus/subnet/damaged", bytes([7]) + bytes(range(1, 200, 3)))
# flags 0, the small space, r10, d21 (k7 e3, k5 e2 | k3 e3), no long text,
# two edits (insert "2" at 3, replace at 9 with "r")
w("corpus/subnet/small-space-edited", bytes([0, 1, 1, 1, 2, 1, 1, 0, 0, 0, 1, 0, 2, 3, 1, 2, 9, 0, 10]))

# model (decision lists; see fuzz_model.c): all zero is one fc layer on a
# 1x1 input; 0x1b sets damage on and three corrupted values.
w("corpus/model/zeros", bytes(8))
w("corpus/model/damaged", bytes([0x1b]) + bytes(range(5, 250, 7)))

# cli: NUL-separated arguments, the first naming the tool (see fuzz_cli.c);
# file names are fuzz_cli's fixtures.
def cli(name, *args):
    w("corpus/cli/" + name, b"\0".join(a.encode() for a in args))

cli("train-print", "ofa-train", "--print-recipe", "-r", "devices", "--set", "train.epochs=3",
    "-s", "device.tiny-mcu.flash_kb=2048", "--set=supernet.head_width=48")
cli("train-all", "ofa-train", "-r", "tiny.ini", "-d", "data.h5", "-o", "out.h5", "--resume",
    "--log=x.tsv", "-q", "--stop-after=5", "-j", "2", "-v", "--set=train.lr=0.1")
cli("train-help", "ofa-train", "--help", "-V", "--bogus")
cli("extract-list", "ofa-extract", "--list-devices", "-r", "devices.ini")
cli("extract-list-ckpt", "ofa-extract", "--list-devices", "--supernet=supernet.h5")
cli("extract-all", "ofa-extract", "-s", "supernet.h5", "-d", "data.h5", "-D", "tiny-mcu",
    "-o", "sub.h5", "-m", "m.tsv", "--samples=20", "--generations", "5", "--top", "2",
    "-q", "--measure-only", "-r", "devices.ini", "--threads=3")
cli("extract-eval", "ofa-extract", "--evaluate", "--split", "test", "-s", "supernet.h5",
    "-d", "data.h5", "largest", "random:5", "r12-d11-k3.33-e2.22")
cli("export-all", "ofa-export", "-s", "supernet.h5", "-n", "subnet.h5", "-d", "data.h5",
    "-o", "out", "-r", "devices.ini", "--set", "export.epochs=0",
    "--set=variant.jpeg.jpeg_quality=20", "-q", "-v")
cli("run-inputs", "ofa-run", "model.h5", "img.png", "images.idx", "data.h5", "-k", "2")
cli("run-fp32", "ofa-run", "fp32.h5", "data.h5", "--arith", "fp32", "--split", "val", "-q")
cli("run-train", "ofa-run", "-a", "int8", "--split=train", "--top=300", "model.h5", "data.h5")
cli("data-prepare-idx", "ofa-data", "prepare", "idx", "-o", "out.h5", "-f", "idx", "-v", "1",
    "-s", "7", "-q", "--class-names", "a,b,c,d,e,f,g,h,i,j")
cli("data-prepare-png", "ofa-data", "prepare", "png", "--output=p.h5", "--format", "png",
    "-c", "3", "--size", "4x5", "--seed=0x10")
cli("data-other", "ofa-data", "export-png", "data.h5", "-o", "outdir")
cli("data-stats", "ofa-data", "stats", "data.h5")
cli("data-seal", "ofa-data", "seal", "data.h5")
cli("parse", "parse", "12", "-0", " 7", "0x10", "1e3", "9223372036854775808", "-5", "nan",
    "1e-9", "4096", "1e39")

# Seeds from our writers (needs a build configured with --enable-fuzzing).
if len(sys.argv) > 1:
    for t in ("subnet", "model"):
        exe = os.path.join(sys.argv[1], "tests", "fuzz", "fuzz_" + t)
        env = dict(os.environ, OFA_FUZZ_SEED_DIR=os.path.abspath("corpus/" + t))
        subprocess.run([exe, "-runs=0"], env=env, check=True, stdout=subprocess.DEVNULL)
    # The checkpoints of fuzz_ckpt's table (deflate 0 and 1), written by the
    # test that loads them back; LeakSanitizer is off (libomp's allocations
    # in check's forked test processes).
    exe = os.path.join(sys.argv[1], "tests", "check_ckpt")
    if os.path.exists(exe):
        env = dict(os.environ, OFA_CKPT_SEED_DIR=os.path.abspath("corpus/ckpt"),
                   OFA_SRCDIR=os.path.abspath("../.."), ASAN_OPTIONS="detect_leaks=0")
        r = subprocess.run([exe], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            sys.exit(r.stdout.decode(errors="replace") + "make_seeds.py: check_ckpt failed")
    else:
        print("make_seeds.py: %s not built (make tests/check_ckpt): corpus/ckpt/seed_deflate*.h5 "
              "left as they are" % exe)
