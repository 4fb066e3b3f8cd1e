package org.sparkquant.nn;

import java.nio.FloatBuffer;
import java.util.ArrayList;
import java.util.List;

import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.ops.transforms.Transforms;
import org.sparkquant.io.TensorReader;
import org.sparkquant.model.ModelConfig;

/**
 * The final RMSNorm and the language-model head ({@code lm_head.weight}, or the embedding table when tied). The
 * vocabulary can be 150k wide, so scoring streams it in chunks of rows: a chunk of the weight is read once, multiplied
 * against every batch of hidden states, and folded into a running log-sum-exp per token. Neither the full weight nor
 * the full logits are ever held.
 */
public final class OutputHead {
    /** Bytes of one vocabulary chunk of the weight (fp32). */
    private static final long CHUNK_BYTES = 32L << 20;
    /** Elements of one logits chunk ({@code tokens × chunk rows}). */
    private static final long LOGITS_ELEMENTS = 16L << 20;

    private final TensorReader store;
    private final String weightTensor;
    private final float[] norm;
    private final float eps;
    private final int vocab;
    private final int hidden;

    public OutputHead(TensorReader store, ModelConfig config) {
        this.store = store;
        this.weightTensor = config.tieWordEmbeddings() ? "model.embed_tokens.weight" : "lm_head.weight";
        this.norm = store.readFloats("model.norm.weight");
        this.eps = (float) config.rmsNormEps();
        this.vocab = config.vocabSize();
        this.hidden = config.hiddenSize();
    }

    public int vocabSize() {
        return vocab;
    }

    /** The final RMSNorm of {@code [n, hidden]} hidden states, into a new array. */
    public INDArray normalize(INDArray hiddenStates) {
        Kernels.requireMatrix(hiddenStates, hiddenStates.rows(), hidden, "hidden states");
        INDArray out = Kernels.matrix(hiddenStates.rows(), hidden);
        Kernels.rmsNorm(Kernels.floats(hiddenStates), Kernels.floats(out), hiddenStates.rows(), hidden, norm, eps);
        return out;
    }

    /** All logits {@code [n, vocab]} of (un-normalized) hidden states: for tests and small vocabularies. */
    public INDArray logits(INDArray hiddenStates) {
        INDArray normed = normalize(hiddenStates);
        INDArray logits = Kernels.matrix(normed.rows(), vocab);
        INDArray weight = DenseLinear.readMatrix(store, weightTensor, vocab, hidden);
        Nd4j.gemm(normed, weight, logits, false, true, 1.0, 0.0);
        return logits;
    }

    /**
     * Next-token negative log-likelihood, {@code logsumexp(logits) - logits[target]} per row, of several batches of
     * hidden states at once (each lm_head chunk is read once for all of them). {@code targets.get(b)[r]} is the target
     * id of row {@code r} of batch {@code b}, or negative for rows that predict nothing (their NLL is NaN).
     */
    public List<double[]> nll(List<INDArray> hiddenStates, List<int[]> targets) {
        if (hiddenStates.size() != targets.size()) {
            throw new IllegalArgumentException(hiddenStates.size() + " batches but " + targets.size()
                    + " target lists");
        }
        List<INDArray> normed = new ArrayList<>();
        List<Stats> stats = new ArrayList<>();
        int maxRows = 1;
        for (int b = 0; b < hiddenStates.size(); b++) {
            INDArray h = hiddenStates.get(b);
            int rows = h.rows();
            if (targets.get(b).length != rows) {
                throw new IllegalArgumentException("batch " + b + ": " + rows + " rows but " + targets.get(b).length
                        + " targets");
            }
            for (int t : targets.get(b)) {
                if (t >= vocab) {
                    throw new IllegalArgumentException("target id " + t + " outside the vocabulary (" + vocab + ")");
                }
            }
            normed.add(normalize(h));
            stats.add(new Stats(targets.get(b)));
            maxRows = Math.max(maxRows, rows);
        }
        long rowsPerChunk = Math.min(CHUNK_BYTES / (4L * hidden), LOGITS_ELEMENTS / maxRows);
        int chunk = (int) Math.max(1, Math.min(vocab, rowsPerChunk));
        for (int v0 = 0; v0 < vocab; v0 += chunk) {
            int v1 = Math.min(vocab, v0 + chunk);
            INDArray weight = Kernels.matrix(v1 - v0, hidden);
            Kernels.floats(weight).put(0, store.readRows(weightTensor, v0, v1));
            for (int b = 0; b < normed.size(); b++) {
                INDArray x = normed.get(b);
                INDArray logits = Kernels.matrix(x.rows(), v1 - v0);
                Nd4j.gemm(x, weight, logits, false, true, 1.0, 0.0);
                stats.get(b).fold(logits, v0, v1 - v0);
                logits.close();
            }
            weight.close();
        }
        List<double[]> out = new ArrayList<>();
        for (Stats s : stats) {
            out.add(s.nll());
        }
        return out;
    }

    /** Running max, sum of exp(logit - max), and target logit per row (online log-sum-exp over vocabulary chunks). */
    private static final class Stats {
        final int[] targets;
        final double[] max;
        final double[] sum;
        final double[] target;

        Stats(int[] targets) {
            this.targets = targets;
            this.max = new double[targets.length];
            this.sum = new double[targets.length];
            this.target = new double[targets.length];
            java.util.Arrays.fill(max, Double.NEGATIVE_INFINITY);
        }

        /**
         * Folds a [rows, width] chunk of logits into the running statistics. The exponentials run as native ND4J
         * ops (shifted by the running max, so they never overflow); the logits array is consumed.
         */
        void fold(INDArray logits, int v0, int width) {
            FloatBuffer values = Kernels.floats(logits);
            int rows = targets.length;
            for (int r = 0; r < rows; r++) {
                int t = targets[r] - v0;
                if (targets[r] >= 0 && t >= 0 && t < width) {
                    target[r] = values.get(r * width + t);
                }
            }
            float[] chunkMax = logits.max(1).toFloatVector();
            float[] shift = new float[rows];
            for (int r = 0; r < rows; r++) {
                double m = Math.max(max[r], chunkMax[r]);
                shift[r] = (float) m;
                sum[r] = sum[r] == 0 ? 0 : sum[r] * Math.exp(max[r] - m);
                max[r] = m;
            }
            logits.subiColumnVector(Nd4j.createFromArray(shift).reshape(rows, 1));
            Transforms.exp(logits, false);
            float[] chunkSum = logits.sum(1).toFloatVector();
            for (int r = 0; r < rows; r++) {
                sum[r] += chunkSum[r];
            }
        }

        double[] nll() {
            double[] out = new double[targets.length];
            for (int r = 0; r < out.length; r++) {
                out[r] = targets[r] < 0 ? Double.NaN : max[r] + Math.log(sum[r]) - target[r];
            }
            return out;
        }
    }
}
