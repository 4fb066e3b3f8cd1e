package org.sparkquant.report;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.junit.jupiter.api.Test;
import org.sparkquant.SparkQuantException;

/** The page as a function of the report JSON: escaping, no script or external resource, chart geometry. */
class ReportHtmlTest {
    private static final ObjectMapper MAPPER = new ObjectMapper();
    private static final Set<String> TAGS = Set.of("html", "head", "meta", "title", "style", "body", "h1", "h2", "h3",
            "p", "div", "section", "ul", "li", "table", "tr", "th", "td", "svg", "rect", "text", "line", "footer");

    /** A report of one GPTQ run with the given module errors (GPTQ, RTN) in layers 0 and 1. */
    private static ObjectNode report(String model, double[][] errors) {
        ObjectNode r = MAPPER.createObjectNode();
        r.put("format", ReportHtml.FORMAT);
        r.put("method", "gptq");
        r.put("output_format", "gptq");
        r.put("model", model);
        r.put("output", "s3a://bucket/out");
        r.put("samples", 8);
        r.put("seq_len", 32);
        r.putObject("settings").put("bits", 4).put("groupSize", 128).put("dampPercent", 0.01);
        r.putObject("seconds_by_phase").put("hessian", 3.5).put("quantize", 1.25);
        r.putArray("blas_kernels").add("HASWELL");
        var modules = r.putArray("modules");
        for (int i = 0; i < errors.length; i++) {
            modules.addObject().put("name", "model.layers." + (i / 2) + ".mlp.m" + i).put("layer", i / 2)
                    .put("rows", 8).put("cols", 16).put("quantized", true).put("bits", 4).put("group_size", 128)
                    .put("damp_percent", i == 0 ? 0.0125 : 0.01).put("loss", 1.0)
                    .put("hessian_error", errors[i][0]).put("rtn_hessian_error", errors[i][1]).put("seconds", 0.1);
        }
        return r;
    }

    @Test
    void everyStringFromTheRunIsEscaped() {
        String evil = "/m/<script>alert('x')</script>&\"<img src=x onerror=alert(1)>";
        ObjectNode r = report(evil, new double[][] {{1, 2}});
        r.putArray("warnings").add("<b>bold</b> & more");
        ((ObjectNode) r.get("modules").get(0)).put("name", "model.layers.0.<svg onload=alert(1)>");
        r.putObject("spark").put("master", "<i>local</i>").putObject("settings").put("spark.executor.memory", "<x>");
        String html = ReportHtml.render(r);
        Set<String> tags = new TreeSet<>();
        Matcher m = Pattern.compile("<([a-zA-Z][a-zA-Z0-9]*)").matcher(html);
        while (m.find()) {
            tags.add(m.group(1).toLowerCase());
        }
        assertTrue(TAGS.containsAll(tags), "unexpected tags " + tags);
        assertTrue(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;&lt;img"), "escaped");
        assertTrue(html.contains("&lt;b&gt;bold&lt;/b&gt; &amp; more"));
        assertFalse(html.contains("onload=alert(1)>"));
    }

    @Test
    void thePageNeedsNothingButItself() {
        String html = ReportHtml.render(report("/models/m", new double[][] {{1, 2}, {3, 4}}));
        assertFalse(html.toLowerCase().contains("<script"));
        for (String external : List.of("src=", "href=", "@import", "url(")) {
            assertFalse(html.contains(external), external);
        }
        // the only URL is the SVG namespace
        assertEquals(html.split("http", -1).length - 1, html.split("http://www.w3.org/2000/svg", -1).length - 1);
    }

    @Test
    void barsAreProportionalToTheErrors() {
        double[][] errors = {{10, 40}, {5, 20}, {30, 60}, {1, 90}};
        String html = ReportHtml.render(report("/models/m", errors));
        List<String> charts = charts(html);
        // phases, per layer, per module (no memory section in this report)
        assertEquals(3, charts.size());
        List<double[]> module = bars(charts.get(2));
        assertEquals(8, module.size());
        double unit = module.get(7)[0] / 90; // the widest bar is the largest value
        for (int i = 0; i < errors.length; i++) {
            assertEquals(errors[i][0] * unit, module.get(2 * i)[0], 0.06, "GPTQ bar of module " + i);
            assertEquals(errors[i][1] * unit, module.get(2 * i + 1)[0], 0.06, "RTN bar of module " + i);
        }
        // per layer: the sums of layers 0 and 1, GPTQ then RTN per layer, heights on one scale
        List<double[]> layer = bars(charts.get(1));
        assertEquals(4, layer.size());
        double[] sums = {15, 60, 31, 150};
        for (int i = 0; i < 4; i++) {
            assertEquals(sums[i] / sums[3], layer.get(i)[1] / layer.get(3)[1], 1e-3, "layer bar " + i);
        }
        assertTrue(html.contains("0.0125 (raised)"), "raised damping is marked");
        assertTrue(html.contains("25.0%"), "GPTQ/RTN of the first module");
    }

    @Test
    void aRunWithoutHessiansOrNewerSectionsStillRenders() {
        ObjectNode r = report("/models/m", new double[][] {{1, 2}});
        r.put("method", "rtn");
        ObjectNode m = (ObjectNode) r.get("modules").get(0);
        m.putNull("hessian_error").putNull("rtn_hessian_error").putNull("damp_percent").putNull("loss");
        m.remove("layer"); // a report of an earlier version
        String html = ReportHtml.render(r);
        assertTrue(html.contains("No Hessian errors"), "says why there is no chart");
        assertTrue(html.contains("No GPTQ damping"));
        assertFalse(html.contains("NaN"));
        assertFalse(html.contains("Memory: plan"), "no memory section without memory figures");
    }

    @Test
    void parseNamesTheFileOfAnythingElse() {
        SparkQuantException e = assertThrows(SparkQuantException.class,
                () -> ReportHtml.parse("{\"format\": \"other\"}", "s3a://b/r.json"));
        assertEquals(SparkQuantException.Kind.BAD_INPUT, e.kind());
        assertTrue(e.getMessage().startsWith("s3a://b/r.json: not a sparkquant run report"), e.getMessage());
        assertThrows(SparkQuantException.class, () -> ReportHtml.parse("{", "r.json"));
    }

    private static List<String> charts(String html) {
        List<String> out = new ArrayList<>();
        Matcher m = Pattern.compile("<svg class=\"chart\".*?</svg>", Pattern.DOTALL).matcher(html);
        while (m.find()) {
            out.add(m.group());
        }
        return out;
    }

    /** Width and height of every bar of a chart, in document order. */
    private static List<double[]> bars(String svg) {
        List<double[]> out = new ArrayList<>();
        Matcher m = Pattern.compile("<rect class=\"bar\" x=\"[-\\d.]+\" y=\"[-\\d.]+\" width=\"([\\d.]+)\" "
                + "height=\"([\\d.]+)\"").matcher(svg);
        while (m.find()) {
            out.add(new double[] {Double.parseDouble(m.group(1)), Double.parseDouble(m.group(2))});
        }
        return out;
    }
}
