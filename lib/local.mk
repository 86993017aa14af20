# libofa.a: everything testable; the executables and the tests link it.
noinst_LIBRARIES += lib/libofa.a
lib_libofa_a_SOURCES = \
	lib/util.c lib/util.h \
	lib/rng.c lib/rng.h \
	lib/blas.c lib/blas.h \
	lib/arena.c lib/arena.h \
	lib/params.c lib/params.h \
	lib/optim.c lib/optim.h \
	lib/cli.c lib/cli.h \
	lib/ops.h \
	lib/ops_gemm.c \
	lib/ops_conv.c \
	lib/ops_dwconv.c \
	lib/ops_norm.c \
	lib/ops_act.c \
	lib/ops_se.c \
	lib/ops_resize.c \
	lib/ops_loss.c
lib_libofa_a_SOURCES += lib/space.c lib/space.h
lib_libofa_a_SOURCES += lib/supernet.c lib/supernet.h lib/train.c lib/train.h
# Export stage: exported model (float, BN folded) and its HDF5 file, int8
# quantization and runtime, the model.c emitter, variants and stability
# fine-tuning.
lib_libofa_a_SOURCES += lib/model.c lib/model_h5.c lib/model.h
lib_libofa_a_SOURCES += lib/quant.c lib/emit_c.c lib/quant.h
lib_libofa_a_SOURCES += lib/stability.c lib/stability.h
