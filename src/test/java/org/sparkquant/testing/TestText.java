package org.sparkquant.testing;

import java.util.SplittableRandom;

/** Seeded calibration text for generated models: lines of ten words drawn from a small vocabulary. */
public final class TestText {
    private TestText() {}

    public static String sentences(long seed, int lines, String... words) {
        StringBuilder sb = new StringBuilder();
        SplittableRandom r = new SplittableRandom(seed);
        for (int line = 0; line < lines; line++) {
            for (int w = 0; w < 10; w++) {
                sb.append(words[r.nextInt(words.length)]).append(w == 9 ? "." : " ");
            }
            sb.append('\n');
        }
        return sb.toString();
    }
}
