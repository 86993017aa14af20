# quick.mk: the quick experiment (recipes/quick.ini: a few minutes of
# training on a Fashion-MNIST subset) through every stage, into runs/quick.
#   make -f recipes/quick.mk -j2
# Variables: see pipeline.mk.
NAME = quick
RECIPE ?= $(dir $(lastword $(MAKEFILE_LIST)))quick.ini
include $(dir $(lastword $(MAKEFILE_LIST)))pipeline.mk
