package org.sparkquant.spark;

import java.util.List;

import com.fasterxml.jackson.databind.node.ObjectNode;
import org.sparkquant.SparkQuantException;
import org.sparkquant.format.gptq.GptqCheckpointWriter;
import org.sparkquant.format.gptq.QuantizedLinear;
import org.sparkquant.gptq.Gptq;
import org.sparkquant.gptq.GptqPreparation;
import org.sparkquant.gptq.Hessian;
import org.sparkquant.gptq.QuantizedBlock;
import org.sparkquant.gptq.QuantizedRows;
import org.sparkquant.io.OutputManifest;
import org.sparkquant.io.Storage;
import org.sparkquant.io.TensorStore;
import org.sparkquant.model.LinearModule;
import org.sparkquant.model.ModelInventory;

/**
 * A Hugging Face GPTQ checkpoint directory: integer codes in groups with scales and zeros per block, assembled into
 * safetensors shards on the driver one module at a time ({@link GptqCheckpointWriter}), then the report (JSON and
 * HTML, both listed in the manifest), the manifest and last {@code _SUCCESS}. The work directory is
 * {@code OUTPUT/_work}.
 */
final class CheckpointTarget implements OutputTarget {
    private static final long serialVersionUID = 1L;
    static final String REPORT = "quantization_report.json";
    static final String REPORT_HTML = "quantization_report.html";
    static final String LEASE = "_lease.json";

    private final QuantizeJob job;

    CheckpointTarget(QuantizeJob job) {
        this.job = job;
    }

    @Override
    public WorkDir workDir(Storage storage) {
        return new WorkDir(storage, job.output());
    }

    @Override
    public String leaseUri() {
        return Storage.resolve(job.output(), LEASE);
    }

    @Override
    public void prepare(Storage storage, WorkDir work, boolean overwrite, boolean resume) {
        String out = job.output();
        boolean finished = OutputManifest.isComplete(storage, out);
        boolean continuing = resume && work.exists(ResumePoint.RUN);
        if (finished && !overwrite && !continuing) {
            throw SparkQuantException.badInput(out + " already holds a finished output (_SUCCESS); use --overwrite "
                    + "to replace it");
        }
        if (overwrite && !continuing) {
            if (finished) {
                work.deleteAll(); // the finished output stays until the new one is committed
            } else if (storage.exists(out)) {
                for (String name : storage.list(out)) {
                    if (!name.equals(LEASE)) {
                        storage.delete(Storage.resolve(out, name));
                    }
                }
            }
        }
        // a work directory without a run record is a run that stopped while starting: ours to reuse
        if (!finished && !work.exists(ResumePoint.RUN) && storage.exists(out) && storage.isDirectory(out)
                && storage.list(out).stream().anyMatch(name -> !name.equals(WorkDir.NAME) && !name.equals(LEASE))) {
            throw SparkQuantException.badInput(out + " is not empty; choose a new directory or use --overwrite");
        }
    }

    @Override
    public List<LinearModule> plan(Storage storage, ModelInventory inventory, Progress progress) {
        GptqCheckpointWriter.Plan plan = GptqCheckpointWriter.plan(inventory, writerOptions());
        plan.warnings().forEach(w -> progress.message("warning: " + w));
        return plan.quantized();
    }

    @Override
    public QuantizedBlock rtn(float[] rows, ModuleBlocks.Block block, Hessian h) {
        return Gptq.rtn(rows, block.rows(), block.module().inFeatures(), job.quant());
    }

    @Override
    public QuantizedBlock gptq(float[] rows, ModuleBlocks.Block block, Hessian h, GptqPreparation prep) {
        return Gptq.quantize(rows, block.rows(), block.r0(), prep, job.quant());
    }

    @Override
    public ModuleType type(LinearModule module) {
        return new ModuleType(job.quant().bits(), job.quant().groupSize(), null);
    }

    @Override
    public void describe(ObjectNode report) {
        report.put("output_format", "gptq");
    }

    @Override
    public List<String> commit(QuantizeRun run, ModelInventory inventory, QuantizeReport report, Progress progress) {
        Storage storage = run.storage();
        String out = job.output();
        progress.step(-1, "assemble checkpoint");
        clearPartialOutput(storage, run.work(), out);
        // every file is hashed as it is written, so the manifest reads nothing back
        OutputManifest.Checksums checksums = new OutputManifest.Checksums();
        // each file (shards, config, tokenizer, report) is a step of the commit
        Storage writing = storage.recording(checksums)
                .beforeEachCreate(uri -> run.work().step("write " + new org.apache.hadoop.fs.Path(uri).getName()));
        GptqCheckpointWriter.Result written;
        try (TensorStore store = TensorStore.open(storage, job.model())) {
            written = GptqCheckpointWriter.write(writing, store, inventory, out, writerOptions(),
                    module -> assemble(run, store, module));
        }
        progress.step(-1, "report and manifest");
        report.write(writing, Storage.resolve(out, REPORT), Storage.resolve(out, REPORT_HTML), progress);
        run.work().step("write " + OutputManifest.FILE); // the commit
        OutputManifest.write(storage, out, "sparkquant " + GptqCheckpointWriter.version(), checksums);
        return written.shards();
    }

    GptqCheckpointWriter.Options writerOptions() {
        return GptqCheckpointWriter.Options.of(job.quant().bits(), job.quant().groupSize(), job.quant().sym())
                .withActOrder(job.quant().descAct(), job.quant().staticGroups())
                .withSolver(job.trueSequential(), job.quant().dampPercent(),
                        job.quant().mse() ? job.quant().mseNorm() : 0.0)
                .withMaxShardBytes(job.maxShardBytes())
                .withUnpackable(job.unpackable());
    }

    /**
     * Removes what is in the output besides the work directory: an interrupted assembly, or the finished output that
     * --overwrite replaces. {@code _SUCCESS} goes first, so that no half-deleted output looks finished.
     */
    private static void clearPartialOutput(Storage storage, WorkDir work, String out) {
        work.step("clear " + OutputManifest.FILE);
        storage.delete(Storage.resolve(out, OutputManifest.FILE));
        for (String name : storage.list(out)) {
            if (!name.equals(WorkDir.NAME) && !name.equals(LEASE)) {
                work.step("clear " + name);
                storage.delete(Storage.resolve(out, name));
            }
        }
    }

    /** The checkpoint's quantized module, from its staged blocks (on the driver, one module at a time). */
    private QuantizedLinear assemble(QuantizeRun run, TensorStore store, LinearModule m) {
        QuantizedLinear.Builder builder = QuantizedLinear.builder(m.name(), job.quant().bits(),
                job.quant().groupSize(), job.quant().sym(), m.inFeatures(), m.outFeatures());
        int[] gIdx = null;
        for (ModuleBlocks.Block b : ModuleBlocks.of(m).blocks()) {
            QuantizedRows q = Staged.<StagedBlock<QuantizedRows>>readObject(run.storage(),
                    run.work().path(b.stagedPath())).rows();
            int groups = q.groups();
            float[] scales = new float[groups * b.rows()];
            int[] zeros = new int[groups * b.rows()];
            for (int r = 0; r < b.rows(); r++) {
                for (int g = 0; g < groups; g++) {
                    scales[g * b.rows() + r] = q.scale(r, g);
                    zeros[g * b.rows() + r] = q.zero(r, g);
                }
            }
            builder.rows(b.r0(), b.rows(), q.codesAsInt(), scales, zeros);
            gIdx = q.gIdx();
        }
        builder.gIdx(gIdx);
        if (m.bias()) {
            builder.bias(store.readFloats(m.biasName()));
        }
        return builder.build();
    }
}
