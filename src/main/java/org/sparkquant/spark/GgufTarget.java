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

import org.sparkquant.SparkQuantException;
import org.sparkquant.format.gguf.ExportTensor;
import org.sparkquant.format.gguf.GgmlType;
import org.sparkquant.format.gguf.GgufExporter;
import org.sparkquant.format.gguf.GgufImatrix;
import org.sparkquant.format.gguf.GgufMetadata;
import org.sparkquant.format.gguf.GgufNames;
import org.sparkquant.format.gguf.GgufRecipe;
import org.sparkquant.format.gguf.RtnProducer;
import org.sparkquant.format.gguf.TensorProducer;
import org.sparkquant.gptq.GgmlQuantizedRows;
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
 * {@code NAME.report.json}; the work directory is {@code NAME._work}.
 */
final class GgufTarget {
    static final String REPORT_SUFFIX = ".report.json";

    private GgufTarget() {}

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
            if (t.hfName() != null) {
                byHf.put(t.hfName(), t);
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
     * the blocks a head needs are the only ones held), all others through {@link RtnProducer}.
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
            LinearModule m = t.hfName() == null ? null : staged.get(t.hfName());
            if (m == null) {
                rtn.produce(t, sink);
                return;
            }
            if (t.type() != types.get(m.name()) || t.rows() != m.outFeatures() || t.rowLength() != m.inFeatures()) {
                throw SparkQuantException.internal("GGUF plan of " + t + " does not match the staged " + m.name()
                        + " (" + types.get(m.name()) + ")", null);
            }
            List<ModuleBlocks.Block> list = ModuleBlocks.of(m).blocks();
            int per = ModuleBlocks.of(m).rowsPerBlock();
            Map<Integer, GgmlQuantizedRows> held = new HashMap<>();
            int group = t.rowGroup();
            for (int g0 = 0; g0 < t.rows(); g0 += group) {
                int g1 = Math.min(t.rows(), g0 + group);
                // source rows of a group are the same range [g0, g1), so blocks before it are done with
                int first = g0 / per;
                held.keySet().removeIf(b -> b < first);
                for (int g = g0; g < g1; g++) {
                    int src = t.sourceRow(g);
                    GgmlQuantizedRows q = held.computeIfAbsent(src / per, b -> blocks.read(list.get(b)));
                    sink.write(q.row(src - (src / per) * per));
                }
            }
        };
    }

    /**
     * Writes the GGUF file under a temporary name, then its {@code .sha256}, runs {@code beforeCommit}, and renames
     * the file to {@code job.output()}; returns the file's size.
     */
    static long write(Storage storage, QuantizeJob job, ModelInventory inventory, Map<String, GgmlType> types,
            Blocks blocks, Runnable beforeCommit) {
        String out = job.output();
        String temp = out + ".tmp-" + UUID.randomUUID();
        MessageDigest sha;
        try {
            sha = MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
        long size;
        boolean done = false;
        try (TensorStore store = TensorStore.open(storage, job.model())) {
            GgufExporter exporter = exporter(storage, job, store);
            if (!moduleTypes(exporter, inventory).equals(types)) {
                throw SparkQuantException.internal("the GGUF plan changed during the run", null);
            }
            try (OutputStream os = new DigestOutputStream(new BufferedOutputStream(storage.create(temp), 1 << 20),
                    sha)) {
                exporter.write(os, producer(store, inventory, types, blocks));
            }
            size = exporter.layout().totalSize();
            done = true;
        } catch (IOException e) {
            throw SparkQuantException.badInput("cannot write " + temp + ": " + e.getMessage(), e);
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
        OutputManifest.writeFileChecksum(storage, out, sha.digest());
        beforeCommit.run();
        storage.delete(out);
        storage.rename(temp, out);
        return size;
    }

    /**
     * {@code --export-imatrix}: llama.cpp's imatrix from the run's Hessian diagonals. With H = 2/n·Σxxᵀ over n
     * sequences, Σx² = diag(H)·n/2, over the input's token count.
     */
    static void writeImatrix(Storage storage, QuantizeJob job, ModelInventory inventory, List<String> modules,
            Map<String, QuantizePipeline.InputSummary> inputs, String architecture) {
        GgufImatrix.Builder builder = GgufImatrix.builder(job.seqLen()).dataset(job.calibration());
        long sequences = 0;
        String arch = GgufNames.architecture(architecture);
        for (List<LinearModule> layer : inventory.layers()) {
            for (LinearModule m : layer) {
                QuantizePipeline.InputSummary s = inputs.get(m.layer() + "/" + m.input());
                if (!modules.contains(m.name()) || s == null || s.diagonal() == null) {
                    continue;
                }
                double[] d = s.diagonal();
                double[] sums = new double[d.length];
                for (int i = 0; i < d.length; i++) {
                    sums[i] = d[i] * s.sequences() / 2.0;
                }
                builder.addHf(arch, m.weight(), sums, s.tokens());
                sequences = Math.max(sequences, s.sequences());
            }
        }
        builder.chunks((int) sequences).build().write(storage, job.exportImatrix());
    }
}
