#!/bin/sh
# check_pipeline.sh: recipes/pipeline.mk end to end on the tiny test recipe
# and a Fashion-MNIST subset: every artifact exists and loads, report.md agrees with
# the device's export.tsv and with ofa-run, a second invocation has nothing
# to do, touching the recipe re-runs nothing, an [export] change re-runs the
# export alone and a [train] change makes the supernet out of date.
set -eu
B=${OFA_BUILDDIR:-.}
S=${OFA_SRCDIR:-.}
. "$S/tests/fashion-subset.sh"
need_fashion_mnist
RUN=$(mktemp -d /tmp/ofa-check-pipeline-XXXXXX)
trap 'rm -rf "$RUN"' EXIT INT TERM
cp "$S"/tests/fixtures/recipes/tiny.ini "$S"/tests/fixtures/recipes/tiny-devices.ini \
    "$S"/tests/fixtures/recipes/tiny-export.ini "$RUN"/
fail() { echo "check_pipeline: $*" >&2; exit 1; }
# A small data set: the first 3000 training and 1000 test images.
mkdir -p "$RUN/idx" "$RUN/run"
fashion_subset "$RUN/idx" 3000 1000 || fail "could not write the IDX subset"
"$B/datasets/ofa-data" prepare "$RUN/idx" --class-names fashion-mnist -v 500 -q \
    -o "$RUN/run/data.h5" || fail "ofa-data prepare failed"
# (as a user would run it: not as a sub-make of make check, whose flags and
# job server would add make's own messages)
pipeline() {
    env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s --no-print-directory -f "$S/recipes/pipeline.mk" NAME=tiny RECIPE="$RUN/tiny-export.ini" \
        RUN="$RUN/run" BINDIR="$B" DEVICES=tiny-mcu SAMPLES=12 TRAIN_THREADS=2 \
        TRAIN_FLAGS="-q --set train.epochs=1" EXTRACT_FLAGS="--generations 10 --top 2" \
        EXPORT_FLAGS="--set export.subset=256 --set export.test_images=0" "$@"
}
pipeline >"$RUN/out.txt" 2>&1 || { cat "$RUN/out.txt"; fail "the pipeline failed"; }
D="$RUN/run/devices/tiny-mcu"
for f in "$RUN/run/data.h5" "$RUN/run/supernet.h5" "$RUN/run/train.tsv" "$RUN/run/report.md" \
    "$D/subnet.h5" "$D/model.h5" "$D/model.onnx" "$D/model.c" "$D/model.h" "$D/card.md"; do
    [ -s "$f" ] || fail "$f is missing or empty"
done
# report.md shows the device's int8 accuracy, which ofa-run reproduces
acc=$(awk -F '\t' '$1 == "acc_int8" { printf "%.2f%%", 100 * $2 }' "$D/export.tsv")
grep -q "| $acc |" "$RUN/run/report.md" || fail "report.md does not show int8 accuracy $acc"
"$B/export/ofa-run" -q "$D/model.h5" "$RUN/run/data.h5" >"$RUN/run.txt" ||
    fail "ofa-run failed on model.h5"
grep -q "accuracy $acc on 1000 images (int8)" "$RUN/run.txt" ||
    fail "ofa-run: $(cat "$RUN/run.txt"), the card: $acc"
# ofa-extract --evaluate from the command line: a header and one row per subnet
"$B/extract/ofa-extract" -j 2 -s "$RUN/run/supernet.h5" -d "$RUN/run/data.h5" --evaluate \
    --split test largest smallest >"$RUN/eval.tsv" || fail "ofa-extract --evaluate failed"
awk -F '\t' 'NR == 1 { ok = $1 == "name" && $5 == "accuracy_test" }
    NR > 1 { ok = ok && NF == 5 && $5 >= 0 && $5 <= 1; names = names $1 " " }
    END { exit !(ok && NR == 3 && names == "largest smallest ") }' "$RUN/eval.tsv" ||
    { cat "$RUN/eval.tsv"; fail "ofa-extract --evaluate: not a header and 2 rows"; }
# modification times of the stages' outputs
mtimes() { stat -c '%n %y' "$RUN/run/supernet.h5" "$RUN/run/supernet.measurements.tsv" \
    "$D/subnet.h5" "$D/card.md" "$RUN/run/report.md"; }
before=$(mtimes)
again() {
    pipeline >"$RUN/again.txt" 2>&1 || { cat "$RUN/again.txt"; fail "$1: the pipeline failed"; }
}
# nothing to do the second time, nor after touching the recipe
again "second invocation"
[ ! -s "$RUN/again.txt" ] || { cat "$RUN/again.txt"; fail "a second invocation ran something"; }
[ "$(mtimes)" = "$before" ] || fail "a second invocation rewrote files"
sleep 1
touch "$RUN/tiny-export.ini" "$RUN/tiny-devices.ini" "$RUN/tiny.ini"
again "after touch"
[ "$(mtimes)" = "$before" ] || fail "touching the recipe re-ran a stage"
# an [export] change: the export and the report again, nothing before them
printf '\n[export]\nalpha = 0.5\n' >>"$RUN/tiny-export.ini"
again "after an [export] change"
after=$(mtimes)
for f in supernet.h5 supernet.measurements.tsv subnet.h5; do
    [ "$(echo "$after" | grep "/$f ")" = "$(echo "$before" | grep "/$f ")" ] ||
        fail "an [export] change re-ran the stage that writes $f"
done
for f in card.md report.md; do
    [ "$(echo "$after" | grep "/$f ")" != "$(echo "$before" | grep "/$f ")" ] ||
        fail "an [export] change did not re-run the stage that writes $f"
done
# a [train] change (in an included file) makes the supernet out of date;
# only the recipe part is remade here, not the training
printf '\n[train]\nlabel_smoothing = 0.05\n' >>"$RUN/tiny.ini"
pipeline "$RUN/run/recipe.train" >/dev/null 2>&1 || fail "could not remake recipe.train"
[ "$RUN/run/recipe.train" -nt "$RUN/run/supernet.h5" ] ||
    fail "a [train] change left the supernet up to date"
echo "check_pipeline: ok"
