bin_PROGRAMS += extract/ofa-extract
extract_ofa_extract_SOURCES = extract/main.c
extract_ofa_extract_LDADD = $(OFA_LIBS)
