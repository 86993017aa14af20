/* export.h: the ofa-export stage for one device: materialise the chosen
 * subnet, measure it, run the stability fine-tuning pass, quantize it to
 * int8, measure again and write the artifacts (model.h5, model.onnx,
 * model.c/model.h, card.md, export.tsv) into the device directory. */
#ifndef OFA_EXPORT_H
#define OFA_EXPORT_H

#include "util.h"

#define OFA_EXPORT_MAX_SETS 32

struct ofa_export_opts {
    const char *supernet; /* supernet.h5 from ofa-train */
    const char *subnet;   /* devices/<dev>/subnet.h5 from ofa-extract */
    const char *data;     /* data.h5 the supernet was trained on */
    const char *outdir;   /* device directory */
    const char *recipe;   /* optional: take [export] and [variant.*] from this recipe */
    const char *sets[OFA_EXPORT_MAX_SETS]; /* --set section.key=value, applied last */
    int n_sets;
    int progress;
};

int ofa_export_run(const struct ofa_export_opts *o, struct ofa_error *err);

#endif
