package org.sparkquant.spark;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashSet;
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
 * ({@link Runtime#halt}, as a kill -9) just before a change of its state, resumed with {@code --resume} in a new
 * child JVM (taking over the dead run's lease), which is halted before the next change not yet halted at, and so on
 * until a run finishes; then every byte of the output is compared with an uninterrupted run's. The state changes
 * are named ({@link FaultHook#atState}: the run record, every layer's progress records and staged hidden states and
 * their deletion, each file of the commit and the clean-up), so a chain halts once at every change of the
 * uninterrupted run and at those only a resumed run makes (clearing a half-written commit). Each resume starts from
 * what the previous halt left, which is also the Airflow case of a retry that dies again.
 *
 * <p>On local files the chain halts at every state change of a checkpoint run. A GGUF file's chain halts at its
 * commit steps (its layer loop is the checkpoint's code), the S3 (moto) chain at the run record, a point inside the
 * layer loop and the commit's first and last steps; {@code -Dsparkquant.crash.every=true} halts those at every
 * change too. {@code SafeRunsTest} halts in-process (by an exception) at every change and compares after each.
 */
@org.junit.jupiter.api.Tag("cluster")
class CrashPointTest {
    static final boolean EVERY = Boolean.getBoolean("sparkquant.crash.every");

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

    /** The named state changes of an uninterrupted run, in order, and the first one after the last layer. */
    record Steps(List<String> names, int commitFrom) {}

    /** Runs the CLI in-process and names its state changes (the run every chain is compared with). */
    static Steps straight(List<String> args) {
        List<String> names = new ArrayList<>();
        AtomicInteger layersDone = new AtomicInteger(-1);
        CliRun run = CliRun.withFaults(new FaultHook() {
            @Override
            public void at(Point point, int index, int attempt) {
                if (point == Point.LAYER_DONE && index == 1) {
                    layersDone.set(names.size());
                }
            }

            @Override
            public void atState(int index, String what) {
                names.add(what);
            }
        }, args.toArray(String[]::new));
        assertEquals(0, run.exitCode(), run.err());
        assertEquals(names.size(), new HashSet<>(names).size(), "state changes are named uniquely: " + names);
        assertTrue(layersDone.get() > 0 && names.size() > layersDone.get() + 3, names + ", " + layersDone);
        return new Steps(List.copyOf(names), layersDone.get());
    }

    /**
     * Runs {@code args} in child JVMs, each halted before the first state change not halted at before (of those in
     * {@code only}, if not null), each after the first resuming the last, until one finishes; returns the changes
     * halted at, in order.
     */
    static List<String> chain(List<String> args, Collection<String> only, int most, Storage storage, String leaseUri)
            throws Exception {
        Path visited = Files.createTempFile(tmp, "visited", ".txt");
        Path onlyFile = null;
        if (only != null) {
            onlyFile = Files.createTempFile(tmp, "only", ".txt");
            Files.write(onlyFile, only);
        }
        List<String> halted = new ArrayList<>();
        for (int run = 0; ; run++) {
            assertTrue(run <= most, "the chain does not end: " + halted);
            List<String> cmd = new ArrayList<>(args);
            if (run > 0) {
                cmd.addAll(List.of("--resume", "--lease-timeout", "1"));
                awaitStaleLease(storage, leaseUri);
            }
            Child child = child(visited, onlyFile, cmd);
            if (child.exit() == 0) {
                return halted;
            }
            assertEquals(HaltingCli.HALTED, child.exit(), "resumed after halts at " + halted + ":\n" + child.err());
            List<String> lines = Files.readAllLines(visited);
            halted.add(lines.get(lines.size() - 1));
        }
    }

    /** Waits until the dead run's lease is older than --lease-timeout 1 (heartbeats are in ms). */
    static void awaitStaleLease(Storage storage, String leaseUri) throws Exception {
        if (storage.exists(leaseUri)) {
            long beat = new ObjectMapper().readTree(storage.readString(leaseUri)).path("heartbeat_ms").asLong();
            long wait = beat + 1100 - System.currentTimeMillis();
            if (wait > 0) {
                Thread.sleep(wait);
            }
        }
    }

    @Test
    void aCheckpointHaltedAtEveryStateChangeResumesToTheSameBytes() throws Exception {
        Path straight = tmp.resolve("local/straight");
        Steps steps = straight(args(model.toString(), calib.toString(), straight.toString(), List.of()));
        long t0 = System.nanoTime();
        Path out = tmp.resolve("local/chain");
        List<String> halted = chain(args(model.toString(), calib.toString(), out.toString(), List.of()), null,
                2 * steps.names().size() + 10, Storage.local(), out.resolve("_lease.json").toString());
        assertTrue(halted.containsAll(steps.names()), "not halted at " + missing(steps.names(), halted));
        assertEquals(files(Storage.local(), straight.toString()), files(Storage.local(), out.toString()));
        assertEquals(List.of(), OutputManifest.verify(Storage.local(), out.toString()));
        System.out.printf("local checkpoint: halted at %d changes (%d of an uninterrupted run) in %.1f s: %s%n",
                halted.size(), steps.names().size(), (System.nanoTime() - t0) / 1e9, halted);
    }

    @Test
    void aGgufFileHaltedAtItsCommitStepsResumesToTheSameBytes() throws Exception {
        Path straight = tmp.resolve("gguf/straight/m.gguf");
        Steps steps = straight(args(model.toString(), calib.toString(), straight.toString(), List.of()));
        long t0 = System.nanoTime();
        Path out = tmp.resolve("gguf/chain/m.gguf");
        List<String> expected = EVERY ? steps.names() : steps.names().subList(steps.commitFrom(), steps.names().size());
        List<String> halted = chain(args(model.toString(), calib.toString(), out.toString(), List.of()),
                EVERY ? null : expected, 2 * steps.names().size() + 10, Storage.local(), out + ".lease.json");
        assertTrue(halted.containsAll(expected), "not halted at " + missing(expected, halted));
        assertEquals(files(Storage.local(), straight.getParent().toString()),
                files(Storage.local(), out.getParent().toString()));
        assertEquals(List.of(), OutputManifest.verifyFile(Storage.local(), out.toString()));
        System.out.printf("local GGUF: halted at %d changes (of %d) in %.1f s: %s%n", halted.size(),
                steps.names().size(), (System.nanoTime() - t0) / 1e9, halted);
    }

    /**
     * On S3 a representative subset (the local chain covers the same code at every change): the run record, a
     * change inside the layer loop, the commit's first and last steps.
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
        List<String> names = steps.names();
        List<String> expected = EVERY ? names : List.of(names.get(0), names.get(steps.commitFrom() / 2),
                names.get(steps.commitFrom()), names.get(names.size() - 1));
        String out = S3.uri("chain");
        List<String> halted = chain(args(s3Model, s3Calib, out, conf), EVERY ? null : expected,
                2 * names.size() + 10, s3, out + "/_lease.json");
        assertTrue(halted.containsAll(expected), "not halted at " + missing(expected, halted));
        assertEquals(files(s3, straight), files(s3, out));
        assertEquals(List.of(), OutputManifest.verify(s3, out));
        System.out.printf("S3 checkpoint: halted at %d changes (of %d) in %.1f s: %s%n", halted.size(),
                names.size(), (System.nanoTime() - t0) / 1e9, halted);
    }

    private static List<String> missing(List<String> expected, List<String> halted) {
        return expected.stream().filter(n -> !halted.contains(n)).toList();
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

    /** {@link HaltingCli} {@code --chain} in a child JVM like this one (the test classpath, the same JVM options). */
    static Child child(Path visited, Path only, List<String> args) throws Exception {
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
        cmd.add("--chain");
        cmd.add(visited.toString());
        if (only != null) {
            cmd.add("--only");
            cmd.add(only.toString());
        }
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
