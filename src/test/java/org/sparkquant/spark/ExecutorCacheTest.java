package org.sparkquant.spark;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.stream.IntStream;
import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.sparkquant.nn.LayerWeights;
import org.sparkquant.nn.LinearWeights;
import org.sparkquant.testing.TestSpark;

/** The executor's layer slot: one layer kept, a replaced one freed once no task uses it, shared modules kept. */
class ExecutorCacheTest {
    /** Names of the modules closed so far (the tasks run in this JVM: local mode). */
    static final Set<String> CLOSED = ConcurrentHashMap.newKeySet();
    private static SparkSession spark;
    private static JavaSparkContext jsc;

    @BeforeAll
    static void start() {
        spark = TestSpark.local(2);
        jsc = JavaSparkContext.fromSparkContext(spark.sparkContext());
    }

    @AfterAll
    static void stop() {
        ExecutorCache.clear();
        spark.stop();
    }

    private record Module(String name) implements LinearWeights {
        public int outFeatures() {
            return 1;
        }

        public int inFeatures() {
            return 1;
        }

        public INDArray weight() {
            throw new UnsupportedOperationException();
        }

        public float[] bias() {
            return null;
        }

        @Override
        public void close() {
            assertTrue(CLOSED.add(name), name + " closed twice");
        }
    }

    static LayerWeights layer(String tag) {
        Map<String, LinearWeights> linears = new LinkedHashMap<>();
        for (String kind : LayerWeights.KINDS) {
            linears.put(kind, new Module(tag + "." + kind));
        }
        return new LayerWeights(0, linears, new float[1], new float[1], null, null);
    }

    /** Runs {@code tasks} tasks that each take the layer for {@code key} (loading or extending it) and return it. */
    static List<String> take(String key, String derivedFrom, String replaced) {
        return jsc.parallelize(IntStream.range(0, 4).boxed().toList(), 4).map(i -> {
            LayerWeights w = ExecutorCache.layer(key, previous -> previous.equals(derivedFrom),
                    (previousKey, previous) -> previous == null ? layer(key)
                            : previous.with(replaced, new Module(key + "." + replaced)));
            return w.linear("o_proj").toString();
        }).collect();
    }

    @Test
    void aReplacedLayerIsClosedOnceUnusedAndSharedModulesSurvive() {
        CLOSED.clear();
        ExecutorCache.clear();
        take("A", "-", null);
        assertEquals(Set.of(), CLOSED, "the current layer stays open");
        // B extends A with a new o_proj: only A's o_proj is freed, the modules B shares stay open
        List<String> b = take("B", "A", "o_proj");
        assertTrue(b.stream().allMatch(s -> s.contains("B.o_proj")), b.toString());
        assertEquals(Set.of("A.o_proj"), CLOSED);
        // C is another layer: all of B's modules are freed, A's shared ones with them, each once
        take("C", "-", null);
        assertEquals(LayerWeights.KINDS.size() + 1, CLOSED.size(), CLOSED.toString());
        assertTrue(CLOSED.contains("B.o_proj") && CLOSED.contains("A.q_proj"), CLOSED.toString());
        LayerWeights c = ExecutorCache.layer("C", k -> false, (k, v) -> layer("C2"));
        assertSame(c.linear("q_proj").getClass(), Module.class);
        assertTrue(c.linear("q_proj").toString().contains("C.q_proj"), "the cached layer is served, not reloaded");
    }
}
