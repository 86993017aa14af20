#!/bin/sh
# check_slurm.sh: the Slurm job scripts run as plain scripts (the #SBATCH
# lines are comments to sh): train.sbatch trains the tiny recipe and fills
# the measurement cache; devices.sbatch as array tasks 0 and 1 extracts and
# exports one device each, the last one writes report.md; a task beyond the
# device list fails with a message.
set -eu
B=${OFA_BUILDDIR:-.}
S=${OFA_SRCDIR:-.}
. "$S/tests/fashion-subset.sh"
need_fashion_mnist
T=$(mktemp -d /tmp/ofa-check-slurm-XXXXXX)
trap 'rm -rf "$T"' EXIT INT TERM
fail() { echo "check_slurm: $*" >&2; exit 1; }
mkdir -p "$T/bin" "$T/idx"
for p in datasets/ofa-data train/ofa-train extract/ofa-extract export/ofa-export \
    export/ofa-report; do
    ln -s "$(cd "$B" && pwd)/$p" "$T/bin/"
done
cp "$S"/tests/fixtures/recipes/tiny.ini "$S"/tests/fixtures/recipes/tiny-devices.ini "$T"/
# two devices that any subnet fits, a small export pass
cat >"$T/slurm.ini" <<'INI'
include = tiny.ini
[device.a]
latency_model = opcount
a_ms_per_mmac = 10
b_ms = 1
source = test figures
[device.b]
latency_model = opcount
a_ms_per_mmac = 5
b_ms = 1
source = test figures
[export]
epochs = 1
subset = 128
test_images = 200
calib_images = 64
[variant.jpeg]
jpeg_quality = 50
INI
fashion_subset "$T/idx" 2000 300 || fail "could not write the IDX subset"
export OFA_BIN="$T/bin" RUN="$T/run" RECIPE="$T/slurm.ini" DATA="$T/idx" SAMPLES=10
SLURM_CPUS_PER_TASK=2 sh "$S/recipes/slurm/train.sbatch" >"$T/train.out" 2>&1 ||
    { cat "$T/train.out"; fail "train.sbatch failed"; }
[ -s "$RUN/supernet.h5" ] && [ -s "$RUN/supernet.measurements.tsv" ] ||
    fail "train.sbatch left no supernet or measurements"
for task in 0 1; do
    SLURM_ARRAY_TASK_ID=$task sh "$S/recipes/slurm/devices.sbatch" >"$T/dev$task.out" 2>&1 ||
        { cat "$T/dev$task.out"; fail "devices.sbatch task $task failed"; }
done
for d in a b; do
    [ -s "$RUN/devices/$d/card.md" ] || fail "no card for device $d"
done
[ -s "$RUN/report.md" ] || fail "the last task wrote no report.md"
if SLURM_ARRAY_TASK_ID=2 sh "$S/recipes/slurm/devices.sbatch" >"$T/dev2.out" 2>&1; then
    fail "task 2 of a 2-device recipe succeeded"
fi
grep -q "fewer devices" "$T/dev2.out" || fail "task 2: $(cat "$T/dev2.out")"
echo "check_slurm: ok"
