#!/bin/sh
# check_study.sh: recipes/study/study.mk end to end on tiny recipes
# (tests/fixtures/recipes/study: deps-050 with 2 seeds, bignas, ofa-ps) and a
# Fashion-MNIST subset, 5 random subnets, one device: the tables agree with
# the input TSVs (mean of the random subnets, seed spread, images, GFLOP, the
# device's test accuracy), docs/study.md's block is replaced and the rest
# kept, a second invocation does nothing, an interrupted training resumes
# from its .part; the summariser's hypervolume on a hand-computed input and
# its errors on missing and malformed inputs; the real study recipes' planned
# budgets are those their comments state.
set -eu
B=${OFA_BUILDDIR:-.}
S=${OFA_SRCDIR:-.}
. "$S/tests/fashion-subset.sh"
need_fashion_mnist
if [ ! -x /usr/bin/python3 ]; then
    echo "/usr/bin/python3 is not installed: skipped"
    exit 77
fi
T=$(mktemp -d /tmp/ofa-check-study-XXXXXX)
trap 'rm -rf "$T"' EXIT INT TERM
fail() { echo "check_study: $*" >&2; exit 1; }
SUM="$S/recipes/study/summarise.py"
mkdir -p "$T/idx" "$T/docs"
cp "$S/docs/study.md" "$T/docs/study.md"
fashion_subset "$T/idx" 3000 1000 || fail "could not write the IDX subset"

# One thread each: on a loaded 2-core machine, OpenMP's waiting threads cost
# more than these tiny networks' work.
study() {
    env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s --no-print-directory \
        -f "$S/recipes/study/study.mk" RUN="$T/run" BINDIR="$B" \
        STUDY_RECIPES="$S/tests/fixtures/recipes/study" DEVICES=tiny-mcu RANDOM=5 SAMPLES=12 \
        TRAIN_THREADS=1 THREADS=1 TRAIN_FLAGS=-q EXTRACT_FLAGS="--generations 10 --top 2" \
        DATA="$T/idx" DATA_FLAGS="--class-names fashion-mnist -v 500 -q" DOC="$T/docs/study.md" "$@"
}
study doc >"$T/out.txt" 2>&1 || { cat "$T/out.txt"; fail "the study failed"; }
R="$T/run"
RUNS="bignas-s1 deps-050-s1 deps-050-s2 ofa-ps-s1"
for f in study.md runs.tsv random.tsv data.h5; do
    [ -s "$R/$f" ] || fail "$R/$f is missing or empty"
done
for r in $RUNS; do
    for f in supernet.h5 train.tsv evaluate.tsv devices/tiny-mcu/subnet.h5 \
        devices/tiny-mcu/test.tsv; do
        [ -s "$R/$r/$f" ] || fail "$R/$r/$f is missing or empty"
    done
done

# runs.tsv column N of run $1
col() { awk -F '\t' -v r="$1" -v c="$2" '$1 == r { print $c }' "$R/runs.tsv"; }
# the row of run/method $1 in the markdown table after heading $2
md_row() {
    awk -v h="### $2" -v r="| $1 |" '$0 == h { on = 1; next } /^### / { on = 0 }
        on && index($0, r) == 1 { print; exit }' "$3"
}
# field $2 (1-based, after the leading |) of a markdown row
md_field() { echo "$1" | awk -F ' [|] ' -v f="$2" '{ sub(/^[|] /, ""); print $f }'; }
near() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; exit !(d <= t && -d <= t) }'; }

# expected images: tests/fixtures/recipes/study/*.ini (256 images an epoch)
expect_images() {
    case $1 in deps-050-*) echo 1280 ;; bignas-*) echo 1024 ;; ofa-ps-*) echo 1024 ;; esac
}
for r in $RUNS; do
    ev="$R/$r/evaluate.tsv"
    [ "$(awk 'END { print NR }' "$ev")" = 9 ] || fail "$ev: not a header and 8 subnets"
    mean=$(awk -F '\t' '$1 ~ /^random/ { s += $5; n++ } END { printf "%.6f", s / n }' "$ev")
    near "$(col "$r" 7)" "$mean" 1e-6 || fail "$r: random mean $(col "$r" 7), recomputed $mean"
    row=$(md_row "$r" "Per run" "$R/study.md")
    [ -n "$row" ] || fail "$r: no row in the per-run table"
    want=$(awk -v m="$mean" 'BEGIN { printf "%.2f", 100 * m }')
    [ "$(md_field "$row" 5)" = "$want" ] || fail "$r: per-run table: $row; random mean $want"
    small=$(awk -F '\t' '$1 == "smallest" { printf "%.2f", 100 * $5 }' "$ev")
    [ "$(md_field "$row" 4)" = "$small" ] || fail "$r: per-run table: $row; smallest $small"
    last=$(tail -n 1 "$R/$r/train.tsv")
    imgs=$(echo "$last" | cut -f 13)
    gf=$(echo "$last" | cut -f 15)
    [ "$imgs" = "$(expect_images "$r")" ] || fail "$r: the log counts $imgs images"
    [ "$(col "$r" 9)" = "$imgs" ] && [ "$(col "$r" 10)" = "$imgs" ] ||
        fail "$r: runs.tsv images $(col "$r" 9) planned $(col "$r" 10), the log $imgs"
    near "$(col "$r" 12)" "$gf" 1e-6 || fail "$r: runs.tsv GFLOP $(col "$r" 12), the log $gf"
    dev=$(awk -F '\t' 'NR == 2 { printf "%.2f", 100 * $5 }' "$R/$r/devices/tiny-mcu/test.tsv")
    sub=$(awk '$1 == "subnet" { print $2 }' "$R/$r/devices/tiny-mcu/subnet.txt")
    grep -q "^| tiny-mcu | $r | \`$sub\` | .* | $dev |\$" "$R/study.md" ||
        fail "$r: the device table does not show $sub at $dev%"
done
# the two seeds of deps-050: mean (min-max) of the smallest subnet's accuracy
spread=$(for r in deps-050-s1 deps-050-s2; do
    awk -F '\t' '$1 == "smallest" { print 100 * $5 }' "$R/$r/evaluate.tsv"; done |
    awk 'NR == 1 { lo = hi = $1 } { s += $1; if ($1 < lo) lo = $1; if ($1 > hi) hi = $1 }
        END { printf "%.2f (%.2f-%.2f)", s / NR, lo, hi }')
row=$(md_row deps-050 "Per method" "$R/study.md")
[ "$(md_field "$row" 5)" = "$spread" ] || fail "per-method table: $row; smallest $spread"
[ "$(md_field "$row" 2)" = "1, 2" ] || fail "per-method table: $row; seeds 1, 2"
# the claims table (deps-050 and ofa-ps are both present)
d=$(awk -F '\t' '$2 == "deps-050" { s += $6; n++ } $2 == "ofa-ps" { p = $6 }
    END { printf "%+.2f", 100 * (s / n - p) }' "$R/runs.tsv")
grep -q "| $d points (deps-050 - ofa-ps) |" "$R/study.md" ||
    fail "the claims table does not show $d points for deps-050 - ofa-ps"
# the doc: the block replaced, the rest kept, the plots beside it
doc="$T/docs/study.md"
grep -q '^### Per method$' "$doc" || fail "$doc: the tables were not spliced in"
grep -q '_Not yet run: the tables' "$doc" && fail "$doc: the placeholder is still there"
grep -q '^## Published claims to compare against$' "$doc" || fail "$doc: lost its other sections"
[ "$(grep -c 'study-results:' "$doc")" = 2 ] || fail "$doc: the markers were not kept"
if command -v gnuplot >/dev/null 2>&1; then
    for p in accuracy-vs-macs training; do
        for f in "$R/plots/$p.png" "$T/docs/study/$p.png"; do
            [ "$(head -c 4 "$f" | od -An -c | tr -d ' ')" = '211PNG' ] || fail "$f: not a PNG"
        done
        grep -q "](study/$p.png)" "$doc" || fail "$doc: no link to study/$p.png"
    done
fi

# a second invocation does nothing
before=$(ls -l --time-style=full-iso "$R"/*/supernet.h5 "$R"/*/evaluate.tsv "$R/study.md")
study >"$T/again.txt" 2>&1 || { cat "$T/again.txt"; fail "second invocation failed"; }
[ ! -s "$T/again.txt" ] || { cat "$T/again.txt"; fail "a second invocation ran something"; }
[ "$(ls -l --time-style=full-iso "$R"/*/supernet.h5 "$R"/*/evaluate.tsv "$R/study.md")" = \
    "$before" ] || fail "a second invocation rewrote files"

# an interrupted training resumes from its .part checkpoint
rm -rf "$R/bignas-s1"
mkdir -p "$R/bignas-s1"
"$B/train/ofa-train" -j 1 -q -r "$S/tests/fixtures/recipes/study/bignas-s1.ini" -d "$R/data.h5" \
    -o "$R/bignas-s1/supernet.h5" --log "$R/bignas-s1/train.tsv" --stop-after 3 &&
    fail "ofa-train --stop-after 3 did not stop early"
[ -f "$R/bignas-s1/supernet.h5.part" ] || fail "no .part checkpoint after --stop-after"
env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -n -f "$S/recipes/study/study.mk" RUN="$R" \
    BINDIR="$B" STUDY_RECIPES="$S/tests/fixtures/recipes/study" DEVICES=tiny-mcu \
    "$R/bignas-s1/supernet.h5" | grep -q -- '--resume' || fail "make does not resume the .part"
study >"$T/resume.txt" 2>&1 || { cat "$T/resume.txt"; fail "the resumed study failed"; }
[ ! -e "$R/bignas-s1/supernet.h5.part" ] || fail "the .part checkpoint is still there"
[ "$(tail -n 1 "$R/bignas-s1/train.tsv" | cut -f 13)" = 1024 ] ||
    fail "the resumed run's log does not end at 1024 images"
[ "$(awk -F '\t' 'NR > 1 { n++ } END { print n }' "$R/bignas-s1/train.tsv")" -gt 1 ] ||
    fail "the resumed run's log lost the rows before the interruption"

# the summariser on hand-made inputs: hypervolume of (acc, MACs) points
# (0.5, 2), (0.8, 5), (0.55, 6: dominated), (0.6, 8) against (0, 1.1 x 10):
# 3 x 0.5 + 1 x 0.8 + 2 x 0.8 + 3 x 0.8 = 6.3, over the box 11: 0.572727
H="$T/hv/x-s1"
mkdir -p "$H"
printf 'kind\tepoch\tstep\tphase\tlr\tbeta\tloss\tkd_loss\timages_per_s\tval_acc_largest\tval_acc_smallest\telapsed_s\timages_seen\tdata_wait_s\ttrain_gflop\n' >"$H/train.tsv"
printf 'epoch\t1\t8\tfull\t0.1\t0\t2.0\tnan\t100\t0.5\t0.2\t60.0\t256\t0.1\t1.5\n' >>"$H/train.tsv"
{
    printf 'name\tsubnet\tmmacs\tparams\taccuracy_test\n'
    printf 'largest\tL\t10\t100\t0.9\nmedium\tM\t6\t50\t0.7\nsmallest\tS\t1\t10\t0.4\n'
    printf 'random1\ta\t2\t20\t0.5\nrandom2\tb\t5\t20\t0.8\nrandom3\tc\t6\t20\t0.55\n'
    printf 'random4\td\t8\t20\t0.6\n'
} >"$H/evaluate.tsv"
/usr/bin/python3 "$SUM" --no-plots --out "$T/hv/out" "$H" >"$T/hv.txt" 2>&1 ||
    { cat "$T/hv.txt"; fail "the summariser failed on the hand-made run"; }
[ "$(awk -F '\t' '$1 == "x-s1" { print $8 }' "$T/hv/out/runs.tsv")" = 0.572727 ] ||
    fail "hypervolume $(awk -F '\t' '$1 == "x-s1" { print $8 }' "$T/hv/out/runs.tsv"), expected 0.572727"
[ "$(awk -F '\t' '$1 == "x-s1" { print $7 }' "$T/hv/out/runs.tsv")" = 0.612500 ] ||
    fail "random mean of the hand-made run is not 0.612500"

# errors: each names the file and exits 1
must_fail() {
    want=$1
    shift
    if /usr/bin/python3 "$SUM" --no-plots --out "$T/err/out" "$@" >"$T/err.txt" 2>&1; then
        fail "the summariser accepted $*"
    fi
    grep -qF -- "$want" "$T/err.txt" || { cat "$T/err.txt"; fail "expected: $want"; }
}
E="$T/err/y-s1"
mkdir -p "$E"
cp "$H/train.tsv" "$H/evaluate.tsv" "$E/"
printf 'random5\te\t3\n' >>"$E/evaluate.tsv"
must_fail "summarise.py: $E/evaluate.tsv:9: 3 fields, expected 5" "$E"
cp "$H/evaluate.tsv" "$E/"
sed -i '5s/0.5$/high/' "$E/evaluate.tsv"
must_fail "summarise.py: $E/evaluate.tsv:5: accuracy_test is 'high', not a number" "$E"
cp "$H/evaluate.tsv" "$E/"
cut -f 1-14 "$H/train.tsv" >"$E/train.tsv"
must_fail "summarise.py: $E/train.tsv:1: no column train_gflop in the header" "$E"
rm "$E/train.tsv"
must_fail "summarise.py: $E/train.tsv: missing" "$E"
cp "$H/train.tsv" "$E/"
must_fail "summarise.py: $E/devices/tiny-mcu/subnet.txt: missing" --device tiny-mcu "$E"
mkdir -p "$T/err/bad-name"
must_fail "summarise.py: $T/err/bad-name: a run directory is named METHOD-sSEED" "$T/err/bad-name"
printf '# no markers\n' >"$T/err/doc.md"
must_fail "summarise.py: $T/err/doc.md: no line <!-- study-results:begin -->" --doc "$T/err/doc.md" "$H"
# a run whose log stops short of its recipe's budget
cp "$R/deps-050-s1/recipe.train" "$E/recipe.train"
must_fail "summarise.py: $E/train.tsv: the log counts 256 training images, $E/recipe.train plans 1280" "$E"

# the real study recipes: the planned images (lib/train.c's counting) are
# those each recipe's comment states, in units of 107 x 128 = 13,696 images,
# and within 2.5% of the 547,840 budget
env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s --no-print-directory \
    -f "$S/recipes/study/study.mk" RUN="$T/real" BINDIR="$B" budget >"$T/budget.txt" 2>&1 ||
    { cat "$T/budget.txt"; fail "make budget failed"; }
[ "$(wc -l <"$T/budget.txt")" -eq "$(ls "$S"/recipes/study/*.ini | wc -l)" ] ||
    { cat "$T/budget.txt"; fail "make budget: not one line per recipe"; }
while IFS="$(printf '\t')" read -r f n; do
    r=$(basename "$(dirname "$f")")
    c=$(awk -v n="$n" 'BEGIN { s = ""; while (n >= 1000) { s = sprintf(",%03d", n % 1000) s;
        n = int(n / 1000) } print n s }')
    u=$(awk -v n="$n" 'BEGIN { u = n / 13696; print (u == int(u)) ? u : "?" }')
    grep -q "^# Planned: $u units = $c images\.$" "$S/recipes/study/$r.ini" ||
        fail "recipes/study/$r.ini: its comment does not state its planned $u units = $c images"
    awk -v n="$n" 'BEGIN { exit !(n >= 0.975 * 547840 - 1 && n <= 1.025 * 547840 + 1) }' ||
        fail "recipes/study/$r.ini: $n images, not within 2.5% of the budget"
done <"$T/budget.txt"
echo "check_study: ok"
