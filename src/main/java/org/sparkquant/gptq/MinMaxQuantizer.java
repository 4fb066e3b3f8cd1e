package org.sparkquant.gptq;

/**
 * The per-row min-max quantizer of AutoGPTQ / GPTQModel ({@code Quantizer} with perchannel=True, weight=True),
 * optionally with the MSE clipping search. Values are carried in double; in FP32 mode every arithmetic result is
 * rounded to float right away, which reproduces float arithmetic exactly for +, −, ×, ÷ (a double result of two
 * float operands rounded to float is the correctly rounded float result). Rounding is half-to-even like
 * {@code torch.round}.
 */
final class MinMaxQuantizer {
    private final int maxq;
    private final boolean sym;
    private final boolean mse;
    private final boolean f32;
    private final double norm;
    private final int grid;
    private final int steps;

    MinMaxQuantizer(QuantConfig c) {
        this.maxq = c.maxq();
        this.sym = c.sym();
        this.mse = c.mse();
        this.f32 = c.precision() == Precision.FP32;
        this.norm = c.mseNorm();
        this.grid = c.mseGrid();
        this.steps = (int) (c.mseMaxShrink() * c.mseGrid());
    }

    private double r(double v) {
        return f32 ? (float) v : v;
    }

    /** Scale and zero of {@code x[off, off+len)}, written to {@code out[at]} and {@code out[at+1]}. */
    void findParams(double[] x, int off, int len, double[] out, int at) {
        double xmin = 0;
        double xmax = 0;
        for (int i = off; i < off + len; i++) {
            double v = x[i];
            xmin = Math.min(xmin, v);
            xmax = Math.max(xmax, v);
        }
        if (sym) {
            xmax = Math.max(Math.abs(xmin), xmax);
            if (xmin < 0) {
                xmin = -xmax;
            }
        }
        if (xmin == 0 && xmax == 0) {
            xmin = -1;
            xmax = 1;
        }
        double scale = r((xmax - xmin) / maxq);
        double zero = sym ? (maxq + 1) / 2 : Math.rint(r(-xmin / scale));
        if (mse) {
            double best = Double.POSITIVE_INFINITY;
            for (int i = 0; i < steps; i++) {
                double p = r(1 - (double) i / grid); // torch multiplies a float tensor by float(p)
                double xmin1 = r(p * xmin);
                double xmax1 = r(p * xmax);
                double scale1 = r((xmax1 - xmin1) / maxq);
                double zero1 = sym ? zero : Math.rint(r(-xmin1 / scale1));
                double err = 0;
                for (int k = off; k < off + len; k++) {
                    double d = Math.abs(r(dequantize(x[k], scale1, zero1) - x[k]));
                    err = r(err + r(Math.pow(d, norm)));
                }
                if (err < best) {
                    best = err;
                    scale = scale1;
                    zero = zero1;
                }
            }
        }
        out[at] = scale;
        out[at + 1] = zero;
    }

    /** The integer code: clamp(round(x / scale) + zero, 0, maxq). */
    double code(double x, double scale, double zero) {
        double q = Math.rint(r(x / scale)) + zero;
        return q < 0 ? 0 : (q > maxq ? maxq : q); // NaN (0/0 for a vanishing scale) falls through as NaN
    }

    /** scale · (code − zero). */
    double dequantize(double x, double scale, double zero) {
        return dequantizeCode(code(x, scale, zero), scale, zero);
    }

    /** The value code {@code q} stands for: scale · (q − zero). */
    double dequantizeCode(double q, double scale, double zero) {
        return r(scale * (q - zero));
    }
}
