package org.sparkquant.gptq;

import static org.bytedeco.openblas.global.openblas.CblasNoTrans;
import static org.bytedeco.openblas.global.openblas.CblasRowMajor;
import static org.bytedeco.openblas.global.openblas.cblas_dgemm;

import org.bytedeco.javacpp.DoublePointer;
import org.sparkquant.SparkQuantException;

/**
 * The GPTQ package's entry point: GPTQ exactly as AutoGPTQ / GPTQModel run it (docs/formats.md §2), split for Spark
 * into {@link #prepare} (once per distinct layer input: Hessian → {@link GptqPreparation}, broadcast) and
 * {@link #quantize} (per block of output rows, on any executor); plus {@link #rtn} and a quality measure.
 * Hessians come from {@link HessianAccumulator}.
 *
 * <pre>{@code
 * HessianAccumulator acc = HessianAccumulator.create(in);
 * for (INDArray seq : calibration) acc.add(seq);           // [tokens, in] per sequence
 * GptqPreparation prep = Gptq.prepare(acc.finish(), config);
 * QuantizedRows q = Gptq.quantize(weightRows, rowCount, prep, config);
 * }</pre>
 */
public final class Gptq {
    private Gptq() {}

    /** Step (a): dead columns, act-order permutation, damping and the Cholesky factor of H⁻¹. */
    public static GptqPreparation prepare(Hessian hessian, QuantConfig config) {
        return GptqPreparation.prepare(hessian, config);
    }

    /** Step (b) for a block that starts at row 0 of its matrix (or whose row position does not matter). */
    public static QuantizedRows quantize(float[] rows, int rowCount, GptqPreparation prep, QuantConfig config) {
        return quantize(rows, rowCount, 0, prep, config);
    }

    /**
     * Step (b): quantizes rows [rowCount, prep.columns()] (row-major W rows, fp32) that are rows [firstRow,
     * firstRow + rowCount) of their matrix. Any partition of a matrix's rows into blocks, each given its firstRow,
     * gives byte-identical results (for one OpenBLAS kernel and thread count). {@code config} must agree with the
     * preparation on every setting the preparation depends on.
     */
    public static QuantizedRows quantize(float[] rows, int rowCount, int firstRow, GptqPreparation prep,
                                         QuantConfig config) {
        QuantConfig p = prep.config();
        if (p.descAct() != config.descAct() || p.precision() != config.precision()
                || p.blockSize() != config.blockSize() || p.dampPercent() != config.dampPercent()
                || p.dampAutoIncrement() != config.dampAutoIncrement()) {
            throw SparkQuantException.internal("GPTQ preparation was made for " + p + " but quantize got " + config, null);
        }
        GptqPreparation prepared = prep.withConfig(config);
        MinMaxColumns grid = new MinMaxColumns(prepared, rowCount);
        return grid.result(GptqLoop.run(rows, rowCount, firstRow, prepared, grid));
    }

    /**
     * Step (b) onto any grid: GPTQ's column loop over rows [firstRow, firstRow + rowCount) of a matrix, coding with
     * {@code quantizer}, which keeps the codes; same row-partition invariance as the min-max grid.
     */
    public static GptqLoop.Result quantize(float[] rows, int rowCount, int firstRow, GptqPreparation prep,
                                           ColumnQuantizer quantizer) {
        return GptqLoop.run(rows, rowCount, firstRow, prep, quantizer);
    }

    /** Round-to-nearest with the same quantizer and grouping, no Hessian. */
    public static QuantizedRows rtn(float[] rows, int rowCount, int columns, QuantConfig config) {
        return Rtn.quantize(rows, rowCount, columns, config);
    }

    /**
     * Per-row Hessian-weighted error ΔW_r · H · ΔW_rᵀ with ΔW = original − dequantized, in fp64 (the quantity GPTQ
     * minimises; summing it over rows gives tr(ΔW H ΔWᵀ)).
     */
    public static double[] hessianError(Hessian h, float[] original, float[] dequantized, int rowCount) {
        int n = h.columns();
        if ((long) rowCount * n != original.length || original.length != dequantized.length) {
            throw SparkQuantException.badInput("weight blocks do not match [" + rowCount + ", " + n + "]");
        }
        double[] e = new double[original.length];
        for (int i = 0; i < e.length; i++) {
            e[i] = (double) original[i] - dequantized[i];
        }
        double[] out = new double[rowCount];
        int tile = Hessian.tileRowsFor(n);
        try (DoublePointer ep = new DoublePointer(e); DoublePointer eh = new DoublePointer((long) rowCount * n)) {
            eh.zero();
            for (int a = 0; a < n; a += tile) {
                int b = Math.min(n, a + tile);
                try (DoublePointer ht = new DoublePointer(h.rowTile(a, b))) {
                    // EH += E[:, a:b] · H[a:b, :]
                    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rowCount, n, b - a, 1.0, ep.getPointer(a),
                            n, ht, n, 1.0, eh, n);
                }
            }
            double[] ehv = new double[n];
            for (int r = 0; r < rowCount; r++) {
                eh.getPointer((long) r * n).get(ehv, 0, n);
                double s = 0;
                for (int j = 0; j < n; j++) {
                    s += e[r * n + j] * ehv[j];
                }
                out[r] = s;
            }
        }
        return out;
    }
}
