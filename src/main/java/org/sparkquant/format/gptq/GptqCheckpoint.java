package org.sparkquant.format.gptq;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.sparkquant.SparkQuantException;
import org.sparkquant.io.DType;
import org.sparkquant.io.Storage;
import org.sparkquant.io.TensorInfo;
import org.sparkquant.io.TensorStore;
import org.sparkquant.model.LinearModule;
import org.sparkquant.model.ModelConfig;
import org.sparkquant.model.ModelInventory;
import org.sparkquant.model.MoeConfig;
import org.sparkquant.nn.DenseLinear;
import org.sparkquant.nn.LayerWeights;
import org.sparkquant.nn.LinearWeights;

/**
 * A GPTQ checkpoint opened for evaluation: written by this project, AutoGPTQ or GPTQModel, v1 ({@code gptq}) or v2
 * ({@code gptq_v2}) zero points. The quantization config is looked up as AutoGPTQ and GPTQModel do:
 * {@code quantize_config.json}, then {@code quant_config.json}, then {@code config.json["quantization_config"]}.
 *
 * <p>Opening reads headers only and checks every tensor the architecture needs: per quantized module the dtypes and
 * shapes of {@code qweight}, {@code qzeros}, {@code scales}, {@code g_idx} against config.json and the module's bit
 * width ({@code dynamic} overrides and exclusions honoured); per dense tensor its shape. {@link #quantized} then reads
 * only that module's tensors with positional reads and checks their contents (g_idx range, zero points of symmetric
 * quantization, finite scales), so a forward pass can evaluate the model layer by layer. Every problem is a one-line
 * {@link SparkQuantException} naming the file and tensor.
 */
public final class GptqCheckpoint implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(GptqCheckpoint.class);

    /** Where the quantization config is looked for, in order. */
    public static final List<String> CONFIG_FILES = List.of("quantize_config.json", "quant_config.json", "config.json");

    private final String directory;
    private final ModelConfig config;
    private final GptqConfig quantization;
    private final String quantizationSource;
    private final TensorStore store;
    private final Map<String, LinearModule> modules;
    private final Map<String, GptqConfig.ModuleParams> quantized;
    private final List<String> warnings;

    private GptqCheckpoint(String directory, ModelConfig config, GptqConfig quantization, String quantizationSource,
            TensorStore store, Map<String, LinearModule> modules, Map<String, GptqConfig.ModuleParams> quantized,
            List<String> warnings) {
        this.directory = directory;
        this.config = config;
        this.quantization = quantization;
        this.quantizationSource = quantizationSource;
        this.store = store;
        this.modules = modules;
        this.quantized = quantized;
        this.warnings = warnings;
    }

    public static GptqCheckpoint open(Storage storage, String directory) {
        ModelConfig config = ModelConfig.load(storage, directory);
        List<String> warnings = Collections.synchronizedList(new ArrayList<>());
        Located located = locateConfig(storage, directory, warnings);
        TensorStore store = TensorStore.open(storage, directory);
        try {
            GptqConfig q = located.config();
            Map<String, LinearModule> modules = new LinkedHashMap<>();
            for (List<LinearModule> layer : ModelInventory.of(config).layers()) {
                for (LinearModule m : layer) {
                    modules.put(m.name(), m);
                }
            }
            boolean lmHead = q.lmHead() && (!config.tieWordEmbeddings() || store.contains("lm_head.qweight"));
            if (lmHead) {
                modules.put("lm_head", new LinearModule("lm_head", config.numLayers(), "lm_head", config.hiddenSize(),
                        config.vocabSize(), false, null));
            }
            Map<String, GptqConfig.ModuleParams> quantized = new LinkedHashMap<>();
            for (LinearModule m : modules.values()) {
                Optional<GptqConfig.ModuleParams> p = m.name().equals("lm_head") ? Optional.of(q.params())
                        : q.paramsFor(m.name(), located.source());
                p.ifPresent(params -> quantized.put(m.name(), params));
            }
            GptqCheckpoint checkpoint = new GptqCheckpoint(directory, config, q, located.source(), store,
                    Collections.unmodifiableMap(modules), Collections.unmodifiableMap(quantized), warnings);
            checkpoint.validateHeaders();
            return checkpoint;
        } catch (RuntimeException e) {
            store.close();
            throw e;
        }
    }

    private record Located(GptqConfig config, String source) {}

    private static Located locateConfig(Storage storage, String directory, List<String> warnings) {
        ObjectMapper json = new ObjectMapper();
        for (String file : CONFIG_FILES) {
            String uri = Storage.resolve(directory, file);
            if (!storage.exists(uri)) {
                continue;
            }
            JsonNode root;
            try {
                root = json.readTree(storage.readString(uri));
            } catch (JsonProcessingException e) {
                throw SparkQuantException.badInput(uri + ": not valid JSON (" + e.getOriginalMessage() + ")");
            }
            String source = uri;
            if (file.equals("config.json")) {
                root = root == null ? null : root.get("quantization_config");
                if (root == null || root.isNull()) {
                    break;
                }
                source = uri + " quantization_config";
            }
            if (root != null && root.isObject() && !root.has("sym")) {
                warnings.add(source + ": no 'sym' key; assuming sym=true as AutoGPTQ and GPTQModel do");
                LOG.warn(warnings.get(warnings.size() - 1));
            }
            return new Located(GptqConfig.parse(root, source), source);
        }
        throw SparkQuantException.badInput(directory + ": not a GPTQ checkpoint (no quantize_config.json, "
                + "quant_config.json or quantization_config in config.json)");
    }

    private void validateHeaders() {
        List<String> required = new ArrayList<>(ModelInventory.of(config).requiredTensors());
        for (LinearModule m : modules.values()) {
            if (quantized.containsKey(m.name())) {
                required.remove(m.weight());
                validateQuantized(m, quantized.get(m.name()));
                if (store.contains(m.weight())) {
                    throw bad(m.weight(), "module " + m.name() + " is quantized but also has a dense weight");
                }
            } else if (store.contains(m.name() + ".qweight")) {
                throw bad(m.name() + ".qweight", "module " + m.name() + " is excluded from quantization by "
                        + quantizationSource + " but has a qweight");
            }
        }
        for (String name : required) {
            if (!store.contains(name)) {
                String module = name.endsWith(".weight") ? name.substring(0, name.length() - ".weight".length()) : name;
                String why = modules.containsKey(module) ? " (module " + module + " is not quantized per "
                        + quantizationSource + ")" : "";
                throw SparkQuantException.badInput(directory + ": missing tensor '" + name + "'" + why);
            }
            TensorInfo info = store.info(name);
            long[] expected = expectedShape(name);
            if (expected != null && !Arrays.equals(info.shape(), expected)) {
                throw bad(name, "has shape " + info.shapeString() + ", expected " + Arrays.toString(expected)
                        + " from config.json");
            }
            if (!info.dtype().isFloating()) {
                throw bad(name, "has dtype " + info.dtype() + ", expected a floating-point type");
            }
        }
    }

    private long[] expectedShape(String tensor) {
        for (LinearModule m : modules.values()) {
            if (m.weight().equals(tensor)) {
                return new long[] {m.outFeatures(), m.inFeatures()};
            }
            if (m.biasName().equals(tensor)) {
                return new long[] {m.outFeatures()};
            }
        }
        int h = config.hiddenSize();
        if (tensor.endsWith("embed_tokens.weight") || tensor.equals("lm_head.weight")) {
            return new long[] {config.vocabSize(), h};
        }
        if (tensor.endsWith("q_norm.weight") || tensor.endsWith("k_norm.weight")) {
            return new long[] {config.headDim()};
        }
        if (tensor.endsWith("norm.weight")) {
            return new long[] {h};
        }
        return null;
    }

    private void validateQuantized(LinearModule m, GptqConfig.ModuleParams p) {
        int in = m.inFeatures();
        int out = m.outFeatures();
        Optional<String> unpackable = GptqPacking.unpackableReason(in, out, p.bits());
        if (unpackable.isPresent()) {
            throw SparkQuantException.badInput(directory + ": module " + m.name() + " is declared " + p.bits()
                    + "-bit by " + quantizationSource + " but " + unpackable.get());
        }
        int groups = p.groups(in);
        String why = " (in_features " + in + ", out_features " + out + ", " + p.bits() + " bits, group_size "
                + p.groupSize() + ")";
        expect(m, "qweight", DType.I32, new long[] {GptqPacking.words(in, p.bits()), out}, why);
        expect(m, "qzeros", DType.I32, new long[] {groups, GptqPacking.words(out, p.bits())}, why);
        expect(m, "scales", null, new long[] {groups, out}, why);
        expect(m, "g_idx", DType.I32, new long[] {in}, why);
        if (m.bias()) {
            expect(m, "bias", null, new long[] {out}, why);
        }
    }

    private void expect(LinearModule m, String suffix, DType dtype, long[] shape, String why) {
        String name = m.name() + "." + suffix;
        if (!store.contains(name)) {
            throw SparkQuantException.badInput(directory + ": missing tensor '" + name + "' of quantized module "
                    + m.name() + why);
        }
        TensorInfo info = store.info(name);
        if (dtype != null && info.dtype() != dtype) {
            throw bad(name, "has dtype " + info.dtype() + ", expected " + dtype);
        }
        if (dtype == null && !info.dtype().isFloating()) {
            throw bad(name, "has dtype " + info.dtype() + ", expected a floating-point type");
        }
        if (!Arrays.equals(info.shape(), shape)) {
            throw bad(name, "has shape " + info.shapeString() + ", expected " + Arrays.toString(shape) + why);
        }
    }

    public String directory() {
        return directory;
    }

    public ModelConfig config() {
        return config;
    }

    /** The checkpoint-wide quantization config. */
    public GptqConfig quantization() {
        return quantization;
    }

    /** The file (and key) the quantization config came from. */
    public String quantizationSource() {
        return quantizationSource;
    }

    public TensorStore store() {
        return store;
    }

    /** Every linear module of the model (and lm_head when it is quantized), in layer order. */
    public List<LinearModule> modules() {
        return List.copyOf(modules.values());
    }

    public LinearModule module(String name) {
        LinearModule m = modules.get(name);
        if (m == null) {
            throw SparkQuantException.badInput(directory + ": no linear module '" + name + "'");
        }
        return m;
    }

    public boolean isQuantized(String module) {
        return quantized.containsKey(module(module).name());
    }

    /** The parameters of a quantized module, or empty when it is dense. */
    public Optional<GptqConfig.ModuleParams> params(String module) {
        return Optional.ofNullable(quantized.get(module(module).name()));
    }

    /** Names of the quantized modules, in layer order. */
    public List<String> quantizedModules() {
        return List.copyOf(quantized.keySet());
    }

    /** Warnings met so far (missing sym, ambiguous v1 zero points). */
    public List<String> warnings() {
        synchronized (warnings) {
            return List.copyOf(warnings);
        }
    }

    /** Reads one quantized module (only its tensors) and checks their contents. */
    public QuantizedLinear quantized(String module) {
        LinearModule m = module(module);
        GptqConfig.ModuleParams p = quantized.get(m.name());
        if (p == null) {
            throw SparkQuantException.badInput(directory + ": module " + m.name() + " is not quantized");
        }
        int in = m.inFeatures();
        int out = m.outFeatures();
        int groups = p.groups(in);
        String prefix = m.name() + ".";
        byte[] codes = GptqPacking.unpackQweight(readInts(prefix + "qweight"), in, out, p.bits());
        int[] qzeros = readInts(prefix + "qzeros");
        if (quantization.format() == GptqConfig.Format.GPTQ && GptqPacking.v1Wraps(qzeros, groups, out, p.bits())) {
            String w = file(prefix + "qzeros") + ": tensor '" + prefix + "qzeros' stores a v1 zero point of -1 (zero 0),"
                    + " read as 0 like AutoGPTQ; vLLM kernels read it as " + (1 << p.bits()) + " (use gptq_v2 for"
                    + " asymmetric checkpoints)";
            warnings.add(w);
            LOG.warn(w);
        }
        int[] zeros = GptqPacking.unpackQzeros(qzeros, groups, out, p.bits(), quantization.format());
        if (p.sym()) {
            int mid = QuantizedLinear.symmetricZero(p.bits());
            for (int i = 0; i < zeros.length; i++) {
                if (zeros[i] != mid) {
                    String hint = quantization.format() == GptqConfig.Format.GPTQ && zeros[i] == mid + 1
                            ? " (v2 zero points in a checkpoint_format 'gptq' file?)" : "";
                    throw bad(prefix + "qzeros", "zero point " + zeros[i] + " of group " + i / out + ", channel "
                            + i % out + " is not " + mid + " although sym is true" + hint);
                }
            }
        }
        float[] scales = store.readFloats(prefix + "scales");
        for (int i = 0; i < scales.length; i++) {
            if (!Float.isFinite(scales[i])) {
                throw bad(prefix + "scales", "scale of group " + i / out + ", channel " + i % out + " is " + scales[i]);
            }
        }
        int[] gIdx = readInts(prefix + "g_idx");
        int width = p.groupWidth(in);
        for (int k = 0; k < in; k++) {
            if (gIdx[k] < 0 || gIdx[k] >= groups) {
                throw bad(prefix + "g_idx", "g_idx[" + k + "] = " + gIdx[k] + " is outside [0, " + groups + ")");
            }
            if (!p.descAct() && gIdx[k] != k / width) {
                throw bad(prefix + "g_idx", "g_idx[" + k + "] = " + gIdx[k] + " but desc_act is false, which means "
                        + "g_idx[k] = k / group_size (= " + k / width + "); runtimes would ignore this g_idx");
            }
        }
        float[] bias = store.contains(prefix + "bias") ? store.readFloats(prefix + "bias") : null;
        if (bias != null) {
            for (int n = 0; n < bias.length; n++) {
                if (!Float.isFinite(bias[n])) {
                    throw bad(prefix + "bias", "bias[" + n + "] is " + bias[n]);
                }
            }
        }
        return new QuantizedLinear(m.name(), p.bits(), p.groupSize(), p.sym(), in, out, codes, scales, zeros, gIdx,
                bias);
    }

    /**
     * The weight of a linear module as float [out][in]: dequantized when quantized, converted from its dtype when
     * dense.
     */
    public float[] weight(String module) {
        LinearModule m = module(module);
        return quantized.containsKey(m.name()) ? quantized(m.name()).dequantize() : store.readFloats(m.weight());
    }

    /** The bias of a linear module as float [out], or null when it has none. */
    public float[] bias(String module) {
        LinearModule m = module(module);
        return store.contains(m.biasName()) ? store.readFloats(m.biasName()) : null;
    }

    /**
     * Decoder layer {@code layer} for the forward pass: quantized modules dequantized (exactly what the checkpoint
     * evaluates to), dense ones converted from their dtype; only this layer's tensors are read.
     */
    public LayerWeights layerWeights(int layer) {
        if (layer < 0 || layer >= config.numLayers()) {
            throw new IllegalArgumentException("layer " + layer + " outside 0.." + (config.numLayers() - 1));
        }
        Map<String, LinearWeights> linears = new LinkedHashMap<>();
        for (LinearModule m : modules.values()) {
            if (m.layer() == layer && !m.name().equals("lm_head")) {
                linears.put(m.key(), DenseLinear.of(weight(m.name()), m.outFeatures(), m.inFeatures(), bias(m.name())));
            }
        }
        String p = "model.layers." + layer + ".";
        float[] qNorm = config.qkNorm() ? store.readFloats(p + "self_attn.q_norm.weight") : null;
        float[] kNorm = config.qkNorm() ? store.readFloats(p + "self_attn.k_norm.weight") : null;
        LinearWeights router = null;
        LinearWeights sharedGate = null;
        if (config.sparse(layer)) {
            // the router and the shared expert's gate are never quantized: read as stored
            MoeConfig moe = config.moe();
            router = DenseLinear.of(store.readFloats(moe.routerTensor(layer)), moe.experts(), config.hiddenSize(),
                    null);
            if (moe.sharedExpertGate()) {
                sharedGate = DenseLinear.of(store.readFloats(moe.sharedExpertGateTensor(layer)), 1,
                        config.hiddenSize(), null);
            }
        }
        return new LayerWeights(layer, linears, router, sharedGate, store.readFloats(p + "input_layernorm.weight"),
                store.readFloats(p + "post_attention_layernorm.weight"), qNorm, kNorm);
    }

    /** A dense tensor (embeddings, norms, lm_head) as float. */
    public float[] readFloats(String tensor) {
        return store.readFloats(tensor);
    }

    /** Reads and checks every quantized module (the whole checkpoint once); returns how many there are. */
    public int verify() {
        for (String name : quantized.keySet()) {
            quantized(name);
        }
        return quantized.size();
    }

    private int[] readInts(String tensor) {
        byte[] raw = store.readRaw(tensor);
        int[] values = new int[raw.length / 4];
        ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN).asIntBuffer().get(values);
        return values;
    }

    private String file(String tensor) {
        return store.file(tensor).name();
    }

    private SparkQuantException bad(String tensor, String problem) {
        return SparkQuantException.badInput(file(tensor) + ": tensor '" + tensor + "' " + problem);
    }

    @Override
    public void close() {
        store.close();
    }
}
