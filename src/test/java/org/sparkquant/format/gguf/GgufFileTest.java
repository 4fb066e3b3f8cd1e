package org.sparkquant.format.gguf;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.function.Consumer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.sparkquant.SparkQuantException;

class GgufFileTest {
    @TempDir
    Path tmp;

    @Test
    void roundTripsEveryValueTypeAndTensorType() throws IOException {
        Map<String, GgufValue> md = GgufTestFiles.allValueTypes();
        List<GgufTensor> tensors = GgufTestFiles.everyType();
        byte[] file = GgufTestFiles.write(md, tensors, 1, 100);
        GgufLayout layout = GgufLayout.of(md, tensors);
        assertEquals(layout.totalSize(), file.length);
        Path p = tmp.resolve("all.gguf");
        Files.write(p, file);
        try (GgufReader r = GgufReader.open(p)) {
            assertEquals(3, r.version());
            assertEquals(md, r.metadata());
            assertEquals(List.copyOf(md.keySet()), List.copyOf(r.metadata().keySet()), "key order");
            assertEquals(32, r.alignment());
            assertEquals(layout.dataStart(), r.dataStart());
            assertEquals(tensors.size(), r.tensors().size());
            for (int i = 0; i < tensors.size(); i++) {
                GgufTensorInfo info = r.tensors().get(i);
                assertEquals(tensors.get(i), info.tensor());
                assertEquals(layout.tensors().get(i).offset(), info.offset());
                assertEquals(0, info.offset() % 32);
                assertArrayEquals(GgufTestFiles.data(tensors.get(i), 1), r.readTensor(info.name()), info.name());
            }
            // positional partial read
            GgufTensorInfo q4k = r.tensor("t9.q4_k");
            ByteBuffer part = ByteBuffer.allocate(144);
            r.read(q4k, 144, part);
            assertArrayEquals(Arrays.copyOfRange(GgufTestFiles.data(q4k.tensor(), 1), 144, 288), part.array());
        }
        // the padding is zeros and the header is exactly what the layout promised
        for (long i = layout.headerSize(); i < layout.dataStart(); i++) {
            assertEquals(0, file[(int) i]);
        }
    }

    @Test
    void honoursCustomAlignment() {
        Map<String, GgufValue> md = new LinkedHashMap<>();
        md.put("general.alignment", GgufValue.u32(64));
        List<GgufTensor> tensors = List.of(new GgufTensor("a", new long[] {32, 1}, GgmlType.Q4_0),
                new GgufTensor("b", new long[] {5}, GgmlType.F32));
        byte[] file = GgufTestFiles.write(md, tensors, 2, 7);
        try (GgufReader r = GgufReader.open(GgufSource.of(file), "mem")) {
            assertEquals(64, r.alignment());
            assertEquals(0, r.dataStart() % 64);
            assertEquals(64, r.tensor("b").offset());
        }
        md.put("general.alignment", GgufValue.u32(48));
        assertThrows(SparkQuantException.class, () -> GgufLayout.of(md, tensors));
        md.put("general.alignment", GgufValue.i32(32));
        assertThrows(SparkQuantException.class, () -> GgufLayout.of(md, tensors));
        assertThrows(IllegalArgumentException.class, () -> GgufValue.array(GgufValueType.ARRAY, List.of()));
    }

    @Test
    void writerEnforcesDeclaredOrderAndSizes() throws IOException {
        List<GgufTensor> tensors = List.of(new GgufTensor("a", new long[] {32}, GgmlType.Q8_0),
                new GgufTensor("b", new long[] {4}, GgmlType.F32));
        GgufWriter w = GgufWriter.create(new ByteArrayOutputStream(), Map.of(), tensors);
        assertThrows(IllegalStateException.class, () -> w.beginTensor("b"));
        assertThrows(IllegalStateException.class, () -> w.write(new byte[1]));
        w.beginTensor("a");
        assertThrows(IllegalStateException.class, () -> w.write(new byte[35]));
        w.write(new byte[30]);
        assertThrows(IllegalStateException.class, w::endTensor);
        w.write(new byte[4]);
        w.endTensor();
        assertEquals("b", w.nextTensor().name());
        IllegalStateException e = assertThrows(IllegalStateException.class, w::close);
        assertTrue(e.getMessage().contains("1 of 2"), e.getMessage());
    }

    @Test
    void layoutRejectsBadDeclarations() {
        Map<String, GgufValue> md = Map.of();
        assertBad(() -> GgufLayout.of(md, List.of(new GgufTensor("x".repeat(64), new long[] {4}, GgmlType.F32))),
                "63");
        assertBad(() -> GgufLayout.of(md, List.of(new GgufTensor("a", new long[] {1, 1, 1, 1, 1}, GgmlType.F32))),
                "dimensions");
        assertBad(() -> GgufLayout.of(md, List.of(new GgufTensor("a", new long[] {100, 2}, GgmlType.Q4_K))),
                "not a multiple of the Q4_K block size 256");
        assertBad(() -> GgufLayout.of(md, List.of(new GgufTensor("a", new long[] {4}, GgmlType.F32),
                new GgufTensor("a", new long[] {4}, GgmlType.F32))), "duplicate");
        assertBad(() -> GgufLayout.of(md, List.of(new GgufTensor("a", new long[] {0}, GgmlType.F32))), "ne[0] = 0");
    }

    // ------------------------------------------------------------------------------------------ reader errors

    private static byte[] smallFile() {
        Map<String, GgufValue> md = new LinkedHashMap<>();
        md.put("general.architecture", GgufValue.string("llama"));
        md.put("tokenizer.ggml.tokens", GgufValue.stringArray(List.of("<unk>", "<s>", "a", "bc")));
        md.put("tokenizer.ggml.scores", GgufValue.f32Array(new float[] {0, 0, -1, -2}));
        md.put("llama.block_count", GgufValue.u32(1));
        md.put("general.alignment", GgufValue.u32(32));
        List<GgufTensor> tensors = List.of(new GgufTensor("token_embd.weight", new long[] {256, 2}, GgmlType.Q4_K),
                new GgufTensor("output_norm.weight", new long[] {8}, GgmlType.F32),
                new GgufTensor("blk.0.attn_q.weight", new long[] {32, 2}, GgmlType.Q8_0));
        return GgufTestFiles.write(md, tensors, 3, 1 << 20);
    }

    /** Byte offset just after the first occurrence of {@code marker} (a tensor name or key) in the header. */
    private static int after(byte[] f, String marker) {
        byte[] m = marker.getBytes(java.nio.charset.StandardCharsets.UTF_8);
        outer:
        for (int i = 0; i + m.length <= f.length; i++) {
            for (int j = 0; j < m.length; j++) {
                if (f[i + j] != m[j]) {
                    continue outer;
                }
            }
            return i + m.length;
        }
        throw new AssertionError("marker not found: " + marker);
    }

    private static byte[] patched(Consumer<ByteBuffer> patch) {
        byte[] f = smallFile();
        patch.accept(ByteBuffer.wrap(f).order(ByteOrder.LITTLE_ENDIAN));
        return f;
    }

    private static void assertReadFails(byte[] f, String expected) {
        SparkQuantException e = assertThrows(SparkQuantException.class, () -> {
            try (GgufReader r = GgufReader.open(GgufSource.of(f), "bad.gguf")) {
                r.tensors().forEach(t -> r.readTensor(t.name()));
            }
        });
        assertEquals(SparkQuantException.Kind.BAD_INPUT, e.kind());
        assertTrue(e.getMessage().startsWith("bad.gguf: "), e.getMessage());
        assertTrue(e.getMessage().contains(expected), "'" + e.getMessage() + "' should mention '" + expected + "'");
        assertFalse(e.getMessage().contains("\n"));
    }

    @Test
    void readerNamesTheProblem() {
        byte[] ok = smallFile();
        try (GgufReader r = GgufReader.open(GgufSource.of(ok), "ok.gguf")) {
            assertEquals(3, r.tensors().size());
        }
        assertReadFails(patched(b -> b.putInt(0, 0x46554746)), "not a GGUF file");
        assertReadFails(patched(b -> b.putInt(4, 1)), "version 1 is not supported");
        assertReadFails(patched(b -> b.putInt(4, 4)), "unsupported GGUF version 4");
        assertReadFails(patched(b -> b.putInt(4, 0x03000000)), "big-endian");
        assertReadFails(Arrays.copyOf(ok, 6), "truncated");
        assertReadFails(Arrays.copyOf(ok, 100), "truncated");
        assertReadFails(Arrays.copyOf(ok, ok.length - 40), "truncated: tensor data ends");
        assertReadFails(patched(b -> b.putLong(8, 1L << 40)), "tensor count");
        assertReadFails(patched(b -> b.putLong(16, -1L)), "metadata count");
        byte[] f = smallFile();
        int tokens = after(f, "tokenizer.ggml.tokens");
        assertReadFails(patched(b -> b.putInt(tokens, 99)), "unknown value type 99");
        assertReadFails(patched(b -> b.putLong(tokens + 8, 1L << 50)), "does not fit");
        assertReadFails(patched(b -> b.putInt(tokens + 4, 9)), "array of arrays");
        int qName = after(f, "blk.0.attn_q.weight");
        // layout after a tensor name: n_dims u32, ne u64 × n, type u32, offset u64
        assertReadFails(patched(b -> b.putInt(qName, 5)), "5 dimensions");
        assertReadFails(patched(b -> b.putInt(qName + 4 + 16, 19)), "unsupported ggml type id 19");
        assertReadFails(patched(b -> b.putInt(qName + 4 + 16, 12)), "not a multiple of the Q4_K block size");
        assertReadFails(patched(b -> b.putLong(qName + 4 + 16 + 4, b.getLong(qName + 4 + 16 + 4) + 8)),
                "misaligned");
        assertReadFails(patched(b -> b.putLong(qName + 4 + 16 + 4, b.getLong(qName + 4 + 16 + 4) + 4096)),
                "expected");
        assertReadFails(patched(b -> b.putLong(qName + 4, 1L << 40)), "bytes");
        int normName = after(f, "output_norm.weight");
        assertReadFails(patched(b -> b.putLong(normName - "output_norm.weight".length() - 8, 200)), "");
        int align = after(f, "general.alignment");
        assertReadFails(patched(b -> b.putInt(align + 4, 24)), "not a power of two");
        assertReadFails(patched(b -> b.putInt(align, 5)), "must be a UINT32");
        // duplicate key: two keys of equal length, the second renamed to the first
        Map<String, GgufValue> md = new LinkedHashMap<>();
        md.put("k.aaaa", GgufValue.u32(1));
        md.put("k.bbbb", GgufValue.u32(2));
        byte[] dup = GgufTestFiles.write(md, List.of(), 0, 1);
        int second = after(dup, "k.bbbb") - 4;
        System.arraycopy("aaaa".getBytes(java.nio.charset.StandardCharsets.UTF_8), 0, dup, second, 4);
        assertReadFails(dup, "duplicate metadata key 'k.aaaa'");
    }

    /**
     * A seeded mutation loop over a small valid file: truncations, bit flips and overwritten 4/8-byte fields, mostly
     * in the header. Every outcome must be a successful read or the project's bad-input error — never another
     * exception, a hang or an out-of-memory.
     */
    @Test
    void corruptedFilesFailCleanly() {
        byte[] ok = smallFile();
        int header;
        try (GgufReader r = GgufReader.open(GgufSource.of(ok), "x")) {
            header = (int) r.dataStart();
        }
        SplittableRandom rnd = new SplittableRandom(20240601);
        int cases = 2000;
        int rejected = 0;
        for (int c = 0; c < cases; c++) {
            byte[] f = ok.clone();
            int kind = rnd.nextInt(4);
            String what;
            if (kind == 0) {
                int len = rnd.nextInt(f.length);
                f = Arrays.copyOf(f, len);
                what = "truncate to " + len;
            } else if (kind == 1) {
                int n = 1 + rnd.nextInt(4);
                StringBuilder sb = new StringBuilder("flip");
                for (int k = 0; k < n; k++) {
                    int pos = rnd.nextInt(rnd.nextInt(8) == 0 ? f.length : header);
                    int bit = rnd.nextInt(8);
                    f[pos] ^= (byte) (1 << bit);
                    sb.append(' ').append(pos).append(':').append(bit);
                }
                what = sb.toString();
            } else {
                int width = kind == 2 ? 4 : 8;
                int pos = rnd.nextInt(header - width);
                long[] specials = {0, 1, -1, 0x7fffffffL, 0x80000000L, Long.MAX_VALUE, Long.MIN_VALUE, 1L << 32,
                    rnd.nextLong(), rnd.nextInt(64), header + rnd.nextInt(64)};
                long v = specials[rnd.nextInt(specials.length)];
                ByteBuffer b = ByteBuffer.wrap(f).order(ByteOrder.LITTLE_ENDIAN);
                if (width == 4) {
                    b.putInt(pos, (int) v);
                } else {
                    b.putLong(pos, v);
                }
                what = "set " + width + " bytes at " + pos + " to " + v;
            }
            try (GgufReader r = GgufReader.open(GgufSource.of(f), "fuzz.gguf")) {
                for (GgufTensorInfo t : r.tensors()) {
                    if (t.bytes() < (1 << 20)) {
                        r.readFloats(t.name());
                    }
                }
            } catch (SparkQuantException e) {
                rejected++;
                if (e.kind() != SparkQuantException.Kind.BAD_INPUT || !e.getMessage().startsWith("fuzz.gguf: ")) {
                    fail("case " + c + " (" + what + "): " + e);
                }
            } catch (Throwable t) {
                throw new AssertionError("case " + c + " (" + what + ") threw " + t, t);
            }
        }
        assertTrue(rejected > cases / 2, rejected + " of " + cases + " mutations rejected");
    }

    private static void assertBad(org.junit.jupiter.api.function.Executable ex, String expected) {
        SparkQuantException e = assertThrows(SparkQuantException.class, ex);
        assertEquals(SparkQuantException.Kind.BAD_INPUT, e.kind());
        assertTrue(e.getMessage().contains(expected), "'" + e.getMessage() + "' should mention '" + expected + "'");
    }
}
