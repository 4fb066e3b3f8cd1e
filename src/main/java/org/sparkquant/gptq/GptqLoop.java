package org.sparkquant.gptq;

import static org.bytedeco.openblas.global.openblas.CblasNoTrans;
import static org.bytedeco.openblas.global.openblas.CblasRowMajor;
import static org.bytedeco.openblas.global.openblas.cblas_dgemm;
import static org.bytedeco.openblas.global.openblas.cblas_sgemm;

import java.util.Arrays;

import org.bytedeco.javacpp.DoublePointer;
import org.bytedeco.javacpp.FloatPointer;
import org.bytedeco.javacpp.Pointer;
import org.sparkquant.SparkQuantException;
import org.sparkquant.linalg.OpenBlas;

/**
 * Step (b) of GPTQ: the column loop with lazy batch updates, over a block of output rows, for any
 * {@link ColumnQuantizer}. Each step, against AutoGPTQ's {@code fasterquant} (the GPTQ paper's Algorithm 1):
 *
 * <pre>
 *   fasterquant                                           here
 *   W[:, dead] = 0;  W = W[:, perm]                       {@link Chunk#load}   (dead, perm: {@link GptqPreparation})
 *   Hinv = cholesky(H⁻¹, upper)                           {@link GptqPreparation#block32} / block64: rows of U
 *   for i1 in range(0, n, B):                             {@link Chunk#run}
 *     W1 = W[:, i1:i2]; Err1 = 0; Hinv1 = Hinv[i1:i2, i1:i2]      {@link Chunk#batch}
 *     for i in range(i2 − i1):                            {@link Chunk#stripBatch}, strips of rows in parallel
 *       if (i1+i) % groupsize == 0: find_params(W[:, i1+i:][:, :groupsize])     {@link ColumnQuantizer.Row#choose}
 *       q = quantize(W1[:, i]);  d = Hinv1[i, i]          {@link ColumnQuantizer.Row#code}
 *       Losses1[:, i] = (w − q)² / d²
 *       err1 = (w − q) / d
 *       W1[:, i:] −= err1 ⊗ Hinv1[i, i:];  Err1[:, i] = err1
 *     W[:, i2:] −= Err1 · Hinv[i1:i2, i2:]                gemm, in calls on a fixed grid of rows (below)
 *   Losses = Σ Losses1 / 2
 * </pre>
 *
 * <p><b>Arithmetic.</b> Weights are carried in double. In {@link Precision#FP32} every result is rounded to float
 * where the reference computes in float, which gives float arithmetic's results exactly for +, −, ×, ÷ (the double
 * result of two float operands, rounded to float, is the correctly rounded float result), and the working W and the
 * batch update are float (sgemm). FP64 rounds nothing. The one place where precision has its own code is the loop's
 * hot spot, the in-batch update W1[:, j] −= err · Hinv1[i, j]: in FP32 it runs on float arrays, which give the same
 * bits as doubles rounded after each operation, in far less time. {@code bench/update-kernel.sh} measures the two:
 * the update alone is ~10× slower on rounded doubles (the JIT does not vectorize the conversions), and step b of a
 * 4096×4096 matrix took 1.3–1.6× as long with it.
 *
 * <p><b>Row-partition invariance.</b> Rows never mix, so the only way a row's bits could depend on the other rows
 * quantized with it is the batch update (sgemm/dgemm with rows on M). OpenBLAS's result for an element depends on
 * more than its operands: elements in a partial micro-tile use edge code, the thread split moves tile boundaries
 * with M, and some kernels (0.3.19's Haswell sgemm) round a row differently depending on its position within the
 * call (all measured). So the update runs as calls of exactly {@value #CALL_ROWS} rows on a grid fixed by the rows'
 * global index ({@code firstRow}): a row always sits at the same position of a call with the same dimensions, zero
 * rows pad the grid, columns are padded to a multiple of {@value #ALIGN}, and batch sizes are multiples of 16. Any
 * partition of a matrix's rows into calls then gives the same bits for one OpenBLAS kernel set and thread count.
 * Calls of 256 rows cost ~5 % over one call for all rows.
 */
public final class GptqLoop {
    static final int ALIGN = 64;
    /** Rows per batch-update gemm call, on a grid of global row indices. */
    static final int CALL_ROWS = 256;
    /** Rows per task of the in-batch column loop (the vector length of its inner loops). */
    static final int STRIP = 256;
    /** Bytes of native working matrix per chunk of rows. */
    private static final long CHUNK_BYTES = 256L << 20;

    private GptqLoop() {}

    /**
     * What the loop computes besides the codes, which the quantizer keeps.
     *
     * @param dequantized [rows][columns] in the natural column order: the values the codes stand for
     * @param losses      [rows] GPTQ's objective Σ (w−q)²/d²/2 per row, d = U[i,i]
     */
    public record Result(float[] dequantized, double[] losses) {}

    /**
     * Runs the loop over rows [rowCount, prep.columns()] (row-major, fp32, natural column order) that are rows
     * [firstRow, firstRow + rowCount) of their matrix.
     */
    static Result run(float[] rows, int rowCount, int firstRow, GptqPreparation prep, ColumnQuantizer quantizer) {
        OpenBlas.verify();
        int n = prep.columns();
        if (rowCount < 0 || (long) rowCount * n != rows.length) {
            throw SparkQuantException.badInput("weight block of " + rows.length + " values is not [" + rowCount + ", "
                    + n + "]");
        }
        if (firstRow < 0) {
            throw SparkQuantException.internal("first row must be >= 0, got " + firstRow, null);
        }
        Result out = new Result(new float[rows.length], new double[rowCount]);
        boolean f32 = prep.config().precision() == Precision.FP32;
        long rowBytes = (long) roundUp(n) * (f32 ? 4 : 8);
        long chunk = Math.max(CALL_ROWS, CHUNK_BYTES / rowBytes / CALL_ROWS * CALL_ROWS);
        long end = (long) firstRow + rowCount;
        // Chunks of the global call grid; each holds the real rows of [firstRow, end) that fall into it.
        for (long cs = firstRow - firstRow % CALL_ROWS; cs < end; cs += chunk) {
            long lo = Math.max(firstRow, cs);
            long hi = Math.min(end, cs + chunk);
            new Chunk(prep, quantizer, rows, (int) (lo - firstRow), (int) (hi - lo), (int) (lo - cs), out).run();
        }
        return out;
    }

    static int roundUp(int count) {
        return (count + ALIGN - 1) / ALIGN * ALIGN;
    }

    /**
     * Rows [r0, r0+m) of the call, with their native working copy of W in the loop's column order: {@code lead}
     * zero rows first (the rows' place on the global call grid), zero rows up to a multiple of CALL_ROWS after,
     * zero columns up to roundUp(n).
     */
    private static final class Chunk {
        private final GptqPreparation prep;
        private final ColumnQuantizer quantizer;
        private final float[] rows;
        private final int r0;
        private final int m;
        private final int lead;
        private final int padded;
        private final int n;
        /** Row stride of the native W. */
        private final int np;
        private final int batch;
        private final int group;
        private final boolean f32;
        private final int[] perm;
        private final Result out;
        private final ColumnQuantizer.Row[] coders;
        private Pointer w;
        private Pointer err;

        Chunk(GptqPreparation prep, ColumnQuantizer quantizer, float[] rows, int r0, int m, int lead, Result out) {
            this.prep = prep;
            this.quantizer = quantizer;
            this.rows = rows;
            this.r0 = r0;
            this.m = m;
            this.lead = lead;
            this.padded = (lead + m + CALL_ROWS - 1) / CALL_ROWS * CALL_ROWS;
            this.n = prep.columns();
            this.np = roundUp(n);
            this.batch = prep.config().blockSize();
            this.group = quantizer.groupColumns();
            this.f32 = prep.config().precision() == Precision.FP32;
            this.perm = prep.permRef();
            this.out = out;
            this.coders = new ColumnQuantizer.Row[m];
        }

        void run() {
            Pointer hb = null;
            try {
                w = allocate((long) padded * np);
                err = allocate((long) padded * batch);
                hb = allocate((long) batch * np);
                Parallel.forEach(m, this::load);
                for (int i1 = 0; i1 < n; i1 += batch) {
                    batch(i1, Math.min(n, i1 + batch), hb);
                }
                for (int r = 0; r < m; r++) {
                    out.losses[r0 + r] /= 2;
                }
            } finally {
                for (Pointer p : new Pointer[] {w, err, hb}) {
                    if (p != null) {
                        p.deallocate();
                    }
                }
            }
        }

        /** Row r: its coder, dead columns zeroed, permuted into W. */
        private void load(int r) {
            boolean[] dead = prep.deadRef();
            int base = (r0 + r) * n;
            for (int c = 0; c < n; c++) {
                float v = rows[base + c];
                if (!Float.isFinite(v)) {
                    throw SparkQuantException.badInput("weight row " + (r0 + r) + " column " + c + " is " + v);
                }
            }
            coders[r] = quantizer.row(r0 + r, Arrays.copyOfRange(rows, base, base + n), dead);
            long at = (long) (lead + r) * np;
            if (f32) {
                float[] permuted = new float[n];
                for (int k = 0; k < n; k++) {
                    permuted[k] = dead[perm[k]] ? 0f : rows[base + perm[k]];
                }
                ((FloatPointer) w).getPointer(at).put(permuted, 0, n);
            } else {
                double[] permuted = new double[n];
                for (int k = 0; k < n; k++) {
                    permuted[k] = dead[perm[k]] ? 0 : rows[base + perm[k]];
                }
                write(w, at, permuted, n);
            }
        }

        /** One lazy batch [i1, i2): the column loop of every row, then the update of all later columns. */
        private void batch(int i1, int i2, Pointer hb) {
            int cnt = i2 - i1;
            int width = n - i1;
            int b = i1 / batch;
            // Hinv1 = U[i1:i2, i1:i2] (upper), as double: exact for float
            double[] hinv1 = new double[cnt * cnt];
            for (int i = 0; i < cnt; i++) {
                for (int j = i; j < cnt; j++) {
                    hinv1[i * cnt + j] = u(b, i * width + j);
                }
            }
            float[] hinv1f = f32 ? toFloat(hinv1) : null;
            Parallel.forEach((m + STRIP - 1) / STRIP,
                    t -> stripBatch(t * STRIP, Math.min(m, (t + 1) * STRIP), i1, i2, hinv1, hinv1f));
            if (i2 < n) {
                // W[:, i2:] −= Err1 · U[i1:i2, i2:], over the padded width (U's padding columns are zero)
                int wp = np - i1;
                int pad = wp - width;
                for (int i = 0; i < cnt; i++) {
                    long at = (long) i * wp;
                    if (f32) {
                        ((FloatPointer) hb).getPointer(at).put(prep.block32(b), i * width, width);
                        ((FloatPointer) hb).getPointer(at + width).put(new float[pad], 0, pad);
                    } else {
                        ((DoublePointer) hb).getPointer(at).put(prep.block64(b), i * width, width);
                        ((DoublePointer) hb).getPointer(at + width).put(new double[pad], 0, pad);
                    }
                }
                for (int c0 = 0; c0 < padded; c0 += CALL_ROWS) {
                    if (f32) {
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, CALL_ROWS, np - i2, cnt, -1f,
                                ((FloatPointer) err).getPointer((long) c0 * batch), batch,
                                ((FloatPointer) hb).getPointer(cnt), wp, 1f,
                                ((FloatPointer) w).getPointer((long) c0 * np + i2), np);
                    } else {
                        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, CALL_ROWS, np - i2, cnt, -1.0,
                                ((DoublePointer) err).getPointer((long) c0 * batch), batch,
                                ((DoublePointer) hb).getPointer(cnt), wp, 1.0,
                                ((DoublePointer) w).getPointer((long) c0 * np + i2), np);
                    }
                }
            }
        }

        /**
         * The column loop of batch [i1, i2) for rows [s0, s1); their errors go to Err1. The batch is held
         * transposed, one array per column with the strip's rows as elements, so that the in-batch update runs as
         * long loops over rows that the JIT vectorizes.
         */
        private void stripBatch(int s0, int s1, int i1, int i2, double[] hinv1, float[] hinv1f) {
            int cnt = i2 - i1;
            int len = s1 - s0;
            // W1 (transposed); in FP32 held as float (see the class comment)
            float[][] w1f = f32 ? new float[cnt][len] : null;
            double[][] w1 = f32 ? null : new double[cnt][len];
            float[] rowf = f32 ? new float[cnt] : null;
            for (int k = 0; k < len; k++) {
                long at = (long) (lead + s0 + k) * np + i1;
                if (f32) {
                    ((FloatPointer) w).getPointer(at).get(rowf, 0, cnt);
                    for (int i = 0; i < cnt; i++) {
                        w1f[i][k] = rowf[i];
                    }
                } else {
                    double[] row = read(w, at, cnt);
                    for (int i = 0; i < cnt; i++) {
                        w1[i][k] = row[i];
                    }
                }
            }
            // Err1, and the values the codes stand for, transposed like W1
            float[][] err1f = f32 ? new float[cnt][len] : null;
            double[][] err1 = f32 ? null : new double[cnt][len];
            float[][] deq = new float[cnt][len];
            double[] loss = new double[len];
            ColumnQuantizer.Row[] stripCoders = Arrays.copyOfRange(coders, s0, s1);
            for (int i = 0; i < cnt; i++) {
                int c = i1 + i;
                if (c % group == 0) {
                    int glen = Math.min(group, n - c);
                    for (int k = 0; k < len; k++) {
                        coders[s0 + k].choose(c, groupWeights(s0 + k, k, i1, i2, i, w1f, w1, err1f, err1, glen),
                                glen);
                    }
                }
                double d = hinv1[i * cnt + i];
                float[] q = deq[i];
                int h = i * cnt;
                if (f32) {
                    // as the FP64 branch, in float (same bits as doubles rounded after each operation)
                    float[] x = w1f[i];
                    float[] e = err1f[i];
                    quantizer.codeColumn32(c, stripCoders, r0 + s0, x, q, len);
                    float df = (float) d;
                    float dd = df * df;
                    for (int k = 0; k < len; k++) {
                        float diff = x[k] - q[k];
                        loss[k] += diff * diff / dd;
                        e[k] = diff / df;
                    }
                    // W1[:, i+1:] −= err1 ⊗ Hinv1[i, i+1:]
                    for (int j = i + 1; j < cnt; j++) {
                        subtract(w1f[j], e, hinv1f[h + j], len);
                    }
                } else {
                    double[] x = w1[i];
                    double[] e = err1[i];
                    double dd = d * d;
                    for (int k = 0; k < len; k++) {
                        double v = stripCoders[k].code(c, x[k]);
                        q[k] = (float) v;
                        double diff = x[k] - v;
                        loss[k] += diff * diff / dd;
                        e[k] = diff / d;
                    }
                    for (int j = i + 1; j < cnt; j++) {
                        subtract(w1[j], e, hinv1[h + j], len);
                    }
                }
            }
            // back to rows: losses, dequantized values (natural column order) and Err1 for the batch update
            double[] row = f32 ? null : new double[cnt];
            for (int k = 0; k < len; k++) {
                out.losses[r0 + s0 + k] += loss[k];
                int base = (r0 + s0 + k) * n;
                for (int i = 0; i < cnt; i++) {
                    out.dequantized[base + perm[i1 + i]] = deq[i][k];
                }
                long at = (long) (lead + s0 + k) * batch;
                if (f32) {
                    for (int i = 0; i < cnt; i++) {
                        rowf[i] = err1f[i][k];
                    }
                    ((FloatPointer) err).getPointer(at).put(rowf, 0, cnt);
                } else {
                    for (int i = 0; i < cnt; i++) {
                        row[i] = err1[i][k];
                    }
                    write(err, at, row, cnt);
                }
            }
        }

        /** y −= x · a over the first len elements (equal indices: the JIT vectorizes it). */
        private static void subtract(float[] y, float[] x, float a, int len) {
            for (int k = 0; k < len; k++) {
                y[k] -= x[k] * a;
            }
        }

        private static void subtract(double[] y, double[] x, double a, int len) {
            for (int k = 0; k < len; k++) {
                y[k] -= x[k] * a;
            }
        }

        /**
         * The weights of row r (the strip's row k) in the group of {@code len} columns starting at c = i1 + i, as
         * the quantizer chooses from (see {@link ColumnQuantizer#choosesFromCurrentWeights}).
         */
        private double[] groupWeights(int r, int k, int i1, int i2, int i, float[][] w1f, double[][] w1,
                                      float[][] err1f, double[][] err1, int len) {
            int c = i1 + i;
            long at = (long) (lead + r) * np;
            if (!quantizer.choosesFromCurrentWeights()) {
                return read(w, at + c, len);
            }
            double[] x = new double[len];
            int inBatch = Math.min(len, i2 - c);
            for (int j = 0; j < inBatch; j++) {
                x[j] = f32 ? w1f[i + j][k] : w1[i + j][k];
            }
            if (inBatch < len) {
                // past the batch end: W minus the batch's pending update Err1[:, i1:c] · U[i1:c, tail]
                double[] tail = read(w, at + i2, len - inBatch);
                int width = n - i1;
                int b = i1 / batch;
                for (int t = 0; t < tail.length; t++) {
                    int col = i2 + t - i1;
                    double pending = 0;
                    for (int p = 0; p < i; p++) {
                        pending += (f32 ? err1f[p][k] : err1[p][k]) * u(b, p * width + col);
                    }
                    x[inBatch + t] = tail[t] - pending;
                }
            }
            return x;
        }

        private static float[] toFloat(double[] v) {
            float[] f = new float[v.length];
            for (int k = 0; k < v.length; k++) {
                f[k] = (float) v[k];
            }
            return f;
        }

        /** Element {@code at} of batch b's rows of U, [B][n − i1] row-major. */
        private double u(int b, int at) {
            return f32 ? prep.block32(b)[at] : prep.block64(b)[at];
        }

        private Pointer allocate(long size) {
            return f32 ? new FloatPointer(size).zero() : new DoublePointer(size).zero();
        }

        private double[] read(Pointer p, long at, int len) {
            double[] dst = new double[len];
            if (f32) {
                float[] f = new float[len];
                ((FloatPointer) p).getPointer(at).get(f, 0, len);
                for (int k = 0; k < len; k++) {
                    dst[k] = f[k];
                }
            } else {
                ((DoublePointer) p).getPointer(at).get(dst, 0, len);
            }
            return dst;
        }

        private void write(Pointer p, long at, double[] src, int len) {
            if (f32) {
                float[] f = new float[len];
                for (int k = 0; k < len; k++) {
                    f[k] = (float) src[k];
                }
                ((FloatPointer) p).getPointer(at).put(f, 0, len);
            } else {
                ((DoublePointer) p).getPointer(at).put(src, 0, len);
            }
        }
    }
}
