package org.sparkquant.format.gptq;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;
import org.sparkquant.io.Half;

class QuantizedLinearTest {

    @Test
    void dequantizeFollowsGIdx() {
        // in=4, out=2, group 2 with a permuted g_idx: inputs 0 and 3 in group 1, inputs 1 and 2 in group 0
        int[] codes = {
            0, 1, 2, 3, // output 0
            15, 14, 13, 12 // output 1
        };
        float[] scales = {0.5f, 2f, /* group 1: */ 0.25f, 4f};
        int[] zeros = {1, 2, 3, 4};
        QuantizedLinear q = QuantizedLinear.builder("m", 4, 2, false, 4, 2)
                .gIdx(new int[] {1, 0, 0, 1}).all(codes, scales, zeros).build();
        float[] w = q.dequantize();
        assertArrayEquals(new float[] {
            0.25f * (0 - 3), 0.5f * (1 - 1), 0.5f * (2 - 1), 0.25f * (3 - 3),
            4f * (15 - 4), 2f * (14 - 2), 2f * (13 - 2), 4f * (12 - 4)}, w);
        assertArrayEquals(new float[] {4f * (15 - 4), 2f * (14 - 2), 2f * (13 - 2), 4f * (12 - 4)},
                q.dequantizeRows(1, 2));
        assertFalse(q.sequentialGroups());
        assertEquals(2, q.groups());
    }

    @Test
    void scalesAndBiasAreRoundedToFp16AsStored() {
        float scale = 0.1f; // not representable in fp16
        QuantizedLinear q = QuantizedLinear.builder("m", 4, -1, true, 8, 1)
                .bias(new float[] {0.3f})
                .all(new int[] {0, 1, 2, 3, 12, 13, 14, 15}, new float[] {scale}, new int[] {8}).build();
        float stored = Half.toFloat(Half.fromFloat(scale));
        assertTrue(stored != scale);
        assertEquals(stored, q.scale(0, 0));
        assertEquals(Half.toFloat(Half.fromFloat(0.3f)), q.bias()[0]);
        assertEquals(stored * (0 - 8), q.dequantize()[0]);
        assertEquals(stored * (15 - 8), q.dequantize()[7]);
        assertTrue(q.sequentialGroups());
    }

    @Test
    void assemblesFromBlocksOfOutputChannels() {
        int in = 4;
        int out = 3;
        QuantizedLinear.Builder b = QuantizedLinear.builder("blocks", 8, 2, false, in, out);
        // scales and zeros per block are [G][rows]
        b.rows(2, 1, new int[] {9, 10, 11, 12}, new float[] {1f, 2f}, new int[] {5, 6});
        b.rows(0, 2, new int[] {1, 2, 3, 4, 5, 6, 7, 8}, new float[] {1f, 1f, 3f, 3f}, new int[] {0, 0, 1, 1});
        QuantizedLinear q = b.build();
        QuantizedLinear whole = QuantizedLinear.builder("blocks", 8, 2, false, in, out)
                .all(new int[] {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12},
                        new float[] {1f, 1f, 1f, 3f, 3f, 2f}, new int[] {0, 0, 5, 1, 1, 6})
                .build();
        assertEquals(whole, q);
        assertEquals(2f * (12 - 6), q.dequantize()[11]);
    }

    @Test
    void rejectsInvalidModules() {
        assertThrows(IllegalArgumentException.class, () -> QuantizedLinear.builder("m", 5, 32, true, 32, 32));
        assertThrows(IllegalArgumentException.class, () -> QuantizedLinear.builder("m", 4, 0, true, 32, 32));
        QuantizedLinear.Builder b = QuantizedLinear.builder("m", 4, -1, true, 2, 1);
        assertThrows(IllegalArgumentException.class, () -> b.all(new int[] {0, 16}, new float[] {1}, new int[] {8}));
        IllegalArgumentException sym = assertThrows(IllegalArgumentException.class,
                () -> b.all(new int[] {0, 1}, new float[] {1}, new int[] {7}));
        assertTrue(sym.getMessage().contains("symmetric"), sym.getMessage());
        assertThrows(IllegalArgumentException.class, () -> b.all(new int[] {0, 1}, new float[] {1e6f}, new int[] {8}));
        assertThrows(IllegalArgumentException.class, () -> b.all(new int[] {0, 1}, new float[] {Float.NaN},
                new int[] {8}));
        assertThrows(IllegalArgumentException.class, () -> b.gIdx(new int[] {0, 1}));
        assertThrows(IllegalStateException.class, b::build); // channel 0 never set
    }
}
