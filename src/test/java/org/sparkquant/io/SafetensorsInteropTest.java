package org.sparkquant.io;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.opentest4j.TestAbortedException;
import org.sparkquant.testing.TestPaths;
import org.sparkquant.testing.TestPython;

/**
 * Files written by Java are read by the reference implementation (Python safetensors, python/safetensors_check.py)
 * and the other way round. Values are compared exactly, and raw bytes by SHA-256. The committed Python-written fixture
 * keeps the Python-to-Java direction tested when there is no Python.
 */
class SafetensorsInteropTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Storage STORAGE = Storage.local();
    private static final String SCRIPT = "python/safetensors_check.py";

    @TempDir
    Path dir;

    private static Path python;
    private static String noPython;

    /** TestPython.require once per class: importing torch takes seconds. */
    private static synchronized Path python() {
        if (python == null && noPython == null) {
            try {
                python = TestPython.require("safetensors", "numpy", "torch");
            } catch (TestAbortedException e) {
                noPython = e.getMessage();
            }
        }
        assumeTrue(noPython == null, noPython);
        return python;
    }

    /** Every dtype with values that exercise sign, subnormals, extremes; as raw bytes per tensor. */
    private static Map<String, byte[]> javaValues(List<TensorSpec> specs) {
        Map<String, byte[]> data = new LinkedHashMap<>();
        Random r = new Random(11);
        for (TensorSpec s : specs) {
            int n = (int) s.elements();
            ByteBuffer b = SafetensorsBytes.le((int) s.byteSize());
            for (int i = 0; i < n; i++) {
                float v = (float) (r.nextGaussian() * Math.pow(10, r.nextInt(9) - 4));
                switch (s.dtype()) {
                    case F64 -> b.putDouble(i == 0 ? Double.MIN_VALUE : r.nextGaussian() * 1e200);
                    case F32 -> b.putFloat(i == 0 ? -0f : v);
                    case F16 -> b.putShort(i == 0 ? (short) 0x0001 : Half.fromFloat(v));
                    case BF16 -> b.putShort(i == 0 ? (short) 0x8001 : Half.floatToBf16(v));
                    case I64 -> b.putLong(i == 0 ? Long.MIN_VALUE : r.nextLong());
                    case I32 -> b.putInt(i == 0 ? Integer.MAX_VALUE : r.nextInt());
                    case I16 -> b.putShort(i == 0 ? Short.MIN_VALUE : (short) r.nextInt());
                    case I8, U8 -> b.put((byte) (i == 0 ? 0x80 : r.nextInt()));
                    case BOOL -> b.put((byte) r.nextInt(2));
                }
            }
            data.put(s.name(), b.array());
        }
        return data;
    }

    /** The elements of raw little-endian bytes as doubles, the way Python prints them (bool as 0/1). */
    static double[] decode(DType dtype, byte[] raw) {
        ByteBuffer b = ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN);
        int n = raw.length / dtype.size();
        double[] out = new double[n];
        for (int i = 0; i < n; i++) {
            out[i] = switch (dtype) {
                case F64 -> b.getDouble();
                case F32 -> b.getFloat();
                case F16 -> Half.toFloat(b.getShort());
                case BF16 -> Half.bf16ToFloat(b.getShort());
                case I64 -> b.getLong(); // not exact beyond 2^53: assertTensor compares I64 as longs
                case I32 -> b.getInt();
                case I16 -> b.getShort();
                case I8 -> b.get();
                case U8 -> b.get() & 0xff;
                case BOOL -> b.get() != 0 ? 1 : 0;
            };
        }
        return out;
    }

    static long[] decodeLongs(byte[] raw) {
        ByteBuffer b = ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN);
        long[] out = new long[raw.length / 8];
        for (int i = 0; i < out.length; i++) {
            out[i] = b.getLong();
        }
        return out;
    }

    static String sha256(byte[] bytes) throws Exception {
        return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(bytes));
    }

    /** Asserts that one tensor's JSON description (from python) matches the bytes Java has for it. */
    static void assertTensor(String name, JsonNode expected, DType dtype, long[] shape, byte[] raw) throws Exception {
        assertEquals(expected.get("dtype").asText(), dtype.name(), name);
        long[] pyShape = new long[expected.get("shape").size()];
        for (int i = 0; i < pyShape.length; i++) {
            pyShape[i] = expected.get("shape").get(i).asLong();
        }
        assertArrayEquals(pyShape, shape, name);
        assertEquals(expected.get("sha256").asText(), sha256(raw), name + " bytes");
        JsonNode values = expected.get("values");
        if (dtype == DType.I64) {
            long[] longs = decodeLongs(raw);
            assertEquals(values.size(), longs.length, name);
            for (int i = 0; i < longs.length; i++) {
                assertEquals(values.get(i).asLong(), longs[i], name + "[" + i + "]");
            }
            return;
        }
        double[] actual = decode(dtype, raw);
        assertEquals(values.size(), actual.length, name);
        for (int i = 0; i < actual.length; i++) {
            double want = values.get(i).asDouble();
            // bit-exact, so -0.0 and subnormals count
            assertEquals(Double.doubleToLongBits(want), Double.doubleToLongBits(actual[i]),
                    name + "[" + i + "]: python " + want + ", java " + actual[i]);
        }
    }

    /** Checks a Python-described file (the JSON of safetensors_check.py) against what Java reads from it. */
    private static void assertJavaReads(JsonNode python, String uri) throws Exception {
        try (SafetensorsFile f = SafetensorsFile.open(STORAGE, uri)) {
            Map<String, String> metadata = new LinkedHashMap<>();
            python.get("metadata").fields().forEachRemaining(e -> metadata.put(e.getKey(), e.getValue().asText()));
            assertEquals(metadata, f.metadata());
            List<String> names = new ArrayList<>();
            python.get("tensors").fieldNames().forEachRemaining(names::add);
            assertEquals(names.stream().sorted().toList(), f.tensors().keySet().stream().sorted().toList());
            for (String name : names) {
                TensorInfo info = f.tensor(name);
                byte[] raw = f.readRaw(name);
                assertTensor(name, python.get("tensors").get(name), info.dtype(), info.shape(), raw);
                if (info.dtype().isFloating()) {
                    // the reader's own float conversion agrees with python's values (to float precision)
                    float[] floats = f.readFloats(name);
                    JsonNode values = python.get("tensors").get(name).get("values");
                    for (int i = 0; i < floats.length; i++) {
                        assertEquals((float) values.get(i).asDouble(), floats[i], name + "[" + i + "]");
                    }
                }
            }
            if (f.tensors().containsKey("matrix.weight")) {
                // rows [2, 5) of the 8x5 matrix arange(40)/8 - 2
                float[] rows = f.readRows("matrix.weight", 2, 5);
                for (int i = 0; i < rows.length; i++) {
                    assertEquals((10 + i) / 8f - 2, rows[i]);
                }
            }
        }
    }

    @Test
    void javaReadsTheCommittedPythonFile() throws Exception {
        Path fixtures = TestPaths.fixtures("io");
        JsonNode python = JSON.readTree(Files.readString(fixtures.resolve("python-written.json")));
        assertEquals(13, python.get("tensors").size());
        assertJavaReads(python, fixtures.resolve("python-written.safetensors").toString());
    }

    @Test
    void javaReadsWhatPythonWritesNow() throws Exception {
        Path py = python();
        Path file = dir.resolve("py.safetensors");
        JsonNode python = JSON.readTree(TestPython.check(py, List.of(SCRIPT, "write", file.toString()), 120));
        assertJavaReads(python, file.toString());
    }

    @Test
    void pythonReadsWhatJavaWrote() throws Exception {
        Path py = python();
        List<TensorSpec> specs = new ArrayList<>(SafetensorsWriterTest.everyDtype());
        Map<String, byte[]> data = javaValues(specs);
        Map<String, String> metadata = Map.of("format", "pt", "quantizer", "sparkquant");
        Path file = dir.resolve("java.safetensors");
        Files.write(file, SafetensorsBytes.written(specs, data, metadata));
        JsonNode python = JSON.readTree(TestPython.check(py, List.of(SCRIPT, "read", file.toString()), 120));
        assertEquals(metadata, JSON.convertValue(python.get("metadata"), Map.class));
        assertEquals(specs.size(), python.get("tensors").size());
        for (TensorSpec s : specs) {
            assertTensor(s.name(), python.get("tensors").get(s.name()), s.dtype(), s.shape(), data.get(s.name()));
        }
    }

    @Test
    void pythonReadsJavaShards() throws Exception {
        Path py = python();
        List<TensorSpec> specs = new ArrayList<>();
        for (int i = 0; i < 7; i++) {
            specs.add(new TensorSpec("model.layers." + i + ".weight", i % 2 == 0 ? DType.BF16 : DType.F32,
                    new long[] {4 + i, 8}));
        }
        Map<String, byte[]> data = javaValues(specs);
        String out = dir.resolve("shards").toString();
        try (ShardedSafetensorsWriter w = ShardedSafetensorsWriter.create(STORAGE, out, specs, 200, Map.of("format",
                "pt"))) {
            for (TensorSpec s : specs) {
                w.write(s.name(), data.get(s.name()));
            }
            assertTrue(w.fileNames().size() > 2, w.fileNames().toString());
        }
        JsonNode python = JSON.readTree(TestPython.check(py, List.of(SCRIPT, "read", out), 120));
        JsonNode index = python.get("index");
        long total = specs.stream().mapToLong(TensorSpec::byteSize).sum();
        assertEquals(total, index.get("total_size").asLong());
        assertEquals(total, index.get("data_bytes").asLong());
        assertTrue(index.get("weight_map_ok").asBoolean(), "every tensor is in the shard the index names");
        for (Iterator<String> it = python.get("tensors").fieldNames(); it.hasNext(); ) {
            String name = it.next();
            TensorSpec s = specs.stream().filter(t -> t.name().equals(name)).findFirst().orElseThrow();
            assertTensor(name, python.get("tensors").get(name), s.dtype(), s.shape(), data.get(name));
        }
        assertEquals(specs.size(), python.get("tensors").size());
    }
}
