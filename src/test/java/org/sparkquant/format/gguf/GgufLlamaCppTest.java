package org.sparkquant.format.gguf;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.sparkquant.io.Storage;
import org.sparkquant.io.TensorStore;
import org.sparkquant.nn.CausalLM;
import org.sparkquant.testing.TestPaths;
import org.sparkquant.tokenizer.TextTokenizer;

/**
 * Java-written GGUF files in the real llama.cpp library (npm build 3.22.1): they load; llama.cpp tokenizes text to
 * the ids of the model's Hugging Face tokenizer; its logits of F32/F16 files match the Java forward pass of the
 * original checkpoint; and llama-quantize, run on a Java F32 export, writes exactly the bytes (and metadata) that
 * the Java exporter writes for the same file type — i.e. the RTN producer is ggml's quantizer, tensor by tensor.
 */
@Tag("slow")
class GgufLlamaCppTest {
    static final String TEXT = "The quick brown fox jumps over the lazy dog. Once upon a time, there was a little girl"
            + " named Lily.\n\nShe said: \"It's not what you think!\" and they'll never know; 1969 and 384,400 km.\n"
            + "Café, naïve, über and 東京.  Two  spaces, a\ttab and emoji 😀 at the end";

    @TempDir
    Path tmp;

    static Path export(Path model, LlamaFileType type, Path dir) {
        Path out = dir.resolve(model.getFileName() + "-" + type + ".gguf");
        try (TensorStore store = TensorStore.open(Storage.local(), model.toString())) {
            GgufExporter.forModel(Storage.local(), model.toString(), store, type, GgufRecipe.Options.DEFAULT,
                    GgufMetadata.Options.DEFAULT).write(Storage.local(), out.toString(), new RtnProducer(store));
        }
        return out;
    }

    @Test
    void generatedModelsLoadTokenizeAndComputeTheSameLogits() {
        LlamaCpp llama = LlamaCpp.require();
        for (String kind : GgufTestModels.ALL) {
            Path model = GgufTestModels.write(tmp, kind);
            checkModel(llama, model, 64);
        }
    }

    @Test
    void sharedModelsLoadTokenizeAndComputeTheSameLogits() {
        LlamaCpp llama = LlamaCpp.require();
        checkModel(llama, TestPaths.shared("models/stories260K"), 48);
        checkModel(llama, TestPaths.shared("models/dev-llama2-26m"), 48);
    }

    private void checkModel(LlamaCpp llama, Path model, int n) {
        Path f32 = export(model, LlamaFileType.F32, tmp);
        Path f16 = export(model, LlamaFileType.F16, tmp);
        Map<String, String> meta = meta(llama.meta(f32));
        int[] ids;
        int[] withBos;
        try (TextTokenizer t = TextTokenizer.load(Storage.local(), model.toString())) {
            ids = t.encodeWithoutSpecialTokens(TEXT);
            withBos = t.encode(TEXT);
            assertEquals(t.addsBos() ? "1" : "0", meta.get("add_bos"), model + " add_bos");
            if (t.bosId().isPresent()) {
                assertEquals(Integer.toString(t.bosId().getAsInt()), meta.get("bos"), model + " bos");
            }
        }
        assertArrayEquals(ids, llama.tokenize(f32, TEXT), model + ": llama.cpp tokenizes like the HF tokenizer");
        int[] seq = Arrays.copyOf(withBos, Math.min(n, withBos.length));
        float[] expected;
        int vocab;
        try (CausalLM lm = CausalLM.open(Storage.local(), model.toString())) {
            expected = lm.logits(List.of(seq)).dup().data().asFloat();
            vocab = lm.config().vocabSize();
        }
        assertEquals(Integer.toString(vocab), meta.get("n_vocab"), model + " n_vocab");
        double scale = 0;
        for (float v : expected) {
            scale = Math.max(scale, Math.abs(v));
        }
        double d32 = maxDiff(expected, llama.logits(f32, seq));
        double d16 = maxDiff(expected, llama.logits(f16, seq));
        System.out.printf("%s: max |logit| %.3f, llama.cpp F32 max diff %.2e, F16 %.2e%n", model.getFileName(), scale,
                d32, d16);
        assertTrue(d32 <= 2e-4 * Math.max(1, scale), model + ": F32 logits differ by " + d32);
        assertTrue(d16 <= 3e-2 * Math.max(1, scale), model + ": F16 logits differ by " + d16);
        assertTrue(d16 > d32, "F16 rounding must show");
    }

    @Test
    void llamaQuantizeOfAnF32ExportEqualsTheDirectExport() {
        LlamaCpp llama = LlamaCpp.require();
        Path model = GgufTestModels.write(tmp, "llama3");
        Path f32 = export(model, LlamaFileType.F32, tmp);
        for (LlamaFileType type : List.of(LlamaFileType.Q8_0, LlamaFileType.Q4_0, LlamaFileType.Q4_1,
                LlamaFileType.Q5_0, LlamaFileType.Q4_K_M, LlamaFileType.Q6_K, LlamaFileType.Q5_K_S,
                LlamaFileType.Q3_K_M, LlamaFileType.Q2_K)) {
            Path ours = export(model, type, tmp);
            Path theirs = tmp.resolve("llama-quantize-" + type + ".gguf");
            llama.run("llama-quantize", LlamaCpp.abs(f32), LlamaCpp.abs(theirs), type.name(), "2");
            assertSameFile(ours, theirs, type.name());
        }
    }

    @Test
    void devModelQuantizesLikeLlamaQuantize() {
        LlamaCpp llama = LlamaCpp.require();
        Path model = TestPaths.shared("models/dev-llama2-26m");
        Path f32 = export(model, LlamaFileType.F32, tmp);
        for (LlamaFileType type : List.of(LlamaFileType.Q4_K_M, LlamaFileType.Q6_K)) {
            Path ours = export(model, type, tmp);
            Path theirs = tmp.resolve("dev-llama-quantize-" + type + ".gguf");
            llama.run("llama-quantize", LlamaCpp.abs(f32), LlamaCpp.abs(theirs), type.name(), "2");
            assertSameFile(ours, theirs, type.name());
        }
    }

    /** Same metadata (keys, types, values) and the same tensors (names, shapes, types, bytes). */
    static void assertSameFile(Path ours, Path theirs, String what) {
        try (GgufReader a = GgufReader.open(ours); GgufReader b = GgufReader.open(theirs)) {
            assertEquals(a.metadata().keySet(), b.metadata().keySet(), what + " metadata keys");
            for (String k : a.metadata().keySet()) {
                assertEquals(a.get(k), b.get(k), what + " " + k);
            }
            assertEquals(a.tensors().stream().map(t -> t.tensor()).toList(),
                    b.tensors().stream().map(t -> t.tensor()).toList(), what + " tensors");
            for (GgufTensorInfo t : a.tensors()) {
                assertArrayEquals(a.readTensor(t.name()), b.readTensor(t.name()), what + " " + t.name());
            }
        }
    }

    static Map<String, String> meta(String out) {
        Map<String, String> m = new java.util.HashMap<>();
        for (String line : out.split("\n")) {
            String[] kv = line.trim().split(" ", 2);
            if (kv.length == 2) {
                m.put(kv[0], kv[1]);
            }
        }
        return m;
    }

    static double maxDiff(float[] a, float[] b) {
        assertEquals(a.length, b.length);
        double d = 0;
        for (int i = 0; i < a.length; i++) {
            d = Math.max(d, Math.abs(a[i] - b[i]));
        }
        return d;
    }
}
