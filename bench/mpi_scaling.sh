#!/bin/sh
# mpi_scaling.sh: MPI data-parallel training on this machine (an ofa built
# --with-mpi): images/s with 1 and 2 processes of 1 OpenMP thread each, on
# the same global batch and the same 2 shards (the same arithmetic), the
# share of the step spent in MPI_Allreduce, and ofa-train --predict-scaling's
# model for the same recipe, for comparison.
#
#   bench/mpi_scaling.sh [BUILDDIR]      (make bench-mpi)
#
# STEPS (default 60) steps per run, measured after the first TSV row;
# RECIPE (default quick, in the sandwich: train.schedule=bignas);
# NET_BW (GB/s) and NET_LAT (us): the link the model assumes (default 5 and
# 1: shared memory, an assumption, not a measurement).
set -eu
B=${1:-.}
S=$(cd "$(dirname "$0")/.." && pwd)
MPIRUN=${MPIRUN:-mpirun}
STEPS=${STEPS:-60}
RECIPE=${RECIPE:-$S/recipes/quick.ini}
NET_BW=${NET_BW:-5}
NET_LAT=${NET_LAT:-1}
command -v "$MPIRUN" >/dev/null || { echo "mpi_scaling: $MPIRUN not found (Debian: openmpi-bin)"; exit 1; }
T=$(mktemp -d /tmp/ofa-bench-mpi-XXXXXX)
trap 'rm -rf "$T"' EXIT INT TERM
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader
export OMPI_ALLOW_RUN_AS_ROOT OMPI_ALLOW_RUN_AS_ROOT_CONFIRM OMPI_MCA_btl
"$B/datasets/ofa-data" prepare fashion-mnist -q -o "$T/data.h5"
every=$((STEPS / 6))
set -- -j 1 -r "$RECIPE" -d "$T/data.h5" --set train.schedule=bignas --set train.shards=2 \
    --set train.log_every=$every --stop-after "$STEPS"
# images/s: the mean of the step rows after the first (warm-up)
rate() { awk -F'\t' '$1 == "step" { n++; if (n > 1) { s += $9; k++ } } END { printf "%.1f", k ? s / k : 0 }' "$1"; }
"$B/train/ofa-train" "$@" -o "$T/one.h5" --log "$T/one.tsv" >/dev/null 2>&1 || true
r1=$(rate "$T/one.tsv")
"$MPIRUN" -np 2 "$B/train/ofa-train" "$@" -o "$T/two.h5" --log "$T/two.tsv" >/dev/null 2>"$T/two.err" || true
r2=$(rate "$T/two.tsv")
comm=$(grep -o 'spent .* in MPI_Allreduce ([0-9.]*%)' "$T/two.err" | tail -1)
batch=$("$B/train/ofa-train" --print-recipe -r "$RECIPE" | awk -F' = ' '$1 == "batch_size" { print $2; exit }')
echo "recipe $(basename "$RECIPE") (bignas sandwich), batch $batch, $STEPS steps, 1 OpenMP thread per process"
echo "(images/s as in the TSV log: every subnet's images, 4 per batch image in the sandwich)"
echo "1 process:   $r1 images/s"
echo "2 processes: $r2 images/s ($(echo "$r2 $r1" | awk '{ printf "%.2f", ($2 > 0 ? $1 / $2 : 0) }')x)"
echo "2 processes: rank 0 $comm"
echo "== model (ofa-train --predict-scaling, link $NET_BW GB/s, $NET_LAT us)"
"$B/train/ofa-train" --predict-scaling -j 1 -r "$RECIPE" -d "$T/data.h5" \
    --set train.schedule=bignas --net-bandwidth "$NET_BW" --net-latency "$NET_LAT"
