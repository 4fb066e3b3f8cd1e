package org.sparkquant.format.gguf;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Objects;
import java.util.regex.Pattern;

/**
 * The per-tensor type choice of llama-quantize ({@code llama_tensor_get_type} and its helpers in llama.cpp's
 * src/llama-quant.cpp) for dense llama-family models, re-implemented from the source:
 * <ul>
 *   <li>only tensors with ≥ 2 dimensions whose name ends in "weight" are quantized (not *_norm.weight,
 *       ffn_gate_inp, position/token-type embeddings, …); the rest stay F32;</li>
 *   <li>output.weight — and token_embd.weight when the embeddings are tied (no output.weight) — becomes Q6_K, or
 *       Q8_0 when its rows do not fit the default type's blocks or the file type is Q8_0;</li>
 *   <li>attn_v: Q2_K → Q4_K (GQA ≥ 4) or Q3_K; Q2_K_S → Q4_K with GQA ≥ 4; Q3_K_M → Q5_K in the first two layers,
 *       else Q4_K; Q3_K_L → Q5_K; Q4_K_M/Q5_K_M → Q6_K on use_more_bits layers; Q4_K_S → Q5_K in layers 0–3; on a
 *       70B llama (80 layers, GQA) Q3_K/Q4_K → Q5_K;</li>
 *   <li>ffn_down: Q2_K → Q3_K; Q2_K_S → Q4_K for the first n/8 layers; Q3_K_M → Q5_K for the first n/16, else
 *       Q4_K; Q3_K_L → Q5_K; Q4_K_M/Q5_K_M → Q6_K on use_more_bits layers; Q4_K_S → Q5_K for the first n/8; with an
 *       imatrix Q4_0/Q5_0 → Q4_1/Q5_1 for the first n/8;</li>
 *   <li>attn_output: Q2_K → Q3_K, Q3_K_M → Q4_K, Q3_K_L → Q5_K;</li>
 *   <li>rows not divisible by the block size fall back: Q2_K/Q3_K → Q4_0, Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0, and
 *       to F16 when even that does not fit (also for the 32-element types; the newest llama.cpp source throws there
 *       instead, the released build our fixtures come from uses F16).</li>
 * </ul>
 * Layer counters follow llama.cpp: tensors are visited in llama_model_loader order (layer number, then name), and
 * a counter only advances when the rules ran for that tensor.
 *
 * <p>Mixture-of-experts models (n_expert &gt; 1): the stacked 3-D expert tensors are quantized like 2-D ones (every
 * row of every expert in the same type); the routers {@code ffn_gate_inp} stay F32 (Qwen2-MoE's 2-D
 * {@code ffn_gate_inp_shexp} {n_embd, 1} is a weight like any other to llama-quantize, so it is quantized, while the
 * converter keeps it F32 in its F32/F16/BF16 outputs); the ffn_down rules take the layer from the tensor's name
 * (the counter would advance once per expert tensor and shared expert); and models with exactly 8 experts (Mixtral)
 * get attn_v and attn_k in Q8_0 and attn_output in Q5_K for Q2_K, Q3_K_S, Q3_K_M, Q4_K_S and Q4_K_M, instead of
 * the dense rules for attn_output.
 */
public final class GgufRecipe {
    private GgufRecipe() {}

    /** Overrides as llama-quantize's flags: --imatrix (present or not), --pure, --output-tensor-type, … */
    public record Options(boolean imatrix, boolean pure, GgmlType outputTensorType, GgmlType tokenEmbeddingType,
            List<TypeOverride> overrides) {
        public static final Options DEFAULT = new Options(false, false, null, null, List.of());

        public Options {
            overrides = List.copyOf(overrides);
        }

        public Options withImatrix(boolean value) {
            return new Options(value, pure, outputTensorType, tokenEmbeddingType, overrides);
        }
    }

    /** --tensor-type REGEX=TYPE: the first pattern found in a tensor's name decides its type. */
    public record TypeOverride(Pattern pattern, GgmlType type) {
        public TypeOverride {
            Objects.requireNonNull(pattern);
            Objects.requireNonNull(type);
        }
    }

    enum Category { TOKEN_EMBD, ATTENTION_Q, ATTENTION_V, ATTENTION_K, ATTENTION_QKV, ATTENTION_KV_B,
        ATTENTION_OUTPUT, FFN_UP, FFN_GATE, FFN_DOWN, OUTPUT, OTHER }

    /** llama_model_loader's weight_name_comparer: block number (-1 outside blocks), then name. */
    public static final Comparator<String> LLAMA_ORDER = Comparator.comparingInt(GgufRecipe::layerOf)
            .thenComparing(Comparator.naturalOrder());

    static int layerOf(String name) {
        if (!name.startsWith("blk.")) {
            return -1;
        }
        int end = 4;
        while (end < name.length() && Character.isDigit(name.charAt(end))) {
            end++;
        }
        if (end == 4 || end >= name.length() || name.charAt(end) != '.') {
            return -1;
        }
        try {
            return Integer.parseInt(name.substring(4, end));
        } catch (NumberFormatException e) {
            return -1;
        }
    }

    /** The model's tensors, sorted as llama.cpp visits them, with the chosen types. */
    public static List<GgufTensor> plan(GgufModelDesc model, LlamaFileType ftype) {
        return plan(model, ftype, Options.DEFAULT);
    }

    public static List<GgufTensor> plan(GgufModelDesc model, LlamaFileType ftype, Options options) {
        List<GgufModelDesc.Shape> sorted = new ArrayList<>(model.tensors());
        sorted.sort(Comparator.comparing(GgufModelDesc.Shape::name, LLAMA_ORDER));
        State st = new State(model, ftype, options);
        for (GgufModelDesc.Shape s : sorted) {
            Category c = category(s.name());
            if (c == Category.ATTENTION_V || c == Category.ATTENTION_QKV || c == Category.ATTENTION_KV_B) {
                st.nAttentionWv++;
            }
            if (c == Category.OUTPUT) {
                st.tiedEmbeddings = false;
            }
        }
        st.nFfnDown = model.nLayer();
        List<GgufTensor> out = new ArrayList<>(sorted.size());
        boolean requantized = ftype.defaultType().isQuantized();
        for (GgufModelDesc.Shape s : sorted) {
            // llama-quantize writes ggml's dimensions: trailing 1s dropped (a [1, n] weight becomes 1-D, thus F32)
            GgufModelDesc.Shape shape = requantized ? ggmlDims(s) : s;
            out.add(new GgufTensor(shape.name(), shape.ne(), st.typeOf(shape)));
        }
        return out;
    }

    /** A shape without its trailing dimensions of 1 (ggml_n_dims; at least one dimension). */
    static GgufModelDesc.Shape ggmlDims(GgufModelDesc.Shape s) {
        long[] ne = s.ne();
        int n = ne.length;
        while (n > 1 && ne[n - 1] == 1) {
            n--;
        }
        return n == ne.length ? s : new GgufModelDesc.Shape(s.name(), java.util.Arrays.copyOf(ne, n));
    }

    /** Whether llama-quantize would quantize a tensor of this name and rank at all (tensor_allows_quantization). */
    public static boolean allowsQuantization(String name, int nDims) {
        if (nDims < 2 || !name.endsWith("weight")) {
            return false;
        }
        if (name.contains("_norm.weight") || name.contains("ffn_gate_inp.weight")
                || name.contains("ffn_gate_tid2eid.weight") || name.contains("altup") || name.contains("laurel")
                || name.contains("per_layer_model_proj") || name.equals("position_embd.weight")
                || name.equals("token_types.weight") || name.contains("ssm_conv1d")
                || name.contains("shortconv.conv.weight") || name.contains("time_mix_")
                || name.contains("attn_rel_b.weight") || name.contains(".position_embd")
                || name.contains(".patch_embd") || name.contains(".rel_pos")) {
            return false;
        }
        return true;
    }

    static Category category(String name) {
        if (name.equals("output.weight")) {
            return Category.OUTPUT;
        }
        if (name.equals("token_embd.weight") || name.equals("per_layer_token_embd.weight")) {
            return Category.TOKEN_EMBD;
        }
        if (name.contains("attn_qkv.weight")) {
            return Category.ATTENTION_QKV;
        }
        if (name.contains("attn_kv_b.weight")) {
            return Category.ATTENTION_KV_B;
        }
        if (name.contains("attn_v.weight")) {
            return Category.ATTENTION_V;
        }
        if (name.contains("attn_k.weight")) {
            return Category.ATTENTION_K;
        }
        if (name.contains("attn_q.weight")) {
            return Category.ATTENTION_Q;
        }
        if (name.contains("attn_output.weight")) {
            return Category.ATTENTION_OUTPUT;
        }
        if (name.contains("ffn_up")) {
            return Category.FFN_UP;
        }
        if (name.contains("ffn_gate")) {
            return Category.FFN_GATE;
        }
        if (name.contains("ffn_down")) {
            return Category.FFN_DOWN;
        }
        return Category.OTHER;
    }

    static boolean useMoreBits(int i, int n) {
        return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
    }

    /** Mutable counters of one planning pass (quantize_state_impl). */
    private static final class State {
        final GgufModelDesc model;
        final LlamaFileType ftype;
        final Options options;
        final boolean is70B;
        int nAttentionWv;
        int nFfnDown;
        int iAttentionWv;
        int iFfnDown;
        boolean tiedEmbeddings = true;

        State(GgufModelDesc model, LlamaFileType ftype, Options options) {
            this.model = model;
            this.ftype = ftype;
            this.options = options;
            this.is70B = model.architecture().equals("llama") && model.nLayer() == 80
                    && model.nHead() != model.nHeadKv();
        }

        GgmlType typeOf(GgufModelDesc.Shape s) {
            if (!allowsQuantization(s.name(), s.nDims())) {
                return GgmlType.F32;
            }
            Category cat = category(s.name());
            if (options.tokenEmbeddingType() != null && cat == Category.TOKEN_EMBD) {
                return options.tokenEmbeddingType();
            }
            if (options.outputTensorType() != null && cat == Category.OUTPUT) {
                return options.outputTensorType();
            }
            GgmlType type = ftype.defaultType();
            if (!type.isQuantized()) {
                // the converter writes these F32 whatever the output type (llama-quantize would not)
                return s.name().endsWith("ffn_gate_inp_shexp.weight") ? GgmlType.F32 : type;
            }
            boolean manual = false;
            for (TypeOverride o : options.overrides()) {
                if (o.pattern().matcher(s.name()).find()) {
                    type = o.type();
                    manual = true;
                    break;
                }
            }
            if (!manual && !options.pure()) {
                type = rules(type, s, cat);
            }
            return fallback(type, s.ne0());
        }

        private GgmlType rules(GgmlType type, GgufModelDesc.Shape s, Category cat) {
            LlamaFileType f = ftype;
            if (cat == Category.OUTPUT || (tiedEmbeddings && cat == Category.TOKEN_EMBD)) {
                if (options.outputTensorType() != null) {
                    return options.outputTensorType();
                }
                if (s.ne0() % type.blockSize() != 0) {
                    return GgmlType.Q8_0;
                }
                return type != GgmlType.Q8_0 ? GgmlType.Q6_K : type;
            }
            if (cat == Category.TOKEN_EMBD) {
                return options.tokenEmbeddingType() != null ? options.tokenEmbeddingType() : type;
            }
            if (cat == Category.ATTENTION_V || cat == Category.ATTENTION_QKV || cat == Category.ATTENTION_KV_B) {
                int i = iAttentionWv;
                if (f == LlamaFileType.Q2_K) {
                    type = model.nGqa() >= 4 ? GgmlType.Q4_K : GgmlType.Q3_K;
                } else if (f == LlamaFileType.Q2_K_S && model.nGqa() >= 4) {
                    type = GgmlType.Q4_K;
                } else if (f == LlamaFileType.Q3_K_M) {
                    type = i < 2 ? GgmlType.Q5_K : GgmlType.Q4_K;
                } else if (f == LlamaFileType.Q3_K_L) {
                    type = GgmlType.Q5_K;
                } else if ((f == LlamaFileType.Q4_K_M || f == LlamaFileType.Q5_K_M) && useMoreBits(i, nAttentionWv)) {
                    type = GgmlType.Q6_K;
                } else if (f == LlamaFileType.Q4_K_S && i < 4) {
                    type = GgmlType.Q5_K;
                }
                if (is70B && (type == GgmlType.Q3_K || type == GgmlType.Q4_K)) {
                    // 8 heads share each attn_v there, so it is 8× smaller than attn_q: more bits cost little
                    type = GgmlType.Q5_K;
                }
                if (model.nExpert() == 8) {
                    type = GgmlType.Q8_0; // small next to 8 experts' FFNs
                }
                iAttentionWv++;
                return type;
            }
            if (cat == Category.ATTENTION_K) {
                return model.nExpert() == 8 ? GgmlType.Q8_0 : type;
            }
            if (cat == Category.FFN_DOWN) {
                // with experts, the layer comes from the name: a layer holds several ffn_down tensors
                int i = model.nExpert() > 1 ? layerOf(s.name()) : iFfnDown;
                int n = nFfnDown;
                if (f == LlamaFileType.Q2_K) {
                    type = GgmlType.Q3_K;
                } else if (f == LlamaFileType.Q2_K_S) {
                    if (i < n / 8) {
                        type = GgmlType.Q4_K;
                    }
                } else if (f == LlamaFileType.Q3_K_M) {
                    type = i < n / 16 ? GgmlType.Q5_K : GgmlType.Q4_K;
                } else if (f == LlamaFileType.Q3_K_L) {
                    type = GgmlType.Q5_K;
                } else if (f == LlamaFileType.Q4_K_M) {
                    if (useMoreBits(i, n)) {
                        type = GgmlType.Q6_K;
                    }
                } else if (f == LlamaFileType.Q5_K_M && useMoreBits(i, n)) {
                    type = GgmlType.Q6_K;
                } else if (f == LlamaFileType.Q4_K_S && i < n / 8) {
                    type = GgmlType.Q5_K;
                } else if ((f == LlamaFileType.Q4_0 || f == LlamaFileType.Q5_0) && options.imatrix() && i < n / 8) {
                    // Q4_0/Q5_0 can go wrong in the first ffn_down layers even with an imatrix
                    type = f == LlamaFileType.Q4_0 ? GgmlType.Q4_1 : GgmlType.Q5_1;
                }
                iFfnDown++;
                return type;
            }
            if (cat == Category.ATTENTION_OUTPUT && model.nExpert() == 8) {
                if (f == LlamaFileType.Q2_K || f == LlamaFileType.Q3_K_S || f == LlamaFileType.Q3_K_M
                        || f == LlamaFileType.Q4_K_S || f == LlamaFileType.Q4_K_M) {
                    type = GgmlType.Q5_K;
                }
                return type;
            }
            if (cat == Category.ATTENTION_OUTPUT) {
                if (f == LlamaFileType.Q2_K) {
                    type = GgmlType.Q3_K;
                } else if (f == LlamaFileType.Q3_K_M) {
                    type = GgmlType.Q4_K;
                } else if (f == LlamaFileType.Q3_K_L) {
                    type = GgmlType.Q5_K;
                }
                return type;
            }
            return type;
        }

        private static GgmlType fallback(GgmlType type, long ncols) {
            if (ncols % type.blockSize() == 0) {
                return type;
            }
            GgmlType t;
            switch (type) {
                case Q2_K:
                case Q3_K:
                    t = GgmlType.Q4_0;
                    break;
                case Q4_K:
                    t = GgmlType.Q5_0;
                    break;
                case Q5_K:
                    t = GgmlType.Q5_1;
                    break;
                case Q6_K:
                    t = GgmlType.Q8_0;
                    break;
                default:
                    t = type;
            }
            return ncols % t.blockSize() == 0 ? t : GgmlType.F16;
        }
    }
}
