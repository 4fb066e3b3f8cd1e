package org.sparkquant.spark;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;
import org.sparkquant.cli.CliRun;
import org.sparkquant.io.DType;
import org.sparkquant.io.Storage;
import org.sparkquant.model.SyntheticModel;
import org.sparkquant.testing.MotoS3;
import org.sparkquant.testing.OutputFiles;

/** Model, calibration and output on s3a (a moto server on loopback): the same bytes as a local run. */
class QuantizeS3Test {
    @RegisterExtension
    static final MotoS3 S3 = new MotoS3("sparkquant-quantize-test");

    @TempDir
    Path tmp;

    private List<String> conf() {
        List<String> args = new ArrayList<>();
        for (Map.Entry<String, String> e : S3.settings().entrySet()) {
            args.add("--conf");
            args.add(e.getKey() + "=" + e.getValue());
        }
        args.addAll(List.of("--conf", "spark.master=local[2]", "--conf", "spark.ui.enabled=false"));
        return args;
    }

    private CliRun quantize(String model, String calibration, String output, String... extra) {
        List<String> args = new ArrayList<>(List.of("quantize", "--model", model, "--output", output,
                "--calibration", calibration, "--samples", "6", "--seq-len", "32", "--samples-per-partition", "2"));
        args.addAll(List.of(extra));
        args.addAll(conf());
        return CliRun.of(args.toArray(String[]::new));
    }

    @Test
    void quantizesFromAndToS3() throws Exception {
        Storage s3 = Storage.of(S3.settings());
        String model = S3.uri("models/tiny");
        SyntheticModel.write(s3, model, SyntheticModel.Preset.TINY, 1, DType.BF16, 5, 1L << 20);
        Path localModel = tmp.resolve("tiny");
        SyntheticModel.write(Storage.local(), localModel.toString(), SyntheticModel.Preset.TINY, 1, DType.BF16, 5,
                1L << 20);
        String text = "calibration text on s3, a few words repeated to make tokens.\n".repeat(40);
        String calibration = S3.uri("data/calib.txt");
        s3.writeString(calibration, text);
        Path localCalibration = tmp.resolve("calib.txt");
        Files.writeString(localCalibration, text);

        String output = S3.uri("out/tiny-gptq");
        CliRun run = quantize(model, calibration, output, "--group-size", "32");
        assertEquals(0, run.exitCode(), run.err());
        assertFalse(run.err().contains(MotoS3.SECRET_KEY), "the secret key must never be printed");
        assertTrue(s3.exists(output + "/_SUCCESS"));
        assertFalse(s3.exists(output + "/_work"));

        List<String> verify = new ArrayList<>(List.of("verify", "--model", output));
        verify.addAll(conf());
        assertEquals(0, CliRun.of(verify.toArray(String[]::new)).exitCode());

        Path local = tmp.resolve("local-out");
        CliRun localRun = quantize(localModel.toString(), localCalibration.toString(), local.toString(),
                "--group-size", "32");
        assertEquals(0, localRun.exitCode(), localRun.err());
        List<String> files = OutputFiles.list(local, QuantizePipelineTest.TIMED);
        assertTrue(files.contains("model.safetensors") && files.contains("config.json"), files.toString());
        for (String file : files) {
            assertArrayEquals(Files.readAllBytes(local.resolve(file)), s3.readAll(output + "/" + file),
                    file + " differs between the s3a and the local run");
        }

        // a GGUF file on s3a: written under a temporary name, renamed into place, the same bytes as a local run
        String gguf = S3.uri("out/tiny-Q4_K_M.gguf");
        CliRun g = quantize(model, calibration, gguf, "--gguf-type", "Q4_K_M");
        assertEquals(0, g.exitCode(), g.err());
        assertFalse(s3.exists(gguf + "._work"));
        assertTrue(s3.exists(gguf + ".sha256"));
        List<String> verifyGguf = new ArrayList<>(List.of("verify", "--model", gguf));
        verifyGguf.addAll(conf());
        CliRun v = CliRun.of(verifyGguf.toArray(String[]::new));
        assertEquals(0, v.exitCode(), v.err());
        Path localGguf = tmp.resolve("tiny-Q4_K_M.gguf");
        CliRun lg = quantize(localModel.toString(), localCalibration.toString(), localGguf.toString(), "--gguf-type",
                "Q4_K_M");
        assertEquals(0, lg.exitCode(), lg.err());
        assertArrayEquals(Files.readAllBytes(localGguf), s3.readAll(gguf), "GGUF differs between s3a and local");
    }
}
