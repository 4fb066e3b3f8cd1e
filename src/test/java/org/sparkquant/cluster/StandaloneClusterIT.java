package org.sparkquant.cluster;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;
import org.junit.jupiter.api.io.TempDir;
import org.sparkquant.cli.CliRun;
import org.sparkquant.deploy.AirflowSteps;
import org.sparkquant.io.Storage;
import org.sparkquant.testing.MotoS3;
import org.sparkquant.testing.TestPaths;

/**
 * The shaded jar on a real Spark standalone cluster (a master and two workers, each its own JVM, started from Spark's
 * Maven Central jars), submitted as the README tells users to, with the model, the calibration data and the output on
 * S3 (moto): in cluster deploy mode through deploy/smoke-test-cluster.sh, and in client deploy mode through
 * deploy/spark-submit.sh while one worker is killed mid-run. Each output equals a {@code local[1]} run byte for byte
 * and verifies; the event log names every Spark job as the driver's progress does. Runs after {@code package}
 * (failsafe), since it needs the shaded jar.
 */
@Tag("cluster")
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class StandaloneClusterIT {
    private static final MotoS3 S3 = new MotoS3("sparkquant-cluster-it");
    private static final ObjectMapper JSON = new ObjectMapper();
    /** Files whose content holds timings. */
    private static final Set<String> TIMED = Set.of("quantization_report.json", "quantization_report.html",
            "_SUCCESS");
    /** The smoke test's scratch directory: its model, calibration and local[1] reference serve both tests. */
    private static final String SCRATCH = S3.uri("smoke");
    /** deploy/smoke-test-cluster.sh's quantize options, so that its local[1] run is the reference of both tests. */
    private static final List<String> QUANTIZE = List.of("--samples", "8", "--seq-len", "64",
            "--samples-per-partition", "2");
    private static final Pattern PROGRESS = Pattern.compile("^\\[\\d+(?::\\d{2}){1,2}\\] (.+?)(?: · ETA [0-9:]+)?$");
    private static final long RUN_TIMEOUT_S = 900;

    @TempDir
    static Path tmp;

    private static Path jar;
    private static StandaloneCluster cluster;

    @BeforeAll
    static void setUp() throws IOException {
        S3.start(); // skips the class when python3 has no moto
        jar = shadedJar();
        Path home = StandaloneCluster.assembleHome(TestPaths.repository(), tmp.resolve("spark-home"),
                System.getProperty("sparkquant.spark.version"));
        Files.createDirectories(tmp.resolve("cluster"));
        // the nodes hold S3 credentials (as from an instance role): executors of a run that passes none inherit them
        cluster = StandaloneCluster.start(home, tmp.resolve("cluster"), 2, 2, "4g", Map.of(
                "AWS_ACCESS_KEY_ID", MotoS3.ACCESS_KEY, "AWS_SECRET_ACCESS_KEY", MotoS3.SECRET_KEY));
    }

    @AfterAll
    static void tearDown() throws IOException {
        if (cluster != null) {
            cluster.close();
        }
        S3.close();
        // the Spark home's jars are links into the Maven repository: remove them before JUnit warns about each
        Path jars = tmp.resolve("spark-home/jars");
        if (Files.isDirectory(jars)) {
            try (Stream<Path> links = Files.list(jars)) {
                for (Path link : links.filter(Files::isSymbolicLink).toList()) {
                    Files.delete(link);
                }
            }
        }
    }

    /** The shaded jar failsafe names (pom.xml), or the one in target/. */
    private static Path shadedJar() throws IOException {
        String property = System.getProperty("sparkquant.jar");
        if (property != null && !property.isBlank()) {
            Path p = Path.of(property);
            assertTrue(Files.isRegularFile(p), "no shaded jar at " + p + ": run mvn package first");
            return p;
        }
        try (Stream<Path> files = Files.list(TestPaths.repository().resolve("target"))) {
            return files.filter(p -> p.getFileName().toString().matches("sparkquant-.*-spark\\.jar")).findFirst()
                    .orElseThrow(() -> new AssertionError("no target/sparkquant-*-spark.jar: run mvn package first"));
        }
    }

    private static List<String> storageSettings() {
        List<String> args = new ArrayList<>();
        S3.settings().forEach((k, v) -> args.addAll(List.of("--conf", k + "=" + v)));
        return args;
    }

    /** Settings of the cluster runs: the storage, an event log, and one executor per worker. */
    private static List<String> runSettings(Path events) {
        List<String> args = storageSettings();
        args.addAll(List.of("--conf", "spark.eventLog.enabled=true", "--conf", "spark.eventLog.dir=" + events.toUri(),
                "--conf", "spark.eventLog.compress=false", "--conf", "spark.cores.max=2"));
        return args;
    }

    /** What the deploy/ scripts need besides the cluster's Spark home: the jar and executors sized for the model. */
    private static Map<String, String> environment() {
        Map<String, String> env = new HashMap<>(cluster.environment());
        env.put("SPARKQUANT_JAR", jar.toString());
        env.put("EXECUTOR_MEMORY", "2g");
        env.put("EXECUTOR_CORES", "1");
        return env;
    }

    private static String script(String name) {
        return TestPaths.repository().resolve("deploy").resolve(name).toString();
    }

    @Test
    @Order(1)
    void clusterDeployModeThroughTheSmokeTestScript() throws IOException {
        Path events = Files.createDirectories(tmp.resolve("events-smoke"));
        String scratch = SCRATCH;
        List<String> command = new ArrayList<>(List.of("bash", script("smoke-test-cluster.sh"), "--master",
                cluster.masterUrl(), "--deploy-mode", "cluster", "--scratch", scratch, "--keep", "--"));
        command.addAll(runSettings(events));
        Submission run = Submission.start(command, environment(), tmp.resolve("smoke.out"), line -> { });
        int code = run.await(RUN_TIMEOUT_S);
        assertEquals(0, code, "smoke test failed:\n" + run.stderrTail() + "\nmaster:\n" + cluster.logTail("master"));
        assertTrue(run.stdout().contains("cluster smoke test passed"), run.stdout());

        // the script compared the manifests' checksums; compare the bytes too
        assertSameFiles(scratch + "/local", scratch + "/cluster");
        assertVerifies(scratch + "/cluster");

        // the driver ran on a worker: its progress is in that worker's work directory
        List<String> driverErr = new ArrayList<>();
        for (int i = 0; i < 2; i++) {
            try (Stream<Path> dirs = Files.list(cluster.workDir(i))) {
                for (Path d : dirs.filter(d -> d.getFileName().toString().startsWith("driver-")).toList()) {
                    driverErr.addAll(Files.readAllLines(d.resolve("stderr"), StandardCharsets.UTF_8));
                }
            }
        }
        assertJobsNamedAsProgress(clusterEvents(events), driverErr);
    }

    @Test
    @Order(2) // after the smoke test, whose inputs and local[1] output it reuses; last, since it leaves one worker
    void clientDeployModeSurvivesAKilledWorker() throws IOException {
        String reference = SCRATCH + "/local";
        assumeTrue(Storage.of(S3.settings()).exists(reference + "/_SUCCESS"),
                "runs after the smoke test, whose local[1] run is its reference");
        Path events = Files.createDirectories(tmp.resolve("events-client"));
        String output = S3.uri("client");
        List<String> command = new ArrayList<>(List.of("bash", script("spark-submit.sh"), "--master",
                cluster.masterUrl(), "--deploy-mode", "client", "--", "quantize", "--model", SCRATCH + "/model",
                "--calibration", SCRATCH + "/calibration.txt", "--output", output));
        command.addAll(QUANTIZE);
        command.addAll(runSettings(events));
        AtomicInteger killed = new AtomicInteger(-1);
        AtomicInteger linesBeforeKill = new AtomicInteger();
        List<String> seen = new ArrayList<>();
        // kill worker 0 with its executor while layer 1 is being quantized: the rest of the run has to move
        Submission run = Submission.start(command, environment(), tmp.resolve("client.out"), line -> {
            seen.add(line);
            Matcher m = PROGRESS.matcher(line);
            if (killed.get() < 0 && m.matches() && m.group(1).startsWith("layer 1/2 · ")
                    && m.group(1).contains(" · quantize")) {
                linesBeforeKill.set(seen.size());
                killed.set(cluster.killWorker(0));
            }
        });
        int code = run.await(RUN_TIMEOUT_S);
        assertEquals(0, code, "client-mode run failed:\n" + run.stderrTail() + "\nmaster:\n"
                + cluster.logTail("master"));
        assertTrue(killed.get() >= 1, "worker 0 was killed with its executor (child JVMs killed: " + killed.get()
                + ")");
        List<String> progress = progressLabels(run.stderr());
        List<String> after = progressLabels(run.stderr().subList(linesBeforeKill.get(), run.stderr().size()));
        assertTrue(after.stream().anyMatch(l -> l.startsWith("layer 2/2 · ")),
                "the kill came before layer 2: " + progress);

        assertSameFiles(reference, output);
        assertVerifies(output);

        List<JsonNode> log = clusterEvents(events);
        assertJobsNamedAsProgress(log, run.stderr());
        // the executor's loss is on record, and tasks succeeded on other executors after it
        int removed = -1;
        Set<String> removedIds = new LinkedHashSet<>();
        for (int i = 0; i < log.size(); i++) {
            if (log.get(i).path("Event").asText().equals("SparkListenerExecutorRemoved")) {
                removed = removed < 0 ? i : removed;
                removedIds.add(log.get(i).path("Executor ID").asText());
            }
        }
        assertTrue(removed >= 0, "no executor removed in the event log");
        long laterTasks = log.subList(removed, log.size()).stream()
                .filter(e -> e.path("Event").asText().equals("SparkListenerTaskEnd"))
                .filter(e -> e.path("Task End Reason").path("Reason").asText().equals("Success"))
                .filter(e -> !removedIds.contains(e.path("Task Info").path("Executor ID").asText()))
                .count();
        assertTrue(laterTasks > 0, "no task succeeded after executor(s) " + removedIds + " were lost");
    }

    /** The same files with the same bytes, but for the timings. */
    private static void assertSameFiles(String expected, String actual) {
        Storage s3 = Storage.of(S3.settings());
        List<String> files = s3.list(expected).stream().filter(f -> !TIMED.contains(f)).toList();
        assertTrue(files.contains("model.safetensors"), files.toString());
        assertEquals(files, s3.list(actual).stream().filter(f -> !TIMED.contains(f)).toList());
        for (String f : files) {
            assertArrayEquals(s3.readAll(expected + "/" + f), s3.readAll(actual + "/" + f),
                    f + " differs between " + expected + " (local[1]) and " + actual + " (the cluster)");
        }
    }

    private static void assertVerifies(String output) {
        List<String> args = new ArrayList<>(List.of("verify", "--model", output));
        args.addAll(storageSettings());
        CliRun verify = CliRun.of(args.toArray(String[]::new));
        assertEquals(0, verify.exitCode(), verify.err());
    }

    /** The step labels a driver printed ({@code [0:12] layer 1/2 · mlp.down_proj · hessian · ETA 0:30}). */
    private static List<String> progressLabels(List<String> stderr) {
        List<String> labels = new ArrayList<>();
        for (String line : stderr) {
            Matcher m = PROGRESS.matcher(line);
            if (m.matches()) {
                labels.add(m.group(1));
            }
        }
        return labels;
    }

    /**
     * Every Spark job of the run carries a description (the Spark UI's job name) that the driver printed as a step,
     * and every layer's Hessian and quantize steps named a job.
     */
    private static void assertJobsNamedAsProgress(List<JsonNode> events, List<String> driverStderr) {
        List<String> labels = progressLabels(driverStderr);
        assertFalse(labels.isEmpty(), "no progress lines in the driver's stderr:\n" + driverStderr);
        Set<String> jobNames = new LinkedHashSet<>();
        for (JsonNode e : events) {
            if (e.path("Event").asText().equals("SparkListenerJobStart")) {
                String name = e.path("Properties").path("spark.job.description").asText("");
                assertTrue(labels.contains(name), "job " + e.path("Job ID") + " is named '" + name
                        + "', which is no step the driver printed: " + labels);
                jobNames.add(name);
            }
        }
        List<String> layerSteps = labels.stream().filter(l -> l.startsWith("layer "))
                .filter(l -> l.endsWith(" · hessian") || l.contains(" · quantize ")).toList();
        assertTrue(layerSteps.stream().anyMatch(l -> l.startsWith("layer 2/2 · ")), labels.toString());
        for (String step : layerSteps) {
            assertTrue(jobNames.contains(step), "no Spark job named '" + step + "' in the event log: " + jobNames);
        }
    }

    /** The events of the one standalone application (app-...) logged under {@code dir}. */
    private static List<JsonNode> clusterEvents(Path dir) throws IOException {
        List<Path> logs;
        try (Stream<Path> files = Files.walk(dir)) {
            logs = files.filter(Files::isRegularFile)
                    .filter(p -> p.getFileName().toString().matches("(events_\\d+_)?app-[^.]*"))
                    .sorted().toList();
        }
        assertEquals(1, logs.stream().map(p -> p.getFileName().toString().replaceFirst("^events_\\d+_", ""))
                .distinct().count(), "one standalone application's event log expected under " + dir + ": " + logs);
        List<JsonNode> events = new ArrayList<>();
        for (Path log : logs) {
            for (String line : Files.readAllLines(log, StandardCharsets.UTF_8)) {
                if (!line.isBlank()) {
                    try {
                        events.add(JSON.readTree(line));
                    } catch (IOException e) {
                        throw new UncheckedIOException(log + ": not JSON lines", e);
                    }
                }
            }
        }
        return events;
    }

    /**
     * The Airflow DAG's steps (deploy/airflow), built by its helper for this cluster's master and run exactly as
     * built: a zombie attempt's lease refuses the retry, then quantize, verify and eval succeed, and the output
     * equals an in-process run of the same job file.
     */
    @Test
    @Order(3)
    void airflowDagStepsRunOnTheCluster() throws Exception {
        Path dir = Files.createDirectories(tmp.resolve("airflow"));
        AirflowSteps.runOn(S3, dir, cluster.home().resolve("bin/spark-submit"), cluster.masterUrl(), jar,
                environment());
    }
}
