package org.sparkquant.format.gptq;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.sparkquant.SparkQuantException;
import org.sparkquant.io.DType;
import org.sparkquant.io.Half;
import org.sparkquant.io.SafetensorsFile;
import org.sparkquant.io.Storage;
import org.sparkquant.io.TensorInfo;
import org.sparkquant.io.TensorStore;
import org.sparkquant.model.LinearModule;
import org.sparkquant.model.ModelConfig;
import org.sparkquant.model.ModelInventory;
import org.sparkquant.testing.TestPaths;

class GptqCheckpointWriterTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private final Storage storage = Storage.local();

    @TempDir
    Path tmp;

    /** hidden 64, FFN 172 (unpackable at 2/3/4 bits), 2 layers, 4 heads / 2 KV heads (kv dim 32), untied. */
    private String tinySource(DType dtype) {
        String dir = tmp.resolve("source").toString();
        GptqTestModels.write(storage, dir, GptqTestModels.config("llama", 64, 172, 2, 4, 2, 48, false,
                dtype == DType.BF16 ? "bfloat16" : "float32"), dtype, 7);
        return dir;
    }

    /** RTN-quantizes each module from the source weights, recording the order the writer asks for them. */
    private static GptqCheckpointWriter.ModuleSource rtn(TensorStore store, int bits, int groupSize, boolean sym,
            boolean actOrder, Map<String, QuantizedLinear> supplied, List<String> order) {
        return m -> {
            order.add(m.name());
            int[] perm = actOrder ? GptqTestModels.randomPermutation(m.inFeatures(), m.name().hashCode()) : null;
            QuantizedLinear q = GptqTestModels.rtn(m.name(), store.readFloats(m.weight()), m.inFeatures(),
                    m.outFeatures(), bits, groupSize, sym, perm, null);
            supplied.put(m.name(), q);
            return q;
        };
    }

    @Test
    void writesQuantizedModulesAndCopiesEverythingElseBitExactly() throws Exception {
        String src = tinySource(DType.BF16);
        String out = tmp.resolve("out").toString();
        Map<String, QuantizedLinear> supplied = new HashMap<>();
        List<String> order = new ArrayList<>();
        GptqCheckpointWriter.Result result;
        try (TensorStore store = TensorStore.open(storage, src)) {
            ModelInventory inventory = ModelInventory.of(ModelConfig.load(storage, src), store);
            GptqCheckpointWriter.Options options = GptqCheckpointWriter.Options.of(4, 32, true)
                    .withActOrder(true, false).withSolver(true, 0.05, 0.0).withMaxShardBytes(20_000)
                    .withQuantizer("sparkquant:test");
            result = GptqCheckpointWriter.write(storage, store, inventory, out, options,
                    rtn(store, 4, 32, true, true, supplied, order));
        }
        GptqCheckpointWriter.Plan plan = result.plan();
        // attention is packable (64 → 64 / 32), every 172-wide MLP module is not
        assertEquals(8, plan.quantized().size());
        assertEquals(6, plan.dense().size());
        assertTrue(plan.dense().keySet().stream().allMatch(n -> n.contains(".mlp.")));
        assertEquals(plan.quantized().stream().map(LinearModule::name).toList(), order, "asked once each, in plan order");
        assertEquals(List.of("model.layers.0.self_attn.k_proj", "model.layers.0.self_attn.o_proj",
                "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj"), order.subList(0, 4));
        assertEquals(1, plan.warnings().size());
        assertTrue(plan.warnings().get(0).contains("model.layers.1.mlp.down_proj (in_features 172"),
                plan.warnings().get(0));

        // sharded, with an index, every shard tagged {"format":"pt"}
        assertTrue(result.shards().size() > 1, result.shards().toString());
        assertTrue(Files.exists(Path.of(out, TensorStore.INDEX)));
        try (TensorStore source = TensorStore.open(storage, src); TensorStore written = TensorStore.open(storage, out)) {
            for (SafetensorsFile f : written.shards().values()) {
                assertEquals(Map.of("format", "pt"), f.metadata(), f.name());
            }
            Set<String> quantizedWeights = new HashSet<>();
            for (LinearModule m : plan.quantized()) {
                quantizedWeights.add(m.weight());
                assertFalse(written.contains(m.weight()));
                String p = m.name() + ".";
                assertEquals(DType.I32, written.info(p + "qweight").dtype());
                assertArrayEquals(new long[] {64 * 4 / 32, m.outFeatures()}, written.info(p + "qweight").shape());
                assertArrayEquals(new long[] {2, m.outFeatures() * 4 / 32}, written.info(p + "qzeros").shape());
                assertEquals(DType.F16, written.info(p + "scales").dtype());
                assertArrayEquals(new long[] {2, m.outFeatures()}, written.info(p + "scales").shape());
                assertEquals(DType.I32, written.info(p + "g_idx").dtype());
                assertArrayEquals(new long[] {64}, written.info(p + "g_idx").shape());
            }
            int copied = 0;
            for (String name : source.names()) {
                if (quantizedWeights.contains(name)) {
                    continue;
                }
                TensorInfo a = source.info(name);
                TensorInfo b = written.info(name);
                assertEquals(a.dtype(), b.dtype(), name);
                assertArrayEquals(a.shape(), b.shape(), name);
                assertArrayEquals(source.readRaw(name), written.readRaw(name), name);
                copied++;
            }
            // embeddings, lm_head, 5 norms, the extra inv_freq, 6 dense MLP weights
            assertEquals(1 + 1 + 5 + 1 + 6, copied);
            assertEquals(copied + 4 * 8, written.names().size());
        }

        // config.json = source + quantization_config, identical to quantize_config.json
        ObjectNode config = (ObjectNode) JSON.readTree(Files.readString(Path.of(out, "config.json")));
        JsonNode quant = config.remove("quantization_config");
        assertEquals(JSON.readTree(Files.readString(Path.of(src, "config.json"))), config);
        assertEquals(quant, JSON.readTree(Files.readString(Path.of(out, "quantize_config.json"))));
        assertEquals("gptq", quant.get("quant_method").asText());
        assertEquals(4, quant.get("bits").asInt());
        assertEquals(32, quant.get("group_size").asInt());
        assertTrue(quant.get("desc_act").asBoolean());
        assertTrue(quant.get("sym").asBoolean());
        assertTrue(quant.get("true_sequential").asBoolean());
        assertFalse(quant.get("static_groups").asBoolean());
        assertEquals(0.05, quant.get("damp_percent").asDouble());
        assertEquals("gptq", quant.get("checkpoint_format").asText());
        assertFalse(quant.get("lm_head").asBoolean());
        assertEquals("sparkquant:test", quant.get("meta").get("quantizer").get(0).asText());
        assertEquals(0.05, quant.get("meta").get("damp_percent").asDouble());
        List<String> dynamic = new ArrayList<>();
        quant.get("dynamic").fieldNames().forEachRemaining(dynamic::add);
        assertTrue(dynamic.contains("-:^model\\.layers\\.1\\.mlp\\.down_proj$"), dynamic.toString());
        assertTrue(dynamic.contains("-:^model\\.layers\\.0\\.mlp\\.gate_proj$"), dynamic.toString());
        assertTrue(dynamic.contains("-:^model\\.layers\\.0\\.mlp\\.gate_up_proj$"), "vLLM's fused name");
        assertEquals(6 + 2, dynamic.size());
        assertEquals(0, quant.get("dynamic").get(dynamic.get(0)).size());

        for (String f : List.of("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
                "generation_config.json")) {
            assertArrayEquals(Files.readAllBytes(Path.of(src, f)), Files.readAllBytes(Path.of(out, f)), f);
        }

        // read back: the very modules that were supplied, dense modules as in the source
        try (GptqCheckpoint ckpt = GptqCheckpoint.open(storage, out); TensorStore source = TensorStore.open(storage, src)) {
            assertTrue(ckpt.quantizationSource().endsWith("/out/quantize_config.json"), ckpt.quantizationSource());
            for (LinearModule m : ckpt.modules()) {
                if (supplied.containsKey(m.name())) {
                    assertTrue(ckpt.isQuantized(m.name()));
                    QuantizedLinear back = ckpt.quantized(m.name());
                    assertEquals(supplied.get(m.name()), back, m.name());
                    assertFalse(back.sequentialGroups(), "act-order g_idx survives");
                    assertArrayEquals(supplied.get(m.name()).dequantize(), ckpt.weight(m.name()));
                } else {
                    assertFalse(ckpt.isQuantized(m.name()));
                    assertArrayEquals(source.readFloats(m.weight()), ckpt.weight(m.name()), m.name());
                }
            }
            assertEquals(8, ckpt.verify());
            assertTrue(ckpt.warnings().isEmpty(), ckpt.warnings().toString());
        }
    }

    @Test
    void unpackableModulesCanBeFatal() {
        String src = tinySource(DType.F32);
        String out = tmp.resolve("out").toString();
        try (TensorStore store = TensorStore.open(storage, src)) {
            ModelInventory inventory = ModelInventory.of(ModelConfig.load(storage, src), store);
            GptqCheckpointWriter.Options options = GptqCheckpointWriter.Options.of(4, 32, true)
                    .withUnpackable(GptqCheckpointWriter.Unpackable.ERROR);
            SparkQuantException e = assertThrows(SparkQuantException.class, () -> GptqCheckpointWriter.write(storage,
                    store, inventory, out, options, m -> {
                        throw new AssertionError("no module may be asked for");
                    }));
            assertEquals(2, e.exitCode());
            assertTrue(e.getMessage().startsWith("6 module(s) cannot be packed at 4 bits: model.layers.0.mlp.gate_proj"),
                    e.getMessage());
            assertFalse(e.getMessage().contains("\n"));
            assertFalse(Files.exists(Path.of(out)));
            // at 8 bits the 172-wide layers pack (4 codes per word), so nothing is dense
            GptqCheckpointWriter.Plan plan = GptqCheckpointWriter.plan(inventory, GptqCheckpointWriter.Options.of(8, 32,
                    true).withUnpackable(GptqCheckpointWriter.Unpackable.ERROR));
            assertEquals(14, plan.quantized().size());
            assertEquals(0, plan.config().dynamic().size());
        }
    }

    @Test
    void asymmetricZerosOfZeroAreWrittenAsV2() throws Exception {
        String src = tinySource(DType.F32);
        Map<String, QuantizedLinear> supplied = new HashMap<>();
        try (TensorStore store = TensorStore.open(storage, src)) {
            ModelInventory inventory = ModelInventory.of(ModelConfig.load(storage, src), store);
            // weights that are all ≥ 0 give xmin = 0 and so a zero point of 0 in every group
            GptqCheckpointWriter.ModuleSource positive = m -> {
                float[] w = store.readFloats(m.weight());
                for (int i = 0; i < w.length; i++) {
                    w[i] = Math.abs(w[i]);
                }
                QuantizedLinear q = GptqTestModels.rtn(m.name(), w, m.inFeatures(), m.outFeatures(), 3, 32, false,
                        null, null);
                supplied.put(m.name(), q);
                return q;
            };
            String out = tmp.resolve("v2").toString();
            GptqCheckpointWriter.Result r = GptqCheckpointWriter.write(storage, store, inventory, out,
                    GptqCheckpointWriter.Options.of(3, 32, false), positive);
            assertEquals(GptqConfig.Format.GPTQ_V2, r.plan().config().format());
            try (GptqCheckpoint ckpt = GptqCheckpoint.open(storage, out)) {
                assertEquals(GptqConfig.Format.GPTQ_V2, ckpt.quantization().format());
                assertFalse(ckpt.quantization().sym());
                for (String name : ckpt.quantizedModules()) {
                    QuantizedLinear q = ckpt.quantized(name);
                    assertEquals(0, q.zero(0, 0));
                    assertEquals(supplied.get(name), q);
                }
            }
            // forcing v1 cannot store them: a clear error, not a corrupt file
            SparkQuantException e = assertThrows(SparkQuantException.class, () -> GptqCheckpointWriter.write(storage,
                    store, inventory, tmp.resolve("v1").toString(),
                    GptqCheckpointWriter.Options.of(3, 32, false).withFormat(GptqConfig.Format.GPTQ), positive));
            assertTrue(e.getMessage().contains("cannot be stored in checkpoint_format gptq"), e.getMessage());
        }
    }

    @Test
    void biasOfAQuantizedModuleIsStoredAsFp16() throws Exception {
        // qwen2: q, k, v carry a bias
        String src = tmp.resolve("qwen").toString();
        GptqTestModels.write(storage, src, GptqTestModels.config("qwen2", 64, 128, 1, 4, 2, 32, true, "float32"),
                DType.F32, 3);
        String out = tmp.resolve("out").toString();
        try (TensorStore store = TensorStore.open(storage, src)) {
            ModelInventory inventory = ModelInventory.of(ModelConfig.load(storage, src), store);
            GptqCheckpointWriter.write(storage, store, inventory, out, GptqCheckpointWriter.Options.of(2, 64, true),
                    rtn(store, 2, 64, true, false, new HashMap<>(), new ArrayList<>()));
            try (GptqCheckpoint ckpt = GptqCheckpoint.open(storage, out)) {
                assertEquals(7, ckpt.quantizedModules().size());
                String q = "model.layers.0.self_attn.q_proj";
                assertEquals(DType.F16, ckpt.store().info(q + ".bias").dtype());
                float[] source = store.readFloats(q + ".bias");
                float[] bias = ckpt.quantized(q).bias();
                for (int n = 0; n < source.length; n++) {
                    assertEquals(Half.toFloat(Half.fromFloat(source[n])), bias[n]);
                }
                assertNull(ckpt.quantized("model.layers.0.self_attn.o_proj").bias());
            }
        }
    }

    @Test
    void keepDenseAndRefusals() throws Exception {
        String src = tinySource(DType.F32);
        try (TensorStore store = TensorStore.open(storage, src)) {
            ModelInventory inventory = ModelInventory.of(ModelConfig.load(storage, src), store);
            GptqCheckpointWriter.Plan plan = GptqCheckpointWriter.plan(inventory, GptqCheckpointWriter.Options.of(8, -1,
                    true).withKeepDense(Set.of("model.layers.1.self_attn.k_proj")));
            assertEquals("kept dense on request", plan.dense().get("model.layers.1.self_attn.k_proj"));
            assertTrue(plan.warnings().get(0).contains("model.layers.1.self_attn.qkv_proj is partly quantized"),
                    plan.warnings().toString());
            assertThrows(SparkQuantException.class, () -> GptqCheckpointWriter.plan(inventory,
                    GptqCheckpointWriter.Options.of(8, -1, true).withKeepDense(Set.of("model.layers.9.mlp.up_proj"))));

            GptqCheckpointWriter.ModuleSource none = m -> {
                throw new AssertionError();
            };
            SparkQuantException same = assertThrows(SparkQuantException.class, () -> GptqCheckpointWriter.write(storage,
                    store, inventory, src, GptqCheckpointWriter.Options.of(4, 32, true), none));
            assertTrue(same.getMessage().contains("is the source model's"), same.getMessage());
            Path busy = Files.createDirectories(tmp.resolve("busy"));
            Files.writeString(busy.resolve("model.safetensors"), "old");
            SparkQuantException full = assertThrows(SparkQuantException.class, () -> GptqCheckpointWriter.write(
                    storage, store, inventory, busy.toString(), GptqCheckpointWriter.Options.of(4, 32, true), none));
            assertTrue(full.getMessage().contains("already holds a checkpoint"), full.getMessage());
        }
        // a source that is already quantized
        String q = tmp.resolve("quantized").toString();
        GptqTestModels.write(storage, q, GptqTestModels.config("llama", 64, 128, 1, 4, 2, 32, true, "float32")
                .replace("\"custom_key\"", "\"quantization_config\": {\"bits\": 4}, \"x\""), DType.F32, 1);
        try (TensorStore store = TensorStore.open(storage, q)) {
            ModelInventory inventory = ModelInventory.of(ModelConfig.load(storage, q), store);
            SparkQuantException e = assertThrows(SparkQuantException.class, () -> GptqCheckpointWriter.write(storage,
                    store, inventory, tmp.resolve("again").toString(), GptqCheckpointWriter.Options.of(4, 32, true),
                    m -> null));
            assertTrue(e.getMessage().contains("already quantized"), e.getMessage());
        }
    }

    @Test
    void suppliedModulesMustMatchThePlan() {
        String src = tinySource(DType.F32);
        try (TensorStore store = TensorStore.open(storage, src)) {
            ModelInventory inventory = ModelInventory.of(ModelConfig.load(storage, src), store);
            GptqCheckpointWriter.Options options = GptqCheckpointWriter.Options.of(4, 32, true);
            // act-order g_idx while desc_act is false: runtimes would ignore g_idx, so it must not be written
            SparkQuantException permuted = assertThrows(SparkQuantException.class, () -> GptqCheckpointWriter.write(
                    storage, store, inventory, tmp.resolve("a").toString(), options,
                    rtn(store, 4, 32, true, true, new HashMap<>(), new ArrayList<>())));
            assertTrue(permuted.getMessage().contains("g_idx is permuted (act-order) but desc_act is false"),
                    permuted.getMessage());
            SparkQuantException width = assertThrows(SparkQuantException.class, () -> GptqCheckpointWriter.write(
                    storage, store, inventory, tmp.resolve("b").toString(), options,
                    rtn(store, 8, 32, true, false, new HashMap<>(), new ArrayList<>())));
            assertTrue(width.getMessage().contains("quantized as 8-bit g32 sym but the checkpoint is 4-bit g32 sym"),
                    width.getMessage());
        }
    }

    @Test
    void stories260kKeepsItsMlpDenseAt4Bits() throws Exception {
        String src = TestPaths.shared("models/stories260K").toString();
        String out = tmp.resolve("stories-gptq").toString();
        Map<String, QuantizedLinear> supplied = new HashMap<>();
        try (TensorStore store = TensorStore.open(storage, src)) {
            ModelInventory inventory = ModelInventory.of(ModelConfig.load(storage, src), store);
            GptqCheckpointWriter.Result r = GptqCheckpointWriter.write(storage, store, inventory, out,
                    GptqCheckpointWriter.Options.of(4, 32, true), rtn(store, 4, 32, true, false, supplied,
                            new ArrayList<>()));
            assertEquals(5 * 4, r.plan().quantized().size());
            assertEquals(5 * 3, r.plan().dense().size());
            try (GptqCheckpoint ckpt = GptqCheckpoint.open(storage, out)) {
                assertEquals(20, ckpt.verify());
                for (LinearModule m : ckpt.modules()) {
                    float[] w = ckpt.weight(m.name());
                    if (m.kind().endsWith("_proj") && m.name().contains(".mlp.")) {
                        assertFalse(ckpt.isQuantized(m.name()));
                        assertArrayEquals(store.readFloats(m.weight()), w);
                    } else {
                        assertArrayEquals(supplied.get(m.name()).dequantize(), w);
                    }
                }
                assertArrayEquals(store.readRaw("model.embed_tokens.weight"),
                        ckpt.store().readRaw("model.embed_tokens.weight"));
                assertTrue(Files.exists(Path.of(out, "tokenizer.model")));
            }
        }
    }
}
