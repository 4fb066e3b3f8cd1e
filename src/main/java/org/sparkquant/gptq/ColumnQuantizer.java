package org.sparkquant.gptq;

/**
 * The grid GPTQ rounds weights to, seen by {@link GptqLoop} one column at a time: parameters are chosen at the
 * start of each group of columns, then each weight is coded with them. Implemented by the grouped min-max quantizer
 * of the reference ({@link MinMaxColumns}) and by ggml's block codecs (in the GGUF format package).
 *
 * <p>An instance serves one call of the loop (one block of rows) and keeps the codes it hands out; its {@link Row}s
 * are each used by one thread. Columns are numbered in the loop's order (the act-order permutation, if any).
 */
public interface ColumnQuantizer {
    /** Columns that share one choice of parameters, in the loop's column order (a group, a ggml block). */
    int groupColumns();

    /**
     * Which weights the parameters of a group starting inside a lazy batch are chosen from. {@code false}: the
     * reference rule, {@code find_params(W[:, c:c+g])} on the global W, which does not yet hold the current batch's
     * updates. {@code true}: the weights as they are now: the batch's eagerly updated columns and, past the batch
     * end, W minus the batch's pending update. Both agree for groups that start a batch.
     */
    boolean choosesFromCurrentWeights();

    /**
     * The coder of row {@code row} (0-based within the call), given the row as read ({@code original}, in the
     * natural column order) and the dead columns, which GPTQ zeroes ({@code dead}; see {@link GptqPreparation}).
     */
    Row row(int row, float[] original, boolean[] dead);

    /**
     * Codes one column of consecutive rows in {@link Precision#FP32}: {@code x[k]} is the weight of the row coded by
     * {@code coders[k]}, call row {@code firstRow + k}; {@code q[k]} receives the value its code stands for. The
     * default asks each row's {@link Row#code}; a grid may override it with one loop over the rows in float, which
     * the JIT vectorizes (after the in-batch update this is the loop's hot spot). Same bits either way.
     */
    default void codeColumn32(int column, Row[] coders, int firstRow, float[] x, float[] q, int len) {
        for (int k = 0; k < len; k++) {
            q[k] = (float) coders[k].code(column, x[k]);
        }
    }

    /** One row's parameters and codes. */
    interface Row {
        /** Chooses the parameters of the group that starts at column {@code column} from its weights. */
        void choose(int column, double[] weights, int length);

        /** Codes weight {@code x} of column {@code column}; returns the value its code stands for. */
        double code(int column, double x);
    }
}
