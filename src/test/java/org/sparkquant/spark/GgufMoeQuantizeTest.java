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
 * exporter's bytes, the bytes do not depend on the cores, gguf-py reads the file to Java's values, and llama.cpp
 * runs it.
 */
class GgufMoeQuantizeTest {
    @TempDir
    static Path tmp;

    @Test
    void rtnOfEveryArchitectureIsTheExportersBytes() throws Exception {
        for (String kind : GgufMoeModels.ALL) {
            Path model = GgufMoeModels.write(tmp, kind);
            for (LlamaFileType type : kind.equals("qwen3moe") ? List.of(LlamaFileType.Q4_K_M, LlamaFileType.Q8_0)
                    : List.of(LlamaFileType.Q4_K_M)) {
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
        // mixtral: permuted q/k, 8-expert rules; qwen2moe: routed and shared experts (qwen3moe: RTN test above)
        for (String kind : List.of("mixtral", "qwen2moe")) {
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
            if (kind.equals("qwen2moe")) {
                llamaCppRuns(model, out, rtnFile(model, type));
            }
            if (kind.equals("qwen2moe")) {
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

    private static Path rtnFile(Path model, LlamaFileType type) throws Exception {
        Path out = tmp.resolve(model.getFileName() + "-exporter-" + type + ".gguf");
        try (TensorStore store = TensorStore.open(Storage.local(), model.toString())) {
            GgufExporter.forModel(Storage.local(), model.toString(), store, type, GgufRecipe.Options.DEFAULT,
                    GgufMetadata.Options.DEFAULT).write(Storage.local(), out.toString(), new RtnProducer(store));
        }
        return out;
    }

    /**
     * The GPTQ file runs in llama.cpp (when its tools and transformers are here), with logits as close to
     * transformers' dense logits as the RTN file's (a loose bound: random weights, unrelated calibration text).
     */
    private static void llamaCppRuns(Path model, Path gptq, Path rtn) throws Exception {
        var llama = org.sparkquant.format.gguf.LlamaCpp.available();
        var python = TestPython.interpreter();
        if (llama.isEmpty() || python.isEmpty()
                || TestPython.run(python.get(), List.of("-c", "import torch, transformers"), 120).exitCode() != 0) {
            System.out.println("llama.cpp or transformers unavailable: the GPTQ file is not run in llama.cpp");
            return;
        }
        int[] seq = new int[40];
        for (int i = 0; i < seq.length; i++) {
            seq[i] = (i * 53 + 7) % 420;
        }
        Path ids = tmp.resolve("llama-ids.bin");
        java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate(4 * seq.length).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        b.asIntBuffer().put(seq);
        Files.write(ids, b.array());
        Path hf = tmp.resolve("llama-hf.f32");
        TestPython.check(python.get(), List.of("python/hf_logits.py", model.toString(), ids.toString(), hf.toString()),
                600);
        byte[] raw = Files.readAllBytes(hf);
        float[] expected = new float[raw.length / 4];
        java.nio.ByteBuffer.wrap(raw).order(java.nio.ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(expected);
        float[] g = llama.get().logits(gptq, seq);
        float[] r = llama.get().logits(rtn, seq);
        assertEquals(expected.length, g.length);
        double dg = 0;
        double dr = 0;
        for (int i = 0; i < expected.length; i++) {
            assertTrue(Float.isFinite(g[i]), "finite logits");
            dg += (g[i] - expected[i]) * (g[i] - expected[i]);
            dr += (r[i] - expected[i]) * (r[i] - expected[i]);
        }
        System.out.printf("%s: llama.cpp logits MSE vs dense, GPTQ Q4_K_M %.4e, RTN Q4_K_M %.4e%n",
                model.getFileName(), dg / expected.length, dr / expected.length);
        assertTrue(dg < 2 * dr, "GPTQ logits far from the dense model's: " + dg + " vs RTN " + dr);
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
