# libofa.a: everything testable; the executables and the tests link it.
noinst_LIBRARIES += lib/libofa.a
lib_libofa_a_SOURCES = \
	lib/util.c lib/util.h \
	lib/prof.c lib/prof.h \
	lib/rng.c lib/rng.h \
	lib/blas.c lib/blas.h \
	lib/arena.c lib/arena.h \
	lib/params.c lib/params.h \
	lib/optim.c lib/optim.h \
	lib/cli.c lib/cli.h \
	lib/ops.h \
	lib/ops_vec.h \
	lib/ops_gemm.c \
	lib/ops_conv.c \
	lib/ops_dw.h lib/ops_dwconv.c lib/ops_dwconv_grad.c \
	lib/ops_norm.c \
	lib/ops_act.c \
	lib/ops_se.c \
	lib/ops_resize.c \
	lib/ops_loss.c
lib_libofa_a_SOURCES += lib/h5file.c lib/h5file.h
lib_libofa_a_SOURCES += lib/dist.c lib/dist.h
lib_libofa_a_SOURCES += lib/space.c lib/space.h
lib_libofa_a_SOURCES += lib/supernet.c lib/supernet.h lib/train.c lib/train.h
# Export stage: exported model (float, BN folded) and its HDF5 file, int8
# quantization and runtime, the model.c emitter, variants and stability
# fine-tuning.
lib_libofa_a_SOURCES += lib/model.c lib/model_h5.c lib/model.h
lib_libofa_a_SOURCES += lib/quant.c lib/emit_c.c lib/quant.h
lib_libofa_a_SOURCES += lib/stability.c lib/stability.h
# The int8 kernels (lib/qnet.inc) are compiled once per instruction set, each
# with its own flags (helper libraries), into libofa.a; quant.c chooses at run
# time. The emitter embeds the same source as a C string (lib/qnet_src.h).
lib_libofa_a_SOURCES += lib/qnet.h lib/qnet.inc
noinst_LIBRARIES += lib/libqnet_portable.a
lib_libqnet_portable_a_SOURCES = lib/qnet_portable.c
lib_libqnet_portable_a_CFLAGS = $(AM_CFLAGS) $(OFA_QNET_PORTABLE_CFLAGS)
lib_libofa_a_LIBADD = lib/libqnet_portable_a-qnet_portable.$(OBJEXT)
if OFA_QNET_AVX2
noinst_LIBRARIES += lib/libqnet_avx2.a
lib_libqnet_avx2_a_SOURCES = lib/qnet_avx2.c
lib_libqnet_avx2_a_CFLAGS = $(AM_CFLAGS) $(OFA_QNET_AVX2_CFLAGS)
lib_libofa_a_LIBADD += lib/libqnet_avx2_a-qnet_avx2.$(OBJEXT)
endif
if OFA_QNET_AVX512
noinst_LIBRARIES += lib/libqnet_avx512.a
lib_libqnet_avx512_a_SOURCES = lib/qnet_avx512.c
lib_libqnet_avx512_a_CFLAGS = $(AM_CFLAGS) $(OFA_QNET_AVX512_CFLAGS)
lib_libofa_a_LIBADD += lib/libqnet_avx512_a-qnet_avx512.$(OBJEXT)
endif
if OFA_QNET_AVX512VBMI
noinst_LIBRARIES += lib/libqnet_avx512vbmi.a
lib_libqnet_avx512vbmi_a_SOURCES = lib/qnet_avx512vbmi.c
lib_libqnet_avx512vbmi_a_CFLAGS = $(AM_CFLAGS) $(OFA_QNET_AVX512VBMI_CFLAGS)
lib_libofa_a_LIBADD += lib/libqnet_avx512vbmi_a-qnet_avx512vbmi.$(OBJEXT)
endif
lib/qnet_src.h: lib/qnet.inc
	$(AM_V_GEN)$(MKDIR_P) lib && { \
	  echo '/* Generated from lib/qnet.inc by lib/local.mk: do not edit. */'; \
	  echo 'static const char qnet_src[] ='; \
	  sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/"/' -e 's/$$/\\n"/' $(srcdir)/lib/qnet.inc; \
	  echo ';'; } > $@-t && mv $@-t $@
lib/emit_c.$(OBJEXT): lib/qnet_src.h
CLEANFILES += lib/qnet_src.h
