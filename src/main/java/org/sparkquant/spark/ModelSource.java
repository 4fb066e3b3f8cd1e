package org.sparkquant.spark;

import java.io.Serializable;

import org.sparkquant.format.gguf.GgufModel;
import org.sparkquant.format.gptq.GptqCheckpoint;
import org.sparkquant.io.Storage;
import org.sparkquant.model.ModelConfig;
import org.sparkquant.nn.CausalLM;
import org.sparkquant.nn.LayerWeights;
import org.sparkquant.nn.OutputHead;
import org.sparkquant.nn.TokenEmbedding;
import org.sparkquant.tokenizer.TextTokenizer;

/**
 * Where executors get a model from: a dense Hugging Face checkpoint, a GPTQ checkpoint (dequantized layer by layer)
 * or a GGUF file (dequantized on read). Serializable as a URI plus storage settings; each executor opens the model
 * once ({@link ExecutorCache}) and reads one layer at a time with positional reads.
 */
public final class ModelSource implements Serializable {
    private static final long serialVersionUID = 3L;

    public enum Kind { DENSE, GPTQ, GGUF }

    private final Storage storage;
    private final String uri;
    private final ModelConfig config;
    private final Kind kind;

    private ModelSource(Storage storage, String uri, ModelConfig config, Kind kind) {
        this.storage = storage;
        this.uri = uri;
        this.config = config;
        this.kind = kind;
    }

    /** A dense Hugging Face checkpoint. */
    public static ModelSource dense(Storage storage, String uri) {
        return new ModelSource(storage, uri, ModelConfig.load(storage, uri), Kind.DENSE);
    }

    /** A GGUF file of a llama / mistral / qwen2 / qwen3 model (any ggml type), served dequantized. */
    public static ModelSource gguf(Storage storage, String uri) {
        try (GgufModel m = GgufModel.open(storage, uri)) {
            return new ModelSource(storage, uri, m.config(), Kind.GGUF);
        }
    }

    /**
     * A GGUF file when {@code uri} is not a directory; else a GPTQ checkpoint when the directory has a quantization
     * config, else a dense checkpoint.
     */
    public static ModelSource of(Storage storage, String uri) {
        if (!storage.isDirectory(uri)) {
            return gguf(storage, uri);
        }
        ModelConfig config = ModelConfig.load(storage, uri);
        boolean gptq = storage.exists(Storage.resolve(uri, "quantize_config.json"))
                || storage.readString(Storage.resolve(uri, "config.json")).contains("\"quantization_config\"");
        return new ModelSource(storage, uri, config, gptq ? Kind.GPTQ : Kind.DENSE);
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

    public Kind kind() {
        return kind;
    }

    /**
     * The model's tokenizer: tokenizer.json of the directory, or the one rebuilt from a GGUF file's vocabulary;
     * {@code addBos} overrides the BOS policy when not null.
     */
    public TextTokenizer tokenizer(Boolean addBos) {
        if (kind != Kind.GGUF) {
            return TextTokenizer.load(storage, uri, addBos);
        }
        try (GgufModel m = GgufModel.open(storage, uri)) {
            return m.tokenizer().open(addBos);
        }
    }

    private String key() {
        return kind + ":" + uri;
    }

    /** A dense or GGUF model on this JVM (opened on first use). */
    public CausalLM open() {
        return switch (kind) {
            case DENSE -> ExecutorCache.model(key(), () -> CausalLM.of(config, ExecutorCache.checkpoint(storage, uri)));
            case GGUF -> ExecutorCache.model(key(), () -> CausalLM.of(config, GgufModel.open(storage, uri).tensors(),
                    true));
            case GPTQ -> throw new IllegalStateException(uri + " is a GPTQ checkpoint: use embedding/layer/head");
        };
    }

    private GptqCheckpoint gptq() {
        return ExecutorCache.model(key(), () -> GptqCheckpoint.open(storage, uri));
    }

    public TokenEmbedding embedding() {
        if (kind != Kind.GPTQ) {
            return open().embedding();
        }
        return ExecutorCache.model(key() + "#embedding", () -> new TokenEmbedding(gptq().store(),
                "model.embed_tokens.weight", config.vocabSize(), config.hiddenSize()));
    }

    public OutputHead head() {
        if (kind != Kind.GPTQ) {
            return open().head();
        }
        return ExecutorCache.model(key() + "#head", () -> new OutputHead(gptq().store(), config));
    }

    /** The weights of one layer, shared by the tasks of this JVM while they work on that layer. */
    public LayerWeights layer(int layer) {
        return ExecutorCache.layer(key() + "#" + layer,
                () -> kind == Kind.GPTQ ? gptq().layerWeights(layer) : open().layerWeights(layer));
    }
}
