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
     * The coder of row {@code row} (0-based within the call), given the row as read ({@code original}) and with the
     * dead columns zeroed ({@code live}), both in the natural column order.
     */
    Row row(int row, double[] original, double[] live);

    /** One row's parameters and codes. */
    interface Row {
        /** Chooses the parameters of the group that starts at column {@code column} from its weights. */
        void choose(int column, double[] weights, int length);

        /** Codes weight {@code x} of column {@code column}; returns the value its code stands for. */
        double code(int column, double x);
    }
}
