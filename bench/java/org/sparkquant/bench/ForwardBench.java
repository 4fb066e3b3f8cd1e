package org.sparkquant.bench;

import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;

import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.sparkquant.model.ModelConfig;
import org.sparkquant.nn.DecoderLayer;
import org.sparkquant.nn.DenseLinear;
import org.sparkquant.nn.LayerHooks;
import org.sparkquant.nn.LayerWeights;
import org.sparkquant.nn.LinearWeights;
import org.sparkquant.nn.SequenceBatch;

/**
 * Throughput of one decoder layer forward ({@link DecoderLayer}, random fp32 weights) at batch 1 × seq 512 for the
 * layer shapes of dev-llama2-26m (hidden 512, 8/4 heads, FFN 1536) and Llama-3-8B (hidden 4096, 32/8 heads, FFN
 * 14336; 0.87 GB of weights), against ND4J sgemm measured in the same run on the layer's dominant product
 * ({@code [512, hidden] · [ffn, hidden]ᵀ}). Target: the layer reaches at least 50 % of the gemm's GFLOP/s.
 * <p>
 * Run after {@code mvn -B -Dquick test-compile}:
 * <pre>
 * java -Xmx2g -Dorg.bytedeco.javacpp.maxbytes=6g -Dorg.bytedeco.javacpp.maxphysicalbytes=10g \
 *   -cp target/test-classes:target/classes:$(cat target/test-classpath.txt) org.sparkquant.bench.ForwardBench \
 *   [--threads N] [--iterations N] [--only small|8b]
 * </pre>
 */
public final class ForwardBench {
    private static final int SEQ = 512;

    private ForwardBench() {}

    public static void main(String[] args) {
        int threads = 0;
        int iterations = 3;
        String only = null;
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--threads" -> threads = Integer.parseInt(args[++i]);
                case "--iterations" -> iterations = Integer.parseInt(args[++i]);
                case "--only" -> only = args[++i];
                default -> throw new IllegalArgumentException("unknown argument " + args[i]);
            }
        }
        if (threads > 0) {
            Nd4j.factory().blas().setMaxThreads(threads);
            Nd4j.getEnvironment().setMaxMasterThreads(threads);
        }
        System.out.printf(Locale.ROOT, "threads: OMP_NUM_THREADS=%s, BLAS max threads=%d, ND4J master threads=%d, "
                        + "cores=%d, BLAS vendor=%s%n",
                System.getenv("OMP_NUM_THREADS"), Nd4j.factory().blas().getMaxThreads(),
                Nd4j.getEnvironment().maxMasterThreads(), Runtime.getRuntime().availableProcessors(),
                Nd4j.factory().blas().getBlasVendor());
        Map<String, String> shapes = new LinkedHashMap<>();
        shapes.put("small", config(512, 1536, 8, 4, "{\"rope_type\":\"default\",\"rope_theta\":10000.0}"));
        shapes.put("8b", config(4096, 14336, 32, 8, "{\"rope_type\":\"llama3\",\"rope_theta\":500000.0,"
                + "\"factor\":8.0,\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,"
                + "\"original_max_position_embeddings\":8192}"));
        for (Map.Entry<String, String> e : shapes.entrySet()) {
            if (only == null || only.equals(e.getKey())) {
                run(e.getKey(), ModelConfig.parse(e.getValue(), e.getKey()), iterations);
            }
        }
    }

    private static String config(int hidden, int ffn, int heads, int kvHeads, String rope) {
        return "{\"model_type\":\"llama\",\"hidden_size\":" + hidden + ",\"intermediate_size\":" + ffn
                + ",\"num_hidden_layers\":1,\"num_attention_heads\":" + heads + ",\"num_key_value_heads\":" + kvHeads
                + ",\"vocab_size\":32000,\"rms_norm_eps\":1e-5,\"rope_parameters\":" + rope + "}";
    }

    private static LinearWeights random(int out, int in) {
        INDArray w = Nd4j.randn(DataType.FLOAT, out, in).muli(1.0 / Math.sqrt(in));
        return new DenseLinear(w, null);
    }

    private static float[] ones(int n) {
        float[] a = new float[n];
        java.util.Arrays.fill(a, 1f);
        return a;
    }

    private static void run(String name, ModelConfig c, int iterations) {
        int h = c.hiddenSize();
        int ffn = c.intermediateSize();
        Map<String, LinearWeights> linears = new LinkedHashMap<>();
        linears.put("q_proj", random(c.qDim(), h));
        linears.put("k_proj", random(c.kvDim(), h));
        linears.put("v_proj", random(c.kvDim(), h));
        linears.put("o_proj", random(h, c.qDim()));
        linears.put("gate_proj", random(ffn, h));
        linears.put("up_proj", random(ffn, h));
        linears.put("down_proj", random(h, ffn));
        LayerWeights weights = new LayerWeights(0, linears, ones(h), ones(h), null, null);
        long params = 0;
        for (LinearWeights w : linears.values()) {
            params += (long) w.outFeatures() * w.inFeatures();
        }

        // the baseline: ND4J sgemm on the layer's largest product, into a preallocated output
        INDArray x = Nd4j.randn(DataType.FLOAT, SEQ, h);
        INDArray y = Nd4j.create(DataType.FLOAT, new long[] {SEQ, ffn}, 'c');
        INDArray gateW = linears.get("gate_proj").weight();
        double gemmFlops = 2.0 * SEQ * h * ffn;
        double gemmSeconds = best(iterations + 2, () -> Nd4j.gemm(x, gateW, y, false, true, 1.0, 0.0));
        double gemmGflops = gemmFlops / gemmSeconds / 1e9;

        INDArray input = Nd4j.randn(DataType.FLOAT, SEQ, h);
        INDArray hidden = Nd4j.create(DataType.FLOAT, new long[] {SEQ, h}, 'c');
        SequenceBatch batch = SequenceBatch.of(SEQ);
        double layerSeconds;
        try (DecoderLayer layer = new DecoderLayer(c)) {
            layerSeconds = best(iterations + 1, () -> {
                hidden.assign(input);
                layer.forward(hidden, batch, weights, LayerHooks.NONE);
            });
        }
        // useful work: every projection plus causal attention (q·kᵀ and p·v over the visible keys only)
        double attention = 2.0 * 2.0 * c.numHeads() * c.headDim() * (SEQ * (SEQ + 1) / 2.0);
        double layerFlops = 2.0 * SEQ * params + attention;
        double layerGflops = layerFlops / layerSeconds / 1e9;
        System.out.printf(Locale.ROOT, "%-5s layer (hidden %d, heads %d/%d, ffn %d, %.2f GB fp32 weights), seq %d:%n",
                name, h, c.numHeads(), c.numKvHeads(), ffn, params * 4 / 1e9, SEQ);
        System.out.printf(Locale.ROOT, "  sgemm [%d,%d]x[%d,%d]^T: %.4f s, %.1f GFLOP/s%n", SEQ, h, ffn, h, gemmSeconds,
                gemmGflops);
        System.out.printf(Locale.ROOT, "  layer forward: %.4f s, %.0f tokens/s, %.1f GFLOP/s = %.0f %% of sgemm "
                + "(target >= 50 %%)%n", layerSeconds, SEQ / layerSeconds, layerGflops, 100 * layerGflops / gemmGflops);
        for (LinearWeights w : linears.values()) {
            w.weight().close();
        }
    }

    /** Best wall time of {@code runs} runs after one warm-up run (the machine is shared: the best is the signal). */
    private static double best(int runs, Runnable r) {
        r.run();
        double best = Double.MAX_VALUE;
        for (int i = 0; i < runs; i++) {
            long t = System.nanoTime();
            r.run();
            best = Math.min(best, (System.nanoTime() - t) / 1e9);
        }
        return best;
    }
}
