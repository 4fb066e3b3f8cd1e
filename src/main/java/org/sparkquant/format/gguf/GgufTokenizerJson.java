package org.sparkquant.format.gguf;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.sparkquant.SparkQuantException;
import org.sparkquant.tokenizer.TextTokenizer;

/**
 * A Hugging Face {@code tokenizer.json} (and {@code tokenizer_config.json}) rebuilt from a GGUF file's vocabulary,
 * so text can be tokenized for a GGUF model the way llama.cpp tokenizes it, with the project's Rust tokenizer:
 * <ul>
 *   <li>{@code tokenizer.huggingface.json} in the metadata is used as it is;</li>
 *   <li>"gpt2" (byte-level BPE): the vocabulary, merges, ByteLevel decoding, and the pre-tokenizer split of
 *       {@code tokenizer.ggml.pre} ("llama-bpe" / "llama3" / "llama-v3" with Llama 3's regex and ignore_merges,
 *       "qwen2" / "deepseek-r1-qwen" with Qwen2's, "gpt-2" / "default" with ByteLevel's built-in regex);</li>
 *   <li>"llama" (SentencePiece): a BPE with byte fallback whose merges are every split of a token into two tokens,
 *       ranked by the merged token's score (highest first) — the rule of llama.cpp's SentencePiece tokenizer — with
 *       the "▁" normalizer (prefix space unless {@code tokenizer.ggml.add_space_prefix} is false).</li>
 * </ul>
 * Control tokens become special added tokens, user-defined ones plain added tokens; unused tokens are left out. The
 * config carries bos_token and add_bos_token ({@code tokenizer.ggml.add_bos_token}, default true for "llama" as in
 * llama.cpp), which is the BOS policy {@link TextTokenizer} applies.
 */
public final class GgufTokenizerJson {
    private static final ObjectMapper JSON = new ObjectMapper();

    private final String source;
    private final byte[] tokenizerJson;
    private final byte[] configJson;

    private GgufTokenizerJson(String source, byte[] tokenizerJson, byte[] configJson) {
        this.source = source;
        this.tokenizerJson = tokenizerJson;
        this.configJson = configJson;
    }

    public static GgufTokenizerJson of(GgufReader r) {
        String file = r.file();
        String model = string(r, "tokenizer.ggml.model");
        if (model == null) {
            throw SparkQuantException.badInput(file + ": no tokenizer (tokenizer.ggml.model is missing)");
        }
        List<String> tokens = r.get("tokenizer.ggml.tokens") == null ? null : r.get("tokenizer.ggml.tokens").asStrings();
        if (tokens == null || tokens.isEmpty()) {
            throw SparkQuantException.badInput(file + ": no tokenizer.ggml.tokens");
        }
        int[] types = ints(r, "tokenizer.ggml.token_type", tokens.size());
        ObjectNode config = JSON.createObjectNode();
        Integer bos = id(r, "tokenizer.ggml.bos_token_id", tokens.size());
        Integer eos = id(r, "tokenizer.ggml.eos_token_id", tokens.size());
        GgufValue addBos = r.get("tokenizer.ggml.add_bos_token");
        boolean add = addBos != null ? addBos.asBoolean() : model.equals("llama");
        if (bos != null) {
            config.put("bos_token", tokens.get(bos));
        } else {
            config.putNull("bos_token");
            add = false;
        }
        if (eos != null) {
            config.put("eos_token", tokens.get(eos));
        }
        config.put("add_bos_token", add);
        config.put("add_eos_token", r.get("tokenizer.ggml.add_eos_token") != null
                && r.get("tokenizer.ggml.add_eos_token").asBoolean());
        String hf = string(r, "tokenizer.huggingface.json");
        byte[] tokenizer;
        if (hf != null) {
            tokenizer = hf.getBytes(StandardCharsets.UTF_8);
        } else if (model.equals("gpt2")) {
            tokenizer = bytes(gpt2(r, tokens, types));
        } else if (model.equals("llama")) {
            tokenizer = bytes(sentencePiece(r, tokens, types));
        } else {
            throw SparkQuantException.badInput(file + ": tokenizer model '" + model
                    + "' is not supported (llama, gpt2)");
        }
        return new GgufTokenizerJson(file, tokenizer, bytes(config));
    }

    public byte[] tokenizerJson() {
        return tokenizerJson.clone();
    }

    public byte[] configJson() {
        return configJson.clone();
    }

    /** The tokenizer, with the file's BOS policy unless {@code addBos} overrides it. */
    public TextTokenizer open(Boolean addBos) {
        return TextTokenizer.fromJson(source + "#tokenizer", tokenizerJson, source + "#tokenizer_config", configJson,
                addBos);
    }

    private static ObjectNode gpt2(GgufReader r, List<String> tokens, int[] types) {
        String pre = string(r, "tokenizer.ggml.pre");
        pre = pre == null ? "default" : pre;
        ObjectNode root = base(tokens, types);
        root.putNull("normalizer");
        String regex = GgufPreTokenizer.regexOf(pre);
        ObjectNode byteLevel = JSON.createObjectNode();
        byteLevel.put("type", "ByteLevel");
        byteLevel.put("add_prefix_space", false);
        byteLevel.put("trim_offsets", true);
        if (regex != null) {
            byteLevel.put("use_regex", false);
            ObjectNode seq = root.putObject("pre_tokenizer");
            seq.put("type", "Sequence");
            ArrayNode parts = seq.putArray("pretokenizers");
            ObjectNode split = parts.addObject();
            split.put("type", "Split");
            split.putObject("pattern").put("Regex", regex);
            split.put("behavior", "Isolated");
            split.put("invert", false);
            parts.add(byteLevel);
        } else if (pre.equals("gpt-2") || pre.equals("default")) {
            byteLevel.put("use_regex", true);
            root.set("pre_tokenizer", byteLevel);
        } else {
            throw SparkQuantException.badInput(r.file() + ": pre-tokenizer '" + pre + "' is not supported for "
                    + "evaluation (llama-bpe, qwen2, gpt-2)");
        }
        root.putNull("post_processor");
        ObjectNode decoder = root.putObject("decoder");
        decoder.put("type", "ByteLevel");
        decoder.put("add_prefix_space", true);
        decoder.put("trim_offsets", true);
        decoder.put("use_regex", true);
        ObjectNode m = model(tokens, types, null, false, regex != null && regex.equals(GgufPreTokenizer.LLAMA3_REGEX));
        ArrayNode merges = m.putArray("merges");
        GgufValue mv = r.get("tokenizer.ggml.merges");
        if (mv == null) {
            throw SparkQuantException.badInput(r.file() + ": a gpt2 tokenizer needs tokenizer.ggml.merges");
        }
        for (String merge : mv.asStrings()) {
            int sp = merge.indexOf(' ', 1);
            if (sp < 0) {
                throw SparkQuantException.badInput(r.file() + ": malformed merge '" + merge + "'");
            }
            merges.addArray().add(merge.substring(0, sp)).add(merge.substring(sp + 1));
        }
        root.set("model", m);
        return root;
    }

    private static ObjectNode sentencePiece(GgufReader r, List<String> tokens, int[] types) {
        float[] scores = r.get("tokenizer.ggml.scores") == null ? null
                : (float[]) r.get("tokenizer.ggml.scores").value();
        if (scores == null || scores.length != tokens.size()) {
            throw SparkQuantException.badInput(r.file() + ": a llama (SentencePiece) tokenizer needs one score per "
                    + "token in tokenizer.ggml.scores");
        }
        ObjectNode root = base(tokens, types);
        GgufValue addPrefix = r.get("tokenizer.ggml.add_space_prefix");
        ObjectNode norm = root.putObject("normalizer");
        norm.put("type", "Sequence");
        ArrayNode ns = norm.putArray("normalizers");
        if (addPrefix == null || addPrefix.asBoolean()) {
            ns.addObject().put("type", "Prepend").put("prepend", "\u2581");
        }
        ObjectNode replace = ns.addObject();
        replace.put("type", "Replace");
        replace.putObject("pattern").put("String", " ");
        replace.put("content", "\u2581");
        root.putNull("pre_tokenizer");
        root.putNull("post_processor");
        ObjectNode decoder = root.putObject("decoder");
        decoder.put("type", "Sequence");
        ArrayNode ds = decoder.putArray("decoders");
        ObjectNode dr = ds.addObject();
        dr.put("type", "Replace");
        dr.putObject("pattern").put("String", "\u2581");
        dr.put("content", " ");
        ds.addObject().put("type", "ByteFallback");
        ds.addObject().put("type", "Fuse");
        if (addPrefix == null || addPrefix.asBoolean()) {
            ds.addObject().put("type", "Strip").put("content", " ").put("start", 1).put("stop", 0);
        }
        Integer unk = id(r, "tokenizer.ggml.unknown_token_id", tokens.size());
        if (unk == null) {
            for (int i = 0; i < types.length && unk == null; i++) {
                if (types[i] == GgufVocab.UNKNOWN) {
                    unk = i;
                }
            }
        }
        ObjectNode m = model(tokens, types, unk == null ? null : tokens.get(unk), true, false);
        ArrayNode merges = m.putArray("merges");
        for (String[] pair : spmMerges(tokens, types, scores)) {
            merges.addArray().add(pair[0]).add(pair[1]);
        }
        root.set("model", m);
        return root;
    }

    /**
     * Every (a, b) with a, b and a+b normal tokens, ranked as llama.cpp's SentencePiece tokenizer merges: by the
     * score of a+b (highest first), then by id.
     */
    static List<String[]> spmMerges(List<String> tokens, int[] types, float[] scores) {
        Map<String, Integer> ids = new HashMap<>();
        for (int i = 0; i < tokens.size(); i++) {
            if (mergeable(types[i])) {
                ids.putIfAbsent(tokens.get(i), i);
            }
        }
        List<int[]> found = new ArrayList<>(); // merged id, left id, right id
        for (int i = 0; i < tokens.size(); i++) {
            if (!mergeable(types[i])) {
                continue;
            }
            String t = tokens.get(i);
            for (int k = t.offsetByCodePoints(0, 1); k < t.length(); k = t.offsetByCodePoints(k, 1)) {
                Integer a = ids.get(t.substring(0, k));
                Integer b = ids.get(t.substring(k));
                if (a != null && b != null) {
                    found.add(new int[] {i, a, b});
                }
            }
        }
        found.sort(Comparator.<int[]>comparingDouble(f -> -scores[f[0]]).thenComparingInt(f -> f[0])
                .thenComparingInt(f -> f[1]));
        List<String[]> out = new ArrayList<>(found.size());
        for (int[] f : found) {
            out.add(new String[] {tokens.get(f[1]), tokens.get(f[2])});
        }
        return out;
    }

    private static boolean mergeable(int type) {
        return type == GgufVocab.NORMAL || type == 0;
    }

    private static ObjectNode base(List<String> tokens, int[] types) {
        ObjectNode root = JSON.createObjectNode();
        root.put("version", "1.0");
        root.putNull("truncation");
        root.putNull("padding");
        ArrayNode added = root.putArray("added_tokens");
        for (int i = 0; i < tokens.size(); i++) {
            if (types[i] == GgufVocab.CONTROL || types[i] == GgufVocab.USER_DEFINED) {
                ObjectNode a = added.addObject();
                a.put("id", i);
                a.put("content", tokens.get(i));
                a.put("single_word", false);
                a.put("lstrip", false);
                a.put("rstrip", false);
                a.put("normalized", types[i] == GgufVocab.USER_DEFINED);
                a.put("special", types[i] == GgufVocab.CONTROL);
            }
        }
        return root;
    }

    private static ObjectNode model(List<String> tokens, int[] types, String unk, boolean byteFallback,
            boolean ignoreMerges) {
        ObjectNode m = JSON.createObjectNode();
        m.put("type", "BPE");
        m.putNull("dropout");
        if (unk == null) {
            m.putNull("unk_token");
        } else {
            m.put("unk_token", unk);
        }
        m.putNull("continuing_subword_prefix");
        m.putNull("end_of_word_suffix");
        m.put("fuse_unk", byteFallback);
        m.put("byte_fallback", byteFallback);
        m.put("ignore_merges", ignoreMerges);
        ObjectNode vocab = m.putObject("vocab");
        for (int i = 0; i < tokens.size(); i++) {
            if (types[i] != GgufVocab.UNUSED && !vocab.has(tokens.get(i))) {
                vocab.put(tokens.get(i), i);
            }
        }
        return m;
    }

    private static byte[] bytes(ObjectNode node) {
        try {
            return JSON.writeValueAsBytes(node);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
    }

    private static String string(GgufReader r, String key) {
        GgufValue v = r.get(key);
        return v != null && v.type() == GgufValueType.STRING ? v.asString() : null;
    }

    private static Integer id(GgufReader r, String key, int n) {
        GgufValue v = r.get(key);
        if (v == null || !v.isInteger()) {
            return null;
        }
        long id = v.asLong();
        if (id < 0 || id >= n) {
            throw SparkQuantException.badInput(r.file() + ": " + key + " " + id + " is outside the vocabulary of " + n);
        }
        return (int) id;
    }

    private static int[] ints(GgufReader r, String key, int n) {
        GgufValue v = r.get(key);
        if (v == null) {
            int[] normal = new int[n];
            java.util.Arrays.fill(normal, GgufVocab.NORMAL);
            return normal;
        }
        int[] a = v.value() instanceof int[] i ? i : null;
        if (a == null || a.length != n) {
            throw SparkQuantException.badInput(r.file() + ": " + key + " must be an INT32 array of one type per token");
        }
        return a;
    }
}
