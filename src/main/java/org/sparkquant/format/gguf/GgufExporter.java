package org.sparkquant.format.gguf;

import java.io.BufferedOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.sparkquant.SparkQuantException;
import org.sparkquant.io.Storage;
import org.sparkquant.io.TensorReader;
import org.sparkquant.io.TensorStore;
import org.sparkquant.model.ModelConfig;
import org.sparkquant.model.ModelInventory;

/**
 * Writes a dense Hugging Face checkpoint as a GGUF file of a {@link LlamaFileType}, streaming: the header (all
 * metadata, tensor names, shapes, types and offsets) is fixed first, then each tensor's data is asked of a
 * {@link TensorProducer} in file order and streamed to the output — no tensor data is ever held beyond what the
 * producer holds for one tensor.
 *
 * <p>The tensors are what convert_hf_to_gguf writes for llama / mistral / mixtral / qwen2 / qwen3 / qwen2_moe /
 * qwen3_moe (names from {@link GgufNames}, q/k rows of llama permuted, rotary inv_freq buffers dropped, a tied
 * lm_head not repeated, each layer's experts stacked into one 3-D tensor per projection, plus Llama 3's generated
 * {@code rope_freqs.weight}), in llama.cpp's loader order (layer, then name: the order
 * llama-quantize writes), typed as llama-quantize would type them ({@link GgufRecipe}: F32 norms, Q6_K output, the
 * _M mixes, fallbacks for rows that do not fit the blocks).
 *
 * <pre>
 * GgufExporter e = GgufExporter.forModel(storage, modelDir, store, LlamaFileType.Q4_K_M, options);
 * e.write(storage, "s3a://bucket/model-Q4_K_M.gguf", new RtnProducer(store));
 * </pre>
 */
public final class GgufExporter {
    private static final Logger LOG = LoggerFactory.getLogger(GgufExporter.class);

    private final ModelConfig config;
    private final LlamaFileType fileType;
    private final List<ExportTensor> tensors;
    private final GgufLayout layout;

    private GgufExporter(ModelConfig config, LlamaFileType fileType, List<ExportTensor> tensors, GgufLayout layout) {
        this.config = config;
        this.fileType = fileType;
        this.tensors = tensors;
        this.layout = layout;
    }

    /**
     * Plans the export of a model directory's checkpoint: metadata from its config and tokenizer files
     * ({@link GgufMetadata#forModel}), tensors from {@code source}.
     */
    public static GgufExporter forModel(Storage storage, String directory, TensorReader source,
            LlamaFileType fileType, GgufRecipe.Options recipe, GgufMetadata.Options options) {
        ModelConfig config = ModelConfig.load(storage, directory);
        Map<String, GgufValue> metadata = GgufMetadata.forModel(storage, directory, config, fileType, options);
        return plan(config, source, metadata, fileType, recipe);
    }

    /** Plans an export with the given metadata (which must hold general.architecture etc.: see {@link GgufMetadata}). */
    public static GgufExporter plan(ModelConfig config, TensorReader source, Map<String, GgufValue> metadata,
            LlamaFileType fileType, GgufRecipe.Options recipe) {
        check(config, source);
        Mapped mapped = map(config, source);
        GgufModelDesc desc = mapped.desc();
        Map<String, String> hfOf = mapped.hfOf();
        Map<String, List<String>> stacked = mapped.stacked();
        float[] ropeFreqs = mapped.ropeFreqs();
        String arch = desc.architecture();
        List<GgufTensor> planned = GgufRecipe.plan(desc, fileType, recipe);
        List<ExportTensor> tensors = new ArrayList<>();
        for (GgufTensor t : planned) {
            String hf = hfOf.get(t.name());
            if (stacked.containsKey(t.name())) {
                tensors.add(new ExportTensor(tensors.size(), t, stacked.get(t.name()), 0, null));
            } else if (hf == null) {
                tensors.add(new ExportTensor(tensors.size(), t, List.of(), 0, ropeFreqs));
            } else {
                int heads = GgufNames.ropePermutationHeads(arch, hf, config.numHeads(), config.numKvHeads());
                tensors.add(new ExportTensor(tensors.size(), t, hf, heads, null));
            }
        }
        Map<String, GgufValue> md = new LinkedHashMap<>(metadata);
        md.put("general.file_type", GgufValue.u32(fileType.id()));
        GgufLayout layout = GgufLayout.of(md, planned);
        return new GgufExporter(config, fileType, Collections.unmodifiableList(tensors), layout);
    }

    /** A checkpoint's tensors as GGUF tensors: the model description, the source of each tensor. */
    private record Mapped(GgufModelDesc desc, Map<String, String> hfOf, Map<String, List<String>> stacked,
            float[] ropeFreqs) {}

    /**
     * What the recipe sees of a checkpoint (GGUF names and shapes, experts stacked), without planning types: e.g.
     * for {@code inspect}'s preview of a mixture-of-experts model.
     */
    public static GgufModelDesc describe(ModelConfig config, TensorReader source) {
        return map(config, source).desc();
    }

    private static Mapped map(ModelConfig config, TensorReader source) {
        String arch = GgufNames.architecture(config.modelType());
        Map<String, String> hfOf = new HashMap<>();
        Map<String, java.util.TreeMap<Integer, String>> expertsOf = new HashMap<>();
        List<GgufModelDesc.Shape> shapes = new ArrayList<>();
        for (String hf : source.names()) {
            if (hf.equals("lm_head.weight") && config.tieWordEmbeddings()) {
                continue; // tied: llama.cpp reuses token_embd
            }
            Optional<GgufNames.Slot> slot = GgufNames.slot(arch, hf);
            if (slot.isEmpty()) {
                continue;
            }
            if (slot.get().stacked()) {
                expertsOf.computeIfAbsent(slot.get().name(), k -> new java.util.TreeMap<>())
                        .put(slot.get().expert(), hf);
                continue;
            }
            long[] shape = source.shape(hf);
            long[] ne = new long[shape.length];
            for (int i = 0; i < shape.length; i++) {
                ne[i] = shape[shape.length - 1 - i];
            }
            hfOf.put(slot.get().name(), hf);
            shapes.add(new GgufModelDesc.Shape(slot.get().name(), ne));
        }
        Map<String, List<String>> stacked = new HashMap<>();
        int nExpert = 0;
        for (Map.Entry<String, java.util.TreeMap<Integer, String>> e : expertsOf.entrySet()) {
            List<String> sources = stackedSources(source, e.getKey(), e.getValue());
            long[] shape = source.shape(sources.get(0));
            stacked.put(e.getKey(), sources);
            shapes.add(new GgufModelDesc.Shape(e.getKey(), new long[] {shape[1], shape[0], sources.size()}));
            nExpert = Math.max(nExpert, sources.size());
        }
        float[] ropeFreqs = GgufMetadata.ropeFreqs(config);
        if (ropeFreqs != null) {
            shapes.add(new GgufModelDesc.Shape("rope_freqs.weight", new long[] {ropeFreqs.length}));
        }
        GgufModelDesc desc = new GgufModelDesc(arch, config.numLayers(), config.numHeads(), config.numKvHeads(),
                config.hiddenSize(), config.intermediateSize(), config.vocabSize(), !hfOf.containsKey("output.weight"),
                shapes, nExpert);
        return new Mapped(desc, hfOf, stacked, ropeFreqs);
    }

    /**
     * The experts' source tensors of a stacked tensor in expert order: experts 0..n-1 all present, each a 2-D tensor
     * of the same shape.
     */
    private static List<String> stackedSources(TensorReader source, String gguf, java.util.TreeMap<Integer, String> byExpert) {
        List<String> out = new ArrayList<>(byExpert.size());
        long[] first = null;
        for (Map.Entry<Integer, String> e : byExpert.entrySet()) {
            if (e.getKey() != out.size()) {
                throw SparkQuantException.badInput(source.source() + ": expert " + out.size() + " of " + gguf
                        + " is missing (found " + e.getValue() + ")");
            }
            long[] shape = source.shape(e.getValue());
            if (first == null) {
                first = shape;
            }
            if (shape.length != 2 || !Arrays.equals(shape, first)) {
                throw SparkQuantException.badInput(source.source() + ": tensor '" + e.getValue() + "' has shape "
                        + Arrays.toString(shape) + ", expected a 2-D shape like the first expert's "
                        + Arrays.toString(first));
            }
            out.add(e.getValue());
        }
        return out;
    }

    private static void check(ModelConfig config, TensorReader source) {
        if (source instanceof TensorStore store) {
            ModelInventory.of(config, store); // names the first missing or misshapen tensor
            return;
        }
        for (String name : ModelInventory.of(config).requiredTensors()) {
            if (!source.contains(name)) {
                throw SparkQuantException.badInput(source.source() + ": missing tensor '" + name + "'");
            }
        }
    }

    public ModelConfig config() {
        return config;
    }

    public LlamaFileType fileType() {
        return fileType;
    }

    /** The tensors in file order. */
    public List<ExportTensor> tensors() {
        return tensors;
    }

    public ExportTensor tensor(String ggufName) {
        for (ExportTensor t : tensors) {
            if (t.name().equals(ggufName)) {
                return t;
            }
        }
        throw new IllegalArgumentException("no tensor " + ggufName + " in the export");
    }

    /** The file's layout: header bytes, offsets, total size. */
    public GgufLayout layout() {
        return layout;
    }

    public Map<String, GgufValue> metadata() {
        return layout.metadata();
    }

    /**
     * Writes the file to a {@link Storage} URI (any Hadoop file system); a partly written file is deleted when the
     * export fails.
     */
    public void write(Storage storage, String uri, TensorProducer producer) {
        boolean done = false;
        try (OutputStream out = new BufferedOutputStream(storage.create(uri), 1 << 20)) {
            write(out, producer);
            done = true;
        } catch (IOException e) {
            throw SparkQuantException.badInput("cannot write " + uri + ": " + e.getMessage(), e);
        } finally {
            if (!done) {
                try {
                    storage.delete(uri);
                } catch (RuntimeException ignored) {
                    // the original failure matters more
                }
            }
        }
    }

    /** Streams the file to {@code out} (which is closed). */
    public void write(OutputStream out, TensorProducer producer) throws IOException {
        long start = System.nanoTime();
        try (GgufWriter w = GgufWriter.create(out, layout)) {
            for (ExportTensor t : tensors) {
                w.beginTensor(t.name());
                producer.produce(t, w::write);
                w.endTensor();
                LOG.debug("wrote {} ({} bytes)", t, t.bytes());
            }
        }
        LOG.info("GGUF {}: {} tensors, {} bytes in {} s", fileType, tensors.size(), layout.totalSize(),
                String.format("%.1f", (System.nanoTime() - start) / 1e9));
    }

    @Override
    public String toString() {
        return "GgufExporter" + Arrays.asList(fileType, tensors.size() + " tensors", layout.totalSize() + " bytes");
    }
}
