package org.sparkquant.model;

import java.io.Serializable;

/**
 * A linear layer of a decoder layer: {@code name} is the HF prefix (e.g. {@code model.layers.3.mlp.down_proj}), the
 * weight is {@code [outFeatures, inFeatures]}. {@code input} names the activation it reads, so that modules reading
 * the same input (q, k, v; gate, up) share one Hessian.
 * <p>
 * In a mixture-of-experts layer a routed expert's projections have {@code expert} ≥ 0 and the kinds
 * {@code gate_proj}, {@code up_proj}, {@code down_proj} whatever the hub calls them (mixtral: w1, w3, w2); an expert's
 * modules read only the tokens routed to it, so its Hessians are its own: modules share a Hessian when they have the
 * same {@link #hessianKey()} (layer, input, expert). A shared expert (qwen2_moe) has {@code expert} = -1 and the kinds
 * {@link #SHARED_KINDS}; its gate/up read every token ({@link Input#MLP_IN}, like a dense MLP), its down_proj
 * {@link Input#SHARED_DOWN_IN}.
 */
public record LinearModule(String name, int layer, String kind, int inFeatures, int outFeatures, boolean bias,
        Input input, int expert) implements Serializable {

    /** Kinds of a shared expert's projections. */
    public static final java.util.List<String> SHARED_KINDS =
            java.util.List.of("shared_expert.gate_proj", "shared_expert.up_proj", "shared_expert.down_proj");

    /** A module outside any routed expert. */
    public LinearModule(String name, int layer, String kind, int inFeatures, int outFeatures, boolean bias,
            Input input) {
        this(name, layer, kind, inFeatures, outFeatures, bias, input, -1);
    }

    /** The distinct inputs of a decoder layer, in the order GPTQ's true-sequential groups visit them. */
    public enum Input {
        ATTN_IN("self_attn.q_proj/k_proj/v_proj"),
        ATTN_OUT_IN("self_attn.o_proj"),
        MLP_IN("mlp.gate_proj/up_proj"),
        DOWN_IN("mlp.down_proj"),
        SHARED_DOWN_IN("mlp.shared_expert.down_proj");

        /** The inputs of a dense decoder layer, in order. */
        public static final java.util.List<Input> DENSE = java.util.List.of(ATTN_IN, ATTN_OUT_IN, MLP_IN, DOWN_IN);

        private final String label;

        Input(String label) {
            this.label = label;
        }

        public String label() {
            return label;
        }
    }

    public boolean routed() {
        return expert >= 0;
    }

    /** Unique within the layer: the kind, or {@code experts.E.kind} for a routed expert's projection. */
    public String key() {
        return expert >= 0 ? "experts." + expert + "." + kind : kind;
    }

    /** What modules sharing one Hessian have in common: {@code layer/INPUT}, or {@code layer/INPUT/E} for expert E. */
    public String hessianKey() {
        return hessianKey(layer, input, expert);
    }

    public static String hessianKey(int layer, Input input, int expert) {
        return layer + "/" + input + (expert >= 0 ? "/" + expert : "");
    }

    public String weight() {
        return name + ".weight";
    }

    public String biasName() {
        return name + ".bias";
    }

    public long parameters() {
        return (long) inFeatures * outFeatures + (bias ? outFeatures : 0);
    }
}
