package org.sparkquant.gptq;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.ObjectInputStream;
import java.io.ObjectOutputStream;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.sparkquant.SparkQuantException;
import org.sparkquant.io.Npy;
import org.sparkquant.testing.TestPaths;

class HessianAccumulatorTest {
    private static final int N = 700; // two product blocks: 512 + 188

    /** Sequences of varying length with correlated, scaled columns. */
    static List<float[]> sequences(int count, int n, long seed) {
        Random rnd = new Random(seed);
        List<float[]> out = new ArrayList<>();
        double[] colScale = new double[n];
        for (int j = 0; j < n; j++) {
            colScale[j] = Math.exp(rnd.nextGaussian() * 0.8);
        }
        for (int s = 0; s < count; s++) {
            int tokens = 20 + rnd.nextInt(40);
            float[] x = new float[tokens * n];
            for (int t = 0; t < tokens; t++) {
                double common = rnd.nextGaussian();
                for (int j = 0; j < n; j++) {
                    x[t * n + j] = (float) ((0.5 * common + rnd.nextGaussian()) * colScale[j]);
                }
            }
            out.add(x);
        }
        return out;
    }

    private static HessianAccumulator accumulate(List<float[]> seqs, int from, int to, int n, Precision p) {
        HessianAccumulator a = HessianAccumulator.create(n, p);
        for (int s = from; s < to; s++) {
            a.add(seqs.get(s), seqs.get(s).length / n);
        }
        return a;
    }

    @ParameterizedTest
    @EnumSource(Precision.class)
    void mergeIsBitIdenticalForAnySplitAndOrder(Precision p) {
        List<float[]> seqs = sequences(10, N, 1);
        Hessian whole = accumulate(seqs, 0, 10, N, p).finish();
        int[][] splits = {{3}, {1, 2, 3, 4, 5, 6, 7, 8, 9}, {5}, {9}, {2, 7}};
        for (int[] cuts : splits) {
            List<HessianAccumulator> parts = new ArrayList<>();
            int from = 0;
            for (int cut : cuts) {
                parts.add(accumulate(seqs, from, cut, N, p));
                from = cut;
            }
            parts.add(accumulate(seqs, from, 10, N, p));
            HessianAccumulator inOrder = HessianAccumulator.create(N, p);
            parts.forEach(inOrder::merge);
            assertEquals(whole, inOrder.finish(), "split " + java.util.Arrays.toString(cuts));
            HessianAccumulator reversed = HessianAccumulator.create(N, p);
            for (int i = parts.size() - 1; i >= 0; i--) {
                reversed.merge(parts.get(i));
            }
            assertEquals(whole, reversed.finish(), "reversed split " + java.util.Arrays.toString(cuts));
        }
        assertEquals(10, whole.sequences());
    }

    @ParameterizedTest
    @EnumSource(Precision.class)
    void matchesDirectDoubleSum(Precision p) {
        int n = 96;
        List<float[]> seqs = sequences(6, n, 2);
        double[] ref = new double[n * n];
        for (float[] x : seqs) {
            int tokens = x.length / n;
            for (int t = 0; t < tokens; t++) {
                for (int i = 0; i < n; i++) {
                    for (int j = 0; j < n; j++) {
                        ref[i * n + j] += (double) x[t * n + i] * x[t * n + j];
                    }
                }
            }
        }
        Hessian h = accumulate(seqs, 0, seqs.size(), n, p).finish();
        double tol = p == Precision.FP64 ? 1e-12 : 1e-5;
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < n; j++) {
                double expect = ref[i * n + j] * 2.0 / seqs.size();
                double scale = Math.sqrt(ref[i * n + i] * ref[j * n + j]) * 2.0 / seqs.size();
                assertEquals(expect, h.get(i, j), tol * scale, "H[" + i + "][" + j + "]");
                assertEquals(h.get(i, j), h.get(j, i), 0.0, "symmetry");
            }
        }
        assertEquals(seqs.stream().mapToLong(x -> x.length / n).sum(), h.tokens());
    }

    /** The fixture's input c: Python's fp64 H = 2/n Σ xᵀx from the same fp32 activations. */
    @ParameterizedTest
    @EnumSource(Precision.class)
    void matchesPythonHessian(Precision p) throws Exception {
        var in = Npy.readNpz(TestPaths.fixtures("gptq").resolve("input_c.npz"));
        Npy.Array x = in.get("X"); // [seqs, tokens, cols]
        double[] ref = in.get("H64").doubles();
        int seqs = x.dim(0);
        int tokens = x.dim(1);
        int n = x.dim(2);
        float[] all = x.floats();
        HessianAccumulator acc = HessianAccumulator.create(n, p);
        for (int s = 0; s < seqs; s++) {
            acc.add(java.util.Arrays.copyOfRange(all, s * tokens * n, (s + 1) * tokens * n), tokens);
        }
        Hessian h = acc.finish();
        double tol = p == Precision.FP64 ? 1e-13 : 1e-6;
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < n; j++) {
                double scale = Math.sqrt(ref[i * n + i] * ref[j * n + j]);
                assertEquals(ref[i * n + j], h.get(i, j), tol * Math.max(scale, 1e-30), "H[" + i + "][" + j + "]");
            }
        }
        assertEquals(0.0, h.get(0, 0), "dead column 0 stays exactly 0");
    }

    @Test
    void rowTilesJoinToTheWholeMatrix() {
        int n = 1100; // tiles [0,512) [512,1024) [1024,1100)
        List<float[]> seqs = sequences(3, n, 3);
        Hessian whole = accumulate(seqs, 0, 3, n, Precision.FP32).finish();
        List<HessianAccumulator> tiles = new ArrayList<>();
        for (int[] t : new int[][] {{512, 1100}, {0, 512}}) {
            HessianAccumulator a = HessianAccumulator.rows(n, t[0], t[1], Precision.FP32);
            seqs.forEach(x -> a.add(x, x.length / n));
            tiles.add(a);
        }
        assertEquals(whole, HessianAccumulator.finish(tiles));
        double[] tile = whole.rowTile(512, 520);
        double[] row = new double[n];
        whole.row(515, row);
        assertArrayEquals(row, java.util.Arrays.copyOfRange(tile, 3 * n, 4 * n));
        assertThrows(SparkQuantException.class, () -> HessianAccumulator.finish(tiles.subList(0, 1)));
        assertThrows(SparkQuantException.class, () -> HessianAccumulator.rows(n, 100, 600, Precision.FP32));
    }

    @Test
    void ndArrayInputEqualsFloatInput() {
        int n = 64;
        List<float[]> seqs = sequences(3, n, 4);
        int tokens = seqs.stream().mapToInt(x -> x.length / n).min().getAsInt();
        float[] batch = new float[3 * tokens * n];
        for (int s = 0; s < 3; s++) {
            System.arraycopy(seqs.get(s), 0, batch, s * tokens * n, tokens * n);
        }
        HessianAccumulator a = HessianAccumulator.create(n);
        HessianAccumulator b = HessianAccumulator.create(n);
        for (int s = 0; s < 3; s++) {
            a.add(java.util.Arrays.copyOfRange(batch, s * tokens * n, (s + 1) * tokens * n), tokens);
        }
        INDArray x = Nd4j.create(batch, new long[] {3, tokens, n}, 'c');
        b.add(x);
        assertEquals(a.finish(), b.finish());
        HessianAccumulator c = HessianAccumulator.create(n, Precision.FP64);
        c.add(x.castTo(org.nd4j.linalg.api.buffer.DataType.DOUBLE).permute(0, 2, 1).permute(0, 2, 1));
        HessianAccumulator d = HessianAccumulator.create(n, Precision.FP64);
        for (int s = 0; s < 3; s++) {
            d.add(java.util.Arrays.copyOfRange(batch, s * tokens * n, (s + 1) * tokens * n), tokens);
        }
        assertEquals(d.finish(), c.finish());
    }

    @Test
    void serializesMidwayAndContinues() throws Exception {
        int n = 80;
        List<float[]> seqs = sequences(4, n, 6);
        HessianAccumulator direct = accumulate(seqs, 0, 4, n, Precision.FP32);
        HessianAccumulator half = accumulate(seqs, 0, 2, n, Precision.FP32);
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        try (ObjectOutputStream out = new ObjectOutputStream(bytes)) {
            out.writeObject(half);
        }
        HessianAccumulator back;
        try (ObjectInputStream in = new ObjectInputStream(new ByteArrayInputStream(bytes.toByteArray()))) {
            back = (HessianAccumulator) in.readObject();
        }
        back.add(seqs.get(2), seqs.get(2).length / n).add(seqs.get(3), seqs.get(3).length / n);
        assertEquals(direct.finish(), back.finish());
    }

    @Test
    void badInputsAreReported() {
        HessianAccumulator a = HessianAccumulator.create(8);
        SparkQuantException e = assertThrows(SparkQuantException.class, () -> a.add(new float[10], 2));
        assertTrue(e.getMessage().contains("[2, 8]"), e.getMessage());
        float[] nan = new float[16];
        nan[3] = Float.NaN;
        e = assertThrows(SparkQuantException.class, () -> a.add(nan, 2));
        assertTrue(e.getMessage().contains("NaN"), e.getMessage());
        e = assertThrows(SparkQuantException.class, () -> HessianAccumulator.create(8).finish());
        assertTrue(e.getMessage().contains("no calibration sequence"), e.getMessage());
        assertThrows(SparkQuantException.class, () -> a.merge(HessianAccumulator.create(9)));
        assertEquals(SparkQuantException.Kind.BAD_INPUT, e.kind());
    }

    @Test
    void fixedPointKeepsLargeAndSmallValues() {
        int n = 2;
        HessianAccumulator a = HessianAccumulator.create(n, Precision.FP64);
        a.add(new float[] {3.0e6f, 1e-5f}, 1); // products 9e12, 30, 1e-10
        a.add(new float[] {-3.0e6f, 1e-5f}, 1);
        Hessian h = a.finish(); // 2/2 · Σ
        assertEquals(1.8e13, h.get(0, 0), 1.8e13 * 1e-15);
        assertEquals(0.0, h.get(0, 1), 1e-12);
        assertEquals(2e-10, h.get(1, 1), 2e-10 * 1e-4);
        assertNotEquals(0.0, h.get(1, 1));
    }
}
