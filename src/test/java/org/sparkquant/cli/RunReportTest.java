package org.sparkquant.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.awt.image.BufferedImage;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Collectors;

import javax.imageio.ImageIO;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.sparkquant.io.DType;
import org.sparkquant.io.Storage;
import org.sparkquant.linalg.OpenBlas;
import org.sparkquant.model.SyntheticModel;
import org.sparkquant.spark.QuantizePipeline;

/**
 * The HTML run report of real runs: written beside the JSON and listed in the manifest, rendered again by
 * {@code sparkquant report} to the same bytes without touching the output, and read in a real browser (Debian's
 * headless Chromium; skipped with a message when it is absent).
 */
class RunReportTest {
    @TempDir
    static Path tmp;
    static Path model;
    static Path out;
    static JsonNode json;

    @BeforeAll
    static void run() throws IOException {
        model = tmp.resolve("model");
        // a 172-wide MLP cannot be packed at 4 bits: those modules stay dense, a warning of the run
        SyntheticModel.write(Storage.local(), model.toString(),
                new SyntheticModel.Shape(128, 172, 2, 4, 2, 512, 10000.0, true), DType.BF16, 5, 1L << 30);
        // six pre-tokenized samples where eight are asked for: the other warning
        Path calib = tmp.resolve("calib.jsonl");
        StringBuilder lines = new StringBuilder();
        java.util.SplittableRandom r = new java.util.SplittableRandom(3);
        for (int s = 0; s < 6; s++) {
            lines.append("{\"input_ids\": [");
            for (int t = 0; t < 32; t++) {
                lines.append(t == 0 ? "" : ", ").append(3 + r.nextInt(500));
            }
            lines.append("]}\n");
        }
        Files.writeString(calib, lines);
        out = tmp.resolve("gptq-out");
        CliRun q = CliRun.of("quantize", "--model", model.toString(), "--output", out.toString(), "--calibration",
                calib.toString(), "--samples", "8", "--seq-len", "32", "--samples-per-partition", "4",
                "--group-size", "32", "--conf", "spark.master=local[2]", "--conf", "spark.ui.enabled=false");
        assertEquals(0, q.exitCode(), q.err());
        json = new ObjectMapper().readTree(out.resolve(QuantizePipeline.REPORT).toFile());
    }

    @Test
    void theRunWritesItsPageIntoTheManifestAndTheJsonCarriesWhatThePageShows() throws Exception {
        Path html = out.resolve(QuantizePipeline.REPORT_HTML);
        assertTrue(Files.isRegularFile(html));
        JsonNode manifest = new ObjectMapper().readTree(out.resolve("_SUCCESS").toFile());
        Set<String> listed = new HashSet<>();
        manifest.get("files").forEach(f -> listed.add(f.get("file").asText()));
        assertTrue(listed.contains(QuantizePipeline.REPORT_HTML), listed.toString());
        assertEquals(0, CliRun.of("verify", "--model", out.toString()).exitCode());

        List<String> warnings = new ArrayList<>();
        json.get("warnings").forEach(w -> warnings.add(w.asText()));
        assertTrue(warnings.stream().anyMatch(w -> w.contains("fewer than --samples 8")), warnings.toString());
        assertTrue(warnings.stream().anyMatch(w -> w.contains("left unquantized") && w.contains("down_proj")),
                warnings.toString());
        assertEquals("local[2]", json.at("/spark/master").asText());
        assertTrue(json.at("/memory/plan/executor_bytes").asLong() > 0);
        long peak = json.at("/memory/used/driver_peak_rss_bytes").asLong(-1);
        // a JVM that ran Spark holds more than 64 MiB and less than the machine
        assertTrue(peak > 64L << 20 && peak < Runtime.getRuntime().maxMemory() * 8, "peak " + peak);
        for (JsonNode m : json.get("modules")) {
            assertEquals(Integer.parseInt(m.get("name").asText().split("\\.")[2]), m.get("layer").asInt());
        }
        String page = Files.readString(html);
        assertTrue(page.contains(out.toString()) && page.contains(model.toString()), "the page names the run");
    }

    @Test
    void reportRendersTheSamePageFromTheJsonAndNeverWritesIntoTheOutput() throws Exception {
        String written = Files.readString(out.resolve(QuantizePipeline.REPORT_HTML));
        CliRun stdout = CliRun.of("report", "--output", out.toString());
        assertEquals(0, stdout.exitCode(), stdout.err());
        assertEquals(written, stdout.out());

        Path page = tmp.resolve("pages/run.html");
        CliRun to = CliRun.of("report", "--output", out.resolve(QuantizePipeline.REPORT).toString(), "--to",
                page.toString());
        assertEquals(0, to.exitCode(), to.err());
        assertEquals(written, Files.readString(page));

        for (Path inside : List.of(out.resolve("again.html"), out.resolve(QuantizePipeline.REPORT_HTML), out)) {
            CliRun refused = CliRun.of("report", "--output", out.toString(), "--to", inside.toString());
            assertEquals(2, refused.exitCode(), refused.err());
            assertEquals(1, refused.err().strip().lines().count(), refused.err());
            assertTrue(refused.err().contains("outside"), refused.err());
        }
        assertFalse(Files.exists(out.resolve("again.html")));
        assertEquals(written, Files.readString(out.resolve(QuantizePipeline.REPORT_HTML)));
        assertEquals(0, CliRun.of("verify", "--model", out.toString()).exitCode());

        // an unfinished output has no report to render
        Path unfinished = tmp.resolve("unfinished");
        Files.createDirectories(unfinished);
        Files.writeString(unfinished.resolve(QuantizePipeline.REPORT), json.toString());
        CliRun notDone = CliRun.of("report", "--output", unfinished.toString());
        assertEquals(2, notDone.exitCode());
        assertTrue(notDone.err().contains("not finished"), notDone.err());
        // and a JSON that is no run report is named
        Path other = tmp.resolve("other.json");
        Files.writeString(other, "{\"format\": \"something-else\"}");
        CliRun wrong = CliRun.of("report", "--output", other.toString());
        assertEquals(2, wrong.exitCode());
        assertTrue(wrong.err().contains(other.toString()) && wrong.err().contains("not a sparkquant run report"),
                wrong.err());
    }

    @Test
    void aGgufRunWritesItsPageBesideTheFile() throws Exception {
        Path gguf = tmp.resolve("model-Q8_0.gguf");
        CliRun q = CliRun.of("quantize", "--model", model.toString(), "--output", gguf.toString(), "--gguf-type",
                "Q8_0", "--conf", "spark.master=local[2]", "--conf", "spark.ui.enabled=false");
        assertEquals(0, q.exitCode(), q.err());
        Path html = Path.of(gguf + QuantizePipeline.GGUF_REPORT_HTML_SUFFIX);
        String written = Files.readString(html);
        assertTrue(written.contains("GGUF Q8_0"), "the header names the file type");
        assertTrue(written.contains("No Hessian errors"), "round-to-nearest without calibration has no H-error");
        CliRun again = CliRun.of("report", "--output", gguf.toString());
        assertEquals(0, again.exitCode(), again.err());
        assertEquals(written, again.out());
        CliRun refused = CliRun.of("report", "--output", gguf.toString(), "--to", html.toString());
        assertEquals(2, refused.exitCode(), refused.err());
        assertEquals(0, CliRun.of("verify", "--model", gguf.toString()).exitCode());
    }

    /** Chromium renders the page: its text is there, and the charts have geometry and colour on the screen. */
    @Test
    void chromiumRendersThePageWithItsCharts() throws Exception {
        Optional<Path> chromium = Chromium.find();
        assumeTrue(chromium.isPresent(), "no chromium on PATH (Debian: apt-get install chromium): browser check "
                + "skipped");
        Path html = out.resolve(QuantizePipeline.REPORT_HTML);
        String dom = Chromium.dumpDom(chromium.get(), html, tmp.resolve("profile-dom"));
        String text = dom.replaceAll("<[^>]*>", " ").replaceAll("\\s+", " ");
        for (String expected : List.of("sparkquant run report", "Warnings", "fewer than --samples 8",
                "left unquantized", "Time by phase", "GPTQ against round-to-nearest", "Memory: plan against use",
                "BLAS and Spark", OpenBlas.kernel(), "local[2]", "model.layers.1.mlp.down_proj",
                out.getFileName().toString())) {
            assertTrue(text.contains(expected), "rendered page lacks '" + expected + "'");
        }
        // every chart is drawn: its bars have a positive size in the rendered DOM
        Matcher charts = Pattern.compile("<svg class=\"chart\".*?</svg>", Pattern.DOTALL).matcher(dom);
        Pattern bar = Pattern.compile("<rect class=\"bar\" x=\"[-\\d.]+\" y=\"[-\\d.]+\" width=\"([\\d.]+)\" "
                + "height=\"([\\d.]+)\"");
        List<Integer> bars = new ArrayList<>();
        while (charts.find()) {
            Matcher m = bar.matcher(charts.group());
            int drawn = 0;
            while (m.find()) {
                assertTrue(Double.parseDouble(m.group(1)) > 0 && Double.parseDouble(m.group(2)) > 0, m.group());
                drawn++;
            }
            bars.add(drawn);
        }
        long measured = 0;
        for (JsonNode m : json.get("modules")) {
            measured += m.get("quantized").asBoolean() ? 1 : 0;
        }
        // time by phase, per layer (2 layers × 2 methods), per module (2 methods), memory (executor and driver)
        assertEquals(List.of(json.get("seconds_by_phase").size(), 4, (int) measured * 2, 4), bars);

        Path png = Chromium.screenshot(chromium.get(), html, tmp.resolve("profile-shot"), tmp.resolve("page.png"),
                1000, 4200);
        BufferedImage image = ImageIO.read(png.toFile());
        assertEquals(1000, image.getWidth());
        int gptq = 0;
        int rtn = 0;
        int dark = 0;
        Set<Integer> colours = new HashSet<>();
        for (int y = 0; y < image.getHeight(); y++) {
            for (int x = 0; x < image.getWidth(); x++) {
                int rgb = image.getRGB(x, y) & 0xFFFFFF;
                colours.add(rgb);
                gptq += near(rgb, 0x2b6cb0) ? 1 : 0;
                rtn += near(rgb, 0xdd6b20) ? 1 : 0;
                dark += (rgb >> 16 & 0xFF) + (rgb >> 8 & 0xFF) + (rgb & 0xFF) < 150 ? 1 : 0;
            }
        }
        // the bars of the GPTQ and RTN series cover real area on the screen, and there is text
        assertTrue(gptq > 2000 && rtn > 2000, "chart pixels: GPTQ " + gptq + ", RTN " + rtn);
        assertTrue(dark > 5000, "text pixels: " + dark);
        assertTrue(colours.size() > 50, "a blank screenshot has few colours: " + colours.size());
    }

    private static boolean near(int rgb, int target) {
        return Math.abs((rgb >> 16 & 0xFF) - (target >> 16 & 0xFF)) <= 6
                && Math.abs((rgb >> 8 & 0xFF) - (target >> 8 & 0xFF)) <= 6
                && Math.abs((rgb & 0xFF) - (target & 0xFF)) <= 6;
    }

    /** Headless Chromium, as Debian packages it. */
    static final class Chromium {
        static Optional<Path> find() {
            String env = System.getenv("SPARKQUANT_CHROMIUM");
            List<String> names = env != null && !env.isBlank() ? List.of(env)
                    : List.of("chromium", "chromium-browser", "google-chrome");
            for (String name : names) {
                if (name.contains("/")) {
                    if (Files.isExecutable(Path.of(name))) {
                        return Optional.of(Path.of(name));
                    }
                    continue;
                }
                for (String dir : System.getenv().getOrDefault("PATH", "").split(":")) {
                    Path p = Path.of(dir, name);
                    if (!dir.isEmpty() && Files.isExecutable(p)) {
                        return Optional.of(p);
                    }
                }
            }
            return Optional.empty();
        }

        static String dumpDom(Path chromium, Path html, Path profile) throws IOException, InterruptedException {
            return run(chromium, profile, List.of("--dump-dom", html.toUri().toString()));
        }

        static Path screenshot(Path chromium, Path html, Path profile, Path png, int width, int height)
                throws IOException, InterruptedException {
            run(chromium, profile, List.of("--screenshot=" + png, "--window-size=" + width + "," + height,
                    "--hide-scrollbars", html.toUri().toString()));
            assertTrue(Files.size(png) > 0, "no screenshot at " + png);
            return png;
        }

        private static String run(Path chromium, Path profile, List<String> args)
                throws IOException, InterruptedException {
            List<String> command = new ArrayList<>(List.of(chromium.toString(), "--headless", "--no-sandbox",
                    "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--user-data-dir=" + profile));
            command.addAll(args);
            Path stdout = Files.createTempFile(tmp, "chromium", ".out");
            Path stderr = Files.createTempFile(tmp, "chromium", ".err");
            Process p = new ProcessBuilder(command).redirectOutput(stdout.toFile()).redirectError(stderr.toFile())
                    .start();
            if (!p.waitFor(180, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                throw new AssertionError("chromium timed out: " + command);
            }
            String err = Files.readString(stderr, StandardCharsets.UTF_8);
            assertEquals(0, p.exitValue(), "chromium failed: " + err.lines().limit(20).collect(Collectors.joining(
                    "\n")));
            return Files.readString(stdout, StandardCharsets.UTF_8);
        }
    }
}
