package org.sparkquant.model;

import java.io.Serializable;

/**
 * A linear layer of a decoder layer: {@code name} is the HF prefix (e.g. {@code model.layers.3.mlp.down_proj}), the
 * weight is {@code [outFeatures, inFeatures]}. {@code input} names the activation it reads, so that modules reading
 * the same input (q, k, v; gate, up) share one Hessian.
 */
public record LinearModule(String name, int layer, String kind, int inFeatures, int outFeatures, boolean bias,
        Input input) implements Serializable {

    /** The distinct inputs of a decoder layer, in the order GPTQ's true-sequential groups visit them. */
    public enum Input {
        ATTN_IN("self_attn.q_proj/k_proj/v_proj"),
        ATTN_OUT_IN("self_attn.o_proj"),
        MLP_IN("mlp.gate_proj/up_proj"),
        DOWN_IN("mlp.down_proj");

        private final String label;

        Input(String label) {
            this.label = label;
        }

        public String label() {
            return label;
        }
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
