package org.sparkquant.nn;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import com.fasterxml.jackson.databind.JsonNode;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.sparkquant.io.Storage;
import org.sparkquant.testing.TestPaths;
import org.sparkquant.tokenizer.TextTokenizer;

/**
 * The real models of ../shared (trained weights; dev-llama2-26m is bf16, computed in fp32) against references of
 * python/hf_golden.py --shared: logits, log-sum-exp and NLL of a fixed sentence, and the perplexity of 4 windows of
 * 128 tokens of text/eval.txt with tokenization done here. Skipped when ../shared is absent.
 */
class SharedModelsTest {
    private static final double TOLERANCE = 1e-4;

    private static Path reference(String model, String ext) {
        return TestPaths.fixtures("nn").resolve("shared").resolve(model + ext);
    }

    @ParameterizedTest
    @ValueSource(strings = {"stories260K", "dev-llama2-26m"})
    void logitsMatchTransformers(String model) {
        Path dir = TestPaths.shared("models/" + model);
        JsonNode ref = Golden.json(reference(model, ".json"));
        Path tensors = reference(model, ".safetensors");
        int[] tokens = Golden.ints(ref.get("tokens"));
        try (CausalLM lm = CausalLM.open(Storage.local(), dir.toString());
                TextTokenizer tok = TextTokenizer.load(Storage.local(), dir.toString())) {
            tok.checkCompatible(lm.config());
            INDArray hidden = lm.hiddenStates(List.of(tokens), null);
            float[] logits = lm.head().logits(hidden).data().asFloat();
            int vocab = lm.config().vocabSize();
            int positions = ref.get("logit_positions").intValue();
            int step = ref.get("vocab_index_step").intValue();
            float[] expectedSlice = Golden.tensor(tensors, "logits.slice");
            List<Float> actualSlice = new ArrayList<>();
            for (int p = 0; p < positions; p++) {
                for (int v = 0; v < vocab; v += step) {
                    actualSlice.add(logits[p * vocab + v]);
                }
            }
            float[] actual = new float[actualSlice.size()];
            for (int i = 0; i < actual.length; i++) {
                actual[i] = actualSlice.get(i);
            }
            double diff = Golden.maxAbsDiff(expectedSlice, actual);
            assertTrue(diff <= TOLERANCE, model + ": logits differ by " + diff);

            float[] lse = Golden.tensor(tensors, "logsumexp");
            for (int p = 0; p < tokens.length; p++) {
                double max = Double.NEGATIVE_INFINITY;
                for (int v = 0; v < vocab; v++) {
                    max = Math.max(max, logits[p * vocab + v]);
                }
                double sum = 0;
                for (int v = 0; v < vocab; v++) {
                    sum += Math.exp(logits[p * vocab + v] - max);
                }
                assertEquals(lse[p], max + Math.log(sum), TOLERANCE, model + " logsumexp at " + p);
            }
            int[] targets = new int[tokens.length];
            for (int p = 0; p < tokens.length; p++) {
                targets[p] = p + 1 < tokens.length ? tokens[p + 1] : -1;
            }
            double[] nll = lm.head().nll(List.of(hidden), List.of(targets)).get(0);
            float[] expectedNll = Golden.tensor(tensors, "nll");
            for (int p = 0; p + 1 < tokens.length; p++) {
                assertEquals(expectedNll[p], nll[p], TOLERANCE, model + " NLL at " + p);
            }
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"stories260K", "dev-llama2-26m"})
    void perplexityOfEvalTextMatchesTransformers(String model) throws IOException {
        Path dir = TestPaths.shared("models/" + model);
        Path evalText = TestPaths.shared("text/eval.txt");
        JsonNode ppl = Golden.json(reference(model, ".json")).get("perplexity");
        String text = Files.readString(evalText);
        String slice = text.substring(0, text.offsetByCodePoints(0, ppl.get("code_points").intValue()));
        int seqLen = ppl.get("seq_len").intValue();
        int count = ppl.get("windows").intValue();
        try (CausalLM lm = CausalLM.open(Storage.local(), dir.toString());
                TextTokenizer tok = TextTokenizer.load(Storage.local(), dir.toString())) {
            int[] tokens = tok.encode(slice);
            List<int[]> windows = PerplexityEvaluator.windows(tokens, seqLen, count);
            List<int[]> expectedWindows = Golden.sequences(ppl.get("window_tokens"));
            assertEquals(expectedWindows.size(), windows.size());
            for (int i = 0; i < windows.size(); i++) {
                assertArrayEquals(expectedWindows.get(i), windows.get(i), model + ": tokens of window " + i);
            }
            Perplexity result = new PerplexityEvaluator(lm).evaluate(windows);
            assertEquals(ppl.get("predicted_tokens").longValue(), result.tokens());
            double expected = ppl.get("ppl").doubleValue();
            double relative = Math.abs(result.ppl() - expected) / expected;
            assertTrue(relative <= 1e-4, model + ": ppl " + result.ppl() + " vs transformers " + expected);
        }
    }
}
