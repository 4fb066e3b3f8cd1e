package org.sparkquant.format.gguf;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Pattern;
import org.sparkquant.SparkQuantException;
import org.sparkquant.io.Storage;

/**
 * The tokenizer of a Hugging Face model directory as GGUF metadata ({@code tokenizer.ggml.*},
 * {@code tokenizer.chat_template}), following llama.cpp's convert_hf_to_gguf.py and gguf-py's vocab.py:
 * <ul>
 *   <li><b>SentencePiece</b> ({@code tokenizer.model} present, as the converter tries first): model "llama", pre
 *       "default", the pieces with their scores and types (unknown, control, unused, byte; user-defined pieces count as
 *       normal), padded with {@code [PADi]} unused tokens to config.json's vocab_size, then added_tokens.json and
 *       tokenizer_config.json's added_tokens_decoder (control when special, else user-defined, score −1000);</li>
 *   <li><b>SentencePiece-style BPE from tokenizer.json</b> (llama only: BPE with byte fallback, as Llama 2 / Mistral
 *       fast tokenizers; the converter's LlamaHfVocab): model "llama", pre "default"; {@code <0xXX>} tokens are byte,
 *       the special tokens of tokenizer_config.json control, added tokens beyond the vocabulary user-defined. One
 *       deliberate difference: LlamaHfVocab gives every token the score −1000, which makes llama.cpp's SentencePiece
 *       tokenizer (it merges the highest-scoring pair first, ties leftmost) merge left to right instead of by BPE
 *       rank; here a token produced by merge {@code r} of tokenizer.json scores {@code −(r+1)} (its first merge),
 *       so llama.cpp reproduces the Hugging Face ids; other tokens keep −1000. Tokens are padded to vocab_size;</li>
 *   <li><b>Byte-level BPE</b> (Llama 3, Qwen: the converter's get_vocab_base): model "gpt2", the pre-tokenizer of
 *       {@link GgufPreTokenizer}, every id below vocab_size (missing ids {@code [PADi]}, unused), added tokens control
 *       when special or special-looking ({@code <|…|>}) else user-defined, tokenizer.json's merges (a space inside a
 *       merge part written as U+0120).</li>
 * </ul>
 * Special tokens are gguf-py's SpecialVocab: bos/eos/unk/sep/pad/mask ids from tokenizer_config.json's
 * {@code <type>_token} resolved through tokenizer.json's added tokens, then config.json's {@code <type>_token_id}
 * (integers only); {@code add_bos_token}/{@code add_eos_token}/{@code add_sep_token} from tokenizer.json's
 * post-processor template, overridden by tokenizer_config.json; the chat template from tokenizer_config.json, else
 * chat_template.jinja / chat_template.json. Unlike the converter, {@code add_bos_token} is always written (false
 * when neither file asks for BOS, which is what Hugging Face does; llama.cpp would otherwise guess per
 * pre-tokenizer, e.g. true for "llama-bpe"). Immutable.
 */
public final class GgufVocab {
    public static final int NORMAL = 1;
    public static final int UNKNOWN = 2;
    public static final int CONTROL = 3;
    public static final int USER_DEFINED = 4;
    public static final int UNUSED = 5;
    public static final int BYTE = 6;

    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Pattern BYTE_TOKEN = Pattern.compile("<0x[0-9A-Fa-f]{2}>");
    private static final List<String> SPECIAL_TYPES = List.of("bos", "eos", "unk", "sep", "pad", "cls", "mask");
    /** GGUF keys of the special token ids gguf-py can write (cls has no key). */
    static final Map<String, String> ID_KEYS = Map.of("bos", "tokenizer.ggml.bos_token_id",
            "eos", "tokenizer.ggml.eos_token_id", "unk", "tokenizer.ggml.unknown_token_id",
            "sep", "tokenizer.ggml.seperator_token_id", "pad", "tokenizer.ggml.padding_token_id",
            "mask", "tokenizer.ggml.mask_token_id", "eot", "tokenizer.ggml.eot_token_id",
            "eom", "tokenizer.ggml.eom_token_id");
    static final Map<String, String> ADD_KEYS = Map.of("bos", "tokenizer.ggml.add_bos_token",
            "eos", "tokenizer.ggml.add_eos_token", "sep", "tokenizer.ggml.add_sep_token");

    /** How the vocabulary was read: "sentencepiece", "llama-hf" or "gpt2". */
    private final String kind;
    private final String model;
    private final String pre;
    private final List<String> tokens;
    private final float[] scores;
    private final int[] types;
    private final List<String> merges;
    private final Map<String, Integer> specialIds;
    private final Map<String, Boolean> addSpecial;
    private final Object chatTemplate;
    private final Boolean addSpacePrefix;

    private GgufVocab(String kind, String model, String pre, List<String> tokens, float[] scores, int[] types,
            List<String> merges, Map<String, Integer> specialIds, Map<String, Boolean> addSpecial, Object chatTemplate,
            Boolean addSpacePrefix) {
        this.kind = kind;
        this.model = model;
        this.pre = pre;
        this.tokens = List.copyOf(tokens);
        this.scores = scores;
        this.types = types;
        this.merges = merges == null ? null : List.copyOf(merges);
        this.specialIds = Collections.unmodifiableMap(new LinkedHashMap<>(specialIds));
        Map<String, Boolean> add = new LinkedHashMap<>(addSpecial);
        // Hugging Face adds no BOS unless told to; llama.cpp would guess per pre-tokenizer (true for llama-bpe)
        add.putIfAbsent("bos", false);
        this.addSpecial = Collections.unmodifiableMap(add);
        this.chatTemplate = chatTemplate;
        this.addSpacePrefix = addSpacePrefix;
    }

    /** What can be overridden: the pre-tokenizer name (null: detect). */
    public record Options(String preTokenizer) {
        public static final Options DEFAULT = new Options(null);
    }

    /**
     * Reads the tokenizer files of a model directory for a GGUF architecture ("llama", "qwen2", "qwen3") and a
     * config.json vocab_size.
     */
    public static GgufVocab load(Storage storage, String directory, String architecture, int vocabSize,
            Options options) {
        Files f = new Files(storage, directory);
        if (f.exists("tokenizer.model")) {
            return sentencePiece(f, architecture, vocabSize);
        }
        if (!f.exists("tokenizer.json")) {
            throw SparkQuantException.badInput(Storage.resolve(directory, "tokenizer.json")
                    + ": no such file (a GGUF needs the model's tokenizer: tokenizer.json or tokenizer.model)");
        }
        byte[] tokenizerBytes = f.bytes("tokenizer.json");
        JsonNode tokenizer = f.json("tokenizer.json");
        JsonNode m = tokenizer.path("model");
        boolean byteFallbackBpe = m.path("type").asText().equals("BPE") && m.path("byte_fallback").asBoolean(false)
                && tokenizer.path("decoder").path("type").asText().equals("Sequence");
        if (architecture.equals("llama") && byteFallbackBpe) {
            return llamaHf(f, tokenizer, vocabSize);
        }
        if (!m.path("type").asText().equals("BPE")) {
            throw SparkQuantException.badInput(f.uri("tokenizer.json") + ": tokenizer model '"
                    + m.path("type").asText() + "' is not supported for GGUF (BPE only)");
        }
        return gpt2(f, tokenizerBytes, tokenizer, vocabSize, options);
    }

    // ------------------------------------------------------------------------------------------------ SentencePiece

    private static GgufVocab sentencePiece(Files f, String architecture, int vocabSize) {
        SentencePieceModel sp = SentencePieceModel.parse(f.bytes("tokenizer.model"), f.uri("tokenizer.model"));
        int n = vocabSize > 0 ? vocabSize : sp.pieces().size();
        String[] tokens = new String[n];
        float[] scores = new float[n];
        int[] types = new int[n];
        for (int i = 0; i < n; i++) {
            tokens[i] = "[PAD" + i + "]";
            scores[i] = -10000f;
            types[i] = UNUSED;
        }
        for (int id = 0; id < Math.min(n, sp.pieces().size()); id++) {
            SentencePieceModel.Piece p = sp.pieces().get(id);
            int t;
            switch (p.type()) {
                case SentencePieceModel.UNKNOWN -> t = UNKNOWN;
                case SentencePieceModel.CONTROL -> t = CONTROL;
                case SentencePieceModel.UNUSED -> t = UNUSED;
                case SentencePieceModel.BYTE -> t = BYTE;
                default -> t = NORMAL; // the converter has no user-defined branch
            }
            tokens[id] = p.text();
            scores[id] = p.score();
            types[id] = t;
        }
        if (f.exists("added_tokens.json")) {
            JsonNode added = f.json("added_tokens.json");
            for (Iterator<Map.Entry<String, JsonNode>> it = added.fields(); it.hasNext(); ) {
                Map.Entry<String, JsonNode> e = it.next();
                int id = e.getValue().asInt(-1);
                if (id >= 0 && id < n) {
                    tokens[id] = e.getKey();
                    scores[id] = -1000f;
                    types[id] = USER_DEFINED;
                }
            }
        }
        JsonNode config = f.optionalJson("tokenizer_config.json");
        if (config != null && config.path("added_tokens_decoder").isObject()) {
            for (Iterator<Map.Entry<String, JsonNode>> it = config.get("added_tokens_decoder").fields(); it.hasNext(); ) {
                Map.Entry<String, JsonNode> e = it.next();
                int id;
                try {
                    id = Integer.parseInt(e.getKey());
                } catch (NumberFormatException ex) {
                    throw SparkQuantException.badInput(f.uri("tokenizer_config.json") + ": added_tokens_decoder key '"
                            + e.getKey() + "' is not a token id");
                }
                if (id < 0 || id >= n) {
                    continue;
                }
                String content = e.getValue().path("content").asText();
                if (e.getValue().path("special").asBoolean(false) || looksSpecial(content)) {
                    types[id] = CONTROL;
                } else {
                    content = content.replace('\u2581', ' ');
                    types[id] = USER_DEFINED;
                }
                scores[id] = -1000f;
                tokens[id] = content;
            }
        }
        Special s = Special.load(f, n);
        return new GgufVocab("sentencepiece", "llama", "default", Arrays.asList(tokens), scores, types, null,
                s.ids, s.add, s.chatTemplate, addSpacePrefix(f, architecture));
    }

    // ------------------------------------------------------------------------------------------------ LlamaHfVocab

    private static GgufVocab llamaHf(Files f, JsonNode tokenizer, int vocabSize) {
        Map<String, Integer> vocab = modelVocab(tokenizer, f.uri("tokenizer.json"));
        int base = vocab.size();
        String[] byId = new String[base];
        for (Map.Entry<String, Integer> e : vocab.entrySet()) {
            int id = e.getValue();
            if (id < 0 || id >= base || byId[id] != null) {
                throw SparkQuantException.badInput(f.uri("tokenizer.json") + ": vocabulary ids are not 0.."
                        + (base - 1) + " (token '" + e.getKey() + "' has id " + id + ")");
            }
            byId[id] = e.getKey();
        }
        Set<Integer> specialIds = new HashSet<>();
        for (String special : namedSpecialTokens(f)) {
            Integer id = vocab.get(special);
            if (id == null) {
                id = addedTokens(tokenizer).get(special);
            }
            if (id != null) {
                specialIds.add(id);
            }
        }
        List<String> tokens = new ArrayList<>();
        List<Integer> types = new ArrayList<>();
        for (int id = 0; id < base; id++) {
            tokens.add(byId[id]);
            types.add(BYTE_TOKEN.matcher(byId[id]).matches() ? BYTE : specialIds.contains(id) ? CONTROL : NORMAL);
        }
        Map<String, Integer> rank = new HashMap<>();
        List<String[]> pairs = mergePairs(tokenizer, f.uri("tokenizer.json"));
        for (int r = 0; r < pairs.size(); r++) {
            rank.putIfAbsent(pairs.get(r)[0] + pairs.get(r)[1], r);
        }
        List<Float> scores = new ArrayList<>();
        for (int id = 0; id < base; id++) {
            Integer r = rank.get(byId[id]);
            scores.add(r == null ? -1000f : -(r + 1f));
        }
        // added tokens beyond the model's vocabulary, by id
        List<Map.Entry<String, Integer>> added = new ArrayList<>(addedTokens(tokenizer).entrySet());
        added.sort(Map.Entry.comparingByValue());
        for (Map.Entry<String, Integer> e : added) {
            if (e.getValue() < base) {
                continue;
            }
            if (e.getValue() != tokens.size()) {
                throw SparkQuantException.badInput(f.uri("tokenizer.json") + ": added token '" + e.getKey()
                        + "' has id " + e.getValue() + ", expected " + tokens.size() + " (ids must be contiguous)");
            }
            tokens.add(e.getKey());
            types.add(specialIds.contains(e.getValue()) ? CONTROL : USER_DEFINED);
            scores.add(-1000f);
        }
        for (int i = tokens.size(); i < vocabSize; i++) {
            tokens.add("[PAD" + i + "]");
            types.add(UNUSED);
            scores.add(-1000f);
        }
        Special s = Special.load(f, tokens.size());
        return new GgufVocab("llama-hf", "llama", "default", tokens, toFloats(scores), toInts(types), null, s.ids,
                s.add, s.chatTemplate, addSpacePrefix(f, "llama"));
    }

    /** bos/eos/unk/sep/pad/cls/mask and additional special tokens named in the tokenizer configs (all_special_tokens). */
    private static List<String> namedSpecialTokens(Files f) {
        List<String> out = new ArrayList<>();
        for (String file : List.of("special_tokens_map.json", "tokenizer_config.json")) {
            JsonNode c = f.optionalJson(file);
            if (c == null) {
                continue;
            }
            for (String typ : SPECIAL_TYPES) {
                String t = tokenText(c.get(typ + "_token"));
                if (t != null) {
                    out.add(t);
                }
            }
            for (String list : List.of("additional_special_tokens", "extra_special_tokens")) {
                for (JsonNode t : c.path(list)) {
                    String text = tokenText(t);
                    if (text != null) {
                        out.add(text);
                    }
                }
            }
        }
        return out;
    }

    // ------------------------------------------------------------------------------------------------ gpt2 (BPE)

    private static GgufVocab gpt2(Files f, byte[] tokenizerBytes, JsonNode tokenizer, int vocabSize,
            Options options) {
        String source = f.uri("tokenizer.json");
        Map<String, Integer> vocab = modelVocab(tokenizer, source);
        Map<String, Integer> added = addedTokens(tokenizer);
        Map<Integer, JsonNode> addedById = new HashMap<>();
        for (JsonNode t : tokenizer.path("added_tokens")) {
            addedById.put(t.path("id").asInt(), t);
        }
        Map<Integer, String> byId = new HashMap<>();
        vocab.forEach((t, id) -> byId.put(id, t));
        added.forEach((t, id) -> byId.put(id, t));
        int max = byId.keySet().stream().mapToInt(Integer::intValue).max().orElse(-1);
        int n = vocabSize > 0 ? vocabSize : max + 1;
        if (max >= n) {
            throw SparkQuantException.badInput(source + ": token id " + max + " is not below config.json's vocab_size "
                    + n);
        }
        String pre = options.preTokenizer() != null ? options.preTokenizer()
                : GgufPreTokenizer.detect(tokenizerBytes, tokenizer, source);
        List<String> tokens = new ArrayList<>(n);
        int[] types = new int[n];
        for (int i = 0; i < n; i++) {
            String t = byId.get(i);
            if (t == null) {
                tokens.add("[PAD" + i + "]");
                types[i] = UNUSED;
            } else if (added.containsKey(t) && added.get(t).intValue() == i) {
                JsonNode a = addedById.get(i);
                if (a.path("special").asBoolean(false) || looksSpecial(t)) {
                    types[i] = CONTROL;
                } else {
                    t = t.replace('\u2581', ' '); // pre-normalize user-defined spaces
                    types[i] = USER_DEFINED;
                }
                tokens.add(t);
            } else {
                tokens.add(t);
                types[i] = NORMAL;
            }
        }
        List<String> merges = new ArrayList<>();
        for (String[] p : mergePairs(tokenizer, source)) {
            merges.add(p[0].replace(" ", "\u0120") + " " + p[1].replace(" ", "\u0120"));
        }
        Special s = Special.load(f, null);
        return new GgufVocab("gpt2", "gpt2", pre, tokens, null, types, merges, s.ids, s.add, s.chatTemplate, null);
    }

    // ------------------------------------------------------------------------------------------------ helpers

    /** convert_hf_to_gguf's does_token_look_special. */
    static boolean looksSpecial(String t) {
        return t.equals("<pad>") || t.equals("<mask>") || t.equals("<2mass>") || t.equals("[@BOS@]")
                || (t.startsWith("<|") && t.endsWith("|>")) || (t.startsWith("<\uff5c") && t.endsWith("\uff5c>"))
                || (t.startsWith("<unused") && t.endsWith(">"));
    }

    private static Boolean addSpacePrefix(Files f, String architecture) {
        if (!architecture.equals("llama")) {
            return null;
        }
        JsonNode c = f.optionalJson("tokenizer_config.json");
        JsonNode v = c == null ? null : c.get("add_prefix_space");
        return v != null && v.isBoolean() ? v.booleanValue() : null;
    }

    static Map<String, Integer> modelVocab(JsonNode tokenizer, String source) {
        JsonNode v = tokenizer.path("model").get("vocab");
        if (v == null || !v.isObject()) {
            throw SparkQuantException.badInput(source + ": model.vocab is not an object (not a BPE tokenizer)");
        }
        Map<String, Integer> out = new LinkedHashMap<>();
        for (Iterator<Map.Entry<String, JsonNode>> it = v.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            if (!e.getValue().canConvertToInt()) {
                throw SparkQuantException.badInput(source + ": token '" + e.getKey() + "' has no integer id");
            }
            out.put(e.getKey(), e.getValue().intValue());
        }
        return out;
    }

    /** Content → id of tokenizer.json's added tokens (the first occurrence of a content wins, as gguf-py looks up). */
    static Map<String, Integer> addedTokens(JsonNode tokenizer) {
        Map<String, Integer> out = new LinkedHashMap<>();
        for (JsonNode t : tokenizer.path("added_tokens")) {
            out.putIfAbsent(t.path("content").asText(), t.path("id").asInt());
        }
        return out;
    }

    /** tokenizer.json's merges as pairs: "a b" strings or (since tokenizers 0.20) [a, b] lists. */
    static List<String[]> mergePairs(JsonNode tokenizer, String source) {
        List<String[]> out = new ArrayList<>();
        for (JsonNode m : tokenizer.path("model").path("merges")) {
            if (m.isTextual()) {
                String s = m.textValue();
                int sp = s.indexOf(' ', 1);
                if (sp < 0) {
                    throw SparkQuantException.badInput(source + ": malformed merge '" + s + "'");
                }
                out.add(new String[] {s.substring(0, sp), s.substring(sp + 1)});
            } else if (m.isArray() && m.size() == 2) {
                out.add(new String[] {m.get(0).asText(), m.get(1).asText()});
            } else {
                throw SparkQuantException.badInput(source + ": unknown merges format " + m);
            }
        }
        return out;
    }

    static String tokenText(JsonNode node) {
        if (node == null || node.isNull()) {
            return null;
        }
        if (node.isTextual()) {
            return node.textValue();
        }
        JsonNode c = node.get("content");
        return c != null && c.isTextual() ? c.textValue() : null;
    }

    private static float[] toFloats(List<Float> l) {
        float[] a = new float[l.size()];
        for (int i = 0; i < a.length; i++) {
            a[i] = l.get(i);
        }
        return a;
    }

    private static int[] toInts(List<Integer> l) {
        return l.stream().mapToInt(Integer::intValue).toArray();
    }

    // ------------------------------------------------------------------------------------------------ accessors

    /** How the vocabulary was derived: "sentencepiece", "llama-hf" (tokenizer.json, byte fallback) or "gpt2". */
    public String kind() {
        return kind;
    }

    /** tokenizer.ggml.model: "llama" or "gpt2". */
    public String model() {
        return model;
    }

    /** tokenizer.ggml.pre. */
    public String pre() {
        return pre;
    }

    public List<String> tokens() {
        return tokens;
    }

    /** Token scores, or null (byte-level BPE has none). */
    public float[] scores() {
        return scores == null ? null : scores.clone();
    }

    public int[] types() {
        return types.clone();
    }

    /** BPE merges, or null. */
    public List<String> merges() {
        return merges;
    }

    /** Special token ids by type ("bos", "eos", "unk", "sep", "pad", "mask", "eot", ...). */
    public Map<String, Integer> specialIds() {
        return specialIds;
    }

    /** add_bos_token / add_eos_token / add_sep_token, as known. */
    public Map<String, Boolean> addSpecial() {
        return addSpecial;
    }

    /** The chat template (a String), a list of named templates ({@code List<Map<String,String>>}), or null. */
    public Object chatTemplate() {
        return chatTemplate;
    }

    /** The tokenizer.* metadata, in the converter's order. */
    public Map<String, GgufValue> metadata() {
        Map<String, GgufValue> md = new LinkedHashMap<>();
        md.put("tokenizer.ggml.model", GgufValue.string(model));
        md.put("tokenizer.ggml.pre", GgufValue.string(pre));
        md.put("tokenizer.ggml.tokens", GgufValue.stringArray(tokens));
        if (scores != null) {
            md.put("tokenizer.ggml.scores", GgufValue.f32Array(scores));
        }
        md.put("tokenizer.ggml.token_type", GgufValue.i32Array(types));
        if (addSpacePrefix != null) {
            md.put("tokenizer.ggml.add_space_prefix", GgufValue.bool(addSpacePrefix));
        }
        if (merges != null) {
            md.put("tokenizer.ggml.merges", GgufValue.stringArray(merges));
        }
        specialIds.forEach((typ, id) -> {
            String key = ID_KEYS.get(typ);
            if (key != null) {
                md.put(key, GgufValue.u32(id));
            }
        });
        addSpecial.forEach((typ, add) -> {
            String key = ADD_KEYS.get(typ);
            if (key != null) {
                md.put(key, GgufValue.bool(add));
            }
        });
        if (chatTemplate instanceof String s) {
            md.put("tokenizer.chat_template", GgufValue.string(s));
        } else if (chatTemplate instanceof List<?> list) {
            List<String> names = new ArrayList<>();
            for (Object o : list) {
                @SuppressWarnings("unchecked")
                Map<String, String> t = (Map<String, String>) o;
                String name = t.getOrDefault("name", "").replaceAll("[^A-Za-z0-9]", "_");
                if (name.isEmpty() || t.get("template") == null) {
                    continue;
                }
                if (name.equals("default")) {
                    md.put("tokenizer.chat_template", GgufValue.string(t.get("template")));
                } else {
                    names.add(name);
                    md.put("tokenizer.chat_template." + name, GgufValue.string(t.get("template")));
                }
            }
            if (!names.isEmpty()) {
                md.put("tokenizer.chat_templates", GgufValue.stringArray(names));
            }
        }
        return md;
    }

    /** gguf-py's SpecialVocab: special ids, add-special flags and the chat template. */
    private static final class Special {
        final Map<String, Integer> ids = new LinkedHashMap<>();
        final Map<String, Boolean> add = new LinkedHashMap<>();
        Object chatTemplate;
        final Integer nVocab;
        final List<String> types = new ArrayList<>(SPECIAL_TYPES);

        private Special(Integer nVocab) {
            this.nVocab = nVocab;
        }

        static Special load(Files f, Integer nVocab) {
            Special s = new Special(nVocab);
            s.fromTokenizerFiles(f);
            s.fromConfig(f);
            return s;
        }

        void set(String typ, Integer id) {
            if (id == null) {
                return;
            }
            if (id < 0) {
                throw SparkQuantException.badInput("invalid id " + id + " for special token type " + typ);
            }
            if (nVocab == null || id < nVocab) {
                ids.putIfAbsent(typ, id);
            }
        }

        private void fromTokenizerFiles(Files f) {
            JsonNode tokenizer = f.exists("tokenizer.json") ? f.json("tokenizer.json") : null;
            JsonNode addedTokens = tokenizer == null ? JSON.createArrayNode() : tokenizer.path("added_tokens");
            JsonNode tcNode = f.optionalJson("tokenizer_config.json");
            ObjectNode tc = tcNode != null && tcNode.isObject() ? ((ObjectNode) tcNode).deepCopy() : null;
            boolean haveTc = tc != null && tc.size() > 0;
            if (tokenizer != null) {
                template(tokenizer, tc, haveTc);
            }
            if (!haveTc) {
                return;
            }
            chatTemplate = chatTemplate(f, tc);
            for (String typ : types) {
                JsonNode addEntry = tc.get("add_" + typ + "_token");
                if (addEntry != null && addEntry.isBoolean()) {
                    add.put(typ, addEntry.booleanValue());
                }
                JsonNode entry = tc.get(typ + "_token");
                String content = entry == null ? null : entry.isTextual() ? entry.textValue()
                        : entry.isObject() && entry.path("content").isTextual() ? entry.get("content").textValue()
                        : null;
                if (content == null) {
                    continue;
                }
                Integer id = null;
                for (JsonNode a : addedTokens) {
                    if (a.path("content").asText().equals(content)) {
                        id = a.path("id").isInt() ? a.get("id").intValue() : null;
                        break;
                    }
                }
                set(typ, id);
            }
        }

        /** The crude parse of tokenizer.json's post-processor that gguf-py does. */
        private void template(JsonNode tokenizer, ObjectNode tc, boolean haveTc) {
            JsonNode post = tokenizer.get("post_processor");
            if (post == null || post.isNull()) {
                return;
            }
            String specialBos = text(tc, "bos_token");
            String specialCls = text(tc, "cls_token");
            String specialEos = text(tc, "eos_token");
            String specialSep = text(tc, "sep_token");
            if (specialBos == null && specialCls != null && haveTc) {
                tc.put("bos_token", specialCls);
                specialBos = specialCls;
            }
            if (specialEos == null && specialSep != null && haveTc) {
                tc.put("eos_token", specialSep);
                specialEos = specialSep;
            }
            JsonNode processors = post.has("processors") ? post.get("processors") : JSON.createArrayNode().add(post);
            for (JsonNode p : processors) {
                String type = p.path("type").asText();
                if (type.equals("RobertaProcessing")) {
                    add.put("bos", true);
                    add.put("eos", true);
                    add.put("sep", true);
                    continue;
                }
                if (!type.equals("TemplateProcessing")) {
                    continue;
                }
                JsonNode single = p.path("single");
                JsonNode pair = p.path("pair");
                String first = null;
                String last = null;
                if (single.size() > 1) {
                    first = single.get(0).path("SpecialToken").path("id").asText(null);
                    if (first != null && !first.isEmpty()) {
                        if (!haveTc) {
                            specialBos = first;
                        }
                        add.put("bos", first.equals(specialBos) || first.equals(specialCls));
                    } else {
                        first = null;
                    }
                    last = single.get(single.size() - 1).path("SpecialToken").path("id").asText(null);
                    if (last != null && !last.isEmpty()) {
                        if (!haveTc) {
                            specialEos = last;
                        } else if (!last.equals(specialEos)) {
                            if (!types.contains("eot")) {
                                types.add("eot");
                                if (specialEos != null) {
                                    tc.put("eot_token", specialEos);
                                }
                            } else if (!types.contains("eom")) {
                                types.add("eom");
                                if (specialEos != null) {
                                    tc.put("eom_token", specialEos);
                                }
                            }
                            tc.put("eos_token", last);
                            specialEos = last;
                        }
                        add.put("eos", last.equals(specialEos));
                    } else {
                        last = null;
                    }
                }
                if (pair.size() > 0) {
                    List<JsonNode> parts = new ArrayList<>();
                    pair.forEach(parts::add);
                    int start = first != null && first.equals(parts.get(0).path("SpecialToken").path("id").asText(null))
                            ? 1 : 0;
                    int stop = last != null
                            && last.equals(parts.get(parts.size() - 1).path("SpecialToken").path("id").asText(null))
                            ? parts.size() - 1 : parts.size();
                    List<JsonNode> mid = start < stop ? parts.subList(start, stop) : List.of();
                    if (!mid.isEmpty()) {
                        String a = mid.get(0).path("Sequence").path("id").asText(null);
                        String b = mid.get(mid.size() - 1).path("Sequence").path("id").asText(null);
                        List<JsonNode> inner = mid.size() > 2 ? mid.subList(1, mid.size() - 1) : List.of();
                        if ("A".equals(a) && "B".equals(b) && !inner.isEmpty()) {
                            boolean addSep = false;
                            String entry = inner.get(0).path("SpecialToken").path("id").asText(null);
                            if (entry != null && (entry.equals(specialSep) || entry.equals(specialEos))
                                    && last == null) {
                                addSep = true;
                            }
                            if (inner.size() == 2) {
                                String second = inner.get(1).path("SpecialToken").path("id").asText(null);
                                if (second != null && (second.equals(specialSep) || second.equals(specialEos))) {
                                    addSep = true;
                                }
                            }
                            add.put("sep", addSep);
                            if (addSep && specialSep == null && haveTc && specialEos != null) {
                                tc.put("sep_token", specialEos);
                            }
                        }
                    }
                }
            }
        }

        private static String text(ObjectNode tc, String key) {
            JsonNode v = tc == null ? null : tc.get(key);
            return v != null && v.isTextual() && !v.textValue().isEmpty() ? v.textValue() : null;
        }

        private static Object chatTemplate(Files f, ObjectNode tc) {
            Object alt = null;
            if (f.exists("chat_template.jinja")) {
                alt = new String(f.bytes("chat_template.jinja"), StandardCharsets.UTF_8);
            } else if (f.exists("chat_template.json")) {
                JsonNode j = f.json("chat_template.json").get("chat_template");
                alt = templateValue(j);
            }
            if (tc.has("chat_template")) {
                return templateValue(tc.get("chat_template"));
            }
            return alt;
        }

        private static Object templateValue(JsonNode j) {
            if (j == null || j.isNull()) {
                return null;
            }
            if (j.isTextual()) {
                return j.textValue();
            }
            if (j.isArray()) {
                List<Map<String, String>> list = new ArrayList<>();
                for (JsonNode e : j) {
                    Map<String, String> m = new LinkedHashMap<>();
                    m.put("name", e.path("name").asText(""));
                    if (e.path("template").isTextual()) {
                        m.put("template", e.get("template").textValue());
                    }
                    list.add(m);
                }
                return list;
            }
            return null;
        }

        private void fromConfig(Files f) {
            JsonNode c = f.optionalJson("config.json");
            if (c == null) {
                return;
            }
            for (String typ : types) {
                JsonNode id = c.get(typ + "_token_id");
                if ((id == null || id.isNull()) && c.has("text_config")) {
                    id = c.get("text_config").get(typ + "_token_id");
                }
                if (id != null && id.isIntegralNumber() && id.canConvertToInt()) {
                    set(typ, id.intValue());
                }
            }
        }
    }

    /** Files of a model directory, each read (and parsed) once. */
    static final class Files {
        private final Storage storage;
        private final String directory;
        private final Map<String, byte[]> bytes = new HashMap<>();
        private final Map<String, JsonNode> json = new HashMap<>();
        private final Map<String, Boolean> exists = new HashMap<>();

        Files(Storage storage, String directory) {
            this.storage = storage;
            this.directory = directory;
        }

        String uri(String name) {
            return Storage.resolve(directory, name);
        }

        boolean exists(String name) {
            return exists.computeIfAbsent(name, n -> storage.exists(uri(n)));
        }

        byte[] bytes(String name) {
            return bytes.computeIfAbsent(name, n -> storage.readAll(uri(n)));
        }

        JsonNode json(String name) {
            return json.computeIfAbsent(name, n -> {
                try {
                    JsonNode node = JSON.readTree(bytes(n));
                    if (node == null || !node.isObject()) {
                        throw SparkQuantException.badInput(uri(n) + ": not a JSON object");
                    }
                    return node;
                } catch (JsonProcessingException e) {
                    throw SparkQuantException.badInput(uri(n) + ": not valid JSON (" + e.getOriginalMessage() + ")");
                } catch (java.io.IOException e) {
                    throw SparkQuantException.badInput(uri(n) + ": cannot read (" + e.getMessage() + ")");
                }
            });
        }

        JsonNode optionalJson(String name) {
            return exists(name) ? json(name) : null;
        }
    }
}
