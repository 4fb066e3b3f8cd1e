package org.sparkquant.format.gguf;

import org.sparkquant.SparkQuantException;
import org.sparkquant.gptq.ColumnQuantizer;
import org.sparkquant.gptq.Gptq;
import org.sparkquant.gptq.GptqLoop;
import org.sparkquant.gptq.GptqPreparation;
import org.sparkquant.gptq.Hessian;

/**
 * GPTQ-calibrated ggml quantization: GPTQ's column loop ({@link Gptq#quantize(float[], int, int, GptqPreparation,
 * ColumnQuantizer)}, docs/formats.md §2) onto the grid of a ggml block type (Q4_0 … Q8_0, Q2_K … Q6_K), writing
 * GGUF tensor bytes. Called per block of output rows with a {@link GptqPreparation} made once per layer input by
 * {@link Gptq#prepare}.
 *
 * <pre>{@code
 * GptqPreparation prep = Gptq.prepare(hessian, QuantConfig.defaults());          // desc_act must be off
 * GgmlQuantizedRows q = GgmlGptq.quantize(rows, rowCount, prep, GgmlType.Q4_K, null);
 * }</pre>
 *
 * <p><b>Semantics.</b> Columns are processed in their natural order (ggml blocks run along the input dimension, so
 * act-order is rejected), in lazy batches of {@code prep.config().blockSize()} columns exactly as GPTQ does: inside
 * a batch the error of column i is fed back eagerly into the batch's later columns, W1[:, i:] −= err ⊗ U[i, i:];
 * after the batch all later columns get W[:, i2:] −= Err1 · U[i1:i2, i2:]. The ggml type replaces GPTQ's grouped
 * min-max quantizer:
 * <ul>
 *   <li>At the first column c of each ggml block (32 elements, or a 256-element k-quant super-block) the block's
 *       scales are chosen by {@link GgmlQuant#chooseScales} from the <em>current</em> weights of the whole block:
 *       the values after the error feedback of every column before c, and nothing else. This is what GPTQ's
 *       group-start rule {@code find_params(W[:, c:c+g])} reads whenever the group starts a lazy batch (g = B = 128
 *       in the reference; here with the default B = 128 every super-block start is a batch start, so the
 *       super-block's two batches are read from the global W, which then holds every earlier update). Where a
 *       block starts inside a batch (32-element types), its columns are read from the batch's eagerly updated
 *       copy W1 — the reference's rule for g &lt; B would read the stale global W, which misses the updates of
 *       the batch's earlier columns; we deliberately use the up-to-date values. Where a block starting inside a
 *       batch also runs past the batch end (only for batch sizes that are not a multiple of the block size), the
 *       pending lazy update of those tail columns, Err1[:, i1:c] · U[i1:c, tail], is applied to a temporary copy
 *       for the choice; the working W itself is updated once, by the batch update, as usual.</li>
 *   <li>Each column is then coded with the block's fixed scales ({@link GgmlBlockScales#quantize}: ggml's own
 *       element rule) and its error (w − dequant)/U[i,i] is propagated like GPTQ's. A block is encoded when its last
 *       column is coded.</li>
 *   <li>Importance (nullable, one value per column, e.g. {@link #hessianDiagonalImportance}) is passed to the
 *       scale choice as llama.cpp's imatrix. The importance-weighted Q4_0/Q4_1/Q5_0/Q5_1 choices also use the
 *       row's mean square, taken from the row as loaded (dead columns zeroed), before any error feedback.</li>
 *   <li>Dead columns (diag H = 0) are zeroed first, as GPTQ does.</li>
 * </ul>
 * With a diagonal H the factor U is diagonal, no error moves, and the result is byte-identical to
 * {@link GgmlQuant#quantizeRows} (the weighted 32-element formats excepted: their one-shot form stores its search
 * codes, see {@link GgmlBlockScales}).
 *
 * <p><b>Arithmetic and row partitions.</b> The solve runs in the preparation's precision; FP32 rounds every
 * operation to float like torch's fp32 GPTQ. Rows never mix, and any partition of a matrix's rows into calls gives
 * byte-identical results (rows padded for the block update's gemm, as in {@link Gptq#quantize}).
 */
public final class GgmlGptq {
    private GgmlGptq() {}

    /**
     * Quantizes rows [rowCount, prep.columns()] (row-major W rows, fp32) into {@code type}'s blocks with GPTQ error
     * feedback. {@code importance} (nullable) has one non-negative value per input column.
     */
    public static GgmlQuantizedRows quantize(float[] rows, int rowCount, GptqPreparation prep, GgmlType type,
            float[] importance) {
        return quantize(rows, rowCount, 0, prep, type, importance);
    }

    /**
     * {@link #quantize(float[], int, GptqPreparation, GgmlType, float[])} for rows [firstRow, firstRow + rowCount)
     * of a matrix: the block update runs on the matrix's global grid of 256-row gemm calls
     * (see {@link GptqLoop}), so any partition of the rows into calls gives byte-identical results.
     */
    public static GgmlQuantizedRows quantize(float[] rows, int rowCount, int firstRow, GptqPreparation prep,
            GgmlType type, float[] importance) {
        int n = prep.columns();
        if (prep.config().descAct()) {
            throw SparkQuantException.badInput("GPTQ into ggml " + type + " blocks needs the natural column order, "
                    + "but the preparation uses act-order (desc_act): ggml blocks run along the input dimension; "
                    + "prepare with desc_act off");
        }
        checkShape(type, n);
        if (rowCount < 0 || (long) rowCount * n != rows.length) {
            throw SparkQuantException.badInput("weight block of " + rows.length + " values is not [" + rowCount + ", "
                    + n + "]");
        }
        checkImportance(importance, n);
        long rowBytes = type.rowBytes(n);
        if ((long) rowCount * rowBytes > Integer.MAX_VALUE - 8) {
            throw SparkQuantException.badInput(rowCount + " rows of " + rowBytes + " bytes do not fit one block of "
                    + "output; quantize fewer rows per call");
        }
        BlockGrid grid = new BlockGrid(type, importance, rowCount, n);
        GptqLoop.Result loop = Gptq.quantize(rows, rowCount, firstRow, prep, grid);
        return new GgmlQuantizedRows(type, rowCount, n, grid.data, loop.dequantized(), loop.losses());
    }

    /**
     * The baseline without a Hessian: {@link GgmlQuant}'s reference (or importance-weighted) quantizer on each row,
     * with the dequantized rows; losses are NaN.
     */
    public static GgmlQuantizedRows rtn(float[] rows, int rowCount, int columns, GgmlType type, float[] importance) {
        checkShape(type, columns);
        if (rowCount < 0 || (long) rowCount * columns != rows.length) {
            throw SparkQuantException.badInput("weight block of " + rows.length + " values is not [" + rowCount + ", "
                    + columns + "]");
        }
        checkImportance(importance, columns);
        for (int r = 0; r < rowCount; r++) {
            GgmlQuant.requireFinite(rows, r * columns, columns, "weight row " + r);
        }
        byte[] data = GgmlQuant.quantizeRows(type, rows, rowCount, columns, importance);
        float[] deq = new float[rows.length];
        GgmlQuant.dequantize(type, data, 0, deq, 0, rows.length);
        double[] losses = new double[rowCount];
        java.util.Arrays.fill(losses, Double.NaN);
        return new GgmlQuantizedRows(type, rowCount, columns, data, deq, losses);
    }

    /**
     * diag(H)/2 per column as an importance vector ({@code --importance hessian-diag}). With AutoGPTQ's
     * H = 2/n·Σ xxᵀ this is Σx²/n_sequences, llama.cpp's imatrix statistic (Σx²/n_tokens) times the tokens per
     * sequence; ggml's weighted quantizers are weighted least squares, so a common positive factor does not change
     * their choice beyond float rounding.
     */
    public static float[] hessianDiagonalImportance(Hessian h) {
        double[] d = h.diagonal();
        float[] out = new float[d.length];
        for (int i = 0; i < d.length; i++) {
            if (!Double.isFinite(d[i]) || d[i] < 0) {
                throw SparkQuantException.badInput("Hessian diagonal at column " + i + " is " + d[i]
                        + ": cannot be an importance");
            }
            out[i] = (float) (d[i] / 2);
        }
        return out;
    }

    private static void checkShape(GgmlType type, int columns) {
        if (!type.isQuantized()) {
            throw SparkQuantException.badInput("GPTQ needs a block-quantized ggml type, got " + type);
        }
        if (columns % type.blockSize() != 0) {
            throw SparkQuantException.badInput("input width " + columns + " is not a multiple of the " + type
                    + " block size " + type.blockSize());
        }
    }

    private static void checkImportance(float[] importance, int columns) {
        if (importance == null) {
            return;
        }
        if (importance.length != columns) {
            throw SparkQuantException.badInput("importance has " + importance.length + " values for " + columns
                    + " input columns");
        }
        for (int i = 0; i < columns; i++) {
            if (!(importance[i] >= 0) || Float.isInfinite(importance[i])) {
                throw SparkQuantException.badInput("importance of column " + i + " is " + importance[i]
                        + "; must be finite and non-negative");
            }
        }
    }

    /**
     * ggml's block codecs as GPTQ's grid: scales chosen at each block start from the current weights, each weight
     * coded with ggml's element rule, a row's block encoded into its tensor bytes when its last column is coded.
     */
    private static final class BlockGrid implements ColumnQuantizer {
        private final GgmlType type;
        private final float[] importance;
        private final int n;
        private final int rowBytes;
        private final byte[] data;

        BlockGrid(GgmlType type, float[] importance, int rows, int n) {
            this.type = type;
            this.importance = importance;
            this.n = n;
            this.rowBytes = (int) type.rowBytes(n);
            this.data = new byte[rows * rowBytes];
        }

        @Override
        public int groupColumns() {
            return type.blockSize();
        }

        @Override
        public boolean choosesFromCurrentWeights() {
            return true;
        }

        @Override
        public Row row(int row, float[] original, boolean[] dead) {
            float meanSquare = 0;
            if (importance != null && !type.isKQuant()) {
                float sumX2 = 0; // the order and precision of GgmlQuant.quantizeRow
                for (int c = 0; c < n; c++) {
                    float v = dead[c] ? 0 : original[c];
                    sumX2 += v * v;
                }
                meanSquare = sumX2 / n;
            }
            float rowMeanSquare = meanSquare;
            int bs = type.blockSize();
            int[] codes = new int[bs];
            return new Row() {
                private GgmlBlockScales scales;

                @Override
                public void choose(int column, double[] weights, int length) {
                    float[] x = new float[length];
                    for (int k = 0; k < length; k++) {
                        x[k] = (float) weights[k];
                    }
                    scales = GgmlQuant.chooseScales(type, x, 0, importance, column, rowMeanSquare);
                }

                @Override
                public double code(int column, double x) {
                    int j = column % bs;
                    int q = scales.quantize(j, (float) x);
                    codes[j] = q;
                    if (j == bs - 1) {
                        scales.encode(codes, 0, data, row * rowBytes + (column / bs) * type.bytesPerBlock());
                    }
                    return scales.dequantize(j, q);
                }
            };
        }
    }
}
