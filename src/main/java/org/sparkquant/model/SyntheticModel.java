package org.sparkquant.model;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.sparkquant.SparkQuantException;
import org.sparkquant.io.DType;
import org.sparkquant.io.Half;
import org.sparkquant.io.ShardedSafetensorsWriter;
import org.sparkquant.io.Storage;
import org.sparkquant.io.TensorSpec;

/**
 * Writes a llama checkpoint with seeded random weights and a byte-fallback BPE tokenizer: the project's own demo
 * model (no download needed) and a way to produce models of real shapes (e.g. Llama-3-8B layers) for scale tests.
 * The MoE presets write mixtral, qwen2_moe and qwen3_moe checkpoints in the hub's per-expert layout.
 * Tensors are generated and written one at a time, so the model never has to fit in memory.
 */
public final class SyntheticModel {
    /**
     * A llama shape: widths, layer and head counts, vocabulary, RoPE base, whether embeddings are tied; with
     * {@code moe}, a mixture-of-experts model of that architecture ({@code ffn} is then the width of its dense layers).
     */
    public record Shape(int hidden, int ffn, int layers, int heads, int kvHeads, int vocab, double ropeTheta,
            boolean tied, Experts moe) {
        public Shape(int hidden, int ffn, int layers, int heads, int kvHeads, int vocab, double ropeTheta,
                boolean tied) {
            this(hidden, ffn, layers, heads, kvHeads, vocab, ropeTheta, tied, null);
        }

        public Shape withLayers(int n) {
            return new Shape(hidden, ffn, n, heads, kvHeads, vocab, ropeTheta, tied, moe);
        }
    }

    /**
     * The experts of an MoE shape: the architecture ({@code mixtral}, {@code qwen2_moe}, {@code qwen3_moe}), routed
     * experts, top-k, expert width, shared-expert width (qwen2_moe, else 0), norm_topk_prob, head_dim and the layers
     * whose MLP stays dense (qwen2_moe's mlp_only_layers; those beyond the layer count are dropped).
     */
    public record Experts(String type, int experts, int topK, int ffn, int sharedFfn, boolean normTopk, int headDim,
            List<Integer> denseLayers) {}

    /**
     * Named shapes. {@code tiny} is the README demo; {@code llama3-8b} the scale benchmark's layer shape; the MoE
     * presets a tiny model of each supported class and two real shapes (use {@code --layers} to keep them small).
     */
    public enum Preset {
        TINY(new Shape(128, 384, 4, 4, 2, 512, 10000.0, true)),
        SMALL(new Shape(256, 768, 4, 8, 4, 2048, 10000.0, true)),
        LLAMA3_8B(new Shape(4096, 14336, 32, 32, 8, 128256, 500000.0, false)),
        TINY_MIXTRAL(new Shape(128, 192, 4, 4, 2, 512, 1000000.0, false,
                new Experts("mixtral", 8, 2, 192, 0, true, 32, List.of()))),
        TINY_QWEN2_MOE(new Shape(128, 384, 4, 4, 2, 512, 1000000.0, false,
                new Experts("qwen2_moe", 8, 2, 96, 256, false, 32, List.of(1)))),
        TINY_QWEN3_MOE(new Shape(128, 384, 4, 4, 2, 512, 1000000.0, true,
                new Experts("qwen3_moe", 16, 4, 64, 0, true, 32, List.of()))),
        QWEN3_30B_A3B(new Shape(2048, 6144, 48, 32, 4, 151936, 1000000.0, false,
                new Experts("qwen3_moe", 128, 8, 768, 0, true, 128, List.of()))),
        MIXTRAL_8X7B(new Shape(4096, 14336, 32, 32, 8, 32000, 1000000.0, false,
                new Experts("mixtral", 8, 2, 14336, 0, true, 128, List.of())));

        private final Shape shape;

        Preset(Shape shape) {
            this.shape = shape;
        }

        public Shape shape() {
            return shape;
        }

        public static Preset parse(String name) {
            try {
                return valueOf(name.toUpperCase(Locale.ROOT).replace('-', '_'));
            } catch (IllegalArgumentException e) {
                throw SparkQuantException.badInput("unknown preset '" + name + "' (" + names() + ")");
            }
        }
    }

    /** The preset names as the command line spells them. */
    public static String names() {
        return String.join(", ", java.util.Arrays.stream(Preset.values())
                .map(p -> p.name().toLowerCase(Locale.ROOT).replace('_', '-')).toList());
    }

    private static final int SPECIAL_TOKENS = 3;

    private SyntheticModel() {}

    /** Writes config.json, safetensors, tokenizer files; returns the config written. */
    public static ModelConfig write(Storage storage, String directory, Preset preset, int layers, DType dtype,
            long seed, long maxShardBytes) {
        Shape shape = preset.shape();
        return write(storage, directory, layers > 0 ? shape.withLayers(layers) : shape, dtype, seed, maxShardBytes);
    }

    /** Writes a model of any shape. */
    public static ModelConfig write(Storage storage, String directory, Shape shape, DType dtype, long seed,
            long maxShardBytes) {
        if (dtype != DType.F32 && dtype != DType.BF16 && dtype != DType.F16) {
            throw SparkQuantException.badInput("--dtype must be F32, F16 or BF16");
        }
        String configJson = configJson(shape, dtype);
        ModelConfig config = ModelConfig.parse(configJson, "generated config");
        ModelInventory inventory = ModelInventory.of(config);
        storage.mkdirs(directory);
        storage.writeString(Storage.resolve(directory, "config.json"), configJson);
        storage.writeString(Storage.resolve(directory, "tokenizer.json"), tokenizerJson());
        storage.writeString(Storage.resolve(directory, "tokenizer_config.json"), tokenizerConfigJson());
        storage.writeString(Storage.resolve(directory, "generation_config.json"),
                "{\n  \"bos_token_id\": 1,\n  \"eos_token_id\": 2\n}\n");

        List<TensorSpec> specs = new ArrayList<>();
        for (String name : inventory.requiredTensors()) {
            specs.add(new TensorSpec(name, dtype, inventory.expectedShape(name)));
        }
        try (ShardedSafetensorsWriter writer = ShardedSafetensorsWriter.create(storage, directory, specs,
                maxShardBytes, Map.of("format", "pt"))) {
            SplittableRandom root = new SplittableRandom(seed);
            for (TensorSpec spec : specs) {
                // one stream per tensor, so a tensor's values do not depend on the shapes of the others
                SplittableRandom random = new SplittableRandom(root.nextLong() ^ spec.name().hashCode());
                writeTensor(writer, spec, random, config);
            }
        }
        return config;
    }

    private static void writeTensor(ShardedSafetensorsWriter writer, TensorSpec spec, SplittableRandom random,
            ModelConfig config) {
        boolean norm = spec.name().endsWith("norm.weight");
        // Linear weights ~ N(0, 1/sqrt(in)) keep activations O(1) through the layers; norms near 1, biases near 0.
        double std = norm ? 0.05 : spec.shape().length == 1 ? 0.02 : 1.0 / Math.sqrt(spec.shape()[1]);
        if (spec.name().contains("embed_tokens") || spec.name().equals("lm_head.weight")) {
            std = 0.02; // HF's initializer_range: logits of order one, perplexity of order the vocabulary
        }
        long n = spec.elements();
        int size = spec.dtype().size();
        int chunk = 1 << 16;
        byte[] buffer = new byte[chunk * size];
        ByteBuffer out = ByteBuffer.wrap(buffer).order(ByteOrder.LITTLE_ENDIAN);
        for (long done = 0; done < n; done += chunk) {
            int count = (int) Math.min(chunk, n - done);
            out.clear();
            for (int i = 0; i < count; i++) {
                float v = (float) ((norm ? 1.0 : 0.0) + std * gaussian(random));
                switch (spec.dtype()) {
                    case F32 -> out.putFloat(v);
                    case F16 -> out.putShort(Half.fromFloat(v));
                    default -> out.putShort(Half.floatToBf16(v));
                }
            }
            writer.write(spec.name(), buffer, 0, count * size);
        }
    }

    private static double gaussian(SplittableRandom random) {
        // Box-Muller on SplittableRandom: reproducible across JVMs (java.util.Random#nextGaussian is too, but slower)
        double u1 = random.nextDouble();
        double u2 = random.nextDouble();
        return Math.sqrt(-2 * Math.log1p(-u1)) * Math.cos(2 * Math.PI * u2);
    }

    static String configJson(Shape p, DType dtype) {
        ObjectMapper mapper = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
        ObjectNode c = mapper.createObjectNode();
        Experts moe = p.moe();
        String type = moe == null ? "llama" : moe.type();
        c.putArray("architectures").add(switch (type) {
            case "mixtral" -> "MixtralForCausalLM";
            case "qwen2_moe" -> "Qwen2MoeForCausalLM";
            case "qwen3_moe" -> "Qwen3MoeForCausalLM";
            default -> "LlamaForCausalLM";
        });
        c.put("model_type", type);
        c.put("hidden_size", p.hidden());
        c.put("intermediate_size", p.ffn());
        c.put("num_hidden_layers", p.layers());
        c.put("num_attention_heads", p.heads());
        c.put("num_key_value_heads", p.kvHeads());
        c.put("head_dim", moe == null ? p.hidden() / p.heads() : moe.headDim());
        if (moe != null) {
            c.put(type.equals("mixtral") ? "num_local_experts" : "num_experts", moe.experts());
            c.put("num_experts_per_tok", moe.topK());
            if (!type.equals("mixtral")) {
                c.put("moe_intermediate_size", moe.ffn());
                c.put("norm_topk_prob", moe.normTopk());
                c.put("decoder_sparse_step", 1);
                ArrayNode only = c.putArray("mlp_only_layers");
                moe.denseLayers().stream().filter(l -> l < p.layers()).forEach(only::add);
                c.put("use_sliding_window", false);
            }
            if (moe.sharedFfn() > 0) {
                c.put("shared_expert_intermediate_size", moe.sharedFfn());
            }
        }
        c.put("vocab_size", p.vocab());
        c.put("max_position_embeddings", 8192);
        c.put("rms_norm_eps", 1e-5);
        c.put("rope_theta", p.ropeTheta());
        c.put("hidden_act", "silu");
        c.put("tie_word_embeddings", p.tied());
        if (moe == null) {
            c.put("attention_bias", false);
            c.put("mlp_bias", false);
        } else if (type.equals("qwen3_moe")) {
            c.put("attention_bias", false);
        }
        c.put("bos_token_id", 1);
        c.put("eos_token_id", 2);
        c.put("torch_dtype", switch (dtype) {
            case F32 -> "float32";
            case F16 -> "float16";
            default -> "bfloat16";
        });
        c.put("sparkquant_synthetic", true);
        try {
            return mapper.writeValueAsString(c) + "\n";
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }

    /**
     * A SentencePiece-style BPE without merges: the printable ASCII characters and "▁" are tokens, everything else
     * falls back to byte tokens. Enough to tokenize any UTF-8 text reproducibly.
     */
    static String tokenizerJson() {
        ObjectMapper mapper = new ObjectMapper();
        ObjectNode root = mapper.createObjectNode();
        root.put("version", "1.0");
        root.putNull("truncation");
        root.putNull("padding");
        ArrayNode added = root.putArray("added_tokens");
        String[] specials = {"<unk>", "<s>", "</s>"};
        for (int i = 0; i < specials.length; i++) {
            ObjectNode t = added.addObject();
            t.put("id", i);
            t.put("content", specials[i]);
            t.put("single_word", false);
            t.put("lstrip", false);
            t.put("rstrip", false);
            t.put("normalized", false);
            t.put("special", true);
        }
        ObjectNode normalizer = root.putObject("normalizer");
        normalizer.put("type", "Sequence");
        ArrayNode norms = normalizer.putArray("normalizers");
        norms.addObject().put("type", "Prepend").put("prepend", "\u2581");
        ObjectNode replace = norms.addObject().put("type", "Replace");
        replace.putObject("pattern").put("String", " ");
        replace.put("content", "\u2581");
        root.putNull("pre_tokenizer");
        ObjectNode post = root.putObject("post_processor");
        post.put("type", "TemplateProcessing");
        ArrayNode single = post.putArray("single");
        single.addObject().putObject("SpecialToken").put("id", "<s>").put("type_id", 0);
        single.addObject().putObject("Sequence").put("id", "A").put("type_id", 0);
        ArrayNode pair = post.putArray("pair");
        pair.addObject().putObject("SpecialToken").put("id", "<s>").put("type_id", 0);
        pair.addObject().putObject("Sequence").put("id", "A").put("type_id", 0);
        pair.addObject().putObject("SpecialToken").put("id", "<s>").put("type_id", 1);
        pair.addObject().putObject("Sequence").put("id", "B").put("type_id", 1);
        ObjectNode sp = post.putObject("special_tokens").putObject("<s>");
        sp.put("id", "<s>");
        sp.putArray("ids").add(1);
        sp.putArray("tokens").add("<s>");
        ObjectNode decoder = root.putObject("decoder");
        decoder.put("type", "Sequence");
        ArrayNode decoders = decoder.putArray("decoders");
        ObjectNode dr = decoders.addObject().put("type", "Replace");
        dr.putObject("pattern").put("String", "\u2581");
        dr.put("content", " ");
        decoders.addObject().put("type", "ByteFallback");
        decoders.addObject().put("type", "Fuse");
        decoders.addObject().put("type", "Strip").put("content", " ").put("start", 1).put("stop", 0);
        ObjectNode model = root.putObject("model");
        model.put("type", "BPE");
        model.putNull("dropout");
        model.put("unk_token", "<unk>");
        model.putNull("continuing_subword_prefix");
        model.putNull("end_of_word_suffix");
        model.put("fuse_unk", true);
        model.put("byte_fallback", true);
        model.put("ignore_merges", false);
        ObjectNode vocab = model.putObject("vocab");
        Map<String, Integer> ids = vocabulary();
        ids.forEach(vocab::put);
        model.putArray("merges");
        try {
            return mapper.writeValueAsString(root);
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }

    static Map<String, Integer> vocabulary() {
        Map<String, Integer> ids = new LinkedHashMap<>();
        ids.put("<unk>", 0);
        ids.put("<s>", 1);
        ids.put("</s>", 2);
        for (int b = 0; b < 256; b++) {
            ids.put(String.format("<0x%02X>", b), SPECIAL_TOKENS + b);
        }
        int next = SPECIAL_TOKENS + 256;
        ids.put("\u2581", next++);
        for (char ch = 33; ch < 127; ch++) {
            ids.put(String.valueOf(ch), next++);
        }
        return ids;
    }

    static String tokenizerConfigJson() {
        return """
                {
                  "tokenizer_class": "LlamaTokenizerFast",
                  "bos_token": "<s>",
                  "eos_token": "</s>",
                  "unk_token": "<unk>",
                  "add_bos_token": true,
                  "add_eos_token": false,
                  "model_max_length": 8192
                }
                """;
    }
}
