package org.sparkquant.spark;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.SplittableRandom;

import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.Test;
import org.sparkquant.testing.TestSpark;

class OrderedSumTest {
    @Test
    void sumIsInPartitionOrderWhateverTheArrivalOrder() {
        int sources = 12;
        int tiles = 3;
        int len = 1000;
        // values of very different magnitudes: floating-point sums of these depend on the order
        double[][][] parts = new double[sources][tiles][len];
        SplittableRandom r = new SplittableRandom(5);
        for (double[][] p : parts) {
            for (double[] t : p) {
                for (int i = 0; i < len; i++) {
                    t[i] = r.nextDouble() * Math.pow(10, r.nextInt(-8, 9));
                }
            }
        }
        double[][] expected = new double[tiles][len];
        for (int t = 0; t < tiles; t++) {
            expected[t] = parts[0][t].clone();
            for (int s = 1; s < sources; s++) {
                for (int i = 0; i < len; i++) {
                    expected[t][i] += parts[s][t][i];
                }
            }
        }
        double[] reversed = parts[sources - 1][0].clone();
        for (int s = sources - 2; s >= 0; s--) {
            for (int i = 0; i < len; i++) {
                reversed[i] += parts[s][0][i];
            }
        }
        assertNotEquals(java.util.Arrays.hashCode(expected[0]), java.util.Arrays.hashCode(reversed),
                "the data must make the order visible");

        for (int cores : new int[] {1, 3}) {
            SparkSession spark = TestSpark.local(cores);
            try {
                JavaSparkContext jsc = JavaSparkContext.fromSparkContext(spark.sparkContext());
                List<OrderedSum.Piece> pieces = new ArrayList<>();
                for (int s = 0; s < sources; s++) {
                    for (int t = 0; t < tiles; t++) {
                        pieces.add(new OrderedSum.Piece(t, s, parts[s][t]));
                    }
                }
                Collections.shuffle(pieces, new java.util.Random(cores));
                JavaRDD<OrderedSum.Piece> rdd = jsc.parallelize(pieces, 5);
                List<double[]> sums = OrderedSum.sum(rdd, tiles, (tile, sum) -> sum);
                assertEquals(tiles, sums.size());
                for (int t = 0; t < tiles; t++) {
                    assertArrayEquals(expected[t], sums.get(t), "tile " + t + " with local[" + cores + "]");
                }
            } finally {
                spark.stop();
            }
        }
    }
}
