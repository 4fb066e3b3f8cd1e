package org.sparkquant.spark;

import java.io.Serializable;

import org.sparkquant.io.Storage;

/**
 * One run's context, on the driver and in every task: what is quantized with which settings, from which model, into
 * which output, and where the run stages its state.
 */
record QuantizeRun(QuantizeJob job, ModelSource source, WorkDir work, OutputTarget target, FaultHook faults)
        implements Serializable {
    Storage storage() {
        return source.storage();
    }
}
