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
import org.sparkquant.io.Npy;
import org.sparkquant.io.Storage;
import org.sparkquant.model.LinearModule;
import org.sparkquant.model.ModelInventory;

/**
 * {@code --save-hessians DIR}: each distinct module input's Hessian as an fp32 {@code .npy} (2/n·Σxᵀx before
 * damping), and {@code manifest.json} in the {@code gptq-ref-hessians-v1} format naming the file of every module
 * (modules that share an input share a file).
 */
final class HessianExport {
    private HessianExport() {}

    static String fileName(int layer, LinearModule.Input input) {
        return String.format("layer-%03d-%s.npy", layer, input.name().toLowerCase(java.util.Locale.ROOT));
    }

    static void write(Storage storage, String directory, int layer, LinearModule.Input input, Hessian h) {
        int n = h.columns();
        if ((long) n * n > Integer.MAX_VALUE - 8) {
            throw SparkQuantException.badInput("--save-hessians: a " + n + "-wide Hessian is too large for one .npy");
        }
        float[] data = new float[n * n];
        double[] row = new double[n];
        for (int i = 0; i < n; i++) {
            h.row(i, row);
            for (int j = 0; j < n; j++) {
                data[i * n + j] = (float) row[j];
            }
        }
        String uri = Storage.resolve(directory, fileName(layer, input));
        try (OutputStream out = storage.create(uri)) {
            Npy.write(out, data, n, n);
        } catch (IOException e) {
            throw SparkQuantException.badInput("cannot write " + uri + ": " + e.getMessage());
        }
    }

    /** The manifest, written by the driver once every layer is done. */
    static void manifest(Storage storage, String directory, ModelInventory inventory, List<String> quantized,
            Map<String, QuantizePipeline.InputSummary> inputs) {
        ObjectMapper mapper = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
        ObjectNode root = mapper.createObjectNode();
        root.put("format", "gptq-ref-hessians-v1");
        ObjectNode modules = root.putObject("modules");
        for (List<LinearModule> layer : inventory.layers()) {
            for (LinearModule m : layer) {
                QuantizePipeline.InputSummary s = inputs.get(m.layer() + "/" + m.input());
                if (!quantized.contains(m.name()) || s == null) {
                    continue;
                }
                ObjectNode e = modules.putObject(m.name());
                e.put("file", fileName(m.layer(), m.input()));
                e.put("nsamples", s.sequences());
                e.putArray("shape").add(s.columns()).add(s.columns());
                e.put("dtype", "float32");
            }
        }
        try {
            storage.writeString(Storage.resolve(directory, "manifest.json"), mapper.writeValueAsString(root) + "\n");
        } catch (IOException e) {
            throw SparkQuantException.badInput("cannot write " + directory + "/manifest.json: " + e.getMessage());
        }
    }
}
