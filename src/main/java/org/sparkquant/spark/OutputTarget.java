package org.sparkquant.spark;

import java.io.Serializable;
import java.util.List;

import com.fasterxml.jackson.databind.node.ObjectNode;
import org.sparkquant.gptq.GptqPreparation;
import org.sparkquant.gptq.Hessian;
import org.sparkquant.gptq.QuantizedBlock;
import org.sparkquant.io.Storage;
import org.sparkquant.model.LinearModule;
import org.sparkquant.model.ModelInventory;

/**
 * An output format of a quantization run: a Hugging Face GPTQ checkpoint directory ({@link CheckpointTarget}) or a
 * GGUF file ({@link GgufTarget}). The layer loop ({@link QuantizePipeline}) knows none of them: it asks the target
 * which modules to quantize, has it code each block of output channels on the executors (the target is shipped with
 * the run), and lets it assemble and commit the output from the staged blocks at the end.
 */
interface OutputTarget extends Serializable, AutoCloseable {
    static OutputTarget of(QuantizeJob job) {
        return job.gguf() ? new GgufTarget(job) : new CheckpointTarget(job);
    }

    /** Where a run into this output stages its state. */
    WorkDir workDir(Storage storage);

    /** Where the output's lease lives ({@link OutputLease}): outside the work directory, which a run may delete. */
    String leaseUri();

    /**
     * Before a run, once the inputs are validated: refuses an output that is in the way. With {@code overwrite} a
     * finished output stays until the new one is committed (only an earlier run's work is removed); {@code resume}
     * continues an unfinished run, also one that is replacing a finished output.
     */
    void prepare(Storage storage, WorkDir work, boolean overwrite, boolean resume);

    /**
     * On the driver, once per run: the decoder modules the executors quantize, in inventory order (the target keeps
     * what else its commit needs).
     */
    List<LinearModule> plan(Storage storage, ModelInventory inventory, Progress progress);

    /**
     * Round-to-nearest codes of a block of output rows; {@code h} is the module input's Hessian, or null in a run
     * without calibration.
     */
    QuantizedBlock rtn(float[] rows, ModuleBlocks.Block block, Hessian h);

    /** GPTQ codes of a block of output rows, with the input's Hessian and its GPTQ preparation. */
    QuantizedBlock gptq(float[] rows, ModuleBlocks.Block block, Hessian h, GptqPreparation prep);

    /** How a quantized module is stored, for the report. */
    ModuleType type(LinearModule module);

    /** Adds the output's own fields to the report's top level. */
    void describe(ObjectNode report);

    /**
     * On the driver, after every block is staged: writes the output from the staged blocks and the report beside it,
     * and commits the output last. Returns the data files written.
     */
    List<String> commit(QuantizeRun run, ModelInventory inventory, QuantizeReport report, Progress progress);

    /** Releases what {@link #plan} holds on the driver (after the commit, or when a run fails). */
    @Override
    default void close() {
    }

    /** Integer codes of {@code bits} in groups of {@code groupSize} columns, or a ggml block type (bits 0). */
    record ModuleType(int bits, int groupSize, String ggmlType) {}
}
