#!/bin/sh
# check_blas_kernels.sh: the programs choose OpenBLAS's kernels themselves when
# OpenBLAS does not know the CPU (lib/blas.c, ofa_blas_select_kernels), and
# OPENBLAS_CORETYPE, when set, is left alone.
set -eu
B=${OFA_BUILDDIR:-.}
fail() { echo "check_blas_kernels: $*" >&2; exit 1; }
# ofa-run -v prints the banner, then refuses to run without a model.
kernels() { "$B/export/ofa-run" -v 2>&1 | sed -n 's/.*, kernels \([A-Za-z0-9]*\),.*/\1/p'; }

k=$(OPENBLAS_CORETYPE=Prescott kernels)
[ "$k" = Prescott ] || fail "OPENBLAS_CORETYPE=Prescott gave kernels '$k'"

k=$(unset OPENBLAS_CORETYPE; kernels)
[ -n "$k" ] || fail "ofa-run -v printed no kernels"
if grep -qw avx2 /proc/cpuinfo 2>/dev/null && grep -qw fma /proc/cpuinfo; then
    [ "$k" != Prescott ] || fail "this CPU has AVX2 and FMA, yet OpenBLAS runs its generic Prescott kernels"
fi
echo "check_blas_kernels: kernels $k"
