# Recipes: installed to $(pkgdatadir)/recipes so the tools find them by name.
recipesdir = $(pkgdatadir)/recipes
dist_recipes_DATA = recipes/fashion-mnist.ini recipes/quick.ini \
	recipes/pipeline.mk recipes/tools.mk recipes/fashion-mnist.mk recipes/quick.mk

lib_libofa_a_SOURCES += lib/recipe.c lib/recipe.h

check_PROGRAMS += tests/check_recipe
tests_check_recipe_SOURCES = tests/check_recipe.c $(TEST_COMMON)
tests_check_recipe_CFLAGS = $(TEST_CFLAGS)
tests_check_recipe_LDADD = $(TEST_LDADD)

RECIPE_FIXTURES = \
	tests/fixtures/recipes/tiny.ini \
	tests/fixtures/recipes/tiny-override.ini \
	tests/fixtures/recipes/rgb100.ini \
	tests/fixtures/recipes/bad-continuation.ini \
	tests/fixtures/recipes/bad-cross.ini \
	tests/fixtures/recipes/bad-depth.ini \
	tests/fixtures/recipes/bad-enum.ini \
	tests/fixtures/recipes/bad-include-child.ini \
	tests/fixtures/recipes/bad-include-loop-a.ini \
	tests/fixtures/recipes/bad-include-loop-b.ini \
	tests/fixtures/recipes/bad-include-missing.ini \
	tests/fixtures/recipes/bad-key.ini \
	tests/fixtures/recipes/bad-list-order.ini \
	tests/fixtures/recipes/bad-range.ini \
	tests/fixtures/recipes/bad-section.ini \
	tests/fixtures/recipes/bad-stage-gap.ini \
	tests/fixtures/recipes/bad-stage-no-width.ini \
	tests/fixtures/recipes/bad-stage-number.ini \
	tests/fixtures/recipes/bad-syntax.ini \
	tests/fixtures/recipes/bad-toplevel-key.ini \
	tests/fixtures/recipes/bad-type.ini
EXTRA_DIST += $(RECIPE_FIXTURES) docs/recipes.md

# docs/recipes.md is generated from the parser's key table; check_recipe
# fails when it is out of date.
recipe-docs: tests/check_recipe$(EXEEXT)
	$(AM_V_GEN)tests/check_recipe$(EXEEXT) --write-docs > $(srcdir)/docs/recipes.md.tmp && \
	mv $(srcdir)/docs/recipes.md.tmp $(srcdir)/docs/recipes.md
.PHONY: recipe-docs

# The schedule study (issue 12, docs/study.md): one recipe per run, the make
# file that runs them all and the summariser of their results.
studydir = $(pkgdatadir)/recipes/study
dist_study_DATA = recipes/study/deps-050-s1.ini recipes/study/deps-050-s2.ini \
	recipes/study/deps-025-s1.ini recipes/study/deps-075-s1.ini \
	recipes/study/deps-noramp-s1.ini recipes/study/bignas-s1.ini \
	recipes/study/bignas-s2.ini recipes/study/ofa-ps-s1.ini \
	recipes/study/study.mk recipes/study/summarise.py
EXTRA_DIST += docs/study.md

# Slurm job scripts: training (requeued on time-out) and per-device arrays.
slurmdir = $(pkgdatadir)/recipes/slurm
dist_slurm_DATA = recipes/slurm/train.sbatch recipes/slurm/devices.sbatch
