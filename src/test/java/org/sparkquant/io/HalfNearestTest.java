package org.sparkquant.io;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * The fp16 converter ({@link Half}) against a deliberately simple reference: a half's value from its fields with Math.scalb, and
 * float→half as "the nearest of the 31745 non-negative finite halves by binary search over their exact values, ties
 * to the even pattern, beyond 65520 infinity" — no bit tricks shared with the implementation.
 */
class HalfNearestTest {
    /** Value of every non-negative finite half pattern 0x0000..0x7bff, ascending. */
    private static final double[] VALUES = new double[0x7c00];

    static {
        for (int h = 0; h < 0x7c00; h++) {
            VALUES[h] = refValue(h);
        }
    }

    static double refValue(int h) {
        int e = (h >> 10) & 0x1f;
        int m = h & 0x3ff;
        double v = e == 0 ? Math.scalb((double) m, -24) : Math.scalb(1024.0 + m, e - 25);
        return (h & 0x8000) != 0 ? -v : v;
    }

    static int refFromFloat(float f) {
        int sign = f < 0 || (f == 0 && 1 / f < 0) ? 0x8000 : 0;
        double a = Math.abs((double) f);
        if (a >= 65520.0) { // 65504 + half an ulp (16): ties go to the even pattern 0x7c00 = infinity
            return sign | 0x7c00;
        }
        int lo = 0;
        int hi = VALUES.length - 1;
        while (lo < hi) { // first index with value >= a
            int mid = (lo + hi) >>> 1;
            if (VALUES[mid] < a) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        int best = lo;
        if (lo > 0) {
            double up = VALUES[lo] - a;
            double down = a - VALUES[lo - 1];
            if (down < up || (down == up && ((lo - 1) & 1) == 0)) {
                best = lo - 1;
            }
        }
        return sign | best;
    }

    @Test
    void everyHalfDecodesExactlyAndRoundTrips() {
        for (int h = 0; h < 0x10000; h++) {
            float f = Half.toFloat((short) h);
            int e = (h >> 10) & 0x1f;
            int m = h & 0x3ff;
            if (e == 0x1f && m != 0) {
                assertTrue(Float.isNaN(f), Integer.toHexString(h));
                continue;
            }
            if (e == 0x1f) {
                assertEquals((h & 0x8000) != 0 ? Float.NEGATIVE_INFINITY : Float.POSITIVE_INFINITY, f, 0f);
            } else {
                assertEquals(refValue(h), (double) f, 0.0, Integer.toHexString(h));
            }
            assertEquals(h, Half.fromFloat(f) & 0xffff, "round trip of " + Integer.toHexString(h));
        }
    }

    @Test
    void midpointsBetweenAllAdjacentHalvesRoundToEven() {
        for (int h = 0; h < 0x7c00; h++) {
            for (int sign : new int[] {0, 0x8000}) {
                int lower = sign | h;
                int upper = sign | (h + 1); // h + 1 == 0x7c00: the boundary towards infinity
                double a = refValue(lower);
                double b = h + 1 == 0x7c00 ? (sign != 0 ? -65536.0 : 65536.0) : refValue(upper);
                float mid = (float) ((a + b) / 2); // exact: at most 12 significant bits
                assertEquals((a + b) / 2, (double) mid, 0.0);
                int even = (lower & 1) == 0 ? lower : upper;
                assertEquals(even, Half.fromFloat(mid) & 0xffff, "tie at " + mid);
                float towardB = Math.nextAfter(mid, b);
                float towardA = Math.nextAfter(mid, a);
                assertEquals(upper, Half.fromFloat(towardB) & 0xffff, "just above " + mid);
                assertEquals(lower, Half.fromFloat(towardA) & 0xffff, "just below " + mid);
            }
        }
    }

    @Test
    void randomFloatsOfAllMagnitudesMatchReference() {
        SplittableRandom rnd = new SplittableRandom(42);
        for (int i = 0; i < 2_000_000; i++) {
            int bits = rnd.nextInt();
            float f = Float.intBitsToFloat(bits);
            if (Float.isNaN(f)) {
                continue;
            }
            assertEquals(refFromFloat(f), Half.fromFloat(f) & 0xffff, "float " + f + " bits " + Integer.toHexString(bits));
        }
        // the exponent range where halves live, densely
        for (int i = 0; i < 2_000_000; i++) {
            float f = (float) ((rnd.nextDouble() * 2 - 1) * Math.scalb(1.0, rnd.nextInt(-27, 17)));
            assertEquals(refFromFloat(f), Half.fromFloat(f) & 0xffff, "float " + f);
        }
    }

    @Test
    void edgeCases() {
        assertEquals(0x0000, Half.fromFloat(0f) & 0xffff);
        assertEquals(0x8000, Half.fromFloat(-0f) & 0xffff);
        assertEquals(0x7c00, Half.fromFloat(Float.POSITIVE_INFINITY) & 0xffff);
        assertEquals(0xfc00, Half.fromFloat(Float.NEGATIVE_INFINITY) & 0xffff);
        assertEquals(0x7bff, Half.fromFloat(65504f) & 0xffff);
        assertEquals(0x7bff, Half.fromFloat(65519.996f) & 0xffff);
        assertEquals(0x7c00, Half.fromFloat(65520f) & 0xffff);
        assertEquals(0x7c00, Half.fromFloat(Float.MAX_VALUE) & 0xffff);
        assertEquals(0x0001, Half.fromFloat(0x1p-24f) & 0xffff); // smallest subnormal
        assertEquals(0x0000, Half.fromFloat(0x1p-25f) & 0xffff); // tie with zero: even
        assertEquals(0x0001, Half.fromFloat(Math.nextUp(0x1p-25f)) & 0xffff);
        assertEquals(0x0002, Half.fromFloat(0x1.8p-24f) & 0xffff); // 1.5 units: tie to even (2)
        assertEquals(0x0002, Half.fromFloat(0x1.4p-23f) & 0xffff); // 2.5 units: tie to even (2)
        assertEquals(0x0003, Half.fromFloat(0x1.8p-23f) & 0xffff); // exactly 3 units
        assertEquals(0x0400, Half.fromFloat(0x1p-14f) & 0xffff); // smallest normal
        assertEquals(0x03ff, Half.fromFloat(0x1.ff8p-15f) & 0xffff); // largest subnormal, 1023 units
        assertEquals(0x0400, Half.fromFloat(0x1.ffcp-15f) & 0xffff); // 1023.5 units: tie rounds up into the normals
        assertEquals(0x3c00, Half.fromFloat(1f) & 0xffff);
        assertEquals(0x3c00, Half.fromFloat(1.00048828125f) & 0xffff); // 1 + 2^-11: tie to even
        assertEquals(0x3c02, Half.fromFloat(1.00146484375f) & 0xffff); // 1 + 3·2^-11: tie to even (up)
        assertEquals(0x0000, Half.fromFloat(Float.MIN_VALUE) & 0xffff);
        int nan = Half.fromFloat(Float.NaN) & 0xffff;
        assertEquals(0x7c00, nan & 0x7c00);
        assertTrue((nan & 0x3ff) != 0);
        assertEquals(0xfe00, Half.fromFloat(Float.intBitsToFloat(0xffc00000)) & 0xffff);
        assertTrue(Float.isNaN(Half.toFloat(Half.fromFloat(Float.intBitsToFloat(0x7f800001)))));
    }

    @Test
    void bf16RoundsToNearestEvenAndQuietsNaN() {
        assertEquals(0x3f80, Half.floatToBf16(1f) & 0xffff);
        assertEquals(0x3f80, Half.floatToBf16(Float.intBitsToFloat(0x3f808000)) & 0xffff); // tie: even
        assertEquals(0x3f82, Half.floatToBf16(Float.intBitsToFloat(0x3f818000)) & 0xffff); // tie: even (up)
        assertEquals(0x3f81, Half.floatToBf16(Float.intBitsToFloat(0x3f808001)) & 0xffff);
        assertEquals(0x7fc1, Half.floatToBf16(Float.intBitsToFloat(0x7f810000)) & 0xffff); // sNaN → quiet
        assertEquals(0x7f80, Half.floatToBf16(Float.intBitsToFloat(0x7f7fffff)) & 0xffff); // overflow → inf
        for (int b = 0; b < 0x10000; b++) {
            float f = Half.bf16ToFloat((short) b);
            if (!Float.isNaN(f)) {
                assertEquals(b, Half.floatToBf16(f) & 0xffff);
            }
        }
    }
}
