# The HDF5 checkpoint (lib/ckpt.c): library sources, its Check program, its
# format document and its libFuzzer target.
lib_libofa_a_SOURCES += lib/ckpt.c lib/ckpt.h

check_PROGRAMS += tests/check_ckpt
tests_check_ckpt_SOURCES = tests/check_ckpt.c $(TEST_COMMON)
tests_check_ckpt_CFLAGS = $(TEST_CFLAGS)
tests_check_ckpt_LDADD = $(TEST_LDADD)

EXTRA_DIST += docs/checkpoint-format.md tests/fixtures/data/ckpt-hdf5-huge-object-header.h5

# libFuzzer target for the checkpoint loader (see datasets/local.mk for the
# configure line; the seed corpus is tests/fuzz/corpus/ckpt).
if ENABLE_FUZZING
FUZZ_TARGETS += tests/fuzz/fuzz_ckpt
tests_fuzz_fuzz_ckpt_SOURCES = tests/fuzz/fuzz_ckpt.c
tests_fuzz_fuzz_ckpt_CFLAGS = $(AM_CFLAGS) -fsanitize=fuzzer
tests_fuzz_fuzz_ckpt_LDFLAGS = $(AM_LDFLAGS) -fsanitize=fuzzer
tests_fuzz_fuzz_ckpt_LDADD = $(OFA_LIBS)
FUZZ_TARGETS += tests/fuzz/fuzz_recipe
tests_fuzz_fuzz_recipe_SOURCES = tests/fuzz/fuzz_recipe.c
tests_fuzz_fuzz_recipe_CFLAGS = $(AM_CFLAGS) -fsanitize=fuzzer
tests_fuzz_fuzz_recipe_LDFLAGS = $(AM_LDFLAGS) -fsanitize=fuzzer
tests_fuzz_fuzz_recipe_LDADD = $(OFA_LIBS)
# subnet.h5, model.h5 and the command lines of the five tools (seeds:
# tests/fuzz/corpus/{subnet,model,cli}; see tests/fuzz/README.md).
FUZZ_TARGETS += tests/fuzz/fuzz_subnet tests/fuzz/fuzz_model tests/fuzz/fuzz_cli
tests_fuzz_fuzz_subnet_SOURCES = tests/fuzz/fuzz_subnet.c
tests_fuzz_fuzz_subnet_CFLAGS = $(AM_CFLAGS) -fsanitize=fuzzer
tests_fuzz_fuzz_subnet_LDFLAGS = $(AM_LDFLAGS) -fsanitize=fuzzer
tests_fuzz_fuzz_subnet_LDADD = $(OFA_LIBS)
tests_fuzz_fuzz_model_SOURCES = tests/fuzz/fuzz_model.c
tests_fuzz_fuzz_model_CFLAGS = $(AM_CFLAGS) -fsanitize=fuzzer
tests_fuzz_fuzz_model_LDFLAGS = $(AM_LDFLAGS) -fsanitize=fuzzer
tests_fuzz_fuzz_model_LDADD = $(OFA_LIBS)
# fuzz_cli compiles the tools' main.c files into itself (see the file).
tests_fuzz_fuzz_cli_SOURCES = tests/fuzz/fuzz_cli.c
tests_fuzz_fuzz_cli_CFLAGS = $(AM_CFLAGS) -fsanitize=fuzzer
tests_fuzz_fuzz_cli_LDFLAGS = $(AM_LDFLAGS) -fsanitize=fuzzer
tests_fuzz_fuzz_cli_LDADD = $(OFA_LIBS)
endif

# The default experiment's run: figures, log and curve.
EXTRA_DIST += docs/results/fashion-mnist.md docs/results/fashion-mnist-train.tsv \
	docs/results/fashion-mnist-train.png docs/results/fashion-mnist-train.gp
