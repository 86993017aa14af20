# devices: library sources, tests and benchmarks of ofa-extract's devices part.

# Device profiles: memory figures and latency predictors (lib/device.c).
lib_libofa_a_SOURCES += lib/device.c lib/device.h

check_PROGRAMS += tests/check_device
tests_check_device_SOURCES = tests/check_device.c $(TEST_COMMON)
tests_check_device_CFLAGS = $(TEST_CFLAGS)
tests_check_device_LDADD = $(TEST_LDADD)

# Predicted against measured latency on this host (never part of make check).
BENCH_PROGRAMS += bench/bench_latency
EXTRA_PROGRAMS += bench/bench_latency
bench_bench_latency_SOURCES = bench/bench_latency.c
bench_bench_latency_LDADD = $(OFA_LIBS)

# The example lut table is installed next to the recipes that name it.
recipedevicesdir = $(pkgdatadir)/recipes/devices
dist_recipedevices_DATA = recipes/devices/example-lut.tsv

EXTRA_DIST += docs/devices.md
