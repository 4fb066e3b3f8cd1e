package org.sparkquant.format.gptq;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.SplittableRandom;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.sparkquant.format.gptq.GptqConfig.Format;
import org.sparkquant.model.LinearModule;

class GptqPackingTest {

    @ParameterizedTest
    @ValueSource(ints = {2, 3, 4, 8})
    void vectorRoundTripsRandomValues(int bits) {
        SplittableRandom r = new SplittableRandom(bits);
        for (int count : new int[] {32, 64, 96, 320}) {
            int[] values = new int[count];
            for (int i = 0; i < count; i++) {
                values[i] = r.nextInt(1 << bits);
            }
            int[] words = new int[GptqPacking.words(count, bits)];
            assertEquals(count * bits / 32, words.length);
            GptqPacking.pack(bits, values, 0, count, words, 0);
            int[] back = new int[count];
            GptqPacking.unpack(bits, words, 0, count, back, 0);
            assertArrayEquals(values, back, bits + "-bit, " + count + " values");
        }
    }

    @ParameterizedTest
    @ValueSource(ints = {2, 3, 4, 8})
    void moduleRoundTripsAtSeveralShapes(int bits) {
        SplittableRandom r = new SplittableRandom(100 + bits);
        int[][] shapes = {{32, 32}, {64, 96}, {128, 32}, {96, 160}};
        for (int[] s : shapes) {
            int in = s[0];
            int out = s[1];
            byte[] codes = new byte[in * out];
            for (int i = 0; i < codes.length; i++) {
                codes[i] = (byte) r.nextInt(1 << bits);
            }
            int[] qweight = GptqPacking.packQweight(codes, in, out, bits);
            assertEquals(in * bits / 32 * out, qweight.length);
            assertArrayEquals(codes, GptqPacking.unpackQweight(qweight, in, out, bits));

            int groups = 3;
            int[] zeros = new int[groups * out];
            for (int i = 0; i < zeros.length; i++) {
                zeros[i] = r.nextInt(1 << bits);
            }
            int[] qzeros = GptqPacking.packQzeros(zeros, groups, out, bits, Format.GPTQ_V2);
            assertEquals(groups * (out * bits / 32), qzeros.length);
            assertArrayEquals(zeros, GptqPacking.unpackQzeros(qzeros, groups, out, bits, Format.GPTQ_V2));
            int[] positive = zeros.clone();
            for (int i = 0; i < positive.length; i++) {
                positive[i] = Math.max(1, positive[i]);
            }
            int[] v1 = GptqPacking.packQzeros(positive, groups, out, bits, Format.GPTQ);
            assertArrayEquals(positive, GptqPacking.unpackQzeros(v1, groups, out, bits, Format.GPTQ));
        }
    }

    @Test
    void fourBitFirstValueSitsInTheLowestBits() {
        int[] values = {0, 1, 2, 3, 4, 5, 6, 7};
        int[] words = new int[1];
        GptqPacking.pack(4, values, 0, 8, words, 0);
        assertEquals(0x76543210, words[0]);
        int[] two = {3, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3};
        GptqPacking.pack(2, two, 0, 16, words, 0);
        assertEquals(0xC0000000 | (2 << 6) | (1 << 4) | 3, words[0]);
        int[] eight = {0x12, 0x34, 0x56, 0xF8};
        GptqPacking.pack(8, eight, 0, 4, words, 0);
        assertEquals(0xF8563412, words[0]);
    }

    @Test
    void threeBitValuesStraddleWordsAsFormatsMdSays() {
        // all ones: every bit of the three words is set
        assertArrayEquals(new int[] {-1, -1, -1}, pack3(oneHot(-1, 7)));
        // value 10: its low two bits at bits 30-31 of word 0, its third bit at bit 0 of word 1
        assertArrayEquals(new int[] {0xC0000000, 1, 0}, pack3(oneHot(10, 7)));
        assertArrayEquals(new int[] {0x40000000, 1, 0}, pack3(oneHot(10, 5)));
        // value 21: bit 0 at bit 31 of word 1, bits 1-2 at bits 0-1 of word 2
        assertArrayEquals(new int[] {0, 0x80000000, 3}, pack3(oneHot(21, 7)));
        assertArrayEquals(new int[] {0, 0, 1}, pack3(oneHot(21, 2)));
        // value 11 at bit 1 of word 1, value 22 at bit 2 of word 2, value 31 at bits 29-31 of word 2
        assertArrayEquals(new int[] {0, 5 << 1, 0}, pack3(oneHot(11, 5)));
        assertArrayEquals(new int[] {0, 0, 6 << 2}, pack3(oneHot(22, 6)));
        assertArrayEquals(new int[] {0, 0, 0xA0000000}, pack3(oneHot(31, 5)));
        assertArrayEquals(new int[] {3 << 27, 0, 0}, pack3(oneHot(9, 3)));
    }

    private static int[] oneHot(int at, int value) {
        int[] v = new int[32];
        for (int i = 0; i < 32; i++) {
            v[i] = at < 0 || i == at ? value : 0;
        }
        return v;
    }

    private static int[] pack3(int[] values) {
        int[] words = new int[3];
        GptqPacking.pack(3, values, 0, 32, words, 0);
        int[] back = new int[32];
        GptqPacking.unpack(3, words, 0, 32, back, 0);
        assertArrayEquals(values, back);
        return words;
    }

    @Test
    void qweightPacksAlongTheInputDimensionIntoColumns() {
        // codes [out=8][in=8] with code(n, k) = (n + k) % 16: column n of the single packed row holds inputs 0..7
        byte[] codes = new byte[64];
        for (int n = 0; n < 8; n++) {
            for (int k = 0; k < 8; k++) {
                codes[n * 8 + k] = (byte) ((n + k) % 16);
            }
        }
        int[] q = GptqPacking.packQweight(codes, 8, 8, 4);
        assertEquals(8, q.length);
        assertEquals(0x76543210, q[0]);
        assertEquals(0x87654321, q[1]);
    }

    @Test
    void zeroConventionsV1AndV2() {
        int[] zeros = new int[8];
        java.util.Arrays.fill(zeros, 8); // symmetric 4-bit zero
        assertEquals(0x77777777, GptqPacking.packQzeros(zeros, 1, 8, 4, Format.GPTQ)[0]);
        assertEquals(0x88888888, GptqPacking.packQzeros(zeros, 1, 8, 4, Format.GPTQ_V2)[0]);
        int[] eight = {128, 128, 128, 128};
        assertEquals(0x7F7F7F7F, GptqPacking.packQzeros(eight, 1, 4, 8, Format.GPTQ)[0]);
        int[] two = new int[16];
        java.util.Arrays.fill(two, 2);
        assertEquals(0x55555555, GptqPacking.packQzeros(two, 1, 16, 2, Format.GPTQ)[0]);

        // an asymmetric zero of 0: fine in v2, impossible in v1
        int[] asym = {0, 3, 15, 1, 2, 4, 5, 6};
        int[] v2 = GptqPacking.packQzeros(asym, 1, 8, 4, Format.GPTQ_V2);
        assertArrayEquals(asym, GptqPacking.unpackQzeros(v2, 1, 8, 4, Format.GPTQ_V2));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> GptqPacking.packQzeros(asym, 1, 8, 4, Format.GPTQ));
        assertTrue(e.getMessage().contains("gptq_v2"), e.getMessage());

        // a v1 field of 15 (a -1 masked by some writer) reads as zero 0 and is flagged as ambiguous
        int[] wrapped = {0x7777777F};
        assertEquals(0, GptqPacking.unpackQzeros(wrapped, 1, 8, 4, Format.GPTQ)[0]);
        assertTrue(GptqPacking.v1Wraps(wrapped, 1, 8, 4));
        assertFalse(GptqPacking.v1Wraps(new int[] {0x77777777}, 1, 8, 4));
    }

    @Test
    void packableChecksBothDimensions() {
        assertTrue(GptqPacking.packable(64, 64, 4));
        assertFalse(GptqPacking.packable(172, 64, 4)); // down_proj of stories260K
        assertFalse(GptqPacking.packable(64, 172, 4)); // gate/up: qzeros along 172 outputs
        assertTrue(GptqPacking.packable(172, 64, 8)); // 4 per word: 172 = 43 words
        assertFalse(GptqPacking.packable(172, 64, 2));
        assertFalse(GptqPacking.packable(48, 64, 3)); // 3-bit needs multiples of 32
        assertTrue(GptqPacking.packable(64, 32, 3));
        assertTrue(GptqPacking.packable(new LinearModule("m", 0, "down_proj", 128, 64, false,
                LinearModule.Input.DOWN_IN), 3));
        assertTrue(GptqPacking.unpackableReason(64, 172, 4).orElseThrow().contains("out_features 172"));
        assertThrows(IllegalArgumentException.class, () -> GptqPacking.multiple(5));
        assertThrows(IllegalArgumentException.class, () -> GptqPacking.pack(4, new int[] {16, 0, 0, 0, 0, 0, 0, 0},
                0, 8, new int[1], 0));
    }
}
