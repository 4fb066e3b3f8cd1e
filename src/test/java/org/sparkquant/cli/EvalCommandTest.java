package org.sparkquant.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.SplittableRandom;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.sparkquant.io.DType;
import org.sparkquant.io.Storage;
import org.sparkquant.model.SyntheticModel;
import org.sparkquant.nn.CausalLM;
import org.sparkquant.nn.Perplexity;
import org.sparkquant.nn.PerplexityEvaluator;
import org.sparkquant.spark.ExecutorCache;
import org.sparkquant.spark.ModelSource;
import org.sparkquant.spark.Progress;
import org.sparkquant.spark.SparkEvaluator;
import org.sparkquant.testing.TestSpark;
import org.sparkquant.tokenizer.TextTokenizer;

class EvalCommandTest {
    @TempDir
    static Path tmp;
    static Path model;
    static Path text;

    @BeforeAll
    static void setUp() throws Exception {
        model = tmp.resolve("tiny");
        SyntheticModel.write(Storage.local(), model.toString(), SyntheticModel.Preset.TINY, 2, DType.F32, 3, 1L << 30);
        StringBuilder sb = new StringBuilder();
        SplittableRandom r = new SplittableRandom(9);
        String[] words = {"the", "model", "spark", "quantize", "layer", "token", "Hessian", "window", "é", "über"};
        for (int line = 0; line < 60; line++) {
            for (int w = 0; w < 12; w++) {
                sb.append(words[r.nextInt(words.length)]).append(' ');
            }
            sb.append(line % 5 == 0 ? "\n\n" : "\n");
        }
        text = tmp.resolve("text.txt");
        Files.writeString(text, sb);
    }

    private static List<int[]> windows(int seqLen) {
        try (TextTokenizer tokenizer = TextTokenizer.load(Storage.local(), model.toString())) {
            return PerplexityEvaluator.windows(tokenizer.encode(EvalCommand.joinedText(Storage.local(),
                    text.toString())), seqLen, 0);
        }
    }

    @Test
    void sparkMatchesTheLocalEvaluatorAndTheClusterDoesNotMatter() {
        List<int[]> windows = windows(64);
        assertTrue(windows.size() >= 8, "need several windows, got " + windows.size());
        Perplexity local;
        try (CausalLM lm = CausalLM.open(Storage.local(), model.toString())) {
            local = new PerplexityEvaluator(lm).evaluate(windows);
        }
        Perplexity[] spark = new Perplexity[2];
        int[] cores = {1, 2};
        for (int i = 0; i < 2; i++) {
            ExecutorCache.clear();
            SparkSession session = TestSpark.local(cores[i]);
            try {
                JavaSparkContext jsc = JavaSparkContext.fromSparkContext(session.sparkContext());
                spark[i] = SparkEvaluator.evaluate(jsc, ModelSource.dense(Storage.local(), model.toString()), windows,
                        3, new Progress(null, new java.io.PrintWriter(System.err, true), "t", 2, 0));
            } finally {
                session.stop();
            }
        }
        assertEquals(local.tokens(), spark[0].tokens());
        assertEquals(local.nll(), spark[0].nll(), 1e-6 * Math.abs(local.nll()));
        assertEquals(spark[0].nll(), spark[1].nll(), 0.0, "local[1] and local[2] must agree exactly");
    }

    @Test
    void cliPrintsPerplexityLast() throws Exception {
        CliRun run = CliRun.of("eval", "--model", model.toString(), "--data", text.toString(), "--seq-len", "64",
                "--max-windows", "4", "--conf", "spark.master=local[2]", "--conf", "spark.ui.enabled=false");
        assertEquals(0, run.exitCode(), run.err());
        assertTrue(run.lastLine().startsWith("perplexity: "), run.out());
        double ppl = Double.parseDouble(run.lastLine().substring("perplexity: ".length()));
        Perplexity local;
        try (CausalLM lm = CausalLM.open(Storage.local(), model.toString())) {
            local = new PerplexityEvaluator(lm).evaluate(windows(64).subList(0, 4));
        }
        assertEquals(local.ppl(), ppl, 1e-3 * local.ppl());

        CliRun json = CliRun.of("eval", "--model", model.toString(), "--data", text.toString(), "--seq-len", "64",
                "--max-windows", "2", "--json", "--conf", "spark.master=local[1]", "--conf", "spark.ui.enabled=false");
        assertEquals(0, json.exitCode(), json.err());
        JsonNode node = new ObjectMapper().readTree(json.out());
        assertEquals(2, node.get("windows").asInt());
        assertEquals(2 * 63, node.get("tokens").asLong());
        assertTrue(node.get("ppl").asDouble() > 1);
    }

    @Test
    void badTextIsAOneLineError() throws Exception {
        Path empty = tmp.resolve("empty.txt");
        Files.writeString(empty, "\n  \n");
        CliRun run = CliRun.of("eval", "--model", model.toString(), "--data", empty.toString());
        assertEquals(2, run.exitCode());
        assertTrue(run.err().contains("empty.txt: no text"), run.err());

        Path latin1 = tmp.resolve("latin1.txt");
        Files.write(latin1, new byte[] {'c', 'a', 'f', (byte) 0xe9, '\n'});
        run = CliRun.of("eval", "--model", model.toString(), "--data", latin1.toString());
        assertEquals(2, run.exitCode());
        assertTrue(run.err().contains("latin1.txt: not UTF-8"), run.err());

        Path small = tmp.resolve("small.txt");
        Files.writeString(small, "a few words\n");
        run = CliRun.of("eval", "--model", model.toString(), "--data", small.toString(), "--seq-len", "512");
        assertEquals(2, run.exitCode());
        assertTrue(run.err().contains("fewer than one window of --seq-len 512"), run.err());
        assertEquals(1, run.err().strip().lines().count(), run.err());
    }
}
