package org.sparkquant.report;

import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.sparkquant.SparkQuantException;

/**
 * A run's {@code quantization_report.json} as one self-contained HTML page: settings, warnings, time by phase,
 * GPTQ against round-to-nearest per layer and per module (Hessian-weighted error tr(ΔW H ΔWᵀ)), the damping used,
 * the memory plan against the peak resident memory, the BLAS kernel and the Spark topology. Inline CSS and SVG only:
 * no script, no external resource, so it reads the same in a mail attachment, an S3 console or a browser offline.
 * Reports of earlier versions (without memory, topology or warnings) render without those sections.
 */
public final class ReportHtml {
    /** The format the JSON names itself by. */
    public static final String FORMAT = "sparkquant-report-v1";

    private static final String GPTQ_COLOR = "#2b6cb0";
    private static final String RTN_COLOR = "#dd6b20";
    private static final Pattern LAYER = Pattern.compile("\\.layers\\.(\\d+)\\.");

    private ReportHtml() {}

    /** Parses a report's JSON text; {@code source} names it in the one-line error of a malformed report. */
    public static JsonNode parse(String json, String source) {
        JsonNode root;
        try {
            root = new ObjectMapper().readTree(json);
        } catch (JsonProcessingException e) {
            throw SparkQuantException.badInput(source + ": not valid JSON (" + e.getOriginalMessage() + ")");
        }
        if (root == null || !FORMAT.equals(root.path("format").asText()) || !root.path("modules").isArray()) {
            throw SparkQuantException.badInput(source + ": not a sparkquant run report (" + FORMAT + ")");
        }
        return root;
    }

    /** The page, a pure function of the report. */
    public static String render(JsonNode r) {
        List<Module> modules = modules(r);
        StringBuilder b = new StringBuilder(64 * 1024);
        String model = r.path("model").asText("");
        b.append("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n")
                .append("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n")
                .append("<title>sparkquant report").append(model.isEmpty() ? "" : " · " + Html.escape(model))
                .append("</title>\n<style>\n").append(CSS).append("</style>\n</head>\n<body>\n");
        header(b, r, modules);
        warnings(b, r);
        settings(b, r);
        phases(b, r);
        errors(b, modules);
        damping(b, r, modules);
        memory(b, r);
        environment(b, r);
        moduleTable(b, modules);
        b.append("<footer>").append(Html.escape(r.path("producer").asText("sparkquant")))
                .append(" · ").append(Html.escape(r.path("format").asText())).append("</footer>\n</body>\n</html>\n");
        return b.toString();
    }

    /** One row of the report's modules. */
    private record Module(String name, int layer, int rows, int cols, boolean quantized, String type, double damp,
            double loss, double gptq, double rtn, double seconds) {
        double ratio() {
            return rtn > 0 ? gptq / rtn : Double.NaN;
        }

        String shortName() {
            return name.replace("model.layers.", "L").replace("self_attn.", "").replace("mlp.", "");
        }
    }

    private static List<Module> modules(JsonNode r) {
        List<Module> out = new ArrayList<>();
        for (JsonNode m : r.path("modules")) {
            String name = m.path("name").asText();
            int layer = m.has("layer") ? m.path("layer").asInt() : layerOf(name);
            boolean q = m.path("quantized").asBoolean(false);
            String type = !q ? "dense" : m.hasNonNull("ggml_type") ? m.get("ggml_type").asText()
                    : "int" + m.path("bits").asInt() + (m.path("group_size").asInt() > 0
                    ? " g" + m.path("group_size").asInt() : " per-channel");
            out.add(new Module(name, layer, m.path("rows").asInt(), m.path("cols").asInt(), q, type,
                    number(m, "damp_percent"), number(m, "loss"), number(m, "hessian_error"),
                    number(m, "rtn_hessian_error"), number(m, "seconds")));
        }
        return out;
    }

    private static int layerOf(String name) {
        Matcher m = LAYER.matcher(name);
        return m.find() ? Integer.parseInt(m.group(1)) : -1;
    }

    private static double number(JsonNode n, String key) {
        JsonNode v = n.get(key);
        return v != null && v.isNumber() ? v.asDouble() : Double.NaN;
    }

    private static void header(StringBuilder b, JsonNode r, List<Module> modules) {
        String format = r.path("output_format").asText("gptq");
        String method = r.path("method").asText("?").toUpperCase(Locale.ROOT);
        JsonNode s = r.path("settings");
        String scheme = format.equals("gguf") ? "GGUF " + r.path("gguf_type").asText()
                : "GPTQ checkpoint, " + s.path("bits").asInt() + " bit, group " + s.path("groupSize").asInt();
        b.append("<h1>sparkquant run report</h1>\n<p class=\"sub\">")
                .append(Html.escape(r.path("model").asText("(model not recorded)"))).append(" → ")
                .append(Html.escape(r.path("output").asText("(output not recorded)"))).append("</p>\n");
        long quantized = modules.stream().filter(Module::quantized).count();
        double gptq = 0;
        double rtn = 0;
        for (Module m : modules) {
            if (m.quantized() && !Double.isNaN(m.gptq()) && !Double.isNaN(m.rtn())) {
                gptq += m.gptq();
                rtn += m.rtn();
            }
        }
        double total = 0;
        for (JsonNode t : r.path("seconds_by_phase")) {
            total += t.asDouble();
        }
        b.append("<div class=\"cards\">\n");
        card(b, "method", method);
        card(b, "output", scheme);
        card(b, "modules quantized", quantized + " of " + modules.size());
        card(b, "GPTQ / RTN H-error", rtn > 0 ? Html.percent(gptq / rtn) : "–");
        card(b, "time", Html.seconds(total));
        card(b, "warnings", Integer.toString(r.path("warnings").size()));
        JsonNode moe = r.path("moe");
        if (moe.isObject()) {
            // experts with fewer calibration tokens than the threshold were quantized by the fallback rule
            card(b, "experts below " + moe.path("expert_min_tokens").asInt() + " tokens",
                    moe.path("experts_below_threshold").asLong() + " of " + moe.path("experts").asLong() + " ("
                            + moe.path("expert_fallback").asText() + ")");
        }
        b.append("</div>\n");
    }

    private static void card(StringBuilder b, String label, String value) {
        b.append("<div class=\"card\"><div class=\"label\">").append(Html.escape(label))
                .append("</div><div class=\"value\">").append(Html.escape(value)).append("</div></div>\n");
    }

    private static void warnings(StringBuilder b, JsonNode r) {
        JsonNode w = r.path("warnings");
        if (!w.isArray() || w.isEmpty()) {
            return;
        }
        b.append("<section class=\"warnings\">\n<h2>Warnings</h2>\n<ul>\n");
        for (JsonNode line : w) {
            b.append("<li>").append(Html.escape(line.asText())).append("</li>\n");
        }
        b.append("</ul>\n</section>\n");
    }

    private static void settings(StringBuilder b, JsonNode r) {
        Map<String, String> rows = new LinkedHashMap<>();
        rows.put("method", r.path("method").asText());
        rows.put("output format", r.path("output_format").asText("gptq"));
        if (r.has("gguf_type")) {
            rows.put("GGUF type", r.path("gguf_type").asText());
            rows.put("importance", r.path("importance").asText());
        }
        rows.put("model", r.path("model").asText("–"));
        rows.put("output", r.path("output").asText("–"));
        rows.put("calibration", r.path("calibration").isTextual() ? r.path("calibration").asText() : "none");
        rows.put("samples × seq-len", r.path("samples").asText() + " × " + r.path("seq_len").asText());
        if (r.has("seed")) {
            rows.put("seed", r.path("seed").asText());
        }
        if (r.has("samples_per_partition")) {
            rows.put("samples per partition", r.path("samples_per_partition").asText());
        }
        if (r.has("true_sequential")) {
            rows.put("true sequential", r.path("true_sequential").asText());
        }
        Iterator<Map.Entry<String, JsonNode>> it = r.path("settings").fields();
        while (it.hasNext()) {
            Map.Entry<String, JsonNode> e = it.next();
            rows.put(e.getKey(), e.getValue().asText());
        }
        b.append("<section>\n<h2>Settings</h2>\n<table class=\"kv\">\n");
        rows.forEach((k, v) -> b.append("<tr><th>").append(Html.escape(k)).append("</th><td>")
                .append(Html.escape(v)).append("</td></tr>\n"));
        b.append("</table>\n</section>\n");
    }

    private static void phases(StringBuilder b, JsonNode r) {
        JsonNode p = r.path("seconds_by_phase");
        b.append("<section>\n<h2>Time by phase</h2>\n");
        if (!p.isObject() || p.isEmpty()) {
            b.append("<p>No phases recorded.</p>\n</section>\n");
            return;
        }
        List<String> labels = new ArrayList<>();
        List<Double> values = new ArrayList<>();
        double total = 0;
        Iterator<Map.Entry<String, JsonNode>> it = p.fields();
        while (it.hasNext()) {
            Map.Entry<String, JsonNode> e = it.next();
            labels.add(e.getKey());
            values.add(e.getValue().asDouble());
            total += e.getValue().asDouble();
        }
        List<String> shares = new ArrayList<>();
        for (double v : values) {
            shares.add(total > 0 ? Html.percent(v / total) : "–");
        }
        b.append("<p>Wall-clock seconds of the driver's steps, ").append(Html.seconds(total)).append(" in all.</p>\n");
        b.append(Svg.horizontalBars("time by phase", labels, List.of(new Svg.Series("seconds", "#38a169",
                values.stream().mapToDouble(Double::doubleValue).toArray())), Html::seconds, shares));
        b.append("</section>\n");
    }

    private static void errors(StringBuilder b, List<Module> modules) {
        List<Module> measured = modules.stream()
                .filter(m -> m.quantized() && !Double.isNaN(m.gptq()) && !Double.isNaN(m.rtn())).toList();
        b.append("<section>\n<h2>GPTQ against round-to-nearest</h2>\n");
        if (measured.isEmpty()) {
            b.append("<p>No Hessian errors: the run had no calibration data (round-to-nearest without "
                    + "Hessians).</p>\n</section>\n");
            return;
        }
        b.append("<p>Hessian-weighted error tr(ΔW H ΔWᵀ) of each module's quantized weights, the quantity GPTQ "
                + "minimises, next to round-to-nearest's on the same grid. Lower is better; the percentage is "
                + "GPTQ's error as a share of RTN's.</p>\n");
        TreeMap<Integer, double[]> byLayer = new TreeMap<>();
        for (Module m : measured) {
            double[] t = byLayer.computeIfAbsent(m.layer(), k -> new double[2]);
            t[0] += m.gptq();
            t[1] += m.rtn();
        }
        List<String> layers = byLayer.keySet().stream().map(String::valueOf).toList();
        double[] g = byLayer.values().stream().mapToDouble(t -> t[0]).toArray();
        double[] n = byLayer.values().stream().mapToDouble(t -> t[1]).toArray();
        b.append("<h3>Per layer</h3>\n");
        b.append(Svg.columns("Hessian error per layer", layers, List.of(new Svg.Series("GPTQ", GPTQ_COLOR, g),
                new Svg.Series("RTN", RTN_COLOR, n)), Html::num));
        b.append("<h3>Per module</h3>\n");
        b.append(Svg.horizontalBars("Hessian error per module", measured.stream().map(Module::shortName).toList(),
                List.of(new Svg.Series("GPTQ", GPTQ_COLOR, measured.stream().mapToDouble(Module::gptq).toArray()),
                        new Svg.Series("RTN", RTN_COLOR, measured.stream().mapToDouble(Module::rtn).toArray())),
                Html::num, measured.stream().map(m -> Html.percent(m.ratio())).toList()));
        b.append("</section>\n");
    }

    private static void damping(StringBuilder b, JsonNode r, List<Module> modules) {
        double configured = number(r.path("settings"), "dampPercent");
        List<Module> damped = modules.stream().filter(m -> !Double.isNaN(m.damp())).toList();
        b.append("<section>\n<h2>Damping</h2>\n");
        if (damped.isEmpty()) {
            b.append("<p>No GPTQ damping in this run (method ").append(Html.escape(r.path("method").asText()))
                    .append(").</p>\n</section>\n");
            return;
        }
        TreeMap<Double, Integer> counts = new TreeMap<>();
        damped.forEach(m -> counts.merge(m.damp(), 1, Integer::sum));
        b.append("<p>Configured: ").append(Html.num(configured)).append(" of mean(diag H), raised automatically "
                + "while the Hessian is not positive definite.</p>\n<table class=\"grid\"><tr><th>damping used</th>"
                + "<th>modules</th></tr>\n");
        counts.forEach((d, c) -> b.append("<tr><td>").append(Html.num(d)).append(d > configured ? " (raised)" : "")
                .append("</td><td>").append(c).append("</td></tr>\n"));
        b.append("</table>\n</section>\n");
    }

    private static void memory(StringBuilder b, JsonNode r) {
        JsonNode mem = r.path("memory");
        if (!mem.isObject()) {
            return;
        }
        JsonNode plan = mem.path("plan");
        JsonNode used = mem.path("used");
        b.append("<section>\n<h2>Memory: plan against use</h2>\n<p>The plan bounds what the run holds: on an "
                + "executor one fp32 decoder layer (").append(Html.bytes(number(plan, "largest_layer_fp32_bytes")))
                .append("), the hidden states of its partition (").append(plan.path("samples_per_partition").asText())
                .append(" samples × ").append(Html.bytes(number(plan, "hidden_state_bytes_per_sample")))
                .append(", in and out), one Hessian and its factor, and one sequence's activations. Used is each "
                + "process's peak resident memory (heap, ND4J off-heap and the JVM itself), sampled as its blocks "
                + "finished; in local mode the driver runs the tasks, so both are the same process.</p>\n");
        List<String> labels = new ArrayList<>();
        List<Double> planned = new ArrayList<>();
        List<Double> measured = new ArrayList<>();
        Iterator<Map.Entry<String, JsonNode>> it = used.path("executor_peak_rss_bytes").fields();
        while (it.hasNext()) {
            Map.Entry<String, JsonNode> e = it.next();
            // in local mode the tasks run in the driver, whose executor id is "driver"
            labels.add(e.getKey().equals("driver") ? "executor (in the driver)" : "executor " + e.getKey());
            planned.add(number(plan, "executor_bytes"));
            measured.add(e.getValue().asDouble());
        }
        if (labels.isEmpty()) {
            labels.add("executor");
            planned.add(number(plan, "executor_bytes"));
            measured.add(Double.NaN);
        }
        labels.add("driver");
        planned.add(number(plan, "driver_bytes"));
        measured.add(number(used, "driver_peak_rss_bytes"));
        b.append(Svg.horizontalBars("memory plan against peak resident memory", labels, List.of(
                new Svg.Series("plan", "#a0aec0", planned.stream().mapToDouble(Double::doubleValue).toArray()),
                new Svg.Series("peak resident", "#805ad5", measured.stream().mapToDouble(Double::doubleValue)
                        .toArray())), Html::bytes, null));
        b.append("</section>\n");
    }

    private static void environment(StringBuilder b, JsonNode r) {
        Map<String, String> rows = new LinkedHashMap<>();
        List<String> kernels = new ArrayList<>();
        r.path("blas_kernels").forEach(k -> kernels.add(k.asText()));
        rows.put("OpenBLAS kernel", kernels.isEmpty() ? "–" : String.join(", ", kernels));
        JsonNode spark = r.path("spark");
        if (spark.isObject()) {
            rows.put("Spark master", spark.path("master").asText());
            rows.put("Spark version", spark.path("version").asText());
            rows.put("executors", spark.path("executors").asInt() == 0 ? "none (local mode: the driver runs the tasks)"
                    : spark.path("executors").asText());
            rows.put("default parallelism", spark.path("default_parallelism").asText());
            List<String> ids = new ArrayList<>();
            spark.path("executors_used").forEach(e -> ids.add(e.asText()));
            rows.put("executors that quantized", ids.isEmpty() ? "–" : String.join(", ", ids));
            Iterator<Map.Entry<String, JsonNode>> it = spark.path("settings").fields();
            while (it.hasNext()) {
                Map.Entry<String, JsonNode> e = it.next();
                rows.put(e.getKey(), e.getValue().asText());
            }
        }
        b.append("<section>\n<h2>BLAS and Spark</h2>\n<table class=\"kv\">\n");
        rows.forEach((k, v) -> b.append("<tr><th>").append(Html.escape(k)).append("</th><td>")
                .append(Html.escape(v)).append("</td></tr>\n"));
        b.append("</table>\n");
        if (kernels.size() > 1) {
            b.append("<p class=\"bad\">The executors ran different OpenBLAS kernels: the output is not "
                    + "byte-identical to a uniform cluster's.</p>\n");
        }
        b.append("</section>\n");
    }

    private static void moduleTable(StringBuilder b, List<Module> modules) {
        b.append("<section>\n<h2>Modules</h2>\n<table class=\"grid num\">\n<tr><th>module</th><th>shape</th>"
                + "<th>stored as</th><th>damping</th><th>GPTQ loss</th><th>H-error</th><th>RTN H-error</th>"
                + "<th>GPTQ/RTN</th><th>seconds</th></tr>\n");
        for (Module m : modules) {
            b.append("<tr").append(m.quantized() ? "" : " class=\"dense\"").append("><td>")
                    .append(Html.escape(m.name())).append("</td><td>").append(m.rows()).append(" × ").append(m.cols())
                    .append("</td><td>").append(Html.escape(m.type())).append("</td><td>").append(Html.num(m.damp()))
                    .append("</td><td>").append(Html.num(m.loss())).append("</td><td>").append(Html.num(m.gptq()))
                    .append("</td><td>").append(Html.num(m.rtn())).append("</td><td>")
                    .append(Html.percent(m.ratio())).append("</td><td>")
                    .append(m.quantized() ? Html.num(m.seconds()) : "–").append("</td></tr>\n");
        }
        b.append("</table>\n</section>\n");
    }

    private static final String CSS = """
            body { font-family: "DejaVu Sans", Arial, sans-serif; margin: 24px auto; max-width: 960px;
                   color: #1a202c; background: #fff; font-size: 14px; }
            h1 { font-size: 24px; margin-bottom: 4px; }
            h2 { font-size: 18px; border-bottom: 1px solid #e2e8f0; padding-bottom: 4px; margin-top: 28px; }
            h3 { font-size: 15px; margin: 14px 0 6px; }
            .sub { color: #4a5568; margin-top: 0; word-break: break-all; }
            .cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 16px 0; }
            .card { border: 1px solid #e2e8f0; border-radius: 6px; padding: 8px 12px; min-width: 120px; }
            .card .label { color: #718096; font-size: 12px; }
            .card .value { font-size: 17px; font-weight: bold; }
            .warnings { background: #fffbea; border: 1px solid #f6e05e; border-radius: 6px; padding: 4px 16px; }
            .warnings h2 { border: none; margin-top: 8px; }
            table { border-collapse: collapse; }
            table.kv th { text-align: left; font-weight: normal; color: #4a5568; padding: 2px 16px 2px 0; }
            table.kv td { word-break: break-all; }
            table.grid th, table.grid td { border-bottom: 1px solid #edf2f7; padding: 3px 8px; }
            table.grid th { text-align: left; background: #f7fafc; }
            table.num td + td { text-align: right; font-variant-numeric: tabular-nums; }
            tr.dense td { color: #a0aec0; }
            svg.chart { display: block; margin: 8px 0; }
            .bad { color: #c53030; }
            footer { margin-top: 32px; color: #a0aec0; font-size: 12px; }
            """;
}
