#!/bin/sh
# memcheck.sh: the pipeline (recipes/pipeline.mk) on the tiny test recipe and
# a Fashion-MNIST subset with every tool under valgrind's memcheck: ofa-data,
# ofa-train, ofa-extract (measurements and search), ofa-export, then ofa-run
# on the exported model. Any invalid read or write, use of an uninitialised
# value, or definite/indirect leak fails it. ("Possibly lost" blocks are the
# OpenMP runtime's thread stacks, which live until exit.)
#
#   tests/memcheck.sh [BUILDDIR]      (default: the current directory)
#
# valgrind does not know AVX-512: use a build configured with
# --disable-native (CI: the --disable-openmp --disable-native build). A few
# minutes; not part of make check.
set -eu
B=$(cd "${1:-.}" && pwd)
S=$(cd "$(dirname "$0")/.." && pwd)
command -v valgrind >/dev/null 2>&1 || { echo "memcheck: valgrind is not installed" >&2; exit 1; }
[ -d /usr/share/datasets/fashion-mnist ] ||
    { echo "memcheck: dataset-fashion-mnist is not installed" >&2; exit 1; }
if grep -q -- '-march=native' "$B/Makefile" 2>/dev/null; then
    echo "memcheck: $B is built with -march=native, which valgrind may not run; configure it with --disable-native" >&2
    exit 1
fi
RUN=$(mktemp -d /tmp/ofa-memcheck-XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$RUN"' EXIT INT TERM
fail() { echo "memcheck: $*" >&2; exit 1; }
cp "$S"/tests/fixtures/recipes/tiny.ini "$S"/tests/fixtures/recipes/tiny-devices.ini \
    "$S"/tests/fixtures/recipes/tiny-export.ini "$RUN"/
mkdir -p "$RUN/idx" "$RUN/run"
. "$S/tests/fashion-subset.sh"
fashion_subset "$RUN/idx" 1000 300 || fail "could not write the IDX subset"
# The programs restart themselves with OPENBLAS_CORETYPE set when OpenBLAS does
# not know the CPU (lib/blas.c), which under valgrind could pick AVX-512
# kernels that valgrind does not run; the generic kernels it runs everywhere.
export OPENBLAS_CORETYPE=Prescott
V="valgrind -q --leak-check=full --show-possibly-lost=no --errors-for-leak-kinds=definite,indirect --error-exitcode=99"
start=$(date +%s)
env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s --no-print-directory -f "$S/recipes/pipeline.mk" \
    NAME=tiny RECIPE="$RUN/tiny-export.ini" RUN="$RUN/run" DATA="$RUN/idx" BINDIR="$B" \
    DEVICES=tiny-mcu SAMPLES=10 TRAIN_THREADS=2 \
    OFA_DATA="$V $B/datasets/ofa-data" OFA_TRAIN="$V $B/train/ofa-train" \
    OFA_EXTRACT="$V $B/extract/ofa-extract" OFA_EXPORT="$V $B/export/ofa-export" \
    TRAIN_FLAGS="-q --set train.epochs=1 --set train.subset=256" \
    EXTRACT_FLAGS="--generations 5 --top 1" \
    EXPORT_FLAGS="--set export.subset=128 --set export.test_images=0" \
    >"$RUN/pipeline.out" 2>&1 || { cat "$RUN/pipeline.out"; fail "the pipeline under memcheck failed"; }
$V "$B/export/ofa-run" -q "$RUN/run/devices/tiny-mcu/model.h5" "$RUN/run/data.h5" \
    >"$RUN/run.out" 2>&1 || { cat "$RUN/run.out"; fail "ofa-run under memcheck failed"; }
grep -q '^==' "$RUN/pipeline.out" "$RUN/run.out" &&
    { grep -h '^==' "$RUN/pipeline.out" "$RUN/run.out" | head -40; fail "memcheck reported errors"; }
echo "memcheck: ofa-data, ofa-train, ofa-extract, ofa-export and ofa-run clean ($(($(date +%s) - start)) s)"
