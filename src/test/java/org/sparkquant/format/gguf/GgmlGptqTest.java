package org.sparkquant.format.gguf;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.sparkquant.SparkQuantException;
import org.sparkquant.gptq.QuantConfig;
import org.sparkquant.gptq.Precision;
import org.sparkquant.gptq.Hessian;
import org.sparkquant.gptq.GptqPreparation;
import org.sparkquant.gptq.Gptq;

/**
 * GPTQ over ggml block grids ({@link GgmlGptq}): the diagonal-Hessian case reproduces ggml's reference bytes, rows
 * are independent of the partition, the lazy-batch solver equals a plain eager column loop (also where ggml blocks
 * straddle batch ends), the loss is the damped Hessian objective, and on correlated inputs the Hessian-weighted
 * error is below round-to-nearest for every type.
 */
class GgmlGptqTest {
    /** Every block type, k-quants first. */
    static final List<GgmlType> TYPES = List.of(GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K,
            GgmlType.Q6_K, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.Q8_0);
    private static final List<String> SUMMARY = new ArrayList<>();

    // ------------------------------------------------------------------------------------------- inputs

    /** Gaussian weights with a few large outliers (as trained weights have). */
    static float[] weights(int rows, int cols, long seed) {
        Random rnd = new Random(seed);
        float[] w = new float[rows * cols];
        for (int i = 0; i < w.length; i++) {
            w[i] = (float) (rnd.nextGaussian() * 0.02 * (rnd.nextInt(200) == 0 ? 6 : 1));
        }
        return w;
    }

    /**
     * H = 2/T · XᵀX for T tokens of correlated activations: an AR(1) process along the columns (ρ = 0.8) times
     * log-normal per-column scales (some outlier channels), like a layer input.
     */
    static Hessian correlatedHessian(int cols, int tokens, long seed) {
        Random rnd = new Random(seed);
        double[] scale = new double[cols];
        for (int c = 0; c < cols; c++) {
            scale[c] = Math.exp(0.7 * rnd.nextGaussian());
        }
        double rho = 0.8;
        double[] x = new double[tokens * cols];
        for (int t = 0; t < tokens; t++) {
            double prev = rnd.nextGaussian();
            for (int c = 0; c < cols; c++) {
                prev = rho * prev + Math.sqrt(1 - rho * rho) * rnd.nextGaussian();
                x[t * cols + c] = prev * scale[c];
            }
        }
        double[] h = new double[cols * cols];
        for (int i = 0; i < cols; i++) {
            for (int j = i; j < cols; j++) {
                double s = 0;
                for (int t = 0; t < tokens; t++) {
                    s += x[t * cols + i] * x[t * cols + j];
                }
                h[i * cols + j] = 2 * s / tokens;
                h[j * cols + i] = h[i * cols + j];
            }
        }
        return Hessian.of(h, cols);
    }

    static Hessian diagonalHessian(int cols, long seed) {
        Random rnd = new Random(seed);
        double[] h = new double[cols * cols];
        for (int i = 0; i < cols; i++) {
            h[i * cols + i] = seed == 0 ? 1 : 0.05 + rnd.nextDouble() * 3;
        }
        return Hessian.of(h, cols);
    }

    static QuantConfig config(Precision p, int blockSize) {
        return QuantConfig.defaults().withPrecision(p).withBlockSize(blockSize);
    }

    static double sum(double[] v) {
        double s = 0;
        for (double x : v) {
            s += x;
        }
        return s;
    }

    static <T> T roundTrip(T value) {
        try {
            java.io.ByteArrayOutputStream bytes = new java.io.ByteArrayOutputStream();
            try (java.io.ObjectOutputStream out = new java.io.ObjectOutputStream(bytes)) {
                out.writeObject(value);
            }
            try (java.io.ObjectInputStream in = new java.io.ObjectInputStream(
                    new java.io.ByteArrayInputStream(bytes.toByteArray()))) {
                @SuppressWarnings("unchecked")
                T back = (T) in.readObject();
                return back;
            }
        } catch (java.io.IOException | ClassNotFoundException e) {
            throw new AssertionError(e);
        }
    }

    // ------------------------------------------------------------------------------------------- tests

    /**
     * With a diagonal H the inverse-Hessian factor is diagonal, so no error moves and the scales are chosen from the
     * original weights: the bytes must be exactly ggml's reference quantizer's, for every type and both
     * precisions (and with importance for the types whose two-step form equals the one-shot one).
     */
    @ParameterizedTest
    @EnumSource(value = GgmlType.class, names = {"Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q4_0", "Q4_1", "Q5_0",
        "Q5_1", "Q8_0"})
    void diagonalHessianGivesReferenceBytes(GgmlType type) {
        int cols = 1024;
        int rows = 24;
        float[] w = weights(rows, cols, 11);
        float[] imp = new float[cols];
        Random rnd = new Random(3);
        for (int c = 0; c < cols; c++) {
            imp[c] = (float) (0.1 + rnd.nextDouble() * rnd.nextDouble() * 4);
        }
        byte[] expected = GgmlQuant.quantizeRows(type, w, rows, cols, null);
        float[] expectedDeq = GgmlQuant.dequantize(type, expected);
        boolean oneShotWithImportance = type.isKQuant() || type == GgmlType.Q8_0;
        byte[] expectedImp = oneShotWithImportance ? GgmlQuant.quantizeRows(type, w, rows, cols, imp)
                : twoStepReference(type, w, rows, cols, imp);
        for (long seed : new long[] {0, 7}) {
            Hessian h = diagonalHessian(cols, seed);
            for (Precision p : Precision.values()) {
                GptqPreparation prep = Gptq.prepare(h, config(p, 128));
                String what = type + " " + p + (seed == 0 ? " H=I" : " H=diag");
                GgmlQuantizedRows q = GgmlGptq.quantize(w, rows, prep, type, null);
                assertArrayEquals(expected, q.data(), what + ": bytes");
                assertArrayEquals(expectedDeq, q.dequantized(), what + ": dequantized");
                GgmlQuantizedRows qi = GgmlGptq.quantize(w, rows, prep, type, imp);
                assertArrayEquals(expectedImp, qi.data(), what + " with importance: bytes");
                if (!oneShotWithImportance) {
                    // scale fields (d, and m for the affine formats) must be the one-shot weighted quantizer's
                    byte[] oneShot = GgmlQuant.quantizeRows(type, w, rows, cols, imp);
                    int header = type == GgmlType.Q4_1 || type == GgmlType.Q5_1 ? 4 : 2;
                    for (int b = 0; b < oneShot.length / type.bytesPerBlock(); b++) {
                        int at = b * type.bytesPerBlock();
                        assertArrayEquals(Arrays.copyOfRange(oneShot, at, at + header),
                                Arrays.copyOfRange(qi.data(), at, at + header), what + " block " + b + " header");
                    }
                }
            }
        }
    }

    /**
     * The weighted Q4_0/Q4_1/Q5_0/Q5_1 one-shot quantizers store their search codes; the two-step form rounds every
     * element with the stored scale. This is that form applied directly to whole original rows (no GPTQ).
     */
    private static byte[] twoStepReference(GgmlType type, float[] w, int rows, int cols, float[] imp) {
        int bs = type.blockSize();
        byte[] out = new byte[(int) (rows * type.rowBytes(cols))];
        int[] codes = new int[bs];
        for (int r = 0; r < rows; r++) {
            float sumX2 = 0;
            for (int c = 0; c < cols; c++) {
                sumX2 += w[r * cols + c] * w[r * cols + c];
            }
            for (int b = 0; b < cols / bs; b++) {
                GgmlBlockScales s = GgmlQuant.chooseScales(type, w, r * cols + b * bs, imp, b * bs, sumX2 / cols);
                for (int j = 0; j < bs; j++) {
                    codes[j] = s.quantize(j, w[r * cols + b * bs + j]);
                }
                s.encode(codes, 0, out, (int) (r * type.rowBytes(cols)) + b * type.bytesPerBlock());
            }
        }
        return out;
    }

    /** Rows are independent given H: every partition of the rows into calls gives the same bytes and values. */
    @Test
    void anyRowPartitionGivesIdenticalResults() {
        int cols = 512;
        int rows = 300; // crosses a boundary of the 256-row gemm grid
        Hessian h = correlatedHessian(cols, 768, 21);
        float[] w = weights(rows, cols, 22);
        float[] imp = GgmlGptq.hessianDiagonalImportance(h);
        for (Precision p : Precision.values()) {
            GptqPreparation prep = Gptq.prepare(h, config(p, 128));
            for (GgmlType type : List.of(GgmlType.Q4_K, GgmlType.Q2_K, GgmlType.Q6_K, GgmlType.Q4_0, GgmlType.Q5_1)) {
                for (float[] importance : Arrays.asList(null, imp)) {
                    GgmlQuantizedRows all = GgmlGptq.quantize(w, rows, prep, type, importance);
                    // serialized (staged) blocks hold the bytes only and decode to the very same values
                    assertEquals(all, roundTrip(all), type + " " + p + ": serialized");
                    for (int block : new int[] {1, 7, 64, 65, 256}) {
                        List<GgmlQuantizedRows> parts = new ArrayList<>();
                        for (int r0 = 0; r0 < rows; r0 += block) {
                            int m = Math.min(block, rows - r0);
                            parts.add(GgmlGptq.quantize(Arrays.copyOfRange(w, r0 * cols, (r0 + m) * cols), m, r0,
                                    prep, type, importance));
                        }
                        GgmlQuantizedRows stacked = GgmlQuantizedRows.stack(parts);
                        String what = type + " " + p + (importance == null ? "" : " imp") + " blocks of " + block;
                        assertArrayEquals(all.data(), stacked.data(), what + ": bytes");
                        assertArrayEquals(all.dequantized(), stacked.dequantized(), what + ": dequantized");
                        assertArrayEquals(all.losses(), stacked.losses(), what + ": losses");
                    }
                }
            }
        }
    }

    /**
     * The lazy-batch solver (FP64) against a plain eager column loop written from the definition: after each column
     * every later column of the row gets −err·U[c, k], and a block's scales come from the row's current values. Batch
     * sizes 48 and 96 make 32-element blocks and 256-element super-blocks start inside a batch and run past its end
     * (the pending-update path); 128 is the default. Bytes must agree exactly, losses to rounding.
     */
    @Test
    void lazyBatchesEqualTheEagerDefinition() {
        int cols = 768;
        int rows = 12;
        Hessian h = correlatedHessian(cols, 1024, 31);
        float[] w = weights(rows, cols, 32);
        float[] imp = GgmlGptq.hessianDiagonalImportance(h);
        for (int batch : new int[] {48, 96, 128}) {
            GptqPreparation prep = Gptq.prepare(h, config(Precision.FP64, batch));
            double[][] u = new double[cols][cols];
            for (int p = 0; p < cols; p++) {
                for (int q = p; q < cols; q++) {
                    u[p][q] = prep.hinv(p, q);
                }
            }
            for (GgmlType type : List.of(GgmlType.Q4_0, GgmlType.Q8_0, GgmlType.Q4_K, GgmlType.Q3_K)) {
                for (float[] importance : Arrays.asList(null, imp)) {
                    String what = type + " B" + batch + (importance == null ? "" : " imp");
                    GgmlQuantizedRows q = GgmlGptq.quantize(w, rows, prep, type, importance);
                    Eager ref = eager(w, rows, u, type, importance);
                    assertArrayEquals(ref.data, q.data(), what + ": bytes");
                    for (int r = 0; r < rows; r++) {
                        assertEquals(ref.losses[r], q.loss(r), 1e-9 * ref.losses[r], what + ": loss of row " + r);
                    }
                }
            }
        }
    }

    record Eager(byte[] data, double[] losses) {}

    /** GPTQ column by column in fp64 with eager updates, no lazy batches (the definition). */
    static Eager eager(float[] w, int rows, double[][] u, GgmlType type, float[] imp) {
        int n = u.length;
        int bs = type.blockSize();
        int rowBytes = (int) type.rowBytes(n);
        byte[] data = new byte[rows * rowBytes];
        double[] losses = new double[rows];
        int[] codes = new int[bs];
        for (int r = 0; r < rows; r++) {
            double[] x = new double[n];
            float sumX2 = 0;
            for (int c = 0; c < n; c++) {
                x[c] = w[r * n + c];
                sumX2 += w[r * n + c] * w[r * n + c];
            }
            GgmlBlockScales s = null;
            for (int c = 0; c < n; c++) {
                int j = c % bs;
                if (j == 0) {
                    float[] blk = new float[bs];
                    for (int k = 0; k < bs; k++) {
                        blk[k] = (float) x[c + k];
                    }
                    s = GgmlQuant.chooseScales(type, blk, 0, imp, c, sumX2 / n);
                }
                codes[j] = s.quantize(j, (float) x[c]);
                double diff = x[c] - s.dequantize(j, codes[j]);
                if (j == bs - 1) {
                    s.encode(codes, 0, data, r * rowBytes + (c / bs) * type.bytesPerBlock());
                }
                losses[r] += diff * diff / (u[c][c] * u[c][c]) / 2;
                double e = diff / u[c][c];
                for (int k = c + 1; k < n; k++) {
                    x[k] -= e * u[c][k];
                }
            }
        }
        return new Eager(data, losses);
    }

    /**
     * Independent check of the error feedback: GPTQ's loss Σ(w−q)²/d²/2 equals ½·ΔW·H̃·ΔWᵀ for the damped Hessian
     * H̃ whatever grid the codes come from (since ΔW = E·U and UᵀU = H̃⁻¹); and the bytes decode to the values
     * returned.
     */
    @Test
    void lossIsTheDampedHessianObjectiveAndBytesDecode() {
        int cols = 512;
        int rows = 16;
        Hessian h = correlatedHessian(cols, 768, 41);
        float[] w = weights(rows, cols, 42);
        GptqPreparation prep = Gptq.prepare(h, config(Precision.FP64, 128));
        double[] damped = h.toArray();
        for (int i = 0; i < cols; i++) {
            damped[i * cols + i] += prep.damp();
        }
        Hessian hd = Hessian.of(damped, cols);
        for (GgmlType type : TYPES) {
            GgmlQuantizedRows q = GgmlGptq.quantize(w, rows, prep, type, null);
            double[] err = Gptq.hessianError(hd, w, q.dequantized(), rows);
            for (int r = 0; r < rows; r++) {
                assertEquals(err[r] / 2, q.loss(r), 1e-7 * err[r], type + " row " + r);
            }
            float[] decoded = GgmlQuant.dequantize(type, q.data());
            assertArrayEquals(decoded, q.dequantized(), type + ": bytes decode to the returned values");
        }
    }

    /**
     * The point of it all: on correlated inputs GPTQ-ggml's Hessian-weighted error tr(ΔW H ΔWᵀ) is below that of
     * ggml's round-to-nearest quantizer, for every type; likewise with the Hessian-diagonal importance on both
     * sides (GPTQ+imatrix vs imatrix RTN). Ratios are printed.
     */
    @Test
    void beatsRoundToNearestOnCorrelatedInputs() {
        int cols = 512;
        int rows = 64;
        Hessian h = correlatedHessian(cols, 1024, 51);
        float[] w = weights(rows, cols, 52);
        float[] imp = GgmlGptq.hessianDiagonalImportance(h);
        GptqPreparation prep = Gptq.prepare(h, QuantConfig.defaults());
        for (GgmlType type : TYPES) {
            double rtn = sum(Gptq.hessianError(h, w, GgmlGptq.rtn(w, rows, cols, type, null).dequantized(), rows));
            double gptq = sum(Gptq.hessianError(h, w, GgmlGptq.quantize(w, rows, prep, type, null).dequantized(),
                    rows));
            double rtnImp = sum(Gptq.hessianError(h, w, GgmlGptq.rtn(w, rows, cols, type, imp).dequantized(),
                    rows));
            double gptqImp = sum(Gptq.hessianError(h, w,
                    GgmlGptq.quantize(w, rows, prep, type, imp).dequantized(), rows));
            synchronized (SUMMARY) {
                SUMMARY.add(String.format(Locale.ROOT, "synthetic %-5s GPTQ/RTN %.3f   GPTQ+imp/RTN+imp %.3f   "
                        + "RTN+imp/RTN %.3f", type, gptq / rtn, gptqImp / rtnImp, rtnImp / rtn));
            }
            assertTrue(gptq < rtn, type + ": GPTQ error " + gptq + " not below RTN " + rtn);
            assertTrue(gptqImp < rtnImp, type + ": GPTQ+importance error " + gptqImp + " not below RTN+importance "
                    + rtnImp);
        }
    }

    @Test
    void rejectsBadInput() {
        int cols = 512;
        Hessian h = diagonalHessian(cols, 0);
        float[] w = weights(2, cols, 1);
        GptqPreparation act = Gptq.prepare(h, QuantConfig.defaults().withDescAct(true));
        SparkQuantException e = assertThrows(SparkQuantException.class,
                () -> GgmlGptq.quantize(w, 2, act, GgmlType.Q4_K, null));
        assertTrue(e.getMessage().contains("desc_act"), e.getMessage());
        assertEquals(SparkQuantException.Kind.BAD_INPUT, e.kind());

        GptqPreparation prep = Gptq.prepare(h, QuantConfig.defaults());
        e = assertThrows(SparkQuantException.class, () -> GgmlGptq.quantize(w, 2, prep, GgmlType.F16, null));
        assertTrue(e.getMessage().contains("F16"), e.getMessage());
        e = assertThrows(SparkQuantException.class, () -> GgmlGptq.quantize(w, 3, prep, GgmlType.Q4_K, null));
        assertTrue(e.getMessage().contains("[3, 512]"), e.getMessage());
        e = assertThrows(SparkQuantException.class,
                () -> GgmlGptq.quantize(w, 2, prep, GgmlType.Q4_K, new float[cols - 1]));
        assertTrue(e.getMessage().contains("importance"), e.getMessage());
        float[] negative = new float[cols];
        negative[5] = -1;
        e = assertThrows(SparkQuantException.class, () -> GgmlGptq.quantize(w, 2, prep, GgmlType.Q4_K, negative));
        assertTrue(e.getMessage().contains("column 5"), e.getMessage());
        float[] nan = w.clone();
        nan[cols + 3] = Float.NaN;
        e = assertThrows(SparkQuantException.class, () -> GgmlGptq.quantize(nan, 2, prep, GgmlType.Q4_0, null));
        assertTrue(e.getMessage().contains("row 1 column 3"), e.getMessage());

        int narrow = 96; // a multiple of 32 but not of 256
        GptqPreparation small = Gptq.prepare(diagonalHessian(narrow, 0), QuantConfig.defaults());
        float[] ws = weights(1, narrow, 2);
        e = assertThrows(SparkQuantException.class, () -> GgmlGptq.quantize(ws, 1, small, GgmlType.Q4_K, null));
        assertTrue(e.getMessage().contains("not a multiple of the Q4_K block size 256"), e.getMessage());
        assertEquals(GgmlQuant.quantizeRows(GgmlType.Q4_0, ws, 1, narrow, null).length,
                GgmlGptq.quantize(ws, 1, small, GgmlType.Q4_0, null).data().length);
    }

    @Test
    void deadColumnsAreZeroed() {
        int cols = 256;
        double[] hm = diagonalHessian(cols, 7).toArray();
        for (int c : new int[] {3, 100, 255}) {
            hm[c * cols + c] = 0;
        }
        Hessian h = Hessian.of(hm, cols);
        float[] w = weights(4, cols, 5);
        GgmlQuantizedRows q = GgmlGptq.quantize(w, 4, Gptq.prepare(h, QuantConfig.defaults()), GgmlType.Q8_0, null);
        float[] zeroed = w.clone();
        for (int r = 0; r < 4; r++) {
            for (int c : new int[] {3, 100, 255}) {
                zeroed[r * cols + c] = 0;
                assertEquals(0f, q.dequantized(r, c), 0f);
            }
        }
        assertArrayEquals(GgmlQuant.quantizeRows(GgmlType.Q8_0, zeroed, 4, cols, null), q.data());
    }

    @AfterAll
    static void report() {
        SUMMARY.forEach(System.out::println);
    }
}
