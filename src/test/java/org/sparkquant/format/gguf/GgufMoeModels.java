package org.sparkquant.format.gguf;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import org.sparkquant.io.DType;
import org.sparkquant.io.ShardedSafetensorsWriter;
import org.sparkquant.io.Storage;
import org.sparkquant.io.TensorSpec;
import org.sparkquant.testing.TestPaths;

/**
 * Small random mixture-of-experts checkpoints in the hub's layout (one 2-D tensor per expert and projection, as
 * transformers 5's save_pretrained writes them too), written at test time: hidden 256, 4/2 heads of 64, 2 layers,
 * every matrix width a multiple of 256 so all k-quants apply. The tensor list is spelled out here, independently of
 * the model package's inventory.
 * <ul>
 *   <li>{@code mixtral}: 8 experts, top-2 (8 experts trigger llama-quantize's Mixtral rules), SentencePiece-style
 *       BPE tokenizer, BOS;</li>
 *   <li>{@code qwen2moe}: 6 experts of 256, top-2, no top-k renormalisation, a shared expert of 512 with its
 *       sigmoid gate, q/k/v biases, the byte-level tokenizer without BOS plus {@code <|endoftext|>};</li>
 *   <li>{@code qwen3moe}: 16 experts of 256, top-4, renormalised, per-head q/k RMSNorm, the same tokenizer.</li>
 * </ul>
 */
public final class GgufMoeModels {
    private GgufMoeModels() {}

    public static final List<String> ALL = List.of("mixtral", "qwen2moe", "qwen3moe");

    static final int HIDDEN = 256;
    static final int HEADS = 4;
    static final int KV_HEADS = 2;
    static final int HEAD_DIM = 64;
    public static final int LAYERS = 2;
    static final int EXPERT_FF = 256;

    public static int experts(String kind) {
        return switch (kind) {
            case "mixtral" -> 8;
            case "qwen2moe" -> 6;
            case "qwen3moe" -> 16;
            default -> throw new IllegalArgumentException(kind);
        };
    }

    public static Path write(Path root, String kind) {
        Path dir = root.resolve(kind);
        String tokenizer;
        int vocab;
        String config;
        String common = "  \"hidden_size\": 256, \"num_hidden_layers\": 2, \"num_attention_heads\": 4,\n"
                + "  \"num_key_value_heads\": 2, \"max_position_embeddings\": 1024, \"rms_norm_eps\": 1e-06,\n"
                + "  \"hidden_act\": \"silu\", \"tie_word_embeddings\": false, \"torch_dtype\": \"float32\",\n";
        switch (kind) {
            case "mixtral" -> {
                tokenizer = "sentencepiece";
                vocab = 556;
                config = "{\n  \"architectures\": [\"MixtralForCausalLM\"], \"model_type\": \"mixtral\",\n" + common
                        + "  \"vocab_size\": 556, \"intermediate_size\": 256, \"num_local_experts\": 8,\n"
                        + "  \"num_experts_per_tok\": 2, \"router_jitter_noise\": 0.0, \"rope_theta\": 1000000.0,\n"
                        + "  \"sliding_window\": null, \"bos_token_id\": 1, \"eos_token_id\": 2\n}\n";
            }
            case "qwen2moe" -> {
                tokenizer = "bytelevel-nobos";
                vocab = 432;
                config = "{\n  \"architectures\": [\"Qwen2MoeForCausalLM\"], \"model_type\": \"qwen2_moe\",\n" + common
                        + "  \"vocab_size\": 432, \"intermediate_size\": 512, \"moe_intermediate_size\": 256,\n"
                        + "  \"shared_expert_intermediate_size\": 512, \"num_experts\": 6, \"num_experts_per_tok\": 2,\n"
                        + "  \"norm_topk_prob\": false, \"decoder_sparse_step\": 1, \"mlp_only_layers\": [],\n"
                        + "  \"qkv_bias\": true, \"use_sliding_window\": false, \"rope_theta\": 1000000.0,\n"
                        + "  \"eos_token_id\": 1\n}\n";
            }
            case "qwen3moe" -> {
                tokenizer = "bytelevel-nobos";
                vocab = 432;
                config = "{\n  \"architectures\": [\"Qwen3MoeForCausalLM\"], \"model_type\": \"qwen3_moe\",\n" + common
                        + "  \"vocab_size\": 432, \"head_dim\": 64, \"intermediate_size\": 512,\n"
                        + "  \"moe_intermediate_size\": 256, \"num_experts\": 16, \"num_experts_per_tok\": 4,\n"
                        + "  \"norm_topk_prob\": true, \"decoder_sparse_step\": 1, \"mlp_only_layers\": [],\n"
                        + "  \"attention_bias\": false, \"use_sliding_window\": false, \"rope_theta\": 1000000.0,\n"
                        + "  \"eos_token_id\": 1\n}\n";
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
                com.fasterxml.jackson.databind.node.ObjectNode t = (com.fasterxml.jackson.databind.node.ObjectNode)
                        json.readTree(dir.resolve("tokenizer.json").toFile());
                ((com.fasterxml.jackson.databind.node.ArrayNode) t.get("added_tokens")).addObject().put("id", 420)
                        .put("content", "<|endoftext|>").put("single_word", false).put("lstrip", false)
                        .put("rstrip", false).put("normalized", false).put("special", true);
                json.writeValue(dir.resolve("tokenizer.json").toFile(), t);
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        weights(dir, tensors(kind, vocab), kind.hashCode());
        return dir;
    }

    /** Every tensor of the checkpoint with its PyTorch shape. */
    public static Map<String, long[]> tensors(String kind, int vocab) {
        Map<String, long[]> t = new LinkedHashMap<>();
        t.put("model.embed_tokens.weight", new long[] {vocab, HIDDEN});
        t.put("model.norm.weight", new long[] {HIDDEN});
        t.put("lm_head.weight", new long[] {vocab, HIDDEN});
        int q = HEADS * HEAD_DIM;
        int kv = KV_HEADS * HEAD_DIM;
        int n = experts(kind);
        for (int l = 0; l < LAYERS; l++) {
            String p = "model.layers." + l + ".";
            t.put(p + "input_layernorm.weight", new long[] {HIDDEN});
            t.put(p + "post_attention_layernorm.weight", new long[] {HIDDEN});
            t.put(p + "self_attn.q_proj.weight", new long[] {q, HIDDEN});
            t.put(p + "self_attn.k_proj.weight", new long[] {kv, HIDDEN});
            t.put(p + "self_attn.v_proj.weight", new long[] {kv, HIDDEN});
            t.put(p + "self_attn.o_proj.weight", new long[] {HIDDEN, q});
            if (kind.equals("qwen2moe")) {
                t.put(p + "self_attn.q_proj.bias", new long[] {q});
                t.put(p + "self_attn.k_proj.bias", new long[] {kv});
                t.put(p + "self_attn.v_proj.bias", new long[] {kv});
            }
            if (kind.equals("qwen3moe")) {
                t.put(p + "self_attn.q_norm.weight", new long[] {HEAD_DIM});
                t.put(p + "self_attn.k_norm.weight", new long[] {HEAD_DIM});
            }
            String moe = kind.equals("mixtral") ? p + "block_sparse_moe." : p + "mlp.";
            t.put(moe + "gate.weight", new long[] {n, HIDDEN});
            for (int e = 0; e < n; e++) {
                String x = moe + "experts." + e + ".";
                boolean mixtral = kind.equals("mixtral");
                t.put(x + (mixtral ? "w1" : "gate_proj") + ".weight", new long[] {EXPERT_FF, HIDDEN});
                t.put(x + (mixtral ? "w3" : "up_proj") + ".weight", new long[] {EXPERT_FF, HIDDEN});
                t.put(x + (mixtral ? "w2" : "down_proj") + ".weight", new long[] {HIDDEN, EXPERT_FF});
            }
            if (kind.equals("qwen2moe")) {
                t.put(p + "mlp.shared_expert.gate_proj.weight", new long[] {512, HIDDEN});
                t.put(p + "mlp.shared_expert.up_proj.weight", new long[] {512, HIDDEN});
                t.put(p + "mlp.shared_expert.down_proj.weight", new long[] {HIDDEN, 512});
                t.put(p + "mlp.shared_expert_gate.weight", new long[] {1, HIDDEN});
            }
        }
        return t;
    }

    /** N(0, 1/√in) matrices (routers too: routing then varies by token), N(1, 0.1) norms, N(0, 0.1) biases. */
    private static void weights(Path dir, Map<String, long[]> shapes, long seed) {
        List<TensorSpec> specs = new ArrayList<>();
        shapes.forEach((name, shape) -> specs.add(new TensorSpec(name, DType.F32, shape)));
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
                    double u = 1 - r.nextDouble();
                    double g = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r.nextDouble());
                    b.putFloat((float) (mean + std * g));
                }
                w.write(s.name(), b.array());
            }
        }
    }
}
