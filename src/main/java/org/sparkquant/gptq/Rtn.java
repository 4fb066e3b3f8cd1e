package org.sparkquant.gptq;

import java.util.Arrays;
import org.sparkquant.SparkQuantException;

/**
 * Round-to-nearest: the same quantizer and grouping as GPTQ (group params from the weight itself, MSE search if
 * configured) without error feedback, so without a Hessian. Groups are the natural ones, g_idx[c] = c / g; the
 * act-order and static-group settings do not apply. Losses are NaN (no Hessian to weigh them).
 */
public final class Rtn {
    private Rtn() {}

    public static QuantizedRows quantize(float[] rows, int rowCount, int columns, QuantConfig config) {
        int n = columns;
        if (n <= 0 || rowCount < 0 || (long) rowCount * n != rows.length) {
            throw SparkQuantException.badInput("weight block of " + rows.length + " values is not [" + rowCount + ", "
                    + n + "]");
        }
        int g = config.groupColumns(n);
        int groups = config.groups(n);
        MinMaxQuantizer quantizer = new MinMaxQuantizer(config);
        boolean f32 = config.precision() == Precision.FP32;
        byte[] codes = new byte[rows.length];
        float[] deq = new float[rows.length];
        float[] scales = new float[rowCount * groups];
        double[] exact = new double[scales.length];
        int[] zeros = new int[scales.length];
        Parallel.forEach(rowCount, r -> {
            double[] w = new double[n];
            double[] p = new double[2];
            for (int c = 0; c < n; c++) {
                float v = rows[r * n + c];
                if (!Float.isFinite(v)) {
                    throw SparkQuantException.badInput("weight row " + r + " column " + c + " is " + v);
                }
                w[c] = v;
            }
            for (int gi = 0; gi < groups; gi++) {
                int c0 = gi * g;
                int c1 = Math.min(n, c0 + g);
                quantizer.findParams(w, c0, c1 - c0, p, 0);
                scales[r * groups + gi] = (float) p[0];
                exact[r * groups + gi] = p[0];
                zeros[r * groups + gi] = (int) p[1];
                for (int c = c0; c < c1; c++) {
                    double q = quantizer.code(w[c], p[0], p[1]);
                    double dq = p[0] * (q - p[1]);
                    codes[r * n + c] = (byte) (int) q;
                    deq[r * n + c] = (float) (f32 ? (float) dq : dq);
                }
            }
        });
        int[] gIdx = new int[n];
        for (int c = 0; c < n; c++) {
            gIdx[c] = c / g;
        }
        double[] losses = new double[rowCount];
        Arrays.fill(losses, Double.NaN);
        return new QuantizedRows(rowCount, n, config.bits(), g, groups, codes, scales, exact, zeros, gIdx, deq,
                losses);
    }
}
