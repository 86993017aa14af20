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

bench: $(BENCH_PROGRAMS)
	@for p in $(BENCH_PROGRAMS); do \
	  echo "== $$p"; ./$$p || exit 1; \
	done
.PHONY: bench
