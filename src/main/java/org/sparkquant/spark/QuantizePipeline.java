package org.sparkquant.spark;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.function.Supplier;
import java.util.stream.IntStream;

import org.apache.spark.TaskContext;
import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.storage.StorageLevel;
import org.sparkquant.SparkQuantException;
import org.sparkquant.io.Storage;
import org.sparkquant.io.TensorStore;
import org.sparkquant.model.LinearModule;
import org.sparkquant.model.LinearModule.Input;
import org.sparkquant.model.MemoryPlan;
import org.sparkquant.model.ModelInventory;

/**
 * The distributed GPTQ run: the layer loop. The driver holds metadata; calibration hidden states live in a fixed
 * number of partitions on the executors. Per decoder layer and true-sequential group (q,k,v → o → gate,up → down)
 * the executors accumulate the group's Hessians ({@link LayerHessians}), then quantize fixed blocks of output
 * channels in parallel into the output's format ({@link OutputTarget}) and stage them under {@code _work/}. The
 * quantized layer produces the next layer's inputs, which are checkpointed so that {@code --resume} continues after
 * the last finished layer ({@link ResumePoint}). Finally the target assembles the staged blocks, writes the report
 * ({@link QuantizeReport}) and commits the output.
 *
 * <p>Everything that decides a bit of the output is a function of the inputs and the settings, never of the cluster:
 * partitions follow the sample count, blocks follow the module shapes, Hessian sums are exact.
 */
public final class QuantizePipeline {
    /** The report of a GPTQ checkpoint output. */
    public static final String REPORT = CheckpointTarget.REPORT;
    /** The HTML page of that report, rendered from it ({@code org.sparkquant.report.ReportHtml}). */
    public static final String REPORT_HTML = CheckpointTarget.REPORT_HTML;
    /** A GGUF output's report and its page: {@code NAME.gguf} + these suffixes. */
    public static final String GGUF_REPORT_SUFFIX = GgufTarget.REPORT_SUFFIX;
    public static final String GGUF_REPORT_HTML_SUFFIX = GgufTarget.REPORT_HTML_SUFFIX;

    private QuantizePipeline() {}

    public record Result(List<QuantizeReport.ModuleReport> modules, List<String> shards, double seconds,
            int resumedAtLayer, Map<String, Double> phases) {}

    public static Result run(JavaSparkContext jsc, Storage storage, QuantizeJob job, boolean resume,
            boolean overwrite, Supplier<List<int[]>> calibration, Progress progress) {
        return run(jsc, storage, job, resume, overwrite, calibration, progress, FaultHook.NONE);
    }

    public static Result run(JavaSparkContext jsc, Storage storage, QuantizeJob job, boolean resume,
            boolean overwrite, Supplier<List<int[]>> calibration, Progress progress, FaultHook faults) {
        return run(jsc, storage, job, resume, overwrite, calibration, progress, faults, null);
    }

    /** Takes the lease of the job's output (before the run touches it); see {@link OutputLease}. */
    public static OutputLease lease(Storage storage, QuantizeJob job, boolean resume, java.time.Duration timeout) {
        return OutputLease.acquire(storage, OutputTarget.of(job).leaseUri(), job.output(), resume, timeout);
    }

    /**
     * The run. {@code lease}, when given, is the output's lease taken by the caller: the run stops if it is lost
     * (checked at every layer and before the commit).
     */
    public static Result run(JavaSparkContext jsc, Storage storage, QuantizeJob job, boolean resume,
            boolean overwrite, Supplier<List<int[]>> calibration, Progress progress, FaultHook faults,
            OutputLease lease) {
        long start = System.nanoTime();
        Runnable owned = lease == null ? () -> { } : lease::check;
        try (OutputTarget target = OutputTarget.of(job)) {
            // validate the inputs (config, tensor headers and shapes, the output's plan) before touching the output
            ModelSource source = ModelSource.dense(storage, job.model());
            ModelInventory inventory;
            try (TensorStore store = TensorStore.open(storage, job.model())) {
                inventory = ModelInventory.of(source.config(), store);
            }
            if (inventory.moe() && job.saveHessians() != null) {
                throw SparkQuantException.badInput("--save-hessians is not supported for mixture-of-experts models ("
                        + inventory.config().modelType() + ") yet");
            }
            List<LinearModule> quantized = target.plan(storage, inventory, progress);
            WorkDir work = target.workDir(storage).withFaults(faults);
            target.prepare(storage, work, overwrite, resume);
            int layersDone = ResumePoint.begin(work, job, resume, progress);
            QuantizeRun run = new QuantizeRun(job, source, work, target, faults);
            owned.run();

            Set<String> names = new HashSet<>();
            quantized.forEach(m -> names.add(m.name()));
            Map<String, BlockStats> stats = new LinkedHashMap<>();
            Map<String, InputSummary> inputs = new LinkedHashMap<>();
            if (!job.layerwise()) {
                progress.step(-1, "rtn · quantize " + quantized.size() + " modules");
                record(stats, BlockQuantizer.quantize(jsc, run, BlockQuantizer.blocksOf(quantized)));
            } else if (!quantized.isEmpty()) {
                runLayers(jsc, run, inventory, names, layersDone, calibration, progress, stats, inputs, owned);
            }
            if (job.layerwise()) {
                LayerHessians.loadStaged(run, inventory.layers(), inputs);
            }
            progress.step(-1, "report");
            QuantizeReport report = QuantizeReport.of(job, target, inventory, names, stats.values(), inputs)
                    .withTopology(QuantizeReport.topology(jsc));
            if (report.blasKernels().size() > 1) {
                progress.message("warning: executors ran different OpenBLAS kernels " + report.blasKernels()
                        + ", so the output is not byte-identical to a uniform cluster's; set "
                        + "spark.executorEnv.OPENBLAS_CORETYPE to one of them");
            }
            exports(run, inventory, quantized, inputs);
            owned.run();
            List<String> files = target.commit(run, inventory, report, progress);
            work.deleteAll();
            return new Result(report.modules(), files, (System.nanoTime() - start) / 1e9, layersDone,
                    progress.phases());
        }
    }

    /** --save-hessians manifest and --export-imatrix, from the Hessian summaries. */
    private static void exports(QuantizeRun run, ModelInventory inventory, List<LinearModule> quantized,
            Map<String, InputSummary> inputs) {
        QuantizeJob job = run.job();
        List<String> names = quantized.stream().map(LinearModule::name).toList();
        if (job.saveHessians() != null && job.layerwise()) {
            HessianExport.manifest(run.storage(), job.saveHessians(), inventory, names, inputs, job.quant().precision());
        }
        if (job.exportImatrix() != null) {
            GgufTarget.writeImatrix(run.storage(), job, inventory, names, inputs, inventory.config().modelType());
        }
    }

    // ------------------------------------------------------------------ GPTQ, layer by layer

    private static void runLayers(JavaSparkContext jsc, QuantizeRun run, ModelInventory inventory,
            Set<String> names, int layersDone, Supplier<List<int[]>> calibration, Progress progress,
            Map<String, BlockStats> stats, Map<String, InputSummary> inputs, Runnable owned) {
        WorkDir work = run.work();
        ModelSource source = run.source();
        int layers = source.config().numLayers();
        int partitions;
        JavaRDD<SampleState> states;
        if (layersDone == 0) {
            List<int[]> samples = calibration.get();
            partitions = MemoryPlan.partitionsFor(samples.size(), run.job().samplesPerPartition());
            List<SampleState> list = new ArrayList<>();
            for (int i = 0; i < samples.size(); i++) {
                list.add(new SampleState(i, samples.get(i), null));
            }
            progress.step(-1, "embeddings · " + samples.size() + " samples in " + partitions + " partitions");
            states = jsc.parallelize(list, partitions).mapPartitions(it -> SparkEvaluator.embed(source, it));
        } else {
            // a run halted after the last finished layer's progress record, in its clean-up: finish it
            int last = layersDone - 1;
            if (last > 0 && work.exists("hidden/" + last)) {
                work.delete("hidden/" + last);
            }
            LayerHessians.dropSolverInputs(work, last, inventory.layer(last));
            String dir = "hidden/" + layersDone;
            partitions = Integer.parseInt(work.read(dir + "/partitions").trim());
            progress.step(-1, "hidden states after layer " + layersDone + " from " + work.path(dir));
            Storage storage = source.storage();
            states = jsc.parallelize(IntStream.range(0, partitions).boxed().toList(), partitions)
                    .flatMap(p -> Staged.readHidden(storage, work.path(dir + "/part-" + p + ".bin")).iterator());
            for (int layer = 0; layer < layersDone; layer++) {
                record(stats, Staged.<ArrayList<BlockStats>>readObject(storage, work.path(statsPath(layer))));
            }
        }
        states = states.persist(StorageLevel.MEMORY_AND_DISK());
        states.count();

        for (int layer = layersDone; layer < layers; layer++) {
            owned.run();
            List<LinearModule> done = new ArrayList<>();
            List<BlockStats> layerStats = new ArrayList<>();
            for (List<Input> group : groups(run.job().trueSequential())) {
                List<LinearModule> modules = inventory.layer(layer).stream()
                        .filter(m -> group.contains(m.input()) && names.contains(m.name())).toList();
                if (modules.isEmpty()) {
                    continue;
                }
                String label = label(modules);
                progress.step(layer, label + " · hessian");
                hessians(run, states, layer, done, modules, inputs);
                List<ModuleBlocks.Block> blocks = BlockQuantizer.blocksOf(modules);
                progress.step(layer, label + " · quantize " + blocks.size() + " blocks");
                layerStats.addAll(BlockQuantizer.quantize(jsc, run, blocks,
                        ExpertRules.plan(run.job(), inputs, modules)));
                if (run.job().trueSequential()) {
                    done.addAll(modules);
                }
            }
            progress.step(layer, "forward with the quantized layer");
            List<LinearModule> all = inventory.layer(layer).stream().filter(m -> names.contains(m.name())).toList();
            int index = layer;
            JavaRDD<SampleState> next = states.mapPartitions(
                    it -> SparkEvaluator.forward(source, StagedLayers.weights(run, index, all), it))
                    .persist(StorageLevel.MEMORY_AND_DISK());
            checkpoint(work, next, layer + 1, partitions);
            work.writeOnce(statsPath(layer), Staged.object(new ArrayList<>(layerStats)));
            record(stats, layerStats);
            states.unpersist(false);
            states = next;
            // progress first: until it moves past this layer, a resumed run starts from hidden/<layer>
            ResumePoint.layersDone(work, layer + 1);
            if (layer > 0) {
                work.delete("hidden/" + layer);
            }
            LayerHessians.dropSolverInputs(work, layer, inventory.layer(layer));
            progress.layerDone();
            run.faults().at(FaultHook.Point.LAYER_DONE, layer, 0);
        }
        states.unpersist(false);
    }

    /**
     * The Hessians a group of modules needs: each module's own (an expert's from the tokens routed to it), and in a
     * sparse layer the MLP input over every token (the fallback of experts below the token threshold). Experts'
     * down_proj Hessians come last: whether an expert is below the threshold is known from its gate/up Hessian, and
     * with {@code --expert-fallback layer} such an expert's down_proj Hessian takes every token.
     */
    private static void hessians(QuantizeRun run, JavaRDD<SampleState> states, int layer, List<LinearModule> done,
            List<LinearModule> modules, Map<String, InputSummary> inputs) {
        Set<LayerHessians.Key> first = new java.util.LinkedHashSet<>();
        Set<LayerHessians.Key> downs = new java.util.LinkedHashSet<>();
        // the all-token MLP input first, then each expert's: the packing MemoryPlan.moePassBytes bounds
        modules.stream().filter(m -> m.routed() && m.input() == Input.MLP_IN).findFirst()
                .ifPresent(m -> first.add(new LayerHessians.Key(Input.MLP_IN, -1, m.inFeatures())));
        for (LinearModule m : modules) {
            LayerHessians.Key k = LayerHessians.Key.of(m);
            if (m.routed() && m.input() == Input.DOWN_IN) {
                downs.add(k);
            } else {
                first.add(k);
            }
        }
        if (!first.isEmpty()) {
            inputs.putAll(LayerHessians.compute(run, states, layer, done, List.copyOf(first), Set.of()));
        }
        if (!downs.isEmpty()) {
            Set<Integer> dense = new java.util.TreeSet<>();
            if (run.job().expertFallback() == QuantizeJob.ExpertFallback.LAYER) {
                for (LayerHessians.Key k : downs) {
                    if (ExpertRules.below(run.job(), inputs, layer, k.expert())) {
                        dense.add(k.expert());
                    }
                }
            }
            inputs.putAll(LayerHessians.compute(run, states, layer, done, List.copyOf(downs), dense));
        }
    }

    /** A group's modules for progress lines: {@code self_attn.q_proj,...}; experts as {@code experts[N].gate_proj}. */
    static String label(List<LinearModule> modules) {
        Set<String> parts = new java.util.LinkedHashSet<>();
        long experts = modules.stream().filter(LinearModule::routed).mapToInt(LinearModule::expert).distinct().count();
        for (LinearModule m : modules) {
            String local = m.name().substring(m.name().indexOf(".", 13) + 1);
            parts.add(m.routed() ? "experts[" + experts + "]." + m.kind() : local);
        }
        return String.join(",", parts);
    }

    private static void record(Map<String, BlockStats> into, List<BlockStats> stats) {
        for (BlockStats s : stats) {
            into.put(s.module() + "#" + s.r0(), s);
        }
    }

    /** The statistics of a finished layer's blocks (for the report of a resumed run). */
    static String statsPath(int layer) {
        return "layers/" + layer + "/stats.bin";
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
}
