package org.sparkquant.gptq;

import static org.bytedeco.openblas.global.openblas.CblasNoTrans;
import static org.bytedeco.openblas.global.openblas.CblasRowMajor;
import static org.bytedeco.openblas.global.openblas.cblas_dgemm;
import static org.bytedeco.openblas.global.openblas.cblas_sgemm;

import java.nio.DoubleBuffer;
import java.nio.FloatBuffer;
import org.bytedeco.javacpp.DoublePointer;
import org.bytedeco.javacpp.FloatPointer;
import org.sparkquant.SparkQuantException;
import org.sparkquant.linalg.OpenBlas;

/**
 * Step (b) of GPTQ: the column loop with lazy batch updates over a block of output rows, given a
 * {@link GptqPreparation}. Follows AutoGPTQ's {@code fasterquant} operation by operation (see docs/formats.md §2).
 *
 * <p><b>Row-partition invariance.</b> Rows never mix in GPTQ, so the only way a row's bits could depend on which
 * other rows are quantized with it is the block update W[:, i2:] −= Err1·Hinv[i1:i2, i2:] (sgemm/dgemm with rows on
 * M). OpenBLAS's result for an element depends on more than its operands: elements in a partial micro-tile use
 * edge code, the thread split moves tile boundaries with M, and some kernels (OpenBLAS 0.3.19 Haswell sgemm) even
 * round a row differently depending on its position within the call (all measured). So the update runs as calls of
 * exactly {@value #CALL_ROWS} rows on a grid fixed by the rows' global index ({@code firstRow}): a row always sits
 * at the same position of a call with the same dimensions, zero rows pad the grid, columns are padded to a multiple
 * of {@value #ALIGN} and the block size is a multiple of 16. Any partition of a matrix's rows into blocks then gives
 * the same bits for the same OpenBLAS kernel and thread count (the tests check blocks of 1, 7, 64, 100 and 256 rows).
 * Calls of 256 rows cost ~5 % over one call for all rows. The per-column work is done row by row in Java (rows in
 * parallel), deterministic by construction.
 */
final class GptqSolver {
    static final int ALIGN = 64;
    /** Rows per block-update gemm call, on a grid of global row indices. */
    static final int CALL_ROWS = 256;
    /** Rows per task of the in-block column loop (the vector length of its inner loops). */
    static final int STRIP = 256;
    /** Bytes of native working matrix per chunk of rows. */
    private static final long CHUNK_BYTES = 256L << 20;

    private GptqSolver() {}

    static QuantizedRows quantize(float[] rows, int rowCount, int firstRow, GptqPreparation prep) {
        OpenBlas.verify();
        QuantConfig cfg = prep.config();
        int n = prep.columns();
        if (rowCount < 0 || (long) rowCount * n != rows.length) {
            throw SparkQuantException.badInput("weight block of " + rows.length + " values is not [" + rowCount + ", "
                    + n + "]");
        }
        if (firstRow < 0) {
            throw SparkQuantException.internal("first row must be >= 0, got " + firstRow, null);
        }
        int g = cfg.groupColumns(n);
        int groups = cfg.groups(n);
        int[] perm = prep.permRef();
        int[] gIdx = new int[n];
        for (int k = 0; k < n; k++) {
            gIdx[perm[k]] = cfg.descAct() && !cfg.staticGroups() ? k / g : perm[k] / g;
        }
        Output out = new Output(rowCount, n, groups);
        boolean f32 = cfg.precision() == Precision.FP32;
        long rowBytes = (long) roundUp(n) * (f32 ? 4 : 8);
        long chunk = Math.max(CALL_ROWS, CHUNK_BYTES / rowBytes / CALL_ROWS * CALL_ROWS);
        long end = (long) firstRow + rowCount;
        // Chunks of the global call grid; each holds the real rows of [firstRow, end) that fall into it.
        for (long cs = firstRow - firstRow % CALL_ROWS; cs < end; cs += chunk) {
            long lo = Math.max(firstRow, cs);
            long hi = Math.min(end, cs + chunk);
            new Chunk(prep, rows, (int) (lo - firstRow), (int) (hi - lo), (int) (lo - cs), out).run();
        }
        return new QuantizedRows(rowCount, n, cfg.bits(), g, groups, out.codes, out.scales, out.zeros, gIdx,
                out.dequantized, out.losses);
    }

    static int roundUp(int count) {
        return (count + ALIGN - 1) / ALIGN * ALIGN;
    }

    private static final class Output {
        final byte[] codes;
        final float[] dequantized;
        final float[] scales;
        final int[] zeros;
        final double[] losses;

        Output(int rows, int n, int groups) {
            codes = new byte[Math.multiplyExact(rows, n)];
            dequantized = new float[codes.length];
            scales = new float[rows * groups];
            zeros = new int[rows * groups];
            losses = new double[rows];
        }
    }

    /**
     * Rows [r0, r0+m) of the block, with their native working copy of W: {@code lead} zero rows first (the rows'
     * place on the global call grid), zero rows up to a multiple of CALL_ROWS after, zero columns up to roundUp(n).
     */
    private static final class Chunk {
        private final GptqPreparation prep;
        private final QuantConfig cfg;
        private final MinMaxQuantizer quantizer;
        private final float[] rows;
        private final int r0;
        private final int m;
        private final int lead;
        private final int padded;
        private final int n;
        /** Row stride of the native W: n padded with zero columns. */
        private final int np;
        private final int g;
        private final int groups;
        private final boolean f32;
        private final Output out;
        private final int[] perm;
        private final boolean[] dead;
        // Native working W [padded, np], row-major, permuted column order; zero padding rows and columns.
        private FloatPointer w32;
        private FloatBuffer w32v;
        private DoublePointer w64;
        private DoubleBuffer w64v;
        /** Current group's scale and zero per row (non-static groups), or the whole-row params (group −1). */
        private final double[] params;
        /** Static group params per row: [m][groups][2]. */
        private final double[] staticParams;

        Chunk(GptqPreparation prep, float[] rows, int r0, int m, int lead, Output out) {
            this.prep = prep;
            this.cfg = prep.config();
            this.quantizer = new MinMaxQuantizer(cfg);
            this.rows = rows;
            this.r0 = r0;
            this.m = m;
            this.lead = lead;
            this.padded = (lead + m + CALL_ROWS - 1) / CALL_ROWS * CALL_ROWS;
            this.n = prep.columns();
            this.np = roundUp(n);
            this.g = cfg.groupColumns(n);
            this.groups = cfg.groups(n);
            this.f32 = cfg.precision() == Precision.FP32;
            this.out = out;
            this.perm = prep.permRef();
            this.dead = prep.deadRef();
            this.params = new double[2 * m];
            this.staticParams = cfg.staticGroups() ? new double[m * groups * 2] : null;
        }

        void run() {
            long size = (long) padded * np;
            if (f32) {
                w32 = new FloatPointer(size).zero();
                w32v = w32.asBuffer();
            } else {
                w64 = new DoublePointer(size).zero();
                w64v = w64.asBuffer();
            }
            try {
                Parallel.forEach(m, this::loadRow);
                int bs = cfg.blockSize();
                long errSize = (long) padded * bs;
                FloatPointer err32 = f32 ? new FloatPointer(errSize).zero() : null;
                DoublePointer err64 = f32 ? null : new DoublePointer(errSize).zero();
                FloatPointer hb32 = f32 ? new FloatPointer((long) bs * np) : null;
                DoublePointer hb64 = f32 ? null : new DoublePointer((long) bs * np);
                try {
                    for (int i1 = 0; i1 < n; i1 += bs) {
                        block(i1, Math.min(n, i1 + bs), err32, err64, hb32, hb64);
                    }
                } finally {
                    for (var p : new org.bytedeco.javacpp.Pointer[] {err32, err64, hb32, hb64}) {
                        if (p != null) {
                            p.deallocate();
                        }
                    }
                }
                for (int r = 0; r < m; r++) {
                    out.losses[r0 + r] /= 2;
                }
            } finally {
                if (w32 != null) {
                    w32.deallocate();
                }
                if (w64 != null) {
                    w64.deallocate();
                }
            }
        }

        /** Row r: params of the original row (group −1), dead columns zeroed, static groups, permuted into W. */
        private void loadRow(int r) {
            double[] w = new double[n];
            int base = (r0 + r) * n;
            for (int c = 0; c < n; c++) {
                float v = rows[base + c];
                if (!Float.isFinite(v)) {
                    throw SparkQuantException.badInput("weight row " + (r0 + r) + " column " + c + " is " + v);
                }
                w[c] = v;
            }
            if (cfg.groupSize() == -1) {
                quantizer.findParams(w, 0, n, params, 2 * r); // from the original W, before dead columns
            }
            for (int c = 0; c < n; c++) {
                if (dead[c]) {
                    w[c] = 0;
                }
            }
            if (staticParams != null) {
                for (int gi = 0; gi < groups; gi++) {
                    int c0 = gi * g;
                    quantizer.findParams(w, c0, Math.min(g, n - c0), staticParams, (r * groups + gi) * 2);
                }
            }
            if (f32) {
                float[] p = new float[n];
                for (int k = 0; k < n; k++) {
                    p[k] = (float) w[perm[k]];
                }
                w32v.put((lead + r) * np, p, 0, n);
            } else {
                double[] p = new double[n];
                for (int k = 0; k < n; k++) {
                    p[k] = w[perm[k]];
                }
                w64v.put((lead + r) * np, p, 0, n);
            }
        }

        private void block(int i1, int i2, FloatPointer err32, DoublePointer err64, FloatPointer hb32,
                           DoublePointer hb64) {
            int cnt = i2 - i1;
            int width = n - i1;
            int bs = cfg.blockSize();
            int b = i1 / bs;
            if (f32) {
                // Hinv1 = U[i1:i2, i1:i2]
                float[] blk = prep.block32(b);
                float[] hd = new float[cnt * cnt];
                for (int i = 0; i < cnt; i++) {
                    System.arraycopy(blk, i * width + i, hd, i * cnt + i, cnt - i);
                }
                FloatBuffer ev = err32.asBuffer();
                Parallel.forEach((m + STRIP - 1) / STRIP,
                        t -> strip32(t * STRIP, Math.min(m, (t + 1) * STRIP), i1, i2, hd, ev));
            } else {
                double[] blk = prep.block64(b);
                double[] hd = new double[cnt * cnt];
                for (int i = 0; i < cnt; i++) {
                    System.arraycopy(blk, i * width + i, hd, i * cnt + i, cnt - i);
                }
                DoubleBuffer ev = err64.asBuffer();
                Parallel.forEach((m + STRIP - 1) / STRIP,
                        t -> strip64(t * STRIP, Math.min(m, (t + 1) * STRIP), i1, i2, hd, ev));
            }
            if (i2 < n) {
                // W[:, i2:] -= Err1 · U[i1:i2, i2:], over the padded width (U's padding columns are zero)
                int wp = np - i1;
                if (f32) {
                    float[] blk = prep.block32(b);
                    float[] zeros = new float[np - n];
                    for (int i = 0; i < cnt; i++) {
                        hb32.getPointer((long) i * wp).put(blk, i * width, width);
                        hb32.getPointer((long) i * wp + width).put(zeros, 0, zeros.length);
                    }
                    for (int c0 = 0; c0 < padded; c0 += CALL_ROWS) {
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, CALL_ROWS, np - i2, cnt, -1f,
                                err32.getPointer((long) c0 * bs), bs, hb32.getPointer(cnt), wp, 1f,
                                w32.getPointer((long) c0 * np + i2), np);
                    }
                } else {
                    double[] blk = prep.block64(b);
                    double[] zeros = new double[np - n];
                    for (int i = 0; i < cnt; i++) {
                        hb64.getPointer((long) i * wp).put(blk, i * width, width);
                        hb64.getPointer((long) i * wp + width).put(zeros, 0, zeros.length);
                    }
                    for (int c0 = 0; c0 < padded; c0 += CALL_ROWS) {
                        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, CALL_ROWS, np - i2, cnt, -1.0,
                                err64.getPointer((long) c0 * bs), bs, hb64.getPointer(cnt), wp, 1.0,
                                w64.getPointer((long) c0 * np + i2), np);
                    }
                }
            }
        }

        /**
         * Scale and zero for row r at (permuted) column c, written to params[2r], params[2r+1]. At a group start
         * (non-static groups) they are found from the global W — previous blocks' updates, not this block's, as in
         * AutoGPTQ — and recorded in the output.
         */
        private int paramsAt(int r, int c, double[] scratch) {
            if (staticParams != null) {
                return (r * groups + (cfg.descAct() ? perm[c] : c) / g) * 2 + STATIC;
            }
            if (cfg.groupSize() != -1 && c % g == 0) {
                int len = Math.min(g, n - c);
                readW(r, c, len, scratch);
                quantizer.findParams(scratch, 0, len, params, 2 * r);
                int at = (r0 + r) * groups + c / g;
                out.scales[at] = (float) params[2 * r];
                out.zeros[at] = (int) params[2 * r + 1];
            }
            return 2 * r;
        }

        private static final int STATIC = 1 << 30; // marks an index into staticParams

        private double param(int at) {
            return at >= STATIC ? staticParams[at - STATIC] : params[at];
        }

        /** Whether column c switches the quantizer params (group start, or any column for static act-order). */
        private boolean paramsChange(int c, int i) {
            if (staticParams != null) {
                return cfg.descAct() || c % g == 0 || i == 0;
            }
            return i == 0 || (cfg.groupSize() != -1 && c % g == 0);
        }

        /**
         * The column loop of block [i1, i2) for rows [s0, s1), in float arithmetic as in the reference. The block is
         * held transposed, one array per column holding the strip's rows, so that quantization and the in-block
         * update W1[:, j] −= err · Hinv1[i, j] run as loops over rows with equal indices, which the JIT vectorizes;
         * the operations per element are exactly the reference's. Rounding half to even uses (t + 1.5·2^23) −
         * 1.5·2^23, exact for |t| < 2^22; larger |t| is clamped to 0 or maxq either way.
         */
        private void strip32(int s0, int s1, int i1, int i2, float[] hd, FloatBuffer ev) {
            int cnt = i2 - i1;
            int len = s1 - s0;
            int bs = cfg.blockSize();
            float[][] wt = new float[cnt][len];
            float[] row = new float[Math.max(cnt, bs)];
            for (int k = 0; k < len; k++) {
                w32v.get((lead + s0 + k) * np + i1, row, 0, cnt);
                for (int i = 0; i < cnt; i++) {
                    wt[i][k] = row[i];
                }
            }
            float[] sc = new float[len];
            float[] zr = new float[len];
            float[][] err = new float[cnt][len];
            float[][] deq = new float[cnt][len];
            float[] lossT = new float[len];
            double[] loss = new double[len];
            double[] scratch = cfg.groupSize() != -1 && staticParams == null ? new double[Math.min(g, n)] : null;
            float maxq = cfg.maxq();
            for (int i = 0; i < cnt; i++) {
                int c = i1 + i;
                if (paramsChange(c, i)) {
                    for (int k = 0; k < len; k++) {
                        int at = paramsAt(s0 + k, c, scratch);
                        sc[k] = (float) param(at);
                        zr[k] = (float) param(at + 1);
                    }
                }
                float d = hd[i * cnt + i];
                quantizeColumn(wt[i], sc, zr, maxq, d, err[i], deq[i], lossT, len);
                for (int k = 0; k < len; k++) {
                    loss[k] += lossT[k];
                }
                float[] e = err[i];
                for (int j = i + 1; j < cnt; j++) {
                    subtractScaled(wt[j], e, hd[i * cnt + j], len);
                }
            }
            for (int k = 0; k < len; k++) {
                int outRow = r0 + s0 + k;
                out.losses[outRow] += loss[k];
                for (int i = 0; i < cnt; i++) {
                    int o = outRow * n + perm[i1 + i];
                    out.codes[o] = (byte) (int) wt[i][k];
                    out.dequantized[o] = deq[i][k];
                    row[i] = err[i][k];
                }
                ev.put((lead + s0 + k) * bs, row, 0, cnt);
                recordFixedParams(s0 + k, i1);
            }
        }

        /** Quantizes column w in place to its codes; err, dequantized value and loss term per row. */
        private static void quantizeColumn(float[] w, float[] sc, float[] zr, float maxq, float d, float[] err,
                                           float[] deq, float[] lossT, int len) {
            final float magic = 0x1.8p23f;
            float dd = d * d;
            for (int k = 0; k < len; k++) {
                float x = w[k];
                float q = Math.min(maxq, Math.max(0f, ((x / sc[k] + magic) - magic) + zr[k]));
                float dq = sc[k] * (q - zr[k]);
                float diff = x - dq;
                lossT[k] = diff * diff / dd;
                err[k] = diff / d;
                deq[k] = dq;
                w[k] = q; // the column is consumed: keep its code
            }
        }

        /** As {@link #strip32} in double ((t + 1.5·2^52) − 1.5·2^52 rounds half to even for |t| < 2^51). */
        private void strip64(int s0, int s1, int i1, int i2, double[] hd, DoubleBuffer ev) {
            int cnt = i2 - i1;
            int len = s1 - s0;
            int bs = cfg.blockSize();
            double[][] wt = new double[cnt][len];
            double[] row = new double[Math.max(cnt, bs)];
            for (int k = 0; k < len; k++) {
                w64v.get((lead + s0 + k) * np + i1, row, 0, cnt);
                for (int i = 0; i < cnt; i++) {
                    wt[i][k] = row[i];
                }
            }
            double[] sc = new double[len];
            double[] zr = new double[len];
            double[][] err = new double[cnt][len];
            double[][] deq = new double[cnt][len];
            double[] loss = new double[len];
            double[] scratch = cfg.groupSize() != -1 && staticParams == null ? new double[Math.min(g, n)] : null;
            double maxq = cfg.maxq();
            for (int i = 0; i < cnt; i++) {
                int c = i1 + i;
                if (paramsChange(c, i)) {
                    for (int k = 0; k < len; k++) {
                        int at = paramsAt(s0 + k, c, scratch);
                        sc[k] = param(at);
                        zr[k] = param(at + 1);
                    }
                }
                quantizeColumn(wt[i], sc, zr, maxq, hd[i * cnt + i], err[i], deq[i], loss, len);
                double[] e = err[i];
                for (int j = i + 1; j < cnt; j++) {
                    subtractScaled(wt[j], e, hd[i * cnt + j], len);
                }
            }
            for (int k = 0; k < len; k++) {
                int outRow = r0 + s0 + k;
                out.losses[outRow] += loss[k];
                for (int i = 0; i < cnt; i++) {
                    int o = outRow * n + perm[i1 + i];
                    out.codes[o] = (byte) (int) wt[i][k];
                    out.dequantized[o] = (float) deq[i][k];
                    row[i] = err[i][k];
                }
                ev.put((lead + s0 + k) * bs, row, 0, cnt);
                recordFixedParams(s0 + k, i1);
            }
        }

        /** As the float version; the loss terms are added to {@code loss}. */
        private static void quantizeColumn(double[] w, double[] sc, double[] zr, double maxq, double d,
                                           double[] err, double[] deq, double[] loss, int len) {
            final double magic = 0x1.8p52;
            double dd = d * d;
            for (int k = 0; k < len; k++) {
                double x = w[k];
                double q = Math.min(maxq, Math.max(0.0, ((x / sc[k] + magic) - magic) + zr[k]));
                double dq = sc[k] * (q - zr[k]);
                double diff = x - dq;
                loss[k] += diff * diff / dd;
                err[k] = diff / d;
                deq[k] = dq;
                w[k] = q;
            }
        }

        /** y −= x · a over the first len elements (equal indices: the JIT vectorizes it). */
        private static void subtractScaled(float[] y, float[] x, float a, int len) {
            for (int k = 0; k < len; k++) {
                y[k] -= x[k] * a;
            }
        }

        private static void subtractScaled(double[] y, double[] x, double a, int len) {
            for (int k = 0; k < len; k++) {
                y[k] -= x[k] * a;
            }
        }

        /** Whole-row (group −1) and static params are known up front: record them once. */
        private void recordFixedParams(int r, int i1) {
            if (i1 != 0 || (cfg.groupSize() != -1 && staticParams == null)) {
                return;
            }
            for (int gi = 0; gi < groups; gi++) {
                int at = (r0 + r) * groups + gi;
                double[] p = staticParams != null ? staticParams : params;
                int src = staticParams != null ? (r * groups + gi) * 2 : 2 * r;
                out.scales[at] = (float) p[src];
                out.zeros[at] = (int) p[src + 1];
            }
        }

        private void readW(int r, int c0, int len, double[] dst) {
            int at = (lead + r) * np + c0;
            if (f32) {
                float[] f = new float[len];
                w32v.get(at, f, 0, len);
                for (int i = 0; i < len; i++) {
                    dst[i] = f[i];
                }
            } else {
                w64v.get(at, dst, 0, len);
            }
        }
    }
}
