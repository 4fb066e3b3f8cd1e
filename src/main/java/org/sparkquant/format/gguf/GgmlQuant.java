package org.sparkquant.format.gguf;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.EnumMap;
import java.util.Map;
import org.sparkquant.SparkQuantException;
import org.sparkquant.io.Half;

/**
 * Quantizes rows of floats into ggml blocks and back: the entry point of the block formats. A row is ne[0] elements
 * (a multiple of the type's block size) and is stored in {@link GgmlType#rowBytes} bytes; rows are independent, so
 * executors can quantize any row-block of a tensor. Without importance the output is byte-identical to ggml's
 * {@code quantize_row_*_ref} (what llama-quantize writes without an imatrix); with importance (a per-column float
 * per element of the row, llama.cpp's imatrix) it follows ggml's {@code quantize_*_impl} paths.
 *
 * <p>For calibrated quantizers the two halves are exposed separately: {@link #chooseScales} fixes one block's scale
 * fields, then {@link GgmlBlockScales#quantize} codes single elements with them (see {@link GgmlBlockScales}).
 * Thread-safe; no state is shared between calls.
 */
public final class GgmlQuant {
    private GgmlQuant() {}

    private static final Map<GgmlType, BlockCodec> CODECS = new EnumMap<>(GgmlType.class);

    static {
        for (BlockCodec c : new BlockCodec[] {
            new LegacyCodecs.Q4_0(), new LegacyCodecs.Q4_1(), new LegacyCodecs.Q5_0(), new LegacyCodecs.Q5_1(),
            new LegacyCodecs.Q8_0(), new KQuantCodecs.Q2K(), new KQuantCodecs.Q3K(), new KQuantCodecs.Q4K(),
            new KQuantCodecs.Q5K(), new KQuantCodecs.Q6K()}) {
            CODECS.put(c.type, c);
        }
    }

    static BlockCodec codec(GgmlType type) {
        BlockCodec c = CODECS.get(type);
        if (c == null) {
            throw new IllegalArgumentException(type + " is not a block-quantized type");
        }
        return c;
    }

    /** Quantizes one row without importance; see {@link #quantizeRow(GgmlType, float[], int, int, float[], int, byte[], int)}. */
    public static void quantizeRow(GgmlType type, float[] x, int xOff, int n, byte[] dst, int dstOff) {
        quantizeRow(type, x, xOff, n, null, 0, dst, dstOff);
    }

    /**
     * Quantizes x[xOff .. xOff+n) — one whole tensor row — into dst at dstOff ({@code type.rowBytes(n)} bytes).
     * F32, F16 and BF16 are converted element-wise. {@code importance} (nullable) holds one weight per column of
     * the row at impOff; Q8_0 and the plain types ignore it, as ggml does. The importance-weighted Q4_0/Q4_1/Q5_0/
     * Q5_1 quantizers use the mean square of the whole row, so pass whole rows.
     */
    public static void quantizeRow(GgmlType type, float[] x, int xOff, int n, float[] importance, int impOff,
            byte[] dst, int dstOff) {
        long bytes = type.rowBytes(n);
        checkRange(x.length, xOff, n, "input");
        checkRange(dst.length, dstOff, bytes, "output");
        if (importance != null) {
            checkRange(importance.length, impOff, n, "importance");
        }
        switch (type) {
            case F32:
                ByteBuffer.wrap(dst, dstOff, n * 4).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().put(x, xOff, n);
                return;
            case F16:
                for (int i = 0; i < n; i++) {
                    BlockCodec.putShort(dst, dstOff + 2 * i, Half.fromFloat(x[xOff + i]));
                }
                return;
            case BF16:
                for (int i = 0; i < n; i++) {
                    BlockCodec.putShort(dst, dstOff + 2 * i, Half.floatToBf16(x[xOff + i]));
                }
                return;
            default:
                break;
        }
        BlockCodec codec = codec(type);
        int bs = type.blockSize();
        int bpb = type.bytesPerBlock();
        float rowSigma2 = 0;
        if (importance != null && !type.isKQuant()) {
            float sumX2 = 0;
            for (int j = 0; j < n; j++) {
                sumX2 += x[xOff + j] * x[xOff + j];
            }
            rowSigma2 = sumX2 / n;
        }
        BlockState st = new BlockState();
        int[] codes = new int[bs];
        for (int b = 0, nb = n / bs; b < nb; b++) {
            codec.quantizeBlock(x, xOff + b * bs, importance, impOff + b * bs, rowSigma2, st, codes, dst,
                    dstOff + b * bpb);
        }
    }

    /** Quantizes one row into a new array. */
    public static byte[] quantizeRow(GgmlType type, float[] row, float[] importance) {
        byte[] out = new byte[Math.toIntExact(type.rowBytes(row.length))];
        quantizeRow(type, row, 0, row.length, importance, 0, out, 0);
        return out;
    }

    /**
     * Quantizes {@code rows} consecutive rows of length {@code rowLen} from x (row-major) into a new array;
     * {@code importance} (nullable) has rowLen entries shared by all rows.
     */
    public static byte[] quantizeRows(GgmlType type, float[] x, int rows, int rowLen, float[] importance) {
        long rowBytes = type.rowBytes(rowLen);
        byte[] out = new byte[Math.toIntExact(Math.multiplyExact(rowBytes, (long) rows))];
        for (int r = 0; r < rows; r++) {
            quantizeRow(type, x, r * rowLen, rowLen, importance, 0, out, (int) (r * rowBytes));
        }
        return out;
    }

    /** Quantizes rows into the buffer at its position (advancing it); the buffer may be direct. */
    public static void quantizeRows(GgmlType type, float[] x, int rows, int rowLen, float[] importance,
            ByteBuffer dst) {
        byte[] bytes = quantizeRows(type, x, rows, rowLen, importance);
        dst.put(bytes);
    }

    /** Dequantizes n elements (whole blocks) from src at srcOff into dst at dstOff. */
    public static void dequantize(GgmlType type, byte[] src, int srcOff, float[] dst, int dstOff, int n) {
        long bytes = type.rowBytes(n);
        checkRange(src.length, srcOff, bytes, "input");
        checkRange(dst.length, dstOff, n, "output");
        switch (type) {
            case F32:
                ByteBuffer.wrap(src, srcOff, n * 4).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(dst, dstOff, n);
                return;
            case F16:
                for (int i = 0; i < n; i++) {
                    dst[dstOff + i] = Half.toFloat(BlockCodec.getShort(src, srcOff + 2 * i));
                }
                return;
            case BF16:
                for (int i = 0; i < n; i++) {
                    dst[dstOff + i] = Half.bf16ToFloat(BlockCodec.getShort(src, srcOff + 2 * i));
                }
                return;
            default:
                break;
        }
        BlockCodec codec = codec(type);
        int bs = type.blockSize();
        int bpb = type.bytesPerBlock();
        for (int b = 0, nb = n / bs; b < nb; b++) {
            codec.dequantize(src, srcOff + b * bpb, dst, dstOff + b * bs);
        }
    }

    /** Dequantizes a whole buffer of blocks (from index 0 to its limit) into a new array. */
    public static float[] dequantize(GgmlType type, byte[] src) {
        if (src.length % type.bytesPerBlock() != 0) {
            throw new IllegalArgumentException(src.length + " bytes is not a whole number of " + type + " blocks");
        }
        int n = src.length / type.bytesPerBlock() * type.blockSize();
        float[] out = new float[n];
        dequantize(type, src, 0, out, 0, n);
        return out;
    }

    /**
     * Chooses one block's scale fields from its weights x[xOff .. xOff+blockSize) exactly as the one-shot
     * quantizer does (with importance, nullable, at impOff; {@code rowMeanSquare} is only used by the weighted
     * 32-element formats and should be the mean of x² over the whole row). See {@link GgmlBlockScales}.
     */
    public static GgmlBlockScales chooseScales(GgmlType type, float[] x, int xOff, float[] importance, int impOff,
            float rowMeanSquare) {
        BlockCodec codec = codec(type);
        checkRange(x.length, xOff, type.blockSize(), "input");
        if (importance != null) {
            checkRange(importance.length, impOff, type.blockSize(), "importance");
        }
        BlockState st = new BlockState();
        codec.chooseScales(x, xOff, importance, impOff, rowMeanSquare, st);
        return new GgmlBlockScales(codec, st);
    }

    /** {@link #chooseScales(GgmlType, float[], int, float[], int, float)} without importance. */
    public static GgmlBlockScales chooseScales(GgmlType type, float[] x, int xOff) {
        return chooseScales(type, x, xOff, null, 0, 0);
    }

    /**
     * Codes element j of many rows at once — the column step of a GPTQ loop: {@code blocks[r]} holds the scales of
     * row r's current block, {@code values[r]} the (error-updated) weight; writes the codes and the dequantized
     * values (for the error feedback).
     */
    public static void quantizeColumn(GgmlBlockScales[] blocks, int j, float[] values, int[] codesOut,
            float[] dequantOut) {
        for (int r = 0; r < blocks.length; r++) {
            int q = blocks[r].quantize(j, values[r]);
            codesOut[r] = q;
            dequantOut[r] = blocks[r].dequantize(j, q);
        }
    }

    /** Fails with a one-line bad-input error naming {@code what} when the row holds NaN or an infinity. */
    public static void requireFinite(float[] x, int off, int n, String what) {
        for (int i = 0; i < n; i++) {
            float v = x[off + i];
            if (!Float.isFinite(v)) {
                throw SparkQuantException.badInput(what + ": non-finite value " + v + " at element " + i
                        + "; cannot quantize");
            }
        }
    }

    private static void checkRange(int length, int off, long n, String what) {
        if (off < 0 || n < 0 || off + n > length) {
            throw new IndexOutOfBoundsException(what + " range [" + off + ", " + (off + n) + ") outside array of "
                    + length);
        }
    }
}
