package org.sparkquant.nn;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.function.IntFunction;

import org.nd4j.linalg.api.ndarray.INDArray;
import org.sparkquant.model.ModelConfig;

/**
 * Local (single-process) perplexity with the GPTQ paper's protocol: every window of tokens predicts its tokens
 * {@code 1 .. length-1}, and {@code ppl = exp(total NLL / predicted tokens)}. The model streams layer by layer over all
 * windows: only one layer's weights and the hidden states of the windows are held, and the windows go through each
 * layer in micro-batches of at most {@code tokensPerBatch} tokens, which bounds the scratch memory. A Spark job runs
 * one evaluator per partition and adds the {@link Perplexity} results.
 */
public final class PerplexityEvaluator {
    public static final int DEFAULT_TOKENS_PER_BATCH = 2048;

    private final ModelConfig config;
    private final TokenEmbedding embedding;
    private final IntFunction<LayerWeights> layers;
    private final OutputHead head;
    private final int tokensPerBatch;

    public PerplexityEvaluator(CausalLM model) {
        this(model, DEFAULT_TOKENS_PER_BATCH);
    }

    public PerplexityEvaluator(CausalLM model, int tokensPerBatch) {
        this(model.config(), model.embedding(), model::layerWeights, model.head(), tokensPerBatch);
    }

    /**
     * With the decoder layers from anywhere, e.g. dequantizing views of a quantized checkpoint's modules. Each layer
     * is asked for once per evaluation and closed after use.
     */
    public PerplexityEvaluator(ModelConfig config, TokenEmbedding embedding, IntFunction<LayerWeights> layers,
            OutputHead head, int tokensPerBatch) {
        if (tokensPerBatch <= 0) {
            throw new IllegalArgumentException("tokensPerBatch must be positive");
        }
        this.config = config;
        this.embedding = embedding;
        this.layers = layers;
        this.head = head;
        this.tokensPerBatch = tokensPerBatch;
    }

    /**
     * The GPTQ evaluation windows of a token stream: {@code tokens[i·seqLen .. (i+1)·seqLen)} for
     * {@code i < tokens.length / seqLen} (a trailing partial window is dropped), at most {@code maxWindows} of them
     * ({@code maxWindows <= 0}: all).
     */
    public static List<int[]> windows(int[] tokens, int seqLen, int maxWindows) {
        if (seqLen < 2) {
            throw new IllegalArgumentException("seq-len must be at least 2, got " + seqLen);
        }
        int n = tokens.length / seqLen;
        if (maxWindows > 0) {
            n = Math.min(n, maxWindows);
        }
        List<int[]> out = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            out.add(Arrays.copyOfRange(tokens, i * seqLen, (i + 1) * seqLen));
        }
        return out;
    }

    public Perplexity evaluate(List<int[]> windows) {
        if (windows.isEmpty()) {
            return Perplexity.ZERO;
        }
        for (int[] w : windows) {
            if (w.length < 2) {
                throw new IllegalArgumentException("a window needs at least 2 tokens, got " + w.length);
            }
        }
        List<List<int[]>> groups = group(windows);
        List<INDArray> hidden = new ArrayList<>();
        List<SequenceBatch> batches = new ArrayList<>();
        List<int[]> targets = new ArrayList<>();
        for (List<int[]> g : groups) {
            hidden.add(embedding.lookup(g));
            batches.add(SequenceBatch.of(g));
            targets.add(targets(g));
        }
        try (DecoderLayer layer = new DecoderLayer(config)) {
            for (int i = 0; i < config.numLayers(); i++) {
                try (LayerWeights weights = layers.apply(i)) {
                    for (int b = 0; b < hidden.size(); b++) {
                        layer.forward(hidden.get(b), batches.get(b), weights, LayerHooks.NONE);
                    }
                }
            }
        }
        double nll = 0;
        long count = 0;
        for (double[] values : head.nll(hidden, targets)) {
            for (double v : values) {
                if (!Double.isNaN(v)) {
                    nll += v;
                    count++;
                }
            }
        }
        for (INDArray h : hidden) {
            h.close();
        }
        return new Perplexity(nll, count);
    }

    private List<List<int[]>> group(List<int[]> windows) {
        List<List<int[]>> groups = new ArrayList<>();
        List<int[]> current = new ArrayList<>();
        int tokens = 0;
        for (int[] w : windows) {
            if (!current.isEmpty() && tokens + w.length > tokensPerBatch) {
                groups.add(current);
                current = new ArrayList<>();
                tokens = 0;
            }
            current.add(w);
            tokens += w.length;
        }
        groups.add(current);
        return groups;
    }

    /** Row r predicts the next token of its window; the last row of each window predicts nothing (-1). */
    private static int[] targets(List<int[]> windows) {
        int n = windows.stream().mapToInt(w -> w.length).sum();
        int[] t = new int[n];
        int o = 0;
        for (int[] w : windows) {
            for (int p = 0; p < w.length; p++) {
                t[o + p] = p + 1 < w.length ? w[p + 1] : -1;
            }
            o += w.length;
        }
        return t;
    }
}
