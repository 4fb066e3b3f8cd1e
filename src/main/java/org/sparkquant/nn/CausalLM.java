package org.sparkquant.nn;

import java.util.List;

import org.nd4j.linalg.api.ndarray.INDArray;
import org.sparkquant.SparkQuantException;
import org.sparkquant.io.Storage;
import org.sparkquant.io.TensorReader;
import org.sparkquant.io.TensorStore;
import org.sparkquant.model.LinearModule;
import org.sparkquant.model.ModelConfig;
import org.sparkquant.model.ModelInventory;

/**
 * Entry point of the forward pass: a checkpoint seen as a sequence of streamable steps. Nothing but the headers and
 * the final norm is read when it opens; {@link #embedding()} reads the rows of the tokens it looks up,
 * {@link #layerWeights(int)} one decoder layer, {@link #head()} the lm_head chunk by chunk. A caller holds the hidden
 * states of its sequences and one layer's weights at a time:
 * <pre>
 *   INDArray h = lm.embedding().lookup(sequences);
 *   try (DecoderLayer layer = lm.newDecoderLayer()) {
 *       for (int i = 0; i &lt; lm.config().numLayers(); i++) layer.forward(h, batch, lm.layerWeights(i), hooks);
 *   }
 *   lm.head().nll(List.of(h), List.of(targets));
 * </pre>
 */
public final class CausalLM implements AutoCloseable {
    private final ModelConfig config;
    private final ModelInventory inventory;
    private final TensorReader store;
    private final boolean ownsStore;
    private final TokenEmbedding embedding;
    private OutputHead head;

    private CausalLM(ModelConfig config, TensorReader store, boolean ownsStore) {
        this.config = config;
        this.store = store;
        this.ownsStore = ownsStore;
        this.inventory = store instanceof TensorStore s ? ModelInventory.of(config, s) : checked(config, store);
        this.embedding = new TokenEmbedding(store, "model.embed_tokens.weight", config.vocabSize(),
                config.hiddenSize());
    }

    /** The config-only inventory, with every tensor it requires checked against the reader's shapes. */
    private static ModelInventory checked(ModelConfig config, TensorReader reader) {
        ModelInventory inventory = ModelInventory.of(config);
        for (String name : inventory.requiredTensors()) {
            if (!reader.contains(name)) {
                throw SparkQuantException.badInput(reader.source() + ": missing tensor '" + name + "' for "
                        + config.modelType());
            }
        }
        for (java.util.List<LinearModule> layer : inventory.layers()) {
            for (LinearModule m : layer) {
                long[] shape = reader.shape(m.weight());
                if (shape.length != 2 || shape[0] != m.outFeatures() || shape[1] != m.inFeatures()) {
                    throw SparkQuantException.badInput(reader.source() + ": tensor '" + m.weight() + "' has shape "
                            + java.util.Arrays.toString(shape) + ", expected [" + m.outFeatures() + ", "
                            + m.inFeatures() + "]");
                }
            }
        }
        return inventory;
    }

    /** Opens a Hugging Face checkpoint directory (config.json + safetensors) on any {@link Storage} URI. */
    public static CausalLM open(Storage storage, String modelDirectory) {
        ModelConfig config = ModelConfig.load(storage, modelDirectory);
        TensorStore store = TensorStore.open(storage, modelDirectory);
        try {
            return new CausalLM(config, store, true);
        } catch (RuntimeException e) {
            store.close();
            throw e;
        }
    }

    /** Over an already open store, which stays owned by the caller. Checks every tensor's shape against the config. */
    public static CausalLM of(ModelConfig config, TensorStore store) {
        return new CausalLM(config, store, false);
    }

    /**
     * Over any tensor reader (e.g. a GGUF file seen through Hugging Face names); {@code owns}: whether closing the
     * model closes the reader.
     */
    public static CausalLM of(ModelConfig config, TensorReader reader, boolean owns) {
        try {
            return new CausalLM(config, reader, owns);
        } catch (RuntimeException e) {
            if (owns) {
                reader.close();
            }
            throw e;
        }
    }

    public ModelConfig config() {
        return config;
    }

    public ModelInventory inventory() {
        return inventory;
    }

    /** The safetensors checkpoint behind the model; fails when the model is read from another source. */
    public TensorStore store() {
        if (store instanceof TensorStore s) {
            return s;
        }
        throw new IllegalStateException("model is not read from a safetensors checkpoint but from " + store.source());
    }

    /** Where the tensors are read from. */
    public TensorReader tensors() {
        return store;
    }

    public TokenEmbedding embedding() {
        return embedding;
    }

    public LayerWeights layerWeights(int layer) {
        return LayerWeights.load(store, inventory, layer);
    }

    public synchronized OutputHead head() {
        if (head == null) {
            head = new OutputHead(store, config);
        }
        return head;
    }

    public DecoderLayer newDecoderLayer() {
        return new DecoderLayer(config);
    }

    /** The final hidden states (before the final norm) of a few sequences, as one batch: {@code [tokens, hidden]}. */
    public INDArray hiddenStates(List<int[]> sequences, ModelHooks hooks) {
        SequenceBatch batch = SequenceBatch.of(sequences);
        INDArray hidden = embedding.lookup(sequences);
        try (DecoderLayer layer = newDecoderLayer()) {
            for (int i = 0; i < config.numLayers(); i++) {
                int index = i;
                LayerHooks layerHooks = hooks == null ? LayerHooks.NONE : new LayerHooks() {
                    @Override
                    public void onInput(org.sparkquant.model.LinearModule.Input input, INDArray x, SequenceBatch b) {
                        hooks.onInput(input, x, b, index);
                    }

                    @Override
                    public void onExpertInput(org.sparkquant.model.LinearModule.Input input, int expert, INDArray x,
                            int[] rows, SequenceBatch b) {
                        hooks.onExpertInput(input, expert, x, rows, b, index);
                    }
                };
                try (LayerWeights weights = layerWeights(i)) {
                    layer.forward(hidden, batch, weights, layerHooks);
                }
            }
        }
        return hidden;
    }

    /** All logits {@code [tokens, vocab]} of a few sequences run as one batch: for tests and small inputs. */
    public INDArray logits(List<int[]> sequences) {
        return head().logits(hiddenStates(sequences, null));
    }

    /** Hooks of a whole-model run: the layer index comes with each input. */
    @FunctionalInterface
    public interface ModelHooks {
        void onInput(org.sparkquant.model.LinearModule.Input input, INDArray x, SequenceBatch batch, int layer);

        /** See {@link LayerHooks#onExpertInput}. */
        default void onExpertInput(org.sparkquant.model.LinearModule.Input input, int expert, INDArray x, int[] rows,
                SequenceBatch batch, int layer) {
        }
    }

    @Override
    public void close() {
        if (ownsStore) {
            store.close();
        }
    }
}
