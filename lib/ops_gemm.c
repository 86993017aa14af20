#include <config.h>
/* ops_gemm.c: ofa_gemm, the project's one entry point into BLAS.
 * A row-major wrapper over cblas_sgemm (OpenBLAS). It must never be called
 * inside an OpenMP parallel region: OpenBLAS runs its own (OpenMP) threads.
 */

#include "ops.h"
#include "util.h"

#include <cblas.h>

/* C [M x N] = alpha * op(A) [M x K] * op(B) [K x N] + beta * C, row-major. */
void ofa_gemm(int transA, int transB, int M, int N, int K, float alpha,
              const float *A, int lda, const float *B, int ldb, float beta,
              float *C, int ldc)
{
    OFA_ASSERT(M >= 0 && N >= 0 && K >= 0);
    if (M == 0 || N == 0)
        return;
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans,
                transB ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb,
                beta, C, ldc);
}
