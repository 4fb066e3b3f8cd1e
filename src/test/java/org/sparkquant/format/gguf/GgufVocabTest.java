package org.sparkquant.format.gguf;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.sparkquant.SparkQuantException;
import org.sparkquant.io.Storage;
import org.sparkquant.testing.TestPaths;
import org.sparkquant.testing.TestPython;
import org.sparkquant.tokenizer.TextTokenizer;

/**
 * The tokenizer metadata on the tokenizer fixtures: token lists, types, scores, merges, special ids and flags per
 * kind of tokenizer, pre-tokenizer detection (structure and the converter's hash), SentencePiece model parsing, and
 * the tokenizer rebuilt from a GGUF vocabulary tokenizing every fixture text like the original tokenizer.json.
 */
class GgufVocabTest {
    static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    Path tmp;

    static Path fixture(String name) {
        return TestPaths.fixtures("tokenizer").resolve(name);
    }

    static GgufVocab load(Path dir, String arch, int vocab) {
        return GgufVocab.load(Storage.local(), dir.toString(), arch, vocab, GgufVocab.Options.DEFAULT);
    }

    @Test
    void sentencePieceStyleBpeScoresFollowTheMergeRanks() throws IOException {
        Path dir = fixture("sentencepiece");
        GgufVocab v = load(dir, "llama", 560);
        JsonNode tj = JSON.readTree(dir.resolve("tokenizer.json").toFile());
        Map<String, Integer> vocab = GgufVocab.modelVocab(tj, "t");
        assertEquals("llama-hf", v.kind());
        assertEquals("llama", v.model());
        assertEquals("default", v.pre());
        assertEquals(560, v.tokens().size());
        assertEquals("[PAD559]", v.tokens().get(559), "padded to config's vocab_size");
        assertEquals(GgufVocab.UNUSED, v.types()[559]);
        List<String[]> merges = GgufVocab.mergePairs(tj, "t");
        Map<String, Integer> firstMerge = new HashMap<>();
        for (int r = merges.size() - 1; r >= 0; r--) {
            firstMerge.put(merges.get(r)[0] + merges.get(r)[1], r);
        }
        float[] scores = v.scores();
        int[] types = v.types();
        for (Map.Entry<String, Integer> e : vocab.entrySet()) {
            int id = e.getValue();
            assertEquals(e.getKey(), v.tokens().get(id));
            Integer r = firstMerge.get(e.getKey());
            assertEquals(r == null ? -1000f : -(r + 1f), scores[id], e.getKey());
            int expected = e.getKey().matches("<0x[0-9A-F]{2}>") ? GgufVocab.BYTE
                    : List.of("<unk>", "<s>", "</s>").contains(e.getKey()) ? GgufVocab.CONTROL : GgufVocab.NORMAL;
            assertEquals(expected, types[id], e.getKey());
        }
        assertEquals(Map.of("bos", 1, "eos", 2, "unk", 0), v.specialIds());
        assertEquals(Boolean.TRUE, v.addSpecial().get("bos"));
        assertEquals(Boolean.FALSE, v.addSpecial().get("eos"));
        assertNull(v.merges());
    }

    @Test
    void byteLevelBpeHasMergesControlTokensAndTheLlama3PreTokenizer() throws IOException {
        Path dir = fixture("bytelevel");
        GgufVocab v = load(dir, "llama", 420);
        JsonNode tj = JSON.readTree(dir.resolve("tokenizer.json").toFile());
        assertEquals("gpt2", v.kind());
        assertEquals("llama-bpe", v.pre(), "a Split on Llama 3's regex");
        assertNull(v.scores());
        assertEquals(tj.path("model").path("merges").size(), v.merges().size());
        String first = tj.path("model").path("merges").get(0).isArray()
                ? tj.path("model").path("merges").get(0).get(0).asText() + " "
                + tj.path("model").path("merges").get(0).get(1).asText()
                : tj.path("model").path("merges").get(0).asText();
        assertEquals(first, v.merges().get(0));
        assertEquals(GgufVocab.CONTROL, v.types()[0]);
        assertEquals("<|begin_of_text|>", v.tokens().get(0));
        assertEquals(GgufVocab.NORMAL, v.types()[100]);
        assertEquals(Map.of("bos", 0, "eos", 1), v.specialIds());
        assertEquals(Boolean.TRUE, v.addSpecial().get("bos"), "BOS from the post-processor template");
        Map<String, GgufValue> md = v.metadata();
        assertEquals(GgufValueType.INT32, md.get("tokenizer.ggml.token_type").elementType());
        assertEquals(GgufValueType.UINT32, md.get("tokenizer.ggml.bos_token_id").type());
        assertFalse(md.containsKey("tokenizer.ggml.scores"));

        GgufVocab noBos = load(fixture("bytelevel-nobos"), "qwen2", 0);
        assertEquals(420, noBos.tokens().size(), "vocab_size 0: the tokenizer's own size");
        assertEquals(Boolean.FALSE, noBos.addSpecial().get("bos"));
        assertEquals(Map.of("eos", 1), noBos.specialIds());
    }

    @Test
    void preTokenizerIsDetectedFromTheSplitRule() throws IOException {
        assertEquals("qwen2", detectWith(GgufPreTokenizer.QWEN2_REGEX));
        ObjectNode t = (ObjectNode) JSON.readTree(fixture("bytelevel").resolve("tokenizer.json").toFile());
        ObjectNode byteLevel = JSON.createObjectNode().put("type", "ByteLevel").put("add_prefix_space", false)
                .put("trim_offsets", true).put("use_regex", true);
        t.set("pre_tokenizer", byteLevel);
        assertEquals("gpt-2", GgufPreTokenizer.fromPreTokenizer(t.get("pre_tokenizer")));
        SparkQuantException e = assertThrows(SparkQuantException.class, () -> detectWith("\\p{L}+|\\p{N}+"));
        assertTrue(e.getMessage().contains("pre-tokenizer option") && e.getMessage().contains("tokenizer.json"),
                e.getMessage());
        Path dir = withRegex("\\p{L}+|\\p{N}+");
        GgufVocab forced = GgufVocab.load(Storage.local(), dir.toString(), "qwen2", 0, new GgufVocab.Options("qwen2"));
        assertEquals("qwen2", forced.pre());
    }

    private String detectWith(String regex) throws IOException {
        return load(withRegex(regex), "qwen2", 0).pre();
    }

    private Path withRegex(String regex) throws IOException {
        Path dir = Files.createTempDirectory(tmp, "tok");
        ObjectNode t = (ObjectNode) JSON.readTree(fixture("bytelevel").resolve("tokenizer.json").toFile());
        ((ObjectNode) t.get("pre_tokenizer").get("pretokenizers").get(0).get("pattern")).put("Regex", regex);
        JSON.writeValue(dir.resolve("tokenizer.json").toFile(), t);
        Files.copy(fixture("bytelevel").resolve("tokenizer_config.json"), dir.resolve("tokenizer_config.json"));
        return dir;
    }

    @Test
    void checkHashIsTheConvertersForTheSameTokenizer() throws IOException {
        Path python = TestPython.require("transformers");
        Path src = Path.of(System.getenv().getOrDefault("LLAMA_CPP_SRC", "/tmp/llamacpp-src"));
        org.junit.jupiter.api.Assumptions.assumeTrue(Files.exists(src.resolve("conversion/base.py")),
                "no llama.cpp source at " + src);
        Path dir = fixture("bytelevel");
        String script = String.join("\n",
                "import ast, hashlib, sys",
                "src = open(sys.argv[1] + '/conversion/base.py', encoding='utf-8').read()",
                "line = next(l for l in src.splitlines() if l.strip().startswith('chktxt = '))",
                "chktxt = ast.literal_eval(line.split('=', 1)[1].strip())",
                "from transformers import AutoTokenizer",
                "t = AutoTokenizer.from_pretrained(sys.argv[2])",
                "print(hashlib.sha256(chktxt.encode()).hexdigest())",
                "print(hashlib.sha256(str(t.encode(chktxt)).encode()).hexdigest())");
        String[] out = TestPython.check(python, List.of("-c", script, src.toString(), dir.toString()), 300)
                .strip().split("\n");
        assertEquals(out[0], GgufPreTokenizer.sha256(GgufPreTokenizer.CHECK_TEXT), "the converter's check text");
        assertEquals(out[1], GgufPreTokenizer.checkHash(Files.readAllBytes(dir.resolve("tokenizer.json")), "t"),
                "the converter's hash of the tokenizer's ids");
    }

    @Test
    void sentencePieceModelsAreParsed() {
        // ModelProto{pieces: [{"<unk>", 0, UNKNOWN}, {"▁a", -1.5}], field 2 (trainer spec) skipped}
        byte[] unk = piece("<unk>", 0f, SentencePieceModel.UNKNOWN);
        byte[] a = piece("\u2581a", -1.5f, -1);
        ByteArrayOutputStream m = new ByteArrayOutputStream();
        m.write(0x0a);
        m.write(unk.length);
        m.writeBytes(unk);
        m.writeBytes(new byte[] {0x12, 0x02, 0x08, 0x01}); // trainer_spec { 1: 1 }
        m.write(0x0a);
        m.write(a.length);
        m.writeBytes(a);
        SentencePieceModel sp = SentencePieceModel.parse(m.toByteArray(), "x.model");
        assertEquals(List.of(new SentencePieceModel.Piece("<unk>", 0f, SentencePieceModel.UNKNOWN),
                new SentencePieceModel.Piece("\u2581a", -1.5f, SentencePieceModel.NORMAL)), sp.pieces());
        byte[] cut = java.util.Arrays.copyOf(m.toByteArray(), m.size() - 3);
        SparkQuantException e = assertThrows(SparkQuantException.class, () -> SentencePieceModel.parse(cut, "x.model"));
        assertTrue(e.getMessage().startsWith("x.model: "), e.getMessage());

        Path stories = TestPaths.shared("models/stories260K");
        GgufVocab v = load(stories, "llama", 512);
        assertEquals("sentencepiece", v.kind());
        assertEquals(512, v.tokens().size());
        assertEquals(GgufVocab.UNKNOWN, v.types()[0]);
        assertEquals(GgufVocab.CONTROL, v.types()[1]);
        assertEquals(GgufVocab.BYTE, v.types()[3]);
        assertEquals("<0x00>", v.tokens().get(3));
    }

    private static byte[] piece(String text, float score, int type) {
        ByteArrayOutputStream p = new ByteArrayOutputStream();
        byte[] t = text.getBytes(StandardCharsets.UTF_8);
        p.write(0x0a);
        p.write(t.length);
        p.writeBytes(t);
        p.write(0x15);
        int bits = Float.floatToIntBits(score);
        for (int i = 0; i < 4; i++) {
            p.write(bits >>> (8 * i));
        }
        if (type > 0) {
            p.write(0x18);
            p.write(type);
        }
        p.writeBytes(new byte[] {0x20, 0x07}); // an unknown varint field
        return p.toByteArray();
    }

    @Test
    void specialLookingTokensAndNames() {
        assertTrue(GgufVocab.looksSpecial("<|im_start|>"));
        assertTrue(GgufVocab.looksSpecial("<pad>"));
        assertTrue(GgufVocab.looksSpecial("<unused12>"));
        assertFalse(GgufVocab.looksSpecial("<s>"));
        assertEquals("Dev Llama2 26m", GgufMetadata.title("dev-llama2-26m"));
        assertEquals("Qwen2.5 0.5B Instruct", GgufMetadata.title("Qwen2.5-0.5B-Instruct"));
        assertEquals("Llama 3.1 8b", GgufMetadata.title("llama-3.1-8b"));
        assertEquals("Tiny_Llama v2", GgufMetadata.title("tiny_llama-v2")); // values from gguf-py's id_to_title
        SparkQuantException e = assertThrows(SparkQuantException.class, () -> load(tmp, "llama", 10));
        assertTrue(e.getMessage().contains("tokenizer.json: no such file"), e.getMessage());
    }

    @Test
    void rebuiltTokenizersTokenizeLikeTheOriginals() throws IOException {
        JsonNode cases = JSON.readTree(TestPaths.fixtures("tokenizer").resolve("cases.json").toFile());
        List<String> texts = new ArrayList<>();
        cases.get("texts").forEach(t -> texts.add(t.asText()));
        for (String name : List.of("bytelevel", "bytelevel-nobos", "sentencepiece")) {
            Path dir = fixture(name);
            GgufVocab v = load(dir, name.equals("sentencepiece") ? "llama" : "qwen2", 0);
            Map<String, GgufValue> md = new LinkedHashMap<>();
            md.put("general.architecture", GgufValue.string("llama"));
            md.putAll(v.metadata());
            ByteArrayOutputStream file = new ByteArrayOutputStream();
            GgufWriter.create(file, md, List.of()).close();
            try (GgufReader r = GgufReader.open(GgufSource.of(file.toByteArray()), name + ".gguf");
                    TextTokenizer rebuilt = GgufTokenizerJson.of(r).open(null);
                    TextTokenizer original = TextTokenizer.load(Storage.local(), dir.toString())) {
                assertEquals(original.addsBos(), rebuilt.addsBos(), name);
                for (String text : texts) {
                    assertArrayEquals(original.encode(text), rebuilt.encode(text), name + ": " + text);
                }
            }
        }
    }

    @Test
    void sentencePieceMergesRankByTheMergedScore() {
        List<String> tokens = List.of("<unk>", "a", "b", "c", "ab", "bc", "abc");
        int[] types = {GgufVocab.UNKNOWN, 1, 1, 1, 1, 1, 1};
        float[] scores = {0, 0, 0, 0, -2, -1, -3};
        List<String> merges = GgufTokenizerJson.spmMerges(tokens, types, scores).stream()
                .map(p -> p[0] + " " + p[1]).toList();
        assertEquals(List.of("b c", "a b", "a bc", "ab c"), merges);
    }
}
