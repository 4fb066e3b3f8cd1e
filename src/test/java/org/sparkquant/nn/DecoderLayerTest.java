package org.sparkquant.nn;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;
import org.sparkquant.io.Storage;
import org.sparkquant.model.LinearModule.Input;
import org.sparkquant.model.ModelConfig;

/** What the GPTQ pipeline relies on: hook order, running up to a module group, replacing modules, batch views. */
class DecoderLayerTest {
    private static CausalLM lm;
    private static ModelConfig config;
    private static LayerWeights weights;
    private static List<int[]> sequences;
    private static SequenceBatch batch;

    @BeforeAll
    static void open() {
        // qwen2: biases on q/k/v, GQA
        lm = CausalLM.open(Storage.local(), Golden.tiny("qwen2-bias").toString());
        config = lm.config();
        weights = lm.layerWeights(0);
        sequences = Golden.sequences(Golden.json(Golden.tiny("qwen2-bias").resolve("reference.json")).get("sequences"));
        batch = SequenceBatch.of(sequences);
    }

    @AfterAll
    static void close() {
        lm.close();
    }

    private static INDArray embedded() {
        return lm.embedding().lookup(sequences);
    }

    private static Map<Input, float[]> run(LayerWeights w, INDArray hidden, Input until) {
        Map<Input, float[]> seen = new EnumMap<>(Input.class);
        List<Input> order = new ArrayList<>();
        try (DecoderLayer layer = lm.newDecoderLayer()) {
            LayerHooks hooks = (input, x, b) -> {
                assertEquals(batch, b);
                assertEquals(batch.tokens(), x.rows());
                order.add(input);
                seen.put(input, x.dup('c').data().asFloat());
            };
            if (until == null) {
                layer.forward(hidden, batch, w, hooks);
            } else {
                layer.runUntil(hidden, batch, w, hooks, until);
            }
        }
        List<Input> expected = Input.DENSE;
        if (until != null) {
            expected = expected.subList(0, until.ordinal() + 1);
        }
        assertEquals(expected, order, "hooks in module order");
        return seen;
    }

    @Test
    void runUntilDeliversTheSameInputsAndLeavesHiddenUnchanged() {
        INDArray full = embedded();
        Map<Input, float[]> all = run(weights, full, null);
        assertEquals(config.intermediateSize(), all.get(Input.DOWN_IN).length / batch.tokens());
        assertEquals(config.qDim(), all.get(Input.ATTN_OUT_IN).length / batch.tokens());
        for (Input until : Input.DENSE) {
            INDArray hidden = embedded();
            float[] before = hidden.data().asFloat();
            Map<Input, float[]> partial = run(weights, hidden, until);
            assertArrayEquals(before, hidden.data().asFloat(), "hidden states untouched by runUntil(" + until + ")");
            for (Map.Entry<Input, float[]> e : partial.entrySet()) {
                assertArrayEquals(all.get(e.getKey()), e.getValue(), e.getKey() + " up to " + until);
            }
        }
        assertFalse(Arrays.equals(embedded().data().asFloat(), full.data().asFloat()), "forward updates in place");
    }

    @Test
    void replacedModuleIsUsedAndEarlierInputsStay() {
        Map<Input, float[]> original = run(weights, embedded(), null);
        // o_proj = 0: the attention branch adds nothing, so the MLP input is RMSNorm(h) with the post-attention weight
        LayerWeights noAttention = weights.with("o_proj", DenseLinear.of(new float[config.hiddenSize() * config.qDim()],
                config.hiddenSize(), config.qDim(), null));
        INDArray hidden = embedded();
        float[] h = hidden.data().asFloat();
        Map<Input, float[]> replaced = run(noAttention, hidden, Input.MLP_IN);
        assertArrayEquals(original.get(Input.ATTN_IN), replaced.get(Input.ATTN_IN));
        assertArrayEquals(original.get(Input.ATTN_OUT_IN), replaced.get(Input.ATTN_OUT_IN));
        float[] expected = rmsNorm(h, config.hiddenSize(), weights.postAttentionNorm(), config.rmsNormEps());
        assertTrue(Golden.maxAbsDiff(expected, replaced.get(Input.MLP_IN)) < 1e-5);

        // a different v_proj changes the attention output but not the attention input
        LinearWeights v = weights.linear("v_proj");
        LayerWeights scaledV = weights.with("v_proj", new DenseLinear(v.weight().mul(2f), v.bias()));
        Map<Input, float[]> changed = run(scaledV, embedded(), Input.ATTN_OUT_IN);
        assertArrayEquals(original.get(Input.ATTN_IN), changed.get(Input.ATTN_IN));
        assertFalse(Arrays.equals(original.get(Input.ATTN_OUT_IN), changed.get(Input.ATTN_OUT_IN)));
    }

    @Test
    void weightsMayBeMaterialisedOnDemandInAnyLayout() {
        INDArray reference = embedded();
        run(weights, reference, null);
        LayerWeights lazy = weights;
        int[] calls = new int[1];
        for (String kind : LayerWeights.KINDS) {
            LinearWeights dense = weights.linear(kind);
            lazy = lazy.with(kind, new LinearWeights() {
                public int outFeatures() {
                    return dense.outFeatures();
                }

                public int inFeatures() {
                    return dense.inFeatures();
                }

                public INDArray weight() {
                    calls[0]++;
                    return dense.weight().dup('f'); // e.g. dequantized into a fresh column-major array
                }

                public float[] bias() {
                    return dense.bias();
                }
            });
        }
        INDArray hidden = embedded();
        run(lazy, hidden, null);
        assertEquals(7, calls[0], "each module's weight is asked for once per forward");
        assertTrue(Golden.maxAbsDiff(reference.data().asFloat(), hidden.data().asFloat()) < 1e-5);
    }

    @Test
    void hiddenStatesMayBeARowViewOfALargerArray() {
        INDArray reference = embedded();
        run(weights, reference, null);
        int n = batch.tokens();
        int h = config.hiddenSize();
        INDArray big = Nd4j.rand(org.nd4j.linalg.api.buffer.DataType.FLOAT, n + 7, h);
        INDArray view = big.get(NDArrayIndex.interval(3, 3 + n), NDArrayIndex.all());
        view.assign(embedded());
        float[] outside = big.get(NDArrayIndex.interval(0, 3), NDArrayIndex.all()).dup().data().asFloat();
        run(weights, view, null);
        assertArrayEquals(reference.data().asFloat(), view.dup('c').data().asFloat());
        assertArrayEquals(outside, big.get(NDArrayIndex.interval(0, 3), NDArrayIndex.all()).dup().data().asFloat());
    }

    @Test
    void batchingMatchesRunningEachSequenceAlone() {
        INDArray together = embedded();
        run(weights, together, null);
        int offset = 0;
        for (int[] s : sequences) {
            INDArray alone = lm.embedding().lookup(List.of(s));
            try (DecoderLayer layer = lm.newDecoderLayer()) {
                layer.forward(alone, SequenceBatch.of(s.length), weights, LayerHooks.NONE);
            }
            float[] rows = Golden.rows(together, offset, s.length);
            assertTrue(Golden.maxAbsDiff(alone.data().asFloat(), rows) < 1e-5);
            offset += s.length;
        }
    }

    @Test
    void replacementMustHaveTheModuleShape() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> weights.with("q_proj", DenseLinear.of(new float[4], 2, 2, null)));
        assertTrue(e.getMessage().contains("q_proj"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> weights.linear("qkv_proj"));
    }

    @Test
    void wrongHiddenShapeIsRejected() {
        INDArray wrong = Kernels.matrix(batch.tokens() - 1, config.hiddenSize());
        try (DecoderLayer layer = lm.newDecoderLayer()) {
            assertThrows(IllegalArgumentException.class,
                    () -> layer.forward(wrong, batch, weights, LayerHooks.NONE));
        }
    }

    /** Independent double-precision RMSNorm. */
    private static float[] rmsNorm(float[] x, int width, float[] weight, double eps) {
        float[] out = new float[x.length];
        for (int r = 0; r < x.length / width; r++) {
            double ss = 0;
            for (int j = 0; j < width; j++) {
                ss += (double) x[r * width + j] * x[r * width + j];
            }
            double scale = 1 / Math.sqrt(ss / width + eps);
            for (int j = 0; j < width; j++) {
                out[r * width + j] = (float) (weight[j] * x[r * width + j] * scale);
            }
        }
        return out;
    }
}
