package org.sparkquant.spark;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

import org.apache.spark.SparkConf;
import org.apache.spark.sql.SparkSession;
import org.sparkquant.SparkQuantException;
import org.sparkquant.io.Storage;
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
        // the same s3a retry bounds as the driver's own storage calls (the user's settings win)
        Storage.S3A_DEFAULTS.forEach((k, v) -> conf.setIfMissing("spark.hadoop." + k, v));
        settings.forEach((k, v) -> {
            if (k.startsWith("spark.")) {
                conf.set(k, v);
            } else if (k.startsWith("fs.")) {
                conf.set("spark.hadoop." + k, v);
            }
        });
        try {
            return SparkSession.builder().config(conf).getOrCreate();
        } catch (IllegalArgumentException e) {
            // a setting Spark cannot use, e.g. spark.driver.maxResultSize=lots: Spark's message names it
            throw SparkQuantException.badInput("cannot start Spark: " + firstLine(e), e);
        } catch (Exception e) {
            String m = String.valueOf(e.getMessage());
            if (e instanceof org.apache.spark.SparkException
                    && (m.contains("Master URL") || m.contains("run locally with"))) {
                throw SparkQuantException.badInput("cannot start Spark: spark.master: " + firstLine(e), e);
            }
            if (e instanceof RuntimeException r) {
                throw r;
            }
            throw SparkQuantException.internal("cannot start Spark: " + firstLine(e), e);
        }
    }

    private static String firstLine(Throwable e) {
        return String.valueOf(e.getMessage()).lines().findFirst().orElse(e.getClass().getSimpleName());
    }

    /** Prefixes of Spark settings whose names are free-form or come from modules not loaded here. */
    private static final List<String> OPEN_PREFIXES = List.of("spark.executorEnv.", "spark.hadoop.",
            "spark.kubernetes.", "spark.yarn.", "spark.driverEnv.", "spark.sparkquant.", "spark.eventLog.",
            "spark.history.", "spark.metrics.", "spark.sql.catalog.", "spark.jars.");

    /**
     * Warnings for settings that will not do what the user meant: keys that are neither {@code spark.*} nor
     * {@code fs.*} (ignored), and unknown Spark keys that are one or two edits from a known one (a typo such as
     * {@code spark.exeuctor.memory}). Unknown keys far from every known one are left alone: Spark has settings this
     * registry does not list.
     */
    public static List<String> settingWarnings(Map<String, String> settings) {
        List<String> out = new ArrayList<>();
        Set<String> known = knownSparkKeys();
        for (String key : settings.keySet()) {
            if (!key.startsWith("spark.") && !key.startsWith("fs.")) {
                out.add("setting " + key + " is ignored: only spark.* and fs.* (Hadoop) settings are used");
                continue;
            }
            if (!key.startsWith("spark.") || known.isEmpty() || known.contains(key)
                    || OPEN_PREFIXES.stream().anyMatch(key::startsWith)) {
                continue;
            }
            String best = null;
            int bestDistance = 3;
            for (String k : known) {
                int d = distance(key, k, bestDistance);
                if (d < bestDistance) {
                    bestDistance = d;
                    best = k;
                }
            }
            if (best != null) {
                out.add("unknown Spark setting " + key + "; did you mean " + best + "?");
            }
        }
        return out;
    }

    /** Spark's registered configuration keys (core, UI, SQL), plus the few it reads without an entry. */
    private static Set<String> knownSparkKeys() {
        Set<String> keys = new HashSet<>(List.of("spark.master", "spark.app.name", "spark.submit.deployMode",
                "spark.driver.host", "spark.driver.bindAddress", "spark.local.dir"));
        try {
            org.apache.spark.internal.config.package$.MODULE$.EXECUTOR_MEMORY(); // loads core's entries
            Class.forName("org.apache.spark.internal.config.UI$").getField("MODULE$").get(null);
            Class.forName("org.apache.spark.sql.internal.SQLConf$").getField("MODULE$").get(null);
            keys.addAll(org.apache.spark.internal.config.ConfigEntry$.MODULE$.knownConfigs().keySet());
        } catch (ReflectiveOperationException | RuntimeException | LinkageError e) {
            return Set.of(); // no registry: no guesses
        }
        return keys;
    }

    /** Levenshtein distance, or {@code limit} once it is certain to reach it. */
    static int distance(String a, String b, int limit) {
        if (Math.abs(a.length() - b.length()) >= limit) {
            return limit;
        }
        int[] prev = new int[b.length() + 1];
        int[] cur = new int[b.length() + 1];
        for (int j = 0; j <= b.length(); j++) {
            prev[j] = j;
        }
        for (int i = 1; i <= a.length(); i++) {
            cur[0] = i;
            int rowMin = cur[0];
            for (int j = 1; j <= b.length(); j++) {
                int cost = a.charAt(i - 1) == b.charAt(j - 1) ? 0 : 1;
                cur[j] = Math.min(Math.min(cur[j - 1] + 1, prev[j] + 1), prev[j - 1] + cost);
                rowMin = Math.min(rowMin, cur[j]);
            }
            if (rowMin >= limit) {
                return limit;
            }
            int[] t = prev;
            prev = cur;
            cur = t;
        }
        return Math.min(prev[b.length()], limit);
    }
}
