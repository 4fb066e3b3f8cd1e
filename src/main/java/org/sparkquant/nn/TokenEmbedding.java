package org.sparkquant.nn;

import java.nio.FloatBuffer;
import java.util.Arrays;
import java.util.List;

import org.nd4j.linalg.api.ndarray.INDArray;
import org.sparkquant.SparkQuantException;
import org.sparkquant.io.TensorReader;

/**
 * The token embedding lookup, reading only the rows it needs: the distinct ids are sorted and read in runs of nearby
 * rows, so a batch costs a few positional reads rather than the whole {@code [vocab, hidden]} table (which is 2 GB in
 * fp32 for a 128k-vocabulary 8B model).
 */
public final class TokenEmbedding {
    /** Rows between two needed ids that are read anyway rather than starting a new read. */
    private static final int MAX_GAP = 64;
    /** Largest run read at once. */
    private static final int MAX_RUN = 4096;

    private final TensorReader store;
    private final String tensor;
    private final int vocab;
    private final int hidden;

    public TokenEmbedding(TensorReader store, String tensor, int vocab, int hidden) {
        this.store = store;
        this.tensor = tensor;
        this.vocab = vocab;
        this.hidden = hidden;
    }

    public int vocabSize() {
        return vocab;
    }

    /** The embeddings of the sequences' tokens, stacked row-wise: {@code [total tokens, hidden]}. */
    public INDArray lookup(List<int[]> sequences) {
        int total = 0;
        for (int[] s : sequences) {
            total += s.length;
        }
        int[] ids = new int[total];
        int o = 0;
        for (int[] s : sequences) {
            System.arraycopy(s, 0, ids, o, s.length);
            o += s.length;
        }
        return lookup(ids);
    }

    /** {@code [ids.length, hidden]}. */
    public INDArray lookup(int[] ids) {
        for (int id : ids) {
            if (id < 0 || id >= vocab) {
                throw SparkQuantException.badInput("token id " + id + " is outside the model's vocabulary (vocab_size "
                        + vocab + "): was the text tokenized with another model's tokenizer?");
            }
        }
        if (ids.length == 0) {
            throw new IllegalArgumentException("no tokens");
        }
        INDArray out = Kernels.matrix(ids.length, hidden);
        FloatBuffer dst = Kernels.floats(out);
        // positions sorted by id: (id << 32 | position)
        long[] keys = new long[ids.length];
        for (int t = 0; t < ids.length; t++) {
            keys[t] = ((long) ids[t] << 32) | t;
        }
        Arrays.sort(keys);
        int i = 0;
        while (i < keys.length) {
            int first = (int) (keys[i] >>> 32);
            int j = i;
            while (j + 1 < keys.length) {
                int next = (int) (keys[j + 1] >>> 32);
                if (next - (int) (keys[j] >>> 32) > MAX_GAP || next - first >= MAX_RUN) {
                    break;
                }
                j++;
            }
            int last = (int) (keys[j] >>> 32);
            float[] rows = store.readRows(tensor, first, last + 1);
            for (int t = i; t <= j; t++) {
                int id = (int) (keys[t] >>> 32);
                int position = (int) keys[t];
                dst.put(position * hidden, rows, (id - first) * hidden, hidden);
            }
            i = j + 1;
        }
        return out;
    }
}
