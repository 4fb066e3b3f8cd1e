package org.sparkquant.bench;

import java.io.BufferedOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Random;
import org.sparkquant.format.gguf.GgmlQuant;
import org.sparkquant.format.gguf.GgmlType;
import org.sparkquant.format.gguf.GgufTensor;
import org.sparkquant.format.gguf.GgufValue;
import org.sparkquant.format.gguf.GgufWriter;

/**
 * GGUF throughput on one thread: weights/s of each reference quantizer (and the importance-weighted k-quants)
 * against F16 conversion measured in the same run, and GgufWriter's MB/s to a local file against a plain buffered
 * write of the same bytes. Run after {@code mvn -Dquick test-compile}:
 * {@code java -cp target/classes:target/test-classes:$(cat target/test-classpath.txt) org.sparkquant.bench.GgufQuantBench [MiB]}
 */
public final class GgufQuantBench {
    private GgufQuantBench() {}

    public static void main(String[] args) throws IOException {
        int rowLen = 4096;
        int rows = 256; // 1 Mi weights per pass
        float[] x = new float[rows * rowLen];
        Random r = new Random(1);
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) (r.nextGaussian() * 0.02);
        }
        float[] imp = new float[rowLen];
        for (int i = 0; i < rowLen; i++) {
            imp[i] = (float) Math.abs(r.nextGaussian()) + 0.1f;
        }
        System.out.printf(Locale.ROOT, "GGUF quantizers, %d rows × %d weights per pass, 1 thread%n", rows, rowLen);
        double f16 = rate(GgmlType.F16, x, rows, rowLen, null);
        System.out.printf(Locale.ROOT, "%-12s %8.1f M weights/s  (baseline)%n", "F16", f16 / 1e6);
        for (GgmlType t : GgmlType.values()) {
            if (!t.isQuantized()) {
                continue;
            }
            double w = rate(t, x, rows, rowLen, null);
            System.out.printf(Locale.ROOT, "%-12s %8.1f M weights/s  %6.3f× F16%n", t, w / 1e6, w / f16);
        }
        for (GgmlType t : List.of(GgmlType.Q4_0, GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q6_K)) {
            double w = rate(t, x, rows, rowLen, imp);
            System.out.printf(Locale.ROOT, "%-12s %8.1f M weights/s  %6.3f× F16%n", t + "+imatrix", w / 1e6, w / f16);
        }

        int mib = args.length > 0 ? Integer.parseInt(args[0]) : 512;
        Path dir = Files.createTempDirectory("gguf-bench");
        try {
            writeBench(dir, mib);
        } finally {
            try (var s = Files.list(dir)) {
                for (Path p : (Iterable<Path>) s::iterator) {
                    Files.deleteIfExists(p);
                }
            }
            Files.deleteIfExists(dir);
        }
    }

    /** Weights per second, best of 5 passes after 2 warm-up passes. */
    private static double rate(GgmlType t, float[] x, int rows, int rowLen, float[] imp) {
        long best = Long.MAX_VALUE;
        long sink = 0;
        for (int pass = 0; pass < 7; pass++) {
            long t0 = System.nanoTime();
            byte[] q = GgmlQuant.quantizeRows(t, x, rows, rowLen, imp);
            long dt = System.nanoTime() - t0;
            sink += q[q.length / 2];
            if (pass >= 2) {
                best = Math.min(best, dt);
            }
        }
        if (sink == 42) {
            System.out.print("");
        }
        return (double) x.length / (best / 1e9);
    }

    private static void writeBench(Path dir, int mib) throws IOException {
        int tensorMiB = 32;
        int n = Math.max(1, mib / tensorMiB);
        byte[] chunk = new byte[1 << 20];
        new Random(2).nextBytes(chunk);
        List<GgufTensor> tensors = new ArrayList<>();
        long rowsPerTensor = tensorMiB * (1L << 20) / 144 * 256 / 4096; // Q4_K rows of 4096 per 32 MiB
        for (int i = 0; i < n; i++) {
            tensors.add(new GgufTensor("blk." + i + ".ffn_up.weight", new long[] {4096, rowsPerTensor}, GgmlType.Q4_K));
        }
        Map<String, GgufValue> md = Map.of("general.architecture", GgufValue.string("llama"));
        System.out.printf(Locale.ROOT, "%nGGUF write of %d tensors (%.0f MiB) to %s%n", n,
                n * (rowsPerTensor * 4096 / 256 * 144) / 1048576.0, dir);
        double bestPlain = 0;
        double bestGguf = 0;
        for (int rep = 0; rep < 3; rep++) {
            Path plain = dir.resolve("plain.bin");
            long t0 = System.nanoTime();
            long bytes = 0;
            try (OutputStream out = new BufferedOutputStream(Files.newOutputStream(plain), 1 << 20)) {
                for (GgufTensor t : tensors) {
                    bytes += copy(out, t.bytes(), chunk);
                }
            }
            double plainMBs = bytes / 1e6 / ((System.nanoTime() - t0) / 1e9);
            Files.delete(plain);

            Path gguf = dir.resolve("model.gguf");
            t0 = System.nanoTime();
            try (OutputStream out = new BufferedOutputStream(Files.newOutputStream(gguf), 1 << 20);
                    GgufWriter w = GgufWriter.create(out, md, tensors)) {
                for (GgufTensor t : tensors) {
                    w.beginTensor(t.name());
                    long left = t.bytes();
                    while (left > 0) {
                        int k = (int) Math.min(left, chunk.length);
                        w.write(chunk, 0, k);
                        left -= k;
                    }
                    w.endTensor();
                }
            }
            long size = Files.size(gguf);
            double ggufMBs = size / 1e6 / ((System.nanoTime() - t0) / 1e9);
            Files.delete(gguf);
            System.out.printf(Locale.ROOT, "pass %d: plain buffered write %7.0f MB/s, GgufWriter %7.0f MB/s (%.3f× plain)%n",
                    rep + 1, plainMBs, ggufMBs, ggufMBs / plainMBs);
            bestPlain = Math.max(bestPlain, plainMBs);
            bestGguf = Math.max(bestGguf, ggufMBs);
        }
        System.out.printf(Locale.ROOT, "best: plain %7.0f MB/s, GgufWriter %7.0f MB/s (%.3f× plain)%n", bestPlain,
                bestGguf, bestGguf / bestPlain);
    }

    private static long copy(OutputStream out, long n, byte[] chunk) throws IOException {
        long left = n;
        while (left > 0) {
            int k = (int) Math.min(left, chunk.length);
            out.write(chunk, 0, k);
            left -= k;
        }
        return n;
    }
}
