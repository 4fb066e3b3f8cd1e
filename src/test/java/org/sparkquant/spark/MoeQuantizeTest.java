package org.sparkquant.spark;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.sparkquant.cli.CliRun;
import org.sparkquant.io.DType;
import org.sparkquant.io.Storage;
import org.sparkquant.io.TensorStore;
import org.sparkquant.model.LinearModule;
import org.sparkquant.model.ModelConfig;
import org.sparkquant.model.ModelInventory;
import org.sparkquant.model.SyntheticModel;
import org.sparkquant.testing.OutputFiles;
import org.sparkquant.testing.TestText;

/**
 * GPTQ of mixture-of-experts models on Spark, end to end on generated models: each routed expert quantized with the
 * Hessians of the tokens routed to it (beating round-to-nearest), the fallback rules for experts with few tokens, the
 * same bytes on one or two cores and after a run killed in the middle of a sparse layer, and a checkpoint holding
 * every expert's quantized modules next to the unquantized routers.
 */
class MoeQuantizeTest {
    @TempDir
    static Path tmp;
    static Path qwen2;
    static Path qwen3;
    static Path calib;
    static ModelConfig qwen2Config;
    static ModelConfig qwen3Config;

    @BeforeAll
    static void setUp() throws Exception {
        qwen2 = tmp.resolve("qwen2-moe");
        // two layers: layer 0 sparse (8 experts, top-2, shared expert), layer 1 dense (mlp_only_layers)
        qwen2Config = SyntheticModel.write(Storage.local(), qwen2.toString(), SyntheticModel.Preset.TINY_QWEN2_MOE, 2,
                DType.BF16, 21, 1L << 30);
        qwen3 = tmp.resolve("qwen3-moe");
        qwen3Config = SyntheticModel.write(Storage.local(), qwen3.toString(), SyntheticModel.Preset.TINY_QWEN3_MOE, 1,
                DType.BF16, 22, 1L << 30);
        calib = tmp.resolve("calib.txt");
        Files.writeString(calib, TestText.sentences(4, 200, "alpha", "beta", "gamma", "delta", "spark", "layer",
                "expert", "router", "token", "ok"));
    }

    static CliRun quantize(FaultHook faults, Path model, Path out, String master, String... extra) {
        List<String> args = new ArrayList<>(List.of("quantize", "--model", model.toString(), "--output",
                out.toString(), "--calibration", calib.toString(), "--samples", "12", "--seq-len", "48",
                "--samples-per-partition", "3", "--bits", "4", "--group-size", "32",
                "--conf", "spark.master=" + master, "--conf", "spark.ui.enabled=false"));
        args.addAll(List.of(extra));
        return CliRun.withFaults(faults, args.toArray(String[]::new));
    }

    static JsonNode report(Path out) throws Exception {
        return new ObjectMapper().readTree(out.resolve(QuantizePipeline.REPORT).toFile());
    }

    @Test
    void expertsAreQuantizedWithTheirOwnHessiansAndTheBytesDoNotDependOnTheCores() throws Exception {
        Path one = tmp.resolve("one");
        CliRun a = quantize(FaultHook.NONE, qwen2, one, "local[1]");
        assertEquals(0, a.exitCode(), a.err());
        Path two = tmp.resolve("two");
        CliRun b = quantize(FaultHook.NONE, qwen2, two, "local[2]");
        assertEquals(0, b.exitCode(), b.err());
        OutputFiles.assertIdentical(one, two, QuantizePipelineTest.TIMED);

        ModelInventory inventory = ModelInventory.of(qwen2Config);
        JsonNode report = report(one);
        List<LinearModule> all = inventory.layers().stream().flatMap(List::stream).toList();
        assertEquals(all.size(), report.get("modules").size());
        Set<Integer> experts = new HashSet<>();
        long tokens = 0;
        int withOwnHessian = 0;
        for (JsonNode m : report.get("modules")) {
            if (!m.has("expert")) {
                assertTrue(m.get("hessian_error").asDouble() < m.get("rtn_hessian_error").asDouble(), m.toString());
                continue;
            }
            experts.add(m.get("expert").asInt());
            if (m.get("name").asText().endsWith("gate_proj")) {
                tokens += m.get("tokens").asLong();
            }
            if (!m.has("fallback")) {
                withOwnHessian++;
                assertTrue(m.get("tokens").asLong() >= QuantizeJob.DEFAULT_EXPERT_MIN_TOKENS, m.toString());
                assertTrue(m.get("hessian_error").asDouble() < m.get("rtn_hessian_error").asDouble(),
                        "GPTQ must beat RTN on " + m);
                assertTrue(m.get("damp_percent").asDouble() > 0, m.toString());
            }
        }
        assertEquals(8, experts.size());
        assertTrue(withOwnHessian >= 3 * 6, "most experts have enough tokens: " + withOwnHessian);
        // top-2 routing: every calibration token reaches two experts of the sparse layer
        assertEquals(2L * 12 * 48, tokens);
        JsonNode moe = report.get("moe");
        assertEquals(8, moe.get("experts").asInt());
        assertEquals(QuantizeJob.DEFAULT_EXPERT_MIN_TOKENS, moe.get("expert_min_tokens").asInt());

        // the checkpoint: every module quantized (routed experts and the shared expert too), routers kept as they were
        try (TensorStore out = TensorStore.open(Storage.local(), one.toString());
                TensorStore in = TensorStore.open(Storage.local(), qwen2.toString())) {
            for (LinearModule m : all) {
                assertTrue(out.contains(m.name() + ".qweight"), m.name());
                assertTrue(out.contains(m.name() + ".scales"), m.name());
                assertFalse(out.contains(m.weight()), m.weight());
            }
            for (String t : inventory.unquantizedLayerTensors(0)) {
                assertTrue(out.contains(t), t);
                assertEquals(in.info(t).dtype(), out.info(t).dtype(), t);
                assertTrue(java.util.Arrays.equals(in.readFloats(t), out.readFloats(t)), t + " is unchanged");
            }
        }
    }

    /** Without true-sequential, every input comes from the unquantized layer: the experts still beat RTN. */
    @Test
    void withoutTrueSequentialTheExpertsStillUseTheirOwnHessians() throws Exception {
        Path out = tmp.resolve("not-sequential");
        CliRun run = quantize(FaultHook.NONE, qwen2, out, "local[2]", "--no-true-sequential",
                "--expert-min-tokens", "100");
        assertEquals(0, run.exitCode(), run.err());
        int own = 0;
        int fallback = 0;
        for (JsonNode m : report(out).get("modules")) {
            if (m.has("fallback")) {
                fallback++;
            } else if (m.has("expert")) {
                own++;
            }
            assertTrue(m.get("hessian_error").asDouble() < m.get("rtn_hessian_error").asDouble(), m.toString());
        }
        assertTrue(own > 0 && fallback > 0, own + " experts' modules with their own Hessians, " + fallback
                + " with the layer's");
    }

    /**
     * The quantized model's next-token distributions against the dense model's on held-out text: GPTQ's KL divergence
     * is lower than RTN's at 3 and at 4 bits.
     */
    @Test
    void gptqIsCloserToTheDenseModelThanRtn() throws Exception {
        String text = TestText.sentences(9, 60, "alpha", "beta", "gamma", "delta", "spark", "layer", "expert",
                "router", "token", "ok");
        int[] tokens = org.sparkquant.tokenizer.TextTokenizer.load(Storage.local(), qwen2.toString()).encode(text);
        List<int[]> windows = org.sparkquant.nn.PerplexityEvaluator.windows(tokens, 48, 6);
        assertEquals(6, windows.size());
        try (org.sparkquant.nn.CausalLM dense = org.sparkquant.nn.CausalLM.open(Storage.local(), qwen2.toString())) {
            for (String bits : List.of("3", "4")) {
                double[] kl = new double[2];
                String[] methods = {"gptq", "rtn"};
                for (int i = 0; i < 2; i++) {
                    Path out = tmp.resolve("kl-" + methods[i] + bits);
                    CliRun run = quantize(FaultHook.NONE, qwen2, out, "local[2]", "--bits", bits, "--method",
                            methods[i]);
                    assertEquals(0, run.exitCode(), run.err());
                    kl[i] = klDivergence(dense, out, windows);
                }
                assertTrue(kl[0] > 0 && kl[0] < kl[1], bits + " bits: KL of GPTQ " + kl[0] + ", of RTN " + kl[1]);
            }
        }
    }

    /** Mean KL(dense ‖ quantized) of the next-token distributions over every position of the windows. */
    private static double klDivergence(org.sparkquant.nn.CausalLM dense, Path quantized, List<int[]> windows) {
        ModelInventory inventory = dense.inventory();
        ModelConfig c = dense.config();
        double sum = 0;
        long positions = 0;
        try (org.sparkquant.format.gptq.GptqCheckpoint ck = org.sparkquant.format.gptq.GptqCheckpoint.open(
                Storage.local(), quantized.toString()); org.sparkquant.nn.DecoderLayer decoder = dense.newDecoderLayer()) {
            for (int[] w : windows) {
                org.nd4j.linalg.api.ndarray.INDArray h = dense.embedding().lookup(List.of(w));
                org.sparkquant.nn.SequenceBatch batch = org.sparkquant.nn.SequenceBatch.of(List.of(w));
                for (int layer = 0; layer < c.numLayers(); layer++) {
                    try (org.sparkquant.nn.LayerWeights lw = dequantized(ck, inventory, layer)) {
                        decoder.forward(h, batch, lw, org.sparkquant.nn.LayerHooks.NONE);
                    }
                }
                float[] q = dense.head().logits(h).data().asFloat();
                float[] p = dense.logits(List.of(w)).data().asFloat();
                int vocab = c.vocabSize();
                for (int t = 0; t < w.length; t++) {
                    double[] lp = logSoftmax(p, t * vocab, vocab);
                    double[] lq = logSoftmax(q, t * vocab, vocab);
                    for (int v = 0; v < vocab; v++) {
                        sum += Math.exp(lp[v]) * (lp[v] - lq[v]);
                    }
                    positions++;
                }
            }
        }
        return sum / positions;
    }

    private static double[] logSoftmax(float[] logits, int offset, int n) {
        double max = Double.NEGATIVE_INFINITY;
        for (int i = 0; i < n; i++) {
            max = Math.max(max, logits[offset + i]);
        }
        double s = 0;
        for (int i = 0; i < n; i++) {
            s += Math.exp(logits[offset + i] - max);
        }
        double log = max + Math.log(s);
        double[] out = new double[n];
        for (int i = 0; i < n; i++) {
            out[i] = logits[offset + i] - log;
        }
        return out;
    }

    /** A layer of a quantized checkpoint with every module dequantized, the routers and norms as stored. */
    private static org.sparkquant.nn.LayerWeights dequantized(org.sparkquant.format.gptq.GptqCheckpoint ck,
            ModelInventory inventory, int layer) {
        ModelConfig c = inventory.config();
        java.util.Map<String, org.sparkquant.nn.LinearWeights> linears = new java.util.LinkedHashMap<>();
        for (LinearModule m : inventory.layer(layer)) {
            linears.put(m.key(), org.sparkquant.nn.DenseLinear.of(ck.weight(m.name()), m.outFeatures(),
                    m.inFeatures(), m.bias() ? ck.readFloats(m.biasName()) : null));
        }
        org.sparkquant.nn.LinearWeights router = null;
        org.sparkquant.nn.LinearWeights gate = null;
        if (c.sparse(layer)) {
            router = org.sparkquant.nn.DenseLinear.of(ck.readFloats(c.moe().routerTensor(layer)), c.moe().experts(),
                    c.hiddenSize(), null);
            if (c.moe().sharedExpertGate()) {
                gate = org.sparkquant.nn.DenseLinear.of(ck.readFloats(c.moe().sharedExpertGateTensor(layer)), 1,
                        c.hiddenSize(), null);
            }
        }
        String p = "model.layers." + layer + ".";
        return new org.sparkquant.nn.LayerWeights(layer, linears, router, gate,
                ck.readFloats(p + "input_layernorm.weight"), ck.readFloats(p + "post_attention_layernorm.weight"),
                c.qkNorm() ? ck.readFloats(p + "self_attn.q_norm.weight") : null,
                c.qkNorm() ? ck.readFloats(p + "self_attn.k_norm.weight") : null);
    }

    /** Mixtral's hub names (block_sparse_moe.experts.E.w1/w3/w2): every expert quantized under its own name. */
    @Test
    void mixtralExpertsKeepTheHubNames() throws Exception {
        Path mixtral = tmp.resolve("mixtral");
        ModelConfig config = SyntheticModel.write(Storage.local(), mixtral.toString(),
                SyntheticModel.Preset.TINY_MIXTRAL, 1, DType.BF16, 23, 1L << 30);
        Path out = tmp.resolve("mixtral-q");
        CliRun run = quantize(FaultHook.NONE, mixtral, out, "local[2]", "--bits", "3");
        assertEquals(0, run.exitCode(), run.err());
        JsonNode report = report(out);
        int experts = 0;
        for (JsonNode m : report.get("modules")) {
            if (m.has("expert") && !m.has("fallback")) {
                experts++;
                assertTrue(m.get("hessian_error").asDouble() < m.get("rtn_hessian_error").asDouble(), m.toString());
            }
        }
        assertTrue(experts >= 3 * 6, "experts with their own Hessians: " + experts);
        try (TensorStore store = TensorStore.open(Storage.local(), out.toString())) {
            for (int e = 0; e < 8; e++) {
                for (String w : List.of("w1", "w2", "w3")) {
                    assertTrue(store.contains("model.layers.0.block_sparse_moe.experts." + e + "." + w + ".qweight"));
                }
            }
            assertTrue(store.contains(config.moe().routerTensor(0)));
        }
    }

    @Test
    @org.junit.jupiter.api.Tag("cluster")
    void multiJvmClusterGivesTheSameBytes() {
        Path local = tmp.resolve("moe-local");
        assertEquals(0, quantize(FaultHook.NONE, qwen2, local, "local[2]").exitCode());
        Path cluster = tmp.resolve("moe-cluster");
        CliRun run = quantize(FaultHook.NONE, qwen2, cluster, "local-cluster[2,1,1024]", "--conf",
                "spark.executor.extraClassPath=" + System.getProperty("java.class.path"));
        assertEquals(0, run.exitCode(), run.err());
        OutputFiles.assertIdentical(local, cluster, QuantizePipelineTest.TIMED);
    }

    @Test
    void expertsWithFewTokensFallBackToTheLayerOrToRtn() throws Exception {
        // a threshold above most experts' share (12 × 48 tokens × top-4 / 16 experts = 144 on average)
        Path layer = tmp.resolve("fallback-layer");
        CliRun a = quantize(FaultHook.NONE, qwen3, layer, "local[2]", "--expert-min-tokens", "150");
        assertEquals(0, a.exitCode(), a.err());
        Path rtn = tmp.resolve("fallback-rtn");
        CliRun b = quantize(FaultHook.NONE, qwen3, rtn, "local[2]", "--expert-min-tokens", "150",
                "--expert-fallback", "rtn");
        assertEquals(0, b.exitCode(), b.err());

        JsonNode layerReport = report(layer);
        JsonNode rtnReport = report(rtn);
        long below = layerReport.get("moe").get("experts_below_threshold").asLong();
        assertTrue(below > 0 && below < 16, "some experts fall below 150 tokens: " + below);
        assertEquals(below, rtnReport.get("moe").get("experts_below_threshold").asLong());
        assertEquals("layer", layerReport.get("moe").get("expert_fallback").asText());
        String html = Files.readString(layer.resolve(QuantizePipeline.REPORT_HTML));
        assertTrue(html.contains("experts below 150 tokens") && html.contains(below + " of 16 (layer)"), html);
        for (int i = 0; i < layerReport.get("modules").size(); i++) {
            JsonNode l = layerReport.get("modules").get(i);
            JsonNode r = rtnReport.get("modules").get(i);
            assertEquals(l.get("name"), r.get("name"));
            if (!l.has("expert")) {
                continue;
            }
            assertEquals(l.get("tokens"), r.get("tokens"), "routing does not depend on the fallback rule");
            boolean fewTokens = l.get("tokens").asLong() < 150;
            assertEquals(fewTokens, l.has("fallback"), l.toString());
            if (!fewTokens) {
                assertTrue(l.get("hessian_error").asDouble() < l.get("rtn_hessian_error").asDouble(), l.toString());
                continue;
            }
            assertEquals("layer", l.get("fallback").asText());
            assertEquals("rtn", r.get("fallback").asText());
            // GPTQ with the layer's Hessians: measured against those, it beats round-to-nearest
            assertTrue(l.get("hessian_error").asDouble() < l.get("rtn_hessian_error").asDouble(), l.toString());
            assertTrue(l.get("damp_percent").isNumber(), l.toString());
            // round-to-nearest: the same codes by both measures, no damping
            assertEquals(r.get("hessian_error").asDouble(), r.get("rtn_hessian_error").asDouble(), 0.0, r.toString());
            assertTrue(r.get("damp_percent").isNull(), r.toString());
        }
    }

    @Test
    void aRunKilledInsideASparseLayerResumesToTheSameBytes() throws Exception {
        Path straight = tmp.resolve("straight");
        assertEquals(0, quantize(FaultHook.NONE, qwen3, straight, "local[2]").exitCode());

        // block 20 of a stage: only the experts' gate/up stage of the sparse layer has that many (2 × 16 experts)
        Path resumed = tmp.resolve("resumed");
        FaultHook killExperts = (point, index, attempt) -> {
            if (point == FaultHook.Point.BLOCK_QUANTIZED && index == 20) {
                throw new IllegalStateException("killed in the experts' stage");
            }
        };
        CliRun killed = quantize(killExperts, qwen3, resumed, "local[2]");
        assertEquals(1, killed.exitCode(), killed.err());
        assertFalse(Files.exists(resumed.resolve("_SUCCESS")));
        try (var files = Files.list(resumed.resolve("_work/layers/0"))) {
            List<String> names = files.map(f -> f.getFileName().toString()).sorted().toList();
            assertTrue(names.contains("summary-MLP_IN-e15.bin"), names.toString());
            assertFalse(names.stream().anyMatch(n -> n.startsWith("summary-DOWN_IN")), names.toString());
        }
        CliRun resume = quantize(FaultHook.NONE, qwen3, resumed, "local[2]", "--resume");
        assertEquals(0, resume.exitCode(), resume.err());
        OutputFiles.assertIdentical(straight, resumed, QuantizePipelineTest.TIMED);
    }
}
