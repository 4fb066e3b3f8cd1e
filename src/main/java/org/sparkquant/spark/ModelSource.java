package org.sparkquant.spark;

import java.io.Serializable;

import org.sparkquant.format.gptq.GptqCheckpoint;
import org.sparkquant.io.Storage;
import org.sparkquant.model.ModelConfig;
import org.sparkquant.nn.CausalLM;
import org.sparkquant.nn.LayerWeights;
import org.sparkquant.nn.OutputHead;
import org.sparkquant.nn.TokenEmbedding;

/**
 * Where executors get a model from: a dense Hugging Face checkpoint or a GPTQ checkpoint (dequantized layer by
 * layer). Serializable as a URI plus storage settings; each executor opens the model once ({@link ExecutorCache}) and
 * reads one layer at a time with positional reads.
 */
public final class ModelSource implements Serializable {
    private static final long serialVersionUID = 1L;

    public enum Kind { DENSE, GPTQ }

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

    /** A dense or GPTQ checkpoint, told apart by its quantization config. */
    public static ModelSource detect(Storage storage, String uri) {
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

    /** The dense model on this JVM (opened on first use). */
    public CausalLM open() {
        if (kind != Kind.DENSE) {
            throw new IllegalStateException(uri + " is not a dense checkpoint");
        }
        return ExecutorCache.model("dense:" + uri, () -> CausalLM.of(config, ExecutorCache.checkpoint(storage, uri)));
    }

    private GptqCheckpoint gptq() {
        return ExecutorCache.model("gptq:" + uri, () -> GptqCheckpoint.open(storage, uri));
    }

    public TokenEmbedding embedding() {
        if (kind == Kind.DENSE) {
            return open().embedding();
        }
        return ExecutorCache.model("gptq-embedding:" + uri, () -> new TokenEmbedding(gptq().store(),
                "model.embed_tokens.weight", config.vocabSize(), config.hiddenSize()));
    }

    public OutputHead head() {
        if (kind == Kind.DENSE) {
            return open().head();
        }
        return ExecutorCache.model("gptq-head:" + uri, () -> new OutputHead(gptq().store(), config));
    }

    /** The weights of one layer, shared by the tasks of this JVM while they work on that layer. */
    public LayerWeights layer(int layer) {
        return ExecutorCache.layer(kind + ":" + uri + "#" + layer,
                () -> kind == Kind.DENSE ? open().layerWeights(layer) : gptq().layerWeights(layer));
    }
}
