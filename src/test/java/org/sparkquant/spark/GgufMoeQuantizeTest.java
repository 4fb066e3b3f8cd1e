package org.sparkquant.spark;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.sparkquant.format.gguf.GgufExporter;
import org.sparkquant.format.gguf.GgufMetadata;
import org.sparkquant.format.gguf.GgufMoeModels;
import org.sparkquant.format.gguf.GgufRecipe;
import org.sparkquant.format.gguf.LlamaFileType;
import org.sparkquant.format.gguf.RtnProducer;
import org.sparkquant.io.Storage;
import org.sparkquant.io.TensorStore;
import org.sparkquant.cli.CliRun;

/**
 * {@code sparkquant quantize --format gguf} on mixture-of-experts checkpoints: every expert's projections are
 * quantized by the executors and stacked into llama.cpp's 3-D expert tensors. Without calibration (round to
 * nearest) the file is byte-identical to the standalone exporter, which GgufMoeTest proves equal to llama-quantize.
 */
class GgufMoeQuantizeTest {
    @TempDir
    static Path tmp;

    @Test
    void rtnOfEveryArchitectureIsTheExportersBytes() throws Exception {
        for (String kind : GgufMoeModels.ALL) {
            Path model = GgufMoeModels.write(tmp, kind);
            for (LlamaFileType type : List.of(LlamaFileType.Q4_K_M, LlamaFileType.Q8_0)) {
                Path out = tmp.resolve(kind + "-" + type + ".gguf");
                CliRun run = GgufQuantizeTest.quantize(model, out, "local[2]", "--format", "gguf", "--gguf-type",
                        type.name(), "--method", "rtn");
                assertEquals(0, run.exitCode(), run.err());
                checkReport(out, kind);
                try (TensorStore store = TensorStore.open(Storage.local(), model.toString())) {
                    ByteArrayOutputStream expected = new ByteArrayOutputStream();
                    GgufExporter.forModel(Storage.local(), model.toString(), store, type, GgufRecipe.Options.DEFAULT,
                            GgufMetadata.Options.DEFAULT).write(expected, new RtnProducer(store));
                    assertArrayEquals(expected.toByteArray(), Files.readAllBytes(out), kind + " " + type);
                }
            }
        }
    }

    /** The report lists the last expert's down projection of the last layer as a quantized module. */
    private static void checkReport(Path out, String kind) throws Exception {
        String text = GgufQuantizeTest.report(out).toString();
        int experts = GgufMoeModels.experts(kind);
        String last = kind.equals("mixtral") ? "block_sparse_moe.experts." + (experts - 1) + ".w2"
                : "mlp.experts." + (experts - 1) + ".down_proj";
        assertTrue(text.contains("model.layers.1." + last), kind + ": " + last + " in the report");
    }
}
