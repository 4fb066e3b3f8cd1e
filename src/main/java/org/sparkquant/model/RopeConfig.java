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

    /**
     * The inverse frequencies of the {@code dim/2} rotary pairs. Hugging Face transformers computes them in fp32
     * ({@code 1 / theta ** (arange(0, dim, 2).float() / dim)}, then the scaling, all on fp32 tensors), so they are
     * computed here with the same fp32 operations, in the same order, and returned widened to double: positions times
     * these values give the same rotation angles as transformers, which keeps logits within fp32 rounding of HF.
     */
    public double[] inverseFrequencies(int dim) {
        int half = dim / 2;
        float base = (float) theta;
        float[] inv = new float[half];
        for (int i = 0; i < half; i++) {
            float exponent = (float) (2 * i) / (float) dim;
            inv[i] = 1f / (float) Math.pow(base, exponent);
        }
        switch (type) {
            case "default" -> {
            }
            case "linear" -> {
                for (int i = 0; i < half; i++) {
                    inv[i] = inv[i] / (float) factor;
                }
            }
            case "llama3" -> {
                float lowWavelen = (float) (originalMaxPositions / lowFreqFactor);
                float highWavelen = (float) (originalMaxPositions / highFreqFactor);
                float twoPi = (float) (2 * Math.PI);
                for (int i = 0; i < half; i++) {
                    float wavelen = twoPi / inv[i];
                    if (wavelen > lowWavelen) {
                        inv[i] = inv[i] / (float) factor;
                    } else if (!(wavelen < highWavelen)) {
                        float smooth = ((float) originalMaxPositions / wavelen - (float) lowFreqFactor)
                                / (float) (highFreqFactor - lowFreqFactor);
                        inv[i] = (1f - smooth) * inv[i] / (float) factor + smooth * inv[i];
                    }
                }
            }
            default -> throw new IllegalStateException("unknown rope type " + type);
        }
        double[] out = new double[half];
        for (int i = 0; i < half; i++) {
            out[i] = inv[i];
        }
        return out;
    }
}
