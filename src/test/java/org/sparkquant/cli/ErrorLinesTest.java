package org.sparkquant.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.RandomAccessFile;
import java.lang.management.ManagementFactory;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.sparkquant.io.DType;
import org.sparkquant.io.Storage;
import org.sparkquant.model.SyntheticModel;
import org.sparkquant.testing.TestPaths;

/**
 * The error contract in a real CLI process with the shipped logging configuration ({@code conf/log4j2.properties},
 * as {@code bin/sparkquant} runs it): a Spark task that fails on the user's data gives one line naming the tensor,
 * its layer and the model, exit 2, and no stack trace unless --verbose.
 */
class ErrorLinesTest {
    @TempDir
    Path tmp;

    @Test
    void aNanWeightIsOneLineNamingTheTensorWithoutAStackTrace() throws Exception {
        Path model = tmp.resolve("nan-model");
        SyntheticModel.write(Storage.local(), model.toString(), SyntheticModel.Preset.TINY, 1, DType.F32, 3, 1L << 30);
        String tensor = "model.layers.0.mlp.up_proj.weight";
        poison(model, tensor, 5);

        Result plain = cli(tmp, "quantize", "--model", model.toString(), "--output", tmp.resolve("out").toString(),
                "--method", "rtn", "--conf", "spark.master=local[2,2]", "--conf", "spark.ui.enabled=false");
        assertEquals(2, plain.exit(), plain.err());
        String error = plain.err().lines().filter(l -> l.startsWith("sparkquant: error:")).findFirst().orElse("");
        assertTrue(error.contains(tensor) && error.contains("layer 0") && error.contains(model.toString())
                && error.contains("NaN"), plain.err());
        assertFalse(plain.err().contains("\tat "), "no stack trace without --verbose:\n" + plain.err());
        assertTrue(plain.err().lines().count() < 15, "a few lines, not pages:\n" + plain.err());

        Result verbose = cli(tmp, "quantize", "--model", model.toString(), "--output", tmp.resolve("out2").toString(),
                "--method", "rtn", "--conf", "spark.master=local[2,2]", "--conf", "spark.ui.enabled=false",
                "--verbose");
        assertEquals(2, verbose.exit(), verbose.err());
        assertTrue(verbose.err().contains("\tat "), "--verbose shows the trace:\n" + verbose.err());
    }

    /** Overwrites element {@code index} of an F32 tensor with NaN, in place. */
    static void poison(Path model, String tensor, int index) throws Exception {
        Path file;
        try (Stream<Path> files = Files.list(model)) {
            file = files.filter(f -> f.toString().endsWith(".safetensors")).findFirst().orElseThrow();
        }
        try (RandomAccessFile f = new RandomAccessFile(file.toFile(), "rw")) {
            byte[] len = new byte[8];
            f.readFully(len);
            long n = ByteBuffer.wrap(len).order(ByteOrder.LITTLE_ENDIAN).getLong();
            byte[] header = new byte[(int) n];
            f.readFully(header);
            JsonNode t = new ObjectMapper().readTree(new String(header, StandardCharsets.UTF_8)).get(tensor);
            assertEquals("F32", t.get("dtype").asText());
            f.seek(8 + n + t.get("data_offsets").get(0).asLong() + 4L * index);
            f.write(ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN).putFloat(Float.NaN).array());
        }
    }

    record Result(int exit, String err) {}

    /** The CLI in its own JVM, configured like bin/sparkquant (logging from conf/). */
    static Result cli(Path tmp, String... args) throws Exception {
        List<String> cmd = new ArrayList<>();
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        for (String arg : ManagementFactory.getRuntimeMXBean().getInputArguments()) {
            if (!arg.startsWith("-agentlib") && !arg.startsWith("-javaagent") && !arg.startsWith("-XX:ErrorFile")) {
                cmd.add(arg);
            }
        }
        cmd.add("-Dlog4j2.configurationFile=file:" + TestPaths.repository().resolve("conf/log4j2.properties"));
        cmd.add("-cp");
        cmd.add(System.getProperty("java.class.path"));
        cmd.add(SparkQuant.class.getName());
        cmd.addAll(List.of(args));
        Path err = Files.createTempFile(tmp, "stderr", ".txt");
        Process p = new ProcessBuilder(cmd).redirectError(err.toFile())
                .redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
        p.getOutputStream().close();
        assertTrue(p.waitFor(5, TimeUnit.MINUTES), "the CLI did not end");
        return new Result(p.exitValue(), Files.readString(err));
    }
}
