#!/bin/sh
# check_fault.sh: faults the tools must survive without losing or damaging
# files.
# 1. SIGTERM at several moments of ofa-extract and of ofa-export: no partial
#    or temporary file remains, and a rerun writes the same files as an
#    uninterrupted run.
# 2. A full disk (a small tmpfs) during a checkpoint of ofa-train and during
#    an export, and a read-only output directory: an error naming the file,
#    a non-zero exit, the previous files intact bit for bit, and (for the
#    checkpoint) a resume that ends where an uninterrupted run ends.
# Part 2 needs root and a private mount namespace (unshare -m); elsewhere it
# is skipped with a message, and part 1 still runs.
set -eu
B=${OFA_BUILDDIR:-.}
S=${OFA_SRCDIR:-.}
. "$S/tests/fashion-subset.sh"
need_fashion_mnist
need_h5diff
# Part 2 mounts file systems: in a mount namespace of our own, so that
# nothing is visible outside and everything goes when the script ends.
if [ -z "${OFA_FAULT_NS:-}" ] && [ "$(id -u)" = 0 ] && unshare -m true 2>/dev/null; then
    OFA_FAULT_NS=1 exec unshare -m sh "$0" "$@"
fi
T=$(mktemp -d /tmp/ofa-check-fault-XXXXXX)
cleanup() {
    if [ -n "${OFA_FAULT_NS:-}" ]; then
        umount "$T/full" 2>/dev/null || true
    fi
    [ -n "${KEEP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT INT TERM
fail() { echo "check_fault: $*" >&2; exit 1; }
cp "$S"/tests/fixtures/recipes/tiny.ini "$S"/tests/fixtures/recipes/tiny-devices.ini \
    "$S"/tests/fixtures/recipes/tiny-export.ini "$T"/
mkdir -p "$T/idx"
fashion_subset "$T/idx" 2000 300 || fail "could not write the IDX subset"
"$B/datasets/ofa-data" prepare "$T/idx" -v 300 -q -o "$T/data.h5" || fail "ofa-data failed"
TRAIN="$B/train/ofa-train -q -j 2 -d $T/data.h5 --set train.subset=1024"
$TRAIN -r "$T/tiny-export.ini" -o "$T/supernet.h5" >"$T/train.out" 2>&1 ||
    { cat "$T/train.out"; fail "training failed"; }

# Temporary or staged files a writer left behind in a directory.
leftovers() { find "$1" -name '*.tmp.*' -o -name '.export.*' -o -name '*.image.*'; }
# Milliseconds since the epoch.
now_ms() { echo $(($(date +%s%N) / 1000000)); }
sleep_ms() { sleep "$(echo "$1" | awk '{ printf "%.3f", $1 / 1000 }')"; }

# ---- 1. SIGTERM ----------------------------------------------------------------
# The runners start their tool through $EXEC, which the background jobs below
# set to "exec": the job's pid is then the tool's own, so that the SIGTERM
# reaches the tool rather than a subshell that would leave it running.
EXEC=
extract() { # OUTDIR
    $EXEC "$B/extract/ofa-extract" -j 2 -q -s "$T/supernet.h5" -d "$T/data.h5" -r "$T/tiny-export.ini" \
        -D tiny-mcu --samples 12 --generations 10 --top 2 -m "$1/meas.tsv" -o "$1/subnet.h5"
}
export_() { # OUTDIR [OPTION...]
    out=$1
    shift
    $EXEC "$B/export/ofa-export" -j 2 -q -s "$T/supernet.h5" -n "$T/x-ref/subnet.h5" -d "$T/data.h5" \
        -r "$T/tiny-export.ini" -o "$out" --set export.subset=256 --set export.test_images=0 "$@"
}
# The files a run writes that do not depend on timing (tiny-mcu's latency is
# an op-count model), compared between a resumed and an uninterrupted run.
same_extract() { # A B
    for f in pareto.tsv meas.tsv; do
        cmp -s "$1/$f" "$2/$f" || return 1
    done
    # subnet.txt: all but the search's wall time
    [ "$(grep -v '^search' "$1/subnet.txt")" = "$(grep -v '^search' "$2/subnet.txt")" ] || return 1
    h5diff -q "$1/subnet.h5" "$2/subnet.h5" >/dev/null 2>&1
}
same_export() { # A B
    for f in model.c model.h model.onnx; do
        cmp -s "$1/$f" "$2/$f" || return 1
    done
    h5diff -q "$1/model.h5" "$2/model.h5" >/dev/null 2>&1
}
# stage NAME RUNNER SAME: reference run, then SIGTERM at 5 moments spread
# over its duration, each followed by a check and a rerun; at least one of
# the signals must land before the run ends (the others may come too late
# on a machine busier during the reference run). When none does, the round
# is repeated with the moments spread over a quarter of the span (3 times).
sigterm_stage() {
    name=$1 runner=$2 same=$3
    mkdir -p "$T/$name-ref"
    t0=$(now_ms)
    $runner "$T/$name-ref" >"$T/$name-ref.out" 2>&1 || { cat "$T/$name-ref.out"; fail "$name failed"; }
    span=$(($(now_ms) - t0))
    landed=0 round=0
    while [ $landed -eq 0 ] && [ $round -lt 4 ]; do
    [ $round -eq 0 ] || { span=$((span / 4)); echo "$name: every SIGTERM came after the run had ended: again over $span ms"; }
    round=$((round + 1))
    for pct in 10 25 40 55 70; do
        d="$T/$name-$round-$pct"
        mkdir -p "$d"
        (EXEC=exec; $runner "$d") >"$d.out" 2>&1 &
        pid=$!
        sleep_ms $((span * pct / 100))
        kill -TERM "$pid" 2>/dev/null || true
        status=0
        wait "$pid" || status=$?
        ! pgrep -f -- "$d/" >/dev/null || fail "$name: a process still writes to $d after SIGTERM"
        [ -z "$(leftovers "$d")" ] || fail "$name, SIGTERM at $pct%: left $(leftovers "$d")"
        if [ $status -ne 0 ]; then # killed: a rerun must complete from what it left
            landed=$((landed + 1))
            $runner "$d" >>"$d.out" 2>&1 || { cat "$d.out"; fail "$name: rerun after SIGTERM at $pct% failed"; }
        fi
        $same "$T/$name-ref" "$d" || fail "$name: the run after SIGTERM at $pct% differs from the reference"
        echo "$name: SIGTERM at $pct% ($((span * pct / 100)) ms, exit status $status): ok"
    done
    done
    [ $landed -gt 0 ] || fail "$name: every SIGTERM came after the run had ended"
}
sigterm_stage x extract same_extract
sigterm_stage e export_ same_export

# ---- 2. Full disk and read-only output -----------------------------------------
if [ -z "${OFA_FAULT_NS:-}" ] || ! mkdir -p "$T/full" ||
    ! mount -t tmpfs -o size=64m tmpfs "$T/full" 2>/dev/null; then
    echo "check_fault: no private tmpfs (needs root and unshare -m): disk-full part skipped"
    exit 0
fi
sz() { stat -c %s "$1"; }
# (a) ofa-train: room for one checkpoint and a half; the second write fails.
# The reference: the same run stopped after its first epoch (32 steps).
$TRAIN -r "$T/tiny-export.ini" -o "$T/one.h5" --stop-after=32 >/dev/null 2>&1 || [ $? -eq 2 ] ||
    fail "the one-epoch reference run failed"
ck=$(sz "$T/one.h5.part")
mount -o remount,size=$((ck * 3 / 2 / 4096 * 4096 + 4096)) "$T/full"
status=0
$TRAIN -r "$T/tiny-export.ini" -o "$T/full/s.h5" --log "$T/s.tsv" \
    >"$T/full.out" 2>&1 || status=$?
[ $status -ne 0 ] || fail "ofa-train on a full disk: exit status 0"
grep -q "s.h5.part.*No space left on device" "$T/full.out" ||
    { cat "$T/full.out"; fail "ofa-train on a full disk: no message naming the checkpoint and ENOSPC"; }
[ -z "$(leftovers "$T/full")" ] || fail "ofa-train on a full disk left $(leftovers "$T/full")"
h5diff "$T/one.h5.part" "$T/full/s.h5.part" /params /params >/dev/null 2>&1 ||
    fail "the checkpoint before the full disk is not the one-epoch run's"
mount -o remount,size=64m "$T/full"
$TRAIN --resume -o "$T/full/s.h5" --log "$T/s.tsv" >>"$T/full.out" 2>&1 ||
    { cat "$T/full.out"; fail "resume after the full disk failed"; }
h5diff "$T/supernet.h5" "$T/full/s.h5" /params /params >/dev/null 2>&1 ||
    fail "the resumed run does not end where the uninterrupted run ends"
echo "ofa-train, disk full during a checkpoint ($ck bytes): $(grep -o 'No space left on device' "$T/full.out" | head -1), resumed: ok"
# (b) ofa-export: a complete export, then no room for a second one.
rm -f "$T/full/s.h5"
mkdir -p "$T/full/e"
export_ "$T/full/e" >"$T/e-full.out" 2>&1 || { cat "$T/e-full.out"; fail "export to the tmpfs failed"; }
(cd "$T/full/e" && md5sum ./*) >"$T/e.md5"
used=$(du -sk "$T/full" | cut -f1)
mount -o remount,size=$(((used + 16) * 1024)) "$T/full"
status=0
export_ "$T/full/e" --set export.lr=0.02 >>"$T/e-full.out" 2>&1 || status=$?
[ $status -ne 0 ] || fail "ofa-export on a full disk: exit status 0"
grep -q "No space left on device.*nothing was replaced\|nothing was replaced" "$T/e-full.out" ||
    { cat "$T/e-full.out"; fail "ofa-export on a full disk: no message"; }
[ -z "$(leftovers "$T/full")" ] || fail "ofa-export on a full disk left $(leftovers "$T/full")"
(cd "$T/full/e" && md5sum -c --quiet "$T/e.md5") || fail "ofa-export on a full disk changed the previous export"
echo "ofa-export, disk full: $(tail -1 "$T/e-full.out"): ok"
# (c) read-only: both tools refuse with a message, nothing changes.
mount -o remount,size=64m,ro "$T/full"
status=0
export_ "$T/full/e" >"$T/ro.out" 2>&1 || status=$?
[ $status -ne 0 ] || fail "ofa-export into a read-only directory: exit status 0"
grep -q "Read-only file system" "$T/ro.out" || { cat "$T/ro.out"; fail "ofa-export read-only: no message"; }
(cd "$T/full/e" && md5sum -c --quiet "$T/e.md5") || fail "read-only export changed files"
status=0
$TRAIN -r "$T/tiny-export.ini" -o "$T/full/r.h5" >"$T/ro.out" 2>&1 || status=$?
[ $status -ne 0 ] || fail "ofa-train into a read-only directory: exit status 0"
grep -q "/full/r\..*Read-only file system" "$T/ro.out" || { cat "$T/ro.out"; fail "ofa-train read-only: no message"; }
echo "read-only output: ofa-export and ofa-train refuse with a message: ok"
echo "check_fault: ok"
