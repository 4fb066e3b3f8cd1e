package org.sparkquant.spark;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.sparkquant.cli.CliRun;
import org.sparkquant.format.gguf.GgufMoeModels;
import org.sparkquant.format.gptq.GptqCheckpoint;
import org.sparkquant.format.gptq.GptqConfig;
import org.sparkquant.io.Storage;
import org.sparkquant.model.LinearModule;
import org.sparkquant.model.ModelConfig;
import org.sparkquant.nn.DecoderLayer;
import org.sparkquant.nn.LayerHooks;
import org.sparkquant.nn.OutputHead;
import org.sparkquant.nn.SequenceBatch;
import org.sparkquant.nn.TokenEmbedding;
import org.sparkquant.testing.TestPython;

/**
 * Hugging Face GPTQ checkpoints of mixture-of-experts models (Mixtral and Qwen2-MoE): every routed expert's
 * and the shared expert's projections are quantized modules under their hub names (qweight / qzeros / scales /
 * g_idx), the routers and the shared-expert gate stay dense and are listed as {@code "-:"} exclusions in
 * quantization_config.dynamic; the checkpoint reads back, and its forward pass in Java equals transformers' forward
 * of the same checkpoint dequantized by an independent python loader (python/gptq_checkpoint_check.py --logits;
 * transformers' own GPTQ loading needs GPTQModel, not installable here).
 */
class GptqMoeCheckpointTest {
    @TempDir
    static Path tmp;

    @Test
    void everyExpertIsAQuantizedModuleAndTheCheckpointRunsLikeTransformers() throws Exception {
        Path python = TestPython.require("torch", "safetensors", "transformers", "numpy");
        // mixtral (w1/w2/w3, block_sparse_moe.gate) and qwen2moe (mlp.gate, shared expert and its gate)
        for (String kind : List.of("mixtral", "qwen2moe")) {
            Path model = GgufMoeModels.write(tmp, kind);
            Path out = tmp.resolve(kind + "-gptq");
            CliRun run = GgufQuantizeTest.quantize(model, out, "local[2]", "--format", "gptq", "--method", "rtn",
                    "--bits", "4", "--group-size", "64");
            assertEquals(0, run.exitCode(), run.err());
            int[] ids = new int[40];
            for (int i = 0; i < ids.length; i++) {
                ids[i] = (i * 37 + 11) % 400;
            }
            float[] java;
            try (GptqCheckpoint cp = GptqCheckpoint.open(Storage.local(), out.toString())) {
                ModelConfig c = cp.config();
                List<LinearModule> routed = cp.modules().stream().filter(LinearModule::routed).toList();
                assertEquals(GgufMoeModels.LAYERS * GgufMoeModels.experts(kind) * 3, routed.size(), kind);
                for (LinearModule m : cp.modules()) {
                    assertTrue(cp.isQuantized(m.name()), kind + ": " + m.name() + " quantized");
                    assertTrue(cp.store().contains(m.name() + ".qweight"), kind + ": " + m.name() + ".qweight");
                }
                for (int l = 0; l < c.numLayers(); l++) {
                    String router = c.moe().routerTensor(l);
                    assertTrue(cp.store().contains(router), router + " kept dense");
                    String module = router.substring(0, router.length() - ".weight".length());
                    assertFalse(cp.store().contains(module + ".qweight"), router);
                    assertTrue(cp.quantization().paramsFor(module, "test").isEmpty(), router + " excluded");
                }
                List<String> excluded = cp.quantization().dynamic().stream().filter(GptqConfig.DynamicRule::exclude)
                        .map(GptqConfig.DynamicRule::key).toList();
                String routerRule = kind.equals("mixtral") ? "-:^model\\.layers\\.\\d+\\.block_sparse_moe\\.gate$"
                        : "-:^model\\.layers\\.\\d+\\.mlp\\.gate$";
                assertTrue(excluded.contains(routerRule), kind + ": " + excluded);
                assertEquals(kind.equals("qwen2moe"), excluded.contains(
                        "-:^model\\.layers\\.\\d+\\.mlp\\.shared_expert_gate$"), kind + ": " + excluded);
                java = logits(cp, ids);
            }
            Path idsFile = tmp.resolve(kind + "-ids.bin");
            ByteBuffer b = ByteBuffer.allocate(4 * ids.length).order(ByteOrder.LITTLE_ENDIAN);
            b.asIntBuffer().put(ids);
            Files.write(idsFile, b.array());
            Path hf = tmp.resolve(kind + "-hf.f32");
            TestPython.check(python, List.of("python/gptq_checkpoint_check.py", out.toString(), "--source",
                    model.toString(), "--logits", idsFile.toString(), hf.toString()), 600);
            float[] expected = floats(hf);
            assertEquals(expected.length, java.length, kind);
            double d = 0;
            double scale = 0;
            for (int i = 0; i < java.length; i++) {
                d = Math.max(d, Math.abs(java[i] - expected[i]));
                scale = Math.max(scale, Math.abs(expected[i]));
            }
            System.out.printf("%s: GPTQ checkpoint logits, Java vs transformers (dequantized): max diff %.2e of %.3f%n",
                    kind, d, scale);
            assertTrue(d <= 1e-4 * Math.max(1, scale), kind + ": logits differ by " + d);
        }
    }

    /** The checkpoint's forward pass as sparkquant evaluates it: its layers dequantized one at a time. */
    private static float[] logits(GptqCheckpoint cp, int[] ids) {
        ModelConfig c = cp.config();
        List<int[]> seqs = new ArrayList<>(List.of(ids));
        INDArray h = new TokenEmbedding(cp.store(), "model.embed_tokens.weight", c.vocabSize(), c.hiddenSize())
                .lookup(seqs);
        SequenceBatch batch = SequenceBatch.of(seqs);
        try (DecoderLayer layer = new DecoderLayer(c)) {
            for (int l = 0; l < c.numLayers(); l++) {
                layer.forward(h, batch, cp.layerWeights(l), LayerHooks.NONE);
            }
        }
        return new OutputHead(cp.store(), c).logits(h).dup().data().asFloat();
    }

    private static float[] floats(Path p) throws Exception {
        byte[] bytes = Files.readAllBytes(p);
        float[] f = new float[bytes.length / 4];
        ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(f);
        return f;
    }
}
