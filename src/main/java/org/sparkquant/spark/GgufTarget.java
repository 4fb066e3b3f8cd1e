package org.sparkquant.spark;

import java.io.BufferedOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.security.DigestOutputStream;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;

import com.fasterxml.jackson.databind.node.ObjectNode;
import org.sparkquant.SparkQuantException;
import org.sparkquant.format.gguf.ExportTensor;
import org.sparkquant.format.gguf.GgmlGptq;
import org.sparkquant.format.gguf.GgmlQuantizedRows;
import org.sparkquant.format.gguf.GgmlType;
import org.sparkquant.format.gguf.GgufExporter;
import org.sparkquant.format.gguf.GgufImatrix;
import org.sparkquant.format.gguf.GgufMetadata;
import org.sparkquant.format.gguf.GgufNames;
import org.sparkquant.format.gguf.GgufRecipe;
import org.sparkquant.format.gguf.RtnProducer;
import org.sparkquant.format.gguf.TensorProducer;

import org.sparkquant.gptq.GptqPreparation;
import org.sparkquant.gptq.Hessian;
import org.sparkquant.gptq.QuantizedBlock;
import org.sparkquant.io.OutputManifest;
import org.sparkquant.io.Storage;
import org.sparkquant.io.TensorStore;
import org.sparkquant.model.LinearModule;
import org.sparkquant.model.ModelInventory;

/**
 * The GGUF output of a quantization run ({@code --format gguf}): which decoder modules the executors quantize into
 * which ggml type (llama.cpp's recipe for the file type, {@link GgufRecipe}), and the final file, assembled on the
 * driver by streaming {@link GgufExporter} over the staged blocks (one block of rows in memory at a time); the
 * tensors the executors do not quantize (token embedding, output matrix, norms, modules whose type is not a block
 * type) are quantized on the way by {@link RtnProducer}, exactly as llama-quantize would.
 *
 * <p>The file is written under a temporary name and renamed into place last: a GGUF file at the output URI is always
 * complete. Beside it go {@code NAME.sha256} ({@code sha256sum} format, checked by {@code sparkquant verify}) and
 * {@code NAME.report.json} and {@code NAME.report.html}; the work directory is {@code NAME._work}.
 */
final class GgufTarget implements OutputTarget {
    private static final long serialVersionUID = 1L;
    static final String REPORT_SUFFIX = ".report.json";
    static final String REPORT_HTML_SUFFIX = ".report.html";

    private final QuantizeJob job;
    /** The planned ggml type of every module the executors quantize (shipped to them with the target). */
    private final LinkedHashMap<String, GgmlType> types = new LinkedHashMap<>();
    /** The driver's plan, made once by {@link #plan} and written by {@link #commit}. */
    private transient TensorStore store;
    private transient GgufExporter exporter;

    GgufTarget(QuantizeJob job) {
        this.job = job;
    }

    @Override
    public WorkDir workDir(Storage storage) {
        return WorkDir.forFile(storage, job.output());
    }

    @Override
    public String leaseUri() {
        return job.output() + ".lease.json";
    }

    /** A file at the URI is a finished output (it is renamed into place last); {@code NAME._work} an unfinished run. */
    @Override
    public void prepare(Storage storage, WorkDir work, boolean overwrite, boolean resume) {
        String out = job.output();
        if (storage.exists(out) && storage.isDirectory(out)) {
            throw SparkQuantException.badInput(out + " is a directory; a GGUF output is a file URI such as "
                    + Storage.resolve(out, "model.gguf"));
        }
        boolean continuing = resume && work.exists(ResumePoint.RUN);
        if (storage.exists(out) && !overwrite && !continuing) {
            throw SparkQuantException.badInput(out + " already exists; use --overwrite to replace it");
        }
        if (overwrite && !continuing) {
            work.deleteAll(); // a finished file stays until the new one is renamed over it
        }
    }

    @Override
    public List<LinearModule> plan(Storage storage, ModelInventory inventory, Progress progress) {
        close();
        store = TensorStore.open(storage, job.model());
        exporter = exporter(storage, job, store);
        types.clear();
        types.putAll(moduleTypes(exporter, inventory));
        List<LinearModule> quantized = inventory.layers().stream().flatMap(List::stream)
                .filter(m -> types.containsKey(m.name())).toList();
        progress.message("GGUF " + job.ggufType() + ": " + exporter.tensors().size() + " tensors, "
                + quantized.size() + " decoder matrices quantized by the executors, " + String.format(
                java.util.Locale.ROOT, "%.2f", exporter.layout().totalSize() / 1e6) + " MB");
        return quantized;
    }

    @Override
    public QuantizedBlock rtn(float[] rows, ModuleBlocks.Block block, Hessian h) {
        GgmlType type = types.get(block.module().name());
        return GgmlGptq.rtn(rows, block.rows(), block.module().inFeatures(), type, importance(h));
    }

    @Override
    public QuantizedBlock gptq(float[] rows, ModuleBlocks.Block block, Hessian h, GptqPreparation prep) {
        GgmlType type = types.get(block.module().name());
        return GgmlGptq.quantize(rows, block.rows(), block.r0(), prep, type, importance(h));
    }

    /** llama.cpp's imatrix statistic, diag(H), when --importance hessian-diag asks for it. */
    private float[] importance(Hessian h) {
        return h != null && job.hessianImportance() ? GgmlGptq.hessianDiagonalImportance(h) : null;
    }

    @Override
    public ModuleType type(LinearModule module) {
        return new ModuleType(0, 0, types.get(module.name()).name());
    }

    @Override
    public void describe(ObjectNode report) {
        report.put("output_format", "gguf");
        report.put("gguf_type", job.ggufType().name());
        report.put("importance", job.hessianImportance() ? "hessian-diag" : "none");
    }

    @Override
    public List<String> commit(QuantizeRun run, ModelInventory inventory, QuantizeReport report, Progress progress) {
        Storage storage = run.storage();
        progress.step(-1, "write GGUF " + job.ggufType());
        try {
            // the report is written once the file's bytes exist, before the file is renamed into place
            write(storage, run.work(), inventory,
                    b -> Staged.<StagedBlock<GgmlQuantizedRows>>readObject(storage, run.work().path(b.stagedPath()))
                            .rows(),
                    () -> report.write(storage, job.output() + REPORT_SUFFIX, job.output() + REPORT_HTML_SUFFIX,
                            progress));
        } finally {
            close();
        }
        return List.of(job.output());
    }

    @Override
    public void close() {
        if (store != null) {
            store.close();
        }
        store = null;
        exporter = null;
    }

    static GgufRecipe.Options recipe(QuantizeJob job) {
        return GgufRecipe.Options.DEFAULT.withImatrix(job.hessianImportance());
    }

    static GgufExporter exporter(Storage storage, QuantizeJob job, TensorStore store) {
        return GgufExporter.forModel(storage, job.model(), store, job.ggufType(), recipe(job),
                GgufMetadata.Options.DEFAULT);
    }

    /**
     * The ggml type of every decoder module the executors quantize (module name → type), in inventory order: those
     * the recipe gives a block type whose block divides the module's input width.
     */
    static LinkedHashMap<String, GgmlType> moduleTypes(GgufExporter exporter, ModelInventory inventory) {
        Map<String, ExportTensor> byHf = new HashMap<>();
        for (ExportTensor t : exporter.tensors()) {
            for (String hf : t.sources()) {
                byHf.put(hf, t); // an expert's weight: its slice of the stacked tensor
            }
        }
        LinkedHashMap<String, GgmlType> out = new LinkedHashMap<>();
        for (List<LinearModule> layer : inventory.layers()) {
            for (LinearModule m : layer) {
                ExportTensor t = byHf.get(m.weight());
                if (t != null && t.quantized() && m.inFeatures() % t.type().blockSize() == 0) {
                    out.put(m.name(), t.type());
                }
            }
        }
        return out;
    }

    /** Reads a staged GGUF block of a module. */
    interface Blocks {
        GgmlQuantizedRows read(ModuleBlocks.Block block);
    }

    /**
     * Streams the tensors: staged modules row by row in GGUF order (q/k rows of llama permuted within each head, so
     * the blocks a head needs are the only ones held; a stacked expert tensor expert after expert, each from its own
     * module), all others through {@link RtnProducer}.
     */
    static TensorProducer producer(TensorStore store, ModelInventory inventory, Map<String, GgmlType> types,
            Blocks blocks) {
        Map<String, LinearModule> staged = new HashMap<>();
        for (List<LinearModule> layer : inventory.layers()) {
            for (LinearModule m : layer) {
                if (types.containsKey(m.name())) {
                    staged.put(m.weight(), m);
                }
            }
        }
        RtnProducer rtn = new RtnProducer(store);
        return (t, sink) -> {
            if (t.stacked()) {
                List<LinearModule> experts = t.sources().stream().map(staged::get).toList();
                if (experts.stream().allMatch(java.util.Objects::isNull)) {
                    rtn.produce(t, sink);
                    return;
                }
                // the experts' slices in order, each from its own module's staged blocks
                for (LinearModule m : experts) {
                    if (m == null) {
                        throw SparkQuantException.internal("GGUF plan of " + t + " has experts that were not"
                                + " quantized", null);
                    }
                    check(t, m, types, t.rowsPerExpert());
                    writeRows(m, t.rowsPerExpert(), 1, g -> g, blocks, sink);
                }
                return;
            }
            LinearModule m = t.hfName() == null ? null : staged.get(t.hfName());
            if (m == null) {
                rtn.produce(t, sink);
                return;
            }
            check(t, m, types, t.rows());
            writeRows(m, t.rows(), t.rowGroup(), t::sourceRow, blocks, sink);
        };
    }

    private static void check(ExportTensor t, LinearModule m, Map<String, GgmlType> types, int rows) {
        if (t.type() != types.get(m.name()) || rows != m.outFeatures() || t.rowLength() != m.inFeatures()) {
            throw SparkQuantException.internal("GGUF plan of " + t + " does not match the staged " + m.name()
                    + " (" + types.get(m.name()) + ")", null);
        }
    }

    /**
     * Writes a module's {@code rows} staged rows in GGUF order: GGUF row g holds the module's row
     * {@code sourceRow(g)}, and groups of {@code group} rows read one contiguous range of source rows (a head of a
     * permuted q/k), so only the blocks a group needs are held.
     */
    private static void writeRows(LinearModule m, int rows, int group, java.util.function.IntUnaryOperator sourceRow,
            Blocks blocks, TensorProducer.Sink sink) throws IOException {
        List<ModuleBlocks.Block> list = ModuleBlocks.of(m).blocks();
        int per = ModuleBlocks.of(m).rowsPerBlock();
        Map<Integer, GgmlQuantizedRows> held = new HashMap<>();
        for (int g0 = 0; g0 < rows; g0 += group) {
            int g1 = Math.min(rows, g0 + group);
            // source rows of a group are the same range [g0, g1), so blocks before it are done with
            int first = g0 / per;
            held.keySet().removeIf(b -> b < first);
            for (int g = g0; g < g1; g++) {
                int src = sourceRow.applyAsInt(g);
                GgmlQuantizedRows q = held.computeIfAbsent(src / per, b -> blocks.read(list.get(b)));
                sink.write(q.row(src - (src / per) * per));
            }
        }
    }

    /**
     * Writes the GGUF file under a temporary name in the work directory (which the end of the run, or a resumed
     * run's, removes with whatever a halted run left there), then its {@code .sha256}, runs {@code beforeCommit}, and
     * renames the file to {@code job.output()}; returns the file's size. Uses the plan made by {@link #plan}. Each
     * step is a state change of {@code work} ({@link WorkDir#step}).
     */
    private long write(Storage storage, WorkDir work, ModelInventory inventory, Blocks blocks, Runnable beforeCommit) {
        String out = job.output();
        String temp = work.path(new org.apache.hadoop.fs.Path(out).getName() + ".tmp-" + UUID.randomUUID());
        work.step("write the temporary file");
        MessageDigest sha;
        try {
            sha = MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
        long size;
        boolean done = false;
        try {
            try (OutputStream os = new DigestOutputStream(new BufferedOutputStream(storage.create(temp), 1 << 20),
                    sha)) {
                exporter.write(os, producer(store, inventory, types, blocks));
            }
            size = exporter.layout().totalSize();
            done = true;
        } catch (IOException e) {
            throw Storage.error("cannot write", temp, e);
        } finally {
            if (!done) {
                storage.delete(temp);
            }
        }
        long written = storage.length(temp);
        if (written != size) {
            storage.delete(temp);
            throw SparkQuantException.internal(temp + " has " + written + " bytes, expected " + size, null);
        }
        work.step("write " + OutputManifest.FILE_CHECKSUM_SUFFIX);
        OutputManifest.writeFileChecksum(storage, out, sha.digest());
        work.step("write the report");
        beforeCommit.run();
        work.step("delete the finished file");
        storage.delete(out);
        work.step("rename into place"); // the commit
        storage.rename(temp, out);
        return size;
    }

    /**
     * {@code --export-imatrix}: llama.cpp's imatrix from the run's Hessian diagonals. With H = 2/n·Σxxᵀ over n
     * sequences, Σx² = diag(H)·n/2, over the input's token count. A stacked expert tensor gets one slice per expert,
     * from the tokens routed to it.
     */
    static void writeImatrix(Storage storage, QuantizeJob job, ModelInventory inventory, List<String> modules,
            Map<String, InputSummary> inputs, String architecture) {
        GgufImatrix.Builder builder = GgufImatrix.builder(job.seqLen()).dataset(job.calibration());
        long sequences = 0;
        String arch = GgufNames.architecture(architecture);
        for (List<LinearModule> layer : inventory.layers()) {
            for (LinearModule m : layer) {
                InputSummary s = inputs.get(m.hessianKey());
                int experts = inventory.experts(m.layer());
                if (m.routed() && modules.contains(m.name()) && (s == null || s.diagonal() == null)) {
                    // an expert no token reached: its slice stays, with 0 tokens (llama-quantize then weighs 1)
                    builder.addExpert(GgufNames.ggufName(arch, m.weight()).orElseThrow(), m.expert(), experts,
                            new double[m.inFeatures()], 0);
                    continue;
                }
                if (!modules.contains(m.name()) || s == null || s.diagonal() == null) {
                    continue;
                }
                double[] d = s.diagonal();
                double[] sums = new double[d.length];
                for (int i = 0; i < d.length; i++) {
                    sums[i] = d[i] * s.sequences() / 2.0;
                }
                builder.addHf(arch, m.weight(), experts, sums, s.tokens());
                sequences = Math.max(sequences, s.sequences());
            }
        }
        builder.chunks((int) sequences).build().write(storage, job.exportImatrix());
    }
}
