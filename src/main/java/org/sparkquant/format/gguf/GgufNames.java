package org.sparkquant.format.gguf;

import java.util.Locale;
import java.util.Optional;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.sparkquant.SparkQuantException;

/**
 * Hugging Face → GGUF naming for the llama family, as llama.cpp's convert_hf_to_gguf.py does it: the GGUF
 * architecture of a checkpoint, each tensor's GGUF name, and the q/k row permutation of llama checkpoints.
 *
 * <p>Llama (and Mistral, which converts as "llama") stores q_proj/k_proj rows in the HF rotary layout; GGUF wants
 * the original interleaved layout, so convert_hf_to_gguf permutes their rows:
 * {@code w.reshape(n_head, 2, rows/n_head/2, cols).swapaxes(1, 2)} with n_head = n_kv_head for k. It is a pure
 * output-row permutation, so it commutes with per-row block quantization. Qwen2/Qwen3 use the NeoX rotary layout
 * and are not permuted.
 */
public final class GgufNames {
    private GgufNames() {}

    public static final Set<String> SUPPORTED_ARCHITECTURES = Set.of("llama", "qwen2", "qwen3");

    private static final Pattern LAYER = Pattern.compile("model\\.layers\\.(\\d+)\\.(.+)");

    /**
     * The GGUF architecture for a HF config's {@code model_type} or {@code architectures[0]}: llama, mistral →
     * "llama"; qwen2 → "qwen2"; qwen3 → "qwen3".
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
        throw SparkQuantException.badInput("model type '" + hf + "' cannot be written as GGUF; supported: llama, "
                + "mistral, qwen2, qwen3");
    }

    /**
     * The GGUF name of a HF tensor, or empty for tensors GGUF does not store (rotary inv_freq buffers). Unknown
     * names are an error naming the tensor.
     */
    public static Optional<String> ggufName(String architecture, String hf) {
        if (!SUPPORTED_ARCHITECTURES.contains(architecture)) {
            throw SparkQuantException.badInput("unsupported GGUF architecture " + architecture);
        }
        switch (hf) {
            case "model.embed_tokens.weight":
                return Optional.of("token_embd.weight");
            case "model.norm.weight":
                return Optional.of("output_norm.weight");
            case "lm_head.weight":
                return Optional.of("output.weight");
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
            String mapped = layerTensor(architecture, rest);
            if (mapped != null) {
                return Optional.of(p + mapped);
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
                g = arch.equals("qwen3") ? "attn_q_norm" : null;
                break;
            case "self_attn.k_norm":
                g = arch.equals("qwen3") ? "attn_k_norm" : null;
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
