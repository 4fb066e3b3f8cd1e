package org.sparkquant.deploy;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.sparkquant.cli.CliRun;
import org.sparkquant.io.DType;
import org.sparkquant.io.Storage;
import org.sparkquant.model.SyntheticModel;
import org.sparkquant.spark.OutputLease;
import org.sparkquant.testing.MotoS3;
import org.sparkquant.testing.OutputFiles;
import org.sparkquant.testing.TestPaths;
import org.sparkquant.testing.TestPython;
import org.sparkquant.testing.TestText;

/**
 * The Airflow DAG's three steps, as spark-submit command lines built by {@code deploy/airflow/sparkquant_airflow.py}
 * from a job file on S3 (moto on loopback), run exactly as built against a Spark cluster with the shaded jar, the S3
 * credentials in the environment only (run by {@code StandaloneClusterIT} on a real standalone cluster). Airflow
 * itself does not run here (not installable on this machine): what its SparkSubmitHook would add is the connection's
 * master and deploy mode, given to the helper instead. A zombie attempt is an in-process holder of the output's lease.
 */
public final class AirflowSteps {
    private static final Set<String> TIMED = Set.of("quantization_report.json", "quantization_report.html", "_SUCCESS");
    private static final ObjectMapper JSON = new ObjectMapper();

    private AirflowSteps() {}

    static Path python() {
        return TestPython.interpreter().orElse(Path.of("python3"));
    }

    static Path helper() {
        return TestPaths.repository().resolve("deploy/airflow/sparkquant_airflow.py");
    }

    /**
     * Builds the DAG's commands for {@code master} with {@code sparkSubmit} and the shaded {@code jar}, and runs them
     * in {@code environment} (the cluster's Spark home) with data on {@code moto}'s S3, under {@code tmp}.
     */
    public static void runOn(MotoS3 moto, Path tmp, Path sparkSubmit, String master, Path jar,
            Map<String, String> environment) throws Exception {
        Storage s3 = Storage.of(moto.settings());
        String model = moto.uri("models/tiny");
        Path localModel = tmp.resolve("model");
        for (String dir : List.of(model, localModel.toString())) {
            SyntheticModel.write(dir.startsWith("s3a:") ? s3 : Storage.local(), dir, SyntheticModel.Preset.TINY, 2,
                    DType.BF16, 11, 1L << 20);
        }
        String calibrationText = TestText.sentences(3, 60, "the", "model", "runs", "on", "spark", "and", "writes",
                "files", "to", "storage");
        String calibration = moto.uri("data/calib.txt");
        s3.writeString(calibration, calibrationText);
        Path localCalibration = tmp.resolve("calib.txt");
        Files.writeString(localCalibration, calibrationText);
        String evalText = moto.uri("data/eval.txt");
        s3.writeString(evalText, TestText.sentences(4, 40, "a", "quantized", "layer", "keeps", "its", "output"));
        String jobText = """
                method: gptq
                bits: 4
                group-size: 32
                samples: 6
                seq-len: 32
                samples-per-partition: 2
                """;
        String job = moto.uri("jobs/tiny-gptq.yaml");
        s3.writeString(job, jobText);
        Path localJob = tmp.resolve("job.yaml");
        Files.writeString(localJob, jobText);
        String output = moto.uri("out/tiny-gptq");

        // the S3 endpoint for sparkquant; the credentials only in the environment, as from a secret or a role
        List<String> helperArgs = new ArrayList<>(List.of(python().toString(), helper().toString(), "submit",
                "--spark-submit", sparkSubmit.toString(), "--master", master, "--deploy-mode", "client",
                "--jar", jar.toString(), "--model", model, "--output", output, "--job", job,
                "--calibration", calibration, "--eval-data", evalText, "--seq-len", "32", "--executors", "1",
                "--executor-memory", "2g", "--executor-cores", "1", "--driver-memory", "1g"));
        moto.settings().forEach((k, v) -> {
            if (!k.matches("fs\\.s3a\\.(access\\.key|secret\\.key|aws\\.credentials\\.provider)")) {
                helperArgs.addAll(List.of("--conf", k + "=" + v));
            }
        });
        helperArgs.addAll(List.of("--conf", "fs.s3a.aws.credentials.provider="
                + "software.amazon.awssdk.auth.credentials.EnvironmentVariableCredentialsProvider"));
        Map<String, String> credentials = new LinkedHashMap<>(environment);
        credentials.put("AWS_ACCESS_KEY_ID", MotoS3.ACCESS_KEY);
        credentials.put("AWS_SECRET_ACCESS_KEY", MotoS3.SECRET_KEY);

        long start = System.nanoTime();
        MiniSparkHome.Result built = MiniSparkHome.run(helperArgs, environment, tmp, 60)
                .assertOk("sparkquant_airflow.py submit");
        assertFalse(built.out().contains(MotoS3.SECRET_KEY));
        JsonNode steps = JSON.readTree(built.out());
        List<String> quantize = strings(steps.path("quantize").path("command"));
        assertEquals(sparkSubmit.toString(), quantize.get(0));
        List<String> appArgs = quantize.subList(quantize.indexOf(jar.toString()) + 1,
                quantize.size());
        assertEquals(List.of("quantize", "--model", model, "--output", output, "--config", job, "--calibration",
                calibration, "--resume"), appArgs.subList(0, 10));
        assertEquals("Haswell", steps.path("quantize").path("env").path("OPENBLAS_CORETYPE").asText(),
                "a client-mode driver gets the kernel choice in its environment");

        assertFalse(s3.exists(output + "/_SUCCESS"));
        // a zombie attempt (alive, renewing its lease) holds the output: the retry's run exits 2 naming it and
        // writes nothing; Airflow retries later
        try (OutputLease zombie = OutputLease.acquire(s3, output + "/_lease.json", output, false,
                Duration.ofSeconds(600))) {
            MiniSparkHome.Result refused = run(tmp, steps.path("quantize"), credentials);
            assertEquals(2, refused.exitCode(), refused.err());
            assertTrue(refused.err().contains(output + " is being written by run "), refused.err());
            assertFalse(s3.exists(output + "/_work"), "the refused attempt wrote nothing");
        }
        long t0 = System.nanoTime();
        MiniSparkHome.Result q = run(tmp, steps.path("quantize"), credentials).assertOk("submitted quantize");
        long t1 = System.nanoTime();
        assertTrue(s3.exists(output + "/_SUCCESS"), "a finished output is what the DAG skips");
        assertFalse(s3.exists(output + "/_work"));

        MiniSparkHome.Result verify = run(tmp, steps.path("verify"), credentials).assertOk("submitted verify");
        assertTrue(verify.out().contains("verified " + output), verify.out());
        long t2 = System.nanoTime();
        MiniSparkHome.Result eval = run(tmp, steps.path("eval"), credentials).assertOk("submitted eval");
        long t3 = System.nanoTime();
        String last = eval.out().strip().substring(eval.out().strip().lastIndexOf('\n') + 1);
        assertTrue(last.startsWith("perplexity: "), eval.out());
        double ppl = Double.parseDouble(last.substring("perplexity: ".length()));
        assertTrue(Double.isFinite(ppl) && ppl > 1, "perplexity " + ppl);
        for (MiniSparkHome.Result r : List.of(q, verify, eval)) {
            assertFalse((r.out() + r.err()).contains(MotoS3.SECRET_KEY), "the secret key must never be printed");
        }
        System.out.printf("dag steps through spark-submit: %.1f s (quantize %.1f s, verify %.1f s, eval %.1f s)%n",
                (System.nanoTime() - start) / 1e9, (t1 - t0) / 1e9, (t2 - t1) / 1e9, (t3 - t2) / 1e9);

        // the same job file in-process, on local copies, gives the same bytes: the submitted command ran the job
        Path reference = tmp.resolve("reference");
        CliRun ref = CliRun.of("quantize", "--model", localModel.toString(), "--output", reference.toString(),
                "--config", localJob.toString(), "--calibration", localCalibration.toString(), "--conf",
                "spark.master=local[1]", "--conf", "spark.ui.enabled=false");
        assertEquals(0, ref.exitCode(), ref.err());
        List<String> files = OutputFiles.list(reference, TIMED);
        assertTrue(files.contains("model.safetensors"), files.toString());
        for (String file : files) {
            byte[] expected = Files.readAllBytes(reference.resolve(file));
            byte[] actual = s3.readAll(output + "/" + file);
            if (file.endsWith(".json")) {
                // meta.quantizer names the producer: "sparkquant:dev" in-process, the jar's version when submitted
                expected = withoutVersion(expected);
                actual = withoutVersion(actual);
            }
            assertArrayEquals(expected, actual, file + " differs between the submitted run and the in-process one");
        }
    }

    private static byte[] withoutVersion(byte[] json) {
        return new String(json, java.nio.charset.StandardCharsets.UTF_8).replaceAll("\"sparkquant:[^\"]*\"",
                "\"sparkquant:VERSION\"").getBytes(java.nio.charset.StandardCharsets.UTF_8);
    }

    private static MiniSparkHome.Result run(Path tmp, JsonNode step, Map<String, String> extraEnv) {
        Map<String, String> env = new LinkedHashMap<>(extraEnv);
        step.path("env").fields().forEachRemaining(e -> env.put(e.getKey(), e.getValue().asText()));
        return MiniSparkHome.run(strings(step.path("command")), env, tmp, 300);
    }

    static List<String> strings(JsonNode array) {
        List<String> out = new ArrayList<>();
        array.forEach(n -> out.add(n.asText()));
        assertTrue(!out.isEmpty(), "empty command");
        return out;
    }
}
