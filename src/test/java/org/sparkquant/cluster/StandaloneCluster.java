package org.sparkquant.cluster;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.HttpURLConnection;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

/**
 * A Spark standalone cluster on loopback for tests: one master and a number of workers, each its own JVM started
 * through {@code bin/spark-class} of a Spark home assembled from the Maven Central jars (see {@link #assembleHome}),
 * on free ports. Workers launch executors (and cluster-mode drivers) as their child processes, which
 * {@link #killWorker} kills with them.
 */
public final class StandaloneCluster implements AutoCloseable {
    private static final long START_TIMEOUT_MS = 120_000;
    private static final ObjectMapper JSON = new ObjectMapper();

    private final Path home;
    private final Path dir;
    private final int masterPort;
    private final int masterUiPort;
    private final Process master;
    private final List<Process> workers = new ArrayList<>();
    private final List<Path> workerDirs = new ArrayList<>();

    private StandaloneCluster(Path home, Path dir) {
        this.home = home;
        this.dir = dir;
        this.masterPort = freePort();
        this.masterUiPort = freePort();
        // no REST submission server: it would take the fixed port 6066
        this.master = daemon("master", Map.of("SPARK_MASTER_OPTS", "-Dspark.master.rest.enabled=false"),
                "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", Integer.toString(masterPort),
                "--webui-port", Integer.toString(masterUiPort));
    }

    /**
     * Starts a master and {@code workers} workers of {@code cores} cores and {@code memory} (e.g. "4g") each, and
     * waits until every worker has registered. {@code dir} holds the logs and the workers' work directories.
     */
    public static StandaloneCluster start(Path home, Path dir, int workers, int cores, String memory) {
        return start(home, dir, workers, cores, memory, Map.of());
    }

    /**
     * {@link #start(Path, Path, int, int, String)} with {@code nodeEnv} in the workers' environment, which their
     * executors inherit: what a real node provides, such as S3 credentials from its role.
     */
    public static StandaloneCluster start(Path home, Path dir, int workers, int cores, String memory,
            Map<String, String> nodeEnv) {
        try {
            Files.createDirectories(dir.resolve("local"));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        StandaloneCluster cluster = new StandaloneCluster(home, dir);
        try {
            for (int i = 0; i < workers; i++) {
                Path work = dir.resolve("worker-" + i);
                Files.createDirectories(work);
                cluster.workerDirs.add(work);
                cluster.workers.add(cluster.daemon("worker-" + i, nodeEnv, "org.apache.spark.deploy.worker.Worker",
                        cluster.masterUrl(), "--host", "127.0.0.1", "--port", Integer.toString(freePort()),
                        "--webui-port", Integer.toString(freePort()), "--cores", Integer.toString(cores),
                        "--memory", memory, "--work-dir", work.toString()));
            }
            cluster.awaitAliveWorkers(workers);
            return cluster;
        } catch (IOException e) {
            cluster.close();
            throw new UncheckedIOException(e);
        } catch (RuntimeException | Error e) {
            cluster.close();
            throw e;
        }
    }

    /**
     * A Spark home laid out from Maven Central's jars: {@code jars/} links what a Spark distribution holds (spark-core
     * and spark-sql with their dependencies, resolved on their own by src/test/spark-home/pom.xml, so none of
     * sparkquant's dependencies: those must come from the shaded jar); {@code bin/} has spark-class and spark-submit
     * from src/test/spark-home; {@code conf/} a log4j2 configuration that keeps the logs short. {@code sparkVersion}
     * is the build's (null: the helper pom's default).
     */
    public static Path assembleHome(Path repository, Path home, String sparkVersion) throws IOException {
        Files.createDirectories(home.resolve("jars"));
        Files.createDirectories(home.resolve("bin"));
        Files.createDirectories(home.resolve("conf"));
        for (Path jar : sparkDistribution(repository, home.resolve("classpath.txt"), sparkVersion)) {
            Path link = home.resolve("jars").resolve(jar.getFileName());
            if (!Files.exists(link, java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
                Files.createSymbolicLink(link, jar);
            }
        }
        for (String script : List.of("spark-class", "spark-submit")) {
            Path to = home.resolve("bin").resolve(script);
            Files.copy(repository.resolve("src/test/spark-home/bin").resolve(script), to,
                    java.nio.file.StandardCopyOption.REPLACE_EXISTING);
            if (!to.toFile().setExecutable(true)) {
                throw new IOException("cannot make " + to + " executable");
            }
        }
        Files.writeString(home.resolve("conf/log4j2.properties"), String.join("\n",
                "rootLogger.level = warn",
                "rootLogger.appenderRef.stderr.ref = console",
                "appender.console.type = Console",
                "appender.console.name = console",
                "appender.console.target = SYSTEM_ERR",
                "appender.console.layout.type = PatternLayout",
                "appender.console.layout.pattern = %d{HH:mm:ss.SSS} %p %c{1}: %m%n",
                // the master's and workers' decisions (executors granted, lost, relaunched) stay in their logs
                "logger.deploy.name = org.apache.spark.deploy",
                "logger.deploy.level = info",
                ""));
        return home;
    }

    /** The jars of src/test/spark-home/pom.xml as Maven resolves them (from the build's local repository). */
    private static List<Path> sparkDistribution(Path repository, Path classpathFile, String sparkVersion)
            throws IOException {
        List<String> command = new ArrayList<>(List.of("mvn", "-B", "-q", "-f",
                repository.resolve("src/test/spark-home/pom.xml").toString(),
                "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:build-classpath",
                "-Dmdep.outputFile=" + classpathFile));
        if (sparkVersion != null && !sparkVersion.isBlank()) {
            command.add("-Dspark.version=" + sparkVersion);
        }
        Path log = classpathFile.resolveSibling("maven.log");
        try {
            Process p = new ProcessBuilder(command).redirectErrorStream(true).redirectOutput(log.toFile()).start();
            if (!p.waitFor(10, TimeUnit.MINUTES) || p.exitValue() != 0) {
                p.destroyForcibly();
                throw new IOException("resolving the Spark distribution's jars failed (" + command + "):\n"
                        + Files.readString(log));
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException(e);
        }
        List<Path> jars = Stream.of(Files.readString(classpathFile).strip().split(java.io.File.pathSeparator))
                .filter(s -> !s.isBlank()).map(Path::of).toList();
        if (jars.stream().noneMatch(j -> j.getFileName().toString().startsWith("spark-core_"))) {
            throw new IOException("no spark-core among the resolved jars: " + jars);
        }
        return jars;
    }

    /**
     * The environment every Spark process of this cluster's tests runs with. Scratch space (executors' copies of the
     * application jar, shuffle files) stays under the cluster's directory: a killed executor cleans nothing up.
     */
    public Map<String, String> environment() {
        return Map.of("SPARK_HOME", home.toString(), "SPARK_LOCAL_IP", "127.0.0.1", "SPARK_SCALA_VERSION", "2.13",
                "SPARK_DAEMON_MEMORY", "512m", "SPARK_LOCAL_DIRS", dir.resolve("local").toString());
    }

    private Process daemon(String name, Map<String, String> env, String mainClass, String... args) {
        List<String> command = new ArrayList<>(List.of(home.resolve("bin/spark-class").toString(), mainClass));
        command.addAll(List.of(args));
        ProcessBuilder pb = new ProcessBuilder(command).redirectErrorStream(true)
                .redirectOutput(dir.resolve(name + ".log").toFile());
        pb.environment().putAll(environment());
        pb.environment().putAll(env);
        try {
            return pb.start();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot start the Spark " + name, e);
        }
    }

    public String masterUrl() {
        return "spark://127.0.0.1:" + masterPort;
    }

    public Path home() {
        return home;
    }

    /** Worker {@code i}'s work directory: one subdirectory per application (executors) and per cluster-mode driver. */
    public Path workDir(int i) {
        return workerDirs.get(i);
    }

    /** The master's view ({@code /json/} of its web UI): workers, applications, drivers. */
    public JsonNode state() throws IOException {
        HttpURLConnection c = (HttpURLConnection) new URL("http://127.0.0.1:" + masterUiPort + "/json/")
                .openConnection();
        c.setConnectTimeout(2000);
        c.setReadTimeout(10_000);
        try {
            return JSON.readTree(c.getInputStream());
        } finally {
            c.disconnect();
        }
    }

    private void awaitAliveWorkers(int n) {
        long deadline = System.currentTimeMillis() + START_TIMEOUT_MS;
        String last = "no answer";
        while (System.currentTimeMillis() < deadline) {
            if (!master.isAlive()) {
                throw new IllegalStateException("the Spark master exited with " + master.exitValue() + ":\n"
                        + logTail("master"));
            }
            for (int i = 0; i < workers.size(); i++) {
                if (!workers.get(i).isAlive()) {
                    throw new IllegalStateException("Spark worker " + i + " exited:\n" + logTail("worker-" + i));
                }
            }
            try {
                JsonNode state = state();
                last = "alive workers: " + state.path("aliveworkers").asInt();
                if (state.path("aliveworkers").asInt() >= n) {
                    return;
                }
            } catch (IOException e) {
                last = e.toString();
            }
            sleep(250);
        }
        throw new IllegalStateException("the standalone cluster did not come up within " + START_TIMEOUT_MS + " ms ("
                + last + "):\n" + logTail("master"));
    }

    /**
     * Kills worker {@code i} with SIGKILL, and at the same moment the executors and drivers it launched: a machine
     * that dies. Returns how many of its child JVMs were killed with it.
     */
    public int killWorker(int i) {
        Process worker = workers.get(i);
        List<ProcessHandle> children = worker.descendants().toList();
        children.forEach(ProcessHandle::destroyForcibly);
        worker.destroyForcibly();
        try {
            worker.waitFor(30, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        return children.size();
    }

    /** The JVMs worker {@code i} launched (executors, drivers) that are running. */
    public long children(int i) {
        return workers.get(i).descendants().filter(ProcessHandle::isAlive).count();
    }

    public String logTail(String name) {
        try {
            String text = Files.readString(dir.resolve(name + ".log"), StandardCharsets.UTF_8);
            return text.length() > 6000 ? text.substring(text.length() - 6000) : text;
        } catch (IOException e) {
            return "(no log: " + e.getMessage() + ")";
        }
    }

    /** Stops every worker (and what it launched) and the master: SIGTERM, then SIGKILL for what is left. */
    @Override
    public void close() {
        List<ProcessHandle> all = new ArrayList<>();
        for (Process w : workers) {
            all.addAll(w.descendants().toList());
            all.add(w.toHandle());
        }
        if (master != null) {
            all.add(master.toHandle());
        }
        all.forEach(ProcessHandle::destroy);
        long deadline = System.currentTimeMillis() + 15_000;
        for (ProcessHandle p : all) {
            try {
                p.onExit().get(Math.max(1, deadline - System.currentTimeMillis()), TimeUnit.MILLISECONDS);
            } catch (Exception e) {
                p.destroyForcibly();
            }
        }
    }

    static int freePort() {
        try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            return s.getLocalPort();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(e);
        }
    }
}
