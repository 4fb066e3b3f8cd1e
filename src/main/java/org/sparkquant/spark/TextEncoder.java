package org.sparkquant.spark;

import java.io.Serializable;

/** Turns text into token ids on an executor; implementations carry only what is needed to build the tokenizer there. */
@FunctionalInterface
public interface TextEncoder extends Serializable {
    int[] encode(String text);
}
