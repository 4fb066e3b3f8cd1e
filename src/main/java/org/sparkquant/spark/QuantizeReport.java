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
import org.sparkquant.SparkQuantException;
import org.sparkquant.io.Storage;
import org.sparkquant.model.LinearModule;
import org.sparkquant.model.ModelInventory;

/**
 * {@code quantization_report.json}: the run's settings, time by phase, and per module how it is stored, the damping
 * GPTQ used, its loss and Hessian-weighted error against round-to-nearest's. Built from the statistics the quantize
 * step returns ({@link BlockStats}, summed per module), never by reading staged blocks back.
 */
public final class QuantizeReport {
    /** One row of the report; {@code ggmlType} is the block type of a GGUF output (else null). */
    public record ModuleReport(String name, int layer, int rows, int cols, boolean quantized, int bits, int groupSize,
            String ggmlType, double dampPercent, double loss, double hessianError, double rtnError, double seconds) {}

    private final QuantizeJob job;
    private final OutputTarget target;
    private final List<ModuleReport> modules;
    private final Set<String> blasKernels;

    private QuantizeReport(QuantizeJob job, OutputTarget target, List<ModuleReport> modules, Set<String> blasKernels) {
        this.job = job;
        this.target = target;
        this.modules = modules;
        this.blasKernels = blasKernels;
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
                InputSummary in = inputs.get(m.layer() + "/" + m.input());
                OutputTarget.ModuleType type = target.type(m);
                out.add(new ModuleReport(m.name(), m.layer(), m.outFeatures(), m.inFeatures(), true, type.bits(),
                        type.groupSize(), type.ggmlType(), in == null || !gptq ? Double.NaN : in.dampPercentUsed(),
                        t[0], t[1], t[2], t[3]));
            }
        }
        out.sort(Comparator.comparingInt(ModuleReport::layer));
        Set<String> kernels = new TreeSet<>();
        blocks.forEach(b -> kernels.add(b.blasKernel()));
        return new QuantizeReport(job, target, List.copyOf(out), Collections.unmodifiableSet(kernels));
    }

    public List<ModuleReport> modules() {
        return modules;
    }

    /** The OpenBLAS kernel sets the executors quantized with (one, on a uniform cluster). */
    public Set<String> blasKernels() {
        return blasKernels;
    }

    void write(Storage storage, String uri, Map<String, Double> phases) {
        ObjectMapper mapper = new ObjectMapper();
        ObjectNode root = mapper.createObjectNode();
        root.put("format", "sparkquant-report-v1");
        root.put("method", job.method().name().toLowerCase(Locale.ROOT));
        target.describe(root);
        root.set("settings", mapper.valueToTree(job.quant()));
        root.put("samples", job.samples());
        root.put("seq_len", job.seqLen());
        var kernels = root.putArray("blas_kernels");
        blasKernels.forEach(kernels::add);
        ObjectNode time = root.putObject("seconds_by_phase");
        phases.forEach((k, v) -> time.put(k, Math.round(v * 1000) / 1000.0));
        var array = root.putArray("modules");
        for (ModuleReport r : modules) {
            ObjectNode n = array.addObject();
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
            storage.writeString(uri, mapper.writerWithDefaultPrettyPrinter().writeValueAsString(root) + "\n");
        } catch (Exception e) {
            throw SparkQuantException.internal("cannot write the report: " + e.getMessage(), e);
        }
    }

    private static void putNumber(ObjectNode n, String key, double v) {
        if (Double.isNaN(v)) {
            n.putNull(key);
        } else {
            n.put(key, v);
        }
    }
}
