package org.sparkquant.spark;

import java.io.Serializable;

/**
 * What one block of output channels cost and achieved: returned by the quantize step, persisted with each finished
 * layer (for a resumed run's report), summed per module by {@link QuantizeReport}. {@code blasKernel} is the
 * OpenBLAS kernel set of the executor that quantized the block: one run should see one. {@code executor} is that
 * executor's Spark id and {@code peakRssBytes} its process's peak resident memory when the block was done
 * ({@link ProcessMemory}), for the report's memory plan against what was used.
 */
public record BlockStats(String module, int r0, int r1, double loss, double hessianError, double rtnError,
        double seconds, String blasKernel, String executor, long peakRssBytes) implements Serializable {}
