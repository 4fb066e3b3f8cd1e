package org.sparkquant.linalg;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.SplittableRandom;
import org.bytedeco.javacpp.DoublePointer;
import org.bytedeco.javacpp.FloatPointer;
import org.bytedeco.javacpp.Pointer;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Both ways to the factor and its inverse — the blocked gemm/syrk version and the one {@link UpperCholesky#factor}
 * picks for this process's kernel — against a plain textbook Cholesky and back substitution in Java.
 */
class UpperCholeskyTest {
    /** A = XᵀX/rows + 0.01·I, column-major, both triangles filled (the lower one must not be read). */
    static double[] spd(int n, long seed) {
        SplittableRandom rnd = new SplittableRandom(seed);
        int rows = n + 7;
        double[] x = new double[rows * n];
        for (int i = 0; i < x.length; i++) {
            x[i] = rnd.nextGaussian();
        }
        double[] a = new double[n * n];
        for (int j = 0; j < n; j++) {
            for (int i = 0; i < n; i++) {
                double s = 0;
                for (int r = 0; r < rows; r++) {
                    s += x[r * n + i] * x[r * n + j];
                }
                a[i + j * n] = s / rows + (i == j ? 0.01 : 0);
            }
        }
        return a;
    }

    /** Textbook Cholesky–Banachiewicz, upper: A = VᵀV. */
    static double[] referenceFactor(double[] a, int n) {
        double[] v = new double[n * n];
        for (int j = 0; j < n; j++) {
            for (int i = 0; i <= j; i++) {
                double s = a[i + j * n];
                for (int l = 0; l < i; l++) {
                    s -= v[l + i * n] * v[l + j * n];
                }
                v[i + j * n] = i < j ? s / v[i + i * n] : Math.sqrt(s);
            }
        }
        return v;
    }

    static double[] referenceInverse(double[] v, int n) {
        double[] x = new double[n * n];
        for (int j = 0; j < n; j++) {
            x[j + j * n] = 1 / v[j + j * n];
            for (int i = j - 1; i >= 0; i--) {
                double s = 0;
                for (int l = i + 1; l <= j; l++) {
                    s += v[i + l * n] * x[l + j * n];
                }
                x[i + j * n] = -s / v[i + i * n];
            }
        }
        return x;
    }

    static Pointer load(double[] a, boolean f32) {
        if (!f32) {
            return new DoublePointer(a);
        }
        float[] f = new float[a.length];
        for (int i = 0; i < a.length; i++) {
            f[i] = (float) a[i];
        }
        return new FloatPointer(f);
    }

    static double[] read(Pointer p, int size) {
        double[] out = new double[size];
        if (p instanceof FloatPointer f) {
            float[] tmp = new float[size];
            f.get(tmp);
            for (int i = 0; i < size; i++) {
                out[i] = tmp[i];
            }
        } else {
            ((DoublePointer) p).get(out);
        }
        return out;
    }

    /** max |got − want| over the upper triangle, relative to max |want|. */
    static double upperError(double[] got, double[] want, int n) {
        double err = 0;
        double scale = 0;
        for (int j = 0; j < n; j++) {
            for (int i = 0; i <= j; i++) {
                err = Math.max(err, Math.abs(got[i + j * n] - want[i + j * n]));
                scale = Math.max(scale, Math.abs(want[i + j * n]));
            }
        }
        return err / scale;
    }

    static int factor(Pointer p, int n, boolean blocked) {
        return blocked ? UpperCholesky.factorBlocked(p, n) : UpperCholesky.factor(p, n);
    }

    @ParameterizedTest(name = "n={0} fp32={1} blocked={2}")
    @CsvSource({"1,false,true", "2,true,true", "127,false,true", "128,true,true", "129,false,true", "257,true,true",
        "300,false,true", "400,true,true", "513,false,true", "300,false,false", "257,true,false"})
    void factorAndInverseMatchTheTextbook(int n, boolean f32, boolean blocked) {
        double[] a = spd(n, n);
        double[] v = referenceFactor(a, n);
        double[] x = referenceInverse(v, n);
        Pointer p = load(a, f32);
        try {
            assertEquals(0, factor(p, n, blocked));
            double tol = f32 ? 2e-4 : 1e-11;
            double[] got = read(p, n * n);
            assertTrue(upperError(got, v, n) < tol, "factor error " + upperError(got, v, n));
            for (int j = 0; j < n && blocked; j++) { // diagonal blocks are 0 below the diagonal after factor
                int j0 = j / UpperCholesky.NB * UpperCholesky.NB;
                for (int i = j + 1; i < Math.min(n, j0 + UpperCholesky.NB); i++) {
                    assertEquals(0, got[i + j * n], "below the diagonal at " + i + "," + j);
                }
            }
            if (blocked) {
                UpperCholesky.invertBlocked(p, n);
            } else {
                UpperCholesky.invert(p, n);
            }
            double[] inv = read(p, n * n);
            assertTrue(upperError(inv, x, n) < tol * 10, "inverse error " + upperError(inv, x, n));
        } finally {
            p.deallocate();
        }
    }

    @ParameterizedTest(name = "n={0}, bad column {1}, blocked={2}")
    @CsvSource({"50,17,true", "300,1,true", "300,200,true", "260,256,true", "300,200,false"})
    void reportsTheFirstColumnThatIsNotPositiveDefinite(int n, int bad, boolean blocked) {
        double[] a = spd(n, 7);
        // Make column `bad` (0-based) a copy of an earlier one, less 1 on the diagonal: the Schur complement at `bad`
        // is then −1, so its pivot is the first that is not positive.
        int src = Math.max(0, bad - 1);
        double[] b = a.clone();
        for (int i = 0; i < n; i++) {
            b[i + bad * n] = a[i + src * n];
            b[bad + i * n] = a[src + i * n];
        }
        b[bad + bad * n] = bad == 0 ? -1 : a[src + src * n] - 1;
        Pointer p = load(b, false);
        try {
            int info = factor(p, n, blocked);
            assertEquals(bad + 1, info);
        } finally {
            p.deallocate();
        }
    }
}
