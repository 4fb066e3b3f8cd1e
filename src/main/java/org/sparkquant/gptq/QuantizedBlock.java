package org.sparkquant.gptq;

import java.io.Serializable;

/**
 * Quantized rows in whatever code format ({@link QuantizedRows}: integer codes in groups; the GGUF format's
 * ggml blocks), seen the same way by whoever uses them: the weights they dequantize to and GPTQ's objective per row.
 */
public interface QuantizedBlock extends Serializable {
    /** [rows][columns]: exactly what the codes dequantize to (the next layer's weights). */
    float[] dequantized();

    /** [rows]: GPTQ's objective Σ (w−q)²/d²/2 per row; NaN for round-to-nearest. */
    double[] losses();
}
