package org.sparkquant.model;

import java.io.Serializable;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.EnumMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.sparkquant.SparkQuantException;
import org.sparkquant.io.DType;
import org.sparkquant.io.TensorInfo;
import org.sparkquant.io.TensorStore;

/**
 * Every tensor a model of {@link ModelConfig} must have, with its expected shape, checked against the safetensors
 * headers: a missing tensor or a wrong shape is reported by name before any work starts. Extra tensors in the
 * checkpoint (e.g. {@code rotary_emb.inv_freq}) are kept and copied, not interpreted.
 */
public final class ModelInventory implements Serializable {
    private static final long serialVersionUID = 1L;

    private final ModelConfig config;
    private final List<List<LinearModule>> layers;
    private final Map<String, long[]> expected;
    private final Map<String, TensorInfo> tensors;
    private final Map<String, String> shards;

    private ModelInventory(ModelConfig config, List<List<LinearModule>> layers, Map<String, long[]> expected,
            Map<String, TensorInfo> tensors, Map<String, String> shards) {
        this.config = config;
        this.layers = layers;
        this.expected = expected;
        this.tensors = tensors;
        this.shards = shards;
    }

    /** The inventory of a config alone (no checkpoint), e.g. for planning. */
    public static ModelInventory of(ModelConfig config) {
        List<List<LinearModule>> layers = new ArrayList<>();
        Map<String, long[]> expected = new LinkedHashMap<>();
        int h = config.hiddenSize();
        expected.put("model.embed_tokens.weight", new long[] {config.vocabSize(), h});
        for (int i = 0; i < config.numLayers(); i++) {
            String p = "model.layers." + i + ".";
            List<LinearModule> modules = new ArrayList<>(List.of(
                    new LinearModule(p + "self_attn.q_proj", i, "q_proj", h, config.qDim(), config.attentionBias(),
                            LinearModule.Input.ATTN_IN),
                    new LinearModule(p + "self_attn.k_proj", i, "k_proj", h, config.kvDim(), config.attentionBias(),
                            LinearModule.Input.ATTN_IN),
                    new LinearModule(p + "self_attn.v_proj", i, "v_proj", h, config.kvDim(), config.attentionBias(),
                            LinearModule.Input.ATTN_IN),
                    new LinearModule(p + "self_attn.o_proj", i, "o_proj", config.qDim(), h,
                            config.attentionOutputBias(), LinearModule.Input.ATTN_OUT_IN)));
            MoeConfig moe = config.moe();
            if (config.sparse(i)) {
                int w = moe.expertIntermediateSize();
                for (int e = 0; e < moe.experts(); e++) {
                    modules.add(new LinearModule(moe.expertModule(i, e, "gate_proj"), i, "gate_proj", h, w, false,
                            LinearModule.Input.MLP_IN, e));
                    modules.add(new LinearModule(moe.expertModule(i, e, "up_proj"), i, "up_proj", h, w, false,
                            LinearModule.Input.MLP_IN, e));
                    modules.add(new LinearModule(moe.expertModule(i, e, "down_proj"), i, "down_proj", w, h, false,
                            LinearModule.Input.DOWN_IN, e));
                }
                if (moe.sharedExpert()) {
                    int s = moe.sharedIntermediateSize();
                    String sp = moe.blockPrefix(i);
                    modules.add(new LinearModule(sp + "shared_expert.gate_proj", i, LinearModule.SHARED_KINDS.get(0), h,
                            s, false, LinearModule.Input.MLP_IN));
                    modules.add(new LinearModule(sp + "shared_expert.up_proj", i, LinearModule.SHARED_KINDS.get(1), h,
                            s, false, LinearModule.Input.MLP_IN));
                    modules.add(new LinearModule(sp + "shared_expert.down_proj", i, LinearModule.SHARED_KINDS.get(2),
                            s, h, false, LinearModule.Input.SHARED_DOWN_IN));
                }
            } else {
                modules.add(new LinearModule(p + "mlp.gate_proj", i, "gate_proj", h, config.intermediateSize(),
                        config.mlpBias(), LinearModule.Input.MLP_IN));
                modules.add(new LinearModule(p + "mlp.up_proj", i, "up_proj", h, config.intermediateSize(),
                        config.mlpBias(), LinearModule.Input.MLP_IN));
                modules.add(new LinearModule(p + "mlp.down_proj", i, "down_proj", config.intermediateSize(), h,
                        config.mlpBias(), LinearModule.Input.DOWN_IN));
            }
            modules = List.copyOf(modules);
            layers.add(modules);
            expected.put(p + "input_layernorm.weight", new long[] {h});
            for (LinearModule m : modules) {
                expected.put(m.weight(), new long[] {m.outFeatures(), m.inFeatures()});
                if (m.bias()) {
                    expected.put(m.biasName(), new long[] {m.outFeatures()});
                }
                if (m.kind().equals("v_proj")) {
                    if (config.qkNorm()) {
                        expected.put(p + "self_attn.q_norm.weight", new long[] {config.headDim()});
                        expected.put(p + "self_attn.k_norm.weight", new long[] {config.headDim()});
                    }
                }
            }
            expected.put(p + "post_attention_layernorm.weight", new long[] {h});
            if (config.sparse(i)) {
                expected.put(moe.routerTensor(i), new long[] {moe.experts(), h});
                if (moe.sharedExpertGate()) {
                    expected.put(moe.sharedExpertGateTensor(i), new long[] {1, h});
                }
            }
        }
        expected.put("model.norm.weight", new long[] {h});
        if (!config.tieWordEmbeddings()) {
            expected.put("lm_head.weight", new long[] {config.vocabSize(), h});
        }
        return new ModelInventory(config, Collections.unmodifiableList(layers), Collections.unmodifiableMap(expected),
                Map.of(), Map.of());
    }

    /** The inventory checked against a checkpoint's headers. */
    public static ModelInventory of(ModelConfig config, TensorStore store) {
        ModelInventory plan = of(config);
        Map<String, TensorInfo> tensors = new LinkedHashMap<>();
        for (Map.Entry<String, long[]> e : plan.expected.entrySet()) {
            String name = e.getKey();
            if (!store.contains(name) && config.moe() != null && name.contains(".experts.")) {
                String fused = name.substring(0, name.indexOf(".experts.")) + ".experts.gate_up_proj";
                if (store.contains(fused)) {
                    throw SparkQuantException.badInput(store.directory() + ": '" + fused + "' is a fused 3-D expert "
                            + "tensor (transformers' in-memory layout); expected one 2-D tensor per expert and "
                            + "projection, e.g. '" + name + "', as save_pretrained writes them");
                }
            }
            if (!store.contains(name)) {
                throw SparkQuantException.badInput(store.directory() + ": missing tensor '" + name + "' (expected shape "
                        + Arrays.toString(e.getValue()) + " for " + config.modelType() + ")");
            }
            TensorInfo info = store.info(name);
            if (!Arrays.equals(info.shape(), e.getValue())) {
                throw SparkQuantException.badInput(store.directory() + ": tensor '" + name + "' has shape "
                        + info.shapeString() + ", expected " + Arrays.toString(e.getValue()) + " from config.json");
            }
            if (!info.dtype().isFloating()) {
                throw SparkQuantException.badInput(store.directory() + ": tensor '" + name + "' has dtype "
                        + info.dtype() + ", expected a floating-point type");
            }
            tensors.put(name, info);
        }
        Map<String, String> shards = new LinkedHashMap<>();
        for (String name : store.names()) {
            tensors.putIfAbsent(name, store.info(name));
            shards.put(name, store.shardOf(name));
        }
        return new ModelInventory(config, plan.layers, plan.expected, Collections.unmodifiableMap(tensors),
                Collections.unmodifiableMap(shards));
    }

    public ModelConfig config() {
        return config;
    }

    /**
     * The linear modules of each decoder layer: q, k, v, o, then gate, up, down of a dense MLP, or of a sparse layer
     * every routed expert's gate, up, down (expert 0 first) and the shared expert's (see {@link LinearModule}).
     */
    public List<List<LinearModule>> layers() {
        return layers;
    }

    public List<LinearModule> layer(int i) {
        return layers.get(i);
    }

    /** Every tensor of the checkpoint (expected ones first), empty for a config-only inventory. */
    public Map<String, TensorInfo> tensors() {
        return tensors;
    }

    /** The shard file holding a tensor, or null for a config-only inventory. */
    public String shardOf(String tensor) {
        return shards.get(tensor);
    }

    /** The shape the architecture requires of a tensor, or null when it requires no tensor of that name. */
    public long[] expectedShape(String tensor) {
        long[] shape = expected.get(tensor);
        return shape == null ? null : shape.clone();
    }

    /** Names of the tensors the architecture requires, in a stable order. */
    public List<String> requiredTensors() {
        return List.copyOf(expected.keySet());
    }

    /**
     * Width of each distinct module input of a layer: what a Hessian is sized by (the widest over the layers, where an
     * MoE model's dense and sparse layers differ).
     */
    public Map<LinearModule.Input, Integer> inputWidths() {
        Map<LinearModule.Input, Integer> widths = new EnumMap<>(LinearModule.Input.class);
        for (List<LinearModule> layer : layers) {
            for (LinearModule m : layer) {
                widths.merge(m.input(), m.inFeatures(), Math::max);
            }
        }
        return widths;
    }

    /** Whether any layer routes tokens to experts. */
    public boolean moe() {
        return config.moe() != null && layers.stream().anyMatch(l -> l.stream().anyMatch(LinearModule::routed));
    }

    /** The routed experts of layer {@code layer} (0 for a dense layer). */
    public int experts(int layer) {
        return config.sparse(layer) ? config.moe().experts() : 0;
    }

    /** Expert {@code expert}'s gate, up and down projections in layer {@code layer}. */
    public List<LinearModule> expertModules(int layer, int expert) {
        return layers.get(layer).stream().filter(m -> m.expert() == expert).toList();
    }

    /**
     * The tensors of a sparse layer that stay unquantized: the router ({@code gate.weight}) and the shared expert's
     * gate; empty for a dense layer.
     */
    public List<String> unquantizedLayerTensors(int layer) {
        if (!config.sparse(layer)) {
            return List.of();
        }
        MoeConfig moe = config.moe();
        return moe.sharedExpertGate() ? List.of(moe.routerTensor(layer), moe.sharedExpertGateTensor(layer))
                : List.of(moe.routerTensor(layer));
    }

    public long parameterCount() {
        long n = 0;
        if (tensors.isEmpty()) {
            for (long[] shape : expected.values()) {
                n += Arrays.stream(shape).reduce(1, (a, b) -> a * b);
            }
            return n;
        }
        for (TensorInfo t : tensors.values()) {
            n += t.elements();
        }
        return n;
    }

    public Map<DType, Long> bytesByDtype() {
        Map<DType, Long> bytes = new EnumMap<>(DType.class);
        for (TensorInfo t : tensors.values()) {
            bytes.merge(t.dtype(), t.byteSize(), Long::sum);
        }
        return bytes;
    }

    /** Parameters of one decoder layer (linear weights, biases, norms). */
    public long layerParameters(int i) {
        long n = 0;
        for (LinearModule m : layers.get(i)) {
            n += m.parameters();
        }
        for (String t : unquantizedLayerTensors(i)) {
            n += Arrays.stream(expected.get(t)).reduce(1, (a, b) -> a * b);
        }
        return n + 2L * config.hiddenSize() + (config.qkNorm() ? 2L * config.headDim() : 0);
    }
}
