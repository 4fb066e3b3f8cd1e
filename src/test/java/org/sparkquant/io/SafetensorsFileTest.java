package org.sparkquant.io;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.sparkquant.SparkQuantException;

/**
 * The reader on hand-made files (headers written here as text, not by the project's writer): every dtype, 0-d and
 * empty tensors, metadata, whole-tensor and row reads, and one case per validation rule with its message.
 */
class SafetensorsFileTest {

    /** One tensor of a hand-made file. */
    private record T(String name, String dtype, long[] shape, byte[] data) {}

    /** Header text with offsets in the order given, then the data concatenated. */
    private static byte[] file(String metadataJson, T... tensors) {
        StringBuilder h = new StringBuilder("{");
        if (metadataJson != null) {
            h.append("\"__metadata__\":").append(metadataJson);
        }
        long offset = 0;
        List<byte[]> chunks = new ArrayList<>();
        for (T t : tensors) {
            if (h.length() > 1) {
                h.append(',');
            }
            h.append('"').append(t.name).append("\":{\"dtype\":\"").append(t.dtype).append("\",\"shape\":[");
            for (int i = 0; i < t.shape.length; i++) {
                h.append(i > 0 ? "," : "").append(t.shape[i]);
            }
            h.append("],\"data_offsets\":[").append(offset).append(',').append(offset + t.data.length).append("]}");
            offset += t.data.length;
            chunks.add(t.data);
        }
        h.append('}');
        ByteBuffer data = ByteBuffer.allocate((int) offset);
        chunks.forEach(data::put);
        return SafetensorsBytes.raw(h.toString(), data.array());
    }

    private static long[] shape(long... dims) {
        return dims;
    }

    private static byte[] f32(float... v) {
        ByteBuffer b = SafetensorsBytes.le(4 * v.length);
        for (float x : v) {
            b.putFloat(x);
        }
        return b.array();
    }

    private static byte[] f64(double... v) {
        ByteBuffer b = SafetensorsBytes.le(8 * v.length);
        for (double x : v) {
            b.putDouble(x);
        }
        return b.array();
    }

    private static byte[] shorts(int... v) {
        ByteBuffer b = SafetensorsBytes.le(2 * v.length);
        for (int x : v) {
            b.putShort((short) x);
        }
        return b.array();
    }

    private static byte[] ints(int... v) {
        ByteBuffer b = SafetensorsBytes.le(4 * v.length);
        for (int x : v) {
            b.putInt(x);
        }
        return b.array();
    }

    private static byte[] longs(long... v) {
        ByteBuffer b = SafetensorsBytes.le(8 * v.length);
        for (long x : v) {
            b.putLong(x);
        }
        return b.array();
    }

    private static byte[] bytes(int... v) {
        byte[] b = new byte[v.length];
        for (int i = 0; i < v.length; i++) {
            b[i] = (byte) v[i];
        }
        return b;
    }

    @Test
    void readsEveryDtypeWithMetadata() {
        T f64 = new T("a.f64", "F64", shape(3), f64(-1.5, 1e300, Math.PI));
        T f32 = new T("b.f32", "F32", shape(2, 2), f32(1f, -2.5f, Float.MIN_VALUE, Float.MAX_VALUE));
        // 1.0, -2.0, 65504 (largest finite), 2^-24 (smallest subnormal), -0.0, 1/3 rounded
        T f16 = new T("c.f16", "F16", shape(2, 3), shorts(0x3c00, 0xc000, 0x7bff, 0x0001, 0x8000, 0x3555));
        // 1.0, -3.0, the largest finite bfloat16, the smallest subnormal
        T bf16 = new T("d.bf16", "BF16", shape(4), shorts(0x3f80, 0xc040, 0x7f7f, 0x0001));
        T i64 = new T("e.i64", "I64", shape(2), longs(Long.MIN_VALUE, 42));
        T i32 = new T("f.i32", "I32", shape(1, 2), ints(-7, Integer.MAX_VALUE));
        T i16 = new T("g.i16", "I16", shape(3), shorts(-32768, 1, 32767));
        T i8 = new T("h.i8", "I8", shape(2), bytes(-128, 127));
        T u8 = new T("i.u8", "U8", shape(2), bytes(0, 255));
        T bool = new T("j.bool", "BOOL", shape(3), bytes(1, 0, 1));
        T[] all = {f64, f32, f16, bf16, i64, i32, i16, i8, u8, bool};
        byte[] bytes = file("{\"format\":\"pt\",\"note\":\"ünïcödé\"}", all);
        try (SafetensorsFile f = SafetensorsBytes.open(bytes)) {
            assertEquals(Map.of("format", "pt", "note", "ünïcödé"), f.metadata());
            assertEquals(Arrays.stream(all).map(T::name).toList(), List.copyOf(f.tensors().keySet()));
            for (T t : all) {
                TensorInfo info = f.tensor(t.name);
                assertEquals(DType.valueOf(t.dtype), info.dtype());
                assertArrayEquals(t.shape, info.shape());
                assertEquals(t.data.length, info.byteSize());
                assertArrayEquals(t.data, f.readRaw(t.name), t.name);
            }
            assertArrayEquals(new float[] {-1.5f, Float.POSITIVE_INFINITY, (float) Math.PI}, f.readFloats("a.f64"));
            assertArrayEquals(new float[] {1f, -2.5f, Float.MIN_VALUE, Float.MAX_VALUE}, f.readFloats("b.f32"));
            assertArrayEquals(new float[] {1f, -2f, 65504f, 0x1p-24f, -0f, 0.333251953125f}, f.readFloats("c.f16"));
            assertArrayEquals(new float[] {1f, -3f, 3.3895313892515355e38f, 0x1p-133f}, f.readFloats("d.bf16"));
            // -0.0 must keep its sign
            assertEquals(Float.floatToRawIntBits(-0f), Float.floatToRawIntBits(f.readFloats("c.f16")[4]));
            SparkQuantException e = assertThrows(SparkQuantException.class, () -> f.readFloats("f.i32"));
            assertTrue(e.getMessage().contains("f.i32") && e.getMessage().contains("not a floating-point"),
                    e.getMessage());
        }
    }

    @Test
    void zeroDimensionalAndEmptyTensors() {
        T scalar = new T("scalar", "F32", shape(), f32(2.5f));
        T empty = new T("empty", "F32", shape(0, 4), new byte[0]);
        T empty2 = new T("empty2", "I64", shape(3, 0, 2), new byte[0]);
        T after = new T("after", "F16", shape(1), shorts(0x3c00));
        try (SafetensorsFile f = SafetensorsBytes.open(file(null, scalar, empty, empty2, after))) {
            assertEquals(Map.of(), f.metadata());
            assertEquals(0, f.tensor("scalar").rank());
            assertEquals(1, f.tensor("scalar").elements());
            assertArrayEquals(new float[] {2.5f}, f.readFloats("scalar"));
            assertEquals(0, f.tensor("empty").elements());
            assertArrayEquals(new float[0], f.readFloats("empty"));
            assertArrayEquals(new float[0], f.readRows("empty", 0, 0));
            assertArrayEquals(new byte[0], f.readRaw("empty2"));
            assertArrayEquals(new float[] {1f}, f.readFloats("after"));
        }
        // a file with no tensors at all is valid too
        try (SafetensorsFile f = SafetensorsBytes.open(SafetensorsBytes.raw("{}", new byte[0]))) {
            assertTrue(f.tensors().isEmpty());
        }
    }

    @Test
    void headerPaddingAndAnyTensorOrder() {
        // tensors listed in the opposite order of their offsets, header padded with spaces (as the reference does)
        String header = "{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
                + "\"a\":{\"data_offsets\":[0,4],\"shape\":[1],\"dtype\":\"F32\"}}";
        byte[] bytes = SafetensorsBytes.raw(header + "      ", f32(1f, 2f));
        try (SafetensorsFile f = SafetensorsBytes.open(bytes)) {
            assertArrayEquals(new float[] {1f}, f.readFloats("a"));
            assertArrayEquals(new float[] {2f}, f.readFloats("b"));
            assertEquals(8 + header.length() + 6, f.dataStart());
        }
    }

    @Test
    void readsRowRanges() {
        float[] values = new float[5 * 3];
        for (int i = 0; i < values.length; i++) {
            values[i] = i * 0.5f - 3;
        }
        int[] bfBits = new int[values.length];
        for (int i = 0; i < values.length; i++) {
            bfBits[i] = Float.floatToIntBits(values[i]) >>> 16; // these values are exact in bfloat16
        }
        double[] dv = new double[values.length];
        for (int i = 0; i < values.length; i++) {
            dv[i] = values[i];
        }
        T w = new T("w", "F32", shape(5, 3), f32(values));
        T wb = new T("wb", "BF16", shape(5, 3), shorts(bfBits));
        T wd = new T("wd", "F64", shape(5, 3), f64(dv));
        T v = new T("v", "F32", shape(3), f32(1, 2, 3));
        try (SafetensorsFile f = SafetensorsBytes.open(file(null, w, wb, wd, v))) {
            for (String name : List.of("w", "wb", "wd")) {
                assertArrayEquals(Arrays.copyOfRange(values, 3, 12), f.readRows(name, 1, 4), name);
                assertArrayEquals(Arrays.copyOfRange(values, 12, 15), f.readRows(name, 4, 5), name);
                assertArrayEquals(values, f.readRows(name, 0, 5), name);
                assertArrayEquals(new float[0], f.readRows(name, 2, 2), name);
            }
            assertMessage(() -> f.readRows("w", 4, 6), "test.safetensors", "rows [4, 6)", "'w'");
            assertMessage(() -> f.readRows("w", -1, 1), "rows [-1, 1)");
            assertMessage(() -> f.readRows("w", 3, 2), "rows [3, 2)");
            assertMessage(() -> f.readRows("v", 0, 1), "'v' is not 2-D");
            assertMessage(() -> f.readRaw("nope"), "test.safetensors", "no tensor 'nope'");
            assertMessage(() -> f.readRaw(f.tensor("v"), 8, 8), "range outside tensor 'v'");
            assertArrayEquals(Arrays.copyOfRange(f32(1, 2, 3), 4, 12), f.readRaw(f.tensor("v"), 4, 8));
        }
    }

    /**
     * A tensor of 2^30 doubles (8 GiB) is too large to read into one array: the reader must say so rather than
     * truncate the byte count to an int (2^33 bytes wraps to 0). The data is never materialised: the input is virtual.
     */
    @Test
    void refusesReadsLargerThanAnArray() {
        String header = "{\"big\":{\"dtype\":\"F64\",\"shape\":[2,536870912],\"data_offsets\":[0,8589934592]}}";
        byte[] head = SafetensorsBytes.raw(header, new byte[0]);
        long length = head.length + (1L << 33);
        RandomAccessInput virtual = new RandomAccessInput() {
            @Override
            public String name() {
                return "virtual.safetensors";
            }

            @Override
            public long length() {
                return length;
            }

            @Override
            public void readFully(long position, byte[] buffer, int offset, int count) {
                if (position + count <= head.length) {
                    System.arraycopy(head, (int) position, buffer, offset, count);
                } else if (count > 1 << 20) {
                    throw new AssertionError("the reader asked for " + count + " bytes");
                }
            }

            @Override
            public void close() {}
        };
        try (SafetensorsFile f = SafetensorsFile.open(virtual)) {
            assertEquals(1L << 30, f.tensor("big").elements());
            assertMessage(() -> f.readFloats("big"), "virtual.safetensors", "'big'");
            assertMessage(() -> f.readRows("big", 0, 2), "virtual.safetensors", "'big'");
            assertMessage(() -> f.readRows("big", 1, 2), "virtual.safetensors", "'big'");
            assertMessage(() -> f.readRaw("big"), "virtual.safetensors", "too large");
        }
    }

    @Test
    void readsThroughStorageAndNamesTheFile(@TempDir Path dir) throws Exception {
        Path p = dir.resolve("x.safetensors");
        Files.write(p, file(null, new T("t", "F32", shape(2), f32(1, 2))));
        try (SafetensorsFile f = SafetensorsFile.open(Storage.local(), p.toString())) {
            assertArrayEquals(new float[] {1, 2}, f.readFloats("t"));
            assertEquals(p.toString(), f.name());
        }
        Path bad = dir.resolve("bad.safetensors");
        Files.write(bad, SafetensorsBytes.raw("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                new byte[4]));
        assertMessage(() -> SafetensorsFile.open(Storage.local(), bad.toString()), bad.toString(), "outside the data");
        assertMessage(() -> SafetensorsFile.open(Storage.local(), dir.resolve("none.safetensors").toString()),
                "none.safetensors", "no such file");
    }

    // ---- validation: one case per rule ----

    private static SparkQuantException rejects(byte[] bytes, String... fragments) {
        return assertMessage(() -> SafetensorsBytes.open(bytes).close(), fragments);
    }

    /** Asserts a SparkQuantException (bad input) whose single-line message names the file and contains each fragment. */
    static SparkQuantException assertMessage(Runnable action, String... fragments) {
        SparkQuantException e = assertThrows(SparkQuantException.class, action::run);
        String m = e.getMessage();
        assertEquals(SparkQuantException.Kind.BAD_INPUT, e.kind(), m);
        assertTrue(!m.contains("\n"), "one line: " + m);
        for (String fragment : fragments) {
            assertTrue(m.contains(fragment), "message should contain '" + fragment + "': " + m);
        }
        return e;
    }

    private static byte[] lengthPrefix(long length, int extraBytes) {
        return SafetensorsBytes.le(8 + extraBytes).putLong(length).array();
    }

    @Test
    void rejectsBadHeaderLengths() {
        rejects(new byte[5], "test.safetensors", "5 bytes, too short");
        rejects(lengthPrefix(-1, 16), "test.safetensors", "header length 18446744073709551615 is out of range");
        rejects(lengthPrefix(Long.MAX_VALUE, 16), "header length 9223372036854775807 is out of range");
        rejects(lengthPrefix(SafetensorsFile.MAX_HEADER_BYTES + 1, 16), "out of range");
        rejects(lengthPrefix(1, 16), "header length 1 is out of range");
        rejects(lengthPrefix(0, 0), "header length 0 is out of range");
        // a plausible length that is larger than the file
        byte[] b = SafetensorsBytes.raw("{}", new byte[0]);
        ByteBuffer.wrap(b).order(java.nio.ByteOrder.LITTLE_ENDIAN).putLong(0, 1000);
        rejects(b, "header length 1000 exceeds the file size 10");
    }

    @Test
    void rejectsMalformedJson() {
        rejects(SafetensorsBytes.raw("{\"a\":", new byte[0]), "test.safetensors", "not valid JSON");
        rejects(SafetensorsBytes.raw("{'a':1}", new byte[0]), "not valid JSON");
        rejects(SafetensorsBytes.raw("{\"a\":{}} x", new byte[0]), "not valid JSON");
        rejects(SafetensorsBytes.raw("{}{}", new byte[0]), "trailing content");
        rejects(SafetensorsBytes.raw("{} []", new byte[0]), "trailing content");
        rejects(SafetensorsBytes.raw("[]", new byte[0]), "header is not a JSON object");
        rejects(SafetensorsBytes.raw("42", new byte[0]), "header is not a JSON object");
        rejects(SafetensorsBytes.raw("  ", new byte[0]), "header is not a JSON object");
        rejects(SafetensorsBytes.raw("[".repeat(5000) + "]".repeat(5000), new byte[0]), "not valid JSON");
    }

    @Test
    void rejectsNonUtf8() {
        byte[] header = "{\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}".getBytes(StandardCharsets.UTF_8);
        header[2] = (byte) 0xff; // inside the tensor name
        rejects(SafetensorsBytes.raw(header, new byte[4]), "test.safetensors", "not valid UTF-8");
        byte[] overlong = "{\"__metadata__\":{\"k\":\"xx\"}}".getBytes(StandardCharsets.UTF_8);
        overlong[22] = (byte) 0xc0; // an overlong encoding of '/'
        overlong[23] = (byte) 0xaf;
        rejects(SafetensorsBytes.raw(overlong, new byte[0]), "not valid UTF-8");
    }

    @Test
    void rejectsDuplicateKeysAndUnknownFields() {
        rejects(SafetensorsBytes.json("{'a':{'dtype':'F32','shape':[1],'data_offsets':[0,4]},"
                + "'a':{'dtype':'F32','shape':[1],'data_offsets':[4,8]}}", 8), "test.safetensors", "Duplicate field 'a'");
        rejects(SafetensorsBytes.json("{'a':{'dtype':'F32','dtype':'F16','shape':[1],'data_offsets':[0,4]}}", 4),
                "Duplicate field 'dtype'");
        rejects(SafetensorsBytes.json("{'a':{'dtype':'F32','shape':[1],'data_offsets':[0,4],'extra':1}}", 4),
                "tensor 'a': unknown field 'extra'");
        rejects(SafetensorsBytes.json("{'a':[1,2]}", 0), "tensor 'a': entry is not an object");
    }

    @Test
    void rejectsBadDtypes() {
        rejects(SafetensorsBytes.json("{'a':{'dtype':'F8_E4M3','shape':[1],'data_offsets':[0,1]}}", 1),
                "test.safetensors", "tensor 'a': unsupported dtype 'F8_E4M3'");
        rejects(SafetensorsBytes.json("{'a':{'dtype':'f32','shape':[1],'data_offsets':[0,4]}}", 4),
                "unsupported dtype 'f32'");
        rejects(SafetensorsBytes.json("{'a':{'shape':[1],'data_offsets':[0,4]}}", 4), "tensor 'a': missing dtype");
        rejects(SafetensorsBytes.json("{'a':{'dtype':4,'shape':[1],'data_offsets':[0,4]}}", 4), "missing dtype");
    }

    @Test
    void rejectsBadShapes() {
        rejects(SafetensorsBytes.json("{'a':{'dtype':'F32','shape':[-1],'data_offsets':[0,4]}}", 4),
                "tensor 'a': shape [-1] has an invalid dimension");
        rejects(SafetensorsBytes.json("{'a':{'dtype':'F32','shape':[2.0],'data_offsets':[0,8]}}", 8),
                "invalid dimension");
        rejects(SafetensorsBytes.json("{'a':{'dtype':'F32','shape':['2'],'data_offsets':[0,8]}}", 8),
                "invalid dimension");
        rejects(SafetensorsBytes.json("{'a':{'dtype':'F32','shape':[null],'data_offsets':[0,8]}}", 8),
                "invalid dimension");
        rejects(SafetensorsBytes.json("{'a':{'dtype':'F32','shape':[18446744073709551616],'data_offsets':[0,4]}}", 4),
                "invalid dimension");
        // elements overflow a long; elements fit but bytes do not
        rejects(SafetensorsBytes.json("{'a':{'dtype':'U8','shape':[4294967296,4294967296],'data_offsets':[0,1]}}",
                1), "tensor 'a': shape [4294967296,4294967296] overflows");
        rejects(SafetensorsBytes.json("{'a':{'dtype':'F64','shape':[2305843009213693952,2],'data_offsets':[0,1]}}",
                1), "overflows");
        rejects(SafetensorsBytes.json("{'a':{'dtype':'F32','shape':2,'data_offsets':[0,8]}}", 8),
                "shape must be an array");
        rejects(SafetensorsBytes.json("{'a':{'dtype':'F32','data_offsets':[0,8]}}", 8), "shape must be an array");
        rejects(SafetensorsBytes.json("{'a':{'dtype':'U8','shape':[1,1,1,1,1,1,1,1,1],'data_offsets':[0,1]}}", 1),
                "at most 8 dimensions");
    }

    @Test
    void rejectsShapesThatDoNotMatchTheirRange() {
        rejects(SafetensorsBytes.json("{'a':{'dtype':'F32','shape':[2,3],'data_offsets':[0,20]}}", 20),
                "test.safetensors", "tensor 'a': shape [2,3] of F32 needs 24 bytes but data_offsets span 20");
        rejects(SafetensorsBytes.json("{'a':{'dtype':'BF16','shape':[],'data_offsets':[0,4]}}", 4),
                "needs 2 bytes but data_offsets span 4");
        rejects(SafetensorsBytes.json("{'a':{'dtype':'F32','shape':[0],'data_offsets':[0,4]}}", 4),
                "needs 0 bytes");
    }

    @Test
    void rejectsBadOffsets() {
        rejects(SafetensorsBytes.json("{'a':{'dtype':'F32','shape':[1],'data_offsets':[0,4,8]}}", 4),
                "tensor 'a': data_offsets must be [begin, end]");
        rejects(SafetensorsBytes.json("{'a':{'dtype':'F32','shape':[1]}}", 4), "data_offsets must be");
        rejects(SafetensorsBytes.json("{'a':{'dtype':'F32','shape':[1],'data_offsets':[-4,0]}}", 4),
                "invalid data_offsets [-4,0]");
        rejects(SafetensorsBytes.json("{'a':{'dtype':'F32','shape':[1],'data_offsets':[0.0,4]}}", 4),
                "invalid data_offsets");
        rejects(SafetensorsBytes.json("{'a':{'dtype':'F32','shape':[1],'data_offsets':[0,99999999999999999999]}}", 4),
                "invalid data_offsets");
        rejects(SafetensorsBytes.json("{'a':{'dtype':'F32','shape':[1],'data_offsets':[8,4]}}", 8),
                "data_offsets [8,4] outside the data section of 8 bytes");
        // beyond the end of the file
        rejects(SafetensorsBytes.json("{'a':{'dtype':'F32','shape':[2],'data_offsets':[0,8]}}", 4),
                "tensor 'a': data_offsets [0,8] outside the data section of 4 bytes");
        rejects(SafetensorsBytes.json("{'a':{'dtype':'F32','shape':[1],'data_offsets':[9223372036854775803,"
                + "9223372036854775807]}}", 4), "outside the data section");
    }

    @Test
    void rejectsOverlapsGapsAndUncoveredBytes() {
        rejects(SafetensorsBytes.json("{'a':{'dtype':'F32','shape':[2],'data_offsets':[0,8]},"
                + "'b':{'dtype':'F32','shape':[1],'data_offsets':[4,8]}}", 8),
                "test.safetensors", "tensor 'b' starts at data offset 4, overlapping the previous tensor (expected 8)");
        // the same range twice
        rejects(SafetensorsBytes.json("{'a':{'dtype':'F32','shape':[1],'data_offsets':[0,4]},"
                + "'b':{'dtype':'I32','shape':[1],'data_offsets':[0,4]}}", 4), "overlapping");
        rejects(SafetensorsBytes.json("{'a':{'dtype':'F32','shape':[1],'data_offsets':[0,4]},"
                + "'b':{'dtype':'F32','shape':[1],'data_offsets':[8,12]}}", 12),
                "tensor 'b' starts at data offset 8, leaving a gap (expected 4)");
        rejects(SafetensorsBytes.json("{'a':{'dtype':'F32','shape':[1],'data_offsets':[4,8]}}", 8),
                "tensor 'a' starts at data offset 4, leaving a gap (expected 0)");
        // trailing bytes after the last tensor
        rejects(SafetensorsBytes.json("{'a':{'dtype':'F32','shape':[1],'data_offsets':[0,4]}}", 6),
                "tensors cover 4 of the 6 data bytes");
        rejects(SafetensorsBytes.json("{}", 1), "tensors cover 0 of the 1 data bytes");
    }

    @Test
    void rejectsBadMetadata() {
        rejects(SafetensorsBytes.json("{'__metadata__':{'format':'pt','n':1}}", 0),
                "test.safetensors", "__metadata__ value of 'n' is not a string");
        rejects(SafetensorsBytes.json("{'__metadata__':{'k':{'x':'y'}}}", 0), "value of 'k' is not a string");
        rejects(SafetensorsBytes.json("{'__metadata__':{'k':null}}", 0), "value of 'k' is not a string");
        rejects(SafetensorsBytes.json("{'__metadata__':['a']}", 0), "__metadata__ is not an object");
        rejects(SafetensorsBytes.json("{'__metadata__':'pt'}", 0), "__metadata__ is not an object");
    }
}
