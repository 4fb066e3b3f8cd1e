package org.sparkquant.model;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.sparkquant.model.ModelConfigTest.assertMessage;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.function.Consumer;

import com.fasterxml.jackson.databind.JsonNode;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.sparkquant.io.DType;
import org.sparkquant.io.ShardedSafetensorsWriter;
import org.sparkquant.io.Storage;
import org.sparkquant.io.TensorSpec;
import org.sparkquant.io.TensorStore;
import org.sparkquant.testing.TestPaths;

/**
 * The tensors each architecture requires, against the state dict of the transformers model built from the same
 * config (python/model_reference.py), and the errors for checkpoints that do not match their config.
 */
class ModelInventoryTest {
    private static final Storage STORAGE = Storage.local();

    @TempDir
    Path dir;

    private static Map<String, long[]> shapes(JsonNode tensors) {
        Map<String, long[]> out = new TreeMap<>();
        for (Iterator<Map.Entry<String, JsonNode>> it = tensors.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            long[] s = new long[e.getValue().size()];
            for (int i = 0; i < s.length; i++) {
                s[i] = e.getValue().get(i).asLong();
            }
            out.put(e.getKey(), s);
        }
        return out;
    }

    /** Names, linear module shapes and the parameter count of the config-only inventory against transformers. */
    private static void assertMatches(String name, ModelConfig config, JsonNode ref) {
        Map<String, long[]> want = shapes(ref.get("tensors"));
        ModelInventory inv = ModelInventory.of(config);
        assertEquals(want.keySet(), new java.util.TreeSet<>(inv.requiredTensors()), name);
        assertEquals(ref.get("parameters").asLong(), inv.parameterCount(), name + " parameters");
        assertEquals(config.numLayers(), inv.layers().size());
        long total = 0;
        for (int i = 0; i < config.numLayers(); i++) {
            List<LinearModule> modules = inv.layer(i);
            List<String> kinds = new ArrayList<>(List.of("q_proj", "k_proj", "v_proj", "o_proj"));
            int experts = config.sparse(i) ? config.moe().experts() : 0;
            assertEquals(experts, inv.experts(i));
            for (int e = 0; e < Math.max(1, experts); e++) {
                kinds.addAll(List.of("gate_proj", "up_proj", "down_proj"));
                if (experts > 0) {
                    assertEquals(List.of("gate_proj", "up_proj", "down_proj"),
                            inv.expertModules(i, e).stream().map(LinearModule::kind).toList());
                }
            }
            if (config.sparse(i) && config.moe().sharedExpert()) {
                kinds.addAll(LinearModule.SHARED_KINDS);
            }
            assertEquals(kinds, modules.stream().map(LinearModule::kind).toList(), name + " layer " + i);
            assertEquals(modules.size(), modules.stream().map(LinearModule::key).distinct().count());
            for (String t : inv.unquantizedLayerTensors(i)) {
                assertTrue(want.containsKey(t), t);
                assertTrue(modules.stream().noneMatch(m -> m.weight().equals(t)), t + " is not quantized");
            }
            for (LinearModule m : modules) {
                assertEquals(i, m.layer());
                assertArrayEquals(want.get(m.weight()), new long[] {m.outFeatures(), m.inFeatures()}, m.weight());
                assertEquals(want.containsKey(m.biasName()), m.bias(), m.biasName());
                if (m.bias()) {
                    assertArrayEquals(want.get(m.biasName()), new long[] {m.outFeatures()}, m.biasName());
                }
            }
            long layer = 0;
            for (Map.Entry<String, long[]> e : want.entrySet()) {
                if (e.getKey().startsWith("model.layers." + i + ".")) {
                    layer += java.util.Arrays.stream(e.getValue()).reduce(1, (a, b) -> a * b);
                }
            }
            assertEquals(layer, inv.layerParameters(i), name + " layer " + i);
            total += layer;
        }
        assertTrue(total < inv.parameterCount());
    }

    @Test
    void requiredTensorsMatchTransformers() {
        JsonNode reference = TransformersReference.committed();
        for (Iterator<String> it = reference.fieldNames(); it.hasNext(); ) {
            String name = it.next();
            assertMatches(name, ModelConfigTest.parse(name), reference.get(name));
        }
    }

    @Test
    void liveTransformersAgrees() {
        JsonNode live = TransformersReference.live();
        for (Path file : TransformersReference.configFiles()) {
            String name = file.getFileName().toString().replace(".json", "");
            assertMatches(name, ModelConfigTest.parse(name), live.get(name));
        }
        for (Path model : TransformersReference.sharedModels()) {
            String name = model.getFileName().toString();
            assertMatches(name, ModelConfig.load(STORAGE, model.toString()), live.get(name));
        }
    }

    /** A sharded BF16 checkpoint of zeros with the given tensors. */
    private String checkpoint(String name, Map<String, long[]> tensors, Map<String, DType> dtypes) {
        String out = dir.resolve(name).toString();
        List<TensorSpec> specs = new ArrayList<>();
        tensors.forEach((t, s) -> specs.add(new TensorSpec(t, dtypes.getOrDefault(t, DType.BF16), s)));
        try (ShardedSafetensorsWriter w = ShardedSafetensorsWriter.create(STORAGE, out, specs, 64 << 10, null)) {
            for (TensorSpec s : specs) {
                w.write(s.name(), new byte[(int) s.byteSize()]);
            }
        }
        return out;
    }

    /** The tiny fixture models as checkpoints with exactly transformers' tensors (plus an extra one) open cleanly. */
    @Test
    void tinyCheckpointsWithTransformersTensorsAreAccepted() {
        JsonNode reference = TransformersReference.committed();
        int checked = 0;
        for (Iterator<String> it = reference.fieldNames(); it.hasNext(); ) {
            String name = it.next();
            if (!name.startsWith("tiny-")) {
                continue;
            }
            ModelConfig config = ModelConfigTest.parse(name);
            Map<String, long[]> tensors = new LinkedHashMap<>(shapes(reference.get(name).get("tensors")));
            tensors.put("model.rotary_emb.inv_freq", new long[] {config.headDim() / 2});
            String out = checkpoint(name, tensors, Map.of("model.rotary_emb.inv_freq", DType.F32));
            try (TensorStore store = TensorStore.open(STORAGE, out)) {
                assertTrue(store.shards().size() > 1, name + " is sharded");
                ModelInventory inv = ModelInventory.of(config, store);
                assertEquals(tensors.keySet(), inv.tensors().keySet(), "every tensor, extras kept");
                assertEquals(inv.requiredTensors(), List.copyOf(inv.tensors().keySet()).subList(0,
                        inv.requiredTensors().size()), "required tensors first");
                long params = reference.get(name).get("parameters").asLong();
                assertEquals(params + config.headDim() / 2, inv.parameterCount());
                assertEquals(Map.of(DType.BF16, 2 * params, DType.F32, 4L * config.headDim() / 2),
                        inv.bytesByDtype());
                assertEquals(store.shardOf("model.norm.weight"), inv.shardOf("model.norm.weight"));
            }
            assertNull(ModelInventory.of(config).shardOf("model.norm.weight"));
            checked++;
        }
        assertEquals(7, checked);
    }

    private void assertRejected(String configName, Consumer<Map<String, long[]>> edit, Map<String, DType> dtypes,
            String... fragments) {
        ModelConfig config = ModelConfigTest.parse(configName);
        Map<String, long[]> tensors = new LinkedHashMap<>(shapes(TransformersReference.committed().get(configName)
                .get("tensors")));
        edit.accept(tensors);
        String out = checkpoint(configName + "-" + Math.abs(java.util.Arrays.hashCode(fragments)), tensors, dtypes);
        try (TensorStore store = TensorStore.open(STORAGE, out)) {
            String[] all = new String[fragments.length + 1];
            all[0] = out;
            System.arraycopy(fragments, 0, all, 1, fragments.length);
            assertMessage(() -> ModelInventory.of(config, store), all);
        }
    }

    @Test
    void missingTensorsAreNamed() {
        assertRejected("tiny-llama-bias", t -> t.remove("model.layers.1.mlp.down_proj.bias"), Map.of(),
                "missing tensor 'model.layers.1.mlp.down_proj.bias' (expected shape [64] for llama)");
        assertRejected("tiny-qwen3-bias", t -> t.remove("model.layers.0.self_attn.k_norm.weight"), Map.of(),
                "missing tensor 'model.layers.0.self_attn.k_norm.weight' (expected shape [32] for qwen3)");
        assertRejected("tiny-qwen2", t -> t.remove("lm_head.weight"), Map.of(),
                "missing tensor 'lm_head.weight' (expected shape [120, 56] for qwen2)");
        assertRejected("tiny-qwen2", t -> t.remove("model.layers.0.self_attn.v_proj.bias"), Map.of(),
                "missing tensor 'model.layers.0.self_attn.v_proj.bias'");
        assertRejected("tiny-mistral", t -> t.remove("model.embed_tokens.weight"), Map.of(),
                "missing tensor 'model.embed_tokens.weight'");
        assertRejected("tiny-mixtral", t -> t.remove("model.layers.1.block_sparse_moe.experts.7.w3.weight"),
                Map.of(), "missing tensor 'model.layers.1.block_sparse_moe.experts.7.w3.weight' (expected shape "
                        + "[96, 64] for mixtral)");
        assertRejected("tiny-qwen2-moe", t -> t.remove("model.layers.2.mlp.shared_expert_gate.weight"), Map.of(),
                "missing tensor 'model.layers.2.mlp.shared_expert_gate.weight' (expected shape [1, 64]");
        assertRejected("tiny-qwen3-moe", t -> {
            t.keySet().removeIf(n -> n.startsWith("model.layers.0.mlp.experts."));
            t.put("model.layers.0.mlp.experts.gate_up_proj", new long[] {16, 64, 64});
            t.put("model.layers.0.mlp.experts.down_proj", new long[] {16, 64, 32});
        }, Map.of(), "'model.layers.0.mlp.experts.gate_up_proj' is a fused 3-D expert tensor (transformers' "
                + "in-memory layout); expected one 2-D tensor per expert and projection, e.g. "
                + "'model.layers.0.mlp.experts.0.gate_proj.weight'");
        assertRejected("tiny-qwen3-moe", t -> t.remove("model.layers.0.mlp.gate.weight"), Map.of(),
                "missing tensor 'model.layers.0.mlp.gate.weight' (expected shape [16, 64] for qwen3_moe)");
    }

    @Test
    void wrongShapesAndDtypesAreNamed() {
        assertRejected("tiny-llama-bias", t -> t.put("model.layers.0.self_attn.k_proj.weight", new long[] {64, 32}),
                Map.of(), "tensor 'model.layers.0.self_attn.k_proj.weight' has shape [64, 32], expected [32, 64] "
                        + "from config.json");
        assertRejected("tiny-mistral", t -> t.put("model.norm.weight", new long[] {48, 1}), Map.of(),
                "tensor 'model.norm.weight' has shape [48, 1], expected [48]");
        assertRejected("tiny-qwen3-bias", t -> { }, Map.of("model.layers.1.mlp.up_proj.weight", DType.I8),
                "tensor 'model.layers.1.mlp.up_proj.weight' has dtype I8, expected a floating-point type");
        assertRejected("tiny-qwen3-moe", t -> t.put("model.layers.1.mlp.experts.15.down_proj.weight",
                new long[] {32, 64}), Map.of(), "tensor 'model.layers.1.mlp.experts.15.down_proj.weight' has shape "
                        + "[32, 64], expected [64, 32]");
    }

    @Test
    void tiedEmbeddingsNeedNoHead() {
        // qwen3 tiny is tied: a checkpoint that also carries lm_head.weight (some do) keeps it as an extra tensor
        Map<String, long[]> tensors = new LinkedHashMap<>(shapes(TransformersReference.committed()
                .get("tiny-qwen3-bias").get("tensors")));
        assertTrue(!tensors.containsKey("lm_head.weight"));
        tensors.put("lm_head.weight", new long[] {110, 64});
        try (TensorStore store = TensorStore.open(STORAGE, checkpoint("tied", tensors, Map.of()))) {
            ModelInventory inv = ModelInventory.of(ModelConfigTest.parse("tiny-qwen3-bias"), store);
            assertTrue(inv.tensors().containsKey("lm_head.weight"));
            assertTrue(!inv.requiredTensors().contains("lm_head.weight"));
        }
    }

    @Test
    void linearModulesAndInputs() {
        ModelInventory inv = ModelInventory.of(ModelConfigTest.parse("qwen3-0.6b"));
        List<LinearModule> layer = inv.layer(27);
        LinearModule q = layer.get(0);
        assertEquals("model.layers.27.self_attn.q_proj", q.name());
        assertEquals("model.layers.27.self_attn.q_proj.weight", q.weight());
        assertEquals(LinearModule.Input.ATTN_IN, q.input());
        assertEquals(1024, q.inFeatures());
        assertEquals(2048, q.outFeatures());
        LinearModule o = layer.get(3);
        assertEquals(2048, o.inFeatures(), "o_proj reads the concatenated heads");
        assertEquals(LinearModule.Input.ATTN_OUT_IN, o.input());
        assertEquals(LinearModule.Input.MLP_IN, layer.get(4).input());
        assertEquals(LinearModule.Input.MLP_IN, layer.get(5).input(), "gate and up share an input");
        assertEquals(LinearModule.Input.DOWN_IN, layer.get(6).input());
        assertEquals(Map.of(LinearModule.Input.ATTN_IN, 1024, LinearModule.Input.ATTN_OUT_IN, 2048,
                LinearModule.Input.MLP_IN, 1024, LinearModule.Input.DOWN_IN, 3072), inv.inputWidths());
        LinearModule biased = ModelInventory.of(ModelConfigTest.parse("qwen2.5-0.5b")).layer(0).get(1);
        assertEquals(128L * 896 + 128, biased.parameters(), "k_proj weight + bias");
        assertEquals("model.layers.0.self_attn.k_proj.bias", biased.biasName());
    }

    // ---- the shared models ----

    @Test
    void devLlama() {
        Path model = TestPaths.shared("models/dev-llama2-26m");
        ModelConfig config = ModelConfig.load(STORAGE, model.toString());
        try (TensorStore store = TensorStore.open(STORAGE, model.toString())) {
            ModelInventory inv = ModelInventory.of(config, store);
            assertEquals(25_824_768L, inv.parameterCount());
            assertEquals(25_824_768L, ModelInventory.of(config).parameterCount(), "the config alone predicts it");
            assertEquals(Map.of(DType.BF16, 2 * 25_824_768L), inv.bytesByDtype());
            assertEquals(3, inv.layers().size());
            // q 512x512, k/v 256x512, o 512x512, gate/up/down 1536x512, two norms of 512
            assertEquals(512L * 512 * 2 + 256L * 512 * 2 + 3L * 1536 * 512 + 2 * 512, inv.layerParameters(1));
            assertEquals(Map.of(LinearModule.Input.ATTN_IN, 512, LinearModule.Input.ATTN_OUT_IN, 512,
                    LinearModule.Input.MLP_IN, 512, LinearModule.Input.DOWN_IN, 1536), inv.inputWidths());
            assertEquals(29, inv.tensors().size());
            assertEquals(TensorStore.SINGLE, inv.shardOf("model.layers.2.mlp.down_proj.weight"));
        }
    }

    @Test
    void stories260K() {
        Path model = TestPaths.shared("models/stories260K");
        ModelConfig config = ModelConfig.load(STORAGE, model.toString());
        try (TensorStore store = TensorStore.open(STORAGE, model.toString())) {
            ModelInventory inv = ModelInventory.of(config, store);
            assertEquals(260_032L, inv.parameterCount());
            assertEquals(172, inv.layer(4).get(6).inFeatures(), "FFN width 172");
            assertEquals(Map.of(DType.F32, 4 * 260_032L), inv.bytesByDtype());
        }
    }
}
