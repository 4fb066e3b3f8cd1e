package org.sparkquant.format.gguf;

/**
 * IEEE half and bfloat16 conversions as ggml does them (Java 17 has no {@code Float.floatToFloat16}). Narrowing
 * rounds to nearest, ties to even; overflow gives infinity; NaN stays a (quiet) NaN with the sign and top payload bits.
 */
public final class Fp16 {
    private Fp16() {}

    /** The half-precision bit pattern nearest to {@code f} (round to nearest even). */
    public static short fromFloat(float f) {
        int x = Float.floatToRawIntBits(f);
        int sign = (x >>> 16) & 0x8000;
        int abs = x & 0x7fffffff;
        if (abs >= 0x7f800000) {
            if (abs == 0x7f800000) {
                return (short) (sign | 0x7c00);
            }
            return (short) (sign | 0x7e00 | ((abs >>> 13) & 0x3ff));
        }
        if (abs >= 0x47800000) { // >= 65536: beyond the largest half even after rounding
            return (short) (sign | 0x7c00);
        }
        int e = abs >>> 23;
        if (e < 113) { // below the smallest normal half (2^-14): subnormal result in units of 2^-24
            if (e < 102) { // < 2^-25: rounds to zero
                return (short) sign;
            }
            int m = (abs & 0x7fffff) | 0x800000;
            int shift = 126 - e; // 14..24
            int q = m >>> shift;
            int rem = m & ((1 << shift) - 1);
            int half = 1 << (shift - 1);
            if (rem > half || (rem == half && (q & 1) != 0)) {
                q++;
            }
            return (short) (sign | q);
        }
        int h = ((e - 112) << 10) | ((abs >>> 13) & 0x3ff);
        int rem = abs & 0x1fff;
        if (rem > 0x1000 || (rem == 0x1000 && (h & 1) != 0)) {
            h++; // a carry into the exponent is the correct result, up to infinity
        }
        return (short) (sign | h);
    }

    /** The exact float value of a half bit pattern. */
    public static float toFloat(short half) {
        int h = half & 0xffff;
        int sign = (h & 0x8000) << 16;
        int exp = (h >>> 10) & 0x1f;
        int mant = h & 0x3ff;
        if (exp == 0) {
            if (mant == 0) {
                return Float.intBitsToFloat(sign);
            }
            float v = mant * 0x1p-24f; // exact: subnormal halves are multiples of 2^-24
            return sign == 0 ? v : -v;
        }
        if (exp == 0x1f) {
            return Float.intBitsToFloat(sign | 0x7f800000 | (mant << 13));
        }
        return Float.intBitsToFloat(sign | ((exp + 112) << 23) | (mant << 13));
    }

    /** Rounds a float through half precision and back: what an fp16 scale field really holds. */
    public static float round(float f) {
        return toFloat(fromFloat(f));
    }

    /** bfloat16 bits of {@code f} as ggml_compute_fp32_to_bf16: round to nearest even, NaN forced quiet. */
    public static short bf16FromFloat(float f) {
        int x = Float.floatToRawIntBits(f);
        if ((x & 0x7fffffff) > 0x7f800000) {
            return (short) ((x >>> 16) | 64);
        }
        return (short) ((x + (0x7fff + ((x >>> 16) & 1))) >>> 16);
    }

    public static float bf16ToFloat(short bf16) {
        return Float.intBitsToFloat((bf16 & 0xffff) << 16);
    }
}
