package org.sparkquant.format.gguf;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import org.sparkquant.io.DType;
import org.sparkquant.io.ShardedSafetensorsWriter;
import org.sparkquant.io.Storage;
import org.sparkquant.io.TensorSpec;
import org.sparkquant.model.ModelConfig;
import org.sparkquant.model.ModelInventory;
import org.sparkquant.testing.TestPaths;

/**
 * Small random Hugging Face checkpoints for the GGUF tests, written at test time (nothing committed): every matrix
 * width a multiple of 256 so all k-quants apply, with the tokenizer fixtures of org.sparkquant.tokenizer.
 * <ul>
 *   <li>{@code llama3}: llama, GQA (4/2 heads of 64), untied lm_head, Llama 3.1 RoPE scaling (so
 *       rope_freqs.weight has all three regions), byte-level tokenizer (Llama 3 regex, BOS by template), vocab_size
 *       448 &gt; the tokenizer's 420 ids (padding), a generation_config.json;</li>
 *   <li>{@code llama-bias}: llama with attention_bias (permuted q/k biases), SentencePiece-style BPE tokenizer;</li>
 *   <li>{@code qwen2}: q/k/v biases, tied embeddings, the byte-level tokenizer without BOS plus Qwen's
 *       {@code <|endoftext|>} as added token 420 (transformers' Qwen2Tokenizer adds it anyway), vocab_size 432;</li>
 *   <li>{@code qwen3}: per-head q/k RMSNorm, untied, the same tokenizer.</li>
 * </ul>
 */
final class GgufTestModels {
    private GgufTestModels() {}

    static final List<String> ALL = List.of("llama3", "llama-bias", "qwen2", "qwen3");

    static Path write(Path root, String kind) {
        Path dir = root.resolve(kind);
        String tokenizer;
        String config;
        int vocab;
        switch (kind) {
            case "llama3" -> {
                tokenizer = "bytelevel";
                vocab = 448;
                config = config("llama", "LlamaForCausalLM", vocab, false, """
                          "attention_bias": false, "mlp_bias": false, "head_dim": 64,
                          "bos_token_id": 0, "eos_token_id": 1,
                          "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                            "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
                        """);
            }
            case "llama-bias" -> {
                tokenizer = "sentencepiece";
                vocab = 556;
                config = config("llama", "LlamaForCausalLM", vocab, false, """
                          "attention_bias": true, "mlp_bias": false, "head_dim": 64,
                          "bos_token_id": 1, "eos_token_id": 2, "rope_theta": 10000.0
                        """);
            }
            case "qwen2" -> {
                tokenizer = "bytelevel-nobos";
                vocab = 432;
                config = config("qwen2", "Qwen2ForCausalLM", vocab, true, """
                          "eos_token_id": 1, "rope_theta": 1000000.0, "use_sliding_window": false
                        """);
            }
            case "qwen3" -> {
                tokenizer = "bytelevel-nobos";
                vocab = 432;
                config = config("qwen3", "Qwen3ForCausalLM", vocab, false, """
                          "head_dim": 64, "eos_token_id": 1, "rope_theta": 1000000.0, "attention_bias": false
                        """);
            }
            default -> throw new IllegalArgumentException(kind);
        }
        try {
            Files.createDirectories(dir);
            Files.writeString(dir.resolve("config.json"), config);
            Path fixture = TestPaths.fixtures("tokenizer").resolve(tokenizer);
            for (String f : List.of("tokenizer.json", "tokenizer_config.json")) {
                Files.copy(fixture.resolve(f), dir.resolve(f));
            }
            if (kind.startsWith("qwen")) {
                com.fasterxml.jackson.databind.ObjectMapper json = new com.fasterxml.jackson.databind.ObjectMapper();
                com.fasterxml.jackson.databind.node.ObjectNode t =
                        (com.fasterxml.jackson.databind.node.ObjectNode) json.readTree(dir.resolve("tokenizer.json").toFile());
                ((com.fasterxml.jackson.databind.node.ArrayNode) t.get("added_tokens")).addObject().put("id", 420)
                        .put("content", "<|endoftext|>").put("single_word", false).put("lstrip", false)
                        .put("rstrip", false).put("normalized", false).put("special", true);
                json.writeValue(dir.resolve("tokenizer.json").toFile(), t);
            }
            if (kind.equals("llama3")) {
                Files.writeString(dir.resolve("generation_config.json"),
                        "{\"bos_token_id\": 0, \"eos_token_id\": [1, 0], \"do_sample\": true, \"temperature\": 0.6,"
                                + " \"top_p\": 0.9, \"top_k\": 40}");
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        ModelConfig c = ModelConfig.parse(config, kind);
        weights(dir, c, kind.hashCode());
        return dir;
    }

    private static String config(String type, String arch, int vocab, boolean tied, String extra) {
        return "{\n  \"architectures\": [\"" + arch + "\"], \"model_type\": \"" + type + "\",\n"
                + "  \"hidden_size\": 256, \"intermediate_size\": 512, \"num_hidden_layers\": 2,\n"
                + "  \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"vocab_size\": " + vocab + ",\n"
                + "  \"max_position_embeddings\": 1024, \"rms_norm_eps\": 1e-06, \"hidden_act\": \"silu\",\n"
                + "  \"tie_word_embeddings\": " + tied + ", \"torch_dtype\": \"float32\",\n" + extra + "}\n";
    }

    /** N(0, 1/√in) matrices, N(1, 0.1) norms, N(0, 0.1) biases, N(0, 1) embeddings; fp32. */
    private static void weights(Path dir, ModelConfig c, long seed) {
        ModelInventory inv = ModelInventory.of(c);
        List<TensorSpec> specs = new ArrayList<>();
        Map<String, long[]> shapes = new java.util.LinkedHashMap<>();
        for (String name : inv.requiredTensors()) {
            long[] shape = shape(c, inv, name);
            shapes.put(name, shape);
            specs.add(new TensorSpec(name, DType.F32, shape));
        }
        SplittableRandom root = new SplittableRandom(seed);
        try (ShardedSafetensorsWriter w = ShardedSafetensorsWriter.create(Storage.local(), dir.toString(), specs,
                1L << 40, Map.of("format", "pt"))) {
            for (TensorSpec s : specs) {
                SplittableRandom r = root.split();
                long[] shape = s.shape();
                boolean norm = s.name().endsWith("norm.weight");
                boolean bias = s.name().endsWith(".bias");
                double mean = norm ? 1 : 0;
                double std = norm || bias ? 0.1 : s.name().contains("embed_tokens") ? 1.0 : 1.0 / Math.sqrt(shape[1]);
                ByteBuffer b = ByteBuffer.allocate((int) s.byteSize()).order(ByteOrder.LITTLE_ENDIAN);
                for (long i = 0; i < s.elements(); i++) {
                    b.putFloat((float) (mean + std * gaussian(r)));
                }
                w.write(s.name(), b.array());
            }
        }
    }

    private static long[] shape(ModelConfig c, ModelInventory inv, String name) {
        for (List<org.sparkquant.model.LinearModule> layer : inv.layers()) {
            for (org.sparkquant.model.LinearModule m : layer) {
                if (m.weight().equals(name)) {
                    return new long[] {m.outFeatures(), m.inFeatures()};
                }
                if (m.bias() && m.biasName().equals(name)) {
                    return new long[] {m.outFeatures()};
                }
            }
        }
        if (name.endsWith("embed_tokens.weight") || name.equals("lm_head.weight")) {
            return new long[] {c.vocabSize(), c.hiddenSize()};
        }
        if (name.endsWith("q_norm.weight") || name.endsWith("k_norm.weight")) {
            return new long[] {c.headDim()};
        }
        return new long[] {c.hiddenSize()};
    }

    private static double gaussian(SplittableRandom r) {
        double u = 1 - r.nextDouble();
        return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r.nextDouble());
    }
}
