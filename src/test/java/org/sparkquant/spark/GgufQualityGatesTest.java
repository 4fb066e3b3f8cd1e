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
 * GPTQ-calibrated k-quants on the real dev-llama2-26m with held-out text: for Q3_K_M and Q2_K every GPTQ matrix has a
 * lower Hessian-weighted error than llama-quantize's RTN bytes of the same type, and the file's perplexity is lower.
 */
@Tag("slow")
class GgufQualityGatesTest {
    @TempDir
    Path tmp;

    private static final String[] SPARK = {"--conf", "spark.master=local[2]", "--conf", "spark.ui.enabled=false"};

    private static CliRun quantize(Path model, Path out, String... extra) {
        List<String> args = new ArrayList<>(List.of("quantize", "--model", model.toString(), "--output",
                out.toString()));
        args.addAll(List.of(extra));
        args.addAll(List.of(SPARK));
        return CliRun.of(args.toArray(String[]::new));
    }

    private static double ppl(Path model, Path text) {
        return CliRun.perplexity(model, text, 512, 8, SPARK);
    }

    @Test
    void gptqKQuantsBeatRtnPerMatrixAndInPerplexity() throws Exception {
        Path model = TestPaths.shared("models/dev-llama2-26m");
        Path calib = TestPaths.shared("text/calib.txt");
        Path eval = TestPaths.shared("text/eval.txt");
        StringBuilder table = new StringBuilder("dev-llama2-26m GGUF ppl:");
        for (String type : List.of("Q3_K_M", "Q2_K")) {
            Path gptq = tmp.resolve("gptq-" + type + ".gguf");
            Path rtn = tmp.resolve("rtn-" + type + ".gguf");
            CliRun g = quantize(model, gptq, "--gguf-type", type, "--calibration", calib.toString(), "--samples", "16",
                    "--seq-len", "512");
            assertEquals(0, g.exitCode(), g.err());
            CliRun r = quantize(model, rtn, "--gguf-type", type);
            assertEquals(0, r.exitCode(), r.err());
            JsonNode report = new ObjectMapper().readTree(Path.of(gptq + ".report.json").toFile());
            assertEquals(21, report.get("modules").size());
            for (JsonNode m : report.get("modules")) {
                assertTrue(m.get("hessian_error").asDouble() < m.get("rtn_hessian_error").asDouble(),
                        type + ": GPTQ must beat RTN on " + m);
            }
            double pg = ppl(gptq, eval);
            double pr = ppl(rtn, eval);
            table.append(String.format(" %s gptq %.3f rtn %.3f;", type, pg, pr));
            assertTrue(pg < pr, type + ": GPTQ perplexity " + pg + " vs RTN " + pr);
        }
        System.out.println(table);
    }
}
