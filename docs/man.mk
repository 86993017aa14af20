# Man pages, generated from each program's --help and --version with
# help2man (Debian's help2man) when configure found it.
if HAVE_HELP2MAN
man1_MANS = docs/ofa-data.1 docs/ofa-train.1 docs/ofa-extract.1 docs/ofa-export.1 \
	docs/ofa-run.1 docs/ofa-report.1
CLEANFILES += $(man1_MANS)
MAN_GEN = $(AM_V_GEN)$(MKDIR_P) docs && $(HELP2MAN) --no-info --no-discard-stderr
docs/ofa-data.1: datasets/ofa-data$(EXEEXT)
	$(MAN_GEN) -n "prepare and inspect data sets for ofa" -o $@ ./datasets/ofa-data$(EXEEXT)
docs/ofa-train.1: train/ofa-train$(EXEEXT)
	$(MAN_GEN) -n "train a once-for-all supernet" -o $@ ./train/ofa-train$(EXEEXT)
docs/ofa-extract.1: extract/ofa-extract$(EXEEXT)
	$(MAN_GEN) -n "choose a subnet for a device" -o $@ ./extract/ofa-extract$(EXEEXT)
docs/ofa-export.1: export/ofa-export$(EXEEXT)
	$(MAN_GEN) -n "export a device's subnet as int8 artifacts" -o $@ ./export/ofa-export$(EXEEXT)
docs/ofa-run.1: export/ofa-run$(EXEEXT)
	$(MAN_GEN) -n "run an exported model" -o $@ ./export/ofa-run$(EXEEXT)
docs/ofa-report.1: export/ofa-report
	$(MAN_GEN) -n "report of an ofa pipeline run" -o $@ ./export/ofa-report
endif
