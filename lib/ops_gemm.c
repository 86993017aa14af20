#include <config.h>
/* ops_gemm.c: ofa_gemm, the project's one entry point into BLAS.
 * A row-major wrapper over cblas_sgemm (OpenBLAS, its OpenMP build). Called
 * outside a parallel region, it uses the OpenMP threads; called inside one,
 * OpenBLAS runs on the calling thread.
 */

#include "ops.h"
#include "util.h"

#include <cblas.h>
#include <stdlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* Rows of C (or terms of the sum) each thread must get before ofa_gemm
 * splits the work itself. */
enum { SPLIT_MIN_ROWS = 256 };

static void sgemm(int transA, int transB, int M, int N, int K, float alpha, const float *A,
                  int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans,
                transB ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, beta, C,
                ldc);
}

void ofa_gemm_add_partials(float *C, int ldc, const float *part, int M, int N, int nt)
{
#pragma omp for schedule(static)
    for (int i = 0; i < M; i++)
        for (int u = 1; u < nt; u++) {
            const float *p = part + ((size_t)(u - 1) * M + i) * N;
            float *c = C + (size_t)i * ldc;
            for (int j = 0; j < N; j++)
                c[j] += p[j];
        }
}

/* C [M x N] = alpha * op(A) [M x K] * op(B) [K x N] + beta * C, row-major.
 *
 * The convolutions' GEMMs are tall and thin (M = pixels of the batch, tens
 * of thousands; N and K tens to hundreds), and OpenBLAS 0.3.21 threads them
 * poorly: at 2 threads 1.0-1.5x its 1-thread speed on the reference
 * supernet's pointwise layers. So the threads split the work themselves,
 * each calling sgemm on its part alone (2-3x at 2 threads on those shapes):
 * - A not transposed, at least SPLIT_MIN_ROWS rows a thread: contiguous
 *   slices of C's rows;
 * - A transposed (the weight gradients, the pixels in K), at least
 *   SPLIT_MIN_ROWS terms a thread: slices of the sum, thread 0's into C, the
 *   others' into partials that C then adds in thread order.
 * Each split made the largest subnet's training step at 2 threads about
 * 1.1-1.15x faster (alternating rounds). OpenBLAS's rounding of a row
 * depends on where its row blocks fall, so a split result can differ in the
 * last bits from a whole one: like the rest of a run, it is a function of
 * the thread count, and the same at every call. */
void ofa_gemm(int transA, int transB, int M, int N, int K, float alpha,
              const float *A, int lda, const float *B, int ldb, float beta,
              float *C, int ldc)
{
    OFA_ASSERT(M >= 0 && N >= 0 && K >= 0);
    if (M == 0 || N == 0)
        return;
#ifdef _OPENMP
    const int T = omp_in_parallel() ? 1 : omp_get_max_threads();
    if (!transA && T > 1 && M >= SPLIT_MIN_ROWS * T) {
#pragma omp parallel num_threads(T)
        {
            const int t = omp_get_thread_num(), nt = omp_get_num_threads();
            const long m0 = (long)M * t / nt, m1 = (long)M * (t + 1) / nt;
            sgemm(0, transB, (int)(m1 - m0), N, K, alpha, A + (size_t)m0 * lda, lda, B, ldb,
                  beta, C + (size_t)m0 * ldc, ldc);
        }
        return;
    }
    if (transA && T > 1 && K >= SPLIT_MIN_ROWS * T) {
        float *part = ofa_xmalloc((size_t)(T - 1) * M * N * sizeof *part, "GEMM partial sums");
#pragma omp parallel num_threads(T)
        {
            const int t = omp_get_thread_num(), nt = omp_get_num_threads();
            const long k0 = (long)K * t / nt, k1 = (long)K * (t + 1) / nt;
            const float *At = A + (size_t)k0 * lda;
            const float *Bt = B + (size_t)k0 * (transB ? 1 : ldb);
            if (t == 0)
                sgemm(1, transB, M, N, (int)(k1 - k0), alpha, At, lda, Bt, ldb, beta, C, ldc);
            else
                sgemm(1, transB, M, N, (int)(k1 - k0), alpha, At, lda, Bt, ldb, 0.0f,
                      part + (size_t)(t - 1) * M * N, N);
#pragma omp barrier
            ofa_gemm_add_partials(C, ldc, part, M, N, nt);
        }
        free(part);
        return;
    }
#endif
    sgemm(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
