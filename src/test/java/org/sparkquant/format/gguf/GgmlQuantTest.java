package org.sparkquant.format.gguf;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.Random;
import java.util.Set;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.sparkquant.SparkQuantException;
import org.sparkquant.io.Half;

/**
 * Block quantizers and dequantizers against independent references (fixtures from {@code python/gguf_fixtures.py}):
 * <ul>
 *   <li>"gguf-py" bytes: gguf-py's own numpy quantizers (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0);</li>
 *   <li>"ggml" bytes: ggml's C {@code ggml_quantize_chunk} from a prebuilt llama.cpp (libggml-base.so of the npm
 *       package @node-llama-cpp/linux-x64 3.22.1) — every type, with and without an importance matrix;</li>
 *   <li>dequantized values: gguf-py's dequantizers applied to those bytes and to random blocks.</li>
 * </ul>
 */
class GgmlQuantTest {
    static QuantFixtures fx;

    @BeforeAll
    static void load() {
        fx = QuantFixtures.load();
    }

    @Test
    void fixturesCoverEveryTypeAndSource() {
        Set<GgmlType> ggml = EnumSet.noneOf(GgmlType.class);
        Set<GgmlType> ggufPy = EnumSet.noneOf(GgmlType.class);
        Set<GgmlType> weighted = EnumSet.noneOf(GgmlType.class);
        for (QuantFixtures.Case c : fx.cases) {
            (c.source().equals("ggml") ? ggml : ggufPy).add(c.type());
            if (c.importance() != null) {
                weighted.add(c.type());
            }
        }
        Set<GgmlType> quantized = EnumSet.of(GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1,
                GgmlType.Q8_0, GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K);
        assertEquals(quantized, ggml);
        assertEquals(EnumSet.of(GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.Q8_0), ggufPy);
        Set<GgmlType> noQ8 = EnumSet.copyOf(quantized);
        noQ8.remove(GgmlType.Q8_0);
        assertEquals(noQ8, weighted);
    }

    @Test
    void bytesMatchReferenceQuantizers() {
        List<String> failures = new ArrayList<>();
        for (QuantFixtures.Case c : fx.cases) {
            float[] x = fx.rows.get(c.row());
            float[] imp = c.importance() == null ? null : fx.importance.get(c.importance());
            byte[] got = GgmlQuant.quantizeRow(c.type(), x, imp);
            int diff = firstDiff(c.bytes(), got);
            if (diff >= 0) {
                failures.add(c + ": first differing byte " + diff + " (block " + diff / c.type().bytesPerBlock()
                        + ", offset " + diff % c.type().bytesPerBlock() + ") expected "
                        + (c.bytes()[diff] & 0xff) + " got " + (got[diff] & 0xff));
            }
        }
        if (!failures.isEmpty()) {
            fail(failures.size() + " of " + fx.cases.size() + " cases differ:\n" + String.join("\n", failures));
        }
    }

    @Test
    void dequantizationMatchesGgufPy() {
        int checked = 0;
        for (QuantFixtures.Case c : fx.cases) {
            if (c.dequant() == null) {
                continue;
            }
            float[] got = GgmlQuant.dequantize(c.type(), c.bytes());
            assertSameFloats(c.dequant(), got, c.toString());
            checked++;
        }
        for (QuantFixtures.RandomBlocks r : fx.random) {
            assertSameFloats(r.dequant(), GgmlQuant.dequantize(r.type(), r.bytes()), "random " + r.type());
            checked++;
        }
        assertTrue(checked > 100, "checked " + checked);
    }

    /** The two-phase (GPTQ) API reproduces the one-shot bytes and the dequantizer, block by block. */
    @Test
    void chooseScalesThenCodeElementsEqualsOneShot() {
        for (QuantFixtures.Case c : fx.cases) {
            if (!c.source().equals("ggml") || c.type() == GgmlType.Q4_0 && c.importance() != null
                    || c.type() == GgmlType.Q4_1 && c.importance() != null
                    || c.type() == GgmlType.Q5_0 && c.importance() != null
                    || c.type() == GgmlType.Q5_1 && c.importance() != null) {
                continue; // the weighted 32-element formats store search codes (documented in GgmlBlockScales)
            }
            float[] x = fx.rows.get(c.row());
            float[] imp = c.importance() == null ? null : fx.importance.get(c.importance());
            GgmlType t = c.type();
            int bs = t.blockSize();
            byte[] block = new byte[t.bytesPerBlock()];
            float[] deq = new float[bs];
            int[] codes = new int[bs];
            for (int b = 0; b < x.length / bs; b++) {
                GgmlBlockScales s = GgmlQuant.chooseScales(t, x, b * bs, imp, b * bs, 0);
                for (int j = 0; j < bs; j++) {
                    codes[j] = s.quantize(j, x[b * bs + j]);
                }
                s.encode(codes, 0, block, 0);
                byte[] expected = java.util.Arrays.copyOfRange(c.bytes(), b * t.bytesPerBlock(),
                        (b + 1) * t.bytesPerBlock());
                assertArrayEquals(expected, block, c + " block " + b);
                GgmlQuant.dequantize(t, block, 0, deq, 0, bs);
                for (int j = 0; j < bs; j++) {
                    float e = s.dequantize(j, codes[j]);
                    assertTrue(Float.floatToIntBits(e) == Float.floatToIntBits(deq[j]),
                            c + " block " + b + " element " + j + ": " + e + " vs " + deq[j]);
                }
            }
        }
    }

    @Test
    void gptqColumnLoopWithErrorFeedbackStaysInRange() {
        Random rnd = new Random(5);
        for (GgmlType t : List.of(GgmlType.Q4_0, GgmlType.Q4_K, GgmlType.Q3_K, GgmlType.Q6_K, GgmlType.Q8_0,
                GgmlType.Q2_K, GgmlType.Q5_1)) {
            int rows = 8;
            int bs = t.blockSize();
            float[][] w = new float[rows][bs];
            GgmlBlockScales[] blocks = new GgmlBlockScales[rows];
            for (int r = 0; r < rows; r++) {
                for (int j = 0; j < bs; j++) {
                    w[r][j] = (float) rnd.nextGaussian();
                }
                blocks[r] = GgmlQuant.chooseScales(t, w[r], 0);
            }
            int[][] codes = new int[rows][bs];
            float[] col = new float[rows];
            int[] q = new int[rows];
            float[] dq = new float[rows];
            for (int j = 0; j < bs; j++) {
                for (int r = 0; r < rows; r++) {
                    col[r] = w[r][j] * 1.7f; // pushed outside the block's range, as error feedback can do
                }
                GgmlQuant.quantizeColumn(blocks, j, col, q, dq);
                for (int r = 0; r < rows; r++) {
                    codes[r][j] = q[r];
                    assertTrue(q[r] >= blocks[r].minCode() && q[r] <= blocks[r].maxCode(), t + " code " + q[r]);
                }
            }
            for (int r = 0; r < rows; r++) {
                byte[] out = new byte[t.bytesPerBlock()];
                blocks[r].encode(codes[r], 0, out, 0); // must not throw
            }
        }
    }

    @Test
    void plainTypesRoundTrip() {
        float[] x = {0f, -0f, 1f, -2.5f, 65504f, 65520f, 1e-8f, 3.14159f, Float.MIN_NORMAL, 1e30f};
        float[] f32 = GgmlQuant.dequantize(GgmlType.F32, GgmlQuant.quantizeRow(GgmlType.F32, x, null));
        assertArrayEquals(x, f32);
        float[] f16 = GgmlQuant.dequantize(GgmlType.F16, GgmlQuant.quantizeRow(GgmlType.F16, x, null));
        for (int i = 0; i < x.length; i++) {
            assertEquals(Half.round(x[i]), f16[i], 0f);
        }
        float[] bf = GgmlQuant.dequantize(GgmlType.BF16, GgmlQuant.quantizeRow(GgmlType.BF16, x, null));
        assertEquals(3.140625f, bf[7], 0f); // 3.14159 = 0x40490FD0 rounds to bf16 0x4049
        assertEquals(1e30f, bf[9], 1e30f * 0.01f);
    }

    @Test
    void quantizationErrorIsSmallForEveryType() {
        float[] x = fx.rows.get("normal_big");
        for (GgmlType t : GgmlType.values()) {
            float[] back = GgmlQuant.dequantize(t, GgmlQuant.quantizeRow(t, x, null));
            double se = 0;
            double ss = 0;
            for (int i = 0; i < x.length; i++) {
                se += (x[i] - back[i]) * (x[i] - back[i]);
                ss += x[i] * x[i];
            }
            double rel = Math.sqrt(se / ss);
            // plain types: half an ulp of their significand; block types: about 2^-bits, generous for 2/3 bits
            double limit = t == GgmlType.F32 ? 0x1p-24 : t == GgmlType.F16 ? 0x1p-11 : t == GgmlType.BF16 ? 0x1p-8
                    : 3.0 * Math.pow(2, -(t.bitsPerWeight() - 1.5));
            assertTrue(rel <= limit, t + " relative rms error " + rel + " limit " + limit);
        }
    }

    @Test
    void rejectsBadRowsClearly() {
        assertThrows(IllegalArgumentException.class, () -> GgmlQuant.quantizeRow(GgmlType.Q4_K, new float[100], null));
        SparkQuantException e = assertThrows(SparkQuantException.class,
                () -> GgmlQuant.requireFinite(new float[] {1, Float.NaN}, 0, 2, "blk.0.attn_q.weight row 3"));
        assertTrue(e.getMessage().contains("blk.0.attn_q.weight row 3"));
        assertFalse(e.getMessage().contains("\n"));
    }

    static int firstDiff(byte[] a, byte[] b) {
        if (a.length != b.length) {
            return Math.min(a.length, b.length);
        }
        for (int i = 0; i < a.length; i++) {
            if (a[i] != b[i]) {
                return i;
            }
        }
        return -1;
    }

    static void assertSameFloats(float[] expected, float[] got, String what) {
        assertEquals(expected.length, got.length, what);
        for (int i = 0; i < expected.length; i++) {
            boolean same = Float.isNaN(expected[i]) ? Float.isNaN(got[i])
                    : Float.floatToIntBits(expected[i]) == Float.floatToIntBits(got[i]);
            if (!same) {
                fail(what + ": element " + i + " expected " + expected[i] + " got " + got[i]);
            }
        }
    }
}
