package org.sparkquant.spark;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.List;
import java.util.Map;

import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.Test;

class SparkSessionsTest {
    @Test
    void embeddedSessionRunsOnLoopbackWithSettings() {
        SparkSession spark = SparkSessions.create("test", Map.of("spark.master", "local[2]",
                "spark.ui.enabled", "false", "fs.s3a.endpoint", "http://127.0.0.1:1"));
        try {
            JavaSparkContext jsc = JavaSparkContext.fromSparkContext(spark.sparkContext());
            assertEquals("http://127.0.0.1:1", jsc.hadoopConfiguration().get("fs.s3a.endpoint"));
            assertEquals("1", spark.conf().get("spark.executorEnv.OMP_NUM_THREADS"));
            String coretype = System.getenv("OPENBLAS_CORETYPE");
            assertEquals(coretype == null ? "Haswell" : coretype,
                    spark.conf().get("spark.executorEnv.OPENBLAS_CORETYPE"), "executors get the driver's kernel");
            long sum = jsc.parallelize(List.of(1, 2, 3, 4), 2).map(x -> x * 2).reduce(Integer::sum);
            assertEquals(20, sum);
        } finally {
            spark.stop();
        }
    }
}
