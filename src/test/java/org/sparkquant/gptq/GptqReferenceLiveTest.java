package org.sparkquant.gptq;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.sparkquant.gptq.GptqFixtures.Case;
import org.sparkquant.gptq.GptqFixtures.Comparison;
import org.sparkquant.testing.TestPython;

/**
 * Runs python/gptq_reference.py live on fresh random data (seed from GPTQ_LIVE_SEED, default 7; the committed
 * fixtures use another) and holds Java to the same tie-aware agreement as the golden test. Skipped without python
 * and torch.
 */
class GptqReferenceLiveTest {
    @Test
    void freshRandomCasesAgree(@TempDir Path dir) {
        Path python = TestPython.require("torch", "numpy");
        long seed = Long.parseLong(System.getenv().getOrDefault("GPTQ_LIVE_SEED", "7"));
        TestPython.check(python, List.of("python/gptq_reference.py", "--out", dir.toString(), "--quick", "--seed",
                Long.toString(seed)), 300);
        List<Case> cases = GptqFixtures.load(dir);
        assertEquals(4, cases.size());
        for (Case c : cases) {
            for (Precision p : Precision.values()) {
                QuantConfig cfg = c.config().withPrecision(p);
                String what = "seed " + seed + " " + c + " " + p;
                GptqFixtures.Input in = c.input();
                Hessian h = Hessian.of(in.h(), in.cols());
                GptqPreparation prep = Gptq.prepare(h, cfg);
                assertArrayEquals(c.arrays().get("perm").ints(), prep.perm(), what);
                QuantizedRows q = Gptq.quantize(in.w(), in.rows(), prep, cfg);
                Comparison cmp = GptqFixtures.compareCodes(what, q, GptqFixtures.bytes(c.arrays().get("codes")),
                        GptqFixtures.bytes(c.arrays().get("ties")), prep.perm(), p == Precision.FP64 ? 2 : 1);
                GptqFixtures.assertGIdx(what, q, c.arrays().get("g_idx"));
                GptqFixtures.compareParams(what, q, c.arrays().get("scales"), c.arrays().get("zeros"), cmp.diverged(),
                        p == Precision.FP64 ? 1e-6 : 1e-4);
                double err = GptqFixtures.sum(Gptq.hessianError(h, in.w(), q.dequantized(), in.rows()));
                double rtn = GptqFixtures.sum(Gptq.hessianError(h, in.w(),
                        Gptq.rtn(in.w(), in.rows(), in.cols(), cfg).dequantized(), in.rows()));
                assertTrue(err < rtn, what + ": GPTQ " + err + " vs RTN " + rtn);
                assertEquals(c.gptqErr(), err, c.gptqErr() * (cmp.divergedRows() > 0 ? 0.05 : 1e-3), what);
            }
        }
    }
}
