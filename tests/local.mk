# Check programs, one per module. The Check runner forks per test; the tests
# keep OpenMP and BLAS out of the parent process.
TEST_COMMON = tests/testutil.c tests/testutil.h
TEST_LDADD = $(OFA_LIBS) $(CHECK_LIBS)
TEST_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)

check_PROGRAMS += tests/check_core
tests_check_core_SOURCES = tests/check_core.c $(TEST_COMMON)
tests_check_core_CFLAGS = $(TEST_CFLAGS)
tests_check_core_LDADD = $(TEST_LDADD)

check_PROGRAMS += tests/check_ops_conv
tests_check_ops_conv_SOURCES = tests/check_ops_conv.c $(TEST_COMMON)
tests_check_ops_conv_CFLAGS = $(TEST_CFLAGS)
tests_check_ops_conv_LDADD = $(TEST_LDADD)

check_PROGRAMS += tests/check_ops_misc
tests_check_ops_misc_SOURCES = tests/check_ops_misc.c $(TEST_COMMON)
tests_check_ops_misc_CFLAGS = $(TEST_CFLAGS)
tests_check_ops_misc_LDADD = $(TEST_LDADD)

check_PROGRAMS += tests/check_tinynet
tests_check_tinynet_SOURCES = tests/check_tinynet.c $(TEST_COMMON)
tests_check_tinynet_CFLAGS = $(TEST_CFLAGS)
tests_check_tinynet_LDADD = $(TEST_LDADD)

check_PROGRAMS += tests/check_supernet
tests_check_supernet_SOURCES = tests/check_supernet.c $(TEST_COMMON)
tests_check_supernet_CFLAGS = $(TEST_CFLAGS)
tests_check_supernet_LDADD = $(TEST_LDADD)

check_PROGRAMS += tests/check_train
tests_check_train_SOURCES = tests/check_train.c $(TEST_COMMON)
tests_check_train_CFLAGS = $(TEST_CFLAGS)
tests_check_train_LDADD = $(TEST_LDADD)

check_PROGRAMS += tests/check_prof
tests_check_prof_SOURCES = tests/check_prof.c $(TEST_COMMON)
tests_check_prof_CFLAGS = $(TEST_CFLAGS)
tests_check_prof_LDADD = $(TEST_LDADD)

TESTS += $(check_PROGRAMS)
EXTRA_DIST += tests/lsan.supp
# Check's per-test timeout (seconds) is raised where a test needs it.
# make -j check runs several tests at once, most of them with two OpenMP
# threads, on as many cores: threads that spin at a barrier (libgomp's
# default) then hold a core its team's last thread is waiting for, and the
# suite took 179 s on 2 cores (the ASan build's 927), 84 (416) with passive
# waits. A user's own OMP_WAIT_POLICY is kept.
AM_TESTS_ENVIRONMENT = CK_DEFAULT_TIMEOUT=60; export CK_DEFAULT_TIMEOUT; \
	OMP_WAIT_POLICY=$${OMP_WAIT_POLICY:-passive}; export OMP_WAIT_POLICY; \
	LSAN_OPTIONS=suppressions=$(abs_top_srcdir)/tests/lsan.supp:print_suppressions=0; \
	export LSAN_OPTIONS; \
	OFA_SRCDIR='$(abs_top_srcdir)'; export OFA_SRCDIR; \
	OFA_BUILDDIR='$(abs_top_builddir)'; export OFA_BUILDDIR;

check_PROGRAMS += tests/check_model
tests_check_model_SOURCES = tests/check_model.c $(TEST_COMMON)
tests_check_model_CFLAGS = $(TEST_CFLAGS)
tests_check_model_LDADD = $(TEST_LDADD)

check_PROGRAMS += tests/check_quant
tests_check_quant_SOURCES = tests/check_quant.c $(TEST_COMMON)
tests_check_quant_CFLAGS = $(TEST_CFLAGS)
tests_check_quant_LDADD = $(TEST_LDADD)

check_PROGRAMS += tests/check_stability
tests_check_stability_SOURCES = tests/check_stability.c $(TEST_COMMON)
tests_check_stability_CFLAGS = $(TEST_CFLAGS)
tests_check_stability_LDADD = $(TEST_LDADD)

# ofa-export and ofa-run end to end (runs the built executables).
check_PROGRAMS += tests/check_export
tests_check_export_SOURCES = tests/check_export.c $(TEST_COMMON)
tests_check_export_CFLAGS = $(TEST_CFLAGS)
tests_check_export_LDADD = $(TEST_LDADD)

# model.onnx checked by software we did not write (onnx.checker, OpenCV's
# ONNX importer) against our forward; tests/onnx_fixture makes the models
# (noinst, not check_PROGRAMS: those all run as tests).
noinst_PROGRAMS += tests/onnx_fixture
tests_onnx_fixture_SOURCES = tests/onnx_fixture.c
tests_onnx_fixture_LDADD = $(ONNX_LIBS) $(OFA_LIBS)
TESTS += tests/check_onnx.py
EXTRA_DIST += tests/check_onnx.py

# The make pipeline end to end (recipes/pipeline.mk on the tiny recipe).
TESTS += tests/check_pipeline.sh
EXTRA_DIST += tests/check_pipeline.sh

# The schedule study's make file and summariser (recipes/study/) on tiny runs.
TESTS += tests/check_study.sh
EXTRA_DIST += tests/check_study.sh \
	tests/fixtures/recipes/study/bignas-s1.ini \
	tests/fixtures/recipes/study/deps-050-s1.ini \
	tests/fixtures/recipes/study/deps-050-s2.ini \
	tests/fixtures/recipes/study/ofa-ps-s1.ini

# SIGKILL at 5 moments, resume each time: the same weights as an uninterrupted run.
TESTS += tests/check_kill.sh tests/check_blas_kernels.sh
EXTRA_DIST += tests/check_kill.sh tests/check_blas_kernels.sh
# SIGTERM during extract and export, a full disk and a read-only output directory.
TESTS += tests/check_fault.sh
EXTRA_DIST += tests/check_fault.sh tests/memcheck.sh

# bench/compare.py's tables agree with each other on a real (tiny) run of
# bench_train_step, which make check builds for it.
TESTS += tests/check_compare.sh
EXTRA_DIST += tests/check_compare.sh
check_DATA = bench/bench_train_step$(EXEEXT)

# Every class of bad input and the exact message (docs/errors.md is its output).
TESTS += tests/check_errors.sh
EXTRA_DIST += tests/fixtures/data/fuzz-model-int8-dead-se-overflow.h5 \
	tests/fixtures/data/fuzz-model-int8-dead-tensor.h5 \
	tests/fixtures/data/fuzz-model-int8-hsigmoid-abort.h5 \
	tests/fixtures/data/fuzz-model-int8-pool-abort.h5 \
	tests/fixtures/data/fuzz-subnet-libhdf5-attr-uaf.h5 \
	tests/fixtures/data/fuzz-ckpt-libhdf5-accum-read-segv.h5 \
	tests/fixtures/data/fuzz-ckpt-sealed-libhdf5-segv.h5
EXTRA_DIST += tests/check_errors.sh docs/errors.md \
	tests/fixtures/errors/bad-accuracy.tsv \
	tests/fixtures/errors/bad-bool.ini \
	tests/fixtures/errors/bad-depth.tsv \
	tests/fixtures/errors/bad-device-name.ini \
	tests/fixtures/errors/bad-even-kernel.ini \
	tests/fixtures/errors/bad-lut-none.ini \
	tests/fixtures/errors/bad-measurements.tsv \
	tests/fixtures/errors/bad-opcount.ini \
	tests/fixtures/errors/bad-resolution.tsv \
	tests/fixtures/errors/devices-bad.ini \
	tests/fixtures/errors/errors.ini \
	tests/fixtures/errors/lut-no-latency.tsv \
	tests/fixtures/errors/lut-no-rows.tsv \
	tests/fixtures/errors/lut-short-row.tsv

# MPI data-parallel training (configure --with-mpi): 2 processes follow one
# with the same shards step for step; resume on another count; a dead rank.
if OFA_MPI
TESTS += tests/check_mpi.sh
AM_TESTS_ENVIRONMENT += MPIRUN='$(MPIRUN)'; export MPIRUN;
endif
EXTRA_DIST += tests/check_mpi.sh

# The Slurm job scripts, run as plain scripts.
TESTS += tests/check_slurm.sh
EXTRA_DIST += tests/check_slurm.sh tests/fashion-subset.sh
