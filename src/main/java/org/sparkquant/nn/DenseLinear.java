package org.sparkquant.nn;

import java.nio.FloatBuffer;

import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.sparkquant.io.TensorReader;
import org.sparkquant.model.LinearModule;

/** Weights held as a dense fp32 matrix (off-heap, in ND4J). */
public final class DenseLinear implements LinearWeights {
    /** Rows read per positional read when loading, so that no huge on-heap copy of a matrix is ever made. */
    private static final long READ_CHUNK_ELEMENTS = 4L << 20;

    private final INDArray weight;
    private final float[] bias;

    public DenseLinear(INDArray weight, float[] bias) {
        if (weight.rank() != 2 || weight.dataType() != DataType.FLOAT) {
            throw new IllegalArgumentException("weight must be a 2-D FLOAT array, got " + weight.dataType() + " "
                    + java.util.Arrays.toString(weight.shape()));
        }
        if (bias != null && bias.length != weight.rows()) {
            throw new IllegalArgumentException("bias has " + bias.length + " elements, weight has " + weight.rows()
                    + " rows");
        }
        this.weight = weight;
        this.bias = bias;
    }

    /** From a row-major {@code [out, in]} array. */
    public static DenseLinear of(float[] weight, int out, int in, float[] bias) {
        if (weight.length != (long) out * in) {
            throw new IllegalArgumentException("weight has " + weight.length + " elements, expected " + out + "×"
                    + in);
        }
        return new DenseLinear(Nd4j.create(weight, new long[] {out, in}, 'c'), bias);
    }

    /** Reads a module's weight (and bias) with positional row reads, converting F16/BF16/F32 to fp32. */
    public static DenseLinear read(TensorReader store, LinearModule module) {
        return new DenseLinear(readMatrix(store, module.weight(), module.outFeatures(), module.inFeatures()),
                module.bias() ? store.readFloats(module.biasName()) : null);
    }

    /** A 2-D tensor of the store as an fp32 row-major matrix, read in chunks of rows straight into off-heap memory. */
    static INDArray readMatrix(TensorReader store, String tensor, long rows, long cols) {
        INDArray m = Kernels.matrix(rows, cols);
        FloatBuffer out = Kernels.floats(m);
        long step = Math.max(1, READ_CHUNK_ELEMENTS / cols);
        for (long r0 = 0; r0 < rows; r0 += step) {
            long r1 = Math.min(rows, r0 + step);
            float[] chunk = store.readRows(tensor, r0, r1);
            out.put((int) (r0 * cols), chunk);
        }
        return m;
    }

    @Override
    public int outFeatures() {
        return weight.rows();
    }

    @Override
    public int inFeatures() {
        return weight.columns();
    }

    @Override
    public INDArray weight() {
        return weight;
    }

    @Override
    public float[] bias() {
        return bias;
    }

    @Override
    public void close() {
        if (weight.closeable()) {
            weight.close();
        }
    }
}
