package org.sparkquant.tokenizer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.OptionalInt;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.sparkquant.SparkQuantException;
import org.sparkquant.io.Storage;
import org.sparkquant.model.ModelConfig;
import org.sparkquant.testing.TestPaths;
import org.sparkquant.testing.TestPython;

/** Ids against the python `tokenizers` library (python/tokenizer_golden.py) and the BOS policy. */
class TextTokenizerTest {
    private static final Path FIXTURES = TestPaths.fixtures("tokenizer");

    private static JsonNode cases() throws IOException {
        return new ObjectMapper().readTree(Files.readString(FIXTURES.resolve("cases.json")));
    }

    private static int[] ints(JsonNode array) {
        int[] out = new int[array.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = array.get(i).intValue();
        }
        return out;
    }

    private static TextTokenizer load(String name, Boolean addBos) {
        return TextTokenizer.load(Storage.local(), FIXTURES.resolve(name).toString(), addBos);
    }

    @ParameterizedTest
    @ValueSource(strings = {"bytelevel", "bytelevel-nobos", "sentencepiece"})
    void idsMatchPythonTokenizers(String name) throws IOException {
        JsonNode cases = cases();
        JsonNode expected = cases.get("tokenizers").get(name);
        try (TextTokenizer tok = load(name, null)) {
            assertEquals(expected.get("vocab_size").intValue(), tok.idSpace());
            JsonNode texts = cases.get("texts");
            for (int i = 0; i < texts.size(); i++) {
                String text = texts.get(i).textValue();
                JsonNode c = expected.get("cases").get(i);
                assertArrayEquals(ints(c.get("ids")), tok.encodeWithoutSpecialTokens(text), name + ": " + text);
                assertArrayEquals(ints(c.get("with_bos")), tok.encode(text), name + " with BOS policy: " + text);
                assertEquals(c.get("decoded").textValue(), tok.decode(ints(c.get("ids"))), name + " decode: " + text);
                if (name.startsWith("bytelevel")) {
                    // transformers loads byte-level tokenizer.json files as they are: same ids
                    assertArrayEquals(ints(c.get("transformers")), tok.encode(text), name + " transformers: " + text);
                }
            }
        }
    }

    @Test
    void bosPolicyComesFromConfigThenTemplateAndCanBeOverridden() {
        try (TextTokenizer llama2 = load("sentencepiece", null);
                TextTokenizer llama3 = load("bytelevel", null);
                TextTokenizer qwen = load("bytelevel-nobos", null)) {
            assertTrue(llama2.addsBos(), "add_bos_token in tokenizer_config.json");
            assertEquals(OptionalInt.of(1), llama2.bosId());
            assertTrue(llama3.addsBos(), "post-processor template starting with <|begin_of_text|>");
            assertEquals(OptionalInt.of(0), llama3.bosId());
            assertFalse(qwen.addsBos());
            assertEquals(OptionalInt.empty(), qwen.bosId());
        }
        try (TextTokenizer noBos = load("sentencepiece", false); TextTokenizer bos = load("bytelevel", true)) {
            assertFalse(noBos.addsBos());
            assertArrayEquals(noBos.encodeWithoutSpecialTokens("Hello world"), noBos.encode("Hello world"));
            assertEquals(0, bos.encode("Hello world")[0]);
        }
        SparkQuantException e = assertThrows(SparkQuantException.class, () -> load("bytelevel-nobos", true));
        assertEquals(SparkQuantException.Kind.BAD_INPUT, e.kind());
        assertTrue(e.getMessage().contains("tokenizer.json") && e.getMessage().contains("BOS"), e.getMessage());
    }

    @Test
    void vocabularyLargerThanTheModelIsACleanError() {
        String config = "{\"model_type\":\"llama\",\"hidden_size\":64,\"intermediate_size\":128,"
                + "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"vocab_size\":%d}";
        try (TextTokenizer tok = load("sentencepiece", null)) {
            tok.checkCompatible(ModelConfig.parse(String.format(config, 556), "config.json"));
            tok.checkCompatible(ModelConfig.parse(String.format(config, 600), "config.json"));
            SparkQuantException e = assertThrows(SparkQuantException.class,
                    () -> tok.checkCompatible(ModelConfig.parse(String.format(config, 555), "config.json")));
            assertEquals(SparkQuantException.Kind.BAD_INPUT, e.kind());
            assertEquals(1, e.getMessage().lines().count());
            assertTrue(e.getMessage().contains("id 555") && e.getMessage().contains("vocab_size is 555"),
                    e.getMessage());
        }
    }

    @Test
    void missingOrMalformedTokenizerIsACleanError(@TempDir Path dir) throws IOException {
        SparkQuantException missing = assertThrows(SparkQuantException.class,
                () -> TextTokenizer.load(Storage.local(), dir.toString()));
        assertEquals(SparkQuantException.Kind.BAD_INPUT, missing.kind());
        assertTrue(missing.getMessage().contains("tokenizer.json: no such file"), missing.getMessage());

        Files.writeString(dir.resolve("tokenizer.json"), "{\"model\": {\"type\": \"BPE\", ");
        SparkQuantException truncated = assertThrows(SparkQuantException.class,
                () -> TextTokenizer.load(Storage.local(), dir.toString()));
        assertTrue(truncated.getMessage().contains("not valid JSON"), truncated.getMessage());

        Files.writeString(dir.resolve("tokenizer.json"), "{\"version\": \"1.0\"}");
        SparkQuantException notTokenizer = assertThrows(SparkQuantException.class,
                () -> TextTokenizer.load(Storage.local(), dir.toString()));
        assertTrue(notTokenizer.getMessage().contains("not a Hugging Face tokenizer"), notTokenizer.getMessage());

        Files.writeString(dir.resolve("tokenizer.json"), "{\"model\": {\"type\": \"Nonsense\"}}");
        SparkQuantException unloadable = assertThrows(SparkQuantException.class,
                () -> TextTokenizer.load(Storage.local(), dir.toString()));
        assertTrue(unloadable.getMessage().contains("cannot load the tokenizer"), unloadable.getMessage());
        assertEquals(1, unloadable.getMessage().lines().count());
    }

    /** The real Llama 2 tokenizers of ../shared against the python library, run live. */
    @ParameterizedTest
    @ValueSource(strings = {"models/dev-llama2-26m", "models/stories260K"})
    void sharedTokenizersMatchPythonLive(String model, @TempDir Path tmp) throws IOException {
        Path dir = TestPaths.shared(model);
        Path python = TestPython.require("tokenizers");
        JsonNode texts = cases().get("texts");
        Path input = tmp.resolve("texts.json");
        Files.writeString(input, texts.toString());
        String script = "import json,sys\nfrom tokenizers import Tokenizer\n"
                + "t=Tokenizer.from_file(sys.argv[1])\n"
                + "texts=json.load(open(sys.argv[2]))\n"
                + "print(json.dumps([t.encode(s, add_special_tokens=False).ids for s in texts]))";
        String out = TestPython.check(python, List.of("-c", script, dir.resolve("tokenizer.json").toString(),
                input.toString()), 120);
        JsonNode expected = new ObjectMapper().readTree(out);
        try (TextTokenizer tok = TextTokenizer.load(Storage.local(), dir.toString())) {
            assertTrue(tok.addsBos());
            for (int i = 0; i < texts.size(); i++) {
                assertArrayEquals(ints(expected.get(i)), tok.encodeWithoutSpecialTokens(texts.get(i).textValue()),
                        model + ": " + texts.get(i).textValue());
            }
        }
    }
}
