package org.sparkquant.gptq;

import java.io.Serializable;
import org.sparkquant.SparkQuantException;

/**
 * GPTQ / RTN quantization settings, named as in AutoGPTQ's {@code BaseQuantizeConfig} and GPTQModel's
 * {@code QuantizeConfig}.
 *
 * @param bits              2, 3, 4 or 8
 * @param groupSize         −1 (one group per row) or a power of two ≥ 16
 * @param sym               symmetric quantizer (zero fixed at (maxq+1)/2)
 * @param descAct           act-order: quantize columns by descending Hessian diagonal
 * @param staticGroups      group parameters from the unquantized (post dead-column) weight, fixed up front
 * @param dampPercent       relative damping: H[i,i] += dampPercent · mean(diag H); in (0, 1)
 * @param dampAutoIncrement added to dampPercent each time the Cholesky factorization fails (GPTQModel); in (0, 1)
 * @param mse               grid-search the clipping range per group (AutoGPTQ quantizer {@code mse=True})
 * @param mseNorm           error norm p of the search, Σ|q − x|^p
 * @param mseGrid           grid resolution (shrink step 1/grid)
 * @param mseMaxShrink      smallest range tried is (1 − maxShrink) of the full one
 * @param precision         arithmetic of the solve
 * @param blockSize         GPTQ lazy-batch block size (columns per block), a multiple of 16
 */
public record QuantConfig(int bits, int groupSize, boolean sym, boolean descAct, boolean staticGroups,
                          double dampPercent, double dampAutoIncrement, boolean mse, double mseNorm, int mseGrid,
                          double mseMaxShrink, Precision precision, int blockSize) implements Serializable {

    public QuantConfig {
        if (bits != 2 && bits != 3 && bits != 4 && bits != 8) {
            throw SparkQuantException.badInput("bits must be 2, 3, 4 or 8, got " + bits);
        }
        if (groupSize != -1 && (groupSize < 16 || Integer.bitCount(groupSize) != 1)) {
            throw SparkQuantException.badInput("group size must be -1 or a power of two >= 16, got " + groupSize);
        }
        if (staticGroups && groupSize == -1) {
            throw SparkQuantException.badInput("static groups need a group size (got group size -1)");
        }
        if (!(dampPercent > 0 && dampPercent < 1)) {
            throw SparkQuantException.badInput("damp percent must be in (0, 1), got " + dampPercent);
        }
        if (!(dampAutoIncrement > 0 && dampAutoIncrement < 1)) {
            throw SparkQuantException.badInput("damp auto increment must be in (0, 1), got " + dampAutoIncrement);
        }
        if (!(mseNorm > 0) || Double.isInfinite(mseNorm)) {
            throw SparkQuantException.badInput("mse norm must be positive, got " + mseNorm);
        }
        if (mseGrid < 1) {
            throw SparkQuantException.badInput("mse grid must be >= 1, got " + mseGrid);
        }
        if (!(mseMaxShrink > 0 && mseMaxShrink <= 1)) {
            throw SparkQuantException.badInput("mse max shrink must be in (0, 1], got " + mseMaxShrink);
        }
        if (precision == null) {
            throw SparkQuantException.badInput("precision must be FP32 or FP64");
        }
        if (blockSize < 16 || blockSize % 16 != 0) {
            // multiples of 16 keep the lazy-batch gemm on OpenBLAS's full kernels (see GptqLoop)
            throw SparkQuantException.badInput("block size must be a positive multiple of 16, got " + blockSize);
        }
    }

    /** 4-bit, group 128, symmetric, no act-order, damp 0.01 (+0.0025 per retry), no MSE, FP32, block 128. */
    public static QuantConfig defaults() {
        return new QuantConfig(4, 128, true, false, false, 0.01, 0.0025, false, 2.4, 100, 0.8, Precision.FP32, 128);
    }

    /** Largest code, 2^bits − 1. */
    public int maxq() {
        return (1 << bits) - 1;
    }

    /** Columns per group for a matrix of {@code columns} input columns (group size −1 means all). */
    public int groupColumns(int columns) {
        return groupSize == -1 ? columns : groupSize;
    }

    /** Number of groups G = ceil(columns / group). */
    public int groups(int columns) {
        return groupSize == -1 ? 1 : (columns + groupSize - 1) / groupSize;
    }

    public QuantConfig withBits(int v) {
        return new QuantConfig(v, groupSize, sym, descAct, staticGroups, dampPercent, dampAutoIncrement, mse,
                mseNorm, mseGrid, mseMaxShrink, precision, blockSize);
    }

    public QuantConfig withGroupSize(int v) {
        return new QuantConfig(bits, v, sym, descAct, staticGroups, dampPercent, dampAutoIncrement, mse,
                mseNorm, mseGrid, mseMaxShrink, precision, blockSize);
    }

    public QuantConfig withSym(boolean v) {
        return new QuantConfig(bits, groupSize, v, descAct, staticGroups, dampPercent, dampAutoIncrement, mse,
                mseNorm, mseGrid, mseMaxShrink, precision, blockSize);
    }

    public QuantConfig withDescAct(boolean v) {
        return new QuantConfig(bits, groupSize, sym, v, staticGroups, dampPercent, dampAutoIncrement, mse,
                mseNorm, mseGrid, mseMaxShrink, precision, blockSize);
    }

    public QuantConfig withStaticGroups(boolean v) {
        return new QuantConfig(bits, groupSize, sym, descAct, v, dampPercent, dampAutoIncrement, mse,
                mseNorm, mseGrid, mseMaxShrink, precision, blockSize);
    }

    public QuantConfig withDampPercent(double v) {
        return new QuantConfig(bits, groupSize, sym, descAct, staticGroups, v, dampAutoIncrement, mse,
                mseNorm, mseGrid, mseMaxShrink, precision, blockSize);
    }

    public QuantConfig withDampAutoIncrement(double v) {
        return new QuantConfig(bits, groupSize, sym, descAct, staticGroups, dampPercent, v, mse,
                mseNorm, mseGrid, mseMaxShrink, precision, blockSize);
    }

    public QuantConfig withMse(boolean v) {
        return new QuantConfig(bits, groupSize, sym, descAct, staticGroups, dampPercent, dampAutoIncrement, v,
                mseNorm, mseGrid, mseMaxShrink, precision, blockSize);
    }

    public QuantConfig withPrecision(Precision v) {
        return new QuantConfig(bits, groupSize, sym, descAct, staticGroups, dampPercent, dampAutoIncrement, mse,
                mseNorm, mseGrid, mseMaxShrink, v, blockSize);
    }

    public QuantConfig withBlockSize(int v) {
        return new QuantConfig(bits, groupSize, sym, descAct, staticGroups, dampPercent, dampAutoIncrement, mse,
                mseNorm, mseGrid, mseMaxShrink, precision, v);
    }
}
