package org.sparkquant.deploy;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Predicate;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.sparkquant.testing.TestPaths;
import picocli.CommandLine.Option;

/**
 * One source of truth for the cluster settings: {@code conf/spark-defaults.conf.template}. The launchers are checked
 * by running them (spark-submit.sh through Spark's own SparkSubmit, spark-settings.sh against the Airflow helper's
 * sizing); the static examples (SparkApplication, EMR steps, Dockerfile) by parsing them. What cannot run here is
 * said where it matters: no Kubernetes API server or Spark kubernetes module, no gcloud, no Docker daemon.
 */
class DeploySettingsTest {
    private static final Path REPO = TestPaths.repository();
    private static final Pattern VERBOSE_PROPERTY = Pattern.compile("^\\s*\\((spark\\.[^,]+),(.*)\\)\\s*$");

    @TempDir
    Path tmp;

    /** The template's settings, in file order. */
    static Map<String, String> template() throws IOException {
        Map<String, String> out = new LinkedHashMap<>();
        for (String line : Files.readAllLines(REPO.resolve("conf/spark-defaults.conf.template"))) {
            String l = line.strip();
            if (l.isEmpty() || l.startsWith("#")) {
                continue;
            }
            String[] kv = l.split("\\s+", 2);
            out.put(kv[0], kv.length > 1 ? kv[1].strip() : "");
        }
        return out;
    }

    private static Map<String, String> without(Map<String, String> settings, String prefix) {
        Map<String, String> out = new LinkedHashMap<>(settings);
        out.keySet().removeIf(k -> k.startsWith(prefix));
        return out;
    }

    /** The "Spark properties used" block of spark-submit --verbose. */
    private static Map<String, String> verboseProperties(String stderr) {
        Map<String, String> out = new LinkedHashMap<>();
        boolean in = false;
        for (String line : stderr.split("\n")) {
            if (line.startsWith("Spark properties used")) {
                in = true;
                continue;
            }
            if (in) {
                Matcher m = VERBOSE_PROPERTY.matcher(line);
                if (m.matches()) {
                    out.put(m.group(1), m.group(2));
                } else if (!line.strip().startsWith("--conf") && !out.isEmpty()) {
                    break;
                }
            }
        }
        assertFalse(out.isEmpty(), "no 'Spark properties used' in spark-submit --verbose:\n" + stderr);
        return out;
    }

    private static void assertCarries(Map<String, String> expected, Map<String, String> actual, String where) {
        expected.forEach((k, v) -> assertEquals(v, actual.get(k), where + ": " + k));
    }

    private static List<String> lines(String s) {
        return s.strip().lines().toList();
    }

    @Test
    @Tag("cluster")
    void sparkSubmitShPassesTheTemplateToSparkSubmit() throws Exception {
        MiniSparkHome spark = MiniSparkHome.create(tmp);
        Map<String, String> env = new HashMap<>();
        env.put("SPARK_HOME", spark.home().toString());
        env.put("SPARKQUANT_JAR", spark.applicationJar().toString());
        env.put("OPENBLAS_CORETYPE", null);
        MiniSparkHome.Result run = MiniSparkHome.run(List.of("bash", REPO.resolve("deploy/spark-submit.sh").toString(),
                "--master", "local[1]", "--verbose", "--", "--version"), env, tmp, 120).assertOk("spark-submit.sh");
        assertTrue(run.out().startsWith("sparkquant "), run.out());
        Map<String, String> used = verboseProperties(run.err());
        assertEquals(template(), used, "spark-submit.sh passes the template's settings, no more, no fewer");
    }

    @Test
    void launchersSizeTheExecutorAlike() throws Exception {
        Map<String, String> template = template();
        // at the template's own size, the rule gives the template's values
        String heap = template.get("spark.executor.memory");
        for (String[] size : new String[][] {{null, null}, {heap, template.get("spark.executor.cores")},
                {"8g", "2"}, {"64g", "16"}}) {
            Map<String, String> env = new HashMap<>();
            env.put("OPENBLAS_CORETYPE", null);
            env.put("EXECUTOR_MEMORY", size[0]);
            env.put("EXECUTOR_CORES", size[1]);
            String bash = MiniSparkHome.run(List.of("bash", REPO.resolve("deploy/spark-settings.sh").toString()), env,
                    tmp, 60).assertOk("spark-settings.sh").out();
            List<String> py = new ArrayList<>(List.of(AirflowSteps.python().toString(),
                    AirflowSteps.helper().toString(), "settings"));
            if (size[0] != null) {
                py.addAll(List.of("--executor-memory", size[0], "--executor-cores", size[1]));
            }
            String python = MiniSparkHome.run(py, Map.of(), tmp, 60).assertOk("sparkquant_airflow.py settings").out();
            assertEquals(lines(bash), lines(python), "bash and the Airflow helper at " + size[0]);
            if (size[0] == null || size[0].equals(heap)) {
                List<String> expected = template.entrySet().stream().map(e -> e.getKey() + "=" + e.getValue()).toList();
                assertEquals(expected, lines(bash), "the template as it is at its own size");
            }
        }
        // another settings file: its other JVM flags stay, keys it lacks are added in the same order
        Path custom = tmp.resolve("custom.conf");
        Files.writeString(custom, "# mine\nspark.executor.extraJavaOptions  -XX:+UseG1GC "
                + "-Dorg.bytedeco.javacpp.maxbytes=1g -Dfoo=bar\nspark.executor.memory 2g\n");
        Map<String, String> customEnv = new HashMap<>();
        customEnv.put("SPARKQUANT_SPARK_DEFAULTS", custom.toString());
        customEnv.put("EXECUTOR_MEMORY", "12g");
        customEnv.put("EXECUTOR_CORES", "3");
        customEnv.put("OPENBLAS_CORETYPE", null);
        List<String> bash = lines(MiniSparkHome.run(List.of("bash", REPO.resolve("deploy/spark-settings.sh")
                .toString()), customEnv, tmp, 60).assertOk("spark-settings.sh").out());
        List<String> python = lines(MiniSparkHome.run(List.of(AirflowSteps.python().toString(),
                AirflowSteps.helper().toString(), "settings", "--settings", custom.toString(),
                "--executor-memory", "12g", "--executor-cores", "3"), Map.of(), tmp, 60).assertOk("settings").out());
        assertEquals(bash, python, "bash and the Airflow helper on another settings file");
        assertTrue(bash.contains("spark.executor.extraJavaOptions=-XX:+UseG1GC -Dfoo=bar "
                + "-Dorg.bytedeco.javacpp.maxbytes=10g -Dorg.bytedeco.javacpp.maxphysicalbytes=22g"), bash.toString());

        Map<String, String> eight = new LinkedHashMap<>();
        lines(MiniSparkHome.run(List.of("bash", REPO.resolve("deploy/spark-settings.sh").toString()),
                Map.of("EXECUTOR_MEMORY", "8g"), tmp, 60).out()).forEach(l -> eight.put(l.substring(0, l.indexOf('=')),
                l.substring(l.indexOf('=') + 1)));
        assertEquals("8g", eight.get("spark.executor.memoryOverhead"));
        assertEquals("-Dorg.bytedeco.javacpp.maxbytes=6g -Dorg.bytedeco.javacpp.maxphysicalbytes=14g",
                eight.get("spark.executor.extraJavaOptions"));

        MiniSparkHome.Result bad = MiniSparkHome.run(List.of("bash", REPO.resolve("deploy/spark-settings.sh")
                .toString()), Map.of("EXECUTOR_MEMORY", "8000m"), tmp, 60);
        assertEquals(2, bad.exitCode());
        assertEquals("EXECUTOR_MEMORY=8000m: expected whole GiB such as 16g", bad.err().strip());
    }

    @Test
    @Tag("cluster")
    void kubernetesSubmitScriptCarriesTheSettingsAndNoCredentials() throws Exception {
        MiniSparkHome spark = MiniSparkHome.create(tmp);
        Map<String, String> env = new HashMap<>();
        env.put("SPARK_HOME", spark.home().toString());
        env.put("K8S_API", "https://127.0.0.1:6443");
        env.put("IMAGE", "registry.example.com/sparkquant:test");
        env.put("OPENBLAS_CORETYPE", null);
        MiniSparkHome.Result run = MiniSparkHome.run(List.of("bash",
                REPO.resolve("deploy/kubernetes/spark-submit-k8s.sh").toString(), "--verbose", "--", "--version"), env,
                tmp, 120);
        // No Kubernetes here: this Spark lacks its kubernetes module, so SparkSubmit stops after parsing the
        // submission, which is what this test reads. A real submission needs a cluster (not available here).
        assertEquals(1, run.exitCode(), run.err());
        assertTrue(run.err().contains("Could not load KUBERNETES classes"), run.err());
        Map<String, String> used = verboseProperties(run.err());
        assertCarries(template(), used, "spark-submit-k8s.sh");
        assertEquals("registry.example.com/sparkquant:test", used.get("spark.kubernetes.container.image"));
        // Spark redacts the value (it contains "Token"); the script names the provider explicitly
        assertTrue(used.containsKey("spark.hadoop.fs.s3a.aws.credentials.provider"), used.toString());
        assertTrue(Files.readString(REPO.resolve("deploy/kubernetes/spark-submit-k8s.sh")).contains(
                "spark.hadoop.fs.s3a.aws.credentials.provider=software.amazon.awssdk.auth.credentials."
                        + "WebIdentityTokenFileCredentialsProvider"));
        assertTrue(run.err().contains("local:///opt/sparkquant/lib/sparkquant.jar"), "the image's jar");
    }

    @Test
    void sparkApplicationCarriesTheTemplate() throws Exception {
        List<JsonNode> docs = new ArrayList<>();
        var yaml = new ObjectMapper(new YAMLFactory());
        try (var it = yaml.readerFor(JsonNode.class)
                .readValues(REPO.resolve("deploy/kubernetes/sparkquant-application.yaml").toFile())) {
            while (it.hasNext()) {
                docs.add((JsonNode) it.next());
            }
        }
        JsonNode app = docs.stream().filter(d -> d.path("kind").asText().equals("SparkApplication")).findFirst()
                .orElseThrow();
        JsonNode account = docs.stream().filter(d -> d.path("kind").asText().equals("ServiceAccount")).findFirst()
                .orElseThrow();
        JsonNode spec = app.path("spec");
        Map<String, String> settings = new LinkedHashMap<>();
        spec.path("sparkConf").fields().forEachRemaining(e -> settings.put(e.getKey(), e.getValue().asText()));
        // the operator's fields and the settings they stand for
        JsonNode driver = spec.path("driver");
        JsonNode executor = spec.path("executor");
        settings.put("spark.driver.memory", driver.path("memory").asText());
        settings.put("spark.driver.extraJavaOptions", driver.path("javaOptions").asText());
        settings.put("spark.executor.cores", executor.path("cores").asText());
        settings.put("spark.executor.memory", executor.path("memory").asText());
        settings.put("spark.executor.memoryOverhead", executor.path("memoryOverhead").asText());
        settings.put("spark.executor.extraJavaOptions", executor.path("javaOptions").asText());
        assertCarries(without(template(), "spark.yarn."), settings, "SparkApplication");

        assertEquals("org.sparkquant.cli.SparkQuant", spec.path("mainClass").asText());
        assertEquals("local://" + dockerJarPath(), spec.path("mainApplicationFile").asText());
        assertEquals(pomProperty("spark.version"), spec.path("sparkVersion").asText());
        List<String> args = new ArrayList<>();
        spec.path("arguments").forEach(a -> args.add(a.asText()));
        assertTrue(args.contains("--resume"), "a restarted driver resumes: " + args);
        String config = args.get(args.indexOf("--config") + 1);
        assertTrue(config.startsWith("/opt/sparkquant/conf/"), config);
        assertTrue(Files.isRegularFile(REPO.resolve(config.substring("/opt/sparkquant/".length()))),
                "the preset ships in the image: " + config);
        assertTrue(spec.path("restartPolicy").path("onFailureRetryInterval").asLong() > defaultLeaseTimeout(),
                "a restart after a killed driver must find its lease expired");
        String sa = account.path("metadata").path("name").asText();
        assertEquals(sa, driver.path("serviceAccount").asText());
        assertEquals(sa, executor.path("serviceAccount").asText());
        assertTrue(account.path("metadata").path("annotations").has("eks.amazonaws.com/role-arn"), "IRSA");
    }

    @Test
    void emrStepsCarryTheTemplate() throws Exception {
        JsonNode steps = new ObjectMapper().readTree(REPO.resolve("deploy/emr/steps.json").toFile());
        JsonNode quantize = steps.get(0);
        assertEquals("command-runner.jar", quantize.path("Jar").asText());
        List<String> args = new ArrayList<>();
        quantize.path("Args").forEach(a -> args.add(a.asText()));
        assertEquals("spark-submit", args.get(0));
        Map<String, String> settings = new LinkedHashMap<>();
        for (int i = 0; i + 1 < args.size(); i++) {
            if (args.get(i).equals("--conf")) {
                String kv = args.get(i + 1);
                settings.put(kv.substring(0, kv.indexOf('=')), kv.substring(kv.indexOf('=') + 1));
            }
        }
        assertCarries(without(template(), "spark.kubernetes."), settings, "EMR step");
        assertEquals("org.sparkquant.cli.SparkQuant", args.get(args.indexOf("--class") + 1));
        String jar = args.stream().filter(a -> a.endsWith(".jar")).findFirst().orElseThrow();
        assertTrue(shadedJarPattern().matcher(jar.substring(jar.lastIndexOf('/') + 1)).matches(),
                jar + " is a shaded jar like " + shadedJarName());
        assertEquals("quantize", args.get(args.indexOf(jar) + 1));
        assertTrue(args.contains("--resume"), "EMR re-runs a failed step as a new attempt: " + args);
    }

    @Test
    void dataprocScriptPassesTheSettingsAsAPropertiesFile() throws Exception {
        // gcloud is not installed here: a stand-in on PATH records the arguments and the properties file it gets
        Path bin = Files.createDirectories(tmp.resolve("bin"));
        Path gcloud = bin.resolve("gcloud");
        Files.writeString(gcloud, """
                #!/usr/bin/env bash
                printf '%s\\n' "$@" > "$RECORD/args"
                for a in "$@"; do [[ "$a" == --properties-file=* ]] && cp "${a#--properties-file=}" "$RECORD/props"; done
                exit 0
                """);
        Files.setPosixFilePermissions(gcloud, PosixFilePermissions.fromString("rwxr-xr-x"));
        Map<String, String> env = new HashMap<>();
        env.put("PATH", bin + ":" + System.getenv("PATH"));
        env.put("RECORD", tmp.toString());
        env.put("CLUSTER", "c1");
        env.put("REGION", "europe-west1");
        env.put("JAR", "gs://b/sparkquant/" + shadedJarName());
        env.put("EXECUTORS", "3");
        env.put("OPENBLAS_CORETYPE", null);
        MiniSparkHome.run(List.of("bash", REPO.resolve("deploy/dataproc/submit.sh").toString(), "--async", "--",
                "verify", "--model", "gs://b/out"), env, tmp, 60).assertOk("dataproc/submit.sh");
        List<String> args = Files.readAllLines(tmp.resolve("args"));
        assertEquals(List.of("dataproc", "jobs", "submit", "spark", "--cluster=c1", "--region=europe-west1",
                "--class=org.sparkquant.cli.SparkQuant", "--jars=gs://b/sparkquant/" + shadedJarName()),
                args.subList(0, 8));
        assertTrue(args.get(8).startsWith("--properties-file="), args.toString());
        assertEquals(List.of("--async", "--", "verify", "--model", "gs://b/out"), args.subList(9, args.size()));
        java.util.Properties props = new java.util.Properties();
        try (var in = Files.newBufferedReader(tmp.resolve("props"))) {
            props.load(in);
        }
        Map<String, String> settings = new LinkedHashMap<>();
        props.stringPropertyNames().forEach(k -> settings.put(k, props.getProperty(k)));
        Map<String, String> expected = without(template(), "spark.kubernetes.");
        expected.put("spark.executor.instances", "3");
        assertEquals(expected, settings, "the Dataproc job's properties");
        assertFalse(Files.exists(Path.of(args.get(8).substring("--properties-file=".length()))), "temp file removed");
    }

    @Test
    void dockerfileCopiesFilesThatExistAndSetsTheTemplatesEnvironment() throws Exception {
        Path dockerfile = REPO.resolve("deploy/kubernetes/Dockerfile");
        List<String> lines = joinedInstructions(dockerfile);
        String from = lines.stream().filter(l -> l.startsWith("FROM ")).findFirst().orElseThrow();
        assertEquals("FROM apache/spark:" + pomProperty("spark.version") + "-scala" + pomProperty("scala.binary.version")
                + "-java" + pomProperty("maven.compiler.release") + "-ubuntu", from,
                "the official image of the pom's Spark, Scala and Java");
        List<String> ignore = Files.readAllLines(REPO.resolve("deploy/kubernetes/Dockerfile.dockerignore"));
        int copies = 0;
        for (String l : lines) {
            if (!l.startsWith("COPY ")) {
                continue;
            }
            copies++;
            String[] parts = l.substring(5).trim().split("\\s+");
            assertEquals(2, parts.length, l);
            String source = parts[0];
            assertTrue(ignore.contains("!" + source), source + " must be let through by Dockerfile.dockerignore");
            if (source.contains("*")) {
                Pattern glob = Pattern.compile(Pattern.quote(source).replace("*", "\\E[^/]*\\Q"));
                assertTrue(glob.matcher("target/" + shadedJarName()).matches(), source + " matches the shaded jar");
                Path built = REPO.resolve("target/" + shadedJarName());
                if (Files.exists(built)) {
                    try (Stream<Path> jars = Files.list(REPO.resolve("target"))) {
                        Predicate<Path> matches = p -> glob.matcher("target/" + p.getFileName()).matches();
                        assertEquals(1, jars.filter(matches).count(), "exactly one file for " + source);
                    }
                }
            } else {
                assertTrue(Files.exists(REPO.resolve(source)), "COPY source " + source + " exists");
            }
        }
        assertEquals(4, copies);
        Map<String, String> env = new HashMap<>();
        for (String l : lines) {
            if (l.startsWith("ENV ")) {
                for (String kv : l.substring(4).trim().split("\\s+")) {
                    env.put(kv.substring(0, kv.indexOf('=')), kv.substring(kv.indexOf('=') + 1));
                }
            }
        }
        Map<String, String> template = template();
        assertEquals(template.get("spark.executorEnv.OPENBLAS_CORETYPE"), env.get("OPENBLAS_CORETYPE"));
        assertEquals(template.get("spark.executorEnv.OMP_NUM_THREADS"), env.get("OMP_NUM_THREADS"));
        assertEquals(dockerJarPath(), env.get("SPARKQUANT_JAR"), "spark-submit.sh in the image submits its jar");
        String confDir = env.get("SPARKQUANT_CONF_DIR");
        assertTrue(lines.contains("COPY conf/ " + confDir + "/"), "SPARKQUANT_CONF_DIR is the copied conf/");
        // the jar's place in the image is the one the examples name
        String jar = "local://" + dockerJarPath();
        for (String f : List.of("deploy/airflow/sparkquant_dag.py", "deploy/kubernetes/spark-submit-k8s.sh")) {
            assertTrue(Files.readString(REPO.resolve(f)).contains(jar), f + " names " + jar);
        }
    }

    @Test
    void noCredentialsInTheDeployKit() throws Exception {
        Pattern credential = Pattern.compile("(?i)(fs\\.s3a\\.(access|secret|session)\\.(key|token)"
                + "|AWS_SECRET_ACCESS_KEY|AWS_ACCESS_KEY_ID|AWS_SESSION_TOKEN)\\s*[=:]\\s*\\S");
        try (Stream<Path> files = Files.walk(REPO.resolve("deploy"))) {
            for (Path f : files.filter(Files::isRegularFile).toList()) {
                for (String line : Files.readAllLines(f)) {
                    if (credential.matcher(line).find()) {
                        assertTrue(line.contains("secretKeyRef"), f + ": a credential that is not a secret "
                                + "reference: " + line.strip());
                    }
                }
            }
        }
    }

    /** Dockerfile instructions with continuation lines joined, comments dropped. */
    private static List<String> joinedInstructions(Path dockerfile) throws IOException {
        List<String> out = new ArrayList<>();
        StringBuilder cur = new StringBuilder();
        for (String raw : Files.readAllLines(dockerfile)) {
            String line = raw.strip();
            if (line.startsWith("#") || line.isEmpty()) {
                continue;
            }
            if (line.endsWith("\\")) {
                cur.append(line, 0, line.length() - 1).append(' ');
                continue;
            }
            cur.append(line);
            out.add(cur.toString().replaceAll("\\s+", " ").strip());
            cur.setLength(0);
        }
        return out;
    }

    private static String dockerJarPath() throws IOException {
        for (String l : joinedInstructions(REPO.resolve("deploy/kubernetes/Dockerfile"))) {
            if (l.startsWith("COPY target/")) {
                return l.split(" ")[2];
            }
        }
        throw new AssertionError("no COPY of the jar in the Dockerfile");
    }

    static String pomProperty(String name) throws IOException {
        String pom = Files.readString(REPO.resolve("pom.xml"));
        Matcher m = Pattern.compile("<" + Pattern.quote(name) + ">([^<]+)</").matcher(pom);
        assertTrue(m.find(), name + " in pom.xml");
        return m.group(1).strip();
    }

    /** The shaded jar's file name: artifactId-version-classifier.jar. */
    static String shadedJarName() throws IOException {
        String pom = Files.readString(REPO.resolve("pom.xml"));
        String withoutParent = pom.substring(pom.indexOf("</modelVersion>"));
        Matcher artifact = Pattern.compile("<artifactId>([^<]+)</artifactId>\\s*<version>([^<]+)</version>")
                .matcher(withoutParent);
        assertTrue(artifact.find());
        Matcher classifier = Pattern.compile("<shadedClassifierName>([^<]+)<").matcher(pom);
        assertTrue(classifier.find());
        return artifact.group(1) + "-" + artifact.group(2) + "-" + classifier.group(1) + ".jar";
    }

    /** Shaded jars of any version: artifactId-VERSION-classifier.jar. */
    static Pattern shadedJarPattern() throws IOException {
        String name = shadedJarName();
        String version = "-" + pomVersion() + "-";
        int at = name.indexOf(version);
        return Pattern.compile(Pattern.quote(name.substring(0, at)) + "-[0-9][^/]*-"
                + Pattern.quote(name.substring(at + version.length())));
    }

    private static String pomVersion() throws IOException {
        String pom = Files.readString(REPO.resolve("pom.xml"));
        Matcher m = Pattern.compile("</artifactId>\\s*<version>([^<]+)</version>").matcher(
                pom.substring(pom.indexOf("</modelVersion>")));
        assertTrue(m.find());
        return m.group(1);
    }

    private static long defaultLeaseTimeout() throws ReflectiveOperationException {
        Class<?> quantize = Class.forName("org.sparkquant.cli.QuantizeCommand");
        return Long.parseLong(quantize.getDeclaredField("leaseTimeout").getAnnotation(Option.class).defaultValue());
    }
}
