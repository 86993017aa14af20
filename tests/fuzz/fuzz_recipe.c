/* fuzz_recipe.c: libFuzzer target for the recipe reader: the input as the
 * text of a recipe (as a checkpoint stores it: includes are refused), then,
 * when it loads, a --set override taken from its last line and the resolved
 * text read back, which must load again. */
#include <config.h>

#include "recipe.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    struct ofa_recipe *r = malloc(sizeof *r);
    if (!r) {
        free(text);
        return 0;
    }
    struct ofa_error err;
    ofa_recipe_default(r);
    if (ofa_recipe_load_string(r, text, "fuzz", &err) == 0) {
        const char *last = strrchr(text, '\n');
        (void)ofa_recipe_set(r, last ? last + 1 : text, &err);
        char *resolved = ofa_recipe_format(r);
        ofa_recipe_default(r);
        if (ofa_recipe_load_string(r, resolved, "resolved", &err) != 0)
            abort(); /* the resolved text of a valid recipe must load */
        free(resolved);
    }
    free(r);
    free(text);
    return 0;
}
