package org.sparkquant.gptq;

import java.io.Serializable;
import java.util.Arrays;
import java.util.List;
import org.sparkquant.SparkQuantException;

/**
 * Quantized output rows of one weight matrix W [rows, columns] (rows = output channels, columns = input), all in
 * the original column order, as the GPTQ loop or RTN produced them.
 *
 * @param rows        number of rows
 * @param columns     input columns K
 * @param bits        bits per code
 * @param groupSize   columns per group (K when the config said −1)
 * @param groups      G = ceil(K / groupSize)
 * @param codes       [rows][columns] unsigned codes 0..2^bits−1 (byte, read with {@code & 0xFF})
 * @param scales      [rows][G] group scales (float)
 * @param exactScales [rows][G] the scales the codes were made with: {@code scales} in FP32, the unrounded double
 *                    scales in FP64
 * @param zeros       [rows][G] integer zero points (v2 semantics: W = scale·(q − zero))
 * @param gIdx        [columns] group of each input column (non-monotone with act-order)
 * @param dequantized [rows][columns] exactScale·(q − zero), rounded to float: what replaces the layer weight. It is
 *                    not serialized: a serialized block (a staged one) holds the codes and parameters only, and is
 *                    dequantized again when read.
 * @param losses      [rows] GPTQ objective Σ (w−q)²/d²/2 per row, where d = U[i,i]; in exact arithmetic
 *                    2·loss = ΔW·H̃·ΔWᵀ for the damped Hessian H̃. NaN for RTN.
 */
public record QuantizedRows(int rows, int columns, int bits, int groupSize, int groups, byte[] codes,
                            float[] scales, double[] exactScales, int[] zeros, int[] gIdx, float[] dequantized,
                            double[] losses)
        implements QuantizedBlock {

    public QuantizedRows {
        if ((long) rows * columns != codes.length || (long) rows * columns != dequantized.length
                || (long) rows * groups != scales.length || (long) rows * groups != zeros.length
                || exactScales.length != scales.length
                || gIdx.length != columns || losses.length != rows) {
            throw new IllegalArgumentException("inconsistent QuantizedRows shapes");
        }
    }

    /** Code of row r, column c (0..2^bits−1). */
    public int code(int r, int c) {
        return codes[r * columns + c] & 0xFF;
    }

    public float scale(int r, int g) {
        return scales[r * groups + g];
    }

    public int zero(int r, int g) {
        return zeros[r * groups + g];
    }

    public int gIdx(int c) {
        return gIdx[c];
    }

    public float dequantized(int r, int c) {
        return dequantized[r * columns + c];
    }

    public double loss(int r) {
        return losses[r];
    }

    /** All codes as int [rows][columns] row-major (a copy). */
    public int[] codesAsInt() {
        int[] out = new int[codes.length];
        for (int i = 0; i < out.length; i++) {
            out[i] = codes[i] & 0xFF;
        }
        return out;
    }

    // Accessors return copies: the record stays immutable.
    @Override
    public byte[] codes() {
        return codes.clone();
    }

    @Override
    public float[] scales() {
        return scales.clone();
    }

    @Override
    public double[] exactScales() {
        return exactScales.clone();
    }

    @Override
    public int[] zeros() {
        return zeros.clone();
    }

    @Override
    public int[] gIdx() {
        return gIdx.clone();
    }

    @Override
    public float[] dequantized() {
        return dequantized.clone();
    }

    @Override
    public double[] losses() {
        return losses.clone();
    }

    /** Sum of the per-row losses. */
    public double totalLoss() {
        double s = 0;
        for (double l : losses) {
            s += l;
        }
        return s;
    }

    /** Row blocks of one matrix (same columns, grouping and g_idx) stacked in the given order. */
    public static QuantizedRows stack(List<QuantizedRows> blocks) {
        if (blocks.isEmpty()) {
            throw new IllegalArgumentException("no row blocks to stack");
        }
        QuantizedRows f = blocks.get(0);
        int rows = 0;
        for (QuantizedRows b : blocks) {
            if (b.columns != f.columns || b.bits != f.bits || b.groupSize != f.groupSize || b.groups != f.groups
                    || !Arrays.equals(b.gIdx, f.gIdx)) {
                throw SparkQuantException.internal("row blocks of different quantization cannot be stacked", null);
            }
            rows += b.rows;
        }
        byte[] codes = new byte[Math.multiplyExact(rows, f.columns)];
        float[] deq = new float[codes.length];
        float[] scales = new float[rows * f.groups];
        double[] exact = new double[scales.length];
        int[] zeros = new int[scales.length];
        double[] losses = new double[rows];
        int r = 0;
        for (QuantizedRows b : blocks) {
            System.arraycopy(b.codes, 0, codes, r * f.columns, b.codes.length);
            System.arraycopy(b.dequantized, 0, deq, r * f.columns, b.dequantized.length);
            System.arraycopy(b.scales, 0, scales, r * f.groups, b.scales.length);
            System.arraycopy(b.exactScales, 0, exact, r * f.groups, b.exactScales.length);
            System.arraycopy(b.zeros, 0, zeros, r * f.groups, b.zeros.length);
            System.arraycopy(b.losses, 0, losses, r, b.rows);
            r += b.rows;
        }
        return new QuantizedRows(rows, f.columns, f.bits, f.groupSize, f.groups, codes, scales, exact, zeros,
                f.gIdx, deq, losses);
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof QuantizedRows q && q.rows == rows && q.columns == columns && q.bits == bits
                && q.groupSize == groupSize && q.groups == groups && Arrays.equals(q.codes, codes)
                && Arrays.equals(q.scales, scales) && Arrays.equals(q.exactScales, exactScales)
                && Arrays.equals(q.zeros, zeros) && Arrays.equals(q.gIdx, gIdx)
                && Arrays.equals(q.dequantized, dequantized) && Arrays.equals(q.losses, losses);
    }

    @Override
    public int hashCode() {
        return Arrays.hashCode(codes) * 31 + Arrays.hashCode(scales);
    }

    /** Serialized as codes and parameters only (a quarter of the bytes with the values): see {@link Codes}. */
    private Object writeReplace() {
        return new Codes(rows, columns, bits, groupSize, groups, codes, scales, exactScales, zeros, gIdx, losses);
    }

    /** The serialized form: everything but the dequantized values, which {@link #readResolve} computes again. */
    private record Codes(int rows, int columns, int bits, int groupSize, int groups, byte[] codes, float[] scales,
                         double[] exactScales, int[] zeros, int[] gIdx, double[] losses) implements Serializable {
        private Object readResolve() {
            float[] deq = new float[codes.length];
            for (int r = 0; r < rows; r++) {
                for (int c = 0; c < columns; c++) {
                    int g = r * groups + gIdx[c];
                    deq[r * columns + c] = (float) (exactScales[g] * ((codes[r * columns + c] & 0xFF) - zeros[g]));
                }
            }
            return new QuantizedRows(rows, columns, bits, groupSize, groups, codes, scales, exactScales, zeros, gIdx,
                    deq, losses);
        }
    }

    @Override
    public String toString() {
        return "QuantizedRows[" + rows + "x" + columns + ", " + bits + "-bit, group " + groupSize + "]";
    }
}
