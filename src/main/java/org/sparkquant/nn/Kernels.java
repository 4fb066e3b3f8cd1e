package org.sparkquant.nn;

import static org.bytedeco.openblas.global.openblas.CblasNoTrans;
import static org.bytedeco.openblas.global.openblas.CblasRowMajor;
import static org.bytedeco.openblas.global.openblas.CblasTrans;
import static org.bytedeco.openblas.global.openblas.cblas_sgemm;

import java.nio.FloatBuffer;

import org.bytedeco.javacpp.FloatPointer;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

/**
 * The numeric building blocks of the forward pass. Matrices are fp32 row-major ND4J arrays; big products go through
 * {@link Nd4j#gemm} into preallocated outputs, element-wise work runs in Java over direct {@link FloatBuffer} views of
 * the same memory (no copies), with fp32 operations in the order PyTorch uses so results stay within rounding of
 * Hugging Face transformers.
 */
final class Kernels {
    private Kernels() {}

    static INDArray matrix(long rows, long cols) {
        return Nd4j.create(DataType.FLOAT, new long[] {rows, cols}, 'c');
    }

    /** Checks that {@code a} is a dense row-major fp32 matrix of the given shape (views of whole rows are fine). */
    static void requireMatrix(INDArray a, long rows, long cols, String what) {
        if (a.rank() != 2 || a.rows() != rows || a.columns() != cols) {
            throw new IllegalArgumentException(what + ": expected [" + rows + ", " + cols + "], got "
                    + java.util.Arrays.toString(a.shape()));
        }
        if (a.dataType() != DataType.FLOAT) {
            throw new IllegalArgumentException(what + ": expected FLOAT, got " + a.dataType());
        }
        if (!isRowMajor(a)) {
            throw new IllegalArgumentException(what + ": expected a dense row-major ('c') matrix");
        }
    }

    static boolean isRowMajor(INDArray a) {
        return a.rank() == 2 && (a.rows() <= 1 || a.stride(0) == a.columns()) && (a.columns() <= 1 || a.stride(1) == 1);
    }

    /** A view of the elements of a dense row-major array, starting at its first element. */
    static FloatBuffer floats(INDArray a) {
        FloatBuffer all = a.data().asNioFloat();
        if (a.offset() == 0 && all.capacity() == a.length()) {
            return all;
        }
        all.position((int) a.offset());
        all.limit((int) (a.offset() + a.length()));
        return all.slice();
    }

    static FloatPointer pointer(INDArray a, long elementOffset) {
        FloatPointer p = new FloatPointer(a.data().addressPointer());
        return p.position(a.offset() + elementOffset);
    }

    /** {@code y = x · Wᵀ (+ bias)}: x [n, in], W [out, in], y [n, out]; like torch's addmm, bias is the gemm's C. */
    static void linear(INDArray x, LinearWeights w, INDArray y) {
        INDArray weight = w.weight();
        if (weight.rank() != 2 || weight.rows() != w.outFeatures() || weight.columns() != w.inFeatures()) {
            throw new IllegalStateException("weight shape " + java.util.Arrays.toString(weight.shape())
                    + " does not match [" + w.outFeatures() + ", " + w.inFeatures() + "]");
        }
        if (weight.dataType() != DataType.FLOAT) {
            weight = weight.castTo(DataType.FLOAT);
        }
        float[] bias = w.bias();
        double beta = 0.0;
        if (bias != null) {
            FloatBuffer out = floats(y);
            int rows = y.rows();
            int cols = y.columns();
            for (int r = 0; r < rows; r++) {
                out.put(r * cols, bias, 0, cols);
            }
            beta = 1.0;
        }
        Nd4j.gemm(x, weight, y, false, true, 1.0, beta);
    }

    /**
     * Row-major single-precision gemm on parts of arrays: {@code C = alpha · A · op(B) + beta · C} where A is
     * {@code m×k} at {@code a[aOff]} with leading dimension {@code lda}, op(B) is {@code k×n} (B is {@code n×k} at
     * {@code b[bOff]} when {@code transB}). Used for the attention products on per-head column blocks, which ND4J
     * would copy out of the interleaved [tokens, heads·headDim] layout before multiplying.
     */
    static void gemm(int m, int n, int k, float alpha, INDArray a, long aOff, int lda, INDArray b, long bOff, int ldb,
            boolean transB, float beta, INDArray c, long cOff, int ldc) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, transB ? CblasTrans : CblasNoTrans, m, n, k, alpha,
                pointer(a, aOff), lda, pointer(b, bOff), ldb, beta, pointer(c, cOff), ldc);
        // the pointers do not own the arrays' memory: the arrays must outlive the native call
        java.lang.ref.Reference.reachabilityFence(a);
        java.lang.ref.Reference.reachabilityFence(b);
        java.lang.ref.Reference.reachabilityFence(c);
    }

    /**
     * RMSNorm of {@code rows} contiguous rows of {@code width} elements, as transformers' LlamaRMSNorm computes it in
     * fp32: {@code weight * (x * rsqrt(mean(x²) + eps))}. {@code in} and {@code out} may be the same buffer.
     */
    static void rmsNorm(FloatBuffer in, FloatBuffer out, int rows, int width, float[] weight, float eps) {
        for (int r = 0; r < rows; r++) {
            int base = r * width;
            double sum = 0;
            for (int j = 0; j < width; j++) {
                float v = in.get(base + j);
                sum += v * v;
            }
            float variance = (float) (sum / width);
            float scale = 1f / (float) Math.sqrt(variance + eps);
            for (int j = 0; j < width; j++) {
                out.put(base + j, weight[j] * (in.get(base + j) * scale));
            }
        }
    }

    /** {@code gate[i] = silu(gate[i]) * up[i]} with torch's {@code x / (1 + exp(-x))}. */
    static void siluMul(FloatBuffer gate, FloatBuffer up, int n) {
        for (int i = 0; i < n; i++) {
            float g = gate.get(i);
            float silu = g / (1f + (float) Math.exp(-g));
            gate.put(i, silu * up.get(i));
        }
    }

    /** {@code out[i] = a[i] + b[i]}; {@code out} may alias {@code a} or {@code b}. */
    static void add(FloatBuffer a, FloatBuffer b, FloatBuffer out, int n) {
        for (int i = 0; i < n; i++) {
            out.put(i, a.get(i) + b.get(i));
        }
    }

    static void copy(FloatBuffer from, FloatBuffer to, int n) {
        for (int i = 0; i < n; i++) {
            to.put(i, from.get(i));
        }
    }
}
