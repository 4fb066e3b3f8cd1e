package org.sparkquant.nn;

import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * The weights of one linear module, {@code y = x · Wᵀ + b}. The forward pass asks for {@link #weight()} each time it
 * runs the module, so an implementation may hold W densely ({@link DenseLinear}) or materialise it on demand, e.g. a
 * dequantizing view of a quantized module that GPTQ substitutes for the original.
 */
public interface LinearWeights extends AutoCloseable {
    int outFeatures();

    int inFeatures();

    /** W as an fp32 {@code [outFeatures, inFeatures]} array, any ordering. Callers never modify it. */
    INDArray weight();

    /** The bias {@code [outFeatures]}, or null. Callers never modify it. */
    float[] bias();

    /** Releases off-heap memory now rather than at garbage collection; the weights are unusable afterwards. */
    @Override
    default void close() {
    }
}
