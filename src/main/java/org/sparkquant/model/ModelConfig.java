package org.sparkquant.model;

import java.io.Serializable;
import java.util.List;
import java.util.Locale;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.sparkquant.SparkQuantException;
import org.sparkquant.io.Storage;

/**
 * What the project needs of a Hugging Face {@code config.json}: the decoder-only llama family (llama, mistral, qwen2,
 * qwen3) and its mixture-of-experts relatives (mixtral, qwen2_moe, qwen3_moe). Architectural differences are flags
 * rather than subclasses: qwen2 has q/k/v bias, qwen3 per-head q/k RMSNorm, mistral and qwen2 an optional sliding
 * window; an MoE model has a {@link MoeConfig} ({@link #moe()}, null for a dense model), and
 * {@link #intermediateSize()} is then the width of its dense MLP layers (mixtral has none).
 */
public record ModelConfig(
        String modelType,
        int hiddenSize,
        int intermediateSize,
        int numLayers,
        int numHeads,
        int numKvHeads,
        int headDim,
        int vocabSize,
        double rmsNormEps,
        RopeConfig rope,
        boolean tieWordEmbeddings,
        boolean attentionBias,
        boolean attentionOutputBias,
        boolean mlpBias,
        boolean qkNorm,
        int slidingWindow,
        int maxPositionEmbeddings,
        int bosTokenId,
        int eosTokenId,
        String dtype,
        MoeConfig moe) implements Serializable {

    public static final List<String> SUPPORTED =
            List.of("llama", "mistral", "qwen2", "qwen3", "mixtral", "qwen2_moe", "qwen3_moe");

    /** A dense model's config (no experts). */
    public ModelConfig(String modelType, int hiddenSize, int intermediateSize, int numLayers, int numHeads,
            int numKvHeads, int headDim, int vocabSize, double rmsNormEps, RopeConfig rope, boolean tieWordEmbeddings,
            boolean attentionBias, boolean attentionOutputBias, boolean mlpBias, boolean qkNorm, int slidingWindow,
            int maxPositionEmbeddings, int bosTokenId, int eosTokenId, String dtype) {
        this(modelType, hiddenSize, intermediateSize, numLayers, numHeads, numKvHeads, headDim, vocabSize, rmsNormEps,
                rope, tieWordEmbeddings, attentionBias, attentionOutputBias, mlpBias, qkNorm, slidingWindow,
                maxPositionEmbeddings, bosTokenId, eosTokenId, dtype, null);
    }

    /** transformers' MistralConfig.sliding_window when config.json does not set it. */
    static final int MISTRAL_DEFAULT_WINDOW = 4096;

    public static ModelConfig load(Storage storage, String modelDirectory) {
        String uri = Storage.resolve(modelDirectory, "config.json");
        if (!storage.exists(uri)) {
            throw SparkQuantException.badInput(uri + ": no such file (is " + modelDirectory
                    + " a Hugging Face model directory?)");
        }
        return parse(storage.readString(uri), uri);
    }

    public static ModelConfig parse(String json, String source) {
        JsonNode root;
        try {
            root = new ObjectMapper().readTree(json);
        } catch (JsonProcessingException e) {
            throw SparkQuantException.badInput(source + ": not valid JSON (" + e.getOriginalMessage() + ")");
        }
        if (root == null || !root.isObject()) {
            throw SparkQuantException.badInput(source + ": not a JSON object");
        }
        Reader r = new Reader(root, source);
        String type = r.string("model_type", null);
        if (type == null) {
            throw SparkQuantException.badInput(source + ": missing model_type");
        }
        if (!SUPPORTED.contains(type)) {
            throw SparkQuantException.badInput(source + ": model_type '" + type + "' is not supported (supported: "
                    + String.join(", ", SUPPORTED) + ")");
        }
        String act = r.string("hidden_act", "silu");
        if (!act.equals("silu")) {
            throw SparkQuantException.badInput(source + ": hidden_act '" + act + "' is not supported (only silu)");
        }
        int hidden = r.positiveInt("hidden_size");
        int heads = r.positiveInt("num_attention_heads");
        // transformers reads an explicit null like an absent key: no grouping, head_dim = hidden / heads
        int kvHeads = r.present("num_key_value_heads") ? r.positiveInt("num_key_value_heads") : heads;
        if (heads % kvHeads != 0) {
            throw SparkQuantException.badInput(source + ": num_attention_heads " + heads
                    + " is not a multiple of num_key_value_heads " + kvHeads);
        }
        int headDim = r.present("head_dim") ? r.positiveInt("head_dim") : hidden / heads;
        if (!r.present("head_dim") && hidden % heads != 0) {
            throw SparkQuantException.badInput(source + ": hidden_size " + hidden
                    + " is not a multiple of num_attention_heads " + heads);
        }
        if (headDim % 2 != 0) {
            throw SparkQuantException.badInput(source + ": head_dim " + headDim + " must be even for RoPE");
        }
        boolean qwen2 = type.equals("qwen2");
        boolean qwen2Moe = type.equals("qwen2_moe");
        boolean qwen3 = type.equals("qwen3") || type.equals("qwen3_moe");
        // qwen2 has bias on q, k, v but not on o_proj (qwen2_moe: qkv_bias, default on); llama's attention_bias
        // covers all four
        boolean attentionBias = qwen2 || (qwen2Moe ? r.bool("qkv_bias", true) : r.bool("attention_bias", false));
        boolean outputBias = !qwen2 && !qwen2Moe && r.bool("attention_bias", false);
        MoeConfig moe = MoeConfig.parse(type, root, source);
        int window = 0;
        if (type.equals("mixtral")) {
            // MixtralConfig.sliding_window defaults to none
            if (r.present("sliding_window")) {
                window = r.positiveInt("sliding_window");
            }
        } else if (type.equals("mistral")) {
            // transformers' MistralConfig defaults a missing sliding_window to 4096; an explicit null means none
            if (!r.has("sliding_window")) {
                window = MISTRAL_DEFAULT_WINDOW;
            } else if (!root.get("sliding_window").isNull()) {
                window = r.positiveInt("sliding_window");
            }
        } else if ((qwen2 || qwen2Moe || qwen3) && r.bool("use_sliding_window", false)) {
            throw SparkQuantException.badInput(source + ": use_sliding_window=true is not supported for " + type);
        }
        return new ModelConfig(
                type,
                hidden,
                moe != null && moe.denseLayers().isEmpty() && !r.present("intermediate_size")
                        ? moe.expertIntermediateSize() : r.positiveInt("intermediate_size"),
                r.positiveInt("num_hidden_layers"),
                heads,
                kvHeads,
                headDim,
                r.positiveInt("vocab_size"),
                r.number("rms_norm_eps", 1e-6),
                rope(r, root, source),
                r.bool("tie_word_embeddings", false),
                attentionBias,
                outputBias,
                r.bool("mlp_bias", false),
                qwen3,
                window,
                r.has("max_position_embeddings") ? r.positiveInt("max_position_embeddings") : 2048,
                r.intOr("bos_token_id", -1),
                r.intOr("eos_token_id", -1),
                r.string("torch_dtype", r.string("dtype", "float32")),
                moe);
    }

    /** Whether layer {@code layer}'s MLP is a mixture of experts (false for every layer of a dense model). */
    public boolean sparse(int layer) {
        return moe != null && moe.sparse(layer);
    }

    private static RopeConfig rope(Reader r, JsonNode root, String source) {
        // transformers ≥ 4.56 writes rope_parameters {rope_theta, rope_type, ...}; older files rope_theta + rope_scaling
        JsonNode params = root.get("rope_parameters");
        JsonNode scaling = params != null && params.isObject() ? params : root.get("rope_scaling");
        double theta = params != null && params.isObject() && params.has("rope_theta")
                ? new Reader(params, source).number("rope_theta", 10000.0)
                : r.number("rope_theta", 10000.0);
        if (!(theta > 0)) {
            throw SparkQuantException.badInput(source + ": rope_theta must be positive");
        }
        if (scaling == null || scaling.isNull()) {
            return RopeConfig.plain(theta);
        }
        if (!scaling.isObject()) {
            throw SparkQuantException.badInput(source + ": rope_scaling must be an object");
        }
        JsonNode typeNode = scaling.has("rope_type") ? scaling.get("rope_type") : scaling.get("type");
        String type = typeNode == null ? "default" : typeNode.asText().toLowerCase(Locale.ROOT);
        Reader s = new Reader(scaling, source + " rope scaling");
        return switch (type) {
            case "default" -> RopeConfig.plain(theta);
            case "linear" -> new RopeConfig("linear", theta, s.number("factor", 1.0), 0, 0, 0);
            case "llama3" -> new RopeConfig("llama3", theta, s.number("factor", 8.0), s.number("low_freq_factor", 1.0),
                    s.number("high_freq_factor", 4.0), s.positiveInt("original_max_position_embeddings"));
            default -> throw SparkQuantException.badInput(source + ": rope type '" + type
                    + "' is not supported (supported: default, linear, llama3)");
        };
    }

    /** Query heads per key/value head. */
    public int groupSize() {
        return numHeads / numKvHeads;
    }

    public int qDim() {
        return numHeads * headDim;
    }

    public int kvDim() {
        return numKvHeads * headDim;
    }

    record Reader(JsonNode node, String source) {
        boolean has(String key) {
            return node.has(key);
        }

        boolean present(String key) {
            return node.has(key) && !node.get(key).isNull();
        }

        int positiveInt(String key) {
            JsonNode v = node.get(key);
            if (v == null || v.isNull()) {
                throw SparkQuantException.badInput(source + ": missing " + key);
            }
            if (!v.isIntegralNumber() || !v.canConvertToInt() || v.intValue() <= 0) {
                throw SparkQuantException.badInput(source + ": " + key + " must be a positive integer, got " + v);
            }
            return v.intValue();
        }

        int intOr(String key, int fallback) {
            JsonNode v = node.get(key);
            if (v != null && v.isArray() && v.size() > 0) {
                v = v.get(0); // eos_token_id may be a list; the first is the primary one
            }
            return v != null && v.isIntegralNumber() && v.canConvertToInt() ? v.intValue() : fallback;
        }

        double number(String key, double fallback) {
            JsonNode v = node.get(key);
            if (v == null || v.isNull()) {
                return fallback;
            }
            if (!v.isNumber()) {
                throw SparkQuantException.badInput(source + ": " + key + " must be a number, got " + v);
            }
            return v.doubleValue();
        }

        boolean bool(String key, boolean fallback) {
            JsonNode v = node.get(key);
            if (v == null || v.isNull()) {
                return fallback;
            }
            if (!v.isBoolean()) {
                throw SparkQuantException.badInput(source + ": " + key + " must be true or false, got " + v);
            }
            return v.booleanValue();
        }

        String string(String key, String fallback) {
            JsonNode v = node.get(key);
            return v == null || v.isNull() ? fallback : v.asText();
        }
    }
}
