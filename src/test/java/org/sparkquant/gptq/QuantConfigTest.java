package org.sparkquant.gptq;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.function.Supplier;
import org.junit.jupiter.api.Test;
import org.sparkquant.SparkQuantException;

class QuantConfigTest {
    private static void rejects(Supplier<QuantConfig> make, String fragment) {
        SparkQuantException e = assertThrows(SparkQuantException.class, make::get);
        assertEquals(SparkQuantException.Kind.BAD_INPUT, e.kind());
        assertTrue(e.getMessage().contains(fragment), e.getMessage());
        assertEquals(2, e.exitCode());
    }

    @Test
    void defaultsAreTheReferenceDefaults() {
        QuantConfig c = QuantConfig.defaults();
        assertEquals(4, c.bits());
        assertEquals(128, c.groupSize());
        assertTrue(c.sym());
        assertEquals(0.01, c.dampPercent());
        assertEquals(0.0025, c.dampAutoIncrement());
        assertEquals(Precision.FP32, c.precision());
        assertEquals(128, c.blockSize());
        assertEquals(15, c.maxq());
        assertEquals(3, c.groups(300));
        assertEquals(1, c.withGroupSize(-1).groups(300));
        assertEquals(300, c.withGroupSize(-1).groupColumns(300));
    }

    @Test
    void badSettingsNameTheProblem() {
        QuantConfig d = QuantConfig.defaults();
        rejects(() -> d.withBits(5), "bits must be 2, 3, 4 or 8, got 5");
        rejects(() -> d.withBits(1), "got 1");
        rejects(() -> d.withGroupSize(24), "power of two >= 16, got 24");
        rejects(() -> d.withGroupSize(8), "got 8");
        rejects(() -> d.withGroupSize(0), "got 0");
        rejects(() -> d.withGroupSize(-1).withStaticGroups(true), "static groups need a group size");
        rejects(() -> d.withDampPercent(0), "damp percent must be in (0, 1), got 0");
        rejects(() -> d.withDampPercent(1), "got 1.0");
        rejects(() -> d.withDampPercent(Double.NaN), "got NaN");
        rejects(() -> d.withDampAutoIncrement(-0.1), "damp auto increment");
        rejects(() -> d.withBlockSize(100), "multiple of 16, got 100");
        rejects(() -> d.withPrecision(null), "precision");
        rejects(() -> new QuantConfig(4, 128, true, false, false, 0.01, 0.0025, true, 0, 100, 0.8, Precision.FP32,
                128), "mse norm");
        rejects(() -> new QuantConfig(4, 128, true, false, false, 0.01, 0.0025, true, 2.4, 0, 0.8, Precision.FP32,
                128), "mse grid");
        rejects(() -> new QuantConfig(4, 128, true, false, false, 0.01, 0.0025, true, 2.4, 100, 1.5, Precision.FP32,
                128), "mse max shrink");
    }
}
