/* synthetic.c: the synthetic search objective (see synthetic.h). */
#include <config.h>

#include "synthetic.h"

#include <math.h>

#include "rng.h"

static double kernel_factor(int k)
{
    return k == 3 ? 1.0 : k == 5 ? 1.35 : 1.6;
}

void synth_objectives(const struct ofa_space *sp, const struct ofa_subnet *s,
                      struct ofa_objectives *o)
{
    double cap = 0.0, blocks_ms = 0.0, sram = 0.0;
    int h = (s->res + sp->stem_stride - 1) / sp->stem_stride;
    int cin = sp->first_width;
    for (int st = 0; st < sp->n_stages; st++) {
        double w = 1.0 + 0.35 * st;
        for (int b = 0; b < s->depth[st]; b++) {
            int k = s->kernel[st][b], e = s->expand[st][b];
            int stride = b == 0 ? sp->stages[st].stride : 1;
            double blk = w * (e / 3.0) * kernel_factor(k) * (b == 0 ? 1.0 : 0.75);
            if (b > 0 && s->kernel[st][b - 1] == k)
                blk += 0.15;
            if (st == 0 && k == 7 && e == 6)
                blk -= 0.6;
            cap += blk;
            double act = (double)h * h * (cin + (double)cin * e) / 1024.0;
            if (act > sram)
                sram = act;
            h = (h + stride - 1) / stride;
            blocks_ms += 0.04 + 0.004 * k * e;
            cin = sp->stages[st].width;
        }
    }
    cap *= 0.6 + 0.4 * (s->res - 16) / 12.0;
    double acc = 0.95 - 0.55 * exp(-cap / 14.0);
    if (s->res == ofa_space_max_res(sp) && s->depth[sp->n_stages - 1] == ofa_space_max_depth(sp))
        acc += 0.004;
    long long macs = ofa_subnet_macs(sp, s);
    o->acc = acc;
    o->mmacs = macs / 1e6;
    o->latency_ms = 0.3 + 0.25 * o->mmacs + blocks_ms;
    o->flash_kb = ofa_subnet_params(sp, s) / 1024.0;
    o->sram_kb = sram;
}

float synth_accuracy(const struct ofa_space *sp, const struct ofa_subnet *s,
                     struct ofa_rng *rng, double sharp)
{
    static const float ck[4] = {0.02f, 0.04f, 0.05f, 0.03f};
    static const float ce[4] = {0.03f, 0.05f, 0.04f, 0.06f};
    double score = 0, etot = 0;
    int ri = 0;
    while (sp->resolutions[ri] != s->res)
        ri++;
    for (int st = 0; st < sp->n_stages; st++)
        for (int b = 0; b < s->depth[st]; b++) {
            int ki = (s->kernel[st][b] - 3) / 2;
            int ei = s->expand[st][b] == 3 ? 0 : s->expand[st][b] == 4 ? 1 : 2;
            score += ck[st] * ki + ce[st] * ei + 0.04;
            etot += ei;
        }
    score += 0.15 * ri + 0.01 * ri * etot;
    double z = (score - 1.71) / 0.36; /* about N(0, 1) over uniform samples */
    if (sharp > 0)
        z = z * sharp + (s->depth[3] == 4 && s->res == 28) -
            (s->kernel[1][0] == 3 && s->expand[2][1] == 3);
    return (float)(0.7 + 0.05 * tanh(z) + 0.002 * ofa_rng_normal(rng));
}
