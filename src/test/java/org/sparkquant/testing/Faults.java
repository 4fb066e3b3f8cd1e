package org.sparkquant.testing;

import org.sparkquant.SparkQuantException;
import org.sparkquant.spark.FaultHook;

/** Failures that tests inject into quantization runs at their named points. */
public final class Faults {
    private Faults() {}

    /** The first attempt of block {@code index} of every quantize stage fails after quantizing (Spark retries it). */
    public static FaultHook failFirstAttemptOfBlock(int index) {
        return (point, i, attempt) -> {
            if (point == FaultHook.Point.BLOCK_QUANTIZED && i == index && attempt == 0) {
                throw new IllegalStateException("injected failure of block " + i + " (test hook)");
            }
        };
    }

    /** The run stops, as if killed, once layer {@code layer} (0-based) is checkpointed. */
    public static FaultHook stopAfterLayer(int layer) {
        return (point, i, attempt) -> {
            if (point == FaultHook.Point.LAYER_DONE && i == layer) {
                throw SparkQuantException.internal("stopped after layer " + i + " (test hook)", null);
            }
        };
    }
}
