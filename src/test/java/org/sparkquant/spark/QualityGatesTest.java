package org.sparkquant.spark;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.sparkquant.cli.CliRun;
import org.sparkquant.testing.TestPaths;

/**
 * The quality a user expects of GPTQ, on the real dev-llama2-26m with held-out text: every module's Hessian-weighted
 * error below RTN's, 3-bit GPTQ perplexity clearly below 3-bit RTN's, 4-bit GPTQ within 10 % of the dense model.
 * (4-bit GPTQ vs RTN is within noise on a model this small, so it is not gated.)
 */
@Tag("slow")
class QualityGatesTest {
    @TempDir
    Path tmp;

    private static final String[] SPARK = {"--conf", "spark.master=local[2]", "--conf", "spark.ui.enabled=false"};

    private CliRun quantize(Path model, Path calib, Path out, String... extra) {
        List<String> args = new ArrayList<>(List.of("quantize", "--model", model.toString(), "--output",
                out.toString(), "--calibration", calib.toString(), "--samples", "16", "--seq-len", "512",
                "--group-size", "128"));
        args.addAll(List.of(extra));
        args.addAll(List.of(SPARK));
        return CliRun.of(args.toArray(String[]::new));
    }

    private static double ppl(Path model, Path text) {
        return CliRun.perplexity(model, text, 512, 8, SPARK);
    }

    private static void assertGptqBeatsRtnPerModule(Path out) throws Exception {
        JsonNode report = new ObjectMapper().readTree(out.resolve(QuantizePipeline.REPORT).toFile());
        for (JsonNode m : report.get("modules")) {
            assertTrue(m.get("hessian_error").asDouble() < m.get("rtn_hessian_error").asDouble(),
                    "GPTQ must beat RTN on " + m);
        }
    }

    @Test
    void gptqBeatsRtnAndStaysCloseToDense() throws Exception {
        Path model = TestPaths.shared("models/dev-llama2-26m");
        Path calib = TestPaths.shared("text/calib.txt");
        Path eval = TestPaths.shared("text/eval.txt");

        Path g4 = tmp.resolve("g4");
        Path g3 = tmp.resolve("g3");
        Path r3 = tmp.resolve("r3");
        assertEquals(0, quantize(model, calib, g4, "--bits", "4").exitCode());
        assertEquals(0, quantize(model, calib, g3, "--bits", "3").exitCode());
        assertEquals(0, quantize(model, calib, r3, "--bits", "3", "--method", "rtn").exitCode());
        assertGptqBeatsRtnPerModule(g4);
        assertGptqBeatsRtnPerModule(g3);

        double dense = ppl(model, eval);
        double gptq4 = ppl(g4, eval);
        double gptq3 = ppl(g3, eval);
        double rtn3 = ppl(r3, eval);
        System.out.printf("dev-llama2-26m ppl: dense %.3f, gptq w4g128 %.3f, gptq w3g128 %.3f, rtn w3g128 %.3f%n",
                dense, gptq4, gptq3, rtn3);
        assertTrue(gptq4 < 1.10 * dense, "4-bit GPTQ " + gptq4 + " vs dense " + dense);
        assertTrue(gptq3 < 0.95 * rtn3, "3-bit GPTQ " + gptq3 + " vs RTN " + rtn3);
    }
}
