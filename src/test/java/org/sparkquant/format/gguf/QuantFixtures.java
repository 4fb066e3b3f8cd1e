package org.sparkquant.format.gguf;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.sparkquant.testing.TestPaths;

/**
 * The committed quantization fixtures written by {@code python/gguf_fixtures.py}: input rows, importance vectors,
 * expected bytes from gguf-py ("gguf-py") or from ggml's C library ("ggml"), and gguf-py's dequantization.
 */
final class QuantFixtures {
    final Map<String, float[]> rows = new LinkedHashMap<>();
    final Map<String, float[]> importance = new LinkedHashMap<>();
    final List<Case> cases = new ArrayList<>();
    final List<RandomBlocks> random = new ArrayList<>();

    record Case(GgmlType type, String row, String importance, String source, byte[] bytes, float[] dequant) {
        @Override
        public String toString() {
            return type + " row=" + row + " importance=" + importance + " source=" + source;
        }
    }

    record RandomBlocks(GgmlType type, byte[] bytes, float[] dequant) {}

    static QuantFixtures load() {
        Path dir = TestPaths.fixtures("gguf");
        try {
            ByteBuffer bin = ByteBuffer.wrap(Files.readAllBytes(dir.resolve("quant.bin"))).order(ByteOrder.LITTLE_ENDIAN);
            QuantFixtures f = new QuantFixtures();
            for (String line : Files.readAllLines(dir.resolve("quant.tsv"))) {
                if (line.startsWith("#") || line.isBlank()) {
                    continue;
                }
                String[] p = line.split("\t");
                switch (p[0]) {
                    case "row":
                        f.rows.put(p[1], floats(bin, Integer.parseInt(p[3]), Integer.parseInt(p[2])));
                        break;
                    case "importance":
                        f.importance.put(p[1], floats(bin, Integer.parseInt(p[3]), Integer.parseInt(p[2])));
                        break;
                    case "case": {
                        GgmlType t = GgmlType.parse(p[1]);
                        byte[] bytes = bytes(bin, Integer.parseInt(p[5]), Integer.parseInt(p[6]));
                        int doff = Integer.parseInt(p[7]);
                        int n = f.rows.get(p[2]).length;
                        f.cases.add(new Case(t, p[2], p[3].equals("-") ? null : p[3], p[4], bytes,
                                doff < 0 ? null : floats(bin, doff, n)));
                        break;
                    }
                    case "random": {
                        GgmlType t = GgmlType.parse(p[1]);
                        byte[] bytes = bytes(bin, Integer.parseInt(p[3]), Integer.parseInt(p[4]));
                        int n = Integer.parseInt(p[2]) * t.blockSize();
                        f.random.add(new RandomBlocks(t, bytes, floats(bin, Integer.parseInt(p[5]), n)));
                        break;
                    }
                    default:
                        throw new IllegalStateException("bad fixture line " + line);
                }
            }
            return f;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private static float[] floats(ByteBuffer b, int off, int n) {
        float[] out = new float[n];
        b.duplicate().order(ByteOrder.LITTLE_ENDIAN).position(off).asFloatBuffer().get(out);
        return out;
    }

    private static byte[] bytes(ByteBuffer b, int off, int n) {
        byte[] out = new byte[n];
        b.duplicate().position(off).get(out);
        return out;
    }
}
