package org.sparkquant.linalg;

import static org.bytedeco.openblas.global.openblas.CblasColMajor;
import static org.bytedeco.openblas.global.openblas.CblasNoTrans;
import static org.bytedeco.openblas.global.openblas.CblasRowMajor;
import static org.bytedeco.openblas.global.openblas.CblasTrans;
import static org.bytedeco.openblas.global.openblas.CblasUpper;
import static org.bytedeco.openblas.global.openblas.cblas_dgemm;
import static org.bytedeco.openblas.global.openblas.cblas_dsyrk;
import static org.bytedeco.openblas.global.openblas.cblas_sgemm;
import static org.bytedeco.openblas.global.openblas.cblas_ssyrk;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.bytedeco.javacpp.DoublePointer;
import org.bytedeco.javacpp.FloatPointer;
import org.bytedeco.javacpp.Loader;
import org.bytedeco.javacpp.Pointer;
import org.bytedeco.javacpp.PointerPointer;
import org.sparkquant.SparkQuantException;

/**
 * The OpenBLAS that ND4J bundles (0.3.19, built with DYNAMIC_ARCH): which kernel set it picked for this CPU, and a
 * once-per-JVM check that the routines this project calls compute what they should.
 *
 * <p>Known defects of this build, measured here by forcing each kernel set on an AVX-512 CPU: with SkylakeX kernels
 * {@code dtrsm}/{@code dtrmm} (and so LAPACK's {@code dpotrf}/{@code dtrtri}) are wrong, which {@link UpperCholesky}
 * avoids there; with CooperLake kernels {@code dgemm} is wrong on many shapes and {@code dtrsm} corrupts the heap — nothing
 * avoids that, so {@link #verify()} fails and names the fix: {@code OPENBLAS_CORETYPE=Haswell}, which the launchers
 * and the Spark defaults set unless the user chose a kernel.
 */
public final class OpenBlas {
    /** The kernel the launchers select: right on every x86-64 CPU with AVX2, and the same bits on every executor. */
    public static final String SAFE_CORETYPE = "Haswell";

    /** The x86-64 kernel sets of OpenBLAS 0.3.19 (each is an exported {@code gotoblas_NAME} table). */
    private static final String[] KERNELS = {"SKYLAKEX", "COOPERLAKE", "HASWELL", "ZEN", "SANDYBRIDGE", "NEHALEM",
        "CORE2", "PRESCOTT", "BARCELONA", "BULLDOZER", "PILEDRIVER", "STEAMROLLER", "EXCAVATOR", "ATHLON", "BANIAS",
        "KATMAI", "COPPERMINE", "NORTHWOOD"};

    /** Cache: the check's outcome for this JVM (null message = passed), computed on first use. */
    private static final class Checked {
        static final String FAILURE = check();
    }

    private OpenBlas() {}

    /** Cache: the kernel set, chosen once when OpenBLAS loads; every quantized block's statistics name it. */
    private static final class Kernel {
        static final String NAME = detect();
    }

    /**
     * The kernel set OpenBLAS chose in this process, e.g. "SKYLAKEX" or "HASWELL", read from its dispatch table
     * pointer; "unknown" where the symbols are not visible (a non-x86 build).
     */
    public static String kernel() {
        return Kernel.NAME;
    }

    private static String detect() {
        Loader.load(org.bytedeco.openblas.global.openblas.class);
        Pointer active = Loader.addressof("gotoblas");
        if (active == null) {
            return "unknown";
        }
        long table = new PointerPointer<>(active).get(0).address();
        for (String k : KERNELS) {
            Pointer t = Loader.addressof("gotoblas_" + k);
            if (t != null && t.address() == table) {
                return k;
            }
        }
        return "unknown";
    }

    /**
     * Fails fast, once per JVM, when OpenBLAS miscomputes a routine this project relies on (sgemm, dgemm, ssyrk,
     * dsyrk, and {@link UpperCholesky} in both precisions), with one line naming the kernel and the fix. Cheap after
     * the first call (a few milliseconds then).
     */
    public static void verify() {
        if (Checked.FAILURE != null) {
            throw SparkQuantException.environment(Checked.FAILURE);
        }
    }

    /** The mismatches of the check, empty when every routine is right; for tests and diagnostics. */
    static List<String> mismatches() {
        List<String> bad = new ArrayList<>();
        // Shapes that cross OpenBLAS's micro-tile and blocking edges; they include shapes CooperLake's dgemm gets wrong.
        int[][] gemmShapes = {{200, 128, 16}, {257, 31, 63}, {100, 257, 65}, {257, 300, 64}, {200, 256, 300},
            {33, 17, 5}, {1, 1, 1}};
        for (boolean f32 : new boolean[] {false, true}) {
            for (int[] s : gemmShapes) {
                for (int order : new int[] {CblasRowMajor, CblasColMajor}) {
                    for (int t = 0; t < 4; t++) {
                        String e = gemmError(f32, order, (t & 1) != 0, (t & 2) != 0, s[0], s[1], s[2]);
                        if (e != null) {
                            bad.add(e);
                        }
                    }
                }
            }
            for (int[] s : new int[][] {{300, 129}, {64, 256}, {7, 3}}) {
                String e = syrkError(f32, s[0], s[1]);
                if (e != null) {
                    bad.add(e);
                }
            }
            for (int n : new int[] {5, 300}) {
                String e = choleskyError(f32, n); // the version in use: LAPACK's, or the blocked one
                if (e != null) {
                    bad.add(e);
                }
            }
        }
        return bad;
    }

    private static String check() {
        List<String> bad;
        try {
            bad = mismatches();
        } catch (RuntimeException | LinkageError e) {
            return "OpenBLAS could not run its start-up check (" + e + ")";
        }
        if (bad.isEmpty()) {
            return null;
        }
        String chosen = System.getenv("OPENBLAS_CORETYPE");
        return "OpenBLAS kernel " + kernel() + (chosen != null ? " (OPENBLAS_CORETYPE=" + chosen + ")" : "")
                + " miscomputes " + String.join(", ", bad.subList(0, Math.min(3, bad.size())))
                + (bad.size() > 3 ? " and " + (bad.size() - 3) + " more" : "")
                + ": start this JVM with OPENBLAS_CORETYPE=" + SAFE_CORETYPE
                + " (for executors: spark.executorEnv.OPENBLAS_CORETYPE=" + SAFE_CORETYPE + ")";
    }

    /**
     * Small integer operands, so that every product and sum is exact in both precisions and the result must equal
     * the Java one bit for bit.
     */
    private static double[] ints(SplittableRandom rnd, int n) {
        double[] v = new double[n];
        for (int i = 0; i < n; i++) {
            v[i] = rnd.nextInt(-8, 9);
        }
        return v;
    }

    private static String gemmError(boolean f32, int order, boolean ta, boolean tb, int m, int n, int k) {
        SplittableRandom rnd = new SplittableRandom(m * 31L + n * 7L + k);
        // op(A) is m×k, op(B) is k×n; stored as given by order and the transposes, with tight leading dimensions.
        double[] a = ints(rnd, m * k);
        double[] b = ints(rnd, k * n);
        double[] c = ints(rnd, m * n);
        boolean row = order == CblasRowMajor;
        int lda = row != ta ? k : m; // row-major NoTrans: k; col-major NoTrans: m; a transpose swaps them
        int ldb = row != tb ? n : k;
        int ldc = row ? n : m;
        double alpha = -1;
        double beta = 2;
        double[] want = new double[m * n];
        for (int i = 0; i < m; i++) {
            for (int j = 0; j < n; j++) {
                double s = 0;
                for (int l = 0; l < k; l++) {
                    s += elem(a, row, ta, i, l, lda) * elem(b, row, tb, l, j, ldb);
                }
                int ci = row ? i * ldc + j : i + j * ldc;
                want[ci] = alpha * s + beta * c[ci];
            }
        }
        double[] got = f32 ? sgemm(order, ta, tb, m, n, k, a, lda, b, ldb, c, ldc)
                : dgemm(order, ta, tb, m, n, k, a, lda, b, ldb, c, ldc);
        return java.util.Arrays.equals(want, got) ? null
                : (f32 ? "sgemm" : "dgemm") + (row ? " row-major " : " col-major ") + (ta ? "T" : "N") + (tb ? "T" : "N")
                        + " " + m + "x" + n + "x" + k;
    }

    /** Element (i, j) of op(X) where X is stored by {@code row}/{@code trans} with leading dimension ld. */
    private static double elem(double[] x, boolean row, boolean trans, int i, int j, int ld) {
        int r = trans ? j : i;
        int c = trans ? i : j;
        return row ? x[r * ld + c] : x[r + c * ld];
    }

    private static double[] sgemm(int order, boolean ta, boolean tb, int m, int n, int k, double[] a, int lda,
                                  double[] b, int ldb, double[] c, int ldc) {
        float[] cf = toFloat(c);
        cblas_sgemm(order, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, -1f, toFloat(a),
                lda, toFloat(b), ldb, 2f, cf, ldc);
        return toDouble(cf);
    }

    private static double[] dgemm(int order, boolean ta, boolean tb, int m, int n, int k, double[] a, int lda,
                                  double[] b, int ldb, double[] c, int ldc) {
        double[] out = c.clone();
        cblas_dgemm(order, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, -1, a, lda, b,
                ldb, 2, out, ldc);
        return out;
    }

    /** C (n×n, upper, col-major) = AᵀA − C for A k×n: the form the Hessian and the Cholesky update use. */
    private static String syrkError(boolean f32, int n, int k) {
        SplittableRandom rnd = new SplittableRandom(n * 131L + k);
        double[] a = ints(rnd, k * n);
        double[] c = ints(rnd, n * n);
        double[] got;
        if (f32) {
            float[] cf = toFloat(c);
            cblas_ssyrk(CblasColMajor, CblasUpper, CblasTrans, n, k, 1f, toFloat(a), k, -1f, cf, n);
            got = toDouble(cf);
        } else {
            got = c.clone();
            cblas_dsyrk(CblasColMajor, CblasUpper, CblasTrans, n, k, 1, a, k, -1, got, n);
        }
        for (int j = 0; j < n; j++) {
            for (int i = 0; i <= j; i++) {
                double s = 0;
                for (int l = 0; l < k; l++) {
                    s += a[l + i * k] * a[l + j * k];
                }
                if (got[i + j * n] != s - c[i + j * n]) {
                    return (f32 ? "ssyrk" : "dsyrk") + " " + n + "x" + k;
                }
            }
        }
        return null;
    }

    /**
     * A = VᵀV for a well-conditioned upper V (diagonal in [1, 2], off-diagonal entries below 1/√n): the Cholesky
     * factor is unique, so {@link UpperCholesky#factor} must return V to within rounding, and V⁻¹·V = I checks
     * {@link UpperCholesky#invert}. A miscomputing kernel is off by O(1) or more.
     */
    private static String choleskyError(boolean f32, int n) {
        SplittableRandom rnd = new SplittableRandom(n);
        double[] v = new double[n * n];
        double off = 1 / Math.sqrt(n);
        for (int j = 0; j < n; j++) {
            for (int i = 0; i < j; i++) {
                v[i + j * n] = rnd.nextDouble(-off, off);
            }
            v[j + j * n] = rnd.nextDouble(1, 2);
        }
        double[] a = new double[n * n];
        for (int j = 0; j < n; j++) {
            for (int i = 0; i <= j; i++) {
                double s = 0;
                for (int l = 0; l <= i; l++) {
                    s += v[l + i * n] * v[l + j * n];
                }
                a[i + j * n] = s;
            }
        }
        double tol = f32 ? 1e-3 : 1e-9;
        String what = (f32 ? "spotrf" : "dpotrf") + " " + n;
        Pointer p = f32 ? new FloatPointer(toFloat(a)) : new DoublePointer(a);
        try {
            if (UpperCholesky.factor(p, n) != 0) {
                return what + " (not positive definite)";
            }
            double[] got = read(p, n * n);
            for (int j = 0; j < n; j++) {
                for (int i = 0; i <= j; i++) {
                    if (!(Math.abs(got[i + j * n] - v[i + j * n]) <= tol)) {
                        return what;
                    }
                }
            }
            UpperCholesky.invert(p, n);
            double[] x = read(p, n * n);
            for (int j = 0; j < n; j++) {
                for (int i = 0; i <= j; i++) {
                    double s = 0;
                    for (int l = i; l <= j; l++) {
                        s += x[i + l * n] * v[l + j * n];
                    }
                    if (!(Math.abs(s - (i == j ? 1 : 0)) <= tol)) {
                        return (f32 ? "strtri" : "dtrtri") + " " + n;
                    }
                }
            }
            return null;
        } finally {
            p.deallocate();
        }
    }

    private static double[] read(Pointer p, int size) {
        double[] out = new double[size];
        if (p instanceof FloatPointer f) {
            float[] tmp = new float[size];
            f.get(tmp);
            return toDouble(tmp);
        }
        ((DoublePointer) p).get(out);
        return out;
    }

    private static float[] toFloat(double[] x) {
        float[] f = new float[x.length];
        for (int i = 0; i < x.length; i++) {
            f[i] = (float) x[i];
        }
        return f;
    }

    private static double[] toDouble(float[] x) {
        double[] d = new double[x.length];
        for (int i = 0; i < x.length; i++) {
            d[i] = x[i];
        }
        return d;
    }
}
