package org.sparkquant.format.gguf;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;
import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.sparkquant.SparkQuantException;
import org.sparkquant.cli.CliRun;
import org.sparkquant.io.Storage;
import org.sparkquant.model.ModelConfig;
import org.sparkquant.nn.CausalLM;
import org.sparkquant.nn.Perplexity;
import org.sparkquant.nn.PerplexityEvaluator;
import org.sparkquant.spark.ExecutorCache;
import org.sparkquant.spark.ModelSource;
import org.sparkquant.spark.Progress;
import org.sparkquant.spark.SparkEvaluator;
import org.sparkquant.testing.TestPaths;
import org.sparkquant.testing.TestSpark;
import org.sparkquant.tokenizer.TextTokenizer;

/**
 * GGUF files as evaluation input: the config a GGUF file describes, its dequantized tensors in the Java forward pass
 * (perplexity of an F32 export equal to the checkpoint's, quantized ones worse in the expected order), the tokenizer
 * rebuilt from its vocabulary, Spark evaluation through {@code ModelSource.gguf}, and {@code sparkquant eval --model
 * file.gguf}.
 */
class GgufEvalTest {
    @TempDir
    Path tmp;

    @Test
    void configRoundTripsThroughTheFile() {
        for (String kind : GgufTestModels.ALL) {
            Path model = GgufTestModels.write(tmp, kind);
            ModelConfig hf = ModelConfig.load(Storage.local(), model.toString());
            Path f = GgufLlamaCppTest.export(model, LlamaFileType.Q8_0, tmp);
            try (GgufModel g = GgufModel.open(Storage.local(), f.toString())) {
                ModelConfig c = g.config();
                assertEquals(GgufNames.architecture(hf.modelType()), c.modelType(), kind);
                assertEquals(List.of(hf.hiddenSize(), hf.intermediateSize(), hf.numLayers(), hf.numHeads(),
                        hf.numKvHeads(), hf.headDim(), hf.vocabSize(), hf.maxPositionEmbeddings()),
                        List.of(c.hiddenSize(), c.intermediateSize(), c.numLayers(), c.numHeads(), c.numKvHeads(),
                                c.headDim(), c.vocabSize(), c.maxPositionEmbeddings()), kind);
                assertEquals(List.of(hf.tieWordEmbeddings(), hf.attentionBias(), hf.attentionOutputBias(),
                        hf.mlpBias(), hf.qkNorm()), List.of(c.tieWordEmbeddings(), c.attentionBias(),
                        c.attentionOutputBias(), c.mlpBias(), c.qkNorm()), kind);
                assertEquals((float) hf.rmsNormEps(), (float) c.rmsNormEps(), kind);
                assertEquals(LlamaFileType.Q8_0, g.fileType());
                double[] a = hf.rope().inverseFrequencies(hf.headDim());
                double[] b = c.rope().inverseFrequencies(c.headDim());
                for (int i = 0; i < a.length; i++) {
                    assertEquals(a[i], b[i], 1e-6 * a[i], kind + " inverse frequency " + i);
                }
                assertEquals(hf.rope().type().equals("llama3") ? "factors" : hf.rope().type(), c.rope().type());
            }
        }
    }

    @Test
    void f32LogitsEqualTheCheckpointsAndTokenizersAgree() {
        for (String kind : GgufTestModels.ALL) {
            Path model = GgufTestModels.write(tmp, kind);
            Path f = GgufLlamaCppTest.export(model, LlamaFileType.F32, tmp);
            List<int[]> seqs;
            try (TextTokenizer hf = TextTokenizer.load(Storage.local(), model.toString());
                    GgufModel g = GgufModel.open(Storage.local(), f.toString());
                    TextTokenizer fromGguf = g.tokenizer().open(null)) {
                int[] ids = hf.encode(GgufLlamaCppTest.TEXT);
                assertArrayEquals(ids, fromGguf.encode(GgufLlamaCppTest.TEXT), kind);
                assertEquals(hf.addsBos(), fromGguf.addsBos(), kind);
                seqs = List.of(Arrays.copyOf(ids, 40), Arrays.copyOfRange(ids, 10, 27));
            }
            float[] expected;
            float[] actual;
            try (CausalLM lm = CausalLM.open(Storage.local(), model.toString())) {
                expected = lm.logits(seqs).dup().data().asFloat();
            }
            try (GgufModel g = GgufModel.open(Storage.local(), f.toString());
                    CausalLM lm = CausalLM.of(g.config(), g.tensors(), false)) {
                actual = lm.logits(seqs).dup().data().asFloat();
            }
            if (kind.equals("llama3")) {
                // Llama 3 RoPE runs from rope_freqs factors: the same angles up to float rounding
                assertEquals(0, GgufLlamaCppTest.maxDiff(expected, actual), 1e-4, kind);
            } else {
                assertArrayEquals(expected, actual, kind + ": the same weights through the same forward pass");
            }
        }
    }

    @Test
    @Tag("slow")
    void devModelPerplexityByFileType() throws IOException {
        Path model = TestPaths.shared("models/dev-llama2-26m");
        String text = Files.readString(TestPaths.shared("text/eval.txt"), StandardCharsets.UTF_8);
        text = text.lines().filter(l -> !l.isBlank()).limit(200).collect(Collectors.joining("\n\n"));
        int[] ids;
        try (TextTokenizer t = TextTokenizer.load(Storage.local(), model.toString())) {
            ids = t.encode(text);
        }
        List<int[]> windows = PerplexityEvaluator.windows(ids, 256, 6);
        assertEquals(6, windows.size());
        double hf;
        try (CausalLM lm = CausalLM.open(Storage.local(), model.toString())) {
            hf = new PerplexityEvaluator(lm).evaluate(windows).ppl();
        }
        Map<LlamaFileType, Double> ppl = new LinkedHashMap<>();
        for (LlamaFileType type : List.of(LlamaFileType.F32, LlamaFileType.Q8_0, LlamaFileType.Q6_K,
                LlamaFileType.Q4_K_M)) {
            Path f = GgufLlamaCppTest.export(model, type, tmp);
            try (GgufModel g = GgufModel.open(Storage.local(), f.toString())) {
                try (TextTokenizer t = g.tokenizer().open(null)) {
                    assertArrayEquals(ids, t.encode(text), "the GGUF vocabulary tokenizes like tokenizer.json");
                }
                try (CausalLM lm = CausalLM.of(g.config(), g.tensors(), false)) {
                    ppl.put(type, new PerplexityEvaluator(lm).evaluate(windows).ppl());
                }
            }
            Files.delete(f);
        }
        System.out.printf("dev-llama2-26m, eval.txt, 6 windows of 256: HF %.4f, %s%n", hf, ppl);
        assertEquals(hf, ppl.get(LlamaFileType.F32), 1e-5 * hf, "F32 GGUF = checkpoint");
        assertEquals(hf, ppl.get(LlamaFileType.Q8_0), 0.01 * hf, "Q8_0 is close");
        assertTrue(ppl.get(LlamaFileType.Q8_0) < ppl.get(LlamaFileType.Q4_K_M), ppl.toString());
        assertTrue(ppl.get(LlamaFileType.Q6_K) < ppl.get(LlamaFileType.Q4_K_M), ppl.toString());
        assertTrue(ppl.get(LlamaFileType.Q4_K_M) < 1.1 * hf, ppl.toString());
    }

    @Test
    @Tag("slow")
    void quantizedNllMatchesLlamaCpp() {
        LlamaCpp llama = LlamaCpp.require();
        Path model = TestPaths.shared("models/dev-llama2-26m");
        int[] ids;
        try (TextTokenizer t = TextTokenizer.load(Storage.local(), model.toString())) {
            ids = Arrays.copyOf(t.encode(String.join("\n\n", java.util.Collections.nCopies(8,
                    GgufLlamaCppTest.TEXT))), 2 * 128);
        }
        for (LlamaFileType type : List.of(LlamaFileType.Q4_K_M, LlamaFileType.Q4_0)) {
            Path f = GgufLlamaCppTest.export(model, type, tmp);
            double[] theirs = llama.nll(f, ids, 128);
            Perplexity ours;
            try (GgufModel g = GgufModel.open(Storage.local(), f.toString());
                    CausalLM lm = CausalLM.of(g.config(), g.tensors(), false)) {
                ours = new PerplexityEvaluator(lm).evaluate(PerplexityEvaluator.windows(ids, 128, 0));
            }
            double sum = Arrays.stream(theirs).sum();
            // llama.cpp multiplies quantized weights with 8-bit-quantized activations; Java with the dequantized
            // weights in fp32: the NLL agrees to a fraction of a percent, not exactly
            assertEquals(sum, ours.nll(), 3e-3 * sum, type.name());
        }
    }

    @Test
    @Tag("slow")
    void sparkEvaluatesGgufFilesLikeTheLocalEvaluator() {
        Path model = GgufTestModels.write(tmp, "qwen3");
        Path f = GgufLlamaCppTest.export(model, LlamaFileType.Q4_K_M, tmp);
        ModelSource source = ModelSource.of(Storage.local(), f.toString());
        assertEquals(ModelSource.Kind.GGUF, source.kind());
        List<int[]> windows;
        try (TextTokenizer t = source.tokenizer(null)) {
            windows = PerplexityEvaluator.windows(t.encode(GgufImatrixTest.calibrationText()), 48, 0);
        }
        assertTrue(windows.size() >= 4, "windows: " + windows.size());
        Perplexity local;
        try (GgufModel g = GgufModel.open(Storage.local(), f.toString());
                CausalLM lm = CausalLM.of(g.config(), g.tensors(), false)) {
            local = new PerplexityEvaluator(lm).evaluate(windows);
        }
        ExecutorCache.clear();
        SparkSession session = TestSpark.local(2);
        Perplexity spark;
        try {
            spark = SparkEvaluator.evaluate(JavaSparkContext.fromSparkContext(session.sparkContext()), source,
                    windows, 2, new Progress(null, new java.io.PrintWriter(System.err, true), "t", 2, 0));
        } finally {
            session.stop();
            ExecutorCache.clear();
        }
        assertEquals(local.tokens(), spark.tokens());
        assertEquals(local.nll(), spark.nll(), 1e-6 * Math.abs(local.nll()));
        // a directory is still a dense checkpoint
        assertEquals(ModelSource.Kind.DENSE, ModelSource.of(Storage.local(), model.toString()).kind());
    }

    @Test
    @Tag("slow")
    void evalCommandTakesAGgufFile() throws IOException {
        Path model = GgufTestModels.write(tmp, "llama3");
        Path f = GgufLlamaCppTest.export(model, LlamaFileType.Q8_0, tmp);
        Path text = tmp.resolve("text.txt");
        Files.writeString(text, GgufImatrixTest.calibrationText());
        CliRun run = CliRun.of("eval", "--model", f.toString(), "--data", text.toString(), "--seq-len",
                "32", "--max-windows", "3", "--conf", "spark.master=local[1]", "--conf", "spark.ui.enabled=false");
        assertEquals(0, run.exitCode(), run.err());
        String last = run.lastLine();
        assertTrue(last.startsWith("perplexity: "), run.out());
        double ppl = Double.parseDouble(last.substring("perplexity: ".length()));
        List<int[]> windows;
        try (GgufModel g = GgufModel.open(Storage.local(), f.toString()); TextTokenizer t = g.tokenizer().open(null)) {
            String joined = Files.readString(text).lines().filter(l -> !l.isBlank()).collect(Collectors.joining("\n\n"));
            windows = PerplexityEvaluator.windows(t.encode(joined), 32, 3);
        }
        try (GgufModel g = GgufModel.open(Storage.local(), f.toString());
                CausalLM lm = CausalLM.of(g.config(), g.tensors(), false)) {
            assertEquals(new PerplexityEvaluator(lm).evaluate(windows).ppl(), ppl, 1e-3 * ppl);
        }
    }

    @Test
    void storageReadsAndBadFiles() throws IOException {
        Path model = GgufTestModels.write(tmp, "qwen2");
        Path f = GgufLlamaCppTest.export(model, LlamaFileType.Q6_K, tmp);
        try (GgufReader viaPath = GgufReader.open(f);
                GgufReader viaStorage = GgufReader.open(Storage.local(), f.toUri().toString())) {
            assertEquals(viaPath.metadata(), viaStorage.metadata());
            for (GgufTensorInfo t : viaPath.tensors()) {
                assertArrayEquals(viaPath.readTensor(t.name()), viaStorage.readTensor(t.name()), t.name());
            }
        }
        byte[] bytes = Files.readAllBytes(f);
        Path cut = tmp.resolve("cut.gguf");
        Files.write(cut, Arrays.copyOf(bytes, bytes.length - 1000));
        SparkQuantException e = assertThrows(SparkQuantException.class,
                () -> GgufModel.open(Storage.local(), cut.toString()));
        assertTrue(e.getMessage().contains("cut.gguf") && e.getMessage().contains("truncated"), e.getMessage());
        Path notGguf = model.resolve("config.json");
        e = assertThrows(SparkQuantException.class, () -> ModelSource.gguf(Storage.local(), notGguf.toString()));
        assertTrue(e.getMessage().contains("not a GGUF file"), e.getMessage());
    }
}
