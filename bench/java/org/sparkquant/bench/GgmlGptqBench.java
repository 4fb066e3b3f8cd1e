package org.sparkquant.bench;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Random;
import org.sparkquant.format.gguf.GgmlQuant;
import org.sparkquant.format.gguf.GgmlType;
import org.sparkquant.format.gguf.GgmlGptq;
import org.sparkquant.format.gguf.GgmlQuantizedRows;
import org.sparkquant.gptq.Gptq;
import org.sparkquant.gptq.GptqPreparation;
import org.sparkquant.gptq.Hessian;
import org.sparkquant.gptq.HessianAccumulator;
import org.sparkquant.gptq.QuantConfig;
import org.sparkquant.gptq.QuantizedRows;

/**
 * GPTQ-calibrated ggml quantization ({@link GgmlGptq#quantize}) of one [rows, cols] matrix (default 4096 × 4096) per
 * block type, in weights/s, against ggml's round-to-nearest ({@link GgmlQuant#quantizeRows}, one thread) of the same
 * matrix measured in the same run, and against plain GPTQ (4-bit, group 128) for scale. The Hessian comes from
 * AR(1)-correlated activations; its preparation (Cholesky, shared by all modules of a layer input) is timed once.
 * Also prints the Hessian-weighted error ratio GPTQ/RTN on the first 256 rows. Run after
 * {@code mvn -Dquick test-compile}:
 * {@code java -cp target/classes:target/test-classes:$(cat target/test-classpath.txt) org.sparkquant.bench.GgmlGptqBench [cols] [rows] [TYPE...]}
 */
public final class GgmlGptqBench {
    private GgmlGptqBench() {}

    public static void main(String[] args) {
        int cols = args.length > 0 ? Integer.parseInt(args[0]) : 4096;
        int rows = args.length > 1 ? Integer.parseInt(args[1]) : 4096;
        List<GgmlType> types = new ArrayList<>();
        for (int i = 2; i < args.length; i++) {
            types.add(GgmlType.parse(args[i]));
        }
        if (types.isEmpty()) {
            types = List.of(GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K, GgmlType.Q4_0,
                    GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.Q8_0);
        }
        System.out.printf(Locale.ROOT, "GPTQ-ggml on a %d × %d matrix, %d cores, OMP_NUM_THREADS=%s%n", rows, cols,
                Runtime.getRuntime().availableProcessors(), System.getenv("OMP_NUM_THREADS"));
        long t0 = System.nanoTime();
        Hessian h = hessian(cols, Math.max(cols, 1024), 1);
        double hessianS = seconds(t0);
        t0 = System.nanoTime();
        GptqPreparation prep = Gptq.prepare(h, QuantConfig.defaults());
        double prepS = seconds(t0);
        System.out.printf(Locale.ROOT, "Hessian from %d tokens %.2f s; preparation (Cholesky, once per input) %.2f s%n",
                Math.max(cols, 1024), hessianS, prepS);
        float[] w = weights(rows, cols, 2);
        int evalRows = Math.min(rows, 256);
        float[] evalW = java.util.Arrays.copyOf(w, evalRows * cols);

        // warm-up on a slice, so the JIT has compiled the loops before anything is timed
        int warm = Math.min(rows, 128);
        float[] warmW = java.util.Arrays.copyOf(w, warm * cols);
        for (GgmlType t : types) {
            GgmlGptq.quantize(warmW, warm, prep, t, null);
            GgmlQuant.quantizeRows(t, warmW, warm, cols, null);
        }
        Gptq.quantize(warmW, warm, prep, QuantConfig.defaults());

        t0 = System.nanoTime();
        QuantizedRows plain = Gptq.quantize(w, rows, prep, QuantConfig.defaults());
        double plainRate = (double) w.length / seconds(t0);
        System.out.printf(Locale.ROOT, "%-6s %10s %10s %8s %10s %10s%n", "type", "RTN Mw/s", "GPTQ Mw/s", "ratio",
                "vs plain", "err ratio");
        System.out.printf(Locale.ROOT, "%-6s %10s %10.2f %8s %10s %10s%n", "GPTQ4", "-", plainRate / 1e6, "-", "1.000",
                "-");
        for (GgmlType t : types) {
            double rtnRate = 0;
            byte[] rtnBytes = null;
            for (int pass = 0; pass < 2; pass++) {
                t0 = System.nanoTime();
                rtnBytes = GgmlQuant.quantizeRows(t, w, rows, cols, null);
                rtnRate = Math.max(rtnRate, w.length / seconds(t0));
            }
            t0 = System.nanoTime();
            GgmlQuantizedRows q = GgmlGptq.quantize(w, rows, prep, t, null);
            double gptqRate = w.length / seconds(t0);

            float[] rtnDeq = new float[evalRows * cols];
            GgmlQuant.dequantize(t, rtnBytes, 0, rtnDeq, 0, rtnDeq.length);
            float[] gptqDeq = java.util.Arrays.copyOf(q.dequantized(), evalRows * cols);
            double errRatio = sum(Gptq.hessianError(h, evalW, gptqDeq, evalRows))
                    / sum(Gptq.hessianError(h, evalW, rtnDeq, evalRows));
            System.out.printf(Locale.ROOT, "%-6s %10.2f %10.2f %8.3f %10.3f %10.3f%n", t, rtnRate / 1e6,
                    gptqRate / 1e6, gptqRate / rtnRate, gptqRate / plainRate, errRatio);
        }
        if (plain.rows() < 0) {
            System.out.print("");
        }
    }

    private static double seconds(long t0) {
        return (System.nanoTime() - t0) / 1e9;
    }

    private static double sum(double[] v) {
        double s = 0;
        for (double x : v) {
            s += x;
        }
        return s;
    }

    private static float[] weights(int rows, int cols, long seed) {
        Random rnd = new Random(seed);
        float[] w = new float[rows * cols];
        for (int i = 0; i < w.length; i++) {
            w[i] = (float) (rnd.nextGaussian() * 0.02);
        }
        return w;
    }

    /** H of AR(1)-correlated activations (ρ = 0.8) with log-normal channel scales, via the BLAS accumulator. */
    private static Hessian hessian(int cols, int tokens, long seed) {
        Random rnd = new Random(seed);
        double[] scale = new double[cols];
        for (int c = 0; c < cols; c++) {
            scale[c] = Math.exp(0.7 * rnd.nextGaussian());
        }
        HessianAccumulator acc = HessianAccumulator.create(cols);
        int chunk = 256;
        float[] x = new float[chunk * cols];
        for (int t0 = 0; t0 < tokens; t0 += chunk) {
            for (int t = 0; t < chunk; t++) {
                double prev = rnd.nextGaussian();
                for (int c = 0; c < cols; c++) {
                    prev = 0.8 * prev + 0.6 * rnd.nextGaussian();
                    x[t * cols + c] = (float) (prev * scale[c]);
                }
            }
            acc.add(x, chunk);
        }
        return acc.finish();
    }
}
