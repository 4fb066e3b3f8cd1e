package org.sparkquant.format.gguf;

/**
 * Working state of one block while it is quantized: the stored header fields, the per-sub-block effective step and
 * offset the element rule uses, the codes of the scale search, and scratch. One instance serves a whole row; copies
 * back the immutable {@link GgmlBlockScales}.
 */
final class BlockState {
    /** Codes from the scale search; kept for sub-blocks whose effective step is zero (ggml keeps them too). */
    final int[] searchCodes = new int[GgmlType.QK_K];
    /** Effective step per sub-block (fp16 scale × integer scale code), the divisor of the element rule. */
    final float[] step = new float[16];
    /** Effective offset per sub-block: x ≈ step·q − offset for affine formats. */
    final float[] offset = new float[16];
    /** Packed sub-block scale bytes exactly as stored (Q2_K 16, Q3_K/Q4_K/Q5_K 12, Q6_K 16). */
    final byte[] scaleBytes = new byte[16];
    short d;
    short dmin;
    /** Legacy formats: the fp32 inverse scale and min that ggml's reference quantizers round with. */
    float inverse;
    float min;
    /** Legacy importance-weighted formats: the one-shot quantizer stores the search codes as they are. */
    boolean packSearchCodes;

    // scratch
    final int[] aux = new int[32];
    final float[] weights = new float[32];
    final float[] scales = new float[16];
    final float[] mins = new float[16];
    final float[] sw = new float[16];
    final int[] ls = new int[16];
    final int[] lm = new int[16];

    BlockState copy() {
        BlockState c = new BlockState();
        System.arraycopy(searchCodes, 0, c.searchCodes, 0, searchCodes.length);
        System.arraycopy(step, 0, c.step, 0, step.length);
        System.arraycopy(offset, 0, c.offset, 0, offset.length);
        System.arraycopy(scaleBytes, 0, c.scaleBytes, 0, scaleBytes.length);
        c.d = d;
        c.dmin = dmin;
        c.inverse = inverse;
        c.min = min;
        c.packSearchCodes = packSearchCodes;
        return c;
    }
}
