package org.sparkquant.format.gguf;

import java.io.Serializable;
import java.util.Arrays;
import java.util.List;
import org.sparkquant.SparkQuantException;
import org.sparkquant.gptq.QuantizedBlock;

/**
 * Output rows of one weight matrix W [rows, columns] quantized into ggml blocks (by {@link GgmlGptq}): the tensor
 * bytes ready for a GGUF tensor whose ne[0] is {@code columns}, the values those bytes decode to, and the GPTQ
 * objective per row.
 *
 * @param type        the ggml block type
 * @param rows        number of rows (output channels)
 * @param columns     input columns K (a multiple of the type's block size)
 * @param data        [rows][type.rowBytes(columns)]: row r is K / blockSize consecutive blocks
 * @param dequantized [rows][columns]: exactly what {@code data} dequantizes to (next layer's weight); not
 *                    serialized: a serialized block (a staged one) holds the bytes, dequantized again when read
 * @param losses      [rows] Σ (w−q)²/d²/2 per row with d = U[i,i] (as {@link QuantizedRows#losses}); NaN for RTN
 */
public record GgmlQuantizedRows(GgmlType type, int rows, int columns, byte[] data, float[] dequantized,
                                double[] losses) implements QuantizedBlock {

    public GgmlQuantizedRows {
        if (!type.isQuantized() || rows < 0 || columns % type.blockSize() != 0
                || (long) rows * type.rowBytes(columns) != data.length || (long) rows * columns != dequantized.length
                || losses.length != rows) {
            throw new IllegalArgumentException("inconsistent GgmlQuantizedRows shapes");
        }
    }

    /** Bytes of one row, K / blockSize blocks. */
    public int rowBytes() {
        return (int) type.rowBytes(columns);
    }

    /** The bytes of row r (a copy). */
    public byte[] row(int r) {
        return Arrays.copyOfRange(data, r * rowBytes(), (r + 1) * rowBytes());
    }

    public float dequantized(int r, int c) {
        return dequantized[r * columns + c];
    }

    public double loss(int r) {
        return losses[r];
    }

    /** Sum of the per-row losses. */
    public double totalLoss() {
        double s = 0;
        for (double l : losses) {
            s += l;
        }
        return s;
    }

    // Accessors return copies: the record stays immutable.
    @Override
    public byte[] data() {
        return data.clone();
    }

    @Override
    public float[] dequantized() {
        return dequantized.clone();
    }

    @Override
    public double[] losses() {
        return losses.clone();
    }

    /** Row blocks of one matrix (same type and columns) stacked in the given order. */
    public static GgmlQuantizedRows stack(List<GgmlQuantizedRows> blocks) {
        if (blocks.isEmpty()) {
            throw new IllegalArgumentException("no row blocks to stack");
        }
        GgmlQuantizedRows f = blocks.get(0);
        int rows = 0;
        for (GgmlQuantizedRows b : blocks) {
            if (b.type != f.type || b.columns != f.columns) {
                throw SparkQuantException.internal("row blocks of different ggml quantization cannot be stacked",
                        null);
            }
            rows += b.rows;
        }
        byte[] data = new byte[Math.multiplyExact(rows, f.rowBytes())];
        float[] deq = new float[Math.multiplyExact(rows, f.columns)];
        double[] losses = new double[rows];
        int r = 0;
        for (GgmlQuantizedRows b : blocks) {
            System.arraycopy(b.data, 0, data, r * f.rowBytes(), b.data.length);
            System.arraycopy(b.dequantized, 0, deq, r * f.columns, b.dequantized.length);
            System.arraycopy(b.losses, 0, losses, r, b.rows);
            r += b.rows;
        }
        return new GgmlQuantizedRows(f.type, rows, f.columns, data, deq, losses);
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof GgmlQuantizedRows q && q.type == type && q.rows == rows && q.columns == columns
                && Arrays.equals(q.data, data) && Arrays.equals(q.dequantized, dequantized)
                && Arrays.equals(q.losses, losses);
    }

    @Override
    public int hashCode() {
        return Arrays.hashCode(data) * 31 + type.hashCode();
    }

    /** Serialized as the tensor bytes only: see {@link Blocks}. */
    private Object writeReplace() {
        return new Blocks(type, rows, columns, data, losses);
    }

    /** The serialized form: everything but the dequantized values, which {@link #readResolve} decodes again. */
    private record Blocks(GgmlType type, int rows, int columns, byte[] data, double[] losses) implements Serializable {
        private Object readResolve() {
            float[] deq = new float[Math.multiplyExact(rows, columns)];
            GgmlQuant.dequantize(type, data, 0, deq, 0, deq.length);
            return new GgmlQuantizedRows(type, rows, columns, data, deq, losses);
        }
    }

    @Override
    public String toString() {
        return "GgmlQuantizedRows[" + rows + "x" + columns + ", " + type + "]";
    }
}
