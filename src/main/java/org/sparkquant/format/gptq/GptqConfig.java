package org.sparkquant.format.gptq;

import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.regex.Pattern;
import java.util.regex.PatternSyntaxException;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.sparkquant.SparkQuantException;

/**
 * A GPTQ {@code quantization_config} / {@code quantize_config.json}: the keys AutoGPTQ, GPTQModel, transformers and
 * vLLM read (docs/formats.md §1). {@code dynamic} follows GPTQModel and vLLM: keys are regular expressions matched at
 * the start of the module name ({@code re.match}); {@code "-:"} excludes matching modules from quantization (they
 * stay dense), {@code "+:"} or no prefix overrides bits / group_size / sym / desc_act. Exclusions are tried before
 * overrides, as GPTQModel orders them; otherwise the first matching rule wins.
 *
 * @param quantizer the {@code meta.quantizer} entries, e.g. {@code ["sparkquant:0.1"]} (may be empty)
 * @param modulesInBlockToQuantize optimum's {@code modules_in_block_to_quantize} flattened (a module is quantized
 *     only if one of these names is a substring of its name), or null when absent
 */
public record GptqConfig(
        int bits,
        int groupSize,
        boolean sym,
        boolean descAct,
        boolean staticGroups,
        boolean trueSequential,
        double dampPercent,
        double mse,
        Format format,
        boolean lmHead,
        List<DynamicRule> dynamic,
        List<String> modulesInBlockToQuantize,
        List<String> quantizer) {

    /** The on-disk zero-point convention. */
    public enum Format {
        /** v1: stored zero − 1; what AutoGPTQ writes and every runtime reads. */
        GPTQ("gptq"),
        /** v2: stored zero; required for zero points of 0 (asymmetric quantization). */
        GPTQ_V2("gptq_v2");

        private final String id;

        Format(String id) {
            this.id = id;
        }

        public String id() {
            return id;
        }

        public static Optional<Format> parse(String id) {
            for (Format f : values()) {
                if (f.id.equals(id.toLowerCase(Locale.ROOT))) {
                    return Optional.of(f);
                }
            }
            return Optional.empty();
        }
    }

    /** The quantization parameters that apply to one module. */
    public record ModuleParams(int bits, int groupSize, boolean sym, boolean descAct) {
        /** Number of groups for {@code inFeatures} inputs: ceil(in / group_size), 1 for group_size −1. */
        public int groups(int inFeatures) {
            return groupSize == -1 ? 1 : (inFeatures + groupSize - 1) / groupSize;
        }

        /** The effective group width: group_size, or all inputs for −1. */
        public int groupWidth(int inFeatures) {
            return groupSize == -1 ? inFeatures : groupSize;
        }
    }

    /**
     * One {@code dynamic} entry. {@code key} is the JSON key as written (with its prefix); the overrides are null
     * when absent.
     */
    public record DynamicRule(String key, boolean exclude, Integer bits, Integer groupSize, Boolean sym,
            Boolean descAct) {
        public static DynamicRule exclude(String regex) {
            return new DynamicRule("-:" + regex, true, null, null, null, null);
        }

        public String regex() {
            return key.startsWith("-:") || key.startsWith("+:") ? key.substring(2) : key;
        }

        boolean matches(String module, String source) {
            try {
                return Pattern.compile(regex()).matcher(module).lookingAt();
            } catch (PatternSyntaxException e) {
                throw SparkQuantException.badInput(source + ": dynamic key '" + key + "' is not a valid regular expression ("
                        + e.getDescription() + ")");
            }
        }
    }

    public GptqConfig {
        dynamic = List.copyOf(dynamic);
        modulesInBlockToQuantize = modulesInBlockToQuantize == null ? null : List.copyOf(modulesInBlockToQuantize);
        quantizer = List.copyOf(quantizer);
    }

    /** Default parameters, as GPTQModel's defaults. */
    public static GptqConfig of(int bits, int groupSize, boolean sym) {
        return new GptqConfig(bits, groupSize, sym, false, false, true, 0.01, 0.0,
                sym ? Format.GPTQ : Format.GPTQ_V2, false, List.of(), null, List.of());
    }

    public ModuleParams params() {
        return new ModuleParams(bits, groupSize, sym, descAct);
    }

    /**
     * The parameters of a module, or empty when it is not quantized (a {@code -:} rule, or absent from
     * modules_in_block_to_quantize). {@code source} names the config in errors.
     */
    public Optional<ModuleParams> paramsFor(String module, String source) {
        if (modulesInBlockToQuantize != null && modulesInBlockToQuantize.stream().noneMatch(module::contains)) {
            return Optional.empty();
        }
        for (DynamicRule rule : dynamic) {
            if (rule.exclude() && rule.matches(module, source)) {
                return Optional.empty();
            }
        }
        for (DynamicRule rule : dynamic) {
            if (!rule.exclude() && rule.matches(module, source)) {
                return Optional.of(new ModuleParams(
                        rule.bits() != null ? rule.bits() : bits,
                        rule.groupSize() != null ? rule.groupSize() : groupSize,
                        rule.sym() != null ? rule.sym() : sym,
                        rule.descAct() != null ? rule.descAct() : descAct));
            }
        }
        return Optional.of(params());
    }

    public GptqConfig withDynamic(List<DynamicRule> rules) {
        return new GptqConfig(bits, groupSize, sym, descAct, staticGroups, trueSequential, dampPercent, mse, format,
                lmHead, rules, modulesInBlockToQuantize, quantizer);
    }

    public GptqConfig withFormat(Format f) {
        return new GptqConfig(bits, groupSize, sym, descAct, staticGroups, trueSequential, dampPercent, mse, f, lmHead,
                dynamic, modulesInBlockToQuantize, quantizer);
    }

    public GptqConfig withQuantizer(List<String> q) {
        return new GptqConfig(bits, groupSize, sym, descAct, staticGroups, trueSequential, dampPercent, mse, format,
                lmHead, dynamic, modulesInBlockToQuantize, q);
    }

    public GptqConfig withOptions(boolean descAct, boolean staticGroups, boolean trueSequential, double dampPercent,
            double mse) {
        return new GptqConfig(bits, groupSize, sym, descAct, staticGroups, trueSequential, dampPercent, mse, format,
                lmHead, dynamic, modulesInBlockToQuantize, quantizer);
    }

    /**
     * The JSON written to {@code quantize_config.json} and {@code config.json["quantization_config"]}: AutoGPTQ's
     * keys plus GPTQModel's {@code lm_head}, {@code dynamic}, {@code pack_dtype} and {@code meta}.
     */
    public ObjectNode toJson() {
        ObjectNode o = new ObjectMapper().createObjectNode();
        o.put("quant_method", "gptq");
        o.put("bits", bits);
        o.put("group_size", groupSize);
        o.put("desc_act", descAct);
        o.put("sym", sym);
        o.put("true_sequential", trueSequential);
        o.put("damp_percent", dampPercent);
        o.put("static_groups", staticGroups);
        o.put("checkpoint_format", format.id());
        o.put("pack_dtype", "int32");
        o.put("lm_head", lmHead);
        if (modulesInBlockToQuantize != null) {
            ArrayNode list = o.putArray("modules_in_block_to_quantize").addArray();
            modulesInBlockToQuantize.forEach(list::add);
        }
        ObjectNode dyn = o.putObject("dynamic");
        for (DynamicRule r : dynamic) {
            ObjectNode v = dyn.putObject(r.key());
            if (r.bits() != null) {
                v.put("bits", r.bits());
            }
            if (r.groupSize() != null) {
                v.put("group_size", r.groupSize());
            }
            if (r.sym() != null) {
                v.put("sym", r.sym());
            }
            if (r.descAct() != null) {
                v.put("desc_act", r.descAct());
            }
        }
        ObjectNode meta = o.putObject("meta");
        ArrayNode q = meta.putArray("quantizer");
        quantizer.forEach(q::add);
        meta.put("damp_percent", dampPercent);
        meta.put("static_groups", staticGroups);
        meta.put("true_sequential", trueSequential);
        meta.put("mse", mse);
        meta.put("act_group_aware", false);
        return o;
    }

    /**
     * Parses a quantization config as AutoGPTQ / GPTQModel do: synonyms {@code w_bit}→bits,
     * {@code q_group_size}→group_size, {@code format}→checkpoint_format; missing sym means true, missing
     * checkpoint_format means gptq (v1). Anything a GPTQ reader cannot honour is a one-line error naming
     * {@code source}.
     */
    public static GptqConfig parse(JsonNode node, String source) {
        if (node == null || !node.isObject()) {
            throw bad(source, "quantization config is not a JSON object");
        }
        String method = text(node, "quant_method", source, "gptq").toLowerCase(Locale.ROOT);
        if (!method.equals("gptq")) {
            throw bad(source, "quant_method '" + method + "' is not supported (only gptq)");
        }
        if (bool(node, "is_marlin_format", source, false)) {
            throw bad(source, "is_marlin_format=true: Marlin-repacked checkpoints are not supported");
        }
        JsonNode bitsNode = first(node, "bits", "w_bit");
        if (bitsNode == null) {
            throw bad(source, "missing bits");
        }
        int bits = integer(bitsNode, "bits", source);
        if (!GptqPacking.supported(bits)) {
            throw bad(source, "bits " + bits + " is not supported (2, 3, 4, 8)");
        }
        JsonNode groupNode = first(node, "group_size", "q_group_size");
        int groupSize = groupNode == null ? -1 : integer(groupNode, "group_size", source);
        if (groupSize != -1 && groupSize <= 0) {
            throw bad(source, "group_size must be -1 or positive, got " + groupSize);
        }
        String formatId = node.has("checkpoint_format") && !node.get("checkpoint_format").isNull()
                ? text(node, "checkpoint_format", source, "gptq") : text(node, "format", source, "gptq");
        Format format = Format.parse(formatId).orElseThrow(() -> bad(source, "checkpoint_format '" + formatId
                + "' is not supported (gptq, gptq_v2)"));
        String packDtype = text(node, "pack_dtype", source, "int32");
        if (!packDtype.equals("int32")) {
            throw bad(source, "pack_dtype '" + packDtype + "' is not supported (only int32)");
        }
        List<DynamicRule> rules = new ArrayList<>();
        JsonNode dyn = node.get("dynamic");
        if (dyn != null && !dyn.isNull()) {
            if (!dyn.isObject()) {
                throw bad(source, "dynamic must be an object of regex → overrides");
            }
            for (Iterator<Map.Entry<String, JsonNode>> it = dyn.fields(); it.hasNext(); ) {
                Map.Entry<String, JsonNode> e = it.next();
                rules.add(rule(e.getKey(), e.getValue(), source));
            }
        }
        List<String> inBlock = null;
        JsonNode mib = node.get("modules_in_block_to_quantize");
        if (mib != null && !mib.isNull()) {
            inBlock = new ArrayList<>();
            flatten(mib, inBlock, source);
        }
        List<String> quantizer = new ArrayList<>();
        JsonNode meta = node.get("meta");
        if (meta != null && meta.isObject() && meta.has("quantizer")) {
            JsonNode q = meta.get("quantizer");
            if (q.isArray()) {
                q.forEach(v -> quantizer.add(v.asText()));
            } else if (!q.isNull()) {
                quantizer.add(q.asText());
            }
        }
        return new GptqConfig(bits, groupSize,
                bool(node, "sym", source, true),
                bool(node, "desc_act", source, false),
                bool(node, "static_groups", source, false),
                bool(node, "true_sequential", source, true),
                number(node, "damp_percent", source, 0.01),
                meta != null && meta.isObject() ? number(meta, "mse", source, 0.0) : 0.0,
                format,
                bool(node, "lm_head", source, false),
                rules, inBlock, quantizer);
    }

    private static DynamicRule rule(String key, JsonNode value, String source) {
        boolean exclude = key.startsWith("-:");
        String regex = exclude || key.startsWith("+:") ? key.substring(2) : key;
        try {
            Pattern.compile(regex);
        } catch (PatternSyntaxException e) {
            throw bad(source, "dynamic key '" + key + "' is not a valid regular expression (" + e.getDescription() + ")");
        }
        if (value != null && !value.isNull() && !value.isObject()) {
            throw bad(source, "dynamic['" + key + "'] must be an object");
        }
        if (exclude || value == null || value.isNull()) {
            return new DynamicRule(key, exclude, null, null, null, null);
        }
        Integer bits = null;
        if (value.has("bits")) {
            bits = integer(value.get("bits"), "dynamic['" + key + "'].bits", source);
            if (!GptqPacking.supported(bits)) {
                throw bad(source, "dynamic['" + key + "'].bits " + bits + " is not supported (2, 3, 4, 8)");
            }
        }
        Integer group = null;
        if (value.has("group_size")) {
            group = integer(value.get("group_size"), "dynamic['" + key + "'].group_size", source);
            if (group != -1 && group <= 0) {
                throw bad(source, "dynamic['" + key + "'].group_size must be -1 or positive, got " + group);
            }
        }
        Boolean sym = value.has("sym") ? bool(value, "sym", source, true) : null;
        Boolean descAct = value.has("desc_act") ? bool(value, "desc_act", source, false) : null;
        return new DynamicRule(key, false, bits, group, sym, descAct);
    }

    private static void flatten(JsonNode node, List<String> out, String source) {
        if (node.isArray()) {
            node.forEach(n -> flatten(n, out, source));
        } else if (node.isTextual()) {
            out.add(node.textValue());
        } else {
            throw bad(source, "modules_in_block_to_quantize must be a list of module names");
        }
    }

    private static JsonNode first(JsonNode node, String key, String synonym) {
        JsonNode v = node.get(key);
        if (v == null || v.isNull()) {
            v = node.get(synonym);
        }
        return v == null || v.isNull() ? null : v;
    }

    private static int integer(JsonNode v, String key, String source) {
        if (!v.isIntegralNumber() || !v.canConvertToInt()) {
            throw bad(source, key + " must be an integer, got " + v);
        }
        return v.intValue();
    }

    private static boolean bool(JsonNode node, String key, String source, boolean fallback) {
        JsonNode v = node.get(key);
        if (v == null || v.isNull()) {
            return fallback;
        }
        if (!v.isBoolean()) {
            throw bad(source, key + " must be true or false, got " + v);
        }
        return v.booleanValue();
    }

    private static double number(JsonNode node, String key, String source, double fallback) {
        JsonNode v = node.get(key);
        if (v == null || v.isNull()) {
            return fallback;
        }
        if (!v.isNumber()) {
            throw bad(source, key + " must be a number, got " + v);
        }
        return v.doubleValue();
    }

    private static String text(JsonNode node, String key, String source, String fallback) {
        JsonNode v = node.get(key);
        if (v == null || v.isNull()) {
            return fallback;
        }
        if (!v.isTextual()) {
            throw bad(source, key + " must be a string, got " + v);
        }
        return v.textValue();
    }

    private static SparkQuantException bad(String source, String problem) {
        return SparkQuantException.badInput(source + ": " + problem);
    }
}
