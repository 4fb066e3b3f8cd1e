package org.sparkquant.model;

import java.io.Serializable;
import java.util.ArrayList;
import java.util.List;
import java.util.TreeSet;

import com.fasterxml.jackson.databind.JsonNode;
import org.sparkquant.SparkQuantException;

/**
 * The mixture-of-experts part of a config: {@code experts} routed experts of width {@code expertIntermediateSize},
 * {@code topK} of them per token chosen by a router ({@link Scoring}), optionally a shared expert every token runs
 * (qwen2_moe: width {@code sharedIntermediateSize}, scaled by a sigmoid gate), and the layers whose MLP stays dense.
 * Tensor names follow the hub's layout of the architecture: {@code block_sparse_moe.experts.E.w1/w3/w2} for mixtral,
 * {@code mlp.experts.E.gate_proj/up_proj/down_proj} for the qwen MoE models.
 * <p>
 * Other routers (DeepSeek-V3's grouped sigmoid scores with a correction bias and a scaling factor) and several shared
 * experts without a gate are what {@link Scoring}, {@code sharedIntermediateSize} and {@code sharedExpertGate} leave
 * room for; they are not parsed yet.
 */
public record MoeConfig(
        Scoring scoring,
        int experts,
        int topK,
        int expertIntermediateSize,
        boolean normTopkProb,
        int sharedIntermediateSize,
        boolean sharedExpertGate,
        List<Integer> denseLayers,
        String blockName) implements Serializable {

    /** How router logits become the top-k experts and their weights. */
    public enum Scoring {
        /**
         * softmax over all experts in fp32, the k largest probabilities (ties: lower index first, as torch.topk on
         * CPU), divided by their sum when {@code normTopkProb} (mixtral always).
         */
        SOFTMAX_TOPK
    }

    public MoeConfig {
        denseLayers = List.copyOf(denseLayers);
    }

    /** The MoE part of a config of {@code type}, or null for a dense architecture. */
    static MoeConfig parse(String type, JsonNode root, String source) {
        ModelConfig.Reader r = new ModelConfig.Reader(root, source);
        int layers = r.positiveInt("num_hidden_layers");
        switch (type) {
            case "mixtral": {
                int experts = r.present("num_local_experts") ? r.positiveInt("num_local_experts") : 8;
                int topK = r.present("num_experts_per_tok") ? r.positiveInt("num_experts_per_tok") : 2;
                return checked(new MoeConfig(Scoring.SOFTMAX_TOPK, experts, topK, r.positiveInt("intermediate_size"),
                        true, 0, false, List.of(), "block_sparse_moe"), source);
            }
            case "qwen2_moe":
            case "qwen3_moe": {
                boolean qwen2 = type.equals("qwen2_moe");
                // transformers' defaults (Qwen2MoeConfig / Qwen3MoeConfig) for absent keys
                String expertsKey = r.present("num_experts") ? "num_experts" : "num_local_experts";
                int experts = r.present(expertsKey) ? r.positiveInt(expertsKey) : qwen2 ? 60 : 128;
                int topK = r.present("num_experts_per_tok") ? r.positiveInt("num_experts_per_tok") : qwen2 ? 4 : 8;
                int width = r.present("moe_intermediate_size") ? r.positiveInt("moe_intermediate_size")
                        : qwen2 ? 1408 : 768;
                int shared = 0;
                if (qwen2) {
                    shared = r.present("shared_expert_intermediate_size")
                            ? r.positiveInt("shared_expert_intermediate_size") : 5632;
                }
                int step = r.present("decoder_sparse_step") ? r.positiveInt("decoder_sparse_step") : 1;
                TreeSet<Integer> only = new TreeSet<>();
                JsonNode list = root.get("mlp_only_layers");
                if (list != null && !list.isNull()) {
                    if (!list.isArray()) {
                        throw SparkQuantException.badInput(source + ": mlp_only_layers must be a list of layer "
                                + "indices, got " + list);
                    }
                    for (JsonNode v : list) {
                        if (!v.isIntegralNumber() || !v.canConvertToInt() || v.intValue() < 0) {
                            throw SparkQuantException.badInput(source + ": mlp_only_layers holds " + v
                                    + ", expected layer indices");
                        }
                        only.add(v.intValue());
                    }
                }
                List<Integer> dense = new ArrayList<>();
                for (int i = 0; i < layers; i++) {
                    // Qwen2MoeDecoderLayer: sparse unless listed in mlp_only_layers or off the sparse step
                    if (only.contains(i) || (i + 1) % step != 0) {
                        dense.add(i);
                    }
                }
                return checked(new MoeConfig(Scoring.SOFTMAX_TOPK, experts, topK, width,
                        r.bool("norm_topk_prob", false), shared, qwen2, dense, "mlp"), source);
            }
            default:
                return null;
        }
    }

    private static MoeConfig checked(MoeConfig moe, String source) {
        if (moe.topK > moe.experts) {
            throw SparkQuantException.badInput(source + ": num_experts_per_tok " + moe.topK + " exceeds the "
                    + moe.experts + " experts");
        }
        return moe;
    }

    /** Whether layer {@code layer} routes its tokens to experts (false for the dense layers). */
    public boolean sparse(int layer) {
        return !denseLayers.contains(layer);
    }

    public boolean sharedExpert() {
        return sharedIntermediateSize > 0;
    }

    /** Tensor-name prefix of a sparse layer's MoE block, e.g. {@code model.layers.3.mlp.}. */
    public String blockPrefix(int layer) {
        return "model.layers." + layer + "." + blockName + ".";
    }

    /** The router's weight {@code [experts, hidden]}: never quantized. */
    public String routerTensor(int layer) {
        return blockPrefix(layer) + "gate.weight";
    }

    /** The shared expert's sigmoid gate {@code [1, hidden]} (qwen2_moe), never quantized; null without one. */
    public String sharedExpertGateTensor(int layer) {
        return sharedExpertGate ? blockPrefix(layer) + "shared_expert_gate.weight" : null;
    }

    /**
     * The HF module name of expert {@code expert}'s projection {@code kind} (gate_proj, up_proj, down_proj): mixtral
     * calls them w1, w3, w2.
     */
    public String expertModule(int layer, int expert, String kind) {
        String leaf = blockName.equals("block_sparse_moe") ? switch (kind) {
            case "gate_proj" -> "w1";
            case "up_proj" -> "w3";
            case "down_proj" -> "w2";
            default -> throw new IllegalArgumentException("no expert projection " + kind);
        } : kind;
        return blockPrefix(layer) + "experts." + expert + "." + leaf;
    }
}
