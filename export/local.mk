bin_PROGRAMS += export/ofa-export
export_ofa_export_SOURCES = export/main.c
export_ofa_export_LDADD = $(OFA_LIBS)
