package org.sparkquant.deploy;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.sparkquant.cli.CliRun;
import org.sparkquant.io.DType;
import org.sparkquant.io.Storage;
import org.sparkquant.model.SyntheticModel;
import org.sparkquant.testing.OutputFiles;
import org.sparkquant.testing.TestPaths;
import org.sparkquant.testing.TestPython;
import org.sparkquant.testing.TestText;

/**
 * The Airflow DAG's three steps, as spark-submit command lines built by {@code deploy/airflow/sparkquant_airflow.py}
 * from a job file, run exactly as built against a Spark made of the build's jars with {@code --master local[1]}.
 * Airflow itself does not run here (not installable on this machine): what its SparkSubmitHook would add is the
 * connection's master and deploy mode, given to the helper instead. A standalone cluster is not used yet.
 */
@Tag("cluster")
class AirflowSubmitTest {
    private static final Set<String> TIMED = Set.of("quantization_report.json", "_SUCCESS");
    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    Path tmp;

    static Path python() {
        return TestPython.interpreter().orElse(Path.of("python3"));
    }

    static Path helper() {
        return TestPaths.repository().resolve("deploy/airflow/sparkquant_airflow.py");
    }

    @Test
    void dagStepsRunAsSubmittedAndTheOutputCountsAsFinished() throws Exception {
        MiniSparkHome spark = MiniSparkHome.create(tmp);
        Path model = tmp.resolve("model");
        SyntheticModel.write(Storage.local(), model.toString(), SyntheticModel.Preset.TINY, 2, DType.BF16, 11,
                1L << 20);
        Path calibration = tmp.resolve("calib.txt");
        Files.writeString(calibration, TestText.sentences(3, 60, "the", "model", "runs", "on", "spark", "and",
                "writes", "files", "to", "storage"));
        Path evalText = tmp.resolve("eval.txt");
        Files.writeString(evalText, TestText.sentences(4, 40, "a", "quantized", "layer", "keeps", "its", "output"));
        Path job = tmp.resolve("job.yaml");
        Files.writeString(job, """
                method: gptq
                bits: 4
                group-size: 32
                samples: 6
                seq-len: 32
                samples-per-partition: 2
                """);
        Path output = tmp.resolve("out");

        long start = System.nanoTime();
        MiniSparkHome.Result built = MiniSparkHome.run(List.of(python().toString(), helper().toString(), "submit",
                "--spark-submit", spark.sparkSubmit().toString(), "--master", "local[1]", "--deploy-mode", "client",
                "--jar", spark.applicationJar().toString(), "--model", model.toString(), "--output", output.toString(),
                "--job", job.toString(), "--calibration", calibration.toString(), "--eval-data", evalText.toString(),
                "--seq-len", "32", "--executors", "1", "--executor-memory", "2g", "--driver-memory", "1g"),
                Map.of(), tmp, 60).assertOk("sparkquant_airflow.py submit");
        JsonNode steps = JSON.readTree(built.out());
        List<String> quantize = strings(steps.path("quantize").path("command"));
        assertEquals(spark.sparkSubmit().toString(), quantize.get(0));
        assertEquals(List.of("quantize", "--model", model.toString(), "--output", output.toString(), "--config",
                job.toString(), "--calibration", calibration.toString(), "--resume"),
                quantize.subList(quantize.indexOf(spark.applicationJar().toString()) + 1, quantize.size()));
        assertEquals("Haswell", steps.path("quantize").path("env").path("OPENBLAS_CORETYPE").asText(),
                "a client-mode driver gets the kernel choice in its environment");

        assertEquals(3, finished(output).exitCode(), "nothing there yet");
        run(steps.path("quantize"), "quantize").assertOk("submitted quantize");
        assertTrue(Files.isRegularFile(output.resolve("_SUCCESS")));
        assertEquals(0, finished(output).exitCode(), "a finished output is what the DAG skips");

        MiniSparkHome.Result verify = run(steps.path("verify"), "verify").assertOk("submitted verify");
        assertTrue(verify.out().contains("verified " + output), verify.out());
        MiniSparkHome.Result eval = run(steps.path("eval"), "eval").assertOk("submitted eval");
        String last = eval.out().strip().substring(eval.out().strip().lastIndexOf('\n') + 1);
        assertTrue(last.startsWith("perplexity: "), eval.out());
        double ppl = Double.parseDouble(last.substring("perplexity: ".length()));
        assertTrue(Double.isFinite(ppl) && ppl > 1, "perplexity " + ppl);
        System.out.printf("dag steps through spark-submit: %.1f s%n", (System.nanoTime() - start) / 1e9);

        // the same job file in-process gives the same bytes: the submitted command ran the job the file describes
        Path reference = tmp.resolve("reference");
        CliRun ref = CliRun.of("quantize", "--model", model.toString(), "--output", reference.toString(), "--config",
                job.toString(), "--calibration", calibration.toString(), "--conf", "spark.master=local[1]",
                "--conf", "spark.ui.enabled=false");
        assertEquals(0, ref.exitCode(), ref.err());
        OutputFiles.assertIdentical(reference, output, TIMED);
    }

    private MiniSparkHome.Result finished(Path output) {
        return MiniSparkHome.run(List.of(python().toString(), helper().toString(), "finished", output.toString()),
                Map.of(), tmp, 60);
    }

    private MiniSparkHome.Result run(JsonNode step, String name) {
        Map<String, String> env = new LinkedHashMap<>();
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
