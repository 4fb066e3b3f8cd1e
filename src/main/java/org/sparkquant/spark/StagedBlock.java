package org.sparkquant.spark;

import java.io.Serializable;

import org.sparkquant.gptq.QuantizedBlock;

/**
 * One quantized block of a module's output channels as it is staged under {@code _work/}: the rows in the output
 * target's code format, and their statistics.
 */
record StagedBlock<R extends QuantizedBlock>(R rows, BlockStats stats) implements Serializable {
    /** [rows][columns]: exactly what the staged codes dequantize to (the next layer's weights). */
    float[] dequantized() {
        return rows.dequantized();
    }
}
