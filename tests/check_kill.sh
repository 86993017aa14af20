#!/bin/sh
# check_kill.sh: SIGKILL ofa-train at 5 random moments (checkpoints every
# 0.3 s, so some kills land during a write), resume each time, and compare
# the finished supernet's parameters and optimizer state with an
# uninterrupted run's, bit for bit (same recipe, seed and thread count).
set -eu
B=${OFA_BUILDDIR:-.}
S=${OFA_SRCDIR:-.}
. "$S/tests/fashion-subset.sh"
need_fashion_mnist
need_h5diff
T=$(mktemp -d /tmp/ofa-check-kill-XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT INT TERM
fail() { echo "check_kill: $*" >&2; exit 1; }
cp "$S"/tests/fixtures/recipes/tiny.ini "$T"/
mkdir -p "$T/idx"
fashion_subset "$T/idx" 3000 300 || fail "could not write the IDX subset"
"$B/datasets/ofa-data" prepare "$T/idx" -v 300 -q -o "$T/data.h5" || fail "ofa-data failed"
# 8 epochs of 2048 images: 512 steps, several seconds
set -- -q -j 2 -d "$T/data.h5" --set train.subset=2048 --set train.epochs=8 \
    --set train.checkpoint_minutes=0.005
train() { "$B/train/ofa-train" "$@"; }
start=$(date +%s%N)
train "$@" -r "$T/tiny.ini" -o "$T/ref.h5" >"$T/ref.out" 2>&1 || { cat "$T/ref.out"; fail "reference run failed"; }
span=$((($(date +%s%N) - start) / 1000000)) # ms
[ "$span" -gt 0 ] || span=1000
# Kill times 0.4 s plus a draw from the first sixth of the reference run's
# duration (seeded: reproducible): after the first checkpoints, and all five
# before the run can finish. The reference run's time is only an estimate
# (make -j check runs other tests beside it, so the runs that follow may be
# faster): when the run finishes before the fifth kill, the whole sequence
# starts again with draws half as long.
seed=12345
attempt=0
while :; do
    attempt=$((attempt + 1))
    rm -f "$T/run.h5" "$T/run.h5.part"
    kills=0 resumed=0
    while [ ! -f "$T/run.h5" ] && [ $kills -lt 5 ]; do
        seed=$(((seed * 1103515245 + 12345) % 2147483648))
        ms=$((400 + seed % (span / 6 + 1)))
        # ofa-train itself in the background (not a function's subshell),
        # so that the kill reaches it
        if [ -f "$T/run.h5.part" ]; then
            resumed=$((resumed + 1))
            "$B/train/ofa-train" "$@" --resume -o "$T/run.h5" >>"$T/run.out" 2>&1 &
        else
            "$B/train/ofa-train" "$@" -r "$T/tiny.ini" -o "$T/run.h5" >>"$T/run.out" 2>&1 &
        fi
        pid=$!
        sleep "$(echo "$ms" | awk '{ printf "%.3f", $1 / 1000 }')"
        if kill -KILL "$pid" 2>/dev/null; then
            kills=$((kills + 1))
            echo "killed after $ms ms"
        fi
        wait "$pid" 2>/dev/null || true
    done
    [ $kills -lt 5 ] || break
    [ $attempt -lt 6 ] || fail "only $kills kills landed before the run finished, in each of $attempt attempts"
    span=$((span / 2))
    echo "the run finished after $kills kills: again, with kill times drawn from ${span} ms / 6"
done
[ $resumed -ge 3 ] || fail "only $resumed of the killed runs had a checkpoint to resume"
# finish
while [ ! -f "$T/run.h5" ]; do
    if [ -f "$T/run.h5.part" ]; then
        train "$@" --resume -o "$T/run.h5" >>"$T/run.out" 2>&1 || { cat "$T/run.out"; fail "resume failed"; }
    else
        train "$@" -r "$T/tiny.ini" -o "$T/run.h5" >>"$T/run.out" 2>&1 || { cat "$T/run.out"; fail "restart failed"; }
    fi
done
for g in /params /optim; do
    h5diff "$T/ref.h5" "$T/run.h5" "$g" "$g" >"$T/diff.txt" 2>&1 ||
        { head -20 "$T/diff.txt"; fail "$g differs from the uninterrupted run after $kills kills"; }
done
echo "check_kill: ok ($kills kills, $resumed of them in resumed runs)"
