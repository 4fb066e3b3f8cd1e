package org.sparkquant.spark;

import java.io.Serializable;
import java.util.Locale;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.sparkquant.format.gguf.LlamaFileType;
import org.sparkquant.format.gptq.GptqCheckpointWriter;
import org.sparkquant.gptq.QuantConfig;

/**
 * Everything that determines a quantization run's result. Its {@link #describe() description} is stored in the work
 * directory, and {@code --resume} continues only a run with the same description.
 *
 * @param trueSequential quantize q,k,v → o → gate,up → down with each group's inputs taken after the previous groups
 *     were quantized (the reference default); otherwise all inputs come from one pass of the original layer
 * @param format what is written: a Hugging Face GPTQ checkpoint directory, or one GGUF file
 * @param ggufType the llama.cpp file type (recipe) of a GGUF output, else null
 * @param hessianImportance GGUF only: weight ggml's scale search by diag(H) of each module's input (llama.cpp's
 *     imatrix statistic), with GPTQ or RTN
 * @param exportImatrix where to write the Hessian diagonals as a llama.cpp imatrix file, or null
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
        java.util.SortedMap<String, String> inputs) implements Serializable {

    public enum Method { GPTQ, RTN }

    public enum Format { GPTQ, GGUF }

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
        n.set("inputs", mapper.valueToTree(inputs));
        try {
            return mapper.writeValueAsString(n) + "\n";
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }
}
