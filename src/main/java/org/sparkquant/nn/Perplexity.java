package org.sparkquant.nn;

import java.io.Serializable;

/**
 * Summed next-token negative log-likelihood (nats) over {@code tokens} predicted tokens. Results of disjoint sets of
 * windows add up ({@link #plus}), which is how partitions combine; {@link #ppl()} is {@code exp(nll / tokens)}.
 */
public record Perplexity(double nll, long tokens) implements Serializable {
    public static final Perplexity ZERO = new Perplexity(0, 0);

    public Perplexity plus(Perplexity other) {
        return new Perplexity(nll + other.nll, tokens + other.tokens);
    }

    public double meanNll() {
        return nll / tokens;
    }

    public double ppl() {
        return Math.exp(meanNll());
    }
}
