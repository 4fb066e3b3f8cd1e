package org.sparkquant.format.gguf;

import org.sparkquant.SparkQuantException;

/**
 * The ggml tensor types sparkquant reads and writes (ids from ggml.h). A quantized type stores {@link #blockSize()}
 * consecutive elements of a row (along ne[0]) in {@link #bytesPerBlock()} bytes; plain types have a block of one.
 */
public enum GgmlType {
    F32(0, 1, 4),
    F16(1, 1, 2),
    Q4_0(2, 32, 18),
    Q4_1(3, 32, 20),
    Q5_0(6, 32, 22),
    Q5_1(7, 32, 24),
    Q8_0(8, 32, 34),
    Q2_K(10, 256, 84),
    Q3_K(11, 256, 110),
    Q4_K(12, 256, 144),
    Q5_K(13, 256, 176),
    Q6_K(14, 256, 210),
    BF16(30, 1, 2);

    /** Elements per k-quant super-block (ggml's QK_K). */
    public static final int QK_K = 256;

    private final int id;
    private final int blockSize;
    private final int bytesPerBlock;

    GgmlType(int id, int blockSize, int bytesPerBlock) {
        this.id = id;
        this.blockSize = blockSize;
        this.bytesPerBlock = bytesPerBlock;
    }

    public int id() {
        return id;
    }

    public int blockSize() {
        return blockSize;
    }

    public int bytesPerBlock() {
        return bytesPerBlock;
    }

    /** Storage cost in bits per element, e.g. 4.5 for Q4_0 and 4.5 for Q4_K. */
    public double bitsPerWeight() {
        return bytesPerBlock * 8.0 / blockSize;
    }

    public boolean isQuantized() {
        return blockSize > 1;
    }

    public boolean isKQuant() {
        return blockSize == QK_K;
    }

    /** Bytes of one row of {@code n} elements; {@code n} must be a multiple of the block size. */
    public long rowBytes(long n) {
        if (n < 0 || n % blockSize != 0) {
            throw new IllegalArgumentException(
                    "row length " + n + " is not a multiple of the " + name() + " block size " + blockSize);
        }
        return n / blockSize * bytesPerBlock;
    }

    /** Bytes of a tensor with the given ggml-order shape (ne[0] is the row length). */
    public long tensorBytes(long[] ne) {
        long rows = 1;
        for (int i = 1; i < ne.length; i++) {
            rows = Math.multiplyExact(rows, ne[i]);
        }
        return Math.multiplyExact(rowBytes(ne[0]), rows);
    }

    /** The type with this ggml id, or null when sparkquant does not support it. */
    public static GgmlType fromIdOrNull(long id) {
        for (GgmlType t : values()) {
            if (t.id == id) {
                return t;
            }
        }
        return null;
    }

    /** Parses a type name such as "Q4_K" or "f16" (case-insensitive). */
    public static GgmlType parse(String name) {
        String n = name.trim().toUpperCase(java.util.Locale.ROOT);
        for (GgmlType t : values()) {
            if (t.name().equals(n)) {
                return t;
            }
        }
        throw SparkQuantException.badInput("unknown ggml tensor type '" + name + "'; expected one of "
                + java.util.Arrays.toString(values()));
    }
}
