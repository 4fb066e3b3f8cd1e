package org.sparkquant.format.gguf;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.sparkquant.io.Storage;
import org.sparkquant.testing.TestPython;
import org.sparkquant.tokenizer.TextTokenizer;

/**
 * Mixture-of-experts models (Mixtral, Qwen2-MoE, Qwen3-MoE; {@link GgufMoeModels}) as GGUF, against llama.cpp
 * itself: the F32/F16/BF16 exports equal what convert_hf_to_gguf.py writes (metadata, stacked 3-D expert tensors,
 * F32 routers, shared expert); llama-quantize run on the converter's own F32 file writes the same tensors (names,
 * types, bytes) and metadata as the direct export of each file type, so the recipe's MoE rules and the per-expert
 * block quantization are llama.cpp's, also with a per-expert imatrix; and llama.cpp loads the exports and computes
 * the logits transformers computes.
 * Skipped without python (torch, transformers, gguf) or the llama.cpp source and libraries.
 */
@Tag("slow")
class GgufMoeTest {
    static final List<LlamaFileType> QUANTIZED = List.of(LlamaFileType.Q4_0, LlamaFileType.Q4_K_M,
            LlamaFileType.Q6_K, LlamaFileType.Q8_0);

    @TempDir
    Path tmp;

    /** F16 / BF16 exports equal the converter's (F32 is checked with every architecture below). */
    @Test
    void halfPrecisionExportsEqualTheConverters() throws IOException {
        Path python = GgufConverterParityTest.requireConverter();
        GgufConverterParityTest.check(python, GgufMoeModels.write(tmp, "mixtral"), LlamaFileType.BF16, tmp, null);
        GgufConverterParityTest.check(python, GgufMoeModels.write(tmp, "qwen2moe"), LlamaFileType.F16, tmp, null);
    }

    @Test
    void llamaQuantizeOfTheConvertersFileEqualsTheDirectExport() throws IOException {
        Path python = GgufConverterParityTest.requireConverter();
        LlamaCpp llama = LlamaCpp.require();
        for (String kind : GgufMoeModels.ALL) {
            Path model = GgufMoeModels.write(tmp, kind);
            Path converted = tmp.resolve(kind + "-converter-F32.gguf");
            Path f32 = GgufConverterParityTest.check(python, model, LlamaFileType.F32, tmp, converted);
            try (GgufReader r = GgufReader.open(f32)) {
                int n = GgufMoeModels.experts(kind);
                String arch = r.get("general.architecture").asString();
                assertEquals(n, r.get(arch + ".expert_count").asLong(), kind);
                GgufTensorInfo gate = r.tensor("blk.1.ffn_gate_exps.weight");
                assertArrayEquals(new long[] {GgufMoeModels.HIDDEN, GgufMoeModels.EXPERT_FF, n}, gate.ne(), kind);
                assertEquals(GgmlType.F32, r.tensor("blk.0.ffn_gate_inp.weight").type(), kind);
            }
            List<LlamaFileType> types = new java.util.ArrayList<>(QUANTIZED);
            if (kind.equals("mixtral")) {
                types.add(LlamaFileType.Q2_K); // the 8-expert attn_output rule
            }
            for (LlamaFileType type : types) {
                Path ours = GgufLlamaCppTest.export(model, type, tmp);
                Path theirs = tmp.resolve(kind + "-llama-quantize-" + type + ".gguf");
                llama.run("llama-quantize", LlamaCpp.abs(converted), LlamaCpp.abs(theirs), type.name(), "2");
                // the converter's −1000 scores of a SentencePiece-style BPE tokenizer (see GgufConverterParityTest)
                assertSameTensorsAndMetadata(ours, theirs, kind + " " + type,
                        kind.equals("mixtral") ? Set.of("tokenizer.ggml.scores") : Set.of());
                if (kind.equals("mixtral") && type == LlamaFileType.Q4_K_M) {
                    try (GgufReader r = GgufReader.open(ours)) {
                        // the 8-expert rules: attn_k and attn_v Q8_0, attn_output Q5_K
                        assertEquals(GgmlType.Q8_0, r.tensor("blk.0.attn_k.weight").type());
                        assertEquals(GgmlType.Q8_0, r.tensor("blk.1.attn_v.weight").type());
                        assertEquals(GgmlType.Q5_K, r.tensor("blk.1.attn_output.weight").type());
                        assertEquals(GgmlType.Q6_K, r.tensor("blk.1.ffn_down_exps.weight").type());
                        assertEquals(GgmlType.Q4_K, r.tensor("blk.1.ffn_up_exps.weight").type());
                    }
                }
            }
        }
    }

    @Test
    void llamaCppRunsTheExportsLikeTransformers() throws IOException {
        LlamaCpp llama = LlamaCpp.require();
        Path python = TestPython.require("torch", "transformers", "numpy");
        for (String kind : GgufMoeModels.ALL) {
            Path model = GgufMoeModels.write(tmp, kind);
            Path f32 = GgufLlamaCppTest.export(model, LlamaFileType.F32, tmp);
            Path q4 = GgufLlamaCppTest.export(model, LlamaFileType.Q4_K_M, tmp);
            int[] ids;
            int[] withBos;
            try (TextTokenizer t = TextTokenizer.load(Storage.local(), model.toString())) {
                ids = t.encodeWithoutSpecialTokens(GgufLlamaCppTest.TEXT);
                withBos = t.encode(GgufLlamaCppTest.TEXT);
            }
            assertArrayEquals(ids, llama.tokenize(f32, GgufLlamaCppTest.TEXT), kind + ": tokenization");
            int[] seq = Arrays.copyOf(withBos, Math.min(48, withBos.length));
            float[] expected = transformersLogits(python, model, seq);
            double scale = 0;
            for (float v : expected) {
                scale = Math.max(scale, Math.abs(v));
            }
            double d32 = GgufLlamaCppTest.maxDiff(expected, llama.logits(f32, seq));
            float[] quantized = llama.logits(q4, seq);
            double dq = GgufLlamaCppTest.maxDiff(expected, quantized);
            System.out.printf("%s: max |logit| %.3f, llama.cpp F32 max diff %.2e, Q4_K_M %.2e%n", kind, scale, d32,
                    dq);
            assertTrue(d32 <= 2e-4 * Math.max(1, scale), kind + ": F32 logits differ by " + d32);
            for (float v : quantized) {
                assertTrue(Float.isFinite(v), kind + ": Q4_K_M logits finite");
            }
            assertTrue(dq > d32 && dq < 0.5 * scale, kind + ": Q4_K_M differs by " + dq);
        }
    }

    /**
     * An imatrix with one slice per expert (one expert that saw no token) weighs each expert's rows with its own
     * slice, byte for byte as llama-quantize --imatrix does.
     */
    @Test
    void imatrixWeighsEachExpertLikeLlamaQuantize() throws IOException {
        LlamaCpp llama = LlamaCpp.require();
        for (String kind : GgufMoeModels.ALL) {
            Path model = GgufMoeModels.write(tmp, kind);
            int experts = GgufMoeModels.experts(kind);
            String arch = kind.equals("mixtral") ? "llama" : kind;
            java.util.SplittableRandom r = new java.util.SplittableRandom(kind.hashCode());
            GgufImatrix.Builder b = GgufImatrix.builder(48).dataset("calib.txt");
            GgufMoeModels.tensors(kind, kind.equals("mixtral") ? 556 : 432).forEach((name, shape) -> {
                if (shape.length != 2 || !name.startsWith("model.layers.") || name.endsWith("gate.weight")
                        || name.endsWith("shared_expert_gate.weight")) {
                    return; // norms, biases, routers, shared gate: no imatrix entry
                }
                boolean silent = name.contains("experts.1.");
                double[] sums = new double[(int) shape[1]];
                for (int i = 0; i < sums.length; i++) {
                    sums[i] = silent ? 0 : 1 + 50 * r.nextDouble() * r.nextDouble();
                }
                b.addHf(arch, name, experts, sums, silent ? 0 : 40 + r.nextInt(100));
            });
            GgufImatrix m = b.chunks(4).build();
            GgufImatrix.Entry down = m.entries().get("blk.1.ffn_down_exps.weight");
            assertEquals(experts, down.counts().length, kind);
            assertEquals(0L, down.counts()[1], kind);
            Path imatrix = tmp.resolve(kind + ".imatrix.gguf");
            m.write(Storage.local(), imatrix.toString());
            Path f32 = GgufLlamaCppTest.export(model, LlamaFileType.F32, tmp);
            for (LlamaFileType type : List.of(LlamaFileType.Q4_K_M, LlamaFileType.Q4_0)) {
                Path ours = tmp.resolve(kind + "-imatrix-" + type + ".gguf");
                try (org.sparkquant.io.TensorStore store = org.sparkquant.io.TensorStore.open(Storage.local(),
                        model.toString())) {
                    GgufExporter.forModel(Storage.local(), model.toString(), store, type,
                            GgufRecipe.Options.DEFAULT.withImatrix(true), GgufMetadata.Options.DEFAULT)
                            .write(Storage.local(), ours.toString(), new RtnProducer(store, m::importance));
                }
                Path theirs = tmp.resolve(kind + "-lq-imatrix-" + type + ".gguf");
                llama.run("llama-quantize", "--imatrix", LlamaCpp.abs(imatrix), LlamaCpp.abs(f32),
                        LlamaCpp.abs(theirs), type.name(), "2");
                try (GgufReader a = GgufReader.open(ours); GgufReader c = GgufReader.open(theirs)) {
                    assertEquals(a.tensors().stream().map(GgufTensorInfo::tensor).toList(),
                            c.tensors().stream().map(GgufTensorInfo::tensor).toList(), kind + " " + type);
                    for (GgufTensorInfo t : a.tensors()) {
                        assertArrayEquals(a.readTensor(t.name()), c.readTensor(t.name()), kind + " " + type + " "
                                + t.name());
                    }
                }
            }
        }
    }

    private Path ids(int[] ids) throws IOException {
        Path in = Files.createTempFile(tmp, "ids", ".bin");
        ByteBuffer b = ByteBuffer.allocate(4 * ids.length).order(ByteOrder.LITTLE_ENDIAN);
        b.asIntBuffer().put(ids);
        Files.write(in, b.array());
        return in;
    }

    private float[] transformersLogits(Path python, Path model, int[] seq) throws IOException {
        Path out = tmp.resolve("hf-logits.f32");
        TestPython.check(python, List.of("python/hf_logits.py", model.toString(), ids(seq).toString(),
                out.toString()), 600);
        byte[] b = Files.readAllBytes(out);
        float[] f = new float[b.length / 4];
        ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(f);
        return f;
    }

    /**
     * The same tensors (names, shapes, types, bytes) and metadata, except the keys only one side writes: the
     * converter's naming heuristics, and sparkquant's explicit general.alignment / add_bos_token, and the keys
     * {@code differing} known to differ.
     */
    static void assertSameTensorsAndMetadata(Path ours, Path theirs, String what, Set<String> differing) {
        try (GgufReader a = GgufReader.open(ours); GgufReader b = GgufReader.open(theirs)) {
            Set<String> keys = new HashSet<>(a.metadata().keySet());
            keys.addAll(b.metadata().keySet());
            for (String k : keys) {
                if (GgufConverterParityTest.CONVERTER_ONLY.contains(k) || k.equals("general.alignment")
                        || k.equals("tokenizer.ggml.add_bos_token") || differing.contains(k)) {
                    continue;
                }
                assertEquals(a.get(k), b.get(k), what + " " + k);
            }
            assertEquals(a.tensors().stream().map(t -> t.tensor()).toList(),
                    b.tensors().stream().map(t -> t.tensor()).toList(), what + " tensors");
            for (GgufTensorInfo t : a.tensors()) {
                assertArrayEquals(a.readTensor(t.name()), b.readTensor(t.name()), what + " " + t.name());
            }
        }
    }
}
