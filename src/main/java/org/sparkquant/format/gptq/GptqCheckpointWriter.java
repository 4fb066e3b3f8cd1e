package org.sparkquant.format.gptq;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.util.DefaultIndenter;
import com.fasterxml.jackson.core.util.DefaultPrettyPrinter;
import com.fasterxml.jackson.core.util.Separators;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.sparkquant.SparkQuantException;
import org.sparkquant.io.DType;
import org.sparkquant.io.Half;
import org.sparkquant.io.SafetensorsFile;
import org.sparkquant.io.ShardedSafetensorsWriter;
import org.sparkquant.io.Storage;
import org.sparkquant.io.TensorInfo;
import org.sparkquant.io.TensorSpec;
import org.sparkquant.io.TensorStore;
import org.sparkquant.model.LinearModule;
import org.sparkquant.model.ModelInventory;

/**
 * Writes a Hugging Face GPTQ checkpoint (docs/formats.md §1) that transformers, vLLM and GPTQModel load: for each
 * quantized linear {@code qweight}, {@code qzeros}, {@code scales} (fp16), {@code g_idx} and, when the layer has one,
 * {@code bias} (fp16); every other tensor copied byte for byte from the source; sharded safetensors with
 * {@code {"format":"pt"}} metadata; {@code quantize_config.json}; {@code config.json} = the source's plus
 * {@code quantization_config}; tokenizer and generation files copied.
 *
 * <p>Modules are pulled one at a time from a {@link ModuleSource} in the order of {@link Plan#quantized()}, so only
 * one module is in memory; dense tensors are streamed in chunks. Layers whose shape cannot be packed at the chosen
 * width (e.g. a 172-wide MLP at 4 bits) are left in their source dtype and excluded through
 * {@code dynamic {"-:^name$": {}}}, or rejected with {@link Unpackable#ERROR}. {@code config.json} is written last,
 * so a directory with one is complete.
 */
public final class GptqCheckpointWriter {
    private static final Logger LOG = LoggerFactory.getLogger(GptqCheckpointWriter.class);

    /** Files copied from the source directory when present. */
    public static final List<String> COPIED_FILES = List.of("tokenizer.json", "tokenizer.model",
            "tokenizer_config.json", "special_tokens_map.json", "generation_config.json", "added_tokens.json",
            "vocab.json", "merges.txt", "chat_template.jinja", "chat_template.json");
    public static final String QUANTIZE_CONFIG = "quantize_config.json";
    public static final long DEFAULT_MAX_SHARD_BYTES = 4L << 30;

    private static final int CHUNK_BYTES = 8 << 20;
    private static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);

    private GptqCheckpointWriter() {}

    /** What to do with layers whose shape cannot be packed at the chosen bit width. */
    public enum Unpackable {
        /** Keep them in the source dtype and list them in {@code dynamic} (with a warning). */
        DENSE,
        /** Fail before anything is written. */
        ERROR
    }

    /** Supplies the quantized module for a layer; called once per module, in {@link Plan#quantized()} order. */
    @FunctionalInterface
    public interface ModuleSource {
        QuantizedLinear get(LinearModule module);
    }

    /**
     * @param format null for automatic: {@code gptq} (v1) when symmetric, {@code gptq_v2} otherwise (v1 cannot store
     *     a zero point of 0)
     * @param keepDense modules the caller chose not to quantize; they are written like unpackable ones
     * @param quantizer the {@code meta.quantizer} entry, e.g. {@code sparkquant:0.1}
     */
    public record Options(int bits, int groupSize, boolean sym, boolean descAct, boolean staticGroups,
            boolean trueSequential, double dampPercent, double mse, GptqConfig.Format format, long maxShardBytes,
            Unpackable unpackable, Set<String> keepDense, String quantizer) {
        public Options {
            if (!GptqPacking.supported(bits)) {
                throw SparkQuantException.badInput("bits " + bits + " is not supported by GPTQ checkpoints (2, 3, 4, 8)");
            }
            if (groupSize != -1 && groupSize <= 0) {
                throw SparkQuantException.badInput("group size must be -1 or positive, got " + groupSize);
            }
            if (maxShardBytes <= 0) {
                throw SparkQuantException.badInput("max shard size must be positive, got " + maxShardBytes);
            }
            keepDense = Set.copyOf(keepDense);
        }

        public static Options of(int bits, int groupSize, boolean sym) {
            return new Options(bits, groupSize, sym, false, false, true, 0.01, 0.0, null, DEFAULT_MAX_SHARD_BYTES,
                    Unpackable.DENSE, Set.of(), "sparkquant:" + version());
        }

        public Options withActOrder(boolean descActOn, boolean staticGroupsOn) {
            return new Options(bits, groupSize, sym, descActOn, staticGroupsOn, trueSequential, dampPercent, mse, format,
                    maxShardBytes, unpackable, keepDense, quantizer);
        }

        public Options withSolver(boolean trueSequentialOn, double damp, double mseNorm) {
            return new Options(bits, groupSize, sym, descAct, staticGroups, trueSequentialOn, damp, mseNorm, format,
                    maxShardBytes, unpackable, keepDense, quantizer);
        }

        public Options withFormat(GptqConfig.Format f) {
            return new Options(bits, groupSize, sym, descAct, staticGroups, trueSequential, dampPercent, mse, f,
                    maxShardBytes, unpackable, keepDense, quantizer);
        }

        public Options withMaxShardBytes(long bytes) {
            return new Options(bits, groupSize, sym, descAct, staticGroups, trueSequential, dampPercent, mse, format,
                    bytes, unpackable, keepDense, quantizer);
        }

        public Options withUnpackable(Unpackable policy) {
            return new Options(bits, groupSize, sym, descAct, staticGroups, trueSequential, dampPercent, mse, format,
                    maxShardBytes, policy, keepDense, quantizer);
        }

        public Options withKeepDense(Set<String> modules) {
            return new Options(bits, groupSize, sym, descAct, staticGroups, trueSequential, dampPercent, mse, format,
                    maxShardBytes, unpackable, modules, quantizer);
        }

        public Options withQuantizer(String tool) {
            return new Options(bits, groupSize, sym, descAct, staticGroups, trueSequential, dampPercent, mse, format,
                    maxShardBytes, unpackable, keepDense, tool);
        }

        GptqConfig.Format effectiveFormat() {
            return format != null ? format : sym ? GptqConfig.Format.GPTQ : GptqConfig.Format.GPTQ_V2;
        }
    }

    /**
     * Which modules are quantized (in the order the writer will ask for them) and which stay dense and why, plus the
     * quantization config that will be written.
     */
    public record Plan(GptqConfig config, List<LinearModule> quantized, Map<String, String> dense,
            List<String> warnings) {
        public Plan {
            quantized = List.copyOf(quantized);
            dense = Map.copyOf(dense);
            warnings = List.copyOf(warnings);
        }

        public boolean isQuantized(String module) {
            return quantized.stream().anyMatch(m -> m.name().equals(module));
        }
    }

    public record Result(Plan plan, List<String> shards, long tensorBytes) {}

    /** The version of this build (the jar manifest's), or "dev". */
    public static String version() {
        String v = GptqCheckpointWriter.class.getPackage().getImplementationVersion();
        return v == null ? "dev" : v;
    }

    /**
     * Decides which modules are quantized. Fails with {@link Unpackable#ERROR} when some module cannot be packed; the
     * pipeline calls this before quantizing so it skips the dense ones.
     */
    public static Plan plan(ModelInventory inventory, Options options) {
        List<LinearModule> quantized = new ArrayList<>();
        Map<String, String> dense = new LinkedHashMap<>();
        List<String> unpackable = new ArrayList<>();
        for (List<LinearModule> layer : inventory.layers()) {
            for (LinearModule m : layer) {
                var reason = GptqPacking.unpackableReason(m.inFeatures(), m.outFeatures(), options.bits());
                if (options.keepDense().contains(m.name())) {
                    dense.put(m.name(), "kept dense on request");
                } else if (reason.isPresent()) {
                    dense.put(m.name(), reason.get());
                    unpackable.add(m.name() + " (" + reason.get() + ")");
                } else {
                    quantized.add(m);
                }
            }
        }
        List<String> allNames = inventory.layers().stream().flatMap(List::stream).map(LinearModule::name).toList();
        for (String name : options.keepDense()) {
            if (!allNames.contains(name)) {
                throw SparkQuantException.badInput("cannot keep '" + name + "' dense: the model has no such linear module");
            }
        }
        if (!unpackable.isEmpty() && options.unpackable() == Unpackable.ERROR) {
            throw SparkQuantException.badInput(unpackable.size() + " module(s) cannot be packed at " + options.bits()
                    + " bits: " + String.join(", ", unpackable) + " (keep them dense with --unpackable dense)");
        }
        List<String> warnings = new ArrayList<>();
        if (!unpackable.isEmpty()) {
            warnings.add("left unquantized in the source dtype (listed in quantization_config.dynamic): "
                    + String.join(", ", unpackable));
        }
        List<GptqConfig.DynamicRule> rules = new ArrayList<>();
        for (String name : dense.keySet()) {
            rules.add(GptqConfig.DynamicRule.exclude("^" + escape(name) + "$"));
        }
        rules.addAll(fusedExclusions(inventory, dense.keySet(), warnings));
        rules.addAll(routerExclusions(inventory));
        expertWarnings(inventory, dense.keySet(), warnings);
        quantized.sort(Comparator.comparing(LinearModule::weight, NATURAL));
        GptqConfig config = GptqConfig.of(options.bits(), options.groupSize(), options.sym())
                .withOptions(options.descAct(), options.staticGroups(), options.trueSequential(), options.dampPercent(),
                        options.mse())
                .withFormat(options.effectiveFormat())
                .withQuantizer(options.quantizer() == null ? List.of() : List.of(options.quantizer()))
                .withDynamic(rules);
        return new Plan(config, quantized, dense, warnings);
    }

    /**
     * vLLM matches {@code dynamic} against its fused layer names (qkv_proj, gate_up_proj), so when every part of a
     * fused group is dense the fused name is excluded too. A partly dense group cannot be loaded by vLLM: warn.
     */
    private static List<GptqConfig.DynamicRule> fusedExclusions(ModelInventory inventory, Set<String> dense,
            List<String> warnings) {
        List<GptqConfig.DynamicRule> rules = new ArrayList<>();
        Map<String, List<String>> fused = new LinkedHashMap<>();
        fused.put("self_attn.qkv_proj", List.of("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"));
        fused.put("mlp.gate_up_proj", List.of("mlp.gate_proj", "mlp.up_proj"));
        for (int i = 0; i < inventory.layers().size(); i++) {
            String prefix = "model.layers." + i + ".";
            for (Map.Entry<String, List<String>> e : fused.entrySet()) {
                long n = e.getValue().stream().filter(part -> dense.contains(prefix + part)).count();
                if (n == e.getValue().size()) {
                    rules.add(GptqConfig.DynamicRule.exclude("^" + escape(prefix + e.getKey()) + "$"));
                } else if (n > 0) {
                    warnings.add(prefix + e.getKey() + " is partly quantized: vLLM, which fuses "
                            + String.join("/", e.getValue()) + ", cannot load this checkpoint");
                }
            }
        }
        return rules;
    }

    /**
     * The routers ({@code mlp.gate}, Mixtral's {@code block_sparse_moe.gate}) and Qwen2-MoE's shared-expert gate are
     * linear layers that GPTQ leaves dense (GPTQModel's module lists skip them; vLLM builds them unquantized):
     * listed as {@code "-:"} exclusions so that every loader keeps them dense, one rule per name for all layers.
     */
    private static List<GptqConfig.DynamicRule> routerExclusions(ModelInventory inventory) {
        Set<String> suffixes = new java.util.TreeSet<>();
        for (int i = 0; i < inventory.layers().size(); i++) {
            String prefix = "model.layers." + i + ".";
            for (String t : inventory.unquantizedLayerTensors(i)) {
                if (t.startsWith(prefix) && t.endsWith(".weight")) {
                    suffixes.add(t.substring(prefix.length(), t.length() - ".weight".length()));
                }
            }
        }
        List<GptqConfig.DynamicRule> rules = new ArrayList<>();
        for (String s : suffixes) {
            rules.add(GptqConfig.DynamicRule.exclude("^model\\.layers\\.\\d+\\." + escape(s) + "$"));
        }
        return rules;
    }

    /**
     * vLLM stacks a layer's experts into one fused MoE layer with a single quantization method, so a layer whose
     * experts are partly dense cannot be loaded there: warn.
     */
    private static void expertWarnings(ModelInventory inventory, Set<String> dense, List<String> warnings) {
        for (int i = 0; i < inventory.layers().size(); i++) {
            List<LinearModule> routed = inventory.layer(i).stream().filter(LinearModule::routed).toList();
            long n = routed.stream().filter(m -> dense.contains(m.name())).count();
            if (n > 0 && n < routed.size()) {
                warnings.add("layer " + i + " has " + n + " of " + routed.size() + " expert projections dense: vLLM,"
                        + " which fuses a layer's experts, cannot load this checkpoint");
            }
        }
    }

    /** Escapes a module name for a Python/Java regular expression (dots, the only special character in HF names). */
    static String escape(String name) {
        StringBuilder b = new StringBuilder();
        for (char c : name.toCharArray()) {
            if ("\\.[]{}()*+?^$|".indexOf(c) >= 0) {
                b.append('\\');
            }
            b.append(c);
        }
        return b.toString();
    }

    /**
     * Writes the checkpoint to {@code outputDirectory}, which must not already hold one.
     *
     * @param source the source checkpoint (its directory also provides config.json and the tokenizer files)
     * @param inventory the source's inventory ({@link ModelInventory#of(org.sparkquant.model.ModelConfig, TensorStore)})
     */
    public static Result write(Storage storage, TensorStore source, ModelInventory inventory, String outputDirectory,
            Options options, ModuleSource modules) {
        Plan plan = plan(inventory, options);
        plan.warnings().forEach(LOG::warn);
        ObjectNode sourceConfig = readConfig(storage, Storage.resolve(source.directory(), "config.json"));
        checkOutput(storage, source.directory(), outputDirectory);

        Map<String, LinearModule> byWeight = new LinkedHashMap<>();
        Map<String, LinearModule> byBias = new LinkedHashMap<>();
        for (LinearModule m : plan.quantized()) {
            byWeight.put(m.weight(), m);
            if (source.contains(m.biasName())) {
                byBias.put(m.biasName(), m);
            }
        }
        List<String> names = new ArrayList<>(source.names());
        names.sort(NATURAL);
        List<Object> items = new ArrayList<>(); // a String is a tensor to copy, a LinearModule one to quantize
        List<TensorSpec> specs = new ArrayList<>();
        GptqConfig.ModuleParams params = plan.config().params();
        for (String name : names) {
            LinearModule m = byWeight.get(name);
            if (m != null) {
                items.add(m);
                specs.addAll(moduleSpecs(m, params, source.contains(m.biasName())));
            } else if (!byBias.containsKey(name)) {
                TensorInfo info = source.info(name);
                items.add(name);
                specs.add(new TensorSpec(name, info.dtype(), info.shape()));
            }
        }
        long total = specs.stream().mapToLong(TensorSpec::byteSize).sum();
        List<String> shards;
        try (ShardedSafetensorsWriter writer = ShardedSafetensorsWriter.create(storage, outputDirectory, specs,
                options.maxShardBytes(), Map.of("format", "pt"))) {
            shards = writer.fileNames();
            for (Object item : items) {
                if (item instanceof LinearModule m) {
                    QuantizedLinear q = modules.get(m);
                    if (q == null) {
                        throw SparkQuantException.internal("no quantized module supplied for " + m.name(), null);
                    }
                    writeModule(writer, source, m, q, plan.config());
                } else {
                    copyTensor(writer, source, (String) item);
                }
            }
        }
        for (String file : COPIED_FILES) {
            String from = Storage.resolve(source.directory(), file);
            if (storage.exists(from)) {
                storage.copy(from, Storage.resolve(outputDirectory, file));
            }
        }
        ObjectNode quant = plan.config().toJson();
        storage.writeString(Storage.resolve(outputDirectory, QUANTIZE_CONFIG), json(quant));
        sourceConfig.set("quantization_config", quant);
        storage.writeString(Storage.resolve(outputDirectory, "config.json"), json(sourceConfig));
        LOG.info("wrote GPTQ checkpoint {}: {} quantized modules, {} dense, {} shard(s), {} bytes of tensors",
                outputDirectory, plan.quantized().size(), plan.dense().size(), shards.size(), total);
        return new Result(plan, shards, total);
    }

    static List<TensorSpec> moduleSpecs(LinearModule m, GptqConfig.ModuleParams p, boolean bias) {
        int in = m.inFeatures();
        int out = m.outFeatures();
        int groups = p.groups(in);
        List<TensorSpec> specs = new ArrayList<>();
        specs.add(new TensorSpec(m.name() + ".qweight", DType.I32, new long[] {GptqPacking.words(in, p.bits()), out}));
        specs.add(new TensorSpec(m.name() + ".qzeros", DType.I32, new long[] {groups, GptqPacking.words(out, p.bits())}));
        specs.add(new TensorSpec(m.name() + ".scales", DType.F16, new long[] {groups, out}));
        specs.add(new TensorSpec(m.name() + ".g_idx", DType.I32, new long[] {in}));
        if (bias) {
            specs.add(new TensorSpec(m.name() + ".bias", DType.F16, new long[] {out}));
        }
        return specs;
    }

    private static void writeModule(ShardedSafetensorsWriter writer, TensorStore source, LinearModule m,
            QuantizedLinear q, GptqConfig config) {
        if (!q.name().equals(m.name()) || q.inFeatures() != m.inFeatures() || q.outFeatures() != m.outFeatures()) {
            throw SparkQuantException.internal("module supplied for " + m.name() + " [" + m.outFeatures() + ", "
                    + m.inFeatures() + "] is " + q, null);
        }
        if (q.bits() != config.bits() || q.groupSize() != config.groupSize() || q.sym() != config.sym()) {
            throw SparkQuantException.internal(m.name() + ": quantized as " + q.bits() + "-bit g" + q.groupSize()
                    + (q.sym() ? " sym" : " asym") + " but the checkpoint is " + config.bits() + "-bit g"
                    + config.groupSize() + (config.sym() ? " sym" : " asym"), null);
        }
        if (!config.descAct() && !q.sequentialGroups()) {
            // runtimes ignore g_idx when desc_act is false (vLLM), so a permuted g_idx would be silently misread
            throw SparkQuantException.internal(m.name() + ": g_idx is permuted (act-order) but desc_act is false", null);
        }
        int in = m.inFeatures();
        int out = m.outFeatures();
        writeInts(writer, m.name() + ".qweight", GptqPacking.packQweight(q.codesRaw(), in, out, q.bits()));
        int[] qzeros;
        try {
            qzeros = GptqPacking.packQzeros(q.zerosRaw(), q.groups(), out, q.bits(), config.format());
        } catch (IllegalArgumentException e) {
            throw SparkQuantException.badInput(m.name() + ": " + e.getMessage());
        }
        writeInts(writer, m.name() + ".qzeros", qzeros);
        writeHalves(writer, m.name() + ".scales", q.scalesRaw());
        writeInts(writer, m.name() + ".g_idx", q.gIdxRaw());
        if (source.contains(m.biasName())) {
            float[] bias = q.hasBias() ? q.biasRaw() : source.readFloats(m.biasName());
            for (int n = 0; n < bias.length; n++) {
                if (!Float.isFinite(Half.round(bias[n]))) {
                    throw SparkQuantException.badInput(m.biasName() + ": bias[" + n + "] = " + bias[n]
                            + " cannot be stored as fp16, as GPTQ checkpoints store biases");
                }
            }
            writeHalves(writer, m.name() + ".bias", bias);
        } else if (q.hasBias()) {
            throw SparkQuantException.internal(m.name() + ": the quantized module has a bias but the source has none",
                    null);
        }
    }

    private static void copyTensor(ShardedSafetensorsWriter writer, TensorStore source, String name) {
        SafetensorsFile file = source.file(name);
        TensorInfo info = file.tensor(name);
        long size = info.byteSize();
        for (long done = 0; done < size; done += CHUNK_BYTES) {
            int n = (int) Math.min(CHUNK_BYTES, size - done);
            byte[] chunk = file.readRaw(info, done, n);
            writer.write(name, chunk, 0, n);
        }
    }

    private static void writeInts(ShardedSafetensorsWriter writer, String name, int[] values) {
        int per = CHUNK_BYTES / 4;
        ByteBuffer buffer = ByteBuffer.allocate(Math.min(per, Math.max(values.length, 1)) * 4)
                .order(ByteOrder.LITTLE_ENDIAN);
        for (int from = 0; from < values.length; from += per) {
            int n = Math.min(per, values.length - from);
            buffer.clear();
            buffer.asIntBuffer().put(values, from, n);
            writer.write(name, buffer.array(), 0, n * 4);
        }
    }

    private static void writeHalves(ShardedSafetensorsWriter writer, String name, float[] values) {
        byte[] bytes = new byte[values.length * 2];
        ByteBuffer buffer = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
        for (float v : values) {
            buffer.putShort(Half.fromFloat(v));
        }
        writer.write(name, bytes);
    }

    private static void checkOutput(Storage storage, String sourceDirectory, String outputDirectory) {
        if (Storage.path(sourceDirectory).equals(Storage.path(outputDirectory))) {
            throw SparkQuantException.badInput(outputDirectory + ": the output directory is the source model's");
        }
        if (storage.isDirectory(outputDirectory)) {
            for (String f : storage.list(outputDirectory)) {
                if (f.endsWith(".safetensors") || f.equals(TensorStore.INDEX) || f.equals("config.json")) {
                    throw SparkQuantException.badInput(outputDirectory + ": already holds a checkpoint (" + f
                            + "); choose an empty or new directory");
                }
            }
        } else if (storage.exists(outputDirectory)) {
            throw SparkQuantException.badInput(outputDirectory + ": exists and is not a directory");
        }
        storage.mkdirs(outputDirectory);
    }

    private static ObjectNode readConfig(Storage storage, String uri) {
        JsonNode root;
        try {
            root = JSON.readTree(storage.readString(uri));
        } catch (JsonProcessingException e) {
            throw SparkQuantException.badInput(uri + ": not valid JSON (" + e.getOriginalMessage() + ")");
        }
        if (!(root instanceof ObjectNode object)) {
            throw SparkQuantException.badInput(uri + ": not a JSON object");
        }
        if (object.has("quantization_config")) {
            throw SparkQuantException.badInput(uri + ": the source model is already quantized (quantization_config)");
        }
        return object;
    }

    /** JSON laid out like Python's {@code json.dumps(indent=2)}, as Hugging Face writes its config files. */
    static String json(JsonNode node) {
        DefaultIndenter indenter = new DefaultIndenter("  ", "\n");
        DefaultPrettyPrinter printer = new DefaultPrettyPrinter(Separators.createDefaultInstance()
                .withObjectFieldValueSpacing(Separators.Spacing.AFTER)
                .withObjectEmptySeparator("")
                .withArrayEmptySeparator(""))
                .withObjectIndenter(indenter)
                .withArrayIndenter(indenter);
        try {
            return JSON.writer(printer).writeValueAsString(node) + "\n";
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
    }

    /** Tensor-name order with numeric segments compared as numbers: layers 0, 1, 2, …, 10 rather than 0, 1, 10, 2. */
    static final Comparator<String> NATURAL = (a, b) -> {
        String[] x = a.split("\\.", -1);
        String[] y = b.split("\\.", -1);
        for (int i = 0; i < Math.min(x.length, y.length); i++) {
            int c;
            if (isNumber(x[i]) && isNumber(y[i])) {
                c = x[i].length() != y[i].length() ? Integer.compare(x[i].length(), y[i].length()) : x[i].compareTo(y[i]);
            } else {
                c = x[i].compareTo(y[i]);
            }
            if (c != 0) {
                return c;
            }
        }
        return Integer.compare(x.length, y.length);
    };

    private static boolean isNumber(String s) {
        if (s.isEmpty() || (s.length() > 1 && s.charAt(0) == '0')) {
            return false;
        }
        for (int i = 0; i < s.length(); i++) {
            if (s.charAt(i) < '0' || s.charAt(i) > '9') {
                return false;
            }
        }
        return true;
    }
}
