# predictor: library sources, tests and benchmarks of ofa-extract's predictor part.
lib_libofa_a_SOURCES += lib/predictor.c lib/predictor.h

check_PROGRAMS += tests/check_predictor
tests_check_predictor_SOURCES = tests/check_predictor.c tests/synthetic.c tests/synthetic.h $(TEST_COMMON)
tests_check_predictor_CFLAGS = $(TEST_CFLAGS)
tests_check_predictor_LDADD = $(TEST_LDADD)

BENCH_PROGRAMS += bench/bench_predictor
EXTRA_PROGRAMS += bench/bench_predictor
bench_bench_predictor_SOURCES = bench/bench_predictor.c tests/synthetic.c tests/synthetic.h
bench_bench_predictor_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/tests
bench_bench_predictor_LDADD = $(OFA_LIBS)
