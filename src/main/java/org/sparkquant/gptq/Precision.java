package org.sparkquant.gptq;

/**
 * Arithmetic precision of the GPTQ solve. {@link #FP32} is what AutoGPTQ / GPTQModel run (float weights, float
 * Hessian inverse, float error feedback); {@link #FP64} runs the same algorithm in double.
 */
public enum Precision {
    FP32, FP64
}
