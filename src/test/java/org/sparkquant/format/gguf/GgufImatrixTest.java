package org.sparkquant.format.gguf;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.sparkquant.SparkQuantException;
import org.sparkquant.io.Storage;
import org.sparkquant.io.TensorStore;
import org.sparkquant.model.LinearModule;
import org.sparkquant.nn.CausalLM;
import org.sparkquant.tokenizer.TextTokenizer;

/**
 * imatrix files: layout and round trips in Java; with llama.cpp (when available) that its loader reads both formats,
 * that llama-quantize {@code --imatrix} with a Java-written file produces exactly the Java RTN-with-importance bytes,
 * and that statistics accumulated from the Java forward pass equal llama-imatrix's own on the same chunks.
 */
class GgufImatrixTest {
    @TempDir
    Path tmp;

    static GgufImatrix sample() {
        SplittableRandom r = new SplittableRandom(5);
        GgufImatrix.Builder b = GgufImatrix.builder(64).dataset("calib.txt");
        for (String t : List.of("blk.1.ffn_down.weight", "blk.0.attn_q.weight", "blk.0.ffn_down.weight")) {
            int cols = t.contains("ffn_down") ? 512 : 256;
            for (int chunk = 0; chunk < 3; chunk++) {
                double[] s = new double[cols];
                for (int i = 0; i < cols; i++) {
                    s[i] = 64 * r.nextDouble() * (1 + i % 7);
                }
                b.add(t, s, 64);
            }
        }
        return b.build();
    }

    @Test
    void builderAccumulatesAndImportanceIsTheMeanSquare() {
        GgufImatrix.Builder b = GgufImatrix.builder(4);
        b.add("blk.0.attn_q.weight", new double[] {1, 2, 3}, 2);
        b.add("blk.0.attn_q.weight", new double[] {3, 2, 1}, 3);
        b.addHessianDiagonal("blk.0.attn_k.weight", new double[] {2, 4, 6}, 10); // Σx² = diag·N/2
        b.addHf("llama", "model.layers.0.mlp.down_proj.weight", new double[] {8}, 4);
        GgufImatrix m = b.build();
        assertEquals(List.of("blk.0.attn_k.weight", "blk.0.attn_q.weight", "blk.0.ffn_down.weight"),
                List.copyOf(m.entries().keySet()));
        assertArrayEquals(new float[] {4, 4, 4}, m.entries().get("blk.0.attn_q.weight").sums());
        assertArrayEquals(new long[] {5}, m.entries().get("blk.0.attn_q.weight").counts());
        assertArrayEquals(new float[] {0.8f, 0.8f, 0.8f}, m.importance("blk.0.attn_q.weight"));
        assertArrayEquals(new float[] {1, 2, 3}, m.importance("blk.0.attn_k.weight"));
        assertNull(m.importance("output.weight"));
        assertEquals(3, m.chunkCount(), "⌈10 tokens / 4⌉");
        assertThrows(IllegalArgumentException.class, () -> b.add("blk.0.attn_q.weight", new double[2], 1));
        assertThrows(SparkQuantException.class,
                () -> GgufImatrix.builder(4).add("x", new double[] {Double.NaN}, 1).build());
    }

    @Test
    void ggufLayoutIsLlamaImatrixs() throws IOException {
        GgufImatrix m = sample();
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        m.writeGguf(out);
        try (GgufReader r = GgufReader.open(GgufSource.of(out.toByteArray()), "m.gguf")) {
            assertEquals("imatrix", r.get("general.type").asString());
            assertEquals(List.of("calib.txt"), r.get("imatrix.datasets").asStrings());
            assertEquals(GgufValueType.UINT32, r.get("imatrix.chunk_count").type());
            assertEquals(3, r.get("imatrix.chunk_count").asLong());
            assertEquals(64, r.get("imatrix.chunk_size").asLong());
            assertEquals(List.of("blk.0.attn_q.weight.in_sum2", "blk.0.attn_q.weight.counts",
                    "blk.0.ffn_down.weight.in_sum2", "blk.0.ffn_down.weight.counts", "blk.1.ffn_down.weight.in_sum2",
                    "blk.1.ffn_down.weight.counts"), r.tensors().stream().map(GgufTensorInfo::name).toList());
            assertArrayEquals(new long[] {512, 1}, r.tensor("blk.0.ffn_down.weight.in_sum2").ne());
            assertArrayEquals(new long[] {1, 1}, r.tensor("blk.0.ffn_down.weight.counts").ne());
            assertArrayEquals(new float[] {192}, r.readFloats("blk.0.ffn_down.weight.counts"));
            assertArrayEquals(m.entries().get("blk.1.ffn_down.weight").sums(),
                    r.readFloats("blk.1.ffn_down.weight.in_sum2"));
        }
        Path f = tmp.resolve("m.imatrix.gguf");
        m.write(Storage.local(), f.toString());
        GgufImatrix back = GgufImatrix.read(Storage.local(), f.toString());
        assertEquals(m.entries().keySet(), back.entries().keySet());
        for (String k : m.entries().keySet()) {
            assertArrayEquals(m.entries().get(k).sums(), back.entries().get(k).sums());
            assertArrayEquals(m.entries().get(k).counts(), back.entries().get(k).counts());
        }
        assertEquals(m.datasets(), back.datasets());
    }

    @Test
    void legacyFormatKeepsTheImportance() {
        GgufImatrix m = sample();
        Path f = tmp.resolve("m.dat");
        m.write(Storage.local(), f.toString());
        GgufImatrix back = GgufImatrix.read(Storage.local(), f.toString());
        assertEquals(m.entries().keySet(), back.entries().keySet());
        assertEquals(3, back.chunkCount());
        assertEquals(List.of("calib.txt"), back.datasets());
        for (String k : m.entries().keySet()) {
            assertArrayEquals(new long[] {3}, back.entries().get(k).counts(), "ncall = ⌈192 / 64⌉");
            float[] a = m.importance(k);
            float[] b = back.importance(k);
            for (int i = 0; i < a.length; i++) {
                assertEquals(a[i], b[i], 1e-6f * a[i], k);
            }
        }
    }

    @Test
    @Tag("slow")
    void llamaCppReadsBothFormatsAndQuantizesWithThemAsJavaDoes() throws IOException {
        LlamaCpp llama = LlamaCpp.require();
        Path model = GgufTestModels.write(tmp, "llama3");
        GgufImatrix m = forwardImatrix(model, 64, 4);
        Path gguf = tmp.resolve("java.imatrix.gguf");
        Path dat = tmp.resolve("java.imatrix.dat");
        m.write(Storage.local(), gguf.toString());
        m.write(Storage.local(), dat.toString());

        Map<String, String[]> read = entries(llama.run("llama_harness", "imatrix", LlamaCpp.abs(gguf)));
        assertEquals(m.entries().keySet(), read.keySet());
        for (Map.Entry<String, GgufImatrix.Entry> e : m.entries().entrySet()) {
            String[] f = read.get(e.getKey());
            assertEquals(e.getValue().sums().length, Integer.parseInt(f[1]));
            assertEquals(e.getValue().counts()[0], Long.parseLong(f[3]));
            assertEquals(e.getValue().sums()[0], Float.parseFloat(f[7]), 0f);
        }
        String legacy = llama.run("llama_harness", "imatrix", LlamaCpp.abs(dat));
        assertTrue(legacy.contains("legacy 1") && legacy.contains("chunk_count 4"), legacy);
        assertEquals(m.entries().keySet(), entries(legacy).keySet());

        Path f32 = GgufLlamaCppTest.export(model, LlamaFileType.F32, tmp);
        for (LlamaFileType type : List.of(LlamaFileType.Q4_K_M, LlamaFileType.Q4_0, LlamaFileType.Q2_K,
                LlamaFileType.Q6_K)) {
            Path ours = tmp.resolve("java-imatrix-" + type + ".gguf");
            try (TensorStore store = TensorStore.open(Storage.local(), model.toString())) {
                GgufExporter e = GgufExporter.forModel(Storage.local(), model.toString(), store, type,
                        GgufRecipe.Options.DEFAULT.withImatrix(true), GgufMetadata.Options.DEFAULT);
                e.write(Storage.local(), ours.toString(), new RtnProducer(store, m::importance));
            }
            Path theirs = tmp.resolve("lq-imatrix-" + type + ".gguf");
            llama.run("llama-quantize", "--imatrix", LlamaCpp.abs(type == LlamaFileType.Q4_0 ? dat : gguf),
                    LlamaCpp.abs(f32), LlamaCpp.abs(theirs), type.name(), "2");
            assertSameTensors(ours, theirs, type.name());
            try (GgufReader a = GgufReader.open(ours); GgufReader plain = GgufReader.open(
                    GgufLlamaCppTest.export(model, type, tmp))) {
                assertTrue(!Arrays.equals(a.readTensor("blk.0.ffn_gate.weight"),
                        plain.readTensor("blk.0.ffn_gate.weight")), "the importance changes the quantization");
            }
        }
    }

    @Test
    @Tag("slow")
    void javaStatisticsEqualLlamaImatrixs() throws IOException {
        LlamaCpp llama = LlamaCpp.require();
        Path model = GgufTestModels.write(tmp, "llama3");
        int ctx = 64;
        int chunks = 3;
        Path f32 = GgufLlamaCppTest.export(model, LlamaFileType.F32, tmp);
        Path text = tmp.resolve("calib.txt");
        Files.writeString(text, calibrationText());
        Path ref = tmp.resolve("ref.imatrix.gguf");
        llama.run("llama-imatrix", "-m", LlamaCpp.abs(f32), "-f", LlamaCpp.abs(text), "-o", LlamaCpp.abs(ref),
                "-c", Integer.toString(ctx), "--chunks", Integer.toString(chunks), "-t", "2", "--no-ppl",
                "-ctk", "f32", "-ctv", "f32", "-fa", "off"); // attention in fp32, as the Java forward pass
        GgufImatrix theirs = GgufImatrix.read(Storage.local(), ref.toString());
        GgufImatrix ours = forwardImatrix(model, ctx, chunks);
        assertEquals(theirs.entries().keySet(), ours.entries().keySet());
        assertEquals(theirs.chunkCount(), ours.chunkCount());
        assertEquals(theirs.chunkSize(), ours.chunkSize());
        for (String k : theirs.entries().keySet()) {
            assertArrayEquals(theirs.entries().get(k).counts(), ours.entries().get(k).counts(), k);
            float[] a = theirs.entries().get(k).sums();
            float[] b = ours.entries().get(k).sums();
            for (int i = 0; i < a.length; i++) {
                assertEquals(a[i], b[i], 2e-4 * Math.abs(a[i]) + 1e-4, k + "[" + i + "]");
            }
        }
    }

    static String calibrationText() {
        return String.join("\n\n", java.util.Collections.nCopies(12, GgufLlamaCppTest.TEXT));
    }

    /**
     * Σx² of every linear module's input over llama-imatrix's chunks (the text's tokens with BOS, cut into chunks
     * of {@code ctx} tokens whose first token is BOS), from the Java forward pass.
     */
    static GgufImatrix forwardImatrix(Path model, int ctx, int chunks) {
        int[] ids;
        try (TextTokenizer t = TextTokenizer.load(Storage.local(), model.toString())) {
            ids = t.encode(calibrationText());
        }
        assertTrue(ids.length >= chunks * ctx, "text too short");
        List<int[]> windows = new ArrayList<>();
        for (int c = 0; c < chunks; c++) {
            int[] w = Arrays.copyOfRange(ids, c * ctx, (c + 1) * ctx);
            w[0] = ids[0]; // BOS
            windows.add(w);
        }
        GgufImatrix.Builder b = GgufImatrix.builder(ctx).dataset("calib.txt");
        try (CausalLM lm = CausalLM.open(Storage.local(), model.toString())) {
            String arch = GgufNames.architecture(lm.config().modelType());
            Map<String, double[]> sums = new HashMap<>();
            lm.hiddenStates(windows, (input, x, batch, layer) -> {
                float[] v = x.dup('c').data().asFloat();
                int width = (int) x.columns();
                double[] s = new double[width];
                for (int i = 0; i < v.length; i++) {
                    s[i % width] += (double) v[i] * v[i];
                }
                for (LinearModule m : lm.inventory().layer(layer)) {
                    if (m.input() == input) {
                        b.addHf(arch, m.weight(), s, x.rows());
                    }
                }
            });
        }
        return b.chunks(chunks).build();
    }

    private static void assertSameTensors(Path ours, Path theirs, String what) {
        try (GgufReader a = GgufReader.open(ours); GgufReader b = GgufReader.open(theirs)) {
            assertEquals(a.tensors().stream().map(GgufTensorInfo::tensor).toList(),
                    b.tensors().stream().map(GgufTensorInfo::tensor).toList(), what);
            for (GgufTensorInfo t : a.tensors()) {
                assertArrayEquals(a.readTensor(t.name()), b.readTensor(t.name()), what + " " + t.name());
            }
            assertTrue(b.metadata().containsKey("quantize.imatrix.file"), "llama-quantize records the imatrix");
        }
    }

    /** "entry NAME nvals ncounts counts... sum S first F last L" lines by name (fields after "entry"). */
    private static Map<String, String[]> entries(String out) {
        Map<String, String[]> m = new HashMap<>();
        for (String line : out.split("\n")) {
            if (line.startsWith("entry ")) {
                String[] f = line.substring(6).split(" ");
                m.put(f[0], f);
            }
        }
        return m;
    }
}
