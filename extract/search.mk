# search: library sources, tests and benchmarks of ofa-extract's search part.
lib_libofa_a_SOURCES += lib/search.c lib/search.h

check_PROGRAMS += tests/check_search
tests_check_search_SOURCES = tests/check_search.c tests/synthetic.c tests/synthetic.h $(TEST_COMMON)
tests_check_search_CFLAGS = $(TEST_CFLAGS)
tests_check_search_LDADD = $(TEST_LDADD)

BENCH_PROGRAMS += bench/bench_search
EXTRA_PROGRAMS += bench/bench_search
bench_bench_search_SOURCES = bench/bench_search.c tests/synthetic.c tests/synthetic.h
bench_bench_search_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/tests
bench_bench_search_LDADD = $(OFA_LIBS)
