package org.sparkquant.format.gguf;

import java.util.List;
import java.util.Objects;

/**
 * One tensor of a GGUF export, in file order: its GGUF declaration (name, ggml-order shape, type), the Hugging Face
 * tensor its values come from, and the row permutation between them. A 2-D tensor has {@link #rows()} rows of
 * {@link #rowLength()} elements (ne[1] × ne[0], i.e. a PyTorch {@code [out, in]} weight's output channels); GGUF row
 * {@code g} holds the Hugging Face row {@link #sourceRow(int) sourceRow(g)} (q_proj/k_proj of llama checkpoints are
 * permuted within each head, everything else is not). Rows are independent, so a producer may quantize them in any
 * grouping; blocks run along a row.
 *
 * <p>A stacked expert tensor (ne = {in, out, n_expert}) has one source per expert, the hub's 2-D
 * {@code [out, in]} tensors: its rows are expert 0's rows, then expert 1's, … ({@link #expertOf},
 * {@link #expertRow}).
 *
 * @param index position in the file (0-based)
 * @param tensor the GGUF declaration
 * @param sources the Hugging Face tensor (one per expert of a stacked tensor), or empty for a generated tensor
 * @param permuteHeads heads of the rotary row permutation, or 0
 * @param generated the values of a generated tensor (rope_freqs.weight), else null
 */
public record ExportTensor(int index, GgufTensor tensor, List<String> sources, int permuteHeads, float[] generated) {
    public ExportTensor {
        Objects.requireNonNull(tensor);
        sources = List.copyOf(sources);
        if (sources.isEmpty() == (generated == null)) {
            throw new IllegalArgumentException(tensor.name() + ": either source tensors or generated values");
        }
        if (sources.size() > 1 && (tensor.nDims() != 3 || tensor.ne(2) != sources.size() || permuteHeads != 0)) {
            throw new IllegalArgumentException(tensor.name() + ": " + sources.size() + " experts need a 3-D tensor"
                    + " stacked over them");
        }
        generated = generated == null ? null : generated.clone();
    }

    /** A tensor of one source, or a generated one ({@code hfName} null). */
    public ExportTensor(int index, GgufTensor tensor, String hfName, int permuteHeads, float[] generated) {
        this(index, tensor, hfName == null ? List.of() : List.of(hfName), permuteHeads, generated);
    }

    /** The Hugging Face tensor of an unstacked tensor; null for a generated or stacked one. */
    public String hfName() {
        return sources.size() == 1 && !stacked() ? sources.get(0) : null;
    }

    /** Whether this is a 3-D tensor stacked over experts, one source each. */
    public boolean stacked() {
        return tensor.nDims() == 3 && !sources.isEmpty();
    }

    /** Experts stacked (1 for other tensors). */
    public int experts() {
        return stacked() ? sources.size() : 1;
    }

    /** Rows of one expert (all rows of an unstacked tensor). */
    public int rowsPerExpert() {
        return rows() / experts();
    }

    /** The expert whose slice holds GGUF row {@code ggufRow}. */
    public int expertOf(int ggufRow) {
        return ggufRow / rowsPerExpert();
    }

    /** The row within its expert's source of GGUF row {@code ggufRow}. */
    public int expertRow(int ggufRow) {
        return ggufRow % rowsPerExpert();
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
        if (sources.isEmpty()) {
            return tensor + " (generated)";
        }
        return tensor + " <- " + (stacked() ? sources.get(0) + " … (" + sources.size() + " experts)" : sources.get(0))
                + (permuteHeads > 0 ? " (permuted, " + permuteHeads + " heads)" : "");
    }
}
