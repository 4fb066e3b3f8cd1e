package org.sparkquant.nn;

import java.nio.FloatBuffer;

import org.sparkquant.model.RopeConfig;

/**
 * Rotary position embedding with Hugging Face's {@code rotate_half} convention: dimension {@code i} of a head is
 * paired with {@code i + headDim/2}. Angles are {@code position · invFreq} in fp32 and their cos/sin are rounded to
 * fp32, as transformers computes them; the tables grow with the longest sequence seen.
 */
final class Rope {
    private final int half;
    private final float[] inverseFrequencies;
    private float[] cos = new float[0];
    private float[] sin = new float[0];
    private int positions;

    Rope(RopeConfig config, int headDim) {
        this.half = headDim / 2;
        double[] inv = config.inverseFrequencies(headDim);
        this.inverseFrequencies = new float[half];
        for (int i = 0; i < half; i++) {
            inverseFrequencies[i] = (float) inv[i];
        }
    }

    private void ensure(int length) {
        if (length <= positions) {
            return;
        }
        int n = Math.max(length, 2 * positions);
        float[] c = new float[n * half];
        float[] s = new float[n * half];
        for (int p = 0; p < n; p++) {
            for (int i = 0; i < half; i++) {
                float angle = (float) p * inverseFrequencies[i];
                c[p * half + i] = (float) Math.cos(angle);
                s[p * half + i] = (float) Math.sin(angle);
            }
        }
        cos = c;
        sin = s;
        positions = n;
    }

    /**
     * Rotates every head of {@code length} consecutive rows of a {@code [tokens, heads·headDim]} buffer starting at
     * row {@code firstRow}, whose positions are {@code 0 .. length-1}.
     */
    void apply(FloatBuffer x, int firstRow, int length, int heads) {
        ensure(length);
        int headDim = 2 * half;
        int rowWidth = heads * headDim;
        for (int p = 0; p < length; p++) {
            int row = (firstRow + p) * rowWidth;
            int table = p * half;
            for (int h = 0; h < heads; h++) {
                int base = row + h * headDim;
                for (int i = 0; i < half; i++) {
                    float x1 = x.get(base + i);
                    float x2 = x.get(base + i + half);
                    float c = cos[table + i];
                    float s = sin[table + i];
                    x.put(base + i, x1 * c - x2 * s);
                    x.put(base + i + half, x2 * c + x1 * s);
                }
            }
        }
    }
}
