package org.sparkquant.io;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.sparkquant.SparkQuantException;

/** The streaming writer and the sharded writer, read back by the project's reader. */
class SafetensorsWriterTest {
    private static final Storage STORAGE = Storage.local();

    @TempDir
    Path dir;

    static List<TensorSpec> everyDtype() {
        List<TensorSpec> specs = new ArrayList<>();
        for (DType d : DType.values()) {
            specs.add(new TensorSpec("w." + d.name().toLowerCase(), d, new long[] {3, 5}));
        }
        specs.add(new TensorSpec("scalar", DType.F32, new long[] {}));
        specs.add(new TensorSpec("empty", DType.BF16, new long[] {0, 16}));
        specs.add(new TensorSpec("cube", DType.F16, new long[] {2, 3, 4}));
        return specs;
    }

    static Map<String, byte[]> randomData(List<TensorSpec> specs, long seed) {
        Random r = new Random(seed);
        Map<String, byte[]> data = new LinkedHashMap<>();
        for (TensorSpec s : specs) {
            byte[] b = new byte[(int) s.byteSize()];
            r.nextBytes(b);
            data.put(s.name(), b);
        }
        return data;
    }

    @Test
    void roundTripInChunks() throws Exception {
        List<TensorSpec> specs = everyDtype();
        Map<String, byte[]> data = randomData(specs, 1);
        Map<String, String> metadata = Map.of("format", "pt", "producer", "sparkquant test");
        String uri = dir.resolve("rt.safetensors").toString();
        Random r = new Random(2);
        try (SafetensorsWriter w = SafetensorsWriter.create(STORAGE.create(uri), uri, specs, metadata)) {
            for (TensorSpec s : specs) {
                byte[] b = data.get(s.name());
                // in uneven chunks, as a streaming producer would
                for (int off = 0; off < b.length; ) {
                    int n = Math.min(b.length - off, 1 + r.nextInt(7));
                    w.write(s.name(), b, off, n);
                    off += n;
                }
            }
            assertEquals(null, w.expected());
        }
        byte[] file = Files.readAllBytes(Path.of(uri));
        assertEquals(SafetensorsWriter.fileSize(specs, metadata), file.length);
        long headerLength = ByteBuffer.wrap(file).order(ByteOrder.LITTLE_ENDIAN).getLong();
        assertEquals(0, (8 + headerLength) % 8, "data section 8-byte aligned");
        try (SafetensorsFile f = SafetensorsFile.open(STORAGE, uri)) {
            assertEquals(metadata, f.metadata());
            assertEquals(specs.stream().map(TensorSpec::name).toList(), List.copyOf(f.tensors().keySet()));
            for (TensorSpec s : specs) {
                TensorInfo info = f.tensor(s.name());
                assertEquals(s.dtype(), info.dtype());
                assertArrayEquals(s.shape(), info.shape());
                assertArrayEquals(data.get(s.name()), f.readRaw(s.name()), s.name());
            }
        }
    }

    @Test
    void valuesSurviveTheRoundTrip() {
        // floats written through the Half conversions come back as the rounded values
        float[] values = {0f, -1.25f, 3.14159f, 65504f, 1e-7f, -70000f};
        ByteBuffer f16 = SafetensorsBytes.le(2 * values.length);
        ByteBuffer bf16 = SafetensorsBytes.le(2 * values.length);
        ByteBuffer f32 = SafetensorsBytes.le(4 * values.length);
        for (float v : values) {
            f16.putShort(Half.fromFloat(v));
            bf16.putShort(Half.floatToBf16(v));
            f32.putFloat(v);
        }
        List<TensorSpec> specs = List.of(new TensorSpec("h", DType.F16, new long[] {2, 3}),
                new TensorSpec("b", DType.BF16, new long[] {2, 3}), new TensorSpec("f", DType.F32, new long[] {6}));
        byte[] bytes = SafetensorsBytes.written(specs, Map.of("h", f16.array(), "b", bf16.array(), "f", f32.array()),
                null);
        try (SafetensorsFile f = SafetensorsBytes.open(bytes)) {
            assertTrue(f.metadata().isEmpty());
            assertArrayEquals(values, f.readFloats("f"));
            float[] h = f.readFloats("h");
            float[] b = f.readFloats("b");
            for (int i = 0; i < values.length; i++) {
                assertEquals(Half.round(values[i]), h[i]);
                assertEquals(Half.bf16ToFloat(Half.floatToBf16(values[i])), b[i]);
            }
            assertEquals(Float.NEGATIVE_INFINITY, h[5], "-70000 overflows half");
            assertEquals(-70144f, b[5], "bfloat16 keeps 8 significant bits: -70000 rounds to -70144");
            assertArrayEquals(new float[] {65504f, Half.round(1e-7f), Float.NEGATIVE_INFINITY}, f.readRows("h", 1, 2));
        }
    }

    @Test
    void enforcesOrderAndSizes() {
        List<TensorSpec> specs = List.of(new TensorSpec("a", DType.F32, new long[] {2}),
                new TensorSpec("b", DType.U8, new long[] {3}));
        SafetensorsWriter w = SafetensorsWriter.create(new ByteArrayOutputStream(), "mem", specs, null);
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> w.write("b", new byte[3]));
        assertTrue(e.getMessage().contains("expected data of 'a', got 'b'"), e.getMessage());
        e = assertThrows(IllegalStateException.class, () -> w.write("a", new byte[9]));
        assertTrue(e.getMessage().contains("9 bytes exceed what is left of 'a' (8)"), e.getMessage());
        w.write("a", new byte[8]);
        w.write("b", new byte[3]);
        e = assertThrows(IllegalStateException.class, () -> w.write("b", new byte[1]));
        assertTrue(e.getMessage().contains("no more tensors expected, got 'b'"), e.getMessage());
        w.close();
    }

    @Test
    void shortWriteFailsOnClose() throws Exception {
        List<TensorSpec> specs = List.of(new TensorSpec("a", DType.F32, new long[] {2}),
                new TensorSpec("b", DType.F32, new long[] {4}));
        String uri = dir.resolve("short.safetensors").toString();
        SafetensorsWriter w = SafetensorsWriter.create(STORAGE.create(uri), uri, specs, null);
        w.write("a", new byte[8]);
        w.write("b", new byte[15]);
        IllegalStateException e = assertThrows(IllegalStateException.class, w::close);
        assertTrue(e.getMessage().contains(uri) && e.getMessage().contains("closed before tensor 'b' was written"),
                e.getMessage());
        // and what was left on disk is not mistaken for a checkpoint
        SafetensorsFileTest.assertMessage(() -> SafetensorsFile.open(STORAGE, uri), uri, "'b'",
                "outside the data section");
        // nothing written at all
        SafetensorsWriter none = SafetensorsWriter.create(new ByteArrayOutputStream(), "mem", specs, null);
        e = assertThrows(IllegalStateException.class, none::close);
        assertTrue(e.getMessage().contains("closed before tensor 'a'"), e.getMessage());
    }

    @Test
    void rejectsRepeatedAndReservedNames() {
        List<TensorSpec> twice = List.of(new TensorSpec("a", DType.F32, new long[] {1}),
                new TensorSpec("a", DType.F32, new long[] {1}));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> SafetensorsWriter.create(new ByteArrayOutputStream(), "mem", twice, null));
        assertTrue(e.getMessage().contains("'a' is declared twice"), e.getMessage());
        List<TensorSpec> reserved = List.of(new TensorSpec("__metadata__", DType.U8, new long[] {1}));
        e = assertThrows(IllegalArgumentException.class,
                () -> SafetensorsWriter.create(new ByteArrayOutputStream(), "mem", reserved, null));
        assertTrue(e.getMessage().contains("reserved"), e.getMessage());
        // across shards too
        e = assertThrows(IllegalArgumentException.class,
                () -> ShardedSafetensorsWriter.create(STORAGE, dir.toString(), List.of(
                        new TensorSpec("x", DType.F32, new long[] {4}), new TensorSpec("x", DType.F32, new long[] {4})),
                        8, null));
        assertTrue(e.getMessage().contains("'x' is declared twice"), e.getMessage());
    }

    @Test
    void copiesEveryTensorIncludingEmptyOnes() {
        // a copier writes each tensor's bytes in order, zero bytes for an empty tensor
        List<TensorSpec> specs = List.of(new TensorSpec("empty.first", DType.F32, new long[] {0}),
                new TensorSpec("a", DType.F32, new long[] {2}), new TensorSpec("empty.mid", DType.I8, new long[] {4, 0}),
                new TensorSpec("b", DType.U8, new long[] {1}), new TensorSpec("empty.last", DType.F16, new long[] {0, 2}));
        Map<String, byte[]> data = randomData(specs, 3);
        byte[] bytes = SafetensorsBytes.written(specs, data, null);
        try (SafetensorsFile f = SafetensorsBytes.open(bytes)) {
            for (TensorSpec s : specs) {
                assertArrayEquals(data.get(s.name()), f.readRaw(s.name()));
            }
        }
        // a zero-byte write of a non-empty tensor out of order is still an error
        SafetensorsWriter w = SafetensorsWriter.create(new ByteArrayOutputStream(), "mem", specs, null);
        assertThrows(IllegalStateException.class, () -> w.write("b", new byte[0]));
    }

    // ---- sharded ----

    /** Sizes in bytes of F32 tensors: 40, 24, 100, 8, 8, 64, 4, 0, 36. */
    private static List<TensorSpec> shardSpecs() {
        long[] elements = {10, 6, 25, 2, 2, 16, 1, 0, 9};
        List<TensorSpec> specs = new ArrayList<>();
        for (int i = 0; i < elements.length; i++) {
            specs.add(new TensorSpec("t" + i, DType.F32, new long[] {elements[i]}));
        }
        return specs;
    }

    private void writeAll(ShardedSafetensorsWriter w, List<TensorSpec> specs, Map<String, byte[]> data) {
        for (TensorSpec s : specs) {
            byte[] b = data.get(s.name());
            int half = b.length / 2;
            w.write(s.name(), b, 0, half);
            w.write(s.name(), b, half, b.length - half);
        }
    }

    @Test
    void shardsByMaxSize() throws Exception {
        List<TensorSpec> specs = shardSpecs();
        Map<String, byte[]> data = randomData(specs, 4);
        String out = dir.resolve("sharded").toString();
        Map<String, String> metadata = Map.of("format", "pt");
        ShardedSafetensorsWriter w = ShardedSafetensorsWriter.create(STORAGE, out, specs, 64, metadata);
        // greedy packing with at most 64 data bytes a shard; t2 (100 bytes) exceeds the bound and stands alone:
        // [t0 40 + t1 24] [t2 100] [t3 8 + t4 8] ... t5 64 would make 80 -> [t5 64] [t6 4, t7 0, t8 36]
        List<List<String>> expected = List.of(List.of("t0", "t1"), List.of("t2"), List.of("t3", "t4"),
                List.of("t5"), List.of("t6", "t7", "t8"));
        List<String> names = List.of("model-00001-of-00005.safetensors", "model-00002-of-00005.safetensors",
                "model-00003-of-00005.safetensors", "model-00004-of-00005.safetensors",
                "model-00005-of-00005.safetensors");
        assertEquals(names, w.fileNames());
        writeAll(w, specs, data);
        w.close();

        List<String> files = STORAGE.list(out);
        List<String> expectedFiles = new ArrayList<>(names);
        expectedFiles.add(TensorStore.INDEX);
        expectedFiles.sort(null);
        assertEquals(expectedFiles, files);

        JsonNode index = new ObjectMapper().readTree(Files.readString(Path.of(out, TensorStore.INDEX)));
        long total = specs.stream().mapToLong(TensorSpec::byteSize).sum();
        assertEquals(284, total);
        assertEquals(total, index.get("metadata").get("total_size").asLong());
        Map<String, String> weightMap = new TreeMap<>();
        for (Iterator<Map.Entry<String, JsonNode>> it = index.get("weight_map").fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            weightMap.put(e.getKey(), e.getValue().textValue());
        }
        Map<String, String> expectedMap = new TreeMap<>();
        for (int s = 0; s < expected.size(); s++) {
            for (String t : expected.get(s)) {
                expectedMap.put(t, names.get(s));
            }
        }
        assertEquals(expectedMap, weightMap);
        for (int s = 0; s < names.size(); s++) {
            try (SafetensorsFile f = SafetensorsFile.open(STORAGE, Storage.resolve(out, names.get(s)))) {
                assertEquals(expected.get(s), List.copyOf(f.tensors().keySet()));
                assertEquals(metadata, f.metadata());
            }
        }
        try (TensorStore store = TensorStore.open(STORAGE, out)) {
            assertEquals(expectedMap.keySet(), store.names());
            for (TensorSpec spec : specs) {
                assertArrayEquals(data.get(spec.name()), store.readRaw(spec.name()));
                assertEquals(expectedMap.get(spec.name()), store.shardOf(spec.name()));
            }
        }
    }

    @Test
    void singleShardIsModelSafetensorsWithoutIndex() {
        List<TensorSpec> specs = shardSpecs();
        Map<String, byte[]> data = randomData(specs, 5);
        String out = dir.resolve("single").toString();
        try (ShardedSafetensorsWriter w = ShardedSafetensorsWriter.create(STORAGE, out, specs, 1L << 30, null)) {
            assertEquals(List.of(TensorStore.SINGLE), w.fileNames());
            writeAll(w, specs, data);
        }
        assertEquals(List.of(TensorStore.SINGLE), STORAGE.list(out));
        try (TensorStore store = TensorStore.open(STORAGE, out)) {
            assertEquals(List.of(TensorStore.SINGLE), List.copyOf(store.shards().keySet()));
            for (TensorSpec spec : specs) {
                assertArrayEquals(data.get(spec.name()), store.readRaw(spec.name()));
            }
        }
        // the bound is inclusive: exactly the total still makes one shard
        String exact = dir.resolve("exact").toString();
        try (ShardedSafetensorsWriter w = ShardedSafetensorsWriter.create(STORAGE, exact, specs, 284, null)) {
            assertEquals(List.of(TensorStore.SINGLE), w.fileNames());
            writeAll(w, specs, data);
        }
        String split = dir.resolve("split").toString();
        try (ShardedSafetensorsWriter w = ShardedSafetensorsWriter.create(STORAGE, split, specs, 283, null)) {
            assertEquals(2, w.fileNames().size());
            writeAll(w, specs, data);
        }
    }

    @Test
    void shardedShortWriteFailsAndWritesNoIndex() {
        List<TensorSpec> specs = shardSpecs();
        Map<String, byte[]> data = randomData(specs, 6);
        String out = dir.resolve("short").toString();
        ShardedSafetensorsWriter w = ShardedSafetensorsWriter.create(STORAGE, out, specs, 64, null);
        for (TensorSpec s : specs.subList(0, 3)) {
            w.write(s.name(), data.get(s.name()));
        }
        w.write("t3", data.get("t3"), 0, 5);
        IllegalStateException e = assertThrows(IllegalStateException.class, w::close);
        assertTrue(e.getMessage().contains("'t3'"), e.getMessage());
        assertFalse(STORAGE.exists(Storage.resolve(out, TensorStore.INDEX)), "no index for an unfinished checkpoint");
        // a missing last tensor
        String out2 = dir.resolve("short2").toString();
        ShardedSafetensorsWriter w2 = ShardedSafetensorsWriter.create(STORAGE, out2, specs, 64, null);
        writeAll(w2, specs.subList(0, 8), data);
        e = assertThrows(IllegalStateException.class, w2::close);
        assertTrue(e.getMessage().contains("'t8'"), e.getMessage());
        assertFalse(STORAGE.exists(Storage.resolve(out2, TensorStore.INDEX)));
        // one tensor too many
        String out3 = dir.resolve("long").toString();
        ShardedSafetensorsWriter w3 = ShardedSafetensorsWriter.create(STORAGE, out3, specs, 64, null);
        writeAll(w3, specs, data);
        e = assertThrows(IllegalStateException.class, () -> w3.write("t9", new byte[4]));
        assertTrue(e.getMessage().contains("no more tensors expected, got 't9'"), e.getMessage());
    }

    @Test
    void errorsOpeningTheTargetAreBadInput() throws Exception {
        Path file = dir.resolve("a-file");
        Files.writeString(file, "x");
        SparkQuantException e = assertThrows(SparkQuantException.class,
                () -> ShardedSafetensorsWriter.create(STORAGE, file.toString(), shardSpecs(), 64, null)
                        .write("t0", new byte[40]));
        assertTrue(e.getMessage().contains(file.toString()), e.getMessage());
    }
}
