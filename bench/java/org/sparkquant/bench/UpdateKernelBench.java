package org.sparkquant.bench;

import java.util.Locale;
import java.util.Random;

/**
 * The design choice in {@code gptq.GptqLoop}'s FP32 path, measured: the in-batch update W1[:, j] −= err · Hinv1[i, j]
 * (the loop's hot spot) on float arrays, against the same update on doubles rounded to float after each operation,
 * which gives the same bits (checked here) and would let one code path serve both precisions. Shapes are the
 * loop's: strips of 256 rows, batches of 128 columns.
 *
 * <pre>
 * java -cp ... org.sparkquant.bench.UpdateKernelBench [--batches 2000] [--rounds 5]
 * </pre>
 * Prints each variant's time per round, the ratio doubles/float, and whether the results were bit-identical.
 */
public final class UpdateKernelBench {
    private static final int ROWS = 256;
    private static final int COLS = 128;

    private UpdateKernelBench() {}

    public static void main(String[] args) {
        int batches = 2000;
        int rounds = 5;
        for (int i = 0; i < args.length; i += 2) {
            switch (args[i]) {
                case "--batches" -> batches = Integer.parseInt(args[i + 1]);
                case "--rounds" -> rounds = Integer.parseInt(args[i + 1]);
                default -> throw new IllegalArgumentException("unknown option " + args[i]);
            }
        }
        Random rnd = new Random(1);
        float[][] w0 = new float[COLS][ROWS];
        float[][] e0 = new float[COLS][ROWS];
        float[] h = new float[COLS * COLS];
        for (int i = 0; i < COLS; i++) {
            for (int k = 0; k < ROWS; k++) {
                w0[i][k] = (float) (rnd.nextGaussian() * 0.02);
                e0[i][k] = (float) (rnd.nextGaussian() * 0.01);
            }
            for (int j = i; j < COLS; j++) {
                h[i * COLS + j] = (float) (rnd.nextGaussian() * 0.1);
            }
        }
        double floatBest = Double.MAX_VALUE;
        double doubleBest = Double.MAX_VALUE;
        boolean identical = true;
        for (int round = 0; round < rounds; round++) {
            float[][] wf = copy(w0);
            long t0 = System.nanoTime();
            for (int b = 0; b < batches; b++) {
                updateFloat(wf, e0, h);
            }
            double tf = (System.nanoTime() - t0) / 1e9;
            double[][] wd = widen(w0);
            double[][] ed = widen(e0);
            double[] hd = new double[h.length];
            for (int i = 0; i < h.length; i++) {
                hd[i] = h[i];
            }
            t0 = System.nanoTime();
            for (int b = 0; b < batches; b++) {
                updateRoundedDouble(wd, ed, hd);
            }
            double td = (System.nanoTime() - t0) / 1e9;
            for (int i = 0; i < COLS && identical; i++) {
                for (int k = 0; k < ROWS; k++) {
                    if (Float.floatToIntBits(wf[i][k]) != Float.floatToIntBits((float) wd[i][k])) {
                        identical = false;
                        break;
                    }
                }
            }
            floatBest = Math.min(floatBest, tf);
            doubleBest = Math.min(doubleBest, td);
            System.out.printf(Locale.ROOT, "round %d: float %.3f s, rounded double %.3f s%n", round, tf, td);
        }
        System.out.printf(Locale.ROOT, "best of %d: float %.3f s, rounded double %.3f s, ratio double/float %.2f, "
                + "bit-identical: %s%n", rounds, floatBest, doubleBest, doubleBest / floatBest, identical);
    }

    /** As GptqLoop's FP32 path: float arrays, float arithmetic. */
    static void updateFloat(float[][] w, float[][] err, float[] h) {
        for (int i = 0; i < COLS; i++) {
            float[] e = err[i];
            for (int j = i + 1; j < COLS; j++) {
                float a = h[i * COLS + j];
                float[] y = w[j];
                for (int k = 0; k < ROWS; k++) {
                    y[k] -= e[k] * a;
                }
            }
        }
    }

    /** The single-path alternative: doubles, each product and difference rounded to float. */
    static void updateRoundedDouble(double[][] w, double[][] err, double[] h) {
        for (int i = 0; i < COLS; i++) {
            double[] e = err[i];
            for (int j = i + 1; j < COLS; j++) {
                double a = h[i * COLS + j];
                double[] y = w[j];
                for (int k = 0; k < ROWS; k++) {
                    y[k] = (float) (y[k] - (float) (e[k] * a));
                }
            }
        }
    }

    private static float[][] copy(float[][] a) {
        float[][] c = new float[a.length][];
        for (int i = 0; i < a.length; i++) {
            c[i] = a[i].clone();
        }
        return c;
    }

    private static double[][] widen(float[][] a) {
        double[][] d = new double[a.length][a[0].length];
        for (int i = 0; i < a.length; i++) {
            for (int k = 0; k < a[i].length; k++) {
                d[i][k] = a[i][k];
            }
        }
        return d;
    }
}
