package org.sparkquant.spark;

import java.io.Serializable;

import org.sparkquant.model.LinearModule.Input;

/**
 * The Hessian of one distinct module input of a layer, as finished on an executor, with its diagonal (for
 * {@code --export-imatrix}).
 */
public record InputSummary(Input input, int columns, long sequences, long tokens, double dampPercentUsed,
        int deadColumns, double[] diagonal) implements Serializable {}
