package org.sparkquant.format.gguf;

/**
 * The scale fields of one quantized block, fixed before its elements are coded — the first half of a quantizer,
 * for calibrated (GPTQ) use: at the start of each block (32 elements for Q4_0…Q8_0, a 256-element super-block for
 * the k-quants) call {@link GgmlQuant#chooseScales} on the block's current weights, then for each column j of the
 * block call {@link #quantize}(j, w) on the error-updated weight, feed back {@code w − dequantize(j, q)}, and finally
 * {@link #encode} the codes. Choosing from the unmodified weights and coding every element gives exactly the bytes
 * of the one-shot quantizer (except for the importance-weighted Q4_0/Q4_1/Q5_0/Q5_1, whose one-shot form stores its
 * search codes; there codes are rounded with the stored scale).
 *
 * <p>Codes are the stored integers: 0..15 for Q4_0/Q4_1/Q4_K (Q4_0 means q − 8), 0..31 for Q5_*, −128..127 for
 * Q8_0, 0..3 for Q2_K, 0..7 for Q3_K (q − 4), 0..63 for Q6_K (q − 32). The element rule is ggml's final
 * re-quantization (nearest code under the fp16-rounded scales; the legacy reference formats round with ggml's fp32
 * inverse scale). Where a sub-block's effective scale is zero, every code dequantizes alike and ggml keeps the code
 * of its scale search, so {@link #quantize} returns that code. Immutable.
 */
public final class GgmlBlockScales {
    private final BlockCodec codec;
    private final BlockState state;

    GgmlBlockScales(BlockCodec codec, BlockState state) {
        this.codec = codec;
        this.state = state.copy();
    }

    public GgmlType type() {
        return codec.type;
    }

    public int blockSize() {
        return codec.type.blockSize();
    }

    /** Elements sharing one effective scale (32 for the legacy formats, 16 or 32 for k-quants). */
    public int subBlockSize() {
        return codec.subBlock;
    }

    public int minCode() {
        return codec.type == GgmlType.Q8_0 ? -128 : 0;
    }

    public int maxCode() {
        return codec.type == GgmlType.Q8_0 ? 127 : codec.maxCode;
    }

    /** The code of element j (0 ≤ j < blockSize) for weight x. */
    public int quantize(int j, float x) {
        checkIndex(j);
        return codec.quantizeElement(state, j, x);
    }

    /** The value code q of element j decodes to, bit-identical to dequantizing the encoded block. */
    public float dequantize(int j, int q) {
        checkIndex(j);
        return codec.dequantizeElement(state, j, q);
    }

    /** Writes the block (scale fields and codes[codesOff .. codesOff+blockSize)) at dst[dstOff]. */
    public void encode(int[] codes, int codesOff, byte[] dst, int dstOff) {
        int n = blockSize();
        if (codesOff < 0 || codesOff + n > codes.length || dstOff < 0 || dstOff + codec.type.bytesPerBlock() > dst.length) {
            throw new IndexOutOfBoundsException("block does not fit");
        }
        for (int j = 0; j < n; j++) {
            int q = codes[codesOff + j];
            if (q < minCode() || q > maxCode()) {
                throw new IllegalArgumentException("code " + q + " of element " + j + " outside " + minCode() + ".."
                        + maxCode() + " for " + codec.type);
            }
        }
        codec.pack(state, codes, codesOff, dst, dstOff);
    }

    private void checkIndex(int j) {
        if (j < 0 || j >= blockSize()) {
            throw new IndexOutOfBoundsException("element " + j + " outside block of " + blockSize());
        }
    }
}
