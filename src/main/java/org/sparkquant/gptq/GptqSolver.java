package org.sparkquant.gptq;

import static org.bytedeco.openblas.global.openblas.CblasNoTrans;
import static org.bytedeco.openblas.global.openblas.CblasRowMajor;
import static org.bytedeco.openblas.global.openblas.cblas_dgemm;
import static org.bytedeco.openblas.global.openblas.cblas_sgemm;

import java.nio.DoubleBuffer;
import java.nio.FloatBuffer;
import java.util.stream.IntStream;
import org.bytedeco.javacpp.DoublePointer;
import org.bytedeco.javacpp.FloatPointer;
import org.sparkquant.SparkQuantException;

/**
 * Step (b) of GPTQ: the column loop with lazy batch updates over a block of output rows, given a
 * {@link GptqPreparation}. Follows AutoGPTQ's {@code fasterquant} operation by operation (see formats.md §2).
 *
 * <p><b>Row-partition invariance.</b> Rows never mix in GPTQ, so the only way a row's bits could depend on which
 * other rows are quantized with it is the block update W[:, i2:] −= Err1·Hinv[i1:i2, i2:] (sgemm/dgemm with rows on
 * M and the remaining columns on N). OpenBLAS computes elements that fall into a partial micro-tile (M or N not a
 * multiple of the kernel's unroll) with edge code that rounds differently, and where the edges fall depends on M
 * and on how its threads split the matrix (measured: M = 300 rows vs. chunks of 7 rows, or 1 vs. 2 threads with
 * N = 172, change ~1 % of the elements in the last bit). So the working matrix is padded with zero rows and zero
 * columns to multiples of {@value #ALIGN}, and the block size is a multiple of 16: every gemm then has M and N
 * multiples of 16 and every real element is computed by the full kernel with the same K order, whatever the row
 * partition or thread count (checked by the tests). The per-column work is done row by row in Java (rows in
 * parallel), deterministic by construction.
 */
final class GptqSolver {
    static final int ALIGN = 64;
    /** Bytes of native working matrix per chunk of rows. */
    private static final long CHUNK_BYTES = 256L << 20;

    private GptqSolver() {}

    static QuantizedRows quantize(float[] rows, int rowCount, GptqPreparation prep) {
        QuantConfig cfg = prep.config();
        int n = prep.columns();
        if (rowCount < 0 || (long) rowCount * n != rows.length) {
            throw SparkQuantException.badInput("weight block of " + rows.length + " values is not [" + rowCount + ", "
                    + n + "]");
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
        int chunk = (int) Math.max(ALIGN, CHUNK_BYTES / rowBytes / ALIGN * ALIGN);
        chunk = Math.min(chunk, roundUp(Math.max(rowCount, 1)));
        for (int r0 = 0; r0 < rowCount; r0 += chunk) {
            new Chunk(prep, rows, r0, Math.min(chunk, rowCount - r0), out).run();
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

    /** Rows [r0, r0+m), with their native working copy of W padded to [roundUp(m), roundUp(n)]. */
    private static final class Chunk {
        private final GptqPreparation prep;
        private final QuantConfig cfg;
        private final MinMaxQuantizer quantizer;
        private final float[] rows;
        private final int r0;
        private final int m;
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

        Chunk(GptqPreparation prep, float[] rows, int r0, int m, Output out) {
            this.prep = prep;
            this.cfg = prep.config();
            this.quantizer = new MinMaxQuantizer(cfg);
            this.rows = rows;
            this.r0 = r0;
            this.m = m;
            this.padded = roundUp(m);
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
                IntStream.range(0, m).parallel().forEach(this::loadRow);
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
                w32v.put(r * np, p, 0, n);
            } else {
                double[] p = new double[n];
                for (int k = 0; k < n; k++) {
                    p[k] = w[perm[k]];
                }
                w64v.put(r * np, p, 0, n);
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
                IntStream.range(0, m).parallel().forEach(r -> rowBlock32(r, i1, i2, hd, ev));
            } else {
                double[] blk = prep.block64(b);
                double[] hd = new double[cnt * cnt];
                for (int i = 0; i < cnt; i++) {
                    System.arraycopy(blk, i * width + i, hd, i * cnt + i, cnt - i);
                }
                DoubleBuffer ev = err64.asBuffer();
                IntStream.range(0, m).parallel().forEach(r -> rowBlock64(r, i1, i2, hd, ev));
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
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, padded, np - i2, cnt, -1f, err32, bs,
                            hb32.getPointer(cnt), wp, 1f, w32.getPointer(i2), np);
                } else {
                    double[] blk = prep.block64(b);
                    double[] zeros = new double[np - n];
                    for (int i = 0; i < cnt; i++) {
                        hb64.getPointer((long) i * wp).put(blk, i * width, width);
                        hb64.getPointer((long) i * wp + width).put(zeros, 0, zeros.length);
                    }
                    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, padded, np - i2, cnt, -1.0, err64, bs,
                            hb64.getPointer(cnt), wp, 1.0, w64.getPointer(i2), np);
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

        /** The sequential column loop of one row over block [i1, i2), float arithmetic as in the reference. */
        private void rowBlock32(int r, int i1, int i2, float[] hd, FloatBuffer ev) {
            int cnt = i2 - i1;
            float[] w1 = new float[cnt];
            w32v.get(r * np + i1, w1, 0, cnt);
            float[] err = new float[cnt];
            double[] scratch = cfg.groupSize() != -1 && staticParams == null ? new double[Math.min(g, n)] : null;
            float maxq = cfg.maxq();
            int outRow = r0 + r;
            double loss = 0;
            for (int i = 0; i < cnt; i++) {
                int c = i1 + i;
                int at = paramsAt(r, c, scratch);
                float scale = (float) param(at);
                float zero = (float) param(at + 1);
                float w = w1[i];
                float d = hd[i * cnt + i];
                float q = (float) Math.rint(w / scale) + zero;
                q = q < 0 ? 0 : (q > maxq ? maxq : q);
                float dq = scale * (q - zero);
                int o = outRow * n + perm[c];
                out.codes[o] = (byte) (int) q;
                out.dequantized[o] = dq;
                float diff = w - dq;
                loss += diff * diff / (d * d);
                float e = diff / d;
                err[i] = e;
                int h0 = i * cnt;
                for (int j = i + 1; j < cnt; j++) {
                    w1[j] -= e * hd[h0 + j];
                }
            }
            out.losses[outRow] += loss;
            ev.put(r * cfg.blockSize(), err, 0, cnt);
            recordFixedParams(r, i1);
        }

        /** As {@link #rowBlock32} in double. */
        private void rowBlock64(int r, int i1, int i2, double[] hd, DoubleBuffer ev) {
            int cnt = i2 - i1;
            double[] w1 = new double[cnt];
            w64v.get(r * np + i1, w1, 0, cnt);
            double[] err = new double[cnt];
            double[] scratch = cfg.groupSize() != -1 && staticParams == null ? new double[Math.min(g, n)] : null;
            double maxq = cfg.maxq();
            int outRow = r0 + r;
            double loss = 0;
            for (int i = 0; i < cnt; i++) {
                int c = i1 + i;
                int at = paramsAt(r, c, scratch);
                double scale = param(at);
                double zero = param(at + 1);
                double w = w1[i];
                double d = hd[i * cnt + i];
                double q = Math.rint(w / scale) + zero;
                q = q < 0 ? 0 : (q > maxq ? maxq : q);
                double dq = scale * (q - zero);
                int o = outRow * n + perm[c];
                out.codes[o] = (byte) (int) q;
                out.dequantized[o] = (float) dq;
                double diff = w - dq;
                loss += diff * diff / (d * d);
                double e = diff / d;
                err[i] = e;
                int h0 = i * cnt;
                for (int j = i + 1; j < cnt; j++) {
                    w1[j] -= e * hd[h0 + j];
                }
            }
            out.losses[outRow] += loss;
            ev.put(r * cfg.blockSize(), err, 0, cnt);
            recordFixedParams(r, i1);
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
            int at = r * np + c0;
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
