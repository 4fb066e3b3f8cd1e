package org.sparkquant.cli;

import org.sparkquant.SparkQuantException;
import org.sparkquant.model.MemoryPlan;
import picocli.CommandLine.Option;

/** The shape of the calibration data, shared by inspect (the memory plan of a run) and quantize (the run). */
public final class CalibrationShape {
    @Option(names = "--samples", defaultValue = "128", description = "Calibration sequences (default: ${DEFAULT-VALUE}).")
    int samples;

    @Option(names = "--seq-len", defaultValue = "2048",
            description = "Tokens per calibration sequence (default: ${DEFAULT-VALUE}).")
    int seqLen;

    @Option(names = "--samples-per-partition", defaultValue = "" + MemoryPlan.DEFAULT_SAMPLES_PER_PARTITION,
            description = "Calibration sequences per Spark partition (default: ${DEFAULT-VALUE}).")
    int samplesPerPartition;

    /** One line for impossible values. */
    void validate() {
        if (samples <= 0 || seqLen < 2 || samplesPerPartition <= 0) {
            throw SparkQuantException.badInput("--samples and --samples-per-partition must be positive, --seq-len at "
                    + "least 2");
        }
    }
}
