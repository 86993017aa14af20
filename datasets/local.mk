# Datasets: the readers, data.h5 and the batch loader live in libofa.a; this
# fragment adds them, the ofa-data command, its Check program, its benchmark
# and the libFuzzer targets.
lib_libofa_a_SOURCES += \
	lib/data.h \
	lib/data.c \
	lib/data_idx.c \
	lib/data_cifar.c \
	lib/data_png.c \
	lib/data_h5.c \
	lib/data_loader.c \
	lib/data_variant.c

bin_PROGRAMS += datasets/ofa-data
datasets_ofa_data_SOURCES = datasets/ofa_data.c
datasets_ofa_data_LDADD = $(OFA_LIBS)

check_PROGRAMS += tests/check_data
tests_check_data_SOURCES = tests/check_data.c $(TEST_COMMON)
tests_check_data_CFLAGS = $(TEST_CFLAGS)
tests_check_data_LDADD = $(TEST_LDADD)

BENCH_PROGRAMS += bench/bench_data
EXTRA_PROGRAMS += bench/bench_data
bench_bench_data_SOURCES = bench/bench_data.c
bench_bench_data_LDADD = $(OFA_LIBS)

EXTRA_DIST += datasets/README.md docs/data-format.md tests/fuzz/README.md \
	tests/fuzz/corpus tests/fuzz/make_seeds.py \
	tests/fixtures/data/fuzz-h5-libhdf5-attr-overflow.h5

# libFuzzer targets: ./configure --enable-fuzzing CC=clang \
#   CFLAGS='-g -O1 -fsanitize=fuzzer-no-link,address'
# then `make fuzz` builds them (see tests/fuzz/README.md).
if ENABLE_FUZZING
FUZZ_TARGETS = tests/fuzz/fuzz_idx tests/fuzz/fuzz_cifar tests/fuzz/fuzz_png \
	tests/fuzz/fuzz_h5 tests/fuzz/fuzz_h5s
noinst_PROGRAMS += $(FUZZ_TARGETS)
FUZZ_CC_FLAGS = $(AM_CFLAGS) -fsanitize=fuzzer
FUZZ_LD_FLAGS = $(AM_LDFLAGS) -fsanitize=fuzzer
tests_fuzz_fuzz_idx_SOURCES = tests/fuzz/fuzz_idx.c
tests_fuzz_fuzz_idx_CFLAGS = $(FUZZ_CC_FLAGS)
tests_fuzz_fuzz_idx_LDFLAGS = $(FUZZ_LD_FLAGS)
tests_fuzz_fuzz_idx_LDADD = $(OFA_LIBS)
tests_fuzz_fuzz_cifar_SOURCES = tests/fuzz/fuzz_cifar.c
tests_fuzz_fuzz_cifar_CFLAGS = $(FUZZ_CC_FLAGS)
tests_fuzz_fuzz_cifar_LDFLAGS = $(FUZZ_LD_FLAGS)
tests_fuzz_fuzz_cifar_LDADD = $(OFA_LIBS)
tests_fuzz_fuzz_png_SOURCES = tests/fuzz/fuzz_png.c
tests_fuzz_fuzz_png_CFLAGS = $(FUZZ_CC_FLAGS)
tests_fuzz_fuzz_png_LDFLAGS = $(FUZZ_LD_FLAGS)
tests_fuzz_fuzz_png_LDADD = $(OFA_LIBS)
tests_fuzz_fuzz_h5_SOURCES = tests/fuzz/fuzz_h5.c
tests_fuzz_fuzz_h5_CFLAGS = $(FUZZ_CC_FLAGS)
tests_fuzz_fuzz_h5_LDFLAGS = $(FUZZ_LD_FLAGS)
tests_fuzz_fuzz_h5_LDADD = $(OFA_LIBS)
tests_fuzz_fuzz_h5s_SOURCES = tests/fuzz/fuzz_h5s.c
tests_fuzz_fuzz_h5s_CFLAGS = $(FUZZ_CC_FLAGS)
tests_fuzz_fuzz_h5s_LDFLAGS = $(FUZZ_LD_FLAGS)
tests_fuzz_fuzz_h5s_LDADD = $(OFA_LIBS)
fuzz: $(FUZZ_TARGETS)
# A short smoke run of every target from its seed corpus (CI); new inputs go
# to a scratch folder, never into the seeds. Our own parsers must never
# allocate 1 GB; libhdf5 1.10 (behind h5, h5s, ckpt) sizes a buffer from a
# crafted object header before validating it (4 GB seen), then fails the
# read and returns an error: those targets get an 8 GB allocation limit.
fuzz-smoke: $(FUZZ_TARGETS)
	@for p in $(FUZZ_TARGETS); do \
	  t=`basename $$p`; t=$${t#fuzz_}; \
	  echo "== $$p"; rm -rf fuzz-smoke.tmp; mkdir fuzz-smoke.tmp; \
	  case $$t in h5|h5s|ckpt) lim=8192;; *) lim=1024;; esac; \
	  ./$$p -max_total_time=$${FUZZ_SECONDS:-30} -rss_limit_mb=8192 \
	    -malloc_limit_mb=$$lim fuzz-smoke.tmp $(srcdir)/tests/fuzz/corpus/$$t \
	    || { rm -rf fuzz-smoke.tmp; exit 1; }; \
	done; rm -rf fuzz-smoke.tmp
else
fuzz fuzz-smoke:
	@echo "configure with --enable-fuzzing CC=clang (see tests/fuzz/README.md)"; exit 1
endif
.PHONY: fuzz fuzz-smoke
