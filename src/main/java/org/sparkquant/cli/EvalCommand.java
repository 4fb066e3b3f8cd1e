package org.sparkquant.cli;

import java.io.PrintWriter;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import java.util.stream.Collectors;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.sql.SparkSession;
import org.sparkquant.SparkQuantException;
import org.sparkquant.io.OutputManifest;
import org.sparkquant.io.Storage;
import org.sparkquant.model.MemoryPlan;
import org.sparkquant.nn.Perplexity;
import org.sparkquant.nn.PerplexityEvaluator;
import org.sparkquant.spark.ModelSource;
import org.sparkquant.spark.Progress;
import org.sparkquant.spark.SparkEvaluator;
import org.sparkquant.spark.SparkSessions;
import org.sparkquant.tokenizer.TextTokenizer;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/** {@code sparkquant eval}: perplexity of a model on a text, the way the GPTQ paper and AutoGPTQ measure it. */
@Command(name = "eval", mixinStandardHelpOptions = true,
        description = {"Perplexity of a model on a text file, as the GPTQ paper and AutoGPTQ measure it: the text's "
                + "non-blank lines joined with blank lines, tokenized once, cut into non-overlapping windows of "
                + "--seq-len tokens; ppl = exp(mean NLL of every predicted token). Runs on Spark, streaming the model "
                + "layer by layer over the windows, so it works for models larger than one machine.",
                "The last line of output is 'perplexity: <value>' (or one JSON object with --json)."})
public final class EvalCommand implements Callable<Integer> {
    @Spec
    picocli.CommandLine.Model.CommandSpec spec;

    @Mixin
    CommonOptions common;

    @Option(names = "--model", required = true, paramLabel = "URI",
            description = "Model directory, or a GGUF file (tokenized with the vocabulary it contains).")
    String model;

    @Option(names = "--data", required = true, paramLabel = "URI", description = "UTF-8 text file.")
    String data;

    @Option(names = "--seq-len", defaultValue = "2048", description = "Tokens per window (default: ${DEFAULT-VALUE}).")
    int seqLen;

    @Option(names = "--max-windows", defaultValue = "0", description = "Evaluate at most this many windows (0: all).")
    int maxWindows;

    @Option(names = "--windows-per-partition", defaultValue = "" + MemoryPlan.DEFAULT_SAMPLES_PER_PARTITION,
            description = "Windows per Spark partition (default: ${DEFAULT-VALUE}).")
    int windowsPerPartition;

    @ArgGroup(exclusive = true)
    Bos bos;

    static final class Bos {
        @Option(names = "--add-bos", description = "Prepend the BOS token to the text.")
        boolean add;

        @Option(names = "--no-bos", description = "Do not prepend the BOS token.")
        boolean none;
    }

    @Option(names = "--json", description = "Print one JSON object: ppl, windows, tokens, seconds.")
    boolean json;

    @Option(names = "--no-verify", description = "Skip checking a sparkquant output against its _SUCCESS manifest or "
            + ".sha256 first (reading every byte takes time on large models).")
    boolean noVerify;

    @Override
    public Integer call() throws Exception {
        if (seqLen < 2 || windowsPerPartition <= 0 || maxWindows < 0) {
            throw SparkQuantException.badInput("--seq-len must be at least 2, --windows-per-partition positive and "
                    + "--max-windows not negative");
        }
        long start = System.nanoTime();
        Storage storage = common.storage();
        if (!noVerify) {
            verifyOutput(storage);
        }
        ModelSource source = ModelSource.of(storage, model);
        List<int[]> windows;
        try (TextTokenizer tokenizer = source.tokenizer(bos == null ? null : bos.add)) {
            tokenizer.checkCompatible(source.config());
            String text = joinedText(storage, data);
            int[] tokens = tokenizer.encode(text);
            if (tokens.length < seqLen) {
                throw SparkQuantException.badInput(data + ": " + tokens.length + " tokens, fewer than one window of "
                        + "--seq-len " + seqLen);
            }
            windows = PerplexityEvaluator.windows(tokens, seqLen, maxWindows);
        }
        SparkSession spark = SparkSessions.create("sparkquant eval", common.settings());
        Perplexity result;
        try {
            JavaSparkContext jsc = JavaSparkContext.fromSparkContext(spark.sparkContext());
            Progress progress = new Progress(jsc, spec.commandLine().getErr(), "eval", source.config().numLayers(), 0);
            result = SparkEvaluator.evaluate(jsc, source, windows, windowsPerPartition, progress);
        } finally {
            spark.stop();
        }
        double seconds = (System.nanoTime() - start) / 1e9;
        PrintWriter out = spec.commandLine().getOut();
        if (json) {
            ObjectNode node = new ObjectMapper().createObjectNode();
            node.put("ppl", result.ppl());
            node.put("windows", windows.size());
            node.put("tokens", result.tokens());
            node.put("seq_len", seqLen);
            node.put("seconds", Math.round(seconds * 1000) / 1000.0);
            out.println(node);
        } else {
            out.printf(Locale.ROOT, "windows: %d x %d tokens, %d predicted, %.1f s%n", windows.size(), seqLen,
                    result.tokens(), seconds);
            out.printf(Locale.ROOT, "perplexity: %.4f%n", result.ppl());
        }
        out.flush();
        return 0;
    }

    /** The non-blank lines of a UTF-8 text joined with blank lines. */
    static String joinedText(Storage storage, String uri) {
        byte[] bytes = storage.readAll(uri);
        String text;
        try {
            text = StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(ByteBuffer.wrap(bytes)).toString();
        } catch (CharacterCodingException e) {
            throw SparkQuantException.badInput(uri + ": not UTF-8 text");
        }
        String joined = text.lines().filter(l -> !l.isBlank()).collect(Collectors.joining("\n\n"));
        if (joined.isEmpty()) {
            throw SparkQuantException.badInput(uri + ": no text (the file is empty or blank)");
        }
        return joined;
    }

    /**
     * A sparkquant output is evaluated only as it was written: a directory with {@code _SUCCESS} must match it, a
     * GGUF file with a {@code .sha256} beside it must match that, and an unfinished run's directory is refused.
     */
    private void verifyOutput(Storage storage) {
        boolean file = storage.exists(model) && !storage.isDirectory(model);
        List<String> problems = List.of();
        if (file && storage.exists(model + OutputManifest.FILE_CHECKSUM_SUFFIX)) {
            problems = OutputManifest.verifyFile(storage, model);
        } else if (!file && OutputManifest.isComplete(storage, model)) {
            problems = OutputManifest.verify(storage, model);
        } else if (!file && storage.exists(Storage.resolve(model, "_work"))) {
            throw SparkQuantException.badInput(model + " is an unfinished sparkquant run (no " + OutputManifest.FILE
                    + "); finish it with quantize --resume");
        }
        if (!problems.isEmpty()) {
            throw SparkQuantException.badInput(model + ": " + problems.get(0) + (problems.size() > 1 ? " (and "
                    + (problems.size() - 1) + " more)" : "") + "; the output was damaged or changed since it was "
                    + "written (sparkquant verify lists every file; --no-verify skips this check)");
        }
    }
}
