package org.sparkquant.spark;

import java.io.Serializable;
import java.util.Collections;
import java.util.Locale;
import java.util.Objects;
import java.util.SortedMap;
import java.util.TreeMap;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.sparkquant.SparkQuantException;
import org.sparkquant.format.gguf.LlamaFileType;
import org.sparkquant.format.gptq.GptqCheckpointWriter;
import org.sparkquant.gptq.Precision;
import org.sparkquant.gptq.QuantConfig;
import org.sparkquant.model.MemoryPlan;

/**
 * Everything that determines a quantization run's result, validated: whatever produces a job (the command line, a
 * job file, a scheduler's kit) goes through {@link #builder}, which parses the option values and derives the
 * defaults, and the constructor refuses any combination that cannot run, with one line naming the option. Its
 * {@link #describe() description} is stored in the work directory, and {@code --resume} continues only a run with
 * the same description.
 *
 * @param trueSequential quantize q,k,v → o → gate,up → down with each group's inputs taken after the previous groups
 *     were quantized (the reference default); otherwise all inputs come from one pass of the original layer
 * @param format what is written: a Hugging Face GPTQ checkpoint directory, or one GGUF file
 * @param ggufType the llama.cpp file type (recipe) of a GGUF output, else null
 * @param hessianImportance GGUF only: weight ggml's scale search by diag(H) of each module's input (llama.cpp's
 *     imatrix statistic), with GPTQ or RTN
 * @param exportImatrix where to write the Hessian diagonals as a llama.cpp imatrix file, or null
 * @param expertMinTokens mixture-of-experts models: a routed expert that receives fewer calibration tokens than this
 *     (counted at its gate/up input) is quantized by {@code expertFallback} instead of GPTQ on its own Hessians
 * @param expertFallback {@code LAYER}: GPTQ with the Hessians of every token of the layer (gate/up: the layer's
 *     post-attention-norm input; down: the expert's activation over every token, as if all were routed to it);
 *     {@code RTN}: round-to-nearest
 * @param inputs fingerprints of the input files (model files, calibration data) by name: a resumed run refuses
 *     inputs that changed at the same locations
 */
public record QuantizeJob(
        String model,
        String output,
        Method method,
        QuantConfig quant,
        boolean trueSequential,
        String calibration,
        int samples,
        int seqLen,
        long seed,
        int samplesPerPartition,
        String saveHessians,
        long maxShardBytes,
        GptqCheckpointWriter.Unpackable unpackable,
        Format format,
        LlamaFileType ggufType,
        boolean hessianImportance,
        String exportImatrix,
        int expertMinTokens,
        ExpertFallback expertFallback,
        SortedMap<String, String> inputs) implements Serializable {

    public enum Method { GPTQ, RTN }

    /** What quantizes a routed expert with fewer than {@code expertMinTokens} calibration tokens. */
    public enum ExpertFallback { LAYER, RTN }

    /** Default of {@code --expert-min-tokens}. */
    public static final int DEFAULT_EXPERT_MIN_TOKENS = 32;

    public enum Format { GPTQ, GGUF }

    public QuantizeJob {
        Objects.requireNonNull(model, "model");
        Objects.requireNonNull(output, "output");
        Objects.requireNonNull(method, "method");
        Objects.requireNonNull(quant, "quant");
        Objects.requireNonNull(unpackable, "unpackable");
        Objects.requireNonNull(format, "format");
        Objects.requireNonNull(expertFallback, "expertFallback");
        if (expertMinTokens < 1) {
            throw SparkQuantException.badInput("--expert-min-tokens must be at least 1 (an expert without tokens has "
                    + "no Hessian of its own), got " + expertMinTokens);
        }
        inputs = Collections.unmodifiableSortedMap(new TreeMap<>(Objects.requireNonNull(inputs, "inputs")));
        if (samples <= 0 || seqLen < 2 || samplesPerPartition <= 0) {
            throw SparkQuantException.badInput("--samples and --samples-per-partition must be positive, --seq-len at "
                    + "least 2");
        }
        if (maxShardBytes <= 0) {
            throw SparkQuantException.badInput("--max-shard-size must be positive, got " + maxShardBytes + " bytes");
        }
        boolean gguf = format == Format.GGUF;
        if (gguf != (ggufType != null)) {
            throw SparkQuantException.internal("a GGUF job needs a file type, and only a GGUF job has one", null);
        }
        if (gguf && (quant.descAct() || quant.staticGroups())) {
            throw SparkQuantException.badInput("--desc-act and --static-groups do not apply to GGUF: ggml blocks run "
                    + "along the input dimension in natural order");
        }
        if (!gguf && hessianImportance) {
            throw SparkQuantException.badInput("--importance applies to GGUF outputs (--format gguf)");
        }
        if (calibration == null) {
            if (method == Method.GPTQ) {
                throw SparkQuantException.badInput("--method gptq needs --calibration URI (text, JSONL, Parquet or "
                        + "pre-tokenized JSONL); --method rtn needs none");
            }
            if (hessianImportance) {
                throw SparkQuantException.badInput("--importance hessian-diag needs --calibration URI");
            }
            if (exportImatrix != null) {
                throw SparkQuantException.badInput("--export-imatrix needs --calibration URI");
            }
        } else if (!layerwise(method, hessianImportance, exportImatrix)) {
            calibration = null; // unused: it must not decide whether a run resumes
        }
    }

    /** A job for {@code model} → {@code output} with every other setting at its default. */
    public static Builder builder(String model, String output) {
        return new Builder(model, output);
    }

    /** The same job with the fingerprints of its input files. */
    public QuantizeJob withInputs(SortedMap<String, String> fingerprints) {
        return new QuantizeJob(model, output, method, quant, trueSequential, calibration, samples, seqLen, seed,
                samplesPerPartition, saveHessians, maxShardBytes, unpackable, format, ggufType, hessianImportance,
                exportImatrix, expertMinTokens, expertFallback, fingerprints);
    }

    /** Whether the run needs calibration data and the layer-by-layer Hessian pass. */
    public boolean layerwise() {
        return layerwise(method, hessianImportance, exportImatrix);
    }

    /** {@link #layerwise()} of a job with these settings (before the job exists: it decides its calibration). */
    public static boolean layerwise(Method method, boolean hessianImportance, String exportImatrix) {
        return method == Method.GPTQ || hessianImportance || exportImatrix != null;
    }

    public boolean gguf() {
        return format == Format.GGUF;
    }

    /**
     * The option values of a job, as the command line and job files name them, parsed by {@link #build}. Defaults
     * are the command line's.
     */
    public static final class Builder {
        private final String model;
        private final String output;
        private String format = "auto";
        private String ggufType = "Q4_K_M";
        private String importance = "none";
        private String exportImatrix;
        private String method;
        private QuantConfig quant = QuantConfig.defaults();
        private String precision = "fp32";
        private boolean trueSequential = true;
        private String calibration;
        private int samples = 128;
        private int seqLen = 2048;
        private long seed;
        private int samplesPerPartition = MemoryPlan.DEFAULT_SAMPLES_PER_PARTITION;
        private int expertMinTokens = DEFAULT_EXPERT_MIN_TOKENS;
        private String expertFallback = "layer";
        private String saveHessians;
        private long maxShardBytes = 4L << 30;
        private String unpackable = "dense";

        private Builder(String model, String output) {
            this.model = model;
            this.output = output;
        }

        /** gptq, gguf, or auto: gguf when the output ends in .gguf. */
        public Builder format(String v) {
            format = v;
            return this;
        }

        /** llama.cpp file type of a GGUF output, e.g. Q4_K_M. */
        public Builder ggufType(String v) {
            ggufType = v;
            return this;
        }

        /** none or hessian-diag. */
        public Builder importance(String v) {
            importance = v;
            return this;
        }

        public Builder exportImatrix(String v) {
            exportImatrix = v;
            return this;
        }

        /** gptq, rtn, or null: gptq, except rtn for a GGUF output without calibration. */
        public Builder method(String v) {
            method = v;
            return this;
        }

        /** Bits, group size, symmetry, act-order, static groups, damping and MSE; the precision is set apart. */
        public Builder quant(QuantConfig v) {
            quant = v;
            return this;
        }

        /** fp32 or fp64. */
        public Builder precision(String v) {
            precision = v;
            return this;
        }

        public Builder trueSequential(boolean v) {
            trueSequential = v;
            return this;
        }

        public Builder calibration(String v) {
            calibration = v;
            return this;
        }

        public Builder samples(int v) {
            samples = v;
            return this;
        }

        public Builder seqLen(int v) {
            seqLen = v;
            return this;
        }

        public Builder seed(long v) {
            seed = v;
            return this;
        }

        public Builder samplesPerPartition(int v) {
            samplesPerPartition = v;
            return this;
        }

        public Builder saveHessians(String v) {
            saveHessians = v;
            return this;
        }

        public Builder maxShardBytes(long v) {
            maxShardBytes = v;
            return this;
        }

        /** dense or error. */
        public Builder unpackable(String v) {
            unpackable = v;
            return this;
        }

        public Builder expertMinTokens(int v) {
            expertMinTokens = v;
            return this;
        }

        public Builder expertFallback(String v) {
            expertFallback = v;
            return this;
        }

        /** The validated job (without input fingerprints: {@link QuantizeJob#withInputs}). */
        public QuantizeJob build() {
            Format f = switch (format.toLowerCase(Locale.ROOT)) {
                case "auto" -> output.toLowerCase(Locale.ROOT).endsWith(".gguf") ? Format.GGUF : Format.GPTQ;
                case "gptq" -> Format.GPTQ;
                case "gguf" -> Format.GGUF;
                default -> throw SparkQuantException.badInput("--format must be gptq, gguf or auto, got '" + format
                        + "'");
            };
            boolean gguf = f == Format.GGUF;
            String chosen = method != null ? method : gguf && calibration == null ? "rtn" : "gptq";
            Method m = switch (chosen.toLowerCase(Locale.ROOT)) {
                case "gptq" -> Method.GPTQ;
                case "rtn" -> Method.RTN;
                default -> throw SparkQuantException.badInput("--method must be gptq or rtn, got '" + method + "'");
            };
            boolean hessianImportance = switch (importance.toLowerCase(Locale.ROOT)) {
                case "none" -> false;
                case "hessian-diag" -> true;
                default -> throw SparkQuantException.badInput("--importance must be none or hessian-diag, got '"
                        + importance + "'");
            };
            LlamaFileType fileType = gguf ? LlamaFileType.parse(ggufType) : null;
            Precision p = switch (precision.toLowerCase(Locale.ROOT)) {
                case "fp32" -> Precision.FP32;
                case "fp64" -> Precision.FP64;
                default -> throw SparkQuantException.badInput("--precision must be fp32 or fp64, got '" + precision
                        + "'");
            };
            GptqCheckpointWriter.Unpackable policy = switch (unpackable.toLowerCase(Locale.ROOT)) {
                case "dense" -> GptqCheckpointWriter.Unpackable.DENSE;
                case "error" -> GptqCheckpointWriter.Unpackable.ERROR;
                default -> throw SparkQuantException.badInput("--unpackable must be dense or error, got '"
                        + unpackable + "'");
            };
            ExpertFallback fallback = switch (expertFallback.toLowerCase(Locale.ROOT)) {
                case "layer" -> ExpertFallback.LAYER;
                case "rtn" -> ExpertFallback.RTN;
                default -> throw SparkQuantException.badInput("--expert-fallback must be layer or rtn, got '"
                        + expertFallback + "'");
            };
            return new QuantizeJob(model, output, m, quant.withPrecision(p), trueSequential, calibration, samples,
                    seqLen, seed, samplesPerPartition, saveHessians, maxShardBytes, policy, f, fileType,
                    hessianImportance, exportImatrix, expertMinTokens, fallback, new TreeMap<>());
        }
    }

    /** The settings that must match for a resumed run. */
    public String describe() {
        ObjectMapper mapper = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT)
                .enable(SerializationFeature.ORDER_MAP_ENTRIES_BY_KEYS);
        ObjectNode n = mapper.createObjectNode();
        n.put("model", model);
        n.put("method", method.name().toLowerCase(Locale.ROOT));
        n.set("quant", mapper.valueToTree(quant));
        n.put("true_sequential", trueSequential);
        n.put("calibration", calibration);
        n.put("samples", samples);
        n.put("seq_len", seqLen);
        n.put("seed", seed);
        n.put("samples_per_partition", samplesPerPartition);
        n.put("max_shard_bytes", maxShardBytes);
        n.put("unpackable", unpackable.name());
        n.put("format", format.name().toLowerCase(Locale.ROOT));
        n.put("gguf_type", ggufType == null ? null : ggufType.name());
        n.put("hessian_importance", hessianImportance);
        n.put("export_imatrix", exportImatrix);
        n.put("expert_min_tokens", expertMinTokens);
        n.put("expert_fallback", expertFallback.name().toLowerCase(Locale.ROOT));
        n.set("inputs", mapper.valueToTree(inputs));
        try {
            return mapper.writeValueAsString(n) + "\n";
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }
}
