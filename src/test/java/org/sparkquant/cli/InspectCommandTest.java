package org.sparkquant.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.sparkquant.format.gguf.ExportTensor;
import org.sparkquant.format.gguf.GgufExporter;
import org.sparkquant.format.gguf.GgufMetadata;
import org.sparkquant.format.gguf.GgufRecipe;
import org.sparkquant.format.gguf.LlamaFileType;
import org.sparkquant.io.DType;
import org.sparkquant.io.Storage;
import org.sparkquant.io.TensorStore;
import org.sparkquant.model.SyntheticModel;
import org.sparkquant.testing.TestPaths;

/** {@code sparkquant inspect}: the model summary, the memory plan a run needs, and the GGUF plan. */
class InspectCommandTest {
    @TempDir
    Path tmp;

    private static JsonNode json(String... args) throws Exception {
        CliRun run = CliRun.of(args);
        assertEquals(0, run.exitCode(), run.err());
        return new ObjectMapper().readTree(run.out());
    }

    @Test
    void memoryPlanOfAGeneratedModel() throws Exception {
        Path model = tmp.resolve("m");
        SyntheticModel.write(Storage.local(), model.toString(), SyntheticModel.Preset.TINY, 2, DType.BF16, 1, 1L << 30);
        JsonNode j = json("inspect", "--model", model.toString(), "--json", "--samples", "16", "--seq-len", "64",
                "--samples-per-partition", "4");
        assertEquals(14, j.get("modules").size());
        JsonNode plan = j.get("memory_plan");
        assertEquals(4, plan.get("partitions").asInt());
        // hidden states are fp32 [seq, hidden]; the down_proj Hessian is [ffn, ffn] fp64
        assertEquals(64L * 128 * 4, plan.get("hidden_state_bytes_per_sample").asLong());
        assertEquals(384L * 384 * 8, plan.get("hessian_bytes").get("DOWN_IN").asLong());
        // at least one layer's MLP matrices in fp32
        assertTrue(plan.get("largest_layer_fp32_bytes").asLong() >= 4L * 3 * 128 * 384, plan.toString());
        assertTrue(plan.get("executor_bytes").asLong() > plan.get("largest_layer_fp32_bytes").asLong()
                + 4 * plan.get("hidden_state_bytes_per_sample").asLong(), plan.toString());

        CliRun text = CliRun.of("inspect", "--model", model.toString());
        assertEquals(0, text.exitCode(), text.err());
        assertTrue(text.out().contains("executor bound") && text.out().contains("driver bound"), text.out());
    }

    /** inspect --gguf-type predicts exactly the tensor types the GGUF export writes. */
    @Test
    void ggufPlanMatchesTheExport() throws Exception {
        Path model = tmp.resolve("small");
        SyntheticModel.write(Storage.local(), model.toString(), SyntheticModel.Preset.SMALL, 3, DType.BF16, 2,
                1L << 30);
        for (LlamaFileType type : new LlamaFileType[] {LlamaFileType.Q4_K_M, LlamaFileType.Q3_K_M,
                LlamaFileType.Q2_K}) {
            JsonNode j = json("inspect", "--model", model.toString(), "--json", "--gguf-type", type.name());
            Map<String, String> planned = new LinkedHashMap<>();
            j.get("gguf_plan").get("tensors").forEach(t -> planned.put(t.get("name").asText(),
                    t.get("type").asText()));
            Map<String, String> exported = new LinkedHashMap<>();
            try (TensorStore store = TensorStore.open(Storage.local(), model.toString())) {
                GgufExporter e = GgufExporter.forModel(Storage.local(), model.toString(), store, type,
                        GgufRecipe.Options.DEFAULT, GgufMetadata.Options.DEFAULT);
                for (ExportTensor t : e.tensors()) {
                    exported.put(t.name(), t.type().name());
                }
            }
            assertEquals(exported, planned, type.name());
        }
    }

    /** The same for mixture-of-experts models, whose experts the export stacks into 3-D tensors. */
    @Test
    void ggufPlanOfMoeModelsMatchesTheExport() throws Exception {
        for (String kind : org.sparkquant.format.gguf.GgufMoeModels.ALL) {
            Path model = org.sparkquant.format.gguf.GgufMoeModels.write(tmp, kind);
            LlamaFileType type = LlamaFileType.Q4_K_M;
            JsonNode j = json("inspect", "--model", model.toString(), "--json", "--gguf-type", type.name());
            Map<String, String> planned = new LinkedHashMap<>();
            j.get("gguf_plan").get("tensors").forEach(t -> planned.put(t.get("name").asText(),
                    t.get("type").asText()));
            Map<String, String> exported = new LinkedHashMap<>();
            try (TensorStore store = TensorStore.open(Storage.local(), model.toString())) {
                GgufExporter e = GgufExporter.forModel(Storage.local(), model.toString(), store, type,
                        GgufRecipe.Options.DEFAULT, GgufMetadata.Options.DEFAULT);
                for (ExportTensor t : e.tensors()) {
                    exported.put(t.name(), t.type().name());
                }
            }
            assertEquals(exported, planned, kind);
            assertTrue(planned.containsKey("blk.1.ffn_down_exps.weight"), kind);
        }
    }

    @Test
    void sharedModels() throws Exception {
        Path dev = TestPaths.shared("models/dev-llama2-26m");
        JsonNode j = json("inspect", "--model", dev.toString(), "--json");
        assertEquals(25_824_768L, j.get("parameters").asLong());
        assertEquals(21, j.get("modules").size());
        Path stories = TestPaths.shared("models/stories260K");
        CliRun run = CliRun.of("inspect", "--model", stories.toString(), "--gguf-type", "Q4_K_M");
        assertEquals(0, run.exitCode(), run.err());
        assertTrue(run.out().contains("GGUF plan for Q4_K_M"), run.out());
    }
}
