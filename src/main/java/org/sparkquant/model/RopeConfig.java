package org.sparkquant.model;

import java.io.Serializable;

/**
 * Rotary position embedding parameters. {@code type} is "default", "linear" (positions divided by {@code factor}) or
 * "llama3" (frequency-dependent scaling with the low/high frequency factors of Llama 3.1).
 */
public record RopeConfig(String type, double theta, double factor, double lowFreqFactor, double highFreqFactor,
        int originalMaxPositions) implements Serializable {

    public static RopeConfig plain(double theta) {
        return new RopeConfig("default", theta, 1.0, 0, 0, 0);
    }

    /** The inverse frequencies of the {@code dim/2} rotary pairs, in fp64 as HF computes them before the cast. */
    public double[] inverseFrequencies(int dim) {
        int half = dim / 2;
        double[] inv = new double[half];
        for (int i = 0; i < half; i++) {
            inv[i] = 1.0 / Math.pow(theta, (2.0 * i) / dim);
        }
        switch (type) {
            case "default" -> {
            }
            case "linear" -> {
                for (int i = 0; i < half; i++) {
                    inv[i] /= factor;
                }
            }
            case "llama3" -> {
                double lowWavelen = originalMaxPositions / lowFreqFactor;
                double highWavelen = originalMaxPositions / highFreqFactor;
                for (int i = 0; i < half; i++) {
                    double wavelen = 2 * Math.PI / inv[i];
                    if (wavelen > lowWavelen) {
                        inv[i] = inv[i] / factor;
                    } else if (wavelen >= highWavelen) {
                        double smooth = (originalMaxPositions / wavelen - lowFreqFactor)
                                / (highFreqFactor - lowFreqFactor);
                        inv[i] = (1 - smooth) * inv[i] / factor + smooth * inv[i];
                    }
                }
            }
            default -> throw new IllegalStateException("unknown rope type " + type);
        }
        return inv;
    }
}
