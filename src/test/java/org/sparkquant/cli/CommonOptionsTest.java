package org.sparkquant.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;

import java.util.Map;
import org.junit.jupiter.api.Test;

/** Where the driver's storage settings come from. */
class CommonOptionsTest {
    @Test
    void sparkSubmitsHadoopSettingsReachTheDriverAndConfWins() {
        // spark-submit --conf spark.hadoop.* arrives in the driver JVM as system properties
        System.setProperty("spark.hadoop.fs.s3a.endpoint", "http://submitted:9000");
        System.setProperty("spark.hadoop.fs.s3a.path.style.access", "true");
        System.setProperty("spark.executor.memory", "4g");
        try {
            CommonOptions options = new CommonOptions();
            Map<String, String> hadoop = options.hadoopSettings();
            assertEquals("http://submitted:9000", hadoop.get("fs.s3a.endpoint"));
            assertEquals("true", hadoop.get("fs.s3a.path.style.access"));
            assertFalse(hadoop.containsKey("spark.executor.memory"));
            options.conf.put("fs.s3a.endpoint", "http://conf:9000");
            assertEquals("http://conf:9000", options.hadoopSettings().get("fs.s3a.endpoint"), "--conf wins");
            assertEquals("http://conf:9000", options.storage().settings().get("fs.s3a.endpoint"));
        } finally {
            System.clearProperty("spark.hadoop.fs.s3a.endpoint");
            System.clearProperty("spark.hadoop.fs.s3a.path.style.access");
            System.clearProperty("spark.executor.memory");
        }
    }
}
