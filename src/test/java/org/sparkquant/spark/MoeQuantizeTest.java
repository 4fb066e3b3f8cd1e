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
