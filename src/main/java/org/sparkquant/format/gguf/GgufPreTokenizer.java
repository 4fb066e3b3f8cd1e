package org.sparkquant.format.gguf;

import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer;
import com.fasterxml.jackson.databind.JsonNode;
import java.io.ByteArrayInputStream;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.Map;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.sparkquant.SparkQuantException;

/**
 * Which llama.cpp pre-tokenizer ({@code tokenizer.ggml.pre}) a byte-level BPE tokenizer needs. Detected in two steps:
 * <ol>
 *   <li>as convert_hf_to_gguf does: the ids of its check text (encoded with special tokens, i.e. what
 *       {@code AutoTokenizer.encode} returns) are hashed (sha256 of Python's {@code str(list)}) and looked up among
 *       the hashes llama.cpp lists for the families sparkquant supports (Llama 3, Qwen 1.5–3, GPT-2 and a few
 *       Llama/Qwen derivatives);</li>
 *   <li>otherwise from tokenizer.json's pre-tokenizer itself: a Split on Llama 3's regex → "llama-bpe", on
 *       Qwen2's → "qwen2", a plain ByteLevel with GPT-2's built-in regex → "gpt-2". This covers tokenizers trained
 *       with those rules but other vocabularies, which have no known hash.</li>
 * </ol>
 * Anything else is an error that names the override option.
 */
final class GgufPreTokenizer {
    private static final Logger LOG = LoggerFactory.getLogger(GgufPreTokenizer.class);

    private GgufPreTokenizer() {}

    /** convert_hf_to_gguf's check text (get_vocab_base_pre). */
    static final String CHECK_TEXT = "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis"
            + " concatenated) ✅ 🦙🦙 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 កាន់តែពិសេសអាច😁"
            + " ?我想在apple工作1314151天～ ------======= нещо на Български ''''''```````\"\"\"\"......!!!!!!??????"
            + " I've been 'told he's there, 'RE you sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL";

    /** Hashes from llama.cpp's convert_hf_to_gguf.py (the build sparkquant's fixtures come from), with their source. */
    static final Map<String, String> KNOWN_HASHES = Map.of(
            "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5", "llama-bpe", // Meta-Llama-3-8B
            "c136ed14d01c2745d4f60a9596ae66800e2b61fa45643e72436041855ad4089d", "smaug-bpe", // Smaug-Llama-3-70B
            "e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea", "qwen2", // Qwen1.5-7B
            "d4540891389ea895b53b399da6ac824becc30f2fba0e9ddbb98f92e55ca0e97c", "qwen2", // Qwen3-Embedding-0.6B
            "b3f499bb4255f8ca19fccd664443283318f2fd2414d5e0b040fbdd0cc195d6c5", "deepseek-r1-qwen",
            "3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454", "gpt-2", // openai-community/gpt2
            "63b97e4253352e6f357cc59ea5b583e3a680eaeaf2632188c2b952de2588485e", "tekken", // Mistral-Nemo
            "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249", "smollm"); // SmolLM-135M

    /** The split regex of Llama 3's tokenizer.json. */
    static final String LLAMA3_REGEX = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}|"
            + " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    /** The split regex of Qwen2/Qwen3's tokenizer.json (single digits). */
    static final String QWEN2_REGEX = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}|"
            + " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

    /** The pre-tokenizer name, or a bad-input error. */
    static String detect(byte[] tokenizerJson, JsonNode json, String source) {
        String hash = checkHash(tokenizerJson, source);
        if (hash != null && KNOWN_HASHES.containsKey(hash)) {
            return KNOWN_HASHES.get(hash);
        }
        String byRegex = fromPreTokenizer(json.get("pre_tokenizer"));
        if (byRegex != null) {
            return byRegex;
        }
        throw SparkQuantException.badInput(source + ": the BPE pre-tokenizer is not one sparkquant recognizes "
                + "(check hash " + hash + "; known: Llama 3 'llama-bpe', Qwen 'qwen2', GPT-2 'gpt-2' and the listed "
                + "derivatives); name llama.cpp's pre-tokenizer explicitly with the pre-tokenizer option");
    }

    /** The sha256 convert_hf_to_gguf computes, or null when the tokenizer cannot be run. */
    static String checkHash(byte[] tokenizerJson, String source) {
        Map<String, String> options = Map.of("addSpecialTokens", "true", "truncation", "false", "padding", "false");
        try (HuggingFaceTokenizer t = HuggingFaceTokenizer.newInstance(new ByteArrayInputStream(tokenizerJson),
                options)) {
            long[] ids = t.encode(CHECK_TEXT).getIds();
            StringBuilder s = new StringBuilder("[");
            for (int i = 0; i < ids.length; i++) {
                s.append(i == 0 ? "" : ", ").append(ids[i]);
            }
            s.append(']');
            return sha256(s.toString());
        } catch (Exception e) {
            LOG.warn("{}: cannot run the tokenizer to hash its pre-tokenizer ({}); using its regex", source,
                    e.getMessage());
            return null;
        }
    }

    static String sha256(String s) {
        try {
            return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256")
                    .digest(s.getBytes(StandardCharsets.UTF_8)));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    /** From tokenizer.json's pre_tokenizer structure, or null. */
    static String fromPreTokenizer(JsonNode pre) {
        if (pre == null || pre.isNull()) {
            return null;
        }
        String type = pre.path("type").asText();
        if (type.equals("ByteLevel")) {
            return pre.path("use_regex").asBoolean(true) ? "gpt-2" : null;
        }
        if (!type.equals("Sequence")) {
            return null;
        }
        JsonNode parts = pre.path("pretokenizers");
        if (parts.size() != 2 || !parts.get(0).path("type").asText().equals("Split")
                || !parts.get(1).path("type").asText().equals("ByteLevel")
                || parts.get(1).path("use_regex").asBoolean(true)) {
            return null;
        }
        JsonNode split = parts.get(0);
        if (!split.path("behavior").asText().equals("Isolated") || split.path("invert").asBoolean(false)) {
            return null;
        }
        String regex = split.path("pattern").path("Regex").asText(null);
        if (LLAMA3_REGEX.equals(regex)) {
            return "llama-bpe";
        }
        if (QWEN2_REGEX.equals(regex)) {
            return "qwen2";
        }
        return null;
    }

    /** The split regex of a llama.cpp pre-tokenizer name, for rebuilding a tokenizer.json from a GGUF vocabulary. */
    static String regexOf(String pre) {
        switch (pre) {
            case "llama-bpe":
            case "llama3":
            case "llama-v3":
                return LLAMA3_REGEX;
            case "qwen2":
            case "deepseek-r1-qwen":
                return QWEN2_REGEX;
            default:
                return null;
        }
    }
}
