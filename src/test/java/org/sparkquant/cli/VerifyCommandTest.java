package org.sparkquant.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.sparkquant.io.OutputManifest;
import org.sparkquant.io.Storage;

class VerifyCommandTest {
    @TempDir
    Path tmp;

    @Test
    void verifiesAndDetectsChanges() throws Exception {
        Path out = tmp.resolve("out");
        assertEquals(0, CliRun.of("generate", "--output", out.toString()).exitCode());
        Files.createDirectories(out.resolve("_work"));
        Files.writeString(out.resolve("_work/ignored"), "work files are not part of the output");
        var entries = OutputManifest.write(Storage.local(), out.toString(), "test");
        assertTrue(entries.stream().anyMatch(e -> e.file().equals("model.safetensors")));
        assertTrue(entries.stream().noneMatch(e -> e.file().startsWith("_")));

        CliRun ok = CliRun.of("verify", "--model", out.toString());
        assertEquals(0, ok.exitCode(), ok.err());

        byte[] bytes = Files.readAllBytes(out.resolve("config.json"));
        bytes[10] ^= 1;
        Files.write(out.resolve("config.json"), bytes);
        Files.writeString(out.resolve("extra.txt"), "x");
        Files.delete(out.resolve("tokenizer.json"));
        CliRun bad = CliRun.of("verify", "--model", out.toString());
        assertEquals(2, bad.exitCode());
        assertTrue(bad.err().contains("config.json: sha256"), bad.err());
        assertTrue(bad.err().contains("extra.txt: not in the manifest"), bad.err());
        assertTrue(bad.err().contains("tokenizer.json: missing"), bad.err());
    }

    @Test
    void unfinishedOutputIsBadInput() {
        CliRun run = CliRun.of("verify", "--model", tmp.toString());
        assertEquals(2, run.exitCode());
        assertTrue(run.err().contains("no _SUCCESS"), run.err());
    }
}
