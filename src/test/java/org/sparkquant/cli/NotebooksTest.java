package org.sparkquant.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import java.util.stream.Stream;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.sparkquant.io.DType;
import org.sparkquant.io.Storage;
import org.sparkquant.model.SyntheticModel;
import org.sparkquant.testing.TestPaths;
import org.sparkquant.testing.TestPython;
import org.sparkquant.testing.TestText;

/**
 * The notebooks of {@code notebooks/} run top to bottom with nbclient (as a user's Jupyter would): the report
 * explorer against a run made here, the quickstart with the sparkquant command line of this build. Their committed
 * form has no outputs.
 */
class NotebooksTest {
    private static final Path NOTEBOOKS = TestPaths.repository().resolve("notebooks");

    @TempDir
    Path tmp;

    @Test
    void committedNotebooksHaveNoOutputs() throws IOException {
        List<Path> notebooks = notebooks();
        assertTrue(notebooks.stream().map(p -> p.getFileName().toString()).toList()
                .containsAll(List.of("quickstart.ipynb", "quantization_report.ipynb")), notebooks.toString());
        for (Path nb : notebooks) {
            JsonNode root = new ObjectMapper().readTree(nb.toFile());
            assertEquals(4, root.path("nbformat").asInt(), nb + ": nbformat");
            for (JsonNode cell : root.path("cells")) {
                if (cell.path("cell_type").asText().equals("code")) {
                    assertEquals(0, cell.path("outputs").size(), nb + ": a code cell has outputs (strip them)");
                    assertTrue(cell.path("execution_count").isNull(), nb + ": a code cell has an execution count");
                }
            }
        }
    }

    @Test
    void reportExplorerRunsAgainstARun() throws Exception {
        Path python = TestPython.require("nbclient", "nbformat", "ipykernel", "matplotlib", "numpy");
        Path model = tmp.resolve("model");
        SyntheticModel.write(Storage.local(), model.toString(), SyntheticModel.Preset.TINY, 2, DType.BF16, 3,
                1L << 30);
        Path calib = tmp.resolve("calib.txt");
        Files.writeString(calib, TestText.sentences(5, 120, "report", "notebook", "layer", "spark", "token", "gptq"));
        Path out = tmp.resolve("gptq");
        Path hessians = tmp.resolve("hessians");
        CliRun q = CliRun.of("quantize", "--model", model.toString(), "--output", out.toString(), "--calibration",
                calib.toString(), "--samples", "8", "--seq-len", "32", "--group-size", "32", "--save-hessians",
                hessians.toString(), "--conf", "spark.master=local[2]", "--conf", "spark.ui.enabled=false");
        assertEquals(0, q.exitCode(), q.err());
        String log = execute(python, "quantization_report.ipynb", Map.of("SPARKQUANT_RUN", out.toString(),
                "SPARKQUANT_HESSIANS", hessians.toString()));
        // the Hessian cell printed one line per distinct input file: n, trace and condition number
        assertTrue(log.contains("quantization_report.ipynb: 4 code cells ran"), log);
    }

    @Test
    void quickstartRunsWithThisBuild() throws Exception {
        Path python = TestPython.require("nbclient", "nbformat", "ipykernel", "matplotlib", "numpy");
        Path work = tmp.resolve("quickstart");
        Path calib = tmp.resolve("calib.txt");
        Files.writeString(calib, TestText.sentences(9, 150, "quick", "start", "demo", "model", "spark", "ok"));
        String log = execute(python, "quickstart.ipynb", Map.of("SPARKQUANT", launcher().toString(),
                "SPARKQUANT_WORK", work.toString(), "SPARKQUANT_CALIBRATION", calib.toString(),
                "SPARKQUANT_SAMPLES", "8", "SPARKQUANT_SEQ_LEN", "32", "SPARKQUANT_MAX_WINDOWS", "4"));
        assertTrue(log.contains("quickstart.ipynb: 5 code cells ran"), log);
        // what the notebook made is a finished run with its report and page
        assertTrue(Files.exists(work.resolve("demo-gptq/_SUCCESS")));
        assertTrue(Files.exists(work.resolve("demo-gptq/quantization_report.html")));
        JsonNode executed = new ObjectMapper().readTree(tmp.resolve("quickstart.ipynb").toFile());
        boolean plotted = false;
        for (JsonNode cell : executed.path("cells")) {
            for (JsonNode o : cell.path("outputs")) {
                plotted |= o.path("data").has("image/png");
            }
        }
        assertTrue(plotted, "the last cell plots");
    }

    /** Runs a notebook with nbclient in its directory, the settings in the environment; its executed copy in tmp. */
    private String execute(Path python, String notebook, Map<String, String> env) throws Exception {
        List<String> command = List.of(python.toString(),
                TestPaths.repository().resolve("python/run_notebook.py").toString(),
                NOTEBOOKS.resolve(notebook).toString(), tmp.resolve(notebook).toString());
        Path log = tmp.resolve(notebook + ".log");
        ProcessBuilder pb = new ProcessBuilder(command).redirectErrorStream(true).redirectOutput(log.toFile());
        pb.environment().putAll(env);
        Process p = pb.start();
        if (!p.waitFor(900, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            throw new AssertionError(notebook + " timed out");
        }
        String text = Files.readString(log, StandardCharsets.UTF_8);
        assertEquals(0, p.exitValue(), notebook + " failed:\n" + text);
        return text;
    }

    /**
     * The sparkquant command of this build: this JVM's java, flags and classpath (what bin/sparkquant would run
     * after building), so the notebook needs no second build.
     */
    private Path launcher() throws IOException {
        String java = ProcessHandle.current().info().command().orElse("java");
        List<String> flags = new ArrayList<>();
        for (String arg : ManagementFactory.getRuntimeMXBean().getInputArguments()) {
            if (arg.startsWith("--add-opens") || arg.startsWith("-Dorg.bytedeco") || arg.startsWith("-Dio.netty")
                    || arg.startsWith("-XX:+IgnoreUnrecognizedVMOptions")) {
                flags.add(arg);
            }
        }
        Path conf = TestPaths.repository().resolve("conf");
        String script = "#!/bin/sh\n"
                + "export SPARKQUANT_CONF_DIR=" + quote(conf.toString()) + "\n"
                + "exec " + quote(java) + " -Xmx1g " + flags.stream().map(NotebooksTest::quote)
                .collect(Collectors.joining(" ")) + " -Dlog4j2.configurationFile=" + quote(conf.resolve(
                "log4j2.properties").toUri().toString()) + " -cp " + quote(System.getProperty("java.class.path"))
                + " org.sparkquant.cli.SparkQuant \"$@\"\n";
        Path launcher = tmp.resolve("sparkquant");
        Files.writeString(launcher, script);
        Files.setPosixFilePermissions(launcher, PosixFilePermissions.fromString("rwxr-xr-x"));
        return launcher;
    }

    private static String quote(String s) {
        return "'" + s.replace("'", "'\\''") + "'";
    }

    private static List<Path> notebooks() throws IOException {
        try (Stream<Path> files = Files.list(NOTEBOOKS)) {
            return files.filter(p -> p.toString().endsWith(".ipynb")).sorted().toList();
        }
    }
}
