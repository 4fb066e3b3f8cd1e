package org.sparkquant.format.gguf;

import static org.sparkquant.format.gguf.QuantMath.makeQkx3Quants;
import static org.sparkquant.format.gguf.QuantMath.makeQxQuants;
import static org.sparkquant.format.gguf.QuantMath.nearestInt;
import static org.sparkquant.format.gguf.QuantMath.roundf;
import static org.sparkquant.format.gguf.QuantMath.truncToInt;

import org.sparkquant.io.Half;

/**
 * The 32-element formats Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 (ggml-common.h layouts, ggml-quants.c reference quantizers).
 * Element j of a block is stored in nibble/bit position j for j < 16 and j − 16 of the high half otherwise.
 */
final class LegacyCodecs {
    private LegacyCodecs() {}

    /** A C float-to-small-int conversion; an invalid one (NaN, ±inf) yields x86's INT_MIN, whose low byte is 0. */
    static int cvt(float f) {
        int v = truncToInt(f);
        return v == Integer.MIN_VALUE ? 0 : v;
    }

    /** Weights of the importance-weighted 32-element quantizers: imatrix · sqrt(σ²_row + x²). */
    static void importanceWeights(float[] x, int xo, float[] imp, int io, float sigma2, float[] w) {
        for (int j = 0; j < 32; j++) {
            float v = x[xo + j];
            w[j] = imp[io + j] * (float) Math.sqrt(sigma2 + v * v);
        }
    }

    /** Symmetric formats: x = d·(q − zero), d stored as fp16 at offset 0. */
    abstract static class Symmetric extends BlockCodec {
        final int zero;

        Symmetric(GgmlType type, int maxCode, int zero) {
            super(type, 32, maxCode);
            this.zero = zero;
        }

        @Override
        void chooseScales(float[] x, int xo, float[] imp, int io, float rowSigma2, BlockState st) {
            if (imp != null) {
                importanceWeights(x, xo, imp, io, rowSigma2, st.weights);
                float d = makeQxQuants(32, zero, x, xo, st.searchCodes, 0, 1, st.weights, 0);
                st.d = Half.fromFloat(d);
                st.inverse = 0;
                st.packSearchCodes = true;
            } else {
                float amax = 0;
                float max = 0;
                for (int j = 0; j < 32; j++) {
                    float v = x[xo + j];
                    if (amax < Math.abs(v)) {
                        amax = Math.abs(v);
                        max = v;
                    }
                }
                float d = max / -zero;
                st.inverse = d != 0 ? 1.0f / d : 0.0f;
                st.d = Half.fromFloat(d);
                st.packSearchCodes = false;
            }
            st.step[0] = Half.toFloat(st.d);
            st.offset[0] = 0;
        }

        @Override
        int quantizeElement(BlockState st, int j, float x) {
            if (st.packSearchCodes) {
                // weighted path: ggml keeps the search codes; for new values round with the stored scale
                float d = st.step[0];
                return d == 0 ? st.searchCodes[j] : clamp(nearestInt(x / d) + zero, 0, maxCode);
            }
            return clamp(cvt(x * st.inverse + (zero + 0.5f)), 0, maxCode);
        }

        @Override
        float dequantizeElement(BlockState st, int j, int q) {
            return (q - zero) * st.step[0];
        }
    }

    /** Affine formats: x = d·q + m, d and m stored as fp16 at offsets 0 and 2. */
    abstract static class Affine extends BlockCodec {
        Affine(GgmlType type, int maxCode) {
            super(type, 32, maxCode);
        }

        @Override
        void chooseScales(float[] x, int xo, float[] imp, int io, float rowSigma2, BlockState st) {
            if (imp != null) {
                importanceWeights(x, xo, imp, io, rowSigma2, st.weights);
                float d = makeQkx3Quants(32, maxCode, x, xo, st.weights, 0, st.searchCodes, 0, st.mins, 0, st.aux,
                        -0.9f, 0.05f, 36, false);
                st.d = Half.fromFloat(d);
                st.dmin = Half.fromFloat(-st.mins[0]);
                st.packSearchCodes = true;
            } else {
                float min = Float.MAX_VALUE;
                float max = -Float.MAX_VALUE;
                for (int j = 0; j < 32; j++) {
                    float v = x[xo + j];
                    if (v < min) {
                        min = v;
                    }
                    if (v > max) {
                        max = v;
                    }
                }
                float d = (max - min) / maxCode;
                st.inverse = d != 0 ? 1.0f / d : 0.0f;
                st.min = min;
                st.d = Half.fromFloat(d);
                st.dmin = Half.fromFloat(min);
                st.packSearchCodes = false;
            }
            st.step[0] = Half.toFloat(st.d);
            st.offset[0] = -Half.toFloat(st.dmin);
        }

        @Override
        int quantizeElement(BlockState st, int j, float x) {
            if (st.packSearchCodes) {
                float d = st.step[0];
                return d == 0 ? st.searchCodes[j] : clamp(nearestInt((x + st.offset[0]) / d), 0, maxCode);
            }
            return clamp(cvt((x - st.min) * st.inverse + 0.5f), 0, maxCode);
        }

        @Override
        float dequantizeElement(BlockState st, int j, int q) {
            return q * st.step[0] + Half.toFloat(st.dmin);
        }
    }

    static final class Q4_0 extends Symmetric {
        Q4_0() {
            super(GgmlType.Q4_0, 15, 8);
        }

        @Override
        void pack(BlockState st, int[] c, int co, byte[] dst, int off) {
            putShort(dst, off, st.d);
            for (int j = 0; j < 16; j++) {
                dst[off + 2 + j] = (byte) (c[co + j] | (c[co + j + 16] << 4));
            }
        }

        @Override
        void dequantize(byte[] src, int off, float[] y, int yo) {
            float d = half(src, off);
            for (int j = 0; j < 16; j++) {
                int b = src[off + 2 + j] & 0xff;
                y[yo + j] = ((b & 0x0f) - 8) * d;
                y[yo + j + 16] = ((b >>> 4) - 8) * d;
            }
        }
    }

    static final class Q5_0 extends Symmetric {
        Q5_0() {
            super(GgmlType.Q5_0, 31, 16);
        }

        @Override
        void pack(BlockState st, int[] c, int co, byte[] dst, int off) {
            putShort(dst, off, st.d);
            int qh = 0;
            for (int j = 0; j < 16; j++) {
                int a = c[co + j];
                int b = c[co + j + 16];
                dst[off + 6 + j] = (byte) ((a & 0x0f) | ((b & 0x0f) << 4));
                qh |= ((a & 0x10) >>> 4) << j;
                qh |= ((b & 0x10) >>> 4) << (j + 16);
            }
            putInt(dst, off + 2, qh);
        }

        @Override
        void dequantize(byte[] src, int off, float[] y, int yo) {
            float d = half(src, off);
            int qh = getInt(src, off + 2);
            for (int j = 0; j < 16; j++) {
                int b = src[off + 6 + j] & 0xff;
                int h0 = ((qh >>> j) << 4) & 0x10;
                int h1 = (qh >>> (j + 12)) & 0x10;
                y[yo + j] = (((b & 0x0f) | h0) - 16) * d;
                y[yo + j + 16] = (((b >>> 4) | h1) - 16) * d;
            }
        }
    }

    static final class Q4_1 extends Affine {
        Q4_1() {
            super(GgmlType.Q4_1, 15);
        }

        @Override
        void pack(BlockState st, int[] c, int co, byte[] dst, int off) {
            putShort(dst, off, st.d);
            putShort(dst, off + 2, st.dmin);
            for (int j = 0; j < 16; j++) {
                dst[off + 4 + j] = (byte) (c[co + j] | (c[co + j + 16] << 4));
            }
        }

        @Override
        void dequantize(byte[] src, int off, float[] y, int yo) {
            float d = half(src, off);
            float m = half(src, off + 2);
            for (int j = 0; j < 16; j++) {
                int b = src[off + 4 + j] & 0xff;
                y[yo + j] = (b & 0x0f) * d + m;
                y[yo + j + 16] = (b >>> 4) * d + m;
            }
        }
    }

    static final class Q5_1 extends Affine {
        Q5_1() {
            super(GgmlType.Q5_1, 31);
        }

        @Override
        void pack(BlockState st, int[] c, int co, byte[] dst, int off) {
            putShort(dst, off, st.d);
            putShort(dst, off + 2, st.dmin);
            int qh = 0;
            for (int j = 0; j < 16; j++) {
                int a = c[co + j];
                int b = c[co + j + 16];
                dst[off + 8 + j] = (byte) ((a & 0x0f) | ((b & 0x0f) << 4));
                qh |= ((a & 0x10) >>> 4) << j;
                qh |= ((b & 0x10) >>> 4) << (j + 16);
            }
            putInt(dst, off + 4, qh);
        }

        @Override
        void dequantize(byte[] src, int off, float[] y, int yo) {
            float d = half(src, off);
            float m = half(src, off + 2);
            int qh = getInt(src, off + 4);
            for (int j = 0; j < 16; j++) {
                int b = src[off + 8 + j] & 0xff;
                int h0 = ((qh >>> j) << 4) & 0x10;
                int h1 = (qh >>> (j + 12)) & 0x10;
                y[yo + j] = ((b & 0x0f) | h0) * d + m;
                y[yo + j + 16] = ((b >>> 4) | h1) * d + m;
            }
        }
    }

    /** Q8_0: x = d·q with signed 8-bit codes (the importance matrix is ignored, as in ggml). */
    static final class Q8_0 extends BlockCodec {
        Q8_0() {
            super(GgmlType.Q8_0, 32, 127);
        }

        @Override
        void chooseScales(float[] x, int xo, float[] imp, int io, float rowSigma2, BlockState st) {
            float amax = 0;
            for (int j = 0; j < 32; j++) {
                float a = Math.abs(x[xo + j]);
                amax = amax > a ? amax : a;
            }
            float d = amax / 127;
            st.inverse = d != 0 ? 1.0f / d : 0.0f;
            st.d = Half.fromFloat(d);
            st.step[0] = Half.toFloat(st.d);
            st.offset[0] = 0;
            st.packSearchCodes = false;
        }

        @Override
        int quantizeElement(BlockState st, int j, float x) {
            return clamp(cvt(roundf(x * st.inverse)), -128, 127);
        }

        @Override
        float dequantizeElement(BlockState st, int j, int q) {
            return q * st.step[0];
        }

        @Override
        void pack(BlockState st, int[] c, int co, byte[] dst, int off) {
            putShort(dst, off, st.d);
            for (int j = 0; j < 32; j++) {
                dst[off + 2 + j] = (byte) c[co + j];
            }
        }

        @Override
        void dequantize(byte[] src, int off, float[] y, int yo) {
            float d = half(src, off);
            for (int j = 0; j < 32; j++) {
                y[yo + j] = src[off + 2 + j] * d;
            }
        }
    }

    static void putInt(byte[] b, int off, int v) {
        b[off] = (byte) v;
        b[off + 1] = (byte) (v >>> 8);
        b[off + 2] = (byte) (v >>> 16);
        b[off + 3] = (byte) (v >>> 24);
    }

    static int getInt(byte[] b, int off) {
        return (b[off] & 0xff) | (b[off + 1] & 0xff) << 8 | (b[off + 2] & 0xff) << 16 | (b[off + 3] & 0xff) << 24;
    }
}
