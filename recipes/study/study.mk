# study.mk: the schedule study of issue 12 (docs/study.md): one supernet per
# recipe of recipes/study/ (deps with the shrink at 25%, 50% and 75% of
# training, deps without the beta ramp, bignas, ofa-ps; every run the same
# budget of training images), each evaluated the same way, then the tables
# and plots. From the build tree (or anywhere, with BINDIR):
#
#   make -f recipes/study/study.mk -j1          # runs/study/study.md, plots
#   make -f recipes/study/study.mk -j1 doc      # and docs/study.md, docs/study/*.png
#   make -f recipes/study/study.mk budget       # the planned images of each run
#
# Per run NAME (a recipe NAME.ini, NAME = METHOD-sSEED) into RUN/NAME:
#   supernet.h5, train.tsv   ofa-train (resumes from supernet.h5.part when a
#                            previous invocation was interrupted)
#   evaluate.tsv             ofa-extract --evaluate --split test largest medium
#                            smallest random:RANDOM (the same RANDOM subnets for
#                            every run: a fixed seed)
#   supernet.measurements.tsv  SAMPLES subnets' validation accuracy (the
#                            accuracy predictor's data)
#   devices/DEV/subnet.h5, subnet.txt  ofa-extract's choice for device DEV
#   devices/DEV/test.tsv     the test accuracy of that subnet
# then RUN/study.md, RUN/runs.tsv, RUN/random.tsv and RUN/plots/*.png from
# recipes/study/summarise.py. Real file dependencies: an interrupted study
# resumes where it stopped, a second invocation does nothing, a changed
# [train] section (RUN/NAME/recipe.train) retrains that run only. ofa-data
# prepares the data once (RUN/data.h5) for every run.
#
# Variables (make VAR=value):
#   RUN            study directory (default runs/study)
#   STUDY_RECIPES  directory of the run recipes (default: this directory)
#   RUNS           runs to make, in order (default: every STUDY_RECIPES/*.ini,
#                  deps-050-s1, bignas-s1 and ofa-ps-s1 first)
#   DEVICES        device profiles (default: every profile of the default recipe)
#   RANDOM         random subnets evaluated per run (default 50)
#   SAMPLES        subnets measured for each run's accuracy predictor (default 100)
#   TRAIN_THREADS  threads of training and evaluation (default 2)
#   THREADS        threads of each device's search (default 2; 1 with make -j2)
#   DATA, DATA_FLAGS  ofa-data source (default fashion-mnist) and options
#   TRAIN_FLAGS, EXTRACT_FLAGS  extra options of those stages
#   DOC            the file `doc` writes the tables into (default: docs/study.md
#                  of this source tree)
#   PYTHON         Python 3 of the summariser (default /usr/bin/python3)
#   BINDIR         where the ofa-* programs are: a build tree or a bin directory
#                  (default: this build tree when the file is used from it, else PATH)

OFA_HERE := $(dir $(lastword $(MAKEFILE_LIST)))
include $(OFA_HERE)../tools.mk

RUN ?= runs/study
STUDY_RECIPES ?= $(patsubst %/,%,$(OFA_HERE))
# the main comparison first, so that a study run in sittings has it early
FOUND := $(sort $(basename $(notdir $(wildcard $(STUDY_RECIPES)/*.ini))))
FIRST := deps-050-s1 bignas-s1 ofa-ps-s1 deps-noramp-s1 deps-025-s1 deps-075-s1 \
	deps-050-s2 bignas-s2
RUNS ?= $(filter $(FOUND),$(FIRST)) $(filter-out $(FIRST),$(FOUND))
DEVICES ?= cortex-m4 cortex-m7 cortex-m7-large example-lut host-fp32 host-int8
RANDOM ?= 50
SAMPLES ?= 100
TRAIN_THREADS ?= 2
THREADS ?= 2
DATA ?= fashion-mnist
DATA_FLAGS ?=
TRAIN_FLAGS ?=
EXTRACT_FLAGS ?=
PYTHON ?= /usr/bin/python3
SUMMARISE := $(OFA_HERE)summarise.py
DOC ?= $(wildcard $(OFA_TREE)/docs/study.md)

ifeq ($(strip $(RUNS)),)
$(error $(STUDY_RECIPES): no run recipes (*.ini) found)
endif

# NAME of a stem NAME/devices/DEV
run_of = $(firstword $(subst /, ,$(1)))

EVALUATIONS := $(foreach r,$(RUNS),$(RUN)/$(r)/evaluate.tsv \
	$(foreach d,$(DEVICES),$(RUN)/$(r)/devices/$(d)/test.tsv))
SUMMARY_FLAGS = $(addprefix --device ,$(DEVICES)) $(addprefix $(RUN)/,$(RUNS))

all: $(RUN)/study.md

$(RUN)/study.md: $(EVALUATIONS) $(SUMMARISE)
	$(PYTHON) $(SUMMARISE) --out $(RUN) $(SUMMARY_FLAGS)
	@echo "study: $@"

# The tables into DOC (between its study-results markers), the plots beside it.
doc: $(RUN)/study.md
	@test -n "$(DOC)" || { echo "study: DOC is not set (no docs/study.md beside this make file)" >&2; exit 1; }
	$(PYTHON) $(SUMMARISE) --out $(RUN) --doc $(DOC) $(SUMMARY_FLAGS)
	@echo "study: $(DOC)"

# The training images each run's log will count, from its resolved recipe.
budget: $(foreach r,$(RUNS),$(RUN)/$(r)/recipe.train)
	@$(PYTHON) $(SUMMARISE) --budget $^

$(RUN)/data.h5:
	@mkdir -p $(@D)
	$(OFA_DATA) prepare $(DATA) -o $@ $(DATA_FLAGS)

# $(call recipe_part,AWK-CONDITION,RECIPE): the recipe's resolved sections
# whose header line ($$0) meets the condition, rewritten only when they change.
define recipe_part
@mkdir -p $(@D)
@$(OFA_TRAIN) --print-recipe -r $(2) >$@.all
@awk '/^\[/ { keep = ($(1)) } keep' $@.all >$@.tmp && rm -f $@.all
@if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv -f $@.tmp $@; fi
endef

# (a file holding the value of a make variable, rewritten when it changes)
define var_file
@mkdir -p $(@D)
@echo '$(1)' >$@.tmp
@if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv -f $@.tmp $@; fi
endef

$(RUN)/evaluate.args: FORCE
	$(call var_file,largest medium smallest random:$(RANDOM))
$(RUN)/extract.args: FORCE
	$(call var_file,--samples $(SAMPLES) $(EXTRACT_FLAGS))

$(RUN)/%/recipe.train: FORCE
	$(call recipe_part,$$0 !~ /^\[(extract|export|device\.|variant\.)/,$(STUDY_RECIPES)/$*.ini)
$(RUN)/%/recipe.extract: FORCE
	$(call recipe_part,$$0 == "[extract]",$(STUDY_RECIPES)/$*.ini)
$(RUN)/%/recipe.device: FORCE
	$(call recipe_part,$$0 == "[device.$(notdir $*)]",$(STUDY_RECIPES)/$(call run_of,$*).ini)

# Resumes from supernet.h5.part when a previous invocation was interrupted.
$(RUN)/%/supernet.h5: $(RUN)/%/recipe.train $(RUN)/data.h5
	$(OFA_TRAIN) -j $(TRAIN_THREADS) -r $(STUDY_RECIPES)/$*.ini -d $(RUN)/data.h5 -o $@ \
	    --log $(RUN)/$*/train.tsv $(if $(wildcard $@.part),--resume) $(TRAIN_FLAGS)

$(RUN)/%/evaluate.tsv: $(RUN)/%/supernet.h5 $(RUN)/evaluate.args
	$(OFA_EXTRACT) -j $(TRAIN_THREADS) -q -s $< -d $(RUN)/data.h5 --evaluate --split test \
	    largest medium smallest random:$(RANDOM) >$@.tmp
	@mv -f $@.tmp $@

$(RUN)/%/supernet.measurements.tsv: $(RUN)/%/supernet.h5 $(RUN)/%/recipe.extract \
    $(RUN)/extract.args
	$(OFA_EXTRACT) -j $(TRAIN_THREADS) -q --measure-only -s $< -d $(RUN)/data.h5 -m $@ \
	    --samples $(SAMPLES)
	@touch $@

# Per device: stem NAME/devices/DEV.
.SECONDEXPANSION:
$(RUN)/%/subnet.h5: $(RUN)/$$(call run_of,$$*)/supernet.measurements.tsv \
    $(RUN)/%/recipe.device $(RUN)/extract.args
	$(OFA_EXTRACT) -j $(THREADS) -q -s $(RUN)/$(call run_of,$*)/supernet.h5 -d $(RUN)/data.h5 \
	    -r $(STUDY_RECIPES)/$(call run_of,$*).ini -D $(notdir $*) -m $< --samples $(SAMPLES) \
	    -o $@ $(EXTRACT_FLAGS)

$(RUN)/%/test.tsv: $(RUN)/%/subnet.h5
	$(OFA_EXTRACT) -j $(THREADS) -q -s $(RUN)/$(call run_of,$*)/supernet.h5 -d $(RUN)/data.h5 \
	    --evaluate --split test "$$(awk '$$1 == "subnet" { print $$2; exit }' $(@D)/subnet.txt)" \
	    >$@.tmp
	@mv -f $@.tmp $@

# Make must not delete the intermediates.
.SECONDARY:
.PHONY: all doc budget FORCE
