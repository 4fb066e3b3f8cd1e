package org.sparkquant.nn;

import java.util.Arrays;
import java.util.List;

/**
 * The sequences whose hidden states are stacked row-wise in one {@code [tokens, hidden]} matrix: sequence {@code i}
 * occupies rows {@code offset(i) .. offset(i) + length(i)}, with positions restarting at 0. Sequences never attend to
 * each other, so a batch gives the same results as running each sequence alone, without padding.
 */
public record SequenceBatch(int[] lengths) {
    public SequenceBatch {
        if (lengths.length == 0) {
            throw new IllegalArgumentException("empty batch");
        }
        lengths = lengths.clone();
        for (int n : lengths) {
            if (n <= 0) {
                throw new IllegalArgumentException("sequence lengths must be positive: " + Arrays.toString(lengths));
            }
        }
    }

    public static SequenceBatch of(int... lengths) {
        return new SequenceBatch(lengths);
    }

    public static SequenceBatch of(List<int[]> sequences) {
        return new SequenceBatch(sequences.stream().mapToInt(s -> s.length).toArray());
    }

    @Override
    public int[] lengths() {
        return lengths.clone();
    }

    public int count() {
        return lengths.length;
    }

    public int length(int i) {
        return lengths[i];
    }

    /** Row of the first token of sequence {@code i}. */
    public int offset(int i) {
        int o = 0;
        for (int j = 0; j < i; j++) {
            o += lengths[j];
        }
        return o;
    }

    public int tokens() {
        int n = 0;
        for (int l : lengths) {
            n += l;
        }
        return n;
    }

    public int maxLength() {
        int m = 0;
        for (int l : lengths) {
            m = Math.max(m, l);
        }
        return m;
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof SequenceBatch b && Arrays.equals(lengths, b.lengths);
    }

    @Override
    public int hashCode() {
        return Arrays.hashCode(lengths);
    }

    @Override
    public String toString() {
        return "SequenceBatch" + Arrays.toString(lengths);
    }
}
