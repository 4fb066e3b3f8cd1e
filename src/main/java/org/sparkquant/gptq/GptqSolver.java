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
 * other rows are quantized with it is the block update W[:, i2:] −= Err1·Hinv[i1:i2, i2:] (sgemm/dgemm, rows on M).
 * OpenBLAS computes rows that fall into a partial micro-tile (M not a multiple of the kernel's unroll) with edge
 * code whose rounding differs, and its thread split moves those edges. Rows are therefore padded with zero rows to
 * a multiple of {@value #ROW_ALIGN}: every real row is then computed by the full kernel with the same K-order no
 * matter how the rows were partitioned or how many threads OpenBLAS uses (checked by the tests). The per-column
 * work is done row by row in Java (rows in parallel), which is deterministic by construction.
 */
final class GptqSolver {
    static final int ROW_ALIGN = 64;
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
        long rowBytes = (long) n * (f32 ? 4 : 8);
        int chunk = (int) Math.max(ROW_ALIGN, CHUNK_BYTES / rowBytes / ROW_ALIGN * ROW_ALIGN);
        chunk = Math.min(chunk, roundUp(Math.max(rowCount, 1)));
        for (int r0 = 0; r0 < rowCount; r0 += chunk) {
            new Chunk(prep, rows, r0, Math.min(chunk, rowCount - r0), out).run();
        }
        return new QuantizedRows(rowCount, n, cfg.bits(), g, groups, out.codes, out.scales, out.zeros, gIdx,
                out.dequantized, out.losses);
    }

    static int roundUp(int rows) {
        return (rows + ROW_ALIGN - 1) / ROW_ALIGN * ROW_ALIGN;
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

    /** Rows [r0, r0+m) padded to a multiple of ROW_ALIGN, with their native working copy of W. */
    private static final class Chunk {
        private final GptqPreparation prep;
        private final QuantConfig cfg;
        private final MinMaxQuantizer quantizer;
        private final float[] rows;
        private final int r0;
        private final int m;
        private final int padded;
        private final int n;
        private final int g;
        private final int groups;
        private final boolean f32;
        private final Output out;
        private final int[] perm;
        private final boolean[] dead;
        // Native working W [padded, n] row-major in permuted column order, and the block error matrix.
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
            long size = (long) padded * n;
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
                FloatPointer hb32 = f32 ? new FloatPointer((long) bs * n) : null;
                DoublePointer hb64 = f32 ? null : new DoublePointer((long) bs * n);
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
                w32v.put(r * n, p, 0, n);
            } else {
                double[] p = new double[n];
                for (int k = 0; k < n; k++) {
                    p[k] = w[perm[k]];
                }
                w64v.put(r * n, p, 0, n);
            }
        }

        private void block(int i1, int i2, FloatPointer err32, DoublePointer err64, FloatPointer hb32,
                           DoublePointer hb64) {
            int cnt = i2 - i1;
            int width = n - i1;
            int bs = cfg.blockSize();
            int b = i1 / bs;
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
            IntStream.range(0, m).parallel().forEach(r -> rowBlock(r, i1, i2, hd, e32v, e64v));
            if (i2 < n) {
                // W[:, i2:] -= Err1 · U[i1:i2, i2:]
                if (f32) {
                    hb32.put(prep.block32(b), 0, cnt * width);
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, padded, n - i2, cnt, -1f, err32, bs,
                            hb32.getPointer(cnt), width, 1f, w32.getPointer(i2), n);
                } else {
                    hb64.put(prep.block64(b), 0, cnt * width);
                    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, padded, n - i2, cnt, -1.0, err64, bs,
                            hb64.getPointer(cnt), width, 1.0, w64.getPointer(i2), n);
                }
            }
        }

        /** The sequential column loop of one row over block [i1, i2). */
        private void rowBlock(int r, int i1, int i2, double[] hd, FloatBuffer e32v, DoubleBuffer e64v) {
            int cnt = i2 - i1;
            double[] w1 = readW(r, i1, cnt);
            double[] err = new double[cnt];
            int outRow = r0 + r;
            double loss = 0;
            double[] group = null;
            for (int i = 0; i < cnt; i++) {
                int c = i1 + i;
                double scale;
                double zero;
                if (staticParams != null) {
                    int at = (r * groups + (cfg.descAct() ? perm[c] : c) / g) * 2;
                    scale = staticParams[at];
                    zero = staticParams[at + 1];
                } else {
                    if (cfg.groupSize() != -1 && c % g == 0) {
                        // Group params from the global W: previous blocks' updates, not this block's (AutoGPTQ).
                        int len = Math.min(g, n - c);
                        if (group == null) {
                            group = new double[Math.min(g, n)];
                        }
                        readW(r, c, len, group);
                        quantizer.findParams(group, 0, len, params, 2 * r);
                        int at = outRow * groups + c / g;
                        out.scales[at] = (float) params[2 * r];
                        out.zeros[at] = (int) params[2 * r + 1];
                    }
                    scale = params[2 * r];
                    zero = params[2 * r + 1];
                }
                double w = w1[i];
                double d = hd[i * cnt + i];
                double q = quantizer.code(w, scale, zero);
                double dq = r(scale * (q - zero));
                int at = outRow * n + perm[c];
                out.codes[at] = (byte) (int) q;
                out.dequantized[at] = (float) dq;
                double diff = r(w - dq);
                loss += r(r(diff * diff) / r(d * d));
                double e = r(diff / d);
                err[i] = e;
                int h0 = i * cnt;
                if (f32) {
                    for (int j = i + 1; j < cnt; j++) {
                        w1[j] = (float) (w1[j] - (float) (e * hd[h0 + j]));
                    }
                } else {
                    for (int j = i + 1; j < cnt; j++) {
                        w1[j] -= e * hd[h0 + j];
                    }
                }
            }
            out.losses[outRow] += loss;
            if (f32) {
                float[] e = new float[cnt];
                for (int i = 0; i < cnt; i++) {
                    e[i] = (float) err[i];
                }
                e32v.put(r * cfg.blockSize(), e, 0, cnt);
            } else {
                e64v.put(r * cfg.blockSize(), err, 0, cnt);
            }
            if (cfg.groupSize() == -1 || staticParams != null) {
                // whole-row or static params are known up front
                if (i1 == 0) {
                    for (int gi = 0; gi < groups; gi++) {
                        int at = outRow * groups + gi;
                        int src = staticParams != null ? (r * groups + gi) * 2 : 2 * r;
                        double[] p = staticParams != null ? staticParams : params;
                        out.scales[at] = (float) p[src];
                        out.zeros[at] = (int) p[src + 1];
                    }
                }
            }
        }

        private double r(double v) {
            return f32 ? (float) v : v;
        }

        private double[] readW(int r, int c0, int len) {
            double[] d = new double[len];
            readW(r, c0, len, d);
            return d;
        }

        private void readW(int r, int c0, int len, double[] dst) {
            int at = r * n + c0;
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
