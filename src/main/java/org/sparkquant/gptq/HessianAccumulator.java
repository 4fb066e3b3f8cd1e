package org.sparkquant.gptq;

import static org.bytedeco.openblas.global.openblas.CblasNoTrans;
import static org.bytedeco.openblas.global.openblas.CblasRowMajor;
import static org.bytedeco.openblas.global.openblas.CblasTrans;
import static org.bytedeco.openblas.global.openblas.CblasUpper;
import static org.bytedeco.openblas.global.openblas.cblas_dgemm;
import static org.bytedeco.openblas.global.openblas.cblas_dsyrk;
import static org.bytedeco.openblas.global.openblas.cblas_sgemm;
import static org.bytedeco.openblas.global.openblas.cblas_ssyrk;

import java.io.Serializable;
import java.nio.DoubleBuffer;
import java.nio.FloatBuffer;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Comparator;
import java.util.List;
import org.bytedeco.javacpp.DoublePointer;
import org.bytedeco.javacpp.FloatPointer;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.sparkquant.SparkQuantException;
import org.sparkquant.linalg.OpenBlas;

/**
 * A mergeable partial sum Σ xᵀx over calibration sequences for rows [rowStart, rowEnd) of a layer's [n, n]
 * Hessian, plus the number of sequences and tokens it holds. {@link #finish} turns full coverage into a
 * normalised {@link Hessian}.
 *
 * <p><b>Bit-identical merging.</b> Each {@link #add} call is one unit (normally one sequence): its product xᵀx is
 * computed by OpenBLAS in fixed internal blocks of {@value #BLOCK} rows (ssyrk on the diagonal block, sgemm right of
 * it; the dimensions depend only on n and the unit's token count), so the product's bits depend only on the unit
 * (and on the OpenBLAS kernel and thread count, which a job keeps fixed).
 * The products are then summed <em>exactly</em>: every value is rounded once to a fixed-point grid of 2^−48 and
 * added as a 128-bit integer. Integer addition is associative, so any partition of the units into accumulators,
 * merged in any order, yields the same bits — which floating-point partial sums cannot promise. The grid keeps
 * about 15 significant digits for entries down to 1e-1 and 10 digits down to 1e-6, far beyond the fp32 products'
 * own precision; values up to 2^53 per unit and 2^79 in total are representable.
 *
 * <p><b>Products.</b> {@link Precision#FP32} (default) forms each unit's product with sgemm like the reference
 * implementations (fp32 xᵀx) — half the time of dgemm, and the error that matters, the one of the running sum over
 * many sequences, is gone because the sum is exact. {@link Precision#FP64} converts the unit to double first (each
 * product x_i·x_j is then exact) for a fully double Hessian.
 *
 * <p>Only the upper triangle is accumulated: block row t holds rows [512t, 512t+512) × columns [512t, n), half
 * the memory of a square. A 53k-wide Hessian can be split into row tiles held by different accumulators
 * ({@link #rows}) and joined by {@link #finish(Collection)}. Not thread-safe; serialisable (a Spark record).
 */
public final class HessianAccumulator implements Serializable {
    private static final long serialVersionUID = 1L;

    /** Rows per internal product block; tile boundaries must be multiples of it. */
    public static final int BLOCK = 512;
    static final int FRACTION_BITS = 48;
    private static final double SCALE = 0x1p48;
    private static final double FAST_LIMIT = 0x1p62;
    private static final int MAX_EXPONENT = 100; // |value| < 2^(101−48) per unit

    private final int columns;
    private final int rowStart;
    private final int rowEnd;
    private final Precision products;
    private long sequences;
    private long tokens;
    private final long[][] hi;
    private final long[][] lo;
    private transient Scratch scratch;

    private HessianAccumulator(int columns, int rowStart, int rowEnd, Precision products) {
        if (columns <= 0) {
            throw SparkQuantException.badInput("Hessian width must be positive, got " + columns);
        }
        OpenBlas.verify(); // once per JVM: every executor that computes Hessians checks its BLAS first
        if (rowStart < 0 || rowStart >= rowEnd || rowEnd > columns || rowStart % BLOCK != 0
                || (rowEnd % BLOCK != 0 && rowEnd != columns)) {
            throw SparkQuantException.badInput("Hessian row tile [" + rowStart + ", " + rowEnd + ") of " + columns
                    + " columns must be non-empty and aligned to " + BLOCK + " rows");
        }
        this.columns = columns;
        this.rowStart = rowStart;
        this.rowEnd = rowEnd;
        this.products = products == null ? Precision.FP32 : products;
        int blocks = (rowEnd - rowStart + BLOCK - 1) / BLOCK;
        this.hi = new long[blocks][];
        this.lo = new long[blocks][];
        for (int b = 0; b < blocks; b++) {
            int r0 = rowStart + b * BLOCK;
            long size = (long) Math.min(BLOCK, rowEnd - r0) * (columns - r0);
            if (size > Integer.MAX_VALUE - 8) {
                throw SparkQuantException.badInput("Hessian width " + columns + " is too large");
            }
            hi[b] = new long[(int) size];
            lo[b] = new long[(int) size];
        }
    }

    /** An empty accumulator for the whole [columns, columns] matrix with fp32 products. */
    public static HessianAccumulator create(int columns) {
        return new HessianAccumulator(columns, 0, columns, Precision.FP32);
    }

    public static HessianAccumulator create(int columns, Precision products) {
        return new HessianAccumulator(columns, 0, columns, products);
    }

    /** An empty accumulator for rows [rowStart, rowEnd) only (multiples of {@link #BLOCK}, or rowEnd = columns). */
    public static HessianAccumulator rows(int columns, int rowStart, int rowEnd, Precision products) {
        return new HessianAccumulator(columns, rowStart, rowEnd, products);
    }

    public int columns() {
        return columns;
    }

    public int rowStart() {
        return rowStart;
    }

    public int rowEnd() {
        return rowEnd;
    }

    public Precision products() {
        return products;
    }

    public long sequences() {
        return sequences;
    }

    public long tokens() {
        return tokens;
    }

    // ---------------------------------------------------------------- adding

    /**
     * Adds one sequence x [tokens, columns] (fp32 activations; other types are cast). A rank-3 array
     * [batch, tokens, columns] adds each batch entry as its own sequence.
     */
    public HessianAccumulator add(INDArray x) {
        if (x.rank() == 3) {
            for (long b = 0; b < x.size(0); b++) {
                add(x.slice(b));
            }
            return this;
        }
        if (x.rank() != 2 || x.size(1) != columns) {
            throw SparkQuantException.badInput("Hessian input must be [tokens, " + columns + "], got "
                    + java.util.Arrays.toString(x.shape()));
        }
        DataType type = products == Precision.FP32 ? DataType.FLOAT : DataType.DOUBLE;
        INDArray f = x.dataType() == type ? x : x.castTo(type);
        if (f.isView() || f.ordering() != 'c') {
            f = f.dup('c');
        }
        int t = Math.toIntExact(f.size(0));
        if (products == Precision.FP32) {
            addUnit(new FloatPointer(f.data().addressPointer()), null, t);
        } else {
            addUnit(null, new DoublePointer(f.data().addressPointer()), t);
        }
        // the pointer does not own f's memory, and f may be a temporary copy: it must outlive the native products
        java.lang.ref.Reference.reachabilityFence(f);
        return this;
    }

    /** Adds one sequence given as row-major [tokens, columns] floats. */
    public HessianAccumulator add(float[] x, int tokens) {
        if (tokens < 0 || (long) tokens * columns != x.length) {
            throw SparkQuantException.badInput("Hessian input of " + x.length + " values is not [" + tokens + ", "
                    + columns + "]");
        }
        Scratch s = scratch();
        if (products == Precision.FP32) {
            FloatPointer in = s.input(x.length);
            in.put(x, 0, x.length);
            addUnit(in, null, tokens);
        } else {
            DoublePointer in = s.inputDouble(x.length);
            double[] d = new double[x.length];
            for (int i = 0; i < d.length; i++) {
                d[i] = x[i];
            }
            in.put(d, 0, d.length);
            addUnit(null, in, tokens);
        }
        return this;
    }

    /** One unit: its product block by block (fixed dimensions), each block summed exactly into the totals. */
    private void addUnit(FloatPointer x, DoublePointer xd, int unitTokens) {
        if (unitTokens > 0) {
            Scratch s = scratch();
            for (int b = 0; b < hi.length; b++) {
                int r0 = rowStart + b * BLOCK;
                int rows = Math.min(BLOCK, rowEnd - r0);
                int width = columns - r0;
                if (x != null) {
                    FloatPointer c = s.products32();
                    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, rows, unitTokens, 1f, x.getPointer(r0),
                            columns, 0f, c, width);
                    if (width > rows) {
                        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, rows, width - rows, unitTokens, 1f,
                                x.getPointer(r0), columns, x.getPointer(r0 + rows), columns, 0f,
                                c.getPointer(rows), width);
                    }
                    FloatBuffer view = s.products32View();
                    accumulateBlock(b, rows, width, (i, row, scratch) -> {
                        view.get(i * width + i, scratch, 0, width - i);
                        for (int j = i; j < width; j++) {
                            row[j] = scratch[j - i];
                        }
                    });
                } else {
                    DoublePointer c = s.products64();
                    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, rows, unitTokens, 1.0, xd.getPointer(r0),
                            columns, 0.0, c, width);
                    if (width > rows) {
                        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, rows, width - rows, unitTokens, 1.0,
                                xd.getPointer(r0), columns, xd.getPointer(r0 + rows), columns, 0.0,
                                c.getPointer(rows), width);
                    }
                    DoubleBuffer view = s.products64View();
                    accumulateBlock(b, rows, width, (i, row, scratch) -> view.get(i * width + i, row, i, width - i));
                }
            }
        }
        sequences++;
        tokens += unitTokens;
    }

    /** Copies row i of a product block, columns [i, width), into {@code row} at the same positions. */
    private interface RowReader {
        void read(int i, double[] row, float[] scratch);
    }

    /** Adds the upper part of a product block (row i from column i on) into the fixed-point sums, rows in parallel. */
    private void accumulateBlock(int b, int rows, int width, RowReader products) {
        long[] h = hi[b];
        long[] l = lo[b];
        int strip = 16;
        Parallel.forEach((rows + strip - 1) / strip, s -> {
            double[] row = new double[width];
            float[] scratch = new float[width];
            for (int i = s * strip; i < Math.min(rows, (s + 1) * strip); i++) {
                products.read(i, row, scratch);
                int base = i * width;
                for (int j = i; j < width; j++) {
                    add128(h, l, base + j, row[j]);
                }
            }
        });
    }

    private static void add128(long[] hi, long[] lo, int k, double value) {
        double d = value * SCALE;
        long h;
        long l;
        if (Math.abs(d) < FAST_LIMIT) {
            l = (long) Math.rint(d);
            h = l >> 63;
        } else {
            int e = Math.getExponent(d);
            if (e > MAX_EXPONENT + FRACTION_BITS) {
                throw SparkQuantException.badInput(Double.isFinite(value)
                        ? "Hessian product " + value + " is too large: activations out of range"
                        : "Hessian product is " + value + ": NaN or infinite activations");
            }
            long m = (long) Math.scalb(d, 52 - e); // exact: 53-bit mantissa with sign
            int shift = e - 52;                    // 10..48
            l = m << shift;
            h = m >> (64 - shift);
        }
        long old = lo[k];
        long sum = old + l;
        hi[k] += h + carry(old, l, sum);
        lo[k] = sum;
    }

    /** Carry out of the unsigned 64-bit addition a + b = sum, branch-free. */
    private static long carry(long a, long b, long sum) {
        return ((a & b) | ((a | b) & ~sum)) >>> 63;
    }

    /** The 128-bit value h·2^64 + unsigned(l), times 2^−48, rounded to double without cancellation. */
    static double toDouble(long h, long l) {
        if (h == (int) h) {
            long top = (h << 32) | (l >>> 32); // the value >> 32, exact in a long
            return top * 0x1p-16 + (l & 0xFFFFFFFFL) * 0x1p-48;
        }
        return h * 0x1p16 + (l >>> 11) * 0x1p-37; // |value| >= 2^47: the low bits are far below the double ulp
    }

    // ---------------------------------------------------------------- merging and finishing

    /** Adds {@code other} (same width and rows) into this accumulator; exact, so order does not matter. */
    public HessianAccumulator merge(HessianAccumulator other) {
        if (other.columns != columns || other.rowStart != rowStart || other.rowEnd != rowEnd
                || other.products != products) {
            throw SparkQuantException.badInput("cannot merge Hessian partials of different shape: " + this + " and "
                    + other);
        }
        for (int b = 0; b < hi.length; b++) {
            long[] h = hi[b];
            long[] l = lo[b];
            long[] oh = other.hi[b];
            long[] ol = other.lo[b];
            for (int k = 0; k < h.length; k++) {
                long sum = l[k] + ol[k];
                h[k] += oh[k] + carry(l[k], ol[k], sum);
                l[k] = sum;
            }
        }
        sequences += other.sequences;
        tokens += other.tokens;
        return this;
    }

    /** The normalised Hessian 2/n · Σ xᵀx (n = sequences); this accumulator must cover all rows. */
    public Hessian finish() {
        return finish(List.of(this));
    }

    /**
     * Joins row tiles that together cover [0, columns) exactly once (any order) into the normalised Hessian
     * 2/n · Σ xᵀx. All tiles must have seen the same sequences.
     */
    public static Hessian finish(Collection<HessianAccumulator> tiles) {
        List<HessianAccumulator> sorted = new ArrayList<>(tiles);
        sorted.sort(Comparator.comparingInt(HessianAccumulator::rowStart));
        if (sorted.isEmpty()) {
            throw SparkQuantException.badInput("no Hessian tiles to finish");
        }
        HessianAccumulator first = sorted.get(0);
        int n = first.columns;
        int expect = 0;
        for (HessianAccumulator t : sorted) {
            if (t.columns != n || t.rowStart != expect || t.sequences != first.sequences
                    || t.tokens != first.tokens) {
                throw SparkQuantException.badInput("Hessian tiles do not cover [0, " + n
                        + ") once with equal counts: " + sorted);
            }
            expect = t.rowEnd;
        }
        if (expect != n) {
            throw SparkQuantException.badInput("Hessian tiles end at row " + expect + " of " + n);
        }
        if (first.sequences == 0) {
            throw SparkQuantException.badInput("Hessian of " + n + " columns has seen no calibration sequence");
        }
        double factor = 2.0 / first.sequences;
        Hessian out = Hessian.allocate(n, first.sequences, first.tokens);
        for (HessianAccumulator t : sorted) {
            for (int b = 0; b < t.hi.length; b++) {
                int r0 = t.rowStart + b * BLOCK;
                int rows = Math.min(BLOCK, t.rowEnd - r0);
                int width = n - r0;
                long[] h = t.hi[b];
                long[] l = t.lo[b];
                // Column strips of 64 keep the mirrored (transposed) writes within a small working set.
                for (int j0 = 0; j0 < width; j0 += 64) {
                    int j1 = Math.min(width, j0 + 64);
                    for (int i = 0; i < rows; i++) {
                        int base = i * width;
                        for (int j = Math.max(i, j0); j < j1; j++) {
                            double v = toDouble(h[base + j], l[base + j]) * factor;
                            out.set(r0 + i, r0 + j, v);
                            out.set(r0 + j, r0 + i, v);
                        }
                    }
                }
            }
        }
        return out;
    }

    @Override
    public String toString() {
        return "HessianAccumulator[" + columns + " columns, rows [" + rowStart + ", " + rowEnd + "), "
                + products + " products, " + sequences + " sequences, " + tokens + " tokens]";
    }

    private Scratch scratch() {
        if (scratch == null) {
            scratch = new Scratch(columns);
        }
        return scratch;
    }

    /** Native buffers reused across units; released by the garbage collector with the accumulator. */
    private static final class Scratch {
        private final int columns;
        private FloatPointer input;
        private DoublePointer inputDouble;
        private FloatPointer products32;
        private FloatBuffer products32View;
        private DoublePointer products64;
        private DoubleBuffer products64View;

        Scratch(int columns) {
            this.columns = columns;
        }

        FloatPointer input(long count) {
            if (input == null || input.capacity() < count) {
                input = new FloatPointer(count);
            }
            return input;
        }

        DoublePointer inputDouble(long count) {
            if (inputDouble == null || inputDouble.capacity() < count) {
                inputDouble = new DoublePointer(count);
            }
            return inputDouble;
        }

        FloatPointer products32() {
            if (products32 == null) {
                products32 = new FloatPointer((long) BLOCK * columns);
                products32View = products32.asBuffer();
            }
            return products32;
        }

        FloatBuffer products32View() {
            return products32View;
        }

        DoublePointer products64() {
            if (products64 == null) {
                products64 = new DoublePointer((long) BLOCK * columns);
                products64View = products64.asBuffer();
            }
            return products64;
        }

        DoubleBuffer products64View() {
            return products64View;
        }
    }
}
