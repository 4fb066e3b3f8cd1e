package org.sparkquant.format.gguf;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

/** Builds small but complete GGUF files for the container tests. */
final class GgufTestFiles {
    private GgufTestFiles() {}

    /** Metadata with every value type, including arrays of each element type. */
    static Map<String, GgufValue> allValueTypes() {
        Map<String, GgufValue> m = new LinkedHashMap<>();
        m.put("general.architecture", GgufValue.string("llama"));
        m.put("general.name", GgufValue.string("sparkquant tést ✓"));
        m.put("t.u8", GgufValue.u8(255));
        m.put("t.i8", GgufValue.i8(-128));
        m.put("t.u16", GgufValue.u16(65535));
        m.put("t.i16", GgufValue.i16(-32768));
        m.put("t.u32", GgufValue.u32(0xffffffffL));
        m.put("t.i32", GgufValue.i32(Integer.MIN_VALUE));
        m.put("t.f32", GgufValue.f32(-1.5e-7f));
        m.put("t.bool", GgufValue.bool(true));
        m.put("t.u64", GgufValue.u64(Long.MAX_VALUE));
        m.put("t.i64", GgufValue.i64(Long.MIN_VALUE));
        m.put("t.f64", GgufValue.f64(Math.PI));
        m.put("t.empty", GgufValue.string(""));
        m.put("a.u8", GgufValue.array(GgufValueType.UINT8, new byte[] {0, 1, (byte) 255}));
        m.put("a.i8", GgufValue.array(GgufValueType.INT8, new byte[] {-1, 2}));
        m.put("a.u16", GgufValue.array(GgufValueType.UINT16, new short[] {1, (short) 65535}));
        m.put("a.i16", GgufValue.array(GgufValueType.INT16, new short[] {-3, 4}));
        m.put("a.u32", GgufValue.u32Array(new int[] {7, -1}));
        m.put("a.i32", GgufValue.i32Array(new int[] {-7, 8, 9}));
        m.put("a.f32", GgufValue.f32Array(new float[] {0.25f, -1e-3f, 3.4e38f}));
        m.put("a.bool", GgufValue.array(GgufValueType.BOOL, new boolean[] {true, false, true}));
        m.put("a.u64", GgufValue.array(GgufValueType.UINT64, new long[] {1L << 40}));
        m.put("a.i64", GgufValue.array(GgufValueType.INT64, new long[] {-(1L << 40), 5}));
        m.put("a.f64", GgufValue.array(GgufValueType.FLOAT64, new double[] {1e-300, -2.5}));
        m.put("a.str", GgufValue.stringArray(List.of("<s>", "", "▁the", "日本")));
        m.put("a.empty", GgufValue.f32Array(new float[0]));
        return m;
    }

    /** One tensor of every type, with shapes that exercise padding, 1-D and 3-D tensors. */
    static List<GgufTensor> everyType() {
        List<GgufTensor> t = new ArrayList<>();
        int i = 0;
        for (GgmlType type : GgmlType.values()) {
            long rowLen = type.isKQuant() ? 256 : type.isQuantized() ? 64 : 24;
            t.add(new GgufTensor("t" + (i++) + "." + type.name().toLowerCase(), new long[] {rowLen, 3}, type));
        }
        t.add(new GgufTensor("norm.weight", new long[] {7}, GgmlType.F32));
        t.add(new GgufTensor("cube.weight", new long[] {32, 2, 3}, GgmlType.Q8_0));
        return t;
    }

    /** Deterministic data for a tensor: random normals quantized to its type. */
    static byte[] data(GgufTensor t, long seed) {
        Random r = new Random(seed ^ t.name().hashCode());
        int n = Math.toIntExact(t.elements());
        float[] x = new float[n];
        for (int i = 0; i < n; i++) {
            x[i] = (float) (r.nextGaussian() * 0.1);
        }
        return GgmlQuant.quantizeRows(t.type(), x, (int) t.rows(), (int) t.ne(0), null);
    }

    /** Writes the tensors' data in pieces of at most {@code chunk} bytes. */
    static byte[] write(Map<String, GgufValue> md, List<GgufTensor> tensors, long seed, int chunk) {
        ByteArrayOutputStream bos = new ByteArrayOutputStream();
        try (GgufWriter w = GgufWriter.create(bos, md, tensors)) {
            for (GgufTensor t : tensors) {
                byte[] d = data(t, seed);
                w.beginTensor(t.name());
                for (int off = 0; off < d.length; off += chunk) {
                    w.write(d, off, Math.min(chunk, d.length - off));
                }
                w.endTensor();
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return bos.toByteArray();
    }
}
