package org.sparkquant.format.gptq;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.sparkquant.io.DType;
import org.sparkquant.io.ShardedSafetensorsWriter;
import org.sparkquant.io.Storage;
import org.sparkquant.io.TensorSpec;
import org.sparkquant.io.TensorStore;
import org.sparkquant.model.ModelConfig;
import org.sparkquant.model.ModelInventory;
import org.sparkquant.nn.CausalLM;
import org.sparkquant.nn.DecoderLayer;
import org.sparkquant.nn.LayerHooks;
import org.sparkquant.nn.OutputHead;
import org.sparkquant.nn.SequenceBatch;
import org.sparkquant.nn.TokenEmbedding;

/**
 * What the forward pass evaluates from a GPTQ checkpoint ({@link GptqCheckpoint#layerWeights}) is exactly the model
 * whose weights are the quantized modules' {@code dequantize()}: logits are identical to those of a dense checkpoint
 * holding those weights.
 */
class GptqEvaluationTest {
    private final Storage storage = Storage.local();

    @TempDir
    Path tmp;

    @Test
    void gptqCheckpointEvaluatesToTheDequantizedModel() {
        String src = tmp.resolve("source").toString();
        ModelConfig config = GptqTestModels.write(storage, src, GptqTestModels.config("llama", 64, 172, 2, 4, 2, 48,
                false, "float32"), DType.F32, 11);
        String gptq = tmp.resolve("gptq").toString();
        String fake = tmp.resolve("fake-quant").toString();
        Map<String, QuantizedLinear> supplied = new HashMap<>();
        try (TensorStore store = TensorStore.open(storage, src)) {
            ModelInventory inventory = ModelInventory.of(config, store);
            GptqCheckpointWriter.write(storage, store, inventory, gptq,
                    GptqCheckpointWriter.Options.of(4, 32, false).withActOrder(true, false), m -> {
                        QuantizedLinear q = GptqTestModels.rtn(m.name(), store.readFloats(m.weight()), m.inFeatures(),
                                m.outFeatures(), 4, 32, false, GptqTestModels.randomPermutation(m.inFeatures(), 5),
                                null);
                        supplied.put(m.name(), q);
                        return q;
                    });
            // the same model as a plain checkpoint whose quantized weights are replaced by their dequantization
            storage.copy(Storage.resolve(src, "config.json"), Storage.resolve(fake, "config.json"));
            List<TensorSpec> specs = new ArrayList<>();
            for (String name : store.names()) {
                specs.add(new TensorSpec(name, DType.F32, store.info(name).shape()));
            }
            try (ShardedSafetensorsWriter w = ShardedSafetensorsWriter.create(storage, fake, specs, 1L << 40,
                    Map.of("format", "pt"))) {
                for (String name : store.names()) {
                    String module = name.substring(0, name.lastIndexOf('.'));
                    float[] v = name.endsWith(".weight") && supplied.containsKey(module)
                            ? supplied.get(module).dequantize() : store.readFloats(name);
                    ByteBuffer b = ByteBuffer.allocate(v.length * 4).order(ByteOrder.LITTLE_ENDIAN);
                    b.asFloatBuffer().put(v);
                    w.write(name, b.array());
                }
            }
        }
        assertEquals(8, supplied.size());
        List<int[]> sequences = List.of(new int[] {1, 5, 9, 33, 2, 7}, new int[] {1, 40, 41, 3});

        float[] expected;
        try (CausalLM dense = CausalLM.open(storage, fake)) {
            expected = dense.logits(sequences).dup().data().asFloat();
        }
        float[] original;
        try (CausalLM source = CausalLM.open(storage, src)) {
            original = source.logits(sequences).dup().data().asFloat();
        }
        float[] actual;
        try (GptqCheckpoint ckpt = GptqCheckpoint.open(storage, gptq)) {
            ModelConfig c = ckpt.config();
            INDArray hidden = new TokenEmbedding(ckpt.store(), "model.embed_tokens.weight", c.vocabSize(),
                    c.hiddenSize()).lookup(sequences);
            SequenceBatch batch = SequenceBatch.of(sequences);
            try (DecoderLayer layer = new DecoderLayer(c)) {
                for (int i = 0; i < c.numLayers(); i++) {
                    layer.forward(hidden, batch, ckpt.layerWeights(i), LayerHooks.NONE);
                }
            }
            actual = new OutputHead(ckpt.store(), c).logits(hidden).dup().data().asFloat();
        }
        assertArrayEquals(expected, actual);
        assertFalse(Arrays.equals(original, actual), "quantization changes the logits");
    }
}
