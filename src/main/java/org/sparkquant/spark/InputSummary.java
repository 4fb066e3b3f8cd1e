package org.sparkquant.spark;

import java.io.Serializable;

import org.sparkquant.model.LinearModule;
import org.sparkquant.model.LinearModule.Input;

/**
 * The Hessian of one distinct module input of a layer (of a routed expert when {@code expert} >= 0), as finished on an
 * executor, with its diagonal (for {@code --export-imatrix}). An expert without tokens has no Hessian: 0 sequences,
 * no diagonal; an expert below {@code --expert-min-tokens} has no GPTQ preparation: damping NaN.
 */
public record InputSummary(Input input, int expert, int columns, long sequences, long tokens, double dampPercentUsed,
        int deadColumns, double[] diagonal) implements Serializable {

    /** A summary outside any routed expert. */
    public InputSummary(Input input, int columns, long sequences, long tokens, double dampPercentUsed,
            int deadColumns, double[] diagonal) {
        this(input, -1, columns, sequences, tokens, dampPercentUsed, deadColumns, diagonal);
    }

    /** Its key in a run's map of summaries: {@link LinearModule#hessianKey}. */
    public String key(int layer) {
        return LinearModule.hessianKey(layer, input, expert);
    }
}
