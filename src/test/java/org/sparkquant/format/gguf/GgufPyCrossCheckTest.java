package org.sparkquant.format.gguf;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.lang.reflect.Array;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.sparkquant.testing.TestPython;

/**
 * Live cross-checks with gguf-py (skipped without python): a GGUF file written by Java is read by gguf-py's
 * GGUFReader — metadata, tensor names, shapes, types, offsets — and every tensor dequantized by gguf-py equals
 * Java's dequantization; and gguf-py's own quantizers produce Java's bytes for fresh random rows.
 */
class GgufPyCrossCheckTest {
    @TempDir
    Path tmp;

    @Test
    void ggufPyReadsJavaFiles() throws IOException {
        Path python = TestPython.require("gguf", "numpy");
        Map<String, GgufValue> md = GgufTestFiles.allValueTypes();
        List<GgufTensor> tensors = GgufTestFiles.everyType();
        byte[] file = GgufTestFiles.write(md, tensors, 11, 1000);
        Path p = tmp.resolve("java.gguf");
        Files.write(p, file);
        Path out = tmp.resolve("check");
        TestPython.check(python, List.of("python/gguf_check.py", p.toString(), out.toString()), 300);
        JsonNode s = new ObjectMapper().readTree(out.resolve("summary.json").toFile());
        GgufLayout layout = GgufLayout.of(md, tensors);
        assertEquals(3, s.get("version").asInt());
        assertEquals(32, s.get("alignment").asInt());
        assertEquals(layout.dataStart(), s.get("data_offset").asLong());

        JsonNode kvs = s.get("kvs");
        assertEquals(md.size(), kvs.size());
        int i = 0;
        for (Map.Entry<String, GgufValue> e : md.entrySet()) {
            JsonNode kv = kvs.get(i++);
            assertEquals(e.getKey(), kv.get("key").asText());
            GgufValue v = e.getValue();
            List<String> types = new ArrayList<>();
            types.add(v.type().name());
            if (v.type() == GgufValueType.ARRAY) {
                types.add(v.elementType().name());
            }
            List<String> pyTypes = new ArrayList<>();
            kv.get("types").forEach(t -> pyTypes.add(t.asText()));
            if (v.type() == GgufValueType.ARRAY && v.arrayLength() == 0) {
                assertEquals("ARRAY", pyTypes.get(0), e.getKey()); // gguf-py does not record the element type
            } else {
                assertEquals(types, pyTypes, e.getKey());
            }
            assertValue(e.getKey(), v, kv.get("value"));
        }

        JsonNode ts = s.get("tensors");
        assertEquals(tensors.size(), ts.size());
        for (int k = 0; k < tensors.size(); k++) {
            GgufTensor t = tensors.get(k);
            JsonNode jt = ts.get(k);
            assertEquals(t.name(), jt.get("name").asText());
            assertEquals(t.type().name(), jt.get("type").asText());
            long[] ne = new long[jt.get("ne").size()];
            for (int d = 0; d < ne.length; d++) {
                ne[d] = jt.get("ne").get(d).asLong();
            }
            assertArrayEquals(t.ne(), ne, t.name());
            assertEquals(layout.absoluteOffset(k), jt.get("offset").asLong(), t.name());
            assertEquals(t.bytes(), jt.get("bytes").asLong(), t.name());
            float[] py = readF32(out.resolve(k + ".f32"));
            float[] java = GgmlQuant.dequantize(t.type(), GgufTestFiles.data(t, 11));
            GgmlQuantTest.assertSameFloats(py, java, "gguf-py dequantization of " + t);
        }
    }

    @Test
    void ggufPyQuantizersAgreeOnFreshRows() throws IOException {
        Path python = TestPython.require("gguf", "numpy");
        Random r = new Random(77);
        int rows = 64;
        int len = 256;
        float[] x = new float[rows * len];
        for (int i = 0; i < x.length; i++) {
            double g = r.nextGaussian();
            x[i] = (float) (i / len % 8 == 7 ? Math.round(g * 4) / 2.0 : g * Math.pow(10, (i / len) % 5 - 3));
        }
        Path in = tmp.resolve("rows.f32");
        ByteBuffer b = ByteBuffer.allocate(x.length * 4).order(ByteOrder.LITTLE_ENDIAN);
        b.asFloatBuffer().put(x);
        Files.write(in, b.array());
        for (GgmlType t : List.of(GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.Q8_0)) {
            Path o = tmp.resolve(t + ".bin");
            TestPython.check(python, List.of("python/gguf_check.py", "--quantize", t.name(), String.valueOf(len),
                    in.toString(), o.toString()), 300);
            assertArrayEquals(Files.readAllBytes(o), GgmlQuant.quantizeRows(t, x, rows, len, null), t.toString());
        }
    }

    /**
     * ggml's own GGUF parser (what llama.cpp loads files with) accepts a Java-written file and sees the same keys,
     * tensors, types and offsets. Needs a llama.cpp build: set GGML_LIB_DIR to the directory holding
     * libggml-base.so (see python/gguf_fixtures.py); skipped otherwise.
     */
    @Test
    void ggmlParsesJavaFiles() throws IOException {
        String dir = System.getenv("GGML_LIB_DIR");
        org.junit.jupiter.api.Assumptions.assumeTrue(dir != null && Files.exists(Path.of(dir, "libggml-base.so")),
                "GGML_LIB_DIR with libggml-base.so not set");
        Path python = TestPython.require("numpy");
        Map<String, GgufValue> md = GgufTestFiles.allValueTypes();
        List<GgufTensor> tensors = GgufTestFiles.everyType();
        Path p = tmp.resolve("java.gguf");
        Files.write(p, GgufTestFiles.write(md, tensors, 5, 333));
        Path json = tmp.resolve("ggml.json");
        TestPython.check(python, List.of("python/gguf_check.py", "--ggml", dir, p.toString(), json.toString()), 120);
        JsonNode s = new ObjectMapper().readTree(json.toFile());
        assertTrue(s.get("ok").asBoolean(), "gguf_init_from_file rejected the file");
        GgufLayout layout = GgufLayout.of(md, tensors);
        assertEquals(3, s.get("version").asInt());
        assertEquals(32, s.get("alignment").asInt());
        assertEquals(layout.dataStart(), s.get("data_offset").asLong());
        assertEquals(md.size(), s.get("kvs").size());
        int i = 0;
        for (Map.Entry<String, GgufValue> e : md.entrySet()) {
            assertEquals(e.getKey(), s.get("kvs").get(i).get(0).asText());
            assertEquals(e.getValue().type().id(), s.get("kvs").get(i).get(1).asInt(), e.getKey());
            i++;
        }
        for (int k = 0; k < tensors.size(); k++) {
            JsonNode t = s.get("tensors").get(k);
            assertEquals(tensors.get(k).name(), t.get(0).asText());
            assertEquals(tensors.get(k).type().id(), t.get(1).asInt());
            assertEquals(layout.tensors().get(k).offset(), t.get(2).asLong());
            assertEquals(tensors.get(k).bytes(), t.get(3).asLong());
        }
    }

    private static float[] readF32(Path p) throws IOException {
        byte[] b = Files.readAllBytes(p);
        float[] f = new float[b.length / 4];
        ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(f);
        return f;
    }

    private static void assertValue(String key, GgufValue v, JsonNode py) {
        switch (v.type()) {
            case FLOAT32:
            case FLOAT64:
                assertEquals(v.asDouble(), Double.parseDouble(py.asText()), 0.0, key);
                return;
            case BOOL:
                assertEquals(v.asBoolean(), py.asBoolean(), key);
                return;
            case STRING:
                assertEquals(v.asString(), py.asText(), key);
                return;
            case UINT64:
                assertEquals(Long.toUnsignedString(v.asLong()), py.asText(), key);
                return;
            case ARRAY:
                break;
            default:
                assertEquals(v.asLong(), py.asLong(), key);
                return;
        }
        int n = v.arrayLength();
        assertEquals(n, py.size(), key);
        Object a = v.value();
        for (int k = 0; k < n; k++) {
            JsonNode e = py.get(k);
            String where = key + "[" + k + "]";
            switch (v.elementType()) {
                case STRING:
                    assertEquals(v.asStrings().get(k), e.asText(), where);
                    break;
                case FLOAT32:
                case FLOAT64:
                    assertEquals(((Number) Array.get(a, k)).doubleValue(), Double.parseDouble(e.asText()), 0.0, where);
                    break;
                case BOOL:
                    assertEquals(Array.get(a, k), e.asBoolean(), where);
                    break;
                case UINT8:
                    assertEquals(((byte[]) a)[k] & 0xff, e.asInt(), where);
                    break;
                case UINT16:
                    assertEquals(((short[]) a)[k] & 0xffff, e.asInt(), where);
                    break;
                case UINT32:
                    assertEquals(((int[]) a)[k] & 0xffffffffL, e.asLong(), where);
                    break;
                case UINT64:
                    assertEquals(Long.toUnsignedString(((long[]) a)[k]), e.asText(), where);
                    break;
                default:
                    assertEquals(((Number) Array.get(a, k)).longValue(), e.asLong(), where);
            }
        }
        assertTrue(n >= 0);
    }
}
