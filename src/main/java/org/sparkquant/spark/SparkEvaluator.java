package org.sparkquant.spark;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.Iterator;
import java.util.List;

import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.storage.StorageLevel;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.sparkquant.model.MemoryPlan;
import org.sparkquant.nn.DecoderLayer;
import org.sparkquant.nn.LayerHooks;
import org.sparkquant.nn.LayerWeights;
import org.sparkquant.nn.Perplexity;
import org.sparkquant.nn.SequenceBatch;
import org.sparkquant.nn.TokenEmbedding;
import scala.Tuple3;

/**
 * Perplexity on Spark, streaming the model layer by layer over windows that stay in a fixed number of partitions:
 * executors look up the embeddings, run each decoder layer over their partitions' hidden states (cached
 * MEMORY_AND_DISK between layers), and compute the next-token NLL at the end. The per-window NLLs are added on the
 * driver in window order, so the result does not depend on the cluster.
 */
public final class SparkEvaluator {
    /** Tokens run through a layer as one batch: bounds the activation memory of a task. */
    public static final int TOKENS_PER_BATCH = 4096;

    private SparkEvaluator() {}

    public static Perplexity evaluate(JavaSparkContext jsc, ModelSource model, List<int[]> windows,
            int windowsPerPartition, Progress progress) {
        List<SampleState> samples = new ArrayList<>();
        for (int i = 0; i < windows.size(); i++) {
            samples.add(new SampleState(i, windows.get(i), null));
        }
        int partitions = MemoryPlan.partitionsFor(windows.size(), windowsPerPartition);
        progress.step(-1, "embeddings · " + windows.size() + " windows in " + partitions + " partitions");
        JavaRDD<SampleState> states = jsc.parallelize(samples, partitions)
                .mapPartitions(it -> embed(model, it))
                .persist(StorageLevel.MEMORY_AND_DISK());
        states.count();
        int layers = model.config().numLayers();
        for (int layer = 0; layer < layers; layer++) {
            progress.step(layer, "forward");
            int index = layer;
            JavaRDD<SampleState> next = states.mapPartitions(it -> forward(model, index, it))
                    .persist(StorageLevel.MEMORY_AND_DISK());
            next.count();
            states.unpersist(false);
            states = next;
            progress.layerDone();
        }
        progress.step(-1, "lm_head · negative log-likelihood");
        List<Tuple3<Integer, Double, Long>> perWindow = new ArrayList<>(states.mapPartitions(it -> nll(model, it))
                .collect());
        states.unpersist(false);
        perWindow.sort(Comparator.comparingInt(Tuple3::_1));
        Perplexity total = Perplexity.ZERO;
        for (Tuple3<Integer, Double, Long> w : perWindow) {
            total = total.plus(new Perplexity(w._2(), w._3()));
        }
        return total;
    }

    static Iterator<SampleState> embed(ModelSource model, Iterator<SampleState> it) {
        TokenEmbedding embedding = model.embedding();
        List<SampleState> out = new ArrayList<>();
        while (it.hasNext()) {
            SampleState s = it.next();
            INDArray h = embedding.lookup(s.tokens());
            out.add(s.withHidden(floats(h)));
            h.close();
        }
        return out.iterator();
    }

    private static Iterator<SampleState> forward(ModelSource model, int layer, Iterator<SampleState> it) {
        return forward(model, model.layer(layer), it);
    }

    /** Runs one decoder layer with the given weights over a partition's samples. */
    static Iterator<SampleState> forward(ModelSource model, LayerWeights weights, Iterator<SampleState> it) {
        int hidden = model.config().hiddenSize();
        List<SampleState> out = new ArrayList<>();
        try (DecoderLayer decoder = new DecoderLayer(model.config())) {
            for (List<SampleState> batch : batches(it)) {
                INDArray h = stack(batch, hidden);
                decoder.forward(h, SequenceBatch.of(tokensOf(batch)), weights, LayerHooks.NONE);
                out.addAll(unstack(batch, h, hidden));
                h.close();
            }
        }
        return out.iterator();
    }

    private static Iterator<Tuple3<Integer, Double, Long>> nll(ModelSource model, Iterator<SampleState> it) {
        int hidden = model.config().hiddenSize();
        List<SampleState> all = new ArrayList<>();
        List<INDArray> states = new ArrayList<>();
        List<int[]> targets = new ArrayList<>();
        for (List<SampleState> batch : batches(it)) {
            states.add(stack(batch, hidden));
            int n = batch.stream().mapToInt(SampleState::length).sum();
            int[] t = new int[n];
            int o = 0;
            for (SampleState s : batch) {
                for (int p = 0; p < s.length(); p++) {
                    t[o + p] = p + 1 < s.length() ? s.tokens()[p + 1] : -1;
                }
                o += s.length();
            }
            targets.add(t);
            all.addAll(batch);
        }
        List<double[]> nll = model.head().nll(states, targets);
        List<Tuple3<Integer, Double, Long>> out = new ArrayList<>();
        int sample = 0;
        for (double[] values : nll) {
            int o = 0;
            while (o < values.length) {
                SampleState s = all.get(sample++);
                double sum = 0;
                long count = 0;
                for (int p = 0; p < s.length(); p++) {
                    double v = values[o + p];
                    if (!Double.isNaN(v)) {
                        sum += v;
                        count++;
                    }
                }
                out.add(new Tuple3<>(s.index(), sum, count));
                o += s.length();
            }
        }
        states.forEach(INDArray::close);
        return out.iterator();
    }

    /** Consecutive samples grouped into batches of at most {@link #TOKENS_PER_BATCH} tokens (at least one each). */
    static List<List<SampleState>> batches(Iterator<SampleState> it) {
        List<List<SampleState>> out = new ArrayList<>();
        List<SampleState> current = new ArrayList<>();
        int tokens = 0;
        while (it.hasNext()) {
            SampleState s = it.next();
            if (!current.isEmpty() && tokens + s.length() > TOKENS_PER_BATCH) {
                out.add(current);
                current = new ArrayList<>();
                tokens = 0;
            }
            current.add(s);
            tokens += s.length();
        }
        if (!current.isEmpty()) {
            out.add(current);
        }
        return out;
    }

    static List<int[]> tokensOf(List<SampleState> batch) {
        return batch.stream().map(SampleState::tokens).toList();
    }

    /** The hidden states of a batch as one {@code [tokens, hidden]} array. */
    static INDArray stack(List<SampleState> batch, int hidden) {
        int n = batch.stream().mapToInt(SampleState::length).sum();
        float[] data = new float[n * hidden];
        int o = 0;
        for (SampleState s : batch) {
            System.arraycopy(s.hidden(), 0, data, o, s.hidden().length);
            o += s.hidden().length;
        }
        return Nd4j.create(data, new long[] {n, hidden}, 'c');
    }

    /** The values of an array in row-major order (no copy of a copy when it already is). */
    static float[] floats(INDArray h) {
        INDArray c = h.ordering() == 'c' && !h.isView() && h.offset() == 0 ? h : h.dup('c');
        float[] data = c.data().asFloat();
        return data.length == h.length() ? data : java.util.Arrays.copyOf(data, (int) h.length());
    }

    static List<SampleState> unstack(List<SampleState> batch, INDArray h, int hidden) {
        float[] data = floats(h);
        List<SampleState> out = new ArrayList<>();
        int o = 0;
        for (SampleState s : batch) {
            float[] mine = new float[s.length() * hidden];
            System.arraycopy(data, o, mine, 0, mine.length);
            o += mine.length;
            out.add(s.withHidden(mine));
        }
        return out;
    }
}
