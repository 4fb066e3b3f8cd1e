package org.sparkquant.format.gguf;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.sparkquant.testing.TestPaths;

/**
 * Per-tensor types against llama.cpp itself: fixtures/gguf/recipes.tsv holds, for eight model shapes (the
 * dev-llama2-26m shape, Llama-2-7B MHA, Llama-3-8B GQA 4 with rope_freqs, a 70B with 80 layers, stories260K with
 * FFN 172 and hidden 64, a hidden-320 model, Qwen2-0.5B with biases and hidden 896, Qwen3-0.6B with q/k norms) and
 * every file type, the type libllama's {@code llama_quant_compute_types} chose (python/gguf_fixtures.py, prebuilt
 * llama.cpp from the npm package @node-llama-cpp/linux-x64 3.22.1). Branches that call cannot reach (imatrix,
 * overrides) are checked against rules read from src/llama-quant.cpp.
 */
class GgufRecipeTest {
    record Fixture(GgufModelDesc model, List<GgufModelDesc.Shape> sortedTensors, Map<String, List<String>> types) {}

    static Map<String, Fixture> load() throws IOException {
        Map<String, String[]> models = new LinkedHashMap<>();
        Map<String, List<GgufModelDesc.Shape>> tensors = new LinkedHashMap<>();
        Map<String, Map<String, List<String>>> types = new LinkedHashMap<>();
        for (String line : Files.readAllLines(TestPaths.fixtures("gguf").resolve("recipes.tsv"))) {
            if (line.startsWith("#")) {
                continue;
            }
            String[] p = line.split("\t");
            switch (p[0]) {
                case "model":
                    models.put(p[1], p);
                    break;
                case "tensors": {
                    List<GgufModelDesc.Shape> l = new ArrayList<>();
                    for (String t : p[2].split(" ")) {
                        String[] nv = t.split(":");
                        String[] dims = nv[1].split(",");
                        long[] ne = new long[dims.length];
                        for (int i = 0; i < dims.length; i++) {
                            ne[i] = Long.parseLong(dims[i]);
                        }
                        l.add(new GgufModelDesc.Shape(nv[0], ne));
                    }
                    tensors.put(p[1], l);
                    break;
                }
                case "types":
                    types.computeIfAbsent(p[1], k -> new LinkedHashMap<>()).put(p[2], List.of(p[3].split(" ")));
                    break;
                default:
                    throw new IllegalStateException(line);
            }
        }
        Map<String, Fixture> out = new LinkedHashMap<>();
        for (Map.Entry<String, String[]> e : models.entrySet()) {
            String[] p = e.getValue();
            GgufModelDesc d = new GgufModelDesc(p[2], Integer.parseInt(p[3]), Integer.parseInt(p[4]),
                    Integer.parseInt(p[5]), Integer.parseInt(p[6]), Integer.parseInt(p[7]), Integer.parseInt(p[8]),
                    Boolean.parseBoolean(p[9]), tensors.get(e.getKey()));
            out.put(e.getKey(), new Fixture(d, tensors.get(e.getKey()), types.get(e.getKey())));
        }
        return out;
    }

    @Test
    void matchesLlamaCppForEveryModelAndFileType() throws IOException {
        Map<String, Fixture> fx = load();
        assertEquals(8, fx.size());
        int compared = 0;
        Set<String> differs = new HashSet<>();
        for (Map.Entry<String, Fixture> e : fx.entrySet()) {
            Fixture f = e.getValue();
            assertEquals(LlamaFileType.values().length, f.types().size(), e.getKey() + " covers every file type");
            for (Map.Entry<String, List<String>> t : f.types().entrySet()) {
                LlamaFileType ft = LlamaFileType.parse(t.getKey());
                List<GgufTensor> plan = GgufRecipe.plan(f.model(), ft);
                assertEquals(f.sortedTensors().size(), plan.size());
                for (int i = 0; i < plan.size(); i++) {
                    assertEquals(f.sortedTensors().get(i).name(), plan.get(i).name(), "llama.cpp visiting order");
                    String expected = t.getValue().get(i);
                    if (!expected.equals(plan.get(i).type().name())) {
                        differs.add(e.getKey() + " " + ft + " " + plan.get(i).name() + ": llama.cpp " + expected
                                + ", sparkquant " + plan.get(i).type());
                    }
                    compared++;
                }
            }
        }
        assertTrue(differs.isEmpty(), differs.size() + " differences:\n" + String.join("\n", differs));
        assertTrue(compared > 30000, "compared " + compared);
    }

    @Test
    void standardTensorListsMatchTheFixtureModels() throws IOException {
        for (Map.Entry<String, Fixture> e : load().entrySet()) {
            GgufModelDesc m = e.getValue().model();
            boolean rope = m.tensors().stream().anyMatch(s -> s.name().equals("rope_freqs.weight"));
            int headDim = (int) (m.tensors().stream().filter(s -> s.name().equals("blk.0.attn_q.weight"))
                    .findFirst().orElseThrow().ne()[1] / m.nHead());
            GgufModelDesc std = GgufModelDesc.standard(m.architecture(), m.nLayer(), m.nHead(), m.nHeadKv(), m.nEmbd(),
                    m.nFf(), m.vocab(), m.tiedEmbeddings(), headDim, rope);
            assertEquals(names(m), names(std), e.getKey());
            for (LlamaFileType ft : LlamaFileType.values()) {
                assertEquals(GgufRecipe.plan(m, ft), GgufRecipe.plan(std, ft), e.getKey() + " " + ft);
            }
        }
    }

    private static Set<String> names(GgufModelDesc m) {
        Set<String> s = new HashSet<>();
        m.tensors().forEach(t -> s.add(t.name() + java.util.Arrays.toString(t.ne())));
        return s;
    }

    /** llama-quant.cpp: with an imatrix, Q4_0/Q5_0 put ffn_down of the first n/8 layers in Q4_1/Q5_1. */
    @Test
    void imatrixBumpsEarlyFfnDownForQ40AndQ50() {
        GgufModelDesc m = GgufModelDesc.standard("llama", 32, 32, 8, 4096, 14336, 128256, false, 128, true);
        GgufRecipe.Options im = GgufRecipe.Options.DEFAULT.withImatrix(true);
        for (LlamaFileType ft : List.of(LlamaFileType.Q4_0, LlamaFileType.Q5_0)) {
            GgmlType bumped = ft == LlamaFileType.Q4_0 ? GgmlType.Q4_1 : GgmlType.Q5_1;
            for (GgufTensor t : GgufRecipe.plan(m, ft, im)) {
                int layer = GgufRecipe.layerOf(t.name());
                if (t.name().endsWith("ffn_down.weight")) {
                    assertEquals(layer < 4 ? bumped : ft.defaultType(), t.type(), t.name());
                }
            }
            // without an imatrix nothing changes
            GgufRecipe.plan(m, ft).stream().filter(t -> t.name().endsWith("ffn_down.weight"))
                    .forEach(t -> assertEquals(ft.defaultType(), t.type()));
        }
        // the k-quant rules do not depend on the imatrix
        assertEquals(GgufRecipe.plan(m, LlamaFileType.Q4_K_M), GgufRecipe.plan(m, LlamaFileType.Q4_K_M, im));
    }

    @Test
    void overridesPureAndOutputTypes() {
        GgufModelDesc m = GgufModelDesc.standard("llama", 3, 8, 4, 512, 1536, 32000, true, 64, false);
        Map<String, GgmlType> pure = types(GgufRecipe.plan(m, LlamaFileType.Q4_K_M,
                new GgufRecipe.Options(false, true, null, null, List.of())));
        assertEquals(GgmlType.Q4_K, pure.get("blk.2.attn_v.weight")); // Q6_K without --pure
        assertEquals(GgmlType.Q4_K, pure.get("token_embd.weight")); // the tied output rule is a rule too
        assertEquals(GgmlType.F32, pure.get("blk.0.attn_norm.weight"));
        Map<String, GgmlType> ov = types(GgufRecipe.plan(m, LlamaFileType.Q4_K_M, new GgufRecipe.Options(false, false,
                GgmlType.Q8_0, GgmlType.Q4_0, List.of(new GgufRecipe.TypeOverride(Pattern.compile("ffn_up"),
                        GgmlType.Q8_0)))));
        assertEquals(GgmlType.Q4_0, ov.get("token_embd.weight")); // --token-embedding-type wins for token_embd
        assertEquals(GgmlType.Q8_0, ov.get("blk.1.ffn_up.weight"));
        assertEquals(GgmlType.Q4_K, ov.get("blk.1.ffn_gate.weight"));
        // an override on attn_v keeps the counter still, so the next attn_v is layer index 0 for the rule
        Map<String, GgmlType> first = types(GgufRecipe.plan(m, LlamaFileType.Q3_K_M, new GgufRecipe.Options(false,
                false, null, null, List.of(new GgufRecipe.TypeOverride(Pattern.compile("blk\\.0\\.attn_v"),
                        GgmlType.Q8_0)))));
        assertEquals(GgmlType.Q8_0, first.get("blk.0.attn_v.weight"));
        assertEquals(GgmlType.Q5_K, first.get("blk.1.attn_v.weight"));
        assertEquals(GgmlType.Q5_K, first.get("blk.2.attn_v.weight")); // i_attention_wv = 1 < 2
        assertEquals(GgmlType.Q4_K, types(GgufRecipe.plan(m, LlamaFileType.Q3_K_M)).get("blk.2.attn_v.weight"));
    }

    @Test
    void parsesFileTypeNames() {
        assertEquals(LlamaFileType.Q4_K_M, LlamaFileType.parse("Q4_K_M"));
        assertEquals(LlamaFileType.Q4_K_M, LlamaFileType.parse("q4_k_m"));
        assertEquals(LlamaFileType.Q8_0, LlamaFileType.parse("MOSTLY_Q8_0"));
        assertEquals(LlamaFileType.F32, LlamaFileType.parse("all_f32"));
        assertEquals(15, LlamaFileType.Q4_K_M.id());
        assertEquals(GgmlType.Q3_K, LlamaFileType.Q3_K_L.defaultType());
        org.sparkquant.SparkQuantException e = org.junit.jupiter.api.Assertions.assertThrows(
                org.sparkquant.SparkQuantException.class, () -> LlamaFileType.parse("Q4_K_X"));
        assertTrue(e.getMessage().contains("Q4_K_X") && e.getMessage().contains("Q4_K_M"));
    }

    private static Map<String, GgmlType> types(List<GgufTensor> plan) {
        Map<String, GgmlType> m = new LinkedHashMap<>();
        plan.forEach(t -> m.put(t.name(), t.type()));
        return m;
    }
}
