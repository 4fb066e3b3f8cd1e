package org.sparkquant.gptq;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.sparkquant.io.Npy;

/**
 * Reads the cases written by python/gptq_reference.py and compares Java's output with them. Codes are compared
 * tie-aware: where the reference's rounding argument x/scale sat within fp64 noise (level 2) or fp32 noise (level
 * 1) of a half-integer, another correct implementation may round the other way and the row's error feedback then
 * legitimately diverges; every row must match the reference exactly up to its first such tie (in processing
 * order), and rows without one must match completely.
 */
final class GptqFixtures {
    private GptqFixtures() {}

    record Input(String name, int rows, int cols, float[] w, double[] h, Npy.Array x, double[] h64) {}

    record Case(String id, Input input, QuantConfig config, double gptqErr, double rtnErr, double loss,
                Map<String, Npy.Array> arrays) {
        @Override
        public String toString() {
            return id + "[" + input.name() + " " + config.bits() + "b g" + config.groupSize()
                    + (config.sym() ? " sym" : " asym") + (config.descAct() ? " act" : "")
                    + (config.staticGroups() ? " static" : "") + (config.mse() ? " mse" : "")
                    + " B" + config.blockSize() + "]";
        }
    }

    static List<Case> load(Path dir) {
        try {
            Map<String, Input> inputs = new HashMap<>();
            List<Case> cases = new ArrayList<>();
            List<String> lines = Files.readAllLines(dir.resolve("cases.tsv"));
            for (String line : lines.subList(1, lines.size())) {
                if (line.isBlank()) {
                    continue;
                }
                String[] f = line.split("\t");
                Input in = inputs.computeIfAbsent(f[1], name -> input(dir, name));
                QuantConfig c = QuantConfig.defaults().withBits(Integer.parseInt(f[2]))
                        .withGroupSize(Integer.parseInt(f[3])).withSym(f[4].equals("1"))
                        .withDescAct(f[5].equals("1")).withStaticGroups(f[6].equals("1"))
                        .withMse(f[7].equals("1")).withBlockSize(Integer.parseInt(f[8]));
                cases.add(new Case(f[0], in, c, Double.parseDouble(f[9]), Double.parseDouble(f[10]),
                        Double.parseDouble(f[11]), Npy.readNpz(dir.resolve(f[0] + ".npz"))));
            }
            return cases;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private static Input input(Path dir, String name) {
        try {
            Map<String, Npy.Array> a = Npy.readNpz(dir.resolve("input_" + name + ".npz"));
            Npy.Array w = a.get("W");
            return new Input(name, w.dim(0), w.dim(1), w.floats(), a.get("H").doubles(), a.get("X"),
                    a.containsKey("H64") ? a.get("H64").doubles() : null);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** Outcome of a tie-aware comparison. */
    record Comparison(int rows, int cols, int divergedRows, int differingCodes, boolean[] diverged) {
        double identicalFraction() {
            return 1 - (double) differingCodes / ((long) rows * cols);
        }
    }

    /**
     * Compares codes row by row in processing order {@code perm}; fails unless each row's first difference is at a
     * reference tie of at least {@code level}.
     */
    static Comparison compareCodes(String what, QuantizedRows q, byte[] refCodes, byte[] ties, int[] perm,
                                   int level) {
        int rows = q.rows();
        int cols = q.columns();
        boolean[] diverged = new boolean[rows];
        int divergedRows = 0;
        int differing = 0;
        for (int r = 0; r < rows; r++) {
            for (int k = 0; k < cols; k++) {
                int c = perm[k];
                int ref = refCodes[r * cols + c] & 0xFF;
                if (q.code(r, c) != ref) {
                    if (!diverged[r]) {
                        int tie = ties[r * cols + c];
                        assertTrue(tie >= level, what + ": row " + r + " column " + c + " (processing position " + k
                                + ") code " + q.code(r, c) + " != reference " + ref + " and the reference saw no tie"
                                + " there (level " + tie + ")");
                        diverged[r] = true;
                        divergedRows++;
                    }
                    differing++;
                }
            }
        }
        return new Comparison(rows, cols, divergedRows, differing, diverged);
    }

    /** Scales (relative tolerance) and zeros (exact) of rows that did not diverge. */
    static void compareParams(String what, QuantizedRows q, Npy.Array scales, Npy.Array zeros, boolean[] skip,
                              double relTol) {
        int groups = scales.dim(1);
        assertEquals(groups, q.groups(), what + ": number of groups");
        double[] s = scales.doubles();
        int[] z = zeros.ints();
        for (int r = 0; r < q.rows(); r++) {
            if (skip != null && skip[r]) {
                continue;
            }
            for (int g = 0; g < groups; g++) {
                double ref = s[r * groups + g];
                assertEquals(ref, q.scale(r, g), relTol * Math.abs(ref), what + ": scale row " + r + " group " + g);
                assertEquals(z[r * groups + g], q.zero(r, g), what + ": zero row " + r + " group " + g);
            }
        }
    }

    static void assertGIdx(String what, QuantizedRows q, Npy.Array gIdx) {
        assertArrayEquals(gIdx.ints(), q.gIdx(), what + ": g_idx");
    }

    static byte[] bytes(Npy.Array a) {
        long[] l = a.longs();
        byte[] b = new byte[l.length];
        for (int i = 0; i < l.length; i++) {
            b[i] = (byte) l[i];
        }
        return b;
    }

    static double sum(double[] v) {
        double s = 0;
        for (double x : v) {
            s += x;
        }
        return s;
    }
}
