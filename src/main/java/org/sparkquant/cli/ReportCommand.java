package org.sparkquant.cli;

import java.io.PrintWriter;
import java.util.concurrent.Callable;

import org.sparkquant.SparkQuantException;
import org.sparkquant.io.OutputManifest;
import org.sparkquant.io.Storage;
import org.sparkquant.report.ReportHtml;
import org.sparkquant.spark.QuantizePipeline;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * {@code sparkquant report}: renders the HTML report of a finished run again from its JSON. It never writes into the
 * run's output: a finished output changes only by a run that commits a new one, and a file added to a checkpoint
 * directory would break its {@code _SUCCESS} manifest. The page goes to stdout or to {@code --to URI}.
 */
@Command(name = "report", mixinStandardHelpOptions = true,
        description = {"Render the HTML report of a finished quantize run from its JSON "
                + "(quantization_report.json of a checkpoint, NAME.report.json of a GGUF file) to stdout or to "
                + "--to URI: self-contained (inline CSS and SVG charts, no script). The same page the run wrote "
                + "beside the JSON, for runs of earlier versions or to publish it elsewhere. The output itself is "
                + "left as it is (its manifest stays valid)."})
public final class ReportCommand implements Callable<Integer> {
    @Spec
    picocli.CommandLine.Model.CommandSpec spec;

    @Mixin
    CommonOptions common;

    @Option(names = "--output", required = true, paramLabel = "URI", description = "A finished run's output: "
            + "checkpoint directory or GGUF file (or the report's .json file itself).")
    String output;

    @Option(names = "--to", paramLabel = "URI", description = "Write the page here (any file system URI; replaced if "
            + "it exists) instead of stdout; not inside the run's output.")
    String to;

    @Override
    public Integer call() {
        Storage storage = common.storage();
        String json = reportJson(storage);
        String html = ReportHtml.render(ReportHtml.parse(storage.readString(json), json));
        if (to == null) {
            PrintWriter out = spec.commandLine().getOut();
            out.print(html);
            out.flush();
            return 0;
        }
        if (partOfOutput(storage, to, json)) {
            throw SparkQuantException.badInput("--to " + to + " is part of the output " + output + ", which only a "
                    + "quantize run changes; choose a location outside it");
        }
        storage.writeString(to, html);
        spec.commandLine().getErr().println("report: wrote " + to + " from " + json);
        return 0;
    }

    /** The report JSON of {@code --output}, refusing an output that is not finished. */
    private String reportJson(Storage storage) {
        if (!storage.exists(output)) {
            throw SparkQuantException.badInput("--output " + output + ": no such file or directory");
        }
        if (storage.isDirectory(output)) {
            if (!OutputManifest.isComplete(storage, output)) {
                throw SparkQuantException.badInput(output + ": no " + OutputManifest.FILE + " (the run is not "
                        + "finished); a report is rendered from a finished run");
            }
            String json = Storage.resolve(output, QuantizePipeline.REPORT);
            if (!storage.exists(json)) {
                throw SparkQuantException.badInput(output + ": no " + QuantizePipeline.REPORT + " (not written by "
                        + "sparkquant quantize)");
            }
            return json;
        }
        if (output.endsWith(".json")) {
            return output;
        }
        String json = output + QuantizePipeline.GGUF_REPORT_SUFFIX;
        if (!storage.exists(json)) {
            throw SparkQuantException.badInput(output + ": no " + Storage.path(json).getName() + " beside it (not "
                    + "a GGUF file written by sparkquant quantize)");
        }
        return json;
    }

    /**
     * Whether {@code uri} is part of the run's output: inside its directory, or (a GGUF output) the file, its
     * checksum, its report or its page. {@code --output} may name the report JSON itself: its run is then the
     * directory holding {@code quantization_report.json}, or the GGUF file of {@code NAME.report.json}.
     */
    private boolean partOfOutput(Storage storage, String uri, String json) {
        String run = output;
        if (output.endsWith(".json") && !storage.isDirectory(output)) {
            String name = Storage.path(json).getName();
            run = name.equals(QuantizePipeline.REPORT) ? Storage.path(json).getParent().toString()
                    : name.endsWith(QuantizePipeline.GGUF_REPORT_SUFFIX)
                    ? json.substring(0, json.length() - QuantizePipeline.GGUF_REPORT_SUFFIX.length()) : json;
        }
        if (storage.overlaps(uri, run) || storage.overlaps(uri, json)) {
            return true;
        }
        String target = storage.canonical(uri);
        for (String suffix : new String[] {OutputManifest.FILE_CHECKSUM_SUFFIX, QuantizePipeline.GGUF_REPORT_SUFFIX,
                QuantizePipeline.GGUF_REPORT_HTML_SUFFIX}) {
            if (target.equals(storage.canonical(run + suffix))) {
                return true;
            }
        }
        return false;
    }
}
