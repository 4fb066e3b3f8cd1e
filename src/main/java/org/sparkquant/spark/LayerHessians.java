package org.sparkquant.spark;

import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.apache.spark.api.java.JavaPairRDD;
import org.apache.spark.api.java.JavaRDD;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.sparkquant.SparkQuantException;
import org.sparkquant.gptq.Gptq;
import org.sparkquant.gptq.GptqPreparation;
import org.sparkquant.gptq.Hessian;
import org.sparkquant.gptq.HessianAccumulator;
import org.sparkquant.model.LinearModule;
import org.sparkquant.model.LinearModule.Input;
import org.sparkquant.model.MemoryPlan;
import org.sparkquant.nn.DecoderLayer;
import org.sparkquant.nn.LayerHooks;
import org.sparkquant.nn.LayerWeights;
import org.sparkquant.nn.SequenceBatch;
import scala.Tuple2;

/**
 * The Hessians of a layer's module inputs: every partition runs the layer up to the inputs (earlier true-sequential
 * groups already quantized) and accumulates exact partials in row tiles, so that no Spark record is huge; the tiles
 * are merged by key and each input is finished on one executor, which stages the Hessian, its GPTQ preparation
 * (computed once per distinct input) and a summary under {@code _work/layers/L/}.
 * <p>
 * In a mixture-of-experts layer every routed expert has its own Hessians ({@link Key} with an expert index), from the
 * tokens routed to it; the Hessians of one call are accumulated in passes over the partitions, each pass holding at
 * most {@link MemoryPlan#MOE_PASS_BYTES} of accumulators (plus one Hessian when that alone is larger), so that no
 * process ever holds every expert's Hessians. An expert below {@code --expert-min-tokens} gets no GPTQ preparation;
 * with {@code --expert-fallback layer} its down_proj Hessian is accumulated over every token instead
 * ({@code denseExperts}).
 */
final class LayerHessians {
    /** Hessian row tiles are at most this large as Spark records. */
    static final long TILE_BYTES = MemoryPlan.HESSIAN_TILE_BYTES;

    private LayerHessians() {}

    /** One Hessian of a layer: a module input, of a routed expert or not (-1), of {@code width} columns. */
    record Key(Input input, int expert, int width) implements java.io.Serializable {
        static Key of(LinearModule m) {
            return new Key(m.input(), m.expert(), m.inFeatures());
        }

        String id(int layer) {
            return LinearModule.hessianKey(layer, input, expert);
        }

        /** The file-name part: {@code MLP_IN} or {@code MLP_IN-e17}. */
        String file() {
            return input + (expert >= 0 ? "-e" + expert : "");
        }

        long accumulatorBytes() {
            return 16L * width * width;
        }
    }

    /**
     * The summaries of {@code needed} Hessians of {@code layer} (keyed {@link LinearModule#hessianKey}), computing
     * those not staged. {@code denseExperts}: experts whose DOWN_IN Hessian takes every token of the layer.
     */
    static Map<String, InputSummary> compute(QuantizeRun run, JavaRDD<SampleState> states, int layer,
            List<LinearModule> done, List<Key> needed, java.util.Set<Integer> denseExperts) {
        WorkDir work = run.work();
        Map<String, InputSummary> out = new LinkedHashMap<>();
        List<Key> missing = new ArrayList<>();
        for (Key key : needed) {
            String summary = summaryPath(layer, key);
            if (work.exists(summary)) {
                out.put(key.id(layer), Staged.readObject(run.storage(), work.path(summary)));
            } else {
                missing.add(key);
            }
        }
        for (List<Key> pass : passes(missing)) {
            for (InputSummary s : pass(run, states, layer, done, pass, denseExperts)) {
                out.put(s.key(layer), s);
            }
        }
        return out;
    }

    /** Keys in passes of at most {@link MemoryPlan#MOE_PASS_BYTES} of accumulators each, in order. */
    static List<List<Key>> passes(List<Key> keys) {
        List<List<Key>> out = new ArrayList<>();
        List<Key> current = new ArrayList<>();
        long bytes = 0;
        for (Key k : keys) {
            if (!current.isEmpty() && bytes + k.accumulatorBytes() > MemoryPlan.MOE_PASS_BYTES) {
                out.add(current);
                current = new ArrayList<>();
                bytes = 0;
            }
            current.add(k);
            bytes += k.accumulatorBytes();
        }
        if (!current.isEmpty()) {
            out.add(current);
        }
        return out;
    }

    private static List<InputSummary> pass(QuantizeRun run, JavaRDD<SampleState> states, int layer,
            List<LinearModule> done, List<Key> keys, java.util.Set<Integer> denseExperts) {
        Input last = keys.stream().map(Key::input).max(Input::compareTo).orElseThrow();
        if (last == Input.DOWN_IN && keys.stream().allMatch(k -> k.expert() >= 0 && denseExperts.contains(k.expert()))) {
            last = Input.MLP_IN; // the dense experts' activations are computed from the MLP input
        }
        Input stop = last;
        int tiles = keys.stream().mapToInt(k -> tileStarts(k.width()).length).sum();
        java.util.Set<Integer> dense = new java.util.TreeSet<>(denseExperts);
        JavaPairRDD<String, HessianAccumulator> partials = states.mapPartitionsToPair(it -> {
            try {
                return partials(run, layer, done, keys, dense, stop, it);
            } catch (SparkQuantException e) {
                if (e.kind() != SparkQuantException.Kind.BAD_INPUT) {
                    throw e;
                }
                throw SparkQuantException.badInput("layer " + layer + " (0-based), inputs "
                        + keys.stream().map(Key::file).toList() + " of " + run.job().model() + ": " + e.getMessage(),
                        e);
            }
        });
        JavaPairRDD<String, HessianAccumulator> merged = partials.reduceByKey(HessianAccumulator::merge, tiles);
        Map<String, Key> byFile = new LinkedHashMap<>();
        keys.forEach(k -> byFile.put(k.file(), k));
        return merged
                .mapToPair(t -> new Tuple2<>(t._1().substring(0, t._1().indexOf('#')), t._2()))
                .groupByKey(keys.size())
                .map(g -> finish(run, layer, byFile.get(g._1()), g._2()))
                .collect();
    }

    /** The summaries of every Hessian the work directory holds (a resumed run's earlier layers). */
    static void loadStaged(QuantizeRun run, List<List<LinearModule>> layers, Map<String, InputSummary> into) {
        for (List<LinearModule> layer : layers) {
            List<Key> keys = new ArrayList<>();
            for (LinearModule m : layer) {
                keys.add(Key.of(m));
                if (m.routed()) {
                    keys.add(new Key(Input.MLP_IN, -1, m.inFeatures())); // a sparse layer's all-token input
                }
            }
            for (Key k : keys) {
                int index = layer.get(0).layer();
                String id = k.id(index);
                if (!into.containsKey(id) && run.work().exists(summaryPath(index, k))) {
                    into.put(id, Staged.readObject(run.storage(), run.work().path(summaryPath(index, k))));
                }
            }
        }
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

    private static Iterator<Tuple2<String, HessianAccumulator>> partials(QuantizeRun run, int layer,
            List<LinearModule> done, List<Key> keys, java.util.Set<Integer> dense, Input last,
            Iterator<SampleState> it) {
        ModelSource source = run.source();
        LayerWeights weights = StagedLayers.weights(run, layer, done);
        // accumulators by (input, expert); an expert's DOWN_IN of a dense expert is filled from the MLP input
        Map<String, List<HessianAccumulator>> accumulators = new LinkedHashMap<>();
        for (Key k : keys) {
            int n = k.width();
            int[] starts = tileStarts(n);
            List<HessianAccumulator> list = new ArrayList<>();
            for (int t = 0; t < starts.length; t++) {
                int end = t + 1 < starts.length ? starts[t + 1] : n;
                list.add(HessianAccumulator.rows(n, starts[t], end, run.job().quant().precision()));
            }
            accumulators.put(k.file(), list);
        }
        List<Integer> denseDown = keys.stream().filter(k -> k.input() == Input.DOWN_IN && k.expert() >= 0
                && dense.contains(k.expert())).map(Key::expert).toList();
        int hidden = source.config().hiddenSize();
        try (DecoderLayer decoder = new DecoderLayer(source.config())) {
            for (List<SampleState> batch : SparkEvaluator.batches(it)) {
                INDArray h = SparkEvaluator.stack(batch, hidden);
                SequenceBatch seq = SequenceBatch.of(SparkEvaluator.tokensOf(batch));
                decoder.runUntil(h, seq, weights, new LayerHooks() {
                    @Override
                    public void onInput(Input input, INDArray x, SequenceBatch b) {
                        List<HessianAccumulator> accs = accumulators.get(new Key(input, -1, 0).file());
                        if (accs != null) {
                            addPerSequence(accs, SparkEvaluator.floats(x), (int) x.columns(), null, b);
                        }
                        if (input == Input.MLP_IN) {
                            for (int e : denseDown) {
                                try (INDArray a = DecoderLayer.expertActivation(x, weights, e)) {
                                    addPerSequence(accumulators.get(new Key(Input.DOWN_IN, e, 0).file()),
                                            SparkEvaluator.floats(a), (int) a.columns(), null, b);
                                }
                            }
                        }
                    }

                    @Override
                    public void onExpertInput(Input input, int expert, INDArray x, int[] rows, SequenceBatch b) {
                        if (input == Input.DOWN_IN && dense.contains(expert)) {
                            return;
                        }
                        List<HessianAccumulator> accs = accumulators.get(new Key(input, expert, 0).file());
                        if (accs != null) {
                            addPerSequence(accs, SparkEvaluator.floats(x), (int) x.columns(), rows, b);
                        }
                    }
                }, last);
                h.close();
            }
        }
        List<Tuple2<String, HessianAccumulator>> out = new ArrayList<>();
        accumulators.forEach((key, list) -> {
            for (int t = 0; t < list.size(); t++) {
                out.add(new Tuple2<>(key + "#" + t, list.get(t)));
            }
        });
        return out.iterator();
    }

    /**
     * Adds the rows of {@code all} ({@code [rows, width]}) one sequence at a time, so that the exact sum is
     * independent of how sequences are batched; {@code rows} (ascending) names each row's token row in the batch, null
     * when there is one row per token. A sequence without rows adds nothing.
     */
    private static void addPerSequence(List<HessianAccumulator> accs, float[] all, int width, int[] rows,
            SequenceBatch b) {
        int r = 0;
        for (int i = 0; i < b.count(); i++) {
            int from;
            int count;
            if (rows == null) {
                from = b.offset(i);
                count = b.length(i);
            } else {
                from = r;
                int end = b.offset(i) + b.length(i);
                while (r < rows.length && rows[r] < end) {
                    r++;
                }
                count = r - from;
            }
            if (count == 0) {
                continue;
            }
            float[] one = new float[count * width];
            System.arraycopy(all, from * width, one, 0, one.length);
            for (HessianAccumulator acc : accs) {
                acc.add(one, count);
            }
        }
    }

    private static InputSummary finish(QuantizeRun run, int layer, Key key, Iterable<HessianAccumulator> tiles) {
        WorkDir work = run.work();
        List<HessianAccumulator> list = new ArrayList<>();
        tiles.forEach(list::add);
        InputSummary summary;
        if (list.get(0).sequences() == 0) {
            // an expert no calibration token was routed to: nothing to stage, the fallback rule quantizes it
            summary = new InputSummary(key.input(), key.expert(), key.width(), 0, 0, Double.NaN, 0, null);
        } else {
            Hessian h = HessianAccumulator.finish(list);
            work.writeOnce(hessianPath(layer, key), Staged.object(h));
            double damp = Double.NaN;
            int dead = 0;
            if (key.expert() < 0 || h.tokens() >= run.job().expertMinTokens()
                    || (key.input() == Input.DOWN_IN && run.job().expertFallback() == QuantizeJob.ExpertFallback.LAYER)) {
                GptqPreparation prep = Gptq.prepare(h, run.job().quant());
                work.writeOnce(prepPath(layer, key), Staged.object(prep));
                damp = prep.dampPercentUsed();
                dead = prep.deadCount();
            }
            if (run.job().saveHessians() != null && key.expert() < 0) {
                HessianExport.write(run.storage(), run.job().saveHessians(), layer, key.input(), h,
                        run.job().quant().precision());
            }
            summary = new InputSummary(key.input(), key.expert(), h.columns(), h.sequences(), h.tokens(), damp, dead,
                    h.diagonal());
        }
        work.writeOnce(summaryPath(layer, key), Staged.object(summary));
        return summary;
    }

    /**
     * Deletes a finished layer's Hessians and GPTQ preparations (the largest scratch: 1.6 GB for one fp64 Hessian of
     * 14336 columns). Only a layer's quantize step reads them, and a resumed run never repeats a finished layer, so
     * this runs once progress has moved past it; the summaries stay for the exports.
     */
    static void dropSolverInputs(WorkDir work, int layer, List<LinearModule> modules) {
        // in the order of the inputs, then of the experts (-1 first): the order the steps run in
        java.util.Set<Key> keys = new java.util.TreeSet<>(java.util.Comparator.comparing(Key::input)
                .thenComparingInt(Key::expert));
        for (LinearModule m : modules) {
            keys.add(Key.of(m));
            if (m.routed()) {
                keys.add(new Key(Input.MLP_IN, -1, m.inFeatures()));
            }
        }
        for (Key key : keys) {
            String file = key.file();
            for (String path : List.of("layers/" + layer + "/hessian-" + file + ".bin",
                    "layers/" + layer + "/prep-" + file + ".bin")) {
                if (work.exists(path)) {
                    work.delete(path);
                }
            }
        }
    }

    static String hessianPath(int layer, Key key) {
        return "layers/" + layer + "/hessian-" + key.file() + ".bin";
    }

    static String prepPath(int layer, Key key) {
        return "layers/" + layer + "/prep-" + key.file() + ".bin";
    }

    static String summaryPath(int layer, Key key) {
        return "layers/" + layer + "/summary-" + key.file() + ".bin";
    }
}
