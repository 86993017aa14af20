bin_PROGRAMS += export/ofa-export
export_ofa_export_SOURCES = export/main.c export/export.c export/export.h
export_ofa_export_LDADD = $(ONNX_LIBS) $(OFA_LIBS)

bin_PROGRAMS += export/ofa-run
export_ofa_run_SOURCES = export/run.c
export_ofa_run_LDADD = $(OFA_LIBS)

# ofa-report: report.md (and plots) of a pipeline run (a shell script).
bin_SCRIPTS = export/ofa-report
EXTRA_DIST += export/ofa-report.in

# model.onnx writer: export/onnx.c over C bindings that protoc-c generates at
# build time from the ONNX schema (configure finds Debian's onnx.proto).
noinst_LIBRARIES += export/libofa_onnx.a
export_libofa_onnx_a_SOURCES = export/onnx.c export/onnx.h
nodist_export_libofa_onnx_a_SOURCES = export/onnx.pb-c.c export/onnx.pb-c.h
export_libofa_onnx_a_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_builddir)/export
export_libofa_onnx_a_CFLAGS = $(AM_CFLAGS) $(PROTOBUF_C_CFLAGS)
ONNX_LIBS = export/libofa_onnx.a $(PROTOBUF_C_LIBS)
# The objects need the generated header before their first compile (an
# explicit prerequisite rather than BUILT_SOURCES, which no fragment owns).
export/libofa_onnx_a-onnx.$(OBJEXT) export/libofa_onnx_a-onnx.pb-c.$(OBJEXT): \
	export/onnx.pb-c.h
CLEANFILES += export/onnx.pb-c.c export/onnx.pb-c.h
export/onnx.pb-c.c: $(ONNX_PROTO)
	$(AM_V_GEN)$(MKDIR_P) export && \
	$(PROTOC_C) --proto_path="`dirname '$(ONNX_PROTO)'`" --c_out=export '$(ONNX_PROTO)'
# One protoc-c run writes both files.
export/onnx.pb-c.h: export/onnx.pb-c.c
	@test -f $@ || { rm -f export/onnx.pb-c.c; $(MAKE) $(AM_MAKEFLAGS) export/onnx.pb-c.c; }
EXTRA_DIST += docs/model-format.md tests/fixtures/recipes/tiny-export.ini
