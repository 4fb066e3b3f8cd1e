package org.sparkquant.testing;

import java.util.HashMap;
import java.util.Map;

import org.apache.spark.sql.SparkSession;
import org.sparkquant.spark.SparkSessions;

/**
 * Spark sessions for tests: {@code local[N]}, or a multi-JVM {@code local-cluster} whose executors get the test
 * classpath (surefire provides SPARK_HOME with an empty jars/ and SPARK_SCALA_VERSION, see pom.xml).
 */
public final class TestSpark {
    private TestSpark() {}

    public static SparkSession local(int cores) {
        return SparkSessions.create("test", settings("local[" + cores + "]"));
    }

    /** {@code executors} JVMs with one core and {@code memoryMb} each. */
    public static SparkSession cluster(int executors, int memoryMb) {
        Map<String, String> settings = settings("local-cluster[" + executors + ",1," + memoryMb + "]");
        settings.put("spark.executor.extraClassPath", System.getProperty("java.class.path"));
        settings.put("spark.executor.extraJavaOptions", "-Dorg.bytedeco.javacpp.maxbytes=" + memoryMb + "m "
                + "-Dorg.bytedeco.javacpp.maxphysicalbytes=" + (memoryMb * 4) + "m");
        return SparkSessions.create("test-cluster", settings);
    }

    public static Map<String, String> settings(String master) {
        Map<String, String> settings = new HashMap<>();
        settings.put("spark.master", master);
        settings.put("spark.ui.enabled", "false");
        settings.put("spark.sql.shuffle.partitions", "4");
        return settings;
    }
}
