package org.sparkquant.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.sparkquant.io.DType;
import org.sparkquant.io.Storage;
import org.sparkquant.io.TensorStore;
import org.sparkquant.nn.CausalLM;
import org.sparkquant.nn.SequenceBatch;

/** The MoE presets of {@code generate}: checkpoints the inventory accepts, of the shapes the hub's models have. */
class SyntheticMoeTest {
    @TempDir
    Path dir;

    /** The real-shape presets have exactly the parameters transformers counts for the hub's configs. */
    @Test
    void realShapesHaveTheHubModelsParameters() {
        var reference = TransformersReference.committed();
        for (var p : List.of(List.of("qwen3-30b-a3b", SyntheticModel.Preset.QWEN3_30B_A3B),
                List.of("mixtral-8x7b-v0.1", SyntheticModel.Preset.MIXTRAL_8X7B))) {
            SyntheticModel.Preset preset = (SyntheticModel.Preset) p.get(1);
            ModelConfig config = ModelConfig.parse(SyntheticModel.configJson(preset.shape(), DType.BF16), "preset");
            ModelConfig hub = ModelConfigTest.parse((String) p.get(0));
            assertEquals(reference.get((String) p.get(0)).get("parameters").asLong(),
                    ModelInventory.of(config).parameterCount(), preset.name());
            assertEquals(hub.moe(), config.moe(), preset.name());
            assertEquals(ModelInventory.of(hub).requiredTensors(), ModelInventory.of(config).requiredTensors());
        }
    }

    /** The memory plan of Qwen3-30B-A3B: a task holds a 1 GiB pass of the experts' accumulators, not all 8 GiB. */
    @Test
    void memoryPlanBoundsTheExpertsHessiansPerPass() {
        ModelConfig config = ModelConfig.parse(SyntheticModel.configJson(SyntheticModel.Preset.QWEN3_30B_A3B.shape(),
                DType.BF16), "preset");
        ModelInventory inventory = ModelInventory.of(config);
        long perExpert = 16L * 2048 * 2048; // two longs per entry of a 2048-wide accumulator
        long allExperts = 129 * perExpert; // 128 experts' gate/up inputs and the layer's all-token one
        MemoryPlan plan = MemoryPlan.of(inventory, 128, 2048, 8);
        assertEquals(16 * perExpert, plan.moePassBytes());
        assertTrue(plan.moePassBytes() <= MemoryPlan.MOE_PASS_BYTES && plan.moePassBytes() < allExperts / 8);
        assertTrue(plan.executorBytes() >= plan.largestLayerFp32Bytes() + plan.moePassBytes());
        // the work directory holds one layer's Hessians: every expert's gate/up and down, and the all-token one
        long hessians = 129L * 2048 * 2048 * 8 + 128L * 768 * 768 * 8;
        assertTrue(plan.workBytes() > hessians, plan.workBytes() + " vs " + hessians);
        MemoryPlan dense = MemoryPlan.of(ModelInventory.of(ModelConfigTest.parse("qwen3-0.6b")), 128, 2048, 8);
        assertEquals(0, dense.moePassBytes());
    }

    /** Tiny presets of every class: written, accepted by the inventory, and routing tokens to many experts. */
    @Test
    void tinyPresetsAreCheckpointsThatRoute() {
        for (SyntheticModel.Preset preset : List.of(SyntheticModel.Preset.TINY_MIXTRAL,
                SyntheticModel.Preset.TINY_QWEN2_MOE, SyntheticModel.Preset.TINY_QWEN3_MOE)) {
            String out = dir.resolve(preset.name()).toString();
            ModelConfig config = SyntheticModel.write(Storage.local(), out, preset, 2, DType.BF16, 3, 1L << 20);
            assertEquals(preset.shape().moe().type(), config.modelType());
            try (TensorStore store = TensorStore.open(Storage.local(), out)) {
                ModelInventory inv = ModelInventory.of(config, store);
                assertTrue(inv.moe());
                assertEquals(inv.requiredTensors().size(), inv.tensors().size(), "nothing but the required tensors");
            }
            Set<Integer> experts = new HashSet<>();
            int[] tokens = new int[40];
            for (int i = 0; i < tokens.length; i++) {
                tokens[i] = 3 + (i * 37) % 300;
            }
            try (CausalLM lm = CausalLM.open(Storage.local(), out)) {
                INDArray logits = lm.head().logits(lm.hiddenStates(List.of(tokens), new CausalLM.ModelHooks() {
                    @Override
                    public void onInput(LinearModule.Input input, INDArray x, SequenceBatch b, int layer) {
                    }

                    @Override
                    public void onExpertInput(LinearModule.Input input, int expert, INDArray x, int[] rows,
                            SequenceBatch b, int layer) {
                        if (layer == 0) {
                            experts.add(expert);
                        }
                    }
                }));
                for (float v : logits.data().asFloat()) {
                    assertTrue(Float.isFinite(v));
                }
            }
            assertTrue(experts.size() > config.moe().experts() / 2, preset + " routes to " + experts);
        }
    }
}
