package org.sparkquant.nn;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.sparkquant.io.TensorReader;
import org.sparkquant.model.LinearModule;
import org.sparkquant.model.ModelConfig;
import org.sparkquant.model.ModelInventory;
import org.sparkquant.model.MoeConfig;

/**
 * Everything one decoder layer needs: its seven linear modules (by kind: {@code q_proj}, {@code k_proj},
 * {@code v_proj}, {@code o_proj}, {@code gate_proj}, {@code up_proj}, {@code down_proj}) and its RMSNorm weights.
 * A mixture-of-experts layer has instead of gate/up/down a router ({@code [experts, hidden]}, unquantized), every
 * expert's projections keyed {@code experts.E.gate_proj} etc. ({@link LinearModule#key()}) and optionally a shared
 * expert ({@link LinearModule#SHARED_KINDS}) with its sigmoid gate ({@code [1, hidden]}).
 * Immutable; {@link #with} swaps one module, which is how GPTQ runs a layer with the modules it has already quantized.
 * {@link #close()} releases the modules' off-heap memory at once (a layer of an 8B model holds 0.9 GB); layers made
 * with {@link #with} share modules with the layer they came from, so close only the last one and the replaced modules.
 */
public final class LayerWeights implements AutoCloseable {
    public static final List<String> KINDS =
            List.of("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj");

    private static final List<String> ATTENTION = KINDS.subList(0, 4);
    private static final List<String> MLP = KINDS.subList(4, 7);

    private final int layer;
    private final Map<String, LinearWeights> linears;
    private final LinearWeights router;
    private final LinearWeights sharedGate;
    private final float[] inputNorm;
    private final float[] postAttentionNorm;
    private final float[] qNorm;
    private final float[] kNorm;

    public LayerWeights(int layer, Map<String, LinearWeights> linears, float[] inputNorm, float[] postAttentionNorm,
            float[] qNorm, float[] kNorm) {
        this(layer, linears, null, null, inputNorm, postAttentionNorm, qNorm, kNorm);
    }

    /**
     * A layer with a router (null for a dense MLP): {@code linears} then holds the experts of every row of the router
     * and, with {@code sharedGate}, the shared expert.
     */
    public LayerWeights(int layer, Map<String, LinearWeights> linears, LinearWeights router, LinearWeights sharedGate,
            float[] inputNorm, float[] postAttentionNorm, float[] qNorm, float[] kNorm) {
        List<String> keys = keys(router == null ? 0 : router.outFeatures(), sharedGate != null);
        for (String kind : keys) {
            if (!linears.containsKey(kind)) {
                throw new IllegalArgumentException("layer " + layer + ": missing " + kind);
            }
        }
        if (linears.size() != keys.size()) {
            throw new IllegalArgumentException("layer " + layer + ": unexpected modules " + linears.keySet());
        }
        if (router == null && sharedGate != null) {
            throw new IllegalArgumentException("layer " + layer + ": a shared-expert gate without a router");
        }
        if ((qNorm == null) != (kNorm == null)) {
            throw new IllegalArgumentException("layer " + layer + ": q_norm and k_norm come together");
        }
        Map<String, LinearWeights> ordered = new LinkedHashMap<>();
        for (String kind : keys) {
            ordered.put(kind, linears.get(kind));
        }
        this.layer = layer;
        this.linears = Collections.unmodifiableMap(ordered);
        this.router = router;
        this.sharedGate = sharedGate;
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
            linears.put(module.key(), DenseLinear.read(store, module));
        }
        String p = "model.layers." + layer + ".";
        float[] qNorm = config.qkNorm() ? store.readFloats(p + "self_attn.q_norm.weight") : null;
        float[] kNorm = config.qkNorm() ? store.readFloats(p + "self_attn.k_norm.weight") : null;
        LinearWeights router = null;
        LinearWeights sharedGate = null;
        if (config.sparse(layer)) {
            MoeConfig moe = config.moe();
            router = new DenseLinear(DenseLinear.readMatrix(store, moe.routerTensor(layer), moe.experts(),
                    config.hiddenSize()), null);
            if (moe.sharedExpertGate()) {
                sharedGate = new DenseLinear(DenseLinear.readMatrix(store, moe.sharedExpertGateTensor(layer), 1,
                        config.hiddenSize()), null);
            }
        }
        return new LayerWeights(layer, linears, router, sharedGate, store.readFloats(p + "input_layernorm.weight"),
                store.readFloats(p + "post_attention_layernorm.weight"), qNorm, kNorm);
    }

    /** The module keys of a layer with {@code experts} routed experts (0: dense) and maybe a shared expert. */
    public static List<String> keys(int experts, boolean shared) {
        if (experts == 0) {
            return KINDS;
        }
        List<String> out = new java.util.ArrayList<>(ATTENTION);
        for (int e = 0; e < experts; e++) {
            for (String kind : MLP) {
                out.add("experts." + e + "." + kind);
            }
        }
        if (shared) {
            out.addAll(LinearModule.SHARED_KINDS);
        }
        return out;
    }

    /** The same layer with one module (by {@link LinearModule#key()}) replaced; shapes must match. */
    public LayerWeights with(String kind, LinearWeights replacement) {
        LinearWeights current = linear(kind);
        if (replacement.outFeatures() != current.outFeatures() || replacement.inFeatures() != current.inFeatures()) {
            throw new IllegalArgumentException("layer " + layer + " " + kind + ": replacement is ["
                    + replacement.outFeatures() + ", " + replacement.inFeatures() + "], expected ["
                    + current.outFeatures() + ", " + current.inFeatures() + "]");
        }
        Map<String, LinearWeights> copy = new LinkedHashMap<>(linears);
        copy.put(kind, replacement);
        return new LayerWeights(layer, copy, router, sharedGate, inputNorm, postAttentionNorm, qNorm, kNorm);
    }

    public int layer() {
        return layer;
    }

    public LinearWeights linear(String kind) {
        LinearWeights w = linears.get(kind);
        if (w == null) {
            throw new IllegalArgumentException("no linear module '" + kind + "' in layer " + layer + " (has "
                    + (linears.size() > 12 ? linears.size() + " modules" : linears.keySet()) + ")");
        }
        return w;
    }

    public Map<String, LinearWeights> linears() {
        return linears;
    }

    /** The router {@code [experts, hidden]} of a mixture-of-experts layer, or null for a dense MLP. */
    public LinearWeights router() {
        return router;
    }

    /** The shared expert's gate {@code [1, hidden]}, or null. */
    public LinearWeights sharedGate() {
        return sharedGate;
    }

    /** Routed experts (0 for a dense MLP). */
    public int experts() {
        return router == null ? 0 : router.outFeatures();
    }

    public boolean sharedExpert() {
        return sharedGate != null;
    }

    /** Expert {@code expert}'s projection {@code kind} (gate_proj, up_proj, down_proj). */
    public LinearWeights expert(int expert, String kind) {
        return linear("experts." + expert + "." + kind);
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
        if (router != null) {
            router.close();
        }
        if (sharedGate != null) {
            sharedGate.close();
        }
    }
}
