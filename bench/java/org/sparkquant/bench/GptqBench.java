package org.sparkquant.bench;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import java.util.Random;
import org.sparkquant.gptq.Gptq;
import org.sparkquant.gptq.GptqPreparation;
import org.sparkquant.gptq.Hessian;
import org.sparkquant.gptq.Precision;
import org.sparkquant.gptq.QuantConfig;
import org.sparkquant.gptq.QuantizedRows;
import org.sparkquant.io.Npy;

/**
 * GPTQ step (a) + step (b) on one weight matrix, timed; run by bench/gptq.sh next to bench/gptq_torch.py on the
 * same W and H with the same thread count.
 *
 * <pre>
 * java -cp ... org.sparkquant.bench.GptqBench --w W.npy --h H.npy [--bits 4] [--group 128] [--desc-act]
 *      [--precision FP32] [--torch-ms T] [--torch-codes C.npy]
 * </pre>
 * Prints prepare / quantize / total milliseconds, GFLOP/s of this implementation's own flop count (prepare: potrf +
 * trtri = 2n³/3; quantize: lazy-batch gemms ≈ rows·n² plus the in-block updates rows·n·B), the ratio against the
 * PyTorch time when given, and the share of codes identical to PyTorch's.
 */
public final class GptqBench {
    private GptqBench() {}

    public static void main(String[] args) throws Exception {
        Map<String, String> a = new HashMap<>();
        for (int i = 0; i < args.length; i++) {
            if (args[i].equals("--desc-act")) {
                a.put("desc-act", "true");
            } else {
                a.put(args[i].substring(2), args[++i]);
            }
        }
        QuantConfig cfg = QuantConfig.defaults().withBits(Integer.parseInt(a.getOrDefault("bits", "4")))
                .withGroupSize(Integer.parseInt(a.getOrDefault("group", "128")))
                .withDescAct(a.containsKey("desc-act"))
                .withPrecision(Precision.valueOf(a.getOrDefault("precision", "FP32")));

        warmUp(cfg);

        Npy.Array wa = Npy.read(Path.of(a.get("w")));
        int rows = wa.dim(0);
        int cols = wa.dim(1);
        float[] w = wa.floats();
        Npy.Array ha = Npy.read(Path.of(a.get("h")));
        Hessian h = Hessian.of(ha.floats(), cols);
        ha = null;

        long t0 = System.nanoTime();
        GptqPreparation prep = Gptq.prepare(h, cfg);
        long t1 = System.nanoTime();
        QuantizedRows q = Gptq.quantize(w, rows, prep, cfg);
        long t2 = System.nanoTime();

        double prepMs = (t1 - t0) / 1e6;
        double quantMs = (t2 - t1) / 1e6;
        double totalMs = prepMs + quantMs;
        double n = cols;
        double prepFlop = 2 * n * n * n / 3;
        double quantFlop = (double) rows * n * n + (double) rows * n * cfg.blockSize();
        System.out.printf("java_ms prepare=%.0f quantize=%.0f total=%.0f  shape=%dx%d %s  threads: openblas=%s "
                        + "fj=%d%n", prepMs, quantMs, totalMs, rows, cols, cfg.precision(),
                System.getenv().getOrDefault("OMP_NUM_THREADS", "?"),
                java.util.concurrent.ForkJoinPool.getCommonPoolParallelism());
        System.out.printf("java_gflops prepare=%.1f quantize=%.1f%n", prepFlop / prepMs / 1e6,
                quantFlop / quantMs / 1e6);
        if (a.containsKey("torch-ms")) {
            double torch = Double.parseDouble(a.get("torch-ms"));
            System.out.printf("ratio java/torch = %.3f  (java %.0f ms, torch %.0f ms)%n", totalMs / torch, totalMs,
                    torch);
        }
        if (a.containsKey("torch-codes") && Files.exists(Path.of(a.get("torch-codes")))) {
            long[] tc = Npy.read(Path.of(a.get("torch-codes"))).longs();
            long same = 0;
            int divergedRows = 0;
            for (int r = 0; r < rows; r++) {
                boolean rowSame = true;
                for (int c = 0; c < cols; c++) {
                    boolean s = q.code(r, c) == tc[r * cols + c];
                    same += s ? 1 : 0;
                    rowSame &= s;
                }
                divergedRows += rowSame ? 0 : 1;
            }
            System.out.printf("codes identical to torch: %.4f%% (%d of %d rows differ somewhere)%n",
                    100.0 * same / ((double) rows * cols), divergedRows, rows);
        }
    }

    /** JIT warm-up on a small problem so the timed run measures steady-state code. */
    private static void warmUp(QuantConfig cfg) {
        int n = 512;
        Random rnd = new Random(1);
        double[] h = new double[n * n];
        for (int i = 0; i < n; i++) {
            for (int j = 0; j <= i; j++) {
                double v = i == j ? n : rnd.nextGaussian();
                h[i * n + j] = v;
                h[j * n + i] = v;
            }
        }
        float[] w = new float[256 * n];
        for (int i = 0; i < w.length; i++) {
            w[i] = (float) rnd.nextGaussian();
        }
        for (int k = 0; k < 3; k++) {
            Gptq.quantize(w, 256, Gptq.prepare(Hessian.of(h, n), cfg), cfg);
        }
    }
}
