package org.sparkquant.format.gguf;

import java.nio.ByteBuffer;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import org.sparkquant.SparkQuantException;
import org.sparkquant.io.Storage;
import org.sparkquant.io.TensorReader;
import org.sparkquant.model.ModelConfig;
import org.sparkquant.model.ModelInventory;
import org.sparkquant.model.RopeConfig;

/**
 * A GGUF file of a dense llama / mistral / qwen2 / qwen3 model seen as a Hugging Face model: the {@link ModelConfig}
 * its metadata describes, and a {@link TensorReader} that serves every tensor under its Hugging Face name —
 * dequantized from any ggml type, with the q/k row permutation of llama files undone — so the forward pass
 * ({@code nn.CausalLM}) runs on it unchanged. Rows are read and dequantized on demand (one positional read per row
 * range), so opening costs the header only.
 *
 * <p>The config: hidden, intermediate, layers, heads from {@code <arch>.*}; head_dim from attention.key_length;
 * vocabulary from token_embd; tied embeddings when there is no output.weight; biases and q/k norms from the tensors
 * present; RoPE base from rope.freq_base, linear scaling from rope.scaling.*, Llama 3 scaling from
 * {@code rope_freqs.weight} (as per-frequency factors, which is how llama.cpp applies it).
 */
public final class GgufModel implements AutoCloseable {
    private final GgufReader reader;
    private final String architecture;
    private final ModelConfig config;
    private final Map<String, String> ggufOf;
    private final Map<String, Integer> permuteHeads;

    private GgufModel(GgufReader reader) {
        this.reader = reader;
        this.architecture = string("general.architecture");
        if (!GgufNames.SUPPORTED_ARCHITECTURES.contains(architecture)) {
            throw bad("architecture '" + architecture + "' is not supported (" + GgufNames.SUPPORTED_ARCHITECTURES + ")");
        }
        this.config = buildConfig();
        Map<String, String> names = new TreeMap<>();
        Map<String, Integer> heads = new LinkedHashMap<>();
        for (String hf : ModelInventory.of(config).requiredTensors()) {
            String g = GgufNames.ggufName(architecture, hf).orElseThrow();
            if (hf.equals("lm_head.weight") && config.tieWordEmbeddings()) {
                continue;
            }
            reader.tensor(g); // names the missing tensor
            names.put(hf, g);
            int h = GgufNames.ropePermutationHeads(architecture, hf, config.numHeads(), config.numKvHeads());
            if (h > 0) {
                heads.put(hf, h);
            }
        }
        this.ggufOf = Collections.unmodifiableMap(names);
        this.permuteHeads = heads;
    }

    /** Opens a GGUF file on any {@link Storage} URI. */
    public static GgufModel open(Storage storage, String uri) {
        GgufReader r = GgufReader.open(storage, uri);
        try {
            return new GgufModel(r);
        } catch (RuntimeException e) {
            r.close();
            throw e;
        }
    }

    /** Over an open reader, which the model then owns. */
    public static GgufModel of(GgufReader reader) {
        return new GgufModel(reader);
    }

    public GgufReader reader() {
        return reader;
    }

    /** general.architecture. */
    public String architecture() {
        return architecture;
    }

    public ModelConfig config() {
        return config;
    }

    /** The GGUF tensor holding a Hugging Face tensor. */
    public String ggufName(String hfName) {
        String g = ggufOf.get(hfName);
        if (g == null) {
            throw bad("no tensor for " + hfName);
        }
        return g;
    }

    /** The file type of general.file_type, or null when absent or unknown. */
    public LlamaFileType fileType() {
        GgufValue v = reader.get("general.file_type");
        return v == null || !v.isInteger() ? null : LlamaFileType.fromIdOrNull(v.asLong());
    }

    /**
     * The tensors under their Hugging Face names, dequantized to float on read. Closing the view closes this model
     * (and its file).
     */
    public TensorReader tensors() {
        return new HfView();
    }

    /** A Hugging Face tokenizer rebuilt from the GGUF vocabulary ({@link GgufTokenizerJson}). */
    public GgufTokenizerJson tokenizer() {
        return GgufTokenizerJson.of(reader);
    }

    @Override
    public void close() {
        reader.close();
    }

    // ------------------------------------------------------------------------------------------------ config

    private ModelConfig buildConfig() {
        String a = architecture + ".";
        int hidden = u32(a + "embedding_length");
        int heads = u32(a + "attention.head_count");
        int kvHeads = has(a + "attention.head_count_kv") ? u32(a + "attention.head_count_kv") : heads;
        int headDim = has(a + "attention.key_length") ? u32(a + "attention.key_length") : hidden / heads;
        if (has(a + "attention.value_length") && u32(a + "attention.value_length") != headDim) {
            throw bad("attention.value_length differs from key_length; not supported");
        }
        if (has(a + "rope.dimension_count") && u32(a + "rope.dimension_count") != headDim) {
            throw bad("partial rotary embeddings (rope.dimension_count " + u32(a + "rope.dimension_count")
                    + " < head dim " + headDim + ") are not supported");
        }
        GgufTensorInfo embd = reader.tensor("token_embd.weight");
        if (embd.ne().length != 2 || embd.ne()[0] != hidden) {
            throw bad("token_embd.weight has shape " + GgufPlan.shape(embd.ne()) + ", expected [" + hidden + ", vocab]");
        }
        int vocab = Math.toIntExact(embd.ne()[1]);
        double theta = has(a + "rope.freq_base") ? reader.get(a + "rope.freq_base").asDouble() : 10000.0;
        RopeConfig rope = RopeConfig.plain(theta);
        if (has(a + "rope.scaling.type")) {
            String type = string(a + "rope.scaling.type");
            switch (type) {
                case "none" -> {
                }
                case "linear" -> rope = new RopeConfig("linear", theta,
                        reader.get(a + "rope.scaling.factor").asDouble(), 0, 0, 0);
                default -> throw bad("RoPE scaling '" + type + "' is not supported (none, linear, llama3 rope_freqs)");
            }
        }
        if (hasTensor("rope_freqs.weight")) {
            if (!rope.type().equals("default")) {
                throw bad("both rope.scaling.type and rope_freqs.weight; not supported");
            }
            float[] factors = reader.readFloats("rope_freqs.weight");
            if (factors.length != headDim / 2) {
                throw bad("rope_freqs.weight has " + factors.length + " values, expected " + headDim / 2);
            }
            rope = RopeConfig.withFactors(theta, factors);
        }
        boolean qwen2 = architecture.equals("qwen2");
        boolean attnBias = hasTensor("blk.0.attn_q.bias");
        if (qwen2 && !attnBias) {
            throw bad("qwen2 without q/k/v biases (blk.0.attn_q.bias) is not supported");
        }
        boolean outBias = hasTensor("blk.0.attn_output.bias");
        boolean mlpBias = hasTensor("blk.0.ffn_up.bias");
        boolean qkNorm = hasTensor("blk.0.attn_q_norm.weight");
        if (qkNorm != architecture.equals("qwen3")) {
            throw bad("q/k norms (attn_q_norm) are expected for qwen3 only");
        }
        double eps = reader.get(a + "attention.layer_norm_rms_epsilon") == null ? 1e-5
                : reader.get(a + "attention.layer_norm_rms_epsilon").asDouble();
        int context = has(a + "context_length") ? u32(a + "context_length") : 2048;
        int bos = has("tokenizer.ggml.bos_token_id") ? u32("tokenizer.ggml.bos_token_id") : -1;
        int eos = has("tokenizer.ggml.eos_token_id") ? u32("tokenizer.ggml.eos_token_id") : -1;
        String modelType = architecture; // llama (incl. mistral), qwen2, qwen3
        return new ModelConfig(modelType, hidden, u32(a + "feed_forward_length"), u32(a + "block_count"), heads,
                kvHeads, headDim, vocab, eps, rope, !hasTensor("output.weight"), attnBias, outBias, mlpBias, qkNorm, 0,
                context, bos, eos, "float32");
    }

    private boolean has(String key) {
        return reader.get(key) != null;
    }

    private boolean hasTensor(String name) {
        return reader.tensors().stream().anyMatch(t -> t.name().equals(name));
    }

    private int u32(String key) {
        GgufValue v = reader.get(key);
        if (v == null) {
            throw bad("missing metadata key " + key);
        }
        if (!v.isInteger() || v.asLong() < 0 || v.asLong() > Integer.MAX_VALUE) {
            throw bad("metadata key " + key + " is not a small non-negative integer: " + v);
        }
        return (int) v.asLong();
    }

    private String string(String key) {
        GgufValue v = reader.get(key);
        if (v == null || v.type() != GgufValueType.STRING) {
            throw bad("missing string metadata key " + key);
        }
        return v.asString();
    }

    private SparkQuantException bad(String problem) {
        return SparkQuantException.badInput(reader.file() + ": " + problem);
    }

    // ------------------------------------------------------------------------------------------------ HF view

    /** Dequantizing reads under Hugging Face names. */
    private final class HfView implements TensorReader {
        @Override
        public String source() {
            return reader.file();
        }

        @Override
        public Set<String> names() {
            return ggufOf.keySet();
        }

        @Override
        public boolean contains(String tensor) {
            return ggufOf.containsKey(tensor);
        }

        @Override
        public long[] shape(String tensor) {
            long[] ne = info(tensor).ne();
            long[] shape = new long[ne.length];
            for (int i = 0; i < ne.length; i++) {
                shape[i] = ne[ne.length - 1 - i];
            }
            return shape;
        }

        private GgufTensorInfo info(String tensor) {
            return reader.tensor(ggufName(tensor));
        }

        @Override
        public float[] readFloats(String tensor) {
            GgufTensorInfo t = info(tensor);
            if (t.ne().length >= 2) {
                return readRows(tensor, 0, t.tensor().rows());
            }
            float[] v = reader.readFloats(t.name());
            Integer heads = permuteHeads.get(tensor);
            if (heads == null) {
                return v;
            }
            float[] out = new float[v.length];
            for (int h = 0; h < v.length; h++) {
                out[h] = v[GgufNames.permutedDestRow(h, v.length, heads)];
            }
            return out;
        }

        @Override
        public float[] readRows(String tensor, long r0, long r1) {
            GgufTensorInfo t = info(tensor);
            long rows = t.tensor().rows();
            if (t.ne().length != 2 || r0 < 0 || r1 < r0 || r1 > rows) {
                throw bad("rows [" + r0 + ", " + r1 + ") outside tensor " + t.name() + " " + GgufPlan.shape(t.ne()));
            }
            int len = Math.toIntExact(t.ne()[0]);
            Integer heads = permuteHeads.get(tensor);
            if (heads == null) {
                return dequantize(t, r0, r1, len);
            }
            // rows are permuted within heads: read the whole heads covering [r0, r1) and pick
            int per = (int) (rows / heads);
            long g0 = r0 / per * per;
            long g1 = (r1 + per - 1) / per * per;
            float[] block = dequantize(t, g0, g1, len);
            float[] out = new float[Math.toIntExact((r1 - r0) * len)];
            for (long h = r0; h < r1; h++) {
                int g = GgufNames.permutedDestRow((int) h, (int) rows, heads);
                System.arraycopy(block, (int) ((g - g0) * len), out, (int) ((h - r0) * len), len);
            }
            return out;
        }

        private float[] dequantize(GgufTensorInfo t, long r0, long r1, int len) {
            long rowBytes = t.type().rowBytes(len);
            long bytes = (r1 - r0) * rowBytes;
            if ((r1 - r0) * len > Integer.MAX_VALUE - 16 || bytes > Integer.MAX_VALUE - 16) {
                throw bad("rows [" + r0 + ", " + r1 + ") of " + t.name() + " are too many to read at once");
            }
            byte[] raw = new byte[(int) bytes];
            reader.read(t, r0 * rowBytes, ByteBuffer.wrap(raw));
            float[] out = new float[(int) ((r1 - r0) * len)];
            GgmlQuant.dequantize(t.type(), raw, 0, out, 0, out.length);
            return out;
        }

        @Override
        public void close() {
            GgufModel.this.close();
        }

        @Override
        public String toString() {
            return "GGUF " + reader.file() + " as " + List.of(architecture, config.numLayers() + " layers");
        }
    }
}
