package org.sparkquant.spark;

import java.util.Map;

import org.apache.spark.SparkConf;
import org.apache.spark.sql.SparkSession;
import org.sparkquant.linalg.OpenBlas;

/**
 * Builds the Spark session of a command. Under {@code spark-submit} the master and resources come from the submit
 * (they are already in the JVM's {@code spark.*} properties); otherwise the CLI runs an embedded {@code local[*]}
 * Spark bound to loopback. Settings from the CLI ({@code spark.*}) are applied on top; {@code fs.*} settings become
 * {@code spark.hadoop.fs.*} so executors see the same file systems.
 */
public final class SparkSessions {
    private SparkSessions() {}

    public static SparkSession create(String appName, Map<String, String> settings) {
        SparkConf conf = new SparkConf(true).setAppName(appName);
        if (!conf.contains("spark.master") && !settings.containsKey("spark.master")) {
            conf.setMaster("local[*]");
            if (System.getenv("SPARK_LOCAL_IP") == null) {
                conf.set("spark.driver.host", "127.0.0.1");
                conf.set("spark.driver.bindAddress", "127.0.0.1");
            }
            conf.setIfMissing("spark.ui.showConsoleProgress", "false");
        }
        // One OpenBLAS thread per task: Spark already runs a task per core, more threads oversubscribe.
        conf.setIfMissing("spark.executorEnv.OMP_NUM_THREADS", "1");
        // Executors use the driver's OpenBLAS kernel set, else the one that is right on every AVX2 CPU: ND4J's
        // OpenBLAS 0.3.19 miscomputes with some AVX-512 kernels, and one kernel keeps executors' bits identical.
        String coretype = System.getenv("OPENBLAS_CORETYPE");
        conf.setIfMissing("spark.executorEnv.OPENBLAS_CORETYPE",
                coretype == null || coretype.isBlank() ? OpenBlas.SAFE_CORETYPE : coretype);
        // Hidden states and Hessians are dense floats: compression costs CPU and saves little.
        conf.setIfMissing("spark.rdd.compress", "false");
        settings.forEach((k, v) -> {
            if (k.startsWith("spark.")) {
                conf.set(k, v);
            } else if (k.startsWith("fs.")) {
                conf.set("spark.hadoop." + k, v);
            }
        });
        return SparkSession.builder().config(conf).getOrCreate();
    }
}
