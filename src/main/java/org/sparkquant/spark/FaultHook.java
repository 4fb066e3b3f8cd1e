package org.sparkquant.spark;

import java.io.Serializable;

/**
 * Named points of a quantization run where tests inject failures; production runs use {@link #NONE}. A hook travels
 * to the executors with the run (it is serializable), and each step calls it once, after its work is staged.
 */
@FunctionalInterface
public interface FaultHook extends Serializable {
    /** The hook of every production run: does nothing. */
    FaultHook NONE = (point, index, attempt) -> { };

    /**
     * Called at {@code point} for item {@code index} (a block's index in its quantize stage, or a layer), on the
     * task's {@code attempt} (0 on the driver); it may throw to fail the step.
     */
    void at(Point point, int index, int attempt);

    /**
     * Called before the driver's state change number {@code index} ({@link Point#WORK_STATE}) with what it is about
     * to change, e.g. {@code "replace progress.json [{"layers_done": 2}]: rename"}: the same step of a resumed run
     * has the same name, so a test can halt a chain of resumed runs once at every distinct step.
     */
    default void atState(int index, String what) {
        at(Point.WORK_STATE, index, 0);
    }

    enum Point {
        /** On an executor, after a block was quantized and before it is staged. */
        BLOCK_QUANTIZED,
        /** On the driver, after a layer was checkpointed and progress recorded. */
        LAYER_DONE,
        /**
         * On the driver, before each step that changes the work directory's state (a write, delete or rename of a
         * run record, a progress record, or staged state); the index counts those steps from 0 within a run, so a
         * test can halt a run at every one of them.
         */
        WORK_STATE
    }
}
