package org.sparkquant.spark;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.lang.management.ManagementFactory;
import java.util.HashSet;
import java.util.List;
import java.util.stream.IntStream;

import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.sparkquant.linalg.OpenBlas;
import org.sparkquant.testing.TestSpark;

/** The multi-JVM setup the pipeline tests rely on: two executor JVMs, ND4J inside each. */
@Tag("cluster")
class LocalClusterTest {
    @Test
    void twoExecutorJvmsRunNd4j() {
        SparkSession spark = TestSpark.cluster(2, 1024);
        try {
            JavaSparkContext jsc = JavaSparkContext.fromSparkContext(spark.sparkContext());
            List<String> results = jsc.parallelize(IntStream.range(0, 8).boxed().toList(), 8).map(i -> {
                INDArray a = Nd4j.ones(4, 4).muli(i);
                double sum = a.mmul(a).sumNumber().doubleValue();
                return ManagementFactory.getRuntimeMXBean().getPid() + ":" + sum + ":" + OpenBlas.kernel();
            }).collect();
            String driverKernel = OpenBlas.kernel();
            var pids = new HashSet<String>();
            for (int i = 0; i < results.size(); i++) {
                String[] parts = results.get(i).split(":");
                pids.add(parts[0]);
                assertEquals(64.0 * i * i, Double.parseDouble(parts[1]), 1e-9);
                // executors run the driver's OpenBLAS kernel set (spark.executorEnv.OPENBLAS_CORETYPE)
                assertEquals(driverKernel, parts[2], "executor kernel");
            }
            assertEquals(2, pids.size(), "expected two executor JVMs: " + results);
        } finally {
            spark.stop();
        }
    }
}
