package org.sparkquant.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class JobFileTest {
    @TempDir
    Path tmp;

    @Test
    void yamlOptionsComeBeforeTheCommandLine() throws Exception {
        Path yaml = tmp.resolve("job.yaml");
        Files.writeString(yaml, """
                # a job preset
                bits: 4
                group-size: 128
                desc-act: true
                sym: false
                conf:
                  fs.s3a.endpoint: http://127.0.0.1:9000
                """);
        String[] args = JobFile.expand(new String[] {"inspect", "--config", yaml.toString(), "--bits", "3"});
        assertEquals(List.of("inspect", "--bits", "4", "--group-size", "128", "--desc-act",
                "--conf", "fs.s3a.endpoint=http://127.0.0.1:9000", "--bits", "3"), List.of(args));
    }

    @Test
    void propertiesFilesToo() throws Exception {
        Path props = tmp.resolve("job.properties");
        Files.writeString(props, "samples=16\nseq-len=256\n");
        assertEquals(List.of("inspect", "--samples", "16", "--seq-len", "256", "--json"),
                List.of(JobFile.expand(new String[] {"inspect", "--config=" + props, "--json"})));
    }

    @Test
    void commandLineOverridesTheJobFile() throws Exception {
        Path model = tmp.resolve("m");
        assertEquals(0, CliRun.of("generate", "--output", model.toString()).exitCode());
        Path yaml = tmp.resolve("job.yaml");
        Files.writeString(yaml, "samples: 16\nseq-len: 64\njson: true\n");
        CliRun run = CliRun.of("inspect", "--model", model.toString(), "--config", yaml.toString(), "--seq-len", "32");
        assertEquals(0, run.exitCode(), run.err());
        assertTrue(run.out().contains("\"seq_len\" : 32") && run.out().contains("\"samples\" : 16"), run.out());
    }

    @Test
    void badJobFilesAreOneLineErrors() throws Exception {
        Path yaml = tmp.resolve("bad.yaml");
        Files.writeString(yaml, "- just\n- a list\n");
        CliRun run = CliRun.of("inspect", "--config", yaml.toString());
        assertEquals(2, run.exitCode());
        assertTrue(run.err().contains("bad.yaml: expected a mapping"), run.err());
        CliRun missing = CliRun.of("inspect", "--config", tmp.resolve("nope.yaml").toString());
        assertEquals(2, missing.exitCode());
        assertTrue(missing.err().contains("nope.yaml: no such file"), missing.err());
    }

    @Test
    void presetsAreValidQuantizeOptions() throws Exception {
        Path presets = org.sparkquant.testing.TestPaths.repository().resolve("conf/presets");
        try (var files = Files.list(presets)) {
            for (Path preset : files.sorted().toList()) {
                CliRun run = CliRun.of("quantize", "--config", preset.toString(), "--model",
                        tmp.resolve("missing").toString(), "--output", tmp.resolve("out").toString(),
                        "--calibration", "x.txt");
                // parsing succeeded: the failure is the missing model, not an unknown option
                assertEquals(2, run.exitCode(), preset + ": " + run.err());
                assertTrue(run.err().contains("config.json"), preset + ": " + run.err());
            }
        }
    }
}
