package org.sparkquant.io;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.sparkquant.io.SafetensorsFileTest.assertMessage;

import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Set;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.sparkquant.testing.TestPaths;
import org.sparkquant.testing.TestPython;

/** Checkpoint directories: single file, shards with an index, and what goes wrong with them; the shared models. */
class TensorStoreTest {
    private static final Storage STORAGE = Storage.local();

    @TempDir
    Path dir;

    private static byte[] f32(float... v) {
        ByteBuffer b = SafetensorsBytes.le(4 * v.length);
        for (float x : v) {
            b.putFloat(x);
        }
        return b.array();
    }

    /** Writes a safetensors file of F32 tensors, each given as name, shape, values. */
    private static void writeFile(Path file, Map<String, long[]> shapes, Map<String, float[]> values)
            throws Exception {
        List<TensorSpec> specs = shapes.entrySet().stream()
                .map(e -> new TensorSpec(e.getKey(), DType.F32, e.getValue())).toList();
        Map<String, byte[]> data = new java.util.HashMap<>();
        values.forEach((k, v) -> data.put(k, f32(v)));
        Files.createDirectories(file.getParent());
        Files.write(file, SafetensorsBytes.written(specs, data, Map.of("format", "pt")));
    }

    private static float[] range(int n, float start) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = start + i;
        }
        return v;
    }

    /** Two shards, a.weight [3,2] and b in shard 1, c.weight [2,2] in shard 2, plus the index naming them. */
    private Path sharded(String index) throws Exception {
        Path d = dir.resolve("sharded");
        writeFile(d.resolve("model-00001-of-00002.safetensors"),
                ordered("a.weight", new long[] {3, 2}, "b", new long[] {2}),
                Map.of("a.weight", range(6, 0), "b", range(2, 100)));
        writeFile(d.resolve("model-00002-of-00002.safetensors"), ordered("c.weight", new long[] {2, 2}),
                Map.of("c.weight", range(4, 10)));
        Files.writeString(d.resolve(TensorStore.INDEX), index.replace('\'', '"'));
        return d;
    }

    private static Map<String, long[]> ordered(Object... kv) {
        Map<String, long[]> m = new java.util.LinkedHashMap<>();
        for (int i = 0; i < kv.length; i += 2) {
            m.put((String) kv[i], (long[]) kv[i + 1]);
        }
        return m;
    }

    private static final String GOOD_INDEX = "{'metadata':{'total_size':56},'weight_map':{"
            + "'a.weight':'model-00001-of-00002.safetensors','b':'model-00001-of-00002.safetensors',"
            + "'c.weight':'model-00002-of-00002.safetensors'}}";

    @Test
    void singleFile() throws Exception {
        Path d = dir.resolve("single");
        writeFile(d.resolve(TensorStore.SINGLE), ordered("z.weight", new long[] {4, 3}, "a.norm", new long[] {3}),
                Map.of("z.weight", range(12, 0), "a.norm", range(3, -1)));
        try (TensorStore store = TensorStore.open(STORAGE, d.toString())) {
            assertEquals(List.of("a.norm", "z.weight"), List.copyOf(store.names()), "sorted names");
            assertEquals(Set.of(TensorStore.SINGLE), store.shards().keySet());
            assertEquals(TensorStore.SINGLE, store.shardOf("z.weight"));
            assertTrue(store.contains("a.norm"));
            assertFalse(store.contains("nope"));
            assertArrayEquals(new long[] {4, 3}, store.info("z.weight").shape());
            assertArrayEquals(range(3, -1), store.readFloats("a.norm"));
            assertArrayEquals(range(6, 3), store.readRows("z.weight", 1, 3));
            assertArrayEquals(f32(range(3, -1)), store.readRaw("a.norm"));
            assertMessage(() -> store.info("nope"), d.toString(), "no tensor 'nope'");
            assertMessage(() -> store.readRows("nope", 0, 1), "no tensor 'nope'");
        }
    }

    @Test
    void shardedWithIndex() throws Exception {
        Path d = sharded(GOOD_INDEX);
        try (TensorStore store = TensorStore.open(STORAGE, d.toString())) {
            assertEquals(List.of("a.weight", "b", "c.weight"), List.copyOf(store.names()));
            assertEquals(List.of("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"),
                    List.copyOf(store.shards().keySet()));
            assertEquals("model-00002-of-00002.safetensors", store.shardOf("c.weight"));
            assertArrayEquals(range(2, 4), store.readRows("a.weight", 2, 3));
            assertArrayEquals(range(2, 12), store.readRows("c.weight", 1, 2));
            assertArrayEquals(range(2, 100), store.readFloats("b"));
        }
    }

    @Test
    void indexWinsOverOtherFiles() throws Exception {
        // a stray safetensors file next to an index is not part of the checkpoint; a shard's tensor the index
        // does not list is not either (the index is what transformers loads)
        Path d = sharded("{'weight_map':{'a.weight':'model-00001-of-00002.safetensors',"
                + "'c.weight':'model-00002-of-00002.safetensors'}}");
        writeFile(d.resolve("consolidated.safetensors"), ordered("a.weight", new long[] {1}), Map.of("a.weight",
                range(1, 0)));
        try (TensorStore store = TensorStore.open(STORAGE, d.toString())) {
            assertEquals(List.of("a.weight", "c.weight"), List.copyOf(store.names()));
            assertEquals(2, store.shards().size());
        }
    }

    @Test
    void indexErrors() throws Exception {
        String index = dir.resolve("sharded").resolve(TensorStore.INDEX).toString();
        Path d = sharded("{'weight_map':{'a.weight':'model-00001-of-00002.safetensors',"
                + "'x':'model-00003-of-00003.safetensors'}}");
        assertMessage(() -> TensorStore.open(STORAGE, d.toString()), index,
                "shard 'model-00003-of-00003.safetensors' does not exist");
        sharded("{'weight_map':{'a.weight':'model-00001-of-00002.safetensors','b':'model-00002-of-00002.safetensors'}}");
        assertMessage(() -> TensorStore.open(STORAGE, d.toString()), index,
                "tensor 'b' is not in model-00002-of-00002.safetensors");
        sharded("{'weight_map':{'a.weight':'../model-00001-of-00002.safetensors'}}");
        assertMessage(() -> TensorStore.open(STORAGE, d.toString()), index, "invalid shard name for 'a.weight'");
        sharded("{'weight_map':{'a.weight':'..'}}");
        assertMessage(() -> TensorStore.open(STORAGE, d.toString()), index, "invalid shard name");
        sharded("{'weight_map':{'a.weight':7}}");
        assertMessage(() -> TensorStore.open(STORAGE, d.toString()), index, "invalid shard name");
        sharded("{'weight_map':{'a.weight':''}}");
        assertMessage(() -> TensorStore.open(STORAGE, d.toString()), index, "invalid shard name for 'a.weight': \"\"");
        sharded("{'weight_map':{'a.weight':'c:model.safetensors'}}");
        assertMessage(() -> TensorStore.open(STORAGE, d.toString()), index, "invalid shard name for 'a.weight'");
        sharded("{'metadata':{}}");
        assertMessage(() -> TensorStore.open(STORAGE, d.toString()), index, "missing the weight_map object");
        sharded("{'weight_map':['a']}");
        assertMessage(() -> TensorStore.open(STORAGE, d.toString()), index, "missing the weight_map object");
        sharded("[]");
        assertMessage(() -> TensorStore.open(STORAGE, d.toString()), index, "missing the weight_map object");
        sharded("");
        assertMessage(() -> TensorStore.open(STORAGE, d.toString()), index, "missing the weight_map object");
        sharded("{'weight_map':");
        assertMessage(() -> TensorStore.open(STORAGE, d.toString()), index, "not valid JSON");
        // a broken shard is reported with the shard's own name
        sharded(GOOD_INDEX);
        Files.write(d.resolve("model-00002-of-00002.safetensors"), new byte[] {1, 2, 3});
        assertMessage(() -> TensorStore.open(STORAGE, d.toString()), "model-00002-of-00002.safetensors",
                "too short");
    }

    @Test
    void directoryErrors() throws Exception {
        Path empty = Files.createDirectories(dir.resolve("empty"));
        Files.writeString(empty.resolve("config.json"), "{}");
        Files.writeString(empty.resolve("pytorch_model.bin"), "not ours");
        assertMessage(() -> TensorStore.open(STORAGE, empty.toString()), empty.toString(),
                "no model.safetensors and no model.safetensors.index.json");
        assertMessage(() -> TensorStore.open(STORAGE, dir.resolve("missing").toString()), "missing",
                "no such directory");
        // without an index, two files holding the same tensor are ambiguous
        Path two = dir.resolve("two");
        writeFile(two.resolve("model-00001-of-00002.safetensors"), ordered("a", new long[] {1}), Map.of("a",
                range(1, 0)));
        writeFile(two.resolve("model-00002-of-00002.safetensors"), ordered("a", new long[] {1}), Map.of("a",
                range(1, 1)));
        assertMessage(() -> TensorStore.open(STORAGE, two.toString()), two.toString(), "tensor 'a' is in both "
                + "model-00001-of-00002.safetensors and model-00002-of-00002.safetensors");
    }

    // ---- the shared models ----

    /** 32000 x 512 embeddings (tied) + 3 layers x (q 512x512, k/v 256x512, o 512x512, 3 x 1536x512, 2 norms) + norm. */
    static final long DEV_LLAMA_PARAMETERS = 25_824_768L;

    @Test
    void devLlamaParameterCount() throws Exception {
        Path model = TestPaths.shared("models/dev-llama2-26m");
        assertEquals(DEV_LLAMA_PARAMETERS, 32000L * 512 + 3L * (512 * 512 * 2 + 256 * 512 * 2 + 3 * 1536 * 512 + 2 * 512)
                + 512, "the README's figure from the architecture");
        try (TensorStore store = TensorStore.open(STORAGE, model.toString())) {
            long sum = 0;
            for (String name : store.names()) {
                sum += store.info(name).elements();
                assertEquals(DType.BF16, store.info(name).dtype(), name);
            }
            assertEquals(DEV_LLAMA_PARAMETERS, sum);
            assertEquals(29, store.names().size());
            float[] row = store.readRows("model.embed_tokens.weight", 31999, 32000);
            assertEquals(512, row.length);
            for (float v : row) {
                assertTrue(Float.isFinite(v));
            }
        }
    }

    @Test
    void sharedModelsAgreeWithPython() throws Exception {
        Path dev = TestPaths.shared("models/dev-llama2-26m");
        Path stories = TestPaths.shared("models/stories260K");
        Path py = TestPython.require("safetensors", "numpy");
        ObjectMapper json = new ObjectMapper();
        for (Path model : List.of(dev, stories)) {
            JsonNode python = json.readTree(TestPython.check(py, List.of("python/safetensors_check.py", "count",
                    model.toString()), 120));
            try (TensorStore store = TensorStore.open(STORAGE, model.toString())) {
                long sum = store.names().stream().mapToLong(n -> store.info(n).elements()).sum();
                assertEquals(python.get("parameters").asLong(), sum, model.toString());
                assertEquals(python.get("tensors").asInt(), store.names().size(), model.toString());
            }
        }
    }

    @Test
    void storiesParameterCount() {
        Path model = TestPaths.shared("models/stories260K");
        try (TensorStore store = TensorStore.open(STORAGE, model.toString())) {
            long sum = store.names().stream().mapToLong(n -> store.info(n).elements()).sum();
            assertEquals(260_032L, sum, "the shared README's figure");
        }
    }
}
