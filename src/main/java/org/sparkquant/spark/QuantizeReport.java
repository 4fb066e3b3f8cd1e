package org.sparkquant.spark;

import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.apache.spark.api.java.JavaSparkContext;
import org.sparkquant.SparkQuantException;
import org.sparkquant.format.gptq.GptqCheckpointWriter;
import org.sparkquant.io.Storage;
import org.sparkquant.model.LinearModule;
import org.sparkquant.model.MemoryPlan;
import org.sparkquant.model.ModelInventory;
import org.sparkquant.report.ReportHtml;

/**
 * {@code quantization_report.json}: the run's settings, time by phase, and per module how it is stored, the damping
 * GPTQ used, its loss and Hessian-weighted error against round-to-nearest's; the memory plan against the peak
 * resident memory of the executors and the driver, the Spark topology and the run's warnings. Built from the
 * statistics the quantize step returns ({@link BlockStats}, summed per module), never by reading staged blocks back.
 * The HTML report beside it is rendered from the JSON text alone ({@link ReportHtml}), so that {@code sparkquant
 * report} renders the same page from a finished run.
 */
public final class QuantizeReport {
    /** One row of the report; {@code ggmlType} is the block type of a GGUF output (else null). */
    /**
     * One module's figures; a routed expert's ({@code expert} >= 0) with the calibration tokens routed to it and the
     * fallback rule that quantized it ({@code layer}, {@code rtn}) when they were fewer than the threshold, else null.
     */
    public record ModuleReport(String name, int layer, int rows, int cols, boolean quantized, int bits, int groupSize,
            String ggmlType, double dampPercent, double loss, double hessianError, double rtnError, double seconds,
            int expert, long tokens, String fallback) {
        public ModuleReport(String name, int layer, int rows, int cols, boolean quantized, int bits, int groupSize,
                String ggmlType, double dampPercent, double loss, double hessianError, double rtnError,
                double seconds) {
            this(name, layer, rows, cols, quantized, bits, groupSize, ggmlType, dampPercent, loss, hessianError,
                    rtnError, seconds, -1, -1, null);
        }
    }

    private final QuantizeJob job;
    private final OutputTarget target;
    private final List<ModuleReport> modules;
    private final Set<String> blasKernels;
    private final MemoryPlan plan;
    /** Per executor id, the largest peak resident memory its blocks saw (-1: not measured). */
    private final Map<String, Long> executorPeaks;
    private final List<String> warnings;
    private final Topology topology;

    /**
     * Where the run ran: Spark's master, version, executors and their settings, and the driver's peak resident
     * memory when the report was made.
     */
    public record Topology(String master, String sparkVersion, int executors, int defaultParallelism,
            Map<String, String> settings, long driverPeakRssBytes) {}

    /** The Spark settings the report shows: sizes and counts only (never a value that may hold a secret). */
    private static final List<String> TOPOLOGY_KEYS = List.of("spark.executor.instances", "spark.executor.cores",
            "spark.executor.memory", "spark.executor.memoryOverhead", "spark.driver.memory",
            "spark.dynamicAllocation.enabled", "spark.task.cpus", "spark.executorEnv.OPENBLAS_CORETYPE");

    private QuantizeReport(QuantizeJob job, OutputTarget target, List<ModuleReport> modules, Set<String> blasKernels,
            MemoryPlan plan, Map<String, Long> executorPeaks, List<String> warnings, Topology topology) {
        this.job = job;
        this.target = target;
        this.modules = modules;
        this.blasKernels = blasKernels;
        this.plan = plan;
        this.executorPeaks = executorPeaks;
        this.warnings = warnings;
        this.topology = topology;
    }

    /** This report with the cluster it ran on. */
    QuantizeReport withTopology(Topology t) {
        return new QuantizeReport(job, target, modules, blasKernels, plan, executorPeaks, warnings, t);
    }

    /** The topology of a running Spark application (on the driver). */
    static Topology topology(JavaSparkContext jsc) {
        String master = jsc.master();
        // block managers: the executors' and the driver's (in local mode the driver's only)
        int executors = master.startsWith("local") && !master.startsWith("local-cluster") ? 0
                : Math.max(0, jsc.sc().getExecutorMemoryStatus().size() - 1);
        Map<String, String> settings = new java.util.LinkedHashMap<>();
        for (String key : TOPOLOGY_KEYS) {
            if (jsc.getConf().contains(key)) {
                settings.put(key, jsc.getConf().get(key));
            }
        }
        return new Topology(master, jsc.version(), executors, jsc.defaultParallelism(), settings,
                ProcessMemory.peakRssBytes());
    }

    static QuantizeReport of(QuantizeJob job, OutputTarget target, ModelInventory inventory, Set<String> quantized,
            Collection<BlockStats> blocks, Map<String, InputSummary> inputs) {
        Map<String, double[]> sums = new HashMap<>(); // loss, H-error, RTN H-error, seconds
        // summed in row order, so that the figures do not depend on the order the blocks finished in
        List<BlockStats> ordered = new ArrayList<>(blocks);
        ordered.sort(Comparator.comparing(BlockStats::module).thenComparingInt(BlockStats::r0));
        for (BlockStats s : ordered) {
            double[] t = sums.computeIfAbsent(s.module(), k -> new double[4]);
            t[0] += s.loss();
            t[1] += s.hessianError();
            t[2] += s.rtnError();
            t[3] += s.seconds();
        }
        boolean gptq = job.method() == QuantizeJob.Method.GPTQ;
        List<ModuleReport> out = new ArrayList<>();
        for (List<LinearModule> layer : inventory.layers()) {
            for (LinearModule m : layer) {
                if (!quantized.contains(m.name())) {
                    out.add(new ModuleReport(m.name(), m.layer(), m.outFeatures(), m.inFeatures(), false, 0, 0,
                            null, Double.NaN, Double.NaN, Double.NaN, Double.NaN, 0));
                    continue;
                }
                double[] t = sums.get(m.name());
                if (t == null) {
                    throw SparkQuantException.internal("no statistics for the quantized module " + m.name(), null);
                }
                OutputTarget.ModuleType type = target.type(m);
                long tokens = -1;
                String fallback = null;
                InputSummary in = inputs.get(m.hessianKey());
                if (m.routed() && job.layerwise()) {
                    InputSummary routed = inputs.get(LinearModule.hessianKey(m.layer(), LinearModule.Input.MLP_IN,
                            m.expert()));
                    tokens = routed == null ? -1 : routed.tokens();
                    if (routed != null && tokens < job.expertMinTokens()) {
                        fallback = job.expertFallback().name().toLowerCase(java.util.Locale.ROOT);
                        in = job.expertFallback() == QuantizeJob.ExpertFallback.RTN ? null
                                : m.input() == LinearModule.Input.MLP_IN
                                ? inputs.get(LinearModule.hessianKey(m.layer(), LinearModule.Input.MLP_IN, -1)) : in;
                    }
                }
                out.add(new ModuleReport(m.name(), m.layer(), m.outFeatures(), m.inFeatures(), true, type.bits(),
                        type.groupSize(), type.ggmlType(), in == null || !gptq ? Double.NaN : in.dampPercentUsed(),
                        t[0], t[1], t[2], t[3], m.expert(), tokens, fallback));
            }
        }
        out.sort(Comparator.comparingInt(ModuleReport::layer));
        Set<String> kernels = new TreeSet<>();
        Map<String, Long> peaks = new java.util.TreeMap<>();
        for (BlockStats b : blocks) {
            kernels.add(b.blasKernel());
            peaks.merge(b.executor() == null ? "unknown" : b.executor(), b.peakRssBytes(), Math::max);
        }
        MemoryPlan plan = MemoryPlan.of(inventory, job.samples(), job.seqLen(), job.samplesPerPartition());
        return new QuantizeReport(job, target, List.copyOf(out), Collections.unmodifiableSet(kernels), plan,
                Collections.unmodifiableMap(peaks), inputWarnings(job, inventory, quantized, inputs), null);
    }

    /** Damping that had to be raised and inputs with dead columns, one line per layer input. */
    private static List<String> inputWarnings(QuantizeJob job, ModelInventory inventory, Set<String> quantized,
            Map<String, InputSummary> inputs) {
        List<String> out = new ArrayList<>();
        for (List<LinearModule> layer : inventory.layers()) {
            Map<LinearModule.Input, List<String>> byInput = new java.util.EnumMap<>(LinearModule.Input.class);
            for (LinearModule m : layer) {
                if (quantized.contains(m.name())) {
                    byInput.computeIfAbsent(m.input(), k -> new ArrayList<>()).add(m.name());
                }
            }
            for (Map.Entry<LinearModule.Input, List<String>> e : byInput.entrySet()) {
                int index = layer.get(0).layer();
                InputSummary in = inputs.get(index + "/" + e.getKey());
                if (in == null) {
                    continue;
                }
                String where = "layer " + index + " " + e.getKey().label();
                if (job.method() == QuantizeJob.Method.GPTQ && in.dampPercentUsed() > job.quant().dampPercent()) {
                    out.add(String.format(Locale.ROOT, "%s: dampening raised from %s to %s (the Hessian was not "
                            + "positive definite with less)", where, job.quant().dampPercent(),
                            Math.round(in.dampPercentUsed() * 1e6) / 1e6));
                }
                if (in.deadColumns() > 0) {
                    out.add(where + ": " + in.deadColumns() + " of " + in.columns() + " input columns were zero on "
                            + "every calibration token (dead columns)");
                }
            }
        }
        return out;
    }

    public List<ModuleReport> modules() {
        return modules;
    }

    /** The OpenBLAS kernel sets the executors quantized with (one, on a uniform cluster). */
    public Set<String> blasKernels() {
        return blasKernels;
    }

    /**
     * Writes the JSON report to {@code uri} and the HTML page rendered from that JSON text to {@code htmlUri}, with
     * the run's time by phase and warnings from {@code progress}.
     */
    void write(Storage storage, String uri, String htmlUri, Progress progress) {
        ObjectMapper mapper = new ObjectMapper();
        ObjectNode root = mapper.createObjectNode();
        root.put("format", "sparkquant-report-v1");
        root.put("producer", "sparkquant " + GptqCheckpointWriter.version());
        root.put("method", job.method().name().toLowerCase(Locale.ROOT));
        target.describe(root);
        root.put("model", job.model());
        root.put("output", job.output());
        root.put("calibration", job.calibration());
        root.set("settings", mapper.valueToTree(job.quant()));
        root.put("true_sequential", job.trueSequential());
        root.put("samples", job.samples());
        root.put("seq_len", job.seqLen());
        root.put("seed", job.seed());
        root.put("samples_per_partition", job.samplesPerPartition());
        var kernels = root.putArray("blas_kernels");
        blasKernels.forEach(kernels::add);
        ObjectNode time = root.putObject("seconds_by_phase");
        progress.phases().forEach((k, v) -> time.put(k, Math.round(v * 1000) / 1000.0));
        if (topology != null) {
            ObjectNode spark = root.putObject("spark");
            spark.put("master", topology.master());
            spark.put("version", topology.sparkVersion());
            spark.put("executors", topology.executors());
            spark.put("default_parallelism", topology.defaultParallelism());
            topology.settings().forEach(spark.putObject("settings")::put);
            var used = spark.putArray("executors_used");
            executorPeaks.keySet().forEach(used::add);
        }
        ObjectNode memory = root.putObject("memory");
        ObjectNode planned = memory.putObject("plan");
        planned.put("executor_bytes", plan.executorBytes());
        planned.put("driver_bytes", plan.driverBytes());
        planned.put("largest_layer_fp32_bytes", plan.largestLayerFp32Bytes());
        planned.put("hidden_state_bytes_per_sample", plan.hiddenStateBytesPerSample());
        planned.put("activation_bytes_per_sample", plan.activationBytesPerSample());
        planned.put("partitions", plan.partitions());
        planned.put("samples_per_partition", plan.samplesPerPartition());
        ObjectNode hessians = planned.putObject("hessian_bytes");
        plan.hessianBytes().forEach((k, v) -> hessians.put(k.label(), v));
        ObjectNode used = memory.putObject("used");
        ObjectNode peaks = used.putObject("executor_peak_rss_bytes");
        executorPeaks.forEach((k, v) -> {
            if (v > 0) { // -1: not measured; 0: statistics of an earlier version, resumed
                peaks.put(k, v);
            }
        });
        if (topology != null && topology.driverPeakRssBytes() >= 0) {
            used.put("driver_peak_rss_bytes", topology.driverPeakRssBytes());
        }
        var warningList = root.putArray("warnings");
        progress.warnings().forEach(warningList::add);
        warnings.forEach(warningList::add);
        if (modules.stream().anyMatch(r -> r.expert() >= 0)) {
            // routed experts: how many there are and how many had too few calibration tokens for their own Hessians
            ObjectNode moe = root.putObject("moe");
            moe.put("expert_min_tokens", job.expertMinTokens());
            moe.put("expert_fallback", job.expertFallback().name().toLowerCase(java.util.Locale.ROOT));
            moe.put("experts", modules.stream().filter(r -> r.expert() >= 0).map(r -> r.layer() + "/" + r.expert())
                    .distinct().count());
            moe.put("experts_below_threshold", modules.stream().filter(r -> r.fallback() != null)
                    .map(r -> r.layer() + "/" + r.expert()).distinct().count());
        }
        var array = root.putArray("modules");
        for (ModuleReport r : modules) {
            ObjectNode n = array.addObject();
            n.put("name", r.name());
            n.put("layer", r.layer());
            n.put("rows", r.rows());
            n.put("cols", r.cols());
            n.put("quantized", r.quantized());
            if (r.quantized() && r.ggmlType() != null) {
                n.put("ggml_type", r.ggmlType());
            } else if (r.quantized()) {
                n.put("bits", r.bits());
                n.put("group_size", r.groupSize());
            }
            if (r.expert() >= 0) {
                n.put("expert", r.expert());
                if (r.tokens() >= 0) {
                    n.put("tokens", r.tokens());
                }
                if (r.fallback() != null) {
                    n.put("fallback", r.fallback());
                }
            }
            if (r.quantized()) {
                putNumber(n, "damp_percent", r.dampPercent());
                putNumber(n, "loss", r.loss());
                putNumber(n, "hessian_error", r.hessianError());
                putNumber(n, "rtn_hessian_error", r.rtnError());
                n.put("seconds", Math.round(r.seconds() * 1000) / 1000.0);
            }
        }
        String json;
        try {
            json = mapper.writerWithDefaultPrettyPrinter().writeValueAsString(root) + "\n";
        } catch (Exception e) {
            throw SparkQuantException.internal("cannot write the report: " + e.getMessage(), e);
        }
        storage.writeString(uri, json);
        storage.writeString(htmlUri, ReportHtml.render(ReportHtml.parse(json, uri)));
    }

    private static void putNumber(ObjectNode n, String key, double v) {
        if (Double.isNaN(v)) {
            n.putNull(key);
        } else {
            n.put(key, v);
        }
    }
}
