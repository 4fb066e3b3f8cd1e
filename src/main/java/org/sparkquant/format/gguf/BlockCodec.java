package org.sparkquant.format.gguf;

import org.sparkquant.io.Half;

/**
 * One quantized block format split into the two halves a calibrated (GPTQ) quantizer needs: choosing the block's
 * scales ({@link #chooseScales}), and coding single elements with them ({@link #quantizeElement}); plus packing and
 * dequantization. The one-shot reference quantizer is exactly choose + code every element + pack.
 */
abstract class BlockCodec {
    final GgmlType type;
    final int subBlock;
    final int maxCode;

    BlockCodec(GgmlType type, int subBlock, int maxCode) {
        this.type = type;
        this.subBlock = subBlock;
        this.maxCode = maxCode;
    }

    /**
     * Chooses the block's scale fields from x[xo .. xo+blockSize). With {@code imp} non-null the importance-weighted
     * path (llama.cpp's imatrix quantizers) is used; {@code rowSigma2} is the row's mean square, needed by the
     * 32-element formats' weighted path only.
     */
    abstract void chooseScales(float[] x, int xo, float[] imp, int io, float rowSigma2, BlockState st);

    /** The stored code of element j of the block for value x under the chosen scales. */
    abstract int quantizeElement(BlockState st, int j, float x);

    /** The value code q of element j dequantizes to (bit-identical to {@link #dequantize}). */
    abstract float dequantizeElement(BlockState st, int j, int q);

    /** Writes the block: header fields from {@code st} and the given element codes. */
    abstract void pack(BlockState st, int[] codes, int co, byte[] dst, int off);

    /** Dequantizes one stored block into dst[dstOff .. dstOff+blockSize). */
    abstract void dequantize(byte[] src, int off, float[] dst, int dstOff);

    /** Whether element j's code is taken from the scale search (its sub-block step is zero). */
    final boolean keepsSearchCode(BlockState st, int j) {
        return st.step[j / subBlock] == 0;
    }

    /** Quantizes one block the way the one-shot ggml quantizer does. */
    final void quantizeBlock(float[] x, int xo, float[] imp, int io, float rowSigma2, BlockState st, int[] codes,
            byte[] dst, int off) {
        chooseScales(x, xo, imp, io, rowSigma2, st);
        int n = type.blockSize();
        if (st.packSearchCodes) {
            pack(st, st.searchCodes, 0, dst, off);
            return;
        }
        for (int j = 0; j < n; j++) {
            codes[j] = quantizeElement(st, j, x[xo + j]);
        }
        pack(st, codes, 0, dst, off);
    }

    static int clamp(int v, int lo, int hi) {
        return v < lo ? lo : v > hi ? hi : v;
    }

    static void putShort(byte[] b, int off, short v) {
        b[off] = (byte) v;
        b[off + 1] = (byte) (v >>> 8);
    }

    static short getShort(byte[] b, int off) {
        return (short) ((b[off] & 0xff) | (b[off + 1] << 8));
    }

    static float half(byte[] b, int off) {
        return Half.toFloat(getShort(b, off));
    }
}
