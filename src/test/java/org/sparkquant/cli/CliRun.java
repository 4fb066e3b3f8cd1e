package org.sparkquant.cli;

import java.io.PrintWriter;
import java.io.StringWriter;

import org.sparkquant.spark.FaultHook;

/** Runs the CLI in-process and captures its exit code, stdout and stderr. */
public record CliRun(int exitCode, String out, String err) {
    public static CliRun of(String... args) {
        return withFaults(FaultHook.NONE, args);
    }

    /** Runs the CLI with failures injected at a quantization run's named points. */
    public static CliRun withFaults(FaultHook faults, String... args) {
        StringWriter out = new StringWriter();
        StringWriter err = new StringWriter();
        int code = SparkQuant.execute(faults, new PrintWriter(out, true), new PrintWriter(err, true), args);
        return new CliRun(code, out.toString(), err.toString());
    }

    /** {@code sparkquant eval} of a model on a text; fails the test unless it succeeds. */
    public static double perplexity(java.nio.file.Path model, java.nio.file.Path text, int seqLen, int maxWindows,
            String... extra) {
        java.util.List<String> args = new java.util.ArrayList<>(java.util.List.of("eval", "--model", model.toString(),
                "--data", text.toString(), "--seq-len", Integer.toString(seqLen), "--max-windows",
                Integer.toString(maxWindows)));
        args.addAll(java.util.List.of(extra));
        CliRun run = of(args.toArray(String[]::new));
        org.junit.jupiter.api.Assertions.assertEquals(0, run.exitCode(), run.err());
        return Double.parseDouble(run.lastLine().substring("perplexity: ".length()));
    }

    /** The last non-empty line of stdout. */
    public String lastLine() {
        String[] lines = out.strip().split("\n");
        return lines[lines.length - 1];
    }
}
