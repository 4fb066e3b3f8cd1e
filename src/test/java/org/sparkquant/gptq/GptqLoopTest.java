package org.sparkquant.gptq;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.ObjectInputStream;
import java.io.ObjectOutputStream;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.sparkquant.SparkQuantException;

class GptqLoopTest {
    static final int ROWS = 150;
    static final int COLS = 300; // 3 blocks of 128 with a partial last one; not a multiple of 64

    static float[] weights(int rows, int cols, long seed) {
        Random rnd = new Random(seed);
        float[] w = new float[rows * cols];
        for (int i = 0; i < w.length; i++) {
            w[i] = (float) (rnd.nextGaussian() * 0.02 * (1 + (i / cols) % 3));
        }
        return w;
    }

    /** H = 2/n Σ xᵀx from correlated activations, with the given dead columns. */
    static Hessian hessian(int cols, long seed, int... dead) {
        HessianAccumulator acc = HessianAccumulator.create(cols, Precision.FP64);
        for (float[] x : HessianAccumulatorTest.sequences(8, cols, seed)) {
            int tokens = x.length / cols;
            for (int d : dead) {
                for (int t = 0; t < tokens; t++) {
                    x[t * cols + d] = 0;
                }
            }
            acc.add(x, tokens);
        }
        return acc.finish();
    }

    static Stream<Arguments> configs() {
        QuantConfig base = QuantConfig.defaults();
        List<Arguments> out = new ArrayList<>();
        for (Precision p : Precision.values()) {
            out.add(Arguments.of(base.withGroupSize(32).withDescAct(true).withPrecision(p)));
            out.add(Arguments.of(base.withBits(3).withGroupSize(-1).withSym(false).withPrecision(p)));
            out.add(Arguments.of(base.withBits(2).withGroupSize(64).withDescAct(true).withStaticGroups(true)
                    .withMse(true).withPrecision(p)));
            out.add(Arguments.of(base.withBits(8).withGroupSize(16).withSym(false).withBlockSize(64).withPrecision(p)));
        }
        return out.stream();
    }

    /** 530 rows span three 256-row gemm calls; blocks of 1, 7, 64, 100 and 256 rows cut across them. */
    @ParameterizedTest
    @MethodSource("configs")
    void anyRowPartitionIsByteIdentical(QuantConfig cfg) {
        int rows = 530;
        float[] w = weights(rows, COLS, 11);
        GptqPreparation prep = Gptq.prepare(hessian(COLS, 12, 7), cfg);
        QuantizedRows whole = Gptq.quantize(w, rows, prep, cfg);
        QuantizedRows staged = roundTrip(whole);
        assertEquals(whole, staged, "serialized (codes and parameters only), dequantized again");
        QuantizedRows rtn = Gptq.rtn(w, rows, COLS, cfg);
        assertEquals(rtn, roundTrip(rtn), "RTN blocks serialize the same way");
        for (int block : new int[] {7, 64, 100, 256, 1}) {
            List<QuantizedRows> parts = new ArrayList<>();
            for (int r0 = 0; r0 < rows; r0 += block) {
                int r1 = Math.min(rows, r0 + block);
                parts.add(Gptq.quantize(Arrays.copyOfRange(w, r0 * COLS, r1 * COLS), r1 - r0, r0, prep, cfg));
            }
            QuantizedRows stacked = QuantizedRows.stack(parts);
            assertArrayEquals(whole.codes(), stacked.codes(), "codes, blocks of " + block);
            assertArrayEquals(whole.dequantized(), stacked.dequantized(), "dequantized, blocks of " + block);
            assertArrayEquals(whole.scales(), stacked.scales(), "scales, blocks of " + block);
            assertArrayEquals(whole.zeros(), stacked.zeros(), "zeros, blocks of " + block);
            assertArrayEquals(whole.losses(), stacked.losses(), "losses, blocks of " + block);
            assertEquals(whole, stacked, "everything, blocks of " + block);
        }
    }

    @Test
    void deadColumnsAreZeroedAndIgnored() {
        QuantConfig cfg = QuantConfig.defaults().withGroupSize(32).withDescAct(true);
        Hessian h = hessian(COLS, 15, 3, 200);
        GptqPreparation prep = Gptq.prepare(h, cfg);
        assertEquals(2, prep.deadCount());
        assertTrue(prep.dead()[3] && prep.dead()[200] && !prep.dead()[4]);
        float[] w = weights(ROWS, COLS, 16);
        QuantizedRows q = Gptq.quantize(w, ROWS, prep, cfg);
        float[] w2 = w.clone();
        for (int r = 0; r < ROWS; r++) {
            assertEquals(0f, q.dequantized(r, 3));
            assertEquals(q.zero(r, q.gIdx(200)), q.code(r, 200), "dead column codes the zero point");
            w2[r * COLS + 3] = 5f; // with groups, a dead column's weight has no influence at all
            w2[r * COLS + 200] = -7f;
        }
        assertEquals(q, Gptq.quantize(w2, ROWS, prep, cfg));
    }

    @Test
    void groupMinusOneTakesParamsFromTheOriginalRowIncludingDeadColumns() {
        QuantConfig cfg = QuantConfig.defaults().withGroupSize(-1);
        GptqPreparation prep = Gptq.prepare(hessian(COLS, 17, 9), cfg);
        float[] w = weights(4, COLS, 18);
        w[9] = 3f; // row 0's largest value sits in the dead column
        QuantizedRows q = Gptq.quantize(w, 4, prep, cfg);
        assertEquals(2 * 3f / 15, q.scale(0, 0), 1e-7, "AutoGPTQ find_params(W) runs before dead columns are zeroed");
        assertEquals(0f, q.dequantized(0, 9));
    }

    @Test
    void dampingRetryOnASingularHessian() {
        int n = 64;
        // rank-1 activations: H = c·vvᵀ is singular; with 1e-9 damping fp32 Cholesky breaks down
        Random rnd = new Random(19);
        float[] v = new float[n];
        for (int j = 0; j < n; j++) {
            v[j] = (float) (1 + rnd.nextGaussian());
        }
        HessianAccumulator acc = HessianAccumulator.create(n);
        for (int s = 0; s < 4; s++) {
            float[] x = new float[10 * n];
            for (int t = 0; t < 10; t++) {
                float a = (float) rnd.nextGaussian();
                for (int j = 0; j < n; j++) {
                    x[t * n + j] = a * v[j];
                }
            }
            acc.add(x, 10);
        }
        Hessian h = acc.finish();
        QuantConfig cfg = QuantConfig.defaults().withGroupSize(32).withDampPercent(1e-9);
        GptqPreparation prep = Gptq.prepare(h, cfg);
        assertTrue(prep.dampPercentUsed() > 1e-9, "damp used " + prep.dampPercentUsed());
        assertEquals(1e-9 + Math.round((prep.dampPercentUsed() - 1e-9) / 0.0025) * 0.0025, prep.dampPercentUsed(),
                1e-12, "retries add dampAutoIncrement");
        double mean = Arrays.stream(h.diagonal()).sum() / n;
        assertEquals(prep.dampPercentUsed() * mean, prep.damp(), 1e-6 * prep.damp());
        QuantizedRows q = Gptq.quantize(weights(8, n, 20), 8, prep, cfg);
        for (double l : q.losses()) {
            assertTrue(Double.isFinite(l));
        }
        // The default damping needs no retry on the same matrix.
        assertEquals(0.01, Gptq.prepare(h, QuantConfig.defaults()).dampPercentUsed());
    }

    @Test
    void hopelessHessianIsABadInput() {
        double[] indefinite = {1, 3, 3, 1}; // eigenvalues 4 and −2: no damping below 1 helps
        SparkQuantException e = assertThrows(SparkQuantException.class,
                () -> Gptq.prepare(Hessian.of(indefinite, 2), QuantConfig.defaults().withGroupSize(-1)));
        assertTrue(e.getMessage().contains("not positive definite"), e.getMessage());
        double[] nan = {1, 0, 0, Double.NaN};
        e = assertThrows(SparkQuantException.class, () -> Gptq.prepare(Hessian.of(nan, 2), QuantConfig.defaults()));
        assertTrue(e.getMessage().contains("column 1"), e.getMessage());
    }

    /** U is the upper Cholesky factor of the damped, permuted H⁻¹: Uᵀ·U·H̃ = I. */
    @Test
    void preparationHoldsTheCholeskyFactorOfTheInverse() {
        int n = 200;
        Hessian h = hessian(n, 21, 5);
        for (Precision p : Precision.values()) {
            QuantConfig cfg = QuantConfig.defaults().withDescAct(true).withPrecision(p).withBlockSize(64);
            GptqPreparation prep = Gptq.prepare(h, cfg);
            int[] perm = prep.perm();
            double[][] ht = new double[n][n];
            for (int i = 0; i < n; i++) {
                for (int j = 0; j < n; j++) {
                    double v = h.get(perm[i], perm[j]);
                    if (i == j) {
                        v = (prep.dead()[perm[i]] ? 1 : v) + prep.damp();
                    }
                    ht[i][j] = v;
                }
            }
            double worst = 0;
            for (int i = 0; i < n; i++) {
                for (int j = 0; j < n; j++) {
                    double s = 0; // (Uᵀ U H̃)[i][j] = Σ_k U[k][i] Σ_l U[k][l] H̃[l][j]
                    for (int k = 0; k <= i; k++) {
                        double ukl = 0;
                        for (int l = k; l < n; l++) {
                            ukl += prep.hinv(k, l) * ht[l][j];
                        }
                        s += prep.hinv(k, i) * ukl;
                    }
                    worst = Math.max(worst, Math.abs(s - (i == j ? 1 : 0)));
                    if (j < i) {
                        assertEquals(0.0, prep.hinv(i, j));
                    }
                }
            }
            assertTrue(worst < (p == Precision.FP64 ? 1e-9 : 1e-2), p + ": |UᵀUH − I| = " + worst);
            for (int k = 1; k < n; k++) {
                assertTrue(h.get(perm[k - 1], perm[k - 1]) >= h.get(perm[k], perm[k]) || prep.dead()[perm[k - 1]]
                        || prep.dead()[perm[k]], "descending diagonal");
            }
        }
    }

    /**
     * In exact arithmetic 2·Σ(w−q)²/d²/2 = ΔW H̃ ΔWᵀ for the damped H̃ (the GPTQ identity, which also checks that
     * U really is the Cholesky factor the error feedback needs); the float output of the dequantized weights limits
     * the comparison to ~1e-6.
     */
    @Test
    void lossesEqualHessianWeightedErrorOfTheDampedHessian() {
        int n = COLS;
        Hessian h = hessian(n, 22, 17);
        QuantConfig cfg = QuantConfig.defaults().withGroupSize(64).withDescAct(true).withPrecision(Precision.FP64);
        GptqPreparation prep = Gptq.prepare(h, cfg);
        double[] damped = h.toArray();
        for (int i = 0; i < n; i++) {
            damped[i * n + i] = (prep.dead()[i] ? 1 : damped[i * n + i]) + prep.damp();
        }
        float[] w = weights(20, n, 23);
        for (int r = 0; r < 20; r++) {
            w[r * n + 17] = 0; // what GPTQ quantizes in place of the dead column
        }
        QuantizedRows q = Gptq.quantize(w, 20, prep, cfg);
        double[] err = Gptq.hessianError(Hessian.of(damped, n), w, q.dequantized(), 20);
        for (int r = 0; r < 20; r++) {
            assertEquals(2 * q.loss(r), err[r], 1e-5 * err[r], "row " + r);
        }
    }

    @Test
    void stableTieBreakInActOrder() {
        double[] d = {1, 3, 3, 2, 3, 0};
        double[] h = new double[36];
        for (int i = 0; i < 6; i++) {
            h[i * 6 + i] = d[i];
        }
        GptqPreparation prep = Gptq.prepare(Hessian.of(h, 6), QuantConfig.defaults().withDescAct(true));
        // dead column 5 gets diagonal 1 and ties with column 0; ties keep ascending column order
        assertArrayEquals(new int[] {1, 2, 4, 3, 0, 5}, prep.perm());
    }

    static <T> T roundTrip(T value) {
        try {
            ByteArrayOutputStream bytes = new ByteArrayOutputStream();
            try (ObjectOutputStream out = new ObjectOutputStream(bytes)) {
                out.writeObject(value);
            }
            try (ObjectInputStream in = new ObjectInputStream(new ByteArrayInputStream(bytes.toByteArray()))) {
                @SuppressWarnings("unchecked")
                T back = (T) in.readObject();
                return back;
            }
        } catch (java.io.IOException | ClassNotFoundException e) {
            throw new AssertionError(e);
        }
    }

    @Test
    void preparationSerializes() throws Exception {
        QuantConfig cfg = QuantConfig.defaults().withGroupSize(32).withDescAct(true);
        GptqPreparation prep = Gptq.prepare(hessian(COLS, 24, 1), cfg);
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        try (ObjectOutputStream out = new ObjectOutputStream(bytes)) {
            out.writeObject(prep);
        }
        GptqPreparation back;
        try (ObjectInputStream in = new ObjectInputStream(new ByteArrayInputStream(bytes.toByteArray()))) {
            back = (GptqPreparation) in.readObject();
        }
        assertEquals(prep, back);
        float[] w = weights(10, COLS, 25);
        assertEquals(Gptq.quantize(w, 10, prep, cfg), Gptq.quantize(w, 10, back, cfg));
    }

    @Test
    void precisionsAgreeClosely() {
        Hessian h = hessian(COLS, 26);
        float[] w = weights(ROWS, COLS, 27);
        QuantConfig c32 = QuantConfig.defaults().withGroupSize(64);
        QuantConfig c64 = c32.withPrecision(Precision.FP64);
        QuantizedRows a = Gptq.quantize(w, ROWS, Gptq.prepare(h, c32), c32);
        QuantizedRows b = Gptq.quantize(w, ROWS, Gptq.prepare(h, c64), c64);
        int same = 0;
        for (int i = 0; i < ROWS * COLS; i++) {
            same += a.code(i / COLS, i % COLS) == b.code(i / COLS, i % COLS) ? 1 : 0;
        }
        assertTrue(same >= 0.995 * ROWS * COLS, "identical codes " + same);
        assertEquals(b.totalLoss(), a.totalLoss(), 0.01 * b.totalLoss());
        assertFalse(a.equals(b), "FP32 and FP64 are different computations");
    }

    @Test
    void mismatchesAndBadWeightsAreReported() {
        QuantConfig cfg = QuantConfig.defaults();
        GptqPreparation prep = Gptq.prepare(hessian(64, 28), cfg);
        SparkQuantException e = assertThrows(SparkQuantException.class,
                () -> Gptq.quantize(new float[64 * 2], 2, prep, cfg.withDescAct(true)));
        assertTrue(e.getMessage().contains("preparation was made for"), e.getMessage());
        assertEquals(SparkQuantException.Kind.INTERNAL, e.kind(), "a caller's bug, not the user's input");
        e = assertThrows(SparkQuantException.class, () -> Gptq.quantize(new float[65], 1, prep, cfg));
        assertTrue(e.getMessage().contains("[1, 64]"), e.getMessage());
        float[] w = new float[64];
        w[5] = Float.POSITIVE_INFINITY;
        e = assertThrows(SparkQuantException.class, () -> Gptq.quantize(w, 1, prep, cfg));
        assertTrue(e.getMessage().contains("row 0 column 5"), e.getMessage());
        // settings the preparation does not depend on may differ
        assertEquals(3, Gptq.quantize(new float[64], 1, prep, cfg.withBits(3).withSym(false)).bits());
    }
}
