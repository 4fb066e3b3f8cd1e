package org.sparkquant.nn;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Arrays;

import org.junit.jupiter.api.Test;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.sparkquant.SparkQuantException;
import org.sparkquant.io.Storage;
import org.sparkquant.io.TensorStore;

class TokenEmbeddingTest {
    private static final String TABLE = "model.embed_tokens.weight";

    @Test
    void rowsComeFromTheTableInTokenOrder() {
        try (TensorStore store = TensorStore.open(Storage.local(), Golden.tiny("qwen3-qknorm").toString())) {
            float[] table = store.readFloats(TABLE);
            int hidden = 64;
            TokenEmbedding embedding = new TokenEmbedding(store, TABLE, 256, hidden);
            // unsorted, repeated, far apart (several read runs) and adjacent ids
            int[] ids = {255, 3, 3, 0, 130, 4, 255, 70, 200, 1};
            INDArray out = embedding.lookup(ids);
            assertArrayEquals(new long[] {ids.length, hidden}, out.shape());
            float[] actual = out.data().asFloat();
            for (int t = 0; t < ids.length; t++) {
                assertArrayEquals(Arrays.copyOfRange(table, ids[t] * hidden, (ids[t] + 1) * hidden),
                        Arrays.copyOfRange(actual, t * hidden, (t + 1) * hidden), "token " + t);
            }
        }
    }

    @Test
    void idOutsideTheVocabularyIsBadInput() {
        try (TensorStore store = TensorStore.open(Storage.local(), Golden.tiny("qwen3-qknorm").toString())) {
            TokenEmbedding embedding = new TokenEmbedding(store, TABLE, 256, 64);
            SparkQuantException e = assertThrows(SparkQuantException.class, () -> embedding.lookup(new int[] {5, 256}));
            assertEquals(SparkQuantException.Kind.BAD_INPUT, e.kind());
            assertTrue(e.getMessage().contains("256"), e.getMessage());
            assertThrows(SparkQuantException.class, () -> embedding.lookup(new int[] {-1}));
        }
    }
}
