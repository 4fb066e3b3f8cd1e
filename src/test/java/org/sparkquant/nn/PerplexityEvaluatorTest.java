package org.sparkquant.nn;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.List;
import java.util.Random;

import org.junit.jupiter.api.Test;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.sparkquant.io.Storage;

class PerplexityEvaluatorTest {
    private static int[] randomTokens(int n, long seed) {
        Random r = new Random(seed);
        int[] t = new int[n];
        for (int i = 0; i < n; i++) {
            t[i] = r.nextInt(256);
        }
        return t;
    }

    @Test
    void windowsFollowTheGptqProtocol() {
        int[] tokens = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
        List<int[]> w = PerplexityEvaluator.windows(tokens, 4, 0);
        assertEquals(2, w.size(), "the trailing partial window is dropped");
        assertArrayEquals(new int[] {0, 1, 2, 3}, w.get(0));
        assertArrayEquals(new int[] {4, 5, 6, 7}, w.get(1));
        assertEquals(1, PerplexityEvaluator.windows(tokens, 4, 1).size());
        assertThrows(IllegalArgumentException.class, () -> PerplexityEvaluator.windows(tokens, 1, 0));
    }

    @Test
    void perplexityIsExpOfMeanNllOfFullLogits() {
        try (CausalLM lm = CausalLM.open(Storage.local(), Golden.tiny("mistral-window").toString())) {
            List<int[]> windows = PerplexityEvaluator.windows(randomTokens(3 * 20, 7), 20, 0);
            // independent path: full logits of each window, log-softmax in double here
            double nll = 0;
            for (int[] w : windows) {
                INDArray logits = lm.logits(List.of(w));
                float[] l = logits.data().asFloat();
                int vocab = logits.columns();
                for (int p = 0; p + 1 < w.length; p++) {
                    double max = Double.NEGATIVE_INFINITY;
                    for (int v = 0; v < vocab; v++) {
                        max = Math.max(max, l[p * vocab + v]);
                    }
                    double sum = 0;
                    for (int v = 0; v < vocab; v++) {
                        sum += Math.exp(l[p * vocab + v] - max);
                    }
                    nll += max + Math.log(sum) - l[p * vocab + w[p + 1]];
                }
            }
            Perplexity p = new PerplexityEvaluator(lm).evaluate(windows);
            assertEquals(3 * 19, p.tokens());
            assertEquals(nll, p.nll(), 1e-6 * nll);
            assertEquals(Math.exp(nll / 57), p.ppl(), 1e-6 * p.ppl());
        }
    }

    @Test
    void microBatchingAndSplittingDoNotChangeTheResult() {
        try (CausalLM lm = CausalLM.open(Storage.local(), Golden.tiny("llama-gqa-tied-llama3").toString())) {
            List<int[]> windows = PerplexityEvaluator.windows(randomTokens(5 * 16, 11), 16, 0);
            Perplexity together = new PerplexityEvaluator(lm, 4096).evaluate(windows);
            Perplexity oneByOne = new PerplexityEvaluator(lm, 1).evaluate(windows);
            Perplexity split = new PerplexityEvaluator(lm).evaluate(windows.subList(0, 2))
                    .plus(new PerplexityEvaluator(lm).evaluate(windows.subList(2, 5)));
            assertEquals(5 * 15, together.tokens());
            assertEquals(together.tokens(), oneByOne.tokens());
            assertEquals(together.nll(), oneByOne.nll(), 1e-6 * together.nll());
            assertEquals(together.tokens(), split.tokens());
            assertEquals(together.nll(), split.nll(), 1e-6 * together.nll());
        }
    }

    @Test
    void layersMayComeFromAnotherSource() {
        try (CausalLM lm = CausalLM.open(Storage.local(), Golden.tiny("qwen3-qknorm").toString())) {
            List<int[]> windows = PerplexityEvaluator.windows(randomTokens(2 * 16, 5), 16, 0);
            Perplexity dense = new PerplexityEvaluator(lm).evaluate(windows);
            Perplexity same = new PerplexityEvaluator(lm.config(), lm.embedding(), lm::layerWeights, lm.head(), 64)
                    .evaluate(windows);
            assertEquals(dense.nll(), same.nll(), 1e-6 * dense.nll());
            int h = lm.config().hiddenSize();
            int ffn = lm.config().intermediateSize();
            List<Integer> asked = new java.util.ArrayList<>();
            Perplexity noMlp = new PerplexityEvaluator(lm.config(), lm.embedding(), layer -> {
                asked.add(layer);
                return lm.layerWeights(layer).with("down_proj", DenseLinear.of(new float[h * ffn], h, ffn, null));
            }, lm.head(), 64).evaluate(windows);
            assertEquals(List.of(0, 1), asked, "each layer once, in order");
            assertEquals(dense.tokens(), noMlp.tokens());
            org.junit.jupiter.api.Assertions.assertTrue(Math.abs(dense.nll() - noMlp.nll()) > 1e-3 * dense.nll(),
                    "the substituted modules are the ones evaluated");
        }
    }
}
