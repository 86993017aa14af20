#!/bin/sh
# check_mpi.sh (builds configured --with-mpi): data-parallel training.
#  1. mpirun -np 2 trains the tiny recipe; one process with the same global
#     batch and the same 2 shards (each with its own BN statistics, as each
#     rank has) trains it too: the losses of every step agree to 1e-4
#     relative, the validation accuracies within noise.
#  2. A checkpoint of 2 shards resumes on one process; on 3 it is refused.
#  3. A rank killed mid-run takes the job down (non-zero exit, no hang);
#  4. so does a rank that hangs (stopped), through the others' watchdog;
#  5. --predict-scaling prints its table, and refuses to run under mpirun.
set -eu
B=${OFA_BUILDDIR:-.}
S=${OFA_SRCDIR:-.}
MPIRUN=${MPIRUN:-mpirun}
if [ ! -d /usr/share/datasets/fashion-mnist ]; then
    echo "dataset-fashion-mnist is not installed: skipped"
    exit 77
fi
command -v "$MPIRUN" >/dev/null 2>&1 || { echo "$MPIRUN is missing: skipped"; exit 77; }
T=$(mktemp -d /tmp/ofa-check-mpi-XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT INT TERM
fail() { echo "check_mpi: $*" >&2; exit 1; }
# CI runs as root, which Open MPI refuses unless told.
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_ALLOW_RUN_AS_ROOT OMPI_ALLOW_RUN_AS_ROOT_CONFIRM
# no network transports needed on one host
OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_MCA_btl OMPI_MCA_btl_vader_single_copy_mechanism
mpi() { n=$1; shift; "$MPIRUN" -np "$n" --oversubscribe "$@"; }
cp "$S"/tests/fixtures/recipes/tiny.ini "$T"/
. "$S/tests/fashion-subset.sh"
mkdir -p "$T/idx"
fashion_subset "$T/idx" 3000 300 || fail "could not write the IDX subset"
"$B/datasets/ofa-data" prepare "$T/idx" -v 300 -q -o "$T/data.h5" || fail "ofa-data failed"
set -- -q -j 1 -d "$T/data.h5" --set train.subset=1024 --set train.epochs=2 \
    --set train.log_every=1
train="$B/train/ofa-train"

# 1. two processes against one with the same shards
"$train" "$@" -r "$T/tiny.ini" --set train.shards=2 -o "$T/one.h5" --log "$T/one.tsv" \
    >"$T/one.out" 2>&1 || { cat "$T/one.out"; fail "the one-process run failed"; }
mpi 2 "$train" "$@" -r "$T/tiny.ini" -o "$T/two.h5" --log "$T/two.tsv" \
    >"$T/two.out" 2>&1 || { cat "$T/two.out"; fail "the two-process run failed"; }
grep -q '^shards = 2$' "$T/two.out" 2>/dev/null ||
    h5dump -d /recipe "$T/two.h5" | grep -q 'shards = 2' ||
    fail "the two-process run did not record shards = 2 in its recipe"
awk -F'\t' '
    function rel(a, b) { d = a - b; if (d < 0) d = -d; m = (a < 0 ? -a : a); if (m < 1e-12) return d; return d / m }
    FNR == 1 { next }
    NR == FNR { if ($1 == "step") { l[$3] = $7; k[$3] = $8 } else { va[$2] = $10; vs[$2] = $11 } ; next }
    $1 == "step" {
        n++
        if (!($3 in l)) { print "step " $3 " is missing from the one-process log"; bad = 1; next }
        if (rel($7, l[$3]) > 1e-4 || ($8 != "nan" && rel($8, k[$3]) > 1e-4)) {
            printf "step %s: loss %s kd %s with 2 processes, %s %s with one\n", $3, $7, $8, l[$3], k[$3]
            bad = 1
        }
        e = rel($7, l[$3]); if (e > worst) worst = e
    }
    $1 == "epoch" {
        d = $10 - va[$2]; if (d < 0) d = -d
        d2 = $11 - vs[$2]; if (d2 < 0) d2 = -d2
        printf "epoch %s: validation largest %s / %s, smallest %s / %s (2 processes / one)\n", $2, $10, va[$2], $11, vs[$2]
        if (d > 0.02 || d2 > 0.02) bad = 1
    }
    END {
        if (n < 60) { print "only " n " step rows"; bad = 1 }
        printf "%d steps, largest relative loss difference %.2e\n", n, worst
        exit bad
    }' "$T/one.tsv" "$T/two.tsv" || fail "the two-process run does not follow the one-process run"
# the cost columns: every process's shards counted once (images_seen, train_gflop)
[ "$(tail -n 1 "$T/two.tsv" | cut -f 13,15)" = "$(tail -n 1 "$T/one.tsv" | cut -f 13,15)" ] ||
    fail "images_seen and train_gflop: $(tail -n 1 "$T/two.tsv" | cut -f 13,15) with 2 processes, $(tail -n 1 "$T/one.tsv" | cut -f 13,15) with one"

# 2. resume a 2-shard checkpoint on one process; 3 cannot share 2 shards
mpi 2 "$train" "$@" -r "$T/tiny.ini" -o "$T/r.h5" --log "$T/r.tsv" --stop-after 10 \
    >"$T/r.out" 2>&1 && fail "--stop-after did not stop the two-process run"
[ -f "$T/r.h5.part" ] || { cat "$T/r.out"; fail "no checkpoint after --stop-after"; }
status=0
mpi 3 "$train" "$@" --resume -o "$T/r.h5" --log "$T/r.tsv" >"$T/r3.out" 2>&1 || status=$?
[ $status -ne 0 ] || fail "3 processes resumed a 2-shard checkpoint"
grep -q "train.shards is 2: 3 MPI processes cannot share them evenly" "$T/r3.out" ||
    { cat "$T/r3.out"; fail "no clear message for 3 processes on 2 shards"; }
"$train" "$@" --resume -o "$T/r.h5" --log "$T/r.tsv" >"$T/r1.out" 2>&1 ||
    { cat "$T/r1.out"; fail "one process could not resume the 2-shard checkpoint"; }
h5diff "$T/two.h5" "$T/r.h5" /optim /optim >/dev/null 2>&1 ||
    fail "the run resumed on one process ended elsewhere than the two-process run (/optim)"

# 3. a rank that dies ends the job; 4. so does one that hangs (stopped),
# through the other's watchdog. end_a_rank NAME SIGNAL [ofa-train options]:
# start 2 processes, send SIGNAL to one rank after 4 s, and wait (60 s at
# most) for the job to end; sets status and waited. The runs are given far
# more epochs than they can finish in that time (50 took under 4 s on an
# AMD EPYC of 2026), so that the signal finds them running.
end_a_rank() {
    name=$1 sig=$2
    shift 2
    mpi 2 "$train" "$@" -o "$T/$name.h5" >"$T/$name.out" 2>&1 &
    job=$!
    sleep 4
    victim=$(pgrep -f "^[^ ]*ofa-train .*$T/$name.h5" | tail -1) # a rank, not mpirun
    [ -n "$victim" ] || fail "$name: no rank to signal"
    kill -"$sig" "$victim"
    waited=0
    while kill -0 "$job" 2>/dev/null; do
        sleep 1
        waited=$((waited + 1))
        [ $waited -lt 60 ] || { kill -KILL "$victim" "$job"; fail "$name: the job still runs 60 s after SIG$sig to a rank"; }
    done
    kill -KILL "$victim" 2>/dev/null || true
    status=0
    wait "$job" || status=$?
    [ $status -ne 0 ] || fail "$name: the job exited 0 after SIG$sig to a rank"
}
end_a_rank dead KILL "$@" -r "$T/tiny.ini" --set train.epochs=100000
echo "check_mpi: a killed rank ended the job in ${waited} s (exit $status)"
end_a_rank hang STOP "$@" -r "$T/tiny.ini" --set train.epochs=100000 --mpi-timeout 5
grep -q "an MPI collective has not completed in 5 s" "$T/hang.out" ||
    { cat "$T/hang.out"; fail "no watchdog message"; }
echo "check_mpi: a hung rank ended the job in ${waited} s (exit $status)"
# 5. the scaling model: a TSV for 1, 2, 4, ... ranks; one process only
"$train" --predict-scaling -j 1 -r "$T/tiny.ini" -d "$T/data.h5" --net-bandwidth 1 \
    --net-latency 10 >"$T/scale.tsv" 2>"$T/scale.err" || { cat "$T/scale.err"; fail "--predict-scaling failed"; }
awk -F'\t' '$1 == "1" && $7 == "1.00" { one = 1 } $1 == "2" && $4 > 0 && $7 > 1 { two = 1 }
    END { exit !(one && two) }' "$T/scale.tsv" || { cat "$T/scale.tsv"; fail "--predict-scaling: no sensible rows"; }
status=0
mpi 2 "$train" --predict-scaling -j 1 -r "$T/tiny.ini" -d "$T/data.h5" >"$T/scale2.out" 2>&1 || status=$?
[ $status -ne 0 ] && grep -q "profiles one process" "$T/scale2.out" ||
    { cat "$T/scale2.out"; fail "--predict-scaling under mpirun was not refused"; }
echo "check_mpi: ok"
