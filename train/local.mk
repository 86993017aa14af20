bin_PROGRAMS += train/ofa-train
train_ofa_train_SOURCES = train/main.c
train_ofa_train_LDADD = $(OFA_LIBS)
