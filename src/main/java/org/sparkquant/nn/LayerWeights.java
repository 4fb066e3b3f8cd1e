package org.sparkquant.nn;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.sparkquant.io.TensorReader;
import org.sparkquant.model.LinearModule;
import org.sparkquant.model.ModelConfig;
import org.sparkquant.model.ModelInventory;

/**
 * Everything one decoder layer needs: its seven linear modules (by kind: {@code q_proj}, {@code k_proj},
 * {@code v_proj}, {@code o_proj}, {@code gate_proj}, {@code up_proj}, {@code down_proj}) and its RMSNorm weights.
 * Immutable; {@link #with} swaps one module, which is how GPTQ runs a layer with the modules it has already quantized.
 * {@link #close()} releases the modules' off-heap memory at once (a layer of an 8B model holds 0.9 GB); layers made
 * with {@link #with} share modules with the layer they came from, so close only the last one and the replaced modules.
 */
public final class LayerWeights implements AutoCloseable {
    public static final List<String> KINDS =
            List.of("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj");

    private final int layer;
    private final Map<String, LinearWeights> linears;
    private final float[] inputNorm;
    private final float[] postAttentionNorm;
    private final float[] qNorm;
    private final float[] kNorm;

    public LayerWeights(int layer, Map<String, LinearWeights> linears, float[] inputNorm, float[] postAttentionNorm,
            float[] qNorm, float[] kNorm) {
        for (String kind : KINDS) {
            if (!linears.containsKey(kind)) {
                throw new IllegalArgumentException("layer " + layer + ": missing " + kind);
            }
        }
        if (linears.size() != KINDS.size()) {
            throw new IllegalArgumentException("layer " + layer + ": unexpected modules " + linears.keySet());
        }
        if ((qNorm == null) != (kNorm == null)) {
            throw new IllegalArgumentException("layer " + layer + ": q_norm and k_norm come together");
        }
        Map<String, LinearWeights> ordered = new LinkedHashMap<>();
        for (String kind : KINDS) {
            ordered.put(kind, linears.get(kind));
        }
        this.layer = layer;
        this.linears = Collections.unmodifiableMap(ordered);
        this.inputNorm = inputNorm;
        this.postAttentionNorm = postAttentionNorm;
        this.qNorm = qNorm;
        this.kNorm = kNorm;
    }

    /** Reads layer {@code layer} from a checkpoint (positional reads of exactly this layer's tensors). */
    public static LayerWeights load(TensorReader store, ModelInventory inventory, int layer) {
        ModelConfig config = inventory.config();
        if (layer < 0 || layer >= config.numLayers()) {
            throw new IllegalArgumentException("layer " + layer + " outside 0.." + (config.numLayers() - 1));
        }
        Map<String, LinearWeights> linears = new LinkedHashMap<>();
        for (LinearModule module : inventory.layer(layer)) {
            linears.put(module.kind(), DenseLinear.read(store, module));
        }
        String p = "model.layers." + layer + ".";
        float[] qNorm = config.qkNorm() ? store.readFloats(p + "self_attn.q_norm.weight") : null;
        float[] kNorm = config.qkNorm() ? store.readFloats(p + "self_attn.k_norm.weight") : null;
        return new LayerWeights(layer, linears, store.readFloats(p + "input_layernorm.weight"),
                store.readFloats(p + "post_attention_layernorm.weight"), qNorm, kNorm);
    }

    /** The same layer with one module replaced; shapes must match. */
    public LayerWeights with(String kind, LinearWeights replacement) {
        LinearWeights current = linear(kind);
        if (replacement.outFeatures() != current.outFeatures() || replacement.inFeatures() != current.inFeatures()) {
            throw new IllegalArgumentException("layer " + layer + " " + kind + ": replacement is ["
                    + replacement.outFeatures() + ", " + replacement.inFeatures() + "], expected ["
                    + current.outFeatures() + ", " + current.inFeatures() + "]");
        }
        Map<String, LinearWeights> copy = new LinkedHashMap<>(linears);
        copy.put(kind, replacement);
        return new LayerWeights(layer, copy, inputNorm, postAttentionNorm, qNorm, kNorm);
    }

    public int layer() {
        return layer;
    }

    public LinearWeights linear(String kind) {
        LinearWeights w = linears.get(kind);
        if (w == null) {
            throw new IllegalArgumentException("no linear module '" + kind + "' (expected one of " + KINDS + ")");
        }
        return w;
    }

    public Map<String, LinearWeights> linears() {
        return linears;
    }

    public float[] inputNorm() {
        return inputNorm;
    }

    public float[] postAttentionNorm() {
        return postAttentionNorm;
    }

    /** Per-head query RMSNorm weight (qwen3), or null. */
    public float[] qNorm() {
        return qNorm;
    }

    public float[] kNorm() {
        return kNorm;
    }

    /** Closes every module (see {@link LinearWeights#close()}). */
    @Override
    public void close() {
        linears.values().forEach(LinearWeights::close);
    }
}
