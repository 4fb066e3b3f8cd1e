package org.sparkquant.format.gguf;

import java.util.Objects;

/**
 * One tensor of a GGUF export, in file order: its GGUF declaration (name, ggml-order shape, type), the Hugging Face
 * tensor its values come from, and the row permutation between them. A 2-D tensor has {@link #rows()} rows of
 * {@link #rowLength()} elements (ne[1] × ne[0], i.e. a PyTorch {@code [out, in]} weight's output channels); GGUF row
 * {@code g} holds the Hugging Face row {@link #sourceRow(int) sourceRow(g)} (q_proj/k_proj of llama checkpoints are
 * permuted within each head, everything else is not). Rows are independent, so a producer may quantize them in any
 * grouping; blocks run along a row.
 *
 * @param index position in the file (0-based)
 * @param tensor the GGUF declaration
 * @param hfName the Hugging Face tensor, or null for a generated tensor
 * @param permuteHeads heads of the rotary row permutation, or 0
 * @param generated the values of a generated tensor (rope_freqs.weight), else null
 */
public record ExportTensor(int index, GgufTensor tensor, String hfName, int permuteHeads, float[] generated) {
    public ExportTensor {
        Objects.requireNonNull(tensor);
        if ((hfName == null) == (generated == null)) {
            throw new IllegalArgumentException(tensor.name() + ": either a source tensor or generated values");
        }
        generated = generated == null ? null : generated.clone();
    }

    public String name() {
        return tensor.name();
    }

    public GgmlType type() {
        return tensor.type();
    }

    /** Elements of one row (ne[0]). */
    public int rowLength() {
        return Math.toIntExact(tensor.ne(0));
    }

    /** Rows (all dimensions but ne[0]). */
    public int rows() {
        return Math.toIntExact(tensor.rows());
    }

    /** Bytes of one row in the tensor's type. */
    public long rowBytes() {
        return tensor.type().rowBytes(tensor.ne(0));
    }

    public long bytes() {
        return tensor.bytes();
    }

    /** Whether the tensor is block-quantized (not F32/F16/BF16). */
    public boolean quantized() {
        return tensor.type().isQuantized();
    }

    /** The Hugging Face row whose values GGUF row {@code ggufRow} holds. */
    public int sourceRow(int ggufRow) {
        if (permuteHeads == 0 || tensor.nDims() < 2) {
            return ggufRow;
        }
        return GgufNames.permutedSourceRow(ggufRow, rows(), permuteHeads);
    }

    /**
     * Rows that must be produced together so that a group's source rows are one contiguous range: a whole head
     * ({@code rows / heads}) for permuted tensors, else 1.
     */
    public int rowGroup() {
        return permuteHeads == 0 || tensor.nDims() < 2 ? 1 : rows() / permuteHeads;
    }

    @Override
    public float[] generated() {
        return generated == null ? null : generated.clone();
    }

    @Override
    public String toString() {
        return tensor + (hfName == null ? " (generated)" : " <- " + hfName + (permuteHeads > 0 ? " (permuted, "
                + permuteHeads + " heads)" : ""));
    }
}
