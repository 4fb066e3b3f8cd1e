package org.sparkquant.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Iterator;
import java.util.Map;

import com.fasterxml.jackson.databind.JsonNode;
import org.junit.jupiter.api.Test;

/**
 * Rotary inverse frequencies: the defining formulas (to fp32 precision, since RopeConfig follows transformers' fp32
 * operations), and llama3 scaling against transformers itself.
 */
class RopeConfigTest {

    @Test
    void defaultFrequencies() {
        double[] inv = RopeConfig.plain(10000).inverseFrequencies(64);
        assertEquals(32, inv.length);
        assertEquals(1.0, inv[0]);
        for (int i = 0; i < inv.length; i++) {
            // theta^(-2i/d) = exp(-(2i/d) ln theta)
            double want = Math.exp(-(2.0 * i / 64) * Math.log(10000));
            assertEquals(want, inv[i], want * 3e-7, "i=" + i);
            assertEquals((float) inv[i], inv[i], 0.0, "an fp32 value");
        }
        assertEquals(Math.pow(10000, -62.0 / 64), inv[31], inv[31] * 3e-7);
    }

    @Test
    void linearDividesByTheFactor() {
        double[] plain = RopeConfig.plain(10000).inverseFrequencies(128);
        double[] linear = new RopeConfig("linear", 10000, 4, 0, 0, 0).inverseFrequencies(128);
        for (int i = 0; i < plain.length; i++) {
            assertEquals(plain[i] / 4, linear[i], 0.0);
        }
    }

    /**
     * Llama 3.1 scaling by its definition: wavelengths shorter than original/high_freq_factor are kept, longer than
     * original/low_freq_factor divided by the factor, and the band between interpolates smoothly and monotonically.
     */
    @Test
    void llama3Bands() {
        RopeConfig rope = new RopeConfig("llama3", 500000, 8, 1, 4, 8192);
        double[] plain = RopeConfig.plain(500000).inverseFrequencies(128);
        double[] scaled = rope.inverseFrequencies(128);
        int kept = 0;
        int divided = 0;
        int between = 0;
        double previousRatio = 1;
        for (int i = 0; i < plain.length; i++) {
            double wavelen = 2 * Math.PI / plain[i];
            double ratio = plain[i] / scaled[i];
            if (wavelen < 8192 / 4.0) {
                assertEquals(plain[i], scaled[i], 0.0, "high frequency kept, i=" + i);
                kept++;
            } else if (wavelen > 8192 / 1.0) {
                assertEquals(plain[i] / 8, scaled[i], 0.0, "low frequency divided, i=" + i);
                divided++;
            } else {
                assertTrue(ratio >= 1 && ratio <= 8, "i=" + i + " ratio " + ratio);
                // at the band's edges the interpolation meets the two rules
                double smooth = (8192 / wavelen - 1) / (4 - 1);
                assertEquals(1 / ((1 - smooth) / 8 + smooth), ratio, ratio * 1e-6, "i=" + i);
                between++;
            }
            assertTrue(ratio >= previousRatio * (1 - 1e-6), "lower frequencies are scaled at least as much, i=" + i);
            previousRatio = ratio;
        }
        assertTrue(kept > 0 && divided > 0 && between > 0, kept + " " + between + " " + divided);
    }

    /** Against transformers' own computation (the committed reference of python/model_reference.py). */
    @Test
    void llama3MatchesTransformers() {
        JsonNode reference = TransformersReference.committed();
        int checked = 0;
        for (Iterator<Map.Entry<String, JsonNode>> it = reference.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            JsonNode rope = e.getValue().get("rope");
            if (!rope.get("rope_type").asText().equals("llama3")) {
                continue;
            }
            RopeConfig r = new RopeConfig("llama3", rope.get("rope_theta").asDouble(), rope.get("factor").asDouble(),
                    rope.get("low_freq_factor").asDouble(), rope.get("high_freq_factor").asDouble(),
                    rope.get("original_max_position_embeddings").asInt());
            int headDim = e.getValue().get("head_dim").asInt();
            double[] inv = r.inverseFrequencies(headDim);
            JsonNode want = e.getValue().get("inv_freq");
            int medium = 0;
            double[] plain = RopeConfig.plain(r.theta()).inverseFrequencies(headDim);
            for (int i = 0; i < inv.length; i++) {
                double w = want.get(i).asDouble();
                assertEquals(w, inv[i], Math.ulp((float) w), e.getKey() + " inv_freq[" + i + "]");
                double ratio = plain[i] / inv[i];
                if (ratio > 1.0001 && ratio < r.factor() - 0.0001) {
                    medium++;
                }
            }
            assertTrue(medium > 0, "the comparison covers the interpolated band");
            checked++;
        }
        assertEquals(2, checked);
    }

    @Test
    void unknownTypeIsAnError() {
        assertThrows(IllegalStateException.class, () -> new RopeConfig("yarn", 1e4, 2, 0, 0, 0).inverseFrequencies(8));
    }
}
