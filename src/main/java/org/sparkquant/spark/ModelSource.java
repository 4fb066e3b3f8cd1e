package org.sparkquant.spark;

import java.io.Serializable;

import org.sparkquant.io.Storage;
import org.sparkquant.model.ModelConfig;
import org.sparkquant.nn.CausalLM;
import org.sparkquant.nn.LayerWeights;

/**
 * Where executors get a model from. Serializable as a URI plus storage settings; each executor opens the model once
 * ({@link ExecutorCache}) and reads one layer at a time with positional reads.
 */
public final class ModelSource implements Serializable {
    private static final long serialVersionUID = 1L;

    private final Storage storage;
    private final String uri;
    private final ModelConfig config;

    private ModelSource(Storage storage, String uri, ModelConfig config) {
        this.storage = storage;
        this.uri = uri;
        this.config = config;
    }

    /** A dense Hugging Face checkpoint. */
    public static ModelSource dense(Storage storage, String uri) {
        return new ModelSource(storage, uri, ModelConfig.load(storage, uri));
    }

    public String uri() {
        return uri;
    }

    public Storage storage() {
        return storage;
    }

    public ModelConfig config() {
        return config;
    }

    /** The model on this JVM (opened on first use). */
    public CausalLM open() {
        return ExecutorCache.model("dense:" + uri, () -> CausalLM.of(config, ExecutorCache.checkpoint(storage, uri)));
    }

    /** The weights of one layer, shared by the tasks of this JVM while they work on that layer. */
    public LayerWeights layer(int layer) {
        return ExecutorCache.layer("dense:" + uri + "#" + layer, () -> open().layerWeights(layer));
    }
}
