package org.sparkquant.spark;

import java.util.ArrayList;
import java.util.EnumMap;
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
import org.sparkquant.nn.LayerWeights;
import org.sparkquant.nn.SequenceBatch;
import scala.Tuple2;

/**
 * The Hessians of a layer's module inputs: every partition runs the layer up to the inputs (earlier true-sequential
 * groups already quantized) and accumulates exact partials in row tiles, so that no Spark record is huge; the tiles
 * are merged by key and each input is finished on one executor, which stages the Hessian, its GPTQ preparation
 * (computed once per distinct input) and a summary under {@code _work/layers/L/}.
 */
final class LayerHessians {
    /** Hessian row tiles are at most this large as Spark records. */
    static final long TILE_BYTES = MemoryPlan.HESSIAN_TILE_BYTES;

    private LayerHessians() {}

    /** The summaries of {@code needed} inputs of {@code layer} (keyed "layer/INPUT"), computing those not staged. */
    static Map<String, InputSummary> compute(QuantizeRun run, JavaRDD<SampleState> states, int layer,
            List<LinearModule> done, List<Input> needed) {
        WorkDir work = run.work();
        Map<String, InputSummary> out = new LinkedHashMap<>();
        List<Input> missing = new ArrayList<>();
        for (Input input : needed) {
            String summary = summaryPath(layer, input);
            if (work.exists(summary)) {
                out.put(layer + "/" + input, Staged.readObject(run.storage(), work.path(summary)));
            } else {
                missing.add(input);
            }
        }
        if (missing.isEmpty()) {
            return out;
        }
        Map<Input, Integer> widths = new EnumMap<>(Input.class);
        for (Input input : missing) {
            widths.put(input, width(run.source(), input));
        }
        Input last = missing.get(missing.size() - 1);
        int tiles = missing.stream().mapToInt(i -> tileStarts(widths.get(i)).length).sum();
        JavaPairRDD<String, HessianAccumulator> partials = states.mapPartitionsToPair(it -> {
            try {
                return partials(run, layer, done, widths, last, it);
            } catch (SparkQuantException e) {
                if (e.kind() != SparkQuantException.Kind.BAD_INPUT) {
                    throw e;
                }
                throw SparkQuantException.badInput("layer " + layer + " (0-based), inputs " + widths.keySet()
                        + " of " + run.job().model() + ": " + e.getMessage(), e);
            }
        });
        JavaPairRDD<String, HessianAccumulator> merged = partials.reduceByKey(HessianAccumulator::merge, tiles);
        List<InputSummary> finished = merged
                .mapToPair(t -> new Tuple2<>(t._1().substring(0, t._1().indexOf('#')), t._2()))
                .groupByKey(missing.size())
                .map(g -> finish(run, layer, Input.valueOf(g._1()), g._2()))
                .collect();
        for (InputSummary s : finished) {
            out.put(layer + "/" + s.input(), s);
        }
        return out;
    }

    /** The summaries of every input the work directory holds (a resumed run's earlier layers), keyed "layer/INPUT". */
    static void loadStaged(QuantizeRun run, List<List<LinearModule>> layers, Map<String, InputSummary> into) {
        for (List<LinearModule> layer : layers) {
            for (LinearModule m : layer) {
                String key = m.layer() + "/" + m.input();
                if (!into.containsKey(key) && run.work().exists(summaryPath(m.layer(), m.input()))) {
                    into.put(key, Staged.readObject(run.storage(), run.work().path(summaryPath(m.layer(), m.input()))));
                }
            }
        }
    }

    private static int width(ModelSource source, Input input) {
        return switch (input) {
            case ATTN_IN, MLP_IN -> source.config().hiddenSize();
            case ATTN_OUT_IN -> source.config().qDim();
            case DOWN_IN -> source.config().intermediateSize();
            case SHARED_DOWN_IN -> source.config().moe().sharedIntermediateSize();
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

    private static Iterator<Tuple2<String, HessianAccumulator>> partials(QuantizeRun run, int layer,
            List<LinearModule> done, Map<Input, Integer> widths, Input last, Iterator<SampleState> it) {
        ModelSource source = run.source();
        LayerWeights weights = StagedLayers.weights(run, layer, done);
        Map<Input, List<HessianAccumulator>> accumulators = new EnumMap<>(Input.class);
        for (Map.Entry<Input, Integer> e : widths.entrySet()) {
            int n = e.getValue();
            int[] starts = tileStarts(n);
            List<HessianAccumulator> list = new ArrayList<>();
            for (int t = 0; t < starts.length; t++) {
                int end = t + 1 < starts.length ? starts[t + 1] : n;
                list.add(HessianAccumulator.rows(n, starts[t], end, run.job().quant().precision()));
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

    private static InputSummary finish(QuantizeRun run, int layer, Input input, Iterable<HessianAccumulator> tiles) {
        WorkDir work = run.work();
        List<HessianAccumulator> list = new ArrayList<>();
        tiles.forEach(list::add);
        Hessian h = HessianAccumulator.finish(list);
        work.writeOnce(hessianPath(layer, input), Staged.object(h));
        GptqPreparation prep = Gptq.prepare(h, run.job().quant());
        work.writeOnce(prepPath(layer, input), Staged.object(prep));
        if (run.job().saveHessians() != null) {
            HessianExport.write(run.storage(), run.job().saveHessians(), layer, input, h, run.job().quant().precision());
        }
        InputSummary summary = new InputSummary(input, h.columns(), h.sequences(), h.tokens(),
                prep.dampPercentUsed(), prep.deadCount(), h.diagonal());
        work.writeOnce(summaryPath(layer, input), Staged.object(summary));
        return summary;
    }

    /**
     * Deletes a finished layer's Hessians and GPTQ preparations (the largest scratch: 1.6 GB for one fp64 Hessian of
     * 14336 columns). Only a layer's quantize step reads them, and a resumed run never repeats a finished layer, so
     * this runs once progress has moved past it; the summaries stay for the exports.
     */
    static void dropSolverInputs(WorkDir work, int layer) {
        for (Input input : Input.values()) {
            for (String path : List.of(hessianPath(layer, input), prepPath(layer, input))) {
                if (work.exists(path)) {
                    work.delete(path);
                }
            }
        }
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
}
