package org.sparkquant.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.sparkquant.SparkQuantException;
import org.sparkquant.io.Storage;
import org.sparkquant.testing.TestPaths;

/**
 * config.json parsing against transformers (the fixture configs are shaped like the public Llama-3.1-8B,
 * Llama-3.2-1B (transformers 5 rope_parameters style), vicuna-7b-v1.5-16k (linear scaling), Mistral-7B-v0.1,
 * Qwen2.5-0.5B and Qwen3-0.6B configs, plus tiny ones with bias flags), and the errors for bad configs.
 */
class ModelConfigTest {

    static ModelConfig parse(String name) {
        return ModelConfig.parse(TransformersReference.configText(name), name + ".json");
    }

    /** Every field against what transformers resolved, rotary inverse frequencies included. */
    static void assertMatches(String name, ModelConfig c, JsonNode ref) {
        assertEquals(ref.get("model_type").asText(), c.modelType(), name);
        assertEquals(ref.get("hidden_size").asInt(), c.hiddenSize(), name);
        assertEquals(ref.get("intermediate_size").asInt(), c.intermediateSize(), name);
        assertEquals(ref.get("num_hidden_layers").asInt(), c.numLayers(), name);
        assertEquals(ref.get("num_attention_heads").asInt(), c.numHeads(), name);
        assertEquals(ref.get("num_key_value_heads").asInt(), c.numKvHeads(), name);
        assertEquals(ref.get("head_dim").asInt(), c.headDim(), name);
        assertEquals(ref.get("vocab_size").asInt(), c.vocabSize(), name);
        assertEquals(ref.get("rms_norm_eps").asDouble(), c.rmsNormEps(), name);
        assertEquals(ref.get("tie_word_embeddings").asBoolean(), c.tieWordEmbeddings(), name);
        assertEquals(ref.get("max_position_embeddings").asInt(), c.maxPositionEmbeddings(), name);
        JsonNode window = ref.get("sliding_window");
        assertEquals(window.isNull() ? 0 : window.asInt(), c.slidingWindow(), name + " sliding window");
        JsonNode rope = ref.get("rope");
        RopeConfig r = c.rope();
        assertEquals(rope.get("rope_type").asText(), r.type(), name);
        assertEquals(rope.get("rope_theta").asDouble(), r.theta(), name);
        if (!r.type().equals("default")) {
            assertEquals(rope.get("factor").asDouble(), r.factor(), name);
        }
        if (r.type().equals("llama3")) {
            assertEquals(rope.get("low_freq_factor").asDouble(), r.lowFreqFactor(), name);
            assertEquals(rope.get("high_freq_factor").asDouble(), r.highFreqFactor(), name);
            assertEquals(rope.get("original_max_position_embeddings").asInt(), r.originalMaxPositions(), name);
        }
        JsonNode moe = ref.get("moe");
        if (moe == null || moe.isNull()) {
            assertNull(c.moe(), name + " is dense");
        } else {
            MoeConfig m = c.moe();
            assertEquals(moe.get("experts").asInt(), m.experts(), name + " experts");
            assertEquals(moe.get("top_k").asInt(), m.topK(), name + " top-k");
            assertEquals(moe.get("expert_intermediate_size").asInt(), m.expertIntermediateSize(), name);
            assertEquals(moe.get("norm_topk_prob").asBoolean(), m.normTopkProb(), name + " norm_topk_prob");
            assertEquals(moe.get("shared_intermediate_size").asInt(), m.sharedIntermediateSize(), name);
            List<Integer> dense = new java.util.ArrayList<>();
            moe.get("dense_layers").forEach(v -> dense.add(v.asInt()));
            assertEquals(dense, m.denseLayers(), name + " dense layers");
            for (int i = 0; i < c.numLayers(); i++) {
                assertEquals(!dense.contains(i), c.sparse(i), name + " layer " + i);
            }
        }
        double[] inv = r.inverseFrequencies(c.headDim());
        JsonNode want = ref.get("inv_freq");
        assertEquals(want.size(), inv.length, name);
        for (int i = 0; i < inv.length; i++) {
            // both compute with fp32 operations in the same order: equal but for a last-bit pow rounding
            double w = want.get(i).asDouble();
            assertEquals(w, inv[i], Math.ulp((float) w), name + " inv_freq[" + i + "]");
        }
    }

    @Test
    void fixtureConfigsMatchTransformers() {
        JsonNode reference = TransformersReference.committed();
        int n = 0;
        for (Path file : TransformersReference.configFiles()) {
            String name = file.getFileName().toString().replace(".json", "");
            assertTrue(reference.has(name), "reference for " + name);
            assertMatches(name, parse(name), reference.get(name));
            n++;
        }
        assertEquals(reference.size(), n);
        assertTrue(n >= 10);
    }

    @Test
    void liveTransformersAgrees() {
        JsonNode live = TransformersReference.live();
        for (Path file : TransformersReference.configFiles()) {
            String name = file.getFileName().toString().replace(".json", "");
            assertMatches(name, parse(name), live.get(name));
        }
        for (Path model : TransformersReference.sharedModels()) {
            String name = model.getFileName().toString();
            assertMatches(name, ModelConfig.load(Storage.local(), model.toString()), live.get(name));
        }
    }

    @Test
    void llama31() {
        ModelConfig c = parse("llama-3.1-8b");
        assertEquals(new RopeConfig("llama3", 500000.0, 8.0, 1.0, 4.0, 8192), c.rope());
        assertEquals(128, c.headDim());
        assertEquals(4, c.groupSize());
        assertEquals(1024, c.kvDim());
        assertEquals("bfloat16", c.dtype());
        assertEquals(128000, c.bosTokenId());
        assertEquals(128001, c.eosTokenId());
        assertFalse(c.attentionBias() || c.attentionOutputBias() || c.mlpBias() || c.qkNorm());
    }

    @Test
    void llamaNewStyleRopeParameters() {
        ModelConfig c = parse("llama-3.2-1b-instruct-v5");
        assertEquals(new RopeConfig("llama3", 500000.0, 32.0, 1.0, 4.0, 8192), c.rope());
        assertEquals("bfloat16", c.dtype(), "transformers 5 writes dtype, not torch_dtype");
        assertEquals(128001, c.eosTokenId(), "the first of a list of eos ids");
        assertTrue(c.tieWordEmbeddings());
        // the same scaling in either style gives the same frequencies
        String old = TransformersReference.configText("llama-3.2-1b-instruct-v5")
                .replaceAll("(?s)\"rope_parameters\": \\{.*?\\}", "\"rope_theta\": 500000.0, \"rope_scaling\": "
                        + "{\"factor\": 32.0, \"high_freq_factor\": 4.0, \"low_freq_factor\": 1.0, "
                        + "\"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"}");
        assertTrue(old.contains("rope_scaling"));
        assertEquals(c, ModelConfig.parse(old, "old style"));
    }

    @Test
    void linearScalingOldStyle() {
        ModelConfig c = parse("vicuna-7b-v1.5-16k");
        assertEquals("linear", c.rope().type());
        assertEquals(4.0, c.rope().factor());
        assertEquals(10000.0, c.rope().theta(), "the default theta");
        assertEquals(0.25, c.rope().inverseFrequencies(128)[0]);
        assertEquals("float16", c.dtype());
    }

    @Test
    void mistralSlidingWindow() {
        ModelConfig c = parse("mistral-7b-v0.1");
        assertEquals(4096, c.slidingWindow());
        assertEquals(RopeConfig.plain(10000.0), c.rope());
        assertEquals(0, parse("tiny-mistral").slidingWindow(), "sliding_window null: full attention");
        assertEquals(96, parse("tiny-mistral").qDim(), "head_dim given: 6 heads x 16 is not the hidden size 48");
    }

    @Test
    void qwen2Biases() {
        ModelConfig c = parse("qwen2.5-0.5b");
        assertTrue(c.attentionBias(), "q/k/v have bias");
        assertFalse(c.attentionOutputBias(), "o_proj has none");
        assertFalse(c.mlpBias());
        assertEquals(0, c.slidingWindow(), "use_sliding_window is false");
        assertEquals(64, c.headDim());
        assertEquals(1e-6, c.rmsNormEps());
        String sliding = TransformersReference.configText("qwen2.5-0.5b")
                .replace("\"use_sliding_window\": false", "\"use_sliding_window\": true");
        assertMessage(() -> ModelConfig.parse(sliding, "q.json"), "q.json", "use_sliding_window=true is not supported");
    }

    @Test
    void qwen3QkNormAndHeadDim() {
        ModelConfig c = parse("qwen3-0.6b");
        assertTrue(c.qkNorm());
        assertEquals(128, c.headDim());
        assertEquals(1024 / 16, c.hiddenSize() / c.numHeads(), "head_dim differs from hidden/heads");
        assertEquals(2048, c.qDim());
        assertEquals(1024, c.kvDim());
        assertFalse(c.attentionBias());
        assertEquals(RopeConfig.plain(1_000_000), c.rope());
        ModelConfig biased = parse("tiny-qwen3-bias");
        assertTrue(biased.attentionBias() && biased.attentionOutputBias(), "qwen3's attention_bias covers o_proj");
    }

    @Test
    void sharedModelConfigs() {
        Path dev = TestPaths.shared("models/dev-llama2-26m");
        ModelConfig c = ModelConfig.load(Storage.local(), dev.toString());
        assertEquals(512, c.hiddenSize());
        assertEquals(1536, c.intermediateSize());
        assertEquals(3, c.numLayers());
        assertEquals(8, c.numHeads());
        assertEquals(4, c.numKvHeads());
        assertEquals(64, c.headDim());
        assertEquals(32000, c.vocabSize());
        assertEquals(RopeConfig.plain(10000.0), c.rope());
        assertTrue(c.tieWordEmbeddings());
        assertEquals("bfloat16", c.dtype());
        Path stories = TestPaths.shared("models/stories260K");
        ModelConfig s = ModelConfig.load(Storage.local(), stories.toString());
        assertEquals(64, s.hiddenSize());
        assertEquals(172, s.intermediateSize());
        assertEquals(5, s.numLayers());
        assertEquals(8, s.headDim());
        assertEquals(512, s.vocabSize());
        assertEquals("float32", s.dtype());
    }

    // ---- errors ----

    static SparkQuantException assertMessage(Runnable action, String... fragments) {
        SparkQuantException e = assertThrows(SparkQuantException.class, action::run);
        assertEquals(SparkQuantException.Kind.BAD_INPUT, e.kind());
        assertFalse(e.getMessage().contains("\n"), e.getMessage());
        for (String f : fragments) {
            assertTrue(e.getMessage().contains(f), "message should contain '" + f + "': " + e.getMessage());
        }
        return e;
    }

    /** The tiny llama config with one field replaced (a JSON value) or removed (null). */
    private static String edited(String field, String json) {
        try {
            ObjectNode root = (ObjectNode) TransformersReference.JSON.readTree(
                    TransformersReference.configText("tiny-llama-bias"));
            if (json == null) {
                root.remove(field);
            } else {
                root.set(field, TransformersReference.JSON.readTree(json));
            }
            return TransformersReference.JSON.writeValueAsString(root);
        } catch (java.io.IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    private static void rejects(String field, String json, String... fragments) {
        String[] all = new String[fragments.length + 1];
        all[0] = "c.json";
        System.arraycopy(fragments, 0, all, 1, fragments.length);
        assertMessage(() -> ModelConfig.parse(edited(field, json), "c.json"), all);
    }

    @Test
    void badExpertSettingsAreRejectedByName() {
        String qwen = TransformersReference.configText("tiny-qwen2-moe");
        assertMessage(() -> ModelConfig.parse(qwen.replace("\"num_experts_per_tok\": 2", "\"num_experts_per_tok\": 9"),
                "c.json"), "c.json", "num_experts_per_tok 9 exceeds the 8 experts");
        assertMessage(() -> ModelConfig.parse(qwen.replace("\"mlp_only_layers\": [1]", "\"mlp_only_layers\": 1"),
                "c.json"), "c.json", "mlp_only_layers must be a list");
        assertMessage(() -> ModelConfig.parse(qwen.replace("\"mlp_only_layers\": [1]", "\"mlp_only_layers\": [-1]"),
                "c.json"), "c.json", "mlp_only_layers holds -1");
        assertMessage(() -> ModelConfig.parse(qwen.replace("\"num_experts\": 8", "\"num_experts\": 0"),
                "c.json"), "c.json", "num_experts must be a positive integer");
        // decoder_sparse_step 2: layers 1 (and 3, ...) sparse, the others dense
        ModelConfig stepped = ModelConfig.parse(qwen.replace("\"decoder_sparse_step\": 1", "\"decoder_sparse_step\": 2")
                .replace("\"mlp_only_layers\": [1]", "\"mlp_only_layers\": []"), "c.json");
        assertEquals(List.of(0, 2), stepped.moe().denseLayers());
        assertFalse(parse("tiny-qwen3-bias").sparse(0));
    }

    @Test
    void unsupportedModelTypeListsTheSupportedOnes() {
        rejects("model_type", "\"gemma2\"", "model_type 'gemma2' is not supported (supported: llama, mistral, qwen2, "
                + "qwen3, mixtral, qwen2_moe, qwen3_moe)");
        rejects("model_type", null, "missing model_type");
        rejects("hidden_act", "\"gelu\"", "hidden_act 'gelu' is not supported");
    }

    @Test
    void missingAndMistypedFields() {
        for (String field : new String[] {"hidden_size", "intermediate_size", "num_hidden_layers",
            "num_attention_heads", "vocab_size"}) {
            rejects(field, null, "missing " + field);
            rejects(field, "null", "missing " + field);
            rejects(field, "\"64\"", field + " must be a positive integer, got \"64\"");
            rejects(field, "0", field + " must be a positive integer, got 0");
            rejects(field, "-3", "must be a positive integer");
            rejects(field, "2.5", "must be a positive integer");
            rejects(field, "4294967296", "must be a positive integer");
        }
        rejects("num_key_value_heads", "3", "num_attention_heads 4 is not a multiple of num_key_value_heads 3");
        rejects("hidden_size", "66", "hidden_size 66 is not a multiple of num_attention_heads 4");
        rejects("head_dim", "7", "head_dim 7 must be even");
        rejects("rms_norm_eps", "\"1e-6\"", "rms_norm_eps must be a number");
        rejects("tie_word_embeddings", "\"false\"", "tie_word_embeddings must be true or false");
        rejects("attention_bias", "1", "attention_bias must be true or false");
        rejects("rope_theta", "-1", "rope_theta must be positive");
        rejects("rope_theta", "\"big\"", "rope_theta must be a number");
        rejects("max_position_embeddings", "0", "max_position_embeddings must be a positive integer");
        assertMessage(() -> ModelConfig.parse("{\"model_type\": ", "c.json"), "c.json", "not valid JSON");
        assertMessage(() -> ModelConfig.parse("[1]", "c.json"), "c.json", "not a JSON object");
    }

    @Test
    void nullMeansTheDefault() {
        // transformers treats an explicit null like an absent key for these
        ModelConfig c = ModelConfig.parse(edited("num_key_value_heads", "null"), "c.json");
        assertEquals(4, c.numKvHeads(), "no grouping: as many KV heads as heads");
        assertEquals(16, ModelConfig.parse(edited("head_dim", "null"), "c.json").headDim());
        assertMessage(() -> ModelConfig.parse(edited("head_dim", "null").replace("\"hidden_size\":64",
                "\"hidden_size\":66"), "c.json"), "hidden_size 66 is not a multiple of num_attention_heads 4");
        assertEquals(RopeConfig.plain(10000), ModelConfig.parse(edited("rope_scaling", "null"), "c.json").rope());
    }

    @Test
    void ropeErrors() {
        rejects("rope_scaling", "\"linear\"", "rope_scaling must be an object");
        rejects("rope_scaling", "{\"rope_type\": \"yarn\", \"factor\": 4.0}",
                "rope type 'yarn' is not supported (supported: default, linear, llama3)");
        rejects("rope_scaling", "{\"type\": \"dynamic\", \"factor\": 2.0}", "rope type 'dynamic' is not supported");
        rejects("rope_scaling", "{\"rope_type\": \"llama3\", \"factor\": 8.0}", "c.json rope scaling",
                "missing original_max_position_embeddings");
        rejects("rope_scaling", "{\"rope_type\": \"linear\", \"factor\": \"4\"}", "factor must be a number");
        rejects("rope_parameters", "{\"rope_type\": \"default\", \"rope_theta\": \"1e4\"}",
                "rope_theta must be a number");
        rejects("rope_parameters", "{\"rope_type\": \"default\", \"rope_theta\": 0}", "rope_theta must be positive");
        ModelConfig v5 = ModelConfig.parse(edited("rope_parameters", "{\"rope_type\": \"default\", \"rope_theta\": "
                + "250000.0}"), "c.json");
        assertEquals(RopeConfig.plain(250000.0), v5.rope());
    }

    @Test
    void loadNamesTheDirectory(@TempDir Path dir) throws Exception {
        assertMessage(() -> ModelConfig.load(Storage.local(), dir.toString()), "config.json",
                "no such file (is " + dir + " a Hugging Face model directory?)");
        Files.writeString(dir.resolve("config.json"), TransformersReference.configText("qwen3-0.6b"));
        assertEquals(parse("qwen3-0.6b"), ModelConfig.load(Storage.local(), dir.toString()));
        Files.writeString(dir.resolve("config.json"), "{\"model_type\": \"qwen3\"}");
        assertMessage(() -> ModelConfig.load(Storage.local(), dir.toString()), dir.resolve("config.json").toString(),
                "missing hidden_size");
    }
}
