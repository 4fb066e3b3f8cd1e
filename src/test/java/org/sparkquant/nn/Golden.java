package org.sparkquant.nn;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.sparkquant.io.SafetensorsFile;
import org.sparkquant.io.Storage;
import org.sparkquant.testing.TestPaths;

/** Reference data written by python/hf_golden.py (Hugging Face transformers outputs). */
final class Golden {
    static final List<String> TINY = List.of("llama-gqa-tied-llama3", "llama-untied-linear-bias", "mistral-window",
            "qwen2-bias", "qwen3-qknorm");

    private Golden() {}

    static Path tiny(String name) {
        return TestPaths.fixtures("nn").resolve(name);
    }

    static JsonNode json(Path file) {
        try {
            return new ObjectMapper().readTree(Files.readString(file));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    static int[] ints(JsonNode array) {
        int[] out = new int[array.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = array.get(i).intValue();
        }
        return out;
    }

    static List<int[]> sequences(JsonNode array) {
        List<int[]> out = new ArrayList<>();
        array.forEach(s -> out.add(ints(s)));
        return out;
    }

    static float[] tensor(Path safetensors, String name) {
        try (SafetensorsFile f = SafetensorsFile.open(Storage.local(), safetensors.toString())) {
            return f.readFloats(name);
        }
    }

    /** Rows {@code [r0, r0 + rows)} of a row-major matrix as a flat array. */
    static float[] rows(INDArray m, int r0, int rows) {
        int cols = m.columns();
        float[] all = m.dup('c').data().asFloat();
        float[] out = new float[rows * cols];
        System.arraycopy(all, r0 * cols, out, 0, out.length);
        return out;
    }

    static double maxAbsDiff(float[] expected, float[] actual) {
        assertEquals(expected.length, actual.length, "element count");
        double max = 0;
        for (int i = 0; i < expected.length; i++) {
            max = Math.max(max, Math.abs((double) expected[i] - actual[i]));
        }
        return max;
    }

    static double maxAbs(float[] values) {
        double max = 0;
        for (float v : values) {
            max = Math.max(max, Math.abs(v));
        }
        return max;
    }
}
