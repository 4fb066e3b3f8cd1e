package org.sparkquant.io;

import java.util.Set;

/**
 * Float tensors by Hugging Face name, read on demand: what the forward pass needs of a checkpoint. A safetensors
 * checkpoint ({@link TensorStore}) is one; a GGUF file seen through its Hugging Face names (dequantized on read) is
 * another. Implementations read only what is asked for.
 */
public interface TensorReader extends AutoCloseable {
    /** Where the tensors come from (a directory or file URI), for messages. */
    String source();

    /** Tensor names, sorted. */
    Set<String> names();

    boolean contains(String tensor);

    /** The row-major (PyTorch) shape of a tensor. */
    long[] shape(String tensor);

    /** A whole tensor as float, row-major. */
    float[] readFloats(String tensor);

    /** Rows {@code [r0, r1)} of a 2-D tensor as float, row-major. */
    float[] readRows(String tensor, long r0, long r1);

    @Override
    void close();
}
