package org.sparkquant.format.gguf;

import java.util.Locale;
import java.util.Optional;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.sparkquant.SparkQuantException;

/**
 * Hugging Face → GGUF naming for the llama family and its mixture-of-experts relatives, as llama.cpp's
 * convert_hf_to_gguf.py does it: the GGUF architecture of a checkpoint, each tensor's GGUF name, and the q/k row
 * permutation of llama checkpoints.
 *
 * <p>Mixture-of-experts layers: the router ({@code block_sparse_moe.gate} of Mixtral, {@code mlp.gate} of
 * Qwen2/3-MoE) becomes {@code ffn_gate_inp}; the hub's one 2-D tensor per expert and projection is one slice of a 3-D
 * tensor stacked over the experts ({@code ffn_gate_exps}, {@code ffn_up_exps}, {@code ffn_down_exps}, expert index
 * outermost: ne = {in, out, n_expert}); Qwen2-MoE's shared expert is {@code ffn_*_shexp} and its sigmoid gate
 * {@code ffn_gate_inp_shexp}. Mixtral converts as "llama" (q/k permuted like llama).
 *
 * <p>Llama (and Mistral, which converts as "llama") stores q_proj/k_proj rows in the HF rotary layout; GGUF wants
 * the original interleaved layout, so convert_hf_to_gguf permutes their rows:
 * {@code w.reshape(n_head, 2, rows/n_head/2, cols).swapaxes(1, 2)} with n_head = n_kv_head for k. It is a pure
 * output-row permutation, so it commutes with per-row block quantization. Qwen2/Qwen3 use the NeoX rotary layout
 * and are not permuted.
 */
public final class GgufNames {
    private GgufNames() {}

    /** The architectures GGUF files are read from as models ({@link GgufModel}). */
    public static final Set<String> SUPPORTED_ARCHITECTURES = Set.of("llama", "qwen2", "qwen3");
    /** The architectures written as GGUF: the dense ones and the mixture-of-experts ones. */
    public static final Set<String> EXPORT_ARCHITECTURES = Set.of("llama", "qwen2", "qwen3", "qwen2moe", "qwen3moe");

    /**
     * Where a Hugging Face tensor goes in a GGUF file: the GGUF tensor's name and, for one expert of a stacked
     * expert tensor, that expert's index (else -1).
     */
    public record Slot(String name, int expert) {
        public boolean stacked() {
            return expert >= 0;
        }
    }

    private static final Pattern EXPERT = Pattern.compile(
            "(?:block_sparse_moe|mlp)\\.experts\\.(\\d+)\\.(w1|w2|w3|gate_proj|up_proj|down_proj)\\.weight");

    private static final Pattern LAYER = Pattern.compile("model\\.layers\\.(\\d+)\\.(.+)");

    /**
     * The GGUF architecture for a HF config's {@code model_type} or {@code architectures[0]}: llama, mistral,
     * mixtral → "llama"; qwen2 → "qwen2"; qwen3 → "qwen3"; qwen2_moe → "qwen2moe"; qwen3_moe → "qwen3moe".
     */
    public static String architecture(String hf) {
        String a = hf.toLowerCase(Locale.ROOT);
        if (a.equals("llama") || a.equals("mistral") || a.equals("llamaforcausallm")
                || a.equals("mistralforcausallm")) {
            return "llama";
        }
        if (a.equals("qwen2") || a.equals("qwen2forcausallm")) {
            return "qwen2";
        }
        if (a.equals("qwen3") || a.equals("qwen3forcausallm")) {
            return "qwen3";
        }
        if (a.equals("mixtral") || a.equals("mixtralforcausallm")) {
            return "llama";
        }
        if (a.equals("qwen2_moe") || a.equals("qwen2moeforcausallm")) {
            return "qwen2moe";
        }
        if (a.equals("qwen3_moe") || a.equals("qwen3moeforcausallm")) {
            return "qwen3moe";
        }
        throw SparkQuantException.badInput("model type '" + hf + "' cannot be written as GGUF; supported: llama, "
                + "mistral, mixtral, qwen2, qwen3, qwen2_moe, qwen3_moe");
    }

    /**
     * The GGUF name of a HF tensor, or empty for tensors GGUF does not store (rotary inv_freq buffers). Unknown
     * names are an error naming the tensor.
     */
    public static Optional<String> ggufName(String architecture, String hf) {
        return slot(architecture, hf).map(Slot::name);
    }

    /**
     * The GGUF tensor (and expert slot) of a HF tensor, or empty for tensors GGUF does not store. Unknown names are
     * an error naming the tensor.
     */
    public static Optional<Slot> slot(String architecture, String hf) {
        if (!EXPORT_ARCHITECTURES.contains(architecture)) {
            throw SparkQuantException.badInput("unsupported GGUF architecture " + architecture);
        }
        switch (hf) {
            case "model.embed_tokens.weight":
                return Optional.of(new Slot("token_embd.weight", -1));
            case "model.norm.weight":
                return Optional.of(new Slot("output_norm.weight", -1));
            case "lm_head.weight":
                return Optional.of(new Slot("output.weight", -1));
            default:
                break;
        }
        Matcher m = LAYER.matcher(hf);
        if (m.matches()) {
            String p = "blk." + m.group(1) + ".";
            String rest = m.group(2);
            if (rest.endsWith("rotary_emb.inv_freq")) {
                return Optional.empty();
            }
            Matcher e = EXPERT.matcher(rest);
            // Mixtral's experts are block_sparse_moe.experts.E.w1/w2/w3, Qwen-MoE's mlp.experts.E.*_proj
            boolean mixtral = rest.startsWith("block_sparse_moe.") && e.matches() && e.group(2).startsWith("w");
            boolean qwen = rest.startsWith("mlp.") && e.matches() && e.group(2).endsWith("_proj");
            if (architecture.equals("llama") ? mixtral : architecture.endsWith("moe") && qwen) {
                String g = switch (e.group(2)) {
                    case "w1", "gate_proj" -> "ffn_gate_exps";
                    case "w3", "up_proj" -> "ffn_up_exps";
                    default -> "ffn_down_exps";
                };
                return Optional.of(new Slot(p + g + ".weight", Integer.parseInt(e.group(1))));
            }
            String mapped = layerTensor(architecture, rest);
            if (mapped != null) {
                return Optional.of(new Slot(p + mapped, -1));
            }
        }
        throw SparkQuantException.badInput("tensor " + hf + " has no GGUF name for architecture " + architecture);
    }

    private static String layerTensor(String arch, String rest) {
        int dot = rest.lastIndexOf('.');
        if (dot < 0) {
            return null;
        }
        String module = rest.substring(0, dot);
        String kind = rest.substring(dot + 1);
        boolean bias = kind.equals("bias");
        if (!bias && !kind.equals("weight")) {
            return null;
        }
        String g;
        switch (module) {
            case "input_layernorm":
                g = "attn_norm";
                break;
            case "post_attention_layernorm":
                g = "ffn_norm";
                break;
            case "self_attn.q_proj":
                g = "attn_q";
                break;
            case "self_attn.k_proj":
                g = "attn_k";
                break;
            case "self_attn.v_proj":
                g = "attn_v";
                break;
            case "self_attn.o_proj":
                g = "attn_output";
                break;
            case "mlp.gate_proj":
                g = "ffn_gate";
                break;
            case "mlp.up_proj":
                g = "ffn_up";
                break;
            case "mlp.down_proj":
                g = "ffn_down";
                break;
            case "self_attn.q_norm":
                g = arch.startsWith("qwen3") ? "attn_q_norm" : null;
                break;
            case "self_attn.k_norm":
                g = arch.startsWith("qwen3") ? "attn_k_norm" : null;
                break;
            case "block_sparse_moe.gate":
                g = arch.equals("llama") ? "ffn_gate_inp" : null;
                break;
            case "mlp.gate":
                g = arch.endsWith("moe") ? "ffn_gate_inp" : null;
                break;
            case "mlp.shared_expert.gate_proj":
                g = arch.equals("qwen2moe") ? "ffn_gate_shexp" : null;
                break;
            case "mlp.shared_expert.up_proj":
                g = arch.equals("qwen2moe") ? "ffn_up_shexp" : null;
                break;
            case "mlp.shared_expert.down_proj":
                g = arch.equals("qwen2moe") ? "ffn_down_shexp" : null;
                break;
            case "mlp.shared_expert_gate":
                g = arch.equals("qwen2moe") ? "ffn_gate_inp_shexp" : null;
                break;
            default:
                g = null;
        }
        if (g == null || (bias && g.endsWith("norm"))) {
            return null;
        }
        return g + "." + kind;
    }

    /**
     * The number of heads to permute a HF tensor's rows with (n_head for q_proj, n_kv_head for k_proj weights and
     * biases of llama checkpoints), or 0 when it is written as it is.
     */
    public static int ropePermutationHeads(String architecture, String hf, int nHead, int nHeadKv) {
        if (!architecture.equals("llama")) {
            return 0;
        }
        if (hf.endsWith("self_attn.q_proj.weight") || hf.endsWith("self_attn.q_proj.bias")) {
            return nHead;
        }
        if (hf.endsWith("self_attn.k_proj.weight") || hf.endsWith("self_attn.k_proj.bias")) {
            return nHeadKv;
        }
        return 0;
    }

    /**
     * The source (HF) row that ends up at GGUF row {@code dstRow} of a permuted q/k weight with {@code rows} rows:
     * within each head's 2·half rows, GGUF row 2i+s comes from HF row s·half+i.
     */
    public static int permutedSourceRow(int dstRow, int rows, int nHead) {
        checkPermutable(rows, nHead);
        int per = rows / nHead;
        int half = per / 2;
        int h = dstRow / per;
        int r = dstRow % per;
        return h * per + (r % 2) * half + r / 2;
    }

    /** The GGUF row of a permuted q/k weight that holds Hugging Face row {@code hfRow} (inverse of permutedSourceRow). */
    public static int permutedDestRow(int hfRow, int rows, int nHead) {
        checkPermutable(rows, nHead);
        int per = rows / nHead;
        int half = per / 2;
        int h = hfRow / per;
        int r = hfRow % per;
        return h * per + 2 * (r % half) + r / half;
    }

    /** Applies the permutation to a row-major [rows, cols] matrix (or a bias with cols = 1), returning a copy. */
    public static float[] permuteRows(float[] w, int rows, int cols, int nHead) {
        checkPermutable(rows, nHead);
        if ((long) rows * cols != w.length) {
            throw new IllegalArgumentException(w.length + " values are not " + rows + "×" + cols);
        }
        float[] out = new float[w.length];
        for (int r = 0; r < rows; r++) {
            System.arraycopy(w, permutedSourceRow(r, rows, nHead) * cols, out, r * cols, cols);
        }
        return out;
    }

    private static void checkPermutable(int rows, int nHead) {
        if (nHead < 1 || rows % (2 * nHead) != 0) {
            throw SparkQuantException.badInput("cannot apply the rotary row permutation: " + rows
                    + " rows are not a multiple of 2 × " + nHead + " heads");
        }
    }
}
