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

    /**
     * A run's driver draws and holds every calibration token (4 bytes each) before the executors take over: refuse
     * a shape whose tokens alone would fill a quarter of the driver's heap, instead of running out of memory.
     */
    void checkDriverMemory() {
        long tokens = (long) samples * seqLen;
        long limit = Runtime.getRuntime().maxMemory() / 4 / Integer.BYTES;
        if (tokens > limit) {
            throw SparkQuantException.badInput(String.format(java.util.Locale.ROOT, "--samples %d x --seq-len %d is "
                    + "%d tokens, more than the driver can hold (%d with this heap); lower them, or give the driver "
                    + "more memory", samples, seqLen, tokens, limit));
        }
    }
}
