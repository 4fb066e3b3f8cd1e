package org.sparkquant.spark;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.sparkquant.cli.CliRun;
import org.sparkquant.format.gptq.GptqCheckpoint;
import org.sparkquant.io.DType;
import org.sparkquant.io.Storage;
import org.sparkquant.io.TensorStore;
import org.sparkquant.model.MemoryPlan;
import org.sparkquant.model.ModelConfig;
import org.sparkquant.model.ModelInventory;
import org.sparkquant.model.SyntheticModel;
import org.sparkquant.testing.Faults;
import org.sparkquant.testing.OutputFiles;
import org.sparkquant.testing.TestText;

/** The distributed pipeline end to end on a generated model: determinism, retries, resume, output contract. */
class QuantizePipelineTest {
    /** Files whose content legitimately differs between runs (timings). */
    static final Set<String> TIMED = Set.of("quantization_report.json", "quantization_report.html", "_SUCCESS");

    @TempDir
    static Path tmp;
    static Path model;
    static Path calib;

    @BeforeAll
    static void setUp() throws Exception {
        model = tmp.resolve("model");
        SyntheticModel.write(Storage.local(), model.toString(), SyntheticModel.Preset.TINY, 2, DType.BF16, 11,
                1L << 30);
        calib = tmp.resolve("calib.txt");
        Files.writeString(calib, TestText.sentences(4, 200, "alpha", "beta", "gamma", "delta", "spark", "layer",
                "quantize", "hessian", "token", "ok"));
    }

    static CliRun quantize(Path out, String master, String... extra) {
        return quantize(FaultHook.NONE, out, master, extra);
    }

    static CliRun quantize(FaultHook faults, Path out, String master, String... extra) {
        List<String> args = new ArrayList<>(List.of("quantize", "--model", model.toString(), "--output",
                out.toString(), "--calibration", calib.toString(), "--samples", "12", "--seq-len", "48",
                "--samples-per-partition", "3", "--bits", "4", "--group-size", "32",
                "--conf", "spark.master=" + master, "--conf", "spark.ui.enabled=false"));
        args.addAll(List.of(extra));
        return CliRun.withFaults(faults, args.toArray(String[]::new));
    }

    @Test
    void outputIsIdenticalWhateverTheCoresAndSurvivesATaskFailure() throws Exception {
        Path one = tmp.resolve("one");
        CliRun a = quantize(one, "local[1]");
        assertEquals(0, a.exitCode(), a.err());
        assertTrue(a.out().contains("Hessian-weighted error: GPTQ"), a.out());

        Path two = tmp.resolve("two");
        CliRun b = quantize(two, "local[2]");
        assertEquals(0, b.exitCode(), b.err());
        OutputFiles.assertIdentical(one, two, TIMED);

        // local[2,2]: two attempts per task; the first attempt of block 0 of every quantize stage fails
        Path retried = tmp.resolve("retried");
        CliRun c = quantize(Faults.failFirstAttemptOfBlock(0), retried, "local[2,2]");
        assertEquals(0, c.exitCode(), c.err());
        OutputFiles.assertIdentical(one, retried, TIMED);

        // the contract of a finished output
        assertFalse(Files.exists(one.resolve("_work")), "the work directory is removed after success");
        assertEquals(0, CliRun.of("verify", "--model", one.toString()).exitCode());
        JsonNode config = new ObjectMapper().readTree(one.resolve("config.json").toFile());
        JsonNode q = config.get("quantization_config");
        assertEquals("gptq", q.get("quant_method").asText());
        assertEquals(4, q.get("bits").asInt());
        assertEquals(32, q.get("group_size").asInt());
        JsonNode report = new ObjectMapper().readTree(one.resolve(QuantizePipeline.REPORT).toFile());
        assertEquals(14, report.get("modules").size());
        assertEquals(1, report.get("blas_kernels").size(), "one OpenBLAS kernel set: " + report);
        assertEquals(org.sparkquant.linalg.OpenBlas.kernel(), report.get("blas_kernels").get(0).asText());
        for (JsonNode m : report.get("modules")) {
            assertTrue(m.get("hessian_error").asDouble() < m.get("rtn_hessian_error").asDouble(),
                    "GPTQ must beat RTN on " + m);
        }
        try (GptqCheckpoint checkpoint = GptqCheckpoint.open(Storage.local(), one.toString())) {
            assertEquals(14, checkpoint.quantizedModules().size());
            assertEquals(14, checkpoint.verify());
        }

        CliRun again = quantize(one, "local[1]");
        assertEquals(2, again.exitCode());
        assertTrue(again.err().contains("--overwrite"), again.err());

        CliRun eval = CliRun.of("eval", "--model", one.toString(), "--data", calib.toString(), "--seq-len", "48",
                "--max-windows", "4", "--conf", "spark.master=local[2]", "--conf", "spark.ui.enabled=false");
        assertEquals(0, eval.exitCode(), eval.err());
        double ppl = Double.parseDouble(eval.lastLine().substring("perplexity: ".length()));
        assertTrue(ppl > 1 && ppl < 2000, "perplexity " + ppl);
    }

    @Test
    void killedRunResumesToTheSameBytes() throws Exception {
        Path straight = tmp.resolve("straight");
        assertEquals(0, quantize(straight, "local[2]").exitCode());

        Path resumed = tmp.resolve("resumed");
        CliRun killed = quantize(Faults.stopAfterLayer(0), resumed, "local[2]");
        assertEquals(1, killed.exitCode(), killed.err());
        assertTrue(Files.exists(resumed.resolve("_work/progress.json")));
        assertFalse(Files.exists(resumed.resolve("_SUCCESS")));
        // a finished layer keeps its staged codes and statistics, not its Hessians and preparations
        Path layer0 = resumed.resolve("_work/layers/0");
        try (var files = Files.list(layer0)) {
            List<String> names = files.map(f -> f.getFileName().toString()).sorted().toList();
            assertTrue(names.contains("stats.bin"), names.toString());
            assertTrue(names.stream().noneMatch(n -> n.startsWith("hessian-") || n.startsWith("prep-")),
                    names.toString());
            assertTrue(names.stream().anyMatch(n -> n.startsWith("summary-")), names.toString());
        }

        CliRun noResume = quantize(resumed, "local[2]");
        assertEquals(2, noResume.exitCode());
        assertTrue(noResume.err().contains("--resume"), noResume.err());

        CliRun otherSettings = quantize(resumed, "local[2]", "--resume", "--bits", "3");
        assertEquals(2, otherSettings.exitCode());
        assertTrue(otherSettings.err().contains("same settings"), otherSettings.err());

        CliRun resume = quantize(resumed, "local[1]", "--resume");
        assertEquals(0, resume.exitCode(), resume.err());
        OutputFiles.assertIdentical(straight, resumed, TIMED);
    }

    @Test
    void rtnNeedsNoCalibration() {
        Path out = tmp.resolve("rtn");
        CliRun run = CliRun.of("quantize", "--model", model.toString(), "--output", out.toString(), "--method", "rtn",
                "--bits", "8", "--group-size", "-1", "--conf", "spark.master=local[2]", "--conf",
                "spark.ui.enabled=false");
        assertEquals(0, run.exitCode(), run.err());
        assertTrue(Files.exists(out.resolve("_SUCCESS")));

        CliRun missing = CliRun.of("quantize", "--model", model.toString(), "--output", tmp.resolve("x").toString());
        assertEquals(2, missing.exitCode());
        assertTrue(missing.err().contains("--calibration"), missing.err());
    }

    @Test
    @Tag("cluster")
    void multiJvmClusterGivesTheSameBytes() {
        Path local = tmp.resolve("local-ref");
        assertEquals(0, quantize(local, "local[2]").exitCode());
        Path cluster = tmp.resolve("cluster");
        CliRun run = quantize(cluster, "local-cluster[2,1,1024]", "--conf",
                "spark.executor.extraClassPath=" + System.getProperty("java.class.path"));
        assertEquals(0, run.exitCode(), run.err());
        OutputFiles.assertIdentical(local, cluster, TIMED);
    }

    /** Executors of 512 MB quantize a model of 1.2 GB (fp32): they hold one layer and embedding rows, never the model. */
    @Test
    @Tag("cluster")
    void executorsNeedFarLessMemoryThanTheModel() throws Exception {
        Path big = tmp.resolve("big");
        SyntheticModel.write(Storage.local(), big.toString(),
                new SyntheticModel.Shape(1024, 2816, 2, 8, 8, 128256, 10000.0, false), DType.F32, 1, 1L << 30);
        long bytes = 0;
        try (var files = Files.list(big)) {
            for (Path f : files.toList()) {
                bytes += Files.size(f);
            }
        }
        assertTrue(bytes > 1_100_000_000L, "model of " + bytes + " bytes");
        Path out = tmp.resolve("big-out");
        CliRun run = CliRun.of("quantize", "--model", big.toString(), "--output", out.toString(),
                "--calibration", calib.toString(), "--samples", "4", "--seq-len", "32",
                "--samples-per-partition", "2", "--conf", "spark.master=local-cluster[1,1,512]",
                "--conf", "spark.executor.memory=512m",
                "--conf", "spark.ui.enabled=false",
                "--conf", "spark.executor.extraClassPath=" + System.getProperty("java.class.path"),
                "--conf", "spark.executor.extraJavaOptions=-Dorg.bytedeco.javacpp.maxbytes=512m "
                        + "-Dorg.bytedeco.javacpp.maxphysicalbytes=1500m");
        assertEquals(0, run.exitCode(), run.err());
        assertTrue(Files.exists(out.resolve("_SUCCESS")));
    }

    /** The largest size of a work directory seen by {@link #measureWork} (the hook runs in this JVM: local mode). */
    static final java.util.concurrent.atomic.AtomicLong LARGEST_WORK = new java.util.concurrent.atomic.AtomicLong();

    /** A hook (serializable, it travels with the run) that measures {@code work} at every named point. */
    static FaultHook measureWork(String work) {
        return (point, index, attempt) -> {
            Path dir = Path.of(work);
            if (Files.isDirectory(dir)) {
                try (var files = Files.walk(dir)) {
                    long size = files.filter(Files::isRegularFile).mapToLong(f -> f.toFile().length()).sum();
                    LARGEST_WORK.accumulateAndGet(size, Math::max);
                } catch (java.io.IOException | java.io.UncheckedIOException e) {
                    // a file deleted while walking: measured at the next state change
                }
            }
        };
    }

    /** The work directory never holds more than inspect's bound for it (measured before every state change). */
    @Test
    void workDirectoryStaysWithinItsBound() throws Exception {
        Path out = tmp.resolve("bounded");
        LARGEST_WORK.set(0);
        FaultHook measure = measureWork(out.resolve("_work").toString());
        CliRun run = quantize(measure, out, "local[2]");
        assertEquals(0, run.exitCode(), run.err());
        Storage storage = Storage.local();
        ModelInventory inventory;
        try (TensorStore store = TensorStore.open(storage, model.toString())) {
            inventory = ModelInventory.of(ModelConfig.load(storage, model.toString()), store);
        }
        long bound = MemoryPlan.of(inventory, 12, 48, 3, 32, 4).workBytes(); // this run's group size
        long largest = LARGEST_WORK.get();
        assertTrue(largest > 0, "measured nothing");
        assertTrue(largest <= bound, "work directory held " + largest + " bytes, bound " + bound);
    }

    /** --save-hessians: one fp32 .npy per distinct input, the manifest names a file for every quantized module. */
    @Test
    void savesHessiansWithAManifest() throws Exception {
        Path out = tmp.resolve("with-hessians");
        Path hessians = tmp.resolve("hessians");
        CliRun run = quantize(out, "local[2]", "--save-hessians", hessians.toString());
        assertEquals(0, run.exitCode(), run.err());
        JsonNode manifest = new ObjectMapper().readTree(hessians.resolve("manifest.json").toFile());
        assertEquals("gptq-ref-hessians-v1", manifest.get("format").asText());
        JsonNode modules = manifest.get("modules");
        assertEquals(14, modules.size());
        JsonNode q = modules.get("model.layers.1.self_attn.q_proj");
        JsonNode k = modules.get("model.layers.1.self_attn.k_proj");
        assertEquals(q.get("file").asText(), k.get("file").asText(), "q and k share their input");
        assertEquals(12, q.get("nsamples").asInt());
        assertEquals("float32", q.get("dtype").asText());
        JsonNode down = modules.get("model.layers.0.mlp.down_proj");
        assertEquals(384, down.get("shape").get(0).asInt());
        var array = org.sparkquant.io.Npy.read(hessians.resolve(down.get("file").asText()));
        assertEquals(List.of(384L, 384L), java.util.Arrays.stream(array.shape()).boxed().toList());
        float[] h = array.floats();
        double trace = 0;
        for (int i = 0; i < 384; i++) {
            assertTrue(h[i * 384 + i] >= 0, "diagonal of XᵀX is not negative");
            trace += h[i * 384 + i];
            for (int j = 0; j < i; j++) {
                assertEquals(h[i * 384 + j], h[j * 384 + i], 0f, "symmetric");
            }
        }
        assertTrue(trace > 0);
        // the checkpoint is the same as without the export
        Path plain = tmp.resolve("plain-for-hessians");
        assertEquals(0, quantize(plain, "local[2]").exitCode());
        OutputFiles.assertIdentical(plain, out, TIMED);
    }

    /** With --precision fp64 the Hessians are saved in fp64, the precision the solver used. */
    @Test
    void savesFp64HessiansForAnFp64Run() throws Exception {
        Path out = tmp.resolve("fp64-with-hessians");
        Path hessians = tmp.resolve("hessians-fp64");
        CliRun run = quantize(out, "local[2]", "--precision", "fp64", "--save-hessians", hessians.toString());
        assertEquals(0, run.exitCode(), run.err());
        JsonNode down = new ObjectMapper().readTree(hessians.resolve("manifest.json").toFile()).get("modules")
                .get("model.layers.0.mlp.down_proj");
        assertEquals("float64", down.get("dtype").asText());
        var array = org.sparkquant.io.Npy.read(hessians.resolve(down.get("file").asText()));
        double[] h = array.doubles();
        assertEquals(384 * 384, h.length);
        long beyondFloat = java.util.Arrays.stream(h).filter(v -> v != (double) (float) v).count();
        assertTrue(beyondFloat > h.length / 2, "fp64 values, not widened floats: " + beyondFloat);
        for (int i = 0; i < 384; i++) {
            for (int j = 0; j < i; j++) {
                assertEquals(h[i * 384 + j], h[j * 384 + i], 0.0, "symmetric");
            }
        }
    }
}
