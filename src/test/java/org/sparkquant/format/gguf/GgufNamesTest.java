package org.sparkquant.format.gguf;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.List;
import java.util.Optional;
import org.junit.jupiter.api.Test;
import org.sparkquant.SparkQuantException;
import org.sparkquant.testing.TestPython;

class GgufNamesTest {
    @Test
    void mapsLlamaFamilyNames() {
        assertEquals("llama", GgufNames.architecture("LlamaForCausalLM"));
        assertEquals("llama", GgufNames.architecture("mistral"));
        assertEquals("qwen2", GgufNames.architecture("qwen2"));
        assertEquals("qwen3", GgufNames.architecture("Qwen3ForCausalLM"));
        assertThrows(SparkQuantException.class, () -> GgufNames.architecture("gpt2"));

        String[][] llama = {
            {"model.embed_tokens.weight", "token_embd.weight"},
            {"model.norm.weight", "output_norm.weight"},
            {"lm_head.weight", "output.weight"},
            {"model.layers.0.input_layernorm.weight", "blk.0.attn_norm.weight"},
            {"model.layers.11.self_attn.q_proj.weight", "blk.11.attn_q.weight"},
            {"model.layers.11.self_attn.k_proj.weight", "blk.11.attn_k.weight"},
            {"model.layers.11.self_attn.v_proj.weight", "blk.11.attn_v.weight"},
            {"model.layers.11.self_attn.o_proj.weight", "blk.11.attn_output.weight"},
            {"model.layers.2.post_attention_layernorm.weight", "blk.2.ffn_norm.weight"},
            {"model.layers.2.mlp.gate_proj.weight", "blk.2.ffn_gate.weight"},
            {"model.layers.2.mlp.up_proj.weight", "blk.2.ffn_up.weight"},
            {"model.layers.2.mlp.down_proj.weight", "blk.2.ffn_down.weight"},
        };
        for (String arch : List.of("llama", "qwen2", "qwen3")) {
            for (String[] p : llama) {
                assertEquals(Optional.of(p[1]), GgufNames.ggufName(arch, p[0]), arch + " " + p[0]);
            }
            assertEquals(Optional.empty(), GgufNames.ggufName(arch, "model.layers.0.self_attn.rotary_emb.inv_freq"));
            assertThrows(SparkQuantException.class, () -> GgufNames.ggufName(arch, "model.layers.0.mlp.experts.w1"));
        }
        assertEquals(Optional.of("blk.3.attn_q.bias"), GgufNames.ggufName("qwen2", "model.layers.3.self_attn.q_proj.bias"));
        assertEquals(Optional.of("blk.3.attn_v.bias"), GgufNames.ggufName("qwen2", "model.layers.3.self_attn.v_proj.bias"));
        assertEquals(Optional.of("blk.5.attn_q_norm.weight"),
                GgufNames.ggufName("qwen3", "model.layers.5.self_attn.q_norm.weight"));
        assertEquals(Optional.of("blk.5.attn_k_norm.weight"),
                GgufNames.ggufName("qwen3", "model.layers.5.self_attn.k_norm.weight"));
        assertThrows(SparkQuantException.class, () -> GgufNames.ggufName("llama", "model.layers.5.self_attn.q_norm.weight"));

        assertEquals(32, GgufNames.ropePermutationHeads("llama", "model.layers.0.self_attn.q_proj.weight", 32, 8));
        assertEquals(8, GgufNames.ropePermutationHeads("llama", "model.layers.0.self_attn.k_proj.weight", 32, 8));
        assertEquals(0, GgufNames.ropePermutationHeads("llama", "model.layers.0.self_attn.v_proj.weight", 32, 8));
        assertEquals(0, GgufNames.ropePermutationHeads("qwen2", "model.layers.0.self_attn.q_proj.weight", 14, 2));
    }

    /** numpy's w.reshape(nh, 2, half, cols).swapaxes(1, 2).reshape(rows, cols), index by index. */
    @Test
    void permutationIsNumpysReshapeSwapaxes() {
        int nh = 4;
        int half = 3;
        int rows = nh * 2 * half;
        int cols = 5;
        float[] w = new float[rows * cols];
        for (int i = 0; i < w.length; i++) {
            w[i] = i;
        }
        float[] out = GgufNames.permuteRows(w, rows, cols, nh);
        for (int h = 0; h < nh; h++) {
            for (int i = 0; i < half; i++) {
                for (int s = 0; s < 2; s++) {
                    for (int c = 0; c < cols; c++) {
                        // B[h,i,s,c] = A[h,s,i,c]; B flattens to row (h*half+i)*2+s, A to row (h*2+s)*half+i
                        assertEquals(w[((h * 2 + s) * half + i) * cols + c], out[((h * half + i) * 2 + s) * cols + c]);
                    }
                }
            }
        }
        assertThrows(SparkQuantException.class, () -> GgufNames.permuteRows(new float[10], 10, 1, 4));
    }

    @Test
    void permutationMatchesLiveNumpy() {
        Path python = TestPython.require("numpy");
        int rows = 64;
        int nh = 8;
        String out = TestPython.check(python, List.of("-c", "import numpy as np; w = np.arange(" + rows
                + ").reshape(" + rows + ", 1); print(' '.join(str(int(v)) for v in w.reshape(" + nh + ", 2, " + rows
                + " // " + nh + " // 2, 1).swapaxes(1, 2).reshape(" + rows + ")))"), 60).strip();
        String[] src = out.split(" ");
        assertEquals(rows, src.length);
        for (int r = 0; r < rows; r++) {
            assertEquals(Integer.parseInt(src[r]), GgufNames.permutedSourceRow(r, rows, nh), "row " + r);
        }
        assertTrue(rows > 0);
    }
}
