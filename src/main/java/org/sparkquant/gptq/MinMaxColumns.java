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
    private final byte[] codes;
    private final float[] scales;
    private final double[] exactScales;
    private final int[] zeros;

    MinMaxColumns(GptqPreparation prep, int rows) {
        this.cfg = prep.config();
        this.quantizer = new MinMaxQuantizer(cfg);
        this.n = prep.columns();
        this.g = cfg.groupColumns(n);
        this.groups = cfg.groups(n);
        this.perm = prep.permRef();
        this.codes = new byte[Math.multiplyExact(rows, n)];
        this.scales = new float[rows * groups];
        this.exactScales = new double[rows * groups];
        this.zeros = new int[rows * groups];
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
    public Row row(int row, double[] original, double[] live) {
        return new GroupRow(row, original, live);
    }

    /** The rows' codes with the loop's dequantized values and losses. */
    QuantizedRows result(GptqLoop.Result loop) {
        int rows = loop.losses().length;
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

        GroupRow(int row, double[] original, double[] live) {
            this.row = row;
            if (cfg.groupSize() == -1) {
                quantizer.findParams(original, 0, n, params, 0);
                record(0, params, 0);
            }
            if (cfg.staticGroups()) {
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
            codes[row * n + perm[column]] = (byte) (int) q;
            return quantizer.dequantizeCode(q, p[at], p[at + 1]);
        }

        private void record(int group, double[] p, int at) {
            scales[row * groups + group] = (float) p[at];
            exactScales[row * groups + group] = p[at];
            zeros[row * groups + group] = (int) p[at + 1];
        }
    }
}
