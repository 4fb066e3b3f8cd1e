package org.sparkquant.gptq;

import static org.bytedeco.openblas.global.openblas.CblasNoTrans;
import static org.bytedeco.openblas.global.openblas.CblasRowMajor;
import static org.bytedeco.openblas.global.openblas.cblas_dgemm;
import static org.bytedeco.openblas.global.openblas.cblas_sgemm;

import java.nio.DoubleBuffer;
import java.nio.FloatBuffer;
import org.bytedeco.javacpp.DoublePointer;
import org.bytedeco.javacpp.FloatPointer;
import org.bytedeco.javacpp.Pointer;
import org.sparkquant.SparkQuantException;
import org.sparkquant.format.gguf.GgmlBlockScales;
import org.sparkquant.format.gguf.GgmlQuant;
import org.sparkquant.format.gguf.GgmlType;
import org.sparkquant.linalg.OpenBlas;

/**
 * GPTQ-calibrated ggml quantization: GPTQ's column loop and error feedback (docs/formats.md §2) over the grid of a ggml
 * block type (Q4_0 … Q8_0, Q2_K … Q6_K), writing GGUF tensor bytes. Called per block of output rows with a
 * {@link GptqPreparation} made once per layer input by {@link Gptq#prepare}.
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
    /** Bytes of native working matrix per chunk of rows. */
    private static final long CHUNK_BYTES = 256L << 20;

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
     * of a matrix: the block update runs on the matrix's global grid of {@value GptqSolver#CALL_ROWS}-row gemm calls
     * (see {@link GptqSolver}), so any partition of the rows into calls gives byte-identical results.
     */
    public static GgmlQuantizedRows quantize(float[] rows, int rowCount, int firstRow, GptqPreparation prep,
            GgmlType type, float[] importance) {
        OpenBlas.verify();
        int n = prep.columns();
        if (firstRow < 0) {
            throw SparkQuantException.internal("first row must be >= 0, got " + firstRow, null);
        }
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
        Output out = new Output(rowCount, n, (int) rowBytes);
        boolean f32 = prep.config().precision() == Precision.FP32;
        long rowMem = (long) n * (f32 ? 4 : 8);
        int grid = GptqSolver.CALL_ROWS;
        long chunk = Math.max(grid, CHUNK_BYTES / rowMem / grid * grid);
        long end = (long) firstRow + rowCount;
        // chunks of the global call grid; each holds the real rows of [firstRow, end) that fall into it
        for (long cs = firstRow - firstRow % grid; cs < end; cs += chunk) {
            long lo = Math.max(firstRow, cs);
            long hi = Math.min(end, cs + chunk);
            new Chunk(prep, type, importance, rows, (int) (lo - firstRow), (int) (hi - lo), (int) (lo - cs), out)
                    .run();
        }
        return new GgmlQuantizedRows(type, rowCount, n, out.data, out.dequantized, out.losses);
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

    private static final class Output {
        final byte[] data;
        final float[] dequantized;
        final double[] losses;
        final int rowBytes;

        Output(int rows, int n, int rowBytes) {
            this.rowBytes = rowBytes;
            data = new byte[rows * rowBytes];
            dequantized = new float[Math.multiplyExact(rows, n)];
            losses = new double[rows];
        }
    }

    /**
     * Rows [r0, r0+m) of the call, with their native working copy of W: {@code lead} zero rows first (the rows' place
     * on the global call grid), zero rows up to a multiple of CALL_ROWS after.
     */
    private static final class Chunk {
        private final GptqPreparation prep;
        private final GgmlType type;
        private final float[] importance;
        private final float[] rows;
        private final int r0;
        private final int m;
        private final int lead;
        private final int padded;
        private final int n;
        private final int batch;
        private final int bs;
        private final int bpb;
        private final boolean f32;
        private final Output out;
        private final boolean[] dead;
        /** Mean square of each loaded row (only the weighted 32-element formats read it). */
        private final float[] rowMeanSquare;
        /** Scales of each row's current ggml block, and the codes of that block so far. */
        private final GgmlBlockScales[] scales;
        private final int[][] codes;
        // Native working W [padded, n] row-major.
        private FloatPointer w32;
        private FloatBuffer w32v;
        private DoublePointer w64;
        private DoubleBuffer w64v;

        Chunk(GptqPreparation prep, GgmlType type, float[] importance, float[] rows, int r0, int m, int lead,
                Output out) {
            this.prep = prep;
            this.type = type;
            this.importance = importance;
            this.rows = rows;
            this.r0 = r0;
            this.m = m;
            this.lead = lead;
            int grid = GptqSolver.CALL_ROWS;
            this.padded = (lead + m + grid - 1) / grid * grid;
            this.n = prep.columns();
            this.batch = prep.config().blockSize();
            this.bs = type.blockSize();
            this.bpb = type.bytesPerBlock();
            this.f32 = prep.config().precision() == Precision.FP32;
            this.out = out;
            this.dead = prep.deadRef();
            this.rowMeanSquare = new float[m];
            this.scales = new GgmlBlockScales[m];
            this.codes = new int[m][bs];
        }

        void run() {
            long size = (long) padded * n;
            long errSize = (long) padded * batch;
            FloatPointer err32 = null;
            DoublePointer err64 = null;
            FloatPointer hb32 = null;
            DoublePointer hb64 = null;
            try {
                if (f32) {
                    w32 = new FloatPointer(size).zero();
                    w32v = w32.asBuffer();
                    err32 = new FloatPointer(errSize).zero();
                    hb32 = new FloatPointer((long) batch * n);
                } else {
                    w64 = new DoublePointer(size).zero();
                    w64v = w64.asBuffer();
                    err64 = new DoublePointer(errSize).zero();
                    hb64 = new DoublePointer((long) batch * n);
                }
                Parallel.forEach(m, this::loadRow);
                for (int i1 = 0; i1 < n; i1 += batch) {
                    batch(i1, Math.min(n, i1 + batch), err32, err64, hb32, hb64);
                }
                for (int r = 0; r < m; r++) {
                    out.losses[r0 + r] /= 2;
                }
            } finally {
                for (Pointer p : new Pointer[] {w32, w64, err32, err64, hb32, hb64}) {
                    if (p != null) {
                        p.deallocate();
                    }
                }
            }
        }

        /** Row r with dead columns zeroed into W; its mean square for the weighted 32-element formats. */
        private void loadRow(int r) {
            int base = (r0 + r) * n;
            float[] w = new float[n];
            for (int c = 0; c < n; c++) {
                float v = rows[base + c];
                if (!Float.isFinite(v)) {
                    throw SparkQuantException.badInput("weight row " + (r0 + r) + " column " + c + " is " + v);
                }
                w[c] = dead[c] ? 0f : v;
            }
            if (importance != null && !type.isKQuant()) {
                float sumX2 = 0; // the order and precision of GgmlQuant.quantizeRow
                for (int c = 0; c < n; c++) {
                    sumX2 += w[c] * w[c];
                }
                rowMeanSquare[r] = sumX2 / n;
            }
            if (f32) {
                w32v.put((lead + r) * n, w, 0, n);
            } else {
                double[] d = new double[n];
                for (int c = 0; c < n; c++) {
                    d[c] = w[c];
                }
                w64v.put((lead + r) * n, d, 0, n);
            }
        }

        private void batch(int i1, int i2, FloatPointer err32, DoublePointer err64, FloatPointer hb32,
                           DoublePointer hb64) {
            int cnt = i2 - i1;
            int width = n - i1;
            int b = i1 / batch;
            // Hinv1 = U[i1:i2, i1:i2] as double (exact for float).
            double[] hd = new double[cnt * cnt];
            if (f32) {
                float[] blk = prep.block32(b);
                for (int i = 0; i < cnt; i++) {
                    for (int j = i; j < cnt; j++) {
                        hd[i * cnt + j] = blk[i * width + j];
                    }
                }
            } else {
                double[] blk = prep.block64(b);
                for (int i = 0; i < cnt; i++) {
                    System.arraycopy(blk, i * width + i, hd, i * cnt + i, cnt - i);
                }
            }
            FloatBuffer e32v = f32 ? err32.asBuffer() : null;
            DoubleBuffer e64v = f32 ? null : err64.asBuffer();
            Parallel.forEach(m, r -> rowBatch(r, i1, i2, hd, e32v, e64v));
            if (i2 < n) {
                // W[:, i2:] -= Err1 · U[i1:i2, i2:]
                // in calls of exactly CALL_ROWS rows on the global grid: a row's bits never depend on its neighbours
                int call = GptqSolver.CALL_ROWS;
                if (f32) {
                    hb32.put(prep.block32(b), 0, cnt * width);
                    for (int c0 = 0; c0 < padded; c0 += call) {
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, call, n - i2, cnt, -1f,
                                err32.getPointer((long) c0 * batch), batch, hb32.getPointer(cnt), width, 1f,
                                w32.getPointer((long) c0 * n + i2), n);
                    }
                } else {
                    hb64.put(prep.block64(b), 0, cnt * width);
                    for (int c0 = 0; c0 < padded; c0 += call) {
                        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, call, n - i2, cnt, -1.0,
                                err64.getPointer((long) c0 * batch), batch, hb64.getPointer(cnt), width, 1.0,
                                w64.getPointer((long) c0 * n + i2), n);
                    }
                }
            }
        }

        /** The sequential column loop of one row over batch [i1, i2). */
        private void rowBatch(int r, int i1, int i2, double[] hd, FloatBuffer e32v, DoubleBuffer e64v) {
            int cnt = i2 - i1;
            double[] w1 = readW(r, i1, cnt);
            double[] err = new double[cnt];
            int outRow = r0 + r;
            int[] rowCodes = codes[r];
            double loss = 0;
            for (int i = 0; i < cnt; i++) {
                int c = i1 + i;
                int j = c % bs;
                if (j == 0) {
                    scales[r] = chooseScales(r, i1, i2, i, w1, err);
                }
                GgmlBlockScales s = scales[r];
                double w = w1[i];
                int q = s.quantize(j, (float) w);
                float dq = s.dequantize(j, q);
                rowCodes[j] = q;
                out.dequantized[outRow * n + c] = dq;
                if (j == bs - 1) {
                    s.encode(rowCodes, 0, out.data, outRow * out.rowBytes + (c / bs) * bpb);
                }
                double d = hd[i * cnt + i];
                double diff = r(w - dq);
                loss += r(r(diff * diff) / r(d * d));
                double e = r(diff / d);
                err[i] = e;
                int h0 = i * cnt;
                if (f32) {
                    for (int k = i + 1; k < cnt; k++) {
                        w1[k] = (float) (w1[k] - (float) (e * hd[h0 + k]));
                    }
                } else {
                    for (int k = i + 1; k < cnt; k++) {
                        w1[k] -= e * hd[h0 + k];
                    }
                }
            }
            out.losses[outRow] += loss;
            if (f32) {
                float[] e = new float[cnt];
                for (int i = 0; i < cnt; i++) {
                    e[i] = (float) err[i];
                }
                e32v.put((lead + r) * batch, e, 0, cnt);
            } else {
                e64v.put((lead + r) * batch, err, 0, cnt);
            }
        }

        /**
         * Scales of the ggml block starting at column c = i1 + i, from its current weights: columns inside the batch
         * from the eagerly updated w1; columns past the batch end from W minus the pending lazy update of the
         * batch's columns i1..c−1 (a temporary copy; nothing pending when c is the batch start).
         */
        private GgmlBlockScales chooseScales(int r, int i1, int i2, int i, double[] w1, double[] err) {
            int c = i1 + i;
            float[] x = new float[bs];
            int inBatch = Math.min(bs, i2 - c);
            for (int k = 0; k < inBatch; k++) {
                x[k] = (float) w1[i + k];
            }
            if (inBatch < bs) {
                double[] tail = readW(r, i2, bs - inBatch);
                int width = n - i1;
                int b = i1 / batch;
                float[] u32 = f32 ? prep.block32(b) : null;
                double[] u64 = f32 ? null : prep.block64(b);
                for (int k = 0; k < tail.length; k++) {
                    int col = i2 + k - i1;
                    double pending = 0;
                    for (int p = 0; p < i; p++) {
                        pending += err[p] * (f32 ? u32[p * width + col] : u64[p * width + col]);
                    }
                    x[inBatch + k] = (float) (tail[k] - pending);
                }
            }
            return GgmlQuant.chooseScales(type, x, 0, importance, c, rowMeanSquare[r]);
        }

        private double r(double v) {
            return f32 ? (float) v : v;
        }

        private double[] readW(int r, int c0, int len) {
            double[] dst = new double[len];
            int at = (lead + r) * n + c0;
            if (f32) {
                float[] f = new float[len];
                w32v.get(at, f, 0, len);
                for (int k = 0; k < len; k++) {
                    dst[k] = f[k];
                }
            } else {
                w64v.get(at, dst, 0, len);
            }
            return dst;
        }
    }
}
