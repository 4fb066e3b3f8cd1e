package org.sparkquant.nn;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.TreeMap;

import com.fasterxml.jackson.databind.JsonNode;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.sparkquant.io.Storage;
import org.sparkquant.model.LinearModule.Input;
import org.sparkquant.testing.TestPython;

/**
 * The mixture-of-experts forward pass against transformers (python/moe_reference.py, run once per class into a
 * temporary directory; skipped without python + transformers): tiny random fp32 mixtral, qwen2_moe (shared expert, a
 * dense layer) and qwen3_moe models. Both sequences run as ONE batch here (transformers ran each alone): logits within
 * 1e-4, every token's top-k experts identical (in order), and the perplexity within 1e-3 relative.
 */
class MoeGoldenTest {
    private static final double TOLERANCE = 1e-4;

    @TempDir
    static Path out;

    @BeforeAll
    static void generate() {
        Path python = TestPython.require("transformers", "torch", "safetensors");
        TestPython.check(python, List.of("python/moe_reference.py", out.toString()), 600);
    }

    @ParameterizedTest
    @ValueSource(strings = {"mixtral", "qwen2-moe", "qwen3-moe"})
    void logitsAndRoutingMatchTransformers(String name) throws Exception {
        Path dir = out.resolve(name);
        JsonNode ref = Golden.json(dir.resolve("reference.json"));
        List<int[]> sequences = Golden.sequences(ref.get("sequences"));
        SequenceBatch batch = SequenceBatch.of(sequences);
        // layer -> token row of the batch -> experts routed to, in the order the hooks saw them (ascending expert)
        List<TreeMap<Integer, List<Integer>>> routed = new ArrayList<>();
        try (CausalLM lm = CausalLM.open(Storage.local(), dir.toString())) {
            for (int i = 0; i < lm.config().numLayers(); i++) {
                routed.add(new TreeMap<>());
            }
            INDArray hidden = lm.hiddenStates(sequences, new CausalLM.ModelHooks() {
                @Override
                public void onInput(Input input, INDArray x, SequenceBatch b, int layer) {
                }

                @Override
                public void onExpertInput(Input input, int expert, INDArray x, int[] rows, SequenceBatch b,
                        int layer) {
                    if (input == Input.MLP_IN) {
                        assertEquals(rows.length, x.rows());
                        for (int r : rows) {
                            routed.get(layer).computeIfAbsent(r, k -> new ArrayList<>()).add(expert);
                        }
                    }
                }
            });
            INDArray logits = lm.head().logits(hidden);
            Path reference = dir.resolve("reference.safetensors");
            for (int i = 0; i < sequences.size(); i++) {
                float[] expected = Golden.tensor(reference, "logits." + i);
                float[] actual = Golden.rows(logits, batch.offset(i), batch.length(i));
                double diff = Golden.maxAbsDiff(expected, actual);
                assertTrue(diff <= TOLERANCE, name + " sequence " + i + ": logits differ by " + diff
                        + " (max |logit| " + Golden.maxAbs(expected) + ")");
            }
            JsonNode routing = ref.get("routing");
            int sparse = 0;
            for (int layer = 0; layer < routing.size(); layer++) {
                if (routing.get(layer).isNull()) {
                    assertTrue(routed.get(layer).isEmpty(), name + " layer " + layer + " is dense");
                    assertNull(lm.layerWeights(layer).router());
                    continue;
                }
                sparse++;
                for (int i = 0; i < sequences.size(); i++) {
                    for (int t = 0; t < batch.length(i); t++) {
                        List<Integer> want = new ArrayList<>();
                        routing.get(layer).get(i).get(t).forEach(v -> want.add(v.asInt()));
                        List<Integer> got = routed.get(layer).get(batch.offset(i) + t);
                        // the hooks see experts ascending; the router's order (descending weight) is checked below
                        assertEquals(want.stream().sorted().toList(), got, name + " layer " + layer + " sequence "
                                + i + " token " + t);
                    }
                }
            }
            assertTrue(sparse > 0);
            // the router's own order: descending weight, as torch.topk returns it
            int[] seq = sequences.get(0);
            INDArray h = lm.embedding().lookup(List.of(seq));
            try (DecoderLayer layer = lm.newDecoderLayer(); LayerWeights w = lm.layerWeights(0)) {
                INDArray[] normed = new INDArray[1];
                layer.runUntil(h, SequenceBatch.of(List.of(seq)), w, (input, x, b) -> {
                    if (input == Input.MLP_IN) {
                        normed[0] = x.dup();
                    }
                }, Input.MLP_IN);
                DecoderLayer.Routing r = DecoderLayer.route(normed[0], w.router(), lm.config().moe().topK(),
                        lm.config().moe().normTopkProb());
                for (int t = 0; t < seq.length; t++) {
                    for (int j = 0; j < r.topK(); j++) {
                        assertEquals(routing.get(0).get(0).get(t).get(j).asInt(), r.chosen()[t * r.topK() + j],
                                name + " token " + t + " choice " + j);
                    }
                }
            }
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"mixtral", "qwen2-moe", "qwen3-moe"})
    void perplexityMatchesTransformers(String name) {
        Path dir = out.resolve(name);
        JsonNode ref = Golden.json(dir.resolve("reference.json"));
        List<int[]> windows = Golden.sequences(ref.get("windows"));
        try (CausalLM lm = CausalLM.open(Storage.local(), dir.toString())) {
            double ppl = new PerplexityEvaluator(lm).evaluate(windows).ppl();
            double want = ref.get("ppl").asDouble();
            assertEquals(want, ppl, 1e-3 * want, name);
        }
        assertTrue(Files.exists(dir.resolve("model.safetensors")));
    }
}
