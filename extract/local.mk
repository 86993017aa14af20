bin_PROGRAMS += extract/ofa-extract
extract_ofa_extract_SOURCES = extract/main.c
extract_ofa_extract_LDADD = $(OFA_LIBS)
lib_libofa_a_SOURCES += lib/extract.c lib/extract.h

check_PROGRAMS += tests/check_extract
tests_check_extract_SOURCES = tests/check_extract.c $(TEST_COMMON)
tests_check_extract_CFLAGS = $(TEST_CFLAGS)
tests_check_extract_LDADD = $(TEST_LDADD)
EXTRA_DIST += tests/fixtures/recipes/tiny-devices.ini
