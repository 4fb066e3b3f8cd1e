package org.sparkquant.format.gguf;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.sparkquant.io.Storage;
import org.sparkquant.io.TensorStore;
import org.sparkquant.testing.TestPaths;
import org.sparkquant.testing.TestPython;

/**
 * The strongest check of the metadata and tensor layout: llama.cpp's own convert_hf_to_gguf.py (of the source the
 * npm 3.22.1 build was made from, run by python/gguf_convert_check.py) converts the same model directory, and every
 * metadata key, type and value and every tensor (name, type, shape, bytes) must be the same, except
 * <ul>
 *   <li>the converter's naming heuristics general.basename / size_label, which sparkquant does not write, and
 *       general.alignment, which sparkquant writes explicitly, as it does tokenizer.ggml.add_bos_token = false
 *       when no tokenizer file asks for BOS (the converter leaves llama.cpp to guess);</li>
 *   <li>tokenizer.ggml.scores of SentencePiece-style BPE tokenizers read from tokenizer.json (the converter writes
 *       −1000 for every token, which breaks llama.cpp's merge order; see {@link GgufVocab}).</li>
 * </ul>
 * Skipped without python (torch, transformers, sentencepiece, gguf) or the llama.cpp source (LLAMA_CPP_SRC).
 */
@Tag("slow")
class GgufConverterParityTest {
    static final Set<String> CONVERTER_ONLY = Set.of("general.basename", "general.size_label", "general.finetune",
            "general.version");

    @TempDir
    Path tmp;

    static Path requireConverter() {
        Path src = Path.of(System.getenv().getOrDefault("LLAMA_CPP_SRC", "/tmp/llamacpp-src"));
        assumeTrue(Files.exists(src.resolve("convert_hf_to_gguf.py")),
                "no llama.cpp source at " + src + " (python python/gguf_llama.py setup-source)");
        return TestPython.require("torch", "transformers", "sentencepiece", "numpy");
    }

    @Test
    void generatedModelsConvertLikeTheConverter() throws IOException {
        Path python = requireConverter();
        for (String kind : GgufTestModels.ALL) {
            Path model = GgufTestModels.write(tmp, kind);
            check(python, model, LlamaFileType.F32);
        }
        check(python, tmp.resolve("qwen3"), LlamaFileType.F16);
        check(python, tmp.resolve("llama3"), LlamaFileType.BF16);
        check(python, tmp.resolve("llama-bias"), LlamaFileType.Q8_0);
    }

    @Test
    void sharedModelsConvertLikeTheConverter() throws IOException {
        Path python = requireConverter();
        check(python, TestPaths.shared("models/stories260K"), LlamaFileType.F32);
        check(python, TestPaths.shared("models/dev-llama2-26m"), LlamaFileType.F16);
    }

    private void check(Path python, Path model, LlamaFileType type) throws IOException {
        check(python, model, type, tmp, null);
    }

    /**
     * Exports {@code model} as {@code type} into {@code tmp}, converts it with the converter (keeping its file at
     * {@code keep} when not null) and asserts they are the same; returns the export.
     */
    static Path check(Path python, Path model, LlamaFileType type, Path tmp, Path keep) throws IOException {
        Path out = tmp.resolve(model.getFileName() + "-" + type + ".gguf");
        String pre;
        String kind;
        try (TensorStore store = TensorStore.open(Storage.local(), model.toString())) {
            GgufExporter e = GgufExporter.forModel(Storage.local(), model.toString(), store, type,
                    GgufRecipe.Options.DEFAULT, GgufMetadata.Options.DEFAULT);
            e.write(Storage.local(), out.toString(), new RtnProducer(store));
            pre = e.metadata().get("tokenizer.ggml.pre").asString();
            kind = GgufVocab.load(Storage.local(), model.toString(),
                    e.metadata().get("general.architecture").asString(), e.config().vocabSize(),
                    GgufVocab.Options.DEFAULT).kind();
        }
        Path report = tmp.resolve("report.json");
        List<String> args = new ArrayList<>(List.of("python/gguf_convert_check.py", model.toString(), out.toString(),
                type.name().toLowerCase(java.util.Locale.ROOT), pre, report.toString()));
        if (keep != null) {
            args.add(keep.toString());
        }
        TestPython.check(python, args, 600);
        JsonNode r = new ObjectMapper().readTree(report.toFile());
        String what = model.getFileName() + " " + type + ": " + r;
        for (JsonNode k : r.get("only_converter")) {
            assertTrue(CONVERTER_ONLY.contains(k.asText()), what);
        }
        List<String> onlyJava = strings(r.get("only_java"));
        assertTrue(onlyJava.contains("general.alignment"), what);
        try (GgufReader g = GgufReader.open(out)) {
            for (String k : onlyJava) {
                assertTrue(k.equals("general.alignment") || (k.equals("tokenizer.ggml.add_bos_token")
                        && !g.get(k).asBoolean()), what);
            }
        }
        List<String> differing = new ArrayList<>();
        r.get("differing").fieldNames().forEachRemaining(differing::add);
        assertEquals(kind.equals("llama-hf") ? List.of("tokenizer.ggml.scores") : List.of(), differing, what);
        assertEquals(r.get("tensors").get("converter"), r.get("tensors").get("java"), what);
        assertEquals(0, r.get("data_differs").size(), what);
        return out;
    }

    private static List<String> strings(JsonNode a) {
        List<String> out = new ArrayList<>();
        a.forEach(n -> out.add(n.asText()));
        return out;
    }
}
