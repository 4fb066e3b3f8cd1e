package org.sparkquant.spark;

import java.io.Serializable;

import org.sparkquant.format.gguf.GgufModel;
import org.sparkquant.io.Storage;
import org.sparkquant.model.ModelConfig;
import org.sparkquant.nn.CausalLM;
import org.sparkquant.nn.LayerWeights;
import org.sparkquant.tokenizer.TextTokenizer;

/**
 * Where executors get a model from: a dense Hugging Face checkpoint directory or a GGUF file (dequantized on read).
 * Serializable as a URI plus storage settings; each executor opens the model once ({@link ExecutorCache}) and reads
 * one layer at a time with positional reads.
 */
public final class ModelSource implements Serializable {
    private static final long serialVersionUID = 2L;

    private final Storage storage;
    private final String uri;
    private final ModelConfig config;
    private final boolean gguf;

    private ModelSource(Storage storage, String uri, ModelConfig config, boolean gguf) {
        this.storage = storage;
        this.uri = uri;
        this.config = config;
        this.gguf = gguf;
    }

    /** A dense Hugging Face checkpoint. */
    public static ModelSource dense(Storage storage, String uri) {
        return new ModelSource(storage, uri, ModelConfig.load(storage, uri), false);
    }

    /** A GGUF file of a llama / mistral / qwen2 / qwen3 model (any ggml type), served dequantized. */
    public static ModelSource gguf(Storage storage, String uri) {
        try (GgufModel m = GgufModel.open(storage, uri)) {
            return new ModelSource(storage, uri, m.config(), true);
        }
    }

    /** A GGUF file when {@code uri} is not a directory, else a dense checkpoint directory. */
    public static ModelSource of(Storage storage, String uri) {
        return storage.isDirectory(uri) ? dense(storage, uri) : gguf(storage, uri);
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

    public boolean isGguf() {
        return gguf;
    }

    /**
     * The model's tokenizer: tokenizer.json of the directory, or the one rebuilt from a GGUF file's vocabulary;
     * {@code addBos} overrides the BOS policy when not null.
     */
    public TextTokenizer tokenizer(Boolean addBos) {
        if (!gguf) {
            return TextTokenizer.load(storage, uri, addBos);
        }
        try (GgufModel m = GgufModel.open(storage, uri)) {
            return m.tokenizer().open(addBos);
        }
    }

    private String key() {
        return (gguf ? "gguf:" : "dense:") + uri;
    }

    /** The model on this JVM (opened on first use). */
    public CausalLM open() {
        return ExecutorCache.model(key(), () -> gguf
                ? CausalLM.of(config, GgufModel.open(storage, uri).tensors(), true)
                : CausalLM.of(config, ExecutorCache.checkpoint(storage, uri)));
    }

    /** The weights of one layer, shared by the tasks of this JVM while they work on that layer. */
    public LayerWeights layer(int layer) {
        return ExecutorCache.layer(key() + "#" + layer, () -> open().layerWeights(layer));
    }
}
