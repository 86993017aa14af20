#!/bin/sh
# check_compare.sh: bench/compare.py's tables agree with each other on a real
# run of bench_train_step (batch 2, one round, no peer): the scaling table's
# "1 -> 2" row is the two-thread training (and sandwich) images/s over the
# one-thread figure of the first table, its sgemm column the second table's
# sgemm at two threads over one; a run on one thread prints no scaling table.
# Speeds are not asserted (benchmarks never are in tests), only that the
# report's figures are the ratios of the figures it reports.
set -eu
B=${OFA_BUILDDIR:-.}
S=${OFA_SRCDIR:-.}
if [ ! -x /usr/bin/python3 ]; then
    echo "/usr/bin/python3 is not installed: skipped"
    exit 77
fi
T=$(mktemp -d /tmp/ofa-check-compare-XXXXXX)
trap 'rm -rf "$T"' EXIT INT TERM
fail() { echo "check_compare: $*" >&2; exit 1; }
run() {
    /usr/bin/python3 "$S/bench/compare.py" --bench "$B/bench/bench_train_step" --no-peer \
        --batch 2 --rounds 1 --repeats 1 "$@" >"$T/out" 2>"$T/err" ||
        { cat "$T/err" >&2; fail "compare.py $* failed"; }
}

run --threads 1,2 --subnets smallest,sandwich
# Figures without thousands separators; "-" stays "-".
num() { tr -d ',x%'; }
fig() { # subnet, threads, two-word metric: the "ours" column of the first table
    awk -v s="$1" -v t="$2" -v m="$3" '$1 == s && $2 == t && $3 " " $4 == m { print $5; exit }' \
        "$T/out" | num
}
sgemm() { # threads: the second table's last column for the smallest subnet
    awk -v t="$1" '$1 == "smallest" && $2 == t && NF == 7 && $3 ~ /^[0-9.]+$/ { print $7; exit }' \
        "$T/out" | num
}
row() { # subnet: the scaling table's row "subnet 1 -> 2 ours sgemm"
    awk -v s="$1" '$1 == s && $2 == "1" && $3 == "->" && $4 == "2" { print $5, $6; exit }' \
        "$T/out" | num
}
within() { # got, num, den: got (two decimals) is a ratio num / den of printed figures,
    # each rounded to its last digit (0.5 for whole numbers, 0.05 for one decimal)
    awk -v g="$1" -v a="$2" -v b="$3" 'function half(x) { return index(x, ".") ? 0.05 : 0.5 }
        BEGIN { lo = (a - half(a)) / (b + half(b)) - 0.005
                hi = b > half(b) ? (a + half(a)) / (b - half(b)) + 0.005 : 1e30
                exit !(g >= lo && g <= hi) }'
}
for s in smallest sandwich; do
    m="train img/s"
    [ $s = sandwich ] && m="sandwich img/s"
    one=$(fig $s 1 "$m") two=$(fig $s 2 "$m")
    [ -n "$one" ] && [ -n "$two" ] || { cat "$T/out" >&2; fail "$s: no '$m' rows"; }
    set -- $(row $s)
    [ $# = 2 ] || { cat "$T/out" >&2; fail "$s: no scaling row"; }
    within "$1" "$two" "$one" || fail "$s: scaling $1, but the first table has $two / $one"
    if [ $s = smallest ]; then
        a=$(sgemm 2) b=$(sgemm 1)
        within "$2" "$a" "$b" || fail "sgemm scaling $2, but the second table has $a / $b"
    else
        [ "$2" = - ] || fail "sandwich: an sgemm scaling ($2) where its runs measure none"
    fi
done
run --threads 1 --subnets smallest
grep -q -- '->' "$T/out" && { cat "$T/out" >&2; fail "a scaling table from one thread count"; }
echo "check_compare: ok"
