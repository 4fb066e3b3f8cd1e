package org.sparkquant.cli;

import java.io.PrintWriter;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.sparkquant.SparkQuantException;
import org.sparkquant.format.gguf.GgufModelDesc;
import org.sparkquant.format.gguf.GgufNames;
import org.sparkquant.format.gguf.GgufExporter;
import org.sparkquant.format.gguf.GgufPlan;
import org.sparkquant.format.gguf.GgufTensor;
import org.sparkquant.format.gguf.LlamaFileType;
import org.sparkquant.io.DType;
import org.sparkquant.io.Storage;
import org.sparkquant.io.TensorStore;
import org.sparkquant.model.LinearModule;
import org.sparkquant.model.MemoryPlan;
import org.sparkquant.model.ModelConfig;
import org.sparkquant.model.ModelInventory;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/** {@code sparkquant inspect}: the model's architecture, tensors and the memory a quantization run will need. */
@Command(name = "inspect", mixinStandardHelpOptions = true,
        description = {"Show a model's architecture, modules, parameter count, bytes by dtype and the memory plan of "
                + "a quantization run. Reads config.json and the safetensors headers only."})
public final class InspectCommand implements Callable<Integer> {
    @Spec
    picocli.CommandLine.Model.CommandSpec spec;

    @Mixin
    CommonOptions common;

    @Mixin
    CalibrationShape shape;

    @Option(names = "--model", required = true, paramLabel = "URI",
            description = "Hugging Face checkpoint directory (path, file://, s3a://, hdfs://).")
    String model;




    @Option(names = "--json", description = "Print one JSON object instead of text.")
    boolean json;

    @Option(names = "--gguf-type", paramLabel = "TYPE", description = "Also print the GGUF plan of a llama.cpp file "
            + "type (Q4_K_M, Q8_0, ...): the type llama-quantize picks for every tensor, bits per weight, size.")
    String ggufType;

    @Override
    public Integer call() throws Exception {
        shape.validate();
        Storage storage = common.storage();
        ModelConfig config = ModelConfig.load(storage, model);
        ModelInventory inventory;
        try (TensorStore store = TensorStore.open(storage, model)) {
            inventory = ModelInventory.of(config, store);
        }
        MemoryPlan plan = MemoryPlan.of(inventory, shape.samples, shape.seqLen, shape.samplesPerPartition);
        GgufPlan gguf = null;
        if (ggufType != null && config.moe() != null) {
            // stacked expert tensors: described from the checkpoint's tensors as the exporter sees them
            try (TensorStore store = TensorStore.open(storage, model)) {
                gguf = GgufPlan.of(GgufExporter.describe(config, store), LlamaFileType.parse(ggufType));
            }
        } else if (ggufType != null) {
            gguf = ggufPlan(config, LlamaFileType.parse(ggufType));
        }
        PrintWriter out = spec.commandLine().getOut();
        if (json) {
            out.println(toJson(inventory, plan, gguf));
        } else {
            printText(out, inventory, plan);
            if (gguf != null) {
                out.println();
                out.println("GGUF plan for " + gguf.fileType() + ":");
                out.print(gguf.table());
            }
        }
        out.flush();
        return 0;
    }

    private void printText(PrintWriter out, ModelInventory inventory, MemoryPlan plan) {
        ModelConfig c = inventory.config();
        out.printf("model          %s%n", model);
        out.printf("architecture   %s, %d decoder layers%n", c.modelType(), c.numLayers());
        out.printf("shape          hidden %d, heads %d (kv %d, head_dim %d), ffn %d, vocab %d%n", c.hiddenSize(),
                c.numHeads(), c.numKvHeads(), c.headDim(), c.intermediateSize(), c.vocabSize());
        out.printf("rope           %s, theta %s%s%n", c.rope().type(), trim(c.rope().theta()),
                c.rope().type().equals("default") ? "" : ", factor " + trim(c.rope().factor()));
        out.printf("embeddings     %s%n", c.tieWordEmbeddings() ? "tied (lm_head = embed_tokens)" : "untied lm_head");
        if (c.slidingWindow() > 0) {
            out.printf("sliding window %d%n", c.slidingWindow());
        }
        out.printf("parameters     %,d%n", inventory.parameterCount());
        StringBuilder dtypes = new StringBuilder();
        for (Map.Entry<DType, Long> e : inventory.bytesByDtype().entrySet()) {
            dtypes.append(dtypes.length() == 0 ? "" : ", ").append(e.getKey()).append(' ').append(Bytes.human(e.getValue()));
        }
        out.printf("bytes          %s%n", dtypes);
        out.println();
        out.println("linear modules of each decoder layer (in -> out):");
        int shown = 0;
        int width = inventory.layer(0).stream().mapToInt(m -> m.name().length() - m.name().indexOf('.',
                "model.layers.".length()) - 1).max().orElse(18);
        for (LinearModule m : inventory.layer(0)) {
            if (m.expert() > 0) {
                continue; // expert 0 stands for all
            }
            String name = m.name().substring(m.name().indexOf('.', "model.layers.".length()) + 1);
            out.printf("  %-" + Math.max(18, width) + "s %6d -> %-6d %s%n", name, m.inFeatures(), m.outFeatures(),
                    m.bias() ? "+bias" : "");
            shown++;
        }
        if (shown < inventory.layer(0).size()) {
            out.printf("  (and the same for experts 1..%d)%n", inventory.experts(0) - 1);
        }
        if (c.moe() != null) {
            out.printf("  mixture of experts: %d experts, top-%d, %d of %d layers sparse; routers stay unquantized%n",
                    c.moe().experts(), c.moe().topK(), c.numLayers() - c.moe().denseLayers().stream()
                            .filter(l -> l < c.numLayers()).count(), c.numLayers());
        }
        out.printf("  %d quantizable modules in %d layers, %,d parameters%n",
                inventory.layers().stream().mapToInt(java.util.List::size).sum(), c.numLayers(),
                inventory.layers().stream().flatMap(l -> l.stream()).mapToLong(LinearModule::parameters).sum());
        out.println();
        out.printf("memory plan for %d samples x %d tokens, %d partitions of %d:%n", plan.samples(), plan.seqLen(),
                plan.partitions(), plan.samplesPerPartition());
        out.printf("  largest layer (fp32)        %s%n", Bytes.human(plan.largestLayerFp32Bytes()));
        out.printf("  hidden states per sample    %s (fp32)%n", Bytes.human(plan.hiddenStateBytesPerSample()));
        out.printf("  hidden states, all samples  %s (spread over the partitions)%n",
                Bytes.human(plan.hiddenStateBytesPerSample() * plan.samples()));
        Map<LinearModule.Input, Integer> widths = inventory.inputWidths();
        for (Map.Entry<LinearModule.Input, Long> e : plan.hessianBytes().entrySet()) {
            out.printf("  Hessian of %-16s %s (%d^2 fp64, input of %s)%n",
                    e.getKey().name().toLowerCase(Locale.ROOT).replace('_', '-'), Bytes.human(e.getValue()),
                    widths.get(e.getKey()), e.getKey().label());
        }
        out.printf("  activations per sample      %s%n", Bytes.human(plan.activationBytesPerSample()));
        if (plan.moePassBytes() > 0) {
            out.printf("  experts' Hessian pass       %s (per task: the experts' Hessian accumulators of a sparse layer "
                    + "are summed in passes of at most %s, never all at once)%n", Bytes.human(plan.moePassBytes()),
                    Bytes.human(MemoryPlan.MOE_PASS_BYTES));
            out.printf("  executor bound              %s (one layer with all its experts + a partition's hidden states "
                    + "in and out + one Hessian pass + one factor + activations)%n", Bytes.human(plan.executorBytes()));
        } else {
            out.printf("  executor bound              %s (one layer + a partition's hidden states in and out + one "
                    + "Hessian + one factor + activations)%n", Bytes.human(plan.executorBytes()));
        }
        out.printf("  driver bound                %s (metadata + one Hessian tile of at most %s)%n",
                Bytes.human(plan.driverBytes()), Bytes.human(MemoryPlan.HESSIAN_TILE_BYTES));
        out.printf("  work directory bound        %s (staged codes, one layer's Hessians and factors, hidden states "
                + "at two layer boundaries)%n", Bytes.human(plan.workBytes()));
    }

    /** What llama.cpp's converter and llama-quantize would make of this model. */
    static GgufPlan ggufPlan(ModelConfig c, LlamaFileType type) {
        GgufModelDesc desc = GgufModelDesc.standard(GgufNames.architecture(c.modelType()), c.numLayers(), c.numHeads(), c.numKvHeads(), c.hiddenSize(),
                c.intermediateSize(), c.vocabSize(), c.tieWordEmbeddings(), c.headDim(),
                c.rope().type().equals("llama3"));
        return GgufPlan.of(desc, type);
    }

    private String toJson(ModelInventory inventory, MemoryPlan plan, GgufPlan gguf) throws Exception {
        ObjectMapper mapper = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
        ModelConfig c = inventory.config();
        ObjectNode root = mapper.createObjectNode();
        root.put("model", model);
        root.set("config", mapper.valueToTree(c));
        root.put("parameters", inventory.parameterCount());
        ObjectNode bytes = root.putObject("bytes_by_dtype");
        inventory.bytesByDtype().forEach((k, v) -> bytes.put(k.name(), v));
        ArrayNode modules = root.putArray("modules");
        for (var layer : inventory.layers()) {
            for (LinearModule m : layer) {
                ObjectNode n = modules.addObject();
                n.put("name", m.name());
                n.put("layer", m.layer());
                n.put("in_features", m.inFeatures());
                n.put("out_features", m.outFeatures());
                n.put("bias", m.bias());
                n.put("input", m.input().name());
                n.put("shard", inventory.shardOf(m.weight()));
                n.put("dtype", inventory.tensors().get(m.weight()).dtype().name());
            }
        }
        ObjectNode memory = root.putObject("memory_plan");
        memory.put("samples", plan.samples());
        memory.put("seq_len", plan.seqLen());
        memory.put("partitions", plan.partitions());
        memory.put("samples_per_partition", plan.samplesPerPartition());
        memory.put("largest_layer_fp32_bytes", plan.largestLayerFp32Bytes());
        memory.put("hidden_state_bytes_per_sample", plan.hiddenStateBytesPerSample());
        ObjectNode hessians = memory.putObject("hessian_bytes");
        plan.hessianBytes().forEach((k, v) -> hessians.put(k.name(), v));
        memory.put("activation_bytes_per_sample", plan.activationBytesPerSample());
        memory.put("executor_bytes", plan.executorBytes());
        memory.put("driver_bytes", plan.driverBytes());
        memory.put("work_bytes", plan.workBytes());
        if (plan.moePassBytes() > 0) {
            memory.put("moe_hessian_pass_bytes", plan.moePassBytes());
        }
        if (gguf != null) {
            ObjectNode g = root.putObject("gguf_plan");
            g.put("file_type", gguf.fileType().name());
            g.put("bits_per_weight", gguf.bitsPerWeight());
            g.put("tensor_bytes", gguf.tensorBytes());
            ArrayNode tensors = g.putArray("tensors");
            for (GgufTensor t : gguf.tensors()) {
                tensors.addObject().put("name", t.name()).put("type", t.type().name()).put("bytes", t.bytes());
            }
        }
        return mapper.writeValueAsString(root);
    }

    private static String trim(double v) {
        return v == Math.rint(v) ? String.format(Locale.ROOT, "%.0f", v) : String.valueOf(v);
    }
}
