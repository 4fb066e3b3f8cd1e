package org.sparkquant.format.gguf;

import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import org.sparkquant.SparkQuantException;

/**
 * What the GGUF recipe needs to know about a model: architecture name (GGUF's general.architecture: "llama",
 * "qwen2", "qwen3", "qwen2moe", "qwen3moe"), hyper-parameters (nExpert: llama.cpp's n_expert, the routed experts
 * of a mixture-of-experts model, 0 for a dense one), and the tensors in GGUF naming with ggml-order shapes.
 */
public record GgufModelDesc(String architecture, int nLayer, int nHead, int nHeadKv, int nEmbd, int nFf, int vocab,
        boolean tiedEmbeddings, List<Shape> tensors, int nExpert) {

    /** A dense model. */
    public GgufModelDesc(String architecture, int nLayer, int nHead, int nHeadKv, int nEmbd, int nFf, int vocab,
            boolean tiedEmbeddings, List<Shape> tensors) {
        this(architecture, nLayer, nHead, nHeadKv, nEmbd, nFf, vocab, tiedEmbeddings, tensors, 0);
    }

    /** A tensor's GGUF name and ggml-order shape (ne[0] = row length). */
    public record Shape(String name, long[] ne) {
        public Shape {
            Objects.requireNonNull(name);
            ne = ne.clone();
        }

        @Override
        public long[] ne() {
            return ne.clone();
        }

        public int nDims() {
            return ne.length;
        }

        public long ne0() {
            return ne[0];
        }
    }

    public GgufModelDesc {
        Objects.requireNonNull(architecture);
        tensors = List.copyOf(tensors);
        if (nLayer < 1 || nHead < 1 || nHeadKv < 1 || nEmbd < 1 || nFf < 1 || vocab < 1 || nExpert < 0) {
            throw SparkQuantException.badInput("model description has a non-positive size: layers " + nLayer
                    + ", heads " + nHead + "/" + nHeadKv + ", hidden " + nEmbd + ", ffn " + nFf + ", vocab " + vocab
                    + ", experts " + nExpert);
        }
    }

    /** Query heads per KV head, as llama.cpp's n_gqa() (integer division). */
    public int nGqa() {
        return nHead / nHeadKv;
    }

    /**
     * The tensors convert_hf_to_gguf writes for a dense llama / mistral ("llama"), qwen2 (adds q/k/v biases) or
     * qwen3 (adds per-head q/k norms) model; {@code ropeFreqs} adds Llama-3's generated rope_freqs.weight.
     */
    public static GgufModelDesc standard(String architecture, int nLayer, int nHead, int nHeadKv, int nEmbd, int nFf,
            int vocab, boolean tiedEmbeddings, int headDim, boolean ropeFreqs) {
        if (!GgufNames.SUPPORTED_ARCHITECTURES.contains(architecture)) {
            throw SparkQuantException.badInput("GGUF architecture '" + architecture + "' is not supported; expected "
                    + GgufNames.SUPPORTED_ARCHITECTURES);
        }
        List<Shape> t = new ArrayList<>();
        t.add(new Shape("token_embd.weight", new long[] {nEmbd, vocab}));
        t.add(new Shape("output_norm.weight", new long[] {nEmbd}));
        if (!tiedEmbeddings) {
            t.add(new Shape("output.weight", new long[] {nEmbd, vocab}));
        }
        if (ropeFreqs) {
            t.add(new Shape("rope_freqs.weight", new long[] {headDim / 2}));
        }
        long q = (long) nHead * headDim;
        long kv = (long) nHeadKv * headDim;
        for (int i = 0; i < nLayer; i++) {
            String p = "blk." + i + ".";
            t.add(new Shape(p + "attn_norm.weight", new long[] {nEmbd}));
            t.add(new Shape(p + "attn_q.weight", new long[] {nEmbd, q}));
            t.add(new Shape(p + "attn_k.weight", new long[] {nEmbd, kv}));
            t.add(new Shape(p + "attn_v.weight", new long[] {nEmbd, kv}));
            t.add(new Shape(p + "attn_output.weight", new long[] {q, nEmbd}));
            t.add(new Shape(p + "ffn_norm.weight", new long[] {nEmbd}));
            t.add(new Shape(p + "ffn_gate.weight", new long[] {nEmbd, nFf}));
            t.add(new Shape(p + "ffn_up.weight", new long[] {nEmbd, nFf}));
            t.add(new Shape(p + "ffn_down.weight", new long[] {nFf, nEmbd}));
            if (architecture.equals("qwen2")) {
                t.add(new Shape(p + "attn_q.bias", new long[] {q}));
                t.add(new Shape(p + "attn_k.bias", new long[] {kv}));
                t.add(new Shape(p + "attn_v.bias", new long[] {kv}));
            } else if (architecture.equals("qwen3")) {
                t.add(new Shape(p + "attn_q_norm.weight", new long[] {headDim}));
                t.add(new Shape(p + "attn_k_norm.weight", new long[] {headDim}));
            }
        }
        return new GgufModelDesc(architecture, nLayer, nHead, nHeadKv, nEmbd, nFf, vocab, tiedEmbeddings, t);
    }
}
