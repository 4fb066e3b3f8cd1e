package org.sparkquant.bench;

import static org.bytedeco.openblas.global.openblas.CblasRowMajor;
import static org.bytedeco.openblas.global.openblas.CblasTrans;
import static org.bytedeco.openblas.global.openblas.CblasUpper;
import static org.bytedeco.openblas.global.openblas.cblas_ssyrk;

import java.util.Random;
import org.bytedeco.javacpp.FloatPointer;
import org.sparkquant.gptq.HessianAccumulator;

/**
 * Hessian accumulation: {@link HessianAccumulator#add} (blocked ssyrk/sgemm per sequence + exact fixed-point sum)
 * against the bare BLAS work it wraps, one ssyrk of the whole sequence into an fp32 matrix (the baseline, measured in
 * the same run). The ratio is the price of exact, partition-independent sums.
 *
 * <pre>java -cp ... org.sparkquant.bench.GptqHessianBench [n=4096] [tokens=2048] [sequences=4]</pre>
 */
public final class GptqHessianBench {
    private GptqHessianBench() {}

    public static void main(String[] args) {
        int n = args.length > 0 ? Integer.parseInt(args[0]) : 4096;
        int tokens = args.length > 1 ? Integer.parseInt(args[1]) : 2048;
        int seqs = args.length > 2 ? Integer.parseInt(args[2]) : 4;
        Random rnd = new Random(1);
        float[] x = new float[tokens * n];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) rnd.nextGaussian();
        }
        FloatPointer xp = new FloatPointer(x);
        FloatPointer c = new FloatPointer((long) n * n);
        double flop = (double) tokens * n * n * seqs; // syrk: n²·tokens multiply-adds (upper half) = 2·n²/2·tokens
        for (int round = 0; round < 2; round++) { // the first round warms up
            long t0 = System.nanoTime();
            for (int s = 0; s < seqs; s++) {
                cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, n, tokens, 1f, xp, n, 1f, c, n);
            }
            long t1 = System.nanoTime();
            HessianAccumulator acc = HessianAccumulator.create(n);
            for (int s = 0; s < seqs; s++) {
                acc.add(x, tokens);
            }
            long t2 = System.nanoTime();
            if (round == 1) {
                double base = (t1 - t0) / 1e6;
                double ours = (t2 - t1) / 1e6;
                System.out.printf("hessian n=%d tokens=%d sequences=%d: accumulator %.0f ms (%.1f GFLOP/s), "
                        + "bare ssyrk %.0f ms (%.1f GFLOP/s), ratio %.2f%n", n, tokens, seqs, ours,
                        flop / ours / 1e6, base, flop / base / 1e6, ours / base);
            }
        }
    }
}
