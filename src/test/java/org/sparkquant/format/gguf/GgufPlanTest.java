package org.sparkquant.format.gguf;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.OutputStream;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class GgufPlanTest {
    static final GgufModelDesc DEV = GgufModelDesc.standard("llama", 3, 8, 4, 512, 1536, 32000, true, 64, false);

    @Test
    void sizesOfTheDevModelAtQ4KM() {
        GgufPlan plan = GgufPlan.of(DEV, LlamaFileType.Q4_K_M);
        // by hand: Q4_K is 144 bytes per 256, Q6_K 210 per 256; tied token_embd → Q6_K; layer 2 (use_more_bits
        // for 3 layers) has attn_v and ffn_down in Q6_K; norms are F32
        long q4 = 144;
        long q6 = 210;
        long emb = 512L * 32000 / 256 * q6;
        long perLayerQ4 = (512L * 256 + 512L * 512 + 512L * 512 + 512L * 1536 * 2) / 256 * q4; // k, q, o, gate, up
        long vQ4 = 512L * 256 / 256 * q4;
        long vQ6 = 512L * 256 / 256 * q6;
        long downQ4 = 1536L * 512 / 256 * q4;
        long downQ6 = 1536L * 512 / 256 * q6;
        long norms = (512L + 3 * 2 * 512) * 4;
        long expected = emb + 3 * perLayerQ4 + 2 * vQ4 + vQ6 + 2 * downQ4 + downQ6 + norms;
        assertEquals(expected, plan.tensorBytes());
        long elements = 512L * 32000 + 512 + 3L * (512 * 256 * 2 + 512 * 512 * 2 + 1536 * 512 * 3 + 2 * 512);
        assertEquals(elements, plan.elements());
        assertEquals(expected * 8.0 / elements, plan.bitsPerWeight(), 1e-12);
        String table = plan.table();
        assertTrue(table.contains("blk.2.attn_v.weight"), table);
        assertTrue(table.lines().anyMatch(l -> l.startsWith("token_embd.weight") && l.contains("[512, 32000]")
                && l.contains("Q6_K") && l.contains(String.valueOf(emb))), table);
        assertEquals(plan.tensors().size() + 3, table.lines().count());
    }

    @Test
    void fileSizeIsWhatTheWriterWrites() throws IOException {
        GgufPlan plan = GgufPlan.of(DEV, LlamaFileType.Q3_K_M);
        Map<String, GgufValue> md = new LinkedHashMap<>();
        md.put("general.architecture", GgufValue.string("llama"));
        md.put("general.file_type", GgufValue.u32(LlamaFileType.Q3_K_M.id()));
        md.put("tokenizer.ggml.tokens", GgufValue.stringArray(List.of("a", "b", "c")));
        long[] count = {0};
        OutputStream counting = new OutputStream() {
            @Override
            public void write(int b) {
                count[0]++;
            }

            @Override
            public void write(byte[] b, int off, int len) {
                count[0] += len;
            }
        };
        try (GgufWriter w = GgufWriter.create(counting, md, plan.tensors())) {
            for (GgufTensor t : plan.tensors()) {
                w.beginTensor(t.name());
                long left = t.bytes();
                byte[] chunk = new byte[1 << 16];
                while (left > 0) {
                    int n = (int) Math.min(left, chunk.length);
                    w.write(chunk, 0, n);
                    left -= n;
                }
                w.endTensor();
            }
        }
        assertEquals(plan.fileSize(md), count[0]);
    }
}
