package org.sparkquant.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.sparkquant.testing.TestPaths;

class CliTest {
    @TempDir
    Path tmp;

    @Test
    void everyCommandHasHelp() {
        for (String command : new String[] {"inspect", "quantize", "eval", "generate", "verify", "report"}) {
            CliRun run = CliRun.of(command, "--help");
            assertEquals(0, run.exitCode(), run.err());
            assertTrue(run.out().contains("Usage: sparkquant " + command), run.out());
        }
        CliRun top = CliRun.of("--help");
        assertEquals(0, top.exitCode());
        assertTrue(top.out().contains("inspect") && top.out().contains("generate"), top.out());
    }

    @Test
    void usageErrorsExitTwo() {
        assertEquals(2, CliRun.of().exitCode());
        assertEquals(2, CliRun.of("no-such-command").exitCode());
        CliRun run = CliRun.of("inspect", "--model", tmp.toString(), "--no-such-option");
        assertEquals(2, run.exitCode());
        assertTrue(run.err().contains("--no-such-option"), run.err());
    }

    @Test
    void badInputIsOneLineWithExitTwo() {
        CliRun run = CliRun.of("inspect", "--model", tmp.resolve("missing").toString());
        assertEquals(2, run.exitCode());
        String err = run.err().strip();
        assertFalse(err.contains("\n"), "one line expected: " + err);
        assertTrue(err.startsWith("sparkquant: error: ") && err.contains("config.json"), err);
        assertFalse(err.contains("Exception"), err);
    }

    @Test
    void verboseAddsTheStackTrace() {
        CliRun run = CliRun.of("inspect", "--verbose", "--model", tmp.resolve("missing").toString());
        assertEquals(2, run.exitCode());
        assertTrue(run.err().contains("at org.sparkquant."), run.err());
    }

    @Test
    void generatedModelInspects() throws Exception {
        Path model = tmp.resolve("tiny");
        CliRun gen = CliRun.of("generate", "--output", model.toString(), "--seed", "7");
        assertEquals(0, gen.exitCode(), gen.err());
        assertTrue(Files.exists(model.resolve("model.safetensors")));
        assertTrue(Files.exists(model.resolve("tokenizer.json")));

        CliRun again = CliRun.of("generate", "--output", model.toString());
        assertEquals(2, again.exitCode());
        assertTrue(again.err().contains("--overwrite"), again.err());

        CliRun inspect = CliRun.of("inspect", "--model", model.toString(), "--json", "--samples", "16",
                "--seq-len", "256");
        assertEquals(0, inspect.exitCode(), inspect.err());
        JsonNode json = new ObjectMapper().readTree(inspect.out());
        // tiny preset: 512x128 tied embeddings, 4 layers of (3 attn 128x128-ish + 3 mlp 128x384) + norms
        long perLayer = 128L * 128 + 2 * 128L * 64 + 128L * 128 + 3 * 128L * 384 + 2 * 128;
        assertEquals(512L * 128 + 4 * perLayer + 128, json.get("parameters").asLong());
        assertEquals(28, json.get("modules").size());
        assertEquals("model.safetensors", json.get("modules").get(0).get("shard").asText());
        JsonNode plan = json.get("memory_plan");
        assertEquals(2, plan.get("partitions").asInt());
        assertEquals(256L * 128 * 4, plan.get("hidden_state_bytes_per_sample").asLong());
        assertEquals(384L * 384 * 8, plan.get("hessian_bytes").get("DOWN_IN").asLong());
    }

    @Test
    void sharedModelsInspect() throws Exception {
        Path dev = TestPaths.shared("models/dev-llama2-26m");
        CliRun run = CliRun.of("inspect", "--model", dev.toString(), "--json");
        assertEquals(0, run.exitCode(), run.err());
        JsonNode json = new ObjectMapper().readTree(run.out());
        assertEquals(25_824_768L, json.get("parameters").asLong());
        assertEquals(21, json.get("modules").size());

        CliRun text = CliRun.of("inspect", "--model", TestPaths.shared("models/stories260K").toString());
        assertEquals(0, text.exitCode(), text.err());
        assertTrue(text.out().contains("parameters     260,032"), text.out());
        assertTrue(text.out().contains("executor bound"), text.out());
    }

    @Test
    void inspectPrintsTheGgufPlan() throws Exception {
        Path model = tmp.resolve("small");
        assertEquals(0, CliRun.of("generate", "--output", model.toString(), "--preset", "small").exitCode());
        CliRun run = CliRun.of("inspect", "--model", model.toString(), "--gguf-type", "Q4_K_M", "--json");
        assertEquals(0, run.exitCode(), run.err());
        JsonNode plan = new ObjectMapper().readTree(run.out()).get("gguf_plan");
        assertEquals("Q4_K_M", plan.get("file_type").asText());
        java.util.Map<String, String> types = new java.util.HashMap<>();
        plan.get("tensors").forEach(t -> types.put(t.get("name").asText(), t.get("type").asText()));
        assertEquals(4 * 9 + 2, types.size(), types.toString()); // tied: no output.weight
        assertEquals("Q4_K", types.get("blk.1.attn_q.weight"));
        // use_more_bits(i, 4): i >= 7·4/8 or (i − 4/8) % 3 == 2, i.e. layers 2 and 3
        assertEquals("Q4_K", types.get("blk.0.attn_v.weight"));
        assertEquals("Q6_K", types.get("blk.3.attn_v.weight"), "use_more_bits layers get attn_v at Q6_K");
        assertEquals("F32", types.get("blk.0.attn_norm.weight"));
        assertEquals("Q6_K", types.get("token_embd.weight"), "tied embeddings are the output matrix");

        CliRun text = CliRun.of("inspect", "--model", model.toString(), "--gguf-type", "Q8_0");
        assertEquals(0, text.exitCode(), text.err());
        assertTrue(text.out().contains("GGUF plan for Q8_0") && text.out().contains("bits per weight"), text.out());
        CliRun bad = CliRun.of("inspect", "--model", model.toString(), "--gguf-type", "Q9_X");
        assertEquals(2, bad.exitCode());
        assertTrue(bad.err().contains("Q9_X"), bad.err());
    }
}
