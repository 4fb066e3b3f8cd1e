package org.sparkquant.format.gptq;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

import org.sparkquant.io.DType;
import org.sparkquant.io.Half;
import org.sparkquant.io.ShardedSafetensorsWriter;
import org.sparkquant.io.Storage;
import org.sparkquant.io.TensorSpec;
import org.sparkquant.model.LinearModule;
import org.sparkquant.model.ModelConfig;
import org.sparkquant.model.ModelInventory;

/** Tiny source checkpoints and a plain round-to-nearest quantizer, for the writer and reader tests. */
final class GptqTestModels {
    private GptqTestModels() {}

    /** A llama-family config.json. */
    static String config(String type, int hidden, int ffn, int layers, int heads, int kvHeads, int vocab, boolean tied,
            String dtype) {
        return """
                {
                  "architectures": ["LlamaForCausalLM"],
                  "model_type": "%s",
                  "hidden_size": %d,
                  "intermediate_size": %d,
                  "num_hidden_layers": %d,
                  "num_attention_heads": %d,
                  "num_key_value_heads": %d,
                  "vocab_size": %d,
                  "max_position_embeddings": 256,
                  "rms_norm_eps": 1e-05,
                  "rope_theta": 10000.0,
                  "hidden_act": "silu",
                  "tie_word_embeddings": %s,
                  "torch_dtype": "%s",
                  "bos_token_id": 1,
                  "eos_token_id": 2,
                  "custom_key": {"kept": [1, 2, 3]}
                }
                """.formatted(type, hidden, ffn, layers, heads, kvHeads, vocab, tied, dtype);
    }

    /**
     * Writes config.json, random tensors of {@code dtype} (plus an extra {@code rotary_emb.inv_freq} the inventory
     * does not know), and small tokenizer / generation files. Returns the inventory's config.
     */
    static ModelConfig write(Storage storage, String dir, String configJson, DType dtype, long seed) {
        ModelConfig config = ModelConfig.parse(configJson, "test config");
        ModelInventory inventory = ModelInventory.of(config);
        storage.mkdirs(dir);
        storage.writeString(Storage.resolve(dir, "config.json"), configJson);
        storage.writeString(Storage.resolve(dir, "tokenizer.json"), "{\"version\": \"1.0\", \"model\": {}}");
        storage.writeString(Storage.resolve(dir, "tokenizer_config.json"), "{\"add_bos_token\": true}");
        storage.writeString(Storage.resolve(dir, "special_tokens_map.json"), "{\"bos_token\": \"<s>\"}");
        storage.writeString(Storage.resolve(dir, "generation_config.json"), "{\"bos_token_id\": 1}");
        storage.writeString(Storage.resolve(dir, "tokenizer.model"), "\u0001binary-ish sentencepiece\u0002");
        List<TensorSpec> specs = new ArrayList<>();
        for (String name : inventory.requiredTensors()) {
            specs.add(new TensorSpec(name, dtype, shape(config, inventory, name)));
        }
        specs.add(new TensorSpec("model.layers.0.self_attn.rotary_emb.inv_freq", DType.F32,
                new long[] {config.headDim() / 2}));
        SplittableRandom random = new SplittableRandom(seed);
        try (ShardedSafetensorsWriter w = ShardedSafetensorsWriter.create(storage, dir, specs, 1L << 40,
                Map.of("format", "pt"))) {
            for (TensorSpec s : specs) {
                int n = (int) s.elements();
                ByteBuffer b = ByteBuffer.allocate(n * s.dtype().size()).order(ByteOrder.LITTLE_ENDIAN);
                for (int i = 0; i < n; i++) {
                    float v = (float) (s.shape().length == 1 ? 1 + 0.1 * random.nextGaussian() : 0.05 * random.nextGaussian());
                    switch (s.dtype()) {
                        case F32 -> b.putFloat(v);
                        case F16 -> b.putShort(Half.fromFloat(v));
                        case BF16 -> b.putShort(Half.floatToBf16(v));
                        default -> throw new IllegalArgumentException();
                    }
                }
                w.write(s.name(), b.array());
            }
        }
        return config;
    }

    private static long[] shape(ModelConfig c, ModelInventory inv, String name) {
        for (List<LinearModule> layer : inv.layers()) {
            for (LinearModule m : layer) {
                if (m.weight().equals(name)) {
                    return new long[] {m.outFeatures(), m.inFeatures()};
                }
                if (m.biasName().equals(name)) {
                    return new long[] {m.outFeatures()};
                }
            }
        }
        if (name.endsWith("embed_tokens.weight") || name.equals("lm_head.weight")) {
            return new long[] {c.vocabSize(), c.hiddenSize()};
        }
        if (name.endsWith("q_norm.weight") || name.endsWith("k_norm.weight")) {
            return new long[] {c.headDim()};
        }
        return new long[] {c.hiddenSize()};
    }

    /**
     * Round-to-nearest GPTQ-style quantization of a dense weight [out][in] (min/max per row and group, the
     * AutoGPTQ quantizer's parameters), with an optional act-order permutation that makes g_idx non-monotone.
     */
    static QuantizedLinear rtn(String name, float[] w, int in, int out, int bits, int groupSize, boolean sym,
            int[] perm, float[] bias) {
        int maxq = (1 << bits) - 1;
        int width = groupSize == -1 ? in : groupSize;
        int groups = QuantizedLinear.groups(in, groupSize);
        int[] gIdx = new int[in];
        for (int j = 0; j < in; j++) {
            int column = perm == null ? j : perm[j];
            gIdx[column] = j / width; // column perm[j] is the j-th quantized: its group is j / width
        }
        int[] codes = new int[in * out];
        float[] scales = new float[groups * out];
        int[] zeros = new int[groups * out];
        for (int n = 0; n < out; n++) {
            for (int g = 0; g < groups; g++) {
                float lo = 0;
                float hi = 0;
                for (int k = 0; k < in; k++) {
                    if (gIdx[k] == g) {
                        lo = Math.min(lo, w[n * in + k]);
                        hi = Math.max(hi, w[n * in + k]);
                    }
                }
                if (sym) {
                    hi = Math.max(-lo, hi);
                    lo = lo < 0 ? -hi : lo;
                }
                if (lo == hi) {
                    lo = -1;
                    hi = 1;
                }
                float scale = Half.round((hi - lo) / maxq);
                int zero = sym ? (maxq + 1) / 2 : Math.round(-lo / scale);
                scales[g * out + n] = scale;
                zeros[g * out + n] = Math.max(0, Math.min(maxq, zero));
            }
            for (int k = 0; k < in; k++) {
                int at = gIdx[k] * out + n;
                int q = (int) Math.rint(w[n * in + k] / scales[at]) + zeros[at];
                codes[n * in + k] = Math.max(0, Math.min(maxq, q));
            }
        }
        return QuantizedLinear.builder(name, bits, groupSize, sym, in, out).gIdx(gIdx).bias(bias)
                .all(codes, scales, zeros).build();
    }

    static int[] randomPermutation(int n, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        int[] p = new int[n];
        for (int i = 0; i < n; i++) {
            p[i] = i;
        }
        for (int i = n - 1; i > 0; i--) {
            int j = r.nextInt(i + 1);
            int t = p[i];
            p[i] = p[j];
            p[j] = t;
        }
        return p;
    }
}
