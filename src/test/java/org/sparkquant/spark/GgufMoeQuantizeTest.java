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
import org.sparkquant.format.gguf.ExportTensor;
import org.sparkquant.format.gguf.GgufReader;
import org.sparkquant.format.gguf.GgufTensorInfo;
import org.sparkquant.io.Storage;
import org.sparkquant.io.TensorStore;
import org.sparkquant.cli.CliRun;
import org.sparkquant.testing.TestPython;
import org.sparkquant.testing.TestText;

/**
 * {@code sparkquant quantize --format gguf} on mixture-of-experts checkpoints: every expert's projections are
 * quantized by the executors and stacked into llama.cpp's 3-D expert tensors. Without calibration (round to
 * nearest) the file is byte-identical to the standalone exporter, which GgufMoeTest proves equal to llama-quantize.
 * With calibration each expert is GPTQ-coded onto ggml's grid with the Hessian of the tokens routed to it: it
 * beats round-to-nearest into the same type on every expert that has enough tokens, the rest of the file is the
 * exporter's bytes, the bytes do not depend on the cores, and gguf-py reads the file to Java's values.
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

    @Test
    void gptqCodesEveryExpertWithItsOwnHessian() throws Exception {
        Path python = TestPython.require("gguf", "numpy");
        Path calib = tmp.resolve("calib.txt");
        Files.writeString(calib, TestText.sentences(9, 200, "river", "stone", "light", "quant", "block", "scale",
                "grid", "error", "feed", "back"));
        for (String kind : GgufMoeModels.ALL) {
            Path model = GgufMoeModels.write(tmp.resolve("gptq"), kind);
            LlamaFileType type = LlamaFileType.Q4_K_M;
            Path out = tmp.resolve("gptq-" + kind + ".gguf");
            CliRun run = GgufQuantizeTest.quantize(model, out, "local[2]", "--format", "gguf", "--gguf-type",
                    type.name(), "--calibration", calib.toString());
            assertEquals(0, run.exitCode(), run.err());
            int better = 0;
            for (com.fasterxml.jackson.databind.JsonNode m : GgufQuantizeTest.report(out).get("modules")) {
                if (m.has("expert") && m.get("expert").asInt() >= 0 && !m.has("fallback")) {
                    assertTrue(m.get("hessian_error").asDouble() < m.get("rtn_hessian_error").asDouble(),
                            kind + ": GPTQ must beat RTN on " + m);
                    better++;
                }
            }
            assertTrue(better >= GgufMoeModels.experts(kind), kind + ": " + better + " experts checked");
            byte[] gptq = Files.readAllBytes(out);
            try (TensorStore store = TensorStore.open(Storage.local(), model.toString())) {
                GgufExporter plan = GgufExporter.forModel(Storage.local(), model.toString(), store, type,
                        GgufRecipe.Options.DEFAULT, GgufMetadata.Options.DEFAULT);
                ByteArrayOutputStream rtn = new ByteArrayOutputStream();
                plan.write(rtn, new RtnProducer(store));
                byte[] rtnBytes = rtn.toByteArray();
                assertEquals(rtnBytes.length, gptq.length, kind);
                for (ExportTensor t : plan.tensors()) {
                    long at = plan.layout().absoluteOffset(t.index());
                    boolean same = java.util.Arrays.equals(rtnBytes, (int) at, (int) (at + t.bytes()), gptq,
                            (int) at, (int) (at + t.bytes()));
                    boolean decoderMatrix = t.quantized() && t.name().startsWith("blk.");
                    assertEquals(!decoderMatrix, same, kind + " " + t.name()
                            + " differs from RTN exactly when GPTQ quantized it");
                }
            }
            if (kind.equals("qwen3moe")) {
                Path one = tmp.resolve("gptq-" + kind + "-local1.gguf");
                CliRun r1 = GgufQuantizeTest.quantize(model, one, "local[1]", "--format", "gguf", "--gguf-type",
                        type.name(), "--calibration", calib.toString());
                assertEquals(0, r1.exitCode(), r1.err());
                assertArrayEquals(gptq, Files.readAllBytes(one), "local[1] and local[2] write the same bytes");
            }
            Path dir = tmp.resolve("py-" + kind);
            TestPython.check(python, List.of("python/gguf_check.py", out.toString(), dir.toString()), 300);
            try (GgufReader r = GgufReader.open(out)) {
                for (int i = 0; i < r.tensors().size(); i++) {
                    GgufTensorInfo t = r.tensors().get(i);
                    byte[] b = Files.readAllBytes(dir.resolve(i + ".f32"));
                    float[] py = new float[b.length / 4];
                    java.nio.ByteBuffer.wrap(b).order(java.nio.ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(py);
                    assertArrayEquals(py, r.readFloats(t.name()), kind + " " + t.name() + ": gguf-py's values");
                }
            }
        }
    }

    /** --export-imatrix of an MoE model: one slice per expert, with the tokens the report says it was routed. */
    @Test
    void exportedImatrixHasOneSlicePerExpert() throws Exception {
        Path calib = tmp.resolve("calib-imatrix.txt");
        Files.writeString(calib, TestText.sentences(9, 200, "river", "stone", "light", "quant", "block", "scale",
                "grid", "error", "feed", "back"));
        Path model = GgufMoeModels.write(tmp.resolve("imatrix"), "qwen2moe");
        Path out = tmp.resolve("imatrix-qwen2moe.gguf");
        Path imatrix = tmp.resolve("qwen2moe.imatrix.gguf");
        CliRun run = GgufQuantizeTest.quantize(model, out, "local[2]", "--format", "gguf", "--gguf-type", "Q4_K_M",
                "--method", "rtn", "--calibration", calib.toString(), "--export-imatrix", imatrix.toString());
        assertEquals(0, run.exitCode(), run.err());
        org.sparkquant.format.gguf.GgufImatrix m = org.sparkquant.format.gguf.GgufImatrix.read(Storage.local(),
                imatrix.toString());
        int experts = GgufMoeModels.experts("qwen2moe");
        for (com.fasterxml.jackson.databind.JsonNode mod : GgufQuantizeTest.report(out).get("modules")) {
            String name = mod.get("name").asText();
            if (!mod.has("expert") || mod.get("expert").asInt() < 0) {
                continue;
            }
            int e = mod.get("expert").asInt();
            String proj = name.substring(name.lastIndexOf('.') + 1).replace("_proj", "");
            String tensor = "blk." + mod.get("layer").asInt() + ".ffn_" + proj + "_exps.weight";
            org.sparkquant.format.gguf.GgufImatrix.Entry entry = m.entries().get(tensor);
            assertEquals(experts, entry.counts().length, tensor);
            assertEquals(mod.get("tokens").asLong(), entry.counts()[e], tensor + " expert " + e);
        }
        assertEquals(1, m.entries().get("blk.0.ffn_gate_shexp.weight").counts().length, "shared expert: one matrix");
        assertEquals(8L * 48, m.entries().get("blk.0.ffn_gate_shexp.weight").counts()[0], "every token");
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
