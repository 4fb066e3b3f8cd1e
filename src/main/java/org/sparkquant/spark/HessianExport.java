package org.sparkquant.spark;

import java.io.IOException;
import java.io.OutputStream;
import java.util.List;
import java.util.Map;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.sparkquant.SparkQuantException;
import org.sparkquant.gptq.Hessian;
import org.sparkquant.gptq.Precision;
import org.sparkquant.io.Npy;
import org.sparkquant.io.Storage;
import org.sparkquant.model.LinearModule;
import org.sparkquant.model.ModelInventory;

/**
 * {@code --save-hessians DIR}: each distinct module input's Hessian as a {@code .npy} in the solver's precision
 * (2/n·Σxᵀx before damping), and {@code manifest.json} in the {@code gptq-ref-hessians-v1} format naming the file of every module
 * (modules that share an input share a file).
 */
final class HessianExport {
    private HessianExport() {}

    static String fileName(int layer, LinearModule.Input input) {
        return String.format("layer-%03d-%s.npy", layer, input.name().toLowerCase(java.util.Locale.ROOT));
    }

    /**
     * Writes H in the precision the solver used: fp64 with {@code --precision fp64}, so that an outside tool can
     * re-solve it bit for bit; fp32 otherwise (the reference's precision).
     */
    static void write(Storage storage, String directory, int layer, LinearModule.Input input, Hessian h,
            Precision precision) {
        int n = h.columns();
        if ((long) n * n > Integer.MAX_VALUE - 8) {
            throw SparkQuantException.badInput("--save-hessians: a " + n + "-wide Hessian is too large for one .npy");
        }
        boolean f64 = precision == Precision.FP64;
        float[] data32 = f64 ? null : new float[n * n];
        double[] data64 = f64 ? new double[n * n] : null;
        double[] row = new double[n];
        for (int i = 0; i < n; i++) {
            h.row(i, row);
            if (f64) {
                System.arraycopy(row, 0, data64, i * n, n);
            } else {
                for (int j = 0; j < n; j++) {
                    data32[i * n + j] = (float) row[j];
                }
            }
        }
        String uri = Storage.resolve(directory, fileName(layer, input));
        try (OutputStream out = storage.create(uri)) {
            if (f64) {
                Npy.write(out, data64, n, n);
            } else {
                Npy.write(out, data32, n, n);
            }
        } catch (IOException e) {
            throw SparkQuantException.badInput("cannot write " + uri + ": " + e.getMessage());
        }
    }

    static String dtype(Precision precision) {
        return precision == Precision.FP64 ? "float64" : "float32";
    }

    /** The manifest, written by the driver once every layer is done. */
    static void manifest(Storage storage, String directory, ModelInventory inventory, List<String> quantized,
            Map<String, InputSummary> inputs, Precision precision) {
        ObjectMapper mapper = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
        ObjectNode root = mapper.createObjectNode();
        root.put("format", "gptq-ref-hessians-v1");
        ObjectNode modules = root.putObject("modules");
        for (List<LinearModule> layer : inventory.layers()) {
            for (LinearModule m : layer) {
                InputSummary s = inputs.get(m.layer() + "/" + m.input());
                if (!quantized.contains(m.name()) || s == null) {
                    continue;
                }
                ObjectNode e = modules.putObject(m.name());
                e.put("file", fileName(m.layer(), m.input()));
                e.put("nsamples", s.sequences());
                e.putArray("shape").add(s.columns()).add(s.columns());
                e.put("dtype", dtype(precision));
            }
        }
        try {
            storage.writeString(Storage.resolve(directory, "manifest.json"), mapper.writeValueAsString(root) + "\n");
        } catch (IOException e) {
            throw SparkQuantException.badInput("cannot write " + directory + "/manifest.json: " + e.getMessage());
        }
    }
}
