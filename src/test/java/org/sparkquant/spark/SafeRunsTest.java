package org.sparkquant.spark;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.Stream;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.sparkquant.cli.CliRun;
import org.sparkquant.io.DType;
import org.sparkquant.io.Storage;
import org.sparkquant.model.SyntheticModel;
import org.sparkquant.testing.Faults;
import org.sparkquant.testing.OutputFiles;
import org.sparkquant.testing.TestText;

/**
 * A user's data is never lost: inputs are never written, a finished output is replaced only by a finished one, a
 * run halted at any change of its state resumes to the same bytes, and bad input is refused before anything is
 * touched, with one line that says what and where.
 */
class SafeRunsTest {
    @TempDir
    static Path tmp;
    static Path model;
    static Path calib;

    @BeforeAll
    static void setUp() throws Exception {
        model = tmp.resolve("inputs/model");
        SyntheticModel.write(Storage.local(), model.toString(), SyntheticModel.Preset.TINY, 2, DType.BF16, 5,
                1L << 30);
        calib = tmp.resolve("inputs/calib.txt");
        Files.writeString(calib, TestText.sentences(9, 120, "north", "south", "river", "stone", "light", "paper",
                "sound", "green", "small", "ok"));
    }

    static CliRun quantize(FaultHook faults, Path modelDir, Path out, String... extra) {
        List<String> args = new ArrayList<>(List.of("quantize", "--model", modelDir.toString(), "--output",
                out.toString(), "--calibration", calib.toString(), "--samples", "6", "--seq-len", "32",
                "--samples-per-partition", "3", "--bits", "4", "--group-size", "32",
                "--conf", "spark.master=local[2]", "--conf", "spark.ui.enabled=false"));
        args.addAll(List.of(extra));
        return CliRun.withFaults(faults, args.toArray(String[]::new));
    }

    static CliRun quantize(Path out, String... extra) {
        return quantize(FaultHook.NONE, model, out, extra);
    }

    /** Every file under dir with its SHA-256. */
    static Map<String, String> digests(Path dir) throws Exception {
        Map<String, String> out = new TreeMap<>();
        try (Stream<Path> files = Files.walk(dir)) {
            for (Path f : files.filter(Files::isRegularFile).toList()) {
                out.put(dir.relativize(f).toString(), HexFormat.of().formatHex(
                        MessageDigest.getInstance("SHA-256").digest(Files.readAllBytes(f))));
            }
        }
        return out;
    }

    static void assertOneLine(CliRun run) {
        assertEquals(1, run.err().strip().lines().filter(l -> l.startsWith("sparkquant:")).count(), run.err());
        assertFalse(run.err().contains("\tat "), "no stack trace: " + run.err());
    }

    @Test
    void anOutputOverAnInputIsRefusedAndTheInputsAreUntouched() throws Exception {
        Map<String, String> before = digests(tmp.resolve("inputs"));
        for (Path out : List.of(model, model.resolve("quantized"), tmp.resolve("inputs"), tmp)) {
            CliRun run = quantize(out, "--overwrite");
            assertEquals(2, run.exitCode(), out + ": " + run.err());
            assertTrue(run.err().contains("overlaps the model"), run.err());
            assertOneLine(run);
        }
        CliRun overCalibration = quantize(FaultHook.NONE, model, calib, "--overwrite");
        assertEquals(2, overCalibration.exitCode(), overCalibration.err());
        assertTrue(overCalibration.err().contains("overlaps the calibration"), overCalibration.err());
        // the same location spelled differently
        CliRun dotted = quantize(FaultHook.NONE, model, Path.of(model + "/../model/."), "--overwrite");
        assertEquals(2, dotted.exitCode(), dotted.err());
        assertEquals(before, digests(tmp.resolve("inputs")), "the inputs are unchanged");
    }

    @Test
    void overwriteReplacesAFinishedOutputOnlyWithAFinishedOne() throws Exception {
        Path out = tmp.resolve("finished");
        assertEquals(0, quantize(out).exitCode());
        Map<String, String> finished = digests(out);

        // bad input: a truncated shard. Refused before the finished output is touched.
        Path broken = tmp.resolve("broken-model");
        copyDirectory(model, broken);
        Path shard;
        try (Stream<Path> files = Files.list(broken)) {
            shard = files.filter(f -> f.toString().endsWith(".safetensors")).findFirst().orElseThrow();
        }
        try (RandomAccessFile f = new RandomAccessFile(shard.toFile(), "rw")) {
            f.setLength(f.length() / 2);
        }
        CliRun bad = quantize(FaultHook.NONE, broken, out, "--overwrite");
        assertEquals(2, bad.exitCode(), bad.err());
        assertOneLine(bad);
        assertEquals(finished, digests(out), "a failed --overwrite leaves the finished output as it was");

        // a run that dies half way: the finished output still verifies; --resume then finishes the replacement
        CliRun died = quantize(Faults.stopAfterLayer(0), model, out, "--overwrite", "--bits", "3");
        assertEquals(1, died.exitCode(), died.err());
        assertEquals(0, CliRun.of("verify", "--model", out.toString()).exitCode(), "the old output still verifies");
        CliRun resumed = quantize(out, "--resume", "--bits", "3");
        assertEquals(0, resumed.exitCode(), resumed.err());
        Path fresh = tmp.resolve("fresh-3bit");
        assertEquals(0, quantize(fresh, "--bits", "3").exitCode());
        OutputFiles.assertIdentical(fresh, out, QuantizePipelineTest.TIMED);
    }

    @Test
    void badInputLeavesNoRunBehind() throws Exception {
        Path out = tmp.resolve("no-calibration");
        CliRun missing = CliRun.of("quantize", "--model", model.toString(), "--output", out.toString(),
                "--calibration", tmp.resolve("nowhere.txt").toString(), "--samples", "6", "--seq-len", "32");
        assertEquals(2, missing.exitCode(), missing.err());
        assertTrue(missing.err().contains("--calibration") && missing.err().contains("no such file"), missing.err());
        assertOneLine(missing);
        assertFalse(Files.exists(out), "nothing written for a refused run");

        Path broken = tmp.resolve("broken-config");
        copyDirectory(model, broken);
        Files.writeString(broken.resolve("config.json"), "{\"model_type\": \"llama\"");
        CliRun bad = quantize(FaultHook.NONE, broken, out);
        assertEquals(2, bad.exitCode(), bad.err());
        assertOneLine(bad);
        // the corrected rerun needs no --resume or --overwrite
        CliRun fixed = quantize(out);
        assertEquals(0, fixed.exitCode(), fixed.err());

        CliRun tooLong = quantize(tmp.resolve("too-long"), "--seq-len", "100000");
        assertEquals(2, tooLong.exitCode(), tooLong.err());
        assertTrue(tooLong.err().contains("--allow-beyond-context"), tooLong.err());
    }

    @Test
    void resumeNamesTheChangedSettingAndSaysWhenThereIsNothingToResume() {
        Path out = tmp.resolve("stopped");
        assertEquals(1, quantize(Faults.stopAfterLayer(0), model, out).exitCode());
        CliRun other = quantize(out, "--resume", "--bits", "3", "--damp", "0.05");
        assertEquals(2, other.exitCode(), other.err());
        assertTrue(other.err().contains("quant.bits was 4, now 3"), other.err());
        assertTrue(other.err().contains("quant.dampPercent was 0.01, now 0.05"), other.err());

        CliRun fresh = quantize(tmp.resolve("nothing-to-resume"), "--resume");
        assertEquals(0, fresh.exitCode(), fresh.err());
        assertTrue(fresh.err().contains("holds no unfinished run; starting a new one"), fresh.err());
    }

    @Test
    void credentialsInAUriAreRefusedAndNeverPrinted() {
        for (String[] uris : new String[][] {{"s3a://AKIAEXAMPLEKEY:s3cr3tValue@bucket/model", tmp.resolve("c").toString()},
            {model.toString(), "s3a://AKIAEXAMPLEKEY:s3cr3tValue@bucket/out"}}) {
            CliRun run = CliRun.of("quantize", "--model", uris[0], "--output", uris[1], "--method", "rtn");
            assertEquals(2, run.exitCode(), run.err());
            assertTrue(run.err().contains("credentials in a URI are refused"), run.err());
            assertFalse(run.err().contains("s3cr3tValue") || run.err().contains("AKIAEXAMPLEKEY"), run.err());
            assertFalse(run.out().contains("s3cr3tValue"), run.out());
        }
    }

    /**
     * The crash-point enumeration over the driver's state changes: the run is halted (by an exception) before each
     * write, delete and rename of its run record, progress record and staged hidden states, each step of the commit
     * and the final clean-up, in turn; every halted run resumes with --resume to the bytes of an uninterrupted run.
     * {@link CrashPointTest} halts the JVM itself.
     */
    @Test
    void aRunHaltedAtAnyStateChangeResumesToTheSameBytes() throws Exception {
        Path straight = tmp.resolve("straight");
        AtomicInteger steps = new AtomicInteger();
        CliRun counted = quantize((point, i, attempt) -> {
            if (point == FaultHook.Point.WORK_STATE) {
                steps.incrementAndGet();
            }
        }, model, straight);
        assertEquals(0, counted.exitCode(), counted.err());
        assertTrue(steps.get() >= 10, "state changes of a 2-layer run: " + steps.get());
        for (int k = 0; k < steps.get(); k++) {
            int at = k;
            Path out = tmp.resolve("halted-" + k);
            CliRun halted = quantize((point, i, attempt) -> {
                if (point == FaultHook.Point.WORK_STATE && i == at) {
                    throw new IllegalStateException("halted before state change " + at + " (test hook)");
                }
            }, model, out);
            assertEquals(1, halted.exitCode(), "step " + k + ": " + halted.err());
            CliRun resumed = quantize(out, "--resume");
            assertEquals(0, resumed.exitCode(), "step " + k + ": " + resumed.err());
            OutputFiles.assertIdentical(straight, out, QuantizePipelineTest.TIMED);
        }
    }

    /**
     * Airflow's zombie case: a second attempt starts while the first is alive. It is refused, with or without
     * --resume, naming the owner; the first finishes undisturbed.
     */
    /** Latches of the paused run: static, so the (serializable) hook refers to them without capturing them. */
    private static java.util.concurrent.CountDownLatch atLayer;
    private static java.util.concurrent.CountDownLatch release;

    @Test
    void twoRunsNeverWriteOneOutput() throws Exception {
        Path out = tmp.resolve("contended");
        atLayer = new java.util.concurrent.CountDownLatch(1);
        release = new java.util.concurrent.CountDownLatch(1);
        FaultHook pause = (point, i, attempt) -> {
            if (point == FaultHook.Point.LAYER_DONE && i == 0) {
                atLayer.countDown();
                try {
                    release.await(5, java.util.concurrent.TimeUnit.MINUTES);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
        };
        java.util.concurrent.CompletableFuture<CliRun> first =
                java.util.concurrent.CompletableFuture.supplyAsync(() -> quantize(pause, model, out));
        while (!atLayer.await(1, java.util.concurrent.TimeUnit.SECONDS)) {
            assertFalse(first.isDone(), () -> "the first run ended before layer 0: " + first.join().err());
        }
        assertTrue(Files.exists(out.resolve("_lease.json")));
        for (String[] extra : new String[][] {{}, {"--resume"}, {"--overwrite"}}) {
            CliRun second = quantize(out, extra);
            assertEquals(2, second.exitCode(), String.join(" ", extra) + ": " + second.err());
            assertTrue(second.err().contains("is being written by run"), second.err());
            assertTrue(second.err().contains("last seen"), second.err());
            assertOneLine(second);
        }
        release.countDown();
        CliRun done = first.get(5, java.util.concurrent.TimeUnit.MINUTES);
        assertEquals(0, done.exitCode(), done.err());
        assertFalse(Files.exists(out.resolve("_lease.json")), "the lease is given back");
        assertEquals(0, CliRun.of("verify", "--model", out.toString()).exitCode());
        Path alone = tmp.resolve("uncontended");
        assertEquals(0, quantize(alone).exitCode());
        OutputFiles.assertIdentical(alone, out, QuantizePipelineTest.TIMED);
    }

    /** A lease whose heartbeat stopped (a killed run) is taken over by --resume only; a fresh one never. */
    @Test
    void aStaleLeaseIsTakenOverByResume() throws Exception {
        Path out = tmp.resolve("stale");
        Files.createDirectories(out);
        long hourAgo = System.currentTimeMillis() - 3_600_000L;
        String stale = "{\"owner\": \"dead-run\", \"host\": \"worker-7\", \"pid\": 4242, \"started_ms\": "
                + hourAgo + ", \"heartbeat_ms\": " + hourAgo + "}";
        Files.writeString(out.resolve("_lease.json"), stale);
        CliRun plain = quantize(out);
        assertEquals(2, plain.exitCode(), plain.err());
        assertTrue(plain.err().contains("add --resume to take it over") && plain.err().contains("worker-7"),
                plain.err());
        CliRun takeover = quantize(out, "--resume");
        assertEquals(0, takeover.exitCode(), takeover.err());
        assertFalse(Files.exists(out.resolve("_lease.json")));

        Path busy = tmp.resolve("busy");
        Files.createDirectories(busy);
        long now = System.currentTimeMillis();
        Files.writeString(busy.resolve("_lease.json"), stale.replace(Long.toString(hourAgo), Long.toString(now)));
        CliRun refused = quantize(busy, "--resume");
        assertEquals(2, refused.exitCode(), refused.err());
        assertTrue(refused.err().contains("is being written by run dead-run on worker-7"), refused.err());
        Thread.sleep(2100);
        // the timeout is the reader's: with 1 s the same lease is stale two seconds later
        CliRun later = quantize(busy, "--resume", "--lease-timeout", "1");
        assertEquals(0, later.exitCode(), later.err());
    }

    /** Calibration data that is not text is used as given, with a warning. */
    @Test
    void binaryCalibrationWarns() throws Exception {
        Path garbage = tmp.resolve("garbage.txt");
        byte[] bytes = new byte[20000];
        new java.util.Random(7).nextBytes(bytes);
        Files.write(garbage, bytes);
        CliRun run = CliRun.of("quantize", "--model", model.toString(), "--output", tmp.resolve("g").toString(),
                "--calibration", garbage.toString(), "--samples", "4", "--seq-len", "32",
                "--conf", "spark.master=local[1]", "--conf", "spark.ui.enabled=false");
        assertTrue(run.err().contains("does not look like text"), run.err());
        CliRun text = quantize(tmp.resolve("t"));
        assertEquals(0, text.exitCode(), text.err());
        assertFalse(text.err().contains("does not look like text"), text.err());
    }

    /** A typo in a setting is not silently ignored; values are never printed. */
    @Test
    void unknownSettingsWarnWithASuggestion() {
        CliRun run = CliRun.of("inspect", "--model", model.toString(), "--conf", "spark.exeuctor.memory=4g",
                "--conf", "executor.cores=s3cr3t", "--conf", "spark.executor.memory=2g",
                "--conf", "spark.executorEnv.FOO=1");
        assertEquals(0, run.exitCode(), run.err());
        assertTrue(run.err().contains("unknown Spark setting spark.exeuctor.memory; did you mean "
                + "spark.executor.memory?"), run.err());
        assertTrue(run.err().contains("setting executor.cores is ignored"), run.err());
        assertFalse(run.err().contains("spark.executor.memory;") || run.err().contains("FOO"), run.err());
        assertFalse(run.err().contains("s3cr3t"), run.err());
    }

    /** run.json fingerprints the inputs: a resume over changed files at the same locations is refused. */
    @Test
    void resumeRefusesInputsThatChanged() throws Exception {
        Path myCalib = tmp.resolve("calib-copy.txt");
        Files.copy(calib, myCalib);
        Path out = tmp.resolve("changed-inputs");
        String[] args = {"quantize", "--model", model.toString(), "--output", out.toString(), "--calibration",
            myCalib.toString(), "--samples", "6", "--seq-len", "32", "--samples-per-partition", "3",
            "--conf", "spark.master=local[2]", "--conf", "spark.ui.enabled=false"};
        assertEquals(1, CliRun.withFaults(Faults.stopAfterLayer(0), args).exitCode());
        Files.writeString(myCalib, "a line that was not there\n", java.nio.file.StandardOpenOption.APPEND);
        List<String> resume = new ArrayList<>(List.of(args));
        resume.add("--resume");
        CliRun changed = CliRun.of(resume.toArray(String[]::new));
        assertEquals(2, changed.exitCode(), changed.err());
        assertTrue(changed.err().contains("inputs.calibration was \"size "), changed.err());
        assertOneLine(changed);
    }

    /** eval reads a sparkquant output only as it was written: a flipped byte or an unfinished run is refused. */
    @Test
    void evalRefusesADamagedOrUnfinishedOutput() throws Exception {
        Path gguf = tmp.resolve("eval-check.gguf");
        CliRun made = CliRun.of("quantize", "--model", model.toString(), "--output", gguf.toString(), "--gguf-type",
                "Q8_0", "--conf", "spark.master=local[2]", "--conf", "spark.ui.enabled=false");
        assertEquals(0, made.exitCode(), made.err());
        String[] eval = {"eval", "--model", gguf.toString(), "--data", calib.toString(), "--seq-len", "32",
            "--max-windows", "2", "--conf", "spark.master=local[1]", "--conf", "spark.ui.enabled=false"};
        assertEquals(0, CliRun.of(eval).exitCode());
        try (RandomAccessFile f = new RandomAccessFile(gguf.toFile(), "rw")) {
            long at = f.length() - 10; // inside the last tensor's data
            f.seek(at);
            int b = f.read();
            f.seek(at);
            f.write(b ^ 0x40);
        }
        CliRun damaged = CliRun.of(eval);
        assertEquals(2, damaged.exitCode(), damaged.err());
        assertTrue(damaged.err().contains("damaged or changed") && damaged.err().contains("--no-verify"),
                damaged.err());
        List<String> skip = new ArrayList<>(List.of(eval));
        skip.add("--no-verify");
        assertEquals(0, CliRun.of(skip.toArray(String[]::new)).exitCode(), "--no-verify reads it anyway");

        Path unfinished = tmp.resolve("eval-unfinished");
        assertEquals(1, quantize(Faults.stopAfterLayer(0), model, unfinished).exitCode());
        CliRun partial = CliRun.of("eval", "--model", unfinished.toString(), "--data", calib.toString(),
                "--seq-len", "32");
        assertEquals(2, partial.exitCode(), partial.err());
        assertTrue(partial.err().contains("unfinished sparkquant run"), partial.err());
    }

    private static void copyDirectory(Path from, Path to) throws IOException {
        Files.createDirectories(to);
        try (Stream<Path> files = Files.list(from)) {
            for (Path f : files.toList()) {
                Files.copy(f, to.resolve(f.getFileName()));
            }
        }
    }
}
