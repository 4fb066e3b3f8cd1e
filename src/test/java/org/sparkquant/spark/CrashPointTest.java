package org.sparkquant.spark;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.LocatedFileStatus;
import org.apache.hadoop.fs.RemoteIterator;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;
import org.sparkquant.cli.CliRun;
import org.sparkquant.io.DType;
import org.sparkquant.io.OutputManifest;
import org.sparkquant.io.Storage;
import org.sparkquant.model.SyntheticModel;
import org.sparkquant.testing.HaltingCli;
import org.sparkquant.testing.MotoS3;
import org.sparkquant.testing.TestText;

/**
 * The crash-point enumeration with real process exits: a quantize run in a child JVM is halted
 * ({@link Runtime#halt}, as a kill -9) just before each change of its state in turn, from the run record through
 * every layer's checkpoints and progress records to each step of the commit (a checkpoint's clearing, shards,
 * report and {@code _SUCCESS}; a GGUF file's temporary file, {@code .sha256}, report, delete and rename) and the
 * clean-up; each halted run is resumed with {@code --resume} (taking over the dead run's lease) and every byte of
 * the output is compared with an uninterrupted run's.
 *
 * <p>A child JVM costs a JVM and Spark start-up and a run up to the point (10-20 s each, more on a busy machine), so
 * by default the points are: the run record, every {@link #STRIDE}th state change and every commit step, for a
 * checkpoint on local files and on S3 (moto), and the run record and commit steps of a GGUF file (its layer loop is
 * the checkpoint's code). {@code -Dsparkquant.crash.stride=1} halts at every point. {@code SafeRunsTest} halts
 * in-process (by an exception) at every point of a checkpoint run.
 */
@org.junit.jupiter.api.Tag("cluster")
class CrashPointTest {
    static final int STRIDE = Integer.getInteger("sparkquant.crash.stride", 8);

    @RegisterExtension
    static final MotoS3 S3 = new MotoS3("sparkquant-crash-test");

    @TempDir
    static Path tmp;
    static Path model;
    static Path calib;

    /** Files whose content holds times: compared by name only. */
    static final Set<String> TIMED = Set.of("quantization_report.json", "quantization_report.html", "_SUCCESS",
            "m.gguf.report.json", "m.gguf.report.html");

    @BeforeAll
    static void setUp() throws Exception {
        model = tmp.resolve("inputs/model");
        SyntheticModel.write(Storage.local(), model.toString(), SyntheticModel.Preset.TINY, 2, DType.BF16, 5,
                1L << 30);
        calib = tmp.resolve("inputs/calib.txt");
        Files.writeString(calib, TestText.sentences(9, 120, "north", "south", "river", "stone", "light", "paper",
                "sound", "green", "small", "ok"));
    }

    static List<String> args(String model, String calibration, String out, List<String> conf) {
        List<String> args = new ArrayList<>(List.of("quantize", "--model", model, "--output", out, "--calibration",
                calibration, "--samples", "4", "--seq-len", "32", "--samples-per-partition", "2", "--group-size", "32",
                "--conf", "spark.master=local[2]", "--conf", "spark.ui.enabled=false"));
        args.addAll(conf);
        if (out.endsWith(".gguf")) {
            args.addAll(List.of("--gguf-type", "Q8_0"));
        }
        return args;
    }

    /** The state changes of a straight run: how many, and the first one after the last layer (the commit's). */
    record Steps(int count, int commitFrom) {
        /** Points to halt at: all, or every {@code stride}-th plus the first two (run record) and the commit's. */
        List<Integer> points(int stride) {
            List<Integer> out = new ArrayList<>();
            for (int k = 0; k < count; k++) {
                if (k % stride == 0 || k < 2 || k >= commitFrom) {
                    out.add(k);
                }
            }
            return out;
        }
    }

    /** Runs the CLI in-process and counts its state changes (the straight run every halted one is compared with). */
    static Steps straight(List<String> args) {
        AtomicInteger steps = new AtomicInteger();
        AtomicInteger layersDone = new AtomicInteger(-1);
        CliRun run = CliRun.withFaults((point, i, attempt) -> {
            if (point == FaultHook.Point.WORK_STATE) {
                steps.incrementAndGet();
            } else if (point == FaultHook.Point.LAYER_DONE && i == 1) {
                layersDone.set(steps.get());
            }
        }, args.toArray(String[]::new));
        assertEquals(0, run.exitCode(), run.err());
        assertTrue(layersDone.get() > 0 && steps.get() > layersDone.get() + 3, steps + " steps, " + layersDone);
        return new Steps(steps.get(), layersDone.get());
    }

    /**
     * Halts a run in a child JVM before state change {@code k}, resumes it in-process over the dead run's lease, and
     * returns the resumed run.
     */
    static CliRun haltAndResume(int k, List<String> args, Storage storage, String leaseUri) throws Exception {
        Child child = child(k, args);
        assertEquals(HaltingCli.HALTED, child.exit(), "point " + k + " was not reached:\n" + child.err());
        assertTrue(child.err().contains("halting before state change " + k), child.err());
        // the dead run's lease is taken over once it is older than --lease-timeout 1 (heartbeats are in ms)
        if (storage.exists(leaseUri)) {
            long beat = new ObjectMapper().readTree(storage.readString(leaseUri)).path("heartbeat_ms").asLong();
            long wait = beat + 1100 - System.currentTimeMillis();
            if (wait > 0) {
                Thread.sleep(wait);
            }
        }
        List<String> resume = new ArrayList<>(args);
        resume.addAll(List.of("--resume", "--lease-timeout", "1"));
        CliRun resumed = CliRun.of(resume.toArray(String[]::new));
        assertEquals(0, resumed.exitCode(), "point " + k + ": " + resumed.err());
        return resumed;
    }

    @Test
    void aCheckpointHaltedAtItsStateChangesResumesToTheSameBytes() throws Exception {
        Path straight = tmp.resolve("local/straight");
        Steps steps = straight(args(model.toString(), calib.toString(), straight.toString(), List.of()));
        long t0 = System.nanoTime();
        List<Integer> points = steps.points(STRIDE);
        for (int k : points) {
            Path out = tmp.resolve("local/halted-" + k);
            haltAndResume(k, args(model.toString(), calib.toString(), out.toString(), List.of()), Storage.local(),
                    out.resolve("_lease.json").toString());
            assertEquals(files(Storage.local(), straight.toString()), files(Storage.local(), out.toString()),
                    "point " + k);
            assertEquals(List.of(), OutputManifest.verify(Storage.local(), out.toString()), "point " + k);
        }
        System.out.printf("local checkpoint: %d of %d points %s (commit from %d) in %.1f s%n", points.size(),
                steps.count(), points, steps.commitFrom(), (System.nanoTime() - t0) / 1e9);
    }

    @Test
    void aGgufFileHaltedAtItsCommitStepsResumesToTheSameBytes() throws Exception {
        Path straight = tmp.resolve("gguf/straight/m.gguf");
        Steps steps = straight(args(model.toString(), calib.toString(), straight.toString(), List.of()));
        long t0 = System.nanoTime();
        List<Integer> points = steps.points(STRIDE == 1 ? 1 : Integer.MAX_VALUE);
        for (int k : points) {
            Path out = tmp.resolve("gguf/halted-" + k + "/m.gguf");
            haltAndResume(k, args(model.toString(), calib.toString(), out.toString(), List.of()), Storage.local(),
                    out + ".lease.json");
            assertEquals(files(Storage.local(), straight.getParent().toString()),
                    files(Storage.local(), out.getParent().toString()), "point " + k);
            assertEquals(List.of(), OutputManifest.verifyFile(Storage.local(), out.toString()), "point " + k);
        }
        System.out.printf("local GGUF: %d of %d points %s (commit from %d) in %.1f s%n", points.size(),
                steps.count(), points, steps.commitFrom(), (System.nanoTime() - t0) / 1e9);
    }

    /**
     * On S3 a representative subset (the local test covers the same code at every stride point): the run record, a
     * point inside the layer loop, the commit's first and last steps.
     */
    @Test
    void onS3TheRunRecordALayerAndTheCommitResumeToTheSameBytes() throws Exception {
        Storage s3 = Storage.of(S3.settings());
        String s3Model = S3.uri("inputs/model");
        SyntheticModel.write(s3, s3Model, SyntheticModel.Preset.TINY, 2, DType.BF16, 5, 1L << 30);
        String s3Calib = S3.uri("inputs/calib.txt");
        s3.writeString(s3Calib, Files.readString(calib));
        List<String> conf = new ArrayList<>();
        S3.settings().forEach((k, v) -> conf.addAll(List.of("--conf", k + "=" + v)));
        String straight = S3.uri("straight");
        Steps steps = straight(args(s3Model, s3Calib, straight, conf));
        long t0 = System.nanoTime();
        List<Integer> points = STRIDE == 1 ? steps.points(1)
                : List.of(0, steps.commitFrom() / 2, steps.commitFrom(), steps.count() - 1);
        for (int k : points) {
            String out = S3.uri("halted-" + k);
            haltAndResume(k, args(s3Model, s3Calib, out, conf), s3, out + "/_lease.json");
            assertEquals(files(s3, straight), files(s3, out), "point " + k);
            assertEquals(List.of(), OutputManifest.verify(s3, out), "point " + k);
        }
        System.out.printf("S3 checkpoint: %d of %d points %s (commit from %d) in %.1f s%n", points.size(),
                steps.count(), points, steps.commitFrom(), (System.nanoTime() - t0) / 1e9);
    }

    /** Every file under a directory: its bytes' SHA-256 (or, for {@link #TIMED} files, only that it exists). */
    static Map<String, String> files(Storage storage, String dir) throws Exception {
        Map<String, String> out = new TreeMap<>();
        org.apache.hadoop.fs.Path root = Storage.path(dir);
        FileSystem fs = storage.fileSystem(root);
        String prefix = fs.getFileStatus(root).getPath().toString();
        RemoteIterator<LocatedFileStatus> it = fs.listFiles(root, true);
        while (it.hasNext()) {
            String path = it.next().getPath().toString();
            String name = path.substring(prefix.length() + 1);
            out.put(name, TIMED.contains(name) ? "(timed)" : java.util.HexFormat.of().formatHex(
                    java.security.MessageDigest.getInstance("SHA-256").digest(storage.readAll(path))));
        }
        return out;
    }

    record Child(int exit, String err) {}

    /** {@link HaltingCli} in a child JVM like this one (the test classpath, the same JVM options). */
    static Child child(int k, List<String> args) throws Exception {
        List<String> cmd = new ArrayList<>();
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        for (String arg : ManagementFactory.getRuntimeMXBean().getInputArguments()) {
            if (!arg.startsWith("-agentlib") && !arg.startsWith("-javaagent") && !arg.startsWith("-XX:ErrorFile")) {
                cmd.add(arg);
            }
        }
        cmd.add("-cp");
        cmd.add(System.getProperty("java.class.path"));
        cmd.add(HaltingCli.class.getName());
        cmd.add(Integer.toString(k));
        cmd.addAll(args);
        Path err = Files.createTempFile(tmp, "child", ".err");
        Process p = new ProcessBuilder(cmd).redirectError(err.toFile())
                .redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
        p.getOutputStream().close();
        assertTrue(p.waitFor(5, TimeUnit.MINUTES), "the child did not end");
        String text = Files.readString(err);
        return new Child(p.exitValue(), text.length() > 20000 ? text.substring(text.length() - 20000) : text);
    }

}
