# pipeline.mk: one experiment as make rules with real file dependencies:
# ofa-data -> ofa-train -> accuracy measurements -> ofa-extract and
# ofa-export per device -> report.md. Included by recipes/NAME.mk, which sets
# NAME and RECIPE. Run from anywhere:
#
#   make -f recipes/quick.mk -j2            # runs/quick/report.md
#   make -f recipes/fashion-mnist.mk -j2 RUN=/scratch/fm DEVICES="cortex-m7 host-fp32"
#
# A second invocation does nothing. Each stage depends on the part of the
# recipe it reads (RUN/recipe.train, RUN/recipe.extract, RUN/recipe.export,
# RUN/devices/NAME/recipe.device: the resolved sections, includes and all,
# rewritten only when they change): editing [export] re-runs the exports
# alone, a [device.NAME] section that device alone, [train] everything, and
# touching the recipe nothing. An interrupted training resumes from its
# checkpoint (RUN/supernet.h5.part). With -j2 the devices run in parallel (one
# thread each) once the shared accuracy measurements exist.
#
# Variables (make VAR=value):
#   RUN            run directory (default runs/NAME)
#   RECIPE         the experiment's recipe
#   DEVICES        device profiles to build (default: every [device.NAME] of RECIPE)
#   TRAIN_THREADS  threads of the training and measurement stages (default 2)
#   THREADS        threads of each per-device stage (default 1)
#   DATA           ofa-data source (default fashion-mnist, the Debian package)
#   SAMPLES        subnets measured for the accuracy predictor (default: the
#                  recipe's extract.samples)
#   EXTRACT_FLAGS, EXPORT_FLAGS, TRAIN_FLAGS  extra options of those stages
#   BINDIR         where the ofa-* programs are: a build tree or a bin directory
#                  (default: this build tree when the file is used from it, else PATH)

include $(dir $(lastword $(MAKEFILE_LIST)))tools.mk

RUN ?= runs/$(NAME)
DATA ?= fashion-mnist
TRAIN_THREADS ?= 2
THREADS ?= 1
SAMPLES ?=
DEVICES ?= $(shell $(OFA_EXTRACT) --list-devices -r $(RECIPE))
ifeq ($(strip $(DEVICES)),)
$(error $(RECIPE): no device profiles found (is $(OFA_EXTRACT) built, and does the recipe have [device.NAME] sections?))
endif

CARDS := $(foreach d,$(DEVICES),$(RUN)/devices/$(d)/card.md)

all: $(RUN)/report.md

$(RUN)/data.h5:
	@mkdir -p $(RUN)
	$(OFA_DATA) prepare $(DATA) -o $@

# $(call recipe_part,AWK-CONDITION): write the recipe's sections whose header
# line ($$0) meets the condition to the target, only when they changed.
define recipe_part
@mkdir -p $(@D)
@$(OFA_TRAIN) --print-recipe -r $(RECIPE) | awk '/^\[/ { keep = ($(1)) } keep' >$@.tmp
@if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv -f $@.tmp $@; fi
endef

$(RUN)/recipe.train: FORCE
	$(call recipe_part,$$0 !~ /^\[(extract|export|device\.|variant\.)/)
$(RUN)/recipe.extract: FORCE
	$(call recipe_part,$$0 == "[extract]")
$(RUN)/devices/%/recipe.device: FORCE
	$(call recipe_part,$$0 == "[device.$*]")
$(RUN)/recipe.export: FORCE
	$(call recipe_part,$$0 ~ /^\[(export|variant\.)/)

# Resumes from RUN/supernet.h5.part when a previous run was interrupted.
$(RUN)/supernet.h5: $(RUN)/recipe.train $(RUN)/data.h5
	$(OFA_TRAIN) -j $(TRAIN_THREADS) -r $(RECIPE) -d $(RUN)/data.h5 -o $@ \
	    --log $(RUN)/train.tsv $(if $(wildcard $@.part),--resume) $(TRAIN_FLAGS)

# The accuracy measurements every device's predictor is fitted on.
$(RUN)/supernet.measurements.tsv: $(RUN)/supernet.h5 $(RUN)/recipe.extract
	$(OFA_EXTRACT) -j $(TRAIN_THREADS) --measure-only -s $< -d $(RUN)/data.h5 \
	    -m $@ $(if $(SAMPLES),--samples $(SAMPLES))
	@touch $@

$(RUN)/devices/%/subnet.h5: $(RUN)/supernet.measurements.tsv $(RUN)/recipe.extract \
    $(RUN)/devices/%/recipe.device
	$(OFA_EXTRACT) -j $(THREADS) -q -s $(RUN)/supernet.h5 -d $(RUN)/data.h5 -r $(RECIPE) -D $* \
	    -m $< $(if $(SAMPLES),--samples $(SAMPLES)) -o $@ $(EXTRACT_FLAGS)

$(RUN)/devices/%/card.md: $(RUN)/devices/%/subnet.h5 $(RUN)/recipe.export
	$(OFA_EXPORT) -j $(THREADS) -q -s $(RUN)/supernet.h5 -n $< -d $(RUN)/data.h5 \
	    -r $(RECIPE) -o $(@D) $(EXPORT_FLAGS)

$(RUN)/report.md: $(CARDS)
	$(OFA_REPORT) $(RUN) $(DEVICES)
	@echo "pipeline: report $@"

# Make must not delete the per-device intermediates.
.SECONDARY:
.PHONY: all FORCE
