# fashion-mnist.mk: the default experiment (recipes/fashion-mnist.ini, about
# two hours of training on 2 cores) through every stage, into runs/fashion-mnist.
#   make -f recipes/fashion-mnist.mk -j2
# Variables: see pipeline.mk.
NAME = fashion-mnist
RECIPE ?= $(dir $(lastword $(MAKEFILE_LIST)))fashion-mnist.ini
include $(dir $(lastword $(MAKEFILE_LIST)))pipeline.mk
