#include <config.h>
/* ops_loss.c: softmax with temperature, label-smoothed cross-entropy and
 * knowledge distillation on [N,K] logits. Log-probabilities are computed as
 * z/T - logsumexp(z/T) in double (row max subtracted), so no log of a tiny
 * or underflowed probability is ever taken. Loss sums run serially in row order.
 * Each entry point times itself (prof.h): training calls them beside the
 * supernet. */

#include "ops.h"
#include "prof.h"
#include "util.h"

#include <math.h>


/* z [K] -> p [K] = softmax(z * invT); returns lse = log sum_k exp(z_k * invT),
 * so that log p_k = z_k * invT - lse. */
static double softmax_row(float *p, const float *z, int K, double invT)
{
    double zmax = (double)z[0] * invT;
    for (int k = 1; k < K; k++)
        if ((double)z[k] * invT > zmax)
            zmax = (double)z[k] * invT;
    double s = 0;
    for (int k = 0; k < K; k++) {
        double e = exp((double)z[k] * invT - zmax);
        p[k] = (float)e;
        s += e;
    }
    double inv = 1.0 / s;
    for (int k = 0; k < K; k++)
        p[k] = (float)((double)p[k] * inv);
    return zmax + log(s);
}

/* logits [N,K] -> probs [N,K]. */
void ofa_softmax_forward(float *probs, const float *logits, int N, int K, float T)
{
    OFA_ASSERT(N >= 1 && K >= 1 && T > 0.0f);
    const int prof = ofa_prof_begin();
#pragma omp parallel for schedule(static) if ((long)N * K >= 65536)
    for (int n = 0; n < N; n++)
        softmax_row(probs + (long)n * K, logits + (long)n * K, K, 1.0 / (double)T);
    ofa_prof_end(prof, OFA_PROF_SOFTMAX, OFA_PROF_FWD);
}

/* logits [N,K], labels [N] -> probs [N,K]; returns the mean loss. */
float ofa_ce_forward(float *probs, const float *logits, const int *labels,
                     int N, int K, float smoothing)
{
    OFA_ASSERT(N >= 1 && K >= 1 && smoothing >= 0.0f && smoothing <= 1.0f);
    const int prof = ofa_prof_begin();
    double eps = smoothing, total = 0;
    for (int n = 0; n < N; n++) {
        OFA_ASSERT(labels[n] >= 0 && labels[n] < K);
        const float *z = logits + (long)n * K;
        double lse = softmax_row(probs + (long)n * K, z, K, 1.0);
        /* -sum_k t_k log p_k, t = (1 - eps) onehot + eps / K */
        double sumlogp = 0;
        for (int k = 0; k < K; k++)
            sumlogp += (double)z[k] - lse;
        total += -(1.0 - eps) * ((double)z[labels[n]] - lse) - eps / K * sumlogp;
    }
    ofa_prof_end(prof, OFA_PROF_CE, OFA_PROF_FWD);
    return (float)(total / N);
}

/* probs [N,K], labels [N] -> dlogits [N,K] (+=). */
void ofa_ce_backward(float *dlogits, const float *probs, const int *labels,
                     int N, int K, float smoothing, float scale)
{
    OFA_ASSERT(N >= 1 && K >= 1);
    const int prof = ofa_prof_begin();
    float s = scale / (float)N;
    float off = smoothing / (float)K;
    for (int n = 0; n < N; n++) {
        OFA_ASSERT(labels[n] >= 0 && labels[n] < K);
        const float *p = probs + (long)n * K;
        float *d = dlogits + (long)n * K;
        for (int k = 0; k < K; k++) {
            float t = off + (k == labels[n] ? 1.0f - smoothing : 0.0f);
            d[k] += s * (p[k] - t);
        }
    }
    ofa_prof_end(prof, OFA_PROF_CE, OFA_PROF_BWD);
}

/* logits, tprobs [N,K] -> probs [N,K] = softmax(logits / T); returns
 * T^2 * mean_n -sum_k tprobs log probs. */
float ofa_kd_forward(float *probs, const float *logits, const float *tprobs,
                     int N, int K, float T)
{
    OFA_ASSERT(N >= 1 && K >= 1 && T > 0.0f);
    const int prof = ofa_prof_begin();
    double invT = 1.0 / (double)T, total = 0;
    for (int n = 0; n < N; n++) {
        const float *z = logits + (long)n * K;
        const float *tp = tprobs + (long)n * K;
        double lse = softmax_row(probs + (long)n * K, z, K, invT);
        double ce = 0;
        for (int k = 0; k < K; k++)
            ce -= (double)tp[k] * ((double)z[k] * invT - lse);
        total += ce;
    }
    ofa_prof_end(prof, OFA_PROF_KD, OFA_PROF_FWD);
    return (float)((double)T * (double)T * total / N);
}

/* probs, tprobs [N,K] -> dlogits [N,K] (+=). */
void ofa_kd_backward(float *dlogits, const float *probs, const float *tprobs,
                     int N, int K, float T, float scale)
{
    OFA_ASSERT(N >= 1 && K >= 1 && T > 0.0f);
    float s = scale * T / (float)N;
    const int prof = ofa_prof_begin();
    for (long i = 0; i < (long)N * K; i++)
        dlogits[i] += s * (probs[i] - tprobs[i]);
    ofa_prof_end(prof, OFA_PROF_KD, OFA_PROF_BWD);
}
