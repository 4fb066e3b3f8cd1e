package org.sparkquant.linalg;

import static org.bytedeco.openblas.global.openblas.CblasColMajor;
import static org.bytedeco.openblas.global.openblas.LAPACKE_dpotrf;
import static org.bytedeco.openblas.global.openblas.LAPACKE_dtrtri;
import static org.bytedeco.openblas.global.openblas.LAPACKE_spotrf;
import static org.bytedeco.openblas.global.openblas.LAPACKE_strtri;
import static org.bytedeco.openblas.global.openblas.LAPACK_COL_MAJOR;
import static org.bytedeco.openblas.global.openblas.CblasNoTrans;
import static org.bytedeco.openblas.global.openblas.CblasTrans;
import static org.bytedeco.openblas.global.openblas.CblasUpper;
import static org.bytedeco.openblas.global.openblas.cblas_dgemm;
import static org.bytedeco.openblas.global.openblas.cblas_dsyrk;
import static org.bytedeco.openblas.global.openblas.cblas_sgemm;
import static org.bytedeco.openblas.global.openblas.cblas_ssyrk;

import org.bytedeco.javacpp.DoublePointer;
import org.bytedeco.javacpp.FloatPointer;
import org.bytedeco.javacpp.Pointer;

/**
 * LAPACK's {@code potrf('U')} and {@code trtri('U','N')} on a column-major n×n matrix in native memory, float or
 * double: OpenBLAS's own where they are right, else the same factorization built only from BLAS {@code gemm} and
 * {@code syrk} plus small diagonal blocks solved in Java.
 *
 * <p><b>Why two ways.</b> The OpenBLAS 0.3.19 that ND4J bundles (a DYNAMIC_ARCH build) computes {@code dtrsm} and
 * {@code dtrmm} wrongly with its SkylakeX and CooperLake kernels — the ones it picks on most AVX-512 Intel CPUs — and
 * its {@code dpotrf}/{@code dtrtri} are built on them (OpenBLAS issues #2986, #3454). Its {@code gemm} and
 * {@code syrk} are right with SkylakeX, and they carry all the O(n³) work of the blocked version, which is about
 * 1.25× slower than LAPACK's on one thread. So LAPACK runs where the kernel set is sound and the blocked version
 * where it is not ({@link #usesLapack()}); {@link OpenBlas#verify()} checks the one in use at start-up, and every
 * GPTQ factor is checked against its Hessian.
 *
 * <p><b>Blocked algorithm.</b> Right-looking Cholesky, A = VᵀV with V upper, in blocks of {@value #NB} columns:
 * factor the diagonal block in Java (in double), V₁₂ = V₁₁⁻ᵀA₁₂ as a gemm with the block's explicit inverse, then
 * A₂₂ −= V₁₂ᵀV₁₂ with syrk. The inverse X = V⁻¹ goes left to right by column blocks, as LAPACK's trtri:
 * X₀:ⱼ,ⱼ = −X₀:ⱼ,₀:ⱼ·V₀:ⱼ,ⱼ·Vⱼⱼ⁻¹, the triangular product as one gemm per block row so that no work is wasted
 * below the diagonal. Diagonal blocks are computed in double and rounded to the matrix's precision when stored.
 *
 * <p>Deterministic: the same input, precision and OpenBLAS kernel give the same bits (no thread depends on data).
 */
public final class UpperCholesky {
    /** Block size: big enough for gemm efficiency, small enough that the Java diagonal work stays O(n·NB²). */
    static final int NB = 128;

    private UpperCholesky() {}

    /** Kernel sets of the bundled OpenBLAS whose double-precision triangular routines are wrong. */
    private static final java.util.Set<String> BROKEN_TRIANGULAR = java.util.Set.of("SKYLAKEX", "COOPERLAKE");

    /** Cache: whether this process's OpenBLAS kernel set has sound LAPACK triangular routines. */
    private static final class Lapack {
        static final boolean SOUND = !BROKEN_TRIANGULAR.contains(OpenBlas.kernel());
    }

    /** Whether {@link #factor} and {@link #invert} run LAPACK (else the blocked gemm/syrk version). */
    public static boolean usesLapack() {
        return Lapack.SOUND;
    }

    /**
     * Factors A = VᵀV in place: the upper triangle of {@code a} (n×n, column-major, leading dimension n) is replaced
     * by V; the strict lower triangle is not read and may change. Returns 0, or like LAPACK's {@code info} the
     * 1-based column whose pivot is not positive (or NaN): A is not positive definite and {@code a} holds a partial
     * factor.
     */
    public static int factor(Pointer a, int n) {
        if (!usesLapack()) {
            return factorBlocked(a, n);
        }
        int info = a instanceof FloatPointer f ? LAPACKE_spotrf(LAPACK_COL_MAJOR, (byte) 'U', n, f, n)
                : LAPACKE_dpotrf(LAPACK_COL_MAJOR, (byte) 'U', n, (DoublePointer) a, n);
        if (info < 0) {
            throw new IllegalArgumentException("potrf rejected argument " + (-info));
        }
        return info;
    }

    /** Replaces the upper triangular V in {@code a} (as {@link #factor} leaves it) by V⁻¹; V's diagonal is non-zero. */
    public static void invert(Pointer a, int n) {
        if (!usesLapack()) {
            invertBlocked(a, n);
            return;
        }
        int info = a instanceof FloatPointer f ? LAPACKE_strtri(LAPACK_COL_MAJOR, (byte) 'U', (byte) 'N', n, f, n)
                : LAPACKE_dtrtri(LAPACK_COL_MAJOR, (byte) 'U', (byte) 'N', n, (DoublePointer) a, n);
        if (info != 0) {
            throw new IllegalStateException("trtri failed with info " + info + " on a Cholesky factor");
        }
    }

    /** {@link #factor} by the blocked gemm/syrk version; the strict lower triangle of diagonal blocks becomes 0. */
    static int factorBlocked(Pointer a, int n) {
        Mat m = Mat.of(a, n);
        for (int k = 0; k < n; k += NB) {
            int b = Math.min(NB, n - k);
            double[] d = m.read(k, k, b, b);
            for (int j = 0; j < b; j++) {
                for (int i = 0; i <= j; i++) {
                    double s = d[i + j * b];
                    for (int l = 0; l < i; l++) {
                        s -= d[l + i * b] * d[l + j * b];
                    }
                    if (i < j) {
                        d[i + j * b] = m.round(s / d[i + i * b]);
                    } else if (s > 0) { // false for NaN too
                        d[j + j * b] = m.round(Math.sqrt(s));
                    } else {
                        return k + j + 1;
                    }
                }
                for (int i = j + 1; i < b; i++) {
                    d[i + j * b] = 0;
                }
            }
            m.write(k, k, b, b, d);
            int rest = n - k - b;
            if (rest > 0) {
                try (Mat inv = Mat.dense(m, b, b, upperInverse(d, b, m)); Mat panel = Mat.dense(m, b, rest,
                        m.read(k, k + b, b, rest))) {
                    // V₁₂ = V₁₁⁻ᵀ·A₁₂, then A₂₂ −= V₁₂ᵀ·V₁₂ (upper triangle only)
                    m.gemm(true, false, b, rest, b, 1, inv, 0, 0, panel, 0, 0, 0, k, k + b);
                    m.syrkUpperTrans(rest, b, -1, k, k + b, 1, k + b, k + b);
                }
            }
        }
        return 0;
    }

    /** {@link #invert} by the blocked gemm/syrk version. */
    static void invertBlocked(Pointer a, int n) {
        Mat m = Mat.of(a, n);
        for (int j = 0; j < n; j += NB) {
            int b = Math.min(NB, n - j);
            double[] d = m.read(j, j, b, b);
            for (int c = 0; c < b; c++) {
                for (int r = c + 1; r < b; r++) {
                    d[r + c * b] = 0;
                }
            }
            double[] inverse = upperInverse(d, b, m);
            if (j > 0) {
                try (Mat t = Mat.dense(m, j, b, null); Mat inv = Mat.dense(m, b, b, inverse)) {
                    // T = X₀:ⱼ,₀:ⱼ·V₀:ⱼ,ⱼ, block row by block row: row block i of X is 0 left of column i.
                    for (int i = 0; i < j; i += NB) {
                        int bi = Math.min(NB, j - i);
                        t.gemm(false, false, bi, b, j - i, 1, m, i, i, m, i, j, 0, i, 0);
                    }
                    // X₀:ⱼ,ⱼ = −T·Vⱼⱼ⁻¹
                    m.gemm(false, false, j, b, b, -1, t, 0, 0, inv, 0, 0, 0, 0, j);
                }
            }
            m.write(j, j, b, b, inverse);
        }
    }

    /** X = V⁻¹ of an upper triangular b×b block (column-major), by back substitution per column, in double. */
    private static double[] upperInverse(double[] v, int b, Mat precision) {
        double[] x = new double[b * b];
        for (int j = 0; j < b; j++) {
            x[j + j * b] = 1 / v[j + j * b];
            for (int i = j - 1; i >= 0; i--) {
                double s = 0;
                for (int l = i + 1; l <= j; l++) {
                    s += v[i + l * b] * x[l + j * b];
                }
                x[i + j * b] = -s / v[i + i * b];
            }
        }
        for (int i = 0; i < x.length; i++) {
            x[i] = precision.round(x[i]);
        }
        return x;
    }

    /**
     * A column-major matrix in native memory, float or double: block reads and writes through Java double arrays,
     * and the two BLAS routines used here. Dense scratch matrices are closed (freed) by their owner.
     */
    private static final class Mat implements AutoCloseable {
        final Pointer p;
        final boolean f32;
        final int ld;
        final boolean owned;

        private Mat(Pointer p, boolean f32, int ld, boolean owned) {
            this.p = p;
            this.f32 = f32;
            this.ld = ld;
            this.owned = owned;
        }

        static Mat of(Pointer a, int n) {
            if (a instanceof FloatPointer) {
                return new Mat(a, true, n, false);
            }
            if (a instanceof DoublePointer) {
                return new Mat(a, false, n, false);
            }
            throw new IllegalArgumentException("need a FloatPointer or DoublePointer, got " + a.getClass());
        }

        /** A rows×cols scratch matrix of like precision (leading dimension rows), filled from {@code values}. */
        static Mat dense(Mat like, int rows, int cols, double[] values) {
            long size = (long) rows * cols;
            Mat m = new Mat(like.f32 ? new FloatPointer(size) : new DoublePointer(size), like.f32, rows, true);
            if (values != null) {
                m.write(0, 0, rows, cols, values);
            }
            return m;
        }

        double round(double x) {
            return f32 ? (float) x : x;
        }

        long at(int r, int c) {
            return r + (long) c * ld;
        }

        double[] read(int r0, int c0, int rows, int cols) {
            double[] out = new double[rows * cols];
            if (f32) {
                float[] col = new float[rows];
                for (int c = 0; c < cols; c++) {
                    fp(r0, c0 + c).get(col, 0, rows);
                    for (int r = 0; r < rows; r++) {
                        out[r + c * rows] = col[r];
                    }
                }
            } else {
                for (int c = 0; c < cols; c++) {
                    dp(r0, c0 + c).get(out, c * rows, rows);
                }
            }
            return out;
        }

        void write(int r0, int c0, int rows, int cols, double[] values) {
            if (f32) {
                float[] col = new float[rows];
                for (int c = 0; c < cols; c++) {
                    for (int r = 0; r < rows; r++) {
                        col[r] = (float) values[r + c * rows];
                    }
                    fp(r0, c0 + c).put(col, 0, rows);
                }
            } else {
                for (int c = 0; c < cols; c++) {
                    dp(r0, c0 + c).put(values, c * rows, rows);
                }
            }
        }

        /** this[cr.., cc..] (m×n) = alpha·op(A[ar.., ac..])·B[br.., bc..] + beta·this[...]. */
        void gemm(boolean transA, boolean transB, int m, int n, int k, double alpha, Mat a, int ar, int ac, Mat b,
                  int br, int bc, double beta, int cr, int cc) {
            int ta = transA ? CblasTrans : CblasNoTrans;
            int tb = transB ? CblasTrans : CblasNoTrans;
            if (f32) {
                cblas_sgemm(CblasColMajor, ta, tb, m, n, k, (float) alpha, a.fp(ar, ac), a.ld, b.fp(br, bc), b.ld,
                        (float) beta, fp(cr, cc), ld);
            } else {
                cblas_dgemm(CblasColMajor, ta, tb, m, n, k, alpha, a.dp(ar, ac), a.ld, b.dp(br, bc), b.ld, beta,
                        dp(cr, cc), ld);
            }
        }

        /** this[cr.., cc..] (n×n, upper) = alpha·A[ar.., ac..]ᵀ·A[ar.., ac..] + beta·C, A k×n. */
        void syrkUpperTrans(int n, int k, double alpha, int ar, int ac, double beta, int cr, int cc) {
            if (f32) {
                cblas_ssyrk(CblasColMajor, CblasUpper, CblasTrans, n, k, (float) alpha, fp(ar, ac), ld,
                        (float) beta, fp(cr, cc), ld);
            } else {
                cblas_dsyrk(CblasColMajor, CblasUpper, CblasTrans, n, k, alpha, dp(ar, ac), ld, beta, dp(cr, cc), ld);
            }
        }

        private FloatPointer fp(int r, int c) {
            return ((FloatPointer) p).getPointer(at(r, c));
        }

        private DoublePointer dp(int r, int c) {
            return ((DoublePointer) p).getPointer(at(r, c));
        }

        @Override
        public void close() {
            if (owned) {
                p.deallocate();
            }
        }
    }
}
