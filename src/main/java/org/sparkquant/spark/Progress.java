package org.sparkquant.spark;

import java.io.PrintWriter;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

import org.apache.spark.api.java.JavaSparkContext;

/**
 * Progress of a layer-by-layer run: one line per step with elapsed time and an ETA from the finished layers, and the
 * same text as the Spark job group so that the Spark UI tells the story ({@code layer 12/32 · mlp.down_proj ·
 * hessian}).
 */
public final class Progress {
    private final JavaSparkContext jsc;
    private final PrintWriter out;
    private final String runId;
    private final int layers;
    private final long start;
    private int firstLayer;
    private int layersDone;
    private long layersDoneNanos;
    private final Map<String, Double> phases = new LinkedHashMap<>();
    /** Messages that began with "warning: ", for the report. */
    private final List<String> warnings = new ArrayList<>();
    private String phase;
    private long phaseStart;

    /** {@code firstLayer} is where this process starts (a resumed run skips the finished ones). */
    public Progress(JavaSparkContext jsc, PrintWriter out, String runId, int layers, int firstLayer) {
        this.jsc = jsc;
        this.out = out;
        this.runId = runId;
        this.layers = layers;
        this.firstLayer = firstLayer;
        this.start = System.nanoTime();
    }

    /** A resumed run starts at this layer (for the ETA). */
    public void resumedAt(int layer) {
        this.firstLayer = layer;
    }

    /**
     * Announces a step of a layer (layer is 0-based; -1 for steps outside the layers). The step's phase, for the
     * time-by-phase summary, is the first word of its last " · " part (hessian, quantize, forward) for layer steps,
     * and the first word for the others (embeddings, assemble, ...).
     */
    public void step(int layer, String what) {
        String[] parts = what.split(" · ");
        endPhase();
        phase = (layer >= 0 ? parts[parts.length - 1] : parts[0]).split(" ")[0];
        phaseStart = System.nanoTime();
        String label = layer < 0 ? what : String.format(Locale.ROOT, "layer %d/%d · %s", layer + 1, layers, what);
        if (jsc != null) {
            jsc.setJobGroup(runId, label, false);
            jsc.setJobDescription(label);
        }
        out.printf(Locale.ROOT, "[%s] %s%s%n", clock(elapsedSeconds()), label, eta());
        out.flush();
    }

    /** Marks a layer finished; the ETA extrapolates from the layers this process ran. */
    public void layerDone() {
        layersDone++;
        layersDoneNanos = System.nanoTime() - start;
    }

    private void endPhase() {
        if (phase != null) {
            phases.merge(phase, (System.nanoTime() - phaseStart) / 1e9, Double::sum);
            phase = null;
        }
    }

    /** Seconds spent per phase so far, in the order the phases first ran (the current step is closed). */
    public Map<String, Double> phases() {
        endPhase();
        return new LinkedHashMap<>(phases);
    }

    public void message(String text) {
        if (text.startsWith("warning: ")) {
            warnings.add(text.substring("warning: ".length()));
        }
        out.printf(Locale.ROOT, "[%s] %s%n", clock(elapsedSeconds()), text);
        out.flush();
    }

    /** The warnings of the run so far, in order ({@link #message} texts that began with "warning: "). */
    public List<String> warnings() {
        return List.copyOf(warnings);
    }

    public double elapsedSeconds() {
        return (System.nanoTime() - start) / 1e9;
    }

    private String eta() {
        if (layersDone == 0) {
            return "";
        }
        double perLayer = layersDoneNanos / 1e9 / layersDone;
        int left = Math.max(0, layers - firstLayer - layersDone);
        return left == 0 ? "" : " · ETA " + clock(perLayer * left);
    }

    static String clock(double seconds) {
        long s = Math.round(seconds);
        return s >= 3600 ? String.format(Locale.ROOT, "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60)
                : String.format(Locale.ROOT, "%d:%02d", s / 60, s % 60);
    }
}
