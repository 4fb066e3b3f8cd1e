package org.sparkquant.tokenizer;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.OptionalInt;

import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.sparkquant.SparkQuantException;
import org.sparkquant.io.Storage;
import org.sparkquant.model.ModelConfig;

/**
 * A model's Hugging Face fast tokenizer ({@code tokenizer.json}), run by the Rust {@code tokenizers} library through
 * DJL: byte-level BPE (Llama 3, Qwen), SentencePiece-style BPE with byte fallback (Llama 2, Mistral) and whatever
 * else tokenizer.json describes. The file is read through {@link Storage}, so it may live on S3 or HDFS.
 * <p>
 * Text is encoded without the tokenizer's post-processor; the BOS token is then prepended or not, by this policy:
 * an explicit choice (the CLI's {@code --add-bos}/{@code --no-bos}), else {@code add_bos_token} of
 * {@code tokenizer_config.json} (Llama 2 style), else whether tokenizer.json's post-processor template starts with a
 * special token (Llama 3 style). Qwen has neither: no BOS.
 */
public final class TextTokenizer implements AutoCloseable {
    public static final String FILE = "tokenizer.json";
    public static final String CONFIG = "tokenizer_config.json";

    private final String source;
    private final HuggingFaceTokenizer tokenizer;
    private final int idSpace;
    private final String maxIdToken;
    private final Integer bosId;
    private final boolean addBos;

    private TextTokenizer(String source, HuggingFaceTokenizer tokenizer, int idSpace, String maxIdToken, Integer bosId,
            boolean addBos) {
        this.source = source;
        this.tokenizer = tokenizer;
        this.idSpace = idSpace;
        this.maxIdToken = maxIdToken;
        this.bosId = bosId;
        this.addBos = addBos;
    }

    /** The tokenizer of a model directory, with the BOS policy of its files. */
    public static TextTokenizer load(Storage storage, String modelDirectory) {
        return load(storage, modelDirectory, null);
    }

    /**
     * The tokenizer of a model directory; {@code addBos} overrides the BOS policy of its files when not null.
     *
     * @throws SparkQuantException (bad input) when tokenizer.json is missing or malformed, or when a BOS token is
     *     requested but the tokenizer has none
     */
    public static TextTokenizer load(Storage storage, String modelDirectory, Boolean addBos) {
        String uri = Storage.resolve(modelDirectory, FILE);
        if (!storage.exists(uri)) {
            throw SparkQuantException.badInput(uri + ": no such file (the model's Hugging Face fast tokenizer is "
                    + "needed; tokenizer.model alone is not supported)");
        }
        byte[] bytes = storage.readAll(uri);
        String configUri = Storage.resolve(modelDirectory, CONFIG);
        byte[] config = storage.exists(configUri) ? storage.readAll(configUri) : null;
        return fromJson(uri, bytes, configUri, config, addBos);
    }

    /**
     * A tokenizer from the bytes of a tokenizer.json and (nullable) tokenizer_config.json, e.g. rebuilt from a GGUF
     * file's vocabulary; {@code source} and {@code configSource} name them in errors.
     */
    public static TextTokenizer fromJson(String source, byte[] tokenizerJson, String configSource, byte[] configJson,
            Boolean addBos) {
        String uri = source;
        byte[] bytes = tokenizerJson;
        ObjectMapper mapper = new ObjectMapper();
        JsonNode json;
        try {
            json = mapper.readTree(bytes);
        } catch (IOException e) {
            throw SparkQuantException.badInput(uri + ": not valid JSON (" + firstLine(e) + ")");
        }
        if (json == null || !json.isObject() || !json.path("model").isObject()) {
            throw SparkQuantException.badInput(uri + ": not a Hugging Face tokenizer (no \"model\" object)");
        }
        JsonNode config = null;
        if (configJson != null) {
            try {
                config = mapper.readTree(configJson);
            } catch (IOException e) {
                throw SparkQuantException.badInput(configSource + ": not valid JSON (" + firstLine(e) + ")");
            }
        }
        Map<String, Integer> ids = tokenIds(json);
        int maxId = -1;
        String maxToken = null;
        for (Map.Entry<String, Integer> e : ids.entrySet()) {
            if (e.getValue() > maxId) {
                maxId = e.getValue();
                maxToken = e.getKey();
            }
        }

        String templateBos = templateBos(json.get("post_processor"));
        Boolean configAddBos = config != null && config.path("add_bos_token").isBoolean()
                ? config.get("add_bos_token").booleanValue() : null;
        boolean add = addBos != null ? addBos : configAddBos != null ? configAddBos : templateBos != null;
        String bosToken = config == null ? null : tokenText(config.get("bos_token"));
        if (bosToken == null) {
            bosToken = templateBos;
        }
        Integer bosId = bosToken == null ? null : ids.get(bosToken);
        if (add && bosId == null) {
            throw SparkQuantException.badInput(uri + ": a BOS token is to be added but the tokenizer defines none"
                    + (bosToken == null ? "" : " ('" + bosToken + "' is not in its vocabulary)")
                    + "; encode without BOS");
        }

        Map<String, String> options = Map.of("addSpecialTokens", "false", "truncation", "false", "padding", "false");
        HuggingFaceTokenizer tokenizer;
        try {
            tokenizer = HuggingFaceTokenizer.newInstance(new ByteArrayInputStream(bytes), options);
        } catch (IOException | RuntimeException e) {
            throw SparkQuantException.badInput(uri + ": cannot load the tokenizer (" + firstLine(e) + ")", e);
        }
        return new TextTokenizer(uri, tokenizer, maxId + 1, maxToken, bosId, add);
    }

    /** Every token of tokenizer.json with its id: the model's vocabulary and the added tokens. */
    private static Map<String, Integer> tokenIds(JsonNode json) {
        Map<String, Integer> ids = new LinkedHashMap<>();
        JsonNode vocab = json.path("model").get("vocab");
        if (vocab != null && vocab.isObject()) { // BPE, WordPiece, WordLevel
            for (Map.Entry<String, JsonNode> e : vocab.properties()) {
                ids.put(e.getKey(), e.getValue().intValue());
            }
        } else if (vocab != null && vocab.isArray()) { // Unigram: [[piece, score], ...], id = index
            for (int i = 0; i < vocab.size(); i++) {
                ids.put(vocab.get(i).path(0).asText(), i);
            }
        }
        JsonNode added = json.get("added_tokens");
        if (added != null && added.isArray()) {
            for (JsonNode t : added) {
                ids.put(t.path("content").asText(), t.path("id").intValue());
            }
        }
        return ids;
    }

    /** The special token a TemplateProcessing post-processor puts first in a single sequence, or null. */
    private static String templateBos(JsonNode processor) {
        if (processor == null || !processor.isObject()) {
            return null;
        }
        String type = processor.path("type").asText();
        if (type.equals("Sequence")) {
            for (JsonNode p : processor.path("processors")) {
                String bos = templateBos(p);
                if (bos != null) {
                    return bos;
                }
            }
            return null;
        }
        if (type.equals("TemplateProcessing")) {
            JsonNode first = processor.path("single").path(0).get("SpecialToken");
            if (first != null) {
                String name = first.path("id").asText();
                JsonNode tokens = processor.path("special_tokens").path(name).path("tokens");
                return tokens.isArray() && tokens.size() == 1 ? tokens.get(0).asText() : name;
            }
        }
        return null;
    }

    /** A token in tokenizer_config.json: a string or an AddedToken object {"content": ...}; null when absent. */
    private static String tokenText(JsonNode node) {
        if (node == null || node.isNull()) {
            return null;
        }
        if (node.isTextual()) {
            return node.textValue();
        }
        JsonNode content = node.get("content");
        return content != null && content.isTextual() ? content.textValue() : null;
    }

    private static String firstLine(Exception e) {
        String m = e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage();
        return m.lines().findFirst().orElse(m);
    }

    /** The token ids of a text, with the BOS token first when the policy says so. */
    public int[] encode(String text) {
        int[] raw = encodeWithoutSpecialTokens(text);
        if (!addBos) {
            return raw;
        }
        int[] out = new int[raw.length + 1];
        out[0] = bosId;
        System.arraycopy(raw, 0, out, 1, raw.length);
        return out;
    }

    /** The ids of tokenizer.json's normalizer, pre-tokenizer and model, without any special token added. */
    public int[] encodeWithoutSpecialTokens(String text) {
        long[] ids = tokenizer.encode(text, false, false).getIds();
        int[] out = new int[ids.length];
        for (int i = 0; i < ids.length; i++) {
            out[i] = Math.toIntExact(ids[i]);
        }
        return out;
    }

    /** The text of ids, special tokens included (tokenizer.json's decoder). */
    public String decode(int[] ids) {
        long[] l = new long[ids.length];
        for (int i = 0; i < ids.length; i++) {
            l[i] = ids[i];
        }
        return tokenizer.decode(l, false);
    }

    public boolean addsBos() {
        return addBos;
    }

    public OptionalInt bosId() {
        return bosId == null ? OptionalInt.empty() : OptionalInt.of(bosId);
    }

    /** One more than the largest token id the tokenizer can produce (vocabulary and added tokens). */
    public int idSpace() {
        return idSpace;
    }

    public String source() {
        return source;
    }

    /**
     * Checks that every id the tokenizer can produce has an embedding row in the model.
     *
     * @throws SparkQuantException (bad input) naming the offending token when the tokenizer is the wrong one
     */
    public void checkCompatible(ModelConfig config) {
        if (idSpace > config.vocabSize()) {
            throw SparkQuantException.badInput(source + ": token '" + maxIdToken + "' has id " + (idSpace - 1)
                    + " but the model's vocab_size is " + config.vocabSize()
                    + " (config.json): the tokenizer does not belong to this model");
        }
    }

    @Override
    public void close() {
        tokenizer.close();
    }
}
