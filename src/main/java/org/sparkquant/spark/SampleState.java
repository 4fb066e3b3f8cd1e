package org.sparkquant.spark;

import java.io.Serializable;

/**
 * One calibration or evaluation sequence on an executor: its index in the run (which fixes its partition and the
 * order of every reduction), its token ids, and its hidden states {@code [tokens, hidden]} row-major at the current
 * layer boundary.
 */
public record SampleState(int index, int[] tokens, float[] hidden) implements Serializable {
    public int length() {
        return tokens.length;
    }

    public SampleState withHidden(float[] next) {
        return new SampleState(index, tokens, next);
    }
}
