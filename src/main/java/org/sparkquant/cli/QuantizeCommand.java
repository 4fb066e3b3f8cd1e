package org.sparkquant.cli;

import java.io.PrintWriter;
import java.time.Duration;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import java.util.function.Supplier;

import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.sql.SparkSession;
import org.sparkquant.SparkQuantException;
import org.sparkquant.gptq.QuantConfig;
import org.sparkquant.io.Storage;
import org.sparkquant.io.TensorStore;
import org.sparkquant.model.ModelConfig;
import org.sparkquant.model.ModelInventory;
import org.sparkquant.spark.Calibration;
import org.sparkquant.spark.FaultHook;
import org.sparkquant.spark.OutputLease;
import org.sparkquant.spark.Progress;
import org.sparkquant.spark.QuantizeJob;
import org.sparkquant.spark.QuantizePipeline;
import org.sparkquant.spark.QuantizeReport;
import org.sparkquant.spark.SparkSessions;
import org.sparkquant.tokenizer.TextTokenizer;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/** {@code sparkquant quantize}: GPTQ (or RTN) on Spark, writing a Hugging Face GPTQ checkpoint or a GGUF file. */
@Command(name = "quantize", mixinStandardHelpOptions = true,
        description = {"Quantize a model with GPTQ (or round-to-nearest) on Spark and write a Hugging Face GPTQ "
                + "checkpoint (transformers, vLLM, GPTQModel) or a llama.cpp GGUF file (--format gguf, "
                + "--gguf-type Q4_K_M, ...) to any Hadoop file system URI. The run is deterministic: the same inputs "
                + "give byte-identical files whatever the cluster. Finished layers are checkpointed under "
                + "OUTPUT/_work (OUTPUT._work for a GGUF file); --resume continues an interrupted run."})
public final class QuantizeCommand implements Callable<Integer> {
    @Spec
    picocli.CommandLine.Model.CommandSpec spec;

    @Mixin
    CommonOptions common;

    @Mixin
    CalibrationShape shape;

    @Option(names = "--model", required = true, paramLabel = "URI", description = "Hugging Face checkpoint directory.")
    String model;

    @Option(names = "--output", required = true, paramLabel = "URI",
            description = "Output directory (GPTQ checkpoint) or file (GGUF, e.g. s3a://bucket/model-Q4_K_M.gguf).")
    String output;

    @Option(names = "--format", defaultValue = "auto", description = "gptq (Hugging Face GPTQ checkpoint), gguf "
            + "(llama.cpp) or auto: gguf when --output ends in .gguf (default: ${DEFAULT-VALUE}).")
    String format;

    @Option(names = "--gguf-type", defaultValue = "Q4_K_M", paramLabel = "TYPE", description = "llama.cpp file type "
            + "of a GGUF output, with llama-quantize's per-tensor recipe: Q2_K, Q3_K_S/M/L, Q4_0, Q4_1, Q4_K_S/M, "
            + "Q5_0, Q5_1, Q5_K_S/M, Q6_K, Q8_0, F16, BF16, F32 (default: ${DEFAULT-VALUE}).")
    String ggufType;

    @Option(names = "--importance", defaultValue = "none", description = "GGUF: none, or hessian-diag to weight "
            + "ggml's scale search by diag(H) of each module's input, like llama-quantize --imatrix (needs "
            + "--calibration) (default: ${DEFAULT-VALUE}).")
    String importance;

    @Option(names = "--export-imatrix", paramLabel = "URI", description = "Also write the calibration statistics "
            + "(Hessian diagonals) as a llama.cpp imatrix file (GGUF format; legacy format when URI ends in .dat).")
    String exportImatrix;

    @Option(names = "--method", description = "gptq or rtn (default: gptq; for a GGUF output without "
            + "--calibration: rtn).")
    String method;

    @Option(names = "--bits", defaultValue = "4", description = "2, 3, 4 or 8 (default: ${DEFAULT-VALUE}).")
    int bits;

    @Option(names = "--group-size", defaultValue = "128",
            description = "Input columns per scale: -1 (per channel) or a power of two >= 16 (default: ${DEFAULT-VALUE}).")
    int groupSize;

    @ArgGroup(exclusive = true)
    Symmetry symmetry;

    static final class Symmetry {
        @Option(names = "--sym", description = "Symmetric quantization (default).")
        boolean sym;

        @Option(names = "--asym", description = "Asymmetric quantization (written as checkpoint_format gptq_v2).")
        boolean asym;
    }

    @Option(names = "--desc-act", description = "Act-order: quantize columns by decreasing Hessian diagonal.")
    boolean descAct;

    @Option(names = "--static-groups", description = "Group parameters from the unpermuted weights (with --desc-act "
            + "keeps g_idx monotone).")
    boolean staticGroups;

    @Option(names = "--damp", defaultValue = "0.01", description = "Damping as a fraction of mean(diag H) (default: "
            + "${DEFAULT-VALUE}); increased automatically if H is singular.")
    double damp;

    @Option(names = "--mse", description = "Search clipped scale ranges (norm 2.4, grid 100, max shrink 0.8).")
    boolean mse;

    @Option(names = "--precision", defaultValue = "fp32", description = "fp32 (as the reference) or fp64.")
    String precision;

    @Option(names = "--no-true-sequential", description = "Take every module's inputs from the unquantized layer.")
    boolean noTrueSequential;

    @Option(names = "--expert-min-tokens", defaultValue = "" + QuantizeJob.DEFAULT_EXPERT_MIN_TOKENS,
            paramLabel = "N", description = "Mixture-of-experts models: a routed expert with fewer calibration tokens "
            + "is quantized by --expert-fallback (default: ${DEFAULT-VALUE}).")
    int expertMinTokens;

    @Option(names = "--expert-fallback", defaultValue = "layer", description = "layer (GPTQ with Hessians over every "
            + "token of the layer) or rtn, for experts below --expert-min-tokens (default: ${DEFAULT-VALUE}).")
    String expertFallback;

    @Option(names = "--calibration", paramLabel = "URI", description = "Calibration data (required for gptq).")
    String calibration;

    @Option(names = "--calibration-format", defaultValue = "auto",
            description = "auto, text, jsonl, parquet or tokens (JSONL {\"input_ids\": [...]}) (default: ${DEFAULT-VALUE}).")
    String calibrationFormat;

    @Option(names = "--text-field", defaultValue = "text", description = "Text field of JSONL/Parquet records.")
    String textField;



    @Option(names = "--seed", defaultValue = "0", description = "Seed of the calibration windows (default: ${DEFAULT-VALUE}).")
    long seed;


    @Option(names = "--save-hessians", paramLabel = "URI", description = "Also write every Hessian as .npy with a "
            + "manifest.json (gptq-ref-hessians-v1).")
    String saveHessians;

    @Option(names = "--max-shard-size", defaultValue = "4GiB", description = "Largest safetensors shard (default: "
            + "${DEFAULT-VALUE}).")
    String maxShardSize;

    @Option(names = "--unpackable", defaultValue = "dense", description = "Modules whose shape cannot be packed: "
            + "dense (keep, listed in quantization_config.dynamic) or error (default: ${DEFAULT-VALUE}).")
    String unpackable;

    @Option(names = "--allow-beyond-context", description = "Accept a --seq-len longer than the model's context "
            + "(max_position_embeddings).")
    boolean beyondContext;

    @Option(names = "--lease-timeout", defaultValue = "600", paramLabel = "SECONDS", description = "A run whose "
            + "lease on OUTPUT was not renewed for this long counts as dead; --resume takes its lease over "
            + "(default: ${DEFAULT-VALUE}).")
    long leaseTimeout;

    @Option(names = "--resume", description = "Continue an unfinished run in OUTPUT.")
    boolean resume;

    @Option(names = "--overwrite", description = "Replace OUTPUT if it exists.")
    boolean overwrite;

    /** A year: longer is no timeout at all (and the heartbeat's period in milliseconds would overflow). */
    static final long MAX_LEASE_TIMEOUT = 365L * 24 * 3600;

    /** Where tests inject failures ({@link SparkQuant#execute(FaultHook, PrintWriter, PrintWriter, String...)}). */
    private final FaultHook faults;

    public QuantizeCommand() {
        this(FaultHook.NONE);
    }

    QuantizeCommand(FaultHook faults) {
        this.faults = faults;
    }

    @Override
    public Integer call() {
        if (leaseTimeout <= 0 || leaseTimeout > MAX_LEASE_TIMEOUT) {
            throw SparkQuantException.badInput("--lease-timeout must be between 1 and " + MAX_LEASE_TIMEOUT
                    + " seconds (a year), got " + leaseTimeout);
        }
        // every enumerated option is checked, also when this run does not use it (a typo is never ignored)
        org.sparkquant.format.gguf.LlamaFileType.parse(ggufType);
        Calibration.parseFormat(calibrationFormat);
        boolean sym = symmetry == null || !symmetry.asym;
        QuantizeJob validated = QuantizeJob.builder(model, output)
                .format(format).ggufType(ggufType).importance(importance).exportImatrix(exportImatrix).method(method)
                .quant(QuantConfig.defaults().withBits(bits).withGroupSize(groupSize).withSym(sym)
                        .withDescAct(descAct).withStaticGroups(staticGroups).withDampPercent(damp).withMse(mse))
                .precision(precision).trueSequential(!noTrueSequential).calibration(calibration)
                .samples(shape.samples).seqLen(shape.seqLen).seed(seed).samplesPerPartition(shape.samplesPerPartition)
                .saveHessians(saveHessians).maxShardBytes(Sizes.parse(maxShardSize, "--max-shard-size"))
                .unpackable(unpackable).expertMinTokens(expertMinTokens).expertFallback(expertFallback)
                .build();
        shape.checkDriverMemory();
        Storage storage = common.storage();
        // inputs are read-only: an output over the model or the calibration data would delete them
        if (storage.overlaps(output, model)) {
            throw SparkQuantException.badInput("--output " + output + " overlaps the model " + model + ": a run never "
                    + "writes its inputs; choose another output location");
        }
        boolean calibrated = validated.layerwise();
        if (calibrated && storage.overlaps(output, calibration)) {
            throw SparkQuantException.badInput("--output " + output + " overlaps the calibration data " + calibration
                    + ": a run never writes its inputs; choose another output location");
        }
        ModelConfig config = ModelConfig.load(storage, model);
        // the tensor headers and shapes too, so that a damaged model is refused before the lease and Spark
        try (TensorStore store = TensorStore.open(storage, model)) {
            ModelInventory.of(config, store);
        }
        if (calibrated) {
            checkCalibration(storage, config);
        }
        QuantizeJob job = validated.withInputs(fingerprints(storage, calibrated));
        boolean gguf = job.gguf();
        if (gguf && job.method() == QuantizeJob.Method.RTN && method == null) {
            spec.commandLine().getErr().println("quantize: no --calibration, so GGUF " + job.ggufType()
                    + " with round-to-nearest (llama-quantize's reference quantizers)");
        }

        QuantizePipeline.Result result;
        // one owner per output: taken after the inputs are checked, before Spark starts or the output is touched
        try (OutputLease lease = QuantizePipeline.lease(storage, job, resume, Duration.ofSeconds(leaseTimeout))) {
            result = run(storage, config, job, lease);
        }
        PrintWriter out = spec.commandLine().getOut();
        printSummary(out, result);
        StringBuilder phases = new StringBuilder();
        result.phases().forEach((k, v) -> phases.append(phases.length() == 0 ? "" : ", ")
                .append(String.format(Locale.ROOT, "%s %.1f s", k, v)));
        out.println("time by phase: " + phases);
        if (gguf) {
            out.printf(Locale.ROOT, "wrote %s (%s) in %.1f s%n", output, job.ggufType(), result.seconds());
        } else {
            out.printf(Locale.ROOT, "wrote %s (%d shard(s)) in %.1f s%n", output, result.shards().size(),
                    result.seconds());
        }
        out.flush();
        return 0;
    }

    /** The run on Spark, under the output's lease. */
    private QuantizePipeline.Result run(Storage storage, ModelConfig config, QuantizeJob job, OutputLease lease) {
        SparkSession spark = SparkSessions.create("sparkquant quantize", common.settings());
        try {
            JavaSparkContext jsc = JavaSparkContext.fromSparkContext(spark.sparkContext());
            Progress progress = new Progress(jsc, spec.commandLine().getErr(), "quantize", config.numLayers(), 0);
            Supplier<List<int[]>> samplesSupplier = () -> Calibration.samples(spark, storage, job, config,
                    Calibration.parseFormat(calibrationFormat), textField, progress);
            return QuantizePipeline.run(jsc, storage, job, resume, overwrite, samplesSupplier, progress, faults,
                    lease);
        } finally {
            spark.stop();
        }
    }

    /** Fingerprints of the model's files and the calibration data, recorded in run.json for --resume. */
    private java.util.SortedMap<String, String> fingerprints(Storage storage, boolean calibrated) {
        java.util.SortedMap<String, String> out = new java.util.TreeMap<>();
        for (String name : storage.list(model)) {
            String uri = Storage.resolve(model, name);
            if (!name.startsWith(".") && !storage.isDirectory(uri)) {
                out.put("model/" + name, storage.fingerprint(uri, 64L << 20));
            }
        }
        if (calibrated) {
            if (storage.isDirectory(calibration)) {
                for (String name : storage.list(calibration)) {
                    String uri = Storage.resolve(calibration, name);
                    if (!name.startsWith(".") && !name.startsWith("_") && !storage.isDirectory(uri)) {
                        out.put("calibration/" + name, storage.fingerprint(uri, 256L << 20));
                    }
                }
            } else {
                out.put("calibration", storage.fingerprint(calibration, 256L << 20));
            }
        }
        return out;
    }

    /** The calibration checks that need no Spark, made before the run touches its output. */
    private void checkCalibration(Storage storage, ModelConfig config) {
        if (!storage.exists(calibration)) {
            throw SparkQuantException.badInput("--calibration " + calibration + ": no such file or directory");
        }
        if (shape.seqLen > config.maxPositionEmbeddings() && !beyondContext) {
            throw SparkQuantException.badInput("--seq-len " + shape.seqLen + " is longer than the context of " + model + " ("
                    + config.maxPositionEmbeddings() + " tokens, max_position_embeddings); lower it, or add "
                    + "--allow-beyond-context");
        }
        Calibration.Format format = Calibration.detect(storage, calibration,
                Calibration.parseFormat(calibrationFormat));
        if (format != Calibration.Format.TOKENS) {
            try (TextTokenizer tokenizer = TextTokenizer.load(storage, model, false)) {
                tokenizer.checkCompatible(config);
            }
        }
        if ((format == Calibration.Format.TEXT || format == Calibration.Format.JSONL)
                && !storage.isDirectory(calibration)) {
            double binary = binaryShare(storage, calibration);
            if (binary > 0.05) {
                spec.commandLine().getErr().printf(Locale.ROOT, "sparkquant: warning: --calibration %s does not look "
                        + "like text (%.0f%% of its first bytes are control characters or invalid UTF-8); the "
                        + "Hessians will describe those bytes, not language%n", calibration, 100 * binary);
            }
        }
    }

    /** The share of the first 64 KiB of a file that is not text: control characters other than tab/CR/LF, bad UTF-8. */
    static double binaryShare(Storage storage, String uri) {
        byte[] head;
        try (var in = storage.open(uri)) {
            head = new byte[(int) Math.min(in.length(), 1 << 16)];
            in.readFully(0, head, 0, head.length);
        }
        if (head.length == 0) {
            return 0;
        }
        java.nio.charset.CharsetDecoder utf8 = java.nio.charset.StandardCharsets.UTF_8.newDecoder()
                .onMalformedInput(java.nio.charset.CodingErrorAction.REPLACE)
                .onUnmappableCharacter(java.nio.charset.CodingErrorAction.REPLACE);
        String text;
        try {
            text = utf8.decode(java.nio.ByteBuffer.wrap(head)).toString();
        } catch (java.nio.charset.CharacterCodingException e) {
            return 1;
        }
        long bad = text.chars().filter(c -> c == '\uFFFD' || (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
                || c == 0x7F).count();
        return (double) bad / Math.max(1, text.length());
    }

    private static void printSummary(PrintWriter out, QuantizePipeline.Result result) {
        out.printf("%-40s %6s %8s %14s %14s %8s%n", "module", "type", "damp", "H-error", "RTN H-error", "seconds");
        double gptq = 0;
        double rtn = 0;
        for (QuantizeReport.ModuleReport r : result.modules()) {
            if (!r.quantized()) {
                out.printf("%-40s %6s%n", r.name(), "dense");
                continue;
            }
            out.printf(Locale.ROOT, "%-40s %6s %8s %14.6g %14.6g %8.2f%n", r.name(),
                    r.ggmlType() != null ? r.ggmlType() : "int" + r.bits(),
                    Double.isNaN(r.dampPercent()) ? "-" : String.format(Locale.ROOT, "%.4f", r.dampPercent()),
                    r.hessianError(), r.rtnError(), r.seconds());
            if (!Double.isNaN(r.hessianError())) {
                gptq += r.hessianError();
                rtn += r.rtnError();
            }
        }
        if (rtn > 0) {
            out.printf(Locale.ROOT, "Hessian-weighted error: GPTQ %.6g vs RTN %.6g (%.1f%%)%n", gptq, rtn,
                    100 * gptq / rtn);
        }
    }
}
