package org.sparkquant.nn;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;

import com.fasterxml.jackson.databind.JsonNode;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.sparkquant.io.Storage;
import org.sparkquant.model.LinearModule.Input;

/**
 * The forward pass against Hugging Face transformers (python/hf_golden.py): tiny random fp32 models of every supported
 * architecture feature, two sequences of different lengths run as ONE batch here (HF ran each alone), logits and the
 * layer-0 linear-module inputs within 1e-4.
 */
class HfGoldenTest {
    private static final double TOLERANCE = 1e-4;

    static List<String> fixtures() {
        return Golden.TINY;
    }

    @ParameterizedTest
    @MethodSource("fixtures")
    void logitsAndHooksMatchTransformers(String name) {
        Path dir = Golden.tiny(name);
        Path reference = dir.resolve("reference.safetensors");
        JsonNode ref = Golden.json(dir.resolve("reference.json"));
        List<int[]> sequences = Golden.sequences(ref.get("sequences"));
        int first = sequences.get(0).length;
        Map<Input, float[]> hooked = new EnumMap<>(Input.class);
        try (CausalLM lm = CausalLM.open(Storage.local(), dir.toString())) {
            INDArray hidden = lm.hiddenStates(sequences, (input, x, batch, layer) -> {
                if (layer == 0) {
                    hooked.put(input, Golden.rows(x, 0, first));
                }
            });
            INDArray logits = lm.head().logits(hidden);
            SequenceBatch batch = SequenceBatch.of(sequences);
            for (int i = 0; i < sequences.size(); i++) {
                float[] expected = Golden.tensor(reference, "logits." + i);
                float[] actual = Golden.rows(logits, batch.offset(i), batch.length(i));
                double diff = Golden.maxAbsDiff(expected, actual);
                assertTrue(diff <= TOLERANCE, name + " sequence " + i + ": logits differ by " + diff
                        + " (max |logit| " + Golden.maxAbs(expected) + ")");
            }
        }
        Map<Input, String> modules = Map.of(Input.ATTN_IN, "q_proj", Input.ATTN_OUT_IN, "o_proj", Input.MLP_IN,
                "gate_proj", Input.DOWN_IN, "down_proj");
        assertEquals(modules.keySet(), hooked.keySet());
        for (Map.Entry<Input, String> e : modules.entrySet()) {
            float[] expected = Golden.tensor(reference, "hook." + e.getValue());
            double diff = Golden.maxAbsDiff(expected, hooked.get(e.getKey()));
            assertTrue(diff <= TOLERANCE, name + ": input of " + e.getValue() + " differs by " + diff);
        }
    }

    @ParameterizedTest
    @MethodSource("fixtures")
    void ropeFrequenciesAreTransformersFp32Values(String name) {
        Path dir = Golden.tiny(name);
        float[] expected = Golden.tensor(dir.resolve("reference.safetensors"), "inv_freq");
        var config = org.sparkquant.model.ModelConfig.load(Storage.local(), dir.toString());
        double[] inv = config.rope().inverseFrequencies(config.headDim());
        float[] actual = new float[inv.length];
        for (int i = 0; i < inv.length; i++) {
            actual[i] = (float) inv[i];
        }
        assertArrayEquals(expected, actual, name + " (" + config.rope().type() + ")");
    }

    @ParameterizedTest
    @MethodSource("fixtures")
    void nllIsLogSoftmaxOfTransformersLogits(String name) {
        Path dir = Golden.tiny(name);
        List<int[]> sequences = Golden.sequences(Golden.json(dir.resolve("reference.json")).get("sequences"));
        int[] seq = sequences.get(0);
        float[] logits = Golden.tensor(dir.resolve("reference.safetensors"), "logits.0");
        int vocab = logits.length / seq.length;
        int[] targets = new int[seq.length];
        for (int p = 0; p < seq.length; p++) {
            targets[p] = p + 1 < seq.length ? seq[p + 1] : -1;
        }
        try (CausalLM lm = CausalLM.open(Storage.local(), dir.toString())) {
            INDArray hidden = lm.hiddenStates(List.of(seq), null);
            double[] nll = lm.head().nll(List.of(hidden), List.of(targets)).get(0);
            for (int p = 0; p < seq.length; p++) {
                if (targets[p] < 0) {
                    assertTrue(Double.isNaN(nll[p]));
                    continue;
                }
                double max = Double.NEGATIVE_INFINITY;
                for (int v = 0; v < vocab; v++) {
                    max = Math.max(max, logits[p * vocab + v]);
                }
                double sum = 0;
                for (int v = 0; v < vocab; v++) {
                    sum += Math.exp(logits[p * vocab + v] - max);
                }
                double expected = max + Math.log(sum) - logits[p * vocab + targets[p]];
                assertEquals(expected, nll[p], TOLERANCE, name + " position " + p);
            }
        }
    }
}
