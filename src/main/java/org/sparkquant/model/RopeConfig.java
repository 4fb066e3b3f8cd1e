package org.sparkquant.model;

import java.io.Serializable;

/**
 * Rotary position embedding parameters. {@code type} is "default", "linear" (positions divided by {@code factor}),
 * "llama3" (frequency-dependent scaling with the low/high frequency factors of Llama 3.1) or "factors" (each
 * frequency divided by an explicit factor, as llama.cpp applies a GGUF file's {@code rope_freqs.weight}).
 */
public record RopeConfig(String type, double theta, double factor, double lowFreqFactor, double highFreqFactor,
        int originalMaxPositions, float[] frequencyFactors) implements Serializable {

    public RopeConfig {
        if (type.equals("factors") == (frequencyFactors == null)) {
            throw new IllegalArgumentException("frequency factors go with rope type 'factors' only");
        }
        frequencyFactors = frequencyFactors == null ? null : frequencyFactors.clone();
    }

    public RopeConfig(String type, double theta, double factor, double lowFreqFactor, double highFreqFactor,
            int originalMaxPositions) {
        this(type, theta, factor, lowFreqFactor, highFreqFactor, originalMaxPositions, null);
    }

    public static RopeConfig plain(double theta) {
        return new RopeConfig("default", theta, 1.0, 0, 0, 0);
    }

    /** Frequency i is {@code theta^(-2i/dim) / factors[i]} (llama.cpp's rope_freqs); one factor per rotary pair. */
    public static RopeConfig withFactors(double theta, float[] factors) {
        return new RopeConfig("factors", theta, 1.0, 0, 0, 0, factors);
    }

    @Override
    public float[] frequencyFactors() {
        return frequencyFactors == null ? null : frequencyFactors.clone();
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof RopeConfig r && type.equals(r.type) && Double.compare(theta, r.theta) == 0
                && Double.compare(factor, r.factor) == 0 && Double.compare(lowFreqFactor, r.lowFreqFactor) == 0
                && Double.compare(highFreqFactor, r.highFreqFactor) == 0 && originalMaxPositions == r.originalMaxPositions
                && java.util.Arrays.equals(frequencyFactors, r.frequencyFactors);
    }

    @Override
    public int hashCode() {
        return java.util.Objects.hash(type, theta, factor, lowFreqFactor, highFreqFactor, originalMaxPositions)
                * 31 + java.util.Arrays.hashCode(frequencyFactors);
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
            case "factors" -> {
                if (frequencyFactors.length != half) {
                    throw new IllegalArgumentException(frequencyFactors.length + " rope frequency factors for "
                            + half + " rotary pairs");
                }
                for (int i = 0; i < half; i++) {
                    inv[i] = inv[i] / frequencyFactors[i];
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
