package org.sparkquant.format.gguf;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.sparkquant.SparkQuantException;
import org.sparkquant.io.Half;
import org.sparkquant.io.Storage;
import org.sparkquant.io.TensorReader;
import org.sparkquant.io.TensorStore;

/**
 * The exporter on small generated checkpoints, checked with Java only: file order and per-tensor types, the rows
 * of every tensor (q/k permutation) read back through the GGUF reader, F32 values exact, F16/BF16 rounding as
 * {@code io.Half} rounds, Q8_0 within its rounding bound, the producer contract, and bad input.
 */
class GgufExporterTest {
    @TempDir
    static Path tmp;
    static Path llama3;
    static Path qwen2;

    @BeforeAll
    static void models() {
        llama3 = GgufTestModels.write(tmp, "llama3");
        qwen2 = GgufTestModels.write(tmp, "qwen2");
    }

    static GgufExporter exporter(Path model, TensorStore store, LlamaFileType type) {
        return GgufExporter.forModel(Storage.local(), model.toString(), store, type, GgufRecipe.Options.DEFAULT,
                GgufMetadata.Options.DEFAULT);
    }

    static Path export(Path model, LlamaFileType type) {
        Path out = tmp.resolve(model.getFileName() + "-" + type + ".gguf");
        try (TensorStore store = TensorStore.open(Storage.local(), model.toString())) {
            exporter(model, store, type).write(Storage.local(), out.toString(), new RtnProducer(store));
        }
        return out;
    }

    @Test
    void tensorsAreInLoaderOrderWithRecipeTypesAndPermutations() {
        try (TensorStore store = TensorStore.open(Storage.local(), llama3.toString())) {
            GgufExporter e = exporter(llama3, store, LlamaFileType.Q4_K_M);
            List<String> names = e.tensors().stream().map(ExportTensor::name).toList();
            List<String> sorted = new ArrayList<>(names);
            sorted.sort(GgufRecipe.LLAMA_ORDER);
            assertEquals(sorted, names);
            assertEquals(List.of("output.weight", "output_norm.weight", "rope_freqs.weight", "token_embd.weight",
                    "blk.0.attn_k.weight"), names.subList(0, 5));
            assertEquals(4 + 2 * 9, names.size()); // untied llama: no biases, no q/k norms
            ExportTensor q = e.tensor("blk.0.attn_q.weight");
            assertEquals("model.layers.0.self_attn.q_proj.weight", q.hfName());
            assertEquals(4, q.permuteHeads());
            assertEquals(2, e.tensor("blk.1.attn_k.weight").permuteHeads());
            assertEquals(0, e.tensor("blk.1.attn_v.weight").permuteHeads());
            assertEquals(64, q.rowGroup());
            // llama-quantize's Q4_K_M (docs/formats.md §3): Q6_K output, F32 norms and rope_freqs, Q4_K by default,
            // Q6_K for attn_v / ffn_down on use_more_bits layers (of 2: layer 1 only)
            assertEquals(GgmlType.Q6_K, e.tensor("output.weight").type());
            assertEquals(GgmlType.Q4_K, e.tensor("token_embd.weight").type());
            assertEquals(GgmlType.F32, e.tensor("rope_freqs.weight").type());
            assertEquals(GgmlType.F32, e.tensor("blk.0.attn_norm.weight").type());
            assertEquals(GgmlType.Q4_K, e.tensor("blk.0.attn_v.weight").type());
            assertEquals(GgmlType.Q6_K, e.tensor("blk.1.attn_v.weight").type());
            assertEquals(GgmlType.Q6_K, e.tensor("blk.1.ffn_down.weight").type());
            assertEquals(GgmlType.Q4_K, e.tensor("blk.0.ffn_up.weight").type());
            assertEquals(15, e.metadata().get("general.file_type").asLong());
            long expected = e.layout().dataStart();
            for (ExportTensor t : e.tensors()) {
                expected += GgufLayout.pad(t.bytes(), 32);
            }
            assertEquals(expected, e.layout().totalSize());
        }
    }

    @Test
    void f32ExportReadsBackExactlyUnderHuggingFaceNames() throws IOException {
        for (Path model : List.of(llama3, qwen2)) {
            Path f = export(model, LlamaFileType.F32);
            assertEquals(Files.size(f), GgufReader.open(f).fileSize());
            try (TensorStore store = TensorStore.open(Storage.local(), model.toString());
                    GgufModel g = GgufModel.open(Storage.local(), f.toString())) {
                TensorReader view = g.tensors();
                for (String name : view.names()) {
                    assertArrayEquals(store.shape(name), view.shape(name), name);
                    assertArrayEquals(store.readFloats(name), view.readFloats(name), name);
                }
                assertEquals(store.names().stream().filter(n -> !n.equals("lm_head.weight")
                        || !g.config().tieWordEmbeddings()).toList(), List.copyOf(view.names()));
                // some rows of a permuted tensor, read alone
                String k = "model.layers.1.self_attn.k_proj.weight";
                float[] all = store.readFloats(k);
                float[] rows = view.readRows(k, 37, 101);
                assertArrayEquals(java.util.Arrays.copyOfRange(all, 37 * 256, 101 * 256), rows);
                // the file itself holds llama's rotary layout: GGUF row 2i+s of a head is HF row s·32+i
                if (model == llama3) {
                    float[] raw = g.reader().readFloats("blk.1.attn_k.weight");
                    assertArrayEquals(java.util.Arrays.copyOfRange(all, 32 * 256, 33 * 256),
                            java.util.Arrays.copyOfRange(raw, 256, 512), "GGUF row 1 is HF row 32");
                }
            }
        }
    }

    @Test
    void halfPrecisionExportsRoundEachWeight() {
        for (LlamaFileType type : List.of(LlamaFileType.F16, LlamaFileType.BF16)) {
            Path f = export(qwen2, type);
            try (TensorStore store = TensorStore.open(Storage.local(), qwen2.toString());
                    GgufModel g = GgufModel.open(Storage.local(), f.toString())) {
                String w = "model.layers.0.mlp.down_proj.weight";
                float[] x = store.readFloats(w);
                float[] y = g.tensors().readFloats(w);
                for (int i = 0; i < x.length; i++) {
                    float r = type == LlamaFileType.F16 ? Half.toFloat(Half.fromFloat(x[i]))
                            : Half.bf16ToFloat(Half.floatToBf16(x[i]));
                    assertEquals(r, y[i], 0f, w + "[" + i + "]");
                }
                String norm = "model.layers.0.input_layernorm.weight";
                assertArrayEquals(store.readFloats(norm), g.tensors().readFloats(norm), "norms stay F32");
                assertEquals(type == LlamaFileType.F16 ? GgmlType.F16 : GgmlType.BF16,
                        g.reader().tensor("blk.0.ffn_down.weight").type());
            }
        }
    }

    @Test
    void q8ZeroIsWithinHalfAStepOfEachWeight() {
        Path f = export(llama3, LlamaFileType.Q8_0);
        try (TensorStore store = TensorStore.open(Storage.local(), llama3.toString());
                GgufModel g = GgufModel.open(Storage.local(), f.toString())) {
            for (String w : List.of("model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.up_proj.weight")) {
                float[] x = store.readFloats(w);
                float[] y = g.tensors().readFloats(w);
                for (int b = 0; b < x.length; b += 32) {
                    float amax = 0;
                    for (int i = b; i < b + 32; i++) {
                        amax = Math.max(amax, Math.abs(x[i]));
                    }
                    float step = amax / 127;
                    // half a step, plus the fp16 rounding of the scale (relative 2^-11) times the largest code
                    float bound = step * 0.5f + step * 127 / 2048f + 1e-7f;
                    for (int i = b; i < b + 32; i++) {
                        assertTrue(Math.abs(x[i] - y[i]) <= bound, w + "[" + i + "]");
                    }
                }
            }
            assertEquals(GgmlType.Q8_0, g.reader().tensor("blk.0.attn_q.weight").type());
            assertEquals(GgmlType.Q8_0, g.reader().tensor("output.weight").type(), "Q8_0 files keep Q8_0 output");
        }
    }

    @Test
    void producersAreAskedForEachTensorInFileOrder() throws IOException {
        try (TensorStore store = TensorStore.open(Storage.local(), qwen2.toString())) {
            GgufExporter e = exporter(qwen2, store, LlamaFileType.Q4_0);
            RtnProducer rtn = new RtnProducer(store);
            List<String> asked = new ArrayList<>();
            ByteArrayOutputStream viaRows = new ByteArrayOutputStream();
            // a producer that works row by row (as a distributed one would deliver row blocks)
            e.write(viaRows, (t, out) -> {
                asked.add(t.name());
                if (t.tensor().nDims() < 2) {
                    rtn.produce(t, out);
                    return;
                }
                for (int r = 0; r < t.rows(); r++) {
                    float[] row = store.readRows(t.hfName(), t.sourceRow(r), t.sourceRow(r) + 1);
                    out.write(RtnProducer.quantize(t, row, 1, null));
                }
            });
            assertEquals(e.tensors().stream().map(ExportTensor::name).toList(), asked);
            ByteArrayOutputStream direct = new ByteArrayOutputStream();
            e.write(direct, rtn);
            assertArrayEquals(direct.toByteArray(), viaRows.toByteArray());
            assertEquals(e.layout().totalSize(), direct.size());

            ByteArrayOutputStream partial = new ByteArrayOutputStream();
            IllegalStateException short1 = assertThrows(IllegalStateException.class, () -> e.write(partial,
                    (t, out) -> out.write(new byte[(int) t.bytes() - 1])));
            assertTrue(short1.getMessage().contains("token_embd.weight") || short1.getMessage().contains("short"),
                    short1.getMessage());
        }
    }

    @Test
    void failedExportsLeaveNoFile() {
        Path out = tmp.resolve("failed.gguf");
        try (TensorStore store = TensorStore.open(Storage.local(), qwen2.toString())) {
            GgufExporter e = exporter(qwen2, store, LlamaFileType.Q8_0);
            assertThrows(IllegalStateException.class, () -> e.write(Storage.local(), out.toString(), (t, o) -> {
                throw new IllegalStateException("producer failed");
            }));
        }
        assertFalse(Files.exists(out));
    }

    @Test
    void nonFiniteWeightsAndMissingTensorsAreNamed() throws IOException {
        Path broken = tmp.resolve("broken");
        Files.createDirectories(broken);
        for (String f : List.of("config.json", "tokenizer.json", "tokenizer_config.json")) {
            Files.copy(qwen2.resolve(f), broken.resolve(f));
        }
        // the same checkpoint with one NaN in a weight
        byte[] st = Files.readAllBytes(qwen2.resolve("model.safetensors"));
        try (TensorStore store = TensorStore.open(Storage.local(), qwen2.toString())) {
            long begin = store.info("model.layers.1.mlp.gate_proj.weight").begin();
            ByteBuffer.wrap(st).order(ByteOrder.LITTLE_ENDIAN).putFloat((int) begin + 4 * 300, Float.NaN);
        }
        Files.write(broken.resolve("model.safetensors"), st);
        try (TensorStore store = TensorStore.open(Storage.local(), broken.toString())) {
            GgufExporter e = exporter(broken, store, LlamaFileType.Q4_K_M);
            SparkQuantException ex = assertThrows(SparkQuantException.class,
                    () -> e.write(new ByteArrayOutputStream(), new RtnProducer(store)));
            assertTrue(ex.getMessage().contains("model.layers.1.mlp.gate_proj.weight")
                    && ex.getMessage().contains("non-finite"), ex.getMessage());
        }
        // a config that wants a tensor the checkpoint lacks
        Files.writeString(broken.resolve("config.json"), Files.readString(qwen2.resolve("config.json"))
                .replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3"));
        try (TensorStore store = TensorStore.open(Storage.local(), broken.toString())) {
            SparkQuantException ex = assertThrows(SparkQuantException.class,
                    () -> exporter(broken, store, LlamaFileType.F16));
            assertTrue(ex.getMessage().contains("model.layers.2."), ex.getMessage());
        }
    }

    @Test
    void metadataFollowsTheConfigAndTokenizerFiles() {
        try (TensorStore store = TensorStore.open(Storage.local(), llama3.toString())) {
            Map<String, GgufValue> md = exporter(llama3, store, LlamaFileType.Q6_K).metadata();
            assertEquals("llama", md.get("general.architecture").asString());
            assertEquals("model", md.get("general.type").asString());
            assertEquals("Llama3", md.get("general.name").asString());
            assertEquals(18, md.get("general.file_type").asLong());
            assertEquals(2, md.get("general.quantization_version").asLong());
            assertEquals(32, md.get("general.alignment").asLong());
            // config.json: 2 layers, 1024 positions, hidden 256, ffn 512, 4/2 heads of 64, eps 1e-6, theta 5e5
            assertEquals(List.of(2L, 1024L, 256L, 512L, 4L, 2L, 64L, 64L, 448L, 64L), List.of(
                    md.get("llama.block_count").asLong(), md.get("llama.context_length").asLong(),
                    md.get("llama.embedding_length").asLong(), md.get("llama.feed_forward_length").asLong(),
                    md.get("llama.attention.head_count").asLong(), md.get("llama.attention.head_count_kv").asLong(),
                    md.get("llama.attention.key_length").asLong(), md.get("llama.attention.value_length").asLong(),
                    md.get("llama.vocab_size").asLong(), md.get("llama.rope.dimension_count").asLong()));
            assertEquals(GgufValue.f32(1e-6f), md.get("llama.attention.layer_norm_rms_epsilon"));
            assertEquals(GgufValue.f32(500000f), md.get("llama.rope.freq_base"));
            // generation_config.json: top_k 40, top_p 0.9, temperature 0.6
            assertEquals(GgufValue.i32(40), md.get("general.sampling.top_k"));
            assertEquals(GgufValue.f32(0.9f), md.get("general.sampling.top_p"));
            assertEquals(GgufValue.f32(0.6f), md.get("general.sampling.temp"));
            assertEquals("gpt2", md.get("tokenizer.ggml.model").asString());
            assertEquals("llama-bpe", md.get("tokenizer.ggml.pre").asString());
            assertEquals(448, md.get("tokenizer.ggml.tokens").arrayLength());
            assertEquals(0, md.get("tokenizer.ggml.bos_token_id").asLong());
            assertEquals(1, md.get("tokenizer.ggml.eos_token_id").asLong());
            assertTrue(md.get("tokenizer.ggml.add_bos_token").asBoolean());
        }
        try (TensorStore store = TensorStore.open(Storage.local(), qwen2.toString())) {
            Map<String, GgufValue> md = exporter(qwen2, store, LlamaFileType.F16).metadata();
            assertEquals("qwen2", md.get("general.architecture").asString());
            assertNull(md.get("qwen2.attention.key_length"), "qwen2's config has no head_dim");
            assertNull(md.get("qwen2.vocab_size"), "only llama writes vocab_size");
            assertNull(md.get("qwen2.rope.dimension_count"));
            assertEquals(GgufValue.f32(1e6f), md.get("qwen2.rope.freq_base"));
            assertFalse(md.get("tokenizer.ggml.add_bos_token").asBoolean());
        }
    }

    @Test
    void llama3RopeFrequencyFactorsCoverAllThreeRegions() {
        try (TensorStore store = TensorStore.open(Storage.local(), llama3.toString())) {
            GgufExporter e = exporter(llama3, store, LlamaFileType.F32);
            float[] f = e.tensor("rope_freqs.weight").generated();
            assertNotNull(f);
            assertEquals(32, f.length);
            assertEquals(1f, f[0]);
            assertEquals(8f, f[31]);
            boolean between = false;
            for (int i = 1; i < f.length; i++) {
                assertTrue(f[i] >= f[i - 1], "non-decreasing");
                between |= f[i] > 1f && f[i] < 8f;
            }
            assertTrue(between, "some frequencies are smoothly interpolated");
            Map<String, GgufValue> md = e.metadata();
            assertNull(md.get("llama.rope.scaling.type"), "llama3 scaling is the tensor, not metadata");
        }
    }
}
