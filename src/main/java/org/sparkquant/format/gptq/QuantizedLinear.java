package org.sparkquant.format.gptq;

import java.util.Arrays;

import org.sparkquant.io.Half;

/**
 * One GPTQ-quantized linear layer, independent of how it was produced: integer codes {@code q} [out][in], per-group
 * {@code scales} and {@code zeros} [G][out] (G = ceil(in / group_size), 1 for group_size −1), the group of each
 * input {@code g_idx} [in], and an optional bias [out]. The weight it stands for is
 * {@code W[n][k] = scale[g_idx[k]][n] · (q[n][k] − zero[g_idx[k]][n])} ({@link #dequantize}).
 *
 * <p>What is evaluated is what is stored: the checkpoint keeps scales and bias as fp16, so modules built with
 * {@link #builder} round both to fp16 (round to nearest even) on the way in, and {@code dequantize} of a freshly
 * quantized module equals {@code dequantize} of the module read back from its checkpoint, bit for bit. Modules read
 * from a checkpoint keep the stored values (AutoGPTQ may store scales in fp32 or bf16).
 *
 * <p>Codes are held as unsigned bytes (a quarter of an int array; 8-bit codes still fit). Instances are immutable:
 * the builder copies its inputs, accessors return copies of arrays.
 */
public final class QuantizedLinear {
    private final String name;
    private final int bits;
    private final int groupSize;
    private final boolean sym;
    private final int inFeatures;
    private final int outFeatures;
    private final byte[] codes;
    private final float[] scales;
    private final int[] zeros;
    private final int[] gIdx;
    private final float[] bias;

    /** Trusted: takes ownership of the arrays, which the caller has validated. */
    QuantizedLinear(String name, int bits, int groupSize, boolean sym, int inFeatures, int outFeatures, byte[] codes,
            float[] scales, int[] zeros, int[] gIdx, float[] bias) {
        this.name = name;
        this.bits = bits;
        this.groupSize = groupSize;
        this.sym = sym;
        this.inFeatures = inFeatures;
        this.outFeatures = outFeatures;
        this.codes = codes;
        this.scales = scales;
        this.zeros = zeros;
        this.gIdx = gIdx;
        this.bias = bias;
    }

    /** Number of groups of a layer with {@code inFeatures} inputs. */
    public static int groups(int inFeatures, int groupSize) {
        return groupSize == -1 ? 1 : (inFeatures + groupSize - 1) / groupSize;
    }

    /** The zero point of the symmetric quantizer: (maxq + 1) / 2, e.g. 8 at 4 bits. */
    public static int symmetricZero(int bits) {
        return 1 << (bits - 1);
    }

    /** {@code g_idx[k] = k / group_size}: the layout without act-order (and with static groups). */
    public static int[] sequentialGroups(int inFeatures, int groupSize) {
        int g = groupSize == -1 ? inFeatures : groupSize;
        int[] gIdx = new int[inFeatures];
        for (int k = 0; k < inFeatures; k++) {
            gIdx[k] = k / g;
        }
        return gIdx;
    }

    public static Builder builder(String name, int bits, int groupSize, boolean sym, int inFeatures, int outFeatures) {
        return new Builder(name, bits, groupSize, sym, inFeatures, outFeatures);
    }

    public String name() {
        return name;
    }

    public int bits() {
        return bits;
    }

    public int groupSize() {
        return groupSize;
    }

    public boolean sym() {
        return sym;
    }

    public int inFeatures() {
        return inFeatures;
    }

    public int outFeatures() {
        return outFeatures;
    }

    public int groups() {
        return groups(inFeatures, groupSize);
    }

    public int maxq() {
        return (1 << bits) - 1;
    }

    public int code(int n, int k) {
        return codes[n * inFeatures + k] & 0xff;
    }

    public float scale(int g, int n) {
        return scales[g * outFeatures + n];
    }

    public int zero(int g, int n) {
        return zeros[g * outFeatures + n];
    }

    public int gIdx(int k) {
        return gIdx[k];
    }

    public boolean hasBias() {
        return bias != null;
    }

    /** Codes [out][in] as unsigned bytes (a copy). */
    public byte[] codes() {
        return codes.clone();
    }

    /** Scales [G][out] (a copy). */
    public float[] scales() {
        return scales.clone();
    }

    /** Zeros [G][out] (a copy). */
    public int[] zeros() {
        return zeros.clone();
    }

    public int[] gIdx() {
        return gIdx.clone();
    }

    /** The bias [out] (a copy), or null. */
    public float[] bias() {
        return bias == null ? null : bias.clone();
    }

    /** Whether g_idx is k / group_size everywhere (no act-order permutation). */
    public boolean sequentialGroups() {
        int g = groupSize == -1 ? inFeatures : groupSize;
        for (int k = 0; k < inFeatures; k++) {
            if (gIdx[k] != k / g) {
                return false;
            }
        }
        return true;
    }

    byte[] codesRaw() {
        return codes;
    }

    float[] scalesRaw() {
        return scales;
    }

    int[] zerosRaw() {
        return zeros;
    }

    int[] gIdxRaw() {
        return gIdx;
    }

    float[] biasRaw() {
        return bias;
    }

    /** The dense weight [out][in], row-major, in float32 (exact: an fp16 scale times a small integer). */
    public float[] dequantize() {
        return dequantizeRows(0, outFeatures);
    }

    /** Output channels {@code [n0, n1)} of the dense weight, row-major [n1 − n0][in]. */
    public float[] dequantizeRows(int n0, int n1) {
        if (n0 < 0 || n1 < n0 || n1 > outFeatures) {
            throw new IllegalArgumentException("rows [" + n0 + ", " + n1 + ") outside [0, " + outFeatures + ")");
        }
        float[] w = new float[Math.multiplyExact(n1 - n0, inFeatures)];
        for (int n = n0; n < n1; n++) {
            int row = (n - n0) * inFeatures;
            int base = n * inFeatures;
            for (int k = 0; k < inFeatures; k++) {
                int at = gIdx[k] * outFeatures + n;
                w[row + k] = scales[at] * (float) ((codes[base + k] & 0xff) - zeros[at]);
            }
        }
        return w;
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof QuantizedLinear q && name.equals(q.name) && bits == q.bits && groupSize == q.groupSize
                && sym == q.sym && inFeatures == q.inFeatures && outFeatures == q.outFeatures
                && Arrays.equals(codes, q.codes) && Arrays.equals(scales, q.scales) && Arrays.equals(zeros, q.zeros)
                && Arrays.equals(gIdx, q.gIdx) && Arrays.equals(bias, q.bias);
    }

    @Override
    public int hashCode() {
        return name.hashCode() * 31 + Arrays.hashCode(scales);
    }

    @Override
    public String toString() {
        return name + " [" + outFeatures + ", " + inFeatures + "] " + bits + "-bit g" + groupSize
                + (sym ? " sym" : " asym");
    }

    /**
     * Assembles a module from blocks of output channels (what a column-blocked solver produces) or at once. Codes are
     * given per output channel ({@code [rows][in]}), scales and zeros per group ({@code [G][rows]}), the checkpoint's
     * orientation. g_idx defaults to k / group_size. Scales and bias are rounded to fp16 (see the class comment).
     */
    public static final class Builder {
        private final String name;
        private final int bits;
        private final int groupSize;
        private final boolean sym;
        private final int in;
        private final int out;
        private final int groups;
        private final byte[] codes;
        private final float[] scales;
        private final int[] zeros;
        private final boolean[] filled;
        private int[] gIdx;
        private float[] bias;
        private boolean built;

        private Builder(String name, int bits, int groupSize, boolean sym, int in, int out) {
            if (!GptqPacking.supported(bits)) {
                throw new IllegalArgumentException(name + ": bits " + bits + " is not supported (2, 3, 4, 8)");
            }
            if (groupSize != -1 && groupSize <= 0) {
                throw new IllegalArgumentException(name + ": group_size must be -1 or positive, got " + groupSize);
            }
            if (in <= 0 || out <= 0) {
                throw new IllegalArgumentException(name + ": shape [" + out + ", " + in + "] must be positive");
            }
            this.name = name;
            this.bits = bits;
            this.groupSize = groupSize;
            this.sym = sym;
            this.in = in;
            this.out = out;
            this.groups = QuantizedLinear.groups(in, groupSize);
            this.codes = new byte[Math.multiplyExact(in, out)];
            this.scales = new float[Math.multiplyExact(groups, out)];
            this.zeros = new int[Math.multiplyExact(groups, out)];
            this.filled = new boolean[out];
        }

        public int groups() {
            return groups;
        }

        /** The group of each input column; values in [0, G). */
        public Builder gIdx(int[] groupIndex) {
            if (groupIndex.length != in) {
                throw new IllegalArgumentException(name + ": g_idx has " + groupIndex.length + " entries, expected " + in);
            }
            for (int k = 0; k < in; k++) {
                if (groupIndex[k] < 0 || groupIndex[k] >= groups) {
                    throw new IllegalArgumentException(name + ": g_idx[" + k + "] = " + groupIndex[k] + " is outside [0, "
                            + groups + ")");
                }
            }
            this.gIdx = groupIndex.clone();
            return this;
        }

        public Builder bias(float[] values) {
            if (values == null) {
                this.bias = null;
                return this;
            }
            if (values.length != out) {
                throw new IllegalArgumentException(name + ": bias has " + values.length + " entries, expected " + out);
            }
            float[] b = new float[out];
            for (int n = 0; n < out; n++) {
                b[n] = fp16(values[n], "bias[" + n + "]");
            }
            this.bias = b;
            return this;
        }

        /**
         * Output channels {@code [n0, n0 + rows)}: codes [rows][in] in [0, 2^bits), scales and zeros [G][rows]; for
         * sym every zero must be 2^(bits−1).
         */
        public Builder rows(int n0, int rows, int[] blockCodes, float[] blockScales, int[] blockZeros) {
            if (n0 < 0 || rows < 0 || n0 + rows > out) {
                throw new IllegalArgumentException(name + ": rows [" + n0 + ", " + (n0 + rows) + ") outside [0, " + out
                        + ")");
            }
            if (blockCodes.length != (long) rows * in || blockScales.length != (long) groups * rows
                    || blockZeros.length != (long) groups * rows) {
                throw new IllegalArgumentException(name + ": a block of " + rows + " rows needs " + (long) rows * in
                        + " codes and " + (long) groups * rows + " scales and zeros; got " + blockCodes.length + ", "
                        + blockScales.length + ", " + blockZeros.length);
            }
            int maxq = (1 << bits) - 1;
            int mid = symmetricZero(bits);
            for (int r = 0; r < rows; r++) {
                int n = n0 + r;
                for (int k = 0; k < in; k++) {
                    int c = blockCodes[r * in + k];
                    if (c < 0 || c > maxq) {
                        throw new IllegalArgumentException(name + ": code " + c + " at [" + n + ", " + k
                                + "] is outside [0, " + maxq + "]");
                    }
                    codes[n * in + k] = (byte) c;
                }
                for (int g = 0; g < groups; g++) {
                    int z = blockZeros[g * rows + r];
                    if (z < 0 || z > maxq) {
                        throw new IllegalArgumentException(name + ": zero " + z + " of group " + g + ", channel " + n
                                + " is outside [0, " + maxq + "]");
                    }
                    if (sym && z != mid) {
                        throw new IllegalArgumentException(name + ": zero " + z + " of group " + g + ", channel " + n
                                + " is not " + mid + " as symmetric " + bits + "-bit quantization requires");
                    }
                    zeros[g * out + n] = z;
                    scales[g * out + n] = fp16(blockScales[g * rows + r], "scale of group " + g + ", channel " + n);
                }
                filled[n] = true;
            }
            return this;
        }

        /** All output channels at once: codes [out][in], scales and zeros [G][out]. */
        public Builder all(int[] allCodes, float[] allScales, int[] allZeros) {
            return rows(0, out, allCodes, allScales, allZeros);
        }

        public QuantizedLinear build() {
            if (built) {
                throw new IllegalStateException(name + ": already built");
            }
            for (int n = 0; n < out; n++) {
                if (!filled[n]) {
                    throw new IllegalStateException(name + ": output channel " + n + " was never set");
                }
            }
            built = true;
            int[] g = gIdx != null ? gIdx : sequentialGroups(in, groupSize);
            return new QuantizedLinear(name, bits, groupSize, sym, in, out, codes, scales, zeros, g, bias);
        }

        private float fp16(float v, String what) {
            if (!Float.isFinite(v)) {
                throw new IllegalArgumentException(name + ": " + what + " is " + v);
            }
            float h = Half.round(v);
            if (Float.isInfinite(h)) {
                throw new IllegalArgumentException(name + ": " + what + " = " + v + " overflows fp16");
            }
            return h;
        }
    }
}
