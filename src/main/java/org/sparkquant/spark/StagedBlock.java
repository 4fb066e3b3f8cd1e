package org.sparkquant.spark;

import java.io.Serializable;

/**
 * One quantized block of a module's output channels as an {@link OutputTarget} stages it under {@code _work/}: its
 * format's codes, the weights the next layer sees, and its statistics.
 */
interface StagedBlock extends Serializable {
    /** [rows][columns]: exactly what the staged codes dequantize to (the next layer's weights). */
    float[] dequantized();

    BlockStats stats();
}
