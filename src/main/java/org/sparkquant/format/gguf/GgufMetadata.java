package org.sparkquant.format.gguf;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.LinkedHashMap;
import java.util.Map;
import org.sparkquant.SparkQuantException;
import org.sparkquant.io.Storage;
import org.sparkquant.model.ModelConfig;
import org.sparkquant.model.RopeConfig;

/**
 * The GGUF metadata of a llama-family model, as llama.cpp's convert_hf_to_gguf.py writes it (TextModel, LlamaModel,
 * Qwen2Model / Qwen3Model): {@code general.*}, the architecture's hyper-parameters and the tokenizer
 * ({@link GgufVocab}).
 * <ul>
 *   <li>general: architecture ("llama" for llama/mistral, "qwen2", "qwen3"), type "model", sampling defaults from
 *       generation_config.json (top_k, top_p, min_p, temperature, repetition_penalty), name (the directory's name
 *       unless given), file_type, quantization_version 2, alignment;</li>
 *   <li>{@code <arch>.}block_count, context_length (max_position_embeddings), embedding_length,
 *       feed_forward_length, attention.head_count, attention.head_count_kv, rope.freq_base,
 *       attention.layer_norm_rms_epsilon, attention.key_length / value_length (= head_dim; written when the
 *       transformers config carries head_dim: always for llama, mistral and qwen3, for qwen2 when config.json has
 *       it), rope.scaling.type "linear" + rope.scaling.factor for linear RoPE scaling; llama adds vocab_size and
 *       rope.dimension_count;</li>
 *   <li>Llama 3 RoPE scaling is not metadata but the F32 tensor {@code rope_freqs.weight}: {@link #ropeFreqs}.</li>
 * </ul>
 */
public final class GgufMetadata {
    private GgufMetadata() {}

    public static final int QUANTIZATION_VERSION = 2;

    /** Export options: the model name (null: the directory's name), the alignment, the tokenizer options. */
    public record Options(String name, int alignment, GgufVocab.Options vocab) {
        public static final Options DEFAULT = new Options(null, GgufLayout.DEFAULT_ALIGNMENT, GgufVocab.Options.DEFAULT);

        public Options {
            if (alignment <= 0 || (alignment & (alignment - 1)) != 0) {
                throw SparkQuantException.badInput("GGUF alignment " + alignment + " is not a power of two");
            }
            vocab = vocab == null ? GgufVocab.Options.DEFAULT : vocab;
        }

        public Options withName(String value) {
            return new Options(value, alignment, vocab);
        }

        public Options withPreTokenizer(String pre) {
            return new Options(name, alignment, new GgufVocab.Options(pre));
        }
    }

    /** All metadata of a model directory (config.json, tokenizer files, generation_config.json) for a file type. */
    public static Map<String, GgufValue> forModel(Storage storage, String directory, ModelConfig config,
            LlamaFileType fileType, Options options) {
        String arch = GgufNames.architecture(config.modelType());
        GgufVocab.Files files = new GgufVocab.Files(storage, directory);
        JsonNode raw = files.json("config.json");
        String name = options.name() != null ? options.name() : title(directoryName(directory));
        Map<String, GgufValue> md = new LinkedHashMap<>();
        md.put("general.architecture", GgufValue.string(arch));
        md.put("general.type", GgufValue.string("model"));
        md.putAll(sampling(files));
        md.put("general.name", GgufValue.string(name));
        md.putAll(hyperParameters(config, raw, fileType));
        md.put("general.quantization_version", GgufValue.u32(QUANTIZATION_VERSION));
        md.put("general.alignment", GgufValue.u32(options.alignment()));
        GgufVocab vocab = GgufVocab.load(storage, directory, arch, config.vocabSize(), options.vocab());
        md.putAll(vocab.metadata());
        return md;
    }

    /**
     * The architecture's keys (and general.file_type) for a config and its config.json {@code raw} (whether it sets
     * head_dim decides key_length/value_length for qwen2 and the mixture-of-experts models; the mixture-of-experts keys are read from it as the
     * converter reads them: expert_count from num_local_experts / num_experts, expert_used_count from
     * num_experts_per_tok, and for qwen2moe / qwen3moe expert_feed_forward_length from moe_intermediate_size and
     * expert_shared_feed_forward_length from shared_expert_intermediate_size).
     */
    public static Map<String, GgufValue> hyperParameters(ModelConfig c, JsonNode raw, LlamaFileType fileType) {
        String arch = GgufNames.architecture(c.modelType());
        boolean configHasHeadDim = raw.has("head_dim") && !raw.get("head_dim").isNull();
        // a Mistral sliding window has no llama key; the converter drops it too (full attention in llama.cpp)
        Map<String, GgufValue> md = new LinkedHashMap<>();
        md.put(arch + ".block_count", GgufValue.u32(c.numLayers()));
        md.put(arch + ".context_length", GgufValue.u32(c.maxPositionEmbeddings()));
        md.put(arch + ".embedding_length", GgufValue.u32(c.hiddenSize()));
        md.put(arch + ".feed_forward_length", GgufValue.u32(c.intermediateSize()));
        md.put(arch + ".attention.head_count", GgufValue.u32(c.numHeads()));
        md.put(arch + ".attention.head_count_kv", GgufValue.u32(c.numKvHeads()));
        RopeConfig rope = c.rope();
        switch (rope.type()) {
            case "default", "llama3" -> {
                // llama3 scaling is the rope_freqs.weight tensor
            }
            case "linear" -> {
                md.put(arch + ".rope.scaling.type", GgufValue.string("linear"));
                md.put(arch + ".rope.scaling.factor", GgufValue.f32((float) rope.factor()));
            }
            default -> throw SparkQuantException.badInput("RoPE type '" + rope.type() + "' cannot be written as GGUF");
        }
        md.put(arch + ".rope.freq_base", GgufValue.f32((float) rope.theta()));
        md.put(arch + ".attention.layer_norm_rms_epsilon", GgufValue.f32((float) c.rmsNormEps()));
        JsonNode experts = first(raw, "num_local_experts", "num_experts", "n_routed_experts");
        if (experts != null) {
            md.put(arch + ".expert_count", GgufValue.u32(experts.asInt()));
        }
        JsonNode used = first(raw, "num_experts_per_tok", "num_experts_per_token", "top_k_experts");
        if (used != null) {
            md.put(arch + ".expert_used_count", GgufValue.u32(used.asInt()));
        }
        // transformers fills head_dim in for dense llama / mistral / qwen3 configs, not for qwen2 or the MoE classes
        boolean filled = (arch.equals("llama") || arch.equals("qwen3")) && experts == null;
        if (filled || configHasHeadDim) {
            md.put(arch + ".attention.key_length", GgufValue.u32(c.headDim()));
            md.put(arch + ".attention.value_length", GgufValue.u32(c.headDim()));
        }
        md.put("general.file_type", GgufValue.u32(fileType.id()));
        if (arch.equals("llama")) {
            md.put(arch + ".vocab_size", GgufValue.u32(c.vocabSize()));
            md.put(arch + ".rope.dimension_count", GgufValue.u32(c.headDim()));
        }
        if (arch.endsWith("moe")) {
            JsonNode ff = raw.get("moe_intermediate_size");
            if (ff != null && ff.isNumber()) {
                md.put(arch + ".expert_feed_forward_length", GgufValue.u32(ff.asInt()));
            }
            JsonNode shared = raw.get("shared_expert_intermediate_size");
            if (shared != null && shared.isNumber()) {
                md.put(arch + ".expert_shared_feed_forward_length", GgufValue.u32(shared.asInt()));
            }
        }
        return md;
    }

    /** The first of the keys that config.json sets to a number (the converter's find_hparam), or null. */
    private static JsonNode first(JsonNode raw, String... keys) {
        for (String k : keys) {
            JsonNode v = raw.get(k);
            if (v != null && v.isNumber()) {
                return v;
            }
        }
        return null;
    }

    /**
     * Llama 3's {@code rope_freqs.weight} (one factor per rotary pair: 1 for short wavelengths, {@code factor} for
     * long ones, smoothly in between), computed in float32 like the converter's torch code; null when the model
     * has no llama3 scaling.
     */
    public static float[] ropeFreqs(ModelConfig c) {
        RopeConfig r = c.rope();
        if (!r.type().equals("llama3") || !GgufNames.architecture(c.modelType()).equals("llama")) {
            return null;
        }
        int dim = c.headDim();
        int half = dim / 2;
        float base = (float) r.theta();
        float factor = (float) r.factor();
        float lowFreqFactor = (float) r.lowFreqFactor();
        float highFreqFactor = (float) r.highFreqFactor();
        int oldContext = r.originalMaxPositions();
        // python floats (double) meeting float32 tensors: the operation runs in float32
        float lowWavelen = (float) (oldContext / r.lowFreqFactor());
        float highWavelen = (float) (oldContext / r.highFreqFactor());
        float twoPi = (float) (2 * Math.PI);
        float[] out = new float[half];
        for (int i = 0; i < half; i++) {
            float freq = 1f / (float) Math.pow(base, (float) (2 * i) / (float) dim);
            float wavelen = twoPi / freq;
            if (wavelen < highWavelen) {
                out[i] = 1f;
            } else if (wavelen > lowWavelen) {
                out[i] = factor;
            } else {
                float smooth = ((float) oldContext / wavelen - lowFreqFactor)
                        / (float) (r.highFreqFactor() - r.lowFreqFactor());
                out[i] = 1f / ((1f - smooth) / factor + smooth);
            }
        }
        return out;
    }

    private static Map<String, GgufValue> sampling(GgufVocab.Files files) {
        Map<String, GgufValue> md = new LinkedHashMap<>();
        JsonNode g;
        try {
            g = files.optionalJson("generation_config.json");
        } catch (SparkQuantException e) {
            return md; // not all models have a valid generation_config.json; the converter ignores it then
        }
        if (g == null) {
            return md;
        }
        if (g.path("top_k").canConvertToInt()) {
            md.put("general.sampling.top_k", GgufValue.i32(g.get("top_k").intValue()));
        }
        putFloat(md, "general.sampling.top_p", g.get("top_p"));
        putFloat(md, "general.sampling.min_p", g.get("min_p"));
        putFloat(md, "general.sampling.temp", g.get("temperature"));
        putFloat(md, "general.sampling.penalty_repeat",
                g.has("penalty_repeat") ? g.get("penalty_repeat") : g.get("repetition_penalty"));
        return md;
    }

    private static void putFloat(Map<String, GgufValue> md, String key, JsonNode v) {
        if (v != null && v.isNumber()) {
            md.put(key, GgufValue.f32(v.floatValue()));
        }
    }

    /**
     * gguf-py's Metadata.id_to_title, which names a converted model after its directory: words split at '-' and
     * blanks, all-lowercase words title-cased (a letter after a non-letter upper-case) unless they look like a
     * version or start with a digit.
     */
    static String title(String id) {
        StringBuilder out = new StringBuilder();
        for (String w : id.strip().replace('-', ' ').split("\\s+")) {
            if (w.isEmpty()) {
                continue;
            }
            if (out.length() > 0) {
                out.append(' ');
            }
            boolean lower = w.chars().anyMatch(Character::isLetter) && w.equals(w.toLowerCase(java.util.Locale.ROOT));
            if (!lower || w.matches("^(v\\d+(?:\\.\\d+)*|\\d.*)$")) {
                out.append(w);
                continue;
            }
            boolean afterLetter = false;
            for (int i = 0; i < w.length(); i++) {
                char c = w.charAt(i);
                out.append(Character.isLetter(c) ? (afterLetter ? Character.toLowerCase(c) : Character.toUpperCase(c))
                        : c);
                afterLetter = Character.isLetter(c);
            }
        }
        return out.toString();
    }

    static String directoryName(String directory) {
        String d = directory.endsWith("/") ? directory.substring(0, directory.length() - 1) : directory;
        int slash = d.lastIndexOf('/');
        return slash >= 0 ? d.substring(slash + 1) : d;
    }
}
