package org.sparkquant.gptq;

import java.io.Serializable;
import java.util.Arrays;
import java.util.Comparator;
import java.util.stream.IntStream;
import org.bytedeco.javacpp.DoublePointer;
import org.bytedeco.javacpp.FloatPointer;
import org.bytedeco.javacpp.Pointer;
import org.sparkquant.SparkQuantException;
import org.sparkquant.linalg.OpenBlas;
import org.sparkquant.linalg.UpperCholesky;

/**
 * Everything GPTQ derives from a layer input's Hessian alone (step a), computed once and broadcast to the tasks
 * that quantize disjoint blocks of output rows (step b, {@link Gptq#quantize}): dead columns, the act-order
 * permutation, the damping actually used and the upper Cholesky factor U of the damped, permuted H⁻¹
 * (H⁻¹ = UᵀU; AutoGPTQ's {@code Hinv}).
 *
 * <p>U is stored as block rows of the GPTQ block size: block b holds rows [bB, bB+B) × columns [bB, n) of U,
 * row-major, i.e. exactly the rows the lazy-batch update of block b reads, and half the memory of a square.
 *
 * <p><b>How U is computed.</b> AutoGPTQ runs cholesky(H) → cholesky_inverse → cholesky(upper), 4n³/3 flops. Here:
 * with J the index reversal, factor J·H·J = VᵀV (upper Cholesky); then H = R·Rᵀ with R = J·Vᵀ·J upper
 * triangular, so H⁻¹ = R⁻ᵀR⁻¹ and, by uniqueness of the Cholesky factor, U = R⁻¹ = J·V⁻ᵀ·J — one Cholesky and one
 * triangular inverse, 2n³/3 flops, no explicit inverse. Both run in the configured precision (FP32 like the
 * reference) with {@link UpperCholesky} (LAPACK's potrf/trtri from gemm and syrk: the bundled OpenBLAS's own are
 * wrong with its AVX-512 kernels).
 *
 * <p><b>Act-order tie-break.</b> The permutation sorts diag(H) (fp64, after the dead-column fix) descending with a
 * <em>stable</em> sort: equal diagonals keep ascending column order (AutoGPTQ's {@code torch.argsort} is unstable,
 * so its order among ties is unspecified).
 *
 * <p><b>Damping.</b> H[i,i] += p·mean(diag H) with p = dampPercent; when the Cholesky factorization fails, p grows by
 * dampAutoIncrement and the factorization is retried from the undamped H while p &lt; 1 (GPTQModel's rule).
 *
 * <p><b>Reproducibility.</b> The blocked factorizations call OpenBLAS kernels whose last bits depend on the
 * thread count and kernel, so U can differ in the last bit between OpenBLAS settings; it is computed once and
 * broadcast, so all row blocks of a matrix use the same U. A self-check (UᵀU·H̃·x = x for a fixed x, O(n²)) rejects
 * a wrong factor from a miscomputing BLAS build instead of quantizing with it.
 */
public final class GptqPreparation implements Serializable {
    private static final long serialVersionUID = 1L;

    private final QuantConfig config;
    private final int columns;
    private final int[] perm;
    private final boolean[] dead;
    private final double dampPercentUsed;
    private final double damp;
    private final float[][] hinv32;
    private final double[][] hinv64;

    private GptqPreparation(QuantConfig config, int columns, int[] perm, boolean[] dead, double dampPercentUsed,
                            double damp, float[][] hinv32, double[][] hinv64) {
        this.config = config;
        this.columns = columns;
        this.perm = perm;
        this.dead = dead;
        this.dampPercentUsed = dampPercentUsed;
        this.damp = damp;
        this.hinv32 = hinv32;
        this.hinv64 = hinv64;
    }

    /** The settings this preparation was made for (descAct, damping, precision and block size matter). */
    public QuantConfig config() {
        return config;
    }

    public int columns() {
        return columns;
    }

    /** Processing order: position k quantizes original column perm[k] (identity without act-order). */
    public int[] perm() {
        return perm.clone();
    }

    /** Columns whose Hessian diagonal is 0 (never activated): their weights are zeroed before quantization. */
    public boolean[] dead() {
        return dead.clone();
    }

    public int deadCount() {
        int n = 0;
        for (boolean d : dead) {
            n += d ? 1 : 0;
        }
        return n;
    }

    /** The relative damping that made H positive definite (config.dampPercent() unless retries were needed). */
    public double dampPercentUsed() {
        return dampPercentUsed;
    }

    /** The absolute value added to the diagonal, dampPercentUsed · mean(diag H). */
    public double damp() {
        return damp;
    }

    /** Entry U[p][q] of the upper Cholesky factor of H⁻¹, in processing (permuted) order; for tests. */
    public double hinv(int p, int q) {
        if (q < p) {
            return 0;
        }
        int b = p / config.blockSize();
        int i1 = b * config.blockSize();
        int at = (p - i1) * (columns - i1) + (q - i1);
        return hinv32 != null ? hinv32[b][at] : hinv64[b][at];
    }

    /** The same preparation for settings that do not affect it (bits, group size, sym, static groups, MSE). */
    GptqPreparation withConfig(QuantConfig c) {
        return c.equals(config) ? this
                : new GptqPreparation(c, columns, perm, dead, dampPercentUsed, damp, hinv32, hinv64);
    }

    int[] permRef() {
        return perm;
    }

    boolean[] deadRef() {
        return dead;
    }

    float[] block32(int b) {
        return hinv32[b];
    }

    double[] block64(int b) {
        return hinv64[b];
    }

    // ---------------------------------------------------------------- computation

    static GptqPreparation prepare(Hessian h, QuantConfig config) {
        int n = h.columns();
        int bs = config.blockSize();
        double[] diag = h.diagonal();
        boolean[] dead = new boolean[n];
        double sum = 0;
        for (int i = 0; i < n; i++) {
            if (!Double.isFinite(diag[i]) || diag[i] < 0) {
                throw SparkQuantException.badInput("Hessian diagonal at column " + i + " is " + diag[i]
                        + ": activations contain NaN/Inf or the matrix is not a Hessian");
            }
            if (diag[i] == 0) {
                dead[i] = true;
                diag[i] = 1;
            }
            sum += diag[i];
        }
        double mean = sum / n;
        int[] perm = IntStream.range(0, n).toArray();
        if (config.descAct()) {
            double[] key = diag;
            perm = IntStream.range(0, n).boxed()
                    .sorted(Comparator.comparingDouble((Integer i) -> key[i]).reversed()) // List.sort is stable
                    .mapToInt(Integer::intValue).toArray();
        }
        // rev[k]: original column at reversed-permuted position k (the LAPACK work matrix is J·P·H·Pᵀ·J).
        int[] rev = new int[n];
        for (int k = 0; k < n; k++) {
            rev[k] = perm[n - 1 - k];
        }
        OpenBlas.verify();
        boolean f32 = config.precision() == Precision.FP32;
        long size = (long) n * n;
        Pointer work = f32 ? new FloatPointer(size) : new DoublePointer(size);
        try {
            double percent = config.dampPercent();
            double used;
            while (true) {
                used = percent * mean;
                fill(h, rev, dead, used, work, f32);
                if (UpperCholesky.factor(work, n) == 0) {
                    break;
                }
                percent += config.dampAutoIncrement();
                if (percent >= 1) {
                    // H = 2/n·ΣxᵀX is positive semi-definite and OpenBlas.verify() passed, so the matrix is not one.
                    throw SparkQuantException.badInput("Hessian of " + n + " columns is not positive definite even "
                            + "with damping up to " + (percent - config.dampAutoIncrement()) + " of its mean diagonal:"
                            + " not a Hessian of real activations");
                }
            }
            UpperCholesky.invert(work, n);
            int blocks = (n + bs - 1) / bs;
            float[][] h32 = f32 ? new float[blocks][] : null;
            double[][] h64 = f32 ? null : new double[blocks][];
            Parallel.forEach(blocks, b -> extractBlock(work, n, bs, b, h32, h64));
            GptqPreparation prep = new GptqPreparation(config, n, perm, dead, percent,
                    f32 ? (float) (percent * mean) : used, h32, h64);
            prep.selfCheck(h, used);
            return prep;
        } finally {
            work.deallocate();
        }
    }

    /**
     * Checks UᵀU·H̃·x = x for a fixed pseudo-random x (O(n²), against the O(n³) factorization): a wrong factor —
     * a miscomputing BLAS/LAPACK build — must not silently produce a quantized model. The tolerance allows the
     * worst-case conditioning of a damped Hessian, cond(H̃) ≤ n/p + 1, far below the O(1) residual of garbage.
     */
    private void selfCheck(Hessian h, double damp) {
        int n = columns;
        double[] x = new double[n];
        java.util.SplittableRandom rnd = new java.util.SplittableRandom(n);
        for (int i = 0; i < n; i++) {
            x[i] = rnd.nextDouble(-1, 1);
        }
        double[] y = new double[n]; // H̃·x in processing order
        Parallel.forEach(n, p -> {
            double[] row = new double[n];
            h.row(perm[p], row);
            double s = 0;
            for (int q = 0; q < n; q++) {
                s += (q == p && dead[perm[p]] ? 1.0 : row[perm[q]]) * x[q];
            }
            y[p] = s + damp * x[p];
        });
        int bs = config.blockSize();
        double[] z = new double[n]; // U·y, row p of U = block p/bs, offset (p − i1)·width + (q − i1)
        Parallel.forEach(n, p -> {
            int b = p / bs;
            int i1 = b * bs;
            int base = (p - i1) * (n - i1) - i1;
            double s = 0;
            for (int q = p; q < n; q++) {
                s += (hinv32 != null ? hinv32[b][base + q] : hinv64[b][base + q]) * y[q];
            }
            z[p] = s;
        });
        double[] w = new double[n]; // Uᵀ·z, accumulated row by row
        for (int p = 0; p < n; p++) {
            int b = p / bs;
            int i1 = b * bs;
            int base = (p - i1) * (n - i1) - i1;
            double zp = z[p];
            for (int q = p; q < n; q++) {
                w[q] += (hinv32 != null ? hinv32[b][base + q] : hinv64[b][base + q]) * zp;
            }
        }
        double worst = 0;
        for (int q = 0; q < n; q++) {
            worst = Math.max(worst, Math.abs(w[q] - x[q]));
        }
        double eps = config.precision() == Precision.FP32 ? 0x1p-24 : 0x1p-53;
        double tol = Math.min(0.5, Math.max(1e-6, 10 * (n / dampPercentUsed + 1) * eps));
        if (!(worst <= tol)) {
            throw SparkQuantException.environment("the Cholesky factor of the inverse Hessian (" + n + " columns) fails "
                    + "its check, |UᵀUHx − x| = " + worst + " > " + tol + ": OpenBLAS kernel " + OpenBlas.kernel()
                    + " miscomputes (start the JVM with OPENBLAS_CORETYPE=" + OpenBlas.SAFE_CORETYPE + ")");
        }
    }

    /**
     * Writes the upper triangle (column-major) of J·P·H·Pᵀ·J with dead diagonals set to 1 and the damping added:
     * work[i + j·n] = H[rev[i]][rev[j]] for i ≤ j. Column j is a gather from row rev[j] of H.
     */
    private static void fill(Hessian h, int[] rev, boolean[] dead, double damp, Pointer work, boolean f32) {
        int n = h.columns();
        float dampF = (float) damp;
        int strip = 64;
        Parallel.forEach((n + strip - 1) / strip, s -> {
            double[] row = new double[n];
            float[] col32 = f32 ? new float[n] : null;
            double[] col64 = f32 ? null : new double[n];
            for (int j = s * strip; j < Math.min(n, (s + 1) * strip); j++) {
                int c = rev[j];
                h.row(c, row);
                if (f32) {
                    for (int i = 0; i < j; i++) {
                        col32[i] = (float) row[rev[i]];
                    }
                    col32[j] = (dead[c] ? 1f : (float) row[c]) + dampF;
                    ((FloatPointer) work).getPointer((long) j * n).put(col32, 0, j + 1);
                } else {
                    for (int i = 0; i < j; i++) {
                        col64[i] = row[rev[i]];
                    }
                    col64[j] = (dead[c] ? 1.0 : row[c]) + damp;
                    ((DoublePointer) work).getPointer((long) j * n).put(col64, 0, j + 1);
                }
            }
        });
    }

    /**
     * After trtri the column-major upper triangle holds V⁻¹ and U[p][q] = V⁻¹[n−1−q][n−1−p], i.e. memory index
     * (n−1−p)·n + (n−1−q): row p of U is column n−1−p of V⁻¹ read backwards, one contiguous segment.
     */
    private static void extractBlock(Pointer work, int n, int bs, int b, float[][] h32, double[][] h64) {
        int i1 = b * bs;
        int i2 = Math.min(n, i1 + bs);
        int width = n - i1;
        if (h32 != null) {
            float[] out = new float[(i2 - i1) * width];
            float[] seg = new float[width];
            for (int p = i1; p < i2; p++) {
                ((FloatPointer) work).getPointer((long) (n - 1 - p) * n).get(seg, 0, width);
                int base = (p - i1) * width;
                for (int q = p; q < n; q++) {
                    out[base + q - i1] = seg[n - 1 - q];
                }
            }
            h32[b] = out;
        } else {
            double[] out = new double[(i2 - i1) * width];
            double[] seg = new double[width];
            for (int p = i1; p < i2; p++) {
                ((DoublePointer) work).getPointer((long) (n - 1 - p) * n).get(seg, 0, width);
                int base = (p - i1) * width;
                for (int q = p; q < n; q++) {
                    out[base + q - i1] = seg[n - 1 - q];
                }
            }
            h64[b] = out;
        }
    }

    @Override
    public String toString() {
        return "GptqPreparation[" + columns + " columns, " + deadCount() + " dead, damp " + dampPercentUsed
                + (config.descAct() ? ", act-order" : "") + ", " + config.precision() + "]";
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof GptqPreparation p && p.config.equals(config) && p.columns == columns
                && Arrays.equals(p.perm, perm) && Arrays.equals(p.dead, dead)
                && Double.compare(p.dampPercentUsed, dampPercentUsed) == 0
                && Arrays.deepEquals(p.hinv32, hinv32) && Arrays.deepEquals(p.hinv64, hinv64);
    }

    @Override
    public int hashCode() {
        return Arrays.hashCode(perm) * 31 + columns;
    }
}
