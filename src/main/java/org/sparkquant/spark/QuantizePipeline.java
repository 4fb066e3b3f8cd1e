package org.sparkquant.spark;

import java.io.Serializable;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.EnumMap;
import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Supplier;
import java.util.stream.Collectors;
import java.util.stream.IntStream;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.spark.TaskContext;
import org.apache.spark.api.java.JavaPairRDD;
import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.storage.StorageLevel;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.sparkquant.SparkQuantException;
import org.sparkquant.format.gguf.GgmlType;
import org.sparkquant.format.gguf.GgufExporter;
import org.sparkquant.format.gptq.GptqCheckpointWriter;
import org.sparkquant.format.gptq.QuantizedLinear;
import org.sparkquant.gptq.GgmlGptq;
import org.sparkquant.gptq.GgmlQuantizedRows;
import org.sparkquant.gptq.Gptq;
import org.sparkquant.gptq.GptqPreparation;
import org.sparkquant.gptq.Hessian;
import org.sparkquant.gptq.HessianAccumulator;
import org.sparkquant.gptq.QuantizedRows;
import org.sparkquant.io.OutputManifest;
import org.sparkquant.io.Storage;
import org.sparkquant.io.TensorStore;
import org.sparkquant.model.LinearModule;
import org.sparkquant.model.LinearModule.Input;
import org.sparkquant.model.MemoryPlan;
import org.sparkquant.model.ModelInventory;
import org.sparkquant.nn.DecoderLayer;
import org.sparkquant.nn.DenseLinear;
import org.sparkquant.nn.LayerWeights;
import org.sparkquant.nn.SequenceBatch;
import scala.Tuple2;

/**
 * The distributed GPTQ run. The driver holds metadata; calibration hidden states live in a fixed number of
 * partitions on the executors. Per decoder layer and true-sequential group (q,k,v → o → gate,up → down) the executors
 * run the layer up to the group's input with the earlier groups already quantized, accumulate exact Hessian partials
 * (row tiles, so no record is huge), the partials are merged per tile and finished on an executor, which also
 * computes the GPTQ factor once per distinct input; then the executors quantize fixed blocks of output channels in
 * parallel and stage them under {@code _work/}. The quantized layer produces the next layer's inputs, which are
 * checkpointed so that {@code --resume} continues after the last finished layer. Finally the driver assembles the
 * staged blocks into the checkpoint, writes the report, the manifest and only then {@code _SUCCESS}.
 *
 * <p>Everything that decides a bit of the output is a function of the inputs and the settings, never of the cluster:
 * partitions follow the sample count, blocks follow the module shapes, Hessian sums are exact.
 */
public final class QuantizePipeline {
    /** Hessian row tiles are at most this large as Spark records. */
    static final long TILE_BYTES = MemoryPlan.HESSIAN_TILE_BYTES;
    private static final String PROGRESS = "progress.json";
    private static final String RUN = "run.json";
    public static final String REPORT = "quantization_report.json";

    private QuantizePipeline() {}

    /** What one block of output channels cost and achieved. */
    public record BlockStats(String module, int r0, int r1, double loss, double hessianError, double rtnError,
            double seconds) implements Serializable {}

    /** A staged block: the quantized rows (GPTQ checkpoint or ggml blocks) and their statistics. */
    record StagedBlock(QuantizedRows rows, GgmlQuantizedRows ggml, BlockStats stats) implements Serializable {
        float[] dequantized() {
            return ggml != null ? ggml.dequantized() : rows.dequantized();
        }
    }

    /**
     * The Hessian of one distinct module input of a layer, as finished on an executor, with its diagonal (for
     * {@code --export-imatrix}).
     */
    public record InputSummary(Input input, int columns, long sequences, long tokens, double dampPercentUsed,
            int deadColumns, double[] diagonal) implements Serializable {}

    /** One row of the report; {@code ggmlType} is the block type of a GGUF output (else null). */
    public record ModuleReport(String name, int layer, int rows, int cols, boolean quantized, int bits, int groupSize,
            String ggmlType, double dampPercent, double loss, double hessianError, double rtnError, double seconds) {}

    public record Result(List<ModuleReport> modules, List<String> shards, double seconds, int resumedAtLayer,
            Map<String, Double> phases) {}

    public static Result run(JavaSparkContext jsc, Storage storage, QuantizeJob job, boolean resume,
            boolean overwrite, Supplier<List<int[]>> calibration, Progress progress) {
        long start = System.nanoTime();
        WorkDir work = job.gguf() ? WorkDir.forFile(storage, job.output()) : new WorkDir(storage, job.output());
        int layersDone = job.gguf() ? prepareFileOutput(storage, work, job, resume, overwrite, progress)
                : prepareOutput(storage, work, job, resume, overwrite, progress);
        ModelSource source = ModelSource.dense(storage, job.model());
        ModelInventory inventory;
        HashMap<String, GgmlType> types = new HashMap<>();
        List<LinearModule> quantized;
        try (TensorStore store = TensorStore.open(storage, job.model())) {
            inventory = ModelInventory.of(source.config(), store);
            if (job.gguf()) {
                GgufExporter exporter = GgufTarget.exporter(storage, job, store);
                types.putAll(GgufTarget.moduleTypes(exporter, inventory));
                quantized = inventory.layers().stream().flatMap(List::stream)
                        .filter(m -> types.containsKey(m.name())).toList();
                progress.message("GGUF " + job.ggufType() + ": " + exporter.tensors().size() + " tensors, "
                        + quantized.size() + " decoder matrices quantized by the executors, " + String.format(
                        java.util.Locale.ROOT, "%.2f", exporter.layout().totalSize() / 1e6) + " MB");
            } else {
                GptqCheckpointWriter.Plan plan = GptqCheckpointWriter.plan(inventory, writerOptions(job));
                plan.warnings().forEach(w -> progress.message("warning: " + w));
                quantized = plan.quantized();
            }
        }
        List<String> quantizedNames = quantized.stream().map(LinearModule::name).toList();

        Map<String, InputSummary> inputs = new LinkedHashMap<>();
        if (!job.layerwise()) {
            progress.step(-1, "rtn · quantize " + quantized.size() + " modules");
            quantizeBlocks(jsc, source, work, job, types, blocksOf(quantized));
        } else if (!quantized.isEmpty()) {
            runLayers(jsc, source, work, job, inventory, quantizedNames, types, layersDone, calibration, progress,
                    inputs);
        }
        if (job.layerwise()) {
            loadSummaries(storage, work, inventory, inputs);
        }
        return job.gguf() ? finishGguf(storage, work, job, inventory, quantizedNames, types, inputs, progress,
                layersDone, start) : finishCheckpoint(storage, work, job, inventory, quantizedNames, inputs, progress,
                layersDone, start);
    }

    private static Result finishCheckpoint(Storage storage, WorkDir work, QuantizeJob job, ModelInventory inventory,
            List<String> quantizedNames, Map<String, InputSummary> inputs, Progress progress, int layersDone,
            long start) {
        GptqCheckpointWriter.Options options = writerOptions(job);
        progress.step(-1, "assemble checkpoint");
        clearPartialOutput(storage, job.output());
        GptqCheckpointWriter.Result written;
        try (TensorStore store = TensorStore.open(storage, job.model())) {
            written = GptqCheckpointWriter.write(storage, store, inventory, job.output(), options,
                    module -> assemble(storage, work, job, store, module));
        }
        progress.step(-1, "report and manifest");
        List<ModuleReport> report = report(storage, work, job, inventory, quantizedNames, Map.of(), inputs);
        exports(storage, job, inventory, quantizedNames, inputs);
        Map<String, Double> phases = progress.phases();
        writeReport(storage, job, Storage.resolve(job.output(), REPORT), report, phases);
        OutputManifest.write(storage, job.output(), "sparkquant " + GptqCheckpointWriter.version());
        work.deleteAll();
        return new Result(report, written.shards(), (System.nanoTime() - start) / 1e9, layersDone, phases);
    }

    private static Result finishGguf(Storage storage, WorkDir work, QuantizeJob job, ModelInventory inventory,
            List<String> quantizedNames, Map<String, GgmlType> types, Map<String, InputSummary> inputs,
            Progress progress, int layersDone, long start) {
        progress.step(-1, "report");
        List<ModuleReport> report = report(storage, work, job, inventory, quantizedNames, types, inputs);
        exports(storage, job, inventory, quantizedNames, inputs);
        progress.step(-1, "write GGUF " + job.ggufType());
        // the report is written once the file's bytes exist, before the file is renamed into place
        GgufTarget.write(storage, job, inventory, types,
                b -> Staged.<StagedBlock>readObject(storage, work.path(b.stagedPath())).ggml(),
                () -> writeReport(storage, job, job.output() + GgufTarget.REPORT_SUFFIX, report, progress.phases()));
        work.deleteAll();
        return new Result(report, List.of(job.output()), (System.nanoTime() - start) / 1e9, layersDone,
                progress.phases());
    }

    /** --save-hessians manifest and --export-imatrix, from the Hessian summaries. */
    private static void exports(Storage storage, QuantizeJob job, ModelInventory inventory,
            List<String> quantizedNames, Map<String, InputSummary> inputs) {
        if (job.saveHessians() != null && job.layerwise()) {
            HessianExport.manifest(storage, job.saveHessians(), inventory, quantizedNames, inputs);
        }
        if (job.exportImatrix() != null) {
            GgufTarget.writeImatrix(storage, job, inventory, quantizedNames, inputs,
                    inventory.config().modelType());
        }
    }

    static GptqCheckpointWriter.Options writerOptions(QuantizeJob job) {
        return GptqCheckpointWriter.Options.of(job.quant().bits(), job.quant().groupSize(), job.quant().sym())
                .withActOrder(job.quant().descAct(), job.quant().staticGroups())
                .withSolver(job.trueSequential(), job.quant().dampPercent(),
                        job.quant().mse() ? job.quant().mseNorm() : 0.0)
                .withMaxShardBytes(job.maxShardBytes())
                .withUnpackable(job.unpackable());
    }

    // ------------------------------------------------------------------ output and resume

    /** Checks the output directory and returns the number of layers a resumed run has already finished. */
    private static int prepareOutput(Storage storage, WorkDir work, QuantizeJob job, boolean resume, boolean overwrite,
            Progress progress) {
        String out = job.output();
        if (OutputManifest.isComplete(storage, out)) {
            if (!overwrite) {
                throw SparkQuantException.badInput(out + " already holds a finished output (_SUCCESS); use --overwrite "
                        + "to replace it");
            }
            storage.delete(out);
        } else if (overwrite) {
            storage.delete(out);
        }
        if (!storage.exists(work.path(RUN)) && storage.exists(out) && storage.isDirectory(out)
                && !storage.list(out).isEmpty()) {
            throw SparkQuantException.badInput(out + " is not empty; choose a new directory or use --overwrite");
        }
        return resumeOrStart(work, job, resume, progress);
    }

    /**
     * {@link #prepareOutput} for a single-file output: a file at the URI is a finished output (it is renamed into
     * place last); the work directory beside it marks an unfinished run.
     */
    private static int prepareFileOutput(Storage storage, WorkDir work, QuantizeJob job, boolean resume,
            boolean overwrite, Progress progress) {
        String out = job.output();
        if (storage.exists(out) && storage.isDirectory(out)) {
            throw SparkQuantException.badInput(out + " is a directory; a GGUF output is a file URI such as "
                    + Storage.resolve(out, "model.gguf"));
        }
        if (storage.exists(out) && !overwrite) {
            throw SparkQuantException.badInput(out + " already exists; use --overwrite to replace it");
        }
        if (overwrite) {
            storage.delete(out);
            storage.delete(out + OutputManifest.FILE_CHECKSUM_SUFFIX);
            storage.delete(out + GgufTarget.REPORT_SUFFIX);
            work.deleteAll();
        }
        return resumeOrStart(work, job, resume, progress);
    }

    private static int resumeOrStart(WorkDir work, QuantizeJob job, boolean resume, Progress progress) {
        String out = job.output();
        boolean partial = work.exists(RUN);
        if (partial && !resume) {
            throw SparkQuantException.badInput(out + " holds an unfinished run; add --resume to continue it or "
                    + "--overwrite to start over");
        }
        if (partial) {
            String previous = work.read(RUN);
            if (!previous.equals(job.describe())) {
                throw SparkQuantException.badInput(out + ": --resume needs the same settings as the unfinished run ("
                        + work.path(RUN) + ")");
            }
            int done = 0;
            if (work.exists(PROGRESS)) {
                try {
                    JsonNode p = new ObjectMapper().readTree(work.read(PROGRESS));
                    done = p.path("layers_done").asInt(0);
                } catch (Exception e) {
                    throw SparkQuantException.badInput(work.path(PROGRESS) + ": unreadable progress record");
                }
            }
            progress.message("resuming " + out + " after " + done + " finished layer(s)");
            progress.resumedAt(done);
            return done;
        }
        work.mkdirs();
        work.replace(RUN, job.describe());
        return 0;
    }

    /** Files of an interrupted assembly (there is no _SUCCESS yet) are removed before it runs again. */
    private static void clearPartialOutput(Storage storage, String out) {
        for (String name : storage.list(out)) {
            if (!name.equals(WorkDir.NAME)) {
                storage.delete(Storage.resolve(out, name));
            }
        }
    }

    // ------------------------------------------------------------------ GPTQ, layer by layer

    private static void runLayers(JavaSparkContext jsc, ModelSource source, WorkDir work, QuantizeJob job,
            ModelInventory inventory, List<String> quantizedNames, HashMap<String, GgmlType> types, int layersDone,
            Supplier<List<int[]>> calibration, Progress progress, Map<String, InputSummary> inputs) {
        int layers = source.config().numLayers();
        int partitions;
        JavaRDD<SampleState> states;
        if (layersDone == 0) {
            List<int[]> samples = calibration.get();
            partitions = MemoryPlan.partitionsFor(samples.size(), job.samplesPerPartition());
            List<SampleState> list = new ArrayList<>();
            for (int i = 0; i < samples.size(); i++) {
                list.add(new SampleState(i, samples.get(i), null));
            }
            progress.step(-1, "embeddings · " + samples.size() + " samples in " + partitions + " partitions");
            states = jsc.parallelize(list, partitions).mapPartitions(it -> SparkEvaluator.embed(source, it));
        } else {
            String dir = "hidden/" + layersDone;
            partitions = Integer.parseInt(work.read(dir + "/partitions").trim());
            progress.step(-1, "hidden states after layer " + layersDone + " from " + work.path(dir));
            Storage storage = source.storage();
            states = jsc.parallelize(IntStream.range(0, partitions).boxed().toList(), partitions)
                    .flatMap(p -> Staged.readHidden(storage, work.path(dir + "/part-" + p + ".bin")).iterator());
        }
        states = states.persist(StorageLevel.MEMORY_AND_DISK());
        states.count();

        for (int layer = layersDone; layer < layers; layer++) {
            List<LinearModule> done = new ArrayList<>();
            for (List<Input> group : groups(job.trueSequential())) {
                List<LinearModule> modules = inventory.layer(layer).stream()
                        .filter(m -> group.contains(m.input()) && quantizedNames.contains(m.name())).toList();
                if (modules.isEmpty()) {
                    continue;
                }
                String label = modules.stream().map(m -> m.name().substring(m.name().indexOf(".", 13) + 1))
                        .collect(Collectors.joining(","));
                List<Input> needed = modules.stream().map(LinearModule::input).distinct().toList();
                progress.step(layer, label + " · hessian");
                inputs.putAll(hessians(jsc, source, work, job, states, layer, done, needed));
                List<ModuleBlocks.Block> blocks = blocksOf(modules);
                progress.step(layer, label + " · quantize " + blocks.size() + " blocks");
                quantizeBlocks(jsc, source, work, job, types, blocks);
                if (job.trueSequential()) {
                    done.addAll(modules);
                }
            }
            progress.step(layer, "forward with the quantized layer");
            List<LinearModule> all = inventory.layer(layer).stream()
                    .filter(m -> quantizedNames.contains(m.name())).toList();
            int index = layer;
            JavaRDD<SampleState> next = states.mapPartitions(
                    it -> SparkEvaluator.forward(source, layerWeights(source, work, index, all), it))
                    .persist(StorageLevel.MEMORY_AND_DISK());
            checkpoint(work, next, layer + 1, partitions);
            states.unpersist(false);
            states = next;
            if (layer > 0) {
                work.delete("hidden/" + layer);
            }
            work.replace(PROGRESS, "{\"layers_done\": " + (layer + 1) + "}\n");
            progress.layerDone();
            if (job.stopAfterLayer() == layer) {
                throw SparkQuantException.internal("stopped after layer " + layer + " (test hook)", null);
            }
        }
        states.unpersist(false);
    }

    /** True-sequential groups, or all four inputs from one pass of the original layer. */
    static List<List<Input>> groups(boolean trueSequential) {
        if (!trueSequential) {
            return List.of(List.of(Input.values()));
        }
        List<List<Input>> out = new ArrayList<>();
        for (Input i : Input.values()) {
            out.add(List.of(i));
        }
        return out;
    }

    /** Writes each partition's hidden states (what a resumed run starts from), idempotently. */
    private static void checkpoint(WorkDir work, JavaRDD<SampleState> states, int layersDone, int partitions) {
        String dir = "hidden/" + layersDone;
        states.foreachPartition(it -> {
            List<SampleState> list = new ArrayList<>();
            it.forEachRemaining(list::add);
            int p = TaskContext.getPartitionId();
            work.writeOnce(dir + "/part-" + p + ".bin", Staged.hidden(list));
        });
        work.replace(dir + "/partitions", partitions + "\n");
    }

    // ------------------------------------------------------------------ Hessians

    private static Map<String, InputSummary> hessians(JavaSparkContext jsc, ModelSource source, WorkDir work,
            QuantizeJob job, JavaRDD<SampleState> states, int layer, List<LinearModule> done, List<Input> needed) {
        Map<String, InputSummary> out = new LinkedHashMap<>();
        List<Input> missing = new ArrayList<>();
        for (Input input : needed) {
            String summary = summaryPath(layer, input);
            if (work.exists(summary)) {
                out.put(layer + "/" + input, Staged.readObject(source.storage(), work.path(summary)));
            } else {
                missing.add(input);
            }
        }
        if (missing.isEmpty()) {
            return out;
        }
        Map<Input, Integer> widths = new EnumMap<>(Input.class);
        for (Input input : missing) {
            widths.put(input, width(source, input));
        }
        Input last = missing.get(missing.size() - 1);
        int tiles = missing.stream().mapToInt(i -> tileStarts(widths.get(i)).length).sum();
        JavaPairRDD<String, HessianAccumulator> partials = states.mapPartitionsToPair(
                it -> hessianPartials(source, work, layer, done, widths, last, job, it));
        JavaPairRDD<String, HessianAccumulator> merged = partials.reduceByKey(HessianAccumulator::merge, tiles);
        List<InputSummary> finished = merged
                .mapToPair(t -> new Tuple2<>(t._1().substring(0, t._1().indexOf('#')), t._2()))
                .groupByKey(missing.size())
                .map(g -> finishInput(source, work, job, layer, Input.valueOf(g._1()), g._2()))
                .collect();
        for (InputSummary s : finished) {
            out.put(layer + "/" + s.input(), s);
        }
        return out;
    }

    private static int width(ModelSource source, Input input) {
        return switch (input) {
            case ATTN_IN, MLP_IN -> source.config().hiddenSize();
            case ATTN_OUT_IN -> source.config().qDim();
            case DOWN_IN -> source.config().intermediateSize();
        };
    }

    /** Row starts of the Hessian tiles of an input of width n: multiples of the accumulator's block, bounded bytes. */
    static int[] tileStarts(int n) {
        long perRow = 16L * n; // two longs per entry, upper triangle at most n per row
        int block = HessianAccumulator.BLOCK;
        int rows = (int) Math.max(block, TILE_BYTES / perRow / block * block);
        int count = (n + rows - 1) / rows;
        int[] starts = new int[count];
        for (int t = 0; t < count; t++) {
            starts[t] = t * rows;
        }
        return starts;
    }

    private static Iterator<Tuple2<String, HessianAccumulator>> hessianPartials(ModelSource source, WorkDir work,
            int layer, List<LinearModule> done, Map<Input, Integer> widths, Input last, QuantizeJob job,
            Iterator<SampleState> it) {
        LayerWeights weights = layerWeights(source, work, layer, done);
        Map<Input, List<HessianAccumulator>> accumulators = new EnumMap<>(Input.class);
        for (Map.Entry<Input, Integer> e : widths.entrySet()) {
            int n = e.getValue();
            int[] starts = tileStarts(n);
            List<HessianAccumulator> list = new ArrayList<>();
            for (int t = 0; t < starts.length; t++) {
                int end = t + 1 < starts.length ? starts[t + 1] : n;
                list.add(HessianAccumulator.rows(n, starts[t], end, job.quant().precision()));
            }
            accumulators.put(e.getKey(), list);
        }
        int hidden = source.config().hiddenSize();
        try (DecoderLayer decoder = new DecoderLayer(source.config())) {
            for (List<SampleState> batch : SparkEvaluator.batches(it)) {
                INDArray h = SparkEvaluator.stack(batch, hidden);
                SequenceBatch seq = SequenceBatch.of(SparkEvaluator.tokensOf(batch));
                decoder.runUntil(h, seq, weights, (input, x, b) -> {
                    List<HessianAccumulator> accs = accumulators.get(input);
                    if (accs == null) {
                        return;
                    }
                    int width = (int) x.columns();
                    float[] all = SparkEvaluator.floats(x);
                    // one unit per sequence: the exact sum is then independent of how sequences are batched
                    for (int i = 0; i < b.count(); i++) {
                        float[] one = new float[b.length(i) * width];
                        System.arraycopy(all, b.offset(i) * width, one, 0, one.length);
                        for (HessianAccumulator acc : accs) {
                            acc.add(one, b.length(i));
                        }
                    }
                }, last);
                h.close();
            }
        }
        List<Tuple2<String, HessianAccumulator>> out = new ArrayList<>();
        accumulators.forEach((input, list) -> {
            for (int t = 0; t < list.size(); t++) {
                out.add(new Tuple2<>(input.name() + "#" + t, list.get(t)));
            }
        });
        return out.iterator();
    }

    private static InputSummary finishInput(ModelSource source, WorkDir work, QuantizeJob job, int layer, Input input,
            Iterable<HessianAccumulator> tiles) {
        List<HessianAccumulator> list = new ArrayList<>();
        tiles.forEach(list::add);
        Hessian h = HessianAccumulator.finish(list);
        work.writeOnce(hessianPath(layer, input), Staged.object(h));
        GptqPreparation prep = Gptq.prepare(h, job.quant());
        work.writeOnce(prepPath(layer, input), Staged.object(prep));
        if (job.saveHessians() != null) {
            HessianExport.write(source.storage(), job.saveHessians(), layer, input, h);
        }
        InputSummary summary = new InputSummary(input, h.columns(), h.sequences(), h.tokens(),
                prep.dampPercentUsed(), prep.deadCount(), h.diagonal());
        work.writeOnce(summaryPath(layer, input), Staged.object(summary));
        return summary;
    }

    static String hessianPath(int layer, Input input) {
        return "layers/" + layer + "/hessian-" + input + ".bin";
    }

    static String prepPath(int layer, Input input) {
        return "layers/" + layer + "/prep-" + input + ".bin";
    }

    static String summaryPath(int layer, Input input) {
        return "layers/" + layer + "/summary-" + input + ".bin";
    }

    // ------------------------------------------------------------------ quantization

    static List<ModuleBlocks.Block> blocksOf(List<LinearModule> modules) {
        List<ModuleBlocks.Block> out = new ArrayList<>();
        for (LinearModule m : modules) {
            out.addAll(ModuleBlocks.of(m).blocks());
        }
        return out;
    }

    private static List<BlockStats> quantizeBlocks(JavaSparkContext jsc, ModelSource source, WorkDir work,
            QuantizeJob job, HashMap<String, GgmlType> types, List<ModuleBlocks.Block> blocks) {
        if (blocks.isEmpty()) {
            return List.of();
        }
        List<Tuple2<Integer, ModuleBlocks.Block>> indexed = new ArrayList<>();
        for (int i = 0; i < blocks.size(); i++) {
            indexed.add(new Tuple2<>(i, blocks.get(i)));
        }
        return jsc.parallelize(indexed, blocks.size())
                .map(b -> quantizeBlock(source, work, job, types, b._1(), b._2()))
                .collect();
    }

    private static BlockStats quantizeBlock(ModelSource source, WorkDir work, QuantizeJob job,
            Map<String, GgmlType> types, int index, ModuleBlocks.Block block) {
        Storage storage = source.storage();
        if (work.exists(block.stagedPath())) {
            StagedBlock staged = Staged.readObject(storage, work.path(block.stagedPath()));
            return staged.stats();
        }
        LinearModule m = block.module();
        float[] rows = source.open().store().readRows(m.weight(), block.r0(), block.r1());
        long t0 = System.nanoTime();
        QuantizedRows q = null;
        GgmlQuantizedRows g = null;
        double hessianError = Double.NaN;
        double rtnError = Double.NaN;
        double loss = Double.NaN;
        boolean gptq = job.method() == QuantizeJob.Method.GPTQ;
        GgmlType type = types.get(m.name());
        if (job.layerwise()) {
            int layer = m.layer();
            Input input = m.input();
            Hessian h = ExecutorCache.slot("hessian:" + input, work.path(hessianPath(layer, input)),
                    () -> Staged.readObject(storage, work.path(hessianPath(layer, input))));
            GptqPreparation prep = !gptq ? null : ExecutorCache.slot("prep:" + input, work.path(prepPath(layer, input)),
                    () -> Staged.readObject(storage, work.path(prepPath(layer, input))));
            float[] rtnDeq;
            float[] deq;
            if (job.gguf()) {
                float[] importance = job.hessianImportance() ? GgmlGptq.hessianDiagonalImportance(h) : null;
                GgmlQuantizedRows rtn = GgmlGptq.rtn(rows, block.rows(), m.inFeatures(), type, importance);
                g = gptq ? GgmlGptq.quantize(rows, block.rows(), block.r0(), prep, type, importance) : rtn;
                rtnDeq = rtn.dequantized();
                deq = g.dequantized();
                loss = gptq ? sum(g.losses()) : Double.NaN;
            } else {
                QuantizedRows rtn = Gptq.rtn(rows, block.rows(), m.inFeatures(), job.quant());
                q = gptq ? Gptq.quantize(rows, block.rows(), block.r0(), prep, job.quant()) : rtn;
                rtnDeq = rtn.dequantized();
                deq = q.dequantized();
                loss = gptq ? sum(q.losses()) : Double.NaN;
            }
            hessianError = sum(Gptq.hessianError(h, rows, deq, block.rows()));
            rtnError = gptq ? sum(Gptq.hessianError(h, rows, rtnDeq, block.rows())) : hessianError;
        } else if (job.gguf()) {
            g = GgmlGptq.rtn(rows, block.rows(), m.inFeatures(), type, null);
        } else {
            q = Gptq.rtn(rows, block.rows(), m.inFeatures(), job.quant());
        }
        double seconds = (System.nanoTime() - t0) / 1e9;
        TaskContext task = TaskContext.get();
        if (index == job.failOnceAtBlock() && task != null && task.attemptNumber() == 0) {
            throw new IllegalStateException("injected failure of block " + index + " (test hook)");
        }
        BlockStats stats = new BlockStats(m.name(), block.r0(), block.r1(), loss, hessianError, rtnError, seconds);
        work.writeOnce(block.stagedPath(), Staged.object(new StagedBlock(q, g, stats)));
        return stats;
    }

    private static double sum(double[] values) {
        double s = 0;
        for (double v : values) {
            s += v;
        }
        return s;
    }

    /** A layer's weights with the given modules replaced by their staged (dequantized) quantization. */
    static LayerWeights layerWeights(ModelSource source, WorkDir work, int layer, List<LinearModule> replaced) {
        String key = source.uri() + "#" + layer + ":" + replaced.stream().map(LinearModule::kind)
                .collect(Collectors.joining(","));
        return ExecutorCache.layer(key, () -> {
            LayerWeights w = source.open().layerWeights(layer);
            for (LinearModule m : replaced) {
                float[] weight = new float[m.outFeatures() * m.inFeatures()];
                for (ModuleBlocks.Block b : ModuleBlocks.of(m).blocks()) {
                    StagedBlock staged = Staged.readObject(source.storage(), work.path(b.stagedPath()));
                    System.arraycopy(staged.dequantized(), 0, weight, b.r0() * m.inFeatures(),
                            b.rows() * m.inFeatures());
                }
                float[] bias = m.bias() ? source.open().store().readFloats(m.biasName()) : null;
                w = w.with(m.kind(), DenseLinear.of(weight, m.outFeatures(), m.inFeatures(), bias));
            }
            return w;
        });
    }

    /** The checkpoint's quantized module, from its staged blocks (on the driver, one module at a time). */
    private static QuantizedLinear assemble(Storage storage, WorkDir work, QuantizeJob job, TensorStore store,
            LinearModule m) {
        QuantizedLinear.Builder builder = QuantizedLinear.builder(m.name(), job.quant().bits(),
                job.quant().groupSize(), job.quant().sym(), m.inFeatures(), m.outFeatures());
        int[] gIdx = null;
        for (ModuleBlocks.Block b : ModuleBlocks.of(m).blocks()) {
            QuantizedRows q = Staged.<StagedBlock>readObject(storage, work.path(b.stagedPath())).rows();
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

    // ------------------------------------------------------------------ report

    /** Summaries of the layers a resumed run did not compute itself. */
    private static void loadSummaries(Storage storage, WorkDir work, ModelInventory inventory,
            Map<String, InputSummary> inputs) {
        for (List<LinearModule> layer : inventory.layers()) {
            for (LinearModule m : layer) {
                String key = m.layer() + "/" + m.input();
                if (!inputs.containsKey(key) && work.exists(summaryPath(m.layer(), m.input()))) {
                    inputs.put(key, Staged.readObject(storage, work.path(summaryPath(m.layer(), m.input()))));
                }
            }
        }
    }

    private static List<ModuleReport> report(Storage storage, WorkDir work, QuantizeJob job, ModelInventory inventory,
            List<String> quantizedNames, Map<String, GgmlType> types, Map<String, InputSummary> inputs) {
        List<ModuleReport> out = new ArrayList<>();
        for (List<LinearModule> layer : inventory.layers()) {
            for (LinearModule m : layer) {
                if (!quantizedNames.contains(m.name())) {
                    out.add(new ModuleReport(m.name(), m.layer(), m.outFeatures(), m.inFeatures(), false, 0, 0,
                            null, Double.NaN, Double.NaN, Double.NaN, Double.NaN, 0));
                    continue;
                }
                double loss = 0;
                double err = 0;
                double rtn = 0;
                double seconds = 0;
                for (ModuleBlocks.Block b : ModuleBlocks.of(m).blocks()) {
                    BlockStats s = Staged.<StagedBlock>readObject(storage, work.path(b.stagedPath())).stats();
                    loss += s.loss();
                    err += s.hessianError();
                    rtn += s.rtnError();
                    seconds += s.seconds();
                }
                InputSummary in = inputs.get(m.layer() + "/" + m.input()); // loadSummaries filled it
                GgmlType type = types.get(m.name());
                boolean gptq = job.method() == QuantizeJob.Method.GPTQ;
                out.add(new ModuleReport(m.name(), m.layer(), m.outFeatures(), m.inFeatures(), true,
                        type != null ? 0 : job.quant().bits(), type != null ? 0 : job.quant().groupSize(),
                        type == null ? null : type.name(), in == null || !gptq ? Double.NaN : in.dampPercentUsed(),
                        loss, err, rtn, seconds));
            }
        }
        out.sort(Comparator.comparingInt(ModuleReport::layer));
        return out;
    }

    private static void writeReport(Storage storage, QuantizeJob job, String uri, List<ModuleReport> report,
            Map<String, Double> phases) {
        ObjectMapper mapper = new ObjectMapper();
        var root = mapper.createObjectNode();
        root.put("format", "sparkquant-report-v1");
        root.put("method", job.method().name().toLowerCase(java.util.Locale.ROOT));
        root.put("output_format", job.gguf() ? "gguf" : "gptq");
        if (job.gguf()) {
            root.put("gguf_type", job.ggufType().name());
            root.put("importance", job.hessianImportance() ? "hessian-diag" : "none");
        }
        root.set("settings", mapper.valueToTree(job.quant()));
        root.put("samples", job.samples());
        root.put("seq_len", job.seqLen());
        var time = root.putObject("seconds_by_phase");
        phases.forEach((k, v) -> time.put(k, Math.round(v * 1000) / 1000.0));
        var modules = root.putArray("modules");
        for (ModuleReport r : report) {
            var n = modules.addObject();
            n.put("name", r.name());
            n.put("rows", r.rows());
            n.put("cols", r.cols());
            n.put("quantized", r.quantized());
            if (r.quantized() && r.ggmlType() != null) {
                n.put("ggml_type", r.ggmlType());
            } else if (r.quantized()) {
                n.put("bits", r.bits());
                n.put("group_size", r.groupSize());
            }
            if (r.quantized()) {
                putNumber(n, "damp_percent", r.dampPercent());
                putNumber(n, "loss", r.loss());
                putNumber(n, "hessian_error", r.hessianError());
                putNumber(n, "rtn_hessian_error", r.rtnError());
                n.put("seconds", Math.round(r.seconds() * 1000) / 1000.0);
            }
        }
        try {
            storage.writeString(uri,
                    mapper.writerWithDefaultPrettyPrinter().writeValueAsString(root) + "\n");
        } catch (Exception e) {
            throw SparkQuantException.internal("cannot write the report: " + e.getMessage(), e);
        }
    }

    private static void putNumber(com.fasterxml.jackson.databind.node.ObjectNode n, String key, double v) {
        if (Double.isNaN(v)) {
            n.putNull(key);
        } else {
            n.put(key, v);
        }
    }
}
