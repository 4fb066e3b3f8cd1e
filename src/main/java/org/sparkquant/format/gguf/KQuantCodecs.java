package org.sparkquant.format.gguf;

import static org.sparkquant.format.gguf.QuantMath.GROUP_MAX_EPS;
import static org.sparkquant.format.gguf.QuantMath.makeQ3Quants;
import static org.sparkquant.format.gguf.QuantMath.makeQkx2Quants;
import static org.sparkquant.format.gguf.QuantMath.makeQkx3Quants;
import static org.sparkquant.format.gguf.QuantMath.makeQpQuants;
import static org.sparkquant.format.gguf.QuantMath.makeQxQuants;
import static org.sparkquant.format.gguf.QuantMath.nearestInt;

import java.util.Arrays;

import org.sparkquant.io.Half;

/**
 * The 256-element k-quant super-blocks Q2_K … Q6_K (ggml-common.h layouts; ggml-quants.c {@code quantize_row_*_ref}
 * without and {@code quantize_row_*_impl} with an importance matrix). Every one chooses per-sub-block scales, codes
 * them under an fp16 super-scale, then re-quantizes all elements with the final (rounded) scales.
 */
final class KQuantCodecs {
    private KQuantCodecs() {}

    static final int QK_K = GgmlType.QK_K;

    /** Sum of squares of the super-block, in ggml's summation order. */
    static float sumSquares(float[] x, int xo) {
        float s = 0;
        for (int j = 0; j < QK_K; j++) {
            s += x[xo + j] * x[xo + j];
        }
        return s;
    }

    /** 2-bit fields: per 128 elements, byte l of 32 holds elements l, l+32, l+64, l+96. */
    static void pack2Bit(int[] c, int co, byte[] dst, int off) {
        for (int j = 0; j < QK_K; j += 128) {
            for (int l = 0; l < 32; ++l) {
                dst[off + j / 4 + l] = (byte) ((c[co + j + l] & 3) | ((c[co + j + l + 32] & 3) << 2)
                        | ((c[co + j + l + 64] & 3) << 4) | ((c[co + j + l + 96] & 3) << 6));
            }
        }
    }

    /** The low 2 bits of element j (0..255) from 2-bit packed fields. */
    static int twoBits(byte[] src, int off, int j) {
        int chunk = j / 128;
        int r = j % 128;
        return (src[off + chunk * 32 + (r % 32)] >> (2 * (r / 32))) & 3;
    }

    // ---------------------------------------------------------------------------------------------- Q2_K

    /** Q2_K (84 bytes): scales[16] (low nibble scale, high nibble min), qs[64], d, dmin; x = d·sc·q − dmin·m. */
    static final class Q2K extends BlockCodec {
        Q2K() {
            super(GgmlType.Q2_K, 16, 3);
        }

        @Override
        void chooseScales(float[] x, int xo, float[] imp, int io, float rowSigma2, BlockState st) {
            int[] codes = st.searchCodes;
            if (imp == null) {
                float maxScale = 0;
                float maxMin = 0;
                for (int j = 0; j < 16; ++j) {
                    for (int l = 0; l < 16; ++l) {
                        st.weights[l] = Math.abs(x[xo + 16 * j + l]);
                    }
                    st.scales[j] = makeQkx2Quants(16, 3, x, xo + 16 * j, st.weights, 0, codes, 16 * j, st.mins, j,
                            st.aux, -0.5f, 0.1f, 15, true);
                    if (st.scales[j] > maxScale) {
                        maxScale = st.scales[j];
                    }
                    if (st.mins[j] > maxMin) {
                        maxMin = st.mins[j];
                    }
                }
                if (maxScale > 0) {
                    float iscale = 15.f / maxScale;
                    for (int j = 0; j < 16; ++j) {
                        st.scaleBytes[j] = (byte) nearestInt(iscale * st.scales[j]);
                    }
                    st.d = Half.fromFloat(maxScale / 15.f);
                } else {
                    Arrays.fill(st.scaleBytes, 0, 16, (byte) 0);
                    st.d = Half.fromFloat(0.f);
                }
                if (maxMin > 0) {
                    float iscale = 15.f / maxMin;
                    for (int j = 0; j < 16; ++j) {
                        int l = nearestInt(iscale * st.mins[j]);
                        st.scaleBytes[j] = (byte) (st.scaleBytes[j] | (l << 4));
                    }
                    st.dmin = Half.fromFloat(maxMin / 15.f);
                } else {
                    st.dmin = Half.fromFloat(0.f);
                }
            } else {
                float sigma2 = sumSquares(x, xo) / QK_K;
                for (int j = 0; j < 16; ++j) {
                    st.sw[j] = 0;
                    for (int l = 0; l < 16; ++l) {
                        float v = x[xo + 16 * j + l];
                        st.weights[l] = imp[io + 16 * j + l] * (float) Math.sqrt(sigma2 + v * v);
                    }
                    for (int l = 0; l < 16; ++l) {
                        st.sw[j] += st.weights[l];
                    }
                    st.scales[j] = makeQkx3Quants(16, 3, x, xo + 16 * j, st.weights, 0, codes, 16 * j, st.mins, j,
                            st.aux, -0.9f, 0.05f, 36, false);
                }
                float dm = makeQpQuants(16, 15, st.scales, st.ls, st.sw);
                float mm = makeQpQuants(16, 15, st.mins, st.lm, st.sw);
                st.d = Half.fromFloat(dm);
                st.dmin = Half.fromFloat(mm);
                for (int j = 0; j < 16; ++j) {
                    st.scaleBytes[j] = (byte) (st.ls[j] | (st.lm[j] << 4));
                }
            }
            float d = Half.toFloat(st.d);
            float dmin = Half.toFloat(st.dmin);
            for (int j = 0; j < 16; ++j) {
                int sc = st.scaleBytes[j] & 0xff;
                st.step[j] = d * (sc & 0xf);
                st.offset[j] = dmin * (sc >>> 4);
            }
        }

        @Override
        int quantizeElement(BlockState st, int j, float x) {
            float d = st.step[j / 16];
            if (d == 0) {
                return st.searchCodes[j];
            }
            return clamp(nearestInt((x + st.offset[j / 16]) / d), 0, 3);
        }

        @Override
        float dequantizeElement(BlockState st, int j, int q) {
            return st.step[j / 16] * q - st.offset[j / 16];
        }

        @Override
        void pack(BlockState st, int[] c, int co, byte[] dst, int off) {
            System.arraycopy(st.scaleBytes, 0, dst, off, 16);
            pack2Bit(c, co, dst, off + 16);
            putShort(dst, off + 80, st.d);
            putShort(dst, off + 82, st.dmin);
        }

        @Override
        void dequantize(byte[] src, int off, float[] y, int yo) {
            float d = half(src, off + 80);
            float min = half(src, off + 82);
            for (int j = 0; j < QK_K; j++) {
                int sc = src[off + j / 16] & 0xff;
                float dl = d * (sc & 0xf);
                float ml = min * (sc >>> 4);
                y[yo + j] = dl * twoBits(src, off + 16, j) - ml;
            }
        }
    }

    // ---------------------------------------------------------------------------------------------- Q3_K

    /** 6-bit scale code j of Q3_K: low nibble in scales[j] (j < 8) or high nibble of scales[j−8], top bits in 8..11. */
    static int q3Scale(byte[] s, int so, int j) {
        int low = j < 8 ? s[so + j] & 0xf : (s[so + j - 8] & 0xff) >>> 4;
        int high = ((s[so + 8 + j % 4] & 0xff) >>> (2 * (j / 4))) & 3;
        return low | (high << 4);
    }

    static void putQ3Scales(int[] codes, byte[] s) {
        Arrays.fill(s, 0, 12, (byte) 0);
        for (int j = 0; j < 16; ++j) {
            int l = codes[j];
            if (j < 8) {
                s[j] = (byte) (l & 0xf);
            } else {
                s[j - 8] = (byte) (s[j - 8] | ((l & 0xf) << 4));
            }
            l >>= 4;
            s[j % 4 + 8] = (byte) (s[j % 4 + 8] | (l << (2 * (j / 4))));
        }
    }

    /** Q3_K (110 bytes): hmask[32], qs[64], 6-bit scales[12], d; x = d·(sc − 32)·(q − 4), q = low 2 bits + 4·hbit. */
    static final class Q3K extends BlockCodec {
        Q3K() {
            super(GgmlType.Q3_K, 16, 7);
        }

        @Override
        void chooseScales(float[] x, int xo, float[] imp, int io, float rowSigma2, BlockState st) {
            int[] codes = st.searchCodes;
            if (imp == null) {
                float maxScale = 0;
                float amax = 0;
                for (int j = 0; j < 16; ++j) {
                    st.scales[j] = makeQ3Quants(16, 4, x, xo + 16 * j, codes, 16 * j);
                    float scale = Math.abs(st.scales[j]);
                    if (scale > amax) {
                        amax = scale;
                        maxScale = st.scales[j];
                    }
                }
                if (maxScale != 0) {
                    float iscale = -32.f / maxScale;
                    for (int j = 0; j < 16; ++j) {
                        int l = (byte) nearestInt(iscale * st.scales[j]);
                        st.ls[j] = Math.max(-32, Math.min(31, l)) + 32;
                    }
                    putQ3Scales(st.ls, st.scaleBytes);
                    st.d = Half.fromFloat(1 / iscale);
                } else {
                    Arrays.fill(st.scaleBytes, 0, 12, (byte) 0);
                    st.d = Half.fromFloat(0.f);
                }
            } else {
                float sigma2 = 2 * sumSquares(x, xo) / QK_K;
                for (int j = 0; j < 16; ++j) {
                    for (int l = 0; l < 16; ++l) {
                        float v = x[xo + 16 * j + l];
                        st.weights[l] = imp[io + 16 * j + l] * (float) Math.sqrt(sigma2 + v * v);
                    }
                    float sumw = 0;
                    for (int l = 0; l < 16; ++l) {
                        sumw += st.weights[l];
                    }
                    st.sw[j] = sumw;
                    st.scales[j] = makeQxQuants(16, 4, x, xo + 16 * j, codes, 16 * j, 1, st.weights, 0);
                }
                float dBlock = makeQxQuants(16, 32, st.scales, 0, st.ls, 0, 1, st.sw, 0);
                putQ3Scales(st.ls, st.scaleBytes);
                st.d = Half.fromFloat(dBlock);
            }
            float d = Half.toFloat(st.d);
            for (int j = 0; j < 16; ++j) {
                st.step[j] = d * (q3Scale(st.scaleBytes, 0, j) - 32);
                st.offset[j] = 0;
            }
        }

        @Override
        int quantizeElement(BlockState st, int j, float x) {
            float d = st.step[j / 16];
            if (d == 0) {
                return st.searchCodes[j];
            }
            return clamp(nearestInt(x / d), -4, 3) + 4;
        }

        @Override
        float dequantizeElement(BlockState st, int j, int q) {
            return st.step[j / 16] * (q - 4);
        }

        @Override
        void pack(BlockState st, int[] c, int co, byte[] dst, int off) {
            Arrays.fill(dst, off, off + 32, (byte) 0);
            for (int j = 0; j < QK_K; ++j) {
                if (c[co + j] > 3) {
                    dst[off + j % 32] = (byte) (dst[off + j % 32] | (1 << (j / 32)));
                }
            }
            for (int j = 0; j < QK_K; j += 128) {
                for (int l = 0; l < 32; ++l) {
                    dst[off + 32 + j / 4 + l] = (byte) ((low2(c[co + j + l])) | (low2(c[co + j + l + 32]) << 2)
                            | (low2(c[co + j + l + 64]) << 4) | (low2(c[co + j + l + 96]) << 6));
                }
            }
            System.arraycopy(st.scaleBytes, 0, dst, off + 96, 12);
            putShort(dst, off + 108, st.d);
        }

        /** The code without its high bit, as ggml stores it after moving the bit to hmask. */
        private static int low2(int q) {
            return (q > 3 ? q - 4 : q) & 3;
        }

        @Override
        void dequantize(byte[] src, int off, float[] y, int yo) {
            float dAll = half(src, off + 108);
            for (int j = 0; j < QK_K; j++) {
                float dl = dAll * (q3Scale(src, off + 96, j / 16) - 32);
                int hbit = (src[off + j % 32] >> (j / 32)) & 1;
                y[yo + j] = dl * (twoBits(src, off + 32, j) - (hbit != 0 ? 0 : 4));
            }
        }
    }

    // ---------------------------------------------------------------------------------------------- Q4_K, Q5_K

    /** get_scale_min_k4: the 6-bit scale (which=0) or min (which=1) of sub-block j from the 12 packed bytes. */
    static int scaleMinK4(byte[] q, int qo, int j, int which) {
        if (j < 4) {
            return q[qo + j + 4 * which] & 63;
        }
        if (which == 0) {
            return (q[qo + j + 4] & 0xf) | (((q[qo + j - 4] & 0xff) >>> 6) << 4);
        }
        return ((q[qo + j + 4] & 0xff) >>> 4) | (((q[qo + j] & 0xff) >>> 6) << 4);
    }

    static void putScaleMinK4(int[] ls, int[] lm, byte[] s) {
        for (int j = 0; j < 8; ++j) {
            int a = ls[j] & 0xff;
            int b = lm[j] & 0xff;
            if (j < 4) {
                s[j] = (byte) a;
                s[j + 4] = (byte) b;
            } else {
                s[j + 4] = (byte) ((a & 0xf) | ((b & 0xf) << 4));
                s[j - 4] = (byte) (s[j - 4] | ((a >>> 4) << 6));
                s[j] = (byte) (s[j] | ((b >>> 4) << 6));
            }
        }
    }

    /** Q4_K/Q5_K scale choice: 8 sub-blocks of 32 with a 6-bit scale and min each under fp16 d and dmin. */
    abstract static class K45 extends BlockCodec {
        private final float rmin;
        private final int nstep;
        private final boolean clampWeighted;

        K45(GgmlType type, int maxCode, float rmin, int nstep, boolean clampWeighted) {
            super(type, 32, maxCode);
            this.rmin = rmin;
            this.nstep = nstep;
            this.clampWeighted = clampWeighted;
        }

        @Override
        void chooseScales(float[] x, int xo, float[] imp, int io, float rowSigma2, BlockState st) {
            int[] codes = st.searchCodes;
            if (imp == null) {
                float maxScale = 0;
                float maxMin = 0;
                for (int j = 0; j < 8; ++j) {
                    float sumX2 = 0;
                    for (int l = 0; l < 32; ++l) {
                        sumX2 += x[xo + 32 * j + l] * x[xo + 32 * j + l];
                    }
                    float avX = (float) Math.sqrt(sumX2 / 32);
                    for (int l = 0; l < 32; ++l) {
                        st.weights[l] = avX + Math.abs(x[xo + 32 * j + l]);
                    }
                    st.scales[j] = makeQkx2Quants(32, maxCode, x, xo + 32 * j, st.weights, 0, codes, 32 * j, st.mins,
                            j, st.aux, rmin, 0.1f, nstep, false);
                    if (st.scales[j] > maxScale) {
                        maxScale = st.scales[j];
                    }
                    if (st.mins[j] > maxMin) {
                        maxMin = st.mins[j];
                    }
                }
                float invScale = maxScale > 0 ? 63.f / maxScale : 0.f;
                float invMin = maxMin > 0 ? 63.f / maxMin : 0.f;
                for (int j = 0; j < 8; ++j) {
                    st.ls[j] = Math.min(63, nearestInt(invScale * st.scales[j]) & 0xff);
                    st.lm[j] = Math.min(63, nearestInt(invMin * st.mins[j]) & 0xff);
                }
                putScaleMinK4(st.ls, st.lm, st.scaleBytes);
                st.d = Half.fromFloat(maxScale / 63.f);
                st.dmin = Half.fromFloat(maxMin / 63.f);
            } else {
                float sigma2 = 2 * sumSquares(x, xo) / QK_K;
                for (int j = 0; j < 8; ++j) {
                    for (int l = 0; l < 32; ++l) {
                        float v = x[xo + 32 * j + l];
                        st.weights[l] = imp[io + 32 * j + l] * (float) Math.sqrt(sigma2 + v * v);
                    }
                    float sumw = 0;
                    for (int l = 0; l < 32; ++l) {
                        sumw += st.weights[l];
                    }
                    st.sw[j] = sumw;
                    st.scales[j] = makeQkx3Quants(32, maxCode, x, xo + 32 * j, st.weights, 0, codes, 32 * j, st.mins,
                            j, st.aux, -0.9f, 0.05f, 36, false);
                }
                float dBlock = makeQpQuants(8, 63, st.scales, st.ls, st.sw);
                float mBlock = makeQpQuants(8, 63, st.mins, st.lm, st.sw);
                if (clampWeighted) { // ggml's Q5_K path clamps to 63, its Q4_K path does not
                    for (int j = 0; j < 8; ++j) {
                        st.ls[j] = Math.min(63, st.ls[j]);
                        st.lm[j] = Math.min(63, st.lm[j]);
                    }
                }
                putScaleMinK4(st.ls, st.lm, st.scaleBytes);
                st.d = Half.fromFloat(dBlock);
                st.dmin = Half.fromFloat(mBlock);
            }
            float d = Half.toFloat(st.d);
            float dmin = Half.toFloat(st.dmin);
            for (int j = 0; j < 8; ++j) {
                st.step[j] = d * scaleMinK4(st.scaleBytes, 0, j, 0);
                st.offset[j] = dmin * scaleMinK4(st.scaleBytes, 0, j, 1);
            }
        }

        @Override
        int quantizeElement(BlockState st, int j, float x) {
            float d = st.step[j / 32];
            if (d == 0) {
                return st.searchCodes[j];
            }
            return clamp(nearestInt((x + st.offset[j / 32]) / d), 0, maxCode);
        }

        @Override
        float dequantizeElement(BlockState st, int j, int q) {
            return st.step[j / 32] * q - st.offset[j / 32];
        }
    }

    /** Q4_K (144 bytes): d, dmin, scales[12], qs[128]; per 64 elements byte l holds l (low) and l+32 (high nibble). */
    static final class Q4K extends K45 {
        Q4K() {
            super(GgmlType.Q4_K, 15, -1.f, 20, false);
        }

        @Override
        void pack(BlockState st, int[] c, int co, byte[] dst, int off) {
            putShort(dst, off, st.d);
            putShort(dst, off + 2, st.dmin);
            System.arraycopy(st.scaleBytes, 0, dst, off + 4, 12);
            for (int j = 0; j < QK_K; j += 64) {
                for (int l = 0; l < 32; ++l) {
                    dst[off + 16 + j / 2 + l] = (byte) (c[co + j + l] | (c[co + j + l + 32] << 4));
                }
            }
        }

        @Override
        void dequantize(byte[] src, int off, float[] y, int yo) {
            float d = half(src, off);
            float min = half(src, off + 2);
            for (int j = 0; j < QK_K; j += 64) {
                int is = j / 32;
                float d1 = d * scaleMinK4(src, off + 4, is, 0);
                float m1 = min * scaleMinK4(src, off + 4, is, 1);
                float d2 = d * scaleMinK4(src, off + 4, is + 1, 0);
                float m2 = min * scaleMinK4(src, off + 4, is + 1, 1);
                for (int l = 0; l < 32; ++l) {
                    int b = src[off + 16 + j / 2 + l] & 0xff;
                    y[yo + j + l] = d1 * (b & 0xf) - m1;
                    y[yo + j + 32 + l] = d2 * (b >>> 4) - m2;
                }
            }
        }
    }

    /** Q5_K (176 bytes): d, dmin, scales[12], qh[32], qs[128]; the 5th bit of 64k+l is qh[l] bit 2k, of 64k+32+l bit 2k+1. */
    static final class Q5K extends K45 {
        Q5K() {
            super(GgmlType.Q5_K, 31, -0.5f, 15, true);
        }

        @Override
        void pack(BlockState st, int[] c, int co, byte[] dst, int off) {
            putShort(dst, off, st.d);
            putShort(dst, off + 2, st.dmin);
            System.arraycopy(st.scaleBytes, 0, dst, off + 4, 12);
            Arrays.fill(dst, off + 16, off + 48, (byte) 0);
            int m1 = 1;
            int m2 = 2;
            for (int n = 0; n < QK_K; n += 64) {
                for (int j = 0; j < 32; ++j) {
                    int l1 = c[co + n + j];
                    if (l1 > 15) {
                        l1 -= 16;
                        dst[off + 16 + j] = (byte) (dst[off + 16 + j] | m1);
                    }
                    int l2 = c[co + n + j + 32];
                    if (l2 > 15) {
                        l2 -= 16;
                        dst[off + 16 + j] = (byte) (dst[off + 16 + j] | m2);
                    }
                    dst[off + 48 + n / 2 + j] = (byte) (l1 | (l2 << 4));
                }
                m1 <<= 2;
                m2 <<= 2;
            }
        }

        @Override
        void dequantize(byte[] src, int off, float[] y, int yo) {
            float d = half(src, off);
            float min = half(src, off + 2);
            int u1 = 1;
            int u2 = 2;
            for (int j = 0; j < QK_K; j += 64) {
                int is = j / 32;
                float d1 = d * scaleMinK4(src, off + 4, is, 0);
                float m1 = min * scaleMinK4(src, off + 4, is, 1);
                float d2 = d * scaleMinK4(src, off + 4, is + 1, 0);
                float m2 = min * scaleMinK4(src, off + 4, is + 1, 1);
                for (int l = 0; l < 32; ++l) {
                    int b = src[off + 48 + j / 2 + l] & 0xff;
                    int h = src[off + 16 + l] & 0xff;
                    y[yo + j + l] = d1 * ((b & 0xf) + ((h & u1) != 0 ? 16 : 0)) - m1;
                    y[yo + j + 32 + l] = d2 * ((b >>> 4) + ((h & u2) != 0 ? 16 : 0)) - m2;
                }
                u1 <<= 2;
                u2 <<= 2;
            }
        }
    }

    // ---------------------------------------------------------------------------------------------- Q6_K

    /** Q6_K (210 bytes): ql[128], qh[64], int8 scales[16], d; x = d·sc·(q − 32) over 16 sub-blocks of 16. */
    static final class Q6K extends BlockCodec {
        Q6K() {
            super(GgmlType.Q6_K, 16, 63);
        }

        @Override
        void chooseScales(float[] x, int xo, float[] imp, int io, float rowSigma2, BlockState st) {
            int[] codes = st.searchCodes;
            float maxScale = 0;
            float maxAbsScale = 0;
            for (int ib = 0; ib < 16; ++ib) {
                float scale = makeQxQuants(16, 32, x, xo + 16 * ib, codes, 16 * ib, 1, imp,
                        imp == null ? 0 : io + 16 * ib);
                st.scales[ib] = scale;
                float abs = Math.abs(scale);
                if (abs > maxAbsScale) {
                    maxAbsScale = abs;
                    maxScale = scale;
                }
            }
            if (maxAbsScale < GROUP_MAX_EPS) { // ggml zeroes the whole block
                Arrays.fill(codes, 0, QK_K, 0);
                Arrays.fill(st.scaleBytes, 0, 16, (byte) 0);
                st.d = Half.fromFloat(0.f);
            } else {
                float iscale = -128.f / maxScale;
                st.d = Half.fromFloat(1 / iscale);
                for (int ib = 0; ib < 16; ++ib) {
                    st.scaleBytes[ib] = (byte) Math.min(127, nearestInt(iscale * st.scales[ib]));
                }
            }
            float d = Half.toFloat(st.d);
            for (int j = 0; j < 16; ++j) {
                st.step[j] = d * st.scaleBytes[j];
                st.offset[j] = 0;
            }
        }

        @Override
        int quantizeElement(BlockState st, int j, float x) {
            float d = st.step[j / 16];
            if (d == 0) {
                return st.searchCodes[j];
            }
            return clamp(nearestInt(x / d), -32, 31) + 32;
        }

        @Override
        float dequantizeElement(BlockState st, int j, int q) {
            return st.step[j / 16] * (q - 32);
        }

        @Override
        void pack(BlockState st, int[] c, int co, byte[] dst, int off) {
            for (int j = 0; j < QK_K; j += 128) {
                int ql = off + j / 2;
                int qh = off + 128 + j / 4;
                for (int l = 0; l < 32; ++l) {
                    int a = c[co + j + l];
                    int b = c[co + j + l + 32];
                    int e = c[co + j + l + 64];
                    int f = c[co + j + l + 96];
                    dst[ql + l] = (byte) ((a & 0xf) | ((e & 0xf) << 4));
                    dst[ql + l + 32] = (byte) ((b & 0xf) | ((f & 0xf) << 4));
                    dst[qh + l] = (byte) ((a >> 4) | ((b >> 4) << 2) | ((e >> 4) << 4) | ((f >> 4) << 6));
                }
            }
            System.arraycopy(st.scaleBytes, 0, dst, off + 192, 16);
            putShort(dst, off + 208, st.d);
        }

        @Override
        void dequantize(byte[] src, int off, float[] y, int yo) {
            float d = half(src, off + 208);
            for (int n = 0; n < QK_K; n += 128) {
                int ql = off + n / 2;
                int qh = off + 128 + n / 4;
                int sc = off + 192 + n / 16;
                for (int l = 0; l < 32; ++l) {
                    int is = l / 16;
                    int h = src[qh + l] & 0xff;
                    int lo0 = src[ql + l] & 0xff;
                    int lo1 = src[ql + l + 32] & 0xff;
                    int q1 = ((lo0 & 0xf) | (((h >> 0) & 3) << 4)) - 32;
                    int q2 = ((lo1 & 0xf) | (((h >> 2) & 3) << 4)) - 32;
                    int q3 = ((lo0 >> 4) | (((h >> 4) & 3) << 4)) - 32;
                    int q4 = ((lo1 >> 4) | (((h >> 6) & 3) << 4)) - 32;
                    y[yo + n + l] = d * src[sc + is] * q1;
                    y[yo + n + l + 32] = d * src[sc + is + 2] * q2;
                    y[yo + n + l + 64] = d * src[sc + is + 4] * q3;
                    y[yo + n + l + 96] = d * src[sc + is + 6] * q4;
                }
            }
        }
    }
}
