package org.sparkquant.format.gguf;

import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.EnumMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.sparkquant.gptq.Gptq;
import org.sparkquant.gptq.GptqPreparation;
import org.sparkquant.gptq.Hessian;
import org.sparkquant.gptq.HessianAccumulator;
import org.sparkquant.gptq.Precision;
import org.sparkquant.gptq.QuantConfig;
import org.sparkquant.io.Storage;
import org.sparkquant.model.LinearModule;
import org.sparkquant.nn.CausalLM;
import org.sparkquant.testing.TestPaths;
import org.sparkquant.tokenizer.TextTokenizer;

/**
 * GPTQ-ggml on real Hessians: dev-llama2-26m's layer-0 q_proj (input width 512) and layer-1 down_proj (width 1536)
 * with Hessians from 8 sequences of 256 tokens of text/calib.txt run through the forward pass. For every type the
 * Hessian-weighted error of GPTQ-ggml is below ggml's round-to-nearest on the calibration Hessian; ratios are
 * printed, also on a held-out Hessian (the next 8 sequences). Out of sample the gain needs enough calibration tokens
 * per input column: q_proj (2048 tokens for 512 columns) must win there too, while down_proj (1536 columns) is
 * over-fitted by 2048 tokens (plain GPTQ 4-bit g32 behaves the same; with 128 sequences, 32k tokens, both win
 * out of sample, Q4_0 ≈ 0.68), so its held-out ratio is only printed. Skipped without ../shared.
 */
class GgmlGptqSharedModelTest {
    private static final int SEQUENCES = 8;
    private static final int SEQ_LEN = 256;

    /** {@code heldOutWins}: enough calibration tokens per column that GPTQ must also win on held-out data. */
    record Module(int layer, LinearModule.Input input, String weight, boolean heldOutWins) {}

    @Test
    @Tag("slow") // about a minute on 2 cores: 16 forward passes and 80 quantizations
    void beatsRoundToNearestOnRealHessians() throws IOException {
        Path model = TestPaths.shared("models/dev-llama2-26m");
        Path text = TestPaths.shared("text/calib.txt");
        List<Module> modules = List.of(
                new Module(0, LinearModule.Input.ATTN_IN, "model.layers.0.self_attn.q_proj.weight", true),
                new Module(1, LinearModule.Input.DOWN_IN, "model.layers.1.mlp.down_proj.weight", false));
        List<int[]> sequences = sequences(model, text);
        try (CausalLM lm = CausalLM.open(Storage.local(), model.toString())) {
            Map<Module, HessianAccumulator> acc = new java.util.LinkedHashMap<>();
            Map<Module, HessianAccumulator> heldOut = new java.util.LinkedHashMap<>();
            for (int i = 0; i < sequences.size(); i++) {
                Map<Module, HessianAccumulator> target = i < SEQUENCES ? acc : heldOut;
                lm.hiddenStates(List.of(sequences.get(i)), (input, x, batch, layer) -> {
                    for (Module m : modules) {
                        if (m.layer() == layer && m.input() == input) {
                            target.computeIfAbsent(m, k -> HessianAccumulator.create((int) x.size(1))).add(x);
                        }
                    }
                });
            }
            for (Module m : modules) {
                Hessian h = acc.get(m).finish();
                Hessian hOut = heldOut.get(m).finish();
                float[] w = lm.store().readFloats(m.weight());
                int cols = h.columns();
                int rows = w.length / cols;
                GptqPreparation prep = Gptq.prepare(h, QuantConfig.defaults());
                float[] imp = GgmlGptq.hessianDiagonalImportance(h);
                Map<GgmlType, double[]> ratios = new EnumMap<>(GgmlType.class);
                for (GgmlType type : GgmlGptqTest.TYPES) {
                    GgmlQuantizedRows g = GgmlGptq.quantize(w, rows, prep, type, null);
                    GgmlQuantizedRows r = GgmlGptq.rtn(w, rows, cols, type, null);
                    double rtn = err(h, w, rows, r);
                    double gptq = err(h, w, rows, g);
                    double rtnImp = err(h, w, rows, GgmlGptq.rtn(w, rows, cols, type, imp));
                    double gptqImp = err(h, w, rows, GgmlGptq.quantize(w, rows, prep, type, imp));
                    double outRatio = err(hOut, w, rows, g) / err(hOut, w, rows, r);
                    ratios.put(type, new double[] {gptq / rtn, gptqImp / rtnImp, outRatio});
                    System.out.printf(Locale.ROOT, "%s %-5s GPTQ/RTN %.3f (held-out %.3f)  GPTQ+imp/RTN+imp %.3f  "
                            + "RTN+imp/RTN %.3f%n", m.weight(), type, gptq / rtn, outRatio, gptqImp / rtnImp,
                            rtnImp / rtn);
                }
                for (Map.Entry<GgmlType, double[]> e : ratios.entrySet()) {
                    assertTrue(e.getValue()[0] < 1, m.weight() + " " + e.getKey() + ": GPTQ/RTN error ratio "
                            + e.getValue()[0]);
                    assertTrue(e.getValue()[1] < 1, m.weight() + " " + e.getKey()
                            + ": GPTQ+importance / RTN+importance error ratio " + e.getValue()[1]);
                    assertTrue(!m.heldOutWins() || e.getValue()[2] < 1, m.weight() + " " + e.getKey()
                            + ": GPTQ/RTN error ratio on held-out activations " + e.getValue()[2]);
                }
            }
        }
    }

    private static double err(Hessian h, float[] w, int rows, GgmlQuantizedRows q) {
        return GgmlGptqTest.sum(Gptq.hessianError(h, w, q.dequantized(), rows));
    }

    /** 2·SEQUENCES consecutive windows of SEQ_LEN tokens from the start of the calibration text. */
    private static List<int[]> sequences(Path model, Path text) throws IOException {
        byte[] head = Arrays.copyOf(Files.readAllBytes(text), 64 * 1024);
        String s = new String(head, StandardCharsets.UTF_8);
        try (TextTokenizer tok = TextTokenizer.load(Storage.local(), model.toString())) {
            int[] ids = tok.encode(s);
            List<int[]> out = new ArrayList<>();
            for (int i = 0; i + SEQ_LEN <= ids.length && out.size() < 2 * SEQUENCES; i += SEQ_LEN) {
                out.add(Arrays.copyOfRange(ids, i, i + SEQ_LEN));
            }
            assertTrue(out.size() == 2 * SEQUENCES, "calibration text too short: " + ids.length + " tokens");
            return out;
        }
    }
}
