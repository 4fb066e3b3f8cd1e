package org.sparkquant.gptq;

import java.io.Serializable;
import java.util.Arrays;
import org.sparkquant.SparkQuantException;

/**
 * A finished, normalised layer Hessian H = 2/n · Σ XᵀX (n = number of calibration sequences, AutoGPTQ's
 * convention), symmetric, fp64. Stored as row tiles so that a 53k-wide matrix never needs one Java array over
 * 2^31 elements. Immutable; the arrays are not exposed.
 */
public final class Hessian implements Serializable {
    private static final long serialVersionUID = 1L;
    /** Upper bound on doubles per tile (128 MiB). */
    static final int TILE_ELEMENTS = 1 << 24;

    private final int columns;
    private final long sequences;
    private final long tokens;
    private final int tileRows;
    private final double[][] tiles;

    private Hessian(int columns, long sequences, long tokens, int tileRows, double[][] tiles) {
        this.columns = columns;
        this.sequences = sequences;
        this.tokens = tokens;
        this.tileRows = tileRows;
        this.tiles = tiles;
    }

    static int tileRowsFor(int columns) {
        return Math.max(1, Math.min(columns, TILE_ELEMENTS / Math.max(1, columns)));
    }

    /** An empty matrix to be filled row by row by this package. */
    static Hessian allocate(int columns, long sequences, long tokens) {
        int tileRows = tileRowsFor(columns);
        int count = (columns + tileRows - 1) / tileRows;
        double[][] tiles = new double[count][];
        for (int t = 0; t < count; t++) {
            int rows = Math.min(tileRows, columns - t * tileRows);
            tiles[t] = new double[rows * columns];
        }
        return new Hessian(columns, sequences, tokens, tileRows, tiles);
    }

    /**
     * A Hessian from a full row-major [n, n] matrix (copied; taken as already normalised). Must be symmetric: the
     * solver reads one triangle only, so an asymmetric input is a caller error worth reporting.
     */
    public static Hessian of(double[] full, int n) {
        if (n <= 0 || (long) n * n != full.length) {
            throw SparkQuantException.badInput("Hessian: " + full.length + " values is not a square of " + n);
        }
        Hessian h = allocate(n, 0, 0);
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < i; j++) {
                if (Double.doubleToLongBits(full[i * n + j]) != Double.doubleToLongBits(full[j * n + i])) {
                    throw SparkQuantException.badInput("Hessian: not symmetric at (" + i + ", " + j + ")");
                }
            }
            System.arraycopy(full, i * n, h.tiles[i / h.tileRows], (i % h.tileRows) * n, n);
        }
        return h;
    }

    /** Like {@link #of(double[], int)} for a float matrix (e.g. read from an fp32 .npy), without a double copy. */
    public static Hessian of(float[] full, int n) {
        if (n <= 0 || (long) n * n != full.length) {
            throw SparkQuantException.badInput("Hessian: " + full.length + " values is not a square of " + n);
        }
        Hessian h = allocate(n, 0, 0);
        for (int i = 0; i < n; i++) {
            double[] tile = h.tileOf(i);
            int off = h.offsetOf(i);
            for (int j = 0; j < n; j++) {
                if (j < i && Float.floatToIntBits(full[i * n + j]) != Float.floatToIntBits(full[j * n + i])) {
                    throw SparkQuantException.badInput("Hessian: not symmetric at (" + i + ", " + j + ")");
                }
                tile[off + j] = full[i * n + j];
            }
        }
        return h;
    }

    public int columns() {
        return columns;
    }

    /** Calibration sequences accumulated (0 if built from a matrix). */
    public long sequences() {
        return sequences;
    }

    /** Calibration tokens accumulated (0 if built from a matrix). */
    public long tokens() {
        return tokens;
    }

    public double get(int i, int j) {
        return tiles[i / tileRows][(i % tileRows) * columns + j];
    }

    /** Copies row {@code i} (all {@code columns} values) into {@code dst}. */
    public void row(int i, double[] dst) {
        System.arraycopy(tiles[i / tileRows], (i % tileRows) * columns, dst, 0, columns);
    }

    /** Rows [r0, r1) as a row-major [r1−r0, columns] array. */
    public double[] rowTile(int r0, int r1) {
        if (r0 < 0 || r1 > columns || r0 > r1 || (long) (r1 - r0) * columns > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException("bad row tile [" + r0 + ", " + r1 + ") of " + columns);
        }
        double[] out = new double[(r1 - r0) * columns];
        for (int i = r0; i < r1; i++) {
            System.arraycopy(tiles[i / tileRows], (i % tileRows) * columns, out, (i - r0) * columns, columns);
        }
        return out;
    }

    public double[] diagonal() {
        double[] d = new double[columns];
        for (int i = 0; i < columns; i++) {
            d[i] = get(i, i);
        }
        return d;
    }

    /** The full matrix, row-major; only for widths whose square fits in a Java array. */
    public double[] toArray() {
        return rowTile(0, columns);
    }

    /** This matrix times a positive scalar (e.g. to switch to GPTQModel's 2/tokens normalisation). */
    public Hessian scaled(double factor) {
        double[][] t = new double[tiles.length][];
        for (int k = 0; k < tiles.length; k++) {
            t[k] = tiles[k].clone();
            for (int i = 0; i < t[k].length; i++) {
                t[k][i] *= factor;
            }
        }
        return new Hessian(columns, sequences, tokens, tileRows, t);
    }

    // Package-private write access for the accumulator.
    void set(int i, int j, double v) {
        tiles[i / tileRows][(i % tileRows) * columns + j] = v;
    }

    double[] tileOf(int i) {
        return tiles[i / tileRows];
    }

    int offsetOf(int i) {
        return (i % tileRows) * columns;
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof Hessian h && h.columns == columns && h.sequences == sequences && h.tokens == tokens
                && h.tileRows == tileRows && Arrays.deepEquals(h.tiles, tiles);
    }

    @Override
    public int hashCode() {
        return Arrays.deepHashCode(tiles) * 31 + columns;
    }

    @Override
    public String toString() {
        return "Hessian[" + columns + "x" + columns + ", sequences=" + sequences + ", tokens=" + tokens + "]";
    }
}
