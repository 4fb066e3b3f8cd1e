package org.sparkquant.gptq;

/**
 * The reference GPTQ grid as a {@link ColumnQuantizer}: AutoGPTQ's per-row min-max quantizer in groups of
 * {@code group_size} columns, chosen where the reference chooses them:
 * <ul>
 *   <li>group size −1: once per row, from the row as read (before dead columns are zeroed);</li>
 *   <li>static groups: once per row and group, from the row with dead columns zeroed, in the natural order (with
 *       act-order, column k then uses the group of its natural index perm[k]);</li>
 *   <li>otherwise at every group start in the loop's order, from the global W ({@code find_params(W[:, c:c+g])}),
 *       so with act-order the groups are consecutive in the permuted order.</li>
 * </ul>
 * Collects codes, scales and zeros for one block of rows into a {@link QuantizedRows}.
 */
final class MinMaxColumns implements ColumnQuantizer {
    private final QuantConfig cfg;
    private final MinMaxQuantizer quantizer;
    private final int n;
    private final int g;
    private final int groups;
    private final int[] perm;
    private final int rows;
    /** Codes column by column, [n][rows] in the natural column order: the loop codes a column of rows at a time. */
    private final byte[] codesByColumn;
    private final float[] scales;
    private final double[] exactScales;
    private final int[] zeros;
    /** FP32 without static groups: each row's current scale and zero, for {@link #codeColumn32}'s loop. */
    private final float[] scale32;
    private final float[] zero32;

    MinMaxColumns(GptqPreparation prep, int rows) {
        this.cfg = prep.config();
        this.quantizer = new MinMaxQuantizer(cfg);
        this.n = prep.columns();
        this.g = cfg.groupColumns(n);
        this.groups = cfg.groups(n);
        this.perm = prep.permRef();
        this.rows = rows;
        this.codesByColumn = new byte[Math.multiplyExact(rows, n)];
        this.scales = new float[rows * groups];
        this.exactScales = new double[rows * groups];
        this.zeros = new int[rows * groups];
        boolean rowWise = cfg.precision() == Precision.FP32 && !cfg.staticGroups();
        this.scale32 = rowWise ? new float[rows] : null;
        this.zero32 = rowWise ? new float[rows] : null;
    }

    @Override
    public int groupColumns() {
        return g;
    }

    @Override
    public boolean choosesFromCurrentWeights() {
        return false;
    }

    @Override
    public Row row(int row, float[] original, boolean[] dead) {
        return new GroupRow(row, original, dead);
    }

    /**
     * {@link MinMaxQuantizer#code} and {@link MinMaxQuantizer#dequantizeCode} for a column of rows, in float: the
     * scale is a float and the zero an integer, so x / scale, the rounding (adding and subtracting 1.5·2²³ rounds
     * half to even below 2²², and larger quotients clamp either way), q − zero and the product give the same bits.
     */
    @Override
    public void codeColumn32(int column, Row[] coders, int firstRow, float[] x, float[] q, int len) {
        if (scale32 == null) {
            ColumnQuantizer.super.codeColumn32(column, coders, firstRow, x, q, len);
            return;
        }
        final float magic = 0x1.8p23f;
        float maxq = cfg.maxq();
        int code = perm[column] * rows + firstRow;
        for (int k = 0; k < len; k++) {
            float s = scale32[firstRow + k];
            float z = zero32[firstRow + k];
            float c = Math.min(maxq, Math.max(0f, ((x[k] / s + magic) - magic) + z));
            codesByColumn[code + k] = (byte) (int) c;
            q[k] = s * (c - z);
        }
    }

    /** The rows' codes with the loop's dequantized values and losses. */
    QuantizedRows result(GptqLoop.Result loop) {
        byte[] codes = new byte[codesByColumn.length];
        final int tile = 64; // transposed in tiles that stay in cache
        for (int c0 = 0; c0 < n; c0 += tile) {
            for (int r0 = 0; r0 < rows; r0 += tile) {
                for (int r = r0; r < Math.min(rows, r0 + tile); r++) {
                    for (int c = c0; c < Math.min(n, c0 + tile); c++) {
                        codes[r * n + c] = codesByColumn[c * rows + r];
                    }
                }
            }
        }
        int[] gIdx = new int[n];
        for (int k = 0; k < n; k++) {
            gIdx[perm[k]] = cfg.descAct() && !cfg.staticGroups() ? k / g : perm[k] / g;
        }
        return new QuantizedRows(rows, n, cfg.bits(), g, groups, codes, scales, exactScales, zeros, gIdx,
                loop.dequantized(), loop.losses());
    }

    private final class GroupRow implements Row {
        private final int row;
        /** Scale and zero of the current group, or of the whole row (group size −1). */
        private final double[] params = new double[2];
        /** Static groups: scale and zero of every group, [groups][2]. */
        private final double[] fixed;

        GroupRow(int row, float[] original, boolean[] dead) {
            this.row = row;
            if (cfg.groupSize() == -1) {
                quantizer.findParams(widen(original, null), 0, n, params, 0);
                record(0, params, 0);
                current();
            }
            if (cfg.staticGroups()) {
                double[] live = widen(original, dead);
                fixed = new double[groups * 2];
                for (int gi = 0; gi < groups; gi++) {
                    quantizer.findParams(live, gi * g, Math.min(g, n - gi * g), fixed, gi * 2);
                    record(gi, fixed, gi * 2);
                }
            } else {
                fixed = null;
            }
        }

        @Override
        public void choose(int column, double[] weights, int length) {
            if (cfg.groupSize() != -1 && fixed == null) {
                quantizer.findParams(weights, 0, length, params, 0);
                record(column / g, params, 0);
                current();
            }
        }

        private void current() {
            if (scale32 != null) {
                scale32[row] = (float) params[0];
                zero32[row] = (float) params[1];
            }
        }

        @Override
        public double code(int column, double x) {
            double[] p = params;
            int at = 0;
            if (fixed != null) {
                p = fixed;
                at = (cfg.descAct() ? perm[column] : column) / g * 2;
            }
            double q = quantizer.code(x, p[at], p[at + 1]);
            codesByColumn[perm[column] * rows + row] = (byte) (int) q;
            return quantizer.dequantizeCode(q, p[at], p[at + 1]);
        }

        /** The row as doubles, with the dead columns zeroed when given. */
        private static double[] widen(float[] row, boolean[] dead) {
            double[] out = new double[row.length];
            for (int c = 0; c < row.length; c++) {
                out[c] = dead != null && dead[c] ? 0 : row[c];
            }
            return out;
        }

        private void record(int group, double[] p, int at) {
            scales[row * groups + group] = (float) p[at];
            exactScales[row * groups + group] = p[at];
            zeros[row * groups + group] = (int) p[at + 1];
        }
    }
}
