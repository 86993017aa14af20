# tools.mk: where the ofa-* programs are, for pipeline.mk and study/study.mk.
# BINDIR (make BINDIR=...): a build tree or a bin directory; by default the
# build tree this file is in, when it is used from one, else PATH. Sets
# OFA_DATA, OFA_TRAIN, OFA_EXTRACT, OFA_EXPORT and OFA_REPORT (each can be
# set on its own too) and OFA_TREE, the tree this file's folder is in.

OFA_TREE := $(dir $(lastword $(MAKEFILE_LIST)))..

ifeq ($(BINDIR),)
ifneq ($(wildcard $(OFA_TREE)/train/ofa-train),)
BINDIR := $(OFA_TREE)
endif
endif
ifneq ($(wildcard $(BINDIR)/train/ofa-train),)
# a build tree
OFA_DATA ?= $(BINDIR)/datasets/ofa-data
OFA_TRAIN ?= $(BINDIR)/train/ofa-train
OFA_EXTRACT ?= $(BINDIR)/extract/ofa-extract
OFA_EXPORT ?= $(BINDIR)/export/ofa-export
OFA_REPORT ?= $(BINDIR)/export/ofa-report
else ifneq ($(BINDIR),)
OFA_DATA ?= $(BINDIR)/ofa-data
OFA_TRAIN ?= $(BINDIR)/ofa-train
OFA_EXTRACT ?= $(BINDIR)/ofa-extract
OFA_EXPORT ?= $(BINDIR)/ofa-export
OFA_REPORT ?= $(BINDIR)/ofa-report
else
OFA_DATA ?= ofa-data
OFA_TRAIN ?= ofa-train
OFA_EXTRACT ?= ofa-extract
OFA_EXPORT ?= ofa-export
OFA_REPORT ?= ofa-report
endif
