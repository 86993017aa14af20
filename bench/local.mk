# Benchmarks: built and run by `make bench`, never part of `make check`.
# Each fragment adds its program to BENCH_PROGRAMS (and EXTRA_PROGRAMS so
# that automake knows how to build it).
BENCH_PROGRAMS += bench/bench_ops bench/bench_train_step
EXTRA_PROGRAMS += bench/bench_ops bench/bench_train_step
bench_bench_train_step_SOURCES = bench/bench_train_step.c
bench_bench_train_step_LDADD = $(OFA_LIBS)
bench_bench_ops_SOURCES = bench/bench_ops.c
bench_bench_ops_LDADD = $(OFA_LIBS)

CLEANFILES += $(BENCH_PROGRAMS)

# Ours against PyTorch: bench/compare.py runs bench_train_step and
# bench/peer_torch.py (the same networks and work in PyTorch) alternately and
# prints its tables (README.md, Performance). BENCH_PYTHON3 runs both scripts;
# when it cannot import torch (Debian: python3-torch), the peer columns are
# skipped with a notice. BENCH_QUICK=1: a small configuration (batch 16, one
# round, one thread, the smallest subnet and the sandwich step);
# BENCH_COMPARE_FLAGS: more options (compare.py --help).
BENCH_PYTHON3 = /usr/bin/python3
BENCH_COMPARE_FLAGS =
EXTRA_DIST += bench/compare.py bench/peer_torch.py bench/mpi_scaling.sh

# MPI data-parallel training at 1 and 2 processes, and the scaling model
# (a build configured --with-mpi).
bench-mpi: train/ofa-train$(EXEEXT) datasets/ofa-data$(EXEEXT)
	MPIRUN='$(MPIRUN)' $(SHELL) $(srcdir)/bench/mpi_scaling.sh .

# BENCH_PROFILE=1: bench_train_step --profile (per-op tables after its figures).
BENCH_PROFILE =
bench: $(BENCH_PROGRAMS)
	@for p in $(BENCH_PROGRAMS); do \
	  f=; if test -n '$(BENCH_PROFILE)' && test "$$p" = bench/bench_train_step$(EXEEXT); then \
	    f=--profile; fi; \
	  echo "== $$p"; ./$$p $$f || exit 1; \
	done
	@$(MAKE) $(AM_MAKEFLAGS) bench-compare

# Only the comparison.
bench-compare: bench/bench_train_step$(EXEEXT)
	@echo "== bench/compare.py"
	@if command -v $(BENCH_PYTHON3) >/dev/null 2>&1; then \
	  BENCH_QUICK='$(BENCH_QUICK)' $(BENCH_PYTHON3) $(srcdir)/bench/compare.py \
	    --bench bench/bench_train_step$(EXEEXT) --peer-python $(BENCH_PYTHON3) \
	    $(BENCH_COMPARE_FLAGS); \
	else \
	  echo "bench/compare.py skipped: no $(BENCH_PYTHON3)"; \
	fi
.PHONY: bench bench-compare bench-mpi
