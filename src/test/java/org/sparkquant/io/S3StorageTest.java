package org.sparkquant.io;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.ObjectInputStream;
import java.io.ObjectOutputStream;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.sparkquant.SparkQuantException;
import org.sparkquant.model.ModelConfig;
import org.sparkquant.model.ModelInventory;
import org.sparkquant.testing.MotoS3;

/**
 * A small model written to and read from S3 (a moto server) through {@link Storage}: config, sharded safetensors with
 * index, positional row reads, a multipart upload; errors name the s3a URI and never contain the secret key.
 */
class S3StorageTest {
    @RegisterExtension
    static final MotoS3 S3 = new MotoS3("sparkquant-io-test");

    private static final String CONFIG = """
            {"model_type": "llama", "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 40, "rms_norm_eps": 1e-5,
             "rope_theta": 10000.0, "tie_word_embeddings": false, "torch_dtype": "float32"}
            """;

    /** F32 values that identify their tensor and position: tensor index * 1000 + element index. */
    private static byte[] values(int tensor, TensorSpec spec) {
        int n = (int) spec.elements();
        ByteBuffer b = SafetensorsBytes.le(4 * n);
        for (int i = 0; i < n; i++) {
            b.putFloat(tensor * 1000 + i);
        }
        return b.array();
    }

    /** The lease's atomic create: a conditional PUT (If-None-Match) that only the first writer wins. */
    @Test
    void createExclusiveIsAConditionalPut() {
        Storage storage = Storage.of(S3.settings());
        String uri = S3.uri("lease/_lease.json");
        assertTrue(storage.createExclusive(uri, "first\n"));
        assertFalse(storage.createExclusive(uri, "second\n"));
        assertEquals("first\n", storage.readString(uri));
        storage.delete(uri);
        assertTrue(storage.createExclusive(uri, "third\n"));
        assertEquals("third\n", storage.readString(uri));
    }

    @Test
    void modelRoundTripThroughS3() {
        Storage storage = Storage.of(S3.settings());
        String model = S3.uri("model");
        storage.writeString(Storage.resolve(model, "config.json"), CONFIG);
        ModelConfig config = ModelConfig.load(storage, model);
        ModelInventory plan = ModelInventory.of(config);
        List<TensorSpec> specs = new ArrayList<>();
        for (String name : plan.requiredTensors()) {
            specs.add(new TensorSpec(name, DType.F32, shapeOf(config, name)));
        }
        Map<String, byte[]> data = new LinkedHashMap<>();
        try (ShardedSafetensorsWriter w = ShardedSafetensorsWriter.create(storage, model, specs, 8 << 10,
                Map.of("format", "pt"))) {
            for (int i = 0; i < specs.size(); i++) {
                byte[] b = values(i, specs.get(i));
                data.put(specs.get(i).name(), b);
                w.write(specs.get(i).name(), b);
            }
            assertTrue(w.fileNames().size() > 2, w.fileNames().toString());
        }
        List<String> listed = storage.list(model);
        assertTrue(listed.contains("config.json") && listed.contains(TensorStore.INDEX), listed.toString());
        assertTrue(listed.contains(String.format("model-00001-of-%05d.safetensors", listed.size() - 2)),
                listed.toString());

        try (TensorStore store = TensorStore.open(storage, model)) {
            ModelInventory inv = ModelInventory.of(config, store);
            assertEquals(plan.parameterCount(), inv.parameterCount());
            int down = specs.indexOf(specs.stream().filter(s -> s.name().equals("model.layers.1.mlp.down_proj.weight"))
                    .findFirst().orElseThrow());
            // rows 5..7 of down_proj [32, 48]
            float[] rows = store.readRows("model.layers.1.mlp.down_proj.weight", 5, 7);
            assertEquals(2 * 48, rows.length);
            for (int i = 0; i < rows.length; i++) {
                assertEquals(down * 1000 + 5 * 48 + i, rows[i]);
            }
            for (TensorSpec s : specs) {
                assertArrayEquals(data.get(s.name()), store.readRaw(s.name()), s.name());
            }
        }
        // an executor rebuilds the storage from its settings
        Storage copy = roundTrip(storage);
        try (TensorStore store = TensorStore.open(copy, model)) {
            assertEquals(specs.size(), store.names().size());
        }
    }

    private static long[] shapeOf(ModelConfig c, String name) {
        if (name.endsWith("layernorm.weight") || name.equals("model.norm.weight")) {
            return new long[] {c.hiddenSize()};
        }
        if (name.equals("model.embed_tokens.weight") || name.equals("lm_head.weight")) {
            return new long[] {c.vocabSize(), c.hiddenSize()};
        }
        for (var m : ModelInventory.of(c).layers().stream().flatMap(List::stream).toList()) {
            if (m.weight().equals(name)) {
                return new long[] {m.outFeatures(), m.inFeatures()};
            }
        }
        throw new AssertionError(name);
    }

    private static Storage roundTrip(Storage storage) {
        try {
            ByteArrayOutputStream bytes = new ByteArrayOutputStream();
            try (ObjectOutputStream out = new ObjectOutputStream(bytes)) {
                out.writeObject(storage);
            }
            try (ObjectInputStream in = new ObjectInputStream(new ByteArrayInputStream(bytes.toByteArray()))) {
                return (Storage) in.readObject();
            }
        } catch (Exception e) {
            throw new AssertionError(e);
        }
    }

    @Test
    void multipartUpload() {
        // 9 MB is above the 8 MB multipart threshold
        Storage storage = Storage.of(S3.settings());
        String dir = S3.uri("big");
        TensorSpec spec = new TensorSpec("w", DType.F32, new long[] {2304, 1024});
        ByteBuffer b = SafetensorsBytes.le((int) spec.byteSize());
        for (int i = 0; i < spec.elements(); i++) {
            b.putFloat(i % 9973);
        }
        try (ShardedSafetensorsWriter w = ShardedSafetensorsWriter.create(storage, dir, List.of(spec), 1L << 30,
                null)) {
            w.write("w", b.array());
        }
        assertTrue(storage.length(Storage.resolve(dir, TensorStore.SINGLE)) > (9L << 20) - (1 << 20));
        try (TensorStore store = TensorStore.open(storage, dir)) {
            float[] last = store.readRows("w", 2303, 2304);
            for (int i = 0; i < 1024; i++) {
                assertEquals((2303 * 1024 + i) % 9973, last[i]);
            }
        }
    }

    /** Asserts a bad-input error naming the URI, without the secret in any message of its cause chain. */
    private static void assertNamesUriWithoutSecret(Runnable action, String uri, String fragment) {
        SparkQuantException e = SafetensorsFileTest.assertMessage(action, uri, fragment);
        for (Throwable t = e; t != null; t = t.getCause()) {
            assertFalse(String.valueOf(t.getMessage()).contains(MotoS3.SECRET_KEY), "secret in: " + t);
            assertFalse(t.toString().contains(MotoS3.SECRET_KEY), "secret in: " + t);
        }
    }

    @Test
    void errorsNameTheUriAndNeverTheSecret() {
        Storage storage = Storage.of(S3.settings());
        String missing = S3.uri("no-such-model");
        assertNamesUriWithoutSecret(() -> TensorStore.open(storage, missing), missing, "no such directory");
        assertNamesUriWithoutSecret(() -> ModelConfig.load(storage, missing), missing + "/config.json",
                "no such file");
        String file = S3.uri("no-such-model/model.safetensors");
        assertNamesUriWithoutSecret(() -> SafetensorsFile.open(storage, file), file, "no such file");
        assertNamesUriWithoutSecret(() -> storage.readString(file), file, "no such file");
        // a bad object in S3 is reported like a bad local file
        String broken = S3.uri("broken/model.safetensors");
        storage.writeString(broken, "not a safetensors file");
        assertNamesUriWithoutSecret(() -> TensorStore.open(storage, S3.uri("broken")), broken, "header length");
        // a bucket that does not exist
        String nowhere = "s3a://sparkquant-no-such-bucket/model";
        SparkQuantException e = org.junit.jupiter.api.Assertions.assertThrows(SparkQuantException.class,
                () -> TensorStore.open(storage, nowhere));
        assertTrue(e.getMessage().contains(nowhere), e.getMessage());
        for (Throwable t = e; t != null; t = t.getCause()) {
            assertFalse(t.toString().contains(MotoS3.SECRET_KEY), "secret in: " + t);
        }
    }
}
