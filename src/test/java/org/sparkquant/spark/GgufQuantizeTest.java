package org.sparkquant.spark;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.sparkquant.cli.CliRun;
import org.sparkquant.format.gguf.ExportTensor;
import org.sparkquant.format.gguf.GgmlType;
import org.sparkquant.format.gguf.GgufExporter;
import org.sparkquant.format.gguf.GgufImatrix;
import org.sparkquant.format.gguf.GgufMetadata;
import org.sparkquant.format.gguf.GgufReader;
import org.sparkquant.format.gguf.GgufRecipe;
import org.sparkquant.format.gguf.GgufTensorInfo;
import org.sparkquant.format.gguf.LlamaFileType;
import org.sparkquant.format.gguf.RtnProducer;
import org.sparkquant.io.DType;
import org.sparkquant.io.Storage;
import org.sparkquant.io.TensorStore;
import org.sparkquant.model.SyntheticModel;
import org.sparkquant.testing.Faults;
import org.sparkquant.testing.TestPython;
import org.sparkquant.testing.TestText;

/**
 * {@code quantize --format gguf} end to end on generated models: GPTQ over ggml grids on the executors, assembled
 * into one GGUF file. The RTN output must be byte-identical to the standalone exporter (llama-quantize's bytes, see
 * GgufLlamaCppTest), the GPTQ output identical whatever the cores, task retries or a resumed interruption, and every
 * GPTQ-calibrated matrix must have a lower Hessian-weighted error than RTN into the same type.
 */
class GgufQuantizeTest {
    @TempDir
    static Path tmp;
    /** hidden 256, ffn 768: k-quant super-blocks fit every matrix. */
    static Path small;
    /** hidden 128, ffn 384: rows not divisible by 256, so the recipe falls back to 32-element types. */
    static Path tiny;
    static Path calib;

    @BeforeAll
    static void setUp() throws Exception {
        small = tmp.resolve("small");
        SyntheticModel.write(Storage.local(), small.toString(), SyntheticModel.Preset.SMALL, 2, DType.BF16, 5,
                1L << 30);
        tiny = tmp.resolve("tiny");
        SyntheticModel.write(Storage.local(), tiny.toString(), SyntheticModel.Preset.TINY, 2, DType.BF16, 6,
                1L << 30);
        calib = tmp.resolve("calib.txt");
        Files.writeString(calib, TestText.sentences(9, 200, "river", "stone", "light", "quant", "block", "scale",
                "grid", "error", "feed", "back"));
    }

    static CliRun quantize(Path model, Path out, String master, String... extra) {
        return quantize(FaultHook.NONE, model, out, master, extra);
    }

    static CliRun quantize(FaultHook faults, Path model, Path out, String master, String... extra) {
        List<String> args = new ArrayList<>(List.of("quantize", "--model", model.toString(), "--output",
                out.toString(), "--samples", "8", "--seq-len", "48", "--samples-per-partition", "3",
                "--conf", "spark.master=" + master, "--conf", "spark.ui.enabled=false"));
        args.addAll(List.of(extra));
        return CliRun.withFaults(faults, args.toArray(String[]::new));
    }

    static byte[] bytes(Path p) throws Exception {
        return Files.readAllBytes(p);
    }

    static JsonNode report(Path gguf) throws Exception {
        return new ObjectMapper().readTree(Path.of(gguf + ".report.json").toFile());
    }

    static GgufExporter exporter(Path model, TensorStore store, LlamaFileType type, boolean imatrix) {
        return GgufExporter.forModel(Storage.local(), model.toString(), store, type,
                GgufRecipe.Options.DEFAULT.withImatrix(imatrix), GgufMetadata.Options.DEFAULT);
    }

    @Test
    void gptqK4MIsExactWhateverTheCoresAndBeatsRtnOnEveryMatrix() throws Exception {
        Path one = tmp.resolve("one.gguf");
        CliRun a = quantize(small, one, "local[1]", "--gguf-type", "Q4_K_M", "--calibration", calib.toString());
        assertEquals(0, a.exitCode(), a.err());
        assertTrue(a.out().contains("Q4_K"), a.out());

        Path two = tmp.resolve("two.gguf");
        CliRun b = quantize(Faults.failFirstAttemptOfBlock(0), small, two, "local[2,2]", "--gguf-type", "Q4_K_M",
                "--calibration", calib.toString());
        assertEquals(0, b.exitCode(), b.err());
        assertArrayEquals(bytes(one), bytes(two), "local[1] and local[2] with a failed task attempt");

        // the finished output: the file, its checksum and report; no work directory
        assertFalse(Files.exists(Path.of(one + "._work")), "work directory removed");
        assertTrue(Files.readString(Path.of(one + ".sha256")).endsWith("  one.gguf\n"));
        CliRun verify = CliRun.of("verify", "--model", one.toString());
        assertEquals(0, verify.exitCode(), verify.err());

        JsonNode report = report(one);
        assertEquals("gguf", report.get("output_format").asText());
        assertEquals("Q4_K_M", report.get("gguf_type").asText());
        assertEquals(14, report.get("modules").size());
        Map<String, String> reported = new HashMap<>();
        for (JsonNode m : report.get("modules")) {
            assertTrue(m.get("quantized").asBoolean(), m.toString());
            assertTrue(m.get("hessian_error").asDouble() < m.get("rtn_hessian_error").asDouble(),
                    "GPTQ must beat RTN into the same ggml type on " + m);
            reported.put(m.get("name").asText(), m.get("ggml_type").asText());
        }

        // tensor types and order are llama-quantize's plan; GPTQ changes only the bytes of the decoder matrices
        try (TensorStore store = TensorStore.open(Storage.local(), small.toString());
                GgufReader r = GgufReader.open(one)) {
            GgufExporter plan = exporter(small, store, LlamaFileType.Q4_K_M, false);
            assertEquals(plan.tensors().size(), r.tensors().size());
            ByteArrayOutputStream rtn = new ByteArrayOutputStream();
            plan.write(rtn, new RtnProducer(store));
            byte[] rtnBytes = rtn.toByteArray();
            byte[] gptqBytes = bytes(one);
            assertEquals(rtnBytes.length, gptqBytes.length);
            for (int i = 0; i < r.tensors().size(); i++) {
                GgufTensorInfo t = r.tensors().get(i);
                ExportTensor e = plan.tensors().get(i);
                assertEquals(e.name(), t.name());
                assertEquals(e.type(), t.type(), t.name());
                long at = r.dataStart() + t.offset();
                boolean same = java.util.Arrays.equals(rtnBytes, (int) at, (int) (at + e.bytes()), gptqBytes,
                        (int) at, (int) (at + e.bytes()));
                boolean decoderMatrix = t.name().startsWith("blk.") && t.type().isQuantized();
                assertEquals(!decoderMatrix, same, t.name() + " differs from RTN exactly when GPTQ quantized it");
                if (decoderMatrix) {
                    String module = e.hfName().substring(0, e.hfName().length() - ".weight".length());
                    assertEquals(e.type().name(), reported.get(module), module);
                }
            }
            // the metadata is the exporter's: header bytes up to the data are equal
            assertArrayEquals(java.util.Arrays.copyOf(rtnBytes, (int) r.dataStart()),
                    java.util.Arrays.copyOf(gptqBytes, (int) r.dataStart()));
        }

        CliRun again = quantize(small, one, "local[1]", "--gguf-type", "Q4_K_M", "--calibration", calib.toString());
        assertEquals(2, again.exitCode());
        assertTrue(again.err().contains("--overwrite"), again.err());

        CliRun eval = CliRun.of("eval", "--model", one.toString(), "--data", calib.toString(), "--seq-len", "48",
                "--max-windows", "4", "--conf", "spark.master=local[2]", "--conf", "spark.ui.enabled=false");
        assertEquals(0, eval.exitCode(), eval.err());
        double ppl = Double.parseDouble(eval.lastLine().substring("perplexity: ".length()));
        assertTrue(ppl > 1 && ppl < 5000, "perplexity " + ppl);

        // a corrupted file fails verify
        byte[] corrupt = bytes(one);
        corrupt[corrupt.length - 1] ^= 1;
        Path bad = tmp.resolve("bad.gguf");
        Files.write(bad, corrupt);
        Files.writeString(Path.of(bad + ".sha256"), Files.readString(Path.of(one + ".sha256")));
        assertEquals(2, CliRun.of("verify", "--model", bad.toString()).exitCode());
    }

    /**
     * A q_proj of 2560 rows is staged as blocks of 1024 rows (8 heads of 128), so the assembly reads several blocks
     * of a row-permuted tensor; RTN lets the test compare with the exporter byte for byte.
     */
    @Test
    void multiBlockPermutedTensorsAreAssembledInGgufRowOrder() throws Exception {
        Path wide = tmp.resolve("wide");
        SyntheticModel.write(Storage.local(), wide.toString(),
                new SyntheticModel.Shape(2560, 256, 1, 20, 4, 512, 10000.0, true), DType.BF16, 3, 1L << 30);
        Path out = tmp.resolve("wide.gguf");
        CliRun run = quantize(wide, out, "local[2]", "--gguf-type", "Q4_K_M");
        assertEquals(0, run.exitCode(), run.err());
        try (TensorStore store = TensorStore.open(Storage.local(), wide.toString())) {
            var q = org.sparkquant.model.ModelInventory.of(org.sparkquant.model.ModelConfig.load(Storage.local(),
                    wide.toString()), store).layer(0).stream().filter(m -> m.kind().contains("q_proj")).findFirst()
                    .orElseThrow();
            assertEquals(3, ModuleBlocks.of(q).blocks().size(), "q_proj staged in several blocks");
            ByteArrayOutputStream expected = new ByteArrayOutputStream();
            exporter(wide, store, LlamaFileType.Q4_K_M, false).write(expected, new RtnProducer(store));
            assertArrayEquals(expected.toByteArray(), bytes(out));
        }
    }

    /** Without calibration the pipeline quantizes with ggml's reference quantizers: llama-quantize's exact bytes. */
    @Test
    void rtnIsByteIdenticalToTheExporterIncludingFallbackTypes() throws Exception {
        for (Path model : List.of(small, tiny)) {
            for (LlamaFileType type : List.of(LlamaFileType.Q4_K_M, LlamaFileType.Q2_K, LlamaFileType.Q8_0)) {
                Path out = tmp.resolve("rtn-" + model.getFileName() + "-" + type + ".gguf");
                CliRun run = quantize(model, out, "local[2]", "--format", "gguf", "--gguf-type", type.name());
                assertEquals(0, run.exitCode(), run.err());
                assertTrue(run.err().contains("round-to-nearest"), run.err());
                try (TensorStore store = TensorStore.open(Storage.local(), model.toString())) {
                    ByteArrayOutputStream expected = new ByteArrayOutputStream();
                    exporter(model, store, type, false).write(expected, new RtnProducer(store));
                    assertArrayEquals(expected.toByteArray(), bytes(out), model.getFileName() + " " + type);
                }
            }
        }
    }

    /** Rows not divisible by 256: GPTQ runs over the fallback Q5_0/Q4_0 grids and still beats RTN. */
    @Test
    void gptqOnFallbackTypesAndResumeGivesTheSameBytes() throws Exception {
        Path straight = tmp.resolve("tiny-q3km.gguf");
        CliRun a = quantize(tiny, straight, "local[2]", "--gguf-type", "Q3_K_M", "--calibration", calib.toString());
        assertEquals(0, a.exitCode(), a.err());
        for (JsonNode m : report(straight).get("modules")) {
            GgmlType t = GgmlType.valueOf(m.get("ggml_type").asText());
            assertEquals(32, t.blockSize(), m.toString());
            assertTrue(m.get("hessian_error").asDouble() < m.get("rtn_hessian_error").asDouble(), m.toString());
        }

        Path resumed = tmp.resolve("tiny-q3km-resumed.gguf");
        CliRun killed = quantize(Faults.stopAfterLayer(0), tiny, resumed, "local[2]", "--gguf-type", "Q3_K_M",
                "--calibration", calib.toString());
        assertEquals(1, killed.exitCode(), killed.err());
        assertFalse(Files.exists(resumed), "no GGUF file before the run is finished");
        assertTrue(Files.exists(Path.of(resumed + "._work/progress.json")));
        CliRun noResume = quantize(tiny, resumed, "local[2]", "--gguf-type", "Q3_K_M", "--calibration",
                calib.toString());
        assertEquals(2, noResume.exitCode());
        assertTrue(noResume.err().contains("--resume"), noResume.err());
        CliRun resume = quantize(tiny, resumed, "local[1]", "--gguf-type", "Q3_K_M", "--calibration",
                calib.toString(), "--resume");
        assertEquals(0, resume.exitCode(), resume.err());
        assertArrayEquals(bytes(straight), bytes(resumed));
    }

    /**
     * --importance hessian-diag (llama-quantize --imatrix with the run's statistics) and --export-imatrix: the file
     * has an entry per quantized matrix with Σx² = diag(H)·n/2, and feeding it to the standalone exporter as an
     * imatrix gives the pipeline's bytes.
     */
    @Test
    void hessianImportanceEqualsTheExporterWithTheExportedImatrix() throws Exception {
        Path out = tmp.resolve("imp.gguf");
        Path imatrix = tmp.resolve("imatrix.gguf");
        CliRun run = quantize(small, out, "local[2]", "--gguf-type", "Q4_K_M", "--method", "rtn", "--calibration",
                calib.toString(), "--importance", "hessian-diag", "--export-imatrix", imatrix.toString());
        assertEquals(0, run.exitCode(), run.err());
        GgufImatrix m = GgufImatrix.read(Storage.local(), imatrix.toString());
        assertEquals(14, m.entries().size());
        assertEquals(48, m.chunkSize());
        assertEquals(8, m.chunkCount());
        GgufImatrix.Entry q = m.entries().get("blk.1.attn_q.weight");
        assertNotNull(q);
        assertEquals(8L * 48, q.counts()[0], "tokens seen");
        assertArrayEquals(q.sums(), m.entries().get("blk.1.attn_k.weight").sums(), "q and k share their input");

        // RTN weighted by the same statistics is what the standalone exporter writes with that imatrix
        Path plain = tmp.resolve("plain.gguf");
        assertEquals(0, quantize(small, plain, "local[2]", "--gguf-type", "Q4_K_M").exitCode());
        assertFalse(java.util.Arrays.equals(bytes(plain), bytes(out)), "the importance changes the bytes");
        try (TensorStore store = TensorStore.open(Storage.local(), small.toString())) {
            ByteArrayOutputStream expected = new ByteArrayOutputStream();
            exporter(small, store, LlamaFileType.Q4_K_M, true).write(expected,
                    new RtnProducer(store, name -> importanceOf(m, name)));
            assertArrayEquals(expected.toByteArray(), bytes(out));
        }
    }

    /** The imatrix entry's Σx²/count per column, as the pipeline's importance (diag(H)/2) up to a common factor. */
    private static float[] importanceOf(GgufImatrix m, String name) {
        GgufImatrix.Entry e = m.entries().get(name);
        if (e == null) {
            return null;
        }
        float[] s = e.sums();
        float[] out = new float[s.length];
        // the pipeline's importance is diag(H)/2 = Σx²/n_sequences (exact here: n = 8 is a power of two)
        for (int i = 0; i < s.length; i++) {
            out[i] = (float) (s[i] / 8.0);
        }
        return out;
    }

    /** gguf-py reads the GPTQ-calibrated file and dequantizes every tensor to Java's values. */
    @Test
    void ggufPyReadsTheGptqFile() throws Exception {
        Path python = TestPython.require("gguf", "numpy");
        Path out = tmp.resolve("py-q5km.gguf");
        CliRun run = quantize(small, out, "local[2]", "--gguf-type", "Q5_K_M", "--calibration", calib.toString());
        assertEquals(0, run.exitCode(), run.err());
        Path dir = tmp.resolve("py-q5km");
        TestPython.check(python, List.of("python/gguf_check.py", out.toString(), dir.toString()), 300);
        JsonNode s = new ObjectMapper().readTree(dir.resolve("summary.json").toFile());
        try (GgufReader r = GgufReader.open(out)) {
            JsonNode ts = s.get("tensors");
            assertEquals(r.tensors().size(), ts.size());
            for (int i = 0; i < ts.size(); i++) {
                GgufTensorInfo t = r.tensors().get(i);
                assertEquals(t.name(), ts.get(i).get("name").asText());
                assertEquals(t.type().name(), ts.get(i).get("type").asText(), t.name());
                byte[] b = Files.readAllBytes(dir.resolve(i + ".f32"));
                float[] py = new float[b.length / 4];
                ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(py);
                assertArrayEquals(py, r.readFloats(t.name()), t.name());
            }
        }
    }

    /** Two executor JVMs write the same bytes as the driver's own local[2]. */
    @Test
    @Tag("cluster")
    void multiJvmClusterGivesTheSameBytes() throws Exception {
        Path local = tmp.resolve("cluster-ref.gguf");
        assertEquals(0, quantize(small, local, "local[2]", "--gguf-type", "Q4_K_M", "--calibration",
                calib.toString()).exitCode());
        Path cluster = tmp.resolve("cluster.gguf");
        CliRun run = quantize(small, cluster, "local-cluster[2,1,1024]", "--gguf-type", "Q4_K_M", "--calibration",
                calib.toString(), "--conf", "spark.executor.extraClassPath=" + System.getProperty("java.class.path"));
        assertEquals(0, run.exitCode(), run.err());
        assertArrayEquals(bytes(local), bytes(cluster));
    }

    @Test
    void badCombinationsAreOneLineErrors() {
        Path out = tmp.resolve("never.gguf");
        CliRun descAct = quantize(small, out, "local[1]", "--calibration", calib.toString(), "--desc-act");
        assertEquals(2, descAct.exitCode());
        assertTrue(descAct.err().contains("--desc-act"), descAct.err());
        CliRun type = quantize(small, out, "local[1]", "--gguf-type", "Q4_K_X");
        assertEquals(2, type.exitCode());
        assertTrue(type.err().contains("Q4_K_M"), type.err());
        CliRun importance = quantize(small, out, "local[1]", "--importance", "hessian-diag");
        assertEquals(2, importance.exitCode());
        assertTrue(importance.err().contains("--calibration"), importance.err());
        CliRun onGptq = quantize(small, tmp.resolve("dir"), "local[1]", "--calibration", calib.toString(),
                "--importance", "hessian-diag");
        assertEquals(2, onGptq.exitCode());
        assertTrue(onGptq.err().contains("GGUF"), onGptq.err());
        assertFalse(Files.exists(out));
    }
}
